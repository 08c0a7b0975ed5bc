//! A local testnet directory, ready to run:
//!
//! ```text
//! OUT/genesis.json
//! OUT/validator-{i}/{genesis.json, config.toml, consensus_key.json, network_key.json}
//! OUT/wallets/wallet-{k}.json
//! ```
//!
//! Validator `i` listens for peers on `127.0.0.1:(base_port + i)` and serves its API on
//! `127.0.0.1:(base_port + 1000 + i)`. Each wallet's account is funded with `balance`.
//!
//! With [`HostLayout`] (`cairnd testnet --hosts`) the validators are on hosts of their own:
//! validator `i`'s genesis address is its host (an IP address, or a DNS name as `/dns/`) and
//! port; it listens for peers on `p2p_bind` at that port and serves its API on `api_bind` at
//! the port + 1000.

use crate::keyfile::{KeyFileError, try_generate_key, write_key_file};
use crate::{
    AccountInfo, ConfigError, Genesis, GenesisError, NodeConfig, Params, Protocol, ValidatorInfo,
};
use crypto::{Digest, PublicKey, SecretKey};
use ledger::Address;
use std::path::{Path, PathBuf};

/// API ports are this far above the p2p ports.
const API_PORT_OFFSET: u16 = 1000;
const MAX_WALLETS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct TestnetSpec {
    pub validators: usize,
    pub protocol: Protocol,
    pub out: PathBuf,
    pub accounts: usize,
    pub balance: u64,
    pub base_port: u16,
    pub chain_id: String,
    /// RFC 3339; [`crate::rfc3339::now_utc`] for "now".
    pub genesis_time: String,
    /// Consensus parameters ([`Params::default`] for the usual ones).
    pub params: Params,
    /// More accounts funded with `balance`, whose keys the caller holds (no wallet file is
    /// written for them): `cairnd bench` funds its load-generating accounts this way.
    pub funded: Vec<Address>,
    /// Validators on hosts of their own instead of `127.0.0.1:base_port+i`.
    pub hosts: Option<HostLayout>,
}

/// Where each validator of a multi-host testnet is (see the module docs).
#[derive(Clone, Debug)]
pub struct HostLayout {
    /// One per validator: the host peers dial (an IP address or a DNS name) and its p2p port.
    pub peers: Vec<(String, u16)>,
    /// The address each validator listens on for peers (`0.0.0.0`: every interface).
    pub p2p_bind: std::net::IpAddr,
    /// The address each validator's API binds (`127.0.0.1`: its own host only).
    pub api_bind: std::net::IpAddr,
}

impl HostLayout {
    /// Parses `HOST:PORT` (`[IPV6]:PORT` for an IPv6 address); the error names the entry.
    pub fn parse_peer(entry: &str) -> Result<(String, u16), String> {
        let entry = entry.trim();
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("{entry:?}: expected HOST:PORT, e.g. a.example:26600"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{entry:?}: the port must be 1-65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().is_err() && !is_dns_name(host) {
            return Err(format!(
                "{entry:?}: {host:?} is neither an IP address nor a DNS name"
            ));
        }
        Ok((host.to_string(), port))
    }

    /// The genesis multiaddr of a peer entry.
    pub fn address(host: &str, port: u16) -> String {
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => format!("/ip4/{ip}/tcp/{port}"),
            Ok(std::net::IpAddr::V6(ip)) => format!("/ip6/{ip}/tcp/{port}"),
            Err(_) => format!("/dns/{host}/tcp/{port}"),
        }
    }

    fn listen(ip: std::net::IpAddr, port: u16) -> String {
        match ip {
            std::net::IpAddr::V4(ip) => format!("/ip4/{ip}/tcp/{port}"),
            std::net::IpAddr::V6(ip) => format!("/ip6/{ip}/tcp/{port}"),
        }
    }
}

/// Letters, digits, `-` and `.`, labels of 1-63 characters, not starting with `-`.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[derive(Clone, Debug)]
pub struct TestnetSummary {
    pub genesis: Genesis,
    pub genesis_hash: Digest,
    pub genesis_path: PathBuf,
    pub validators: Vec<ValidatorSummary>,
    pub wallets: Vec<WalletSummary>,
    /// Warnings from validating the genesis.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ValidatorSummary {
    pub name: String,
    pub home: PathBuf,
    pub consensus_key: PublicKey,
    pub network_key: PublicKey,
    pub p2p_address: String,
    pub api_listen: String,
}

#[derive(Clone, Debug)]
pub struct WalletSummary {
    pub path: PathBuf,
    pub address: Address,
}

#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    #[error("{0}")]
    Spec(String),
    #[error(
        "output directory {} is not empty; choose a new directory or remove this one first",
        .0.display()
    )]
    OutNotEmpty(PathBuf),
    #[error("the testnet genesis would be invalid: {0}")]
    Genesis(GenesisError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

impl TestnetError {
    /// True when the spec or the output directory is at fault, not the machine.
    pub fn is_input_error(&self) -> bool {
        match self {
            TestnetError::Spec(_) | TestnetError::OutNotEmpty(_) | TestnetError::Genesis(_) => true,
            TestnetError::KeyFile(e) => e.is_input_error(),
            TestnetError::Config(_) | TestnetError::Io { .. } => false,
        }
    }
}

struct NodeKeys {
    consensus: SecretKey,
    network: SecretKey,
}

/// Generates keys, builds and validates the genesis, then writes the directory. Nothing is
/// written if the spec or the genesis is invalid, or if `spec.out` is not empty.
pub fn write_testnet(spec: &TestnetSpec) -> Result<TestnetSummary, TestnetError> {
    check_spec(spec)?;
    check_out_dir(&spec.out)?;
    let nodes = (0..spec.validators)
        .map(|_| {
            Ok(NodeKeys {
                consensus: try_generate_key()?,
                network: try_generate_key()?,
            })
        })
        .collect::<Result<Vec<_>, KeyFileError>>()?;
    let wallets = (0..spec.accounts)
        .map(|_| try_generate_key())
        .collect::<Result<Vec<_>, _>>()?;
    let genesis = build_genesis(spec, &nodes, &wallets);
    let warnings = genesis.validate().map_err(TestnetError::Genesis)?;

    create_dir(&spec.out, false)?;
    let genesis_json = genesis.to_json_pretty();
    let genesis_path = spec.out.join("genesis.json");
    write_file(&genesis_path, &genesis_json)?;
    let mut validators = Vec::with_capacity(nodes.len());
    for (i, (keys, info)) in nodes.iter().zip(&genesis.validators).enumerate() {
        validators.push(write_validator(spec, i, keys, info, &genesis_json)?);
    }
    let wallets = write_wallets(&spec.out.join("wallets"), &wallets)?;
    Ok(TestnetSummary {
        genesis_hash: genesis.hash(),
        genesis,
        genesis_path,
        validators,
        wallets,
        warnings,
    })
}

fn check_spec(spec: &TestnetSpec) -> Result<(), TestnetError> {
    let bad = |m: String| Err(TestnetError::Spec(m));
    if spec.validators == 0 {
        return bad("--validators must be at least 1".into());
    }
    if let Some(h) = &spec.hosts {
        if h.peers.len() != spec.validators {
            return bad(format!(
                "--hosts lists {} hosts for {} validators; give one HOST:PORT per validator",
                h.peers.len(),
                spec.validators
            ));
        }
        for (i, (host, port)) in h.peers.iter().enumerate() {
            if let Some(j) = h.peers[..i].iter().position(|p| p == &h.peers[i]) {
                return bad(format!(
                    "--hosts lists {host}:{port} twice (validators {j} and {i})"
                ));
            }
            if port.checked_add(API_PORT_OFFSET).is_none() {
                return bad(format!(
                    "--hosts {host}:{port}: the API port would be {port}+{API_PORT_OFFSET}, \
                     past 65535; use a p2p port of at most {}",
                    u16::MAX - API_PORT_OFFSET
                ));
            }
        }
        return Ok(());
    }
    if spec.validators > usize::from(API_PORT_OFFSET) {
        return bad(format!(
            "--validators {} is too many for one machine: at most {API_PORT_OFFSET}, so that p2p \
             ports (base_port+i) and API ports (base_port+{API_PORT_OFFSET}+i) do not collide",
            spec.validators
        ));
    }
    if spec.base_port == 0 {
        return bad("--base-port must be a real port (1-65535), not 0".into());
    }
    let last_api =
        u32::from(spec.base_port) + u32::from(API_PORT_OFFSET) + spec.validators as u32 - 1;
    if last_api > u32::from(u16::MAX) {
        return bad(format!(
            "--base-port {} with {} validators puts API ports up to {last_api}, past 65535; \
             choose a --base-port of at most {}",
            spec.base_port,
            spec.validators,
            u32::from(u16::MAX) + 1 - u32::from(API_PORT_OFFSET) - spec.validators as u32
        ));
    }
    if spec.accounts > MAX_WALLETS {
        return bad(format!(
            "--accounts {} is more than the {MAX_WALLETS} wallet files this command writes",
            spec.accounts
        ));
    }
    Ok(())
}

fn check_out_dir(out: &Path) -> Result<(), TestnetError> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(TestnetError::OutNotEmpty(out.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if out.exists() => Err(TestnetError::Spec(format!(
            "output {} exists and is not a directory; choose a new directory",
            out.display()
        ))),
        Err(e) => Err(io_err(out, "read the output directory", e)),
    }
}

fn p2p_port(spec: &TestnetSpec, i: usize) -> u16 {
    // check_spec bounds base_port + 1000 + i within u16.
    spec.base_port.saturating_add(i as u16)
}

fn build_genesis(spec: &TestnetSpec, nodes: &[NodeKeys], wallets: &[SecretKey]) -> Genesis {
    Genesis {
        chain_id: spec.chain_id.clone(),
        genesis_time: spec.genesis_time.clone(),
        protocol: spec.protocol,
        params: spec.params.clone(),
        validators: nodes
            .iter()
            .enumerate()
            .map(|(i, k)| ValidatorInfo {
                name: format!("validator-{i}"),
                consensus_key: k.consensus.public(),
                network_key: k.network.public(),
                p2p_address: match &spec.hosts {
                    Some(h) => HostLayout::address(&h.peers[i].0, h.peers[i].1),
                    None => format!("/ip4/127.0.0.1/tcp/{}", p2p_port(spec, i)),
                },
            })
            .collect(),
        accounts: wallets
            .iter()
            .map(|w| Address::of(&w.public()))
            .chain(spec.funded.iter().copied())
            .map(|address| AccountInfo {
                address,
                balance: spec.balance,
            })
            .collect(),
    }
}

fn write_validator(
    spec: &TestnetSpec,
    i: usize,
    keys: &NodeKeys,
    info: &ValidatorInfo,
    genesis_json: &str,
) -> Result<ValidatorSummary, TestnetError> {
    let home = spec.out.join(&info.name);
    create_dir(&home, true)?;
    let (listen, api_listen) = match &spec.hosts {
        Some(h) => {
            let port = h.peers[i].1;
            let api = std::net::SocketAddr::new(h.api_bind, port + API_PORT_OFFSET);
            (HostLayout::listen(h.p2p_bind, port), api.to_string())
        }
        None => (
            info.p2p_address.clone(),
            format!(
                "127.0.0.1:{}",
                p2p_port(spec, i).saturating_add(API_PORT_OFFSET)
            ),
        ),
    };
    let config = NodeConfig::new(&info.name, &listen, &api_listen);
    write_file(&config.genesis_path(&home), genesis_json)?;
    config.save(&home)?;
    write_key_file(&config.consensus_key_path(&home), &keys.consensus)?;
    write_key_file(&config.network_key_path(&home), &keys.network)?;
    Ok(ValidatorSummary {
        name: info.name.clone(),
        home,
        consensus_key: info.consensus_key,
        network_key: info.network_key,
        p2p_address: info.p2p_address.clone(),
        api_listen,
    })
}

fn write_wallets(dir: &Path, wallets: &[SecretKey]) -> Result<Vec<WalletSummary>, TestnetError> {
    create_dir(dir, true)?;
    wallets
        .iter()
        .enumerate()
        .map(|(k, key)| {
            let path = dir.join(format!("wallet-{k}.json"));
            write_key_file(&path, key)?;
            Ok(WalletSummary {
                path,
                address: Address::of(&key.public()),
            })
        })
        .collect()
}

/// Creates `dir` (and parents); `private` makes it 0700, for directories holding keys.
fn create_dir(dir: &Path, private: bool) -> Result<(), TestnetError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    }
    #[cfg(not(unix))]
    let _ = private;
    b.create(dir)
        .map_err(|e| io_err(dir, "create the directory", e))
}

fn write_file(path: &Path, text: &str) -> Result<(), TestnetError> {
    std::fs::write(path, text).map_err(|e| io_err(path, "write", e))
}

fn io_err(path: &Path, action: &'static str, source: std::io::Error) -> TestnetError {
    TestnetError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}
