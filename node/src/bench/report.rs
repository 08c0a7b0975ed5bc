//! What `cairnd bench` reports, and the files it writes.
//!
//! The load generator fills a [`Report`]: one [`Row`] per measured run (one protocol, one load
//! setting), the machine's crypto [`Ceiling`], and where each sweep [`Saturation`]s. This file
//! turns it into text and files and nothing else:
//!
//! - [`table`]: an aligned text table for the terminal (fits in 140 columns);
//! - [`csv`]: one flat line per row, for spreadsheets and scripts;
//! - [`check`]: the report's consistency problems (a report that fails it is a load-generator
//!   bug, not a result);
//! - [`write_all`]: `report.json`, `results.csv`, `table.txt` and the two SVG charts of
//!   [`super::chart`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chart;

/// Latency from submission to the commit seen on the events stream, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One measured run: one protocol, one load setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// "hotstuff" | "pbft" | "raft".
    pub protocol: String,
    pub validators: usize,
    /// "transfer" | "raw".
    pub workload: String,
    /// Encoded bytes of one transaction.
    pub tx_bytes: usize,
    /// "open" | "closed".
    pub load: String,
    /// Transactions per second offered (open loop).
    pub offered_rate: Option<f64>,
    /// Transactions kept in flight (closed loop).
    pub in_flight: Option<usize>,
    /// The measured window in seconds, warm-up excluded.
    pub window_s: f64,
    /// Transactions submitted in the window.
    pub submitted: u64,
    /// Of those, committed.
    pub committed: u64,
    /// Of those, rejected or not committed by the end of the drain.
    pub failed: u64,
    pub committed_tps: f64,
    pub latency_ms: Latency,
    /// View changes (BFT) or elections (Raft) during the window.
    pub view_changes: u64,
    /// CPU seconds of all validator processes per 1,000 committed transactions.
    pub cpu_s_per_1k_tx: f64,
    pub blocks: u64,
    /// Consensus and batch messages sent by all validators, per block.
    pub msgs_per_block: f64,
    pub bytes_per_block: f64,
    /// Durable writes per block (per validator, averaged over validators).
    pub fsyncs_per_block: f64,
    /// `committed_tps / ceiling.tps_for(validators)` (transfer workload only).
    pub efficiency: Option<f64>,
    /// Where a transaction waits: the mean milliseconds of each pipeline stage over the
    /// window, across validators (`cairn_stage_*_seconds`: admission, batching, consensus,
    /// execution, store), in pipeline order. Empty in reports from before it existed.
    #[serde(default)]
    pub stages_ms: Vec<(String, f64)>,
}

impl Ceiling {
    /// The ceiling for a cluster of `n` validators: every validator checks every signature,
    /// so it scales as 1/n from the one measured for `self.validators`.
    pub fn tps_for(&self, n: usize) -> f64 {
        self.tps * self.validators as f64 / n.max(1) as f64
    }
}

impl Row {
    /// The chart series this row belongs to: `protocol/workload`.
    pub fn series(&self) -> String {
        format!("{}/{}", self.protocol, self.workload)
    }

    /// The load setting in words: "10,000 tx/s", "64 in flight", or "-".
    pub fn setting(&self) -> String {
        match (self.offered_rate, self.in_flight) {
            (Some(rate), _) => format!("{} tx/s", thousands(rate)),
            (None, Some(k)) => format!("{k} in flight"),
            (None, None) => "-".to_owned(),
        }
    }
}

/// This machine's crypto speed and the throughput ceiling it implies for signed transfers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    pub cores: usize,
    pub validators: usize,
    /// One ed25519 verification, microseconds.
    pub verify_us: f64,
    /// Per signature, in batches of 64, microseconds.
    pub batch_verify_us: f64,
    pub sha256_mb_s: f64,
    /// The ceiling, transactions per second.
    pub tps: f64,
    /// How `tps` was computed, in words.
    pub formula: String,
}

/// Where committed throughput stopped growing in a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    pub protocol: String,
    pub workload: String,
    pub offered_rate: f64,
    pub committed_tps: f64,
    pub p50_ms: f64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The exact command line.
    pub command: String,
    /// RFC 3339.
    pub started: String,
    pub cores: usize,
    pub ceiling: Ceiling,
    pub rows: Vec<Row>,
    pub saturation: Vec<Saturation>,
}

/// Table columns: header, right-aligned, cell.
type TableColumn = (&'static str, bool, fn(&Row) -> String);

const TABLE_COLUMNS: &[TableColumn] = &[
    ("protocol", false, |r| r.protocol.clone()),
    ("n", true, |r| r.validators.to_string()),
    ("workload", false, |r| r.workload.clone()),
    ("offered", true, Row::setting),
    ("tx/s", true, |r| thousands(r.committed_tps)),
    ("failed", true, |r| thousands(r.failed as f64)),
    ("p50 ms", true, |r| format!("{:.1}", r.latency_ms.p50)),
    ("p95 ms", true, |r| format!("{:.1}", r.latency_ms.p95)),
    ("p99 ms", true, |r| format!("{:.1}", r.latency_ms.p99)),
    ("max ms", true, |r| format!("{:.1}", r.latency_ms.max)),
    ("vc", true, |r| r.view_changes.to_string()),
    ("cpu s/1k", true, |r| format!("{:.2}", r.cpu_s_per_1k_tx)),
    ("msg/blk", true, |r| format!("{:.1}", r.msgs_per_block)),
    ("KB/blk", true, |r| {
        format!("{:.1}", r.bytes_per_block / 1000.0)
    }),
    ("fsync/blk", true, |r| format!("{:.2}", r.fsyncs_per_block)),
    ("eff", true, |r| {
        r.efficiency
            .map_or("-".to_owned(), |e| format!("{:.1}%", e * 100.0))
    }),
];

/// A human-readable aligned table: a ceiling line, one line per row, a key to the column
/// names, then one line per saturation point.
pub fn table(report: &Report) -> String {
    let c = &report.ceiling;
    let mut out = format!(
        "ceiling {} tx/s ({} cores, {} validators; ed25519 verify {:.1} µs, batch {:.1} µs/sig; \
         sha256 {} MB/s)\n  = {}\n\n",
        thousands(c.tps),
        c.cores,
        c.validators,
        c.verify_us,
        c.batch_verify_us,
        thousands(c.sha256_mb_s),
        c.formula,
    );

    let header: Vec<String> = TABLE_COLUMNS
        .iter()
        .map(|(h, ..)| (*h).to_owned())
        .collect();
    let lines: Vec<Vec<String>> = std::iter::once(header)
        .chain(
            report
                .rows
                .iter()
                .map(|r| TABLE_COLUMNS.iter().map(|(_, _, f)| f(r)).collect()),
        )
        .collect();
    let widths: Vec<usize> = (0..TABLE_COLUMNS.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(TABLE_COLUMNS.iter().zip(&widths))
            .map(|(cell, ((_, right, _), &w))| {
                if *right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(
        "\ntx/s: committed per second; vc: view changes (BFT) or elections (Raft); cpu s/1k: CPU \
         seconds of all validators per 1,000 committed tx\nmsg/blk, KB/blk: sent by all \
         validators per block; fsync/blk: durable writes per block per validator; eff: tx/s / \
         ceiling\n\n",
    );

    if report.saturation.is_empty() {
        out.push_str("saturation: none detected\n");
    }
    for s in &report.saturation {
        let _ = writeln!(
            out,
            "saturation {}/{}: stops growing at {} tx/s offered ({} tx/s committed, p50 {:.1} ms): {}",
            s.protocol,
            s.workload,
            thousands(s.offered_rate),
            thousands(s.committed_tps),
            s.p50_ms,
            s.reason,
        );
    }
    out
}

/// CSV columns: header, cell. `None` is an empty cell; floats print exactly (shortest
/// round-trip form).
type CsvColumn = (&'static str, fn(&Row) -> String);

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(String::new, |v| v.to_string())
}

const CSV_COLUMNS: &[CsvColumn] = &[
    ("protocol", |r| csv_string(&r.protocol)),
    ("validators", |r| r.validators.to_string()),
    ("workload", |r| csv_string(&r.workload)),
    ("tx_bytes", |r| r.tx_bytes.to_string()),
    ("load", |r| csv_string(&r.load)),
    ("offered_rate", |r| opt(r.offered_rate)),
    ("in_flight", |r| opt(r.in_flight)),
    ("window_s", |r| r.window_s.to_string()),
    ("submitted", |r| r.submitted.to_string()),
    ("committed", |r| r.committed.to_string()),
    ("failed", |r| r.failed.to_string()),
    ("committed_tps", |r| r.committed_tps.to_string()),
    ("p50_ms", |r| r.latency_ms.p50.to_string()),
    ("p95_ms", |r| r.latency_ms.p95.to_string()),
    ("p99_ms", |r| r.latency_ms.p99.to_string()),
    ("max_ms", |r| r.latency_ms.max.to_string()),
    ("view_changes", |r| r.view_changes.to_string()),
    ("cpu_s_per_1k_tx", |r| r.cpu_s_per_1k_tx.to_string()),
    ("blocks", |r| r.blocks.to_string()),
    ("msgs_per_block", |r| r.msgs_per_block.to_string()),
    ("bytes_per_block", |r| r.bytes_per_block.to_string()),
    ("fsyncs_per_block", |r| r.fsyncs_per_block.to_string()),
    ("efficiency", |r| opt(r.efficiency)),
];

/// A string cell, quoted (RFC 4180) if it holds a comma, a quote or a line break.
fn csv_string(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A header line and one line per row, every line with the same columns.
pub fn csv(rows: &[Row]) -> String {
    let header: Vec<&str> = CSV_COLUMNS.iter().map(|(h, _)| *h).collect();
    let mut out = header.join(",") + "\n";
    for row in rows {
        let cells: Vec<String> = CSV_COLUMNS.iter().map(|(_, f)| f(row)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The report's consistency problems, one message each, empty if none. Each message names the
/// row (index, series, load setting) or the section, and the field.
pub fn check(report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    let ceiling = &report.ceiling;
    if !(ceiling.tps.is_finite() && ceiling.tps > 0.0) {
        problems.push(format!(
            "ceiling: tps {} is not finite and > 0",
            ceiling.tps
        ));
    }
    for (field, value) in [
        ("verify_us", ceiling.verify_us),
        ("batch_verify_us", ceiling.batch_verify_us),
        ("sha256_mb_s", ceiling.sha256_mb_s),
    ] {
        check_nonnegative(&mut problems, "ceiling", field, value);
    }
    if report.rows.is_empty() {
        problems.push("rows: none".to_owned());
    }
    for (i, row) in report.rows.iter().enumerate() {
        check_row(&mut problems, ceiling, i, row);
    }
    for s in &report.saturation {
        let label = format!("saturation {}/{}", s.protocol, s.workload);
        for (field, value) in [
            ("offered_rate", s.offered_rate),
            ("committed_tps", s.committed_tps),
            ("p50_ms", s.p50_ms),
        ] {
            check_nonnegative(&mut problems, &label, field, value);
        }
    }
    problems
}

fn check_nonnegative(problems: &mut Vec<String>, label: &str, field: &str, value: f64) {
    if !(value.is_finite() && value >= 0.0) {
        problems.push(format!("{label}: {field} {value} is not finite and >= 0"));
    }
}

/// Whether `actual` is within 1% of `expected`, or both are 0.
fn close(actual: f64, expected: f64) -> bool {
    (actual == 0.0 && expected == 0.0) || (actual - expected).abs() <= 0.01 * expected.abs()
}

fn check_row(problems: &mut Vec<String>, ceiling: &Ceiling, i: usize, row: &Row) {
    let label = format!("row {i} {} @ {}", row.series(), row.setting());
    let mut problem = |text: String| problems.push(format!("{label}: {text}"));

    if row.committed > row.submitted {
        problem(format!(
            "committed {} > submitted {}",
            row.committed, row.submitted
        ));
    } else if u128::from(row.committed) + u128::from(row.failed) > u128::from(row.submitted) {
        problem(format!(
            "committed {} + failed {} > submitted {}",
            row.committed, row.failed, row.submitted
        ));
    }
    let l = row.latency_ms;
    for (lo_name, lo, hi_name, hi) in [
        ("p50", l.p50, "p95", l.p95),
        ("p95", l.p95, "p99", l.p99),
        ("p99", l.p99, "max", l.max),
    ] {
        if lo > hi {
            problem(format!(
                "latency_ms.{lo_name} {lo} > latency_ms.{hi_name} {hi}"
            ));
        }
    }
    match row.load.as_str() {
        "open" if row.offered_rate.is_none() => problem("open load without offered_rate".into()),
        "closed" if row.in_flight.is_none() => problem("closed load without in_flight".into()),
        "open" | "closed" => {}
        other => problem(format!("load {other:?} is neither \"open\" nor \"closed\"")),
    }

    let floats = [
        ("offered_rate", row.offered_rate),
        ("window_s", Some(row.window_s)),
        ("committed_tps", Some(row.committed_tps)),
        ("latency_ms.p50", Some(l.p50)),
        ("latency_ms.p95", Some(l.p95)),
        ("latency_ms.p99", Some(l.p99)),
        ("latency_ms.max", Some(l.max)),
        ("cpu_s_per_1k_tx", Some(row.cpu_s_per_1k_tx)),
        ("msgs_per_block", Some(row.msgs_per_block)),
        ("bytes_per_block", Some(row.bytes_per_block)),
        ("fsyncs_per_block", Some(row.fsyncs_per_block)),
        ("efficiency", row.efficiency),
    ];
    for (field, value) in floats {
        if let Some(v) = value.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            problem(format!("{field} {v} is not finite and >= 0"));
        }
    }

    if !(row.window_s.is_finite() && row.window_s > 0.0) {
        problem(format!("window_s {} is not > 0", row.window_s));
    } else {
        let expected = row.committed as f64 / row.window_s;
        if !close(row.committed_tps, expected) {
            problem(format!(
                "committed_tps {} is not committed / window_s = {expected} (within 1%)",
                row.committed_tps
            ));
        }
    }

    let has_ceiling = ceiling.tps.is_finite() && ceiling.tps > 0.0;
    match (row.workload == "transfer" && has_ceiling, row.efficiency) {
        (true, None) => problem("efficiency missing on a transfer row".into()),
        (false, Some(e)) => problem(format!(
            "efficiency {e} present, but only transfer rows with a ceiling have one"
        )),
        (true, Some(e)) if !close(e, row.committed_tps / ceiling.tps_for(row.validators)) => {
            problem(format!(
                "efficiency {e} is not committed_tps / the ceiling for n={} = {} (within 1%)",
                row.validators,
                row.committed_tps / ceiling.tps_for(row.validators)
            ))
        }
        _ => {}
    }
}

/// Creates `dir` if missing and writes `report.json`, `results.csv`, `table.txt`,
/// `throughput.svg` and `latency.svg` into it; returns the paths written, in that order.
/// Writes whatever the report holds: run [`check`] first to refuse an inconsistent one.
pub fn write_all(report: &Report, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)? + "\n";
    let files = [
        ("report.json", json),
        ("results.csv", csv(&report.rows)),
        ("table.txt", table(report)),
        ("throughput.svg", chart::throughput(&report.rows)),
        ("latency.svg", chart::latency(&report.rows)),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

/// `x` rounded to an integer with thousands separators ("12,345"); exponent form beyond 1e15,
/// Rust's own spelling for NaN and infinities.
pub(crate) fn thousands(x: f64) -> String {
    if !x.is_finite() || x.abs() >= 1e15 {
        return format!("{x:e}");
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if x.round() < 0.0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
