//! Raft membership changes in the validator (issue 21; `docs/design/validator-sets.md` §5b),
//! on the in-process cluster: the ledger's set changes by a governance transaction approved
//! by a majority, and the one Raft core each validator runs follows it by stable id.
//!
//! - A joiner that runs from genesis with a key no set names gets the chain as a learner:
//!   the leader compacted its log long ago, so the joiner installs a state snapshot (which
//!   carries the set and the configuration), is promoted, and ends a voter. The leader's
//!   commits never stop for an election timeout meanwhile.
//! - Removing the leader: it hands leadership over first, the new leader removes it, and the
//!   chain goes on without an election timeout's stall. Every validator, restarted after
//!   that, comes back with the configuration it had (the one stored at compaction, or a
//!   later one in its log).

mod cluster;

use cluster::*;
use consensus::ReplicaId;
use consensus::raft::Membership;
use ledger::validators::{Change, Rule, SetChange, approve};
use ledger::{Address, Payload, Store, Transaction};
use node::mempool::Admitted;
use node::validator::RaftProtocol;
use std::collections::BTreeSet;

/// Blocks between the one that accepts a change and the end of its epoch.
const DELAY: u64 = 4;
/// The cluster's election timeout (`base_timeout_ms`), ms.
const ELECTION_MS: u64 = 500;

type Raft = Cluster<RaftProtocol>;

/// `op`, approved in `epoch` by the first majority of `set` (node indices, in set order),
/// paid by wallet 3 at `nonce`.
fn change_tx(c: &Raft, set: &[usize], epoch: u64, op: SetChange, nonce: u64) -> Transaction {
    let approvals = (0..Rule::Majority.quorum(set.len()) as u16)
        .map(|i| (i, approve(&c.keys[set[i as usize]], &c.chain, epoch, &op)))
        .collect();
    Transaction::sign(
        &wallet(3),
        &c.chain,
        nonce,
        Payload::Governance(Change {
            epoch,
            op,
            approvals,
        }),
    )
}

/// Load that runs while the cluster does: one transfer per wallet 0..3 every 20 ms of
/// simulated time, wallet `w`'s to the `w`-th of the validators named (a wallet keeps to
/// one validator, as a real one does: its nonces then never depend on another's queue).
struct Load {
    next: [u64; 3],
    hashes: Vec<crypto::Digest>,
    /// (time, validator `watch`'s height) after each step, for the longest stall.
    heights: Vec<(u64, u64)>,
}

impl Load {
    fn new() -> Load {
        Load {
            next: [0; 3],
            hashes: Vec::new(),
            heights: Vec::new(),
        }
    }

    /// Runs until `done`, submitting to `via` and watching validator `watch`.
    fn run(
        &mut self,
        c: &mut Raft,
        via: &[usize],
        watch: usize,
        limit_ms: u64,
        done: impl Fn(&Raft) -> bool,
    ) -> bool {
        let end = c.now + limit_ms;
        while c.now < end {
            for (w, nonce) in self.next.iter_mut().enumerate() {
                let to = Address::of(&wallet((w as u8 + 1) % 3).public());
                let tx = Transaction::sign(
                    &wallet(w as u8),
                    &c.chain,
                    *nonce,
                    Payload::Transfer { to, amount: 1 },
                );
                let node = via[w % via.len()];
                if let Some(d) = c.nodes[node].as_mut()
                    && matches!(d.submit(tx.clone()), Ok(Admitted::Added(_)))
                {
                    self.hashes.push(tx.hash());
                    *nonce += 1;
                }
            }
            c.run_until(20, |_| false);
            self.heights.push((c.now, c.node(watch).ledger().height()));
            if done(c) {
                return true;
            }
        }
        false
    }

    /// The longest simulated time validator `watch`'s height stood still, from `since` on.
    fn longest_stall(&self, since: u64) -> u64 {
        let mut longest = 0;
        let mut last_move = None;
        let mut last_height = None;
        for &(t, h) in &self.heights {
            if t < since {
                continue;
            }
            if last_height != Some(h) {
                if let Some(m) = last_move {
                    longest = longest.max(t - m);
                }
                last_move = Some(t);
                last_height = Some(h);
            }
        }
        longest
    }
}

/// Submits `tx` to `via`, runs the load until it commits on `via` with success; returns the
/// last block of the epoch it ends.
fn accept(c: &mut Raft, load: &mut Load, via: usize, members: &[usize], tx: Transaction) -> u64 {
    let h = tx.hash();
    assert!(matches!(
        c.nodes[via].as_mut().unwrap().submit(tx),
        Ok(Admitted::Added(_))
    ));
    assert!(
        load.run(c, members, via, 30_000, |c| c
            .node(via)
            .ledger()
            .store()
            .tx(&h)
            .unwrap()
            .is_some()),
        "the change did not commit"
    );
    let rec = c.node(via).ledger().store().tx(&h).unwrap().unwrap();
    assert_eq!(rec.receipt.outcome, Ok(()), "the change was refused");
    let vs = c
        .node(via)
        .ledger()
        .validators_at(rec.height)
        .unwrap()
        .unwrap();
    vs.pending.expect("pending").effective_after
}

fn voters(ids: &[u16]) -> Membership {
    Membership::voters(ids.iter().map(|i| ReplicaId(*i)))
}

/// Every one of `nodes` holds `want` as its (latest) configuration.
fn all_hold(c: &Raft, nodes: &[usize], want: &Membership) -> bool {
    nodes.iter().all(|&i| c.node(i).core().membership() == want)
}

/// The blocks every one of `nodes` holds agree with validator `nodes[0]`'s, from `from`.
fn assert_same_blocks(c: &Raft, nodes: &[usize], from: u64) {
    let top = nodes
        .iter()
        .map(|&i| c.node(i).ledger().height())
        .min()
        .unwrap();
    assert!(top > from, "no blocks to compare above {from}");
    let first = c.node(nodes[0]).ledger().store();
    for h in from..=top {
        let b = first.block(h).unwrap().unwrap().hash();
        for &i in &nodes[1..] {
            let o = c.node(i).ledger().store().block(h).unwrap().unwrap().hash();
            assert_eq!(o, b, "validator {i} differs at height {h}");
        }
    }
}

/// Every hash committed with a successful receipt on each of `nodes`.
fn assert_all_ok(c: &Raft, nodes: &[usize], hashes: &[crypto::Digest]) {
    for &i in nodes {
        for h in hashes {
            let rec = c.node(i).ledger().store().tx(h).unwrap();
            let rec = rec.unwrap_or_else(|| panic!("validator {i} lacks transfer {h}"));
            assert_eq!(rec.receipt.outcome, Ok(()), "transfer {h} on {i}");
        }
    }
}

#[test]
fn raft_adds_a_learner_that_must_install_a_snapshot_then_promotes_it() {
    // Three voters compacting every 8 entries; node 3 runs from genesis, named by no set.
    add_a_learner(8, true);
}

#[test]
fn raft_adds_a_learner_that_replays_the_log_then_promotes_it() {
    // No compaction before the joiner catches up: it replays the log from index 1 and learns
    // its id when it executes the block that ends the epoch.
    add_a_learner(100_000, false);
}

fn add_a_learner(snapshot_interval: u64, snapshot: bool) {
    let mut c = Raft::raft_with_sets(3, DELAY, 1, snapshot_interval);
    let members = [0, 1, 2];
    let mut load = Load::new();
    assert!(
        load.run(&mut c, &members, 0, 30_000, |c| c.node(0).ledger().height()
            > 60),
        "the three did not order 60 blocks"
    );
    assert_eq!(
        c.node(3).ledger().height(),
        0,
        "an outsider gets nothing yet"
    );
    let op = SetChange::Add(members_of(&c.keys)[3].clone());
    // Wallet 3 pays for changes only: its nonce is its own.
    let tx = change_tx(&c, &members, 0, op, 0);
    let last = accept(&mut c, &mut load, 0, &members, tx);
    let since = c.now;
    let four = voters(&[0, 1, 2, 3]);
    assert!(
        load.run(&mut c, &members, 0, 60_000, |c| all_hold(
            c,
            &[0, 1, 2, 3],
            &four
        ) && c
            .node(0)
            .core()
            .membership_index()
            <= c.node(0).core().commit_index()
            && c.node(3).ledger().height() > last + 20),
        "the joiner was not promoted (its height {}, its configuration {:?}, the leader's {:?})",
        c.node(3).ledger().height(),
        c.node(3).core().membership(),
        c.node(0).core().membership()
    );
    let end = c.node(0).ledger().height();
    assert!(
        load.run(&mut c, &[0, 1, 2, 3], 0, 30_000, |c| (0..4).all(|i| c
            .node(i)
            .ledger()
            .height()
            > end + 10)),
        "the four did not go on together"
    );
    let joiner = c.node(3);
    assert_eq!(
        joiner.stats.snapshots_installed >= 1,
        snapshot,
        "snapshots installed: {}",
        joiner.stats.snapshots_installed
    );
    // A learner that joined from a snapshot has no block 1.
    assert_eq!(
        joiner.ledger().store().block(1).unwrap().is_none(),
        snapshot
    );
    assert_eq!(joiner.epoch(), 1);
    let stall = load.longest_stall(since);
    assert!(
        stall < ELECTION_MS,
        "commits stood still for {stall} ms while the learner caught up"
    );
    // The joiner holds the blocks above its snapshot (those below are in the state it
    // installed; issue 20 leaves their transactions unknown to it): every transfer ordered
    // above it is in its store too.
    assert!(c.run_until(10_000, |c| c.committed_on(members, &load.hashes)));
    assert_all_ok(&c, &members, &load.hashes);
    // The last snapshot it installed (it may have installed more than one): the lowest
    // height from which it holds every block.
    let tip = c.node(3).ledger().height();
    let base = (1..=tip)
        .rev()
        .find(|h| c.node(3).ledger().store().block(h - 1).unwrap().is_none())
        .unwrap();
    let above: Vec<crypto::Digest> = load
        .hashes
        .iter()
        .filter(|h| c.node(0).ledger().store().tx(h).unwrap().unwrap().height > base)
        .copied()
        .collect();
    assert!(!above.is_empty());
    assert_all_ok(&c, &[3], &above);
    assert_same_blocks(&c, &[0, 1, 2, 3], base);
    eprintln!(
        "learner: boundary after {last}; snapshot at {}; promoted; longest stall {stall} ms; \
         {} transfers",
        base - 1,
        load.hashes.len()
    );
}

#[test]
fn raft_removes_its_leader_which_hands_over_first_and_restarts_keep_the_configuration() {
    let mut c = Raft::raft_with_sets(4, DELAY, 0, 16);
    let all = [0, 1, 2, 3];
    let mut load = Load::new();
    assert!(
        load.run(&mut c, &all, 0, 30_000, |c| c.node(0).ledger().height()
            > 20)
    );
    let leader = c.node(0).core().leader().expect("a leader").0 as usize;
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let op = SetChange::Remove {
        consensus_key: c.keys[leader].public(),
    };
    let tx = change_tx(&c, &all, 0, op, 0);
    let last = accept(&mut c, &mut load, rest[0], &all, tx);
    let since = c.now;
    let ids: Vec<u16> = rest.iter().map(|&i| i as u16).collect();
    let three = voters(&ids);
    let ok = load.run(&mut c, &rest, rest[0], 60_000, |c| {
        all_hold(c, &rest, &three)
            && c.node(rest[0]).core().membership_index() <= c.node(rest[0]).core().commit_index()
            && c.node(rest[0]).ledger().height() > last + 20
    });
    assert!(
        ok,
        "the leader was not removed (configurations {:?}; boundary {last}; heights {:?}; \
         config index {} commit {})",
        rest.iter()
            .map(|&i| c.node(i).core().membership().clone())
            .collect::<Vec<_>>(),
        all.iter()
            .map(|&i| c.node(i).ledger().height())
            .collect::<Vec<_>>(),
        c.node(rest[0]).core().membership_index(),
        c.node(rest[0]).core().commit_index(),
    );
    let old = c.node(leader);
    assert!(
        old.core().stats().transfers >= 1,
        "the removed leader never handed over"
    );
    let new_leader = c.node(rest[0]).core().leader().expect("a leader").0 as usize;
    assert_ne!(new_leader, leader);
    let stall = load.longest_stall(since);
    assert!(
        stall < ELECTION_MS,
        "commits stood still for {stall} ms across the removal"
    );
    assert!(c.run_until(10_000, |c| c.committed_on(rest.clone(), &load.hashes)));
    assert_all_ok(&c, &rest, &load.hashes);

    // Restart every remaining member, one after the other: each comes back with the
    // configuration it had, and the chain goes on.
    for &i in &rest {
        let before = c.node(i).core().membership().clone();
        let height = c.node(i).ledger().height();
        c.nodes[i] = None;
        c.open(i);
        assert_eq!(
            c.node(i).core().membership(),
            &before,
            "validator {i} came back with another configuration (height {height})"
        );
        let h = c.node(i).ledger().height();
        assert!(load.run(
            &mut c,
            &rest,
            rest[0],
            30_000,
            |c| c.node(i).ledger().height() > h + 10
        ));
    }
    // Down to its stored configuration alone: the log it kept starts above the last one.
    let top = rest
        .iter()
        .map(|&i| c.node(i).ledger().height())
        .min()
        .unwrap();
    assert!(c.run_until(10_000, |c| c.committed_on(rest.clone(), &load.hashes)));
    assert_all_ok(&c, &rest, &load.hashes);
    assert_same_blocks(&c, &rest, top.saturating_sub(30).max(1));
    let members: BTreeSet<ReplicaId> = three.voters.clone();
    assert_eq!(&c.node(rest[0]).core().membership().voters, &members);
    eprintln!(
        "leader {leader} removed after block {last}: handed over to {new_leader}; longest stall \
         {stall} ms; {} transfers",
        load.hashes.len()
    );
}
