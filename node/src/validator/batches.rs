//! Batches known to this validator, by digest, bounded, each with its transactions' hashes
//! (computed once, where the batch entered) and whether its signatures were checked.

use super::wire::batch_digest_hashed;
use crypto::Digest;
use ledger::Transaction;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A batch's transactions and their hashes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub txs: Vec<Transaction>,
    pub hashes: Vec<Digest>,
}

impl Batch {
    /// Hashes `txs` (for batches that arrive without their hashes: a block sync, the log).
    pub fn new(txs: Vec<Transaction>) -> Batch {
        let hashes = txs.iter().map(Transaction::hash).collect();
        Batch { txs, hashes }
    }

    pub fn digest(&self) -> Digest {
        batch_digest_hashed(&self.txs, &self.hashes)
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
}

/// Where a stored batch's signatures stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Not checked: execution checks them.
    No,
    /// Queued on the admission stage's workers; execution waits for the verdict.
    Pending,
    /// All valid (this validator's own batches, or the workers said so).
    Yes,
}

pub struct BatchStore {
    map: BTreeMap<Digest, (Arc<Batch>, Check)>,
    order: VecDeque<Digest>,
    cap: usize,
    /// Batches in state [`Check::Pending`].
    pending: usize,
}

impl BatchStore {
    pub fn new(cap: usize) -> Self {
        BatchStore {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            cap,
            pending: 0,
        }
    }

    /// Stores `batch` under `digest` (the caller computed it from the batch, see
    /// [`Batch::digest`]); the oldest batch goes when the store is full. A batch stored
    /// already keeps its state.
    pub fn insert_as(&mut self, digest: Digest, batch: Arc<Batch>) -> Digest {
        if let std::collections::btree_map::Entry::Vacant(e) = self.map.entry(digest) {
            e.insert((batch, Check::No));
            self.order.push_back(digest);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front()
                    && let Some((_, Check::Pending)) = self.map.remove(&old)
                {
                    self.pending -= 1;
                }
            }
        }
        digest
    }

    /// Stores `batch` and returns its digest.
    pub fn insert(&mut self, batch: Batch) -> Digest {
        self.insert_as(batch.digest(), Arc::new(batch))
    }

    /// [`BatchStore::insert`] for a batch whose signatures were all checked (this
    /// validator's own pool admits only checked transactions).
    pub fn insert_checked(&mut self, batch: Batch) -> Digest {
        let d = self.insert(batch);
        self.set(&d, Check::Yes);
        d
    }

    fn set(&mut self, d: &Digest, check: Check) {
        if let Some((_, c)) = self.map.get_mut(d) {
            self.pending -= usize::from(*c == Check::Pending);
            self.pending += usize::from(check == Check::Pending);
            *c = check;
        }
    }

    /// The batch needs no check (it has no signed transaction).
    pub fn set_checked(&mut self, d: &Digest) {
        self.set(d, Check::Yes);
    }

    /// The batch's signatures were handed to the admission stage's workers.
    pub fn set_pending(&mut self, d: &Digest) {
        self.set(d, Check::Pending);
    }

    /// The workers' verdict on a pending batch: all signatures valid, or not (then execution
    /// checks each, and records the invalid ones as failed).
    pub fn set_verified(&mut self, d: &Digest, all_valid: bool) {
        if self.map.get(d).is_some_and(|(_, c)| *c == Check::Pending) {
            self.set(d, if all_valid { Check::Yes } else { Check::No });
        }
    }

    /// Whether nobody has checked the batch's signatures or is checking them.
    pub fn is_unchecked(&self, d: &Digest) -> bool {
        self.map.get(d).is_some_and(|(_, c)| *c == Check::No)
    }

    /// Whether the batch's signatures were checked before it was stored.
    pub fn is_checked(&self, d: &Digest) -> bool {
        self.map.get(d).is_some_and(|(_, c)| *c == Check::Yes)
    }

    /// Whether any of `ds` waits for the workers' verdict.
    pub fn any_pending(&self, ds: &[Digest]) -> bool {
        ds.iter()
            .any(|d| self.map.get(d).is_some_and(|(_, c)| *c == Check::Pending))
    }

    /// Batches waiting for the workers' verdict.
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn get(&self, d: &Digest) -> Option<&Arc<Batch>> {
        self.map.get(d).map(|(b, _)| b)
    }

    pub fn has_all(&self, ds: &[Digest]) -> bool {
        ds.iter().all(|d| self.map.contains_key(d))
    }

    pub fn missing(&self, ds: &[Digest]) -> Vec<Digest> {
        ds.iter()
            .filter(|d| !self.map.contains_key(d))
            .copied()
            .collect()
    }
}
