//! One simulated replica: the driver around a core. Its "disk" (safety record, Raft log,
//! ledger store) survives a crash; everything else — the core, unsynced writes, timers,
//! mempool — is lost.
//!
//! The Raft log on disk is index-addressed, as the node's store keeps it: `Durable::Log`
//! drops every index above `truncate_after` and writes the entries after it;
//! `Durable::Compact` drops every index below `before`. HotStuff and PBFT never write
//! either.

use super::byz::Behaviour;
use super::protocol::{Disk, SimProtocol};
use consensus::{Committee, Durable, ReplicaId};
use crypto::{Digest, SecretKey};
use ledger::{
    Block, BlockInput, ChainBinding, Ledger, LedgerGenesis, MemStore, Store, Transaction,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const SEEN_KEPT: usize = 64;

/// The replica id of an instance its ledger's set does not name (a spare not added yet, a
/// removed member): it runs no core and follows the chain by copying certified blocks.
pub const OUTSIDER: ReplicaId = ReplicaId(u16::MAX);
const MEMPOOL_MAX: usize = 10_000;

pub struct Instance<P: SimProtocol> {
    /// Its index in the set of its ledger's epoch, or [`OUTSIDER`].
    pub id: ReplicaId,
    /// Its stable id in the ledger's set (`ValidatorState::ids`), once a set named it.
    pub sid: Option<u16>,
    /// Started and not crashed (an outsider is up without a core).
    pub up: bool,
    pub key: SecretKey,
    pub byz: Option<Behaviour>,
    pub core: Option<P::Core>,
    pub ledger: Ledger<MemStore>,
    disk_safety: Option<Vec<u8>>,
    disk_log: BTreeMap<u64, Vec<u8>>,
    unsynced: Vec<(u64, Durable)>,
    fsync_pending: bool,
    /// Bumped on crash so that in-flight fsyncs and timers of the old life are ignored.
    pub epoch: u64,
    timers: BTreeMap<u64, u64>,
    next_generation: u64,
    mempool: VecDeque<Transaction>,
    pub seen: Vec<P::Msg>,
    /// Blocks the ledger executed whose (height, state root) the core has not been told yet,
    /// in height order.
    pub executed: VecDeque<(u64, Digest)>,
    /// [`super::Sim`] is telling the core of executed blocks (no re-entry).
    pub feeding: bool,
    /// A state transfer (Raft snapshot) is under way.
    pub snapshot_pending: bool,
    /// The genesis accounts and validator set, and the governance settings (a wiped store
    /// starts from them again; a reopened ledger keeps the settings).
    genesis: LedgerGenesis,
    /// The validator-set epoch of the running core (or of the last one), its committee and
    /// its anchor (issue 21: one core instance per epoch).
    pub core_epoch: u64,
    pub committee: Committee,
    pub anchor: Digest,
    /// Batches offered to a core and not executed yet: offered again to the next epoch's.
    unexecuted: BTreeSet<Digest>,
    /// Batches executed (a batch that arrives after its block is not offered again).
    executed_batches: BTreeSet<Digest>,
}

impl<P: SimProtocol> Instance<P> {
    pub fn new(
        id: ReplicaId,
        key: SecretKey,
        byz: Option<Behaviour>,
        chain: ChainBinding,
        genesis: &LedgerGenesis,
        committee: Committee,
    ) -> Self {
        Instance {
            id,
            sid: (id != OUTSIDER).then_some(id.0),
            up: false,
            key,
            byz,
            core: None,
            anchor: chain.genesis_hash,
            ledger: open(MemStore::new(), chain, genesis),
            disk_safety: None,
            disk_log: BTreeMap::new(),
            unsynced: Vec::new(),
            fsync_pending: false,
            epoch: 0,
            timers: BTreeMap::new(),
            next_generation: 0,
            mempool: VecDeque::new(),
            seen: Vec::new(),
            executed: VecDeque::new(),
            feeding: false,
            snapshot_pending: false,
            genesis: genesis.clone(),
            core_epoch: 0,
            committee,
            unexecuted: BTreeSet::new(),
            executed_batches: BTreeSet::new(),
        }
    }

    /// Deletes the ledger store (a crashed replica whose data directory was removed); the
    /// safety record and the log stay.
    pub fn wipe_store(&mut self) {
        let chain = self.ledger.chain().clone();
        self.ledger = open(MemStore::new(), chain, &self.genesis);
    }

    pub fn honest(&self) -> bool {
        self.byz.is_none()
    }

    /// What a restart finds on disk. With `amnesia` the safety record is gone (negative
    /// control: a validator restarted without its persisted safety state).
    ///
    /// What the core of the ledger's epoch committed: nothing before the epoch's first block
    /// (it starts from its anchor), and only certificates of its own epoch.
    pub fn disk(&self, amnesia: bool) -> Disk {
        let first = self.ledger.validators().start_height;
        let committed = match self.ledger.height() {
            h if h < first => None,
            h => self
                .ledger
                .store()
                .block(h)
                .ok()
                .flatten()
                .and_then(|b| P::committed_ref(&b.certificate)),
        };
        Disk {
            safety: if amnesia {
                None
            } else {
                self.disk_safety.clone()
            },
            height: self.ledger.height(),
            log: self.disk_log.values().cloned().collect(),
            committed,
            certificates: ((self.ledger.height().saturating_sub(P::HISTORY) + 1).max(first)
                ..=self.ledger.height())
                .filter_map(|h| self.ledger.store().block(h).ok().flatten())
                .map(|b| b.certificate)
                .collect(),
            start: first - 1,
            config: (1..=self.ledger.height()).rev().find_map(|h| {
                let b = self.ledger.store().block(h).ok().flatten()?;
                P::config_of(&b.certificate)
            }),
        }
    }

    pub fn crash(&mut self) {
        // The ledger is reopened from its store, as a restarted process does: the account
        // tree's stored root must be the one this replica had (and the last header's).
        let reopened = Ledger::open_genesis(
            self.ledger.store().clone(),
            self.ledger.chain().clone(),
            &self.genesis,
            ledger::view::DEFAULT_CACHE_BYTES,
        )
        .unwrap_or_else(|e| panic!("replica {}: reopening its store failed: {e}", self.id.0));
        assert_eq!(
            (reopened.height(), reopened.state_root()),
            (self.ledger.height(), self.ledger.state_root()),
            "replica {}: the state root read back from the store differs",
            self.id.0
        );
        self.ledger = reopened;
        self.core = None;
        self.up = false;
        self.unsynced.clear();
        self.fsync_pending = false;
        self.epoch += 1;
        self.timers.clear();
        self.mempool.clear();
        self.executed.clear();
        self.feeding = false;
        self.snapshot_pending = false;
    }

    /// The durable (fsynced) log, by index.
    pub fn disk_log(&self) -> &BTreeMap<u64, Vec<u8>> {
        &self.disk_log
    }

    /// Before a state transfer replaces the core: the node lets its queued writes finish
    /// (nothing is lost, unlike a crash), then drops the old core's timers and queues; the
    /// next [`Instance::disk`] is what the new core starts from.
    pub fn retire_core(&mut self) {
        let epoch = self.epoch;
        self.fsync_done(epoch);
        self.core = None;
        self.epoch += 1;
        self.timers.clear();
        self.executed.clear();
        self.feeding = false;
        self.snapshot_pending = false;
    }

    /// After installing a snapshot at `index` whose entry has term `term` (the node store's
    /// `Rebase`): drop the log below `index`; if the entry at `index` is missing or of
    /// another term, the log does not extend the snapshot and is dropped whole.
    pub fn rebase_log(&mut self, index: u64, term: u64, term_of: impl Fn(&[u8]) -> Option<u64>) {
        self.disk_log = self.disk_log.split_off(&index);
        let keeps = self
            .disk_log
            .get(&index)
            .is_some_and(|e| term_of(e) == Some(term));
        if !keeps {
            self.disk_log.clear();
        }
    }

    /// Queues a durable write; returns true when an fsync must be scheduled.
    pub fn persist(&mut self, seq: u64, what: Durable) -> bool {
        self.unsynced.push((seq, what));
        !std::mem::replace(&mut self.fsync_pending, true)
    }

    /// Completes the fsync of everything queued; returns the highest durable sequence.
    pub fn fsync_done(&mut self, epoch: u64) -> Option<u64> {
        if epoch != self.epoch {
            return None;
        }
        self.fsync_pending = false;
        let mut top = None;
        for (seq, what) in self.unsynced.drain(..) {
            match what {
                Durable::Safety(b) => self.disk_safety = Some(b),
                Durable::Log {
                    truncate_after,
                    entries,
                } => {
                    let first = truncate_after + 1;
                    let _dropped = self.disk_log.split_off(&first);
                    for (index, e) in (first..).zip(entries) {
                        self.disk_log.insert(index, e);
                    }
                }
                Durable::Compact { before } => {
                    self.disk_log = self.disk_log.split_off(&before);
                }
            }
            top = Some(seq);
        }
        top
    }

    pub fn set_timer(&mut self, id: u64) -> u64 {
        self.next_generation += 1;
        self.timers.insert(id, self.next_generation);
        self.next_generation
    }

    pub fn timer_current(&self, id: u64, generation: u64) -> bool {
        self.core.is_some() && self.timers.get(&id) == Some(&generation)
    }

    /// Whether it takes clients' transactions: a running core, or an outsider that is up (it
    /// passes them on, as a full node would).
    fn accepts(&self) -> bool {
        self.core.is_some() || (self.up && self.id == OUTSIDER)
    }

    pub fn submit(&mut self, tx: Transaction) {
        if self.accepts() && self.mempool.len() < MEMPOOL_MAX {
            self.mempool.push_back(tx);
        }
    }

    pub fn take_batch(&mut self, max: usize) -> Option<Vec<Transaction>> {
        if !self.accepts() || self.mempool.is_empty() {
            return None;
        }
        let n = max.min(self.mempool.len());
        Some(self.mempool.drain(..n).collect())
    }

    pub fn remember(&mut self, msg: &P::Msg) {
        if self.byz == Some(Behaviour::StaleAndFuture) {
            if self.seen.len() >= SEEN_KEPT {
                self.seen.remove(0);
            }
            self.seen.push(msg.clone());
        }
    }

    /// Executes a committed block on the ledger.
    pub fn execute(&mut self, input: BlockInput) -> Block {
        self.ledger
            .commit(input)
            .expect("in-memory store cannot fail")
            .0
    }

    /// A batch arrived: whether it is new to this replica's cores (not executed yet).
    pub fn batch_arrived(&mut self, digest: Digest) -> bool {
        !self.executed_batches.contains(&digest) && self.unexecuted.insert(digest)
    }

    /// A block naming `payload` executed.
    pub fn batches_executed(&mut self, payload: &[Digest]) {
        for d in payload {
            self.unexecuted.remove(d);
            self.executed_batches.insert(*d);
        }
    }

    /// Batches offered to the core and not executed yet, in digest order.
    pub fn unexecuted(&self) -> Vec<Digest> {
        self.unexecuted.iter().copied().collect()
    }

    /// The epoch's core is gone for good (its epoch ended): its safety record is worthless
    /// to the next epoch's core, which starts with none (the node keys records by epoch).
    pub fn end_core_epoch(&mut self) {
        self.retire_core();
        self.disk_safety = None;
        self.unsynced.clear();
    }
}

fn open(store: MemStore, chain: ChainBinding, genesis: &LedgerGenesis) -> Ledger<MemStore> {
    Ledger::open_genesis(store, chain, genesis, ledger::view::DEFAULT_CACHE_BYTES)
        .expect("fresh ledger")
}
