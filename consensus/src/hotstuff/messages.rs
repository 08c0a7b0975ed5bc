//! HotStuff blocks, votes, certificates and timeouts, and how each is verified.
//!
//! Every signature is domain-separated ([`crypto::Domain`]): a vote can never pass as a
//! proposal or a timeout. Certificates are verified against the committee before anything
//! acts on the view they name (a forged "future" certificate moves nothing).

use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, Domain, Hasher, PublicKey, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};

/// A quorum certificate: `quorum` distinct replicas voted for `block` in `view`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCert {
    pub block: Digest,
    pub view: View,
    /// Sorted by replica, no duplicates.
    pub votes: Vec<(ReplicaId, Signature)>,
}

/// A proposed block. Its parent is the block `justify` certifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub view: View,
    pub justify: QuorumCert,
    pub proposer: ReplicaId,
    pub timestamp_ms: u64,
    /// Batch digests.
    pub payload: Vec<Digest>,
}

/// A leader's signed proposal; `tc` is present when the leader entered the view through a
/// timeout certificate for `block.view - 1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub block: Block,
    pub tc: Option<TimeoutCert>,
    pub signature: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub block: Digest,
    pub view: View,
    pub voter: ReplicaId,
    pub signature: Signature,
}

/// "I give up on `view`; the highest QC I hold is `high_qc`."
///
/// `high_tc` (not signed: a TC proves itself) is the sender's highest TC, so that a replica
/// stuck in an earlier view — one whose TC it never received — catches up from any timeout
/// of a later view (Aptos' `SyncInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeout {
    pub view: View,
    pub high_qc: QuorumCert,
    pub author: ReplicaId,
    pub signature: Signature,
    pub high_tc: Option<Box<TimeoutCert>>,
}

/// `quorum` distinct timeouts for `view`, each with the signer's high-QC view, and the
/// highest of those QCs itself (as in Aptos' `TwoChainTimeoutCertificate`): a leader
/// proposing after this TC must extend a QC at least that high, so it must be able to get
/// it from the TC — and a Byzantine signer cannot claim a high-QC view no QC exists for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutCert {
    pub view: View,
    /// Sorted by replica, no duplicates.
    pub timeouts: Vec<(ReplicaId, View, Signature)>,
    pub high_qc: QuorumCert,
}

/// The proof stored with a committed block: the block, the QC that certifies it, and — for
/// the block whose commit was decided (the head of the 2-chain) — its child in the next
/// view and the child's QC. Earlier blocks committed with it are its ancestors, linked to it
/// by hashes in the ledger. [`CommitCertificate::verify`] needs only the genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub block: Block,
    pub qc: QuorumCert,
    pub proof: Option<(Block, QuorumCert)>,
}

impl CommitCertificate {
    pub fn decode(bytes: &[u8]) -> Result<CommitCertificate, codec::DecodeError> {
        codec::decode(bytes, MAX_MESSAGE_BYTES, "hotstuff certificate")
    }

    /// Checks that `qc` certifies `block` and, if present, that the proof is a valid 2-chain:
    /// a child in the very next view whose QC justifies `block`, itself certified.
    pub fn verify(&self, c: &Committee, genesis: &Digest) -> Result<(), Invalid> {
        let id = self.block.id();
        if self.qc.block != id || self.qc.view != self.block.view {
            return Err(Invalid::Malformed("certificate's QC is for another block"));
        }
        self.qc.verify(c, genesis)?;
        if let Some((child, child_qc)) = &self.proof {
            if child.justify.block != id
                || child.view != self.block.view.next()
                || child_qc.block != child.id()
                || child_qc.view != child.view
            {
                return Err(Invalid::Malformed("commit proof is not a 2-chain"));
            }
            child_qc.verify(c, genesis)?;
        }
        Ok(())
    }
}

/// Everything HotStuff replicas say to each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Propose(Box<Proposal>),
    Vote(Vote),
    Timeout(Box<Timeout>),
    Tc(TimeoutCert),
    /// "Send me block `block` and its ancestors above view `above`."
    SyncRequest {
        block: Digest,
        above: View,
    },
    /// Blocks newest first, each the parent of the one before; the first is the block asked
    /// for. Authenticated by hash: the requester holds a QC or a child naming each id.
    SyncResponse {
        blocks: Vec<Block>,
    },
}

/// Largest encoded HotStuff message accepted.
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
        codec::decode(bytes, MAX_MESSAGE_BYTES, "hotstuff message")
    }
}

/// What a vote signs: the instance's anchor ([`crate::epoch_anchor`]), the block and its view. The
/// anchor makes a vote of one epoch (or one chain) worthless in any other, even where the
/// same key is in both sets and the views repeat.
fn vote_bytes(anchor: &Digest, block: &Digest, view: View) -> Vec<u8> {
    codec::encode(&(anchor, block, view))
}

/// What a timeout signs: the anchor, the view and the signer's high-QC view.
fn timeout_bytes(anchor: &Digest, view: View, high_qc_view: View) -> Vec<u8> {
    codec::encode(&(anchor, view, high_qc_view))
}

fn check_signers<T>(entries: &[(ReplicaId, T)], c: &Committee) -> Result<(), Invalid> {
    let mut prev: Option<ReplicaId> = None;
    for (id, _) in entries {
        if c.key(*id).is_none() {
            return Err(Invalid::UnknownReplica(*id));
        }
        if prev.is_some_and(|p| p >= *id) {
            return Err(Invalid::Unsorted);
        }
        prev = Some(*id);
    }
    if entries.len() < c.quorum() {
        return Err(Invalid::NoQuorum {
            got: entries.len(),
            need: c.quorum(),
        });
    }
    Ok(())
}

fn batch_check(
    items: Vec<(Domain, Vec<u8>, PublicKey, Signature, ReplicaId)>,
) -> Result<(), Invalid> {
    let refs: Vec<_> = items
        .iter()
        .map(|(d, m, k, s, _)| (*d, m.as_slice(), *k, *s))
        .collect();
    let verdicts = crypto::verify_batch(&refs);
    match verdicts.iter().position(|ok| !ok) {
        Some(i) => Err(Invalid::BadSignature(items[i].4)),
        None => Ok(()),
    }
}

impl QuorumCert {
    /// The certificate every chain starts from: it certifies the genesis block (whose id is
    /// the genesis hash) at view 0 and carries no signatures.
    pub fn genesis(genesis: Digest) -> QuorumCert {
        QuorumCert {
            block: genesis,
            view: View(0),
            votes: Vec::new(),
        }
    }

    fn verify_uncached(&self, c: &Committee, genesis: &Digest) -> Result<(), Invalid> {
        if self.view == View(0) {
            return if self.block == *genesis && self.votes.is_empty() {
                Ok(())
            } else {
                Err(Invalid::Malformed("view-0 certificate that is not genesis"))
            };
        }
        check_signers(&self.votes, c)?;
        let msg = vote_bytes(genesis, &self.block, self.view);
        batch_check(
            self.votes
                .iter()
                .map(|(id, sig)| {
                    (
                        Domain::Vote,
                        msg.clone(),
                        *c.key(*id).expect("checked"),
                        *sig,
                        *id,
                    )
                })
                .collect(),
        )
    }
}

impl Verify for QuorumCert {
    /// Checks quorum, distinct known signers and every signature. `genesis` is the only
    /// certificate accepted without signatures.
    /// [`QuorumCert::verify`], skipping certificates already verified (the same QC arrives
    /// in proposals, in every timeout and in TCs).
    fn verify_with(
        &self,
        c: &Committee,
        genesis: &Digest,
        cache: &mut QcCache,
    ) -> Result<(), Invalid> {
        let key = crypto::hash(&codec::encode(self));
        if cache.contains(&key) {
            return Ok(());
        }
        self.verify_uncached(c, genesis)?;
        cache.insert(key);
        Ok(())
    }
}

/// Checking a message or certificate against the committee. `verify_with` remembers the
/// QCs it has checked in `cache` (the same QC arrives in proposals, in every timeout and in
/// TCs); `verify` starts from an empty cache.
pub trait Verify {
    fn verify_with(
        &self,
        c: &Committee,
        genesis: &Digest,
        cache: &mut QcCache,
    ) -> Result<(), Invalid>;

    fn verify(&self, c: &Committee, genesis: &Digest) -> Result<(), Invalid> {
        self.verify_with(c, genesis, &mut QcCache::default())
    }
}

/// Digests of certificates this replica has verified, most recent kept.
#[derive(Debug, Default)]
pub struct QcCache {
    order: std::collections::VecDeque<Digest>,
    set: std::collections::BTreeSet<Digest>,
}

impl QcCache {
    const CAPACITY: usize = 256;

    fn contains(&self, d: &Digest) -> bool {
        self.set.contains(d)
    }

    fn insert(&mut self, d: Digest) {
        if self.set.insert(d) {
            self.order.push_back(d);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

impl Block {
    /// The block id: sha256 over the canonical block bytes, domain-separated.
    pub fn id(&self) -> Digest {
        let mut h = Hasher::new();
        h.part(b"cairn/hotstuff-block/v1")
            .part(&codec::encode(self));
        h.finish()
    }

    pub fn parent(&self) -> Digest {
        self.justify.block
    }
}

impl Proposal {
    pub fn new(block: Block, tc: Option<TimeoutCert>, key: &SecretKey) -> Proposal {
        let signature = key.sign(Domain::Proposal, &block.id().0);
        Proposal {
            block,
            tc,
            signature,
        }
    }
}

impl Verify for Proposal {
    /// Checks the proposer's signature, that the view follows its QC or TC, and both
    /// certificates. Whether the proposer leads the view depends on the replica's committed
    /// history (leader reputation), so the core checks that.
    fn verify_with(
        &self,
        c: &Committee,
        genesis: &Digest,
        cache: &mut QcCache,
    ) -> Result<(), Invalid> {
        let b = &self.block;
        let key = c
            .key(b.proposer)
            .ok_or(Invalid::UnknownReplica(b.proposer))?;
        crypto::verify(Domain::Proposal, &b.id().0, key, &self.signature)
            .map_err(|_| Invalid::BadSignature(b.proposer))?;
        let follows_qc = b.justify.view.next() == b.view;
        let follows_tc = self.tc.as_ref().is_some_and(|tc| tc.view.next() == b.view);
        if !follows_qc && !follows_tc {
            return Err(Invalid::Malformed("view does not follow its QC or TC"));
        }
        if b.justify.view >= b.view {
            return Err(Invalid::Malformed("QC not below the block's view"));
        }
        b.justify.verify_with(c, genesis, cache)?;
        if let Some(tc) = &self.tc {
            tc.verify_with(c, genesis, cache)?;
        }
        Ok(())
    }
}

impl Vote {
    /// `anchor` is the instance's ([`crate::epoch_anchor`]; the genesis hash in epoch 0).
    pub fn new(
        anchor: &Digest,
        block: Digest,
        view: View,
        voter: ReplicaId,
        key: &SecretKey,
    ) -> Vote {
        let signature = key.sign(Domain::Vote, &vote_bytes(anchor, &block, view));
        Vote {
            block,
            view,
            voter,
            signature,
        }
    }

    pub fn verify(&self, c: &Committee, anchor: &Digest) -> Result<(), Invalid> {
        let key = c
            .key(self.voter)
            .ok_or(Invalid::UnknownReplica(self.voter))?;
        crypto::verify(
            Domain::Vote,
            &vote_bytes(anchor, &self.block, self.view),
            key,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(self.voter))
    }
}

impl Timeout {
    /// `anchor` is the instance's ([`crate::epoch_anchor`]; the genesis hash in epoch 0).
    pub fn new(
        anchor: &Digest,
        view: View,
        high_qc: QuorumCert,
        author: ReplicaId,
        key: &SecretKey,
    ) -> Timeout {
        let signature = key.sign(Domain::Timeout, &timeout_bytes(anchor, view, high_qc.view));
        Timeout {
            view,
            high_qc,
            author,
            signature,
            high_tc: None,
        }
    }
}

impl Verify for Timeout {
    /// Checks the signature and the carried QC and TC.
    fn verify_with(
        &self,
        c: &Committee,
        genesis: &Digest,
        cache: &mut QcCache,
    ) -> Result<(), Invalid> {
        let key = c
            .key(self.author)
            .ok_or(Invalid::UnknownReplica(self.author))?;
        if self.high_qc.view >= self.view {
            return Err(Invalid::Malformed(
                "timeout's high QC is not below its view",
            ));
        }
        crypto::verify(
            Domain::Timeout,
            &timeout_bytes(genesis, self.view, self.high_qc.view),
            key,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(self.author))?;
        self.high_qc.verify_with(c, genesis, cache)?;
        match &self.high_tc {
            Some(tc) if tc.view >= self.view => {
                Err(Invalid::Malformed("timeout's TC not below it"))
            }
            Some(tc) => tc.verify_with(c, genesis, cache),
            None => Ok(()),
        }
    }
}

impl TimeoutCert {
    /// The highest high-QC view among the timeouts: a proposal justified by this TC must
    /// extend a QC at least this high. Equal to `high_qc.view` in a verified TC.
    pub fn max_high_qc_view(&self) -> View {
        self.timeouts
            .iter()
            .map(|(_, v, _)| *v)
            .max()
            .unwrap_or_default()
    }
}

impl Verify for TimeoutCert {
    fn verify_with(
        &self,
        c: &Committee,
        genesis: &Digest,
        cache: &mut QcCache,
    ) -> Result<(), Invalid> {
        let entries: Vec<(ReplicaId, ())> =
            self.timeouts.iter().map(|(id, _, _)| (*id, ())).collect();
        check_signers(&entries, c)?;
        if self.timeouts.iter().any(|(_, v, _)| *v >= self.view) {
            return Err(Invalid::Malformed(
                "TC entry with high QC not below its view",
            ));
        }
        if self.high_qc.view != self.max_high_qc_view() {
            return Err(Invalid::Malformed(
                "TC's QC is not its highest high-QC view",
            ));
        }
        self.high_qc.verify_with(c, genesis, cache)?;
        batch_check(
            self.timeouts
                .iter()
                .map(|(id, hqc, sig)| {
                    (
                        Domain::Timeout,
                        timeout_bytes(genesis, self.view, *hqc),
                        *c.key(*id).expect("checked"),
                        *sig,
                        *id,
                    )
                })
                .collect(),
        )
    }
}
