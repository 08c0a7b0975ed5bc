//! [`RedbStore`]: the durable [`ledger::Store`] on redb.
//!
//! Why redb: pure Rust (no C toolchain, no bindgen), ACID with copy-on-write B-trees, and a
//! commit with the default `Durability::Immediate` is fsynced before it returns, so "commit
//! returned" means "on disk". One write transaction per block writes the block, its hash
//! index, its receipts and the changed accounts together: a crash leaves all or nothing.
//! Values are Cairn's canonical encoding ([`crypto::codec`]), decoded with size limits.
//!
//! A store is three redb files, so that their writes never wait for each other (redb allows
//! one write transaction per file at a time):
//! - the chain file (`store.redb`): blocks, accounts, the receipts journal, the genesis hash
//!   and evidence, written by the store stage ([`RedbStore::commit_executed`], several blocks
//!   per fsync under load);
//! - the index file (`store-index.redb`): transaction hash → record, written in sorted
//!   batches by the indexer thread ([`index`]);
//! - the consensus file (`store-consensus.redb` beside it): safety records and Raft's log,
//!   written by the consensus loop before the votes that depend on them leave
//!   ([`RedbStore::write_durable`]). A store from before the split has its safety records and
//!   log moved into it when it is first opened.

use crypto::{Digest, codec};
use ledger::validators::ValidatorState;
use ledger::{
    Account, Address, Block, Store, StoreError, TxRecord, check_genesis, check_next_height,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

mod epochs;
pub use epochs::{MAX_LINK_BYTES, MAX_LINKS_PER_READ};
pub mod index;
mod log;
mod migrate;
pub use log::{DurableOp, LogRow};
mod prune;
pub mod tree;
pub use index::TxIndex;
use index::{RECEIPTS, TXS};
pub use prune::{BLOCKS_PER_STEP, Floors, PruneStep, STALE_PER_STEP};
use std::path::Path;
use std::sync::Arc;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_HEIGHTS: TableDefinition<[u8; 32], u64> = TableDefinition::new("block_heights");
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
/// Header certificates (encoded `consensus::attest::HeaderCert`) by height: 2f+1 validators'
/// signatures on the header this store holds at that height (see [`RedbStore::header_cert`]).
const HEADER_CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("header_certs");
/// Every validator state a block produced (encoded `ledger::validators::ValidatorState`), by
/// that block's height; genesis at 0. Never pruned: old certificates are checked against it.
const VALIDATORS: TableDefinition<u64, &[u8]> = TableDefinition::new("validator_states");

const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Clones share the two databases: any number of concurrent readers (each read is its own
/// redb read transaction) alongside one writer per file.
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Database>,
    consensus: Arc<Database>,
    /// The transaction index, in its own file and partly in memory ([`index`]).
    index: TxIndex,
}

/// The consensus file of the store at `path`: `NAME-consensus.redb` beside it.
pub fn consensus_path(path: &Path) -> std::path::PathBuf {
    sibling(path, "consensus")
}

/// `NAME-part.redb` beside the store file `path` (`NAME.redb`).
fn sibling(path: &Path, part: &str) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    path.with_file_name(format!("{stem}-{part}.redb"))
}

impl RedbStore {
    /// Opens (or creates) the store at `path` (and its consensus file beside it, see
    /// [`consensus_path`]), creating parent folders, with a 64 MiB page cache for the chain
    /// file.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        Self::open_with_cache(path, 64 << 20)
    }

    /// [`RedbStore::open`] with the chain file's page cache of `cache_bytes` (redb's
    /// default, 1 GiB, would let memory grow with the state). The consensus file and the
    /// index get 16 MiB each.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<RedbStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::new(&format!("creating data folder {}", dir.display()), e)
            })?;
        }
        let open = |p: &Path, cache: u64| {
            Database::builder()
                .set_cache_size(cache as usize)
                .create(p)
                .map(Arc::new)
                .map_err(|e| StoreError::new(&format!("opening database {}", p.display()), e))
        };
        let db = open(path, cache_bytes)?;
        let consensus = open(&consensus_path(path), 16 << 20)?;
        // The chain file's tables first: the index reads the journal when it opens.
        let tables = |tx: &redb::WriteTransaction| -> Result<(), redb::Error> {
            tx.open_table(RECEIPTS)?;
            tx.open_table(BLOCKS)?;
            tx.open_table(BLOCK_HEIGHTS)?;
            tx.open_table(TXS)?;
            tx.open_table(ACCOUNTS)?;
            tx.open_table(META)?;
            tx.open_table(RAFT_LOG)?;
            tx.open_table(EVIDENCE)?;
            tree::open_tables(tx)?;
            tx.open_table(HEADER_CERTS)?;
            tx.open_table(VALIDATORS)?;
            tx.open_table(epochs::EPOCH_LINKS)?;
            tx.open_table(prune::FLOORS)?;
            Ok(())
        };
        write_in(&db, "chain file", tables)?;
        // A store from before epoch links were kept: link the boundaries it holds.
        write_in(&db, "chain file", epochs::link_stored_boundaries)?;
        let index = TxIndex::open(&index::index_path(path), &db)?;
        let store = RedbStore {
            db,
            consensus,
            index,
        };
        store.write_consensus(|tx| {
            tx.open_table(META)?;
            tx.open_table(RAFT_LOG)?;
            Ok(())
        })?;
        store.move_consensus_state()?;
        Ok(store)
    }

    /// The transaction index (its indexer thread is started by the validator).
    pub fn tx_index(&self) -> &TxIndex {
        &self.index
    }

    /// Durably stores executed blocks, in height order, in one write transaction (one fsync
    /// for all of them): the store stage's group commit. The first must follow the stored
    /// height; each the one before. Each block's receipts go into the journal row of the
    /// transaction index ([`index`]), which the indexer moves into the index file later.
    pub fn commit_executed(&self, blocks: &[ledger::Executed]) -> Result<(), StoreError> {
        self.commit_with_certs(blocks, &[])
    }

    /// [`RedbStore::commit_executed`], writing header certificates (height, encoded
    /// certificate) in the same transaction. With no block, writes the certificates alone.
    pub fn commit_with_certs(
        &self,
        blocks: &[ledger::Executed],
        certs: &[(u64, Vec<u8>)],
    ) -> Result<(), StoreError> {
        if self.index.unflushed() > index::MAX_UNFLUSHED {
            // The indexer fell far behind (or is not running): move the records now, so
            // memory stays bounded.
            self.index.flush()?;
        }
        let mut encoded = Vec::with_capacity(blocks.len());
        let stored = if blocks.is_empty() { 0 } else { self.height()? };
        for (height, b) in (stored..).zip(blocks) {
            check_next_height(height, &b.block)?;
            encoded.push((
                b.block.encode(),
                codec::encode(&b.receipts),
                b.validators.as_ref().map(codec::encode),
            ));
        }
        let indexed = self.index.indexed_height();
        // Heights that may complete an epoch link: a block that starts an epoch, or a
        // certificate (its block's set is looked up in the transaction).
        let boundaries: Vec<u64> = blocks
            .iter()
            .filter(|b| b.validators.as_ref().is_some_and(|v| v.epoch > 0))
            .map(|b| b.block.header.height)
            .chain(certs.iter().map(|(h, _)| *h))
            .collect();
        // Lookups wait from before the write until its records are remembered: the accounts
        // and the transactions that changed them become visible together.
        let mut held = self.index.hold()?;
        self.write(|tx| {
            let mut table = tx.open_table(BLOCKS)?;
            let mut heights = tx.open_table(BLOCK_HEIGHTS)?;
            let mut journal = tx.open_table(RECEIPTS)?;
            let mut accts = tx.open_table(ACCOUNTS)?;
            let mut sets = tx.open_table(VALIDATORS)?;
            for (b, (bytes, receipts, set)) in blocks.iter().zip(&encoded) {
                let h = b.block.header.height;
                table.insert(h, bytes.as_slice())?;
                heights.insert(b.block.hash().0, h)?;
                journal.insert(h, receipts.as_slice())?;
                for (a, acc) in &b.changed {
                    accts.insert(a.0, (acc.balance, acc.nonce))?;
                }
                if let Some(set) = set {
                    sets.insert(h, set.as_slice())?;
                }
                tree::put_tree(tx, &b.tree)?;
            }
            // Rows the index file now holds.
            journal.retain_in(..=indexed, |_, _| false)?;
            let mut cert_table = tx.open_table(HEADER_CERTS)?;
            for (h, c) in certs {
                cert_table.insert(*h, c.as_slice())?;
            }
            drop((table, sets, cert_table));
            epochs::link_boundaries(tx, boundaries)
        })?;
        for b in blocks {
            held.remember(b.block.header.height, &b.receipts);
        }
        Ok(())
    }

    /// An account and the stored height it was read at, from one read transaction (the
    /// accounts table and the blocks move together).
    pub fn account_at_tip(&self, addr: &Address) -> Result<(Account, u64), StoreError> {
        self.read(|tx| {
            let height = tx
                .open_table(BLOCKS)?
                .last()?
                .map(|(k, _)| k.value())
                .unwrap_or(0);
            let account = tx.open_table(ACCOUNTS)?.get(addr.0)?.map(|v| {
                let (balance, nonce) = v.value();
                Account { balance, nonce }
            });
            Ok((account.unwrap_or_default(), height))
        })
    }

    /// The header certificate stored for `height` (encoded).
    pub fn header_cert(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .open_table(HEADER_CERTS)?
                .get(height)?
                .map(|v| v.value().to_vec()))
        })
    }

    /// The highest height at or below `at_most` that has a header certificate, with it.
    pub fn latest_header_cert(&self, at_most: u64) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(HEADER_CERTS)?;
            let last = t.range(..=at_most)?.next_back().transpose()?;
            Ok(last.map(|(k, v)| (k.value(), v.value().to_vec())))
        })
    }

    /// [`RedbStore::write`] on the consensus file.
    fn write_consensus(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        write_in(&self.consensus, "consensus file", f)
    }

    fn read_consensus<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        read_in(&self.consensus, "consensus file", f)
    }

    /// Runs `f` in one write transaction on the chain file and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        write_in(&self.db, "chain file", f)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        read_in(&self.db, "chain file", f)
    }
}

/// Runs `f` in one write transaction on `db` (named `file` in errors) and commits it
/// durably (fsynced before it returns).
fn write_in(
    db: &Database,
    file: &str,
    f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
) -> Result<(), StoreError> {
    let tx = db
        .begin_write()
        .map_err(|e| StoreError::new(&format!("begin write ({file})"), e))?;
    f(&tx).map_err(|e| StoreError::new(&format!("write ({file})"), e))?;
    tx.commit()
        .map_err(|e| StoreError::new(&format!("commit ({file})"), e))
}

/// Runs `f` in one read transaction on `db`.
fn read_in<T>(
    db: &Database,
    file: &str,
    f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
) -> Result<T, StoreError> {
    let tx = db
        .begin_read()
        .map_err(|e| StoreError::new(&format!("begin read ({file})"), e))?;
    f(&tx).map_err(|e| StoreError::new(&format!("read ({file})"), e))
}

impl Store for RedbStore {
    fn init_genesis(
        &mut self,
        genesis_hash: Digest,
        accounts: &[(Address, Account)],
        tree: &jmt::storage::TreeUpdateBatch,
        validators: &ValidatorState,
    ) -> Result<(), StoreError> {
        if check_genesis(self.genesis_hash()?, genesis_hash)? {
            return Ok(());
        }
        let set = codec::encode(validators);
        self.write(|tx| {
            let mut t = tx.open_table(ACCOUNTS)?;
            for (a, acc) in accounts {
                t.insert(a.0, (acc.balance, acc.nonce))?;
            }
            tree::put_tree(tx, tree)?;
            tx.open_table(VALIDATORS)?.insert(0, set.as_slice())?;
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

    fn commit_block(&mut self, executed: &ledger::Executed) -> Result<(), StoreError> {
        self.commit_executed(std::slice::from_ref(executed))
    }

    fn tree_node(
        &self,
        key: &jmt::storage::NodeKey,
    ) -> Result<Option<jmt::storage::Node>, StoreError> {
        self.tree().node(key)
    }

    fn tree_value(
        &self,
        max_version: jmt::Version,
        key: jmt::KeyHash,
    ) -> Result<Option<jmt::OwnedValue>, StoreError> {
        self.tree().value(max_version, key)
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

    fn validators_at(&self, height: u64) -> Result<Option<ValidatorState>, StoreError> {
        let raw = self.read(|tx| {
            let t = tx.open_table(VALIDATORS)?;
            let last = t.range(..=height)?.next_back().transpose()?;
            Ok(last.map(|(_, v)| v.value().to_vec()))
        })?;
        raw.map(|v| {
            codec::decode(&v, MAX_RECORD_BYTES, "validator state")
                .map_err(|e| StoreError::new("stored validator state", e))
        })
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

    /// The chain file's index of a store from before the index file, then the index
    /// ([`TxIndex::get`]).
    fn tx(&self, tx_hash: &Digest) -> Result<Option<TxRecord>, StoreError> {
        let legacy = self.read(|tx| {
            Ok(tx
                .open_table(TXS)?
                .get(tx_hash.0)?
                .map(|v| v.value().to_vec()))
        })?;
        self.index.get(legacy, tx_hash)
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
        tree: &jmt::storage::TreeUpdateBatch,
        validators: &ValidatorState,
    ) -> Result<(), StoreError> {
        let current = self.height()?;
        let set = codec::encode(validators);
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
            // The tree below the snapshot is unreachable from its root: a whole new one; no
            // certificate of an older height can be served with it.
            tree::clear_tree(tx)?;
            tx.open_table(HEADER_CERTS)?.retain(|_, _| false)?;
            // The sets below the snapshot are not known here (see `Store::validators_at`).
            let mut sets = tx.open_table(VALIDATORS)?;
            sets.retain(|_, _| false)?;
            sets.insert(height, set.as_slice())?;
            tree::put_tree(tx, tree)?;
            // Nothing below the snapshot is here, and its own block's transactions were
            // never indexed: lookups of those answer "pruned", never "unknown".
            prune::set_floors(tx, height, height + 1)?;
            Ok(())
        })
    }
}

impl RedbStore {
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
}

#[cfg(test)]
mod tests;
