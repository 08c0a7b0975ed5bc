//! The HotStuff replica: handlers for each message, the view logic, proposing and committing.

use super::aggregator::Aggregator;
use super::election::{Activity, Election};
use super::messages::{
    Block, CommitCertificate, Message, Proposal, QcCache, QuorumCert, Timeout, TimeoutCert, Verify,
    Vote,
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
const VIEW_TIMER: u64 = 0;
/// The idle-proposal timer's id (see [`Config::idle_block_ms`]).
const IDLE_TIMER: u64 = 1;
/// Proposals waiting for a missing ancestor, at most.
const MAX_BUFFERED: usize = 32;
/// Certified blocks received by sync that do not connect yet, at most.
const MAX_ORPHANS: usize = 4096;
/// Blocks per sync response.
const SYNC_BATCH: usize = 64;
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
    cfg: Config,
    safety: SafetyRules,
    gate: PersistGate<Message>,
    view: View,
    high_qc: QuorumCert,
    high_tc: Option<TimeoutCert>,
    pacemaker: Pacemaker,
    tree: BlockTree,
    agg: Aggregator,
    buffered: VecDeque<Proposal>,
    orphans: BTreeMap<Digest, Block>,
    /// Block ids we asked peers for (bounded).
    wanted: BTreeSet<Digest>,
    pending: VecDeque<Digest>,
    pending_set: BTreeSet<Digest>,
    stats: Stats,
    now: u64,
    /// Last block fetched for proposing, and in which view (one request per view).
    sync_requested: Option<(Digest, View)>,
    /// Sequence number of the last safety persist (0: the record loaded at start).
    last_safety_seq: u64,
    qc_cache: QcCache,
    /// The view whose empty proposal waits for the idle timer, and whether it has fired.
    idle: Option<(View, bool)>,
    /// A commit happened that our next proposal announces (its QC proves it): propose
    /// without the idle wait.
    commit_to_announce: bool,
    election: Election,
}

type Out = Vec<Action<Message>>;

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
        let safety = SafetyRules::new(data, cfg.me, cfg.key.clone());
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
    fn persist_safety(&mut self, out: &mut Out) -> u64 {
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
    fn send_after(
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

    fn invalid(&mut self) {
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

    fn process_qc(&mut self, qc: &QuorumCert, out: &mut Out) {
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

    fn process_tc(&mut self, tc: &TimeoutCert, out: &mut Out) {
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

    fn try_propose(&mut self, out: &mut Out) {
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

    // ---- handlers ----------------------------------------------------------------------

    fn on_message(&mut self, from: ReplicaId, msg: Message, out: &mut Out) {
        match msg {
            Message::Propose(p) => self.on_proposal(from, *p, out),
            Message::Vote(v) => self.on_vote(v, out),
            Message::Timeout(t) => self.on_timeout(from, *t, out),
            Message::Tc(tc) => self.on_tc(tc, out),
            Message::SyncRequest { block, above } => self.on_sync_request(from, block, above, out),
            Message::SyncResponse { blocks } => self.on_sync_response(from, blocks, out),
        }
    }

    fn on_proposal(&mut self, from: ReplicaId, p: Proposal, out: &mut Out) {
        if p.block.view <= self.tree.root().1 {
            return; // below the committed root: nothing to learn
        }
        let payload = &p.block.payload;
        if payload.len() > self.cfg.max_payload
            || payload.iter().collect::<BTreeSet<_>>().len() != payload.len()
            || p.verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
                .is_err()
        {
            return self.invalid();
        }
        if let Some(tc) = &p.tc {
            self.process_tc(tc, out);
        }
        self.process_qc(&p.block.justify, out);
        if p.block.proposer != self.leader(p.block.view) {
            // Its certificates are verified and were used; the block itself is not ours to
            // vote for (or we lag and disagree on the leader, and will sync).
            return self.invalid();
        }
        if !self.tree.knows(&p.block.parent()) {
            self.request_sync(from, p.block.parent(), out);
            if p.block.view >= self.view {
                if self.buffered.len() >= MAX_BUFFERED {
                    self.buffered.pop_front();
                }
                self.buffered.push_back(p);
            }
            return;
        }
        self.accept_proposal(p, out);
    }

    /// A verified proposal whose parent is known. Stored even when its view has passed (a
    /// leader may have formed this block's QC from votes before seeing the block, and needs
    /// it to extend it); voted only in the current view.
    fn accept_proposal(&mut self, p: Proposal, out: &mut Out) {
        if !self.tree.insert(p.block.clone(), false) {
            if p.block.view > self.tree.root().1 {
                self.stats.equivocations += 1;
            }
            return;
        }
        // The block's own QC may already be known: the 2-chain it heads may now commit.
        if let Some(qc) = self.tree.qc_for(&p.block.id()).cloned() {
            self.process_qc(&qc, out);
        }
        // A leader waiting for this block (its high QC certifies it) can now propose.
        self.try_propose(out);
        if p.block.view != self.view {
            return;
        }
        let Ok((vote, fresh)) = self.safety.vote(&p.block, p.tc.as_ref()) else {
            return;
        };
        // A repeated request gets the same vote, without another fsync (a replayed proposal
        // must not cost us a disk write).
        let seq = if fresh {
            self.persist_safety(out)
        } else {
            self.last_safety_seq
        };
        let next_leader = self.leader(self.view.next());
        self.send_after(seq, Route::To(next_leader), vote.map(Message::Vote), out);
    }

    fn on_vote(&mut self, v: Vote, out: &mut Out) {
        if v.view.next() < self.view || self.leader(v.view.next()) != self.cfg.me {
            return;
        }
        if v.verify(&self.cfg.committee).is_err() {
            return self.invalid();
        }
        if let Some(qc) = self
            .agg
            .add_vote(&v, self.view, self.cfg.committee.quorum())
        {
            self.process_qc(&qc, out);
        }
    }

    fn on_timeout(&mut self, from: ReplicaId, t: Timeout, out: &mut Out) {
        if t.view < self.view {
            // The sender is behind: help it with the certificate that moved us on.
            if let Some(tc) = self.high_tc.clone().filter(|tc| tc.view >= t.view) {
                out.push(Action::Send {
                    to: from,
                    msg: Message::Tc(tc),
                });
            }
            return;
        }
        if t.verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
            .is_err()
        {
            return self.invalid();
        }
        self.process_qc(&t.high_qc, out);
        if let Some(tc) = &t.high_tc {
            self.process_tc(tc, out);
        }
        let view = t.view;
        if let Some(tc) = self
            .agg
            .add_timeout(&t, self.view, self.cfg.committee.quorum())
        {
            // Re-broadcast as soon as it forms, so a silent leader cannot stall the view.
            out.push(Action::Broadcast {
                msg: Message::Tc(tc.clone()),
            });
            self.process_tc(&tc, out);
        } else if view == self.view
            && self.agg.timeouts_for(view) > self.cfg.committee.f()
            && self
                .safety
                .data
                .last_timeout
                .as_ref()
                .is_none_or(|t| t.view < view)
        {
            // f+1 replicas gave up on our view, so at least one correct one did: join them
            // rather than wait for our own timer (view synchronisation).
            self.local_timeout(out);
        }
    }

    fn on_tc(&mut self, tc: TimeoutCert, out: &mut Out) {
        if tc.view < self.view {
            return;
        }
        if tc
            .verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
            .is_err()
        {
            return self.invalid();
        }
        self.process_tc(&tc, out);
    }

    fn on_timer(&mut self, out: &mut Out) {
        // Re-arm first: if the TC does not form (lost timeouts), we time out again and
        // re-send the same timeout — at the base interval, not the backed-off one, since
        // the view has already been given up.
        out.push(Action::SetTimer {
            id: VIEW_TIMER,
            after_ms: self.cfg.base_timeout_ms,
        });
        self.local_timeout(out);
    }

    /// Signs (or re-sends) our timeout for the current view.
    fn local_timeout(&mut self, out: &mut Out) {
        let Ok((t, fresh)) = self
            .safety
            .timeout(self.view, &self.high_qc, self.high_tc.as_ref())
        else {
            return;
        };
        let seq = if fresh {
            self.persist_safety(out)
        } else {
            self.last_safety_seq
        };
        let high_tc = self.high_tc.clone().map(Box::new);
        let msg = t.map(|mut t| {
            t.high_tc = high_tc;
            Message::Timeout(Box::new(t))
        });
        self.send_after(seq, Route::All, msg, out);
    }

    // ---- sync --------------------------------------------------------------------------

    fn request_sync(&mut self, from: ReplicaId, block: Digest, out: &mut Out) {
        if from == self.cfg.me {
            return;
        }
        self.stats.sync_requests += 1;
        if self.wanted.len() >= MAX_ORPHANS {
            self.wanted.pop_first();
        }
        self.wanted.insert(block);
        out.push(Action::Send {
            to: from,
            msg: Message::SyncRequest {
                block,
                above: self.tree.root().1,
            },
        });
    }

    fn on_sync_request(&mut self, from: ReplicaId, block: Digest, above: View, out: &mut Out) {
        let blocks = self.tree.chain_for_sync(block, above, SYNC_BATCH);
        if !blocks.is_empty() {
            out.push(Action::Send {
                to: from,
                msg: Message::SyncResponse { blocks },
            });
        }
    }

    fn on_sync_response(&mut self, from: ReplicaId, blocks: Vec<Block>, out: &mut Out) {
        if blocks.len() > SYNC_BATCH {
            return self.invalid();
        }
        // Accept a block only if we asked for its id, or it is the parent named by the
        // block before it (ids are hashes, so a matching block is the certified one).
        let mut expected: Option<Digest> = None;
        let mut oldest_parent = None;
        for b in blocks {
            let id = b.id();
            if !(self.wanted.contains(&id) || expected == Some(id)) {
                return self.invalid();
            }
            if b.justify
                .verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
                .is_err()
            {
                return self.invalid();
            }
            self.wanted.remove(&id);
            expected = Some(b.parent());
            oldest_parent = Some(b.parent());
            if b.view > self.tree.root().1 && self.orphans.len() < MAX_ORPHANS {
                self.orphans.insert(id, b);
            }
        }
        self.connect_orphans(out);
        if let Some(parent) = oldest_parent
            && !self.tree.knows(&parent)
        {
            self.request_sync(from, parent, out);
        }
        self.retry_buffered(out);
    }

    /// Moves every orphan whose parent is now known into the tree, oldest first.
    fn connect_orphans(&mut self, out: &mut Out) {
        loop {
            let ready: Vec<Digest> = self
                .orphans
                .iter()
                .filter(|(_, b)| self.tree.knows(&b.parent()))
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                break;
            }
            for id in ready {
                let b = self.orphans.remove(&id).expect("listed");
                let justify = b.justify.clone();
                if self.tree.insert(b, true) {
                    self.process_qc(&justify, out);
                    if let Some(qc) = self.tree.qc_for(&id).cloned() {
                        self.process_qc(&qc, out);
                    }
                }
            }
        }
        let root = self.tree.root().1;
        self.orphans.retain(|_, b| b.view > root);
        self.try_propose(out);
    }

    fn retry_buffered(&mut self, out: &mut Out) {
        let waiting: Vec<Proposal> = self.buffered.drain(..).collect();
        for p in waiting {
            if self.tree.knows(&p.block.parent()) {
                self.accept_proposal(p, out);
            } else if p.block.view >= self.view {
                self.buffered.push_back(p);
            }
        }
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
        }
        out
    }

    fn view(&self) -> View {
        self.view
    }
}
