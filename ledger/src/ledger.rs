//! [`Ledger`]: state plus store, turning ordered batches into committed, hash-linked blocks.

use crate::Address;
use crate::block::{Block, BlockHeader};
use crate::state::{Account, Receipt, State};
use crate::store::{Store, StoreError};
use crate::tx::{ChainBinding, Transaction};
use crypto::{Digest, PublicKey};

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

/// A block executed in memory by [`Ledger::execute_checked`], with what its durable write
/// needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    pub block: Block,
    pub receipts: Vec<Receipt>,
    /// The accounts the block changed, with their new values.
    pub changed: Vec<(Address, Account)>,
}

/// The ledger of one replica. Every replica that commits the same inputs in the same order
/// builds the same blocks (same hashes) and the same state root.
pub struct Ledger<S: Store> {
    store: S,
    state: State,
    chain: ChainBinding,
    height: u64,
    tip: Digest,
    poisoned: bool,
}

impl<S: Store> Ledger<S> {
    /// Opens a ledger over `store`: initialises an empty store with the genesis accounts, or
    /// loads the committed state and checks it against the last block's state root.
    pub fn open(
        mut store: S,
        chain: ChainBinding,
        genesis_accounts: &[(Address, u64)],
    ) -> Result<Self, LedgerError> {
        if store.genesis_hash()?.is_none() {
            let accounts: Vec<(Address, Account)> = genesis_accounts
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
            store.init_genesis(chain.genesis_hash, &accounts)?;
        } else {
            crate::store::check_genesis(store.genesis_hash()?, chain.genesis_hash)?;
        }
        let state = State::new(store.accounts()?);
        let height = store.height()?;
        let tip = if height == 0 {
            chain.genesis_hash
        } else {
            let last = store
                .block(height)?
                .ok_or_else(|| LedgerError::Corrupt(format!("block {height} missing")))?;
            if last.header.state_root != state.root() {
                return Err(LedgerError::Corrupt(format!(
                    "accounts do not match the state root of block {height}"
                )));
            }
            last.hash()
        };
        Ok(Ledger {
            store,
            state,
            chain,
            height,
            tip,
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
        if let Err(e) =
            self.store
                .commit_block(&executed.block, &executed.receipts, &executed.changed)
        {
            self.poisoned = true;
            return Err(e.into());
        }
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
        let exec = self
            .state
            .execute_hashed(&self.chain, &input.txs, checked, hashes);
        // Receipts carry each transaction's hash, in order: the root reuses them rather than
        // hashing every transaction a second time.
        let hashes: Vec<Digest> = exec.receipts.iter().map(|r| r.tx_hash).collect();
        let header = BlockHeader {
            height: self.height + 1,
            parent: self.tip,
            tx_root: crate::merkle_root(&hashes),
            state_root: self.state.root(),
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
        self.height += 1;
        self.tip = block.hash();
        Ok(Executed {
            block,
            receipts: exec.receipts,
            changed: exec.changed,
        })
    }

    /// Marks the ledger unusable after its caller failed to store a block it executed: the
    /// state is ahead of the store until it is reopened.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Replaces the state with a snapshot of another replica's ledger at `block`'s height
    /// (Raft's InstallSnapshot, for a replica whose missing blocks were compacted away at
    /// the leader): `accounts` must hash to `block`'s state root, and `block` must be above
    /// this ledger's height. The caller checks `block`'s certificate. Durable when it
    /// returns; the chain continues from `block`.
    pub fn install_snapshot(
        &mut self,
        block: Block,
        accounts: Vec<(Address, Account)>,
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
        let state = State::new(accounts.iter().copied());
        if state.root() != block.header.state_root {
            return Err(LedgerError::Snapshot(format!(
                "the snapshot's {} accounts hash to {}, not to block {height}'s state root {}",
                accounts.len(),
                state.root(),
                block.header.state_root
            )));
        }
        if let Err(e) = self.store.install_snapshot(&block, &accounts) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.state = state;
        self.height = height;
        self.tip = block.hash();
        Ok(())
    }

    pub fn height(&self) -> u64 {
        self.height
    }
    /// Hash of the last block, or the genesis hash before the first.
    pub fn tip(&self) -> Digest {
        self.tip
    }
    pub fn state(&self) -> &State {
        &self.state
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
