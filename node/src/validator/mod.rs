//! The validator: consensus core + ledger + mempool + batch dissemination.
//!
//! - `wire.rs`: [`Wire`], the frames validators exchange, and [`batch_digest`].
//! - `batches.rs`: the bounded batch store.
//! - `protocol.rs`: [`Protocol`], what the driver needs of a consensus protocol, and
//!   [`HotStuffProtocol`].
//! - `pbft.rs`: [`PbftProtocol`], the PBFT core behind the same trait.
//! - `raft.rs`: [`RaftProtocol`], the Raft core; its log is stored with its batches and its
//!   snapshots are moved by the driver (`snapshot.rs`: `Wire::SnapshotRequest` /
//!   `SnapshotChunk`, carrying the validator set and the Raft configuration).
//! - `raft_set.rs`: Raft across validator-set changes: one core, servers named by stable
//!   id, the ledger's members as the leader's target, a joiner as an outsider learner.
//! - `persist.rs`: the store writes for a core's persists (safety record, Raft's log and
//!   compaction, with the configuration at the compaction point).
//! - `driver.rs`: [`Driver`], the event-loop-free validator, generic over the protocol
//!   (tested in-process in `node/tests/validator.rs`); the tokio loop over the libp2p
//!   transport and the HTTP API (`run.rs`) build on it.
//! - `epochs.rs`: validator-set epochs: the core's switch after an epoch's last block,
//!   frames routed by epoch, certificates checked against their height's set.
//! - `attestation.rs`: header votes and certificates (BFT modes), stored beside blocks.
//! - `store_stage.rs`: the store stage, the thread that writes executed blocks (several per
//!   fsync under load) and announces them, behind consensus.
//! - `reads.rs`: linearizable reads (Raft's ReadIndex) between the API and the core.

pub mod admission;
mod attestation;
mod batches;
#[cfg(feature = "byzantine")]
pub mod byzantine;
mod dissemination;
mod driver;
mod epochs;
pub mod evidence;
mod execution;
pub mod failpoints;
pub mod ingress;
pub mod leadership;
mod notify;
mod ordering;
mod pbft;
mod persist;
mod protocol;
mod raft;
mod raft_set;
pub mod reads;
mod run;
mod snapshot;
mod statesync;
mod stats;
pub mod store_stage;
mod sync;
mod transport;
mod votelog;
mod wire;

pub use driver::{Driver, DriverConfig, DriverError, DriverStats, Out, StageSamples};
pub use epochs::EpochSet;
pub use ordering::MAX_PARKED;
pub use pbft::PbftProtocol;
pub use protocol::{Certified, CoreParams, HotStuffProtocol, Protocol, RAFT_CONFIG_KEY};
pub use raft::RaftProtocol;
pub use run::{Loaded, RunOptions, load, run, run_with_options};

use consensus::{Committed, Committee};
use crypto::Digest;
use ledger::{BlockInput, Transaction};

/// The ledger input for a committed consensus block: its batches' transactions in order
/// (`batch` resolves a digest; the caller guarantees every batch is available), its
/// proposer's key, view, timestamp and certificate. Used by the driver and the simulator.
pub fn block_input(
    c: Committed,
    committee: &Committee,
    batch: impl Fn(&Digest) -> Option<Vec<Transaction>>,
) -> BlockInput {
    let mut txs = Vec::new();
    let mut batch_sizes = Vec::with_capacity(c.payload.len());
    for d in &c.payload {
        let b = batch(d).unwrap_or_default();
        batch_sizes.push(b.len() as u32);
        txs.extend(b);
    }
    let proposer = *committee
        .key(c.proposer)
        .expect("a committed proposer is in the committee");
    BlockInput {
        proposer,
        view: c.view.0,
        timestamp_ms: c.timestamp_ms,
        txs,
        certificate: c.certificate,
        batch_sizes,
    }
}
pub use wire::{
    MAX_BATCHES_PER_MESSAGE, MAX_WIRE_BYTES, SnapshotHead, Wire, batch_digest, batch_digest_hashed,
};
