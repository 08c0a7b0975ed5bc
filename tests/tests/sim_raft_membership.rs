//! Raft membership changes in the scripted cluster (issue 21): a learner that catches up
//! and is promoted, servers added and removed one at a time, a removed leader that hands
//! over first, leader transfer on request, and the negative control — a change of two
//! voters at once (no joint consensus) — that the checkers must catch, beside the same
//! schedule with single-server changes, which they must pass.
//!
//! Every step runs the cluster invariants (election safety, log matching, committed prefix,
//! leader completeness, durable commits) and the ledger checks.

use consensus::ReplicaId;
use consensus::raft::{HEARTBEAT_TIMER, Membership, Message, Role, TransferError};
use tests::sim::raft::script::Script;

fn ids(v: &[u16]) -> std::collections::BTreeSet<ReplicaId> {
    v.iter().map(|i| ReplicaId(*i)).collect()
}

fn config(voters: &[u16], learners: &[u16]) -> Membership {
    Membership {
        voters: ids(voters),
        learners: ids(learners),
    }
}

/// Five known servers, of which 0, 1, 2 vote at genesis; 0 leads and has committed a batch.
fn three_of_five(unsafe_multi: bool) -> Script {
    let mut s = Script::new(5, |p| {
        p.raft.initial_voters = Some(3);
        p.raft.unsafe_multi_server_changes = unsafe_multi;
    });
    assert!(s.elect(0, &[1, 2]));
    s.payload(0, crypto::hash(b"first"));
    s.deliver(|_, _, _| true);
    assert!(s.height(0) >= 2, "the no-op and the batch commit");
    s
}

/// Heartbeats from the leader until nothing is in flight, `rounds` times: a learner's
/// catch-up and the steps after it are driven by the leader's commits and heartbeats.
fn settle(s: &mut Script, leader: usize, rounds: usize) {
    for _ in 0..rounds {
        s.fire(leader, HEARTBEAT_TIMER);
        s.deliver(|_, _, _| true);
    }
}

/// Every configuration in `i`'s log, in order, from the one at `from`.
fn history(s: &Script, i: usize, from: u64) -> Vec<Membership> {
    let core = s.core(i);
    let mut out: Vec<Membership> = Vec::new();
    for index in from..=core.last_index() {
        let m = core.membership_at(index).clone();
        if out.last() != Some(&m) {
            out.push(m);
        }
    }
    out
}

#[test]
fn a_learner_catches_up_and_is_promoted_one_server_at_a_time() {
    let mut s = three_of_five(false);
    let start = s.core(0).last_index();
    s.set_members(&[0, 1, 2, 3]);
    settle(&mut s, 0, 4);
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2, 3], &[]));
    s.set_members(&[0, 1, 2, 3, 4]);
    settle(&mut s, 0, 4);
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2, 3, 4], &[]));
    // Removing two: one after the other.
    s.set_members(&[0, 3, 4]);
    settle(&mut s, 0, 4);
    assert_eq!(s.core(0).membership(), &config(&[0, 3, 4], &[]));

    let steps = history(&s, 0, start);
    assert_eq!(
        steps,
        vec![
            config(&[0, 1, 2], &[]),
            config(&[0, 1, 2], &[3]),
            config(&[0, 1, 2, 3], &[]),
            config(&[0, 1, 2, 3], &[4]),
            config(&[0, 1, 2, 3, 4], &[]),
            config(&[0, 2, 3, 4], &[]),
            config(&[0, 3, 4], &[]),
        ],
        "a learner first, then a voter; one voter per entry"
    );
    for w in steps.windows(2) {
        assert!(w[0].single_step_to(&w[1]), "{:?} -> {:?}", w[0], w[1]);
    }
    assert_eq!(s.core(0).stats().config_changes, 6);
    // Every member has the same log and configuration, and the new ones commit batches.
    s.payload(0, crypto::hash(b"after"));
    settle(&mut s, 0, 2);
    let tip = s.height(0);
    for i in [3, 4] {
        assert_eq!(s.height(i), tip, "member {i} is at the leader's height");
        assert_eq!(s.core(i).membership(), &config(&[0, 3, 4], &[]));
    }
    // The removed servers are no longer replicated to and never campaign.
    for i in [1, 2] {
        assert!(
            s.height(i) < tip,
            "removed server {i} stopped receiving entries"
        );
        assert!(!s.core(i).membership().is_voter(ReplicaId(i as u16)));
        let term = s.core(i).term();
        s.fire(i, consensus::raft::ELECTION_TIMER);
        assert_eq!(s.core(i).role(), Role::Follower);
        assert_eq!(s.core(i).term(), term);
    }
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

#[test]
fn a_learner_does_not_count_for_commit_and_a_lagging_one_is_not_promoted() {
    let mut s = three_of_five(false);
    s.set_members(&[0, 1, 2, 3]);
    // The learner entry reaches 3 only; 1 and 2 are cut off.
    s.deliver(|_, t, _| t == 3);
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2], &[3]));
    let commit = s.core(0).commit_index();
    s.payload(0, crypto::hash(b"needs a majority of voters"));
    s.deliver(|_, t, _| t == 3);
    settle_to(&mut s, 0, &[3], 3);
    assert_eq!(
        s.core(0).commit_index(),
        commit,
        "the leader and a learner are no majority of {{0, 1, 2}}"
    );
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2], &[3]));
    // Once 1 is back the learner entry commits and 3, caught up, is promoted.
    settle(&mut s, 0, 4);
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2, 3], &[]));
    assert!(s.core(0).commit_index() > commit);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

/// Heartbeats from `leader`, delivering only to `to`.
fn settle_to(s: &mut Script, leader: usize, to: &[usize], rounds: usize) {
    for _ in 0..rounds {
        s.fire(leader, HEARTBEAT_TIMER);
        s.deliver(|f, t, _| (f == leader && to.contains(&t)) || (t == leader && to.contains(&f)));
    }
    s.drop_where(|_, _, _| true);
}

#[test]
fn a_removed_leader_hands_over_then_is_removed() {
    let mut s = three_of_five(false);
    s.set_members(&[0, 1, 2, 3]);
    settle(&mut s, 0, 4);
    s.set_members(&[1, 2, 3]);
    // The leader hands over (TimeoutNow), the new leader removes it.
    s.deliver(|_, _, _| true);
    let leader = (0..5).find(|i| s.is_up(*i) && s.is_leader(*i));
    let new = leader.expect("a new leader took over");
    assert_ne!(new, 0, "the removed leader stepped aside");
    settle(&mut s, new, 4);
    assert_eq!(s.core(new).membership(), &config(&[1, 2, 3], &[]));
    assert_eq!(s.core(0).stats().transfers, 1);
    assert_eq!(s.core(0).role(), Role::Follower);
    s.payload(new, crypto::hash(b"under the new leader"));
    settle(&mut s, new, 2);
    assert!(s.height(new) > s.height(0));
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

#[test]
fn leader_transfer_on_request_and_its_refusals() {
    let mut s = three_of_five(false);
    assert_eq!(
        s.transfer(1, Some(2)),
        Err(TransferError::NotLeader),
        "only the leader hands over"
    );
    assert_eq!(
        s.transfer(0, Some(4)),
        Err(TransferError::NotAVoter(ReplicaId(4)))
    );
    let term = s.core(0).term();
    s.transfer(0, Some(2)).unwrap();
    // Proposals wait while the transfer runs.
    s.payload(0, crypto::hash(b"held"));
    assert!(
        !s.core(0).pending_payload().is_empty(),
        "the old leader holds new batches during the transfer"
    );
    s.deliver(|_, _, _| true);
    assert!(s.is_leader(2), "the chosen voter leads");
    assert_eq!(
        s.core(2).term(),
        term + 1,
        "one election, no pre-vote round"
    );
    assert!(!s.is_leader(0));
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

/// The schedule of the negative control: the leader's change reaches 3 and 4 only; 1 is
/// then elected by 1 and 2, the majority of the genesis configuration they still use.
fn split_schedule(s: &mut Script) {
    s.set_members(&[0, 1, 2, 3, 4]);
    let to_new = |f: usize, t: usize, _: &Message| [0, 3, 4].contains(&f) && [0, 3, 4].contains(&t);
    s.deliver(to_new);
    s.payload(0, crypto::hash(b"committed by the new majority"));
    s.deliver(to_new);
    for _ in 0..3 {
        s.fire(0, HEARTBEAT_TIMER);
        s.deliver(to_new);
    }
    s.drop_where(|f, t, _| f == 0 || t == 0);
    assert!(s.elect(1, &[2]), "1 wins with the votes of 1 and 2");
    s.payload(1, crypto::hash(b"committed by the old majority"));
    s.deliver(|f, t, _| [1, 2].contains(&f) && [1, 2].contains(&t));
}

#[test]
fn negative_control_two_voters_at_once_forks_and_is_caught() {
    let mut s = three_of_five(true);
    split_schedule(&mut s);
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2, 3, 4], &[]));
    let found = s.violations().join("\n");
    // The rule is flagged where it is broken, and its harm by the ledger's own check: two
    // blocks at one height ({0, 3, 4} and {1, 2} are majorities of successive
    // configurations, and both committed).
    assert!(found.contains("CONFIGURATION STEP"), "{found}");
    assert!(found.contains("FORK at height"), "{found}");
    eprintln!("caught:\n{found}");
}

#[test]
fn the_same_schedule_with_single_server_changes_is_safe() {
    let mut s = three_of_five(false);
    split_schedule(&mut s);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    assert!(s.is_leader(1));
}

#[test]
fn configurations_survive_restarts_from_the_ledger_and_the_log() {
    let mut s = three_of_five(false);
    s.set_members(&[0, 1, 2, 3]);
    settle(&mut s, 0, 4);
    let four = config(&[0, 1, 2, 3], &[]);
    assert_eq!(s.core(3).membership(), &four);
    // The promotion is committed and executed on 3: its restart reads it back beside the
    // ledger (the configuration of the newest configuration-carrying block).
    s.crash(3);
    s.restart(3, false);
    assert_eq!(s.core(3).membership(), &four);
    // A configuration entry that is only in the log (not committed) is used after a restart
    // too: 0 appends the learner 4 while cut off, then restarts.
    s.set_members(&[0, 1, 2, 3, 4]);
    s.drop_where(|_, _, _| true);
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2, 3], &[4]));
    s.crash(0);
    s.restart(0, false);
    assert_eq!(s.core(0).membership(), &config(&[0, 1, 2, 3], &[4]));
    // 1 leads now with the votes of 1, 2 and 3 (three of four voters): 0's uncommitted entry
    // is replaced, and 0 goes back to the configuration before it.
    s.drop_where(|_, _, _| true);
    assert!(s.elect(1, &[2, 3]));
    s.set_members(&[0, 1, 2, 3]);
    settle(&mut s, 1, 3);
    assert_eq!(
        s.core(0).membership(),
        &four,
        "the truncated entry's learner is gone"
    );
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}
