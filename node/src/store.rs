//! [`RedbStore`]: the durable [`ledger::Store`] on redb.
//!
//! Why redb: pure Rust (no C toolchain, no bindgen), ACID with copy-on-write B-trees, and a
//! commit with the default `Durability::Immediate` is fsynced before it returns, so "commit
//! returned" means "on disk". One write transaction per block writes the block, its hash
//! index, its receipts and the changed accounts together: a crash leaves all or nothing.
//! Values are Cairn's canonical encoding ([`crypto::codec`]), decoded with size limits.

use crypto::{Digest, codec};
use ledger::{
    Account, Address, Block, Receipt, Store, StoreError, TxRecord, check_genesis, check_next_height,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
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
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Clones share one database: any number of concurrent readers (each read is its own redb
/// read transaction) alongside the one writer, the ledger.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
}

fn err(context: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::new(context, e)
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`, creating parent folders.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::new(&format!("creating data folder {}", dir.display()), e)
            })?;
        }
        let db = Database::create(path)
            .map_err(|e| StoreError::new(&format!("opening database {}", path.display()), e))?;
        let store = RedbStore { db: Arc::new(db) };
        store.write(|tx| {
            tx.open_table(BLOCKS)?;
            tx.open_table(BLOCK_HEIGHTS)?;
            tx.open_table(TXS)?;
            tx.open_table(ACCOUNTS)?;
            tx.open_table(META)?;
            tx.open_table(RAFT_LOG)?;
            tx.open_table(EVIDENCE)?;
            Ok(())
        })?;
        Ok(store)
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
        check_next_height(self.height()?, block)?;
        let height = block.header.height;
        let bytes = block.encode();
        self.write(|tx| {
            tx.open_table(BLOCKS)?.insert(height, bytes.as_slice())?;
            tx.open_table(BLOCK_HEIGHTS)?
                .insert(block.hash().0, height)?;
            let mut txs = tx.open_table(TXS)?;
            for (i, r) in receipts.iter().enumerate() {
                let rec = TxRecord {
                    height,
                    index: i as u32,
                    receipt: r.clone(),
                };
                // One B-tree walk in the common case; the first inclusion wins, so a
                // transaction included a second time gets its first record back.
                let earlier = txs
                    .insert(r.tx_hash.0, codec::encode(&rec).as_slice())?
                    .map(|old| old.value().to_vec());
                if let Some(first) = earlier {
                    txs.insert(r.tx_hash.0, first.as_slice())?;
                }
            }
            let mut accts = tx.open_table(ACCOUNTS)?;
            for (a, acc) in changed {
                accts.insert(a.0, (acc.balance, acc.nonce))?;
            }
            Ok(())
        })
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

    fn tx(&self, tx_hash: &Digest) -> Result<Option<TxRecord>, StoreError> {
        let raw = self.read(|tx| {
            Ok(tx
                .open_table(TXS)?
                .get(tx_hash.0)?
                .map(|v| v.value().to_vec()))
        })?;
        raw.map(|b| {
            codec::decode(&b, MAX_RECORD_BYTES, "tx record")
                .map_err(|e| StoreError::new("stored tx record", e))
        })
        .transpose()
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

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| Ok(tx.open_table(META)?.get(key)?.map(|v| v.value().to_vec())))
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(META)?.insert(key, value)?;
            Ok(())
        })
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
        self.write(|tx| {
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
        let raw: Vec<(u64, Vec<u8>)> = self.read(|tx| {
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

    /// The transaction index keeps a transaction's first inclusion: a second inclusion
    /// (skipped as a replay) never overwrites the record of the one that applied.
    #[test]
    fn the_index_keeps_the_first_inclusion() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("s.redb")).unwrap();
        let key = SecretKey::from_seed([5; 32]);
        let chain = ChainBinding {
            chain_id: "t".into(),
            genesis_hash: crypto::hash(b"g"),
        };
        let from = Address::of(&key.public());
        let mut l = Ledger::open(store, chain.clone(), &[(from, 100)]).unwrap();
        let to = Address([9; 20]);
        let tx = Transaction::sign(&key, &chain, 0, Payload::Transfer { to, amount: 5 });
        let other = Transaction::sign(&key, &chain, 1, Payload::Transfer { to, amount: 6 });
        let input = |txs: Vec<Transaction>| BlockInput {
            proposer: key.public(),
            view: 1,
            timestamp_ms: 0,
            txs,
            certificate: Vec::new(),
            batch_sizes: Vec::new(),
        };
        l.commit(input(vec![tx.clone()])).unwrap();
        let (_, again) = l.commit(input(vec![other.clone(), tx.clone()])).unwrap();
        assert!(again[1].outcome.is_err(), "the replay is skipped");
        let rec = l.store().tx(&tx.hash()).unwrap().unwrap();
        assert_eq!((rec.height, rec.index), (1, 0));
        assert!(rec.receipt.outcome.is_ok());
        let rec = l.store().tx(&other.hash()).unwrap().unwrap();
        assert_eq!((rec.height, rec.index), (2, 0));
    }
}
