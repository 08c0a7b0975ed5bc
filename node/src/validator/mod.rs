//! The validator: consensus core + ledger + mempool + batch dissemination.
//!
//! - `wire.rs`: [`Wire`], the frames validators exchange, and [`batch_digest`].
//! - `batches.rs`: the bounded batch store.
//! - `driver.rs`: [`Driver`], the event-loop-free validator (tested in-process in
//!   `node/tests/validator.rs`); the tokio loop over the libp2p transport and the HTTP API
//!   build on it.

mod batches;
mod driver;
mod run;
mod wire;

pub use driver::{Driver, DriverConfig, DriverError, DriverStats, Out, SAFETY_KEY};
pub use run::{Loaded, load, run};
pub use wire::{MAX_BATCHES_PER_MESSAGE, MAX_WIRE_BYTES, Wire, batch_digest};
