//! Hostile input for every consensus decoder: HotStuff, PBFT and Raft messages (the
//! `Consensus` frames of the network), commit certificates (block sync, the store, the API),
//! Raft log entries and the three safety records (the store). Arbitrary and mutated bytes
//! never panic and never allocate much more than the input is long, whatever a length prefix
//! claims; what decodes re-encodes to exactly the same bytes; a decoded message can be
//! verified without a panic, and verifies only if it is the message that was signed; a core
//! fed a decoded hostile message, or rebuilt from a decoded hostile record, does not panic;
//! and neither does a core fed sequences of validly signed messages with hostile fields (a
//! Byzantine member of the committee).

use consensus::hotstuff::{self as hs, Verify as _};
use consensus::{Core, Input, ReplicaId, View, pbft, raft};
use crypto::{Digest, codec};
use proptest::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::LazyLock;

// ---- The hostile-input kit (shared; see crypto/tests/kit/hostile.rs) ----

#[path = "../../crypto/tests/kit/hostile.rs"]
mod kit;
use kit::*;

// ---- Committees and keys (as in the cores' unit tests) ----

#[path = "kit/fixtures.rs"]
mod fixtures;
use fixtures::*;
const MAX_PAYLOAD: usize = 10;
const CHECKPOINT_INTERVAL: u64 = 16;
const WINDOW: u64 = 2 * CHECKPOINT_INTERVAL;

// ---- Corpus: real, valid, signed values of every kind ----

struct HsCorpus {
    messages: Vec<hs::Message>,
    certificates: Vec<hs::CommitCertificate>,
    safety: hs::SafetyData,
}

fn hs_block(view: u64, justify: hs::QuorumCert, payload: Vec<Digest>) -> hs::Block {
    hs::Block {
        view: View(view),
        justify,
        proposer: bft().leader(View(view)),
        timestamp_ms: view * 10,
        payload,
    }
}

fn hs_qc(b: &hs::Block) -> hs::QuorumCert {
    hs::QuorumCert {
        block: b.id(),
        view: b.view,
        votes: (0..3)
            .map(|i| {
                let v = hs::Vote::new(&genesis(), b.id(), b.view, ReplicaId(i), &key(i));
                (ReplicaId(i), v.signature)
            })
            .collect(),
    }
}

fn hs_corpus() -> HsCorpus {
    let g = genesis();
    let b1 = hs_block(1, hs::QuorumCert::genesis(g), vec![d(1), d(2)]);
    let qc1 = hs_qc(&b1);
    let b2 = hs_block(2, qc1.clone(), vec![]);
    let qc2 = hs_qc(&b2);
    // View 3 times out: a TC whose signers all hold qc2.
    let tc3 = hs::TimeoutCert {
        view: View(3),
        timeouts: (0..3)
            .map(|i| {
                let t = hs::Timeout::new(&genesis(), View(3), qc2.clone(), ReplicaId(i), &key(i));
                (ReplicaId(i), View(2), t.signature)
            })
            .collect(),
        high_qc: qc2.clone(),
    };
    let b4 = hs_block(4, qc2.clone(), vec![d(4)]);
    let leader = |b: &hs::Block| key(b.proposer.0);
    let p1 = hs::Proposal::new(b1.clone(), None, &leader(&b1));
    let p4 = hs::Proposal::new(b4.clone(), Some(tc3.clone()), &leader(&b4));
    let vote = hs::Vote::new(&genesis(), b4.id(), View(4), ReplicaId(3), &key(3));
    let mut timeout = hs::Timeout::new(&genesis(), View(5), qc2.clone(), ReplicaId(3), &key(3));
    timeout.high_tc = Some(Box::new(tc3.clone()));
    let messages = vec![
        hs::Message::Propose(Box::new(p1)),
        hs::Message::Propose(Box::new(p4)),
        hs::Message::Vote(vote.clone()),
        hs::Message::Timeout(Box::new(timeout.clone())),
        hs::Message::Tc(tc3.clone()),
        hs::Message::SyncRequest {
            block: b2.id(),
            above: View(0),
        },
        hs::Message::SyncResponse {
            blocks: vec![b2.clone(), b1.clone()],
        },
    ];
    let certificates = vec![
        hs::CommitCertificate {
            block: b1.clone(),
            qc: qc1,
            proof: Some((b2.clone(), qc2.clone())),
        },
        hs::CommitCertificate {
            block: b2.clone(),
            qc: qc2.clone(),
            proof: None,
        },
    ];
    let safety = hs::SafetyData {
        last_voted_view: View(5),
        last_vote: Some(vote),
        last_timeout: Some(timeout),
        one_chain_view: View(2),
        last_proposed_view: View(4),
        high_qc: Some(qc2),
        high_tc: Some(tc3),
        blocks: vec![b1, b2, b4],
    };
    HsCorpus {
        messages,
        certificates,
        safety,
    }
}

static HS: LazyLock<HsCorpus> = LazyLock::new(hs_corpus);

struct PbftCorpus {
    messages: Vec<pbft::Message>,
    certificates: Vec<pbft::CommitCertificate>,
    safety: pbft::SafetyData,
}

fn pbft_corpus() -> PbftCorpus {
    let (c, g) = (bft(), genesis());
    let v1 = View(1);
    let block = pbft::Block {
        seq: 1,
        proposer: c.leader(v1),
        timestamp_ms: 10,
        payload: vec![d(1), d(2)],
    };
    let pp = pbft::PrePrepare::new(v1, block.clone(), &g, &key(c.leader(v1).0));
    let vote =
        |phase, i: u16| pbft::Vote::new(phase, v1, 1, block.digest(), ReplicaId(i), &g, &key(i));
    let prepared = pbft::PreparedCert {
        pre_prepare: pp.clone(),
        // Not the primary's (replica 1): 2f of the others.
        prepares: [0, 2]
            .iter()
            .map(|&i| (ReplicaId(i), vote(pbft::Phase::Prepare, i).signature))
            .collect(),
    };
    let cert = pbft::CommitCertificate {
        view: v1,
        block: block.clone(),
        commits: (0..3)
            .map(|i| (ReplicaId(i), vote(pbft::Phase::Commit, i).signature))
            .collect(),
    };
    let root = crypto::hash(b"state root");
    let checkpoint = pbft::Checkpoint::new(2, root, ReplicaId(3), &g, &key(3));
    let stable = pbft::CheckpointCert {
        seq: 2,
        state_root: root,
        signatures: (0..3)
            .map(|i| {
                let cp = pbft::Checkpoint::new(2, root, ReplicaId(i), &g, &key(i));
                (ReplicaId(i), cp.signature)
            })
            .collect(),
    };
    let v2 = View(2);
    let vcs: Vec<pbft::ViewChange> = (0..3)
        .map(|i| {
            let prep = if i == 0 {
                vec![prepared.clone()]
            } else {
                vec![]
            };
            let cp = pbft::CheckpointCert::genesis();
            pbft::ViewChange::new(v2, cp, prep, ReplicaId(i), &g, &key(i))
        })
        .collect();
    let new_view = pbft::NewView::new(v2, vcs.clone(), c, &g, &key(c.leader(v2).0));
    let vc_stable =
        pbft::ViewChange::new(View(3), stable.clone(), vec![], ReplicaId(3), &g, &key(3));
    let messages = vec![
        pbft::Message::PrePrepare(Box::new(pp)),
        pbft::Message::Prepare(vote(pbft::Phase::Prepare, 2)),
        pbft::Message::Commit(vote(pbft::Phase::Commit, 3)),
        pbft::Message::Checkpoint(checkpoint),
        pbft::Message::ViewChange(Box::new(vcs[0].clone())),
        pbft::Message::ViewChange(Box::new(vc_stable)),
        pbft::Message::NewView(Box::new(new_view)),
        pbft::Message::Fetch { from: 1 },
        pbft::Message::Committed(vec![cert.clone()]),
    ];
    let safety = pbft::SafetyData {
        view: v2,
        changing: true,
        stable,
        slots: BTreeMap::from([
            (
                3,
                pbft::SlotRecord {
                    signed: (v1, block.digest()),
                    prepared: Some(prepared),
                },
            ),
            (
                4,
                pbft::SlotRecord {
                    signed: (v2, d(9)),
                    prepared: None,
                },
            ),
        ]),
    };
    PbftCorpus {
        messages,
        certificates: vec![cert],
        safety,
    }
}

static PBFT: LazyLock<PbftCorpus> = LazyLock::new(pbft_corpus);

struct RaftCorpus {
    messages: Vec<raft::Message>,
    entries: Vec<raft::Entry>,
    hard_state: raft::HardState,
}

fn raft_corpus() -> RaftCorpus {
    let g = genesis();
    let entries = vec![
        raft::Entry::new(&key(1), &g, 2, 1, ReplicaId(1), 10, vec![]),
        raft::Entry::new(&key(1), &g, 2, 2, ReplicaId(1), 20, vec![d(1), d(2), d(3)]),
    ];
    let messages = vec![
        raft::Message::PreVote {
            term: 3,
            last_index: 2,
            last_term: 2,
        },
        raft::Message::PreVoteReply {
            term: 3,
            granted: true,
        },
        raft::Message::RequestVote {
            term: 3,
            last_index: 2,
            last_term: 2,
            transfer: false,
        },
        raft::Message::VoteReply {
            term: 3,
            granted: false,
        },
        raft::Message::Append {
            term: 2,
            prev_index: 0,
            prev_term: 0,
            entries: entries.clone(),
            commit: 1,
            read_round: 0,
        },
        raft::Message::Append {
            term: 2,
            prev_index: 2,
            prev_term: 2,
            entries: vec![],
            commit: 2,
            read_round: 0,
        },
        raft::Message::AppendReply {
            term: 2,
            success: true,
            index: 2,
            read_round: 0,
        },
        raft::Message::InstallSnapshot {
            term: 4,
            last_index: 100,
            last_term: 3,
        },
    ];
    RaftCorpus {
        messages,
        entries,
        hard_state: raft::HardState {
            term: 3,
            voted_for: Some(ReplicaId(1)),
        },
    }
}

static RAFT: LazyLock<RaftCorpus> = LazyLock::new(raft_corpus);

// ---- Cores to feed ----

fn hotstuff_core(rec: hs::Recovered) -> Option<hs::HotStuff> {
    let cfg = hs::Config {
        me: ReplicaId(3),
        key: key(3),
        committee: bft().clone(),
        genesis: genesis(),
        base_timeout_ms: 1000,
        max_timeout_ms: 8000,
        max_payload: MAX_PAYLOAD,
        idle_block_ms: 0,
    };
    let mut core = hs::HotStuff::new(cfg, rec).ok()?;
    core.start(0);
    Some(core)
}

fn pbft_core(rec: pbft::Recovered) -> Option<pbft::Pbft> {
    let cfg = pbft::Config {
        me: ReplicaId(3),
        key: key(3),
        committee: bft().clone(),
        genesis: genesis(),
        base_timeout_ms: 1000,
        max_timeout_ms: 8000,
        max_payload: MAX_PAYLOAD,
        idle_block_ms: 0,
        checkpoint_interval: CHECKPOINT_INTERVAL,
        start: pbft::CheckpointCert::genesis(),
    };
    let mut core = pbft::Pbft::new(cfg, rec).ok()?;
    core.start(0);
    Some(core)
}

fn raft_core(rec: raft::Recovered) -> Option<raft::Raft> {
    let cfg = raft::Config {
        me: ReplicaId(2),
        key: key(2),
        committee: cft().clone(),
        genesis: genesis(),
        election_timeout_ms: 1000,
        heartbeat_ms: 100,
        seed: 7,
        max_payload: MAX_PAYLOAD,
        max_append_entries: 8,
        max_inflight: 2,
        snapshot_interval: 4,
        log_keep: 1,
    };
    let mut core = raft::Raft::new(cfg, rec).ok()?;
    core.start(0);
    Some(core)
}

/// Feeds `msg` from `from` to `core`, then lets its timers fire, as a driver would.
fn feed<C: Core>(core: &mut C, from: u16, msg: C::Message) {
    core.handle(
        1,
        Input::Message {
            from: ReplicaId(from),
            msg,
        },
    );
    core.handle(2, Input::Persisted(u64::MAX));
    for timer in 0..4 {
        core.handle(10_000, Input::Timer(timer));
    }
}

// ---- Checks ----

/// Decodes `bytes` with `decode`: within the allocation budget, and when it decodes, the value
/// re-encodes to exactly `bytes` (`canonical`; PBFT's safety record holds a map, whose
/// entries may come in any order) and decodes back to itself.
fn check<T, E>(bytes: &[u8], decode: impl Fn(&[u8]) -> Result<T, E>, canonical: bool) -> Option<T>
where
    T: Serialize + PartialEq + Debug,
{
    let (r, used) = measured(|| decode(bytes));
    assert!(
        used <= budget(bytes.len()),
        "decoding {} bytes allocated {used} B",
        bytes.len()
    );
    let v = r.ok()?;
    let again = codec::encode(&v);
    if canonical {
        assert_eq!(again, bytes, "a second encoding of {v:?}");
    }
    assert!(
        decode(&again).is_ok_and(|w| w == v),
        "{v:?} does not roundtrip"
    );
    Some(v)
}

/// Whether a HotStuff message verifies (`None`: it carries nothing to verify). The part of a
/// timeout nobody signs (its `high_tc`, which proves itself) is dropped.
fn hs_verify(m: &hs::Message) -> Option<(bool, hs::Message)> {
    let (c, g) = (bft(), &genesis());
    let ok = match m {
        hs::Message::Propose(p) => p.verify(c, g).is_ok(),
        hs::Message::Vote(v) => v.verify(c, g).is_ok(),
        hs::Message::Timeout(t) => {
            let ok = t.verify(c, g).is_ok();
            let mut t = t.clone();
            t.high_tc = None;
            return Some((ok, hs::Message::Timeout(t)));
        }
        hs::Message::Tc(tc) => tc.verify(c, g).is_ok(),
        hs::Message::SyncRequest { .. } => return None,
        hs::Message::SyncResponse { blocks } => {
            blocks.iter().for_each(|b| {
                b.id();
            });
            return None;
        }
    };
    Some((ok, m.clone()))
}

fn pbft_verify(m: &pbft::Message) -> Option<bool> {
    let (c, g) = (bft(), &genesis());
    Some(match m {
        pbft::Message::PrePrepare(p) => p.verify(c, g, MAX_PAYLOAD).is_ok(),
        pbft::Message::Prepare(v) => v.verify(pbft::Phase::Prepare, c, g).is_ok(),
        pbft::Message::Commit(v) => v.verify(pbft::Phase::Commit, c, g).is_ok(),
        pbft::Message::Checkpoint(cp) => cp.verify(c, g).is_ok(),
        pbft::Message::ViewChange(vc) => vc
            .verify(c, g, MAX_PAYLOAD, WINDOW, &pbft::CheckpointCert::genesis())
            .is_ok(),
        pbft::Message::NewView(nv) => nv
            .verify(c, g, MAX_PAYLOAD, WINDOW, &pbft::CheckpointCert::genesis())
            .is_ok(),
        pbft::Message::Fetch { .. } => return None,
        pbft::Message::Committed(certs) => certs.iter().all(|x| x.verify(c, g).is_ok()),
    })
}

/// A HotStuff frame: decodes cleanly; verifies only if it is `original` (up to its unsigned
/// parts); and a core takes it from `from` without a panic.
fn check_hs_message(bytes: &[u8], original: Option<&hs::Message>, from: u16) {
    let Some(m) = check(bytes, hs::Message::decode, true) else {
        return;
    };
    if let (Some((true, signed)), Some(original)) = (hs_verify(&m), original) {
        let (_, want) = hs_verify(original).expect("signed");
        assert_eq!(signed, want, "a mutated message verifies");
    }
    if let Some(mut core) = hotstuff_core(hs::Recovered::default()) {
        feed(&mut core, from, m);
    }
}

fn check_pbft_message(bytes: &[u8], original: Option<&pbft::Message>, from: u16) {
    let Some(m) = check(bytes, pbft::Message::decode, true) else {
        return;
    };
    if let (Some(true), Some(original)) = (pbft_verify(&m), original) {
        // A list of self-proving certificates may lose some and still verify, down to an
        // empty list, which claims nothing (a mutated tag can turn any frame into one).
        if let pbft::Message::Committed(got) = &m {
            let sent: &[_] = match original {
                pbft::Message::Committed(sent) => sent,
                _ => &[],
            };
            assert!(
                got.iter().all(|c| sent.contains(c)),
                "a mutated certificate verifies"
            );
        } else {
            assert_eq!(&m, original, "a mutated message verifies");
        }
    }
    if let Some(mut core) = pbft_core(pbft::Recovered::default()) {
        feed(&mut core, from, m);
    }
}

fn check_raft_message(bytes: &[u8], from: u16) {
    let Some(m) = check(bytes, raft::Message::decode, true) else {
        return;
    };
    let _ = m.term();
    if let raft::Message::Append { entries, .. } = &m {
        for e in entries {
            let _ = e.verify(cft(), &genesis());
        }
    }
    // Raft peers are trusted not to lie (crash faults only), but a garbled frame from one
    // must still not bring the replica down.
    if let Some(mut core) = raft_core(raft::Recovered::default()) {
        feed(&mut core, from % 3, m);
    }
}

fn check_hs_certificate(bytes: &[u8], original: Option<&hs::CommitCertificate>) {
    let Some(cert) = check(bytes, hs::CommitCertificate::decode, true) else {
        return;
    };
    let _ = hs::activity_of(bytes);
    if cert.verify(bft(), &genesis()).is_ok()
        && let Some(original) = original
    {
        // The 2-chain proof is optional: a certificate without it still proves its block.
        assert_eq!(
            (&cert.block, &cert.qc),
            (&original.block, &original.qc),
            "a mutated certificate verifies"
        );
        assert!(cert.proof.is_none() || cert.proof == original.proof);
    }
}

fn check_pbft_certificate(bytes: &[u8], original: Option<&pbft::CommitCertificate>) {
    let Some(cert) = check(bytes, pbft::CommitCertificate::decode, true) else {
        return;
    };
    if cert.verify(bft(), &genesis()).is_ok()
        && let Some(original) = original
    {
        assert_eq!(&cert, original, "a mutated certificate verifies");
    }
}

fn check_raft_entry(bytes: &[u8], original: Option<&raft::Entry>) {
    let Some(e) = check(bytes, raft::Entry::decode, true) else {
        return;
    };
    if e.verify(cft(), &genesis()).is_ok()
        && let Some(original) = original
    {
        assert_eq!(&e, original, "a mutated entry verifies");
    }
    assert!(e.payload.len() <= raft::MAX_PAYLOAD);
}

/// The safety records: decoded from the store, then a core is rebuilt from them.
fn check_hs_safety(bytes: &[u8]) {
    if check(bytes, hs::SafetyData::decode, true).is_some() {
        hotstuff_core(hs::Recovered {
            safety: Some(bytes.to_vec()),
            ..Default::default()
        });
    }
}

fn check_pbft_safety(bytes: &[u8]) {
    if check(bytes, pbft::SafetyData::decode, false).is_some() {
        let recent = vec![codec::encode(&PBFT.certificates[0])];
        pbft_core(pbft::Recovered {
            safety: Some(bytes.to_vec()),
            height: 1,
            recent,
        });
    }
}

fn check_raft_hard_state(bytes: &[u8]) {
    if check(bytes, raft::HardState::decode, true).is_some() {
        raft_core(raft::Recovered {
            hard_state: Some(bytes.to_vec()),
            ..Default::default()
        });
    }
}

/// A core rebuilt from a store whose certificates or log entries are hostile.
fn check_recovery_records(bytes: &[u8]) {
    pbft_core(pbft::Recovered {
        safety: None,
        height: 1,
        recent: vec![bytes.to_vec()],
    });
    raft_core(raft::Recovered {
        hard_state: Some(RAFT.hard_state.encode()),
        applied: 1,
        applied_entry: Some(bytes.to_vec()),
        entries: vec![bytes.to_vec(), RAFT.entries[1].encode()],
        config: None,
    });
    let activity: Vec<_> = hs::activity_of(bytes).into_iter().collect();
    hotstuff_core(hs::Recovered {
        safety: None,
        committed: Some((crypto::hash(bytes), View(1))),
        history: activity,
    });
}

/// Every decoder on the same bytes.
fn check_everything(bytes: &[u8], from: u16) {
    check_hs_message(bytes, None, from);
    check_pbft_message(bytes, None, from);
    check_raft_message(bytes, from);
    check_hs_certificate(bytes, None);
    check_pbft_certificate(bytes, None);
    check_raft_entry(bytes, None);
    check_hs_safety(bytes);
    check_pbft_safety(bytes);
    check_raft_hard_state(bytes);
}

// ---- Properties ----

/// Arbitrary bytes, half of them behind a plausible enum tag (so that fixed-size variants
/// such as votes decode and go further), short ones more often.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(any::<u8>(), 0..4096),
    ];
    (prop::option::of(0u32..10), body).prop_map(|(tag, body)| {
        let mut b = tag.map(|t| t.to_le_bytes().to_vec()).unwrap_or_default();
        b.extend(body);
        b
    })
}

#[test]
fn arbitrary_bytes() {
    let _s = serial();
    proptest!(config(1000), |(bytes in hostile_bytes(), from in 0u16..4)| {
        check_everything(&bytes, from);
        check_recovery_records(&bytes);
    });
}

#[test]
fn hotstuff_message_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..7, ms in mutations(), from in 0u16..4)| {
        let m = &HS.messages[which];
        check_hs_message(&mutate(m.encode(), &ms), Some(m), from);
    });
}

#[test]
fn pbft_message_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..9, ms in mutations(), from in 0u16..4)| {
        let m = &PBFT.messages[which];
        check_pbft_message(&mutate(m.encode(), &ms), Some(m), from);
    });
}

#[test]
fn raft_message_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..8, ms in mutations(), from in 0u16..3)| {
        check_raft_message(&mutate(RAFT.messages[which].encode(), &ms), from);
    });
}

#[test]
fn certificates_and_entries_mutated() {
    let _s = serial();
    proptest!(config(1000), |(which in 0usize..2, ms in mutations())| {
        let hs_cert = &HS.certificates[which];
        check_hs_certificate(&mutate(codec::encode(hs_cert), &ms), Some(hs_cert));
        let pbft_cert = &PBFT.certificates[0];
        let bytes = mutate(pbft_cert.encode(), &ms);
        check_pbft_certificate(&bytes, Some(pbft_cert));
        check_recovery_records(&bytes);
        let entry = &RAFT.entries[which];
        let bytes = mutate(entry.encode(), &ms);
        check_raft_entry(&bytes, Some(entry));
        check_recovery_records(&bytes);
    });
}

#[test]
fn safety_records_mutated() {
    let _s = serial();
    proptest!(config(1000), |(ms in mutations())| {
        check_hs_safety(&mutate(HS.safety.encode(), &ms));
        check_pbft_safety(&mutate(PBFT.safety.encode(), &ms));
        check_raft_hard_state(&mutate(RAFT.hard_state.encode(), &ms));
    });
}

/// The corpus is what it claims: every value decodes to itself and every signed one
/// verifies, so that a mutation that stops verifying was refused for the mutation.
#[test]
fn the_corpus_is_valid() {
    let _s = serial();
    for m in &HS.messages {
        assert_eq!(
            check(&m.encode(), hs::Message::decode, true).as_ref(),
            Some(m)
        );
        assert_ne!(hs_verify(m).map(|(ok, _)| ok), Some(false), "{m:?}");
    }
    for m in &PBFT.messages {
        assert_eq!(
            check(&m.encode(), pbft::Message::decode, true).as_ref(),
            Some(m)
        );
        assert_ne!(pbft_verify(m), Some(false), "{m:?}");
    }
    for m in &RAFT.messages {
        assert_eq!(
            check(&m.encode(), raft::Message::decode, true).as_ref(),
            Some(m)
        );
    }
    for c in &HS.certificates {
        let b = codec::encode(c);
        assert_eq!(
            check(&b, hs::CommitCertificate::decode, true).as_ref(),
            Some(c)
        );
        assert_eq!(c.verify(bft(), &genesis()), Ok(()));
    }
    for c in &PBFT.certificates {
        let b = c.encode();
        assert_eq!(
            check(&b, pbft::CommitCertificate::decode, true).as_ref(),
            Some(c)
        );
        assert_eq!(c.verify(bft(), &genesis()), Ok(()));
    }
    for e in &RAFT.entries {
        assert_eq!(
            check(&e.encode(), raft::Entry::decode, true).as_ref(),
            Some(e)
        );
        assert_eq!(e.verify(cft(), &genesis()), Ok(()));
    }
    let b = HS.safety.encode();
    assert_eq!(
        check(&b, hs::SafetyData::decode, true).as_ref(),
        Some(&HS.safety)
    );
    let b = PBFT.safety.encode();
    assert_eq!(
        check(&b, pbft::SafetyData::decode, true).as_ref(),
        Some(&PBFT.safety)
    );
    let b = RAFT.hard_state.encode();
    assert_eq!(
        check(&b, raft::HardState::decode, true).as_ref(),
        Some(&RAFT.hard_state)
    );
    // Cores rebuilt from the valid records start.
    assert!(
        hotstuff_core(hs::Recovered {
            safety: Some(HS.safety.encode()),
            ..Default::default()
        })
        .is_some()
    );
    assert!(
        pbft_core(pbft::Recovered {
            safety: Some(PBFT.safety.encode()),
            height: 1,
            recent: vec![PBFT.certificates[0].encode()],
        })
        .is_some()
    );
    assert!(
        raft_core(raft::Recovered {
            hard_state: Some(RAFT.hard_state.encode()),
            ..Default::default()
        })
        .is_some()
    );
}

/// Every huge length prefix at every position of every valid encoding, decoding only (what
/// a decoded value goes through is covered above).
#[test]
fn huge_length_prefixes_allocate_little() {
    let _s = serial();
    for m in &HS.messages {
        every_prefix_attack(&m.encode(), |b| {
            check(b, hs::Message::decode, true);
        });
    }
    for m in &PBFT.messages {
        every_prefix_attack(&m.encode(), |b| {
            check(b, pbft::Message::decode, true);
        });
    }
    for m in &RAFT.messages {
        every_prefix_attack(&m.encode(), |b| {
            check(b, raft::Message::decode, true);
        });
    }
    for c in &HS.certificates {
        every_prefix_attack(&codec::encode(c), |b| {
            check(b, hs::CommitCertificate::decode, true);
        });
    }
    every_prefix_attack(&PBFT.certificates[0].encode(), |b| {
        check(b, pbft::CommitCertificate::decode, true);
    });
    for e in &RAFT.entries {
        every_prefix_attack(&e.encode(), |b| {
            check(b, raft::Entry::decode, true);
        });
    }
    every_prefix_attack(&HS.safety.encode(), |b| {
        check(b, hs::SafetyData::decode, true);
    });
    every_prefix_attack(&PBFT.safety.encode(), |b| {
        check(b, pbft::SafetyData::decode, false);
    });
    every_prefix_attack(&RAFT.hard_state.encode(), |b| {
        check(b, raft::HardState::decode, true);
    });
    assert!(
        ALLOC.max_allocated() < 256 << 20,
        "heap high-water mark {} B",
        ALLOC.max_allocated()
    );
}

/// Raft's own bounds hold after decoding: at most `MAX_ENTRIES_PER_APPEND` entries per
/// Append and `MAX_PAYLOAD` digests per entry, whatever the frame claims.
#[test]
fn raft_bounds_hold_for_frames_at_the_limit() {
    let _s = serial();
    let g = genesis();
    let fat = raft::Entry::new(
        &key(0),
        &g,
        1,
        1,
        ReplicaId(0),
        0,
        vec![d(0); raft::MAX_PAYLOAD + 1],
    );
    assert!(check(&fat.encode(), raft::Entry::decode, true).is_none());
    let append = |entries| raft::Message::Append {
        term: 1,
        prev_index: 0,
        prev_term: 0,
        entries,
        commit: 0,
        read_round: 0,
    };
    assert!(check(&append(vec![fat]).encode(), raft::Message::decode, true).is_none());
    let thin = raft::Entry::new(&key(0), &g, 1, 1, ReplicaId(0), 0, vec![]);
    let many = append(vec![thin; raft::MAX_ENTRIES_PER_APPEND + 1]);
    assert!(check(&many.encode(), raft::Message::decode, true).is_none());
}

// ---- Validly signed hostile messages: a Byzantine member of the committee ----
//
// Byte mutations almost never survive signature checks, so the cores above see mostly
// rejects. Here the fields are hostile (views and sequence numbers at 0 and near u64::MAX,
// payloads over the limit, blocks extending any certificate, digests of nothing) but the
// signatures are real, so every message reaches the core's rules.

fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..8, (u64::MAX - 3)..=u64::MAX, any::<u64>()]
}

fn hs_qcs() -> Vec<hs::QuorumCert> {
    vec![
        hs::QuorumCert::genesis(genesis()),
        HS.certificates[0].qc.clone(),
        HS.certificates[1].qc.clone(),
    ]
}

fn hs_tc() -> hs::TimeoutCert {
    HS.safety.high_tc.clone().expect("corpus TC")
}

fn some_digest() -> impl Strategy<Value = Digest> {
    let known: Vec<Digest> = HS
        .safety
        .blocks
        .iter()
        .map(hs::Block::id)
        .chain([genesis(), PBFT.certificates[0].block.digest()])
        .collect();
    prop_oneof![
        prop::sample::select(known),
        any::<[u8; 32]>().prop_map(Digest)
    ]
}

fn hs_block_spec() -> impl Strategy<Value = hs::Block> {
    (0u16..5, edge(), 0usize..3, any::<u64>(), 0usize..16).prop_map(|(p, v, q, ts, n)| hs::Block {
        view: View(v),
        justify: hs_qcs()[q].clone(),
        proposer: ReplicaId(p),
        timestamp_ms: ts,
        payload: (0..n).map(|k| d(k as u8)).collect(),
    })
}

/// A HotStuff message and the replica that sends it (its signer, when it is signed).
fn hs_hostile() -> impl Strategy<Value = (u16, hs::Message)> {
    prop_oneof![
        (0usize..7)
            .prop_map(|k| (HS.messages[k].clone(), k))
            .prop_map(|(m, k)| {
                let from = match &m {
                    hs::Message::Propose(p) => p.block.proposer.0,
                    hs::Message::Vote(v) => v.voter.0,
                    hs::Message::Timeout(t) => t.author.0,
                    _ => k as u16 % 4,
                };
                (from, m)
            }),
        (0u16..4, some_digest(), edge()).prop_map(|(i, b, v)| {
            let vote = hs::Vote::new(&genesis(), b, View(v), ReplicaId(i), &key(i));
            (i, hs::Message::Vote(vote))
        }),
        (0u16..4, edge(), 0usize..3, any::<bool>()).prop_map(|(i, v, q, tc)| {
            let mut t = hs::Timeout::new(
                &genesis(),
                View(v),
                hs_qcs()[q].clone(),
                ReplicaId(i),
                &key(i),
            );
            t.high_tc = tc.then(|| Box::new(hs_tc()));
            (i, hs::Message::Timeout(Box::new(t)))
        }),
        (hs_block_spec(), any::<bool>()).prop_map(|(b, tc)| {
            let signer = b.proposer.0 % 4;
            let p = hs::Proposal::new(b, tc.then(hs_tc), &key(signer));
            (signer, hs::Message::Propose(Box::new(p)))
        }),
        (some_digest(), edge()).prop_map(|(block, above)| {
            let above = View(above);
            (1, hs::Message::SyncRequest { block, above })
        }),
        prop::collection::vec(hs_block_spec(), 0..5)
            .prop_map(|blocks| (2, hs::Message::SyncResponse { blocks })),
        edge().prop_map(|v| {
            let tc = hs::TimeoutCert {
                view: View(v),
                ..hs_tc()
            };
            (0, hs::Message::Tc(tc))
        }),
    ]
}

fn pbft_block_spec() -> impl Strategy<Value = pbft::Block> {
    (0u16..5, edge(), any::<u64>(), 0usize..16).prop_map(|(p, seq, ts, n)| pbft::Block {
        seq,
        proposer: ReplicaId(p),
        timestamp_ms: ts,
        payload: (0..n).map(|k| d(k as u8)).collect(),
    })
}

fn pbft_hostile() -> impl Strategy<Value = (u16, pbft::Message)> {
    let g = genesis();
    let phase = prop_oneof![Just(pbft::Phase::Prepare), Just(pbft::Phase::Commit)];
    prop_oneof![
        (0usize..9, 0u16..4).prop_map(|(k, from)| (from, PBFT.messages[k].clone())),
        (0u16..4, edge(), pbft_block_spec()).prop_map(move |(i, v, b)| {
            let pp = pbft::PrePrepare::new(View(v), b, &g, &key(i));
            (i, pbft::Message::PrePrepare(Box::new(pp)))
        }),
        (0u16..4, phase, edge(), edge(), some_digest()).prop_map(move |(i, ph, v, s, dg)| {
            let vote = pbft::Vote::new(ph, View(v), s, dg, ReplicaId(i), &g, &key(i));
            let m = match ph {
                pbft::Phase::Prepare => pbft::Message::Prepare(vote),
                pbft::Phase::Commit => pbft::Message::Commit(vote),
            };
            (i, m)
        }),
        (0u16..4, edge(), some_digest()).prop_map(move |(i, s, root)| {
            let cp = pbft::Checkpoint::new(s, root, ReplicaId(i), &g, &key(i));
            (i, pbft::Message::Checkpoint(cp))
        }),
        (0u16..4, edge(), any::<bool>(), any::<bool>()).prop_map(move |(i, v, st, prep)| {
            let stable = if st {
                PBFT.safety.stable.clone()
            } else {
                pbft::CheckpointCert::genesis()
            };
            let prepared = PBFT.safety.slots[&3].prepared.clone();
            let prepared = if prep {
                prepared.into_iter().collect()
            } else {
                vec![]
            };
            let vc = pbft::ViewChange::new(View(v), stable, prepared, ReplicaId(i), &g, &key(i));
            (i, pbft::Message::ViewChange(Box::new(vc)))
        }),
        (edge(), 1usize..5).prop_map(move |(v, n)| {
            let c = bft();
            let vcs: Vec<_> = (0..n as u16)
                .map(|i| {
                    let cp = pbft::CheckpointCert::genesis();
                    pbft::ViewChange::new(View(v), cp, vec![], ReplicaId(i), &g, &key(i))
                })
                .collect();
            let primary = c.leader(View(v));
            let nv = pbft::NewView::new(View(v), vcs, c, &g, &key(primary.0));
            (primary.0, pbft::Message::NewView(Box::new(nv)))
        }),
        edge().prop_map(|from| (1, pbft::Message::Fetch { from })),
        (edge(), 0usize..3).prop_map(|(seq, n)| {
            let mut cert = PBFT.certificates[0].clone();
            cert.block.seq = seq;
            (2, pbft::Message::Committed(vec![cert; n]))
        }),
    ]
}

fn raft_entry_spec() -> impl Strategy<Value = raft::Entry> {
    (0u16..3, edge(), edge(), any::<u64>(), 0usize..14).prop_map(|(l, term, index, ts, n)| {
        let payload = (0..n).map(|k| d(k as u8)).collect();
        raft::Entry::new(&key(l), &genesis(), term, index, ReplicaId(l), ts, payload)
    })
}

fn raft_hostile() -> impl Strategy<Value = (u16, raft::Message)> {
    prop_oneof![
        (0usize..8, 0u16..2).prop_map(|(k, from)| (from, RAFT.messages[k].clone())),
        (0u16..2, edge(), edge(), edge(), any::<bool>()).prop_map(|(from, term, li, lt, pre)| {
            let m = if pre {
                raft::Message::PreVote {
                    term,
                    last_index: li,
                    last_term: lt,
                }
            } else {
                raft::Message::RequestVote {
                    term,
                    last_index: li,
                    last_term: lt,
                    transfer: false,
                }
            };
            (from, m)
        }),
        (0u16..2, edge(), any::<bool>(), any::<bool>()).prop_map(|(from, term, granted, pre)| {
            let m = if pre {
                raft::Message::PreVoteReply { term, granted }
            } else {
                raft::Message::VoteReply { term, granted }
            };
            (from, m)
        }),
        (
            0u16..2,
            edge(),
            edge(),
            edge(),
            prop::collection::vec(raft_entry_spec(), 0..4),
            edge()
        )
            .prop_map(|(from, term, prev_index, prev_term, entries, commit)| {
                let m = raft::Message::Append {
                    term,
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    read_round: 0,
                };
                (from, m)
            }),
        (0u16..2, edge(), any::<bool>(), edge()).prop_map(|(from, term, success, index)| {
            (
                from,
                raft::Message::AppendReply {
                    term,
                    success,
                    index,
                    read_round: 0,
                },
            )
        }),
        (0u16..2, edge(), edge(), edge()).prop_map(|(from, term, li, lt)| {
            let m = raft::Message::InstallSnapshot {
                term,
                last_index: li,
                last_term: lt,
            };
            (from, m)
        }),
    ]
}

/// Feeds `msgs` in order, each followed by what a driver would feed next (the persist
/// acknowledgement, the executed block for each commit, and every timer).
fn drive<C: Core>(core: &mut C, msgs: Vec<(u16, C::Message)>) {
    let mut now = 1;
    let mut height = 0;
    for (from, msg) in msgs {
        now += 100;
        let mut actions = core.handle(
            now,
            Input::Message {
                from: ReplicaId(from),
                msg,
            },
        );
        actions.extend(core.handle(now, Input::Persisted(u64::MAX)));
        actions.extend(core.handle(now, Input::Payload(d(200))));
        for timer in 0..4 {
            actions.extend(core.handle(now + 10_000, Input::Timer(timer)));
        }
        for a in actions {
            if let consensus::Action::Commit(_) = a {
                height += 1;
                core.handle(
                    now,
                    Input::Executed {
                        height,
                        state_root: d(100),
                    },
                );
            }
        }
    }
}

#[test]
fn hotstuff_core_takes_signed_hostile_messages() {
    let _s = serial();
    proptest!(config(400), |(msgs in prop::collection::vec(hs_hostile(), 1..12))| {
        let mut core = hotstuff_core(hs::Recovered::default()).unwrap();
        drive(&mut core, msgs);
    });
}

#[test]
fn pbft_core_takes_signed_hostile_messages() {
    let _s = serial();
    proptest!(config(400), |(msgs in prop::collection::vec(pbft_hostile(), 1..12))| {
        let mut core = pbft_core(pbft::Recovered::default()).unwrap();
        drive(&mut core, msgs);
    });
}

#[test]
fn raft_core_takes_hostile_messages() {
    let _s = serial();
    proptest!(config(400), |(msgs in prop::collection::vec(raft_hostile(), 1..12))| {
        let mut core = raft_core(raft::Recovered::default()).unwrap();
        drive(&mut core, msgs);
    });
}
