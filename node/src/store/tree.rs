//! The authenticated account tree (`ledger::tree`) in the chain file (issue 19, second step;
//! not yet written by the store stage): its nodes by node key and its values by (key hash,
//! version), so any version's root, accounts and proofs are read from disk, and a restart
//! opens the tree where it was. Layout and the steps still to come are in
//! `docs/design/authenticated-state.md`.
//!
//! Tables in `store.redb`:
//! - `jmt_nodes`: borsh(`NodeKey`) → borsh(`Node`); node keys are exact, so any encoding
//!   that is one-to-one serves point reads.
//! - `jmt_values`: (key hash, version) → the leaf value (36 bytes; empty for a deletion,
//!   which Cairn never writes); the newest at or below a version is one reverse range step.

use super::{RedbStore, read_in, write_in};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use ledger::StoreError;
use redb::{Database, ReadableTable, TableDefinition};
use std::sync::Arc;

const JMT_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
const JMT_VALUES: TableDefinition<([u8; 32], u64), &[u8]> = TableDefinition::new("jmt_values");

/// Writes a tree update into `tx` (so it can share a transaction with the block it belongs
/// to).
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
    Ok(())
}

fn encode<T: borsh::BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encodes into a Vec without failing")
}

impl RedbStore {
    /// Writes a tree update durably, in its own transaction.
    pub fn write_tree(&self, batch: &TreeUpdateBatch) -> Result<(), StoreError> {
        write_in(&self.db, "store.redb", |tx| put_tree(tx, batch))
    }

    /// A reader of the tree in the chain file (each read is its own read transaction).
    pub fn tree(&self) -> TreeView {
        TreeView {
            db: self.db.clone(),
        }
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
    ) -> anyhow::Result<T> {
        Ok(read_in(&self.db, "store.redb", f)?)
    }
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
        let key = encode(node_key);
        let bytes = self.read(|tx| {
            let Some(t) = missing_is_empty(tx.open_table(JMT_NODES))? else {
                return Ok(None);
            };
            Ok(t.get(key.as_slice())?.map(|v| v.value().to_vec()))
        })?;
        match bytes {
            None => Ok(None),
            Some(b) => Ok(Some(borsh::from_slice(&b).map_err(|e| {
                anyhow::anyhow!("store.redb: jmt_nodes: a node does not decode ({e})")
            })?)),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        self.read(|tx| {
            let Some(t) = missing_is_empty(tx.open_table(JMT_VALUES))? else {
                return Ok(None);
            };
            let newest = t
                .range((key_hash.0, 0)..=(key_hash.0, max_version))?
                .next_back()
                .transpose()?;
            Ok(newest.and_then(|(_, v)| {
                let v = v.value();
                (!v.is_empty()).then(|| v.to_vec())
            }))
        })
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
            if let Node::Leaf(leaf) = borsh::from_slice::<Node>(&v)?
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
