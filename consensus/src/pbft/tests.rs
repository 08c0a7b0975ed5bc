//! Exact-action unit tests of the PBFT core. n = 4 (f = 1, quorum 3); view 1's primary is
//! replica 1, view 2's is replica 2.

use super::*;
use crate::core::{Action, Committed, Core, Durable, Input};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey};

const BASE: u64 = 1000;
const K: u64 = 2;

fn key(i: u16) -> SecretKey {
    SecretKey::from_seed([i as u8 + 1; 32])
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
        max_timeout_ms: 8 * BASE,
        max_payload: 10,
        idle_block_ms: 0,
        checkpoint_interval: K,
        start: CheckpointCert::genesis(),
    }
}
/// Verifies a NEW-VIEW as a replica of this test's epoch-0 instance does.
fn verify_nv(nv: &NewView) -> Result<CheckpointCert, Invalid> {
    nv.verify(
        &committee(),
        &genesis(),
        10,
        2 * K,
        &CheckpointCert::genesis(),
    )
}

fn replica(i: u16) -> Pbft {
    let mut r = Pbft::new(config(i), Recovered::default()).unwrap();
    r.start(0);
    r
}
fn d(i: u8) -> Digest {
    crypto::hash(&[i])
}
fn block(view: u64, seq: u64, payload: Vec<Digest>) -> Block {
    Block {
        seq,
        proposer: committee().leader(View(view)),
        timestamp_ms: seq * 10,
        payload,
    }
}
fn pre_prepare(view: u64, b: &Block) -> PrePrepare {
    let primary = committee().leader(View(view));
    PrePrepare::new(View(view), b.clone(), &genesis(), &key(primary.0))
}
fn pp_input(view: u64, b: &Block) -> Input<Message> {
    Input::Message {
        from: committee().leader(View(view)),
        msg: Message::PrePrepare(Box::new(pre_prepare(view, b))),
    }
}
fn vote(phase: Phase, view: u64, b: &Block, i: u16) -> Vote {
    Vote::new(
        phase,
        View(view),
        b.seq,
        b.digest(),
        ReplicaId(i),
        &genesis(),
        &key(i),
    )
}
fn prepare(view: u64, b: &Block, i: u16) -> Input<Message> {
    Input::Message {
        from: ReplicaId(i),
        msg: Message::Prepare(vote(Phase::Prepare, view, b, i)),
    }
}
fn commit(view: u64, b: &Block, i: u16) -> Input<Message> {
    Input::Message {
        from: ReplicaId(i),
        msg: Message::Commit(vote(Phase::Commit, view, b, i)),
    }
}
/// The sequence number of the single persist in `acts` (and nothing else is sent).
fn only_persist(acts: &[Action<Message>]) -> u64 {
    match acts {
        [Action::Persist { seq, .. }] => *seq,
        other => panic!("expected exactly one persist, got {other:?}"),
    }
}
fn broadcasts(acts: &[Action<Message>]) -> Vec<Message> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Broadcast { msg } => Some(msg.clone()),
            _ => None,
        })
        .collect()
}
fn commits(acts: &[Action<Message>]) -> Vec<Committed> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Commit(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}
fn persists(acts: &[Action<Message>]) -> Vec<u64> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Persist { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}
/// Acknowledges every persist in `acts` and returns everything: `acts` plus what the
/// acknowledgement released.
fn acked(r: &mut Pbft, mut acts: Vec<Action<Message>>) -> Vec<Action<Message>> {
    if let Some(top) = persists(&acts).into_iter().max() {
        let released = r.handle(0, Input::Persisted(top));
        acts.extend(released);
    }
    acts
}
/// Handles `input` and acknowledges its persists: everything it caused.
fn step(r: &mut Pbft, now: u64, input: Input<Message>) -> Vec<Action<Message>> {
    let acts = r.handle(now, input);
    acked(r, acts)
}
/// Backup 2 with block `b` (view 1, seq `b.seq`) pre-prepared and prepared by 0, 2, 3.
fn prepared_backup(b: &Block) -> Pbft {
    let mut r = replica(2);
    step(&mut r, 0, pp_input(1, b));
    let acts = step(&mut r, 0, prepare(1, b, 3));
    assert_eq!(
        broadcasts(&acts),
        vec![Message::Commit(vote(Phase::Commit, 1, b, 2))]
    );
    r
}

#[test]
fn a_prepare_leaves_only_after_its_persist() {
    let mut r = replica(2);
    let b = block(1, 1, vec![d(1)]);
    let acts = r.handle(0, pp_input(1, &b));
    let seq = only_persist(&acts);
    let released = r.handle(0, Input::Persisted(seq));
    assert_eq!(
        released,
        vec![Action::Broadcast {
            msg: Message::Prepare(vote(Phase::Prepare, 1, &b, 2))
        }]
    );
    // The durable record names what was signed.
    let Action::Persist {
        what: Durable::Safety(bytes),
        ..
    } = &acts[0]
    else {
        unreachable!()
    };
    let data = SafetyData::decode(bytes).unwrap();
    assert_eq!(data.slots[&1].signed, (View(1), b.digest()));
    assert_eq!(data.slots[&1].prepared, None);
}

#[test]
fn prepared_needs_2f_matching_prepares_from_distinct_backups() {
    // The primary: its pre-prepare counts, its own prepare does not exist.
    let mut p = replica(1);
    let acts = step(&mut p, 5, Input::Payload(d(1)));
    let sent = broadcasts(&acts);
    let [Message::PrePrepare(pp)] = sent.as_slice() else {
        panic!("expected one pre-prepare, got {acts:?}")
    };
    let b = pp.block.clone();
    assert_eq!(
        (b.seq, b.proposer, b.payload.clone()),
        (1, ReplicaId(1), vec![d(1)])
    );
    // One backup's prepare, twice: still one replica.
    assert!(p.handle(0, prepare(1, &b, 2)).is_empty());
    assert!(p.handle(0, prepare(1, &b, 2)).is_empty());
    // A prepare for another digest, or another view, does not match.
    let other = block(1, 1, vec![d(2)]);
    assert!(p.handle(0, prepare(1, &other, 3)).is_empty());
    let stale = Vote::new(
        Phase::Prepare,
        View(0),
        1,
        b.digest(),
        ReplicaId(0),
        &genesis(),
        &key(0),
    );
    let acts = p.handle(
        0,
        Input::Message {
            from: ReplicaId(0),
            msg: Message::Prepare(stale),
        },
    );
    assert!(acts.is_empty());
    // A forged signature does not count.
    let mut forged = vote(Phase::Prepare, 1, &b, 0);
    forged.signature.0[3] ^= 1;
    let acts = p.handle(
        0,
        Input::Message {
            from: ReplicaId(0),
            msg: Message::Prepare(forged),
        },
    );
    assert!(acts.is_empty());
    // The second distinct backup: prepared. The commit waits for the prepared certificate
    // to be durable.
    let acts = p.handle(0, prepare(1, &b, 0));
    let seq = only_persist(&acts);
    let Action::Persist {
        what: Durable::Safety(bytes),
        ..
    } = &acts[0]
    else {
        unreachable!()
    };
    let cert = SafetyData::decode(bytes).unwrap().slots[&1]
        .prepared
        .clone()
        .unwrap();
    assert_eq!(
        cert.prepares.iter().map(|(id, _)| id.0).collect::<Vec<_>>(),
        vec![0, 2]
    );
    cert.verify(&committee(), &genesis(), 10).unwrap();
    assert_eq!(
        p.handle(0, Input::Persisted(seq)),
        vec![Action::Broadcast {
            msg: Message::Commit(vote(Phase::Commit, 1, &b, 1))
        }]
    );
}

#[test]
fn the_primarys_prepare_never_counts() {
    let mut r = replica(2);
    let b = block(1, 1, vec![d(1)]);
    step(&mut r, 0, pp_input(1, &b));
    let invalid = r.stats().invalid;
    assert!(r.handle(0, prepare(1, &b, 1)).is_empty());
    assert_eq!(r.stats().invalid, invalid + 1);
    // With 0's prepare it is prepared (own + 0 = 2f).
    assert_eq!(persists(&r.handle(0, prepare(1, &b, 0))).len(), 1);
}

#[test]
fn committed_only_with_2f_plus_1_matching_commits() {
    let b = block(1, 1, vec![d(1)]);
    let mut r = prepared_backup(&b);
    // Own commit + one: not yet. A commit for another digest does not count.
    assert!(commits(&r.handle(0, commit(1, &b, 3))).is_empty());
    let other = block(1, 1, vec![d(9)]);
    assert!(commits(&r.handle(0, commit(1, &other, 0))).is_empty());
    let acts = r.handle(0, commit(1, &b, 1));
    let [c] = commits(&acts).try_into().unwrap();
    // The ledger header gets view 0: replicas agree on (seq, digest), not on the view each
    // saw the block commit in; the certificate names that view.
    assert_eq!(
        (c.id, c.view, c.proposer, c.payload.clone()),
        (b.digest(), View(0), ReplicaId(1), vec![d(1)])
    );
    // The certificate convinces anyone with the genesis file, and only for this chain.
    let cert = CommitCertificate::decode(&c.certificate).unwrap();
    cert.verify(&committee(), &genesis()).unwrap();
    assert_eq!((cert.view, cert.commits.len()), (View(1), 3));
    assert!(
        cert.verify(&committee(), &crypto::hash(b"other chain"))
            .is_err()
    );
    let mut short = cert.clone();
    short.commits.pop();
    assert!(short.verify(&committee(), &genesis()).is_err());
    assert_eq!(r.committed(), 1);
    // Once only.
    assert!(commits(&r.handle(0, commit(1, &b, 0))).is_empty());
}

#[test]
fn blocks_commit_in_sequence_order() {
    let mut r = replica(2);
    let b1 = block(1, 1, vec![d(1)]);
    let b2 = block(1, 2, vec![d(2)]);
    for b in [&b2, &b1] {
        step(&mut r, 0, pp_input(1, b));
        step(&mut r, 0, prepare(1, b, 3));
    }
    // Seq 2 reaches its commits first: held until seq 1 commits.
    r.handle(0, commit(1, &b2, 3));
    assert!(commits(&r.handle(0, commit(1, &b2, 0))).is_empty());
    r.handle(0, commit(1, &b1, 3));
    let ids: Vec<Digest> = commits(&r.handle(0, commit(1, &b1, 0)))
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec![b1.digest(), b2.digest()]);
}

#[test]
fn stale_view_and_out_of_watermark_messages_are_ignored() {
    let mut r = replica(2);
    // View 0's primary (replica 0) is not view 1's.
    let old = Block {
        proposer: ReplicaId(0),
        ..block(0, 1, vec![d(1)])
    };
    let msg = Message::PrePrepare(Box::new(PrePrepare::new(
        View(0),
        old.clone(),
        &genesis(),
        &key(0),
    )));
    assert!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(0),
                msg
            }
        )
        .is_empty()
    );
    assert!(r.handle(0, prepare(0, &old, 3)).is_empty());
    assert!(r.handle(0, commit(0, &old, 3)).is_empty());
    // Water marks: h = 0, L = 2k = 4: sequence 5 is out, 4 is in.
    let invalid = r.stats().invalid;
    assert!(
        r.handle(0, pp_input(1, &block(1, 5, vec![d(5)])))
            .is_empty()
    );
    assert!(
        r.handle(0, prepare(1, &block(1, 5, vec![d(5)]), 3))
            .is_empty()
    );
    assert_eq!(r.stats().invalid, invalid + 2);
    assert_eq!(
        persists(&r.handle(0, pp_input(1, &block(1, 4, vec![d(4)])))).len(),
        1
    );
    // A pre-prepare signed by someone other than the view's primary.
    let b = block(1, 2, vec![d(2)]);
    let msg = Message::PrePrepare(Box::new(PrePrepare::new(View(1), b, &genesis(), &key(3))));
    assert!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(3),
                msg
            }
        )
        .is_empty()
    );
    // A second, different pre-prepare for a (view, seq) already taken: no second prepare.
    let b4 = block(1, 4, vec![d(44)]);
    assert!(r.handle(0, pp_input(1, &b4)).is_empty());
    assert!(r.log_len() <= 2 * K as usize + 1);
}

#[test]
fn checkpoint_garbage_collection_frees_the_log() {
    let mut r = replica(2);
    let bs: Vec<Block> = (1..=3).map(|s| block(1, s, vec![d(s as u8)])).collect();
    for b in &bs {
        step(&mut r, 0, pp_input(1, b));
        step(&mut r, 0, prepare(1, b, 3));
        r.handle(0, commit(1, b, 3));
        r.handle(0, commit(1, b, 0));
    }
    assert_eq!(r.committed(), 3);
    assert_eq!(r.log_len(), 3);
    let root = |h: u64| crypto::hash(&h.to_le_bytes());
    // Executing height 1 sends nothing; height 2 = k: a signed checkpoint.
    assert!(
        r.handle(
            0,
            Input::Executed {
                height: 1,
                state_root: root(1)
            }
        )
        .is_empty()
    );
    let acts = r.handle(
        0,
        Input::Executed {
            height: 2,
            state_root: root(2),
        },
    );
    assert_eq!(
        broadcasts(&acts),
        vec![Message::Checkpoint(Checkpoint::new(
            2,
            root(2),
            ReplicaId(2),
            &genesis(),
            &key(2)
        ))]
    );
    // One more matching checkpoint: 2 of 3, not stable. A mismatching one does not count.
    let cp = |i: u16, root: Digest| Input::Message {
        from: ReplicaId(i),
        msg: Message::Checkpoint(Checkpoint::new(2, root, ReplicaId(i), &genesis(), &key(i))),
    };
    r.handle(0, cp(0, root(2)));
    r.handle(0, cp(3, crypto::hash(b"wrong")));
    assert_eq!((r.low_water_mark(), r.log_len()), (0, 3));
    // The quorum: stable at 2; entries 1 and 2 are discarded, 3 stays.
    r.handle(0, cp(1, root(2)));
    assert_eq!((r.low_water_mark(), r.log_len()), (2, 1));
    assert_eq!(
        r.safety_data().slots.keys().copied().collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(r.safety_data().stable.seq, 2);
    r.safety_data()
        .stable
        .verify(&committee(), &genesis(), &CheckpointCert::genesis())
        .unwrap();
    // The water marks moved: 6 = 2 + 2k is in now, 2 is below.
    assert_eq!(
        persists(&r.handle(0, pp_input(1, &block(1, 6, vec![d(6)])))).len(),
        1
    );
    assert!(r.handle(0, prepare(1, &bs[1], 0)).is_empty());
}

/// Signed view changes for `view` from `signers`, each reporting `prepared`.
fn view_changes(view: u64, signers: &[u16], prepared: &[PreparedCert]) -> Vec<ViewChange> {
    signers
        .iter()
        .map(|i| {
            ViewChange::new(
                View(view),
                CheckpointCert::genesis(),
                prepared.to_vec(),
                ReplicaId(*i),
                &genesis(),
                &key(*i),
            )
        })
        .collect()
}
fn prepared_cert(view: u64, b: &Block, signers: &[u16]) -> PreparedCert {
    PreparedCert {
        pre_prepare: pre_prepare(view, b),
        prepares: signers
            .iter()
            .map(|i| (ReplicaId(*i), vote(Phase::Prepare, view, b, *i).signature))
            .collect(),
    }
}

#[test]
fn new_view_reissues_prepared_requests_with_nulls_in_gaps() {
    let b2 = block(1, 2, vec![d(2)]);
    let cert = prepared_cert(1, &b2, &[0, 2]);
    let mut vcs = view_changes(2, &[0, 1], &[]);
    vcs.extend(view_changes(2, &[3], std::slice::from_ref(&cert)));
    let nv = NewView::new(View(2), vcs, &committee(), &genesis(), &key(2));
    let blocks: Vec<Block> = nv.pre_prepares.iter().map(|p| p.block.clone()).collect();
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        (blocks[0].seq, blocks[0].payload.len(), blocks[0].proposer),
        (1, 0, ReplicaId(2))
    );
    assert_eq!(blocks[1], b2);
    verify_nv(&nv).unwrap();
}

#[test]
fn a_new_view_with_a_wrong_reissued_set_is_rejected() {
    let b1 = block(1, 1, vec![d(1)]);
    let cert = prepared_cert(1, &b1, &[0, 3]);
    let mut vcs = view_changes(2, &[0], std::slice::from_ref(&cert));
    vcs.extend(view_changes(2, &[1, 3], &[]));
    // The new primary (2) drops the prepared request and puts a null one in its place.
    let null = PrePrepare::new(
        View(2),
        Block::null(1, ReplicaId(2), 10),
        &genesis(),
        &key(2),
    );
    let wrong = NewView::sign(View(2), vcs.clone(), vec![null], &genesis(), &key(2));
    let mut r = replica(3);
    let invalid = r.stats().invalid;
    assert!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(2),
                msg: Message::NewView(Box::new(wrong))
            }
        )
        .is_empty()
    );
    assert_eq!((r.view(), r.stats().invalid), (View(1), invalid + 1));
    // Too few view changes.
    let thin = NewView::new(
        View(2),
        vcs[..2].to_vec(),
        &committee(),
        &genesis(),
        &key(2),
    );
    assert!(
        r.handle(
            0,
            Input::Message {
                from: ReplicaId(2),
                msg: Message::NewView(Box::new(thin))
            }
        )
        .is_empty()
    );
    // The right one: view 2, and a prepare for the re-issued block in view 2, after a persist.
    let right = NewView::new(View(2), vcs, &committee(), &genesis(), &key(2));
    let acts = step(
        &mut r,
        0,
        Input::Message {
            from: ReplicaId(2),
            msg: Message::NewView(Box::new(right)),
        },
    );
    assert_eq!(r.view(), View(2));
    assert!(!r.changing());
    let sent = broadcasts(&acts);
    assert!(
        sent.contains(&Message::Prepare(vote(Phase::Prepare, 2, &b1, 3))),
        "{sent:?}"
    );
}

#[test]
fn timer_retransmits_then_changes_view_with_prepared_certificates() {
    let b = block(1, 1, vec![d(1)]);
    let mut r = prepared_backup(&b);
    // First expiry without a commit: say it again (prepare and commit), no view change.
    let acts = r.handle(0, Input::Timer(VIEW_TIMER));
    let sent = broadcasts(&acts);
    assert!(
        sent.contains(&Message::Prepare(vote(Phase::Prepare, 1, &b, 2))),
        "{sent:?}"
    );
    assert!(
        sent.contains(&Message::Commit(vote(Phase::Commit, 1, &b, 2))),
        "{sent:?}"
    );
    assert_eq!(r.view(), View(1));
    // Second: VIEW-CHANGE for view 2, after its persist, carrying the prepared certificate.
    let acts = r.handle(0, Input::Timer(VIEW_TIMER));
    assert!(
        broadcasts(&acts).is_empty(),
        "nothing before the persist: {acts:?}"
    );
    assert!(r.changing());
    let acts = acked(&mut r, acts);
    let vcs: Vec<ViewChange> = broadcasts(&acts)
        .into_iter()
        .filter_map(|m| match m {
            Message::ViewChange(vc) => Some(*vc),
            _ => None,
        })
        .collect();
    let [vc] = vcs.try_into().unwrap();
    assert_eq!((vc.view, vc.replica), (View(2), ReplicaId(2)));
    assert_eq!(vc.prepared.len(), 1);
    assert_eq!(vc.prepared[0].digest(), b.digest());
    vc.verify(
        &committee(),
        &genesis(),
        10,
        2 * K,
        &CheckpointCert::genesis(),
    )
    .unwrap();
    // In the view change, view-1 messages are ignored: no commit even with a quorum.
    r.handle(0, commit(1, &b, 3));
    assert!(commits(&r.handle(0, commit(1, &b, 1))).is_empty());
    // Back-off: the view-change timer doubles.
    assert!(
        acts.iter().any(
            |a| matches!(a, Action::SetTimer { id: VIEW_TIMER, after_ms } if *after_ms == BASE)
        )
    );
}

#[test]
fn the_new_primary_sends_new_view_after_a_quorum_of_view_changes() {
    // Replica 2 leads view 2.
    let mut r = replica(2);
    let vcs = view_changes(2, &[0, 1], &[]);
    let mut acts = Vec::new();
    for vc in vcs {
        let from = vc.replica;
        acts.extend(r.handle(
            0,
            Input::Message {
                from,
                msg: Message::ViewChange(Box::new(vc)),
            },
        ));
    }
    // Two others (f+1) want view 2: it joins (its own view change makes the quorum) and,
    // as view 2's primary, sends NEW-VIEW.
    let acts = acked(&mut r, acts);
    let sent = broadcasts(&acts);
    let nv = sent
        .iter()
        .find_map(|m| match m {
            Message::NewView(nv) => Some(nv.clone()),
            _ => None,
        })
        .expect("a NEW-VIEW");
    assert_eq!(nv.view_changes.len(), 3);
    verify_nv(&nv).unwrap();
    assert_eq!((r.view(), r.changing()), (View(2), false));
    // It proposes in view 2 at once.
    let acts = step(&mut r, 0, Input::Payload(d(7)));
    let pp = broadcasts(&acts)
        .into_iter()
        .find_map(|m| match m {
            Message::PrePrepare(p) => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!((pp.view, pp.block.seq), (View(2), 1));
}

#[test]
fn a_restarted_backup_does_not_prepare_a_second_digest() {
    let mut r = replica(2);
    let b = block(1, 1, vec![d(1)]);
    let acts = r.handle(0, pp_input(1, &b));
    let Action::Persist {
        what: Durable::Safety(bytes),
        ..
    } = &acts[0]
    else {
        unreachable!()
    };
    let rec = Recovered {
        safety: Some(bytes.clone()),
        height: 0,
        recent: vec![],
    };
    let mut r = Pbft::new(config(2), rec.clone()).unwrap();
    r.start(0);
    // An equivocating primary's second block for (view 1, seq 1): refused.
    let other = block(1, 1, vec![d(2)]);
    assert!(r.handle(0, pp_input(1, &other)).is_empty());
    // The same block again: the same prepare.
    let mut r = Pbft::new(config(2), rec).unwrap();
    r.start(0);
    let acts = step(&mut r, 0, pp_input(1, &b));
    assert_eq!(
        broadcasts(&acts),
        vec![Message::Prepare(vote(Phase::Prepare, 1, &b, 2))]
    );
}

#[test]
fn a_lagging_replica_commits_from_fetched_certificates() {
    // Replica 0 commits seq 1 with backups 2 and 3's commits; replica 3 never saw anything.
    let b = block(1, 1, vec![d(1)]);
    let mut r = prepared_backup(&b);
    r.handle(0, commit(1, &b, 3));
    let c = commits(&r.handle(0, commit(1, &b, 1))).remove(0);
    let cert = CommitCertificate::decode(&c.certificate).unwrap();
    let mut lag = replica(3);
    // A fetch is answered from the recent certificates.
    let acts = r.handle(
        0,
        Input::Message {
            from: ReplicaId(3),
            msg: Message::Fetch { from: 1 },
        },
    );
    assert_eq!(
        acts,
        vec![Action::Send {
            to: ReplicaId(3),
            msg: Message::Committed(vec![cert.clone()])
        }]
    );
    // A tampered certificate commits nothing; the real one commits.
    let mut bad = cert.clone();
    bad.block.payload.push(d(66));
    let acts = lag.handle(
        0,
        Input::Message {
            from: ReplicaId(2),
            msg: Message::Committed(vec![bad]),
        },
    );
    assert!(commits(&acts).is_empty());
    let acts = lag.handle(
        0,
        Input::Message {
            from: ReplicaId(2),
            msg: Message::Committed(vec![cert]),
        },
    );
    assert_eq!(
        commits(&acts).iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![b.digest()]
    );
    assert_eq!(lag.committed(), 1);
}

#[test]
fn a_new_primary_proposes_surviving_batches_in_arrival_order() {
    // Replica 2 (view 2's primary) was offered three batches; primary 1 pre-prepared them
    // in view 1, nothing prepared, and the view changed. The batches go back in the order
    // they arrived (one validator's batches carry consecutive nonces), not digest order.
    let mut r = replica(2);
    let arrival = [d(30), d(10), d(20)];
    let mut sorted = arrival.to_vec();
    sorted.sort();
    assert_ne!(
        sorted,
        arrival.to_vec(),
        "the test needs an order digests do not have"
    );
    for x in arrival {
        r.handle(0, Input::Payload(x));
    }
    step(&mut r, 0, pp_input(1, &block(1, 1, arrival.to_vec())));
    let vcs = view_changes(2, &[0, 3], &[]);
    let mut acts = Vec::new();
    for vc in vcs {
        let from = vc.replica;
        acts.extend(r.handle(
            0,
            Input::Message {
                from,
                msg: Message::ViewChange(Box::new(vc)),
            },
        ));
    }
    let acts = acked(&mut r, acts);
    let pp = broadcasts(&acts)
        .into_iter()
        .find_map(|m| match m {
            Message::PrePrepare(p) => Some(p),
            _ => None,
        })
        .expect("view 2's primary proposes");
    assert_eq!(
        (pp.view, pp.block.payload.clone()),
        (View(2), arrival.to_vec())
    );
}

/// An instance started after ledger height 40 (a validator-set epoch's first): its start
/// checkpoint is stable without signatures there and nowhere else; a core built with it
/// starts its water marks at 40 and proposes 41 at once, where one left at the genesis
/// checkpoint would be 40 sequence numbers past its high water mark.
#[test]
fn an_instance_starts_from_its_configured_checkpoint() {
    let anchor = crypto::hash(b"epoch 1");
    let start = CheckpointCert::start(40, anchor);
    let c = committee();
    assert_eq!(start.verify(&c, &genesis(), &start), Ok(()));
    assert!(
        start
            .verify(&c, &genesis(), &CheckpointCert::genesis())
            .is_err()
    );
    assert!(
        CheckpointCert::genesis()
            .verify(&c, &genesis(), &start)
            .is_err(),
        "the genesis checkpoint is not this instance's start"
    );
    let forged = CheckpointCert::start(41, anchor);
    assert!(
        forged.verify(&c, &genesis(), &start).is_err(),
        "another unsigned one"
    );
    assert_eq!(CheckpointCert::start(0, anchor), CheckpointCert::genesis());

    // The primary of view 0 is given a batch: it proposes (and persists its record first)
    // only when 41 lies within its water marks.
    let proposes = |start: CheckpointCert| {
        let cfg = Config { start, ..config(1) };
        let rec = Recovered {
            height: 40,
            ..Recovered::default()
        };
        let mut r = Pbft::new(cfg, rec).unwrap();
        r.start(0);
        let low = r.low_water_mark();
        let out = r.handle(0, Input::Payload(d(9)));
        (low, out.iter().any(|a| matches!(a, Action::Persist { .. })))
    };
    assert_eq!(proposes(start), (40, true));
    // The control: the same core left at the genesis checkpoint cannot.
    assert_eq!(proposes(CheckpointCert::genesis()), (0, false));
}

/// Backup 2, offered batch `d(9)` at time 0, commits block 1 (view 1) with `payload` at a
/// time past the request timeout. Returns the backup.
fn backup_after_a_block_without_its_batch(payload: Vec<Digest>, starved_before: usize) -> Pbft {
    let mut r = replica(2);
    r.starve_counts.insert(d(9), starved_before);
    step(&mut r, 0, Input::Payload(d(9)));
    let late = 2 * BASE + 1;
    let b = block(1, 1, payload);
    step(&mut r, late, pp_input(1, &b));
    step(&mut r, late, prepare(1, &b, 0));
    step(&mut r, late, prepare(1, &b, 3));
    step(&mut r, late, commit(1, &b, 0));
    let acts = step(&mut r, late, commit(1, &b, 3));
    assert_eq!(commits(&acts).len(), 1, "block 1 commits: {acts:?}");
    r
}

/// PBFT's request timer: a primary that commits blocks with room to spare but leaves out a
/// batch offered to a backup more than two view timeouts earlier (it lacks it, or censors
/// it) is replaced as if it had stopped — its commits do not count as progress. A block that
/// carries the batch is progress; and after f+1 view changes for one batch it no longer
/// counts (a batch no primary proposes must not change views forever).
#[test]
fn a_primary_that_leaves_out_an_old_offered_batch_is_replaced() {
    let mut r = backup_after_a_block_without_its_batch(Vec::new(), 0);
    assert_eq!(r.starved, Some(d(9)));
    r.handle(3 * BASE, Input::Timer(VIEW_TIMER));
    assert_eq!(r.view(), View(1), "first expiry: retransmit only");
    r.handle(4 * BASE, Input::Timer(VIEW_TIMER));
    assert!(
        r.changing(),
        "second expiry: a view change despite the commit"
    );
    assert_eq!(r.view(), View(2));
    assert_eq!(r.starve_counts.get(&d(9)), Some(&1));

    // The block carries the batch: its commit is progress.
    let mut r = backup_after_a_block_without_its_batch(vec![d(9)], 0);
    for t in 3..6 {
        r.handle(t * BASE, Input::Timer(VIEW_TIMER));
    }
    assert!(!r.changing());
    assert_eq!(r.view(), View(1));

    assert_eq!(r.starved, None);

    // f + 1 = 2 view changes for it already: not starved (the primary's commits are progress
    // again; the batch is still pending work, which the usual timer rule covers).
    let r = backup_after_a_block_without_its_batch(Vec::new(), 2);
    assert_eq!(r.starved, None);
    let r = backup_after_a_block_without_its_batch(Vec::new(), 1);
    assert_eq!(r.starved, Some(d(9)));
}
