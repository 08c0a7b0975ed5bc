//! [`Ledger`]: state plus store, turning ordered batches into committed, hash-linked blocks.

use crate::Address;
use crate::block::{Block, BlockHeader, tx_root};
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
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        let exec = self.state.execute(&self.chain, &input.txs);
        let header = BlockHeader {
            height: self.height + 1,
            parent: self.tip,
            tx_root: tx_root(&input.txs),
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
        if let Err(e) = self
            .store
            .commit_block(&block, &exec.receipts, &exec.changed)
        {
            self.poisoned = true;
            return Err(e.into());
        }
        self.height += 1;
        self.tip = block.hash();
        Ok((block, exec.receipts))
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
