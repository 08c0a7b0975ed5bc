//! A node home's `config.toml`.
//!
//! ```toml
//! name = "validator-0"
//! p2p_listen = "/ip4/127.0.0.1/tcp/26600"
//! api_listen = "127.0.0.1:27600"
//! # optional, shown with their defaults; relative paths are relative to the home
//! data_dir = "data"
//! consensus_key_file = "consensus_key.json"
//! network_key_file = "network_key.json"
//! genesis_file = "genesis.json"
//! log_level = "info"
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
    #[serde(default = "default_network_key_file")]
    pub network_key_file: PathBuf,
    #[serde(default = "default_genesis_file")]
    pub genesis_file: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace` or `off`, optionally per target:
    /// `info,cairn::consensus=debug`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_consensus_key_file() -> PathBuf {
    "consensus_key.json".into()
}
fn default_network_key_file() -> PathBuf {
    "network_key.json".into()
}
fn default_genesis_file() -> PathBuf {
    "genesis.json".into()
}
fn default_log_level() -> String {
    "info".into()
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
    /// A config with the default file locations.
    pub fn new(name: &str, p2p_listen: &str, api_listen: &str) -> NodeConfig {
        NodeConfig {
            name: name.to_string(),
            p2p_listen: p2p_listen.to_string(),
            api_listen: api_listen.to_string(),
            data_dir: default_data_dir(),
            consensus_key_file: default_consensus_key_file(),
            network_key_file: default_network_key_file(),
            genesis_file: default_genesis_file(),
            log_level: default_log_level(),
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
        for (field, p) in [
            ("data_dir", &self.data_dir),
            ("consensus_key_file", &self.consensus_key_file),
            ("network_key_file", &self.network_key_file),
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
    pub fn network_key_path(&self, home: &Path) -> PathBuf {
        home.join(&self.network_key_file)
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
