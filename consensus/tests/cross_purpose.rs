//! A signature made for one purpose is rejected for every other, at the level of the messages
//! that carry them: a HotStuff vote is not a proposal, a timeout is not a vote, a PBFT prepare
//! is not a commit (although both sign the very same bytes), a Raft block signature is not a
//! vote, no consensus signature is a transaction signature and no transaction signature is a
//! vote.
//!
//! Two kinds of test:
//!
//! - **Transplants**: a real signed object (built by the protocol's own constructor) gives its
//!   signature, and where possible its signed content, to an object of another purpose,
//!   which its verifier must reject.
//! - **Exact bytes, every domain**: for every kind of signed object, the bytes its verifier
//!   checks are signed by the right key under each [`Domain`] in turn; the verifier accepts
//!   exactly the one signed under its own domain. That acceptance is the negative control: it
//!   shows the bytes are exactly the ones checked, so each rejection is due to the domain
//!   alone — if a verifier ignored its domain, or two purposes shared one, this fails.
//!
//! `crypto/src/sig.rs` already checks sign-under-A / verify-under-B for single verification;
//! here the same is checked through batch verification, against splicing the tag into the
//! message, and for arbitrary messages.

use consensus::hotstuff::{self as hs, Verify as _};
use consensus::{ReplicaId, View, pbft, raft};
use crypto::{Digest, Domain, PublicKey, SecretKey, Signature, codec};
use ledger::{Address, ChainBinding, Payload, RejectReason, State, Transaction};
use proptest::prelude::*;

#[path = "kit/fixtures.rs"]
mod fixtures;
use fixtures::*;
const MAX_PAYLOAD: usize = 10;
const WINDOW: u64 = 32;

/// Signs `bytes` with `key` under every domain and hands each signature to `verifies`:
/// exactly the one made under `own` must pass.
fn only_its_own_domain(
    what: &str,
    own: Domain,
    key: &SecretKey,
    bytes: &[u8],
    verifies: impl Fn(Signature) -> bool,
) {
    for domain in Domain::ALL {
        let ok = verifies(key.sign(domain, bytes));
        assert_eq!(
            ok,
            domain == own,
            "{what}: signature made for {domain:?} over its exact bytes {}",
            if ok { "accepted" } else { "rejected" }
        );
    }
}

// ---- The bytes each verifier checks, rebuilt from the documented layouts (the
// ---- `only_its_own_domain` controls prove each is exact) ----

fn hs_vote_bytes(block: &Digest, view: View) -> Vec<u8> {
    codec::encode(&(&genesis(), block, view))
}
fn hs_timeout_bytes(view: View, high_qc_view: View) -> Vec<u8> {
    codec::encode(&(&genesis(), view, high_qc_view))
}
fn pbft_slot_bytes(view: View, seq: u64, digest: &Digest) -> Vec<u8> {
    codec::encode(&(&genesis(), view, seq, digest))
}
fn pbft_checkpoint_bytes(seq: u64, root: &Digest) -> Vec<u8> {
    codec::encode(&(&genesis(), seq, root))
}
fn pbft_view_change_bytes(vc: &pbft::ViewChange) -> Vec<u8> {
    let prepared: Vec<(View, u64, Digest)> = vc
        .prepared
        .iter()
        .map(|p| (p.view(), p.seq(), p.digest()))
        .collect();
    codec::encode(&(
        &genesis(),
        vc.view,
        vc.stable.seq,
        vc.stable.state_root,
        prepared,
        vc.replica,
    ))
}
fn pbft_new_view_bytes(nv: &pbft::NewView) -> Vec<u8> {
    let vcs: Vec<(ReplicaId, Signature)> = nv
        .view_changes
        .iter()
        .map(|vc| (vc.replica, vc.signature))
        .collect();
    let pps: Vec<Digest> = nv.pre_prepares.iter().map(|p| p.block.digest()).collect();
    codec::encode(&(&genesis(), nv.view, vcs, pps))
}

// ---- HotStuff fixtures ----

fn hs_block(view: u64, justify: hs::QuorumCert) -> hs::Block {
    hs::Block {
        view: View(view),
        justify,
        proposer: bft().leader(View(view)),
        timestamp_ms: view * 10,
        payload: vec![d(view as u8)],
    }
}
fn hs_qc(b: &hs::Block, signers: &[u16]) -> hs::QuorumCert {
    hs::QuorumCert {
        block: b.id(),
        view: b.view,
        votes: signers
            .iter()
            .map(|&i| {
                let v = hs::Vote::new(&genesis(), b.id(), b.view, ReplicaId(i), &key(i));
                (ReplicaId(i), v.signature)
            })
            .collect(),
    }
}
/// Block 1 (proposed by replica 1), its QC, and block 2 on top.
fn hs_chain() -> (hs::Block, hs::QuorumCert, hs::Block) {
    let b1 = hs_block(1, hs::QuorumCert::genesis(genesis()));
    let qc1 = hs_qc(&b1, &[0, 1, 2]);
    let b2 = hs_block(2, qc1.clone());
    (b1, qc1, b2)
}

// ---- HotStuff transplants ----

#[test]
fn a_hotstuff_vote_is_not_a_proposal() {
    let (c, g) = (bft(), genesis());
    let (b1, _, _) = hs_chain();
    let leader = b1.proposer;
    // The leader's own vote for its block: the vote's digest is the block's id.
    let vote = hs::Vote::new(&genesis(), b1.id(), b1.view, leader, &key(leader.0));
    assert_eq!(vote.block, b1.id());
    let forged = hs::Proposal {
        block: b1.clone(),
        tc: None,
        signature: vote.signature,
    };
    assert_eq!(forged.verify(c, &g), Err(hs::Invalid::BadSignature(leader)));
    // Control: the same block with the leader's proposal signature is accepted.
    let real = hs::Proposal::new(b1.clone(), None, &key(leader.0));
    assert_eq!(real.verify(c, &g), Ok(()));
    // And the vote is a valid vote: only its purpose is wrong.
    assert_eq!(vote.verify(c, &g), Ok(()));
}

#[test]
fn a_hotstuff_proposal_is_not_a_vote() {
    let (c, g) = (bft(), genesis());
    let (b1, qc1, _) = hs_chain();
    let leader = b1.proposer;
    let proposal = hs::Proposal::new(b1.clone(), None, &key(leader.0));
    assert_eq!(proposal.verify(c, &g), Ok(()));
    let forged = hs::Vote {
        block: b1.id(),
        view: b1.view,
        voter: leader,
        signature: proposal.signature,
    };
    assert_eq!(forged.verify(c, &g), Err(hs::Invalid::BadSignature(leader)));
    // Nor does it count towards a QC in place of the leader's vote.
    let mut qc = qc1.clone();
    for (id, sig) in &mut qc.votes {
        if *id == leader {
            *sig = proposal.signature;
        }
    }
    assert!(qc.votes.iter().any(|(id, _)| *id == leader));
    assert_eq!(qc.verify(c, &g), Err(hs::Invalid::BadSignature(leader)));
    assert_eq!(qc1.verify(c, &g), Ok(()), "control: the genuine QC");
}

#[test]
fn a_hotstuff_timeout_is_not_a_vote_and_a_vote_is_not_a_timeout() {
    let (c, g) = (bft(), genesis());
    let (b1, qc1, b2) = hs_chain();
    let me = ReplicaId(3);
    // A timeout of view 2 carrying qc1 (view 1), and a vote in view 2.
    let timeout = hs::Timeout::new(&genesis(), View(2), qc1.clone(), me, &key(3));
    assert_eq!(timeout.verify(c, &g), Ok(()));
    let vote = hs::Vote::new(&genesis(), b2.id(), View(2), me, &key(3));
    assert_eq!(vote.verify(c, &g), Ok(()));

    let forged_vote = hs::Vote {
        signature: timeout.signature,
        ..vote.clone()
    };
    assert_eq!(
        forged_vote.verify(c, &g),
        Err(hs::Invalid::BadSignature(me))
    );
    let forged_timeout = hs::Timeout {
        signature: vote.signature,
        ..timeout.clone()
    };
    assert_eq!(
        forged_timeout.verify(c, &g),
        Err(hs::Invalid::BadSignature(me))
    );
    // Votes do not make a timeout certificate either.
    let tc = |sig: &dyn Fn(u16) -> Signature| hs::TimeoutCert {
        view: View(2),
        timeouts: (0..3).map(|i| (ReplicaId(i), View(1), sig(i))).collect(),
        high_qc: qc1.clone(),
    };
    let from_votes =
        tc(&|i| hs::Vote::new(&genesis(), b2.id(), View(2), ReplicaId(i), &key(i)).signature);
    assert!(matches!(
        from_votes.verify(c, &g),
        Err(hs::Invalid::BadSignature(_))
    ));
    let from_timeouts = tc(&|i| {
        hs::Timeout::new(&genesis(), View(2), qc1.clone(), ReplicaId(i), &key(i)).signature
    });
    assert_eq!(from_timeouts.verify(c, &g), Ok(()), "control");
    let _ = b1;
}

#[test]
fn every_hotstuff_signature_only_under_its_own_domain() {
    let (c, g) = (bft(), genesis());
    let (b1, qc1, b2) = hs_chain();

    // Proposal: the block id.
    let leader = b2.proposer;
    only_its_own_domain(
        "hotstuff proposal",
        Domain::Proposal,
        &key(leader.0),
        &b2.id().0,
        |signature| {
            let p = hs::Proposal {
                block: b2.clone(),
                tc: None,
                signature,
            };
            p.verify(c, &g).is_ok()
        },
    );
    // Vote: (block id, view).
    only_its_own_domain(
        "hotstuff vote",
        Domain::Vote,
        &key(3),
        &hs_vote_bytes(&b2.id(), b2.view),
        |signature| {
            let v = hs::Vote {
                block: b2.id(),
                view: b2.view,
                voter: ReplicaId(3),
                signature,
            };
            v.verify(c, &g).is_ok()
        },
    );
    // A vote inside a QC.
    only_its_own_domain(
        "hotstuff QC entry",
        Domain::Vote,
        &key(2),
        &hs_vote_bytes(&b1.id(), b1.view),
        |signature| {
            let mut qc = qc1.clone();
            qc.votes[2] = (ReplicaId(2), signature);
            qc.verify(c, &g).is_ok()
        },
    );
    // Timeout: (view, high QC view).
    only_its_own_domain(
        "hotstuff timeout",
        Domain::Timeout,
        &key(3),
        &hs_timeout_bytes(View(2), View(1)),
        |signature| {
            let t = hs::Timeout {
                signature,
                ..hs::Timeout::new(&genesis(), View(2), qc1.clone(), ReplicaId(3), &key(3))
            };
            t.verify(c, &g).is_ok()
        },
    );
    // A timeout inside a TC.
    only_its_own_domain(
        "hotstuff TC entry",
        Domain::Timeout,
        &key(0),
        &hs_timeout_bytes(View(2), View(1)),
        |signature| {
            let tc = hs::TimeoutCert {
                view: View(2),
                timeouts: (0..3)
                    .map(|i| {
                        let sig = if i == 0 {
                            signature
                        } else {
                            hs::Timeout::new(
                                &genesis(),
                                View(2),
                                qc1.clone(),
                                ReplicaId(i),
                                &key(i),
                            )
                            .signature
                        };
                        (ReplicaId(i), View(1), sig)
                    })
                    .collect(),
                high_qc: qc1.clone(),
            };
            tc.verify(c, &g).is_ok()
        },
    );
}

// ---- PBFT: pre-prepare, prepare and commit sign the very same bytes ----

struct Slot {
    view: View,
    block: pbft::Block,
    primary: ReplicaId,
}

fn slot() -> Slot {
    let view = View(1);
    let primary = bft().leader(view);
    Slot {
        view,
        block: pbft::Block {
            seq: 1,
            proposer: primary,
            timestamp_ms: 10,
            payload: vec![d(1)],
        },
        primary,
    }
}

fn pbft_vote(s: &Slot, phase: pbft::Phase, i: u16) -> pbft::Vote {
    pbft::Vote::new(
        phase,
        s.view,
        s.block.seq,
        s.block.digest(),
        ReplicaId(i),
        &genesis(),
        &key(i),
    )
}

#[test]
fn a_pbft_prepare_is_not_a_commit_and_a_commit_is_not_a_prepare() {
    use pbft::Phase::{Commit, Prepare};
    let (c, g, s) = (bft(), genesis(), slot());
    let prepare = pbft_vote(&s, Prepare, 2);
    let commit = pbft_vote(&s, Commit, 2);
    // Same view, sequence number, digest and replica: only the domain differs.
    assert_eq!(
        (prepare.view, prepare.seq, prepare.digest, prepare.replica),
        (commit.view, commit.seq, commit.digest, commit.replica)
    );
    assert_ne!(prepare.signature, commit.signature);
    assert_eq!(prepare.verify(Prepare, c, &g), Ok(()));
    assert_eq!(commit.verify(Commit, c, &g), Ok(()));
    let bad = Err(pbft::Invalid::BadSignature(ReplicaId(2)));
    assert_eq!(prepare.verify(Commit, c, &g), bad);
    assert_eq!(commit.verify(Prepare, c, &g), bad);

    // Certificates: prepares do not make a commit certificate, nor commits a prepared one.
    let cert = |phase| pbft::CommitCertificate {
        view: s.view,
        block: s.block.clone(),
        commits: (0..3)
            .map(|i| (ReplicaId(i), pbft_vote(&s, phase, i).signature))
            .collect(),
    };
    assert_eq!(cert(Commit).verify(c, &g), Ok(()), "control");
    assert!(matches!(
        cert(Prepare).verify(c, &g),
        Err(pbft::Invalid::BadSignature(_))
    ));
    let pp = pbft::PrePrepare::new(s.view, s.block.clone(), &g, &key(s.primary.0));
    let prepared = |phase| pbft::PreparedCert {
        pre_prepare: pp.clone(),
        prepares: [0, 2]
            .iter()
            .map(|&i| (ReplicaId(i), pbft_vote(&s, phase, i).signature))
            .collect(),
    };
    assert_eq!(
        prepared(Prepare).verify(c, &g, MAX_PAYLOAD),
        Ok(()),
        "control"
    );
    assert!(matches!(
        prepared(Commit).verify(c, &g, MAX_PAYLOAD),
        Err(pbft::Invalid::BadSignature(_))
    ));
}

#[test]
fn a_pbft_pre_prepare_is_not_a_prepare_or_commit_and_back() {
    use pbft::Phase::{Commit, Prepare};
    let (c, g, s) = (bft(), genesis(), slot());
    let pp = pbft::PrePrepare::new(s.view, s.block.clone(), &g, &key(s.primary.0));
    assert_eq!(pp.verify(c, &g, MAX_PAYLOAD), Ok(()));
    // The primary's pre-prepare signature as the primary's prepare or commit.
    let as_vote = pbft::Vote {
        view: s.view,
        seq: s.block.seq,
        digest: s.block.digest(),
        replica: s.primary,
        signature: pp.signature,
    };
    let bad = Err(pbft::Invalid::BadSignature(s.primary));
    assert_eq!(as_vote.verify(Prepare, c, &g), bad);
    assert_eq!(as_vote.verify(Commit, c, &g), bad);
    // The primary's prepare or commit as its pre-prepare.
    for phase in [Prepare, Commit] {
        let vote = pbft_vote(&s, phase, s.primary.0);
        assert_eq!(vote.verify(phase, c, &g), Ok(()), "control");
        let forged = pbft::PrePrepare {
            signature: vote.signature,
            ..pp.clone()
        };
        assert_eq!(forged.verify(c, &g, MAX_PAYLOAD), bad);
    }
}

#[test]
fn pbft_checkpoints_view_changes_and_new_views_are_not_interchangeable() {
    use pbft::Phase::{Commit, Prepare};
    let (c, g, s) = (bft(), genesis(), slot());
    let root = crypto::hash(b"root");
    let checkpoint = pbft::Checkpoint::new(1, root, ReplicaId(2), &g, &key(2));
    assert_eq!(checkpoint.verify(c, &g), Ok(()));
    let vc = pbft::ViewChange::new(
        View(2),
        pbft::CheckpointCert::genesis(),
        vec![],
        ReplicaId(2),
        &g,
        &key(2),
    );
    assert_eq!(
        vc.verify(c, &g, MAX_PAYLOAD, WINDOW, &pbft::CheckpointCert::genesis()),
        Ok(())
    );
    let commit = pbft_vote(&s, Commit, 2);
    let bad = pbft::Invalid::BadSignature(ReplicaId(2));

    // Each one's signature in the others' place.
    let cp_with = |signature| pbft::Checkpoint {
        signature,
        ..checkpoint.clone()
    };
    let vc_with = |signature| pbft::ViewChange {
        signature,
        ..vc.clone()
    };
    let vote_with = |signature| pbft::Vote {
        signature,
        ..commit.clone()
    };
    assert_eq!(cp_with(vc.signature).verify(c, &g), Err(bad.clone()));
    assert_eq!(cp_with(commit.signature).verify(c, &g), Err(bad.clone()));
    assert_eq!(
        vc_with(checkpoint.signature).verify(
            c,
            &g,
            MAX_PAYLOAD,
            WINDOW,
            &pbft::CheckpointCert::genesis()
        ),
        Err(bad.clone())
    );
    assert_eq!(
        vc_with(commit.signature).verify(
            c,
            &g,
            MAX_PAYLOAD,
            WINDOW,
            &pbft::CheckpointCert::genesis()
        ),
        Err(bad.clone())
    );
    for phase in [Prepare, Commit] {
        assert_eq!(
            vote_with(checkpoint.signature).verify(phase, c, &g),
            Err(bad.clone())
        );
        assert_eq!(
            vote_with(vc.signature).verify(phase, c, &g),
            Err(bad.clone())
        );
    }
}

#[test]
fn every_pbft_signature_only_under_its_own_domain() {
    let (c, g, s) = (bft(), genesis(), slot());
    let slot_bytes = pbft_slot_bytes(s.view, s.block.seq, &s.block.digest());
    let pp = pbft::PrePrepare::new(s.view, s.block.clone(), &g, &key(s.primary.0));

    only_its_own_domain(
        "pbft pre-prepare",
        Domain::PbftPrePrepare,
        &key(s.primary.0),
        &slot_bytes,
        |signature| {
            let p = pbft::PrePrepare {
                signature,
                ..pp.clone()
            };
            p.verify(c, &g, MAX_PAYLOAD).is_ok()
        },
    );
    for (phase, own) in [
        (pbft::Phase::Prepare, Domain::PbftPrepare),
        (pbft::Phase::Commit, Domain::PbftCommit),
    ] {
        only_its_own_domain(
            &format!("pbft {phase:?}"),
            own,
            &key(3),
            &slot_bytes,
            |signature| {
                let v = pbft::Vote {
                    signature,
                    ..pbft_vote(&s, phase, 3)
                };
                v.verify(phase, c, &g).is_ok()
            },
        );
    }
    // A commit inside a commit certificate, a prepare inside a prepared certificate.
    only_its_own_domain(
        "pbft commit certificate entry",
        Domain::PbftCommit,
        &key(0),
        &slot_bytes,
        |signature| {
            let mut commits: Vec<_> = (1..3)
                .map(|i| {
                    let v = pbft_vote(&s, pbft::Phase::Commit, i);
                    (ReplicaId(i), v.signature)
                })
                .collect();
            commits.insert(0, (ReplicaId(0), signature));
            let cert = pbft::CommitCertificate {
                view: s.view,
                block: s.block.clone(),
                commits,
            };
            cert.verify(c, &g).is_ok()
        },
    );
    only_its_own_domain(
        "pbft prepared certificate entry",
        Domain::PbftPrepare,
        &key(0),
        &slot_bytes,
        |signature| {
            let v2 = pbft_vote(&s, pbft::Phase::Prepare, 2);
            let cert = pbft::PreparedCert {
                pre_prepare: pp.clone(),
                prepares: vec![(ReplicaId(0), signature), (ReplicaId(2), v2.signature)],
            };
            cert.verify(c, &g, MAX_PAYLOAD).is_ok()
        },
    );

    // Checkpoint, alone and inside a stable checkpoint certificate.
    let root = crypto::hash(b"root");
    only_its_own_domain(
        "pbft checkpoint",
        Domain::PbftCheckpoint,
        &key(1),
        &pbft_checkpoint_bytes(2, &root),
        |signature| {
            let cp = pbft::Checkpoint {
                signature,
                ..pbft::Checkpoint::new(2, root, ReplicaId(1), &g, &key(1))
            };
            cp.verify(c, &g).is_ok()
        },
    );
    only_its_own_domain(
        "pbft checkpoint certificate entry",
        Domain::PbftCheckpoint,
        &key(2),
        &pbft_checkpoint_bytes(2, &root),
        |signature| {
            let mut signatures: Vec<_> = (0..2)
                .map(|i| {
                    let cp = pbft::Checkpoint::new(2, root, ReplicaId(i), &g, &key(i));
                    (ReplicaId(i), cp.signature)
                })
                .collect();
            signatures.push((ReplicaId(2), signature));
            let cert = pbft::CheckpointCert {
                seq: 2,
                state_root: root,
                signatures,
            };
            cert.verify(c, &g, &pbft::CheckpointCert::genesis()).is_ok()
        },
    );

    // View change (carrying a prepared certificate) and new view.
    let prepared = pbft::PreparedCert {
        pre_prepare: pp.clone(),
        prepares: [0, 2]
            .iter()
            .map(|&i| {
                let v = pbft_vote(&s, pbft::Phase::Prepare, i);
                (ReplicaId(i), v.signature)
            })
            .collect(),
    };
    let vcs: Vec<pbft::ViewChange> = (0..3)
        .map(|i| {
            let prep = if i == 0 {
                vec![prepared.clone()]
            } else {
                vec![]
            };
            let cp = pbft::CheckpointCert::genesis();
            pbft::ViewChange::new(View(2), cp, prep, ReplicaId(i), &g, &key(i))
        })
        .collect();
    only_its_own_domain(
        "pbft view change",
        Domain::PbftViewChange,
        &key(0),
        &pbft_view_change_bytes(&vcs[0]),
        |signature| {
            let vc = pbft::ViewChange {
                signature,
                ..vcs[0].clone()
            };
            vc.verify(c, &g, MAX_PAYLOAD, WINDOW, &pbft::CheckpointCert::genesis())
                .is_ok()
        },
    );
    let primary2 = c.leader(View(2));
    let nv = pbft::NewView::new(View(2), vcs.clone(), c, &g, &key(primary2.0));
    assert_eq!(
        nv.pre_prepares.len(),
        1,
        "the prepared request is re-issued"
    );
    only_its_own_domain(
        "pbft new view",
        Domain::PbftNewView,
        &key(primary2.0),
        &pbft_new_view_bytes(&nv),
        |signature| {
            let forged = pbft::NewView {
                signature,
                ..nv.clone()
            };
            forged
                .verify(c, &g, MAX_PAYLOAD, WINDOW, &pbft::CheckpointCert::genesis())
                .is_ok()
        },
    );
}

// ---- Raft ----

#[test]
fn a_raft_block_signature_is_not_a_hotstuff_vote_or_proposal() {
    let (g, hc) = (genesis(), bft());
    let leader = ReplicaId(1);
    let entry = raft::Entry::new(&key(1), &g, 1, 1, leader, 10, vec![d(1)]);
    assert_eq!(entry.verify(cft(), &g), Ok(()));
    // As the same validator's HotStuff vote for a block whose id is the entry's id, in the
    // entry's term as the view.
    let vote = hs::Vote {
        block: entry.id(&g),
        view: View(entry.term),
        voter: leader,
        signature: entry.signature,
    };
    assert_eq!(
        vote.verify(hc, &genesis()),
        Err(hs::Invalid::BadSignature(leader))
    );
    // As its proposal signature: both sign 32 bytes of an id, under different domains.
    let (b1, _, _) = hs_chain();
    assert_eq!(b1.proposer, leader);
    let raft_signed_block_id = raft::Entry {
        signature: key(1).sign(Domain::RaftBlock, &b1.id().0),
        ..entry.clone()
    };
    let forged = hs::Proposal {
        block: b1.clone(),
        tc: None,
        signature: raft_signed_block_id.signature,
    };
    assert_eq!(
        forged.verify(hc, &g),
        Err(hs::Invalid::BadSignature(leader))
    );
    // And the other way: a HotStuff proposal signature over the entry's id is no entry
    // signature.
    let proposal_signed_entry = raft::Entry {
        signature: key(1).sign(Domain::Proposal, entry.id(&g).as_bytes()),
        ..entry.clone()
    };
    assert_eq!(
        proposal_signed_entry.verify(cft(), &g),
        Err(raft::Invalid::BadSignature(leader))
    );
    only_its_own_domain(
        "raft entry",
        Domain::RaftBlock,
        &key(1),
        entry.id(&g).as_bytes(),
        |signature| {
            let e = raft::Entry {
                signature,
                ..entry.clone()
            };
            e.verify(cft(), &g).is_ok()
        },
    );
}

// ---- Transactions ----

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "cross-purpose".into(),
        genesis_hash: genesis(),
    }
}

fn transfer(from: &SecretKey) -> Transaction {
    Transaction::sign(
        from,
        &chain(),
        0,
        Payload::Transfer {
            to: Address::of(&key(9).public()),
            amount: 5,
        },
    )
}

/// What executing `tx` against a funded sender says about it.
fn execution_verdict(tx: &Transaction) -> Result<(), RejectReason> {
    let sender = (
        tx.sender_address(),
        ledger::Account {
            balance: 100,
            nonce: 0,
        },
    );
    let mut state = State::new([sender]);
    let out = state.execute(&chain(), std::slice::from_ref(tx));
    out.receipts[0].outcome.clone()
}

#[test]
fn no_consensus_signature_is_a_transaction_signature() {
    let g = genesis();
    let k = key(1);
    let (b1, _, _) = hs_chain();
    let s = slot();
    let tx = transfer(&k);
    assert_eq!(tx.verify_signature(), Ok(()));
    assert_eq!(execution_verdict(&tx), Ok(()), "control");
    let consensus_signatures = [
        (
            "hotstuff proposal",
            hs::Proposal::new(b1.clone(), None, &k).signature,
        ),
        (
            "hotstuff vote",
            hs::Vote::new(&genesis(), b1.id(), b1.view, ReplicaId(1), &k).signature,
        ),
        (
            "hotstuff timeout",
            hs::Timeout::new(
                &genesis(),
                View(1),
                hs::QuorumCert::genesis(g),
                ReplicaId(1),
                &k,
            )
            .signature,
        ),
        (
            "pbft pre-prepare",
            pbft::PrePrepare::new(s.view, s.block.clone(), &g, &k).signature,
        ),
        (
            "pbft prepare",
            pbft_vote(&s, pbft::Phase::Prepare, 0).signature,
        ),
        (
            "pbft commit",
            pbft_vote(&s, pbft::Phase::Commit, 0).signature,
        ),
        (
            "pbft checkpoint",
            pbft::Checkpoint::new(1, d(0), ReplicaId(1), &g, &k).signature,
        ),
        (
            "raft entry",
            raft::Entry::new(&k, &g, 1, 1, ReplicaId(1), 0, vec![]).signature,
        ),
        // Consensus domains over the transaction's own signed bytes.
        (
            "vote over the tx body",
            k.sign(Domain::Vote, &tx.body.signing_bytes()),
        ),
        (
            "raft block over the tx body",
            k.sign(Domain::RaftBlock, &tx.body.signing_bytes()),
        ),
    ];
    for (what, signature) in consensus_signatures {
        let forged = Transaction {
            body: tx.body.clone(),
            signature,
        };
        assert!(forged.verify_signature().is_err(), "{what} accepted");
        assert_eq!(
            execution_verdict(&forged),
            Err(RejectReason::BadSignature),
            "{what}"
        );
    }
    only_its_own_domain(
        "transaction",
        Domain::Transaction,
        &k,
        &tx.body.signing_bytes(),
        |signature| {
            let t = Transaction {
                body: tx.body.clone(),
                signature,
            };
            t.verify_signature().is_ok() && execution_verdict(&t).is_ok()
        },
    );
}

#[test]
fn a_transaction_signature_is_no_consensus_signature() {
    let (hc, g) = (bft(), genesis());
    let (b1, qc1, _) = hs_chain();
    let s = slot();
    let me = ReplicaId(0);
    let k = key(0);
    let tx = transfer(&k);
    // A real transfer's signature, and transaction signatures over exactly the bytes each
    // consensus verifier checks (what a wallet tricked into signing them would produce).
    let real = tx.signature;
    let vote_bytes = hs_vote_bytes(&b1.id(), b1.view);
    let slot_bytes = pbft_slot_bytes(s.view, s.block.seq, &s.block.digest());
    for signature in [
        real,
        k.sign(Domain::Transaction, &vote_bytes),
        k.sign(Domain::Transaction, &slot_bytes),
        k.sign(Domain::Transaction, &b1.id().0),
    ] {
        let vote = hs::Vote {
            block: b1.id(),
            view: b1.view,
            voter: me,
            signature,
        };
        assert_eq!(
            vote.verify(hc, &genesis()),
            Err(hs::Invalid::BadSignature(me))
        );
        let mut qc = qc1.clone();
        qc.votes[0] = (me, signature);
        assert_eq!(qc.verify(hc, &g), Err(hs::Invalid::BadSignature(me)));
        for phase in [pbft::Phase::Prepare, pbft::Phase::Commit] {
            let v = pbft::Vote {
                signature,
                ..pbft_vote(&s, phase, 0)
            };
            assert_eq!(
                v.verify(phase, hc, &g),
                Err(pbft::Invalid::BadSignature(me))
            );
        }
        let entry = raft::Entry {
            signature,
            ..raft::Entry::new(&k, &g, 1, 1, me, 0, vec![])
        };
        assert_eq!(
            entry.verify(cft(), &g),
            Err(raft::Invalid::BadSignature(me))
        );
    }
    // Control: the same bytes signed for a vote make a valid vote.
    let vote = hs::Vote {
        block: b1.id(),
        view: b1.view,
        voter: me,
        signature: k.sign(Domain::Vote, &vote_bytes),
    };
    assert_eq!(vote.verify(hc, &genesis()), Ok(()));
}

// ---- The domains themselves, through the batch verifier and against splicing ----

#[test]
fn every_domain_rejects_every_other_in_one_batch() {
    let k = key(5);
    let pk = k.public();
    let msg = b"the same bytes for every purpose".to_vec();
    // All 144 (signed-for, checked-as) pairs in one batch: the batch fails as a whole and
    // falls back to single checks; each verdict must still be its own.
    let sigs: Vec<(Domain, Signature)> =
        Domain::ALL.iter().map(|&a| (a, k.sign(a, &msg))).collect();
    let mut items: Vec<(Domain, &[u8], PublicKey, Signature)> = Vec::new();
    let mut expect = Vec::new();
    for &(a, sig) in &sigs {
        for b in Domain::ALL {
            items.push((b, msg.as_slice(), pk, sig));
            expect.push(a == b);
        }
    }
    assert_eq!(crypto::verify_batch(&items), expect);
    // A batch of only matching pairs passes as a batch (the fast path) ...
    let matching: Vec<_> = sigs
        .iter()
        .map(|&(a, s)| (a, msg.as_slice(), pk, s))
        .collect();
    assert_eq!(
        crypto::verify_batch(&matching),
        vec![true; Domain::ALL.len()]
    );
    // ... and with every pair shifted by one domain, nothing passes.
    let shifted: Vec<_> = sigs
        .iter()
        .enumerate()
        .map(|(i, &(_, s))| {
            (
                Domain::ALL[(i + 1) % Domain::ALL.len()],
                msg.as_slice(),
                pk,
                s,
            )
        })
        .collect();
    assert_eq!(
        crypto::verify_batch(&shifted),
        vec![false; Domain::ALL.len()]
    );
}

#[test]
fn no_message_turns_one_domains_signature_into_anothers() {
    let k = key(6);
    let pk = k.public();
    let m = b"payload".to_vec();
    for a in Domain::ALL {
        let sig = k.sign(a, &m);
        // The exact bytes signed: "cairn/v1/" || tag || 0 || m. `verify_raw` is the rule
        // without the domain prefix, so this is the signature's only message.
        let mut signed = b"cairn/v1/".to_vec();
        signed.extend(a.tag().as_bytes());
        signed.push(0);
        signed.extend(&m);
        assert_eq!(crypto::verify_raw(&signed, &pk, &sig), Ok(()), "control");
        for b in Domain::ALL.into_iter().filter(|&b| b != a) {
            // Messages an attacker would try under b: the original, with a's tag spliced in
            // front, the whole signed string, and whatever follows b's prefix in it.
            let mut tries = vec![m.clone(), signed.clone(), signed[9..].to_vec()];
            let mut tag_then_m = a.tag().as_bytes().to_vec();
            tag_then_m.push(0);
            tag_then_m.extend(&m);
            tries.push(tag_then_m);
            let mut prefix_b = b"cairn/v1/".to_vec();
            prefix_b.extend(b.tag().as_bytes());
            prefix_b.push(0);
            assert!(
                !signed.starts_with(&prefix_b),
                "{a:?} bytes start as {b:?}'s"
            );
            if let Some(rest) = signed.strip_prefix(&prefix_b[..prefix_b.len() - 1]) {
                tries.push(rest.to_vec());
            }
            for t in tries {
                assert!(
                    crypto::verify(b, &t, &pk, &sig).is_err(),
                    "signed for {a:?}, accepted as {b:?} over {t:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any message, any two different domains: signed under one, refused under the other,
    /// singly and in a batch; accepted under its own.
    #[test]
    fn any_message_only_under_its_own_domain(
        msg in prop::collection::vec(any::<u8>(), 0..300),
        a in 0usize..12,
        b in 0usize..12,
        seed in any::<[u8; 32]>(),
    ) {
        let (a, b) = (Domain::ALL[a], Domain::ALL[b]);
        let k = SecretKey::from_seed(seed);
        let pk = k.public();
        let sig = k.sign(a, &msg);
        prop_assert_eq!(crypto::verify(b, &msg, &pk, &sig).is_ok(), a == b);
        prop_assert!(crypto::verify(a, &msg, &pk, &sig).is_ok());
        let batch: Vec<_> = (0..8).map(|i| {
            let d = if i == 3 { b } else { a };
            (d, msg.as_slice(), pk, sig)
        }).collect();
        let mut expect = vec![true; 8];
        expect[3] = a == b;
        prop_assert_eq!(crypto::verify_batch(&batch), expect);
    }
}

// ---- HotStuff across epochs (issue 21) ----

/// A vote, a timeout, a QC and a TC signed in one epoch verify in no other, even with the
/// very same committee and views: each signs its instance's anchor. The controls: each
/// verifies under its own anchor.
#[test]
fn hotstuff_votes_and_timeouts_of_one_epoch_count_in_no_other() {
    let (c, g) = (bft(), genesis());
    let last = Digest([9; 32]);
    let e1 = consensus::epoch_anchor(&g, 1, &last);
    assert_eq!(
        consensus::epoch_anchor(&g, 0, &last),
        g,
        "epoch 0 is anchored at genesis"
    );
    assert_ne!(e1, g);
    assert_ne!(e1, consensus::epoch_anchor(&g, 2, &last), "another epoch");
    assert_ne!(
        e1,
        consensus::epoch_anchor(&g, 1, &Digest([8; 32])),
        "another set"
    );

    let (_, qc1, b2) = hs_chain();
    let vote = hs::Vote::new(&g, b2.id(), View(2), ReplicaId(3), &key(3));
    assert_eq!(vote.verify(c, &g), Ok(()));
    assert_eq!(
        vote.verify(c, &e1),
        Err(hs::Invalid::BadSignature(ReplicaId(3)))
    );
    assert_eq!(qc1.verify(c, &g), Ok(()));
    assert_eq!(
        qc1.verify(c, &e1),
        Err(hs::Invalid::BadSignature(ReplicaId(0)))
    );

    let timeout = hs::Timeout::new(&g, View(2), qc1.clone(), ReplicaId(3), &key(3));
    assert_eq!(timeout.verify(c, &g), Ok(()));
    assert!(timeout.verify(c, &e1).is_err());
    // The same timeout signed for epoch 1 over epoch 1's genesis QC is refused in epoch 0.
    let t1 = hs::Timeout::new(
        &e1,
        View(1),
        hs::QuorumCert::genesis(e1),
        ReplicaId(3),
        &key(3),
    );
    assert_eq!(t1.verify(c, &e1), Ok(()));
    assert!(t1.verify(c, &g).is_err());
    let tc = hs::TimeoutCert {
        view: View(2),
        timeouts: (0..3)
            .map(|i| {
                let t = hs::Timeout::new(&g, View(2), qc1.clone(), ReplicaId(i), &key(i));
                (ReplicaId(i), View(1), t.signature)
            })
            .collect(),
        high_qc: qc1.clone(),
    };
    assert_eq!(tc.verify(c, &g), Ok(()));
    assert!(tc.verify(c, &e1).is_err());
}
