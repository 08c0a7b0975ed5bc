//! [`RedbStore`]: the durable [`ledger::Store`] on redb.
//!
//! Why redb: pure Rust (no C toolchain, no bindgen), ACID with copy-on-write B-trees, and a
//! commit with the default `Durability::Immediate` is fsynced before it returns, so "commit
//! returned" means "on disk". One write transaction per block writes the block, its hash
//! index, its receipts and the changed accounts together: a crash leaves all or nothing.
//! Values are Cairn's canonical encoding ([`crypto::codec`]), decoded with size limits.
//!
//! A store is two redb files, so that their writes never wait for each other (redb allows
//! one write transaction per file at a time):
//! - the chain file (`store.redb`): blocks, the transaction index, accounts, the genesis hash
//!   and evidence, written by the store stage ([`RedbStore::commit_executed`], several blocks
//!   per fsync under load);
//! - the consensus file (`store-consensus.redb` beside it): safety records and Raft's log,
//!   written by the consensus loop before the votes that depend on them leave
//!   ([`RedbStore::write_durable`]). A store from before the split has its safety records and
//!   log moved into it when it is first opened.

use crypto::{Digest, codec};
use ledger::{
    Account, Address, Block, Receipt, Store, StoreError, TxRecord, check_genesis, check_next_height,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_HEIGHTS: TableDefinition<[u8; 32], u64> = TableDefinition::new("block_heights");
const TXS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("txs");
const ACCOUNTS: TableDefinition<[u8; 20], (u64, u64)> = TableDefinition::new("accounts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Raft's durable log: index → (term, entry, batches), see [`LogRow`].
const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// A log row holds one entry and its batches: at most a block's worth.
const MAX_LOG_ROW_BYTES: u64 = 32 << 20;

/// Equivocation evidence found by this validator: `signer/kind/slot` → JSON record
/// ([`crate::validator::evidence::Evidence`]).
const EVIDENCE: TableDefinition<&str, &[u8]> = TableDefinition::new("evidence");
/// Evidence records kept, at most: a validator that equivocates in every view cannot make
/// the table grow without bound (later conflicts are still counted and logged).
pub const MAX_EVIDENCE: u64 = 1024;

const GENESIS_KEY: &str = "genesis_hash";
/// The receipts of each block whose transactions are not in the durable index ([`TXS`])
/// yet: height → encoded `Vec<Receipt>`. Written with the block (one sequential row), read
/// back only when the store is opened, dropped once the index holds them.
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts_journal");
/// Receipts kept in memory before they are written into the durable index in one sorted
/// pass (see [`RedbStore::commit_executed`]).
pub const INDEX_FLUSH_TXS: usize = 65_536;
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Clones share the two databases: any number of concurrent readers (each read is its own
/// redb read transaction) alongside one writer per file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    consensus: Arc<Database>,
    /// Transaction records of durable blocks that the durable index does not hold yet (their
    /// receipts are in the [`RECEIPTS`] journal); see [`RedbStore::commit_executed`].
    recent: Arc<std::sync::RwLock<HashMap<Digest, TxRecord>>>,
    /// Records kept in memory before a flush into the durable index ([`INDEX_FLUSH_TXS`]).
    index_flush: usize,
}

/// The consensus file of the store at `path`: `NAME-consensus.redb` beside it.
pub fn consensus_path(path: &Path) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    path.with_file_name(format!("{stem}-consensus.redb"))
}

fn err(context: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::new(context, e)
}

impl RedbStore {
    /// Opens (or creates) the store at `path` (and its consensus file beside it, see
    /// [`consensus_path`]), creating parent folders.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::new(&format!("creating data folder {}", dir.display()), e)
            })?;
        }
        let open = |p: &Path| {
            Database::create(p)
                .map(Arc::new)
                .map_err(|e| StoreError::new(&format!("opening database {}", p.display()), e))
        };
        let store = RedbStore {
            db: open(path)?,
            consensus: open(&consensus_path(path))?,
            recent: Default::default(),
            index_flush: INDEX_FLUSH_TXS,
        };
        store.write(|tx| {
            tx.open_table(RECEIPTS)?;
            tx.open_table(BLOCKS)?;
            tx.open_table(BLOCK_HEIGHTS)?;
            tx.open_table(TXS)?;
            tx.open_table(ACCOUNTS)?;
            tx.open_table(META)?;
            tx.open_table(RAFT_LOG)?;
            tx.open_table(EVIDENCE)?;
            Ok(())
        })?;
        store.write_consensus(|tx| {
            tx.open_table(META)?;
            tx.open_table(RAFT_LOG)?;
            Ok(())
        })?;
        store.move_consensus_state()?;
        store.load_recent()?;
        Ok(store)
    }

    /// Flushes the in-memory part of the transaction index once it holds `txs` records (for
    /// tests; [`INDEX_FLUSH_TXS`] by default). Applies to this handle only.
    pub fn set_index_flush_txs(&mut self, txs: usize) {
        self.index_flush = txs.max(1);
    }

    /// Transaction records held in memory, not yet in the durable index.
    pub fn unflushed_txs(&self) -> usize {
        self.recent.read().map_or(0, |r| r.len())
    }

    /// Rebuilds the in-memory part of the transaction index from the receipts journal.
    fn load_recent(&self) -> Result<(), StoreError> {
        let rows: Vec<(u64, Vec<u8>)> = self.read(|tx| {
            let mut out = Vec::new();
            for row in tx.open_table(RECEIPTS)?.iter()? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })?;
        let mut recent = self.recent.write().map_err(|_| poisoned())?;
        for (height, bytes) in rows {
            let receipts: Vec<Receipt> = codec::decode(&bytes, MAX_LOG_ROW_BYTES, "receipts")
                .map_err(|e| StoreError::new("stored receipts journal row", e))?;
            remember(&mut recent, height, &receipts);
        }
        Ok(())
    }

    /// Durably stores executed blocks, in height order, in one write transaction (one fsync
    /// for all of them): the store stage's group commit. The first must follow the stored
    /// height; each the one before.
    ///
    /// The transaction index costs a random B-tree insert per transaction, which per block
    /// would dirty most of the index's pages at every commit (the profile of issue 18 found
    /// it to be the validator's wall under load). So a block's receipts are journaled with
    /// it (one sequential row) and kept in memory, where lookups find them at once; every
    /// [`INDEX_FLUSH_TXS`] transactions they go into the durable index in one sorted pass,
    /// in the same write transaction as a block, and the journal is emptied. A crash loses
    /// nothing: opening the store rebuilds the memory part from the journal.
    pub fn commit_executed(&self, blocks: &[ledger::Executed]) -> Result<(), StoreError> {
        let parts: Vec<Parts> = blocks
            .iter()
            .map(|b| (&b.block, b.receipts.as_slice(), b.changed.as_slice()))
            .collect();
        self.commit_parts(&parts)
    }

    fn commit_parts(&self, blocks: &[Parts]) -> Result<(), StoreError> {
        let mut height = self.height()?;
        let mut encoded = Vec::with_capacity(blocks.len());
        let mut new_txs = 0;
        for (block, receipts, _) in blocks {
            check_next_height(height, block)?;
            height += 1;
            new_txs += receipts.len();
            encoded.push((block.encode(), codec::encode(receipts)));
        }
        let pending = self.recent.read().map_err(|_| poisoned())?.len();
        let flush = pending + new_txs >= self.index_flush;
        self.write(|tx| {
            let mut table = tx.open_table(BLOCKS)?;
            let mut heights = tx.open_table(BLOCK_HEIGHTS)?;
            let mut journal = tx.open_table(RECEIPTS)?;
            let mut accts = tx.open_table(ACCOUNTS)?;
            for ((block, _, changed), (bytes, receipts)) in blocks.iter().zip(&encoded) {
                let h = block.header.height;
                table.insert(h, bytes.as_slice())?;
                heights.insert(block.hash().0, h)?;
                if !flush {
                    journal.insert(h, receipts.as_slice())?;
                }
                for (a, acc) in *changed {
                    accts.insert(a.0, (acc.balance, acc.nonce))?;
                }
            }
            if flush {
                let mut all = self
                    .recent
                    .read()
                    .map_err(|_| redb::Error::Corrupted("transaction index lock".into()))?
                    .clone();
                for (block, receipts, _) in blocks {
                    remember(&mut all, block.header.height, receipts);
                }
                let mut sorted: Vec<(Digest, TxRecord)> = all.into_iter().collect();
                sorted.sort_unstable_by_key(|(h, _)| *h);
                let mut txs = tx.open_table(TXS)?;
                for (hash, rec) in &sorted {
                    // The first inclusion wins: an earlier record in the index stays.
                    if txs.get(hash.0)?.is_none() {
                        txs.insert(hash.0, codec::encode(rec).as_slice())?;
                    }
                }
                journal.retain(|_, _| false)?;
            }
            Ok(())
        })?;
        let mut recent = self.recent.write().map_err(|_| poisoned())?;
        if flush {
            recent.clear();
        } else {
            for (block, receipts, _) in blocks {
                remember(&mut recent, block.header.height, receipts);
            }
        }
        Ok(())
    }

    /// Moves safety records and Raft log rows that a store from before the two-file split
    /// kept in the chain file into the consensus file: copied durably first, then removed,
    /// so a crash in between leaves both copies (and the next open moves them again).
    fn move_consensus_state(&self) -> Result<(), StoreError> {
        type Rows = (Vec<(String, Vec<u8>)>, Vec<(u64, Vec<u8>)>);
        let (meta, log): Rows = self.read(|tx| {
            let mut meta = Vec::new();
            for row in tx.open_table(META)?.iter()? {
                let (k, v) = row?;
                if k.value() != GENESIS_KEY {
                    meta.push((k.value().to_string(), v.value().to_vec()));
                }
            }
            let mut log = Vec::new();
            for row in tx.open_table(RAFT_LOG)?.iter()? {
                let (k, v) = row?;
                log.push((k.value(), v.value().to_vec()));
            }
            Ok((meta, log))
        })?;
        if meta.is_empty() && log.is_empty() {
            return Ok(());
        }
        self.write_consensus(|tx| {
            let mut m = tx.open_table(META)?;
            for (k, v) in &meta {
                if m.get(k.as_str())?.is_none() {
                    m.insert(k.as_str(), v.as_slice())?;
                }
            }
            let mut l = tx.open_table(RAFT_LOG)?;
            if l.is_empty()? {
                for (k, v) in &log {
                    l.insert(*k, v.as_slice())?;
                }
            }
            Ok(())
        })?;
        self.write(|tx| {
            let mut m = tx.open_table(META)?;
            for (k, _) in &meta {
                m.remove(k.as_str())?;
            }
            tx.open_table(RAFT_LOG)?.retain(|_, _| false)?;
            Ok(())
        })
    }

    /// [`RedbStore::write`] on the consensus file.
    fn write_consensus(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let tx = self
            .consensus
            .begin_write()
            .map_err(|e| StoreError::new("begin write (consensus file)", e))?;
        f(&tx).map_err(err("write (consensus file)"))?;
        tx.commit()
            .map_err(|e| StoreError::new("commit (consensus file)", e))
    }

    fn read_consensus<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let tx = self
            .consensus
            .begin_read()
            .map_err(|e| StoreError::new("begin read (consensus file)", e))?;
        f(&tx).map_err(err("read (consensus file)"))
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let tx = self
            .db
            .begin_write()
            .map_err(|e| StoreError::new("begin write", e))?;
        f(&tx).map_err(err("write"))?;
        tx.commit().map_err(|e| StoreError::new("commit", e))
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| StoreError::new("begin read", e))?;
        f(&tx).map_err(err("read"))
    }
}

impl Store for RedbStore {
    fn init_genesis(
        &mut self,
        genesis_hash: Digest,
        accounts: &[(Address, Account)],
    ) -> Result<(), StoreError> {
        if check_genesis(self.genesis_hash()?, genesis_hash)? {
            return Ok(());
        }
        self.write(|tx| {
            let mut t = tx.open_table(ACCOUNTS)?;
            for (a, acc) in accounts {
                t.insert(a.0, (acc.balance, acc.nonce))?;
            }
            tx.open_table(META)?
                .insert(GENESIS_KEY, genesis_hash.0.as_slice())?;
            Ok(())
        })
    }

    fn genesis_hash(&self) -> Result<Option<Digest>, StoreError> {
        let raw = self.meta(GENESIS_KEY)?;
        raw.map(|v| {
            <[u8; 32]>::try_from(v.as_slice())
                .map(Digest)
                .map_err(|_| StoreError("stored genesis hash is not 32 bytes".into()))
        })
        .transpose()
    }

    fn commit_block(
        &mut self,
        block: &Block,
        receipts: &[Receipt],
        changed: &[(Address, Account)],
    ) -> Result<(), StoreError> {
        self.commit_parts(&[(block, receipts, changed)])
    }

    fn height(&self) -> Result<u64, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(BLOCKS)?;
            Ok(t.last()?.map(|(k, _)| k.value()).unwrap_or(0))
        })
    }

    fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let raw = self.read(|tx| {
            Ok(tx
                .open_table(BLOCKS)?
                .get(height)?
                .map(|v| v.value().to_vec()))
        })?;
        raw.map(|b| Block::decode(&b).map_err(|e| StoreError::new("stored block", e)))
            .transpose()
    }

    fn height_of(&self, block_hash: &Digest) -> Result<Option<u64>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .open_table(BLOCK_HEIGHTS)?
                .get(block_hash.0)?
                .map(|v| v.value()))
        })
    }

    /// The durable index first (it holds the first inclusion of anything flushed), then
    /// the records not flushed yet.
    fn tx(&self, tx_hash: &Digest) -> Result<Option<TxRecord>, StoreError> {
        let raw = self.read(|tx| {
            Ok(tx
                .open_table(TXS)?
                .get(tx_hash.0)?
                .map(|v| v.value().to_vec()))
        })?;
        if let Some(b) = raw {
            return codec::decode(&b, MAX_RECORD_BYTES, "tx record")
                .map(Some)
                .map_err(|e| StoreError::new("stored tx record", e));
        }
        let recent = self.recent.read().map_err(|_| poisoned())?;
        Ok(recent.get(tx_hash).cloned())
    }

    fn account(&self, addr: &Address) -> Result<Option<Account>, StoreError> {
        self.read(|tx| {
            Ok(tx.open_table(ACCOUNTS)?.get(addr.0)?.map(|v| {
                let (balance, nonce) = v.value();
                Account { balance, nonce }
            }))
        })
    }

    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(ACCOUNTS)?;
            let mut out = Vec::with_capacity(t.len()? as usize);
            for row in t.iter()? {
                let (k, v) = row?;
                let (balance, nonce) = v.value();
                out.push((Address(k.value()), Account { balance, nonce }));
            }
            Ok(out)
        })
    }

    /// The genesis hash is in the chain file; every other record (safety records) in the
    /// consensus file.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let get = |tx: &redb::ReadTransaction| -> Result<Option<Vec<u8>>, redb::Error> {
            Ok(tx.open_table(META)?.get(key)?.map(|v| v.value().to_vec()))
        };
        if key == GENESIS_KEY {
            self.read(get)
        } else {
            self.read_consensus(get)
        }
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let put = |tx: &redb::WriteTransaction| -> Result<(), redb::Error> {
            tx.open_table(META)?.insert(key, value)?;
            Ok(())
        };
        if key == GENESIS_KEY {
            self.write(put)
        } else {
            self.write_consensus(put)
        }
    }

    fn install_snapshot(
        &mut self,
        block: &Block,
        accounts: &[(Address, Account)],
    ) -> Result<(), StoreError> {
        let current = self.height()?;
        let height = block.header.height;
        if height <= current {
            return Err(StoreError(format!(
                "snapshot at height {height} is not above the stored height {current}"
            )));
        }
        let bytes = block.encode();
        self.write(|tx| {
            tx.open_table(BLOCKS)?.insert(height, bytes.as_slice())?;
            tx.open_table(BLOCK_HEIGHTS)?
                .insert(block.hash().0, height)?;
            let mut t = tx.open_table(ACCOUNTS)?;
            t.retain(|_, _| false)?;
            for (a, acc) in accounts {
                t.insert(a.0, (acc.balance, acc.nonce))?;
            }
            Ok(())
        })
    }
}

/// One durable Raft log entry: its term, its encoded entry and the batches it names (so a
/// committed entry can be executed after a crash of every replica).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    pub index: u64,
    pub term: u64,
    pub entry: Vec<u8>,
    pub batches: Vec<Vec<ledger::Transaction>>,
}

/// One write to the durable consensus state; [`RedbStore::write_durable`] applies a list of
/// them in one fsynced transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurableOp {
    /// Replace the metadata record `key` (a protocol's safety record).
    Meta(&'static str, Vec<u8>),
    /// Drop log rows above `truncate_after`, then store `rows`.
    Log {
        truncate_after: u64,
        rows: Vec<LogRow>,
    },
    /// Drop log rows below `before`.
    Compact { before: u64 },
    /// Drop every log row below `index`; if the row at `index` is missing or has another
    /// term than `term`, drop every row (the log does not extend a snapshot at `index`).
    Rebase { index: u64, term: u64 },
}

impl RedbStore {
    /// Applies `ops` in order in one write transaction, fsynced before it returns.
    pub fn write_durable(&self, ops: &[DurableOp]) -> Result<(), StoreError> {
        self.write_consensus(|tx| {
            let mut meta = tx.open_table(META)?;
            let mut log = tx.open_table(RAFT_LOG)?;
            for op in ops {
                match op {
                    DurableOp::Meta(key, value) => {
                        meta.insert(*key, value.as_slice())?;
                    }
                    DurableOp::Log {
                        truncate_after,
                        rows,
                    } => {
                        log.retain_in((truncate_after.saturating_add(1)).., |_, _| false)?;
                        for r in rows {
                            let value = codec::encode(&(r.term, &r.entry, &r.batches));
                            log.insert(r.index, value.as_slice())?;
                        }
                    }
                    DurableOp::Compact { before } => {
                        log.retain_in(..*before, |_, _| false)?;
                    }
                    DurableOp::Rebase { index, term } => {
                        log.retain_in(..*index, |_, _| false)?;
                        let keeps = match log.get(*index)? {
                            Some(v) => decode_row(*index, v.value()).is_ok_and(|r| r.term == *term),
                            None => false,
                        };
                        if !keeps {
                            log.retain(|_, _| false)?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// Stores one evidence record under `key`, durably. Returns whether it was stored: not
    /// if `key` is already there or [`MAX_EVIDENCE`] records are.
    pub fn put_evidence(&self, key: &str, record: &[u8]) -> Result<bool, StoreError> {
        let mut stored = false;
        self.write(|tx| {
            let mut t = tx.open_table(EVIDENCE)?;
            if t.len()? < MAX_EVIDENCE && t.get(key)?.is_none() {
                t.insert(key, record)?;
                stored = true;
            }
            Ok(())
        })?;
        Ok(stored)
    }

    /// The stored evidence records (at most [`MAX_EVIDENCE`]), in key order.
    pub fn evidence(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(EVIDENCE)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                out.push(row?.1.value().to_vec());
            }
            Ok(out)
        })
    }

    /// The durable Raft log, in index order.
    pub fn log_rows(&self) -> Result<Vec<LogRow>, StoreError> {
        let raw: Vec<(u64, Vec<u8>)> = self.read_consensus(|tx| {
            let t = tx.open_table(RAFT_LOG)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })?;
        raw.into_iter()
            .map(|(i, v)| decode_row(i, &v).map_err(|e| StoreError::new("stored raft log row", e)))
            .collect()
    }
}

/// A block, its receipts and the accounts it changed, as [`RedbStore::commit_parts`] writes.
type Parts<'a> = (&'a Block, &'a [Receipt], &'a [(Address, Account)]);

fn poisoned() -> StoreError {
    StoreError("the in-memory transaction index lock is poisoned (a thread panicked)".into())
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

fn decode_row(index: u64, bytes: &[u8]) -> Result<LogRow, codec::DecodeError> {
    let (term, entry, batches): (u64, Vec<u8>, Vec<Vec<ledger::Transaction>>) =
        codec::decode(bytes, MAX_LOG_ROW_BYTES, "raft log row")?;
    Ok(LogRow {
        index,
        term,
        entry,
        batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::SecretKey;
    use ledger::{BlockInput, ChainBinding, Ledger, Payload, Transaction};

    fn chain() -> ChainBinding {
        ChainBinding {
            chain_id: "t".into(),
            genesis_hash: crypto::hash(b"g"),
        }
    }

    fn input(key: &SecretKey, txs: Vec<Transaction>) -> BlockInput {
        BlockInput {
            proposer: key.public(),
            view: 1,
            timestamp_ms: 0,
            txs,
            certificate: Vec::new(),
            batch_sizes: Vec::new(),
        }
    }

    /// The transaction index keeps a transaction's first inclusion: a second inclusion
    /// (skipped as a replay) never overwrites the record of the one that applied — whether
    /// the first is still in memory, flushed into the durable index, or rebuilt from the
    /// journal after a reopen.
    #[test]
    fn the_index_keeps_the_first_inclusion() {
        for flush_after in [usize::MAX, 1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.redb");
            let mut store = RedbStore::open(&path).unwrap();
            store.set_index_flush_txs(flush_after);
            let key = SecretKey::from_seed([5; 32]);
            let chain = chain();
            let from = Address::of(&key.public());
            let mut l = Ledger::open(store, chain.clone(), &[(from, 100)]).unwrap();
            let to = Address([9; 20]);
            let tx = Transaction::sign(&key, &chain, 0, Payload::Transfer { to, amount: 5 });
            let other = Transaction::sign(&key, &chain, 1, Payload::Transfer { to, amount: 6 });
            l.commit(input(&key, vec![tx.clone()])).unwrap();
            let (_, again) = l
                .commit(input(&key, vec![other.clone(), tx.clone()]))
                .unwrap();
            assert!(again[1].outcome.is_err(), "the replay is skipped");
            let check = |s: &RedbStore| {
                let rec = s.tx(&tx.hash()).unwrap().unwrap();
                assert_eq!((rec.height, rec.index), (1, 0), "flush after {flush_after}");
                assert!(rec.receipt.outcome.is_ok());
                let rec = s.tx(&other.hash()).unwrap().unwrap();
                assert_eq!((rec.height, rec.index), (2, 0));
            };
            check(l.store());
            drop(l);
            check(&RedbStore::open(&path).unwrap());
        }
    }

    /// Receipts not flushed into the durable index survive a reopen (rebuilt from the
    /// journal); once flushed, memory and journal are empty and the index answers.
    #[test]
    fn unflushed_receipts_survive_a_reopen_and_flush_empties_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut store = RedbStore::open(&path).unwrap();
        store.set_index_flush_txs(5);
        let key = SecretKey::from_seed([6; 32]);
        let chain = chain();
        let from = Address::of(&key.public());
        let mut l = Ledger::open(store, chain.clone(), &[(from, 1000)]).unwrap();
        let to = Address([1; 20]);
        let mut hashes = Vec::new();
        for n in 0..4 {
            let t = Transaction::sign(&key, &chain, n, Payload::Transfer { to, amount: 1 });
            hashes.push(t.hash());
            l.commit(input(&key, vec![t])).unwrap();
        }
        assert_eq!(l.store().unflushed_txs(), 4);
        drop(l);
        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(store.unflushed_txs(), 4, "rebuilt from the journal");
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(store.tx(h).unwrap().unwrap().height, i as u64 + 1);
        }
        store.set_index_flush_txs(5);
        let mut l = Ledger::open(store, chain.clone(), &[(from, 1000)]).unwrap();
        let t = Transaction::sign(&key, &chain, 4, Payload::Transfer { to, amount: 1 });
        hashes.push(t.hash());
        l.commit(input(&key, vec![t])).unwrap();
        assert_eq!(l.store().unflushed_txs(), 0, "the fifth record flushes");
        drop(l);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.unflushed_txs(), 0, "the journal was emptied");
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(store.tx(h).unwrap().unwrap().height, i as u64 + 1);
        }
    }

    /// Several executed blocks go into one write, in order; a gap is refused whole.
    #[test]
    fn group_commit_writes_blocks_in_order_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).unwrap();
        let key = SecretKey::from_seed([7; 32]);
        let chain = chain();
        let from = Address::of(&key.public());
        let mut l = Ledger::open(store.clone(), chain.clone(), &[(from, 1000)]).unwrap();
        let to = Address([2; 20]);
        let mut executed = Vec::new();
        for n in 0..3 {
            let t = Transaction::sign(&key, &chain, n, Payload::Transfer { to, amount: 1 });
            executed.push(l.execute_checked(input(&key, vec![t]), &[]).unwrap());
        }
        let err = store.commit_executed(&executed[1..]).unwrap_err();
        assert!(err.to_string().contains("cannot follow height 0"), "{err}");
        assert_eq!(
            store.height().unwrap(),
            0,
            "nothing of a refused group is written"
        );
        store.commit_executed(&executed).unwrap();
        assert_eq!(store.height().unwrap(), 3);
        assert_eq!(
            store.account(&to).unwrap().unwrap().balance,
            3,
            "the last block's accounts are stored"
        );
        assert_eq!(store.block(3).unwrap().unwrap(), executed[2].block);
    }

    /// A store from before the two-file split keeps its safety record and Raft log in the
    /// chain file: opening it moves both into the consensus file, where they are read.
    #[test]
    fn consensus_state_moves_out_of_an_old_single_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            // An old store: everything in one file.
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("hotstuff/safety", [1u8, 2, 3].as_slice())
                .unwrap();
            let row = codec::encode(&(7u64, vec![9u8], Vec::<Vec<Transaction>>::new()));
            tx.open_table(RAFT_LOG)
                .unwrap()
                .insert(4, row.as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert!(consensus_path(&path).exists());
        assert_eq!(store.meta("hotstuff/safety").unwrap(), Some(vec![1, 2, 3]));
        let rows = store.log_rows().unwrap();
        assert_eq!((rows.len(), rows[0].index, rows[0].term), (1, 4, 7));
        // Gone from the chain file, so the moved copy is the only one.
        let left = store
            .read(|tx| Ok(tx.open_table(META)?.get("hotstuff/safety")?.is_some()))
            .unwrap();
        assert!(!left);
        drop(store);
        let again = RedbStore::open(&path).unwrap();
        assert_eq!(again.meta("hotstuff/safety").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(again.log_rows().unwrap().len(), 1);
    }
}
