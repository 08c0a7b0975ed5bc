//! The Cairn validator node and wallet: everything that does I/O.

pub mod api;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod mempool;
pub mod net;
pub mod store;
pub mod validator;
