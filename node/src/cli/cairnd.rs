//! `cairnd`: the validator daemon's commands.

use super::{CliError, finish};
use clap::{Args, Parser, Subcommand};
use genesis::keyfile::{replace_key_file, try_generate_key};
use genesis::{
    CONFIG_FILE, Genesis, NodeConfig, Protocol, TestnetSpec, TestnetSummary, rfc3339,
    write_key_file, write_testnet,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "cairnd", version, about = "Cairn validator node")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a validator's consensus and network keys in its home directory
    Keygen(KeygenArgs),
    /// Write a ready-to-run local testnet: genesis, validator homes, funded wallets
    Testnet(TestnetArgs),
    /// Inspect genesis files
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// Start a whole local network: create (or reuse) a testnet in --dir, run every
    /// validator as a child process, show live height and throughput; Ctrl-C stops it
    Localnet(super::localnet::LocalnetArgs),
    /// Compare the protocols on this machine: start a fresh local cluster per protocol, drive
    /// load, and write a table, JSON, CSV and SVG charts
    Bench(crate::bench::BenchArgs),
    /// Run a validator from its home directory (config.toml, genesis.json, keys)
    Run {
        /// Node home directory, as written by `cairnd testnet` or `cairnd keygen`
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// Log lines on stdout as text, or as one JSON object per line (`timestamp`, `level`,
        /// `message`, then the event's fields under stable names: `height`, `view`, `peer`,
        /// `epoch`, `leader`, `txs`, ...)
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// TEST BUILDS ONLY: misbehave on purpose, to test that the other validators stay
        /// safe and live
        #[cfg(feature = "byzantine")]
        #[arg(long, value_name = "BEHAVIOUR")]
        byzantine: Option<crate::validator::byzantine::Behaviour>,
    },
}

/// How `cairnd run` writes its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Node home directory (created if missing). Key file names come from its config.toml
    /// when there is one.
    #[arg(long, value_name = "DIR")]
    pub home: PathBuf,
    /// Replace existing key files (their keys are lost)
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct TestnetArgs {
    /// Number of validators (hotstuff and pbft need at least 4) [default with --hosts: one
    /// per host]
    #[arg(long, value_name = "N", required_unless_present_any = ["hosts", "hosts_file"])]
    pub validators: Option<usize>,
    /// Validators on hosts of their own: HOST:PORT per validator, comma-separated (an IP
    /// address or a DNS name; `[IPV6]:PORT`). Validator i's genesis address is its entry;
    /// it listens for peers on --p2p-bind at PORT and serves its API on --api-bind at
    /// PORT+1000
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        conflicts_with = "hosts_file"
    )]
    pub hosts: Vec<String>,
    /// As --hosts, one HOST:PORT per line (blank lines and `#` comments ignored)
    #[arg(long, value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,
    /// With --hosts: the address validators listen on for peers (0.0.0.0: every interface)
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub p2p_bind: std::net::IpAddr,
    /// With --hosts: the address validators' APIs bind (127.0.0.1: the host only; 0.0.0.0:
    /// every interface; put a TLS proxy in front for clients elsewhere)
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub api_bind: std::net::IpAddr,
    /// Consensus protocol: hotstuff, pbft or raft
    #[arg(long, value_name = "P")]
    pub protocol: Protocol,
    /// Output directory (must be empty or absent)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of funded wallets to create
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub accounts: usize,
    /// Balance of each wallet
    #[arg(long, value_name = "B", default_value_t = 1_000_000_000)]
    pub balance: u64,
    /// Also fund this many accounts whose keys nobody holds (addresses derived from their
    /// number), to run a network with a large state
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub extra_accounts: usize,
    /// p2p port of validator-0; validator i uses base+i for p2p and base+1000+i for its API
    #[arg(long, value_name = "PORT", default_value_t = 26600)]
    pub base_port: u16,
    #[arg(long, value_name = "ID", default_value = "cairn-testnet")]
    pub chain_id: String,
    /// RFC 3339 genesis time [default: now]
    #[arg(long, value_name = "TIME")]
    pub genesis_time: Option<String>,
    /// Raft: applied blocks between log compactions (genesis `params.snapshot_interval`)
    /// [default: 1024]
    #[arg(long, value_name = "N")]
    pub snapshot_interval: Option<u64>,
    /// Allow validator-set changes, each taking effect this many blocks
    /// after the block that accepts it (genesis `params.epoch_delay_blocks`) [default: 0,
    /// off]
    #[arg(long, value_name = "N")]
    pub epoch_delay_blocks: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum GenesisCommand {
    /// Check a genesis file and print its summary and hash; with --hosts or --hosts-file,
    /// also that validator i's p2p_address is the i-th HOST:PORT
    Validate {
        /// Path of the genesis file
        file: PathBuf,
        /// The peer list: HOST:PORT per validator, comma-separated, in genesis order
        #[arg(
            long,
            value_name = "LIST",
            value_delimiter = ',',
            conflicts_with = "hosts_file"
        )]
        hosts: Vec<String>,
        /// As --hosts, one HOST:PORT per line
        #[arg(long, value_name = "FILE")]
        hosts_file: Option<PathBuf>,
    },
}

/// Entry point of the `cairnd` binary.
pub fn main() -> ExitCode {
    finish(run(Cli::parse()))
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Keygen(args) => keygen(&args),
        Command::Testnet(args) => testnet(args),
        Command::Genesis(GenesisCommand::Validate {
            file,
            hosts,
            hosts_file,
        }) => validate_genesis(&file, host_entries(&hosts, hosts_file.as_deref())?),
        #[cfg(not(feature = "byzantine"))]
        Command::Run { home, log_format } => {
            run_validator(&home, log_format, crate::validator::RunOptions::default())
        }
        #[cfg(feature = "byzantine")]
        Command::Run {
            home,
            log_format,
            byzantine,
        } => run_validator(
            &home,
            log_format,
            crate::validator::RunOptions { byzantine },
        ),
        Command::Localnet(args) => super::localnet::localnet(args),
        Command::Bench(args) => crate::bench::bench(args),
    }
}

/// Starts the validator and runs it until Ctrl-C or SIGTERM.
fn run_validator(
    home: &Path,
    log_format: LogFormat,
    options: crate::validator::RunOptions,
) -> Result<(), CliError> {
    // Check the home before starting anything, so that a bad file is an input error (exit 2).
    let loaded = crate::validator::load(home).map_err(|e| CliError::input(format!("{e:#}")))?;
    let filter = tracing_subscriber::filter::EnvFilter::try_new(&loaded.config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::filter::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
        // One object per line, the event's fields beside `message` (not nested), no spans.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(crate::validator::run_with_options(
            home,
            options,
            stop_signal(),
        ))
        .map_err(|e| CliError::failure(format!("{e:#}")))
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    let home = &args.home;
    let config = if home.join(CONFIG_FILE).exists() {
        NodeConfig::load(home).map_err(CliError::input)?
    } else {
        NodeConfig::new("", "", "")
    };
    let files = [
        ("consensus_key", config.consensus_key_path(home)),
        ("network_key", config.network_key_path(home)),
    ];
    if !args.force {
        // Refuse before writing either, so a refusal never leaves a half-made pair.
        if let Some((_, path)) = files.iter().find(|(_, p)| p.exists()) {
            return Err(CliError::input(format!(
                "key file {} already exists; refusing to overwrite it (that would destroy the \
                 key it holds). Pass --force to replace both keys",
                path.display()
            )));
        }
    }
    create_private_dir(home)?;
    let mut publics = Vec::new();
    for (label, path) in &files {
        let key = try_generate_key()?;
        if args.force {
            replace_key_file(path, &key)?;
        } else {
            write_key_file(path, &key)?;
        }
        println!("wrote {}", path.display());
        publics.push((label, key.public()));
    }
    for (label, public) in publics {
        println!("{label}: {public}");
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), CliError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| CliError::failure(format!("cannot create directory {}: {e}", dir.display())))
}

/// The `--hosts` list or the `--hosts-file` lines, parsed, if either was given.
type Peers = Vec<(String, u16)>;

fn host_entries(hosts: &[String], hosts_file: Option<&Path>) -> Result<Option<Peers>, CliError> {
    let entries: Vec<String> = match hosts_file {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| CliError::input(format!("{}: {e}", f.display())))?
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        None if hosts.is_empty() => return Ok(None),
        None => hosts.to_vec(),
    };
    if entries.is_empty() {
        return Err(CliError::input("--hosts-file lists no HOST:PORT"));
    }
    entries
        .iter()
        .map(|e| genesis::HostLayout::parse_peer(e))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| CliError::input(format!("--hosts: {e}")))
}

/// The `--hosts` / `--hosts-file` layout, if either was given.
fn host_layout(args: &TestnetArgs) -> Result<Option<genesis::HostLayout>, CliError> {
    Ok(
        host_entries(&args.hosts, args.hosts_file.as_deref())?.map(|peers| genesis::HostLayout {
            peers,
            p2p_bind: args.p2p_bind,
            api_bind: args.api_bind,
        }),
    )
}

fn testnet(args: TestnetArgs) -> Result<(), CliError> {
    let hosts = host_layout(&args)?;
    let validators = match (args.validators, &hosts) {
        (Some(n), _) => n,
        (None, Some(h)) => h.peers.len(),
        (None, None) => return Err(CliError::input("--validators N is required")),
    };
    let spec = TestnetSpec {
        validators,
        hosts,
        protocol: args.protocol,
        out: args.out,
        accounts: args.accounts,
        balance: args.balance,
        base_port: args.base_port,
        chain_id: args.chain_id,
        genesis_time: args.genesis_time.unwrap_or_else(rfc3339::now_utc),
        params: genesis::Params {
            snapshot_interval: args
                .snapshot_interval
                .unwrap_or(genesis::Params::default().snapshot_interval),
            epoch_delay_blocks: args.epoch_delay_blocks.unwrap_or(0),
            ..Default::default()
        },
        funded: (0..args.extra_accounts as u64)
            .map(|i| {
                let d = crypto::hash_parts(&[b"cairn/testnet/extra-account", &i.to_le_bytes()]);
                let mut a = [0u8; 20];
                a.copy_from_slice(&d.0[..20]);
                ledger::Address(a)
            })
            .collect(),
    };
    let summary = write_testnet(&spec)?;
    print_testnet(&spec, &summary);
    Ok(())
}

fn print_testnet(spec: &TestnetSpec, s: &TestnetSummary) {
    let g = &s.genesis;
    println!("wrote testnet to {}", spec.out.display());
    println!("genesis: {}", s.genesis_path.display());
    println!(
        "  chain_id {}, protocol {}, n={} f={} quorum={}, genesis_time {}",
        g.chain_id,
        g.protocol,
        g.n(),
        g.f(),
        g.quorum(),
        g.genesis_time
    );
    println!("  hash {}", s.genesis_hash);
    for v in &s.validators {
        println!(
            "{}: home {}, p2p {}, api {}",
            v.name,
            v.home.display(),
            v.p2p_address,
            v.api_listen
        );
    }
    for w in &s.wallets {
        println!(
            "wallet {}: address {}, balance {}",
            w.path.display(),
            w.address,
            spec.balance
        );
    }
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
}

fn validate_genesis(file: &Path, peers: Option<Peers>) -> Result<(), CliError> {
    let g = Genesis::load(file)?;
    let warnings = g.validate()?;
    if let Some(peers) = &peers {
        if peers.len() != g.validators.len() {
            return Err(CliError::input(format!(
                "{}: the peer list has {} entries, genesis {} validators",
                file.display(),
                peers.len(),
                g.validators.len()
            )));
        }
        for (i, ((host, port), v)) in peers.iter().zip(&g.validators).enumerate() {
            let want = genesis::HostLayout::address(host, *port);
            if v.p2p_address != want {
                return Err(CliError::input(format!(
                    "{}: validators[{i}].p2p_address is {}, but the peer list says {host}:{port} \
                     ({want})",
                    file.display(),
                    v.p2p_address
                )));
            }
        }
    }
    println!("{}: valid", file.display());
    println!("chain_id:     {}", g.chain_id);
    println!("protocol:     {}", g.protocol);
    println!("genesis_time: {}", g.genesis_time);
    println!(
        "validators:   n={} f={} quorum={}",
        g.n(),
        g.f(),
        g.quorum()
    );
    println!("accounts:     {}", g.accounts.len());
    println!("total_supply: {}", g.total_supply());
    println!("hash:         {}", g.hash());
    if let Some(p) = &peers {
        println!("peers:        all {} match the genesis addresses", p.len());
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
