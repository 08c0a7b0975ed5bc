//! Real `cairnd` processes on loopback for the integration tests: a testnet written by
//! `cairnd testnet`, validators started as child processes, their logs followed for commits,
//! their APIs queried over HTTP.
#![allow(dead_code)] // Each test binary uses a different part.

use node::store::RedbStore;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const CAIRND: &str = env!("CARGO_BIN_EXE_cairnd");
pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// A testnet on disk (`cairnd testnet` output) in a temporary directory.
pub struct Testnet {
    pub out: PathBuf,
    pub n: usize,
    pub base: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Testnet {
    /// With `CAIRN_TEST_KEEP=DIR`, copies the testnet (homes, logs, vote logs) to
    /// `DIR/<random>` before it is deleted, for post-mortems of a failed run.
    fn drop(&mut self) {
        if let Some(keep) = std::env::var_os("CAIRN_TEST_KEEP") {
            let to = std::path::Path::new(&keep).join(format!("net-{}", self.base));
            let _ = std::fs::create_dir_all(&keep);
            let _ = Command::new("cp")
                .arg("-r")
                .arg(&self.out)
                .arg(&to)
                .status();
            eprintln!("testnet kept in {}", to.display());
        }
    }
}

/// Picks a base port whose 2n ports (p2p base+i, API base+1000+i) are free now, below the
/// Linux ephemeral range, different for each call in this process.
pub fn free_base(n: usize) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let pid = std::process::id() as u16;
    for _ in 0..1000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 11_000 + (pid.wrapping_mul(97).wrapping_add(k.wrapping_mul(16))) % 8_000;
        let free = (0..n as u16).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + 1000 + i)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free port range found");
}

impl Testnet {
    pub fn new(n: usize, protocol: &str) -> Testnet {
        Testnet::with_args(n, protocol, &[])
    }

    /// As [`Testnet::new`], with more `cairnd testnet` arguments.
    pub fn with_args(n: usize, protocol: &str, extra: &[&str]) -> Testnet {
        Testnet::build(n, protocol, free_base(n), extra)
    }

    /// A `cairnd testnet --hosts` testnet whose validators are all `host` (a DNS name or an
    /// IP address of this machine), at ports `base+i`, listening on 127.0.0.1.
    pub fn with_hosts(n: usize, protocol: &str, host: &str) -> Testnet {
        let base = free_base(n);
        let list: Vec<String> = (0..n)
            .map(|i| format!("{host}:{}", base as usize + i))
            .collect();
        let list = list.join(",");
        Testnet::build(
            n,
            protocol,
            base,
            &["--hosts", &list, "--p2p-bind", "127.0.0.1"],
        )
    }

    fn build(n: usize, protocol: &str, base: u16, extra: &[&str]) -> Testnet {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("net");
        let status = Command::new(CAIRND)
            .args([
                "testnet",
                "--validators",
                &n.to_string(),
                "--protocol",
                protocol,
            ])
            .arg("--out")
            .arg(&out)
            .args(["--base-port", &base.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "cairnd testnet failed");
        Testnet {
            out,
            n,
            base,
            _dir: dir,
        }
    }

    pub fn home(&self, i: usize) -> PathBuf {
        self.out.join(format!("validator-{i}"))
    }

    pub fn wallet(&self, k: usize) -> PathBuf {
        self.out.join(format!("wallets/wallet-{k}.json"))
    }

    pub fn wallet_key(&self, k: usize) -> crypto::SecretKey {
        genesis::keyfile::load_key_file(&self.wallet(k)).unwrap()
    }

    pub fn genesis(&self) -> genesis::Genesis {
        genesis::Genesis::load(&self.out.join("genesis.json")).unwrap()
    }

    pub fn chain(&self) -> ledger::ChainBinding {
        let g = self.genesis();
        ledger::ChainBinding {
            chain_id: g.chain_id.clone(),
            genesis_hash: g.hash(),
        }
    }

    /// The API base URL of validator `i`.
    pub fn api(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.base as usize + 1000 + i)
    }

    pub fn start(&self, i: usize) -> Validator {
        Validator::start(&self.home(i))
    }

    pub fn start_all(&self) -> Vec<Option<Validator>> {
        (0..self.n).map(|i| Some(self.start(i))).collect()
    }

    pub fn store_path(&self, i: usize) -> PathBuf {
        self.home(i).join("data/store.redb")
    }

    /// Every store agrees block by block (hash, hence state root) up to the lowest height,
    /// and links by hash (`node::audit::same_chain`); returns that height. The validators
    /// must be stopped (redb locks the file). A store that installed a state snapshot (Raft)
    /// lacks the blocks below it: those heights are compared among the stores that have
    /// them, and every store has the lowest top block.
    pub fn assert_same_chain(&self) -> u64 {
        self.assert_same_chain_of(&(0..self.n).collect::<Vec<_>>())
    }

    /// As [`Testnet::assert_same_chain`], for the stores of validators `homes` only.
    pub fn assert_same_chain_of(&self, homes: &[usize]) -> u64 {
        node::audit::same_chain(&self.stores(homes)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn stores(&self, homes: &[usize]) -> Vec<(usize, RedbStore)> {
        homes
            .iter()
            .map(|&i| (i, RedbStore::open(&self.store_path(i)).unwrap()))
            .collect()
    }

    /// Reads every validator's vote log and asserts that none signed two different votes in
    /// one slot (view); returns how many votes were checked.
    pub fn assert_no_double_votes(&self) -> usize {
        self.assert_no_double_votes_of(&(0..self.n).collect::<Vec<_>>())
    }

    /// As [`Testnet::assert_no_double_votes`], for the vote logs in homes `homes`.
    pub fn assert_no_double_votes_of(&self, homes: &[usize]) -> usize {
        let mut total = 0;
        for &i in homes {
            let log = std::fs::read_to_string(self.home(i).join("votes.log")).unwrap_or_default();
            let parsed =
                node::audit::VoteLog::parse(&log).unwrap_or_else(|e| panic!("validator {i}: {e}"));
            assert!(
                parsed.conflicts.is_empty(),
                "validator {i} double-voted: {:?}",
                parsed.conflicts
            );
            total += parsed.votes;
        }
        total
    }

    /// The nemesis checker (`node::audit`, as `tests::cluster::check` runs it) on the
    /// stopped validators `homes`: their stores agree block by block and link by hash, every
    /// transaction in `acked` is in every one of them at the same height and index with a
    /// successful receipt, and no vote log holds two votes for one slot. Returns (the lowest
    /// top height, votes checked).
    pub fn check(&self, homes: &[usize], acked: &[crypto::Digest]) -> (u64, usize) {
        let stores = self.stores(homes);
        let height = node::audit::same_chain(&stores).unwrap_or_else(|e| panic!("{e}"));
        let found = node::audit::acked_in_stores(&stores, acked, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(found > 0 || acked.is_empty());
        drop(stores);
        (height, self.assert_no_double_votes_of(homes))
    }
}

/// A running `cairnd run`. Its stdout is followed for `committed block height=H` lines.
pub struct Validator {
    pub child: Child,
    heights: mpsc::Receiver<u64>,
    height: u64,
}

impl Validator {
    pub fn start(home: &Path) -> Validator {
        let mut child = Command::new(CAIRND)
            .args(["run", "--home"])
            .arg(home)
            .env("NO_COLOR", "1")
            .env("CAIRN_VOTE_LOG", home.join("votes.log"))
            .stdout(Stdio::piped())
            // Panics and errors printed before the logger runs, for post-mortems.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(home.join("cairnd.stderr"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("spawn cairnd");
        let out = child.stdout.take().unwrap();
        let (tx, heights) = mpsc::channel();
        // The log is kept next to the validator's data (appended across restarts) for
        // post-mortems; set CAIRN_TEST_KEEP=DIR to keep the whole testnet after the test.
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("cairnd.log"))
            .ok();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
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

    /// The highest committed height this validator has logged.
    pub fn poll(&mut self) -> u64 {
        while let Ok(h) = self.heights.try_recv() {
            self.height = self.height.max(h);
        }
        self.height
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args([signal, &pid]).status();
    }

    /// Sends `signal` (`-TERM`, `-KILL`) and waits for the process to end.
    pub fn stop(mut self, signal: &str) {
        self.signal(signal);
        let _ = self.child.wait();
    }
}

impl Drop for Validator {
    fn drop(&mut self) {
        // A failing test must not leave validators running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The highest height any running validator has logged.
pub fn max_height(vs: &mut [Option<Validator>]) -> u64 {
    vs.iter_mut()
        .flatten()
        .map(Validator::poll)
        .max()
        .unwrap_or(0)
}

/// Waits until every running validator has logged a commit at or above `target`.
pub fn wait_for(vs: &mut [Option<Validator>], target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let heights: Vec<u64> = vs.iter_mut().flatten().map(Validator::poll).collect();
        if heights.iter().all(|h| *h >= target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "heights {heights:?} did not reach {target} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops every validator with `signal`.
pub fn stop_all(vs: &mut [Option<Validator>], signal: &str) {
    for v in vs.iter_mut() {
        if let Some(v) = v.take() {
            v.stop(signal);
        }
    }
}

/// A blocking GET returning (status, JSON body).
pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::blocking::get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(serde_json::Value::Null))
}

/// Like [`get_json`], but `None` if the node cannot be reached (not started yet, stopped).
pub fn try_get_json(url: &str) -> Option<(u16, serde_json::Value)> {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?
        .get(url)
        .send()
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().unwrap_or(serde_json::Value::Null)))
}

/// The committed height a validator's API reports, 0 if it cannot be reached.
pub fn api_height(api: &str) -> u64 {
    match try_get_json(&format!("{api}/v1/status")) {
        Some((200, v)) => v["height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Sends transfers of 1 from `key` to a fixed address through `api` (`mode=sync`), one after
/// another every 20 ms, until `stop`; records the hashes the validator accepted (each must be
/// accepted: 200, after retrying the same transaction on the documented 503 `busy`
/// backpressure answer, which a starved machine can give during a view change).
pub fn send_until(
    key: &crypto::SecretKey,
    chain: &ledger::ChainBinding,
    api: &str,
    stop: &std::sync::atomic::AtomicBool,
    accepted: &std::sync::Mutex<Vec<crypto::Digest>>,
) {
    use ledger::{Address, Payload, Transaction};
    let http = reqwest::blocking::Client::new();
    let to = Address([9; 20]);
    let mut nonce = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let tx = Transaction::sign(key, chain, nonce, Payload::Transfer { to, amount: 1 });
        let (status, text, busy) = loop {
            let resp = http
                .post(format!("{api}/v1/transactions?mode=sync"))
                .json(&serde_json::json!({ "tx": hex::encode(tx.encode()) }))
                .send()
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().unwrap_or_default();
            let busy = status == 503 && text.contains("\"code\":\"busy\"");
            if !busy || stop.load(std::sync::atomic::Ordering::Relaxed) {
                break (status, text, busy);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if busy {
            break; // stopped while the validator was still busy
        }
        assert_eq!(status, 200, "{text}");
        accepted.lock().unwrap().push(tx.hash());
        nonce += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A wallet load: each of `(wallet, validator)` sends transfers of wallet `wallet` through
/// validator `validator`'s API ([`send_until`]) until [`Load::stop`].
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<crypto::Digest>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(net: &Testnet, senders: &[(usize, usize)]) -> Load {
        let chain = net.chain();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = senders
            .iter()
            .map(|&(wallet, via)| {
                let (key, chain, api) = (net.wallet_key(wallet), chain.clone(), net.api(via));
                let (stop, accepted) = (stop.clone(), accepted.clone());
                std::thread::spawn(move || send_until(&key, &chain, &api, &stop, &accepted))
            })
            .collect();
        Load {
            stop,
            accepted,
            threads,
        }
    }

    /// Wallet `v` through validator `v`, for each of `validators`.
    pub fn each(net: &Testnet, validators: &[usize]) -> Load {
        let senders: Vec<(usize, usize)> = validators.iter().map(|&v| (v, v)).collect();
        Load::start(net, &senders)
    }

    /// The hashes of the transfers accepted so far.
    pub fn accepted(&self) -> Vec<crypto::Digest> {
        self.accepted.lock().unwrap().clone()
    }

    /// Stops the senders; the hashes of the transfers the validators accepted.
    pub fn stop(self) -> Vec<crypto::Digest> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.accepted.lock().unwrap().clone()
    }
}

/// Waits (up to `limit`) until validator `i` reports each of `hashes` committed with a
/// successful receipt; their heights.
pub fn committed_heights(
    net: &Testnet,
    i: usize,
    hashes: &[crypto::Digest],
    limit: Duration,
) -> Vec<u64> {
    let deadline = Instant::now() + limit;
    hashes
        .iter()
        .map(|hash| {
            loop {
                let (_, s) = get_json(&format!("{}/v1/transactions/{hash}", net.api(i)));
                if s["status"] == "committed" {
                    assert_eq!(s["receipt"]["ok"], true, "{s}");
                    let h = s["height"].as_str().and_then(|h| h.parse().ok());
                    break h.unwrap_or_else(|| panic!("no decimal height: {s}"));
                }
                assert!(
                    Instant::now() < deadline,
                    "transfer {hash} not committed on validator {i}: {s}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .collect()
}

/// Runs `cairn` with `args`: its exit code and its stdout and stderr together.
pub fn cairn(args: &[&str]) -> (i32, String) {
    let out = Command::new(CAIRN).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A decimal string of the API as a number.
pub fn dec(v: &serde_json::Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
}

/// `cairn validators sign CHANGE --consensus-key KEY`; its output.
pub fn sign_with_key(change: &str, key: &Path) -> String {
    let (code, text) = cairn(&[
        "validators",
        "sign",
        change,
        "--consensus-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    text
}

/// `cairn validators sign CHANGE` with the consensus key files of validators `signers`
/// (homes), then `submit --wait` from wallet 3 through validator 0.
pub fn approve_and_submit(net: &Testnet, change: &str, signers: &[usize]) {
    for &i in signers {
        sign_with_key(change, &net.home(i).join("consensus_key.json"));
    }
    let wallet3 = net.wallet(3);
    let (code, text) = cairn(&[
        "--key",
        wallet3.to_str().unwrap(),
        "--node",
        &net.api(0),
        "validators",
        "submit",
        change,
        "--wait",
    ]);
    assert_eq!(code, 0, "{text}");
}

/// `cairn validators remove` through validator 0: the change file `out` removing the
/// validator with consensus key `key`.
pub fn write_remove(net: &Testnet, key: &crypto::PublicKey, out: &str) {
    let key = key.to_string();
    let (code, text) = cairn(&[
        "--node",
        &net.api(0),
        "validators",
        "remove",
        "--consensus-key",
        &key,
        "--out",
        out,
    ]);
    assert_eq!(code, 0, "{text}");
}

/// `cairn validators add` through validator 0: the change file `out` adding joiner `j`
/// (home `i`, named `validator-{i}`).
pub fn write_add(net: &Testnet, j: &Joiner, i: usize, out: &str) {
    let (code, text) = cairn(&[
        "--node",
        &net.api(0),
        "validators",
        "add",
        "--name",
        &format!("validator-{i}"),
        "--consensus-key",
        &j.key.public().to_string(),
        "--network-key",
        &j.net_key.public().to_string(),
        "--address",
        &j.p2p,
        "--out",
        out,
    ]);
    assert_eq!(code, 0, "{text}");
}

/// A validator home no genesis names: its keys and peer address.
pub struct Joiner {
    pub home: PathBuf,
    pub key: crypto::SecretKey,
    pub net_key: crypto::SecretKey,
    pub p2p: String,
}

impl Testnet {
    /// Writes home `i` (beyond the genesis validators) with keys from seeds `seed` and
    /// `seed + 1`, the chain's genesis and the next ports.
    pub fn joiner_home(&self, i: usize, seed: u8) -> Joiner {
        let home = self.home(i);
        std::fs::create_dir_all(&home).unwrap();
        let key = crypto::SecretKey::from_seed([seed; 32]);
        let net_key = crypto::SecretKey::from_seed([seed.wrapping_add(1); 32]);
        let p2p = format!("/ip4/127.0.0.1/tcp/{}", self.base as usize + i);
        let config = genesis::NodeConfig::new(
            &format!("validator-{i}"),
            &p2p,
            &format!("127.0.0.1:{}", self.base as usize + 1000 + i),
        );
        config.save(&home).unwrap();
        genesis::write_key_file(&config.consensus_key_path(&home), &key).unwrap();
        genesis::write_key_file(&config.network_key_path(&home), &net_key).unwrap();
        std::fs::copy(self.out.join("genesis.json"), config.genesis_path(&home)).unwrap();
        Joiner {
            home,
            key,
            net_key,
            p2p,
        }
    }
}
