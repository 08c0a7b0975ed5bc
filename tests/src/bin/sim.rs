//! `sim`: run the deterministic simulator over many seeds (or Twins scenarios) and report.
//!
//!     cargo run -p tests --release --bin sim -- --protocol hotstuff --seeds 10000
//!     cargo run -p tests --release --bin sim -- --protocol hotstuff --seed 42     # replay one
//!     cargo run -p tests --release --bin sim -- --twins --cases 262144           # full Twins
//!     cargo run -p tests --release --bin sim -- --protocol pbft --seeds 500
//!     cargo run -p tests --release --bin sim -- --protocol pbft --twins --cases 2000
//!     cargo run -p tests --release --bin sim -- --protocol raft --seeds 500
//!     cargo run -p tests --release --bin sim -- --protocol pbft --epochs --seeds 500  # set changes
//!     cargo run -p tests --release --bin sim -- --protocol raft --seed 42          # replay one
//!
//! Raft tolerates crash faults only: its scenarios crash, restart and partition replicas
//! (n = 3 or 5) and never make one Byzantine, so `--twins` is refused for it.

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use tests::sim::runner::{Summary, run_many};
use tests::sim::{self, HotStuffSim, PbftSim, RaftSim, SimProtocol, twins};

#[derive(Parser)]
#[command(about = "Cairn's deterministic consensus simulator")]
struct Args {
    /// Protocol to simulate.
    #[arg(long, default_value = "hotstuff", value_parser = ["hotstuff", "pbft", "raft"])]
    protocol: String,
    /// Number of random fault scenarios (seeds) to run.
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Run exactly this seed and print its violations and trace hash.
    #[arg(long)]
    seed: Option<u64>,
    /// Run the Twins enumeration (n=4, replica 0 twinned, 3 scheduled views) instead
    /// (BFT protocols only).
    #[arg(long)]
    twins: bool,
    /// Twins scenarios to run, spread evenly over all 262,144 (use 262144 for all).
    #[arg(long, default_value_t = 1000)]
    cases: u64,
    /// Run exactly this Twins scenario.
    #[arg(long)]
    case: Option<u64>,
    /// Random scenarios with three validator-set changes each (key rotations, validators
    /// added and removed; `sim::epoch_scenario`), BFT protocols only.
    #[arg(long)]
    epochs: bool,
}

fn bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} runs  {elapsed} elapsed, eta {eta}")
            .expect("valid template"),
    );
    pb
}

fn main() -> ExitCode {
    let a = Args::parse();
    if a.protocol == "raft" && (a.twins || a.case.is_some()) {
        eprintln!(
            "error: Twins is a Byzantine-fault test (a replica running twice with one key); \
             Raft tolerates crash faults only, so --twins/--case do not apply to --protocol raft"
        );
        return ExitCode::from(2);
    }
    if a.protocol == "raft" && a.epochs {
        eprintln!(
            "error: --epochs runs BFT validator-set epochs; Raft's membership changes are part \
             of its ordinary seeds (--protocol raft --seeds N)"
        );
        return ExitCode::from(2);
    }
    match a.protocol.as_str() {
        "pbft" => go::<PbftSim>(&a),
        "raft" => go::<RaftSim>(&a),
        _ => go::<HotStuffSim>(&a),
    }
}

fn go<P: SimProtocol>(a: &Args) -> ExitCode {
    let scenario = |seed| {
        if a.epochs {
            sim::epoch_scenario(seed, 4, false)
        } else {
            P::random_scenario(seed)
        }
    };
    if let Some(seed) = a.seed {
        return single::<P>(&format!("seed {seed}"), scenario(seed));
    }
    if let Some(case) = a.case {
        if case >= twins::CASES {
            eprintln!("error: --case must be below {}", twins::CASES);
            return ExitCode::from(2);
        }
        return single::<P>(&format!("twins case {case}"), twins::case(case));
    }
    let started = std::time::Instant::now();
    let (summary, replay_flag): (Summary, &str) = if a.twins {
        let cases: Vec<u64> = twins::sample(a.cases).collect();
        let pb = bar(cases.len() as u64);
        let s = run_many::<P>(&cases, twins::case, |i| i.to_string(), || pb.inc(1));
        pb.finish_and_clear();
        (s, "--twins --case")
    } else {
        let seeds: Vec<u64> = (a.start..a.start + a.seeds).collect();
        let pb = bar(seeds.len() as u64);
        let s = run_many::<P>(&seeds, scenario, |i| i.to_string(), || pb.inc(1));
        pb.finish_and_clear();
        (
            s,
            if a.epochs {
                "--epochs --seed"
            } else {
                "--seed"
            },
        )
    };
    println!(
        "{} {}: {} runs, {} blocks committed, {} view changes, {} snapshots installed, {} membership changes in {} runs, {} reads served ({} refused), {} with violations ({:.1}s)",
        a.protocol,
        if a.twins { "twins" } else { "seeds" },
        summary.runs,
        summary.blocks,
        summary.view_changes,
        summary.snapshots,
        summary.membership_changes,
        summary.runs_with_membership_changes,
        summary.reads_served,
        summary.reads_failed,
        summary.failures.len(),
        started.elapsed().as_secs_f64()
    );
    if a.epochs {
        println!(
            "validator sets: {} epochs reached, {} added a validator, {} removed one",
            summary.epochs, summary.joins, summary.leaves
        );
    }
    for (label, v) in &summary.failures {
        println!("FAIL {label}: {}", v.join("; "));
        println!(
            "  replay: cargo run -p tests --release --bin sim -- --protocol {} {replay_flag} {label}",
            a.protocol
        );
    }
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn single<P: SimProtocol>(label: &str, sc: sim::Scenario) -> ExitCode {
    println!("{}, {label}: {}", P::NAME, sc.describe());
    let r = sim::run::<P>(sc);
    println!(
        "height {} view changes {} snapshots {} reads served {} refused {} events {} epochs {} \
         (joins {}, leaves {}) trace {}",
        r.height,
        r.view_changes,
        r.snapshots,
        r.reads_served,
        r.reads_failed,
        r.events,
        r.epochs,
        r.joins,
        r.leaves,
        r.trace
    );
    for v in &r.violations {
        println!("VIOLATION {v}");
    }
    if r.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
