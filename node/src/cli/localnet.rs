//! `cairnd localnet`: a whole local network from one command.
//!
//! Creates a testnet under `--dir` (or reuses the one there), starts one `cairnd run` child
//! process per validator (each in its own process group, logging to `validator-i/cairnd.log`),
//! prints where everything is, shows live height and throughput, and on Ctrl-C or SIGTERM
//! stops the validators with SIGTERM (SIGKILL after [`STOP_WAIT`]) before exiting.

use super::CliError;
use crate::api::NodeStatus;
use clap::Args;
use genesis::{Genesis, NodeConfig, Protocol, TestnetSpec, rfc3339, write_testnet};
use std::io::{BufRead, IsTerminal};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

mod live;
use live::{poll, summarize, throughput};

/// How long a validator gets to stop after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// How often the live line is refreshed (and children checked).
const TICK: Duration = Duration::from_secs(1);
/// Without a terminal, a status line is printed this often.
const PLAIN_EVERY: u32 = 5;

#[derive(Args, Debug)]
pub struct LocalnetArgs {
    /// Number of validators [default: 4 for hotstuff and pbft (they need at least 4), 3 for
    /// raft]
    #[arg(long, value_name = "N")]
    pub validators: Option<usize>,
    /// Consensus protocol: hotstuff, pbft or raft
    #[arg(long, value_name = "P", default_value = "hotstuff")]
    pub protocol: Protocol,
    /// Data folder of the network; reused when it already holds one
    #[arg(long, value_name = "DIR", default_value = "localnet")]
    pub dir: PathBuf,
    /// Delete the data folder first and start a fresh chain
    #[arg(long)]
    pub reset: bool,
    /// p2p port of validator-0 when creating the network (API ports are base+1000+i)
    #[arg(long, value_name = "PORT", default_value_t = 26600)]
    pub base_port: u16,
    /// Number of funded wallets when creating the network
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub accounts: usize,
}

impl LocalnetArgs {
    /// `--validators`, or the protocol's default: 4 for the BFT protocols (n = 3f+1 with
    /// f = 1), 3 for raft (a majority of 2 survives one crash).
    pub fn validators(&self) -> usize {
        self.validators
            .unwrap_or(if self.protocol.is_bft() { 4 } else { 3 })
    }
}

/// One validator of the network, as found in its home.
struct Member {
    name: String,
    home: PathBuf,
    api: String,
    ports: Vec<u16>,
}

pub fn localnet(args: LocalnetArgs) -> Result<(), CliError> {
    if args.reset && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .map_err(|e| CliError::failure(format!("cannot delete {}: {e}", args.dir.display())))?;
        println!("deleted {}", args.dir.display());
    }
    let genesis_path = args.dir.join("genesis.json");
    let genesis = if genesis_path.exists() {
        reuse(&args, &genesis_path)?
    } else {
        create(&args)?
    };
    let members = members(&args.dir, &genesis)?;
    check_ports(&members)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(supervise(&args.dir, &genesis, members))
}

fn create(args: &LocalnetArgs) -> Result<Genesis, CliError> {
    let spec = TestnetSpec {
        validators: args.validators(),
        protocol: args.protocol,
        out: args.dir.clone(),
        accounts: args.accounts,
        balance: 1_000_000_000,
        base_port: args.base_port,
        chain_id: "cairn-localnet".into(),
        genesis_time: rfc3339::now_utc(),
        params: Default::default(),
        funded: Vec::new(),
        hosts: None,
    };
    let summary = write_testnet(&spec)?;
    println!(
        "created a {} network of {} validators in {}",
        spec.protocol,
        spec.validators,
        args.dir.display()
    );
    Ok(summary.genesis)
}

fn reuse(args: &LocalnetArgs, genesis_path: &Path) -> Result<Genesis, CliError> {
    let genesis = Genesis::load(genesis_path)?;
    genesis.validate()?;
    if genesis.protocol != args.protocol || args.validators.is_some_and(|n| n != genesis.n()) {
        return Err(CliError::input(format!(
            "{} holds a {} network of {} validators, but --protocol {} --validators {} was \
             asked for. Pass --reset to delete it and start a new chain, or --dir OTHER to \
             keep it",
            args.dir.display(),
            genesis.protocol,
            genesis.n(),
            args.protocol,
            args.validators()
        )));
    }
    println!(
        "reusing the {} network of {} validators in {} (chain {}); --reset starts over",
        genesis.protocol,
        genesis.n(),
        args.dir.display(),
        genesis.chain_id
    );
    Ok(genesis)
}

fn members(dir: &Path, genesis: &Genesis) -> Result<Vec<Member>, CliError> {
    (0..genesis.n())
        .map(|i| {
            let home = dir.join(format!("validator-{i}"));
            let config = NodeConfig::load(&home).map_err(CliError::input)?;
            let api = config
                .api_socket_addr()
                .map_err(|e| CliError::input(format!("{}: api_listen: {e}", home.display())))?;
            let mut ports = vec![api.port()];
            ports.extend(
                config
                    .p2p_listen
                    .rsplit_once("/tcp/")
                    .and_then(|(_, p)| p.split('/').next()?.parse::<u16>().ok()),
            );
            Ok(Member {
                name: config.name.clone(),
                home,
                api: format!("http://{api}"),
                ports,
            })
        })
        .collect()
}

/// Refuses to start if a port is taken: most often a validator of an earlier run.
fn check_ports(members: &[Member]) -> Result<(), CliError> {
    for m in members {
        for &port in &m.ports {
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                return Err(CliError::failure(format!(
                    "port {port} of {} is not free ({e}). Another localnet or cairnd may be \
                     running (look for `cairnd run --home {}`); stop it, or create the \
                     network elsewhere with --dir OTHER --base-port PORT",
                    m.name,
                    m.home.display()
                )));
            }
        }
    }
    Ok(())
}

struct Running {
    member: Member,
    child: Option<Child>,
    pid: u32,
}

async fn supervise(dir: &Path, genesis: &Genesis, members: Vec<Member>) -> Result<(), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failure(format!("cannot find the cairnd executable: {e}")))?;
    let mut running = Vec::new();
    for m in members {
        match spawn(&exe, &m) {
            Ok(child) => {
                let pid = child.id().unwrap_or(0);
                running.push(Running {
                    member: m,
                    child: Some(child),
                    pid,
                });
            }
            Err(e) => {
                stop_all(&mut running).await;
                return Err(e);
            }
        }
    }
    print_banner(dir, genesis, &running);
    let stopped = monitor(&mut running).await;
    stop_all(&mut running).await;
    match stopped {
        Stop::Signal => Ok(()),
        Stop::AllExited => Err(CliError::failure(
            "every validator exited; see the cairnd.log files above",
        )),
    }
}

fn spawn(exe: &Path, m: &Member) -> Result<Child, CliError> {
    let log_path = m.home.join("cairnd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", log_path.display())))?;
    let err_log = log
        .try_clone()
        .map_err(|e| CliError::failure(format!("cannot open {}: {e}", log_path.display())))?;
    Command::new(exe)
        .arg("run")
        .arg("--home")
        .arg(&m.home)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        // Its own process group: Ctrl-C reaches only localnet, which stops the validators
        // one by one and waits for them.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CliError::failure(format!("cannot start {}: {e}", m.name)))
}

fn print_banner(dir: &Path, genesis: &Genesis, running: &[Running]) {
    println!(
        "chain {} · {} · n={} f={}",
        genesis.chain_id,
        genesis.protocol,
        genesis.n(),
        genesis.f()
    );
    for r in running {
        println!(
            "  {}  api {}  pid {}  log {}",
            r.member.name,
            r.member.api,
            r.pid,
            r.member.home.join("cairnd.log").display()
        );
    }
    let wallets = wallet_files(dir);
    println!("funded wallets:");
    for (path, address) in &wallets {
        println!("  {}  {address}", path.display());
    }
    let cairn = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.join("cairn")))
        .filter(|p| p.exists())
        .map_or_else(|| "cairn".to_string(), |p| p.display().to_string());
    if let (Some((w0, _)), Some((_, to))) = (wallets.first(), wallets.get(1)) {
        println!("try:");
        println!("  {cairn} --key {} balance", w0.display());
        println!(
            "  {cairn} --key {} transfer --to {to} --amount 10 --wait",
            w0.display()
        );
    }
    println!("Ctrl-C stops the network; run the same command again to continue the chain.");
}

fn wallet_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(dir.join("wallets"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let key = genesis::load_key_file(&p).ok()?;
            Some((p, ledger::Address::of(&key.public()).to_string()))
        })
        .collect();
    out.sort();
    out
}

enum Stop {
    Signal,
    AllExited,
}

/// Shows the live line until Ctrl-C / SIGTERM, or until every validator started here has
/// exited and no validator's API answers.
async fn monitor(running: &mut [Running]) -> Stop {
    // Below TICK, so that every refresh shows every validator's state of this tick; no idle
    // connections kept, so that a restarted validator is asked on a fresh one.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_default();
    let tty = std::io::stdout().is_terminal();
    let bar = if tty {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = vec![None; running.len()];
    let mut ticks = 0u32;
    let signal = super::cairnd::stop_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {}
        }
        ticks += 1;
        for r in running.iter_mut() {
            check_exit(r, &bar);
        }
        // Every member, whether or not the process started here still runs: one that exited
        // may have been restarted by hand.
        let polled =
            futures::future::join_all(running.iter().map(|r| poll(&http, &r.member.api))).await;
        let (statuses, counts): (Vec<_>, Vec<_>) = polled.into_iter().unzip();
        if running.iter().all(|r| r.child.is_none()) && statuses.iter().all(Option::is_none) {
            bar.finish_and_clear();
            return Stop::AllExited;
        }
        let rate = throughput(&mut last, &counts, tokio::time::Instant::now());
        let names: Vec<&str> = running.iter().map(|r| r.member.name.as_str()).collect();
        let line = summarize(&names, &statuses, rate);
        if tty {
            bar.set_message(line);
        } else if ticks.is_multiple_of(PLAIN_EVERY) {
            println!("{line}");
        }
    }
    bar.finish_and_clear();
    println!("stopping the validators…");
    Stop::Signal
}

/// Reports a validator that exited on its own, with the end of its log.
fn check_exit(r: &mut Running, bar: &indicatif::ProgressBar) {
    let Some(child) = &mut r.child else { return };
    let Ok(Some(status)) = child.try_wait() else {
        return;
    };
    r.child = None;
    let log = r.member.home.join("cairnd.log");
    let tail = last_lines(&log, 8);
    bar.suspend(|| {
        eprintln!(
            "{} exited ({status}); last lines of {}:",
            r.member.name,
            log.display()
        );
        for l in tail {
            eprintln!("  | {l}");
        }
    });
}

fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// SIGTERM to every running validator, then waits; SIGKILL after [`STOP_WAIT`].
async fn stop_all(running: &mut [Running]) {
    for r in running.iter() {
        if r.child.is_some()
            && let Some(pid) = rustix::process::Pid::from_raw(r.pid as i32)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for r in running.iter_mut() {
        let Some(mut child) = r.child.take() else {
            continue;
        };
        match tokio::time::timeout(STOP_WAIT, child.wait()).await {
            Ok(Ok(status)) if status.success() => println!("stopped {}", r.member.name),
            Ok(Ok(status)) => println!("{} stopped ({status})", r.member.name),
            _ => {
                let _ = child.kill().await;
                println!(
                    "{} did not stop within {}s and was killed",
                    r.member.name,
                    STOP_WAIT.as_secs()
                );
            }
        }
    }
}
