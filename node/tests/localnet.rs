//! `cairnd localnet`, the README's first command, as a user runs it: it starts a working
//! network, a transfer commits, Ctrl-C stops every validator, and running it again continues
//! the same chain.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{CAIRND, get_json};

struct Localnet {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything printed so far.
    out: Vec<String>,
}

impl Localnet {
    fn start(dir: &Path, base: u16) -> Localnet {
        let mut child = Command::new(CAIRND)
            .arg("localnet")
            .arg("--dir")
            .arg(dir)
            .args(["--base-port", &base.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        Localnet {
            child,
            lines,
            out: Vec::new(),
        }
    }

    /// Waits for a line containing `text`.
    fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.out.push(l.clone());
                if l.contains(text) {
                    return l;
                }
            }
        }
        panic!("no line with {text:?} in:\n{}", self.out.join("\n"));
    }

    /// The validators' pids, from the banner.
    fn pids(&self) -> Vec<u32> {
        self.out
            .iter()
            .filter_map(|l| {
                l.split_once(" pid ")?
                    .1
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Ctrl-C; returns once localnet has exited, asserting it exited cleanly.
    fn interrupt(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "localnet did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.out.push(l);
        }
        assert!(status.success(), "{status}:\n{}", self.out.join("\n"));
        self.out
    }
}

fn wait_height(api: &str, target: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = support::api_height(api);
        if h >= target {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "height {h} did not reach {target}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn localnet_starts_commits_stops_on_ctrl_c_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let net_dir = dir.path().join("localnet");
    let base = support::free_base(4);
    let api = format!("http://127.0.0.1:{}", base + 1000);

    let mut ln = Localnet::start(&net_dir, base);
    ln.expect("created a hotstuff network of 4 validators");
    ln.expect(&format!("validator-0  api {api}"));
    let wallet_line = ln.expect("wallets/wallet-0.json");
    ln.expect("Ctrl-C stops the network");
    let pids = ln.pids();
    assert_eq!(pids.len(), 4, "{:?}", ln.out);
    wait_height(&api, 3);

    // A transfer from the printed wallet commits.
    let key = genesis::load_key_file(&net_dir.join("wallets/wallet-0.json")).unwrap();
    let me = ledger::Address::of(&key.public());
    assert!(wallet_line.ends_with(&me.to_string()), "{wallet_line}");
    let (_, status) = get_json(&format!("{api}/v1/status"));
    let chain = ledger::ChainBinding {
        chain_id: status["chain_id"].as_str().unwrap().to_string(),
        genesis_hash: status["genesis_hash"].as_str().unwrap().parse().unwrap(),
    };
    let to = ledger::Address([7; 20]);
    let payload = ledger::Payload::Transfer { to, amount: 5 };
    let tx = ledger::Transaction::sign(&key, &chain, 0, payload);
    let resp = reqwest::blocking::Client::new()
        .post(format!("{api}/v1/transactions?mode=commit"))
        .json(&serde_json::json!({ "tx": hex::encode(tx.encode()) }))
        .send()
        .unwrap();
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["status"], "committed", "{v}");
    let (_, acct) = get_json(&format!("{api}/v1/accounts/{to}"));
    assert_eq!(acct["balance"], "5");

    let out = ln.interrupt();
    for i in 0..4 {
        assert!(
            out.iter().any(|l| *l == format!("stopped validator-{i}")),
            "{out:?}"
        );
    }
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "validator pid {pid} still running"
        );
    }
    let stopped_at = {
        let store = node::store::RedbStore::open(&net_dir.join("validator-0/data/store.redb"));
        ledger::Store::height(&store.unwrap()).unwrap()
    };
    assert!(stopped_at >= 3);

    // Again: the same chain continues, the transfer is still there.
    let mut ln = Localnet::start(&net_dir, base);
    ln.expect("reusing the hotstuff network of 4 validators");
    ln.expect("Ctrl-C stops the network");
    wait_height(&api, stopped_at + 3);
    let (_, acct) = get_json(&format!("{api}/v1/accounts/{to}"));
    assert_eq!(acct["balance"], "5");
    ln.interrupt();

    // A different shape is refused without touching the network.
    let out = Command::new(CAIRND)
        .arg("localnet")
        .arg("--dir")
        .arg(&net_dir)
        .args(["--validators", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds a hotstuff network of 4 validators") && err.contains("--reset"),
        "{err}"
    );
}
