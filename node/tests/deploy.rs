//! The operator kit agrees with the node (issue 22): every `cairn_*` metric the Grafana
//! dashboard (`deploy/grafana/cairn.json`) and the alert rules
//! (`deploy/prometheus/alerts.yaml`) name is one `cairnd` exports at `GET /metrics`, and
//! `cairnd run --log-format json` writes one JSON object per line with the documented field
//! names.

mod support;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

/// The sample names the node's metrics exposition holds (a histogram's `_bucket`, `_sum`
/// and `_count`, a counter's `_total`), read from a fresh registry: every family is listed
/// even before its first observation.
fn exported() -> BTreeSet<String> {
    let text = node::api::Metrics::new().encode().unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Every `cairn_...` name in `text`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cairn_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // Not part of a longer word (e.g. a file name `my_cairn_x`).
        let before = rest[..at].chars().next_back();
        // (A bare `cairn_` is prose, e.g. "every cairn_* metric".)
        if end > "cairn_".len() && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// The names in `text` that the node does not export.
fn unknown(text: &str, exported: &BTreeSet<String>) -> Vec<String> {
    named(text).difference(exported).cloned().collect()
}

fn deploy_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_dashboard_and_alerts_name_only_metrics_the_node_exports() {
    let exported = exported();
    assert!(exported.contains("cairn_height"), "{exported:?}");
    let dashboard = deploy_file("grafana/cairn.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("cairn_")),
                "panel {}: {t}",
                p["title"]
            );
        }
    }
    let alerts = deploy_file("prometheus/alerts.yaml");
    for (file, text) in [("cairn.json", &dashboard), ("alerts.yaml", &alerts)] {
        let bad = unknown(text, &exported);
        assert!(
            bad.is_empty(),
            "{file} names metrics the node does not export: {bad:?}"
        );
    }
    // The alerts the issue asks for are there.
    for alert in [
        "CairnNoNewBlock",
        "CairnPeersBelowQuorum",
        "CairnEvidenceSeen",
        "CairnDiskNearlyFull",
    ] {
        assert!(alerts.contains(&format!("alert: {alert}")), "{alert}");
    }
    // What the panels cover: height, commit rate, latency histograms, view changes, peers,
    // mempool, fsync, limits.
    let used = named(&dashboard);
    for m in [
        "cairn_height",
        "cairn_block_interval_seconds_bucket",
        "cairn_stage_consensus_seconds_bucket",
        "cairn_view_changes_total",
        "cairn_peers",
        "cairn_mempool_size",
        "cairn_fsync_seconds_bucket",
        "cairn_api_rate_limited_total",
    ] {
        assert!(used.contains(m), "the dashboard shows no {m}");
    }
}

#[test]
fn negative_control_a_metric_the_node_does_not_export_is_caught() {
    let exported = exported();
    let text = r#"{"expr": "rate(cairn_height[1m]) + cairn_made_up_total - my_cairn_x"}"#;
    assert_eq!(
        unknown(text, &exported),
        vec!["cairn_made_up_total".to_string()]
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_stable_field_names() {
    let net = support::Testnet::new(1, "raft");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairnd"))
        .args(["run", "--log-format", "json", "--home"])
        .arg(net.home(0))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let committed = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no committed block logged; lines: {lines:#?}"));
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        // Every line has these; an event with a message (all of Cairn's) has `message`.
        for field in ["timestamp", "level"] {
            assert!(v.get(field).is_some(), "no {field}: {line}");
        }
        lines.push(line);
        if v["message"] == "committed block" {
            break v;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    // The event's fields sit beside the message, under their names.
    assert!(
        committed["height"].as_u64().is_some_and(|h| h >= 1),
        "{committed}"
    );
    assert!(committed["view"].is_u64(), "{committed}");
    assert!(committed["txs"].is_u64(), "{committed}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"validator started\"")),
        "{lines:#?}"
    );
}

/// `systemd-analyze verify` on `deploy/cairnd.service` (with `ExecStart` pointed at the
/// built binary) reports nothing; a misspelt key is reported (the negative control).
/// Skipped, with a message, where systemd-analyze is missing.
#[test]
fn the_systemd_unit_verifies() {
    let unit = deploy_file("cairnd.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/cairnd run --home /var/lib/cairn"));
    for key in [
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/var/lib/cairn",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(key), "the unit has no {key}");
    }
    let verify = |text: &str| -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairnd.service");
        let text = text.replace("/usr/local/bin/cairnd", env!("CARGO_BIN_EXE_cairnd"));
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .ok()?;
        Some(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    let Some(found) = verify(&unit) else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert_eq!(found.trim(), "", "systemd-analyze verify: {found}");
    let broken = verify(&unit.replace("LimitNOFILE=", "LimitNOFIL=")).unwrap();
    assert!(
        broken.contains("LimitNOFIL"),
        "a misspelt key went unreported: {broken}"
    );
}

/// Where a Docker daemon answers: `docker compose config` accepts deploy/compose.yaml, the
/// image builds, and a container running a one-validator Raft home answers `/v1/health`.
/// Skipped, with a message, elsewhere (this repository's CI machine has no daemon).
#[test]
fn the_image_builds_and_its_container_answers_health_where_docker_runs() {
    use std::process::Command;
    let docker = |args: &[&str]| Command::new("docker").args(args).output();
    if !docker(&["info"]).is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no Docker daemon answers `docker info` here");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let compose = root.join("deploy/compose.yaml");
    let o = docker(&[
        "compose",
        "-f",
        compose.to_str().unwrap(),
        "config",
        "--quiet",
    ])
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = docker(&["build", "-t", "cairn:test", root.to_str().unwrap()]).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let net = tempfile::tempdir().unwrap();
    let out = net.path().join("net");
    let o = Command::new(env!("CARGO_BIN_EXE_cairnd"))
        .args([
            "testnet",
            "--protocol",
            "raft",
            "--hosts",
            "127.0.0.1:26600",
        ])
        .args(["--api-bind", "0.0.0.0", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let home = out.join("validator-0");
    let user = format!(
        "{}:{}",
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    );
    let volume = format!("{}:/var/lib/cairn", home.display());
    let o = docker(&[
        "run",
        "-d",
        "--user",
        &user,
        "-v",
        &volume,
        "-p",
        "127.0.0.1:0:27600",
        "cairn:test",
    ])
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let port = docker(&["port", &id, "27600/tcp"]).unwrap();
    let addr = String::from_utf8_lossy(&port.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let healthy = loop {
        let ok = reqwest::blocking::get(format!("http://{addr}/v1/health"))
            .is_ok_and(|r| r.status().is_success());
        if ok || Instant::now() > deadline {
            break ok;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = docker(&["rm", "-f", &id]);
    assert!(healthy, "the container never answered /v1/health on {addr}");
}
