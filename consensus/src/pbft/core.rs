//! The PBFT replica (Castro & Liskov, OSDI'99, with signatures): its state, the durable
//! [`SafetyData`], message dispatch and the [`Core`] entry points. The handlers are in
//! `normal.rs` (normal case), `checkpoints.rs` (checkpoints, garbage collection, catch-up by
//! commit certificates) and `view_change.rs` (view change with proofs).
//!
//! Blocks and ledger heights coincide: sequence number n is ledger height n (a null request
//! commits an empty block), so a ledger's tip certificate says where the core resumes.

use super::messages::{
    CheckpointCert, CommitCertificate, Message, NewView, Phase, PrePrepare, PreparedCert,
    ViewChange, Vote,
};
use crate::core::{Action, Core, Durable, Input};
use crate::durable::{PersistGate, Route, Unreleased};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The view-change timer's id.
pub const VIEW_TIMER: u64 = 0;
/// The idle-proposal timer's id (see [`Config::idle_block_ms`]).
pub(super) const IDLE_TIMER: u64 = 1;
/// Checkpoint interval k used when a genesis does not say otherwise.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 16;
/// Blocks the primary has pre-prepared but that are not committed yet, at most.
pub(super) const MAX_INFLIGHT: u64 = 4;
/// Commit certificates kept to answer [`Message::Fetch`], and per answer.
pub const RECENT_CERTIFICATES: usize = 512;
pub(super) const FETCH_BATCH: usize = 64;
/// Messages of a view this replica has not entered yet, kept for when it does.
const MAX_FUTURE: usize = 1024;
/// Batch digests waiting to be proposed, at most.
const MAX_PENDING_PAYLOAD: usize = 100_000;
/// Checkpoint messages kept per signer above the stable checkpoint (its highest numbers).
pub(super) const CHECKPOINTS_KEPT: usize = 8;

pub struct Config {
    pub me: ReplicaId,
    pub key: SecretKey,
    pub committee: Committee,
    /// Bound into every signature (the genesis hash).
    pub genesis: Digest,
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Batch digests per block, at most.
    pub max_payload: usize,
    /// How long a primary with nothing to order waits before an empty block (0: never an
    /// empty block). Empty blocks show backups that the primary is alive.
    pub idle_block_ms: u64,
    /// Checkpoint every k sequence numbers; the water marks are h < n <= h + 2k.
    pub checkpoint_interval: u64,
    /// The instance's start, its first stable checkpoint: [`CheckpointCert::genesis`] in
    /// epoch 0, [`CheckpointCert::start`] after a validator-set change.
    pub start: CheckpointCert,
}

/// What a restarted replica recovered from its store.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The last [`Durable::Safety`] record that was acknowledged durable.
    pub safety: Option<Vec<u8>>,
    /// The ledger height: the last committed sequence number.
    pub height: u64,
    /// Certificates of the last committed ledger blocks, oldest first, the last one at
    /// `height` (for answering peers that fetch; may be empty).
    pub recent: Vec<Vec<u8>>,
}

/// What this replica signed at one sequence number, and the best proof it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// The (view, digest) of the last pre-prepare or prepare this replica signed here: it
    /// never signs another digest at this number in that view.
    pub signed: (View, Digest),
    /// The highest-view prepared certificate it holds here (reported in view changes).
    pub prepared: Option<PreparedCert>,
}

/// What survives a crash. Written with [`Durable::Safety`] before anything signed under it
/// leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyData {
    pub view: View,
    /// A VIEW-CHANGE for `view` was sent and no NEW-VIEW accepted since: no normal-case
    /// message of any view below is signed any more.
    pub changing: bool,
    pub stable: CheckpointCert,
    /// Sequence numbers above the stable checkpoint.
    pub slots: BTreeMap<u64, SlotRecord>,
}

impl Default for SafetyData {
    /// A fresh replica: view 1 (so a Twins schedule names its primary), nothing signed.
    fn default() -> Self {
        SafetyData {
            view: View(1),
            changing: false,
            stable: CheckpointCert::genesis(),
            slots: BTreeMap::new(),
        }
    }
}

impl SafetyData {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<SafetyData, codec::DecodeError> {
        codec::decode(bytes, super::MAX_MESSAGE_BYTES, "pbft safety data")
    }
}

/// Counters for summaries and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub commits: u64,
    /// NEW-VIEWs installed.
    pub view_changes: u64,
    pub invalid: u64,
    /// Blocks committed from fetched certificates.
    pub fetched: u64,
    /// Stable checkpoints reached (garbage collections).
    pub checkpoints: u64,
    /// A stable checkpoint disagreed with this replica's own state root.
    pub diverged: u64,
}

/// The log entry of one sequence number inside the water marks.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The pre-prepare accepted in the current view.
    pub(super) pre_prepare: Option<PrePrepare>,
    pub(super) prepares: BTreeMap<ReplicaId, Vote>,
    pub(super) commits: BTreeMap<ReplicaId, Vote>,
    /// Prepared in the current view (our commit is signed).
    pub(super) prepared: bool,
    /// Own messages of the current view already released, with the persist each needed,
    /// for retransmission.
    pub(super) mine: Vec<(u64, Message)>,
}

pub struct Pbft {
    pub(super) cfg: Config,
    pub(super) window: u64,
    pub(super) view: View,
    pub(super) changing: bool,
    pub(super) stable: CheckpointCert,
    pub(super) slots: BTreeMap<u64, Slot>,
    pub(super) records: BTreeMap<u64, SlotRecord>,
    /// Committed-local (or fetched) blocks waiting for an earlier one, by sequence number.
    pub(super) ready: BTreeMap<u64, CommitCertificate>,
    pub(super) committed: u64,
    pub(super) executed: u64,
    /// Own state roots at checkpoint sequence numbers above the stable one.
    pub(super) roots: BTreeMap<u64, Digest>,
    /// Checkpoint messages above the stable checkpoint, inside the water marks or beyond
    /// them: signer -> seq -> (root, signature). One root per signer and number, and only
    /// each signer's [`CHECKPOINTS_KEPT`] highest numbers, so a Byzantine replica cannot
    /// make it grow. Beyond the water marks they tell a lagging replica where the others
    /// are, and a quorum of them is a stable checkpoint it adopts (then fetches up to).
    pub(super) checkpoints: BTreeMap<ReplicaId, BTreeMap<u64, (Digest, Signature)>>,
    /// Each replica's latest view change.
    pub(super) view_changes: BTreeMap<ReplicaId, ViewChange>,
    /// The NEW-VIEW that started the current view (resent to replicas that missed it).
    pub(super) new_view: Option<NewView>,
    /// Our latest view change and the persist it left after (resent while changing).
    pub(super) my_vc: Option<(u64, ViewChange)>,
    pub(super) next_seq: u64,
    pub(super) pending: VecDeque<Digest>,
    pub(super) pending_set: BTreeSet<Digest>,
    /// Every offered digest not committed yet (returned to `pending` after a view change),
    /// in arrival order: one validator's batches carry consecutive nonces of its clients,
    /// and proposing them out of order makes the later ones fail at execution.
    pub(super) offered: Offered,
    pub(super) recent: VecDeque<CommitCertificate>,
    pub(super) gate: PersistGate<Message>,
    /// Consecutive view changes without a commit (timer backoff).
    pub(super) attempts: u32,
    pub(super) committed_at_arm: u64,
    pub(super) retransmitted: bool,
    /// This view's primary proposed a block with room to spare while a batch offered to us
    /// at least [`Pbft::request_timeout_ms`] earlier was still not in the log: it lacks that
    /// batch or leaves it out. Its commits then do not count as progress (PBFT's request
    /// timer), so the backups change the view to a primary that has it. The batch, if so.
    pub(super) starved: Option<Digest>,
    /// View changes each batch caused by starving, at most f+1 per batch (a batch no primary
    /// will propose — say one whose transactions another batch already committed — must not
    /// change views forever); bounded.
    pub(super) starve_counts: BTreeMap<Digest, usize>,
    pub(super) idle: Option<(View, bool)>,
    pub(super) future: VecDeque<(ReplicaId, Message)>,
    /// Highest sequence number known committed somewhere (a stable checkpoint or a
    /// certificate), to fetch up to.
    pub(super) fetch_target: u64,
    pub(super) fetch_asked: bool,
    pub(super) fetch_peer: u64,
    pub(super) now: u64,
    pub(super) stats: Stats,
}

pub(super) type Out = Vec<Action<Message>>;

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("unreadable safety record: {0}")]
    Safety(String),
    #[error("unreadable commit certificate: {0}")]
    Certificate(String),
}

impl Pbft {
    pub fn new(cfg: Config, rec: Recovered) -> Result<Pbft, RecoverError> {
        let data = match &rec.safety {
            Some(b) => SafetyData::decode(b).map_err(|e| RecoverError::Safety(e.to_string()))?,
            None => SafetyData::default(),
        };
        let mut recent = VecDeque::new();
        for c in &rec.recent {
            let c = CommitCertificate::decode(c)
                .map_err(|e| RecoverError::Certificate(e.to_string()))?;
            recent.push_back(c);
        }
        while recent.len() > RECENT_CERTIFICATES {
            recent.pop_front();
        }
        let window = 2 * cfg.checkpoint_interval.max(1);
        let mut slots = BTreeMap::new();
        for (seq, r) in &data.slots {
            let mut slot = Slot::default();
            if let Some(p) = &r.prepared
                && p.view() == data.view
                && !data.changing
            {
                slot.pre_prepare = Some(p.pre_prepare.clone());
            }
            slots.insert(*seq, slot);
        }
        let next_seq = data
            .slots
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(rec.height)
            .max(data.stable.seq)
            + 1;
        Ok(Pbft {
            window,
            view: data.view,
            changing: data.changing,
            stable: if data.stable.seq < cfg.start.seq {
                cfg.start.clone()
            } else {
                data.stable
            },
            slots,
            records: data.slots,
            ready: BTreeMap::new(),
            committed: rec.height,
            executed: rec.height,
            roots: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            new_view: None,
            my_vc: None,
            next_seq,
            pending: VecDeque::new(),
            pending_set: BTreeSet::new(),
            offered: Offered::default(),
            recent,
            gate: PersistGate::default(),
            attempts: 0,
            committed_at_arm: rec.height,
            retransmitted: false,
            starved: None,
            starve_counts: BTreeMap::new(),
            idle: None,
            future: VecDeque::new(),
            fetch_target: rec.height,
            fetch_asked: false,
            fetch_peer: 0,
            now: 0,
            stats: Stats::default(),
            cfg,
        })
    }

    pub fn primary(&self, view: View) -> ReplicaId {
        self.cfg.committee.leader(view)
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// The last committed sequence number (= ledger height once executed).
    pub fn committed(&self) -> u64 {
        self.committed
    }
    /// The low water mark: the stable checkpoint's sequence number.
    pub fn low_water_mark(&self) -> u64 {
        self.stable.seq
    }
    /// Whether a view change is under way (no NEW-VIEW accepted yet).
    pub fn changing(&self) -> bool {
        self.changing
    }
    /// Log entries held (bounded by the water marks).
    pub fn log_len(&self) -> usize {
        self.slots.len()
    }
    pub fn safety_data(&self) -> SafetyData {
        SafetyData {
            view: self.view,
            changing: self.changing,
            stable: self.stable.clone(),
            slots: self.records.clone(),
        }
    }
    /// Batch digests offered and not committed yet.
    pub fn pending_payload(&self) -> Vec<Digest> {
        self.offered.in_order().collect()
    }
    /// Messages held until a persist is acknowledged.
    pub fn held(&self) -> usize {
        self.gate.held()
    }

    pub(super) fn invalid(&mut self) {
        self.stats.invalid += 1;
    }

    pub(super) fn high_water_mark(&self) -> u64 {
        self.stable.seq + self.window
    }

    fn timeout_ms(&self) -> u64 {
        let base = self.cfg.base_timeout_ms.max(1);
        base.saturating_mul(1u64 << self.attempts.min(20))
            .min(self.cfg.max_timeout_ms.max(base))
    }

    /// How long a backup waits for an offered batch to be proposed before a block with room
    /// to spare that leaves it out counts as the primary starving it: two view timeouts.
    pub(super) fn request_timeout_ms(&self) -> u64 {
        self.cfg.base_timeout_ms.max(1).saturating_mul(2)
    }

    pub(super) fn arm_view_timer(&mut self, out: &mut Out) {
        self.committed_at_arm = self.committed;
        out.push(Action::SetTimer {
            id: VIEW_TIMER,
            after_ms: self.timeout_ms(),
        });
    }

    pub(super) fn persist(&mut self, out: &mut Out) -> u64 {
        let bytes = self.safety_data().encode();
        self.gate.persist(Durable::Safety(bytes), out)
    }

    pub(super) fn send_after(&mut self, seq: u64, route: Route, msg: Message) {
        self.gate.send_after(seq, route, Unreleased::new(msg));
    }

    fn release(&mut self, seq: u64, out: &mut Out) {
        for (route, msg) in self.gate.persisted(seq) {
            out.push(route_action(route, msg));
        }
    }

    // ---------------------------------------------------------------- dispatch

    pub(super) fn on_message(&mut self, from: ReplicaId, msg: Message, out: &mut Out) {
        if let Some(v) = msg.view() {
            let entered = !self.changing && v == self.view;
            let vc_or_nv = matches!(msg, Message::ViewChange(_) | Message::NewView(_));
            if !vc_or_nv && !entered {
                if v > self.view || (v == self.view && self.changing) {
                    if self.future.len() >= MAX_FUTURE {
                        self.future.pop_front();
                    }
                    self.future.push_back((from, msg));
                }
                return;
            }
        }
        match msg {
            Message::PrePrepare(p) => self.on_pre_prepare(*p, out),
            Message::Prepare(v) => self.on_vote(Phase::Prepare, v, out),
            Message::Commit(v) => self.on_vote(Phase::Commit, v, out),
            Message::Checkpoint(c) => self.on_checkpoint(c, out),
            Message::ViewChange(vc) => self.on_view_change(from, *vc, out),
            Message::NewView(nv) => self.on_new_view(*nv, out),
            Message::Fetch { from: start } => self.on_fetch(from, start, out),
            Message::Committed(certs) => self.on_committed(from, certs, out),
        }
    }
}

/// Digests in arrival order, with fast membership; at most [`MAX_PENDING_PAYLOAD`].
#[derive(Debug, Default)]
pub(super) struct Offered {
    /// Digest → (arrival number, time offered).
    by_digest: BTreeMap<Digest, (u64, u64)>,
    order: BTreeMap<u64, Digest>,
    next: u64,
}

impl Offered {
    /// Adds `d` at the end, offered at `now`, unless present or full; whether it was added.
    pub(super) fn insert(&mut self, d: Digest, now: u64) -> bool {
        if self.by_digest.len() >= MAX_PENDING_PAYLOAD || self.by_digest.contains_key(&d) {
            return false;
        }
        self.next += 1;
        self.by_digest.insert(d, (self.next, now));
        self.order.insert(self.next, d);
        true
    }
    pub(super) fn remove(&mut self, d: &Digest) {
        if let Some((n, _)) = self.by_digest.remove(d) {
            self.order.remove(&n);
        }
    }
    /// When `d` was offered, if it is here.
    pub(super) fn since(&self, d: &Digest) -> Option<u64> {
        self.by_digest.get(d).map(|(_, at)| *at)
    }
    pub(super) fn in_order(&self) -> impl Iterator<Item = Digest> + '_ {
        self.order.values().copied()
    }
}

pub(super) fn route_action(route: Route, msg: Message) -> Action<Message> {
    match route {
        Route::All => Action::Broadcast { msg },
        Route::To(to) => Action::Send { to, msg },
    }
}

impl Core for Pbft {
    type Message = Message;

    fn start(&mut self, now_ms: u64) -> Vec<Action<Message>> {
        self.now = now_ms;
        let mut out = Vec::new();
        if self.changing {
            // Restarted during a view change: say it again (same content, same signature).
            let view = self.view;
            self.changing = false;
            self.view = View(view.0.saturating_sub(1));
            self.attempts = self.attempts.saturating_sub(1);
            self.start_view_change(view, &mut out);
        } else {
            self.arm_view_timer(&mut out);
            self.try_propose(&mut out);
        }
        out
    }

    fn handle(&mut self, now_ms: u64, input: Input<Message>) -> Vec<Action<Message>> {
        self.now = now_ms;
        let mut out = Vec::new();
        match input {
            Input::Message { from, msg } => {
                if self.cfg.committee.key(from).is_none() || from == self.cfg.me {
                    self.invalid();
                } else {
                    self.on_message(from, msg, &mut out);
                }
            }
            Input::Timer(VIEW_TIMER) => self.on_view_timer(&mut out),
            Input::Timer(IDLE_TIMER) => {
                if let Some((v, fired)) = &mut self.idle
                    && *v == self.view
                {
                    *fired = true;
                    self.try_propose(&mut out);
                }
            }
            Input::Timer(_) => {}
            Input::Payload(d) => {
                self.add_payload(d);
                self.try_propose(&mut out);
            }
            Input::Persisted(seq) => self.release(seq, &mut out),
            Input::Executed { height, state_root } => {
                self.on_executed(height, state_root, &mut out)
            }
            // Reads in the BFT modes are verified with header certificates, not ReadIndex.
            Input::Read(id) => out.push(Action::ReadFailed { id }),
        }
        out
    }

    fn view(&self) -> View {
        self.view
    }
}
