//! Background transfer load for a [`Cluster`]: one thread per funded wallet, each signing
//! transfers of 1 with nonces 0, 1, 2, … and submitting each with `POST
//! /v1/transactions?mode=commit` until a validator says it is committed. The validators
//! are tried round-robin among the current targets; one that refuses connections is skipped
//! for half a second; on an error, a timeout, `unknown` or a refusal the *same* transaction
//! (same nonce, same hash: resubmission is idempotent) goes to the next target. Every hash an
//! API reported `committed` is recorded: those are the acknowledged transactions the checker
//! looks for in every honest store.

use super::Cluster;
use crypto::Digest;
use ledger::{Address, ChainBinding, Payload, Transaction};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one submission may take (the API's own `mode=commit` wait is 10 s); then the
/// transaction goes to the next validator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// A validator that refused a connection is not tried again for this long.
const SKIP_UNREACHABLE: Duration = Duration::from_millis(500);

/// What a [`Load`] achieved: the hashes the validators acknowledged as committed, and how
/// many distinct transactions were submitted (the last one of each wallet may be
/// unacknowledged when the load stops).
#[derive(Clone, Debug, Default)]
pub struct Acked {
    pub committed: Vec<Digest>,
    /// The height each acknowledgement named (the checker needs it for a transaction that
    /// every store has pruned).
    pub heights: std::collections::BTreeMap<Digest, u64>,
    pub submitted: usize,
}

struct Shared {
    stop: AtomicBool,
    targets: Mutex<Vec<usize>>,
    committed: Mutex<Vec<Digest>>,
    heights: Mutex<std::collections::BTreeMap<Digest, u64>>,
    submitted: AtomicUsize,
    attempts: AtomicUsize,
    refused: AtomicUsize,
}

/// A running load; see the module documentation.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts one thread per wallet of the cluster's testnet, sending to `targets`.
    pub fn start(cluster: &Cluster, targets: &[usize]) -> Load {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            targets: Mutex::new(targets.to_vec()),
            committed: Mutex::new(Vec::new()),
            heights: Mutex::new(Default::default()),
            submitted: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let apis: Arc<Vec<String>> = Arc::new((0..cluster.n).map(|i| cluster.api(i)).collect());
        let chain = cluster.chain();
        let wallets = cluster.wallets();
        assert!(wallets > 0, "the testnet has no wallets");
        let threads = (0..wallets)
            .map(|k| {
                let key = cluster.wallet_key(k);
                let (shared, apis, chain) = (shared.clone(), apis.clone(), chain.clone());
                std::thread::Builder::new()
                    .name(format!("load-{k}"))
                    .spawn(move || wallet_loop(k, key, chain, apis, shared))
                    .expect("spawn load thread")
            })
            .collect();
        Load { shared, threads }
    }

    /// From now on, submissions go to `targets` (round-robin).
    pub fn set_targets(&self, targets: &[usize]) {
        *self.shared.targets.lock().unwrap() = targets.to_vec();
    }

    /// Transactions acknowledged as committed so far.
    pub fn committed(&self) -> usize {
        self.shared.committed.lock().unwrap().len()
    }

    /// Distinct transactions submitted so far.
    pub fn submitted(&self) -> usize {
        self.shared.submitted.load(Ordering::Relaxed)
    }

    /// Submissions so far, including retries.
    pub fn attempts(&self) -> usize {
        self.shared.attempts.load(Ordering::Relaxed)
    }

    /// Answers 422 (refused), 429 (rate-limited) or 5xx so far; the transaction was retried
    /// after each, after a short pause.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Stops every thread (each finishes or abandons its current submission, at most
    /// [`REQUEST_TIMEOUT`]) and returns what was acknowledged.
    pub fn stop(self) -> Acked {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            if t.join().is_err() {
                eprintln!("load: a wallet thread panicked");
            }
        }
        Acked {
            committed: self.shared.committed.lock().unwrap().clone(),
            heights: self.shared.heights.lock().unwrap().clone(),
            submitted: self.shared.submitted.load(Ordering::Relaxed),
        }
    }
}

enum Outcome {
    Committed(u64),
    /// Try the next validator now.
    Next,
    /// Try the next validator after a short pause.
    Backoff,
    Unreachable,
}

fn wallet_loop(
    k: usize,
    key: crypto::SecretKey,
    chain: ChainBinding,
    apis: Arc<Vec<String>>,
    shared: Arc<Shared>,
) {
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(1))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("HTTP client");
    let to = Address([0x5a; 20]);
    let mut skip_until = vec![Instant::now(); apis.len()];
    let mut rr = k;
    let mut nonce = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let tx = Transaction::sign(&key, &chain, nonce, Payload::Transfer { to, amount: 1 });
        let hash = tx.hash();
        let body = serde_json::json!({ "tx": hex::encode(tx.encode()) });
        shared.submitted.fetch_add(1, Ordering::Relaxed);
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let targets = shared.targets.lock().unwrap().clone();
            let now = Instant::now();
            let Some(t) = (0..targets.len())
                .map(|j| targets[(rr + j) % targets.len()])
                .find(|&t| skip_until[t] <= now)
            else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            rr = rr.wrapping_add(1);
            shared.attempts.fetch_add(1, Ordering::Relaxed);
            match submit(&http, &apis[t], &body) {
                Outcome::Committed(height) => {
                    shared.committed.lock().unwrap().push(hash);
                    shared.heights.lock().unwrap().insert(hash, height);
                    break;
                }
                Outcome::Next => std::thread::sleep(Duration::from_millis(20)),
                Outcome::Backoff => {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Outcome::Unreachable => {
                    skip_until[t] = Instant::now() + SKIP_UNREACHABLE;
                }
            }
        }
        nonce += 1;
    }
}

fn submit(http: &reqwest::blocking::Client, api: &str, body: &serde_json::Value) -> Outcome {
    let resp = match http
        .post(format!("{api}/v1/transactions?mode=commit"))
        .json(body)
        .send()
    {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::Unreachable,
        Err(_) => return Outcome::Next,
    };
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().unwrap_or(serde_json::Value::Null);
    match (status, v["status"].as_str()) {
        (200, Some("committed")) => Outcome::Committed(
            v["height"]
                .as_str()
                .and_then(|h| h.parse().ok())
                .unwrap_or(0),
        ),
        // Refused (422), rate-limited (429), or the validator is failing (5xx).
        (422 | 429, _) => Outcome::Backoff,
        (s, _) if s >= 500 => Outcome::Backoff,
        _ => Outcome::Next,
    }
}
