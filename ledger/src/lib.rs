//! The account ledger. Pure: no I/O, no clock, no randomness.
//!
//! - [`Transaction`] (`tx.rs`): signed transfers bound to one chain; hash = identity. Also
//!   unsigned raw transactions ([`Payload::Raw`]): ordered and stored, never executed.
//! - [`State`] (`state.rs`): accounts, deterministic [`State::execute`], [`State::root`].
//! - [`Block`] (`block.rs`): hashed [`BlockHeader`] + transactions + consensus certificate.
//! - [`Store`] (`store.rs`): the durable-storage contract, and [`MemStore`].
//! - [`Ledger`] (`ledger.rs`): state + store; turns ordered batches into committed blocks.
//! - [`tree`] (`tree.rs`): the authenticated account tree (a Jellyfish Merkle Tree) whose root
//!   is every header's state root; proofs of accounts and absences.
//! - [`view`] (`view.rs`): what the ledger reads the state through: unstored blocks, bounded
//!   caches, then the store.
//! - [`validators`] (`validators.rs`): the validator set as ledger state, its epochs, and the
//!   rules for changing it (quorum approvals, one pending change, the boundary height).

mod address;
mod block;
mod ledger;
mod merkle;
mod state;
pub mod statesync;
mod store;
pub mod tree;
mod tx;
pub mod validators;
pub mod view;

pub use address::{Address, ParseAddressError};
pub use block::{Block, BlockHeader, MAX_BLOCK_BYTES, tx_root};
pub use ledger::{BlockInput, Executed, Ledger, LedgerError, LedgerGenesis};
pub use merkle::{merkle_proof, merkle_root, verify_merkle_proof};
pub use state::{
    Account, Execution, GOVERNANCE_DISABLED, GovernanceCtx, Receipt, RejectReason, State,
};
pub use store::{MemStore, Store, StoreError, TxRecord, check_genesis, check_next_height};
pub use tx::{
    ChainBinding, MAX_CHAIN_ID_LEN, MAX_TX_BYTES, Payload, RAW_SENDER, Transaction, TxBody,
    verify_bodies,
};
