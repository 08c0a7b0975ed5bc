//! `cairnd bench`: starts a fresh local cluster of real `cairnd run` processes per protocol
//! (and per offered rate in a sweep), drives load, and reports what each protocol commits
//! and what it costs.
//!
//! - `cluster.rs`: [`cluster::Cluster`], the child processes, their `/proc` CPU time and
//!   `/metrics` counters.
//! - `load.rs`: workloads prepared before the window, open and closed loop submission
//!   through `POST /v1/transactions/batch`, latency from the events stream.
//! - `ceiling.rs`: this machine's ed25519/sha256 speed and the transfer ceiling it implies.
//! - `report.rs`: [`report::Report`] rows; table, CSV, JSON and a consistency check.
//! - `chart.rs`: SVG charts (plotters).
//! - `soak.rs`: `--soak DURATION`, one protocol under steady load, its memory, files, disk
//!   and stalls sampled, with a verdict.

pub mod ceiling;
pub mod chart;
pub mod cluster;
pub mod load;
pub mod report;
mod rows;
pub mod soak;

use crate::cli::CliError;
use clap::Args;
use cluster::{Cluster, ClusterSpec};
use genesis::Protocol;
use load::{Accounts, Load, Timing, Workload};
use report::{Report, Row, Saturation};
use rows::row_of;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Protocols to compare, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "hotstuff,pbft,raft")]
    pub protocols: Vec<Protocol>,
    /// Validators in the BFT clusters (hotstuff, pbft; at least 4)
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Validators in the Raft cluster
    #[arg(long, default_value_t = 3)]
    pub raft_validators: usize,
    /// Measured window per run (e.g. 30s, 500ms, 2m)
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before the window, not measured
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How long to wait after the window for its transactions to commit; the ones still
    /// open then count as failed
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Open loop: offer this many transactions per second (the first rate of a --sweep)
    #[arg(long, value_name = "TX/S", conflicts_with = "in_flight")]
    pub rate: Option<f64>,
    /// Closed loop: keep this many transactions in flight [default: 10000 unless --rate]
    #[arg(long, value_name = "K")]
    pub in_flight: Option<usize>,
    /// transfer: signed transfers, executed; raw: unsigned opaque payloads of --tx-size
    /// bytes, ordered and stored but not executed
    #[arg(long, value_enum, default_value_t = Workload::Transfer)]
    pub workload: Workload,
    /// Encoded size of a raw transaction, bytes
    #[arg(long, default_value_t = 512)]
    pub tx_size: usize,
    /// Raise the offered rate (doubling from --rate, default 2000 tx/s) until committed
    /// throughput stops growing or latency explodes; report the saturation point
    #[arg(long, conflicts_with = "in_flight")]
    pub sweep: bool,
    /// Funded accounts sending transfers
    #[arg(long, default_value_t = 2000)]
    pub accounts: usize,
    /// Most transactions prepared per run in a closed loop (open loops prepare what the rate
    /// needs)
    #[arg(long, value_name = "N")]
    pub max_txs: Option<usize>,
    /// Output directory: report.json, results.csv, table.txt, throughput.svg, latency.svg
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Keep each run's cluster directory (stores and logs) under OUT/clusters
    #[arg(long)]
    pub keep: bool,
    /// Soak instead: run the one protocol of --protocols for this long (e.g. 1h, 2m) at
    /// --rate, or at --soak-fraction of its saturation measured first; sample memory, open
    /// files, disk and height; write soak.csv, soak.svg and soak.txt with a verdict
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with_all = ["sweep", "in_flight"])]
    pub soak: Option<Duration>,
    /// Soak: the fraction of the measured saturation to offer (when --rate is not given)
    #[arg(long, default_value_t = 0.5)]
    pub soak_fraction: f64,
    /// Soak: how often each validator is sampled
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub sample: Duration,
    /// `retain_blocks` for the bench's validators (default: the config default, 10000)
    #[arg(long, value_name = "N")]
    pub retain_blocks: Option<u64>,
}

/// Largest block in the bench's genesis: 1024 transactions / 512 KiB per batch.
const MAX_BLOCK_TXS: u32 = 65_536;
const MAX_BLOCK_BYTES: u32 = 32 << 20;
/// Balance of each bench account (2000 of them stay far below the u64 supply limit).
const BALANCE: u64 = 1_000_000_000_000;
/// Sweep: stop once a step adds less than this fraction of throughput.
const SWEEP_GROWTH: f64 = 0.10;
/// Sweep: stop once the median latency passes this.
const SWEEP_MAX_P50_MS: f64 = 1000.0;
const SWEEP_MAX_STEPS: usize = 10;

/// Parses `30s`, `500ms`, `2m`, `1h` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 30s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?} is out of range (0 to 24 hours)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `cairnd bench`.
pub fn bench(args: BenchArgs) -> Result<(), CliError> {
    check_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    if let Some(d) = args.soak {
        let verdict = runtime.block_on(soak::soak(&args, d))?;
        println!("\n{verdict}");
        println!(
            "wrote {}, soak.svg and soak.txt",
            args.out.join("soak.csv").display()
        );
        return match verdict.lines().last() {
            Some(l) if l.starts_with("PASS") => Ok(()),
            _ => Err(CliError::failure("the soak failed (see the verdict above)")),
        };
    }
    let report = runtime.block_on(run(&args))?;
    let table = report::table(&report);
    println!("\n{table}");
    let written = report::write_all(&report, &args.out).map_err(|e| {
        CliError::failure(format!(
            "cannot write the report to {}: {e}",
            args.out.display()
        ))
    })?;
    for p in written {
        println!("wrote {}", p.display());
    }
    let problems = report::check(&report);
    if !problems.is_empty() {
        return Err(CliError::failure(format!(
            "the report is inconsistent:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(())
}

fn check_args(a: &BenchArgs) -> Result<(), CliError> {
    if a.protocols.is_empty() {
        return Err(CliError::input("--protocols: name at least one"));
    }
    if a.protocols.iter().any(|p| p.is_bft()) && a.validators < 4 {
        return Err(CliError::input(
            "--validators: hotstuff and pbft need at least 4 (3f+1 with f ≥ 1)",
        ));
    }
    if a.raft_validators == 0 || a.validators > 64 || a.raft_validators > 64 {
        return Err(CliError::input(
            "--validators / --raft-validators: between 1 and 64",
        ));
    }
    if a.duration.is_zero() {
        return Err(CliError::input("--duration must be more than 0"));
    }
    if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(CliError::input("--rate must be a positive number of tx/s"));
    }
    if a.in_flight == Some(0) {
        return Err(CliError::input("--in-flight must be at least 1"));
    }
    if a.workload == Workload::Transfer && a.accounts < 2 {
        return Err(CliError::input("--accounts: at least 2 for transfers"));
    }
    if a.tx_size > 60_000 {
        return Err(CliError::input("--tx-size: at most 60000 bytes"));
    }
    if a.sample.is_zero() {
        return Err(CliError::input("--sample must be more than 0"));
    }
    if let Some(r) = a.retain_blocks
        && r != 0
        && r < genesis::NodeConfig::MIN_RETAIN_BLOCKS
    {
        return Err(CliError::input(format!(
            "--retain-blocks: 0 (keep everything) or at least {}",
            genesis::NodeConfig::MIN_RETAIN_BLOCKS
        )));
    }
    Ok(())
}

async fn run(args: &BenchArgs) -> Result<Report, CliError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| CliError::failure(format!("cannot build the HTTP client: {e}")))?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", args.out.display())))?;
    let accounts = Accounts::new(if args.workload == Workload::Transfer {
        args.accounts
    } else {
        0
    });
    let transfer_bytes = transfer_size();
    let ceiling_n = |n: usize| {
        let c = ceiling::measure(n, cores, transfer_bytes);
        eprintln!(
            "ceiling for signed transfers, n={n}: {:.0} tx/s ({}; single verify {:.1} µs, \
             sha256 {:.0} MB/s)",
            c.tps, c.formula, c.verify_us, c.sha256_mb_s
        );
        c
    };
    let bft_n = args.validators;
    let ceiling = ceiling_n(bft_n);
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started: genesis::rfc3339::now_utc(),
        cores,
        ceiling: ceiling.clone(),
        rows: Vec::new(),
        saturation: Vec::new(),
    };
    for &protocol in &args.protocols {
        let n = if protocol.is_bft() {
            args.validators
        } else {
            args.raft_validators
        };
        let ceiling_tps = ceiling.tps_for(n);
        if args.sweep {
            let mut rate = args.rate.unwrap_or(2000.0);
            let mut best: Option<Row> = None;
            let mut reason = format!("stopped after {SWEEP_MAX_STEPS} steps");
            for step in 0..SWEEP_MAX_STEPS {
                let load = Load::Open(rate);
                let row = one_run(args, &http, &accounts, protocol, n, load, ceiling_tps).await?;
                report.rows.push(row.clone());
                let prev = best.as_ref().map_or(0.0, |b| b.committed_tps);
                let (tps, p50) = (row.committed_tps, row.latency_ms.p50);
                if tps > prev {
                    best = Some(row);
                }
                if step > 0 && tps < prev * (1.0 + SWEEP_GROWTH) {
                    reason = format!(
                        "offering {rate:.0} tx/s committed {tps:.0} tx/s, less than {:.0}% more \
                         than the best step before",
                        SWEEP_GROWTH * 100.0
                    );
                    break;
                }
                if p50 > SWEEP_MAX_P50_MS {
                    reason = format!(
                        "median latency {p50:.0} ms at {rate:.0} tx/s passed {SWEEP_MAX_P50_MS:.0} ms"
                    );
                    break;
                }
                rate *= 2.0;
            }
            if let Some(b) = best {
                report.saturation.push(Saturation {
                    protocol: b.protocol.clone(),
                    workload: b.workload.clone(),
                    offered_rate: b.offered_rate.unwrap_or(0.0),
                    committed_tps: b.committed_tps,
                    p50_ms: b.latency_ms.p50,
                    reason,
                });
            }
        } else {
            let load = match (args.rate, args.in_flight) {
                (Some(r), _) => Load::Open(r),
                (None, k) => Load::Closed(k.unwrap_or(10_000)),
            };
            let row = one_run(args, &http, &accounts, protocol, n, load, ceiling_tps).await?;
            report.rows.push(row);
        }
    }
    Ok(report)
}

/// The cluster of one run in a fresh `OUT/clusters/LABEL` directory (an old one is removed).
pub(crate) fn fresh_spec(
    args: &BenchArgs,
    accounts: &Accounts,
    protocol: Protocol,
    n: usize,
    label: &str,
) -> Result<ClusterSpec, CliError> {
    let dir = cluster::run_dir(&args.out, label);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| CliError::failure(format!("cannot clear {}: {e}", dir.display())))?;
    }
    Ok(ClusterSpec {
        protocol,
        validators: n,
        dir,
        funded: accounts.addresses.clone(),
        balance: BALANCE,
        raw_transactions: args.workload == Workload::Raw,
        max_block_txs: MAX_BLOCK_TXS,
        max_block_bytes: MAX_BLOCK_BYTES,
        retain_blocks: args.retain_blocks,
    })
}

/// The committed throughput of a short closed-loop run (10,000 in flight, 3 s warm-up,
/// 10 s window): the saturation a soak offers a fraction of.
pub(crate) async fn saturation(
    args: &BenchArgs,
    http: &reqwest::Client,
    accounts: &Accounts,
    protocol: Protocol,
    n: usize,
) -> Result<f64, CliError> {
    let short = BenchArgs {
        warmup: Duration::from_secs(3),
        duration: Duration::from_secs(10),
        drain: Duration::from_secs(5),
        ..args.clone()
    };
    let row = one_run(
        &short,
        http,
        accounts,
        protocol,
        n,
        Load::Closed(10_000),
        0.0,
    )
    .await?;
    Ok(row.committed_tps)
}

/// The encoded size of one transfer (all transfers have the same size).
fn transfer_size() -> usize {
    let key = crypto::SecretKey::from_seed([1; 32]);
    let chain = ledger::ChainBinding {
        chain_id: "cairn-bench".into(),
        genesis_hash: crypto::Digest::default(),
    };
    let to = ledger::Address::of(&key.public());
    ledger::Transaction::sign(&key, &chain, 0, ledger::Payload::Transfer { to, amount: 1 })
        .encode()
        .len()
}

async fn one_run(
    args: &BenchArgs,
    http: &reqwest::Client,
    accounts: &Accounts,
    protocol: Protocol,
    n: usize,
    load: Load,
    ceiling_tps: f64,
) -> Result<Row, CliError> {
    let label = match load {
        Load::Open(r) => format!(
            "{}-{}-rate{r:.0}",
            protocol.as_str(),
            args.workload.as_str()
        ),
        Load::Closed(k) => format!(
            "{}-{}-inflight{k}",
            protocol.as_str(),
            args.workload.as_str()
        ),
    };
    let spec = fresh_spec(args, accounts, protocol, n, &label)?;
    let dir = spec.dir.clone();
    eprintln!("\n== {label}: starting {n} validators");
    let cluster = Cluster::start(&spec, http)
        .await
        .map_err(|e| CliError::failure(format!("{label}: {e:#}")))?;
    let total = (args.warmup + args.duration).as_secs_f64();
    let (count, chunk) = match load {
        Load::Open(rate) => (
            (rate * total * 1.02) as usize + 1,
            ((rate * 0.005 / n as f64) as usize).clamp(1, 1000),
        ),
        Load::Closed(k) => {
            let per_s = match args.workload {
                Workload::Transfer => 30_000.0,
                Workload::Raw => 100_000.0,
            };
            (
                args.max_txs.unwrap_or((per_s * total) as usize).max(k),
                (k / (4 * n)).clamp(1, 500),
            )
        }
    };
    let started = std::time::Instant::now();
    let chain = cluster.chain.clone();
    let (workload, tx_size) = (args.workload, args.tx_size);
    let accounts_ref = accounts;
    let prepared = tokio::task::block_in_place(|| {
        load::prepare(workload, count, tx_size, n, chunk, accounts_ref, &chain)
    });
    eprintln!(
        "   prepared {count} {} transactions of {} bytes in {:.1}s",
        workload.as_str(),
        prepared.tx_bytes,
        started.elapsed().as_secs_f64()
    );
    let tx_bytes = prepared.tx_bytes;
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("   {prefix} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.clone());
    let timing = Timing {
        warmup: args.warmup,
        window: args.duration,
        drain: args.drain,
    };
    let outcome = load::drive(&cluster, http, prepared, load, timing, &bar).await;
    bar.finish_and_clear();
    let unclean = cluster.stop().await;
    for u in &unclean {
        eprintln!("   warning: {u}");
    }
    let o = outcome.map_err(|e| CliError::failure(format!("{label}: {e:#}")))?;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if o.exhausted {
        eprintln!(
            "   warning: the {count} prepared transactions ran out before the window ended; \
             raise --max-txs"
        );
    }
    if o.lagged > 0 {
        eprintln!(
            "   warning: an event stream skipped blocks {} times; their transactions count \
             as failed",
            o.lagged
        );
    }
    if o.overloaded > 0 {
        eprintln!(
            "   note: validators answered 503 (overloaded) to {} batches, sent again after \
             their Retry-After",
            o.overloaded
        );
    }
    for (reason, k) in o.reasons.iter().take(3) {
        eprintln!("   refused {k}×: {reason}");
    }
    let row = row_of(protocol, n, args.workload, tx_bytes, load, &o, ceiling_tps);
    eprintln!(
        "   committed {:.0} tx/s, p50 {:.1} ms, p99 {:.1} ms, {} failed, {} view changes",
        row.committed_tps, row.latency_ms.p50, row.latency_ms.p99, row.failed, row.view_changes
    );
    let stages: Vec<String> = row
        .stages_ms
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.1}"))
        .collect();
    eprintln!("   mean ms per stage: {}", stages.join(", "));
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_garbage() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(
            parse_duration("ten")
                .unwrap_err()
                .contains("not a duration")
        );
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("25h").unwrap_err().contains("out of range"));
        assert!(parse_duration("1e9s").is_err());
    }
}
