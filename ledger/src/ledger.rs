//! [`Ledger`]: state plus store, turning ordered batches into committed, hash-linked blocks.

use crate::Address;
use crate::block::{Block, BlockHeader};
use crate::state::{Account, GovernanceCtx, Receipt, State};
use crate::store::{Store, StoreError};
use crate::tree::{self, TreeError};
use crate::tx::{ChainBinding, Payload, Transaction};
use crate::validators::{Governance, ValidatorState};
use crate::view::{FreshTree, StateView, StoreReader};
use crypto::{Digest, PublicKey};
use jmt::storage::TreeUpdateBatch;
use std::collections::BTreeMap;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored state is inconsistent: {0}")]
    Corrupt(String),
    #[error("a previous commit failed; reopen the ledger from its store")]
    Poisoned,
    #[error("snapshot refused: {0}")]
    Snapshot(String),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// What consensus decided: the proposer, view and batch of one block, and its proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInput {
    pub proposer: PublicKey,
    pub view: u64,
    pub timestamp_ms: u64,
    pub txs: Vec<Transaction>,
    pub certificate: Vec<u8>,
    /// See [`Block::batch_sizes`].
    pub batch_sizes: Vec<u32>,
}

impl BlockInput {
    /// What re-executes `block`: its proposer, view, timestamp, transactions, certificate and
    /// batch sizes (a replica that copies a committed block from a peer, a replay check).
    pub fn of(block: &Block) -> BlockInput {
        BlockInput {
            proposer: block.header.proposer,
            view: block.header.view,
            timestamp_ms: block.header.timestamp_ms,
            txs: block.txs.clone(),
            certificate: block.certificate.clone(),
            batch_sizes: block.batch_sizes.clone(),
        }
    }
}

/// A block executed in memory by [`Ledger::execute_checked`], with what its durable write
/// needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    pub block: Block,
    pub receipts: Vec<Receipt>,
    /// The accounts the block changed, with their new values.
    pub changed: Vec<(Address, Account)>,
    /// The account tree's new nodes and values at this height.
    pub tree: TreeUpdateBatch,
    /// The validator state after this block, if the block changed it (accepted a change,
    /// or ended an epoch); stored with the block.
    pub validators: Option<ValidatorState>,
}

/// A state snapshot: the block at a height and every account after it.
pub type Snapshot = (Block, Vec<(Address, Account)>);

/// The ledger of one replica. Every replica that commits the same inputs in the same order
/// builds the same blocks (same hashes) and the same state root.
///
/// The state is not held in memory: accounts and tree nodes are read from the store through
/// a [`StateView`] (the blocks executed but not stored yet, then bounded caches), so memory
/// does not grow with the number of accounts, and opening a ledger reads one tree root.
pub struct Ledger<S: Store> {
    store: S,
    view: StateView,
    chain: ChainBinding,
    height: u64,
    tip: Digest,
    /// The account tree's root at `height` (the last header's `state_root`).
    root: Digest,
    /// The validator state after `height`, and its hash (the last header's `validators`).
    validators: ValidatorState,
    validators_hash: Digest,
    /// How the set may change; `None`: every change is refused.
    governance: Option<Governance>,
    poisoned: bool,
}

/// What an empty store starts from: the genesis accounts and validator set; and how the set
/// may change ([`Ledger::open_genesis`]).
#[derive(Clone, Debug, Default)]
pub struct LedgerGenesis {
    pub accounts: Vec<(Address, u64)>,
    pub validators: ValidatorState,
    pub governance: Option<Governance>,
}

impl<S: Store> Ledger<S> {
    /// Opens a ledger over `store` with the default cache budget
    /// ([`crate::view::DEFAULT_CACHE_BYTES`]), no validator set and no set changes: for
    /// tools and tests that execute transfers only; see [`Ledger::open_genesis`].
    pub fn open(
        store: S,
        chain: ChainBinding,
        genesis_accounts: &[(Address, u64)],
    ) -> Result<Self, LedgerError> {
        Self::open_with_cache(
            store,
            chain,
            genesis_accounts,
            crate::view::DEFAULT_CACHE_BYTES,
        )
    }

    /// [`Ledger::open`] with a cache budget.
    pub fn open_with_cache(
        store: S,
        chain: ChainBinding,
        genesis_accounts: &[(Address, u64)],
        cache_bytes: u64,
    ) -> Result<Self, LedgerError> {
        let genesis = LedgerGenesis {
            accounts: genesis_accounts.to_vec(),
            ..LedgerGenesis::default()
        };
        Self::open_genesis(store, chain, &genesis, cache_bytes)
    }

    /// Opens a ledger over `store`: initialises an empty store with the genesis accounts,
    /// their tree and the genesis validator state, or checks that the stored tree's root at
    /// the stored height is the last block's state root and reads the stored validator state
    /// (one node read and one row: nothing is loaded or re-hashed). The caches of accounts
    /// and tree nodes hold about `cache_bytes`. `genesis.governance` applies either way.
    pub fn open_genesis(
        mut store: S,
        chain: ChainBinding,
        genesis: &LedgerGenesis,
        cache_bytes: u64,
    ) -> Result<Self, LedgerError> {
        if store.genesis_hash()?.is_none() {
            let mut accounts: Vec<(Address, Account)> = genesis
                .accounts
                .iter()
                .map(|(a, b)| {
                    (
                        *a,
                        Account {
                            balance: *b,
                            nonce: 0,
                        },
                    )
                })
                .collect();
            accounts.sort_by_key(|(a, _)| *a);
            accounts.dedup_by_key(|(a, _)| *a);
            let (_, tree) = tree::update(&FreshTree(0), 0, &accounts)?;
            store.init_genesis(chain.genesis_hash, &accounts, &tree, &genesis.validators)?;
        } else {
            crate::store::check_genesis(store.genesis_hash()?, chain.genesis_hash)?;
        }
        let height = store.height()?;
        if store.tree_node(&tree::root_key(height))?.is_none() {
            return Err(LedgerError::Corrupt(format!(
                "the store holds blocks up to height {height} but no account tree at that \
                 height: it was written by a Cairn from before the authenticated state tree \
                 (or lost its tree); start this validator from an empty data directory"
            )));
        }
        let root = tree::root(&StoreReader(&store), height)?;
        let validators = store.validators_at(height)?.ok_or_else(|| {
            LedgerError::Corrupt(format!(
                "the store holds no validator set at height {height}: it was written by a \
                 Cairn from before validator sets were recorded; start this validator from an \
                 empty data directory"
            ))
        })?;
        let validators_hash = validators.hash();
        let tip = if height == 0 {
            chain.genesis_hash
        } else {
            let last = store
                .block(height)?
                .ok_or_else(|| LedgerError::Corrupt(format!("block {height} missing")))?;
            if last.header.state_root != root {
                return Err(LedgerError::Corrupt(format!(
                    "the account tree's root {root} at height {height} is not block {height}'s \
                     state root {}",
                    last.header.state_root
                )));
            }
            if last.header.validators != validators_hash {
                return Err(LedgerError::Corrupt(format!(
                    "the stored validator set at height {height} hashes to {validators_hash}, \
                     not to block {height}'s validators {}",
                    last.header.validators
                )));
            }
            last.hash()
        };
        Ok(Ledger {
            store,
            view: StateView::new(cache_bytes),
            chain,
            height,
            tip,
            root,
            validators,
            validators_hash,
            governance: genesis.governance,
            poisoned: false,
        })
    }

    /// Executes `input.txs`, builds the next block and commits it durably. After an error the
    /// in-memory state may be ahead of the store, so the ledger refuses further work
    /// ([`LedgerError::Poisoned`]) until it is reopened.
    pub fn commit(&mut self, input: BlockInput) -> Result<(Block, Vec<Receipt>), LedgerError> {
        self.commit_checked(input, &[])
    }

    /// [`Ledger::commit`], where `checked[i]` says that transaction i's signature was already
    /// verified under the one rule (see [`State::execute_checked`]).
    pub fn commit_checked(
        &mut self,
        input: BlockInput,
        checked: &[bool],
    ) -> Result<(Block, Vec<Receipt>), LedgerError> {
        let executed = self.execute_checked(input, checked)?;
        self.store_executed(executed)
    }

    /// Writes a block this ledger just executed ([`Ledger::execute_checked`]) durably, as
    /// [`Ledger::commit`] does; on failure the ledger refuses further work until reopened.
    pub fn store_executed(
        &mut self,
        executed: Executed,
    ) -> Result<(Block, Vec<Receipt>), LedgerError> {
        if let Err(e) = self.store.commit_block(&executed) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.view.stored(executed.block.header.height);
        Ok((executed.block, executed.receipts))
    }

    /// Executes `input` and builds the next block in memory only: the state, height and tip
    /// move on, the store does not. The caller must make the returned block durable (with
    /// [`Store::commit_block`], in height order) before it tells anyone the block is
    /// committed; a crash before that loses only what consensus can deliver again. Used by
    /// the validator's pipeline, whose store stage writes blocks while the next executes.
    pub fn execute_checked(
        &mut self,
        input: BlockInput,
        checked: &[bool],
    ) -> Result<Executed, LedgerError> {
        self.execute_hashed(input, checked, &[])
    }

    /// [`Ledger::execute_checked`] with the transactions' hashes already known (see
    /// [`State::execute_hashed`]): the validator's pipeline hashes each transaction once.
    pub fn execute_hashed(
        &mut self,
        input: BlockInput,
        checked: &[bool],
        hashes: &[Digest],
    ) -> Result<Executed, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        let mut state = self
            .touched(&input.txs)
            .inspect_err(|_| self.poisoned = true)?;
        let height = self.height + 1;
        let mut gov = GovernanceCtx {
            current: &self.validators,
            settings: self.governance,
            height,
            accepted: None,
        };
        let exec = state.execute_governed(&self.chain, &input.txs, checked, hashes, Some(&mut gov));
        let mut next = gov.accepted;
        // The epoch's last block: the pending change takes effect after it.
        let ends_epoch = next
            .as_ref()
            .unwrap_or(&self.validators)
            .pending
            .as_ref()
            .is_some_and(|p| p.effective_after == height);
        if ends_epoch {
            let mut after = next.unwrap_or_else(|| self.validators.clone());
            after.after_block(height);
            next = Some(after);
        }
        let validators_hash = next.as_ref().map_or(self.validators_hash, |v| v.hash());
        let (root, tree) = tree::update(&self.view.reader(&self.store), height, &exec.changed)
            .inspect_err(|_| self.poisoned = true)?;
        // Receipts carry each transaction's hash, in order: the root reuses them rather than
        // hashing every transaction a second time.
        let hashes: Vec<Digest> = exec.receipts.iter().map(|r| r.tx_hash).collect();
        let header = BlockHeader {
            height,
            parent: self.tip,
            tx_root: crate::merkle_root(&hashes),
            state_root: root,
            validators: validators_hash,
            proposer: input.proposer,
            view: input.view,
            timestamp_ms: input.timestamp_ms,
        };
        let block = Block {
            header,
            txs: input.txs,
            certificate: input.certificate,
            batch_sizes: input.batch_sizes,
        };
        self.view.push(height, &exec.changed, &tree);
        self.height = height;
        self.tip = block.hash();
        self.root = root;
        if let Some(v) = &next {
            self.validators = v.clone();
            self.validators_hash = validators_hash;
        }
        Ok(Executed {
            block,
            receipts: exec.receipts,
            changed: exec.changed,
            tree,
            validators: next,
        })
    }

    /// The accounts `txs` can read, as of the last executed block: each transfer's sender and
    /// recipient. Execution runs over them alone.
    fn touched(&self, txs: &[Transaction]) -> Result<State, StoreError> {
        let mut accounts = BTreeMap::new();
        for tx in txs {
            let read = match &tx.body.payload {
                Payload::Transfer { to, .. } => [Some(tx.sender_address()), Some(*to)],
                Payload::Governance(_) => [Some(tx.sender_address()), None],
                Payload::Raw { .. } => [None, None],
            };
            for a in read.into_iter().flatten() {
                if let std::collections::btree_map::Entry::Vacant(e) = accounts.entry(a) {
                    e.insert(self.view.account(&self.store, &a)?);
                }
            }
        }
        Ok(State::new(accounts))
    }

    /// The store has made every block up to `height` durable (the validator's store stage
    /// reports it): they leave the in-memory overlay. Blocks written through
    /// [`Ledger::store_executed`] need no call.
    pub fn stored_up_to(&mut self, height: u64) {
        self.view.stored(height);
    }

    /// Marks the ledger unusable after its caller failed to store a block it executed: the
    /// state is ahead of the store until it is reopened.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Replaces the state with a snapshot of another replica's ledger at `block`'s height
    /// (Raft's InstallSnapshot, for a replica whose missing blocks were compacted away at
    /// the leader): `accounts` must hash to `block`'s state root, `validators` to its
    /// `validators`, and `block` must be above this ledger's height. The caller checks
    /// `block`'s certificate. Durable when it returns; the chain continues from `block`.
    pub fn install_snapshot(
        &mut self,
        block: Block,
        accounts: Vec<(Address, Account)>,
        validators: ValidatorState,
    ) -> Result<(), LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        let height = block.header.height;
        if height <= self.height {
            return Err(LedgerError::Snapshot(format!(
                "snapshot at height {height} is not above this ledger's height {}",
                self.height
            )));
        }
        if self.view.unstored() > 0 {
            return Err(LedgerError::Snapshot(format!(
                "{} executed blocks are not stored yet",
                self.view.unstored()
            )));
        }
        let validators_hash = validators.hash();
        if validators_hash != block.header.validators {
            return Err(LedgerError::Snapshot(format!(
                "the validator set given with the snapshot (epoch {}, hash {validators_hash}) \
                 is not block {height}'s validators {}",
                validators.epoch, block.header.validators
            )));
        }
        let mut accounts = accounts;
        accounts.sort_by_key(|(a, _)| *a);
        accounts.dedup_by_key(|(a, _)| *a);
        let (root, tree) = tree::update(&FreshTree(height - 1), height, &accounts)?;
        if root != block.header.state_root {
            return Err(LedgerError::Snapshot(format!(
                "the snapshot's {} accounts hash to {root}, not to block {height}'s state root {}",
                accounts.len(),
                block.header.state_root
            )));
        }
        if let Err(e) = self
            .store
            .install_snapshot(&block, &accounts, &tree, &validators)
        {
            self.poisoned = true;
            return Err(e.into());
        }
        self.view.clear();
        self.height = height;
        self.tip = block.hash();
        self.root = root;
        self.validators = validators;
        self.validators_hash = validators_hash;
        Ok(())
    }

    /// Every account at the stored height, with the block at that height (a state snapshot
    /// for a peer; `None` before the first block). Read by version from the tree, so blocks
    /// the store writes meanwhile do not change it.
    pub fn snapshot(&self) -> Result<Option<Snapshot>, LedgerError> {
        let height = self.store.height()?;
        if height == 0 {
            return Ok(None);
        }
        let block = self
            .store
            .block(height)?
            .ok_or_else(|| LedgerError::Corrupt(format!("block {height} missing")))?;
        let accounts = tree::accounts_at(std::sync::Arc::new(StoreReader(&self.store)), height)?;
        Ok(Some((block, accounts)))
    }

    /// `addr`'s account after the last executed block.
    pub fn account(&self, addr: &Address) -> Result<Account, LedgerError> {
        Ok(self.view.account(&self.store, addr)?)
    }

    /// [`Ledger::account`] for a hint that may not fail (the mempool's nonce checks): a
    /// store read error reads as the default account, which only makes the mempool keep a
    /// transaction execution will judge anyway.
    pub fn account_hint(&self, addr: &Address) -> Account {
        self.account(addr).unwrap_or_default()
    }

    /// The sum of all balances at the stored height (execution never changes it): a full
    /// scan of the store's accounts, for checkers and tools, not for a validator's hot path.
    pub fn total_supply(&self) -> Result<u128, LedgerError> {
        Ok(self
            .store
            .accounts()?
            .iter()
            .map(|(_, a)| u128::from(a.balance))
            .sum())
    }

    /// The account tree's root after the last executed block.
    pub fn state_root(&self) -> Digest {
        self.root
    }

    /// The validator state after the last executed block (its hash is that block's
    /// `validators`).
    pub fn validators(&self) -> &ValidatorState {
        &self.validators
    }

    /// The validator state after stored block `height` (see [`Store::validators_at`]).
    pub fn validators_at(&self, height: u64) -> Result<Option<ValidatorState>, LedgerError> {
        Ok(self.store.validators_at(height)?)
    }

    /// The overlay and caches between this ledger and its store.
    pub fn view(&self) -> &StateView {
        &self.view
    }

    pub fn height(&self) -> u64 {
        self.height
    }
    /// Hash of the last block, or the genesis hash before the first.
    pub fn tip(&self) -> Digest {
        self.tip
    }
    pub fn chain(&self) -> &ChainBinding {
        &self.chain
    }
    pub fn store(&self) -> &S {
        &self.store
    }
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }
    pub fn into_store(self) -> S {
        self.store
    }
}
