//! Invariants checked after every commit of every honest replica, and liveness after faults
//! heal. Each names what it protects.

use consensus::{ReplicaId, View};
use crypto::Digest;
use ledger::Block;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Checker {
    /// Block hash and state root at each height, from the first honest replica to commit it.
    canonical: Vec<(Digest, Digest)>,
    /// Per instance: committed height and tip hash.
    tips: Vec<(u64, Option<Digest>)>,
    supply: u128,
    /// Every vote an honest replica signed: (replica, view) → block.
    votes: BTreeMap<(ReplicaId, View), Digest>,
    pub violations: Vec<String>,
}

impl Checker {
    pub fn new(instances: usize, supply: u128, genesis: Digest) -> Checker {
        Checker {
            canonical: Vec::new(),
            tips: vec![(0, Some(genesis)); instances],
            supply,
            votes: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    fn fail(&mut self, at_ms: u64, what: String) {
        if self.violations.len() < 16 {
            self.violations.push(format!("t={at_ms}ms: {what}"));
        }
    }

    /// Records that honest instance `inst` committed `block`, reaching `supply`.
    pub fn on_commit(&mut self, at_ms: u64, inst: usize, block: &Block, supply: u128) {
        let h = block.header.height;
        let hash = block.hash();
        let (prev_h, prev_tip) = self.tips[inst];
        // Commit height never goes back or skips (monotonic, gap-free per replica).
        if h != prev_h + 1 {
            self.fail(
                at_ms,
                format!("instance {inst} committed height {h} after {prev_h}"),
            );
        }
        // Hash links: each block names its predecessor.
        if let Some(tip) = prev_tip
            && block.header.parent != tip
        {
            self.fail(
                at_ms,
                format!("instance {inst}: block {h} does not link to its parent"),
            );
        }
        // Agreement (one block per height) and equal state roots at equal heights.
        let idx = (h - 1) as usize;
        if let Some((canon_hash, canon_root)) = self.canonical.get(idx).copied() {
            if canon_hash != hash {
                self.fail(
                    at_ms,
                    format!(
                        "FORK at height {h}: instance {inst} committed {} but another honest \
                         replica committed {}",
                        hash.short(),
                        canon_hash.short()
                    ),
                );
            }
            if canon_root != block.header.state_root {
                self.fail(
                    at_ms,
                    format!("state root differs at height {h} (instance {inst})"),
                );
            }
        } else if idx == self.canonical.len() {
            self.canonical.push((hash, block.header.state_root));
        }
        // Supply conserved.
        if supply != self.supply {
            self.fail(
                at_ms,
                format!("supply {supply} != {} at height {h}", self.supply),
            );
        }
        self.tips[inst] = (h, Some(hash));
    }

    /// An honest replica sent a signed vote. Two different votes for one view are a double
    /// vote: what persisting the safety record before voting exists to prevent.
    pub fn on_vote(&mut self, at_ms: u64, replica: ReplicaId, view: View, block: Digest) {
        let first = *self.votes.entry((replica, view)).or_insert(block);
        if first != block {
            self.fail(
                at_ms,
                format!(
                    "DOUBLE VOTE: {replica} voted for {} and {} in view {view}",
                    first.short(),
                    block.short()
                ),
            );
        }
    }

    /// Height instance `inst` has committed.
    pub fn height(&self, inst: usize) -> u64 {
        self.tips[inst].0
    }

    /// The instance resumed from its store at `height` with tip `tip` (after a restart the
    /// checker continues from what the store holds; a store that lost blocks shows up as a
    /// height going back on the next commit).
    pub fn restarted(&mut self, inst: usize, height: u64, tip: Digest) {
        if height < self.tips[inst].0 {
            let was = self.tips[inst].0;
            self.fail(
                0,
                format!("instance {inst} restarted at height {height} below {was}"),
            );
        }
        self.tips[inst] = (height, Some(tip));
    }

    /// Liveness: every listed instance committed past `before`.
    pub fn require_progress(&mut self, at_ms: u64, inst: usize, before: u64) {
        let now = self.tips[inst].0;
        if now <= before {
            self.fail(
                at_ms,
                format!("LIVENESS: instance {inst} made no progress after healing (height {now})"),
            );
        }
    }

    pub fn max_height(&self) -> u64 {
        self.canonical.len() as u64
    }
}
