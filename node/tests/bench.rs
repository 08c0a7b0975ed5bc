//! `cairnd bench` smoke runs: real clusters of every protocol, a few seconds each. They check
//! that the report is complete and consistent (every file written, every protocol present,
//! committed ≤ submitted, percentiles ordered: `report::check`), never how fast anything is.

mod support;

use node::bench::report::{self, Report};
use std::path::Path;
use std::process::Command;
use support::CAIRND;

fn bench(out: &Path, args: &[&str]) -> (Report, String) {
    let output = Command::new(CAIRND)
        .arg("bench")
        .args(["--out", out.to_str().unwrap()])
        .args(["--duration", "2s", "--warmup", "1s", "--drain", "10s"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "cairnd bench failed:\n{text}");
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    let report: Report = serde_json::from_str(&json).unwrap();
    for f in [
        "report.json",
        "results.csv",
        "table.txt",
        "throughput.svg",
        "latency.svg",
    ] {
        let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 0, "{f} is empty");
    }
    assert!(
        !out.join("clusters").exists()
            || std::fs::read_dir(out.join("clusters")).unwrap().count() == 0,
        "cluster directories are removed without --keep"
    );
    (report, text)
}

#[test]
fn bench_smoke_runs_every_protocol_and_writes_a_consistent_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (report, text) = bench(
        &out,
        &[
            "--protocols",
            "hotstuff,pbft,raft",
            "--rate",
            "300",
            "--accounts",
            "40",
        ],
    );
    assert_eq!(report::check(&report), Vec::<String>::new(), "{text}");
    let protocols: Vec<&str> = report.rows.iter().map(|r| r.protocol.as_str()).collect();
    assert_eq!(protocols, ["hotstuff", "pbft", "raft"], "{text}");
    for row in &report.rows {
        assert_eq!(row.workload, "transfer");
        assert_eq!(row.validators, if row.protocol == "raft" { 3 } else { 4 });
        assert!(row.submitted > 0, "{row:?}");
        // A healthy cluster at 300 tx/s commits what it is sent within the 10 s drain.
        assert_eq!(row.failed, 0, "{row:?}\n{text}");
        assert!(row.blocks > 0 && row.msgs_per_block > 0.0, "{row:?}");
        assert!(
            row.fsyncs_per_block > 0.0 && row.cpu_s_per_1k_tx > 0.0,
            "{row:?}"
        );
        assert!(row.efficiency.is_some_and(|e| e > 0.0), "{row:?}");
    }
    assert!(report.ceiling.tps > 0.0);
    // The printed table and the CSV carry the same rows.
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + report.rows.len());
    let svg = std::fs::read_to_string(out.join("throughput.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("hotstuff") && svg.contains("raft"));
}

#[test]
fn bench_smoke_raw_closed_loop() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (report, text) = bench(
        &out,
        &[
            "--protocols",
            "hotstuff",
            "--workload",
            "raw",
            "--tx-size",
            "512",
            "--in-flight",
            "2000",
            "--max-txs",
            "200000",
        ],
    );
    assert_eq!(report::check(&report), Vec::<String>::new(), "{text}");
    let row = &report.rows[0];
    assert_eq!(
        (row.workload.as_str(), row.tx_bytes),
        ("raw", 512),
        "{row:?}"
    );
    assert_eq!((row.load.as_str(), row.in_flight), ("closed", Some(2000)));
    assert!(row.committed > 0 && row.efficiency.is_none(), "{row:?}");
}

#[test]
fn bench_refuses_bad_arguments_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(CAIRND)
            .arg("bench")
            .args(["--out", dir.path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, err) = run(&["--validators", "3", "--protocols", "pbft"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("at least 4"), "{err}");
    let (code, err) = run(&["--duration", "ten"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a duration"), "{err}");
    let (code, err) = run(&["--rate", "100", "--in-flight", "10"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

/// Runs `cairnd bench --soak` on Raft at 300 tx/s with a 100-block window; if `pause` is
/// given, SIGSTOPs that validator for 6 s from `pause` seconds in. Returns (success, output,
/// soak.csv, soak.txt).
fn soak(secs: u64, pause: Option<(usize, u64)>) -> (bool, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let child = Command::new(CAIRND)
        .arg("bench")
        .args(["--out", out.to_str().unwrap()])
        .args(["--protocols", "raft", "--rate", "300", "--accounts", "40"])
        .args(["--soak", &format!("{secs}s"), "--sample", "2s"])
        .args(["--retain-blocks", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some((v, at)) = pause {
        std::thread::sleep(std::time::Duration::from_secs(at));
        let pid = validator_pid(&out, v).expect("the paused validator's process");
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
        std::thread::sleep(std::time::Duration::from_secs(6));
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = std::fs::read_to_string(out.join("soak.csv")).unwrap_or_default();
    let txt = std::fs::read_to_string(out.join("soak.txt")).unwrap_or_default();
    let svg = std::fs::metadata(out.join("soak.svg")).map_or(0, |m| m.len());
    assert!(svg > 0, "soak.svg missing:\n{text}");
    (output.status.success(), text, csv, txt)
}

/// The pid of the `cairnd run` whose home is `OUT/clusters/raft-soak/validator-V`.
fn validator_pid(out: &Path, v: usize) -> Option<i32> {
    let home = out.join(format!("clusters/raft-soak/validator-{v}"));
    let want = home.to_str()?.to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(" run ") && cmd.contains(&want) {
            return Some(pid);
        }
    }
    None
}

/// A short soak in the default run keeps the soak mode working: it samples every validator
/// (height rising, memory and files recorded, the window pruned) and passes with no stall.
#[test]
fn a_short_soak_samples_every_validator_and_passes_without_stalls() {
    let (ok, text, csv, txt) = soak(30, None);
    assert!(ok, "the soak failed:\n{text}");
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    for v in 0..3 {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[1] == v.to_string()).collect();
        assert!(mine.len() >= 10, "validator {v}: {} samples", mine.len());
        let h = |r: &Vec<&str>| r[2].parse::<u64>().unwrap();
        assert!(h(mine.last().unwrap()) > h(mine[0]) + 100, "heights: {csv}");
        assert!(
            mine.iter().all(|r| r[3].parse::<f64>().unwrap() > 1.0),
            "rss: {csv}"
        );
        assert!(
            mine.iter().all(|r| r[4].parse::<u64>().unwrap() > 3),
            "files: {csv}"
        );
    }
    let verdict = txt.lines().last().unwrap();
    assert!(
        verdict.starts_with("PASS") && verdict.contains(", 0 stalls"),
        "{txt}"
    );
}

/// Negative control: a validator stopped for 6 s (more than the 3 s stall limit) makes the
/// soak fail, naming the stall.
#[test]
fn a_soak_with_a_paused_validator_reports_the_stall_and_fails() {
    let (ok, text, _csv, txt) = soak(25, Some((1, 12)));
    assert!(!ok, "the soak passed despite the pause:\n{text}");
    assert!(
        txt.contains("stall: validator 1 made no block"),
        "{txt}\n{text}"
    );
    assert!(txt.lines().last().unwrap().starts_with("FAIL"), "{txt}");
}
