//! One simulated replica: the driver around a core. Its "disk" (safety record, Raft log,
//! ledger store) survives a crash; everything else — the core, unsynced writes, timers,
//! mempool — is lost.

use super::byz::Behaviour;
use super::protocol::{Disk, SimProtocol};
use consensus::{Durable, ReplicaId};
use crypto::{Digest, SecretKey};
use ledger::{Address, Block, BlockInput, ChainBinding, Ledger, MemStore, Store, Transaction};
use std::collections::{BTreeMap, VecDeque};

const SEEN_KEPT: usize = 64;
const MEMPOOL_MAX: usize = 10_000;

pub struct Instance<P: SimProtocol> {
    pub id: ReplicaId,
    pub key: SecretKey,
    pub byz: Option<Behaviour>,
    pub core: Option<P::Core>,
    pub ledger: Ledger<MemStore>,
    disk_safety: Option<Vec<u8>>,
    disk_log: Vec<Vec<u8>>,
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
}

impl<P: SimProtocol> Instance<P> {
    pub fn new(
        id: ReplicaId,
        key: SecretKey,
        byz: Option<Behaviour>,
        chain: ChainBinding,
        alloc: &[(Address, u64)],
    ) -> Self {
        Instance {
            id,
            key,
            byz,
            core: None,
            ledger: Ledger::open(MemStore::new(), chain, alloc).expect("fresh ledger"),
            disk_safety: None,
            disk_log: Vec::new(),
            unsynced: Vec::new(),
            fsync_pending: false,
            epoch: 0,
            timers: BTreeMap::new(),
            next_generation: 0,
            mempool: VecDeque::new(),
            seen: Vec::new(),
            executed: VecDeque::new(),
            feeding: false,
        }
    }

    pub fn honest(&self) -> bool {
        self.byz.is_none()
    }

    /// What a restart finds on disk. With `amnesia` the safety record is gone (negative
    /// control: a validator restarted without its persisted safety state).
    pub fn disk(&self, amnesia: bool) -> Disk {
        let committed = match self.ledger.height() {
            0 => None,
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
            log: self.disk_log.clone(),
            committed,
            certificates: (self.ledger.height().saturating_sub(P::HISTORY) + 1
                ..=self.ledger.height())
                .filter_map(|h| self.ledger.store().block(h).ok().flatten())
                .map(|b| b.certificate)
                .collect(),
        }
    }

    pub fn crash(&mut self) {
        self.core = None;
        self.unsynced.clear();
        self.fsync_pending = false;
        self.epoch += 1;
        self.timers.clear();
        self.mempool.clear();
        self.executed.clear();
        self.feeding = false;
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
                    self.disk_log.truncate(truncate_after as usize);
                    self.disk_log.extend(entries);
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

    pub fn submit(&mut self, tx: Transaction) {
        if self.core.is_some() && self.mempool.len() < MEMPOOL_MAX {
            self.mempool.push_back(tx);
        }
    }

    pub fn take_batch(&mut self, max: usize) -> Option<Vec<Transaction>> {
        if self.core.is_none() || self.mempool.is_empty() {
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
}
