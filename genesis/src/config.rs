//! A node home's `config.toml`.
//!
//! ```toml
//! name = "validator-0"
//! p2p_listen = "/ip4/127.0.0.1/tcp/26600"
//! api_listen = "127.0.0.1:27600"
//! # optional, shown with their defaults; relative paths are relative to the home
//! data_dir = "data"
//! consensus_key_file = "consensus_key.json"
//! next_consensus_key_file = "consensus_key.next.json"  # read only if it exists
//! network_key_file = "network_key.json"
//! next_network_key_file = "network_key.next.json"      # read only if it exists
//! genesis_file = "genesis.json"
//! log_level = "info"
//! # limits of the HTTP API, per client address (an IPv4 address, or an IPv6 /64); 0 = off
//! api_rate_limit_per_ip = 1000     # requests started per second; over it: 429 + Retry-After
//! api_rate_burst = 2000            # requests at once before the rate applies
//! api_max_connections = 512        # open connections in all; more wait to be accepted
//! api_max_connections_per_ip = 128 # open connections per client; more are closed at once
//! batch_delay_ms = 10              # the longest a transaction waits in the pool before a batch
//! state_cache_mb = 64              # accounts and state-tree nodes kept in memory
//! db_cache_mb = 64                 # the chain database's page cache
//! retain_blocks = 10000            # heights of history kept (0 = all); older are pruned
//! state_sync_distance = 1000       # BFT: this far behind, fetch a state snapshot (0 = only
//!                                  # when peers pruned the blocks needed)
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// File name of the config inside a node home.
pub const CONFIG_FILE: &str = "config.toml";

const MAX_CONFIG_BYTES: u64 = 1 << 20;
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    /// Multiaddr to listen on for peers, e.g. `/ip4/0.0.0.0/tcp/26600`.
    pub p2p_listen: String,
    /// `IP:PORT` of the client API, e.g. `127.0.0.1:27600`.
    pub api_listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_consensus_key_file")]
    pub consensus_key_file: PathBuf,
    /// A consensus key this validator may be rotated to by a validator-set change (issue
    /// 21). Read at start when the file exists: from the first block of the epoch whose set
    /// names its public key, the validator signs with it.
    #[serde(default = "default_next_consensus_key_file")]
    pub next_consensus_key_file: PathBuf,
    #[serde(default = "default_network_key_file")]
    pub network_key_file: PathBuf,
    /// A network key a validator-set change may rotate this validator to. Read at start when
    /// the file exists: once the set names its public key, the validator restarts its
    /// transport with it (same listen address), without a process restart.
    #[serde(default = "default_next_network_key_file")]
    pub next_network_key_file: PathBuf,
    #[serde(default = "default_genesis_file")]
    pub genesis_file: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace` or `off`, optionally per target:
    /// `info,cairn::consensus=debug`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Requests per second that one client address (an IPv4 address, or an IPv6 /64) may
    /// start on the HTTP API; more are answered 429 with `Retry-After`. 0 turns it off. A
    /// long request (event stream, `mode=commit`) counts once, when it starts.
    #[serde(default = "default_api_rate_limit_per_ip")]
    pub api_rate_limit_per_ip: u32,
    /// Requests one client address may start at once before `api_rate_limit_per_ip` applies;
    /// at least 1 while the rate limit is on.
    #[serde(default = "default_api_rate_burst")]
    pub api_rate_burst: u32,
    /// Open HTTP API connections in all; further connections wait to be accepted. 0 = no cap.
    /// Keep it well below the process's open-file limit (`ulimit -n`): the validator's peer
    /// connections and its store need file descriptors too.
    #[serde(default = "default_api_max_connections")]
    pub api_max_connections: u32,
    /// Open HTTP API connections one client address may hold; further ones are closed at once.
    /// 0 = no cap. Behind a reverse proxy every client has the proxy's address: raise it or
    /// set 0 (and the rate limit too), and limit at the proxy.
    #[serde(default = "default_api_max_connections_per_ip")]
    pub api_max_connections_per_ip: u32,
    /// The longest (ms) a transaction waits in the pool before it is cut into a batch and
    /// offered to consensus: batches are cut when full (by bytes or count) or at this tick,
    /// whichever comes first. Lower gives lower latency at low load and smaller batches;
    /// 1..=1000.
    #[serde(default = "default_batch_delay_ms")]
    pub batch_delay_ms: u64,
    /// MiB of accounts and account-tree nodes the validator keeps decoded in memory; the
    /// rest of the state is read from disk. 1..=65536.
    #[serde(default = "default_state_cache_mb")]
    pub state_cache_mb: u64,
    /// MiB of page cache of the chain database (`store.redb`: blocks, accounts, the tree).
    /// 1..=65536.
    #[serde(default = "default_db_cache_mb")]
    pub db_cache_mb: u64,
    /// Heights of history kept: blocks, transaction records, header certificates and
    /// state-tree versions older than the last `retain_blocks` heights are pruned in the
    /// background. 0 keeps everything; otherwise at least 100.
    #[serde(default = "default_retain_blocks")]
    pub retain_blocks: u64,
    /// HotStuff and PBFT: a validator this many heights behind its peers fetches a verified
    /// state snapshot instead of replaying blocks (it always does when the blocks it needs
    /// are pruned everywhere). 0: only then.
    #[serde(default = "default_state_sync_distance")]
    pub state_sync_distance: u64,
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_consensus_key_file() -> PathBuf {
    "consensus_key.json".into()
}
fn default_next_consensus_key_file() -> PathBuf {
    "consensus_key.next.json".into()
}
fn default_network_key_file() -> PathBuf {
    "network_key.json".into()
}
fn default_next_network_key_file() -> PathBuf {
    "network_key.next.json".into()
}
fn default_genesis_file() -> PathBuf {
    "genesis.json".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_api_rate_limit_per_ip() -> u32 {
    NodeConfig::DEFAULT_API_RATE_LIMIT_PER_IP
}
fn default_api_rate_burst() -> u32 {
    NodeConfig::DEFAULT_API_RATE_BURST
}
fn default_api_max_connections() -> u32 {
    NodeConfig::DEFAULT_API_MAX_CONNECTIONS
}
fn default_api_max_connections_per_ip() -> u32 {
    NodeConfig::DEFAULT_API_MAX_CONNECTIONS_PER_IP
}
fn default_batch_delay_ms() -> u64 {
    NodeConfig::DEFAULT_BATCH_DELAY_MS
}
fn default_state_cache_mb() -> u64 {
    NodeConfig::DEFAULT_STATE_CACHE_MB
}
fn default_db_cache_mb() -> u64 {
    NodeConfig::DEFAULT_DB_CACHE_MB
}
fn default_retain_blocks() -> u64 {
    NodeConfig::DEFAULT_RETAIN_BLOCKS
}
fn default_state_sync_distance() -> u64 {
    NodeConfig::DEFAULT_STATE_SYNC_DISTANCE
}

/// A config file that cannot be read, parsed or used. Displays as `"{file}: {field}: {message}"`
/// (without the field when the problem is the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub field: String,
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl NodeConfig {
    /// Default `api_rate_limit_per_ip`: far above what a wallet, an explorer or `cairnd bench`
    /// (which sends batches, about 200 requests/s per validator) start; low enough that one
    /// client cannot keep a validator's API and event loop busy alone.
    pub const DEFAULT_API_RATE_LIMIT_PER_IP: u32 = 1000;
    /// Default `api_rate_burst`: two seconds at the default rate.
    pub const DEFAULT_API_RATE_BURST: u32 = 2000;
    /// Default `api_max_connections`: half of the common soft open-file limit of 1,024.
    pub const DEFAULT_API_MAX_CONNECTIONS: u32 = 512;
    /// Default `api_max_connections_per_ip`: twice what `cairnd bench` holds per validator
    /// (64 requests in flight, an event stream, metrics).
    pub const DEFAULT_API_MAX_CONNECTIONS_PER_IP: u32 = 128;
    /// Default `batch_delay_ms`: at low load a transaction is offered to consensus within
    /// 10 ms; under load batches fill before the tick.
    pub const DEFAULT_BATCH_DELAY_MS: u64 = 10;
    /// Default `state_cache_mb`: the hot accounts and the tree's upper levels of a million
    /// accounts fit; the memory does not grow with the number of accounts.
    pub const DEFAULT_STATE_CACHE_MB: u64 = 64;
    /// Default `db_cache_mb` (redb's own default is 1 GiB).
    pub const DEFAULT_DB_CACHE_MB: u64 = 64;
    /// Default `retain_blocks`: enough for a validator that was down for a while to catch
    /// up by blocks from its peers; disk stops growing once the window is full.
    pub const DEFAULT_RETAIN_BLOCKS: u64 = 10_000;
    /// Smallest non-zero `retain_blocks`.
    pub const MIN_RETAIN_BLOCKS: u64 = 100;
    /// Default `state_sync_distance`: replaying a thousand blocks takes longer than
    /// fetching the state of a large ledger.
    pub const DEFAULT_STATE_SYNC_DISTANCE: u64 = 1_000;

    /// A config with the default file locations and API limits.
    pub fn new(name: &str, p2p_listen: &str, api_listen: &str) -> NodeConfig {
        NodeConfig {
            name: name.to_string(),
            p2p_listen: p2p_listen.to_string(),
            api_listen: api_listen.to_string(),
            data_dir: default_data_dir(),
            consensus_key_file: default_consensus_key_file(),
            next_consensus_key_file: default_next_consensus_key_file(),
            network_key_file: default_network_key_file(),
            next_network_key_file: default_next_network_key_file(),
            genesis_file: default_genesis_file(),
            log_level: default_log_level(),
            api_rate_limit_per_ip: Self::DEFAULT_API_RATE_LIMIT_PER_IP,
            api_rate_burst: Self::DEFAULT_API_RATE_BURST,
            api_max_connections: Self::DEFAULT_API_MAX_CONNECTIONS,
            api_max_connections_per_ip: Self::DEFAULT_API_MAX_CONNECTIONS_PER_IP,
            batch_delay_ms: Self::DEFAULT_BATCH_DELAY_MS,
            state_cache_mb: Self::DEFAULT_STATE_CACHE_MB,
            db_cache_mb: Self::DEFAULT_DB_CACHE_MB,
            retain_blocks: Self::DEFAULT_RETAIN_BLOCKS,
            state_sync_distance: Self::DEFAULT_STATE_SYNC_DISTANCE,
        }
    }

    /// Path of the config file in `home`.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(CONFIG_FILE)
    }

    /// Reads and validates `home/config.toml`.
    pub fn load(home: &Path) -> Result<NodeConfig, ConfigError> {
        let file = Self::path_in(home);
        let err = |field: String, message: String| ConfigError {
            file: file.clone(),
            field,
            message,
        };
        let text = read_bounded(&file).map_err(|m| err(String::new(), m))?;
        let config: NodeConfig = serde_path_to_error::deserialize(toml::Deserializer::new(&text))
            .map_err(|e| {
            let (field, message) = describe_toml_error(e, &text);
            err(field, message)
        })?;
        config.validate().map_err(|(f, m)| err(f.to_string(), m))?;
        Ok(config)
    }

    /// Checks field values; returns the bad field and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.name.trim().is_empty() {
            return Err((
                "name",
                "must not be empty; use the validator's name from genesis".into(),
            ));
        }
        crate::validate::check_p2p_address(&self.p2p_listen, true)
            .map_err(|m| ("p2p_listen", m))?;
        self.api_socket_addr().map_err(|m| ("api_listen", m))?;
        check_log_level(&self.log_level).map_err(|m| ("log_level", m))?;
        if self.api_rate_limit_per_ip > 0 && self.api_rate_burst == 0 {
            return Err((
                "api_rate_burst",
                format!(
                    "must be at least 1 while api_rate_limit_per_ip is on (it is {}); e.g. \
                     twice the rate, or set api_rate_limit_per_ip = 0 to turn the limit off",
                    self.api_rate_limit_per_ip
                ),
            ));
        }
        if !(1..=1000).contains(&self.batch_delay_ms) {
            return Err((
                "batch_delay_ms",
                format!(
                    "must be 1..=1000 milliseconds (it is {}); the default is {}",
                    self.batch_delay_ms,
                    Self::DEFAULT_BATCH_DELAY_MS
                ),
            ));
        }
        for (field, value, default) in [
            (
                "state_cache_mb",
                self.state_cache_mb,
                Self::DEFAULT_STATE_CACHE_MB,
            ),
            ("db_cache_mb", self.db_cache_mb, Self::DEFAULT_DB_CACHE_MB),
        ] {
            if !(1..=65536).contains(&value) {
                return Err((
                    field,
                    format!("must be 1..=65536 MiB (it is {value}); the default is {default}"),
                ));
            }
        }
        if self.retain_blocks != 0 && self.retain_blocks < Self::MIN_RETAIN_BLOCKS {
            return Err((
                "retain_blocks",
                format!(
                    "must be 0 (keep everything) or at least {} heights (it is {}); the \
                     default is {}",
                    Self::MIN_RETAIN_BLOCKS,
                    self.retain_blocks,
                    Self::DEFAULT_RETAIN_BLOCKS
                ),
            ));
        }
        for (field, p) in [
            ("data_dir", &self.data_dir),
            ("consensus_key_file", &self.consensus_key_file),
            ("next_consensus_key_file", &self.next_consensus_key_file),
            ("network_key_file", &self.network_key_file),
            ("next_network_key_file", &self.next_network_key_file),
            ("genesis_file", &self.genesis_file),
        ] {
            if p.as_os_str().is_empty() {
                return Err((
                    field,
                    "must not be empty; omit the field to use the default".into(),
                ));
            }
        }
        Ok(())
    }

    /// `api_listen` parsed.
    pub fn api_socket_addr(&self) -> Result<SocketAddr, String> {
        self.api_listen.parse().map_err(|_| {
            format!(
                "{:?} is not an IP:PORT address; use e.g. \"127.0.0.1:27600\"",
                self.api_listen
            )
        })
    }

    /// Writes `home/config.toml` (replacing it), via a temporary file and a rename.
    pub fn save(&self, home: &Path) -> Result<(), ConfigError> {
        let file = Self::path_in(home);
        let err = |message: String| ConfigError {
            file: file.clone(),
            field: String::new(),
            message,
        };
        let text = toml::to_string_pretty(self).map_err(|e| err(format!("cannot encode: {e}")))?;
        let tmp = home.join(format!(".{CONFIG_FILE}.tmp"));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(format!("cannot write: {e}")));
        }
        Ok(())
    }

    /// `data_dir` resolved against `home` (an absolute `data_dir` is kept as is).
    pub fn data_dir_path(&self, home: &Path) -> PathBuf {
        home.join(&self.data_dir)
    }
    pub fn consensus_key_path(&self, home: &Path) -> PathBuf {
        home.join(&self.consensus_key_file)
    }
    pub fn next_consensus_key_path(&self, home: &Path) -> PathBuf {
        home.join(&self.next_consensus_key_file)
    }
    pub fn network_key_path(&self, home: &Path) -> PathBuf {
        home.join(&self.network_key_file)
    }
    pub fn next_network_key_path(&self, home: &Path) -> PathBuf {
        home.join(&self.next_network_key_file)
    }
    pub fn genesis_path(&self, home: &Path) -> PathBuf {
        home.join(&self.genesis_file)
    }
}

fn read_bounded(file: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(file).map_err(|e| {
        format!("cannot read the node config ({e}); create it with `cairnd testnet` or by hand")
    })?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "is {} bytes; that is not a node config",
            meta.len()
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read the node config ({e})"))
}

/// Field path and message of a TOML error, with the line and column when known.
fn describe_toml_error(
    e: serde_path_to_error::Error<toml::de::Error>,
    text: &str,
) -> (String, String) {
    let mut field = if e.path().iter().next().is_none() {
        String::new()
    } else {
        e.path().to_string()
    };
    let inner = e.into_inner();
    let mut message = inner
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        field = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        message = "required field is missing".to_string();
    } else if let Some(span) = inner.span() {
        let (line, col) = line_col(text, span.start);
        message = format!("{message} (line {line}, column {col})");
    }
    (field, message)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn check_log_level(spec: &str) -> Result<(), String> {
    for directive in spec.split(',') {
        let level = directive.rsplit('=').next().unwrap_or("").trim();
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let within = if level == spec {
                String::new()
            } else {
                format!(" (in {spec:?})")
            };
            return Err(format!(
                "{level:?}{within} is not a log level; use one of {}, optionally per target \
                 as in \"info,cairn=debug\"",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}
