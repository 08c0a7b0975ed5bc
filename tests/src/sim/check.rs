//! Invariants checked after every commit of every honest replica, and liveness after faults
//! heal. Each names what it protects.

use consensus::{ReplicaId, View};
use crypto::Digest;
use ledger::Block;
use std::collections::BTreeMap;
use std::fmt;

/// What an honest replica signs at most once (with one content): HotStuff's vote of a view;
/// PBFT's pre-prepare, prepare or commit at one (view, sequence number), and its checkpoint
/// at one sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VoteSlot {
    pub view: View,
    /// The sequence number (0 where the protocol has none, as HotStuff).
    pub seq: u64,
    pub kind: VoteKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VoteKind {
    /// HotStuff's one vote per view.
    Vote,
    PrePrepare,
    Prepare,
    Commit,
    /// A state root signed at a sequence number (view 0: checkpoints belong to no view).
    Checkpoint,
}

impl VoteSlot {
    /// HotStuff: one vote per view.
    pub fn view(view: View) -> VoteSlot {
        VoteSlot {
            view,
            seq: 0,
            kind: VoteKind::Vote,
        }
    }
}

impl fmt::Display for VoteSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            VoteKind::Vote => write!(f, "view {}", self.view),
            VoteKind::PrePrepare => {
                write!(f, "view {} (pre-prepare at seq {})", self.view, self.seq)
            }
            VoteKind::Prepare => write!(f, "view {} (prepare at seq {})", self.view, self.seq),
            VoteKind::Commit => write!(f, "view {} (commit at seq {})", self.view, self.seq),
            VoteKind::Checkpoint => write!(f, "checkpoint at seq {}", self.seq),
        }
    }
}

#[derive(Default)]
pub struct Checker {
    /// Block hash and state root at each height, from the first honest replica to commit it.
    canonical: Vec<(Digest, Digest)>,
    /// Per instance: committed height and tip hash.
    tips: Vec<(u64, Option<Digest>)>,
    supply: u128,
    /// Every vote an honest replica signed: (validator-set epoch, replica, slot) → what it
    /// signed there (views start again in each epoch's core).
    votes: BTreeMap<(u64, ReplicaId, VoteSlot), Digest>,
    /// Per validator-set epoch: the height after which the first honest replica switched
    /// cores, and the hash of the set it switched to.
    switches: BTreeMap<u64, (u64, Digest)>,
    pub violations: Vec<String>,
}

impl Checker {
    pub fn new(instances: usize, supply: u128, genesis: Digest) -> Checker {
        Checker {
            canonical: Vec::new(),
            tips: vec![(0, Some(genesis)); instances],
            supply,
            votes: BTreeMap::new(),
            switches: BTreeMap::new(),
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

    /// An honest replica sent a signed vote. Two different votes in one slot are a double
    /// vote: what persisting the safety record before voting exists to prevent.
    pub fn on_vote(
        &mut self,
        at_ms: u64,
        epoch: u64,
        replica: ReplicaId,
        slot: VoteSlot,
        block: Digest,
    ) {
        let first = *self.votes.entry((epoch, replica, slot)).or_insert(block);
        if first != block {
            let in_epoch = if epoch > 0 {
                format!(" of epoch {epoch}")
            } else {
                String::new()
            };
            self.fail(
                at_ms,
                format!(
                    "DOUBLE VOTE: {replica} voted for {} and {} in {slot}{in_epoch}",
                    first.short(),
                    block.short()
                ),
            );
        }
    }

    /// A violation found outside the checks here (kept, like the others, to the first 16).
    pub fn report(&mut self, at_ms: u64, what: String) {
        self.fail(at_ms, what);
    }

    /// A protocol-specific invariant of one replica's core failed (e.g. an unbounded log).
    pub fn on_core(&mut self, at_ms: u64, inst: usize, what: String) {
        self.fail(at_ms, format!("instance {inst}: {what}"));
    }

    /// A cluster-wide invariant failed (see `cluster.rs`).
    pub fn on_cluster(&mut self, at_ms: u64, what: String) {
        self.fail(at_ms, what);
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

    /// The instance's store was deleted: it starts again from genesis.
    pub fn wiped(&mut self, inst: usize) {
        self.tips[inst] = (0, None);
    }

    /// The instance installed a state snapshot whose last block is `block`: it must be the
    /// block every honest replica committed at that height, with the same state root, and
    /// the installed state must hold the whole supply.
    pub fn on_state_sync(&mut self, at_ms: u64, inst: usize, block: &Block, supply: u128) {
        let h = block.header.height;
        match self.canonical.get((h - 1) as usize).copied() {
            Some((hash, root)) => {
                if hash != block.hash() || root != block.header.state_root {
                    self.fail(
                        at_ms,
                        format!(
                            "STATE SYNC: instance {inst} installed block {h} {} (root {}), honest replicas \
                             committed {} (root {})",
                            block.hash().short(),
                            block.header.state_root.short(),
                            hash.short(),
                            root.short()
                        ),
                    );
                }
            }
            None => self.fail(
                at_ms,
                format!("STATE SYNC: instance {inst} installed height {h}, which no honest replica committed"),
            ),
        }
        if supply != self.supply {
            self.fail(
                at_ms,
                format!(
                    "STATE SYNC: supply {supply} != {} after instance {inst} installed height {h}",
                    self.supply
                ),
            );
        }
        self.tips[inst] = (h, Some(block.hash()));
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

    /// Honest instance `inst` retired its core after block `height` and started epoch
    /// `epoch`'s, for the set hashing to `set`. Every honest replica must switch to each
    /// epoch after the same block and to the same set (issue 21's safety rule across
    /// epochs): a replica that switches at another height is a violation even before a fork
    /// shows.
    pub fn on_switch(&mut self, at_ms: u64, inst: usize, epoch: u64, height: u64, set: Digest) {
        match self.switches.get(&epoch).copied() {
            None => {
                self.switches.insert(epoch, (height, set));
            }
            Some((h, s)) if (h, s) != (height, set) => self.fail(
                at_ms,
                format!(
                    "EPOCH {epoch}: instance {inst} switched after height {height} to set {}, \
                     another honest replica after height {h} to set {}",
                    set.short(),
                    s.short()
                ),
            ),
            Some(_) => {}
        }
    }

    /// An honest running replica whose ledger entered `ledger_epoch` still runs a core of
    /// `core_epoch` at the end of a run.
    pub fn stale_core(&mut self, at_ms: u64, inst: usize, core_epoch: u64, ledger_epoch: u64) {
        self.fail(
            at_ms,
            format!(
                "instance {inst} still runs its epoch-{core_epoch} core; its ledger entered \
                 epoch {ledger_epoch}"
            ),
        );
    }

    /// Epochs any honest replica switched to.
    pub fn epochs(&self) -> u64 {
        self.switches.keys().next_back().copied().unwrap_or(0)
    }
}

/// Each check must be able to fail: fed what it protects against, it reports it.
#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{BlockInput, ChainBinding, Ledger, MemStore};

    const SUPPLY: u128 = 0;

    fn chain(timestamps: &[u64]) -> (Digest, Vec<Block>) {
        let genesis = crypto::hash(b"check tests");
        let binding = ChainBinding {
            chain_id: "check".into(),
            genesis_hash: genesis,
        };
        let mut l = Ledger::open(MemStore::new(), binding, &[]).expect("fresh ledger");
        let proposer = crypto::SecretKey::from_seed([1; 32]).public();
        let blocks = timestamps
            .iter()
            .map(|t| {
                l.commit(BlockInput {
                    proposer,
                    view: 0,
                    timestamp_ms: *t,
                    txs: vec![],
                    certificate: vec![],
                    batch_sizes: vec![],
                })
                .expect("in-memory commit")
                .0
            })
            .collect();
        (genesis, blocks)
    }

    fn has(c: &Checker, what: &str) -> bool {
        c.violations.iter().any(|v| v.contains(what))
    }

    #[test]
    fn equal_chains_are_clean() {
        let (genesis, a) = chain(&[1, 2, 3]);
        let mut c = Checker::new(2, SUPPLY, genesis);
        for b in &a {
            c.on_commit(0, 0, b, SUPPLY);
            c.on_commit(0, 1, b, SUPPLY);
        }
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.max_height(), 3);
    }

    #[test]
    fn fork_is_detected() {
        let (genesis, a) = chain(&[1, 2]);
        let (_, b) = chain(&[1, 7]);
        let mut c = Checker::new(2, SUPPLY, genesis);
        for blk in &a {
            c.on_commit(0, 0, blk, SUPPLY);
        }
        c.on_commit(0, 1, &b[0], SUPPLY);
        assert!(c.violations.is_empty());
        c.on_commit(0, 1, &b[1], SUPPLY);
        assert!(has(&c, "FORK at height 2"), "{:?}", c.violations);
    }

    #[test]
    fn skipped_height_and_broken_link_are_detected() {
        let (genesis, a) = chain(&[1, 2]);
        let (_, b) = chain(&[5, 6]);
        let mut c = Checker::new(2, SUPPLY, genesis);
        c.on_commit(0, 0, &a[1], SUPPLY);
        assert!(has(&c, "committed height 2 after 0"), "{:?}", c.violations);
        c.on_commit(0, 1, &a[0], SUPPLY);
        c.on_commit(0, 1, &b[1], SUPPLY);
        assert!(has(&c, "does not link to its parent"), "{:?}", c.violations);
    }

    #[test]
    fn supply_change_is_detected() {
        let (genesis, a) = chain(&[1]);
        let mut c = Checker::new(1, SUPPLY, genesis);
        c.on_commit(0, 0, &a[0], SUPPLY + 1);
        assert!(has(&c, "supply"), "{:?}", c.violations);
    }

    #[test]
    fn restart_below_the_committed_height_is_detected() {
        let (genesis, a) = chain(&[1, 2]);
        let mut c = Checker::new(1, SUPPLY, genesis);
        for b in &a {
            c.on_commit(0, 0, b, SUPPLY);
        }
        c.restarted(0, 2, a[1].hash());
        assert!(c.violations.is_empty());
        c.restarted(0, 1, a[0].hash());
        assert!(
            has(&c, "restarted at height 1 below 2"),
            "{:?}",
            c.violations
        );
    }

    #[test]
    fn no_progress_is_a_liveness_failure() {
        let (genesis, a) = chain(&[1]);
        let mut c = Checker::new(2, SUPPLY, genesis);
        c.on_commit(0, 0, &a[0], SUPPLY);
        c.require_progress(10, 0, 0);
        assert!(c.violations.is_empty());
        c.require_progress(10, 1, 0);
        assert!(has(&c, "LIVENESS: instance 1"), "{:?}", c.violations);
    }

    #[test]
    fn double_votes_are_per_slot() {
        let (x, y) = (crypto::hash(b"x"), crypto::hash(b"y"));
        let r = ReplicaId(2);
        let slot = |view, seq, kind| VoteSlot {
            view: View(view),
            seq,
            kind,
        };
        let mut c = Checker::default();
        // HotStuff: one vote per view.
        c.on_vote(0, 0, r, VoteSlot::view(View(3)), x);
        c.on_vote(0, 0, r, VoteSlot::view(View(3)), x);
        c.on_vote(0, 0, r, VoteSlot::view(View(4)), y);
        assert!(c.violations.is_empty());
        c.on_vote(0, 0, r, VoteSlot::view(View(3)), y);
        assert!(has(&c, "DOUBLE VOTE: r2"), "{:?}", c.violations);
        // PBFT: phases and sequence numbers are separate slots; one digest in each.
        let mut c = Checker::default();
        c.on_vote(0, 0, r, slot(1, 5, VoteKind::Prepare), x);
        c.on_vote(0, 0, r, slot(1, 5, VoteKind::Commit), x);
        c.on_vote(0, 0, r, slot(1, 6, VoteKind::Prepare), y);
        c.on_vote(0, 0, r, slot(2, 5, VoteKind::Prepare), y);
        c.on_vote(0, 0, ReplicaId(3), slot(1, 5, VoteKind::Prepare), y);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        c.on_vote(0, 0, r, slot(1, 5, VoteKind::Commit), y);
        assert!(has(&c, "in view 1 (commit at seq 5)"), "{:?}", c.violations);
    }
}
