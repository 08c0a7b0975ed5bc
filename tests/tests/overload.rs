//! Overload, end to end, with four real `cairnd-test` processes (HotStuff, raw 512-byte
//! transactions through the batch endpoint): offered far more than they can commit for
//! 20 s, the validators
//! - answer the excess 503 with a `Retry-After` header (backpressure, not silent loss);
//! - keep their memory bounded (resident set sampled every second);
//! - commit every transaction they acknowledged (accepted in a batch verdict);
//! - and answer a single `mode=commit` submission about as fast after the overload as
//!   before it.
//!
//! The clients send as fast as the machine lets them (several threads, batches of 1,000),
//! which on the 2-core CI machine is several times what the cluster commits; the test checks
//! that 503s happened, so an offered load that failed to overload it fails the test rather
//! than passing without evidence.

use ledger::{Store, Transaction};
use node::bench::load::raw_tx;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::cluster::{Cluster, ClusterOpts};

const OVERLOAD: Duration = Duration::from_secs(20);
const SENDERS: usize = 6;
const BATCH: usize = 1000;
const TX_BYTES: usize = 512;
/// Resident set per validator, at most, under overload (MiB). The pool's own limits and the
/// bounded stage queues keep it far lower; an unbounded queue would cross it.
const MAX_RSS_MIB: u64 = 2048;

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn encode_batch(txs: &[Transaction]) -> Vec<u8> {
    let encoded: Vec<Vec<u8>> = txs.iter().map(Transaction::encode).collect();
    node::api::encode_batch(encoded.iter().map(Vec::as_slice))
}

/// Median seconds of `k` single raw submissions answered with `mode=commit`.
fn commit_latency(c: &Cluster, http: &reqwest::blocking::Client, first_id: u64, k: u64) -> f64 {
    let chain = c.chain();
    let mut secs = Vec::new();
    for id in first_id..first_id + k {
        let tx = raw_tx(&chain, id, TX_BYTES);
        let body = serde_json::json!({ "tx": hex::encode(tx.encode()) });
        let started = Instant::now();
        let resp = http
            .post(format!("{}/v1/transactions?mode=commit", c.api(0)))
            .json(&body)
            .send()
            .expect("submit");
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        assert_eq!(status, 200, "mode=commit submission: {text}");
        assert!(text.contains("committed"), "{text}");
        secs.push(started.elapsed().as_secs_f64());
    }
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}

#[test]
fn overload_is_refused_with_retry_after_memory_stays_bounded_and_nothing_acked_is_lost() {
    let mut c = Cluster::new(
        "hotstuff",
        4,
        ClusterOpts {
            raw_transactions: true,
            ..Default::default()
        },
    );
    c.start_all();
    let all: Vec<usize> = (0..4).collect();
    c.wait_height(&all, 2, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the cluster did not start: {e}"));
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let before = commit_latency(&c, &http, 1 << 40, 5);

    let chain = c.chain();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (refused_503, without_retry_after, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Vec::<String>::new())),
    );
    let apis: Vec<String> = all.iter().map(|&i| c.api(i)).collect();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (chain, stop, acked, apis, http) = (
            chain.clone(),
            stop.clone(),
            acked.clone(),
            apis.clone(),
            http.clone(),
        );
        let (refused_503, without_retry_after, other) = (
            refused_503.clone(),
            without_retry_after.clone(),
            other.clone(),
        );
        senders.push(std::thread::spawn(move || {
            let mut id = (s as u64) << 32;
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let txs: Vec<Transaction> = (0..BATCH)
                    .map(|k| raw_tx(&chain, id + k as u64, TX_BYTES))
                    .collect();
                id += BATCH as u64;
                let api = &apis[(s + round) % apis.len()];
                round += 1;
                let Ok(resp) = http
                    .post(format!("{api}/v1/transactions/batch"))
                    .header("content-type", "application/octet-stream")
                    .body(encode_batch(&txs))
                    .send()
                else {
                    continue;
                };
                let status = resp.status();
                if status == 503 {
                    refused_503.fetch_add(1, Ordering::Relaxed);
                    if resp.headers().get("retry-after").is_none() {
                        without_retry_after.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                if status != 200 {
                    other.lock().unwrap().push(format!("{status}"));
                    continue;
                }
                let verdict: node::api::BatchVerdict = resp.json().expect("batch verdict");
                let refused: HashSet<usize> = verdict.rejected.iter().map(|r| r.index).collect();
                let mut a = acked.lock().unwrap();
                for (k, tx) in txs.iter().enumerate() {
                    if !refused.contains(&k) {
                        a.push(tx.hash());
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    let mut max_rss = vec![0u64; 4];
    while started.elapsed() < OVERLOAD {
        std::thread::sleep(Duration::from_secs(1));
        for (i, peak) in max_rss.iter_mut().enumerate() {
            if let Some(pid) = c.pid(i) {
                *peak = (*peak).max(rss_mib(pid));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let refused = refused_503.load(Ordering::Relaxed);
    println!(
        "overload: {} transactions acknowledged, {refused} batches answered 503, peak RSS \
         per validator {max_rss:?} MiB, other answers {:?}",
        acked.len(),
        other.lock().unwrap()
    );
    assert!(
        refused > 0,
        "no 503 in {OVERLOAD:?}: the offered load did not overload the cluster, so this run \
         shows nothing about backpressure"
    );
    assert_eq!(
        without_retry_after.load(Ordering::Relaxed),
        0,
        "every 503 carries Retry-After"
    );
    for (i, rss) in max_rss.iter().enumerate() {
        assert!(
            *rss <= MAX_RSS_MIB,
            "validator {i} reached {rss} MiB resident"
        );
    }
    assert!(!acked.is_empty(), "nothing was acknowledged at all");

    // The pools drain: every acknowledged transaction commits.
    let drained = Instant::now();
    loop {
        // A validator that does not answer (busy) counts as not drained.
        let pooled: Vec<Option<u64>> = all
            .iter()
            .map(|&i| {
                let s = c.status(i)?;
                let v = &s["mempool_size"];
                v.as_u64().or_else(|| v.as_str()?.parse().ok())
            })
            .collect();
        if pooled.iter().all(|p| *p == Some(0)) {
            break;
        }
        assert!(
            drained.elapsed() < Duration::from_secs(180),
            "the pools still hold {pooled:?} transactions 180 s after the overload"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = commit_latency(&c, &http, 2 << 40, 5);
    println!(
        "single mode=commit submission, median of 5: {:.0} ms before the overload, {:.0} ms \
         after it (pools drained in {:.1} s)",
        before * 1000.0,
        after * 1000.0,
        drained.elapsed().as_secs_f64()
    );
    assert!(
        after <= 3.0 * before + 0.25,
        "latency did not return to normal: {after:.3} s after, {before:.3} s before"
    );
    c.converge(&all, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no convergence: {e}"));
    c.stop_all();
    for i in all {
        let store = node::store::RedbStore::open(&c.store_path(i)).unwrap();
        let missing = acked
            .iter()
            .filter(|h| store.tx(h).unwrap().is_none())
            .count();
        assert_eq!(
            missing,
            0,
            "validator {i} lacks {missing} of {} acknowledged transactions",
            acked.len()
        );
    }
}
