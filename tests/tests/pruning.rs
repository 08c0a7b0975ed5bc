//! Pruning under load with real processes (issue 20): four HotStuff validators keep only
//! the last 100 heights (`retain_blocks = 100`, the smallest allowed) while a transfer load
//! runs until the chain is several windows long. Then:
//! - every validator reports a history floor above 1 (`cairn_history_floor`), and answers
//!   a block below it with "pruned", not a plain 404;
//! - every acknowledged transaction is, on every validator, either served as committed or
//!   reported `pruned` — never `unknown`; both answers occur;
//! - the stores pass the cluster checker (equal blocks and roots at every common height;
//!   each acknowledged transaction recorded identically, or absent below that store's
//!   transaction floor).

use std::time::{Duration, Instant};
use tests::cluster::{Cluster, ClusterOpts, Load, check};

#[test]
fn pruning_under_load_keeps_every_acknowledged_transaction_served_or_reported_pruned() {
    const RETAIN: u64 = 100;
    let mut c = Cluster::new("hotstuff", 4, ClusterOpts::default());
    c.edit_config(|cfg| cfg.retain_blocks = RETAIN);
    c.start_all();
    let all = [0, 1, 2, 3];
    if let Err(e) = c.wait_progress(&all, 2, Duration::from_secs(60)) {
        c.dump_logs(30);
        panic!("no progress: {e}");
    }
    let load = Load::start(&c, &all);
    let started = Instant::now();
    while (0..4).filter_map(|i| c.height(i)).min().unwrap_or(0) < 5 * RETAIN
        && started.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let acked = load.stop();
    let http = reqwest::blocking::Client::new();
    let floor_of = |i: usize| {
        let text = http
            .get(format!("{}/metrics", c.api(i)))
            .send()
            .and_then(|r| r.text())
            .unwrap();
        node::api::sample_value(&text, "cairn_history_floor").unwrap_or(0.0) as u64
    };
    // The pruner runs about once a second, up to what the transaction index has made
    // durable (it flushes every 5 s).
    let waited = Instant::now();
    while (0..4).any(|i| floor_of(i) <= 1) && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let (mut committed, mut pruned) = (0u64, 0u64);
    let mut wrong = Vec::new();
    for i in 0..4 {
        let floor = floor_of(i);
        let height = c.height(i).unwrap();
        assert!(
            floor > 1 && floor + RETAIN + 200 >= height,
            "validator {i}: history floor {floor} at height {height} (retain {RETAIN})"
        );
        let r = http
            .get(format!("{}/v1/blocks/1", c.api(i)))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        let body = r.text().unwrap();
        assert!(body.contains("pruned"), "validator {i}: {body}");
        for h in &acked.committed {
            let r = http
                .get(format!("{}/v1/transactions/{h}", c.api(i)))
                .send()
                .unwrap();
            let v: serde_json::Value = r.json().unwrap();
            match v["status"].as_str() {
                Some("committed") => committed += 1,
                Some("pruned") => pruned += 1,
                _ => wrong.push(format!("validator {i}: {v}")),
            }
        }
    }
    println!(
        "{} acknowledged transactions, asked of 4 validators: {committed} committed, {pruned} \
         pruned, {} other",
        acked.committed.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "{:?}", &wrong[..wrong.len().min(5)]);
    assert!(committed > 0 && pruned > 0, "both answers should occur");
    c.stop_all();
    let verdict = check(&c, &all, &all, &acked);
    println!("{verdict:?}");
}
