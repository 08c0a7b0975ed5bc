//! Tests of the bench report: the table, CSV, the consistency check and the files written,
//! on sample rows and reports that the chart tests use too.

use super::*;

/// A consistent open-loop row: 10 s window, 3 failed, latency growing with load.
pub(crate) fn row(protocol: &str, workload: &str, offered: f64, committed_tps: f64) -> Row {
    let committed = (committed_tps * 10.0).round() as u64;
    let p50 = 5.0 + offered / 1000.0;
    Row {
        protocol: protocol.into(),
        validators: 4,
        workload: workload.into(),
        tx_bytes: if workload == "transfer" { 180 } else { 256 },
        load: "open".into(),
        offered_rate: Some(offered),
        in_flight: None,
        window_s: 10.0,
        submitted: (offered * 10.0).round() as u64 + 3,
        committed,
        failed: 3,
        committed_tps: committed as f64 / 10.0,
        latency_ms: Latency {
            p50,
            p95: p50 * 2.0,
            p99: p50 * 3.0,
            max: p50 * 5.0,
        },
        view_changes: 1,
        cpu_s_per_1k_tx: 0.42,
        blocks: 100,
        msgs_per_block: 48.0,
        bytes_per_block: 123_456.0,
        fsyncs_per_block: 1.25,
        efficiency: (workload == "transfer").then_some(committed as f64 / 10.0 / 40_000.0),
        stages_ms: vec![("consensus".into(), 12.5)],
    }
}

/// A consistent report: three protocols, both workloads, a three-step sweep each.
pub(crate) fn report() -> Report {
    let mut rows = Vec::new();
    for protocol in ["hotstuff", "pbft", "raft"] {
        for workload in ["transfer", "raw"] {
            for offered in [1_000.0, 10_000.0, 20_000.0] {
                rows.push(row(
                    protocol,
                    workload,
                    offered,
                    f64::min(offered, 12_345.6),
                ));
            }
        }
    }
    Report {
        command: "cairnd bench --validators 4".into(),
        started: "2025-01-01T00:00:00Z".into(),
        cores: 8,
        ceiling: Ceiling {
            cores: 8,
            validators: 4,
            verify_us: 31.2,
            batch_verify_us: 14.8,
            sha256_mb_s: 1520.0,
            tps: 40_000.0,
            formula: "8 cores / 4 validators / 14.8 µs per batched signature, halved".into(),
        },
        rows,
        saturation: vec![Saturation {
            protocol: "pbft".into(),
            workload: "transfer".into(),
            offered_rate: 12_500.0,
            committed_tps: 12_345.6,
            p50_ms: 17.5,
            reason: "p50 tripled".into(),
        }],
    }
}

#[test]
fn table_names_every_protocol_and_number_within_140_columns() {
    let text = table(&report());
    for needle in [
        "hotstuff",
        "pbft",
        "raft",
        "transfer",
        "raw",
        "40,000 tx/s",
        "12,346",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    for needle in [
        "20,000 tx/s",
        "25.0",
        "75.0",
        "0.42",
        "48.0",
        "123.5",
        "1.25",
        "30.9%",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(text.contains("saturation pbft/transfer: stops growing at 12,500 tx/s"));
    for line in text.lines().filter(|l| !l.starts_with("  = ")) {
        assert!(
            line.chars().count() <= 140,
            "{} columns: {line}",
            line.chars().count()
        );
    }
}

#[test]
fn table_shows_closed_loop_and_missing_efficiency() {
    let mut report = report();
    report.rows[3].offered_rate = None;
    report.rows[3].in_flight = Some(64);
    report.saturation.clear();
    let text = table(&report);
    assert!(text.contains("64 in flight"));
    assert!(text.contains("saturation: none detected"));
    let raw_line = text.lines().find(|l| l.contains(" raw ")).unwrap();
    assert!(raw_line.ends_with('-'), "{raw_line}");
}

#[test]
fn thousands_separates_and_survives_odd_values() {
    assert_eq!(thousands(0.0), "0");
    assert_eq!(thousands(999.4), "999");
    assert_eq!(thousands(1234567.8), "1,234,568");
    assert_eq!(thousands(-1234.0), "-1,234");
    assert_eq!(thousands(-0.2), "0");
    assert_eq!(thousands(f64::NAN), "NaN");
    assert_eq!(thousands(1e300), "1e300");
}

#[test]
fn csv_has_a_header_and_one_line_per_row_all_the_same_width() {
    let report = report();
    let text = csv(&report.rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), report.rows.len() + 1);
    assert!(lines[0].starts_with("protocol,validators,workload,"));
    assert!(lines[0].contains(",p50_ms,p95_ms,p99_ms,max_ms,"));
    for line in &lines {
        assert_eq!(line.split(',').count(), CSV_COLUMNS.len(), "{line}");
    }
    // None is an empty field: raw rows have no efficiency, so the line ends with a comma.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hotstuff,4,raw,") && l.ends_with(','))
    );
}

#[test]
fn csv_quotes_strings_with_commas_and_quotes() {
    let mut r = row("hot,stuff", "tr\"ans", 1.0, 1.0);
    r.offered_rate = None;
    let text = csv(&[r]);
    assert!(text.contains("\"hot,stuff\",4,\"tr\"\"ans\","), "{text}");
    assert!(text.contains(",open,,,"), "{text}");
}

#[test]
fn check_accepts_a_consistent_report() {
    assert_eq!(check(&report()), Vec::<String>::new());
}

/// Breaks one rule of row 0 (hotstuff/transfer @ 1,000 tx/s) and expects exactly one
/// problem naming that row and `field`.
fn expect_problem(field: &str, spoil: impl FnOnce(&mut Report)) {
    let mut report = report();
    spoil(&mut report);
    let problems = check(&report);
    assert_eq!(problems.len(), 1, "{field}: {problems:#?}");
    assert!(problems[0].contains(field), "{field}: {problems:#?}");
}

fn expect_row_problem(field: &str, spoil: impl Fn(&mut Row)) {
    expect_problem(field, |r| spoil(&mut r.rows[0]));
    let mut report = report();
    spoil(&mut report.rows[0]);
    assert!(check(&report)[0].starts_with("row 0 hotstuff/transfer @ "));
}

#[test]
fn check_names_committed_above_submitted() {
    expect_row_problem("committed 10004 > submitted 10003", |r| {
        (r.committed, r.failed, r.committed_tps) = (10_004, 0, 1000.4);
        r.efficiency = Some(1000.4 / 40_000.0);
    });
}

#[test]
fn check_names_committed_plus_failed_above_submitted() {
    expect_row_problem("committed 10000 + failed 4 > submitted 10003", |r| {
        r.failed = 4
    });
    expect_row_problem("+ failed 18446744073709551615 >", |r| r.failed = u64::MAX);
}

#[test]
fn check_names_each_latency_out_of_order() {
    expect_row_problem("latency_ms.p50 6 > latency_ms.p95 5.5", |r| {
        r.latency_ms.p95 = 5.5
    });
    expect_row_problem("latency_ms.p95 12 > latency_ms.p99 11", |r| {
        r.latency_ms.p99 = 11.0
    });
    expect_row_problem("latency_ms.p99 18 > latency_ms.max 17", |r| {
        r.latency_ms.max = 17.0
    });
}

#[test]
fn check_names_nan_infinite_and_negative_floats() {
    expect_row_problem("latency_ms.max NaN", |r| r.latency_ms.max = f64::NAN);
    expect_row_problem("cpu_s_per_1k_tx -0.1", |r| r.cpu_s_per_1k_tx = -0.1);
    expect_row_problem("bytes_per_block inf", |r| r.bytes_per_block = f64::INFINITY);
    expect_row_problem("msgs_per_block NaN", |r| r.msgs_per_block = f64::NAN);
    expect_row_problem("fsyncs_per_block -1", |r| r.fsyncs_per_block = -1.0);
    expect_problem("ceiling: sha256_mb_s NaN", |r| {
        r.ceiling.sha256_mb_s = f64::NAN
    });
    expect_problem("saturation pbft/transfer: p50_ms -1", |r| {
        r.saturation[0].p50_ms = -1.0
    });
}

#[test]
fn check_names_committed_tps_off_by_more_than_one_percent() {
    expect_row_problem("committed_tps 1020", |r| {
        (r.committed_tps, r.efficiency) = (1020.0, Some(1020.0 / 40_000.0));
    });
    expect_row_problem("window_s 0 is not > 0", |r| r.window_s = 0.0);
    // Within 1% passes; zero committed in a zero-rate row passes.
    let mut report = report();
    report.rows[0].committed_tps *= 1.009;
    report.rows[0].efficiency = Some(report.rows[0].committed_tps / 40_000.0);
    (report.rows[3].committed, report.rows[3].committed_tps) = (0, 0.0);
    assert_eq!(check(&report), Vec::<String>::new());
}

#[test]
fn check_names_efficiency_missing_extra_or_wrong() {
    expect_row_problem("efficiency missing on a transfer row", |r| {
        r.efficiency = None
    });
    expect_row_problem("efficiency 0.5 is not", |r| r.efficiency = Some(0.5));
    expect_problem(
        "row 3 hotstuff/raw @ 1,000 tx/s: efficiency 0.1 present",
        |r| {
            r.rows[3].efficiency = Some(0.1);
        },
    );
}

#[test]
fn check_names_an_empty_or_ceilingless_report() {
    expect_problem("rows: none", |r| r.rows.clear());
    let mut report = report();
    report.ceiling.tps = 0.0;
    let problems = check(&report);
    assert!(problems[0].starts_with("ceiling: tps 0"), "{problems:#?}");
    // With no ceiling no row can have an efficiency: every transfer row says so.
    assert_eq!(problems.len(), 1 + 9, "{problems:#?}");
    assert!(
        problems[1..]
            .iter()
            .all(|p| p.contains("efficiency") && p.contains("transfer"))
    );
}

#[test]
fn check_names_a_load_without_its_setting() {
    expect_row_problem("open load without offered_rate", |r| r.offered_rate = None);
    expect_row_problem("closed load without in_flight", |r| {
        r.load = "closed".into()
    });
    expect_row_problem("load \"half\"", |r| r.load = "half".into());
}

#[test]
fn write_all_writes_the_five_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new/sub");
    let report = report();
    let paths = write_all(&report, &out).unwrap();
    let names: Vec<_> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "report.json",
            "results.csv",
            "table.txt",
            "throughput.svg",
            "latency.svg"
        ]
    );
    for path in &paths {
        assert!(
            std::fs::metadata(path).unwrap().len() > 0,
            "{}",
            path.display()
        );
    }
    let json = std::fs::read_to_string(&paths[0]).unwrap();
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    assert_eq!(
        std::fs::read_to_string(&paths[1]).unwrap(),
        csv(&report.rows)
    );
    assert!(
        std::fs::read_to_string(&paths[4])
            .unwrap()
            .starts_with("<svg")
    );
}
