//! `cairnd bench --soak DURATION`: one protocol under a steady load for a long time, watched.
//!
//! The offered rate is `--rate`, or `--soak-fraction` (default 0.5) of the saturation a short
//! closed-loop run measures first. Load is generated while it runs (transfers signed on the
//! fly, round-robin over the bench accounts, or raw payloads), in batches every 100 ms, to
//! the validators in turn. Every `--sample` (default 5 s) each validator's height, resident
//! memory (`/proc/PID/status` VmRSS), open files (`/proc/PID/fd`) and disk use (its data
//! directory) are recorded; every second the heights are polled for stalls: a validator whose
//! height does not move for [`STALL_AFTER`] (3 × the 1 s round or election timeout) while
//! load runs has stalled.
//!
//! Output in `--out`: `soak.csv` (one row per validator and sample), `soak.svg` (memory and
//! disk over time) and `soak.txt`, whose last line is the verdict:
//! - no stall;
//! - in runs of at least [`JUDGE_RSS_AFTER`], resident memory after warm-up (the first fifth
//!   of the run) grows by less than 10 % on every validator (medians of three samples at the
//!   end of warm-up and at the end); shorter runs report it without judging it, because the
//!   caches (`state_cache_mb`, `db_cache_mb`) take minutes to fill;
//! - disk growth over the second half is reported (it is flat once the `retain_blocks`
//!   window, `--retain-blocks`, is full; it is not a pass condition when the window did not
//!   fill).

use super::BenchArgs;
use super::cluster::Cluster;
use super::load::{Accounts, Workload, raw_tx};
use crate::cli::CliError;
use genesis::Protocol;
use ledger::{Payload, Transaction};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// No new block for this long on a validator while load runs is a stall.
pub const STALL_AFTER: Duration = Duration::from_secs(3);
/// Resident memory may grow by less than this after warm-up.
const RSS_GROWTH_MAX: f64 = 0.10;
/// Memory growth is judged only in runs at least this long.
pub const JUDGE_RSS_AFTER: Duration = Duration::from_secs(600);
/// Load is sent in batches this often.
const TICK: Duration = Duration::from_millis(100);

/// One sample of one validator.
#[derive(Clone, Debug)]
struct Sample {
    t_s: f64,
    validator: usize,
    height: u64,
    rss_mb: f64,
    open_files: u64,
    disk_mb: f64,
}

/// A stretch without a new block on one validator.
#[derive(Clone, Debug)]
struct Stall {
    validator: usize,
    at_s: f64,
    secs: f64,
}

/// `cairnd bench --soak`: see the module documentation.
pub async fn soak(args: &BenchArgs, duration: Duration) -> Result<String, CliError> {
    let protocol = match args.protocols.as_slice() {
        [p] => *p,
        _ => {
            return Err(CliError::input(
                "--soak runs one protocol: name it with --protocols (e.g. --protocols raft)",
            ));
        }
    };
    if !(args.soak_fraction > 0.0 && args.soak_fraction <= 1.0) {
        return Err(CliError::input("--soak-fraction must be in (0, 1]"));
    }
    let n = if protocol.is_bft() {
        args.validators
    } else {
        args.raft_validators
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| CliError::failure(format!("cannot build the HTTP client: {e}")))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", args.out.display())))?;
    let accounts = Accounts::new(if args.workload == Workload::Transfer {
        args.accounts
    } else {
        0
    });
    let rate = match args.rate {
        Some(r) => r,
        None => {
            let measured = super::saturation(args, &http, &accounts, protocol, n).await?;
            eprintln!(
                "   saturation measured: {measured:.0} tx/s; soaking at {:.0}%",
                args.soak_fraction * 100.0
            );
            measured * args.soak_fraction
        }
    };
    let label = format!("{}-soak", protocol.as_str());
    let spec = super::fresh_spec(args, &accounts, protocol, n, &label)?;
    let dir = spec.dir.clone();
    eprintln!(
        "\n== {label}: {n} validators, {rate:.0} tx/s for {}s",
        duration.as_secs()
    );
    let cluster = Cluster::start(&spec, &http)
        .await
        .map_err(|e| CliError::failure(format!("{label}: {e:#}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let loader = tokio::spawn(offer(
        http.clone(),
        cluster.apis.clone(),
        cluster.chain.clone(),
        accounts,
        args.workload,
        args.tx_size,
        rate,
        stop.clone(),
        sent.clone(),
        refused.clone(),
    ));
    let started = Instant::now();
    let (samples, stalls) = watch(&cluster, &http, duration, args.sample, started).await;
    stop.store(true, Ordering::Relaxed);
    let _ = loader.await;
    let unclean = cluster.stop().await;
    for u in &unclean {
        eprintln!("   warning: {u}");
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let verdict = verdict(
        protocol,
        rate,
        duration,
        n,
        &samples,
        &stalls,
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    write_outputs(&args.out, &samples, &stalls, &verdict)
        .map_err(|e| CliError::failure(format!("cannot write the soak report: {e}")))?;
    Ok(verdict)
}

/// Sends `rate` transactions per second in batches every [`TICK`], to the validators in turn,
/// until `stop`.
#[allow(clippy::too_many_arguments)]
async fn offer(
    http: reqwest::Client,
    apis: Vec<String>,
    chain: ledger::ChainBinding,
    accounts: Accounts,
    workload: Workload,
    tx_size: usize,
    rate: f64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let accounts = Arc::new(accounts);
    let mut nonces = vec![0u64; accounts.keys.len()];
    let (mut next_account, mut next_id, mut turn) = (0usize, 0u64, 0usize);
    let mut owed = 0.0f64;
    let mut tick = tokio::time::interval(TICK);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        owed += rate * TICK.as_secs_f64();
        let k = owed.floor() as usize;
        owed -= k as f64;
        if k == 0 {
            continue;
        }
        // Which account signs which nonce is decided here; signing runs off the runtime.
        let mut plan = Vec::with_capacity(k);
        for _ in 0..k {
            match workload {
                Workload::Transfer => {
                    let a = next_account % nonces.len();
                    next_account += 1;
                    plan.push((a, nonces[a]));
                    nonces[a] += 1;
                }
                Workload::Raw => {
                    plan.push((0, next_id));
                    next_id += 1;
                }
            }
        }
        let (accts, chain2) = (accounts.clone(), chain.clone());
        let body = tokio::task::spawn_blocking(move || {
            let txs: Vec<Vec<u8>> = plan
                .iter()
                .map(|&(a, nonce)| match workload {
                    Workload::Transfer => {
                        let to = accts.addresses[(a + 1) % accts.addresses.len()];
                        Transaction::sign(
                            &accts.keys[a],
                            &chain2,
                            nonce,
                            Payload::Transfer { to, amount: 1 },
                        )
                        .encode()
                    }
                    Workload::Raw => raw_tx(&chain2, nonce, tx_size).encode(),
                })
                .collect();
            crate::api::encode_batch(txs.iter().map(Vec::as_slice))
        })
        .await
        .unwrap_or_default();
        let api = &apis[turn % apis.len()];
        turn += 1;
        // The same batch again after a 503 (busy) until it is taken or the soak ends: the
        // nonces that follow depend on it.
        loop {
            let resp = http
                .post(format!("{api}/v1/transactions/batch"))
                .body(body.clone())
                .send()
                .await;
            match resp {
                Ok(r) if r.status().is_success() => {
                    if let Ok(v) = r.json::<crate::api::BatchVerdict>().await {
                        sent.fetch_add(v.accepted as u64, Ordering::Relaxed);
                        refused.fetch_add(v.rejected.len() as u64, Ordering::Relaxed);
                    }
                    break;
                }
                Ok(r) if r.status().as_u16() == 503 && !stop.load(Ordering::Relaxed) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => {
                    refused.fetch_add(k as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// Samples every `every` and polls heights every second for `duration`.
async fn watch(
    cluster: &Cluster,
    http: &reqwest::Client,
    duration: Duration,
    every: Duration,
    started: Instant,
) -> (Vec<Sample>, Vec<Stall>) {
    let n = cluster.apis.len();
    let mut samples = Vec::new();
    let mut stalls = Vec::new();
    let mut last_height = vec![0u64; n];
    let mut moved_at = vec![Instant::now(); n];
    let mut stalled = vec![false; n];
    let mut next_sample = Instant::now();
    while started.elapsed() < duration {
        let now = Instant::now();
        // A validator that does not answer within 300 ms (stopped, overloaded) must not hold
        // up the others' polls, and counts as not moving.
        let counters: Vec<_> = cluster
            .counters_within(http, Duration::from_millis(300))
            .await
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                c.unwrap_or(super::cluster::Counters {
                    height: last_height[i],
                    ..Default::default()
                })
            })
            .collect();
        for (i, c) in counters.iter().enumerate() {
            if c.height > last_height[i] {
                if stalled[i] {
                    let secs = now.duration_since(moved_at[i]).as_secs_f64();
                    let at_s = moved_at[i].duration_since(started).as_secs_f64();
                    eprintln!("   stall: validator {i} made no block for {secs:.1}s");
                    stalls.push(Stall {
                        validator: i,
                        at_s,
                        secs,
                    });
                    stalled[i] = false;
                }
                last_height[i] = c.height;
                moved_at[i] = now;
            } else if now.duration_since(moved_at[i]) > STALL_AFTER {
                stalled[i] = true;
            }
        }
        if now >= next_sample {
            next_sample = now + every;
            let t_s = started.elapsed().as_secs_f64();
            for (i, c) in counters.iter().enumerate() {
                let pid = cluster.pids().get(i).copied().unwrap_or(0);
                samples.push(Sample {
                    t_s,
                    validator: i,
                    height: c.height,
                    rss_mb: rss_kb(pid) as f64 / 1024.0,
                    open_files: open_files(pid),
                    disk_mb: dir_bytes(&cluster.dir.join(format!("validator-{i}/data"))) as f64
                        / (1024.0 * 1024.0),
                });
            }
            let h: Vec<String> = counters.iter().map(|c| c.height.to_string()).collect();
            eprintln!("   {t_s:>6.0}s heights {}", h.join(" "));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A stall still open at the end counts too.
    for i in 0..n {
        if stalled[i] {
            stalls.push(Stall {
                validator: i,
                at_s: moved_at[i].duration_since(started).as_secs_f64(),
                secs: moved_at[i].elapsed().as_secs_f64(),
            });
        }
    }
    (samples, stalls)
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_files(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The median of validator `v`'s `field` over its three samples nearest `t_s`.
fn around(samples: &[Sample], v: usize, t_s: f64, field: fn(&Sample) -> f64) -> f64 {
    let mut mine: Vec<&Sample> = samples.iter().filter(|s| s.validator == v).collect();
    mine.sort_by(|a, b| {
        (a.t_s - t_s)
            .abs()
            .partial_cmp(&(b.t_s - t_s).abs())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut vals: Vec<f64> = mine.iter().take(3).map(|s| field(s)).collect();
    vals.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    vals.get(vals.len() / 2).copied().unwrap_or(0.0)
}

#[allow(clippy::too_many_arguments)]
fn verdict(
    protocol: Protocol,
    rate: f64,
    duration: Duration,
    n: usize,
    samples: &[Sample],
    stalls: &[Stall],
    sent: u64,
    refused: u64,
) -> String {
    let end = samples.iter().map(|s| s.t_s).fold(0.0, f64::max);
    let warm = end / 5.0;
    let (mut rss_growth, mut disk_growth) = (f64::MIN, f64::MIN);
    let mut lines = Vec::new();
    for v in 0..n {
        let (r0, r1) = (
            around(samples, v, warm, |s| s.rss_mb),
            around(samples, v, end, |s| s.rss_mb),
        );
        let (d0, d1) = (
            around(samples, v, end / 2.0, |s| s.disk_mb),
            around(samples, v, end, |s| s.disk_mb),
        );
        let g = if r0 > 0.0 { r1 / r0 - 1.0 } else { 0.0 };
        let dg = if d0 > 0.0 { d1 / d0 - 1.0 } else { 0.0 };
        rss_growth = rss_growth.max(g);
        disk_growth = disk_growth.max(dg);
        lines.push(format!(
            "validator {v}: RSS {r0:.1} MB after warm-up -> {r1:.1} MB at the end ({:+.1}%); \
             disk {d0:.1} MB at half time -> {d1:.1} MB ({:+.1}%)",
            g * 100.0,
            dg * 100.0
        ));
    }
    let judge_rss = duration >= JUDGE_RSS_AFTER;
    let ok =
        (!judge_rss || rss_growth < RSS_GROWTH_MAX) && stalls.is_empty() && !samples.is_empty();
    lines.push(format!(
        "{} soak of {}: {n} validators, {rate:.0} tx/s offered for {}s, {sent} accepted, \
         {refused} refused; RSS growth after warm-up at most {:+.1}% ({}), disk growth over the \
         second half at most {:+.1}%, {} stalls (no block for {}s)",
        if ok { "PASS" } else { "FAIL" },
        protocol.as_str(),
        duration.as_secs(),
        rss_growth * 100.0,
        if judge_rss {
            format!("limit {:.0}%", RSS_GROWTH_MAX * 100.0)
        } else {
            format!(
                "not judged: runs under {} min end before the caches are full",
                JUDGE_RSS_AFTER.as_secs() / 60
            )
        },
        disk_growth * 100.0,
        stalls.len(),
        STALL_AFTER.as_secs()
    ));
    lines.join("\n")
}

fn write_outputs(
    out: &Path,
    samples: &[Sample],
    stalls: &[Stall],
    verdict: &str,
) -> std::io::Result<Vec<PathBuf>> {
    let mut csv = String::from("t_s,validator,height,rss_mb,open_files,disk_mb\n");
    for s in samples {
        csv.push_str(&format!(
            "{:.1},{},{},{:.2},{},{:.3}\n",
            s.t_s, s.validator, s.height, s.rss_mb, s.open_files, s.disk_mb
        ));
    }
    let mut text = String::new();
    for s in stalls {
        text.push_str(&format!(
            "stall: validator {} made no block for {:.1}s from {:.0}s\n",
            s.validator, s.secs, s.at_s
        ));
    }
    text.push_str(verdict);
    text.push('\n');
    let series: Vec<super::chart::SoakSeries> = {
        let n = samples.iter().map(|s| s.validator + 1).max().unwrap_or(0);
        (0..n)
            .map(|v| {
                let pts = samples
                    .iter()
                    .filter(|s| s.validator == v)
                    .map(|s| (s.t_s, s.rss_mb, s.disk_mb))
                    .collect();
                (v, pts)
            })
            .collect()
    };
    let svg = super::chart::soak(&series);
    let files = [
        (out.join("soak.csv"), csv),
        (out.join("soak.txt"), text),
        (out.join("soak.svg"), svg),
    ];
    let mut written = Vec::new();
    for (path, body) in files {
        std::fs::write(&path, body)?;
        written.push(path);
    }
    Ok(written)
}
