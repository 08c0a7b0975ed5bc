//! [`TxIndex`]: transaction hash → where it was committed, off the block-commit path.
//!
//! A hash-keyed B-tree takes one random insert per transaction; written with each block it
//! dirtied most of the index's pages at every commit, and the profile of issue 18 found that
//! to be the validator's wall under load (a block commit cost more than consensus). So:
//! - the store stage writes each block's receipts as one sequential row of the *journal*
//!   (`receipts_journal` in the chain file), in the block's own write transaction, and keeps
//!   the records in memory, where lookups find them at once;
//! - the *indexer* thread (`cairn-index`) moves them, sorted, into the durable index in its
//!   own file (`NAME-index.redb`, so its writes never wait for block writes), every
//!   [`FLUSH_TXS`] records or [`FLUSH_INTERVAL`], and records the height they cover;
//! - the store stage then drops the journal rows at or below that height; opening the store
//!   rebuilds the memory part from the rows above it. A crash loses nothing.
//!
//! # To ensure correctness
//! - The first inclusion of a hash wins everywhere: in memory (`or_insert`), in the durable
//!   index (an existing row is never overwritten), and in lookups, which read the older
//!   places first (a store from before this index kept rows in the chain file, then the
//!   index file, then memory).
//! - A record leaves memory only after the index write that holds it is durable, so a
//!   lookup always finds it in one place or the other.

use super::{MAX_RECORD_BYTES, read_in, write_in};
use crypto::{Digest, codec};
use ledger::{Receipt, StoreError, TxRecord};
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Hash → [`TxRecord`]. In the index file; stores from before it have one in the chain file.
pub(super) const TXS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("txs");
/// Height → the encoded receipts of a block not yet in the durable index. In the chain file.
pub(super) const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts_journal");
/// `indexed_height`: every block up to it is in the durable index. In the index file.
const INDEX_META: TableDefinition<&str, u64> = TableDefinition::new("index_meta");
const INDEXED_HEIGHT: &str = "indexed_height";
/// A journal row holds one block's receipts: at most a block's worth.
const MAX_JOURNAL_ROW_BYTES: u64 = 32 << 20;

/// Records in memory that make the indexer flush at once.
pub const FLUSH_TXS: usize = 131_072;
/// How long records wait in memory at most (when fewer than [`FLUSH_TXS`] arrive).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Records in memory beyond which the store stage waits for the indexer before writing more
/// blocks (so memory stays bounded if the index falls behind).
pub const MAX_UNFLUSHED: usize = 1 << 20;

#[derive(Default)]
struct Recent {
    records: HashMap<Digest, TxRecord>,
    /// Every block up to this height is in the durable index.
    indexed: u64,
    /// The highest height remembered (a block without transactions adds no record, but is
    /// indexed as soon as the blocks before it are).
    remembered: u64,
}

/// The transaction index (see the module documentation). Clones share it.
#[derive(Clone)]
pub struct TxIndex {
    db: Arc<Database>,
    recent: Arc<RwLock<Recent>>,
}

/// Lookups wait while this is held ([`TxIndex::hold`]).
pub(super) struct Held<'a>(std::sync::RwLockWriteGuard<'a, Recent>);

impl Held<'_> {
    pub(super) fn remember(&mut self, height: u64, receipts: &[Receipt]) {
        remember(&mut self.0.records, height, receipts);
        self.0.remembered = self.0.remembered.max(height);
    }
}

fn poisoned() -> StoreError {
    StoreError("the in-memory transaction index lock is poisoned (a thread panicked)".into())
}

/// The index file of the store at `path`: `NAME-index.redb` beside it.
pub fn index_path(path: &Path) -> std::path::PathBuf {
    super::sibling(path, "index")
}

impl TxIndex {
    /// Opens the index file at `path` and rebuilds the memory part from `chain`'s journal.
    pub(super) fn open(path: &Path, chain: &Database) -> Result<TxIndex, StoreError> {
        let db = Database::builder()
            .set_cache_size(16 << 20)
            .create(path)
            .map_err(|e| StoreError::new(&format!("opening database {}", path.display()), e))?;
        let mut indexed = 0;
        write_in(&db, "index file", |tx| {
            tx.open_table(TXS)?;
            let meta = tx.open_table(INDEX_META)?;
            indexed = meta.get(INDEXED_HEIGHT)?.map_or(0, |v| v.value());
            Ok(())
        })?;
        let rows: Vec<(u64, Vec<u8>)> = read_in(chain, "chain file", |tx| {
            let mut out = Vec::new();
            for row in tx.open_table(RECEIPTS)?.range((indexed + 1)..)? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })?;
        let mut recent = Recent {
            records: HashMap::new(),
            indexed,
            remembered: indexed,
        };
        for (height, bytes) in rows {
            let receipts: Vec<Receipt> =
                codec::decode(&bytes, MAX_JOURNAL_ROW_BYTES, "receipts")
                    .map_err(|e| StoreError::new("stored receipts journal row", e))?;
            remember(&mut recent.records, height, &receipts);
            recent.remembered = recent.remembered.max(height);
        }
        Ok(TxIndex {
            db: Arc::new(db),
            recent: Arc::new(RwLock::new(recent)),
        })
    }

    /// Every block up to this height is in the durable index (journal rows at or below it
    /// may go).
    pub fn indexed_height(&self) -> u64 {
        self.recent.read().map_or(0, |r| r.indexed)
    }

    /// Records held in memory, not yet in the durable index.
    pub fn unflushed(&self) -> usize {
        self.recent.read().map_or(0, |r| r.records.len())
    }

    /// Holds every lookup until the guard is dropped: the store stage takes it before a
    /// block write and remembers the blocks' records under it, so a reader that sees a
    /// block's accounts (a nonce it consumed) also finds its transactions.
    pub(super) fn hold(&self) -> Result<Held<'_>, StoreError> {
        Ok(Held(self.recent.write().map_err(|_| poisoned())?))
    }

    /// The record of `hash`, if any: `legacy` (the chain file's old index), the durable
    /// index, then memory; the first inclusion wins.
    pub(super) fn get(
        &self,
        legacy: Option<Vec<u8>>,
        hash: &Digest,
    ) -> Result<Option<TxRecord>, StoreError> {
        if let Some(b) = legacy {
            return codec::decode(&b, MAX_RECORD_BYTES, "tx record")
                .map(Some)
                .map_err(|e| StoreError::new("stored tx record", e));
        }
        let raw = read_in(&self.db, "index file", |tx| {
            Ok(tx.open_table(TXS)?.get(hash.0)?.map(|v| v.value().to_vec()))
        })?;
        if let Some(b) = raw {
            return decode_entry(*hash, &b).map(Some);
        }
        let recent = self.recent.read().map_err(|_| poisoned())?;
        Ok(recent.records.get(hash).cloned())
    }

    /// Deletes the durable records of `(hash, height)` that point at that height (pruning;
    /// a record pointing elsewhere is another inclusion's and stays). How many went.
    pub(super) fn forget(&self, hashes: &[(Digest, u64)]) -> Result<u64, StoreError> {
        let mut gone = 0;
        super::write_in(&self.db, "index file", |tx| {
            let mut t = tx.open_table(TXS)?;
            for (hash, height) in hashes {
                let at = t
                    .get(hash.0)?
                    .and_then(|v| decode_entry(*hash, v.value()).ok())
                    .map(|r| r.height);
                if at == Some(*height) {
                    t.remove(hash.0)?;
                    gone += 1;
                }
            }
            Ok(())
        })?;
        Ok(gone)
    }

    /// Moves every record in memory into the durable index in one sorted, fsynced write,
    /// then forgets them. Returns how many moved. The indexer thread calls it.
    pub fn flush(&self) -> Result<usize, StoreError> {
        let (records, top) = {
            let recent = self.recent.read().map_err(|_| poisoned())?;
            if recent.records.is_empty() {
                // Blocks without transactions: nothing to write, all of them indexed.
                drop(recent);
                let mut recent = self.recent.write().map_err(|_| poisoned())?;
                recent.indexed = recent.indexed.max(recent.remembered);
                return Ok(0);
            }
            let top = recent
                .records
                .values()
                .map(|r| r.height)
                .max()
                .unwrap_or(0)
                .max(recent.remembered);
            let mut records: Vec<(Digest, TxRecord)> = recent
                .records
                .iter()
                .map(|(h, r)| (*h, r.clone()))
                .collect();
            records.sort_unstable_by_key(|(h, _)| *h);
            (records, top)
        };
        write_in(&self.db, "index file", |tx| {
            let mut t = tx.open_table(TXS)?;
            let mut value = Vec::with_capacity(32);
            for (hash, rec) in &records {
                encode_entry(rec, &mut value);
                // One B-tree walk for a new hash; an earlier record (the first inclusion)
                // is put back.
                let earlier = t
                    .insert(hash.0, value.as_slice())?
                    .map(|old| old.value().to_vec());
                if let Some(first) = earlier {
                    t.insert(hash.0, first.as_slice())?;
                }
            }
            let mut meta = tx.open_table(INDEX_META)?;
            let before = meta.get(INDEXED_HEIGHT)?.map_or(0, |v| v.value());
            meta.insert(INDEXED_HEIGHT, top.max(before))?;
            Ok(())
        })?;
        let mut recent = self.recent.write().map_err(|_| poisoned())?;
        recent.records.retain(|_, r| r.height > top);
        recent.indexed = recent.indexed.max(top);
        Ok(records.len())
    }

    /// Starts the indexer thread: flushes every [`FLUSH_TXS`] records or [`FLUSH_INTERVAL`]
    /// until `stop` is set (what is left stays in the journal for the next start). A failed
    /// flush is logged and retried: lookups still find the records in memory.
    pub fn start_indexer(
        &self,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let index = self.clone();
        std::thread::Builder::new()
            .name("cairn-index".into())
            .spawn(move || {
                let mut last = std::time::Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    let n = index.unflushed();
                    if n == 0 || (n < FLUSH_TXS && last.elapsed() < FLUSH_INTERVAL) {
                        continue;
                    }
                    last = std::time::Instant::now();
                    if let Err(e) = index.flush() {
                        tracing::warn!(error = %e, "transaction index flush failed; retrying");
                    }
                }
            })
            .expect("spawning the indexer thread")
    }
}

/// The index file's value for a record: height, index and outcome (the hash is the key, so
/// the receipt's copy of it is not stored again): about 14 bytes instead of 50, so a leaf
/// page holds more entries and a flush copies fewer pages.
fn encode_entry(rec: &TxRecord, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&codec::encode(&(
        rec.height,
        rec.index,
        &rec.receipt.outcome,
    )));
}

fn decode_entry(hash: Digest, bytes: &[u8]) -> Result<TxRecord, StoreError> {
    type Entry = (u64, u32, Result<(), ledger::RejectReason>);
    let (height, index, outcome): Entry = codec::decode(bytes, MAX_RECORD_BYTES, "tx index entry")
        .map_err(|e| StoreError::new("stored tx index entry", e))?;
    Ok(TxRecord {
        height,
        index,
        receipt: Receipt {
            tx_hash: hash,
            outcome,
        },
    })
}

/// Adds a block's receipts to `records`; the first inclusion of a hash wins.
fn remember(records: &mut HashMap<Digest, TxRecord>, height: u64, receipts: &[Receipt]) {
    for (i, r) in receipts.iter().enumerate() {
        records.entry(r.tx_hash).or_insert_with(|| TxRecord {
            height,
            index: i as u32,
            receipt: r.clone(),
        });
    }
}
