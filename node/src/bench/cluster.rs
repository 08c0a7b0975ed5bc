//! A fresh local cluster for one bench run: a testnet directory written with the bench's
//! funded accounts, one `cairnd run` child process per validator on loopback, their CPU time
//! from `/proc`, their metrics, and a clean stop (SIGTERM, then SIGKILL after a grace period).

use anyhow::{Context, bail};
use genesis::{Params, Protocol, TestnetSpec, write_testnet};
use ledger::{Address, ChainBinding};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long validators get to stop after SIGTERM before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long the cluster gets to connect and commit its first block.
const READY_WAIT: Duration = Duration::from_secs(60);

/// What to start.
pub struct ClusterSpec {
    pub protocol: Protocol,
    pub validators: usize,
    pub dir: PathBuf,
    pub funded: Vec<Address>,
    pub balance: u64,
    pub raw_transactions: bool,
    /// Largest block, in transactions and bytes (genesis params).
    pub max_block_txs: u32,
    pub max_block_bytes: u32,
    /// `retain_blocks` in every validator's `config.toml` (None: the default).
    pub retain_blocks: Option<u64>,
}

pub struct Cluster {
    pub apis: Vec<String>,
    pub chain: ChainBinding,
    pub dir: PathBuf,
    children: Vec<Child>,
    pids: Vec<i32>,
}

/// Counters read from one validator's `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub height: u64,
    pub view_changes: u64,
    pub sent_frames: u64,
    pub sent_bytes: u64,
    pub fsyncs: u64,
    /// `(sum of seconds, count)` of each `cairn_stage_*_seconds` histogram, in
    /// [`crate::api::StageHistograms::NAMES`] order.
    pub stages: [(f64, u64); 5],
}

impl Cluster {
    /// Writes the testnet into `spec.dir` (which must not exist or be empty), starts every
    /// validator and waits until all of them answer and the cluster has committed a block.
    pub async fn start(spec: &ClusterSpec, http: &reqwest::Client) -> anyhow::Result<Cluster> {
        let base_port = free_ports(spec.validators)?;
        let params = Params {
            raw_transactions: spec.raw_transactions,
            max_block_txs: spec.max_block_txs,
            max_block_bytes: spec.max_block_bytes,
            ..Params::default()
        };
        let summary = write_testnet(&TestnetSpec {
            validators: spec.validators,
            protocol: spec.protocol,
            out: spec.dir.clone(),
            accounts: 0,
            balance: spec.balance,
            base_port,
            chain_id: "cairn-bench".into(),
            genesis_time: genesis::rfc3339::now_utc(),
            params,
            funded: spec.funded.clone(),
            hosts: None,
        })
        .map_err(|e| anyhow::anyhow!("cannot write the bench testnet: {e}"))?;
        if let Some(retain) = spec.retain_blocks {
            for v in &summary.validators {
                let mut c = genesis::NodeConfig::load(&v.home)
                    .map_err(|e| anyhow::anyhow!("bench testnet: {e}"))?;
                c.retain_blocks = retain;
                c.save(&v.home)
                    .map_err(|e| anyhow::anyhow!("bench testnet: {e}"))?;
            }
        }
        let exe = std::env::current_exe().context("cannot find the cairnd executable")?;
        let mut cluster = Cluster {
            apis: summary
                .validators
                .iter()
                .map(|v| format!("http://{}", v.api_listen))
                .collect(),
            chain: ChainBinding {
                chain_id: summary.genesis.chain_id.clone(),
                genesis_hash: summary.genesis_hash,
            },
            dir: spec.dir.clone(),
            children: Vec::new(),
            pids: Vec::new(),
        };
        for v in &summary.validators {
            let log_path = v.home.join("cairnd.log");
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?;
            let child = Command::new(&exe)
                .arg("run")
                .arg("--home")
                .arg(&v.home)
                .env("NO_COLOR", "1")
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", v.name))?;
            cluster.pids.push(child.id().map_or(0, |p| p as i32));
            cluster.children.push(child);
        }
        cluster.wait_ready(http).await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            for (i, c) in self.children.iter_mut().enumerate() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "validator-{i} exited during start-up ({status}); see {}",
                        self.dir.join(format!("validator-{i}/cairnd.log")).display()
                    );
                }
            }
            let mut ready = 0;
            for api in &self.apis {
                if let Some(s) = status(http, api).await
                    && s.peers.len() + 1 == self.apis.len()
                    && s.leader.is_some()
                {
                    ready += 1;
                }
            }
            if ready == self.apis.len() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the cluster was not ready within {}s (every validator connected to every \
                     other and following a leader); see the cairnd.log files under {}",
                    READY_WAIT.as_secs(),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The validators' process ids, in validator order.
    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    /// Total CPU seconds (user + system) used so far by the validator processes.
    pub fn cpu_seconds(&self) -> f64 {
        self.pids.iter().map(|&p| cpu_seconds_of(p)).sum()
    }

    /// Every validator's counters; a validator that does not answer counts as zeros.
    pub async fn counters(&self, http: &reqwest::Client) -> Vec<Counters> {
        let mut out = Vec::with_capacity(self.apis.len());
        for api in &self.apis {
            out.push(counters(http, api).await.unwrap_or_default());
        }
        out
    }

    /// Every validator's counters, each given at most `limit` to answer (None if it did not:
    /// stopped, overloaded or gone).
    pub async fn counters_within(
        &self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> Vec<Option<Counters>> {
        let mut out = Vec::with_capacity(self.apis.len());
        for api in &self.apis {
            out.push(
                tokio::time::timeout(limit, counters(http, api))
                    .await
                    .ok()
                    .flatten(),
            );
        }
        out
    }

    /// SIGTERM to every validator, then waits; SIGKILL after [`STOP_WAIT`]. Returns the
    /// validators that did not stop cleanly.
    pub async fn stop(mut self) -> Vec<String> {
        for &pid in &self.pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let mut unclean = Vec::new();
        for (i, child) in self.children.iter_mut().enumerate() {
            match tokio::time::timeout(STOP_WAIT, child.wait()).await {
                Ok(Ok(s)) if s.success() => {}
                Ok(Ok(s)) => unclean.push(format!("validator-{i} exited with {s}")),
                _ => {
                    let _ = child.kill().await;
                    unclean.push(format!(
                        "validator-{i} did not stop within {}s and was killed",
                        STOP_WAIT.as_secs()
                    ));
                }
            }
        }
        unclean
    }
}

/// A base port such that base+i (p2p) and base+1000+i (API) are free for every validator.
fn free_ports(n: usize) -> anyhow::Result<u16> {
    let start = 27_000 + (std::process::id() % 500) as u16 * 4;
    'next: for base in (start..40_000).step_by(16) {
        for i in 0..n as u16 {
            for port in [base + i, base + 1000 + i] {
                if TcpListener::bind(("127.0.0.1", port)).is_err() {
                    continue 'next;
                }
            }
        }
        return Ok(base);
    }
    bail!("no free block of ports for {n} validators between 27000 and 41000")
}

async fn status(http: &reqwest::Client, api: &str) -> Option<crate::api::NodeStatus> {
    http.get(format!("{api}/v1/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn counters(http: &reqwest::Client, api: &str) -> Option<Counters> {
    let text = crate::api::fetch_metrics(http, api).await?;
    let float = |name: &str| crate::api::sample_value(&text, name).unwrap_or(0.0);
    let get = |name: &str| float(name) as u64;
    let stages = crate::api::StageHistograms::NAMES.map(|n| {
        (
            float(&format!("cairn_stage_{n}_seconds_sum")),
            get(&format!("cairn_stage_{n}_seconds_count")),
        )
    });
    Some(Counters {
        stages,
        height: get("cairn_height"),
        view_changes: get("cairn_view_changes_total"),
        sent_frames: get("cairn_sent_frames_total"),
        sent_bytes: get("cairn_sent_bytes_total"),
        fsyncs: get("cairn_fsync_seconds_count"),
    })
}

/// utime + stime of a process from `/proc/PID/stat`, in seconds (0 if unreadable).
fn cpu_seconds_of(pid: i32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14 and stime field 15.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / clock_ticks() as f64
}

fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// The directory for one run's cluster.
pub fn run_dir(out: &Path, label: &str) -> PathBuf {
    out.join("clusters").join(label)
}
