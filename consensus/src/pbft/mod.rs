//! PBFT (Castro & Liskov, OSDI'99) with ed25519 signatures on every message.
//!
//! - `messages.rs`: [`Block`], PRE-PREPARE / PREPARE / COMMIT, CHECKPOINT, VIEW-CHANGE,
//!   NEW-VIEW, the certificates built from them and how each is verified.
//! - `core.rs`: [`Pbft`], the replica: normal case, checkpoints and garbage collection,
//!   view change with proofs, catch-up by commit certificates; the durable [`SafetyData`].
//!   Its handlers: `normal.rs` (pre-prepare, prepare, commit, proposing), `checkpoints.rs`
//!   (checkpoints, garbage collection, catch-up), `view_change.rs` (view change, NEW-VIEW,
//!   the view timer).
//! - `tests.rs`: exact-action unit tests.
//!
//! Sequence number n is ledger height n; null requests commit empty blocks.

mod checkpoints;
mod core;
mod messages;
mod normal;
#[cfg(test)]
mod tests;
mod view_change;

pub use core::{
    Config, DEFAULT_CHECKPOINT_INTERVAL, Pbft, RECENT_CERTIFICATES, RecoverError, Recovered,
    SafetyData, SlotRecord, Stats, VIEW_TIMER,
};
pub use messages::{
    Block, Checkpoint, CheckpointCert, CommitCertificate, Invalid, MAX_MESSAGE_BYTES, Message,
    NewView, Phase, PrePrepare, PreparedCert, ViewChange, Vote,
};
