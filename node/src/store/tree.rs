//! The authenticated account tree (`ledger::tree`) in the chain file: its nodes by node key,
//! its values by (key hash, version) and the index of nodes each version made stale, so any
//! version's root, accounts and proofs are read from disk, and a restart opens the tree where
//! it was. The store stage writes a block's tree update in the block's own transaction
//! ([`put_tree`]). Layout and the steps still to come are in
//! `docs/design/authenticated-state.md`.
//!
//! Tables in `store.redb`:
//! - `jmt_nodes`: borsh(`NodeKey`) → borsh(`Node`); node keys are exact, so any encoding
//!   that is one-to-one serves point reads.
//! - `jmt_values`: (key hash, version) → the leaf value (36 bytes; empty for a deletion,
//!   which Cairn never writes); the newest at or below a version is one reverse range step.
//! - `jmt_stale`: (version that made it stale, borsh(`NodeKey`)) → (): the nodes a version
//!   replaced, kept so that pruning (issue 20) can delete versions below its window.

use super::{RedbStore, read_in};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use ledger::StoreError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::sync::Arc;

pub(super) const JMT_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
pub(super) const JMT_VALUES: TableDefinition<([u8; 32], u64), &[u8]> =
    TableDefinition::new("jmt_values");
pub(super) const JMT_STALE: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("jmt_stale");

/// Creates the tree's tables (reads of a fresh store then find them empty).
pub(super) fn open_tables(tx: &redb::WriteTransaction) -> Result<(), redb::Error> {
    tx.open_table(JMT_NODES)?;
    tx.open_table(JMT_VALUES)?;
    tx.open_table(JMT_STALE)?;
    Ok(())
}

/// Writes a tree update into `tx` (so it shares a transaction with the block it belongs to).
pub(super) fn put_tree(
    tx: &redb::WriteTransaction,
    batch: &TreeUpdateBatch,
) -> Result<(), redb::Error> {
    let mut nodes = tx.open_table(JMT_NODES)?;
    for (key, node) in batch.node_batch.nodes() {
        nodes.insert(encode(key).as_slice(), encode(node).as_slice())?;
    }
    let mut values = tx.open_table(JMT_VALUES)?;
    for ((version, key), value) in batch.node_batch.values() {
        let bytes = value.as_deref().unwrap_or_default();
        values.insert((key.0, *version), bytes)?;
    }
    let mut stale = tx.open_table(JMT_STALE)?;
    for s in &batch.stale_node_index_batch {
        stale.insert((s.stale_since_version, encode(&s.node_key).as_slice()), ())?;
    }
    Ok(())
}

/// Empties the tree (a state snapshot replaces it whole).
pub(super) fn clear_tree(tx: &redb::WriteTransaction) -> Result<(), redb::Error> {
    tx.open_table(JMT_NODES)?.retain(|_, _| false)?;
    tx.open_table(JMT_VALUES)?.retain(|_, _| false)?;
    tx.open_table(JMT_STALE)?.retain(|_, _| false)?;
    Ok(())
}

pub(super) fn encode<T: borsh::BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encodes into a Vec without failing")
}

pub(super) fn decode_node(bytes: &[u8]) -> Result<Node, StoreError> {
    borsh::from_slice(bytes)
        .map_err(|e| StoreError::new("store.redb: jmt_nodes: a node does not decode", e))
}

impl RedbStore {
    /// Writes a tree update durably, in its own transaction.
    pub fn write_tree(&self, batch: &TreeUpdateBatch) -> Result<(), StoreError> {
        super::write_in(&self.db, "store.redb", |tx| put_tree(tx, batch))
    }

    /// A reader of the tree in the chain file (each read is its own read transaction).
    pub fn tree(&self) -> TreeView {
        TreeView {
            db: self.db.clone(),
        }
    }

    /// A reader of the tree as it is now, all reads from one read transaction: proofs are
    /// built from it, so no concurrent write can change a node under one.
    pub fn tree_snapshot(&self) -> Result<TreeSnapshot, StoreError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| StoreError::new("begin read (store.redb)", e))?;
        let open = |e| StoreError::new("read (store.redb)", e);
        let floor = tx
            .open_table(super::prune::FLOORS)
            .map_err(open)
            .and_then(|m| {
                super::prune::read_u64(&m, super::prune::HISTORY_FLOOR)
                    .map_err(|e| StoreError::new("read (store.redb)", e))
            })?;
        Ok(TreeSnapshot {
            nodes: tx.open_table(JMT_NODES).map_err(open)?,
            values: tx.open_table(JMT_VALUES).map_err(open)?,
            floor,
        })
    }
}

/// `jmt`'s reader over the chain file.
#[derive(Clone)]
pub struct TreeView {
    db: Arc<Database>,
}

impl TreeView {
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        read_in(&self.db, "store.redb", f)
    }

    /// A node, if stored.
    pub fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        let key = encode(key);
        let bytes = self.read(|tx| {
            let Some(t) = missing_is_empty(tx.open_table(JMT_NODES))? else {
                return Ok(None);
            };
            Ok(t.get(key.as_slice())?.map(|v| v.value().to_vec()))
        })?;
        bytes.map(|b| decode_node(&b)).transpose()
    }

    /// The newest value of `key` at or below `max_version`.
    pub fn value(
        &self,
        max_version: Version,
        key: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        self.read(|tx| {
            let Some(t) = missing_is_empty(tx.open_table(JMT_VALUES))? else {
                return Ok(None);
            };
            newest_value(&t, max_version, key)
        })
    }
}

fn newest_value(
    t: &impl ReadableTable<([u8; 32], u64), &'static [u8]>,
    max_version: Version,
    key: KeyHash,
) -> Result<Option<OwnedValue>, redb::Error> {
    let newest = t
        .range((key.0, 0)..=(key.0, max_version))?
        .next_back()
        .transpose()?;
    Ok(newest.and_then(|(_, v)| {
        let v = v.value();
        (!v.is_empty()).then(|| v.to_vec())
    }))
}

/// A table not created yet reads as empty.
fn missing_is_empty<T>(r: Result<T, redb::TableError>) -> Result<Option<T>, redb::Error> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl TreeReader for TreeView {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.node(node_key)?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.value(max_version, key_hash)?)
    }

    /// Used only to resume an interrupted restore (state sync, not built yet): a full scan.
    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        let mut best: Option<(NodeKey, LeafNode)> = None;
        let rows = self.read(|tx| {
            let Some(t) = missing_is_empty(tx.open_table(JMT_NODES))? else {
                return Ok(Vec::new());
            };
            let mut rows = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(rows)
        })?;
        for (k, v) in rows {
            if let Node::Leaf(leaf) = decode_node(&v)?
                && best
                    .as_ref()
                    .is_none_or(|(_, b)| leaf.key_hash() > b.key_hash())
            {
                best = Some((borsh::from_slice(&k)?, leaf));
            }
        }
        Ok(best)
    }
}

/// See [`RedbStore::tree_snapshot`].
pub struct TreeSnapshot {
    nodes: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    values: redb::ReadOnlyTable<([u8; 32], u64), &'static [u8]>,
    /// The history floor as of this snapshot: versions below it are pruned (and proving
    /// at one would meet missing nodes).
    pub floor: u64,
}

impl TreeReader for TreeSnapshot {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let bytes = self.nodes.get(encode(node_key).as_slice())?;
        Ok(bytes.map(|b| decode_node(b.value())).transpose()?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(newest_value(&self.values, max_version, key_hash)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("a tree snapshot does not resume restores")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::tree::{self, MemTreeStore};
    use ledger::{Account, Address};

    fn blocks() -> Vec<Vec<(Address, Account)>> {
        let addr = |i: u32| {
            let mut a = [7u8; 20];
            a[..4].copy_from_slice(&i.to_le_bytes());
            Address(a)
        };
        let acct = |b: u64, n: u64| Account {
            balance: b,
            nonce: n,
        };
        vec![
            (0..300).map(|i| (addr(i), acct(1_000, 0))).collect(),
            vec![(addr(5), acct(900, 1)), (addr(300), acct(100, 0))],
            vec![],
            (0..40)
                .map(|i| (addr(i * 7), acct(500 + u64::from(i), 2)))
                .collect(),
        ]
    }

    /// The tree on redb gives the in-memory tree's roots at every version, survives a
    /// reopen, and proves accounts and absences at old versions from disk.
    #[test]
    fn the_tree_on_redb_matches_memory_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let mem = MemTreeStore::default();
        let mut roots = Vec::new();
        {
            let store = RedbStore::open(&path).unwrap();
            let view = store.tree();
            for (v, changed) in blocks().iter().enumerate() {
                let (root, batch) = tree::update(&view, v as u64, changed).unwrap();
                store.write_tree(&batch).unwrap();
                let (mem_root, mem_batch) = tree::update(&mem, v as u64, changed).unwrap();
                mem.write(&mem_batch);
                assert_eq!(root, mem_root, "version {v}");
                roots.push(root);
            }
        }
        let store = RedbStore::open(&path).unwrap();
        let view = store.tree();
        let mut expected = std::collections::BTreeMap::new();
        for (v, changed) in blocks().iter().enumerate() {
            expected.extend(changed.iter().copied());
            assert_eq!(tree::root(&view, v as u64).unwrap(), roots[v]);
            for (a, _) in blocks()[0].iter().take(20).chain(&blocks()[1]) {
                let p = tree::prove(&view, a, v as u64).unwrap();
                assert_eq!(p.verify(roots[v], a).unwrap(), expected.get(a).copied());
            }
        }
        let nobody = Address([0xee; 20]);
        let p = tree::prove(&view, &nobody, 3).unwrap();
        assert_eq!(p.verify(roots[3], &nobody).unwrap(), None);
        assert!(view.get_rightmost_leaf().unwrap().is_some());
    }

    /// A fresh store reads as an empty tree: no root yet, no values.
    #[test]
    fn a_fresh_store_has_no_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
        let view = store.tree();
        assert!(tree::root(&view, 0).is_err());
        assert_eq!(view.get_value_option(10, KeyHash([1; 32])).unwrap(), None);
        assert!(view.get_rightmost_leaf().unwrap().is_none());
    }
}
