//! Exact-action unit tests of the Raft core.
//!
//! Election timeouts are random (seeded); [`norm`] checks that each lies in `[T, 2T)` and
//! replaces it by [`election`] so the rest of an action list can be compared exactly.

use super::*;
use crate::core::{Action, Committed, Core, Durable, Input};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey};

const T: u64 = 1000;
const HB: u64 = 100;

fn key(i: u16) -> SecretKey {
    SecretKey::from_seed([i as u8 + 1; 32])
}
fn genesis() -> Digest {
    crypto::hash(b"raft genesis")
}
fn committee(n: u16) -> Committee {
    let n = n as usize;
    Committee::new_cft(
        (0..n).map(|i| key(i as u16).public()).collect(),
        (n - 1) / 2,
        n / 2 + 1,
    )
    .unwrap()
}
fn config(i: u16, n: u16) -> Config {
    Config {
        me: ReplicaId(i),
        key: key(i),
        committee: committee(n),
        genesis: genesis(),
        election_timeout_ms: T,
        heartbeat_ms: HB,
        seed: 7,
        max_payload: 4,
        max_append_entries: 8,
        max_inflight: 2,
        snapshot_interval: 4,
        log_keep: 1,
    }
}
fn replica(i: u16, n: u16) -> Raft {
    recovered(i, n, Recovered::default())
}
fn recovered(i: u16, n: u16, rec: Recovered) -> Raft {
    let mut r = Raft::new(config(i, n), rec).unwrap();
    r.start(0);
    r
}
fn id(i: u16) -> ReplicaId {
    ReplicaId(i)
}
fn d(i: u8) -> Digest {
    crypto::hash(&[i])
}
/// An entry of `term` at `index` created by `leader`.
fn entry(term: u64, index: u64, leader: u16, payload: Vec<Digest>) -> Entry {
    Entry::new(
        &key(leader),
        &genesis(),
        term,
        index,
        id(leader),
        0,
        payload,
    )
}
fn msg(from: u16, m: Message) -> Input<Message> {
    Input::Message {
        from: id(from),
        msg: m,
    }
}
fn hard(term: u64, vote: Option<u16>) -> Durable {
    Durable::Safety(
        HardState {
            term,
            voted_for: vote.map(id),
        }
        .encode(),
    )
}
fn log_write(after: u64, entries: &[Entry]) -> Durable {
    Durable::Log {
        truncate_after: after,
        entries: entries.iter().map(Entry::encode).collect(),
    }
}
fn committed(e: &Entry) -> Action<Message> {
    Action::Commit(Committed {
        id: e.id(&genesis()),
        view: View(e.term),
        proposer: e.leader,
        timestamp_ms: e.timestamp_ms,
        payload: e.payload.clone(),
        certificate: e.encode(),
    })
}
fn election() -> Action<Message> {
    Action::SetTimer {
        id: ELECTION_TIMER,
        after_ms: 0,
    }
}
fn persist(seq: u64, what: Durable) -> Action<Message> {
    Action::Persist { seq, what }
}
fn send(to: u16, msg: Message) -> Action<Message> {
    Action::Send { to: id(to), msg }
}
fn bcast(msg: Message) -> Action<Message> {
    Action::Broadcast { msg }
}
fn append(term: u64, prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> Message {
    Message::Append {
        term,
        prev_index: prev.0,
        prev_term: prev.1,
        entries,
        commit,
        read_round: 0,
    }
}
fn reply(term: u64, success: bool, index: u64) -> Message {
    Message::AppendReply {
        term,
        success,
        index,
        read_round: 0,
    }
}

/// Checks every election timeout is in `[T, 2T)` and replaces it by [`election`].
fn norm(actions: Vec<Action<Message>>) -> Vec<Action<Message>> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::SetTimer {
                id: ELECTION_TIMER,
                after_ms,
            } => {
                assert!(
                    (T..2 * T).contains(&after_ms),
                    "election timeout {after_ms}"
                );
                election()
            }
            a => a,
        })
        .collect()
}
fn step(r: &mut Raft, input: Input<Message>) -> Vec<Action<Message>> {
    norm(r.handle(0, input))
}
fn max_seq(actions: &[Action<Message>]) -> u64 {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist { seq, .. } => Some(*seq),
            _ => None,
        })
        .max()
        .expect("a persist")
}
fn has_send(actions: &[Action<Message>]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Send { .. } | Action::Broadcast { .. }))
}

/// Elects replica `r` (of `n`) with the pre-votes and votes of the lowest other ids and
/// acknowledges every persist; returns the actions of the last step (becoming leader).
fn elect(r: &mut Raft, n: u16) -> Vec<Action<Message>> {
    let me = r.cfg.me.0;
    let others: Vec<u16> = (0..n).filter(|j| *j != me).collect();
    let mut all = step(r, Input::Timer(ELECTION_TIMER));
    if r.role() == Role::Leader {
        step(r, Input::Persisted(max_seq(&all)));
        return all;
    }
    let term = r.term() + 1;
    for j in &others {
        if r.role() != Role::PreCandidate {
            break;
        }
        let granted = Message::PreVoteReply {
            term,
            granted: true,
        };
        all.extend(step(r, msg(*j, granted)));
    }
    assert_eq!(r.role(), Role::Candidate);
    step(r, Input::Persisted(max_seq(&all)));
    let mut last = Vec::new();
    for j in &others {
        if r.role() == Role::Leader {
            break;
        }
        let granted = Message::VoteReply {
            term,
            granted: true,
        };
        last = step(r, msg(*j, granted));
    }
    assert_eq!(r.role(), Role::Leader);
    step(r, Input::Persisted(max_seq(&last)));
    last
}

/// A replica whose recovered log holds `entries` (never compacted), at `term`.
fn with_log(i: u16, n: u16, term: u64, entries: &[Entry]) -> Raft {
    let rec = Recovered {
        hard_state: Some(
            HardState {
                term,
                voted_for: None,
            }
            .encode(),
        ),
        applied: 0,
        applied_entry: None,
        entries: entries.iter().map(Entry::encode).collect(),
        config: None,
    };
    recovered(i, n, rec)
}

// ---- elections -----------------------------------------------------------------------

#[test]
fn election_timeouts_are_random_in_range_and_differ_between_replicas() {
    let draw = |i: u16, seed: u64| {
        let mut r = Raft::new(
            Config {
                seed,
                ..config(i, 3)
            },
            Recovered::default(),
        )
        .unwrap();
        (0..8)
            .map(|_| match r.handle(0, Input::Timer(ELECTION_TIMER))[0] {
                Action::SetTimer { after_ms, .. } => after_ms,
                _ => panic!("timer first"),
            })
            .collect::<Vec<u64>>()
    };
    let a = draw(0, 7);
    assert!(a.iter().all(|t| (T..2 * T).contains(t)), "{a:?}");
    assert_eq!(a, draw(0, 7), "same seed, same draws");
    assert_ne!(
        a,
        draw(1, 7),
        "replicas sharing a run seed must not collide"
    );
    assert_ne!(a, draw(0, 8));
}

#[test]
fn prevote_does_not_bump_terms_or_persist() {
    let mut c = replica(0, 3);
    assert_eq!(
        step(&mut c, Input::Timer(ELECTION_TIMER)),
        vec![
            election(),
            bcast(Message::PreVote {
                term: 1,
                last_index: 0,
                last_term: 0
            })
        ]
    );
    assert_eq!(
        (c.role(), c.term(), c.hard_state().voted_for),
        (Role::PreCandidate, 0, None)
    );

    let mut v = replica(1, 3);
    let pv = Message::PreVote {
        term: 1,
        last_index: 0,
        last_term: 0,
    };
    assert_eq!(
        step(&mut v, msg(0, pv.clone())),
        vec![send(
            0,
            Message::PreVoteReply {
                term: 1,
                granted: true
            }
        )]
    );
    assert_eq!(
        (v.role(), v.term(), v.hard_state()),
        (Role::Follower, 0, HardState::default())
    );

    // A refusal from a replica in the same term moves nobody either.
    let refusal = Message::PreVoteReply {
        term: 0,
        granted: false,
    };
    assert_eq!(step(&mut c, msg(2, refusal)), vec![]);
    assert_eq!((c.role(), c.term()), (Role::PreCandidate, 0));

    // The granted pre-vote makes a majority: now, and only now, the term moves, durably
    // before the RequestVote leaves.
    let granted = Message::PreVoteReply {
        term: 1,
        granted: true,
    };
    let out = step(&mut c, msg(1, granted));
    assert_eq!(out, vec![persist(1, hard(1, Some(0))), election()]);
    assert_eq!(
        (c.role(), c.term(), c.stats().elections),
        (Role::Candidate, 1, 1)
    );
    let rv = Message::RequestVote {
        term: 1,
        last_index: 0,
        last_term: 0,
        transfer: false,
    };
    assert_eq!(step(&mut c, Input::Persisted(1)), vec![bcast(rv)]);
}

/// A refusal from a replica in a later term means the pre-candidate is behind: it follows
/// that term (durably), as etcd does. Without this, replicas ahead in term with stale logs and
/// replicas with the longest logs in older terms refuse each other for ever (the simulator's
/// Figure 8 at step (c) with S5 down).
#[test]
fn a_pre_candidate_refused_by_a_later_term_follows_it() {
    let mut c = replica(0, 3);
    step(&mut c, Input::Timer(ELECTION_TIMER));
    let refusal = Message::PreVoteReply {
        term: 9,
        granted: false,
    };
    let out = step(&mut c, msg(2, refusal));
    assert!(out.contains(&persist(1, hard(9, None))), "{out:?}");
    assert_eq!((c.role(), c.term(), c.leader()), (Role::Follower, 9, None));
}

#[test]
fn no_prevote_or_vote_for_a_less_up_to_date_log() {
    let log = [entry(1, 1, 0, vec![]), entry(2, 2, 0, vec![])];
    let ask = |kind: fn(u64, u64, u64) -> Message, last_index: u64, last_term: u64| {
        let mut v = with_log(1, 3, 2, &log);
        let out = step(&mut v, msg(0, kind(3, last_index, last_term)));
        (v, out)
    };
    let pre = |term, last_index, last_term| Message::PreVote {
        term,
        last_index,
        last_term,
    };
    let vote = |term, last_index, last_term| Message::RequestVote {
        term,
        last_index,
        last_term,
        transfer: false,
    };
    // Lower last term (even with a longer log), then same last term but shorter.
    for (li, lt) in [(5, 1), (1, 2)] {
        let (v, out) = ask(pre, li, lt);
        let refused = Message::PreVoteReply {
            term: 2,
            granted: false,
        };
        assert_eq!(out, vec![send(0, refused)], "pre-vote ({li}, {lt})");
        assert_eq!(v.term(), 2);

        let (mut v, out) = ask(vote, li, lt);
        // The higher term is adopted (durably, before the reply), the vote is not given.
        assert_eq!(
            out,
            vec![persist(1, hard(3, None)), election()],
            "vote ({li}, {lt})"
        );
        assert_eq!(
            v.hard_state(),
            HardState {
                term: 3,
                voted_for: None
            }
        );
        let refused = Message::VoteReply {
            term: 3,
            granted: false,
        };
        assert_eq!(step(&mut v, Input::Persisted(1)), vec![send(0, refused)]);
    }
    // As up-to-date: granted.
    let (_, out) = ask(pre, 2, 2);
    let yes = Message::PreVoteReply {
        term: 3,
        granted: true,
    };
    assert_eq!(out, vec![send(0, yes)]);
    let (mut v, out) = ask(vote, 2, 2);
    assert_eq!(
        out,
        vec![
            persist(1, hard(3, None)),
            persist(2, hard(3, Some(0))),
            election()
        ]
    );
    let yes = Message::VoteReply {
        term: 3,
        granted: true,
    };
    assert_eq!(step(&mut v, Input::Persisted(2)), vec![send(0, yes)]);
}

#[test]
fn vote_reply_is_held_until_its_persist_and_one_vote_per_term_survives_a_restart() {
    let mut v = replica(1, 3);
    let rv = |term| Message::RequestVote {
        term,
        last_index: 0,
        last_term: 0,
        transfer: false,
    };
    let out = step(&mut v, msg(0, rv(1)));
    assert_eq!(
        out,
        vec![
            persist(1, hard(1, None)),
            persist(2, hard(1, Some(0))),
            election()
        ]
    );
    assert!(!has_send(&out));
    assert_eq!(
        step(&mut v, Input::Persisted(1)),
        vec![],
        "the vote is not durable yet"
    );
    assert_eq!(v.held(), 1);
    let yes = Message::VoteReply {
        term: 1,
        granted: true,
    };
    assert_eq!(
        step(&mut v, Input::Persisted(2)),
        vec![send(0, yes.clone())]
    );

    // Restart from the durable hard state: the vote in term 1 is remembered.
    let rec = Recovered {
        hard_state: Some(v.hard_state().encode()),
        ..Recovered::default()
    };
    let mut v = recovered(1, 3, rec);
    let no = Message::VoteReply {
        term: 1,
        granted: false,
    };
    assert_eq!(step(&mut v, msg(2, rv(1))), vec![send(2, no)]);
    // The same candidate asking again gets the same answer, without a new persist.
    assert_eq!(step(&mut v, msg(0, rv(1))), vec![election(), send(0, yes)]);
}

#[test]
fn negative_control_releases_replies_before_their_persist() {
    let mut v = replica(1, 3);
    v.set_unsafe_reply_before_persist(true);
    let rv = Message::RequestVote {
        term: 1,
        last_index: 0,
        last_term: 0,
        transfer: false,
    };
    let yes = Message::VoteReply {
        term: 1,
        granted: true,
    };
    let out = step(&mut v, msg(0, rv));
    assert_eq!(
        out,
        vec![
            persist(1, hard(1, None)),
            persist(2, hard(1, Some(0))),
            election(),
            send(0, yes)
        ]
    );
}

#[test]
fn single_replica_elects_itself_and_commits_alone() {
    let mut r = replica(0, 1);
    let out = step(&mut r, Input::Timer(ELECTION_TIMER));
    let noop = entry(1, 1, 0, vec![]);
    assert_eq!(
        out,
        vec![
            election(),
            persist(1, hard(1, Some(0))),
            election(),
            election(),
            Action::SetTimer {
                id: HEARTBEAT_TIMER,
                after_ms: HB
            },
            persist(2, log_write(0, std::slice::from_ref(&noop))),
        ]
    );
    assert_eq!(r.role(), Role::Leader);
    assert_eq!(r.commit_index(), 0, "nothing commits before it is durable");
    assert_eq!(step(&mut r, Input::Persisted(2)), vec![committed(&noop)]);
    let e = entry(1, 2, 0, vec![d(1)]);
    assert_eq!(
        step(&mut r, Input::Payload(d(1))),
        vec![persist(3, log_write(1, std::slice::from_ref(&e)))]
    );
    assert_eq!(r.pending_payload(), vec![]);
    assert_eq!(step(&mut r, Input::Persisted(3)), vec![committed(&e)]);
    assert_eq!(r.commit_index(), 2);
}

// ---- leader stickiness and check-quorum -----------------------------------------------

#[test]
fn a_partitioned_node_rejoining_does_not_depose_a_healthy_leader() {
    let mut l = replica(0, 3);
    elect(&mut l, 3);
    let mut f = replica(1, 3);
    let mut p = replica(2, 3);
    let hb = append(1, (0, 0), vec![], 0);
    step(&mut f, msg(0, hb.clone()));
    step(&mut p, msg(0, hb));
    // Their new term is durable (what they send carries it).
    step(&mut f, Input::Persisted(1));
    step(&mut p, Input::Persisted(1));
    assert_eq!((f.leader(), p.leader()), (Some(id(0)), Some(id(0))));

    // Cut off, the node times out again and again: pre-votes only, its term stays.
    for _ in 0..5 {
        let out = step(&mut p, Input::Timer(ELECTION_TIMER));
        let pv = Message::PreVote {
            term: 2,
            last_index: 0,
            last_term: 0,
        };
        assert_eq!(out, vec![election(), bcast(pv)]);
    }
    assert_eq!((p.term(), p.role()), (1, Role::PreCandidate));

    // Back: the leader and the follower that hears it refuse the pre-vote.
    let pv = Message::PreVote {
        term: 2,
        last_index: 0,
        last_term: 0,
    };
    let no = Message::PreVoteReply {
        term: 1,
        granted: false,
    };
    assert_eq!(step(&mut l, msg(2, pv.clone())), vec![send(2, no.clone())]);
    assert_eq!(step(&mut f, msg(2, pv)), vec![send(2, no)]);
    // Even a real RequestVote of a higher term (no pre-vote) is ignored outright.
    let rv = Message::RequestVote {
        term: 7,
        last_index: 9,
        last_term: 1,
        transfer: false,
    };
    assert_eq!(step(&mut f, msg(2, rv.clone())), vec![]);
    assert_eq!(step(&mut l, msg(2, rv)), vec![]);
    assert_eq!((l.role(), l.term()), (Role::Leader, 1));
    assert_eq!(
        (f.role(), f.term(), f.leader()),
        (Role::Follower, 1, Some(id(0)))
    );

    // The leader's next heartbeat brings it back as a follower.
    step(&mut p, msg(0, append(1, (1, 1), vec![], 1)));
    assert_eq!((p.role(), p.leader()), (Role::Follower, Some(id(0))));
}

#[test]
fn a_follower_that_lost_its_leader_grants_pre_votes_after_its_timeout() {
    let mut f = replica(1, 3);
    step(&mut f, msg(0, append(1, (0, 0), vec![], 0)));
    step(&mut f, Input::Persisted(1));
    let pv = Message::PreVote {
        term: 2,
        last_index: 0,
        last_term: 0,
    };
    let refused = step(&mut f, msg(2, pv.clone()));
    assert_eq!(
        refused,
        vec![send(
            2,
            Message::PreVoteReply {
                term: 1,
                granted: false
            }
        )]
    );
    step(&mut f, Input::Timer(ELECTION_TIMER));
    let granted = Message::PreVoteReply {
        term: 2,
        granted: true,
    };
    assert_eq!(step(&mut f, msg(2, pv)), vec![send(2, granted)]);
}

#[test]
fn a_leader_that_loses_its_quorum_steps_down() {
    let mut l = replica(0, 3);
    elect(&mut l, 3);
    // A period with a reply from one follower (a majority with the leader): it stays.
    step(&mut l, msg(2, reply(1, true, 1)));
    let out = l.handle(0, Input::Timer(ELECTION_TIMER));
    assert_eq!(
        out,
        vec![Action::SetTimer {
            id: ELECTION_TIMER,
            after_ms: T
        }]
    );
    assert_eq!(l.role(), Role::Leader);
    // A period without any reply: it steps down, keeping its term, and says nothing.
    let out = step(&mut l, Input::Timer(ELECTION_TIMER));
    assert_eq!(out, vec![election()]);
    assert_eq!((l.role(), l.term(), l.leader()), (Role::Follower, 1, None));
    assert_eq!(l.stats().stepped_down, 1);
    // Its stale heartbeat timer does nothing.
    assert_eq!(step(&mut l, Input::Timer(HEARTBEAT_TIMER)), vec![]);
}

// ---- replication and commit -----------------------------------------------------------

#[test]
fn no_entry_of_an_earlier_term_is_committed_by_counting() {
    // Figure 8: the leader of term 4 holds an entry of term 2 at index 2.
    let old = [entry(1, 1, 0, vec![]), entry(2, 2, 0, vec![d(2)])];
    let mut l = with_log(0, 3, 3, &old);
    let out = elect(&mut l, 3);
    let noop = entry(4, 3, 0, vec![]);
    let to_peer = append(4, (2, 2), vec![noop.clone()], 0);
    assert_eq!(
        out,
        vec![
            election(),
            Action::SetTimer {
                id: HEARTBEAT_TIMER,
                after_ms: HB
            },
            persist(2, log_write(2, std::slice::from_ref(&noop))),
            send(1, to_peer.clone()),
            send(2, to_peer),
        ]
    );
    assert_eq!(l.term(), 4);
    // A majority (leader + follower 1) holds index 2, of term 2: not committed by counting.
    assert_eq!(step(&mut l, msg(1, reply(4, true, 2))), vec![]);
    assert_eq!(l.commit_index(), 0);
    // Once the term-4 entry is on a majority, everything up to it commits, in order.
    let out = step(&mut l, msg(1, reply(4, true, 3)));
    let hb = |to| send(to, append(4, (3, 4), vec![], 3));
    assert_eq!(
        out,
        vec![
            committed(&old[0]),
            committed(&old[1]),
            committed(&noop),
            hb(1),
            hb(2)
        ]
    );
    assert_eq!(l.commit_index(), 3);
    // Exactly once.
    assert_eq!(step(&mut l, msg(2, reply(4, true, 3))), vec![]);
}

#[test]
fn a_leader_counts_itself_only_for_durable_entries() {
    let mut l = replica(0, 3);
    let out = elect(&mut l, 3);
    let noop = entry(1, 1, 0, vec![]);
    assert!(out.contains(&persist(2, log_write(0, std::slice::from_ref(&noop)))));
    // `elect` acknowledged the no-op; a new batch is not acknowledged yet.
    let e = entry(1, 2, 0, vec![d(1)]);
    let out = step(&mut l, Input::Payload(d(1)));
    let a = |to| send(to, append(1, (1, 1), vec![e.clone()], 0));
    assert_eq!(
        out,
        vec![
            persist(3, log_write(1, std::slice::from_ref(&e))),
            a(1),
            a(2)
        ]
    );
    // One follower has both: a majority only if the leader's copy were durable.
    let out = step(&mut l, msg(1, reply(1, true, 2)));
    let hb = |to, prev| send(to, append(1, prev, vec![], 1));
    assert_eq!(out, vec![committed(&noop), hb(1, (2, 1)), hb(2, (2, 1))]);
    assert_eq!(l.commit_index(), 1);
    let out = step(&mut l, Input::Persisted(3));
    assert_eq!(out[0], committed(&e));
    assert_eq!(l.commit_index(), 2);
}

#[test]
fn batches_wait_for_the_previous_write_and_appends_are_pipelined() {
    let mut l = replica(0, 3);
    elect(&mut l, 3);
    let e2 = entry(1, 2, 0, vec![d(1)]);
    let out = step(&mut l, Input::Payload(d(1)));
    let a2 = |to| send(to, append(1, (1, 1), vec![e2.clone()], 0));
    assert_eq!(
        out,
        vec![
            persist(3, log_write(1, std::slice::from_ref(&e2))),
            a2(1),
            a2(2)
        ]
    );
    // While that write is in flight, new digests queue (deduplicated)...
    for i in [2, 3, 2, 4, 5, 6] {
        assert_eq!(step(&mut l, Input::Payload(d(i))), vec![]);
    }
    assert_eq!(l.pending_payload(), vec![d(2), d(3), d(4), d(5), d(6)]);
    // ... and are cut into entries of at most `max_payload` when it is acknowledged. Each
    // follower has two Appends in flight (no-op, e2): the limit, so nothing is sent.
    let e3 = entry(1, 3, 0, vec![d(2), d(3), d(4), d(5)]);
    let e4 = entry(1, 4, 0, vec![d(6)]);
    let out = step(&mut l, Input::Persisted(3));
    assert_eq!(
        out,
        vec![persist(4, log_write(2, &[e3.clone(), e4.clone()]))]
    );
    assert_eq!(l.pending_payload(), vec![]);
    // A reply frees a slot: the next Append batches everything the follower lacks.
    let out = step(&mut l, msg(1, reply(1, true, 1)));
    let commit_hb = |to, prev| send(to, append(1, prev, vec![], 1));
    assert_eq!(
        out,
        vec![
            committed(&entry(1, 1, 0, vec![])),
            send(1, append(1, (2, 1), vec![e3, e4], 1)),
            commit_hb(2, (2, 1)),
        ]
    );
}

#[test]
fn a_rejected_append_is_retried_from_the_hint() {
    let mut l = with_log(0, 3, 1, &[entry(1, 1, 0, vec![]), entry(1, 2, 0, vec![])]);
    elect(&mut l, 3);
    // Follower 2 has nothing: it answers with its last index, 0.
    let out = step(&mut l, msg(2, reply(2, false, 0)));
    let all = vec![
        entry(1, 1, 0, vec![]),
        entry(1, 2, 0, vec![]),
        entry(2, 3, 0, vec![]),
    ];
    assert_eq!(out, vec![send(2, append(2, (0, 0), all, 0))]);
    // A hint below what is known to match is not believed.
    step(&mut l, msg(1, reply(2, true, 3)));
    let out = step(&mut l, msg(1, reply(2, false, 0)));
    assert_eq!(out, vec![]);
}

// ---- the follower side ----------------------------------------------------------------

#[test]
fn an_append_reply_is_held_until_the_entries_and_term_are_durable() {
    let mut f = replica(1, 3);
    let e = [entry(1, 1, 0, vec![d(1)]), entry(1, 2, 0, vec![])];
    step(&mut f, Input::Payload(d(1)));
    step(&mut f, Input::Payload(d(2)));
    let out = step(&mut f, msg(0, append(1, (0, 0), e.to_vec(), 1)));
    assert_eq!(
        out,
        vec![
            persist(1, hard(1, None)),
            election(),
            persist(2, log_write(0, &e)),
            committed(&e[0])
        ]
    );
    assert_eq!(
        f.pending_payload(),
        vec![d(2)],
        "digests in the log are no longer pending"
    );
    assert_eq!(step(&mut f, Input::Persisted(1)), vec![]);
    assert_eq!(
        step(&mut f, Input::Persisted(2)),
        vec![send(0, reply(1, true, 2))]
    );
    // A repeated Append of durable entries is answered at once.
    let out = step(&mut f, msg(0, append(1, (0, 0), e.to_vec(), 1)));
    assert_eq!(out, vec![election(), send(0, reply(1, true, 2))]);
    // One whose entries are not durable yet waits for them.
    let e3 = entry(1, 3, 0, vec![]);
    step(&mut f, msg(0, append(1, (2, 1), vec![e3.clone()], 1)));
    let out = step(&mut f, msg(0, append(1, (2, 1), vec![e3], 1)));
    assert_eq!(out, vec![election()]);
    assert_eq!(
        step(&mut f, Input::Persisted(3)),
        vec![send(0, reply(1, true, 3)), send(0, reply(1, true, 3))]
    );
}

#[test]
fn conflicting_entries_are_truncated_but_never_at_or_below_the_commit_index() {
    let mut f = replica(1, 3);
    let old = [
        entry(1, 1, 0, vec![]),
        entry(1, 2, 0, vec![d(2)]),
        entry(1, 3, 0, vec![d(3)]),
    ];
    step(&mut f, msg(0, append(1, (0, 0), old.to_vec(), 1)));
    assert_eq!((f.last_index(), f.commit_index()), (3, 1));
    // A leader of term 2 whose log has a different entry 2: rejected with a hint that
    // skips the whole conflicting term (down to the commit index).
    let out = step(&mut f, msg(2, append(2, (2, 2), vec![], 1)));
    assert_eq!(out, vec![persist(3, hard(2, None)), election(),]);
    let out = step(&mut f, Input::Persisted(3));
    assert_eq!(
        out,
        vec![send(0, reply(1, true, 3)), send(2, reply(2, false, 1))]
    );
    let new2 = entry(2, 2, 2, vec![]);
    let out = step(&mut f, msg(2, append(2, (1, 1), vec![new2.clone()], 1)));
    assert_eq!(
        out,
        vec![
            election(),
            persist(4, log_write(1, std::slice::from_ref(&new2)))
        ]
    );
    assert_eq!((f.last_index(), f.term_at(2)), (2, Some(2)));
    assert_eq!(
        f.pending_payload(),
        vec![d(2), d(3)],
        "truncated batches are pending again"
    );
    // An Append that would replace the committed entry 1 is ignored.
    let ignored = f.stats().ignored;
    let bad = entry(2, 1, 2, vec![]);
    let out = step(&mut f, msg(2, append(2, (0, 0), vec![bad], 1)));
    assert_eq!(out, vec![election()]);
    assert_eq!(f.stats().ignored, ignored + 1);
    assert_eq!(f.term_at(1), Some(1));
    // And so is one that claims a different committed prev.
    let out = step(&mut f, msg(2, append(2, (1, 2), vec![], 1)));
    assert_eq!(out, vec![election()]);
    assert_eq!(f.stats().ignored, ignored + 2);
}

#[test]
fn commits_are_emitted_in_order_exactly_once() {
    let mut f = replica(1, 3);
    let e = [
        entry(1, 1, 0, vec![d(1)]),
        entry(1, 2, 0, vec![]),
        entry(1, 3, 0, vec![d(3)]),
    ];
    let out = step(&mut f, msg(0, append(1, (0, 0), e.to_vec(), 2)));
    let commits: Vec<_> = out
        .into_iter()
        .filter(|a| matches!(a, Action::Commit(_)))
        .collect();
    assert_eq!(commits, vec![committed(&e[0]), committed(&e[1])]);
    // The commit index a heartbeat carries is capped by what the heartbeat verified.
    let out = step(&mut f, msg(0, append(1, (2, 1), vec![], 3)));
    assert!(!out.iter().any(|a| matches!(a, Action::Commit(_))));
    let out = step(&mut f, msg(0, append(1, (3, 1), vec![], 3)));
    assert_eq!(out[1], committed(&e[2]));
    for c in [3, 2, 1] {
        let out = step(&mut f, msg(0, append(1, (0, 0), e.to_vec(), c)));
        assert!(!out.iter().any(|a| matches!(a, Action::Commit(_))));
    }
}

#[test]
fn a_stale_leader_is_told_the_newer_term() {
    let mut f = replica(1, 3);
    step(&mut f, msg(2, append(3, (0, 0), vec![], 0)));
    let out = step(&mut f, msg(0, append(2, (0, 0), vec![], 0)));
    assert_eq!(out, vec![], "our term 3 is not durable yet");
    let out = step(&mut f, Input::Persisted(1));
    assert_eq!(
        out,
        vec![send(2, reply(3, true, 0)), send(0, reply(3, false, 0))]
    );
    let mut l = replica(0, 3);
    elect(&mut l, 3);
    let out = step(&mut l, msg(1, reply(3, false, 0)));
    assert_eq!(out, vec![persist(3, hard(3, None)), election()]);
    assert_eq!((l.role(), l.term()), (Role::Follower, 3));
}

// ---- compaction, snapshots, recovery --------------------------------------------------

#[test]
fn compaction_emits_compact_and_a_follower_behind_the_base_is_offered_a_snapshot() {
    let mut l = replica(0, 3);
    elect(&mut l, 3);
    let mut seq = 2;
    for i in 1..=6u8 {
        seq += 1;
        step(&mut l, Input::Payload(d(i)));
        step(&mut l, Input::Persisted(seq));
    }
    assert_eq!(l.last_index(), 7);
    step(&mut l, msg(1, reply(1, true, 7)));
    assert_eq!(l.commit_index(), 7);
    for h in 1..=4 {
        assert_eq!(
            step(
                &mut l,
                Input::Executed {
                    height: h,
                    state_root: d(0)
                }
            ),
            vec![]
        );
    }
    // applied − base = 5 ≥ snapshot_interval + log_keep: the base moves to 5 − 1.
    let out = step(
        &mut l,
        Input::Executed {
            height: 5,
            state_root: d(0),
        },
    );
    assert_eq!(out, vec![persist(seq + 1, Durable::Compact { before: 4 })]);
    assert_eq!(
        (l.log_base(), l.entry(4), l.last_index()),
        ((4, 1), None, 7)
    );
    assert!(l.entry(5).is_some());
    // Follower 2 never answered: its entries are gone, it is offered the snapshot once
    // per heartbeat.
    let snap = Message::InstallSnapshot {
        term: 1,
        last_index: 4,
        last_term: 1,
    };
    let out = step(&mut l, msg(2, reply(1, false, 0)));
    assert_eq!(out, vec![send(2, snap.clone())]);
    assert_eq!(
        step(&mut l, msg(2, reply(1, false, 0))),
        vec![],
        "once per heartbeat"
    );
    let out = step(&mut l, Input::Timer(HEARTBEAT_TIMER));
    let hb = send(1, append(1, (7, 1), vec![], 7));
    let timer = Action::SetTimer {
        id: HEARTBEAT_TIMER,
        after_ms: HB,
    };
    assert_eq!(out, vec![timer.clone(), hb.clone(), send(2, snap.clone())]);
    assert_eq!(step(&mut l, msg(2, reply(1, false, 0))), vec![]);
    assert_eq!(l.stats().snapshots_offered, 2);
    // Never compacts above what was executed, nor executes beyond the commit index.
    assert_eq!(
        step(
            &mut l,
            Input::Executed {
                height: 99,
                state_root: d(0)
            }
        ),
        vec![]
    );
    assert_eq!(l.log_base(), (4, 1));

    // The follower: behind the snapshot point it waits for its node to fetch...
    let mut f = replica(2, 3);
    assert_eq!(
        step(&mut f, msg(0, snap.clone())),
        vec![persist(1, hard(1, None)), election()]
    );
    // ... and once restarted from a ledger at the snapshot point, points the leader at
    // its log.
    let rec = Recovered {
        hard_state: Some(
            HardState {
                term: 1,
                voted_for: None,
            }
            .encode(),
        ),
        applied: 5,
        applied_entry: Some(l.entry(5).unwrap().encode()),
        entries: vec![],
        config: None,
    };
    let mut f = recovered(2, 3, rec);
    assert_eq!((f.log_base(), f.commit_index()), ((5, 1), 5));
    assert_eq!(
        step(&mut f, msg(0, snap)),
        vec![election(), send(0, reply(1, false, 5))]
    );
    // An Append reaching below its base is checked from the base.
    let e6 = l.entry(6).unwrap().clone();
    let out = step(
        &mut f,
        msg(
            0,
            append(1, (4, 1), vec![l.entry(5).unwrap().clone(), e6.clone()], 5),
        ),
    );
    assert_eq!(out, vec![election(), persist(1, log_write(5, &[e6]))]);
}

#[test]
fn recovery_keeps_or_discards_stored_entries() {
    let e: Vec<Entry> = (1..=5)
        .map(|i| entry(if i < 3 { 1 } else { 2 }, i, 0, vec![]))
        .collect();
    let enc = |es: &[Entry]| es.iter().map(Entry::encode).collect::<Vec<_>>();
    let rec = |applied: u64, applied_entry: Option<&Entry>, entries: Vec<Vec<u8>>| Recovered {
        hard_state: Some(
            HardState {
                term: 2,
                voted_for: Some(id(0)),
            }
            .encode(),
        ),
        applied,
        applied_entry: applied_entry.map(Entry::encode),
        entries,
        config: None,
    };
    let state = |r: &Raft| (r.log_base(), r.last_index(), r.commit_index());
    // Never compacted, entries above `applied` kept (they may be committed elsewhere).
    let r = Raft::new(config(1, 3), rec(2, Some(&e[1]), enc(&e))).unwrap();
    assert_eq!(state(&r), ((0, 0), 5, 2));
    assert_eq!(
        r.hard_state(),
        HardState {
            term: 2,
            voted_for: Some(id(0))
        }
    );
    // Compacted before 2: the first stored entry is the base.
    let r = Raft::new(config(1, 3), rec(3, Some(&e[2]), enc(&e[1..]))).unwrap();
    assert_eq!(state(&r), ((2, 1), 5, 3));
    // The applied entry stored with another term, or a gap: discarded.
    let other = entry(1, 3, 1, vec![d(9)]);
    let r = Raft::new(config(1, 3), rec(3, Some(&other), enc(&e))).unwrap();
    assert_eq!(state(&r), ((3, 1), 3, 3));
    // Entries right after the applied one (written after a snapshot install, which keeps no
    // entry at the snapshot point): kept, they may have been acknowledged.
    let r = Raft::new(config(1, 3), rec(3, Some(&e[2]), enc(&e[3..]))).unwrap();
    assert_eq!(state(&r), ((3, 2), 5, 3));
    // ... but not if they start one further up.
    let r = Raft::new(config(1, 3), rec(3, Some(&e[2]), enc(&e[4..]))).unwrap();
    assert_eq!(state(&r), ((3, 2), 3, 3));
    let gap = [e[0].clone(), e[1].clone(), e[3].clone()];
    let r = Raft::new(config(1, 3), rec(2, Some(&e[1]), enc(&gap))).unwrap();
    assert_eq!(state(&r), ((2, 1), 2, 2));
    // A fresh ledger keeps a log starting at 1, not one starting elsewhere.
    let r = Raft::new(config(1, 3), rec(0, None, enc(&e))).unwrap();
    assert_eq!(state(&r), ((0, 0), 5, 0));
    let r = Raft::new(config(1, 3), rec(0, None, enc(&e[2..]))).unwrap();
    assert_eq!(state(&r), ((0, 0), 0, 0));
    // Undecodable data: the replica must not start.
    let mut bad = rec(2, Some(&e[1]), enc(&e));
    bad.hard_state = Some(vec![0xff]);
    assert!(Raft::new(config(1, 3), bad).is_err());
    let bad = rec(2, Some(&e[1]), vec![vec![1, 2, 3]]);
    assert!(Raft::new(config(1, 3), bad).is_err());
    let bad = rec(2, Some(&e[3]), enc(&e));
    assert!(
        Raft::new(config(1, 3), bad).is_err(),
        "applied entry at another height"
    );
    // A recovered replica starts as a follower, commits nothing already applied.
    let mut r = Raft::new(config(1, 3), rec(2, Some(&e[1]), enc(&e))).unwrap();
    assert_eq!(norm(r.start(0)), vec![election()]);
    assert_eq!(r.role(), Role::Follower);
    let out = step(&mut r, msg(0, append(2, (5, 2), vec![], 4)));
    let commits: Vec<_> = out
        .into_iter()
        .filter(|a| matches!(a, Action::Commit(_)))
        .collect();
    assert_eq!(commits, vec![committed(&e[2]), committed(&e[3])]);
}

// ---- robustness -----------------------------------------------------------------------

#[test]
fn garbage_inputs_do_not_panic() {
    let big = u64::MAX;
    let e = entry(1, 1, 0, vec![]);
    let msgs = vec![
        Message::PreVote {
            term: big,
            last_index: big,
            last_term: big,
        },
        Message::PreVoteReply {
            term: big,
            granted: true,
        },
        Message::RequestVote {
            term: big - 1,
            last_index: big,
            last_term: big,
            transfer: false,
        },
        Message::VoteReply {
            term: 1,
            granted: true,
        },
        Message::AppendReply {
            term: 1,
            success: true,
            index: big,
            read_round: 0,
        },
        Message::AppendReply {
            term: 1,
            success: false,
            index: big,
            read_round: 0,
        },
        Message::AppendReply {
            term: 0,
            success: true,
            index: 0,
            read_round: 0,
        },
        append(1, (big, big), vec![], big),
        append(
            1,
            (big - 1, 1),
            vec![Entry {
                index: big,
                ..e.clone()
            }],
            big,
        ),
        append(
            1,
            (0, 0),
            vec![Entry {
                index: 5,
                ..e.clone()
            }],
            3,
        ),
        append(
            1,
            (0, 0),
            vec![Entry {
                term: 9,
                ..e.clone()
            }],
            3,
        ),
        append(1, (0, 0), vec![e.clone(); 300], 3),
        append(1, (0, 0), vec![e.clone(), e.clone()], 3),
        append(0, (0, 0), vec![], 0),
        Message::InstallSnapshot {
            term: 1,
            last_index: big,
            last_term: big,
        },
        Message::InstallSnapshot {
            term: big,
            last_index: 0,
            last_term: 0,
        },
        append(big, (0, 0), vec![e.clone()], big),
        Message::RequestVote {
            term: big,
            last_index: big,
            last_term: big,
            transfer: false,
        },
    ];
    for n in [1u16, 3, 5] {
        for setup in 0..3 {
            let mut r = replica(0, n);
            match setup {
                0 => {}
                1 => {
                    elect(&mut r, n);
                }
                _ => {
                    r.handle(0, Input::Timer(ELECTION_TIMER));
                }
            }
            for from in [0u16, 1, 4, 99, u16::MAX] {
                for m in &msgs {
                    r.handle(0, msg(from, m.clone()));
                }
            }
            for input in [
                Input::Persisted(big),
                Input::Persisted(0),
                Input::Executed {
                    height: big,
                    state_root: d(0),
                },
                Input::Timer(77),
                Input::Timer(HEARTBEAT_TIMER),
                Input::Timer(ELECTION_TIMER),
                Input::Payload(d(1)),
            ] {
                r.handle(0, input);
            }
            assert!(r.stats().ignored > 0);
        }
    }
}

// ---- a tiny cluster -------------------------------------------------------------------

/// A seeded in-test cluster: random latencies and drops, the leader cut off for a while, persists acknowledged after a delay, compaction, and snapshot installs done the
/// node's way (rebuild the core at the leader's commit). Checks one leader per term, that
/// every replica commits the same entry at each height, and that every batch commits
/// everywhere once the partition heals.
fn cluster_run(n: u16, seed: u64) {
    use std::cmp::Reverse;
    use std::collections::{BTreeMap, BinaryHeap};
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Ev {
        Deliver(u16, u16, Vec<u8>),
        Timer(u16, u64, u64),
        Ack(u16, u64, u64),
        Payload(u8),
    }
    let mut rng = super::core::SplitMix64(seed);
    let cfg = |i: u16| Config {
        election_timeout_ms: 300,
        heartbeat_ms: 50,
        seed,
        ..config(i, n)
    };
    let mut nodes: Vec<Raft> = (0..n)
        .map(|i| Raft::new(cfg(i), Recovered::default()).unwrap())
        .collect();
    let mut incarnation = vec![0u64; n as usize];
    let mut timers: BTreeMap<(u16, u64), u64> = BTreeMap::new();
    let mut generation = 0u64;
    let mut q: BinaryHeap<Reverse<(u64, u64, Ev)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut push = |q: &mut BinaryHeap<Reverse<(u64, u64, Ev)>>, at: u64, ev: Ev| {
        order += 1;
        q.push(Reverse((at, order, ev)));
    };
    let mut chains: Vec<Vec<Committed>> = vec![Vec::new(); n as usize];
    let mut by_height: BTreeMap<u64, Digest> = BTreeMap::new();
    let mut leaders: BTreeMap<u64, u16> = BTreeMap::new();
    let mut ack_at = vec![0u64; n as usize];
    // The leader at 3 s is cut off until 8 s.
    let mut cut: Option<u16> = None;
    let partitioned = |cut: Option<u16>, t: u64, a: u16, b: u16| {
        (3_000..8_000).contains(&t) && (Some(a) == cut || Some(b) == cut)
    };
    for i in 0..40u8 {
        push(&mut q, 500 + u64::from(i) * 150, Ev::Payload(i));
    }
    let mut pending: Vec<(u16, Vec<Action<Message>>)> =
        (0..n).map(|i| (i, nodes[i as usize].start(0))).collect();
    let mut now = 0u64;
    loop {
        for (i, actions) in pending.drain(..) {
            let iu = i as usize;
            if nodes[iu].role() == Role::Leader {
                let l = *leaders.entry(nodes[iu].term()).or_insert(i);
                assert_eq!(l, i, "two leaders in term {}", nodes[iu].term());
            }
            for a in actions {
                match a {
                    Action::Send { to, msg } => {
                        let lat = 1 + rng.next() % 20;
                        if !rng.next().is_multiple_of(20) && !partitioned(cut, now, i, to.0) {
                            push(&mut q, now + lat, Ev::Deliver(i, to.0, msg.encode()));
                        }
                    }
                    Action::Broadcast { msg } => {
                        for to in (0..n).filter(|j| *j != i) {
                            let lat = 1 + rng.next() % 20;
                            if !rng.next().is_multiple_of(20) && !partitioned(cut, now, i, to) {
                                push(&mut q, now + lat, Ev::Deliver(i, to, msg.encode()));
                            }
                        }
                    }
                    Action::Persist { seq, .. } => {
                        ack_at[iu] = ack_at[iu].max(now + rng.next() % 6);
                        push(&mut q, ack_at[iu], Ev::Ack(i, incarnation[iu], seq));
                    }
                    Action::Commit(c) => {
                        let h = chains[iu].len() as u64 + 1;
                        assert_eq!(*by_height.entry(h).or_insert(c.id), c.id, "height {h}");
                        chains[iu].push(c);
                    }
                    Action::SetTimer { id, after_ms } => {
                        generation += 1;
                        timers.insert((i, id), generation);
                        push(&mut q, now + after_ms, Ev::Timer(i, id, generation));
                    }
                    Action::ReadReady { .. } | Action::ReadFailed { .. } => {
                        unreachable!("no reads asked")
                    }
                }
            }
        }
        let Some(Reverse((t, _, ev))) = q.pop() else {
            break;
        };
        now = t;
        if now >= 3_000 && cut.is_none() {
            cut = nodes
                .iter()
                .position(|r| r.role() == Role::Leader)
                .map(|i| i as u16);
            assert!(cut.is_some(), "a leader by 3 s");
        }
        if now > 20_000 {
            break;
        }
        let (i, input) = match ev {
            Ev::Deliver(from, to, bytes) => {
                let msg = Message::decode(&bytes).unwrap();
                if let Message::InstallSnapshot { .. } = msg {
                    // The node fetches the leader's ledger state and rebuilds its core.
                    let leader = &nodes[from as usize];
                    let height = leader.commit_index();
                    if height > chains[to as usize].len() as u64 && leader.entry(height).is_some() {
                        let rec = Recovered {
                            hard_state: Some(nodes[to as usize].hard_state().encode()),
                            applied: height,
                            applied_entry: Some(leader.entry(height).unwrap().encode()),
                            entries: Vec::new(),
                            config: None,
                        };
                        chains[to as usize] = chains[from as usize][..height as usize].to_vec();
                        incarnation[to as usize] += 1;
                        ack_at[to as usize] = now;
                        let mut r = Raft::new(cfg(to), rec).unwrap();
                        let out = r.start(now);
                        nodes[to as usize] = r;
                        pending.push((to, out));
                        continue;
                    }
                }
                (
                    to,
                    Input::Message {
                        from: id(from),
                        msg,
                    },
                )
            }
            Ev::Timer(i, tid, g) if timers.get(&(i, tid)) == Some(&g) => (i, Input::Timer(tid)),
            Ev::Timer(..) => continue,
            Ev::Ack(i, inc, seq) if inc == incarnation[i as usize] => (i, Input::Persisted(seq)),
            Ev::Ack(..) => continue,
            Ev::Payload(b) => {
                for j in 0..n {
                    let out = nodes[j as usize].handle(now, Input::Payload(d(b)));
                    pending.push((j, out));
                }
                continue;
            }
        };
        let out = nodes[i as usize].handle(now, input);
        pending.push((i, out));
        // The ledger executes what committed (compaction follows).
        let r = &mut nodes[i as usize];
        let executed = chains[i as usize].len() as u64;
        let out = r.handle(
            now,
            Input::Executed {
                height: executed,
                state_root: d(0),
            },
        );
        pending.push((i, out));
    }
    for (i, r) in nodes.iter().enumerate() {
        assert_eq!(chains[i].len() as u64, r.commit_index(), "replica {i}");
        assert!(r.log_len() < 64, "replica {i}: the log is compacted");
        assert_eq!(
            r.held(),
            0,
            "replica {i}: nothing held once the persists are acknowledged"
        );
        // Every batch committed, once.
        let mut got: Vec<Digest> = chains[i].iter().flat_map(|c| c.payload.clone()).collect();
        got.sort();
        let mut want: Vec<Digest> = (0..40).map(d).collect();
        want.sort();
        assert_eq!(got, want, "replica {i} (n={n}, seed={seed})");
    }
    assert!(
        leaders.len() >= 2,
        "a new leader while the old one was cut off"
    );
}

#[test]
fn cluster_agrees_and_catches_up_after_a_partition() {
    for seed in 0..6 {
        cluster_run(3, seed);
        cluster_run(5, seed);
    }
}

// ---- linearizable reads (ReadIndex) ----------------------------------------------------

fn reads_of(actions: &[Action<Message>]) -> Vec<Action<Message>> {
    actions
        .iter()
        .filter(|a| matches!(a, Action::ReadReady { .. } | Action::ReadFailed { .. }))
        .cloned()
        .collect()
}
/// The `read_round` of every Append in `actions`, by receiver.
fn rounds_sent(actions: &[Action<Message>]) -> Vec<(u16, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                to,
                msg: Message::Append { read_round, .. },
            } => Some((to.0, *read_round)),
            _ => None,
        })
        .collect()
}
fn echo(term: u64, index: u64, round: u64) -> Message {
    Message::AppendReply {
        term,
        success: true,
        index,
        read_round: round,
    }
}
/// Replica 0 of 3, elected in term 1, its no-op (index 1) committed by replica 1.
fn leader_with_own_commit() -> Raft {
    let mut r = replica(0, 3);
    elect(&mut r, 3);
    let out = step(&mut r, msg(1, echo(1, 1, 0)));
    assert_eq!(r.commit_index(), 1, "{out:?}");
    r
}

#[test]
fn a_read_waits_for_the_leaders_first_commit_then_for_a_majority_to_echo_its_round() {
    let mut r = replica(0, 3);
    elect(&mut r, 3);
    // Elected, its no-op not committed: the commit index may still be below what an
    // earlier leader committed. Nothing is answered, no round starts.
    let out = step(&mut r, Input::Read(7));
    assert_eq!((reads_of(&out), rounds_sent(&out)), (vec![], vec![]));
    // Replica 1 stores the no-op (an echo of round 0: it confirms no read). The commit
    // starts round 1: an Append carrying it goes to each follower.
    let out = step(&mut r, msg(1, echo(1, 1, 0)));
    assert_eq!(reads_of(&out), vec![]);
    assert_eq!(rounds_sent(&out), vec![(1, 1), (2, 1)], "{out:?}");
    // A reply echoing round 1 makes a majority with the leader: the read is ready at the
    // commit index.
    let out = step(&mut r, msg(2, echo(1, 1, 1)));
    assert_eq!(reads_of(&out), vec![Action::ReadReady { id: 7, index: 1 }]);
    assert_eq!(r.open_reads(), 0);
}

#[test]
fn reads_arriving_during_a_round_share_the_next_one_and_old_echoes_confirm_nothing() {
    let mut r = leader_with_own_commit();
    let out = step(&mut r, Input::Read(1));
    assert_eq!(rounds_sent(&out), vec![(1, 1), (2, 1)]);
    // Two more reads while round 1 is out: they may not join it (its heartbeats left
    // before they were asked), and no heartbeat is sent for them yet.
    for id in [2, 3] {
        let out = step(&mut r, Input::Read(id));
        assert_eq!((reads_of(&out), rounds_sent(&out)), (vec![], vec![]));
    }
    // Round 1 confirmed: read 1 ready; reads 2 and 3 start round 2 together.
    let out = step(&mut r, msg(1, echo(1, 1, 1)));
    assert_eq!(reads_of(&out), vec![Action::ReadReady { id: 1, index: 1 }]);
    assert_eq!(rounds_sent(&out).iter().filter(|(_, k)| *k == 2).count(), 2);
    // A late echo of round 1 from the other follower confirms nothing new.
    let out = step(&mut r, msg(2, echo(1, 1, 1)));
    assert_eq!(reads_of(&out), vec![]);
    // An echo of a round never started is ignored (it cannot come from a correct peer).
    let out = step(&mut r, msg(2, echo(1, 1, 99)));
    assert_eq!(reads_of(&out), vec![]);
    let out = step(&mut r, msg(2, echo(1, 1, 2)));
    assert_eq!(
        reads_of(&out),
        vec![
            Action::ReadReady { id: 2, index: 1 },
            Action::ReadReady { id: 3, index: 1 }
        ]
    );
}

#[test]
fn a_leader_that_steps_down_fails_every_read_it_holds() {
    let mut r = leader_with_own_commit();
    step(&mut r, Input::Read(1));
    step(&mut r, Input::Read(2));
    // A follower's forwarded read, queued behind round 1.
    let fwd = Message::ReadIndex { term: 1, id: 40 };
    step(&mut r, msg(2, fwd));
    // A reply from a later term: deposed.
    let out = step(&mut r, msg(1, reply(2, false, 1)));
    assert_eq!(r.role(), Role::Follower);
    assert!(out.contains(&Action::ReadFailed { id: 1 }), "{out:?}");
    assert!(out.contains(&Action::ReadFailed { id: 2 }), "{out:?}");
    assert_eq!(reads_of(&out).len(), 2, "{out:?}");
    // The follower is told, after the new term is durable.
    let out = step(&mut r, Input::Persisted(max_seq(&out)));
    let refused = Message::ReadIndexReply {
        term: 2,
        id: 40,
        index: None,
    };
    assert!(out.contains(&send(2, refused)), "{out:?}");
    assert_eq!(r.open_reads(), 0);
    // A follower without a known leader refuses at once.
    assert_eq!(
        step(&mut r, Input::Read(3)),
        vec![Action::ReadFailed { id: 3 }]
    );
}

#[test]
fn a_follower_forwards_reads_and_serves_at_the_index_its_leader_confirms() {
    let mut f = replica(1, 3);
    let out = step(&mut f, msg(0, append(1, (0, 0), vec![], 0)));
    step(&mut f, Input::Persisted(max_seq(&out)));
    assert_eq!(f.leader(), Some(id(0)));
    let out = step(&mut f, Input::Read(5));
    assert!(
        out.contains(&send(0, Message::ReadIndex { term: 1, id: 5 })),
        "{out:?}"
    );
    step(&mut f, Input::Read(6));
    // The leader's index: ready (the driver serves it once it applied 3).
    let ok = Message::ReadIndexReply {
        term: 1,
        id: 5,
        index: Some(3),
    };
    assert_eq!(
        step(&mut f, msg(0, ok.clone())),
        vec![Action::ReadReady { id: 5, index: 3 }]
    );
    // A duplicate answer, or one for a read never asked, is ignored.
    assert_eq!(step(&mut f, msg(0, ok)), vec![]);
    // An answer from another term than the one the read was forwarded in fails it.
    let other_term = Message::ReadIndexReply {
        term: 2,
        id: 6,
        index: Some(9),
    };
    let out = step(&mut f, msg(0, other_term));
    assert_eq!(reads_of(&out), vec![Action::ReadFailed { id: 6 }]);

    // The leader's side of a forwarded read: confirmed by a round, answered to the
    // follower that asked.
    let mut l = leader_with_own_commit();
    let out = step(&mut l, msg(2, Message::ReadIndex { term: 1, id: 9 }));
    assert_eq!(rounds_sent(&out), vec![(1, 1), (2, 1)]);
    let out = step(&mut l, msg(1, echo(1, 1, 1)));
    let answer = Message::ReadIndexReply {
        term: 1,
        id: 9,
        index: Some(1),
    };
    assert!(out.contains(&send(2, answer)), "{out:?}");
    // A replica that does not lead refuses a forwarded read.
    let mut g = replica(2, 3);
    let out = step(&mut g, msg(1, Message::ReadIndex { term: 0, id: 4 }));
    let refused = Message::ReadIndexReply {
        term: 0,
        id: 4,
        index: None,
    };
    assert_eq!(out, vec![send(1, refused)]);
}

#[test]
fn a_single_replica_reads_alone_and_open_reads_are_bounded() {
    let mut s = replica(0, 1);
    elect(&mut s, 1);
    // Its no-op is committed by its own durable write.
    assert_eq!(s.commit_index(), 1);
    assert_eq!(
        reads_of(&step(&mut s, Input::Read(1))),
        vec![Action::ReadReady { id: 1, index: 1 }]
    );

    // A leader refuses beyond the bound.
    let mut r = leader_with_own_commit();
    for id in 0..MAX_OPEN_READS as u64 {
        step(&mut r, Input::Read(id));
    }
    assert_eq!(r.open_reads(), MAX_OPEN_READS);
    assert_eq!(
        step(&mut r, Input::Read(u64::MAX)),
        vec![Action::ReadFailed { id: u64::MAX }]
    );
    // A follower fails its oldest forwarded read instead (its answer was likely lost).
    let mut f = replica(1, 3);
    let out = step(&mut f, msg(0, append(1, (0, 0), vec![], 0)));
    step(&mut f, Input::Persisted(max_seq(&out)));
    for id in 0..MAX_OPEN_READS as u64 {
        step(&mut f, Input::Read(id));
    }
    let out = step(&mut f, Input::Read(u64::MAX));
    assert_eq!(reads_of(&out), vec![Action::ReadFailed { id: 0 }]);
    assert_eq!(f.open_reads(), MAX_OPEN_READS);
}

#[test]
fn negative_control_unsafe_stale_reads_answers_without_a_round() {
    let mut r = leader_with_own_commit();
    r.set_unsafe_stale_reads(true);
    let out = step(&mut r, Input::Read(1));
    assert_eq!(reads_of(&out), vec![Action::ReadReady { id: 1, index: 1 }]);
    assert_eq!(rounds_sent(&out), vec![]);
}

/// A digest offered again after its entry was stored (a late batch offer) is dropped from
/// the pending payload when that entry commits, so no later leader term proposes it twice.
#[test]
fn a_digest_offered_again_leaves_pending_when_its_entry_commits() {
    let mut f = replica(1, 3);
    let e = [entry(1, 1, 0, vec![d(1)])];
    step(&mut f, msg(0, append(1, (0, 0), e.to_vec(), 0)));
    assert_eq!(f.pending_payload(), vec![]);
    // The batch arrives (again) after its entry is in the log: pending once more.
    step(&mut f, Input::Payload(d(1)));
    step(&mut f, Input::Payload(d(2)));
    assert_eq!(f.pending_payload(), vec![d(1), d(2)]);
    // The entry commits: its digest is gone, the other stays.
    let out = step(&mut f, msg(0, append(1, (1, 1), vec![], 1)));
    assert!(out.contains(&committed(&e[0])), "{out:?}");
    assert_eq!(f.pending_payload(), vec![d(2)]);
}
