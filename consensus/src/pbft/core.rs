//! The PBFT replica (Castro & Liskov, OSDI'99, with signatures): normal case, checkpoints and
//! garbage collection, view change with proofs, and catch-up by commit certificates.
//!
//! Blocks and ledger heights coincide: sequence number n is ledger height n (a null request
//! commits an empty block), so a ledger's tip certificate says where the core resumes.

use super::messages::{
    Block, Checkpoint, CheckpointCert, CommitCertificate, Message, NewView, Phase, PrePrepare,
    PreparedCert, ViewChange, Vote,
};
use crate::core::{Action, Committed, Core, Durable, Input};
use crate::durable::{PersistGate, Route, Unreleased};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The view-change timer's id.
pub const VIEW_TIMER: u64 = 0;
/// The idle-proposal timer's id (see [`Config::idle_block_ms`]).
const IDLE_TIMER: u64 = 1;
/// Checkpoint interval k used when a genesis does not say otherwise.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 16;
/// Blocks the primary has pre-prepared but that are not committed yet, at most.
const MAX_INFLIGHT: u64 = 4;
/// Commit certificates kept to answer [`Message::Fetch`], and per answer.
pub const RECENT_CERTIFICATES: usize = 512;
const FETCH_BATCH: usize = 64;
/// Messages of a view this replica has not entered yet, kept for when it does.
const MAX_FUTURE: usize = 1024;
/// Batch digests waiting to be proposed, at most.
const MAX_PENDING_PAYLOAD: usize = 100_000;
/// Checkpoint messages kept per signer above the stable checkpoint (its highest numbers).
const CHECKPOINTS_KEPT: usize = 8;

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
struct Slot {
    /// The pre-prepare accepted in the current view.
    pre_prepare: Option<PrePrepare>,
    prepares: BTreeMap<ReplicaId, Vote>,
    commits: BTreeMap<ReplicaId, Vote>,
    /// Prepared in the current view (our commit is signed).
    prepared: bool,
    /// Own messages of the current view already released, with the persist each needed,
    /// for retransmission.
    mine: Vec<(u64, Message)>,
}

pub struct Pbft {
    cfg: Config,
    window: u64,
    view: View,
    changing: bool,
    stable: CheckpointCert,
    slots: BTreeMap<u64, Slot>,
    records: BTreeMap<u64, SlotRecord>,
    /// Committed-local (or fetched) blocks waiting for an earlier one, by sequence number.
    ready: BTreeMap<u64, CommitCertificate>,
    committed: u64,
    executed: u64,
    /// Own state roots at checkpoint sequence numbers above the stable one.
    roots: BTreeMap<u64, Digest>,
    /// Checkpoint messages above the stable checkpoint, inside the water marks or beyond
    /// them: signer -> seq -> (root, signature). One root per signer and number, and only
    /// each signer's [`CHECKPOINTS_KEPT`] highest numbers, so a Byzantine replica cannot
    /// make it grow. Beyond the water marks they tell a lagging replica where the others
    /// are, and a quorum of them is a stable checkpoint it adopts (then fetches up to).
    checkpoints: BTreeMap<ReplicaId, BTreeMap<u64, (Digest, Signature)>>,
    /// Each replica's latest view change.
    view_changes: BTreeMap<ReplicaId, ViewChange>,
    /// The NEW-VIEW that started the current view (resent to replicas that missed it).
    new_view: Option<NewView>,
    /// Our latest view change and the persist it left after (resent while changing).
    my_vc: Option<(u64, ViewChange)>,
    next_seq: u64,
    pending: VecDeque<Digest>,
    pending_set: BTreeSet<Digest>,
    /// Every offered digest not committed yet (returned to `pending` after a view change),
    /// in arrival order: one validator's batches carry consecutive nonces of its clients,
    /// and proposing them out of order makes the later ones fail at execution.
    offered: Offered,
    recent: VecDeque<CommitCertificate>,
    gate: PersistGate<Message>,
    /// Consecutive view changes without a commit (timer backoff).
    attempts: u32,
    committed_at_arm: u64,
    retransmitted: bool,
    idle: Option<(View, bool)>,
    future: VecDeque<(ReplicaId, Message)>,
    /// Highest sequence number known committed somewhere (a stable checkpoint or a
    /// certificate), to fetch up to.
    fetch_target: u64,
    fetch_asked: bool,
    fetch_peer: u64,
    now: u64,
    stats: Stats,
}

type Out = Vec<Action<Message>>;

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
            stable: data.stable,
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

    fn invalid(&mut self) {
        self.stats.invalid += 1;
    }

    fn high_water_mark(&self) -> u64 {
        self.stable.seq + self.window
    }

    fn timeout_ms(&self) -> u64 {
        let base = self.cfg.base_timeout_ms.max(1);
        base.saturating_mul(1u64 << self.attempts.min(20))
            .min(self.cfg.max_timeout_ms.max(base))
    }

    fn arm_view_timer(&mut self, out: &mut Out) {
        self.committed_at_arm = self.committed;
        out.push(Action::SetTimer {
            id: VIEW_TIMER,
            after_ms: self.timeout_ms(),
        });
    }

    fn persist(&mut self, out: &mut Out) -> u64 {
        let bytes = self.safety_data().encode();
        self.gate.persist(Durable::Safety(bytes), out)
    }

    fn send_after(&mut self, seq: u64, route: Route, msg: Message) {
        self.gate.send_after(seq, route, Unreleased::new(msg));
    }

    fn release(&mut self, seq: u64, out: &mut Out) {
        for (route, msg) in self.gate.persisted(seq) {
            out.push(route_action(route, msg));
        }
    }

    // ---------------------------------------------------------------- normal case

    fn on_message(&mut self, from: ReplicaId, msg: Message, out: &mut Out) {
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

    fn in_window(&self, seq: u64) -> bool {
        seq > self.stable.seq && seq <= self.high_water_mark()
    }

    /// Notes that `seq` is beyond what we can take and someone claims it: if a stable
    /// checkpoint says so too we fetch (a single replica's claim moves nothing).
    fn on_pre_prepare(&mut self, p: PrePrepare, out: &mut Out) {
        let seq = p.block.seq;
        if !self.in_window(seq) {
            return self.invalid();
        }
        if p.block.proposer != self.primary(self.view)
            || p.verify(&self.cfg.committee, &self.cfg.genesis, self.cfg.max_payload)
                .is_err()
        {
            return self.invalid();
        }
        self.accept_pre_prepare(p, out);
    }

    /// Takes a verified pre-prepare of the current view into the log and prepares it,
    /// unless this replica already signed another digest at that number in this view.
    /// Returns whether a prepare was signed (the caller persists and sends).
    fn accept_pre_prepare(&mut self, p: PrePrepare, out: &mut Out) {
        let seq = p.block.seq;
        let d = p.block.digest();
        let slot = self.slots.entry(seq).or_default();
        if let Some(have) = &slot.pre_prepare {
            if have.block.digest() != d {
                self.stats.invalid += 1;
            }
            return;
        }
        if let Some(r) = self.records.get(&seq)
            && r.signed.0 == self.view
            && r.signed.1 != d
        {
            return self.invalid();
        }
        slot.pre_prepare = Some(p.clone());
        for digest in &p.block.payload {
            if self.pending_set.remove(digest) {
                self.pending.retain(|x| x != digest);
            }
            // The driver feeds a pre-prepare only once its batches are stored here, so this
            // replica can propose them itself if this block does not survive a view change
            // (a batch it fetched for this block was never offered to it otherwise).
            self.offered.insert(*digest);
        }
        let me = self.cfg.me;
        if self.primary(self.view) != me {
            let vote = Vote::new(
                Phase::Prepare,
                self.view,
                seq,
                d,
                me,
                &self.cfg.genesis,
                &self.cfg.key,
            );
            self.record_signed(seq, d);
            let ps = self.persist(out);
            let msg = Message::Prepare(vote.clone());
            self.send_after(ps, Route::All, msg.clone());
            let slot = self.slots.entry(seq).or_default();
            slot.prepares.insert(me, vote);
            slot.mine.push((ps, msg));
        }
        self.check_prepared(seq, out);
    }

    fn record_signed(&mut self, seq: u64, d: Digest) {
        let view = self.view;
        self.records
            .entry(seq)
            .and_modify(|r| r.signed = (view, d))
            .or_insert(SlotRecord {
                signed: (view, d),
                prepared: None,
            });
    }

    fn on_vote(&mut self, phase: Phase, v: Vote, out: &mut Out) {
        if !self.in_window(v.seq) {
            return self.invalid();
        }
        if phase == Phase::Prepare && v.replica == self.primary(self.view) {
            return self.invalid();
        }
        if v.verify(phase, &self.cfg.committee, &self.cfg.genesis)
            .is_err()
        {
            return self.invalid();
        }
        let seq = v.seq;
        let slot = self.slots.entry(seq).or_default();
        match phase {
            Phase::Prepare => {
                slot.prepares.insert(v.replica, v);
                self.check_prepared(seq, out);
            }
            Phase::Commit => {
                slot.commits.insert(v.replica, v);
                self.check_committed(seq, out);
            }
        }
    }

    fn matching(
        votes: &BTreeMap<ReplicaId, Vote>,
        view: View,
        d: &Digest,
    ) -> Vec<(ReplicaId, Signature)> {
        votes
            .values()
            .filter(|v| v.view == view && v.digest == *d)
            .map(|v| (v.replica, v.signature))
            .collect()
    }

    /// Prepared: the pre-prepare and `quorum - 1` matching prepares from distinct backups.
    /// Then the prepared certificate is made durable before our commit leaves.
    fn check_prepared(&mut self, seq: u64, out: &mut Out) {
        let view = self.view;
        let need = self.cfg.committee.quorum() - 1;
        let Some(slot) = self.slots.get(&seq) else {
            return;
        };
        let Some(pp) = &slot.pre_prepare else {
            return;
        };
        if slot.prepared {
            return;
        }
        let d = pp.block.digest();
        let prepares = Self::matching(&slot.prepares, view, &d);
        if prepares.len() < need {
            return;
        }
        let cert = PreparedCert {
            pre_prepare: pp.clone(),
            prepares,
        };
        let me = self.cfg.me;
        let commit = Vote::new(
            Phase::Commit,
            view,
            seq,
            d,
            me,
            &self.cfg.genesis,
            &self.cfg.key,
        );
        let rec = self.records.entry(seq).or_insert(SlotRecord {
            signed: (view, d),
            prepared: None,
        });
        rec.prepared = Some(cert);
        let ps = self.persist(out);
        let msg = Message::Commit(commit.clone());
        self.send_after(ps, Route::All, msg.clone());
        let slot = self.slots.get_mut(&seq).expect("present");
        slot.prepared = true;
        slot.commits.insert(me, commit);
        slot.mine.push((ps, msg));
        self.check_committed(seq, out);
    }

    /// Committed-local: prepared here and `quorum` matching commits.
    fn check_committed(&mut self, seq: u64, out: &mut Out) {
        let view = self.view;
        let Some(slot) = self.slots.get(&seq) else {
            return;
        };
        if !slot.prepared || seq <= self.committed || self.ready.contains_key(&seq) {
            return;
        }
        let Some(pp) = &slot.pre_prepare else {
            return;
        };
        let d = pp.block.digest();
        let commits = Self::matching(&slot.commits, view, &d);
        if commits.len() < self.cfg.committee.quorum() {
            return;
        }
        let cert = CommitCertificate {
            view,
            block: pp.block.clone(),
            commits,
        };
        self.ready.insert(seq, cert);
        self.commit_ready(out);
    }

    /// Emits ready blocks in sequence order.
    fn commit_ready(&mut self, out: &mut Out) {
        let before = self.committed;
        while let Some(cert) = self.ready.remove(&(self.committed + 1)) {
            self.committed += 1;
            self.stats.commits += 1;
            for d in &cert.block.payload {
                self.offered.remove(d);
                if self.pending_set.remove(d) {
                    self.pending.retain(|x| x != d);
                }
            }
            out.push(Action::Commit(Committed {
                id: cert.block.digest(),
                // Not `cert.view`: replicas agree on (seq, digest), not on the view they saw
                // it commit in (a block committed at some replicas in view v is re-issued
                // in v+1 and commits there at the others), and the ledger hashes this into
                // the block header, which must be the same everywhere. A PBFT block names
                // no view of its own; the certificate says in which one this copy
                // committed.
                view: View(0),
                proposer: cert.block.proposer,
                timestamp_ms: cert.block.timestamp_ms,
                payload: cert.block.payload.clone(),
                certificate: cert.encode(),
            }));
            if self.recent.len() == RECENT_CERTIFICATES {
                self.recent.pop_front();
            }
            self.recent.push_back(cert);
        }
        // Stale entries (a fetch went past them) would never be emitted.
        let committed = self.committed;
        self.ready.retain(|s, _| *s > committed);
        if self.committed > before {
            self.attempts = 0;
            self.retransmitted = false;
            self.fetch_asked = false;
            self.try_propose(out);
            if self.committed < self.fetch_target {
                self.fetch(out);
            }
        }
    }

    // ---------------------------------------------------------------- proposing

    fn try_propose(&mut self, out: &mut Out) {
        let me = self.cfg.me;
        if self.changing || self.primary(self.view) != me {
            return;
        }
        loop {
            let seq = self.next_seq;
            if seq <= self.committed {
                self.next_seq = self.committed + 1;
                continue;
            }
            if !self.in_window(seq) || seq - 1 - self.committed >= MAX_INFLIGHT {
                return;
            }
            if self
                .records
                .get(&seq)
                .is_some_and(|r| r.signed.0 == self.view)
            {
                // Already pre-prepared here in this view (before a restart).
                self.next_seq += 1;
                continue;
            }
            let mut payload = Vec::new();
            while payload.len() < self.cfg.max_payload
                && let Some(d) = self.pending.pop_front()
            {
                self.pending_set.remove(&d);
                payload.push(d);
            }
            if payload.is_empty() {
                // Nothing to order: an empty block after the idle wait, and only when
                // nothing is in flight.
                if self.cfg.idle_block_ms == 0 || seq - 1 != self.committed {
                    return;
                }
                match self.idle {
                    Some((v, true)) if v == self.view => {}
                    Some((v, false)) if v == self.view => return,
                    _ => {
                        self.idle = Some((self.view, false));
                        out.push(Action::SetTimer {
                            id: IDLE_TIMER,
                            after_ms: self.cfg.idle_block_ms,
                        });
                        return;
                    }
                }
            }
            self.idle = None;
            let block = Block {
                seq,
                proposer: me,
                timestamp_ms: self.now,
                payload,
            };
            let pp = PrePrepare::new(self.view, block, &self.cfg.genesis, &self.cfg.key);
            let d = pp.block.digest();
            self.record_signed(seq, d);
            let ps = self.persist(out);
            let msg = Message::PrePrepare(Box::new(pp.clone()));
            self.send_after(ps, Route::All, msg.clone());
            let slot = self.slots.entry(seq).or_default();
            slot.pre_prepare = Some(pp);
            slot.mine.push((ps, msg));
            self.next_seq += 1;
            self.check_prepared(seq, out);
        }
    }

    fn add_payload(&mut self, d: Digest) {
        if self.offered.insert(d) {
            let in_log = self.slots.values().any(|s| {
                s.pre_prepare
                    .as_ref()
                    .is_some_and(|p| p.block.payload.contains(&d))
            });
            if !in_log && self.pending_set.insert(d) {
                self.pending.push_back(d);
            }
        }
    }

    // ---------------------------------------------------------------- checkpoints

    fn on_executed(&mut self, height: u64, root: Digest, out: &mut Out) {
        if height <= self.executed {
            return;
        }
        self.executed = height;
        let k = self.cfg.checkpoint_interval.max(1);
        if !height.is_multiple_of(k) || height <= self.stable.seq {
            return;
        }
        self.roots.insert(height, root);
        let cp = Checkpoint::new(height, root, self.cfg.me, &self.cfg.genesis, &self.cfg.key);
        out.push(Action::Broadcast {
            msg: Message::Checkpoint(cp.clone()),
        });
        self.add_checkpoint(cp, out);
    }

    fn on_checkpoint(&mut self, cp: Checkpoint, out: &mut Out) {
        let k = self.cfg.checkpoint_interval.max(1);
        if cp.seq <= self.stable.seq {
            return;
        }
        if !cp.seq.is_multiple_of(k) || cp.verify(&self.cfg.committee, &self.cfg.genesis).is_err() {
            return self.invalid();
        }
        self.add_checkpoint(cp, out);
    }

    /// Records a verified checkpoint message (ours or a peer's) above the stable checkpoint.
    /// A quorum of matching ones is a stable checkpoint, whether inside the water marks or
    /// beyond them (then we lag, and fetch up to it). Beyond them, f+1 replicas claiming
    /// numbers we have not reached (so at least one honest one) also make us fetch; a
    /// single replica's claim moves nothing.
    fn add_checkpoint(&mut self, cp: Checkpoint, out: &mut Out) {
        let mine = self.checkpoints.entry(cp.replica).or_default();
        match mine.get(&cp.seq) {
            Some((root, _)) if *root == cp.state_root => return,
            // An honest replica signs one state root per number.
            Some(_) => return self.invalid(),
            None => {}
        }
        mine.insert(cp.seq, (cp.state_root, cp.signature));
        while mine.len() > CHECKPOINTS_KEPT {
            mine.pop_first();
        }
        let signatures: Vec<(ReplicaId, Signature)> = self
            .checkpoints
            .iter()
            .filter_map(|(id, m)| match m.get(&cp.seq) {
                Some((root, sig)) if *root == cp.state_root => Some((*id, *sig)),
                _ => None,
            })
            .collect();
        if signatures.len() >= self.cfg.committee.quorum() {
            let cert = CheckpointCert {
                seq: cp.seq,
                state_root: cp.state_root,
                signatures,
            };
            return self.install_stable(cert, out);
        }
        if cp.seq > self.high_water_mark() {
            let mut highest: Vec<u64> = self
                .checkpoints
                .values()
                .filter_map(|m| m.keys().next_back().copied())
                .collect();
            highest.sort_unstable_by(|a, b| b.cmp(a));
            if let Some(s) = highest.get(self.cfg.committee.f())
                && *s > self.fetch_target
            {
                self.fetch_target = *s;
                self.fetch(out);
            }
        }
    }

    /// A stable checkpoint: the log at and below it is discarded. If we have not executed
    /// that far, the blocks are fetched from peers (their certificates prove them).
    fn install_stable(&mut self, cert: CheckpointCert, out: &mut Out) {
        if cert.seq <= self.stable.seq {
            return;
        }
        if let Some(mine) = self.roots.get(&cert.seq)
            && *mine != cert.state_root
        {
            self.stats.diverged += 1;
        }
        let h = cert.seq;
        self.stats.checkpoints += 1;
        self.stable = cert;
        self.slots = self.slots.split_off(&(h + 1));
        self.records = self.records.split_off(&(h + 1));
        for m in self.checkpoints.values_mut() {
            *m = m.split_off(&(h + 1));
        }
        self.checkpoints.retain(|_, m| !m.is_empty());
        self.roots = self.roots.split_off(&(h + 1));
        if self.next_seq <= h {
            self.next_seq = h + 1;
        }
        if self.committed < h {
            // A quorum is past us: ask (the next peer) now, even if an earlier request is
            // still unanswered (it may have been lost, or gone to a peer that does not
            // answer). New stable checkpoints are rare, so this cannot flood.
            self.fetch_target = self.fetch_target.max(h);
            self.fetch_asked = false;
            self.fetch(out);
        }
        self.try_propose(out);
    }

    // ---------------------------------------------------------------- catch-up

    fn fetch(&mut self, out: &mut Out) {
        if self.fetch_asked || self.committed >= self.fetch_target {
            return;
        }
        let n = self.cfg.committee.n() as u64;
        if n < 2 {
            return;
        }
        self.fetch_asked = true;
        let me = u64::from(self.cfg.me.0);
        let peer = (me + 1 + self.fetch_peer % (n - 1)) % n;
        self.fetch_peer += 1;
        out.push(Action::Send {
            to: ReplicaId(peer as u16),
            msg: Message::Fetch {
                from: self.committed + 1,
            },
        });
    }

    /// Asks a peer (the next one each time) for blocks after ours, whether or not one was
    /// asked before: called on timeouts, so a lost request or answer is asked again.
    fn probe(&mut self, out: &mut Out) {
        self.fetch_asked = false;
        self.fetch_target = self.fetch_target.max(self.committed + 1);
        self.fetch(out);
    }

    fn on_fetch(&mut self, from: ReplicaId, start: u64, out: &mut Out) {
        let Some(first) = self.recent.front().map(|c| c.block.seq) else {
            return;
        };
        if start < first || start > self.committed {
            return;
        }
        let skip = (start - first) as usize;
        let certs: Vec<CommitCertificate> = self
            .recent
            .iter()
            .skip(skip)
            .take(FETCH_BATCH)
            .cloned()
            .collect();
        out.push(Action::Send {
            to: from,
            msg: Message::Committed(certs),
        });
    }

    fn on_committed(&mut self, _from: ReplicaId, certs: Vec<CommitCertificate>, out: &mut Out) {
        self.fetch_asked = false;
        for cert in certs.into_iter().take(FETCH_BATCH) {
            let seq = cert.block.seq;
            if seq <= self.committed || self.ready.contains_key(&seq) {
                continue;
            }
            if seq > self.committed + FETCH_BATCH as u64 + self.window
                || cert.verify(&self.cfg.committee, &self.cfg.genesis).is_err()
            {
                self.invalid();
                break;
            }
            self.fetch_target = self.fetch_target.max(seq);
            self.stats.fetched += 1;
            self.ready.insert(seq, cert);
        }
        self.commit_ready(out);
    }

    // ---------------------------------------------------------------- view change

    fn start_view_change(&mut self, view: View, out: &mut Out) {
        if view <= self.view && (self.changing || view < self.view) {
            return;
        }
        self.view = view;
        self.changing = true;
        self.new_view = None;
        self.idle = None;
        self.retransmitted = false;
        for slot in self.slots.values_mut() {
            slot.pre_prepare = None;
            slot.prepared = false;
            slot.mine.clear();
        }
        let prepared: Vec<PreparedCert> = self
            .records
            .values()
            .filter_map(|r| r.prepared.clone())
            .collect();
        let vc = ViewChange::new(
            view,
            self.stable.clone(),
            prepared,
            self.cfg.me,
            &self.cfg.genesis,
            &self.cfg.key,
        );
        let ps = self.persist(out);
        self.send_after(ps, Route::All, Message::ViewChange(Box::new(vc.clone())));
        self.my_vc = Some((ps, vc.clone()));
        self.view_changes.insert(self.cfg.me, vc);
        self.arm_view_timer(out);
        self.attempts = self.attempts.saturating_add(1);
        self.try_new_view(out);
    }

    fn on_view_change(&mut self, from: ReplicaId, vc: ViewChange, out: &mut Out) {
        if vc.view < self.view {
            return;
        }
        if vc.view == self.view && !self.changing {
            // It missed the NEW-VIEW that started our view: send it again.
            if let Some(nv) = &self.new_view
                && self.primary(self.view) == self.cfg.me
            {
                out.push(Action::Send {
                    to: from,
                    msg: Message::NewView(Box::new(nv.clone())),
                });
            }
            return;
        }
        if self
            .view_changes
            .get(&vc.replica)
            .is_some_and(|have| have.view >= vc.view)
        {
            return;
        }
        if vc
            .verify(
                &self.cfg.committee,
                &self.cfg.genesis,
                self.cfg.max_payload,
                self.window,
            )
            .is_err()
        {
            return self.invalid();
        }
        // The stable checkpoint it proves may be ahead of ours.
        if vc.stable.seq > self.stable.seq {
            self.install_stable(vc.stable.clone(), out);
        }
        self.view_changes.insert(vc.replica, vc);
        // f+1 replicas want a view above ours: join the smallest of those views.
        let mine = self.view;
        let mut above: Vec<View> = self
            .view_changes
            .values()
            .map(|vc| vc.view)
            .filter(|v| *v > mine)
            .collect();
        if above.len() > self.cfg.committee.f() {
            // The largest view that f+1 of them want (at least one honest replica).
            above.sort_unstable_by(|a, b| b.cmp(a));
            let target = above[self.cfg.committee.f()];
            self.start_view_change(target, out);
        }
        self.try_new_view(out);
    }

    /// As the primary of the view we are changing to, with `quorum` view changes for it,
    /// send NEW-VIEW and enter the view.
    fn try_new_view(&mut self, out: &mut Out) {
        let view = self.view;
        if !self.changing || self.primary(view) != self.cfg.me {
            return;
        }
        let vcs: Vec<ViewChange> = self
            .view_changes
            .values()
            .filter(|vc| vc.view == view)
            .cloned()
            .collect();
        if vcs.len() < self.cfg.committee.quorum() {
            return;
        }
        let nv = NewView::new(
            view,
            vcs,
            &self.cfg.committee,
            &self.cfg.genesis,
            &self.cfg.key,
        );
        let (stable, _) = NewView::reissue(view, &nv.view_changes, &self.cfg.committee);
        self.install_new_view(nv, stable, out);
    }

    fn on_new_view(&mut self, nv: NewView, out: &mut Out) {
        if nv.view < self.view || (nv.view == self.view && !self.changing) {
            return;
        }
        let Ok(stable) = nv.verify(
            &self.cfg.committee,
            &self.cfg.genesis,
            self.cfg.max_payload,
            self.window,
        ) else {
            return self.invalid();
        };
        self.install_new_view(nv, stable, out);
    }

    /// Enters `nv.view`: adopts its stable checkpoint, takes its re-issued pre-prepares into
    /// the log and prepares them (the primary just records them), then the NEW-VIEW (from
    /// the primary) and the prepares leave after one persist.
    fn install_new_view(&mut self, nv: NewView, stable: CheckpointCert, out: &mut Out) {
        self.stats.view_changes += 1;
        self.view = nv.view;
        self.changing = false;
        self.idle = None;
        self.retransmitted = false;
        for slot in self.slots.values_mut() {
            slot.pre_prepare = None;
            slot.prepared = false;
            slot.mine.clear();
        }
        if stable.seq > self.stable.seq {
            self.install_stable(stable, out);
        }
        let me = self.cfg.me;
        let primary = self.primary(self.view) == me;
        let mut prepares = Vec::new();
        let mut max_s = self.stable.seq;
        for pp in &nv.pre_prepares {
            let seq = pp.block.seq;
            max_s = max_s.max(seq);
            if !self.in_window(seq) {
                continue;
            }
            let d = pp.block.digest();
            let slot = self.slots.entry(seq).or_default();
            slot.pre_prepare = Some(pp.clone());
            for digest in &pp.block.payload {
                self.offered.insert(*digest);
            }
            self.record_signed(seq, d);
            if !primary {
                let vote = Vote::new(
                    Phase::Prepare,
                    self.view,
                    seq,
                    d,
                    me,
                    &self.cfg.genesis,
                    &self.cfg.key,
                );
                self.slots
                    .get_mut(&seq)
                    .expect("present")
                    .prepares
                    .insert(me, vote.clone());
                prepares.push(vote);
            }
        }
        self.next_seq = max_s.max(self.committed) + 1;
        let ps = self.persist(out);
        if primary {
            self.send_after(ps, Route::All, Message::NewView(Box::new(nv.clone())));
        }
        for vote in prepares {
            let seq = vote.seq;
            let msg = Message::Prepare(vote);
            self.send_after(ps, Route::All, msg.clone());
            self.slots
                .get_mut(&seq)
                .expect("present")
                .mine
                .push((ps, msg));
        }
        self.new_view = Some(nv);
        // Offered batches that did not survive into the new log go back to pending.
        let in_log: BTreeSet<Digest> = self
            .slots
            .values()
            .filter_map(|s| s.pre_prepare.as_ref())
            .flat_map(|p| p.block.payload.iter().copied())
            .collect();
        self.pending.clear();
        self.pending_set.clear();
        for d in self.offered.in_order().collect::<Vec<_>>().iter() {
            if !in_log.contains(d) {
                self.pending.push_back(*d);
                self.pending_set.insert(*d);
            }
        }
        let entered = self.view;
        self.view_changes.retain(|_, vc| vc.view > entered);
        self.arm_view_timer(out);
        let seqs: Vec<u64> = self.slots.keys().copied().collect();
        for seq in seqs {
            self.check_prepared(seq, out);
        }
        self.try_propose(out);
        let future: Vec<(ReplicaId, Message)> = self.future.drain(..).collect();
        for (from, msg) in future {
            self.on_message(from, msg, out);
        }
    }

    // ---------------------------------------------------------------- timers

    /// Whether this replica expects a commit: the primary sends heartbeats, or work is
    /// pending, or the log holds an uncommitted request (a pre-prepare, or prepares from
    /// more than f replicas, so one Byzantine replica cannot fake work).
    fn waiting(&self) -> bool {
        let f = self.cfg.committee.f();
        self.cfg.idle_block_ms > 0
            || !self.pending.is_empty()
            || self
                .slots
                .range(self.committed + 1..)
                .any(|(_, s)| s.pre_prepare.is_some() || s.prepares.len() > f)
            || self.committed < self.fetch_target
    }

    fn on_view_timer(&mut self, out: &mut Out) {
        if self.changing {
            // Move on to the next view only when a quorum wanted this one (or a later one:
            // a replica's view change for a later view replaces the one it sent for this
            // view, and says it gave up on everything below) and its primary still sent
            // nothing; otherwise say our view change again (the new primary resends its
            // NEW-VIEW to a replica that missed it). A replica alone in a view change so
            // never runs ahead of the others.
            let view = self.view;
            let have = self
                .view_changes
                .values()
                .filter(|vc| vc.view >= view)
                .count();
            // The others may be committing in the view we left (we alone lost messages):
            // ask a peer for what we miss at every timeout, so a lost fetch or answer is
            // asked again and a replica alone in a view change keeps up.
            self.probe(out);
            if have >= self.cfg.committee.quorum() && self.retransmitted {
                return self.start_view_change(view.next(), out);
            }
            self.retransmitted = true;
            if let Some((ps, vc)) = &self.my_vc {
                self.gate.send_after(
                    *ps,
                    Route::All,
                    Unreleased::new(Message::ViewChange(Box::new(vc.clone()))),
                );
                for (route, msg) in self.gate.release_durable() {
                    out.push(route_action(route, msg));
                }
            }
            return self.arm_view_timer(out);
        }
        if self.committed > self.committed_at_arm || !self.waiting() {
            self.retransmitted = false;
            return self.arm_view_timer(out);
        }
        if !self.retransmitted {
            // Messages may have been lost: say everything again once before giving up on
            // the primary, and ask a peer whether we are simply behind.
            self.retransmitted = true;
            for slot in self.slots.range(self.committed + 1..).map(|(_, s)| s) {
                for (ps, msg) in &slot.mine {
                    self.gate
                        .send_after(*ps, Route::All, Unreleased::new(msg.clone()));
                }
            }
            for (route, msg) in self.gate.release_durable() {
                out.push(route_action(route, msg));
            }
            self.probe(out);
            return self.arm_view_timer(out);
        }
        let next = self.view.next();
        self.start_view_change(next, out);
    }
}

/// Digests in arrival order, with fast membership; at most [`MAX_PENDING_PAYLOAD`].
#[derive(Debug, Default)]
struct Offered {
    by_digest: BTreeMap<Digest, u64>,
    order: BTreeMap<u64, Digest>,
    next: u64,
}

impl Offered {
    /// Adds `d` at the end unless present or full; whether it was added.
    fn insert(&mut self, d: Digest) -> bool {
        if self.by_digest.len() >= MAX_PENDING_PAYLOAD || self.by_digest.contains_key(&d) {
            return false;
        }
        self.next += 1;
        self.by_digest.insert(d, self.next);
        self.order.insert(self.next, d);
        true
    }
    fn remove(&mut self, d: &Digest) {
        if let Some(n) = self.by_digest.remove(d) {
            self.order.remove(&n);
        }
    }
    fn in_order(&self) -> impl Iterator<Item = Digest> + '_ {
        self.order.values().copied()
    }
}

fn route_action(route: Route, msg: Message) -> Action<Message> {
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
        }
        out
    }

    fn view(&self) -> View {
        self.view
    }
}
