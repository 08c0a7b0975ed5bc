//! The tree of uncommitted blocks above the last committed one, the QCs that certify them,
//! the 2-chain commit rule, and a bounded window of recently committed blocks for sync.

use super::messages::{Block, QuorumCert};
use crate::types::View;
use crypto::Digest;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Committed blocks kept to answer sync requests from lagging replicas.
pub const COMMITTED_WINDOW: usize = 512;
/// Uncommitted blocks kept at most (a Byzantine leader cannot grow the tree without bound).
pub const MAX_UNCOMMITTED: usize = 4096;

pub struct BlockTree {
    blocks: HashMap<Digest, Block>,
    /// QC certifying each block, when known.
    qcs: HashMap<Digest, QuorumCert>,
    /// One block per view from proposals (a second is equivocation and is not stored).
    by_view: BTreeMap<View, Digest>,
    root: (Digest, View),
    recent: VecDeque<(Block, QuorumCert)>,
}

impl BlockTree {
    /// A tree whose root (last committed block) is `root`.
    pub fn new(root: (Digest, View)) -> Self {
        BlockTree {
            blocks: HashMap::new(),
            qcs: HashMap::new(),
            by_view: BTreeMap::new(),
            root,
            recent: VecDeque::new(),
        }
    }

    pub fn root(&self) -> (Digest, View) {
        self.root
    }

    pub fn knows(&self, id: &Digest) -> bool {
        *id == self.root.0 || self.blocks.contains_key(id)
    }

    pub fn get(&self, id: &Digest) -> Option<&Block> {
        self.blocks.get(id)
    }

    /// Inserts a block whose parent is known and which is above the root. Returns false (and
    /// stores nothing) otherwise, or if another block already holds its view.
    pub fn insert(&mut self, b: Block) -> bool {
        let id = b.id();
        if self.blocks.contains_key(&id) {
            return true;
        }
        if b.view <= self.root.1 || !self.knows(&b.parent()) || self.blocks.len() >= MAX_UNCOMMITTED
        {
            return false;
        }
        if self.by_view.get(&b.view).is_some_and(|other| *other != id) {
            return false;
        }
        self.by_view.insert(b.view, id);
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
        for item in &chain {
            self.recent.push_back(item.clone());
            if self.recent.len() > COMMITTED_WINDOW {
                self.recent.pop_front();
            }
        }
        chain
    }

    fn prune(&mut self) {
        let root_view = self.root.1;
        self.blocks.retain(|_, b| b.view > root_view);
        self.by_view = self.by_view.split_off(&root_view.next());
        let live: HashSet<Digest> = self.blocks.keys().copied().chain([self.root.0]).collect();
        self.qcs.retain(|id, _| live.contains(id));
    }

    /// Payload digests in the chain from `id` back to the root (exclusive), so a leader does
    /// not propose a batch that an ancestor already carries.
    pub fn payload_in_chain(&self, id: &Digest) -> HashSet<Digest> {
        let mut out = HashSet::new();
        let mut cur = *id;
        while let Some(b) = self.blocks.get(&cur) {
            out.extend(b.payload.iter().copied());
            cur = b.parent();
        }
        out
    }

    /// Blocks from `id` back towards (excluding) view `above`, newest first, each with its QC,
    /// at most `limit`. Looks in the uncommitted tree and the recently committed window. A
    /// requester that cannot connect the oldest one asks again for that block's parent.
    pub fn chain_for_sync(
        &self,
        id: Digest,
        above: View,
        limit: usize,
    ) -> Vec<(Block, QuorumCert)> {
        let recent: HashMap<Digest, &(Block, QuorumCert)> =
            self.recent.iter().map(|e| (e.0.id(), e)).collect();
        let mut out = Vec::new();
        let mut cur = id;
        while out.len() < limit {
            let item = match (self.blocks.get(&cur), self.qcs.get(&cur)) {
                (Some(b), Some(qc)) => (b.clone(), qc.clone()),
                _ => match recent.get(&cur) {
                    Some(e) => (*e).clone(),
                    None => break,
                },
            };
            if item.0.view <= above {
                break;
            }
            cur = item.0.parent();
            out.push(item);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}
