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
    /// Batches whose block executed here, oldest first, with their transaction counts: kept
    /// for peers that still ask, up to [`EXECUTED_KEEP_TXS`] transactions.
    executed: VecDeque<(Digest, usize)>,
    executed_txs: usize,
}

/// Transactions of executed batches a validator keeps, at most (a lagging peer that needs
/// older ones catches up by block sync). Without this bound every executed batch stayed until
/// `MAX_STORED_BATCHES` more had arrived: about 1.3 MB/s of memory at 5,000 transfers a
/// second (the first soak).
pub const EXECUTED_KEEP_TXS: usize = 131_072;

/// Digests of batches the core has committed, the most recent `cap`: the driver never offers
/// one of them to the core again (a batch arriving after its block committed would otherwise
/// be proposed a second time, and its data may be gone by then).
#[derive(Debug)]
pub struct RecentDigests {
    set: std::collections::HashSet<Digest>,
    order: VecDeque<Digest>,
    cap: usize,
}

impl RecentDigests {
    pub fn new(cap: usize) -> Self {
        RecentDigests {
            set: Default::default(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub fn insert(&mut self, d: Digest) {
        if self.set.insert(d) {
            self.order.push_back(d);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.set.contains(d)
    }

    /// Forgets `d` (a commit that was dropped, not executed: see `Driver::switch_core`). Its
    /// place in the eviction order stays, so it may be forgotten early if inserted again.
    pub fn remove(&mut self, d: &Digest) {
        self.set.remove(d);
    }
}

impl BatchStore {
    pub fn new(cap: usize) -> Self {
        BatchStore {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            cap,
            pending: 0,
            executed: VecDeque::new(),
            executed_txs: 0,
        }
    }

    /// The batches of a block that executed here: they go once [`EXECUTED_KEEP_TXS`]
    /// transactions of later executed batches are kept.
    pub fn executed(&mut self, ds: &[Digest]) {
        for d in ds {
            if let Some((b, _)) = self.map.get(d) {
                let n = b.len().max(1);
                self.executed.push_back((*d, n));
                self.executed_txs += n;
            }
        }
        while self.executed_txs > EXECUTED_KEEP_TXS {
            let Some((d, n)) = self.executed.pop_front() else {
                break;
            };
            self.executed_txs -= n;
            if let Some((_, Check::Pending)) = self.map.remove(&d) {
                self.pending -= 1;
            }
        }
        // The insertion order may hold digests removed here: drop them from its front.
        while self
            .order
            .front()
            .is_some_and(|d| !self.map.contains_key(d))
        {
            self.order.pop_front();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(i: u64, n: usize) -> Batch {
        let chain = ledger::ChainBinding {
            chain_id: "t".into(),
            genesis_hash: crypto::hash(b"g"),
        };
        Batch::new(
            (0..n as u64)
                .map(|k| Transaction::raw(&chain, i * 1_000_000 + k, vec![1]))
                .collect(),
        )
    }

    /// Executed batches stay until EXECUTED_KEEP_TXS transactions of later executed batches
    /// are held, oldest first; batches not executed stay.
    #[test]
    fn executed_batches_go_oldest_first_past_the_bound() {
        let mut s = BatchStore::new(1_000_000);
        let per = 4096;
        let waiting = s.insert(batch(0, per));
        let ds: Vec<Digest> = (1..=40).map(|i| s.insert(batch(i, per))).collect();
        for d in &ds {
            s.executed(&[*d]);
        }
        let kept = EXECUTED_KEEP_TXS / per;
        let gone = ds.len() - kept;
        assert!(ds[..gone].iter().all(|d| s.get(d).is_none()));
        assert!(ds[gone..].iter().all(|d| s.get(d).is_some()));
        assert!(s.get(&waiting).is_some(), "a batch not executed stays");
        // Executing an unknown digest changes nothing.
        s.executed(&[crypto::hash(b"unknown")]);
        assert!(s.get(&ds[gone]).is_some());
    }

    #[test]
    fn recent_digests_forget_the_oldest_past_their_cap() {
        let mut r = RecentDigests::new(3);
        let d = |i: u8| crypto::hash(&[i]);
        for i in 0..5 {
            r.insert(d(i));
            r.insert(d(i));
        }
        assert!(!r.contains(&d(0)) && !r.contains(&d(1)));
        assert!((2..5).all(|i| r.contains(&d(i))));
    }
}
