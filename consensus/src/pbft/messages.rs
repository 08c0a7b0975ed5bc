//! PBFT blocks, the normal-case, checkpoint and view-change messages, their certificates, and
//! how each is verified.
//!
//! Every message is signed with ed25519 under its own [`crypto::Domain`], over bytes that bind
//! the genesis hash, so a prepare can never pass as a commit, and nothing signed for one chain
//! verifies on another. Every certificate is therefore transferable: anyone with the genesis
//! file can check a [`CommitCertificate`], a [`PreparedCert`] or a [`CheckpointCert`].
//!
//! VIEW-CHANGE and NEW-VIEW, and the re-issue rule between them, are in
//! `messages/view_change.rs`.

use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, Domain, Hasher, PublicKey, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

mod view_change;

pub use view_change::{NewView, ViewChange};

/// What the primary orders at one sequence number: a list of batch digests (a *null* block
/// has none; the view change fills gaps with them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub seq: u64,
    pub proposer: ReplicaId,
    pub timestamp_ms: u64,
    /// Batch digests.
    pub payload: Vec<Digest>,
}

impl Block {
    /// The request digest `d` of the paper: sha256 over the canonical block bytes,
    /// domain-separated. The sequence number is inside, so equal payloads at two sequence
    /// numbers have different digests.
    pub fn digest(&self) -> Digest {
        let mut h = Hasher::new();
        h.part(b"cairn/pbft-block/v1").part(&codec::encode(self));
        h.finish()
    }

    /// The null request a NEW-VIEW puts at `seq` when no view change message shows it
    /// prepared. Deterministic, so every backup recomputes the same one.
    pub fn null(seq: u64, proposer: ReplicaId, timestamp_ms: u64) -> Block {
        Block {
            seq,
            proposer,
            timestamp_ms,
            payload: Vec::new(),
        }
    }
}

/// PRE-PREPARE(v, n, d) with the block itself, signed by the primary of `view`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    pub view: View,
    pub block: Block,
    pub signature: Signature,
}

/// PREPARE or COMMIT(v, n, d, i): the same fields, signed under different domains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub view: View,
    pub seq: u64,
    pub digest: Digest,
    pub replica: ReplicaId,
    pub signature: Signature,
}

/// CHECKPOINT(n, state root, i): "after executing up to `seq` my state root is `state_root`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub state_root: Digest,
    pub replica: ReplicaId,
    pub signature: Signature,
}

/// A request is *prepared* at a replica: its pre-prepare and `2f` matching prepares from
/// distinct replicas other than the primary. Carried in view changes as proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCert {
    pub pre_prepare: PrePrepare,
    /// Sorted by replica, no duplicates, none from the primary.
    pub prepares: Vec<(ReplicaId, Signature)>,
}

/// A *stable* checkpoint: `quorum` matching checkpoint messages. An instance's start (the
/// genesis state at sequence 0 in epoch 0; after a validator-set change, the last block of
/// the previous epoch, see [`CheckpointCert::start`]) is stable by definition and carries no
/// signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCert {
    pub seq: u64,
    pub state_root: Digest,
    /// Sorted by replica, no duplicates.
    pub signatures: Vec<(ReplicaId, Signature)>,
}

/// The proof stored with a committed block: `quorum` signed COMMITs for its digest at its
/// sequence number in `view`. Checkable with the genesis file alone; no other block needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub view: View,
    pub block: Block,
    /// Sorted by replica, no duplicates.
    pub commits: Vec<(ReplicaId, Signature)>,
}

/// Everything PBFT replicas say to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    PrePrepare(Box<PrePrepare>),
    Prepare(Vote),
    Commit(Vote),
    Checkpoint(Checkpoint),
    ViewChange(Box<ViewChange>),
    NewView(Box<NewView>),
    /// "Send me the committed blocks from sequence number `from`" (a replica that fell
    /// behind a stable checkpoint, or restarted).
    Fetch {
        from: u64,
    },
    /// Commit certificates for consecutive sequence numbers, oldest first. Each proves
    /// itself.
    Committed(Vec<CommitCertificate>),
}

/// Largest encoded PBFT message accepted.
pub const MAX_MESSAGE_BYTES: u64 = 8 << 20;

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("unknown replica {0}")]
    UnknownReplica(ReplicaId),
    #[error("bad signature from {0}")]
    BadSignature(ReplicaId),
    #[error("certificate has {got} distinct signers, needs {need}")]
    NoQuorum { got: usize, need: usize },
    #[error("certificate signers not sorted or repeated")]
    Unsorted,
    #[error("{0}")]
    Malformed(&'static str),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Message, codec::DecodeError> {
        codec::decode(bytes, MAX_MESSAGE_BYTES, "pbft message")
    }

    /// The view a message belongs to, if it belongs to one.
    pub fn view(&self) -> Option<View> {
        match self {
            Message::PrePrepare(p) => Some(p.view),
            Message::Prepare(v) | Message::Commit(v) => Some(v.view),
            Message::ViewChange(vc) => Some(vc.view),
            Message::NewView(nv) => Some(nv.view),
            Message::Checkpoint(_) | Message::Fetch { .. } | Message::Committed(_) => None,
        }
    }
}

fn key_of(c: &Committee, id: ReplicaId) -> Result<&PublicKey, Invalid> {
    c.key(id).ok_or(Invalid::UnknownReplica(id))
}

fn slot_bytes(genesis: &Digest, view: View, seq: u64, digest: &Digest) -> Vec<u8> {
    codec::encode(&(genesis, view, seq, digest))
}

fn checkpoint_bytes(genesis: &Digest, seq: u64, root: &Digest) -> Vec<u8> {
    codec::encode(&(genesis, seq, root))
}

/// Sorted, distinct, known signers, at least `need` of them.
fn check_signers<T>(entries: &[(ReplicaId, T)], c: &Committee, need: usize) -> Result<(), Invalid> {
    let mut prev: Option<ReplicaId> = None;
    for (id, _) in entries {
        key_of(c, *id)?;
        if prev.is_some_and(|p| p >= *id) {
            return Err(Invalid::Unsorted);
        }
        prev = Some(*id);
    }
    if entries.len() < need {
        return Err(Invalid::NoQuorum {
            got: entries.len(),
            need,
        });
    }
    Ok(())
}

/// Verifies signatures that all sign the same bytes.
fn check_all(
    domain: Domain,
    msg: &[u8],
    sigs: &[(ReplicaId, Signature)],
    c: &Committee,
) -> Result<(), Invalid> {
    let items: Vec<(Domain, &[u8], PublicKey, Signature)> = sigs
        .iter()
        .map(|(id, s)| Ok((domain, msg, *key_of(c, *id)?, *s)))
        .collect::<Result<_, Invalid>>()?;
    match crypto::verify_batch(&items).iter().position(|ok| !ok) {
        Some(i) => Err(Invalid::BadSignature(sigs[i].0)),
        None => Ok(()),
    }
}

impl PrePrepare {
    pub fn new(view: View, block: Block, genesis: &Digest, key: &SecretKey) -> PrePrepare {
        let signature = key.sign(
            Domain::PbftPrePrepare,
            &slot_bytes(genesis, view, block.seq, &block.digest()),
        );
        PrePrepare {
            view,
            block,
            signature,
        }
    }

    /// Checks the signature of the primary of `view` and the payload size. Whether the
    /// sequence number and view are acceptable is the core's business.
    pub fn verify(
        &self,
        c: &Committee,
        genesis: &Digest,
        max_payload: usize,
    ) -> Result<(), Invalid> {
        let primary = c.leader(self.view);
        if self.block.payload.len() > max_payload {
            return Err(Invalid::Malformed("pre-prepare payload over the limit"));
        }
        let distinct: BTreeSet<&Digest> = self.block.payload.iter().collect();
        if distinct.len() != self.block.payload.len() {
            return Err(Invalid::Malformed("pre-prepare names a batch twice"));
        }
        if self.block.seq == 0 {
            return Err(Invalid::Malformed("sequence number 0 is the genesis state"));
        }
        key_of(c, self.block.proposer)?;
        let bytes = slot_bytes(genesis, self.view, self.block.seq, &self.block.digest());
        crypto::verify(
            Domain::PbftPrePrepare,
            &bytes,
            key_of(c, primary)?,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(primary))
    }
}

/// Which of the two votes a [`Vote`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Prepare,
    Commit,
}

impl Phase {
    fn domain(self) -> Domain {
        match self {
            Phase::Prepare => Domain::PbftPrepare,
            Phase::Commit => Domain::PbftCommit,
        }
    }
}

impl Vote {
    pub fn new(
        phase: Phase,
        view: View,
        seq: u64,
        digest: Digest,
        replica: ReplicaId,
        genesis: &Digest,
        key: &SecretKey,
    ) -> Vote {
        let signature = key.sign(phase.domain(), &slot_bytes(genesis, view, seq, &digest));
        Vote {
            view,
            seq,
            digest,
            replica,
            signature,
        }
    }

    pub fn verify(&self, phase: Phase, c: &Committee, genesis: &Digest) -> Result<(), Invalid> {
        let bytes = slot_bytes(genesis, self.view, self.seq, &self.digest);
        crypto::verify(
            phase.domain(),
            &bytes,
            key_of(c, self.replica)?,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(self.replica))
    }
}

impl Checkpoint {
    pub fn new(
        seq: u64,
        state_root: Digest,
        replica: ReplicaId,
        genesis: &Digest,
        key: &SecretKey,
    ) -> Checkpoint {
        let signature = key.sign(
            Domain::PbftCheckpoint,
            &checkpoint_bytes(genesis, seq, &state_root),
        );
        Checkpoint {
            seq,
            state_root,
            replica,
            signature,
        }
    }

    pub fn verify(&self, c: &Committee, genesis: &Digest) -> Result<(), Invalid> {
        let bytes = checkpoint_bytes(genesis, self.seq, &self.state_root);
        crypto::verify(
            Domain::PbftCheckpoint,
            &bytes,
            key_of(c, self.replica)?,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(self.replica))
    }
}

impl CheckpointCert {
    /// The genesis state, stable by definition: epoch 0's start.
    pub fn genesis() -> CheckpointCert {
        CheckpointCert {
            seq: 0,
            state_root: Digest::ZERO,
            signatures: Vec::new(),
        }
    }

    /// The start of an instance that begins after ledger height `seq` (a validator-set
    /// epoch's first instance begins after the previous epoch's last block): stable by
    /// definition, unsigned, and naming the instance's anchor (`crate::epoch_anchor`) where
    /// a signed checkpoint names a state root, so every replica of the epoch holds the same
    /// one without reading any state.
    pub fn start(seq: u64, anchor: Digest) -> CheckpointCert {
        if seq == 0 {
            return CheckpointCert::genesis();
        }
        CheckpointCert {
            seq,
            state_root: anchor,
            signatures: Vec::new(),
        }
    }

    /// An unsigned checkpoint must be the instance's `start`; a signed one must lie above it
    /// and carry a quorum of valid signatures.
    pub fn verify(
        &self,
        c: &Committee,
        genesis: &Digest,
        start: &CheckpointCert,
    ) -> Result<(), Invalid> {
        if self.signatures.is_empty() || self.seq <= start.seq {
            return if self == start {
                Ok(())
            } else if start.seq == 0 {
                Err(Invalid::Malformed("checkpoint 0 is the genesis state"))
            } else {
                Err(Invalid::Malformed(
                    "an unsigned checkpoint, or one at or below, that is not the instance's start",
                ))
            };
        }
        check_signers(&self.signatures, c, c.quorum())?;
        let bytes = checkpoint_bytes(genesis, self.seq, &self.state_root);
        check_all(Domain::PbftCheckpoint, &bytes, &self.signatures, c)
    }
}

impl PreparedCert {
    pub fn view(&self) -> View {
        self.pre_prepare.view
    }
    pub fn seq(&self) -> u64 {
        self.pre_prepare.block.seq
    }
    pub fn digest(&self) -> Digest {
        self.pre_prepare.block.digest()
    }

    /// The pre-prepare is the primary's, and `2f` distinct other replicas prepared the same
    /// (view, seq, digest).
    pub fn verify(
        &self,
        c: &Committee,
        genesis: &Digest,
        max_payload: usize,
    ) -> Result<(), Invalid> {
        self.pre_prepare.verify(c, genesis, max_payload)?;
        let primary = c.leader(self.view());
        if self.prepares.iter().any(|(id, _)| *id == primary) {
            return Err(Invalid::Malformed(
                "the primary's prepare counts in a prepared certificate",
            ));
        }
        check_signers(&self.prepares, c, c.quorum() - 1)?;
        let bytes = slot_bytes(genesis, self.view(), self.seq(), &self.digest());
        check_all(Domain::PbftPrepare, &bytes, &self.prepares, c)
    }
}

impl CommitCertificate {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<CommitCertificate, codec::DecodeError> {
        codec::decode(bytes, MAX_MESSAGE_BYTES, "pbft certificate")
    }

    /// `quorum` distinct replicas signed COMMIT for this block's digest at its sequence
    /// number in `view`.
    pub fn verify(&self, c: &Committee, genesis: &Digest) -> Result<(), Invalid> {
        if self.block.seq == 0 {
            return Err(Invalid::Malformed("sequence number 0 is the genesis state"));
        }
        key_of(c, self.block.proposer)?;
        check_signers(&self.commits, c, c.quorum())?;
        let bytes = slot_bytes(genesis, self.view, self.block.seq, &self.block.digest());
        check_all(Domain::PbftCommit, &bytes, &self.commits, c)
    }
}
