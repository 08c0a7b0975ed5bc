//! Batches known to this validator, by digest, bounded.

use super::wire::batch_digest;
use crypto::Digest;
use ledger::Transaction;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub struct BatchStore {
    map: BTreeMap<Digest, Vec<Transaction>>,
    /// Batches whose signatures were checked before they were stored (this validator's own:
    /// its pool admits only checked transactions).
    checked: BTreeSet<Digest>,
    order: VecDeque<Digest>,
    cap: usize,
}

impl BatchStore {
    pub fn new(cap: usize) -> Self {
        BatchStore {
            map: BTreeMap::new(),
            checked: BTreeSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Stores `txs` and returns its digest; the oldest batch goes when the store is full.
    pub fn insert(&mut self, txs: Vec<Transaction>) -> Digest {
        let d = batch_digest(&txs);
        if self.map.insert(d, txs).is_none() {
            self.order.push_back(d);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                    self.checked.remove(&old);
                }
            }
        }
        d
    }

    /// [`BatchStore::insert`] for a batch of this validator's own pool, whose signatures it
    /// checked at admission.
    pub fn insert_checked(&mut self, txs: Vec<Transaction>) -> Digest {
        let d = self.insert(txs);
        if self.map.contains_key(&d) {
            self.checked.insert(d);
        }
        d
    }

    /// Whether the batch's signatures were checked before it was stored.
    pub fn is_checked(&self, d: &Digest) -> bool {
        self.checked.contains(d)
    }

    pub fn get(&self, d: &Digest) -> Option<&Vec<Transaction>> {
        self.map.get(d)
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
