//! The ledger's view of the state (issue 19): accounts and tree nodes of blocks executed but
//! not yet stored (the overlay), then bounded caches, then the store. Memory is the overlay
//! (at most the store stage's backlog of blocks) plus the caches' configured bytes; the
//! number of accounts does not enter it.
//!
//! # Why no read can be stale
//! Reads consult the overlay first. A block leaves the overlay only in [`StateView::stored`],
//! which the owner calls after the store returned from writing it; so a value either comes
//! from the overlay or the store already holds every block that changed it. Values put into
//! the caches are the newest ones at the moment (the overlay's when a block leaves it, the
//! store's otherwise), and nodes never change once written (a node key names its version).

use crate::store::{Store, StoreError};
use crate::{Account, Address};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Version};
use quick_cache::Weighter;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::hash::BuildHasherDefault;

/// Default for [`StateView::new`]'s cache budget: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// A fixed-key hasher: cache placement must not depend on unseeded randomness.
type Fixed = BuildHasherDefault<DefaultHasher>;

type Cache<K, V, W> = quick_cache::sync::Cache<K, V, W, Fixed>;

/// Approximate bytes an account entry holds in the cache (key, value, bookkeeping).
#[derive(Clone, Copy)]
struct AccountWeight;
impl Weighter<Address, Account> for AccountWeight {
    fn weight(&self, _: &Address, _: &Account) -> u64 {
        96
    }
}

/// Approximate bytes of a decoded node: a leaf, or an internal node by its children.
#[derive(Clone, Copy)]
struct NodeWeight;
impl Weighter<NodeKey, Node> for NodeWeight {
    fn weight(&self, _: &NodeKey, node: &Node) -> u64 {
        match node {
            Node::Internal(n) => 128 + 64 * n.children_sorted().count() as u64,
            _ => 160,
        }
    }
}

/// One executed block the store has not written yet.
struct Pending {
    height: u64,
    accounts: Vec<(Address, Account)>,
    nodes: Vec<NodeKey>,
}

/// The overlay and the caches. See the module comment.
pub struct StateView {
    pending: VecDeque<Pending>,
    /// Newest value of every account an unstored block changed, with that block's height.
    accounts: BTreeMap<Address, (u64, Account)>,
    /// Every node an unstored block wrote.
    nodes: BTreeMap<NodeKey, Node>,
    account_cache: Cache<Address, Account, AccountWeight>,
    node_cache: Cache<NodeKey, Node, NodeWeight>,
    cache_bytes: u64,
}

impl StateView {
    /// A view with no unstored block, whose caches together hold about `cache_bytes` (a
    /// quarter for accounts, the rest for tree nodes).
    pub fn new(cache_bytes: u64) -> StateView {
        let accounts = cache_bytes / 4;
        let nodes = cache_bytes - accounts;
        StateView {
            pending: VecDeque::new(),
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            account_cache: Cache::with(
                (accounts / 96).max(16) as usize,
                accounts.max(1),
                AccountWeight,
                Fixed::default(),
                Default::default(),
            ),
            node_cache: Cache::with(
                (nodes / 512).max(16) as usize,
                nodes.max(1),
                NodeWeight,
                Fixed::default(),
                Default::default(),
            ),
            cache_bytes,
        }
    }

    /// The configured cache budget.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Approximate bytes the caches hold now (at most [`StateView::cache_bytes`]).
    pub fn cached_bytes(&self) -> u64 {
        self.account_cache.weight() + self.node_cache.weight()
    }

    /// Blocks executed and not yet reported stored.
    pub fn unstored(&self) -> usize {
        self.pending.len()
    }

    /// `addr`'s account as of the last executed block.
    pub fn account<S: Store>(&self, store: &S, addr: &Address) -> Result<Account, StoreError> {
        if let Some((_, a)) = self.accounts.get(addr) {
            return Ok(*a);
        }
        if let Some(a) = self.account_cache.get(addr) {
            return Ok(a);
        }
        let a = store.account(addr)?.unwrap_or_default();
        self.account_cache.insert(*addr, a);
        Ok(a)
    }

    /// `jmt`'s reader over the overlay, the node cache and `store`.
    pub fn reader<'a, S: Store>(&'a self, store: &'a S) -> ViewReader<'a, S> {
        ViewReader { view: self, store }
    }

    /// Records a block executed at `height` (the next after the last one recorded).
    pub fn push(&mut self, height: u64, changed: &[(Address, Account)], tree: &TreeUpdateBatch) {
        for (a, acct) in changed {
            self.accounts.insert(*a, (height, *acct));
        }
        let mut nodes = Vec::with_capacity(tree.node_batch.nodes().len());
        for (k, n) in tree.node_batch.nodes() {
            self.nodes.insert(k.clone(), n.clone());
            nodes.push(k.clone());
        }
        self.pending.push_back(Pending {
            height,
            accounts: changed.to_vec(),
            nodes,
        });
    }

    /// The store now holds every block up to `height`: they leave the overlay, and what they
    /// wrote goes into the caches.
    pub fn stored(&mut self, height: u64) {
        while self.pending.front().is_some_and(|p| p.height <= height) {
            let p = self.pending.pop_front().expect("checked above");
            for (a, acct) in p.accounts {
                // A later unstored block may have changed the account again: keep its value.
                if self.accounts.get(&a).is_some_and(|(h, _)| *h == p.height) {
                    self.accounts.remove(&a);
                }
                self.account_cache.insert(a, acct);
            }
            for k in p.nodes {
                if let Some(n) = self.nodes.remove(&k) {
                    self.node_cache.insert(k, n);
                }
            }
        }
    }

    /// Forgets everything: the overlay (its blocks will not be stored) and the caches. After
    /// a state snapshot replaced the store's state.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.accounts.clear();
        self.nodes.clear();
        self.account_cache.clear();
        self.node_cache.clear();
    }
}

/// See [`StateView::reader`]. Reads values from the store only: `jmt` reads values for
/// `get` and proofs, which the ledger asks only at stored versions, never while updating.
pub struct ViewReader<'a, S> {
    view: &'a StateView,
    store: &'a S,
}

impl<S: Store> TreeReader for ViewReader<'_, S> {
    fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if let Some(n) = self.view.nodes.get(key) {
            return Ok(Some(n.clone()));
        }
        if let Some(n) = self.view.node_cache.get(key) {
            return Ok(Some(n));
        }
        let n = self.store.tree_node(key)?;
        if let Some(n) = &n {
            self.view.node_cache.insert(key.clone(), n.clone());
        }
        Ok(n)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.store.tree_value(max_version, key)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("the ledger's view does not resume restores")
    }
}

/// `jmt`'s reader straight over a store (proofs and snapshots at stored versions).
pub struct StoreReader<'a, S>(pub &'a S);

impl<S: Store> TreeReader for StoreReader<'_, S> {
    fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.0.tree_node(key)?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.0.tree_value(max_version, key)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("a store reader does not resume restores")
    }
}

/// A reader of an empty tree whose last root is at `version`: builds a whole new tree at
/// `version + 1` (a state snapshot installed above the stored tree).
pub struct FreshTree(pub Version);

impl TreeReader for FreshTree {
    fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok((key.version() == self.0 && key.nibble_path().num_nibbles() == 0).then_some(Node::Null))
    }

    fn get_value_option(&self, _: Version, _: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        Ok(None)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(None)
    }
}
