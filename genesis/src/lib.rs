//! Genesis, node config and key files: parsing, field-precise validation, testnet generation.
//!
//! - [`Genesis`]: the chain's starting point (`genesis.json`). [`Genesis::from_json`] and
//!   [`Genesis::load`] parse and validate; every error is a [`GenesisError`] naming the field
//!   (`validators[2].consensus_key: ...`). [`Genesis::hash`] covers the canonical encoding, so
//!   reformatting the JSON never changes it.
//! - [`keyfile`]: ed25519 key files (`0600`, written atomically, refused when readable by
//!   others).
//! - [`NodeConfig`]: a node home's `config.toml`.
//! - [`write_testnet`]: a ready-to-run local testnet directory.
//! - [`rfc3339`]: the timestamp format of `genesis_time`.

mod config;
mod error;
pub mod keyfile;
pub mod rfc3339;
mod spec;
mod testnet;
mod validate;

pub use config::{CONFIG_FILE, ConfigError, NodeConfig};
pub use error::GenesisError;
pub use keyfile::{KeyFileError, generate_key, load_key_file, write_key_file};
pub use spec::{AccountInfo, Genesis, Params, ParseProtocolError, Protocol, ValidatorInfo};
pub use testnet::{
    HostLayout, TestnetError, TestnetSpec, TestnetSummary, ValidatorSummary, WalletSummary,
    write_testnet,
};
