//! The tree of uncommitted blocks above the last committed one, the QCs that certify them,
//! the 2-chain commit rule, and a bounded window of recently committed blocks for sync.

use super::messages::{Block, QuorumCert};
use crate::types::View;
use crypto::Digest;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Committed blocks kept to answer sync requests from lagging replicas.
pub const COMMITTED_WINDOW: usize = 512;
/// Uncommitted blocks kept at most (a Byzantine leader cannot grow the tree without bound).
pub const MAX_UNCOMMITTED: usize = 4096;

pub struct BlockTree {
    blocks: BTreeMap<Digest, Block>,
    /// QC certifying each block, when known.
    qcs: BTreeMap<Digest, QuorumCert>,
    /// One block per view from proposals (a second is equivocation and is not stored).
    by_view: BTreeMap<View, Digest>,
    root: (Digest, View),
    /// Recently committed blocks by id, and their commit order for eviction.
    recent: BTreeMap<Digest, Block>,
    recent_order: VecDeque<Digest>,
}

impl BlockTree {
    /// A tree whose root (last committed block) is `root`.
    pub fn new(root: (Digest, View)) -> Self {
        BlockTree {
            blocks: BTreeMap::new(),
            qcs: BTreeMap::new(),
            by_view: BTreeMap::new(),
            root,
            recent: BTreeMap::new(),
            recent_order: VecDeque::new(),
        }
    }

    pub fn root(&self) -> (Digest, View) {
        self.root
    }

    pub fn block(&self, id: &Digest) -> Option<&Block> {
        self.blocks.get(id)
    }

    pub fn knows(&self, id: &Digest) -> bool {
        *id == self.root.0 || self.blocks.contains_key(id)
    }

    /// Inserts a block whose parent is known and which is above the root. Returns false (and
    /// stores nothing) otherwise. An uncertified block (from a proposal) is also refused if
    /// another proposal already holds its view (equivocation); a `certified` one (fetched by
    /// sync because a QC or a child names its hash) is always taken, since the certified
    /// block may well be the one we did not see first.
    pub fn insert(&mut self, b: Block, certified: bool) -> bool {
        let id = b.id();
        if self.blocks.contains_key(&id) {
            return true;
        }
        if b.view <= self.root.1 || !self.knows(&b.parent()) || self.blocks.len() >= MAX_UNCOMMITTED
        {
            return false;
        }
        if !certified && self.by_view.get(&b.view).is_some_and(|other| *other != id) {
            return false;
        }
        self.by_view.entry(b.view).or_insert(id);
        self.qcs.insert(b.justify.block, b.justify.clone());
        self.blocks.insert(id, b);
        true
    }

    pub fn record_qc(&mut self, qc: &QuorumCert) {
        if qc.view > self.root.1 || self.blocks.contains_key(&qc.block) {
            self.qcs.entry(qc.block).or_insert_with(|| qc.clone());
        }
    }

    pub fn qc_for(&self, id: &Digest) -> Option<&QuorumCert> {
        self.qcs.get(id)
    }

    /// The 2-chain rule: given a QC for block `b1`, if `b1`'s own QC certifies its parent
    /// `b0` in the view directly before (consecutive views), `b0` is committed. Returns the
    /// id of the block to commit, if any and if above the root.
    pub fn commit_candidate(&self, qc: &QuorumCert) -> Option<Digest> {
        let b1 = self.blocks.get(&qc.block)?;
        let consecutive = b1.justify.view.next() == b1.view;
        (consecutive && b1.justify.view > self.root.1).then_some(b1.justify.block)
    }

    /// Commits `id` and every uncommitted ancestor; returns them oldest first, each with its
    /// certifying QC, and makes `id` the new root. Returns empty if the chain is incomplete.
    pub fn commit(&mut self, id: Digest) -> Vec<(Block, QuorumCert)> {
        let mut chain = Vec::new();
        let mut cur = id;
        while cur != self.root.0 {
            let Some(b) = self.blocks.get(&cur) else {
                return Vec::new();
            };
            let Some(qc) = self.qcs.get(&cur) else {
                return Vec::new();
            };
            chain.push((b.clone(), qc.clone()));
            cur = b.parent();
        }
        chain.reverse();
        if let Some((last, _)) = chain.last() {
            self.root = (id, last.view);
            self.prune();
        }
        for (b, _) in &chain {
            let id = b.id();
            self.recent.insert(id, b.clone());
            self.recent_order.push_back(id);
            if self.recent_order.len() > COMMITTED_WINDOW
                && let Some(old) = self.recent_order.pop_front()
            {
                self.recent.remove(&old);
            }
        }
        chain
    }

    fn prune(&mut self) {
        let root_view = self.root.1;
        self.blocks.retain(|_, b| b.view > root_view);
        self.by_view = self.by_view.split_off(&root_view.next());
        let live: BTreeSet<Digest> = self.blocks.keys().copied().chain([self.root.0]).collect();
        self.qcs.retain(|id, _| live.contains(id));
    }

    /// Whether `id` or one of its `depth - 1` nearest ancestors, committed or not, carries a
    /// payload (a recently committed block is found in the sync window).
    pub fn payload_near(&self, id: &Digest, depth: usize) -> bool {
        let mut cur = *id;
        for _ in 0..depth {
            let Some(b) = self.blocks.get(&cur).or_else(|| self.recent.get(&cur)) else {
                return false;
            };
            if !b.payload.is_empty() {
                return true;
            }
            cur = b.parent();
        }
        false
    }

    /// Payload digests in the chain from `id` back to the root (exclusive), so a leader does
    /// not propose a batch that an ancestor already carries.
    pub fn payload_in_chain(&self, id: &Digest) -> BTreeSet<Digest> {
        let mut out = BTreeSet::new();
        let mut cur = *id;
        while let Some(b) = self.blocks.get(&cur) {
            out.extend(b.payload.iter().copied());
            cur = b.parent();
        }
        out
    }

    /// Blocks from `id` back towards (excluding) view `above`, newest first, at most
    /// `limit`, from the uncommitted tree and the recently committed window. The requester
    /// checks them by hash: the first must be the block it asked for, each next one the
    /// parent its predecessor's QC certifies.
    pub fn chain_for_sync(&self, id: Digest, above: View, limit: usize) -> Vec<Block> {
        let mut out = Vec::new();
        let mut cur = id;
        while out.len() < limit {
            let Some(b) = self.blocks.get(&cur).or_else(|| self.recent.get(&cur)) else {
                break;
            };
            if b.view <= above {
                break;
            }
            cur = b.parent();
            out.push(b.clone());
        }
        out
    }

    /// The uncommitted blocks on the paths from each of `ids` down to the root, oldest
    /// first, at most `max` (the newest ones kept).
    pub fn chains_to_root(&self, ids: &[Digest], max: usize) -> Vec<Block> {
        let mut found: BTreeMap<(View, Digest), Block> = BTreeMap::new();
        for id in ids {
            let mut cur = *id;
            while let Some(b) = self.blocks.get(&cur) {
                if found.insert((b.view, cur), b.clone()).is_some() {
                    break;
                }
                cur = b.parent();
            }
        }
        let skip = found.len().saturating_sub(max);
        found.into_values().skip(skip).collect()
    }
}
