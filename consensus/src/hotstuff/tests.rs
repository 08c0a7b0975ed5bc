//! Exact-action unit tests of the HotStuff core.

use super::*;
use crate::core::{Action, Core, Durable, Input};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey};

const BASE: u64 = 1000;
const MAX: u64 = 8000;

fn key(i: u16) -> SecretKey {
    SecretKey::from_seed([i as u8 + 1; 32])
}
/// Replica `i`'s vote for `block` in `view`, signed over the genesis anchor.
fn vote_of(block: Digest, view: u64, i: u16) -> Vote {
    Vote::new(&genesis(), block, View(view), ReplicaId(i), &key(i))
}

fn genesis() -> Digest {
    crypto::hash(b"genesis")
}
fn committee() -> Committee {
    Committee::bft((0..4).map(|i| key(i).public()).collect()).unwrap()
}
fn config(i: u16) -> Config {
    Config {
        me: ReplicaId(i),
        key: key(i),
        committee: committee(),
        genesis: genesis(),
        base_timeout_ms: BASE,
        max_timeout_ms: MAX,
        max_payload: 10,
        idle_block_ms: 0,
    }
}
/// A replica whose empty proposals wait 50 ms for a batch.
fn idle_replica(i: u16) -> HotStuff {
    let cfg = Config {
        idle_block_ms: 50,
        ..config(i)
    };
    HotStuff::new(cfg, Recovered::default()).unwrap()
}
fn replica(i: u16) -> HotStuff {
    HotStuff::new(config(i), Recovered::default()).unwrap()
}
fn gqc() -> QuorumCert {
    QuorumCert::genesis(genesis())
}
fn block(view: u64, justify: QuorumCert, payload: Vec<Digest>) -> Block {
    Block {
        view: View(view),
        justify,
        proposer: committee().leader(View(view)),
        timestamp_ms: view * 10,
        payload,
    }
}
fn qc(b: &Block, signers: &[u16]) -> QuorumCert {
    QuorumCert {
        block: b.id(),
        view: b.view,
        votes: signers
            .iter()
            .map(|i| {
                (
                    ReplicaId(*i),
                    Vote::new(&genesis(), b.id(), b.view, ReplicaId(*i), &key(*i)).signature,
                )
            })
            .collect(),
    }
}
fn propose(b: &Block, tc: Option<TimeoutCert>) -> Input<Message> {
    Input::Message {
        from: b.proposer,
        msg: Message::Propose(Box::new(Proposal::new(b.clone(), tc, &key(b.proposer.0)))),
    }
}
/// A TC for `view` whose signers all hold `high` as their high QC.
fn tc_over(view: u64, high: &QuorumCert, signers: &[u16]) -> TimeoutCert {
    TimeoutCert {
        view: View(view),
        timeouts: signers
            .iter()
            .map(|i| {
                let t = Timeout::new(
                    &genesis(),
                    View(view),
                    high.clone(),
                    ReplicaId(*i),
                    &key(*i),
                );
                (ReplicaId(*i), high.view, t.signature)
            })
            .collect(),
        high_qc: high.clone(),
    }
}
/// A TC for `view` over the genesis QC.
fn tc(view: u64, signers: &[u16]) -> TimeoutCert {
    tc_over(view, &gqc(), signers)
}
fn safety_bytes(acts: &[Action<Message>]) -> Vec<u8> {
    match acts {
        [
            Action::Persist {
                what: Durable::Safety(b),
                ..
            },
        ] => b.clone(),
        other => panic!("expected exactly one safety persist, got {other:?}"),
    }
}
fn commits(acts: &[Action<Message>]) -> Vec<(View, Digest)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Commit(c) => Some((c.view, c.id)),
            _ => None,
        })
        .collect()
}

#[test]
fn vote_is_held_until_its_persist_is_acknowledged() {
    let mut r = replica(0);
    let b1 = block(1, gqc(), vec![]);
    let acts = r.handle(0, propose(&b1, None));
    let vote = vote_of(b1.id(), 1, 0);
    let expected = SafetyData {
        last_voted_view: View(1),
        last_vote: Some(vote.clone()),
        blocks: vec![b1.clone()],
        ..SafetyData::default()
    };
    assert_eq!(
        acts,
        vec![Action::Persist {
            seq: 1,
            what: Durable::Safety(expected.encode())
        }]
    );
    assert_eq!(r.held(), 1);
    // A different sequence number releases nothing.
    assert_eq!(r.handle(0, Input::Persisted(7)), vec![]);
    // The vote goes to the next view's leader (replica 2) only now.
    assert_eq!(
        r.handle(0, Input::Persisted(1)),
        vec![Action::Send {
            to: ReplicaId(2),
            msg: Message::Vote(vote)
        }]
    );
    assert_eq!(r.handle(0, Input::Persisted(1)), vec![], "released once");
}

#[test]
fn one_vote_per_view_even_for_an_equivocating_leader() {
    let mut r = replica(0);
    let a = block(1, gqc(), vec![Digest([1; 32])]);
    let b = block(1, gqc(), vec![Digest([2; 32])]);
    assert_eq!(r.handle(0, propose(&a, None)).len(), 1);
    r.handle(0, Input::Persisted(1));
    assert_eq!(
        r.handle(0, propose(&b, None)),
        vec![],
        "no vote for the second block"
    );
    assert_eq!(r.stats().equivocations, 1);

    // The same holds after a restart from the persisted record.
    let mut r2 = replica(0);
    let bytes = safety_bytes(&r2.handle(0, propose(&a, None)));
    let mut restarted = HotStuff::new(
        config(0),
        Recovered {
            safety: Some(bytes),
            committed: None,
            history: vec![],
        },
    )
    .unwrap();
    // Asked again for the block it voted for, it returns the very same vote, at once: the
    // record it was loaded from is durable, so no new persist is needed.
    let again = restarted.handle(0, propose(&a, None));
    assert_eq!(
        again,
        vec![Action::Send {
            to: ReplicaId(2),
            msg: Message::Vote(vote_of(a.id(), 1, 0))
        }]
    );
    // A fresh core on the same record refuses the other block even when it sees it first.
    let bytes = safety_bytes(&replica(0).handle(0, propose(&a, None)));
    let mut fresh = HotStuff::new(
        config(0),
        Recovered {
            safety: Some(bytes),
            committed: None,
            history: vec![],
        },
    )
    .unwrap();
    assert_eq!(fresh.handle(0, propose(&b, None)), vec![]);
    assert_eq!(
        fresh.safety_data().last_vote.as_ref().unwrap().block,
        a.id()
    );
}

#[test]
fn qc_needs_quorum_of_distinct_valid_signers() {
    let c = committee();
    let b1 = block(1, gqc(), vec![]);
    assert_eq!(qc(&b1, &[0, 1, 2]).verify(&c, &genesis()), Ok(()));
    assert_eq!(
        qc(&b1, &[0, 1]).verify(&c, &genesis()),
        Err(Invalid::NoQuorum { got: 2, need: 3 })
    );
    let mut dup = qc(&b1, &[0, 1]);
    dup.votes.push(dup.votes[1]);
    assert_eq!(dup.verify(&c, &genesis()), Err(Invalid::Unsorted));
    let mut bad = qc(&b1, &[0, 1, 2]);
    bad.votes[2].1 = bad.votes[0].1;
    assert_eq!(
        bad.verify(&c, &genesis()),
        Err(Invalid::BadSignature(ReplicaId(2)))
    );
    let mut unknown = qc(&b1, &[0, 1, 2]);
    unknown.votes[2].0 = ReplicaId(9);
    assert_eq!(
        unknown.verify(&c, &genesis()),
        Err(Invalid::UnknownReplica(ReplicaId(9)))
    );

    // Through the core: a proposal justified by a 2-signer QC is ignored.
    let mut r = replica(3);
    let b2 = block(2, qc(&b1, &[0, 1]), vec![]);
    assert_eq!(r.handle(0, propose(&b2, None)), vec![]);
    assert_eq!(r.stats().invalid_messages, 1);
    assert_eq!(r.view(), View(1));
}

#[test]
fn vote_with_bad_signature_is_ignored_and_quorum_forms_from_valid_ones() {
    // Replica 2 leads view 2 and collects votes for block 1.
    let mut r = replica(2);
    let b1 = block(1, gqc(), vec![]);
    r.handle(0, propose(&b1, None));
    // Its own vote counts once its persist is acknowledged.
    assert_eq!(r.handle(0, Input::Persisted(1)), vec![]);
    let vote = |i: u16| Input::Message {
        from: ReplicaId(i),
        msg: Message::Vote(vote_of(b1.id(), 1, i)),
    };
    let mut forged = vote_of(b1.id(), 1, 3);
    forged.signature = vote_of(b1.id(), 1, 0).signature;
    assert_eq!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(3),
                msg: Message::Vote(forged)
            }
        ),
        vec![]
    );
    assert_eq!(r.stats().invalid_messages, 1);
    assert_eq!(r.handle(0, vote(0)), vec![]);
    assert_eq!(
        r.handle(0, vote(0)),
        vec![],
        "a repeated vote does not count twice"
    );
    // The third distinct valid vote completes the QC: enter view 2, arm the timer, propose.
    let acts = r.handle(0, vote(1));
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert_eq!(
        acts[0],
        Action::SetTimer {
            id: 0,
            after_ms: BASE
        }
    );
    assert!(matches!(acts[1], Action::Persist { seq: 2, .. }));
    assert_eq!(r.view(), View(2));
    assert_eq!(r.high_qc(), &qc(&b1, &[0, 1, 2]));
}

/// Delivers b1, b2, b3 to a replica and returns the commits each delivery produced.
fn commits_for(chain: &[(Block, Option<TimeoutCert>)]) -> Vec<Vec<(View, Digest)>> {
    let mut r = replica(0);
    chain
        .iter()
        .map(|(b, tc)| {
            let acts = r.handle(0, propose(b, tc.clone()));
            commits(&acts)
        })
        .collect()
}

#[test]
fn two_chain_commits_with_consecutive_views() {
    let b1 = block(1, gqc(), vec![Digest([1; 32])]);
    let b2 = block(2, qc(&b1, &[0, 1, 2]), vec![]);
    let b3 = block(3, qc(&b2, &[1, 2, 3]), vec![]);
    let got = commits_for(&[(b1.clone(), None), (b2.clone(), None), (b3.clone(), None)]);
    assert_eq!(got, vec![vec![], vec![], vec![(View(1), b1.id())]]);

    // The commit carries a certificate anyone with the genesis can check: QC(b1) and the
    // 2-chain proof (b2 in view 2 with its QC).
    let mut r = replica(0);
    r.handle(0, propose(&b1, None));
    r.handle(0, propose(&b2, None));
    let acts = r.handle(0, propose(&b3, None));
    let Some(Action::Commit(c)) = acts.iter().find(|a| matches!(a, Action::Commit(_))) else {
        panic!("no commit in {acts:?}")
    };
    let cert = CommitCertificate::decode(&c.certificate).unwrap();
    assert_eq!(cert.verify(&committee(), &genesis()), Ok(()));
    assert_eq!(cert.proof.as_ref().map(|(b, _)| b.id()), Some(b2.id()));
    let mut forged = cert.clone();
    forged.proof = Some((b3.clone(), qc(&b3, &[0, 1, 2])));
    assert!(
        forged.verify(&committee(), &genesis()).is_err(),
        "b3 is not b1's child"
    );
    let mut weak = cert;
    weak.qc.votes.pop();
    assert!(weak.verify(&committee(), &genesis()).is_err());
}

#[test]
fn no_commit_when_views_are_not_consecutive() {
    // b2 is in view 3 (view 2 timed out), so QC(b2) over QC(b1) is not a 2-chain.
    let b1 = block(1, gqc(), vec![]);
    let b2 = block(3, qc(&b1, &[0, 1, 2]), vec![]);
    let b3 = block(4, qc(&b2, &[0, 1, 2]), vec![]);
    let got = commits_for(&[
        (b1.clone(), None),
        (
            b2.clone(),
            Some(tc_over(2, &qc(&b1, &[0, 1, 2]), &[0, 1, 3])),
        ),
        (b3.clone(), None),
    ]);
    assert_eq!(got, vec![vec![], vec![], vec![]]);
    // b4 in view 5 carries QC(b3); b3 (view 4) extends QC(b2) from view 3: consecutive, so
    // b2 commits and, with it, its ancestor b1, in order. b3 waits for QC(b4).
    let b4 = block(5, qc(&b3, &[0, 1, 2]), vec![]);
    let got = commits_for(&[
        (b1.clone(), None),
        (
            b2.clone(),
            Some(tc_over(2, &qc(&b1, &[0, 1, 2]), &[0, 1, 3])),
        ),
        (b3.clone(), None),
        (b4, None),
    ]);
    assert_eq!(got[3], vec![(View(1), b1.id()), (View(3), b2.id())]);
}

#[test]
fn timeouts_form_a_tc_that_is_broadcast_and_advances_the_view() {
    let mut r = replica(3);
    let t = |i: u16| Input::Message {
        from: ReplicaId(i),
        msg: Message::Timeout(Box::new(Timeout::new(
            &genesis(),
            View(1),
            gqc(),
            ReplicaId(i),
            &key(i),
        ))),
    };
    assert_eq!(r.handle(0, t(0)), vec![]);
    // f+1 = 2 timeouts for its view: at least one correct replica gave up, so it joins
    // (persisting its own timeout first) instead of waiting for its timer.
    let joined = r.handle(0, t(1));
    assert!(
        matches!(joined.as_slice(), [Action::Persist { seq: 1, .. }]),
        "{joined:?}"
    );
    let acts = r.handle(0, t(2));
    let expected_tc = tc(1, &[0, 1, 2]);
    assert_eq!(
        acts,
        vec![
            Action::Broadcast {
                msg: Message::Tc(expected_tc)
            },
            Action::SetTimer {
                id: 0,
                after_ms: 2 * BASE
            },
        ]
    );
    assert_eq!(r.view(), View(2));
    assert_eq!(r.stats().views_by_tc, 1);
}

#[test]
fn own_timeout_is_persisted_first_and_resent_unchanged() {
    let mut r = replica(3);
    let acts = r.handle(0, Input::Timer(0));
    assert_eq!(
        acts[0],
        Action::SetTimer {
            id: 0,
            after_ms: BASE
        }
    );
    assert!(matches!(acts[1], Action::Persist { seq: 1, .. }));
    assert_eq!(acts.len(), 2);
    let t = Timeout::new(&genesis(), View(1), gqc(), ReplicaId(3), &key(3));
    let sent = r.handle(0, Input::Persisted(1));
    assert_eq!(
        sent,
        vec![Action::Broadcast {
            msg: Message::Timeout(Box::new(t.clone()))
        }]
    );
    // The timer fires again (TC not formed): the same timeout goes out again, at once.
    let again = r.handle(0, Input::Timer(0));
    assert_eq!(again[1..], sent[..]);
    assert_eq!(again.len(), 2);
    // Having timed out view 1, the replica no longer votes in it.
    assert_eq!(r.handle(0, propose(&block(1, gqc(), vec![]), None)), vec![]);
}

#[test]
fn timeout_backoff_is_capped_and_resets_on_progress() {
    let mut p = Pacemaker::new(BASE, MAX);
    let mut seen = vec![p.duration_ms()];
    for _ in 0..40 {
        p.view_ended(true);
        seen.push(p.duration_ms());
    }
    assert_eq!(&seen[..6], &[1000, 2000, 4000, 8000, 8000, 8000]);
    assert!(seen.iter().all(|d| *d <= MAX));
    p.view_ended(false);
    assert_eq!(p.duration_ms(), BASE);

    // Through the core: many TC-driven views never arm a timer above the cap.
    let mut r = replica(3);
    for v in 1..20 {
        let acts = r.handle(
            0,
            Input::Message {
                from: ReplicaId(0),
                msg: Message::Tc(tc(v, &[0, 1, 2])),
            },
        );
        for a in acts {
            if let Action::SetTimer { after_ms, .. } = a {
                assert!(after_ms <= MAX);
            }
        }
    }
    assert_eq!(r.view(), View(20));
}

#[test]
fn proposal_from_a_non_leader_is_ignored() {
    let mut r = replica(0);
    let mut b = block(1, gqc(), vec![]);
    b.proposer = ReplicaId(2); // leader of view 1 is replica 1
    let p = Proposal::new(b, None, &key(2));
    let acts = r.handle(
        0,
        Input::Message {
            from: ReplicaId(2),
            msg: Message::Propose(Box::new(p)),
        },
    );
    assert_eq!(acts, vec![]);
    assert_eq!(r.stats().invalid_messages, 1);
    assert_eq!(r.safety_data().last_voted_view, View(0));
}

#[test]
fn forged_future_certificates_move_nothing() {
    let mut r = replica(0);
    // A TC for view 100 whose third signature is by a key outside the committee.
    let mut forged_tc = tc(100, &[1, 2, 3]);
    let outsider = SecretKey::from_seed([99; 32]);
    let q = QuorumCert {
        block: Digest([0; 32]),
        view: View(0),
        votes: vec![],
    };
    forged_tc.timeouts[2].2 =
        Timeout::new(&genesis(), View(100), q, ReplicaId(3), &outsider).signature;
    assert_eq!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(1),
                msg: Message::Tc(forged_tc)
            }
        ),
        vec![]
    );
    // A proposal for view 51 with a forged QC for view 50.
    let fake_parent = block(50, gqc(), vec![]);
    let mut fake_qc = qc(&fake_parent, &[1, 2, 3]);
    fake_qc.votes[0].1 = outsider.sign(crypto::Domain::Vote, b"x");
    let b = block(51, fake_qc, vec![]);
    assert_eq!(r.handle(0, propose(&b, None)), vec![]);
    // A timeout for view 60 carrying a high QC whose votes are not for that block.
    let mut lying = qc(&fake_parent, &[1, 2, 3]);
    lying.view = View(59);
    let t = Timeout::new(&genesis(), View(60), lying, ReplicaId(1), &key(1));
    assert_eq!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(1),
                msg: Message::Timeout(Box::new(t))
            }
        ),
        vec![]
    );
    assert_eq!(r.view(), View(1));
    assert_eq!(r.stats().invalid_messages, 3);
}

#[test]
fn missing_parent_is_requested_and_the_proposal_is_voted_once_it_arrives() {
    let b1 = block(1, gqc(), vec![]);
    let b2 = block(2, qc(&b1, &[0, 1, 2]), vec![]);
    let mut r = replica(3);
    let acts = r.handle(0, propose(&b2, None));
    assert_eq!(
        acts,
        vec![
            Action::SetTimer {
                id: 0,
                after_ms: BASE
            },
            Action::Send {
                to: ReplicaId(2),
                msg: Message::SyncRequest {
                    block: b1.id(),
                    above: View(0)
                }
            }
        ]
    );
    // The leader answers from its tree.
    let mut leader = replica(2);
    leader.handle(0, propose(&b1, None));
    for i in [0, 1, 3] {
        leader.handle(
            0,
            Input::Message {
                from: ReplicaId(i),
                msg: Message::Vote(vote_of(b1.id(), 1, i)),
            },
        );
    }
    let resp = leader.handle(
        0,
        Input::Message {
            from: ReplicaId(3),
            msg: Message::SyncRequest {
                block: b1.id(),
                above: View(0),
            },
        },
    );
    assert_eq!(
        resp,
        vec![Action::Send {
            to: ReplicaId(3),
            msg: Message::SyncResponse {
                blocks: vec![b1.clone()]
            }
        }]
    );
    let Action::Send { msg, .. } = resp[0].clone() else {
        unreachable!()
    };
    let acts = r.handle(
        0,
        Input::Message {
            from: ReplicaId(2),
            msg,
        },
    );
    // Now b2 is accepted and voted (persist first).
    assert!(
        matches!(acts.as_slice(), [Action::Persist { seq: 1, .. }]),
        "{acts:?}"
    );
    assert_eq!(r.safety_data().last_voted_view, View(2));
}

#[test]
fn leader_proposes_pending_payload_not_already_in_its_chain() {
    let mut r = replica(1); // leader of view 1
    let d1 = Digest([1; 32]);
    let acts = r.handle(5, Input::Payload(d1));
    // Persist (proposal + nothing else yet), then release: broadcast + self-vote persist.
    assert!(
        matches!(acts.as_slice(), [Action::Persist { seq: 1, .. }]),
        "{acts:?}"
    );
    let acts = r.handle(9, Input::Persisted(1));
    let Action::Broadcast {
        msg: Message::Propose(p),
    } = &acts[0]
    else {
        panic!("{acts:?}")
    };
    assert_eq!(p.block.payload, vec![d1]);
    assert_eq!(p.block.timestamp_ms, 5);
    assert!(
        matches!(acts[1], Action::Persist { seq: 2, .. }),
        "own vote persisted"
    );
    // No second proposal for the same view.
    assert_eq!(r.handle(0, Input::Payload(Digest([2; 32]))), vec![]);
}

#[test]
fn tc_must_carry_the_qc_behind_its_highest_claim() {
    // A Byzantine signer claims a high QC in view 1 that the TC does not prove.
    let b1 = block(1, gqc(), vec![]);
    let mut inflated = tc(2, &[0, 1, 2]);
    let fake = Timeout::new(
        &genesis(),
        View(2),
        qc(&b1, &[0, 1, 2]),
        ReplicaId(2),
        &key(2),
    );
    inflated.timeouts[2] = (ReplicaId(2), View(1), fake.signature);
    assert!(matches!(
        inflated.verify(&committee(), &genesis()),
        Err(Invalid::Malformed(_))
    ));
    // With the QC attached it verifies, and a leader that receives it extends that QC.
    let honest = tc_over(2, &qc(&b1, &[0, 1, 2]), &[0, 1, 2]);
    assert_eq!(honest.verify(&committee(), &genesis()), Ok(()));
    let mut leader = replica(3);
    leader.handle(0, propose(&b1, None));
    let acts = leader.handle(
        0,
        Input::Message {
            from: ReplicaId(0),
            msg: Message::Tc(honest),
        },
    );
    assert_eq!(leader.view(), View(3));
    assert_eq!(leader.high_qc().view, View(1));
    assert!(
        acts.iter().any(|a| matches!(a, Action::Persist { .. })),
        "proposes: {acts:?}"
    );
}

#[test]
fn replayed_proposal_does_not_cost_another_fsync() {
    let mut r = replica(0);
    let b1 = block(1, gqc(), vec![]);
    assert_eq!(r.handle(0, propose(&b1, None)).len(), 1);
    let vote = r.handle(0, Input::Persisted(1));
    for _ in 0..5 {
        // Same vote again, released at once because its persist is already durable.
        assert_eq!(r.handle(0, propose(&b1, None)), vote);
    }
}

#[test]
fn whole_committee_restart_can_extend_the_highest_qc() {
    // Every replica voted for b2 (QC(b2) exists) and restarts with only b1 committed.
    let b1 = block(1, gqc(), vec![]);
    let b2 = block(2, qc(&b1, &[0, 1, 2]), vec![]);
    let mut r = replica(0);
    r.handle(0, propose(&b1, None));
    r.handle(0, propose(&b2, None));
    // It learns QC(b2) through a timeout, then persists (its own timeout for view 3).
    let t = Timeout::new(
        &genesis(),
        View(3),
        qc(&b2, &[0, 1, 2]),
        ReplicaId(1),
        &key(1),
    );
    r.handle(
        0,
        Input::Message {
            from: ReplicaId(1),
            msg: Message::Timeout(Box::new(t)),
        },
    );
    let acts = r.handle(0, Input::Timer(0));
    let bytes = acts
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Persist {
                what: Durable::Safety(b),
                ..
            } => Some(b.clone()),
            _ => None,
        })
        .expect("persisted");
    // Restart as the leader of view 4 would: it has b2 from its own record.
    let rec = Recovered {
        safety: Some(bytes),
        committed: Some((b1.id(), View(1))),
        history: vec![],
    };
    let data = SafetyData::decode(rec.safety.as_ref().unwrap()).unwrap();
    assert!(
        data.blocks.iter().any(|b| b.id() == b2.id()),
        "b2 is in the record"
    );
    let restarted = HotStuff::new(config(0), rec).unwrap();
    assert_eq!(restarted.high_qc().view, View(2));
}

#[test]
fn oversized_or_duplicate_payload_is_rejected() {
    let mut r = replica(0);
    let d = Digest([7; 32]);
    let dup = block(1, gqc(), vec![d, d]);
    assert_eq!(r.handle(0, propose(&dup, None)), vec![]);
    let big = block(1, gqc(), (0..11u8).map(|i| Digest([i; 32])).collect());
    assert_eq!(r.handle(0, propose(&big, None)), vec![]);
    assert_eq!(r.stats().invalid_messages, 2);
}

#[test]
fn extreme_views_do_not_panic() {
    let mut r = replica(0);
    let v = vote_of(Digest([1; 32]), u64::MAX, 1);
    assert_eq!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(1),
                msg: Message::Vote(v)
            }
        ),
        vec![]
    );
    let t = Timeout::new(&genesis(), View(u64::MAX), gqc(), ReplicaId(1), &key(1));
    r.handle(
        0,
        Input::Message {
            from: ReplicaId(1),
            msg: Message::Timeout(Box::new(t)),
        },
    );
    assert_eq!(r.view(), View(1));
}

#[test]
fn vote_and_timeout_state_stays_bounded() {
    use super::aggregator::{Aggregator, VIEW_WINDOW};
    let mut agg = Aggregator::default();
    // Votes and timeouts for 10,000 views, far beyond the window, from every replica.
    for v in 1..10_000u64 {
        for i in 0..4u16 {
            // The aggregator counts verified votes; signatures are irrelevant here.
            let vote = Vote {
                block: Digest([v as u8; 32]),
                view: View(v),
                voter: ReplicaId(i),
                signature: crypto::Signature([0; 64]),
            };
            agg.add_vote(&vote, View(1), 3);
        }
    }
    assert!(
        agg.views_held() as u64 <= VIEW_WINDOW + 2,
        "{}",
        agg.views_held()
    );
    agg.prune(View(5_000));
    assert_eq!(agg.views_held(), 0);
}

fn proposed_payload(acts: &[Action<Message>]) -> Option<Vec<Digest>> {
    acts.iter().find_map(|a| match a {
        Action::Broadcast {
            msg: Message::Propose(p),
        } => Some(p.block.payload.clone()),
        _ => None,
    })
}

#[test]
fn idle_leader_proposes_an_empty_block_only_when_the_idle_timer_fires() {
    let mut r = idle_replica(1); // leader of view 1
    let acts = r.start(0);
    assert_eq!(
        acts,
        vec![
            Action::SetTimer {
                id: 0,
                after_ms: BASE
            },
            Action::SetTimer {
                id: 1,
                after_ms: 50
            },
        ]
    );
    assert_eq!(
        r.handle(20, Input::Timer(0xdead)),
        vec![],
        "unknown timer id"
    );
    let acts = r.handle(50, Input::Timer(1));
    assert!(
        matches!(acts.as_slice(), [Action::Persist { seq: 1, .. }]),
        "{acts:?}"
    );
    let acts = r.handle(51, Input::Persisted(1));
    assert_eq!(proposed_payload(&acts), Some(vec![]));
}

#[test]
fn idle_leader_proposes_as_soon_as_a_batch_arrives() {
    let mut r = idle_replica(1);
    r.start(0);
    let d1 = Digest([1; 32]);
    let acts = r.handle(10, Input::Payload(d1));
    assert!(
        matches!(acts.as_slice(), [Action::Persist { seq: 1, .. }]),
        "{acts:?}"
    );
    let acts = r.handle(11, Input::Persisted(1));
    assert_eq!(proposed_payload(&acts), Some(vec![d1]));
    // The idle timer firing late proposes nothing more.
    assert_eq!(r.handle(50, Input::Timer(1)), vec![]);
}

/// Replica 2 leads view 2 and forms the QC of block 1 from three votes. If block 1 carries a
/// batch, it proposes at once (block 1 needs two more blocks to commit); if block 1 is
/// empty, it waits for the idle timer.
#[test]
fn idle_leader_does_not_wait_while_the_chain_carries_a_batch() {
    fn enter_view_2(payload: Vec<Digest>) -> Vec<Action<Message>> {
        let mut r = idle_replica(2);
        let b1 = block(1, gqc(), payload);
        let mut acts = r.handle(0, propose(&b1, None));
        acts.extend(r.handle(0, Input::Persisted(1)));
        for i in [0u16, 1] {
            let vote = vote_of(b1.id(), 1, i);
            let msg = Message::Vote(vote);
            acts.extend(r.handle(
                0,
                Input::Message {
                    from: ReplicaId(i),
                    msg,
                },
            ));
        }
        assert_eq!(r.view(), View(2));
        acts
    }
    let busy = enter_view_2(vec![Digest([9; 32])]);
    assert!(
        busy.iter()
            .any(|a| matches!(a, Action::Persist { seq: 2, .. })),
        "proposal persisted at once: {busy:?}"
    );
    assert!(
        !busy
            .iter()
            .any(|a| matches!(a, Action::SetTimer { id: 1, .. }))
    );
    let idle = enter_view_2(vec![]);
    assert!(
        idle.contains(&Action::SetTimer {
            id: 1,
            after_ms: 50
        }),
        "{idle:?}"
    );
    assert!(
        !idle
            .iter()
            .any(|a| matches!(a, Action::Persist { seq: 2, .. }))
    );
}
