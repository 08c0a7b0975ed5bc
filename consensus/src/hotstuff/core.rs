//! The HotStuff replica: its state, the view logic, proposing and committing. The message
//! handlers are in `handlers.rs`, block sync in `sync.rs`.

use super::aggregator::Aggregator;
use super::election::{Activity, Election};
use super::messages::{
    Block, CommitCertificate, Message, Proposal, QcCache, QuorumCert, TimeoutCert,
};
use super::pacemaker::Pacemaker;
use super::safety::{SafetyData, SafetyRules};
use super::tree::BlockTree;
use crate::core::{Action, Committed, Core, Durable, Input};
use crate::durable::{PersistGate, Route};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey, codec};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The view timer's id.
pub(super) const VIEW_TIMER: u64 = 0;
/// The idle-proposal timer's id (see [`Config::idle_block_ms`]).
const IDLE_TIMER: u64 = 1;
/// Proposals waiting for a missing ancestor, at most.
pub(super) const MAX_BUFFERED: usize = 32;
/// Certified blocks received by sync that do not connect yet, at most.
pub(super) const MAX_ORPHANS: usize = 4096;
/// Blocks per sync response.
pub(super) const SYNC_BATCH: usize = 64;
/// Batch digests waiting to be proposed, at most.
const MAX_PENDING_PAYLOAD: usize = 100_000;
/// Uncommitted blocks written with the safety record, at most.
const MAX_DURABLE_BLOCKS: usize = 32;

pub struct Config {
    pub me: ReplicaId,
    pub key: SecretKey,
    pub committee: Committee,
    /// Id of the block every chain starts from (the genesis hash).
    pub genesis: Digest,
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Batch digests per block, at most.
    pub max_payload: usize,
    /// How long a leader with nothing to order waits before proposing an empty block
    /// (0: at once). It proposes at once whenever it has a batch, or when the block its
    /// proposal extends or that block's parent carries one (those need two more blocks to
    /// commit, and the followers learn of the commit from the next proposal). Must be well
    /// below `base_timeout_ms`, or followers time out while the leader waits.
    pub idle_block_ms: u64,
}

/// What a restarted replica recovered from its store.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The last [`Durable::Safety`] record that was acknowledged durable.
    pub safety: Option<Vec<u8>>,
    /// The last committed block's id and view; `None` before the first commit.
    pub committed: Option<(Digest, View)>,
    /// Activity in the last committed blocks, oldest first (from their certificates, see
    /// [`activity_of`]), for leader election. Empty falls back to round-robin until enough
    /// blocks commit, which may disagree with replicas that remember.
    pub history: Vec<Activity>,
}

/// The leader-election activity recorded by a committed block's certificate: its view, its
/// proposer and the signers of its QC. `None` if `certificate` is not a HotStuff one.
pub fn activity_of(certificate: &[u8]) -> Option<Activity> {
    let c = CommitCertificate::decode(certificate).ok()?;
    Some(activity(&c.block, &c.qc))
}

fn activity(block: &Block, qc: &QuorumCert) -> Activity {
    let mut active: Vec<ReplicaId> = qc.votes.iter().map(|(id, _)| *id).collect();
    active.push(block.proposer);
    Activity {
        view: block.view,
        active,
    }
}

/// Counters for summaries and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub views_by_tc: u64,
    pub invalid_messages: u64,
    pub equivocations: u64,
    pub commits: u64,
    pub sync_requests: u64,
}

pub struct HotStuff {
    pub(super) cfg: Config,
    pub(super) safety: SafetyRules,
    pub(super) gate: PersistGate<Message>,
    pub(super) view: View,
    pub(super) high_qc: QuorumCert,
    pub(super) high_tc: Option<TimeoutCert>,
    pub(super) pacemaker: Pacemaker,
    pub(super) tree: BlockTree,
    pub(super) agg: Aggregator,
    pub(super) buffered: VecDeque<Proposal>,
    pub(super) orphans: BTreeMap<Digest, Block>,
    /// Block ids we asked peers for (bounded).
    pub(super) wanted: BTreeSet<Digest>,
    pub(super) pending: VecDeque<Digest>,
    pub(super) pending_set: BTreeSet<Digest>,
    pub(super) stats: Stats,
    pub(super) now: u64,
    /// Last block fetched for proposing, and in which view (one request per view).
    pub(super) sync_requested: Option<(Digest, View)>,
    /// Sequence number of the last safety persist (0: the record loaded at start).
    pub(super) last_safety_seq: u64,
    pub(super) qc_cache: QcCache,
    /// The view whose empty proposal waits for the idle timer, and whether it has fired.
    pub(super) idle: Option<(View, bool)>,
    /// A commit happened that our next proposal announces (its QC proves it): propose
    /// without the idle wait.
    pub(super) commit_to_announce: bool,
    pub(super) election: Election,
}

pub(super) type Out = Vec<Action<Message>>;

impl HotStuff {
    /// Builds a replica from recovered state. Fails only if the safety record is corrupt,
    /// in which case the replica must not run (it could double-vote).
    pub fn new(cfg: Config, rec: Recovered) -> Result<Self, crypto::codec::DecodeError> {
        let data = match &rec.safety {
            Some(bytes) => SafetyData::decode(bytes)?,
            None => SafetyData::default(),
        };
        let root = rec.committed.unwrap_or((cfg.genesis, View(0)));
        // Keep the stored high QC even if it is below the committed root: falling back to
        // genesis would put it below `one_chain_view` and forbid every timeout.
        let high_qc = data
            .high_qc
            .clone()
            .unwrap_or_else(|| QuorumCert::genesis(cfg.genesis));
        let high_tc = data.high_tc.clone();
        let view = high_qc
            .view
            .next()
            .max(high_tc.as_ref().map_or(View(0), |tc| tc.view.next()))
            .max(data.last_voted_view);
        let mut tree = BlockTree::new(root);
        // Blocks this replica voted for or holds a QC for, so that a whole-committee restart
        // can still extend the highest QC (nobody else may have its block any more).
        let mut blocks = data.blocks.clone();
        blocks.sort_by_key(|b| b.view);
        for b in blocks {
            tree.insert(b, true);
        }
        let safety = SafetyRules::new(data, cfg.me, cfg.key.clone(), cfg.genesis);
        Ok(HotStuff {
            pacemaker: Pacemaker::new(cfg.base_timeout_ms, cfg.max_timeout_ms),
            safety,
            gate: PersistGate::default(),
            view,
            high_qc,
            high_tc,
            tree,
            agg: Aggregator::default(),
            buffered: VecDeque::new(),
            orphans: BTreeMap::new(),
            wanted: BTreeSet::new(),
            pending: VecDeque::new(),
            pending_set: BTreeSet::new(),
            stats: Stats::default(),
            now: 0,
            sync_requested: None,
            last_safety_seq: 0,
            qc_cache: QcCache::default(),
            idle: None,
            commit_to_announce: false,
            election: Election::new(rec.history),
            cfg,
        })
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.equivocations += self.agg.equivocations;
        s
    }
    pub fn high_qc(&self) -> &QuorumCert {
        &self.high_qc
    }
    pub fn safety_data(&self) -> &SafetyData {
        &self.safety.data
    }
    pub fn committed(&self) -> (Digest, View) {
        self.tree.root()
    }
    pub fn leader(&self, view: View) -> ReplicaId {
        self.election.leader(&self.cfg.committee, view)
    }
    /// Batch digests offered but not yet in a block of this replica's chain.
    pub fn pending_payload(&self) -> Vec<Digest> {
        self.pending.iter().copied().collect()
    }
    /// Messages held until a persist is acknowledged.
    pub fn held(&self) -> usize {
        self.gate.held()
    }

    /// Persists the safety record, with the uncommitted blocks it depends on (the chains
    /// under our high QC and under our last vote).
    pub(super) fn persist_safety(&mut self, out: &mut Out) -> u64 {
        let mut ids = vec![self.high_qc.block];
        if let Some(v) = &self.safety.data.last_vote {
            ids.push(v.block);
        }
        self.safety.data.blocks = self.tree.chains_to_root(&ids, MAX_DURABLE_BLOCKS);
        self.last_safety_seq = self
            .gate
            .persist(Durable::Safety(self.safety.data.encode()), out);
        self.last_safety_seq
    }

    /// Holds `msg` until `seq` is durable; releases at once if it already is.
    pub(super) fn send_after(
        &mut self,
        seq: u64,
        route: Route,
        msg: crate::Unreleased<Message>,
        out: &mut Out,
    ) {
        self.gate.send_after(seq, route, msg);
        for (route, msg) in self.gate.release_durable() {
            self.dispatch(route, msg, out);
        }
    }

    fn release(&mut self, seq: u64, out: &mut Out) {
        for (route, msg) in self.gate.persisted(seq) {
            self.dispatch(route, msg, out);
        }
    }

    fn dispatch(&mut self, route: Route, msg: Message, out: &mut Out) {
        match route {
            Route::To(to) if to == self.cfg.me => self.on_message(to, msg, out),
            Route::To(to) => out.push(Action::Send { to, msg }),
            Route::All => {
                // Our own proposals and timeouts count for us too.
                out.push(Action::Broadcast { msg: msg.clone() });
                self.on_message(self.cfg.me, msg, out);
            }
        }
    }

    pub(super) fn invalid(&mut self) {
        self.stats.invalid_messages += 1;
    }

    // ---- views -------------------------------------------------------------------------

    fn enter_view(&mut self, view: View, by_tc: bool, out: &mut Out) {
        if view <= self.view {
            return;
        }
        self.pacemaker.view_ended(by_tc);
        if by_tc {
            self.stats.views_by_tc += 1;
        }
        self.view = view;
        self.agg.prune(view);
        out.push(Action::SetTimer {
            id: VIEW_TIMER,
            after_ms: self.pacemaker.duration_ms(),
        });
        self.try_propose(out);
    }

    pub(super) fn process_qc(&mut self, qc: &QuorumCert, out: &mut Out) {
        self.tree.record_qc(qc);
        if qc.view > self.high_qc.view {
            self.high_qc = qc.clone();
            self.safety.observe_high_qc(qc);
        }
        if let Some(id) = self.tree.commit_candidate(qc) {
            let child = self
                .tree
                .block(&qc.block)
                .cloned()
                .expect("candidate's child is stored");
            self.commit(id, (child, qc.clone()), out);
        }
        self.enter_view(qc.view.next(), false, out);
    }

    pub(super) fn process_tc(&mut self, tc: &TimeoutCert, out: &mut Out) {
        // The TC carries the highest QC its signers hold; a leader needs it to propose.
        self.process_qc(&tc.high_qc, out);
        if self.high_tc.as_ref().is_none_or(|h| h.view < tc.view) {
            self.high_tc = Some(tc.clone());
            self.safety.data.high_tc = Some(tc.clone());
        }
        self.enter_view(tc.view.next(), true, out);
    }

    /// Commits `id` (and its uncommitted ancestors); `proof` is the child and its QC that
    /// make the 2-chain.
    fn commit(&mut self, id: Digest, proof: (Block, QuorumCert), out: &mut Out) {
        let mut proof = Some(proof);
        let chain = self.tree.commit(id);
        let last = chain.len().saturating_sub(1);
        // Announce commits of transactions at once (followers learn of a commit from the
        // next proposal's QC); empty blocks can wait for the idle timer.
        self.commit_to_announce |= chain.iter().any(|(b, _)| !b.payload.is_empty());
        for (i, (block, qc)) in chain.into_iter().enumerate() {
            for d in &block.payload {
                self.pending_set.remove(d);
            }
            self.stats.commits += 1;
            self.election.committed(activity(&block, &qc));
            let committed_id = block.id();
            out.push(Action::Commit(Committed {
                id: committed_id,
                view: block.view,
                proposer: block.proposer,
                timestamp_ms: block.timestamp_ms,
                payload: block.payload.clone(),
                certificate: codec::encode(&CommitCertificate {
                    block,
                    qc,
                    proof: if i == last { proof.take() } else { None },
                }),
            }));
        }
        let live = &self.pending_set;
        self.pending.retain(|d| live.contains(d));
    }

    // ---- proposing ---------------------------------------------------------------------

    pub(super) fn try_propose(&mut self, out: &mut Out) {
        if self.leader(self.view) != self.cfg.me || self.safety.data.last_proposed_view >= self.view
        {
            return;
        }
        let tc = match &self.high_tc {
            _ if self.high_qc.view.next() == self.view => None,
            Some(tc) if tc.view.next() == self.view => Some(tc.clone()),
            _ => return,
        };
        if !self.tree.knows(&self.high_qc.block) {
            // We formed or saw the QC before the block itself: fetch it from a replica that
            // voted for it (not necessarily its proposer, which may be withholding it),
            // a different one each view.
            let block = self.high_qc.block;
            let signers: Vec<ReplicaId> = self
                .high_qc
                .votes
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| *id != self.cfg.me)
                .collect();
            if self.sync_requested != Some((block, self.view)) && !signers.is_empty() {
                self.sync_requested = Some((block, self.view));
                let from = signers[(self.view.0 % signers.len() as u64) as usize];
                self.request_sync(from, block, out);
            }
            return;
        }
        let in_chain = self.tree.payload_in_chain(&self.high_qc.block);
        let payload: Vec<Digest> = self
            .pending
            .iter()
            .filter(|d| !in_chain.contains(*d))
            .take(self.cfg.max_payload)
            .copied()
            .collect();
        if payload.is_empty()
            && self.cfg.idle_block_ms > 0
            && !self.commit_to_announce
            && !self.tree.payload_near(&self.high_qc.block, 2)
        {
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
        let block = Block {
            view: self.view,
            justify: self.high_qc.clone(),
            proposer: self.cfg.me,
            timestamp_ms: self.now,
            payload,
        };
        let Ok(proposal) = self.safety.propose(block, tc) else {
            return;
        };
        self.commit_to_announce = false;
        let seq = self.persist_safety(out);
        self.send_after(
            seq,
            Route::All,
            proposal.map(|p| Message::Propose(Box::new(p))),
            out,
        );
    }

    fn add_payload(&mut self, d: Digest) {
        if self.pending_set.len() < MAX_PENDING_PAYLOAD && self.pending_set.insert(d) {
            self.pending.push_back(d);
        }
    }
}

impl Core for HotStuff {
    type Message = Message;

    fn start(&mut self, now_ms: u64) -> Vec<Action<Message>> {
        self.now = now_ms;
        let mut out = vec![Action::SetTimer {
            id: VIEW_TIMER,
            after_ms: self.pacemaker.duration_ms(),
        }];
        self.try_propose(&mut out);
        out
    }

    fn handle(&mut self, now_ms: u64, input: Input<Message>) -> Vec<Action<Message>> {
        self.now = now_ms;
        let mut out = Vec::new();
        match input {
            Input::Message { from, msg } => {
                if self.cfg.committee.key(from).is_none() {
                    self.invalid();
                } else {
                    self.on_message(from, msg, &mut out);
                }
            }
            Input::Timer(VIEW_TIMER) => self.on_timer(&mut out),
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
            Input::Executed { .. } => {}
            // Reads in the BFT modes are verified with header certificates, not ReadIndex.
            Input::Read(id) => out.push(Action::ReadFailed { id }),
        }
        out
    }

    fn view(&self) -> View {
        self.view
    }
}
