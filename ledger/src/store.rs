//! The store interface and an in-memory implementation.
//!
//! # To ensure correctness (for every implementation)
//!
//! - [`Store::commit_block`] is atomic and durable: when it returns `Ok`, the block, its
//!   transaction index entries, the changed accounts and the account tree's new nodes and
//!   values are all on stable storage, and after a crash at any moment either all of them
//!   are present or none.
//! - The account tree holds a root at every height from genesis (version 0) to
//!   [`Store::height`], and `tree_node` / `tree_value` read it (see [`crate::tree`]).
//! - [`Store::put_meta`] is durable when it returns `Ok`. Consensus safety state goes through
//!   it, so a vote that depends on it may only be sent afterwards.
//! - The transaction index keeps the *first* inclusion of a hash: a later duplicate (which
//!   execution rejects with `NonceTooLow`, or, for an unsigned raw transaction, applies again
//!   with no effect) never overwrites a committed receipt.
//! - Blocks are committed at consecutive heights starting at 1.
//! - Every validator state a block produced ([`Executed::validators`]) is kept, with its
//!   height, in the same atomic write as the block, and is never pruned: old certificates
//!   are checked against it. Genesis writes the first at height 0.

use crate::Address;
use crate::block::Block;
use crate::ledger::Executed;
use crate::state::{Account, Receipt};
use crate::validators::ValidatorState;
use crypto::Digest;
use jmt::storage::{Node, NodeKey, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(context: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("{context}: {e}"))
    }
}

/// Where a transaction was committed, and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub height: u64,
    pub index: u32,
    pub receipt: Receipt,
}

/// Durable storage for blocks, the transaction index, accounts and metadata.
pub trait Store {
    /// Writes the genesis accounts, their tree (version 0), the genesis validator state (at
    /// height 0) and the genesis hash into an empty store. Fails if the store already holds
    /// a different genesis hash.
    fn init_genesis(
        &mut self,
        genesis_hash: Digest,
        accounts: &[(Address, Account)],
        tree: &TreeUpdateBatch,
        validators: &ValidatorState,
    ) -> Result<(), StoreError>;
    /// The validator state after block `height`: the newest stored at or below it (`None`
    /// below the first stored, e.g. under a state snapshot, or in a store from before
    /// validator states were recorded).
    fn validators_at(&self, height: u64) -> Result<Option<ValidatorState>, StoreError>;
    /// The genesis hash the store was initialised with, if any.
    fn genesis_hash(&self) -> Result<Option<Digest>, StoreError>;
    /// Atomically and durably stores an executed block at its height (which must be
    /// `height() + 1`), its receipts in the transaction index, the changed accounts and the
    /// tree's update.
    fn commit_block(&mut self, executed: &Executed) -> Result<(), StoreError>;
    /// Height of the last committed block; 0 when none.
    fn height(&self) -> Result<u64, StoreError>;
    fn block(&self, height: u64) -> Result<Option<Block>, StoreError>;
    fn height_of(&self, block_hash: &Digest) -> Result<Option<u64>, StoreError>;
    fn tx(&self, tx_hash: &Digest) -> Result<Option<TxRecord>, StoreError>;
    fn account(&self, addr: &Address) -> Result<Option<Account>, StoreError>;
    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError>;
    /// A node of the account tree.
    fn tree_node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError>;
    /// The newest value of a tree key at or below `max_version` (`None`: never written).
    fn tree_value(
        &self,
        max_version: Version,
        key: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError>;
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Durable when it returns.
    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Atomically and durably replaces the state with a snapshot taken at `block`'s height
    /// (Raft's InstallSnapshot): every account is replaced by `accounts`, the tree by `tree`
    /// (a whole tree built at that height), and `block`, which must be above
    /// [`Store::height`], becomes the last block. Blocks (and transaction records) between
    /// the old height and the snapshot are not stored here: queries for them find nothing.
    /// Stores that cannot hold a gap refuse. `validators` (the state after `block`) replaces
    /// the stored validator states: the history below the snapshot is not known here.
    fn install_snapshot(
        &mut self,
        block: &Block,
        accounts: &[(Address, Account)],
        tree: &TreeUpdateBatch,
        validators: &ValidatorState,
    ) -> Result<(), StoreError> {
        let _ = (block, accounts, tree, validators);
        Err(StoreError(
            "this store cannot install a state snapshot".into(),
        ))
    }
}

const GENESIS_KEY: &str = "genesis_hash";

/// In-memory [`Store`] for tests and the simulator. "Durable" means: survives as long as the
/// value does; the simulator models a crash by keeping the store and dropping everything else.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    /// By height; after a state snapshot the first is the snapshot's block.
    blocks: BTreeMap<u64, Block>,
    top: u64,
    by_hash: BTreeMap<Digest, u64>,
    txs: BTreeMap<Digest, TxRecord>,
    accounts: BTreeMap<Address, Account>,
    meta: BTreeMap<String, Vec<u8>>,
    nodes: BTreeMap<NodeKey, Node>,
    values: BTreeMap<(KeyHash, Version), Option<OwnedValue>>,
    validators: BTreeMap<u64, ValidatorState>,
}

impl MemStore {
    fn put_tree(&mut self, tree: &TreeUpdateBatch) {
        for (k, n) in tree.node_batch.nodes() {
            self.nodes.insert(k.clone(), n.clone());
        }
        for ((version, key), v) in tree.node_batch.values() {
            self.values.insert((*key, *version), v.clone());
        }
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }
}

/// Checks the height rule shared by every store.
pub fn check_next_height(current: u64, block: &Block) -> Result<(), StoreError> {
    if block.header.height != current + 1 {
        return Err(StoreError(format!(
            "block at height {} cannot follow height {current}",
            block.header.height
        )));
    }
    Ok(())
}

/// Checks a genesis hash against the stored one.
pub fn check_genesis(stored: Option<Digest>, given: Digest) -> Result<bool, StoreError> {
    match stored {
        None => Ok(false),
        Some(h) if h == given => Ok(true),
        Some(h) => Err(StoreError(format!(
            "this data directory belongs to genesis {h}, not {given}; use a fresh data directory \
             or the genesis file it was created with"
        ))),
    }
}

impl Store for MemStore {
    fn init_genesis(
        &mut self,
        genesis_hash: Digest,
        accounts: &[(Address, Account)],
        tree: &TreeUpdateBatch,
        validators: &ValidatorState,
    ) -> Result<(), StoreError> {
        if check_genesis(self.genesis_hash()?, genesis_hash)? {
            return Ok(());
        }
        self.accounts.extend(accounts.iter().copied());
        self.put_tree(tree);
        self.validators.insert(0, validators.clone());
        self.meta
            .insert(GENESIS_KEY.into(), genesis_hash.0.to_vec());
        Ok(())
    }

    fn genesis_hash(&self) -> Result<Option<Digest>, StoreError> {
        Ok(self.meta.get(GENESIS_KEY).map(|v| {
            let mut d = [0u8; 32];
            d.copy_from_slice(v);
            Digest(d)
        }))
    }

    fn commit_block(&mut self, executed: &Executed) -> Result<(), StoreError> {
        let Executed {
            block,
            receipts,
            changed,
            tree,
            validators,
        } = executed;
        check_next_height(self.top, block)?;
        self.put_tree(tree);
        let height = block.header.height;
        if let Some(v) = validators {
            self.validators.insert(height, v.clone());
        }
        for (i, r) in receipts.iter().enumerate() {
            self.txs.entry(r.tx_hash).or_insert_with(|| TxRecord {
                height,
                index: i as u32,
                receipt: r.clone(),
            });
        }
        self.accounts.extend(changed.iter().copied());
        self.by_hash.insert(block.hash(), height);
        self.blocks.insert(height, block.clone());
        self.top = height;
        Ok(())
    }

    fn height(&self) -> Result<u64, StoreError> {
        Ok(self.top)
    }

    fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        Ok(self.blocks.get(&height).cloned())
    }

    fn install_snapshot(
        &mut self,
        block: &Block,
        accounts: &[(Address, Account)],
        tree: &TreeUpdateBatch,
        validators: &ValidatorState,
    ) -> Result<(), StoreError> {
        // Everything below the snapshot is gone, as in a store that installed one.
        self.blocks.clear();
        self.by_hash.clear();
        self.validators.clear();
        self.validators
            .insert(block.header.height, validators.clone());
        self.accounts = accounts.iter().copied().collect();
        self.put_tree(tree);
        let h = block.header.height;
        self.by_hash.insert(block.hash(), h);
        self.blocks.insert(h, block.clone());
        self.top = h;
        Ok(())
    }

    fn height_of(&self, block_hash: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self.by_hash.get(block_hash).copied())
    }

    fn validators_at(&self, height: u64) -> Result<Option<ValidatorState>, StoreError> {
        Ok(self
            .validators
            .range(..=height)
            .next_back()
            .map(|(_, v)| v.clone()))
    }

    fn tx(&self, tx_hash: &Digest) -> Result<Option<TxRecord>, StoreError> {
        Ok(self.txs.get(tx_hash).cloned())
    }

    fn account(&self, addr: &Address) -> Result<Option<Account>, StoreError> {
        Ok(self.accounts.get(addr).copied())
    }

    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        Ok(self.accounts.iter().map(|(a, b)| (*a, *b)).collect())
    }

    fn tree_node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        Ok(self.nodes.get(key).cloned())
    }

    fn tree_value(
        &self,
        max_version: Version,
        key: KeyHash,
    ) -> Result<Option<OwnedValue>, StoreError> {
        Ok(self
            .values
            .range((key, 0)..=(key, max_version))
            .next_back()
            .and_then(|(_, v)| v.clone()))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.to_string(), value.to_vec());
        Ok(())
    }
}
