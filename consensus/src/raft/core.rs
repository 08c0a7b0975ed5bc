//! [`Raft`]: one replica's Raft state machine — its state, the input loop and the
//! persist-then-send plumbing. The handlers live next door: `election.rs` (timers, pre-vote,
//! votes, role changes), `replication.rs` (the leader's side: proposing, Appends,
//! commit), `follower.rs` (Append and InstallSnapshot on the receiving side), `log.rs` (the
//! in-memory log), `commit.rs` (committed entries, pending payload, compaction),
//! `recovery.rs` (rebuilding a replica after a restart).
//!
//! # Durability (Raft Fig. 2: "respond to RPCs only after updating stable storage")
//!
//! Every outgoing message goes through [`PersistGate`]: a message that carries a term whose
//! hard state is not durable yet waits for that persist, a VoteReply waits for the vote, an
//! AppendReply{success} waits for the log write covering the entries it acknowledges. The
//! leader counts itself towards a commit only for entries whose log write is acknowledged
//! (`durable_index`). The one way around it is
//! [`Raft::set_unsafe_reply_before_persist`], a negative control for the simulator.

use super::log::Log;
use super::membership::Membership;
use super::messages::{Entry, MAX_PAYLOAD, Message};
use crate::core::{Action, Core, Durable, Input};
use crate::durable::{PersistGate, Route, Unreleased};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey, codec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Timer id of the election timeout (followers, candidates) and check-quorum (leaders).
pub const ELECTION_TIMER: u64 = 0;
/// Timer id of the leader's heartbeat.
pub const HEARTBEAT_TIMER: u64 = 1;

#[derive(Clone)]
pub struct Config {
    pub me: ReplicaId,
    /// Signs the entries this replica creates as leader.
    pub key: SecretKey,
    /// A crash-fault committee (`Committee::new_cft`): quorum = majority.
    pub committee: Committee,
    pub genesis: Digest,
    /// Election timeouts are drawn uniformly from `[election_timeout_ms, 2 ×
    /// election_timeout_ms)`.
    pub election_timeout_ms: u64,
    /// Leader heartbeat interval (well below the election timeout).
    pub heartbeat_ms: u64,
    /// Seeds the election-timeout draws (the node passes OS randomness, the simulator its
    /// run seed). The only source of randomness in the core.
    pub seed: u64,
    /// Batch digests per entry, at most.
    pub max_payload: usize,
    /// Entries per Append, at most (≤ `MAX_ENTRIES_PER_APPEND`).
    pub max_append_entries: usize,
    /// Appends in flight to one follower without an answer (pipelining), at most.
    pub max_inflight: usize,
    /// Compact the log once `applied − log base ≥ snapshot_interval + log_keep`: the new
    /// base is `applied − log_keep`.
    pub snapshot_interval: u64,
    pub log_keep: u64,
}

/// Term and vote: durable before any reply that depends on them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    pub voted_for: Option<ReplicaId>,
}

impl HardState {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<HardState, RecoverError> {
        codec::decode(bytes, 1024, "raft hard state").map_err(|e| RecoverError(e.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot recover the raft state: {0}")]
pub struct RecoverError(pub String);

/// What a (re)started replica finds on disk.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The encoded [`HardState`], if one was ever persisted.
    pub hard_state: Option<Vec<u8>>,
    /// The ledger height: every entry up to it is committed and applied.
    pub applied: u64,
    /// The entry (certificate) of ledger block `applied`, if `applied > 0`. Its term is the
    /// term of log index `applied`.
    pub applied_entry: Option<Vec<u8>>,
    /// The durable log's entries (encoded [`Entry`]), in index order, as written through
    /// `Durable::Log` / `Durable::Compact`. May start below `applied` (entries kept for
    /// lagging followers) or be unrelated to it (after a snapshot install): the core keeps
    /// them only if the entry at `applied` is among them with the same term, else it starts
    /// with an empty log based at `applied`.
    pub entries: Vec<Vec<u8>>,
    /// The configuration in effect at `applied` (the latest configuration entry at or below
    /// it, or the one a snapshot carried); `None`: every committee member votes (genesis).
    pub config: Option<Membership>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Counters for metrics and the simulator's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Elections this replica started (real ones, after a granted pre-vote).
    pub elections: u64,
    /// Times this replica became leader.
    pub became_leader: u64,
    /// Leader step-downs for lack of a quorum (check-quorum).
    pub stepped_down: u64,
    /// InstallSnapshot offers sent.
    pub snapshots_offered: u64,
    /// Messages ignored as stale or invalid.
    pub ignored: u64,
    /// Configuration entries this replica appended as leader.
    pub config_changes: u64,
    /// Leader transfers this replica started (`TimeoutNow` sent).
    pub transfers: u64,
}

/// Batch digests waiting to be proposed, at most (the oldest are dropped beyond it).
pub(super) const MAX_PENDING_PAYLOAD: usize = 100_000;

/// A leader's view of one follower's log.
#[derive(Clone, Debug)]
pub(super) struct Progress {
    /// The next index to send.
    pub(super) next: u64,
    /// The highest index known to match (and be durable) at the follower.
    pub(super) matched: u64,
    /// Last index of each entry-carrying Append sent and not yet acknowledged, oldest first
    /// (at most `max_inflight`: pipelining).
    pub(super) inflight: VecDeque<u64>,
    /// After a rejection, one Append at a time until one succeeds.
    pub(super) probing: bool,
    /// Heartbeats since the last reply: in-flight Appends are presumed lost after a few.
    pub(super) silent_ticks: u32,
    /// An InstallSnapshot was offered since the last heartbeat (one per heartbeat).
    pub(super) snapshot_offered: bool,
}

impl Progress {
    pub(super) fn new(next: u64) -> Progress {
        Progress {
            next,
            matched: 0,
            inflight: VecDeque::new(),
            probing: false,
            silent_ticks: 0,
            snapshot_offered: false,
        }
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): the core's only randomness, for election timeouts.
#[derive(Debug)]
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

pub(super) type Out = Vec<Action<Message>>;

/// One replica's Raft state machine: feed it [`Input`]s, carry out the [`Action`]s it
/// returns (see the [`Core`] contract). Crash faults only: entries are signed by their
/// leader for the ledger's sake, but the core trusts what committee members send (it only
/// refuses what could crash it or break its own invariants).
pub struct Raft {
    pub(super) cfg: Config,
    pub(super) rng: SplitMix64,
    pub(super) gate: PersistGate<Message>,
    pub(super) role: Role,
    pub(super) term: u64,
    pub(super) voted_for: Option<ReplicaId>,
    /// The leader of `term`, once known (this replica when leader).
    pub(super) leader: Option<ReplicaId>,
    /// Sequence number of the last hard-state persist (0: the recovered one, durable).
    pub(super) hard_seq: u64,
    /// The hard state must be written at start (recovery raised the term to the log's).
    pub(super) hard_state_dirty: bool,
    pub(super) log: Log,
    pub(super) commit: u64,
    /// Highest height the ledger reported executed (compaction never goes above it).
    pub(super) applied: u64,
    /// Log writes not acknowledged yet: (sequence number, last index once it is durable).
    pub(super) log_writes: VecDeque<(u64, u64)>,
    /// Every entry of the in-memory log up to this index is durable.
    pub(super) durable_index: u64,
    /// Sequence number of the last log write (0: none since start).
    pub(super) last_log_seq: u64,
    /// Offered batch digests not in the log, in arrival order (and the same as a set).
    pub(super) pending: VecDeque<Digest>,
    pub(super) pending_set: BTreeSet<Digest>,
    /// Pre-votes or votes received in the current election (including our own).
    pub(super) votes: BTreeSet<ReplicaId>,
    /// Leader: one entry per other replica.
    pub(super) progress: BTreeMap<ReplicaId, Progress>,
    /// Leader: replicas that answered during the current check-quorum period.
    pub(super) heard: BTreeSet<ReplicaId>,
    /// Follower: the leader was heard from during the current election-timer period
    /// (leader stickiness: no pre-vote granted, higher-term RequestVote ignored).
    pub(super) leader_contact: bool,
    /// The driver's clock at the current input: entry timestamps only.
    pub(super) now: u64,
    pub(super) stats: Stats,
    pub(super) unsafe_reply_before_persist: bool,
    /// Linearizable reads open here (`read.rs`).
    pub(super) reads: super::read::Reads,
    pub(super) unsafe_stale_reads: bool,
    /// The members the ledger names: a leader steers the configuration towards them, one
    /// server at a time (`reconfig.rs`). `None`: keep the configuration.
    pub(super) target: Option<BTreeSet<ReplicaId>>,
    /// Leader: a transfer in progress (`reconfig.rs`); no new entries meanwhile.
    pub(super) transfer: Option<super::reconfig::Transfer>,
    pub(super) unsafe_multi_server_changes: bool,
}

impl Raft {
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    /// The leader this replica currently follows (itself when leader), if known.
    pub fn leader(&self) -> Option<ReplicaId> {
        self.leader
    }
    pub fn commit_index(&self) -> u64 {
        self.commit
    }
    /// The log base (snapshot point): the last compacted index; entries start after it.
    pub fn log_base(&self) -> (u64, u64) {
        self.log.base()
    }
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    /// The entry at `index` if it is in the in-memory log (base < index ≤ last).
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.log.get(index)
    }
    /// Term of the entry at `index` (the base's term at the base), if known.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term_at(index)
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }
    /// Batch digests offered and not yet in the log.
    pub fn pending_payload(&self) -> Vec<Digest> {
        self.pending.iter().copied().collect()
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Messages held until a persist is acknowledged.
    pub fn held(&self) -> usize {
        self.gate.held()
    }
    /// Every entry up to this index is durable in this replica's log, as far as the core
    /// knows (acknowledged log writes).
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }
    /// Entries held in memory (bounded by compaction).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// NEGATIVE CONTROL ONLY — BREAKS SAFETY. With `on`, replies to Append and RequestVote
    /// leave at once instead of waiting for the persist they acknowledge, so a crash can
    /// forget a vote or an acknowledged entry. The simulator uses it to show that its
    /// checkers catch exactly that bug; nothing else may call it.
    pub fn set_unsafe_reply_before_persist(&mut self, on: bool) {
        self.unsafe_reply_before_persist = on;
    }

    // ---- persist-then-send ----------------------------------------------------------------

    /// Persists the current term and vote.
    pub(super) fn persist_hard_state(&mut self, out: &mut Out) {
        let hs = self.hard_state().encode();
        self.hard_seq = self.gate.persist(Durable::Safety(hs), out);
        self.hard_state_dirty = false;
    }

    /// Writes `entries` (already in the in-memory log) after `truncate_after`.
    pub(super) fn persist_log(
        &mut self,
        truncate_after: u64,
        entries: Vec<Vec<u8>>,
        out: &mut Out,
    ) {
        // Until this write is durable the disk still holds the old entries after
        // `truncate_after`: they no longer count as ours.
        for w in &mut self.log_writes {
            w.1 = w.1.min(truncate_after);
        }
        self.durable_index = self.durable_index.min(truncate_after);
        let seq = self.gate.persist(
            Durable::Log {
                truncate_after,
                entries,
            },
            out,
        );
        self.log_writes.push_back((seq, self.log.last_index()));
        self.last_log_seq = seq;
    }

    /// Sends `msg` once persist `dep` (0: none) and the hard state carrying our term are
    /// durable, keeping the order of everything sent through the gate.
    pub(super) fn send(&mut self, route: Route, msg: Message, dep: u64, out: &mut Out) {
        let mut need = dep;
        if self.hard_seq > self.gate.durable() {
            need = need.max(self.hard_seq);
        }
        if need <= self.gate.durable() && self.gate.held() == 0 {
            return dispatch(route, msg, out);
        }
        self.gate.send_after(need, route, Unreleased::new(msg));
        for (route, msg) in self.gate.release_durable() {
            dispatch(route, msg, out);
        }
    }

    /// A VoteReply or AppendReply: like [`Raft::send`], unless the negative control is on.
    pub(super) fn reply(&mut self, to: ReplicaId, msg: Message, dep: u64, out: &mut Out) {
        if self.unsafe_reply_before_persist {
            return out.push(Action::Send { to, msg });
        }
        self.send(Route::To(to), msg, dep, out);
    }

    fn on_persisted(&mut self, seq: u64, out: &mut Out) {
        for (route, msg) in self.gate.persisted(seq) {
            dispatch(route, msg, out);
        }
        let durable = self.gate.durable();
        while let Some(&(s, last)) = self.log_writes.front()
            && s <= durable
        {
            self.durable_index = last;
            self.log_writes.pop_front();
        }
        if self.role == Role::Leader {
            self.maybe_commit(out);
            self.propose(out);
        }
    }

    // ---- config limits, sanitised ----------------------------------------------------------

    pub(super) fn max_payload(&self) -> usize {
        self.cfg.max_payload.clamp(1, MAX_PAYLOAD)
    }
    pub(super) fn max_append_entries(&self) -> usize {
        self.cfg
            .max_append_entries
            .clamp(1, super::messages::MAX_ENTRIES_PER_APPEND)
    }
    pub(super) fn max_inflight(&self) -> usize {
        self.cfg.max_inflight.max(1)
    }
    /// A majority of the voters of the latest configuration in the log.
    pub(super) fn quorum(&self) -> usize {
        self.log.config().quorum()
    }

    /// Whether `id` votes in the latest configuration.
    pub(super) fn is_voter(&self, id: ReplicaId) -> bool {
        self.log.config().is_voter(id)
    }

    fn on_message(&mut self, from: ReplicaId, msg: Message, out: &mut Out) {
        match msg {
            Message::PreVote {
                term,
                last_index,
                last_term,
            } => self.on_pre_vote(from, term, last_index, last_term, out),
            Message::PreVoteReply { term, granted } => {
                self.on_pre_vote_reply(from, term, granted, out)
            }
            Message::RequestVote {
                term,
                last_index,
                last_term,
                transfer,
            } => self.on_request_vote(from, term, (last_index, last_term), transfer, out),
            Message::TimeoutNow { term } => self.on_timeout_now(from, term, out),
            Message::VoteReply { term, granted } => {
                if self.step_down_if_behind(term, out) {
                    return;
                }
                self.on_vote_reply(from, term, granted, out);
            }
            Message::AppendReply {
                term,
                success,
                index,
                read_round,
            } => {
                if self.step_down_if_behind(term, out) {
                    return;
                }
                self.on_append_reply(from, term, success, index, read_round, out);
            }
            Message::Append {
                term,
                prev_index,
                prev_term,
                entries,
                commit,
                read_round,
            } => {
                let prev = (prev_index, prev_term);
                self.on_append(from, term, prev, entries, commit, read_round, out)
            }
            Message::InstallSnapshot {
                term,
                last_index,
                last_term,
            } => self.on_install_snapshot(from, term, last_index, last_term, out),
            Message::ReadIndex { term, id } => self.on_read_index(from, term, id, out),
            Message::ReadIndexReply { term, id, index } => {
                self.on_read_index_reply(term, id, index, out)
            }
        }
    }

    /// A reply with a higher term: this replica is behind, it becomes a follower of that term
    /// (§5.1). Returns whether it did.
    pub(super) fn step_down_if_behind(&mut self, term: u64, out: &mut Out) -> bool {
        if term <= self.term {
            return false;
        }
        self.become_follower(term, out);
        self.reset_election_timer(out);
        true
    }
}

fn dispatch(route: Route, msg: Message, out: &mut Out) {
    match route {
        Route::To(to) => out.push(Action::Send { to, msg }),
        Route::All => out.push(Action::Broadcast { msg }),
    }
}

impl Core for Raft {
    type Message = Message;

    fn start(&mut self, now_ms: u64) -> Vec<Action<Message>> {
        self.now = now_ms;
        let mut out = Vec::new();
        if self.hard_state_dirty {
            self.persist_hard_state(&mut out);
        }
        self.reset_election_timer(&mut out);
        out
    }

    fn handle(&mut self, now_ms: u64, input: Input<Message>) -> Vec<Action<Message>> {
        self.now = now_ms;
        let mut out = Vec::new();
        match input {
            Input::Message { from, msg } => {
                if from == self.cfg.me || self.cfg.committee.key(from).is_none() {
                    self.stats.ignored += 1;
                } else {
                    self.on_message(from, msg, &mut out);
                }
            }
            Input::Timer(ELECTION_TIMER) => self.on_election_timer(&mut out),
            Input::Timer(HEARTBEAT_TIMER) => self.on_heartbeat_timer(&mut out),
            Input::Timer(_) => {}
            Input::Payload(d) => {
                self.add_payload(d);
                self.propose(&mut out);
            }
            Input::Persisted(seq) => self.on_persisted(seq, &mut out),
            Input::Executed { height, .. } => self.on_executed(height, &mut out),
            Input::Read(id) => self.on_read(id, &mut out),
        }
        out
    }

    fn view(&self) -> View {
        View(self.term())
    }
}
