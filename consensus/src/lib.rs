//! Cairn's consensus cores: state machines that do no I/O.
//!
//! - `attest.rs`: header attestation ([`attest::Attestor`], [`attest::HeaderCert`]): 2f+1
//!   signatures on an executed ledger header, which proofs of state are checked against.
//! - `types.rs`: [`ReplicaId`], [`View`], [`Committee`].
//! - `core.rs`: the [`Core`] trait, [`Input`], [`Action`], [`Committed`] — the contract every
//!   driver honours (see its "To ensure correctness").
//! - `epoch.rs`: [`epoch_anchor`], what each validator-set epoch's instance starts from.
//! - `durable.rs`: [`PersistGate`] and [`Unreleased`]: votes leave only after their persist.
//! - `hotstuff/`: chained HotStuff, 2-chain commit with timeout certificates (Jolteon).
//! - `pbft/`: PBFT with checkpoints, garbage collection and view change with proofs.
//! - `raft/`: Raft (crash faults only) with pre-vote, check-quorum and log compaction.

pub mod attest;
pub mod core;
pub mod durable;
mod epoch;
pub mod hotstuff;
pub mod pbft;
pub mod raft;
mod types;

pub use crate::core::{Action, Committed, Core, Durable, Input};
pub use durable::{PersistGate, Route, Unreleased};
pub use epoch::epoch_anchor;
pub use types::{Committee, CommitteeError, ReplicaId, View};
