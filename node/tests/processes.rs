//! Real `cairnd run` processes on loopback, talking over libp2p: transfers submitted to their
//! HTTP APIs commit with exact balances on every validator, they commit the same chain,
//! survive a stop-and-restart of the whole committee, and a validator killed with SIGKILL
//! catches up after restarting.

use ledger::Store;
use node::store::RedbStore;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Validator {
    child: Child,
    heights: mpsc::Receiver<u64>,
    height: u64,
}

fn start(home: &Path) -> Validator {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairnd"))
        .args(["run", "--home"])
        .arg(home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cairnd");
    let out = child.stdout.take().unwrap();
    let (tx, heights) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("committed block")
                && let Some(h) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("height="))
                    .and_then(|h| h.parse::<u64>().ok())
                && tx.send(h).is_err()
            {
                return;
            }
        }
    });
    Validator {
        child,
        heights,
        height: 0,
    }
}

impl Validator {
    fn poll(&mut self) -> u64 {
        while let Ok(h) = self.heights.try_recv() {
            self.height = self.height.max(h);
        }
        self.height
    }

    fn stop(mut self, signal: &str) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args([signal, &pid]).status();
        let _ = self.child.wait();
    }
}

/// Waits until every running validator has logged a commit at or above `target`.
fn wait_for(vs: &mut [Option<Validator>], target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let heights: Vec<u64> = vs.iter_mut().flatten().map(Validator::poll).collect();
        if heights.iter().all(|h| *h >= target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "heights {heights:?} did not reach {target}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn store_path(out: &Path, i: usize) -> PathBuf {
    out.join(format!("validator-{i}/data/store.redb"))
}

/// Every store agrees block by block up to the lowest height; returns that height.
fn assert_same_chain(out: &Path) -> u64 {
    let stores: Vec<RedbStore> = (0..4)
        .map(|i| RedbStore::open(&store_path(out, i)).unwrap())
        .collect();
    let top = stores.iter().map(|s| s.height().unwrap()).min().unwrap();
    for h in 1..=top {
        let first = stores[0].block(h).unwrap().unwrap().hash();
        for (i, s) in stores.iter().enumerate().skip(1) {
            assert_eq!(
                s.block(h).unwrap().unwrap().hash(),
                first,
                "validator {i} at height {h}"
            );
        }
    }
    top
}

#[test]
fn four_processes_agree_restart_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let base = 20_000 + (std::process::id() % 4_000) as u16 * 4;
    let status = Command::new(env!("CARGO_BIN_EXE_cairnd"))
        .args([
            "testnet",
            "--validators",
            "4",
            "--protocol",
            "hotstuff",
            "--out",
        ])
        .arg(&out)
        .args(["--base-port", &base.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let homes: Vec<PathBuf> = (0..4).map(|i| out.join(format!("validator-{i}"))).collect();
    let limit = Duration::from_secs(60);

    let mut vs: Vec<Option<Validator>> = homes.iter().map(|h| Some(start(h))).collect();
    wait_for(&mut vs, 20, limit);
    transfers_commit_everywhere(&out, base);

    // SIGKILL a validator, let the others go on, restart it: it catches up.
    vs[3].take().unwrap().stop("-KILL");
    let others = vs.iter_mut().flatten().map(Validator::poll).max().unwrap();
    wait_for(&mut vs, others + 10, limit);
    vs[3] = Some(start(&homes[3]));
    let target = vs.iter_mut().flatten().map(Validator::poll).max().unwrap() + 10;
    wait_for(&mut vs, target, limit);

    // Stop all four, then start them again: the chain continues from where it was.
    for v in vs.iter_mut() {
        v.take().unwrap().stop("-TERM");
    }
    let before = assert_same_chain(&out);
    assert!(before >= 20);
    let mut vs: Vec<Option<Validator>> = homes.iter().map(|h| Some(start(h))).collect();
    wait_for(&mut vs, before + 10, limit);
    for v in vs.iter_mut() {
        v.take().unwrap().stop("-TERM");
    }
    assert!(assert_same_chain(&out) >= before + 10);
}

/// 4 wallets each send 10 transfers through a different validator's API; every validator
/// then reports every transaction committed and the same, exact balances.
fn transfers_commit_everywhere(out: &Path, base: u16) {
    use ledger::{Address, ChainBinding, Payload, Transaction};
    let genesis = genesis::Genesis::load(&out.join("genesis.json")).unwrap();
    let chain = ChainBinding {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
    };
    let wallets: Vec<crypto::SecretKey> = (0..4)
        .map(|k| {
            let path = out.join(format!("wallets/wallet-{k}.json"));
            genesis::keyfile::load_key_file(&path).unwrap()
        })
        .collect();
    let api = |i: usize| format!("http://127.0.0.1:{}", base as usize + 1000 + i);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    rt.block_on(async {
        let mut hashes = Vec::new();
        for nonce in 0..10u64 {
            for (w, key) in wallets.iter().enumerate() {
                let to = Address::of(&wallets[(w + 1) % 4].public());
                let amount = 1 + w as u64;
                let tx = Transaction::sign(key, &chain, nonce, Payload::Transfer { to, amount });
                hashes.push(tx.hash());
                let body = serde_json::json!({ "tx": hex::encode(tx.encode()) });
                let resp = http
                    .post(format!("{}/v1/transactions?mode=sync", api(w)))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(
                    resp.status().is_success(),
                    "submit: {}",
                    resp.text().await.unwrap()
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..4 {
            for h in &hashes {
                loop {
                    let v = get_json(&http, format!("{}/v1/transactions/{h}", api(i))).await;
                    if v["status"] == "committed" {
                        assert_eq!(v["receipt"]["ok"], true, "{v}");
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "validator {i}: {h} not committed: {v}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let start = genesis.accounts[0].balance;
        for i in 0..4 {
            for (w, key) in wallets.iter().enumerate() {
                let addr = Address::of(&key.public());
                let v = get_json(&http, format!("{}/v1/accounts/{addr}", api(i))).await;
                let received = 10 * (1 + ((w + 3) % 4) as u64);
                let expected = start - 10 * (1 + w as u64) + received;
                assert_eq!(
                    v["balance"],
                    expected.to_string(),
                    "validator {i} wallet {w}"
                );
                assert_eq!(v["nonce"], "10");
            }
        }
    });
}

async fn get_json(http: &reqwest::Client, url: String) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}
