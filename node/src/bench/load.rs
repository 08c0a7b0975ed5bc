//! The load side of a bench run: transactions prepared before the measured window, sent in
//! binary batches (`POST /v1/transactions/batch`) at a fixed offered rate (open loop) or with
//! a fixed number in flight (closed loop), and matched against the `committed` events of the
//! validator each was sent to (what that client would see).
//!
//! Times are microseconds since the run's start, kept in atomics per transaction, so the
//! submitters and the event readers never take a lock.
//!
//! Building the transactions and their request bodies is in `load/prepare.rs`.

use super::cluster::Cluster;
use crate::api::BatchVerdict;
use crate::api::compact::Frame;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod prepare;

pub use prepare::{Accounts, Prepared, Workload, prepare, raw_tx};

/// How load is offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// A fixed rate, tx/s, whatever the cluster does.
    Open(f64),
    /// A fixed number of transactions in flight (sent, not yet committed or refused).
    Closed(usize),
}

/// What one transaction went through, microseconds since the run's start (0 = not yet).
struct Track {
    sent: Vec<AtomicU64>,
    committed: Vec<AtomicU64>,
    refused: Vec<AtomicBool>,
    /// Transactions committed or refused (releases closed-loop slots).
    settled: AtomicUsize,
    commits_seen: AtomicUsize,
    lagged: AtomicUsize,
    /// Batches a validator answered 503 (asked again after its Retry-After).
    overloaded: AtomicUsize,
    reasons: std::sync::Mutex<HashMap<String, u64>>,
}

/// When the measured window lies, and how long to wait for stragglers after it.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub warmup: Duration,
    pub window: Duration,
    pub drain: Duration,
}

/// What happened in one run, before it is turned into a report row.
pub struct Outcome {
    pub submitted: u64,
    pub committed: u64,
    pub failed: u64,
    /// Latencies of the committed ones, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    pub window_s: f64,
    /// Refusal reasons and counts (all transactions, not only the window's).
    pub reasons: Vec<(String, u64)>,
    /// The event streams fell behind and skipped this many blocks.
    pub lagged: usize,
    /// Batches answered 503 and sent again after the validator's Retry-After.
    pub overloaded: usize,
    /// The prepared transactions ran out before the window ended.
    pub exhausted: bool,
    pub cpu_s: f64,
    pub before: Vec<super::cluster::Counters>,
    pub after: Vec<super::cluster::Counters>,
}

/// Drives `prepared` into `cluster` and measures. `progress` is told the phase and the
/// commits so far.
pub async fn drive(
    cluster: &Cluster,
    http: &reqwest::Client,
    prepared: Prepared,
    load: Load,
    timing: Timing,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Outcome> {
    let count = prepared.target.len();
    let track = Arc::new(Track {
        sent: (0..count).map(|_| AtomicU64::new(0)).collect(),
        committed: (0..count).map(|_| AtomicU64::new(0)).collect(),
        refused: (0..count).map(|_| AtomicBool::new(false)).collect(),
        settled: AtomicUsize::new(0),
        commits_seen: AtomicUsize::new(0),
        lagged: AtomicUsize::new(0),
        overloaded: AtomicUsize::new(0),
        reasons: std::sync::Mutex::new(HashMap::new()),
    });
    let start = Instant::now();
    let prepared = Arc::new(prepared);
    let notify = Arc::new(tokio::sync::Notify::new());
    let stop = tokio_util_stop();
    let mut readers = Vec::new();
    for (v, api) in cluster.apis.iter().enumerate() {
        readers.push(tokio::spawn(read_events(
            http.clone(),
            api.clone(),
            v as u8,
            prepared.clone(),
            track.clone(),
            start,
            notify.clone(),
            stop.1.clone(),
        )));
    }
    // Let the streams connect before the first transaction.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_sending = Instant::now();
    let window_start = start_sending + timing.warmup;
    let window_end = window_start + timing.window;

    let sender = {
        let prepared = prepared.clone();
        let track = track.clone();
        let http = http.clone();
        let apis = cluster.apis.clone();
        let notify = notify.clone();
        tokio::spawn(async move {
            send_all(
                &http,
                &apis,
                &prepared,
                &track,
                load,
                start,
                start_sending,
                window_end,
                &notify,
            )
            .await
        })
    };

    progress.set_length((timing.warmup + timing.window).as_secs());
    progress.set_position(0);
    progress.set_message("warm-up");
    let mut before = None;
    let mut cpu_before = 0.0;
    let mut last_seen = 0usize;
    let mut last_tick = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        if before.is_none() && now >= window_start {
            cpu_before = cluster.cpu_seconds();
            before = Some(cluster.counters(http).await);
            progress.set_message("measuring");
        }
        let seen = track.commits_seen.load(Ordering::Relaxed);
        let rate = (seen - last_seen) as f64 / now.duration_since(last_tick).as_secs_f64();
        (last_seen, last_tick) = (seen, now);
        progress.set_position(now.duration_since(start_sending).as_secs());
        let phase = if now < window_start {
            "warm-up"
        } else {
            "measuring"
        };
        progress.set_message(format!("{phase}: {rate:>8.0} commits/s"));
        if now >= window_end {
            break;
        }
    }
    let cpu_after = cluster.cpu_seconds();
    let after = cluster.counters(http).await;
    let exhausted = sender.await.unwrap_or(true);
    // Drain: wait for every transaction sent in the window to settle.
    progress.set_message("draining");
    let w0 = micros(start, window_start);
    let w1 = micros(start, window_end);
    let in_window = |j: usize| {
        let s = track.sent[j].load(Ordering::Relaxed);
        s > 0 && s >= w0 && s < w1
    };
    let drain_end = Instant::now() + timing.drain;
    while Instant::now() < drain_end {
        let open = (0..count).any(|j| {
            in_window(j)
                && track.committed[j].load(Ordering::Relaxed) == 0
                && !track.refused[j].load(Ordering::Relaxed)
        });
        if !open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.0.send(true);
    for r in readers {
        r.abort();
    }

    let mut submitted = 0u64;
    let mut failed = 0u64;
    let mut latencies_ms = Vec::new();
    for j in 0..count {
        if !in_window(j) {
            continue;
        }
        submitted += 1;
        let c = track.committed[j].load(Ordering::Relaxed);
        if c == 0 {
            failed += 1;
        } else {
            let s = track.sent[j].load(Ordering::Relaxed);
            latencies_ms.push(c.saturating_sub(s) as f64 / 1000.0);
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    let mut reasons: Vec<(String, u64)> = track
        .reasons
        .lock()
        .map(|r| r.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    Ok(Outcome {
        submitted,
        committed: latencies_ms.len() as u64,
        failed,
        latencies_ms,
        window_s: timing.window.as_secs_f64(),
        reasons,
        lagged: track.lagged.load(Ordering::Relaxed),
        overloaded: track.overloaded.load(Ordering::Relaxed),
        exhausted,
        cpu_s: cpu_after - cpu_before,
        before: before.unwrap_or_default(),
        after,
    })
}

/// A stop flag for the event readers.
fn tokio_util_stop() -> (
    tokio::sync::watch::Sender<bool>,
    tokio::sync::watch::Receiver<bool>,
) {
    tokio::sync::watch::channel(false)
}

fn micros(start: Instant, at: Instant) -> u64 {
    // Never 0: 0 means "not yet".
    (at.saturating_duration_since(start).as_micros() as u64).max(1)
}

/// Most requests outstanding per validator; past it the open loop waits (and the report
/// shows fewer submitted than offered).
const MAX_OUTSTANDING: usize = 64;

/// Sends every chunk until `window_end` (or until they run out: returns true then).
#[allow(clippy::too_many_arguments)]
async fn send_all(
    http: &reqwest::Client,
    apis: &[String],
    prepared: &Arc<Prepared>,
    track: &Arc<Track>,
    load: Load,
    start: Instant,
    start_sending: Instant,
    window_end: Instant,
    notify: &tokio::sync::Notify,
) -> bool {
    let slots: Vec<Arc<tokio::sync::Semaphore>> = apis
        .iter()
        .map(|_| Arc::new(tokio::sync::Semaphore::new(MAX_OUTSTANDING)))
        .collect();
    let mut sent_txs = 0usize;
    for (k, chunk) in prepared.chunks.iter().enumerate() {
        match load {
            Load::Open(rate) => {
                let due = start_sending + Duration::from_secs_f64(sent_txs as f64 / rate);
                if due >= window_end {
                    return false;
                }
                tokio::time::sleep_until(due.into()).await;
            }
            Load::Closed(in_flight) => loop {
                let settled = track.settled.load(Ordering::Relaxed);
                if sent_txs.saturating_sub(settled) + chunk.ids.len() <= in_flight.max(1) {
                    break;
                }
                if Instant::now() >= window_end {
                    return false;
                }
                let _ = tokio::time::timeout(Duration::from_millis(5), notify.notified()).await;
            },
        }
        if Instant::now() >= window_end {
            return false;
        }
        let Ok(permit) = slots[chunk.validator].clone().acquire_owned().await else {
            return false;
        };
        let now = micros(start, Instant::now());
        for &j in &chunk.ids {
            track.sent[j as usize].store(now, Ordering::Relaxed);
        }
        sent_txs += chunk.ids.len();
        let http = http.clone();
        let url = format!("{}/v1/transactions/batch", apis[chunk.validator]);
        let track = track.clone();
        let prepared = prepared.clone();
        tokio::spawn(async move {
            let chunk = &prepared.chunks[k];
            // An overloaded validator (503) is asked again after its Retry-After, holding
            // the slot meanwhile: that is the backpressure the load generator obeys.
            let answer = loop {
                match post_batch(&http, &url, chunk.body.clone()).await {
                    Err(Refusal::Overloaded { retry_after, .. })
                        if Instant::now() + retry_after < window_end + RETRY_GRACE =>
                    {
                        track.overloaded.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(retry_after).await;
                    }
                    other => break other.map_err(|e| e.to_string()),
                }
            };
            drop(permit);
            let refused: Vec<(usize, String)> = match answer {
                Ok(v) => v
                    .rejected
                    .into_iter()
                    .map(|r| (r.index, short_reason(&r.reason)))
                    .collect(),
                Err(e) => (0..chunk.ids.len()).map(|i| (i, e.clone())).collect(),
            };
            for (i, reason) in refused {
                let Some(&j) = chunk.ids.get(i) else { continue };
                if !track.refused[j as usize].swap(true, Ordering::Relaxed) {
                    track.settled.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut r) = track.reasons.lock() {
                    *r.entry(reason).or_default() += 1;
                }
            }
        });
    }
    true
}

/// How long after the window a batch answered 503 is still sent again: a transfer dropped
/// for good leaves a nonce gap that fails every later transfer of its account.
const RETRY_GRACE: Duration = Duration::from_secs(10);

/// Why a batch got no verdict.
enum Refusal {
    /// 503: the validator is overloaded and asks to be asked again later.
    Overloaded {
        retry_after: Duration,
    },
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Overloaded { .. } => f.write_str("HTTP 503 (overloaded)"),
            Refusal::Other(s) => f.write_str(s),
        }
    }
}

async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    body: Bytes,
) -> Result<BatchVerdict, Refusal> {
    let resp = http
        .post(url)
        .header("content-type", "application/octet-stream")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| Refusal::Other(format!("request failed: {e}")))?;
    let status = resp.status();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        let secs = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1);
        return Err(Refusal::Overloaded {
            retry_after: Duration::from_secs(secs.clamp(1, 10)),
        });
    }
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(Refusal::Other(format!(
            "HTTP {status}: {}",
            short_reason(&text)
        )));
    }
    resp.json()
        .await
        .map_err(|e| Refusal::Other(format!("bad answer: {e}")))
}

/// The first clause of a refusal, so equal causes group together.
fn short_reason(s: &str) -> String {
    let s = s.split([':', '(']).next().unwrap_or(s).trim();
    s.chars().take(80).collect()
}

/// Reads validator `v`'s compact commit stream (`GET /v1/events/hashes`) and marks the
/// commits of the transactions sent to it.
#[allow(clippy::too_many_arguments)]
async fn read_events(
    http: reqwest::Client,
    api: String,
    v: u8,
    prepared: Arc<Prepared>,
    track: Arc<Track>,
    start: Instant,
    notify: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(mut resp) = http.get(format!("{api}/v1/events/hashes")).send().await else {
        return;
    };
    let mut frames = crate::api::compact::Decoder::default();
    loop {
        let chunk = tokio::select! {
            _ = stop.changed() => return,
            c = resp.chunk() => c,
        };
        let Ok(Some(chunk)) = chunk else { return };
        frames.push(&chunk);
        let now = micros(start, Instant::now());
        loop {
            match frames.next_frame() {
                Ok(None) => break,
                Err(e) => {
                    eprintln!("   warning: validator {v}'s commit stream: {e}");
                    return;
                }
                Ok(Some(Frame::Lagged { .. })) => {
                    track.lagged.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Frame::Committed { hashes, .. })) => {
                    let mut mine = 0;
                    for h in &hashes {
                        if let Some(&j) = prepared.index.get(h)
                            && prepared.target[j as usize] == v
                            && track.committed[j as usize]
                                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                                .is_ok()
                        {
                            mine += 1;
                        }
                    }
                    track.commits_seen.fetch_add(mine, Ordering::Relaxed);
                    track.settled.fetch_add(mine, Ordering::Relaxed);
                    notify.notify_waiters();
                }
            }
        }
    }
}
