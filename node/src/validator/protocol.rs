//! [`Protocol`]: what the driver needs to know about one consensus protocol beyond the
//! [`consensus::Core`] trait — how to build its core from the store, what its messages and
//! certificates say — and [`HotStuffProtocol`], its HotStuff implementation.
//!
//! Adding a protocol is one `impl Protocol` and one arm in `run.rs` (`protocol_loop`).

use super::driver::DriverError;
use crate::store::RedbStore;
use consensus::hotstuff::{self, CommitCertificate, HotStuff, Message};
use consensus::{Action, Committee, ReplicaId, View};
use crypto::{Digest, SecretKey};
use ledger::{Ledger, Store};

pub use super::evidence::Statement;

/// What every core is built from (again after a block sync moves the committed root).
#[derive(Clone)]
pub struct CoreParams {
    pub me: ReplicaId,
    pub key: SecretKey,
    pub committee: Committee,
    /// The instance's anchor: the id its block tree starts from and every vote signs (the
    /// genesis hash in epoch 0; `consensus::epoch_anchor` after a validator-set change).
    pub genesis: Digest,
    /// The validator-set epoch this instance runs (issue 21) and its first ledger height
    /// (0 and 1 for the genesis set). Blocks below `start_height` belong to earlier
    /// instances: the core neither resumes from them nor reads their certificates.
    pub epoch: u64,
    pub start_height: u64,
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Batch digests per block, at most.
    pub max_payload: usize,
    /// How long a leader with nothing to order waits before an empty block.
    pub idle_block_ms: u64,
    /// Blocks between checkpoints (PBFT; HotStuff has none).
    pub checkpoint_interval: u64,
    /// Raft: compact the log every this many applied entries (genesis
    /// `params.snapshot_interval`).
    pub snapshot_interval: u64,
    /// Members of the genesis set: Raft's configuration before any change (ids
    /// `0..genesis_members`, all voters).
    pub genesis_members: usize,
}

impl CoreParams {
    /// Blocks between checkpoints when nothing else says.
    pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 16;

    /// The store key of this instance's safety record: `base` (the protocol's
    /// [`Protocol::SAFETY_KEY`]) in epoch 0, `base/epoch-N` after. A record of one epoch is
    /// never given to another epoch's core: its views and sequence numbers start again.
    pub fn safety_key(&self, base: &str) -> String {
        match self.epoch {
            0 => base.to_string(),
            e => format!("{base}/epoch-{e}"),
        }
    }

    /// The ledger height below which this instance has no blocks of its own.
    pub fn first_height(&self) -> u64 {
        self.start_height.max(1)
    }
}

/// Store metadata key of Raft's configuration at the log's compaction point (or at an
/// installed snapshot's height): `(index, consensus::raft::Membership)`, encoded. Written in
/// the same transaction as the compaction or the snapshot's rebase, so that the
/// configuration at the applied height is always this one or a later one still in the log.
pub const RAFT_CONFIG_KEY: &str = "raft/config";

/// A committed ledger block's certificate, decoded: what the driver checks when it applies
/// blocks a peer sent (block sync) and feeds the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certified {
    /// The protocol's id of the block (HotStuff block id, PBFT digest).
    pub id: Digest,
    pub view: View,
    pub proposer: ReplicaId,
    pub timestamp_ms: u64,
    /// Batch digests in order.
    pub payload: Vec<Digest>,
    /// HotStuff: `Some(parent block id)`, which must equal the previous block's id (the
    /// ledger tip's, or the genesis hash at height 0). PBFT and Raft: `None` (each
    /// certificate stands alone; the height check suffices).
    pub parent: Option<Digest>,
    /// Whether this certificate alone proves that this block and all before it are committed
    /// (HotStuff: it carries the 2-chain proof; PBFT: always; Raft: always, as every
    /// validator is trusted in the crash model).
    pub proves_commit: bool,
    /// The ledger height the certificate itself names, if it names one (PBFT: its sequence
    /// number; Raft: its log index; either must equal the block's height).
    pub height: Option<u64>,
}

/// What [`Protocol::transfer_leadership`] answers: the validator that is to lead and the
/// core's actions, or why not.
pub type Transfer<M> = Result<(ReplicaId, Vec<Action<M>>), String>;

/// One consensus protocol as the driver sees it. Only associated items: protocols are types
/// (`Driver<HotStuffProtocol>`), never values.
pub trait Protocol: Send + 'static {
    type Message: Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + 'static;
    type Core: consensus::Core<Message = Self::Message> + Send;

    /// As in genesis (`hotstuff`, `pbft`).
    const NAME: &'static str;
    /// Store metadata key of the durable safety record.
    const SAFETY_KEY: &'static str;
    /// The id of the core's view timer (the driver retries batch fetches when it fires).
    const VIEW_TIMER: u64;
    /// Whether a validator whose ledger stalls asks peers for committed blocks (ledger-level
    /// block sync). Raft catches up through its own log and snapshots instead.
    const LEDGER_SYNC: bool = true;
    /// Whether transaction signatures checked by the validator that admitted them are
    /// trusted by the others at execution. Only a crash-fault protocol may say yes: in the
    /// BFT modes every validator checks every signature itself, since the one that admitted
    /// a transaction may lie.
    const TRUSTS_PEER_BATCHES: bool = false;
    /// Whether validators sign executed headers into header certificates
    /// ([`super::attestation`]): the BFT modes. A Raft chain has no Byzantine quorum to
    /// certify anything a wallet could check.
    const ATTESTS_HEADERS: bool = true;
    /// Whether each validator-set epoch runs its own core instance (HotStuff, PBFT:
    /// `super::epochs`). Raft keeps one core across epochs, its servers named by stable id
    /// (`super::raft_set`).
    const EPOCH_CORES: bool = true;

    /// Builds the core from the store: the durable safety record (or `safety`, the in-memory
    /// one, after a block sync), the ledger tip and whatever recent history the protocol
    /// needs. Used at start and after a block sync, which is the same as a restart with a
    /// longer ledger. Fails if the safety record or a needed block is unreadable.
    fn build(
        params: &CoreParams,
        ledger: &Ledger<RedbStore>,
        safety: Option<Vec<u8>>,
    ) -> Result<Self::Core, DriverError>;
    /// The core's safety record as it is in memory (encoded as for the store).
    fn safety_bytes(core: &Self::Core) -> Vec<u8>;
    /// Batch digests offered to the core and not yet in a block (kept across a rebuild).
    fn pending_payload(core: &Self::Core) -> Vec<Digest>;
    /// The leader (primary) of the core's current view; `None` while unknown (a Raft
    /// election).
    fn leader(core: &Self::Core) -> Option<ReplicaId>;
    /// Views the core has left because the previous one failed (for metrics).
    fn view_changes(core: &Self::Core) -> u64;
    /// Raft: the configuration the core uses (for `GET /v1/validators`); `None` elsewhere.
    fn raft_config(_core: &Self::Core) -> Option<crate::api::RaftConfigView> {
        None
    }
    /// Raft: the ledger's set changed. `committee` holds a key for every stable id (it only
    /// grows), `members` the ids the ledger names: the core steers its configuration
    /// towards them. Unused where [`Protocol::EPOCH_CORES`] is set.
    fn follow_members(
        _core: &mut Self::Core,
        _committee: Committee,
        _members: std::collections::BTreeSet<ReplicaId>,
    ) -> Vec<Action<Self::Message>> {
        Vec::new()
    }
    /// Raft: the configuration in effect at log index `index`, encoded as the store keeps it
    /// (meta [`RAFT_CONFIG_KEY`]); `None` elsewhere.
    fn config_record(_core: &Self::Core, _index: u64) -> Option<Vec<u8>> {
        None
    }
    /// Whether `bytes` (from a peer's snapshot) decode as a [`Protocol::config_record`]: a
    /// record that does not would stop this validator from restarting.
    fn valid_config_record(_bytes: &[u8]) -> bool {
        false
    }
    /// Hands leadership to `to` (or to the voter the core picks) — Raft's leader transfer
    /// (thesis §3.10), so that an operator can drain a leader: the target, and the actions.
    /// The BFT protocols rotate their leader every view and refuse.
    fn transfer_leadership(
        _core: &mut Self::Core,
        _to: Option<ReplicaId>,
    ) -> Transfer<Self::Message> {
        Err(format!(
            "{} changes its leader every view: there is no leader to hand over (leader \
             transfer is a raft operation)",
            Self::NAME
        ))
    }
    /// Batch digests `msg` names that must be stored locally before the core sees it (a
    /// proposal's payload, so that a vote means "I can execute this"); usually empty.
    fn payload_of(msg: &Self::Message) -> Vec<Digest>;
    /// If `msg`, sent to `to` (`None`: to everyone), is a vote: a slot (one honest vote per
    /// slot; HotStuff: the view number) and the digest voted for. For the vote log.
    fn vote_slot(msg: &Self::Message, to: Option<ReplicaId>) -> Option<(String, Digest)>;
    /// Decodes a committed block's certificate and verifies it against the committee.
    fn certified(cert: &[u8], committee: &Committee, genesis: &Digest) -> Option<Certified>;
    /// Decodes a certificate without verifying it: for certificates from our own store.
    fn decode_certified(cert: &[u8], genesis: &Digest) -> Option<Certified>;
    /// A durable log entry's term and the batch digests it names (Raft; the driver stores
    /// the batches with the entry). `None` for protocols without a log, or garbage.
    fn log_entry(_entry: &[u8]) -> Option<(u64, Vec<Digest>)> {
        None
    }
    /// If `msg` says that this validator must install a state snapshot from the sender
    /// (Raft's InstallSnapshot): the lowest height it must reach.
    fn snapshot_offer(_msg: &Self::Message) -> Option<u64> {
        None
    }
    /// If `msg` is a signed statement an honest validator makes at most once per slot (a
    /// proposal, a vote), what it says, for equivocation evidence (`super::evidence`). Not
    /// verified: see [`Protocol::verify_statement`]. `None` for crash-fault protocols.
    fn statement(_msg: &Self::Message, _committee: &Committee) -> Option<Statement> {
        None
    }
    /// Whether the signature of a message [`Protocol::statement`] names verifies.
    fn verify_statement(_msg: &Self::Message, _committee: &Committee, _genesis: &Digest) -> bool {
        false
    }
    /// Test-only (`byzantine` feature): a message that conflicts with the proposal or vote
    /// `msg` — same signer and slot, another digest — validly signed with `key`.
    #[cfg(feature = "byzantine")]
    fn twin(_msg: &Self::Message, _key: &SecretKey, _genesis: &Digest) -> Option<Self::Message> {
        None
    }
    /// Test-only (`byzantine` feature): `msg` with a signature that does not verify (signed
    /// for another purpose), if it carries one.
    #[cfg(feature = "byzantine")]
    fn corrupt(_msg: &Self::Message, _key: &SecretKey) -> Option<Self::Message> {
        None
    }
}

/// A digest no honest validator signs: what a Byzantine twin votes for.
#[cfg(feature = "byzantine")]
pub(crate) fn other_digest(d: &Digest) -> Digest {
    let mut h = crypto::Hasher::new();
    h.part(b"cairn/byzantine-twin").part(&d.0);
    h.finish()
}

/// Chained HotStuff (`consensus::hotstuff`).
pub struct HotStuffProtocol;

fn hotstuff_certified(c: &CommitCertificate) -> Certified {
    Certified {
        id: c.block.id(),
        view: c.block.view,
        proposer: c.block.proposer,
        timestamp_ms: c.block.timestamp_ms,
        payload: c.block.payload.clone(),
        parent: Some(c.block.parent()),
        proves_commit: c.proof.is_some(),
        height: None,
    }
}

impl Protocol for HotStuffProtocol {
    type Message = Message;
    type Core = HotStuff;

    const NAME: &'static str = "hotstuff";
    const SAFETY_KEY: &'static str = "hotstuff/safety";
    /// The HotStuff core arms its view timer as timer 0.
    const VIEW_TIMER: u64 = 0;

    /// The safety record, the last committed block (its certificate names the consensus
    /// block) and the leader-election activity of the last `window + LAG + 8` blocks.
    fn build(
        params: &CoreParams,
        ledger: &Ledger<RedbStore>,
        safety: Option<Vec<u8>>,
    ) -> Result<HotStuff, DriverError> {
        let safety = match safety {
            Some(s) => Some(s),
            None => ledger.store().meta(&params.safety_key(Self::SAFETY_KEY))?,
        };
        let committed = match ledger.height() {
            h if h < params.first_height() => None,
            h => {
                let b = ledger.store().block(h)?.ok_or_else(|| {
                    DriverError::Safety(format!("block {h} missing from the store"))
                })?;
                let cert = CommitCertificate::decode(&b.certificate)
                    .map_err(|e| DriverError::Safety(e.to_string()))?;
                Some((cert.block.id(), cert.block.view))
            }
        };
        let cfg = hotstuff::Config {
            me: params.me,
            key: params.key.clone(),
            committee: params.committee.clone(),
            genesis: params.genesis,
            base_timeout_ms: params.base_timeout_ms,
            max_timeout_ms: params.max_timeout_ms,
            max_payload: params.max_payload,
            idle_block_ms: params.idle_block_ms,
        };
        // Enough committed blocks for leader election to agree with the replicas that remember.
        let keep =
            hotstuff::election::window(params.committee.n()) as u64 + hotstuff::election::LAG + 8;
        let mut history = Vec::new();
        let from = (ledger.height().saturating_sub(keep) + 1).max(params.first_height());
        for h in from..=ledger.height() {
            if let Some(a) = ledger
                .store()
                .block(h)?
                .and_then(|b| hotstuff::activity_of(&b.certificate))
            {
                history.push(a);
            }
        }
        HotStuff::new(
            cfg,
            hotstuff::Recovered {
                safety,
                committed,
                history,
            },
        )
        .map_err(|e| DriverError::Safety(e.to_string()))
    }

    fn safety_bytes(core: &HotStuff) -> Vec<u8> {
        core.safety_data().encode()
    }

    fn pending_payload(core: &HotStuff) -> Vec<Digest> {
        core.pending_payload()
    }

    fn leader(core: &HotStuff) -> Option<ReplicaId> {
        Some(core.leader(consensus::Core::view(core)))
    }

    fn view_changes(core: &HotStuff) -> u64 {
        core.stats().views_by_tc
    }

    fn payload_of(msg: &Message) -> Vec<Digest> {
        match msg {
            Message::Propose(p) => p.block.payload.clone(),
            _ => Vec::new(),
        }
    }

    fn vote_slot(msg: &Message, _to: Option<ReplicaId>) -> Option<(String, Digest)> {
        match msg {
            Message::Vote(v) => Some((v.view.0.to_string(), v.block)),
            _ => None,
        }
    }

    /// Its QC certifies its block, and the 2-chain proof, when present, verifies too.
    fn certified(cert: &[u8], committee: &Committee, genesis: &Digest) -> Option<Certified> {
        let c = CommitCertificate::decode(cert).ok()?;
        c.verify(committee, genesis).ok()?;
        Some(hotstuff_certified(&c))
    }

    fn decode_certified(cert: &[u8], _genesis: &Digest) -> Option<Certified> {
        CommitCertificate::decode(cert)
            .ok()
            .map(|c| hotstuff_certified(&c))
    }

    /// A proposal (one per leader and view) or a vote (one per voter and view).
    fn statement(msg: &Message, _committee: &Committee) -> Option<Statement> {
        match msg {
            Message::Propose(p) => Some(Statement {
                signer: p.block.proposer,
                kind: "hotstuff-proposal",
                slot: p.block.view.0.to_string(),
                digest: p.block.id(),
            }),
            Message::Vote(v) => Some(Statement {
                signer: v.voter,
                kind: "hotstuff-vote",
                slot: v.view.0.to_string(),
                digest: v.block,
            }),
            _ => None,
        }
    }

    fn verify_statement(msg: &Message, committee: &Committee, genesis: &Digest) -> bool {
        match msg {
            Message::Propose(p) => committee.key(p.block.proposer).is_some_and(|key| {
                crypto::verify(crypto::Domain::Proposal, &p.block.id().0, key, &p.signature).is_ok()
            }),
            Message::Vote(v) => v.verify(committee, genesis).is_ok(),
            _ => false,
        }
    }

    #[cfg(feature = "byzantine")]
    fn twin(msg: &Message, key: &SecretKey, genesis: &Digest) -> Option<Message> {
        match msg {
            Message::Propose(p) => {
                let mut block = p.block.clone();
                block.timestamp_ms = block.timestamp_ms.wrapping_add(1);
                Some(Message::Propose(Box::new(hotstuff::Proposal::new(
                    block,
                    p.tc.clone(),
                    key,
                ))))
            }
            Message::Vote(v) => Some(Message::Vote(hotstuff::Vote::new(
                genesis,
                other_digest(&v.block),
                v.view,
                v.voter,
                key,
            ))),
            _ => None,
        }
    }

    #[cfg(feature = "byzantine")]
    fn corrupt(msg: &Message, key: &SecretKey) -> Option<Message> {
        let wrong = |bytes: &[u8]| key.sign(crypto::Domain::Test, bytes);
        let mut m = msg.clone();
        match &mut m {
            Message::Propose(p) => p.signature = wrong(&p.block.id().0),
            Message::Vote(v) => v.signature = wrong(&v.block.0),
            Message::Timeout(t) => t.signature = wrong(&t.view.0.to_le_bytes()),
            _ => return None,
        }
        Some(m)
    }
}
