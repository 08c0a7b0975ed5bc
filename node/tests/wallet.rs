//! The `cairn` wallet as a process: against a real 4-validator network (status, balance,
//! nonce, transfers with and without `--wait`, back-to-back and concurrent transfers, every
//! exit code), and without one (usage errors, unreachable nodes, servers that answer nonsense).

mod support;

use ledger::Address;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::{CAIRN, Testnet, wait_for};

/// Runs `cairn ARGS` (with `--node NODE` and `--key KEY` when given) without `CAIRN_NODE`.
fn cairn(node: Option<&str>, key: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(CAIRN);
    cmd.env_remove("CAIRN_NODE");
    if let Some(n) = node {
        cmd.args(["--node", n]);
    }
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start cairn: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

#[track_caller]
fn assert_stderr(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(needle),
        "expected {needle:?} in stderr:\n{err}"
    );
}

/// The `--json` output, which must be exactly one JSON value.
#[track_caller]
fn json(o: &Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(o)))
}

/// The human output's `key: value` lines.
#[track_caller]
fn fields(o: &Output) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in stdout(o).lines() {
        let (k, v) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a `key: value` line: {line:?}"));
        let old = map.insert(k.to_string(), v.trim().to_string());
        assert!(old.is_none(), "{k} printed twice:\n{}", stdout(o));
    }
    map
}

fn address(net: &Testnet, k: usize) -> String {
    Address::of(&net.wallet_key(k).public()).to_string()
}

/// Polls `cairn tx HASH` until it exits 0 (committed, receipt ok).
fn wait_committed(node: &str, hash: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let o = cairn(Some(node), None, &["--json", "tx", hash]);
        if o.status.code() == Some(0) {
            let v = json(&o);
            assert_eq!(v["status"], "committed", "{v}");
            assert_eq!(v["receipt"]["ok"], true, "{v}");
            return v;
        }
        assert_exit(&o, 3); // pending or in flight: not an error, not final
        assert!(
            Instant::now() < deadline,
            "{hash} not committed: {}",
            stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cairn --json balance ADDR` on `node`: (balance, nonce, pending_nonce).
fn account(node: &str, addr: &str) -> (u64, u64, u64) {
    let o = cairn(Some(node), None, &["--json", "balance", addr]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["address"], addr);
    let num = |k: &str| -> u64 {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} is not a string: {v}"))
            .parse()
            .unwrap()
    };
    (num("balance"), num("nonce"), num("pending_nonce"))
}

#[test]
fn wallet_against_a_real_network() {
    let started = Instant::now();
    let net = Testnet::new(4, "hotstuff");
    let genesis = net.genesis();
    let chain = net.chain();
    let mut vs = net.start_all();
    wait_for(&mut vs, 3, Duration::from_secs(60));
    let node = net.api(0);
    let node = node.as_str();
    let wallets: Vec<PathBuf> = (0..4).map(|k| net.wallet(k)).collect();
    let addrs: Vec<String> = (0..4).map(|k| address(&net, k)).collect();
    let start: Vec<u64> = addrs
        .iter()
        .map(|a| {
            genesis
                .accounts
                .iter()
                .find(|acc| acc.address.to_string() == *a)
                .expect("wallet funded in genesis")
                .balance
        })
        .collect();
    let limit = Duration::from_secs(30);

    // A BFT chain shows no Raft configuration.
    let (_, v) = support::get_json(&format!("{node}/v1/validators"));
    assert!(
        v.get("raft").is_none() && v["members"].as_array().is_some(),
        "{v}"
    );
    // Leader transfer is Raft's: a HotStuff validator refuses it (exit 1) and says why.
    let o = cairn(Some(node), None, &["validators", "transfer-leader"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("changes its leader every view"),
        "{}",
        stderr(&o)
    );

    // status, --json and text. Height 3 needs only 3 of the 4 validators, so
    // the fourth may still be dialing: wait (bounded) until all 3 peers show.
    let peers_deadline = Instant::now() + limit;
    let s = loop {
        let o = cairn(Some(node), None, &["--json", "status"]);
        assert_exit(&o, 0);
        let s = json(&o);
        if s["peers"].as_array().map(Vec::len) == Some(3) || Instant::now() > peers_deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["chain_id"], genesis.chain_id.as_str());
    assert_eq!(s["genesis_hash"], chain.genesis_hash.to_string().as_str());
    assert_eq!(s["protocol"], "hotstuff");
    assert_eq!(s["node"], node);
    assert_eq!(s["catching_up"], false);
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(3), "{s}");
    let height: u64 = s["height"].as_str().unwrap().parse().unwrap();
    assert!(height >= 3, "{s}");
    assert!(s["view"].as_str().unwrap().parse::<u64>().is_ok(), "{s}");
    assert!(s["leader"].as_u64().unwrap() < 4, "{s}");
    let o = cairn(Some(node), None, &["status"]);
    assert_exit(&o, 0);
    let f = fields(&o);
    assert_eq!(f["chain_id"], genesis.chain_id);
    assert_eq!(f["genesis_hash"], chain.genesis_hash.to_string());
    assert_eq!(f["protocol"], "hotstuff");
    assert_eq!(f["node"], node);
    assert_eq!(f["catching_up"], "false");
    assert!(f["peers"].starts_with("3 ("), "{}", f["peers"]);
    assert!(f["height"].parse::<u64>().unwrap() >= height);

    // balance of the wallet's own account and of another address (no key file needed).
    let o = cairn(Some(node), Some(&wallets[0]), &["--json", "balance"]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["address"], addrs[0].as_str());
    assert_eq!(v["balance"], start[0].to_string().as_str());
    assert_eq!(v["nonce"], "0");
    assert_eq!(v["pending_nonce"], "0");
    let o = cairn(Some(node), Some(&wallets[0]), &["balance"]);
    assert_exit(&o, 0);
    let f = fields(&o);
    assert_eq!(f["address"], addrs[0]);
    assert_eq!(f["balance"], start[0].to_string());
    assert_eq!(f["nonce"], "0");
    let missing = Path::new("/nonexistent/wallet.json");
    let o = cairn(Some(node), Some(missing), &["balance", &addrs[1]]);
    assert_exit(&o, 0);
    assert_eq!(fields(&o)["balance"], start[1].to_string());
    let o = cairn(
        Some(node),
        Some(missing),
        &["balance", &format!("0x{}", addrs[1])],
    );
    assert_exit(&o, 0);
    assert_eq!(fields(&o)["address"], addrs[1]);

    // nonce.
    let o = cairn(Some(node), Some(&wallets[0]), &["--json", "nonce"]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["address"], addrs[0].as_str());
    assert_eq!(v["nonce"], "0");
    assert_eq!(v["pending_nonce"], "0");
    let o = cairn(Some(node), Some(&wallets[0]), &["nonce"]);
    assert_exit(&o, 0);
    let f = fields(&o);
    assert_eq!(
        (f["nonce"].as_str(), f["pending_nonce"].as_str()),
        ("0", "0")
    );

    // transfer --wait (text): committed, and both balances move by exactly the amount.
    let o = cairn(
        Some(node),
        Some(&wallets[0]),
        &["transfer", "--to", &addrs[1], "--amount", "1234", "--wait"],
    );
    assert_exit(&o, 0);
    let f = fields(&o);
    assert_eq!(f["status"], "committed");
    assert_eq!(f["receipt"], "ok");
    assert_eq!(f["from"], addrs[0]);
    assert_eq!(f["to"], addrs[1]);
    assert_eq!(f["amount"], "1234");
    assert_eq!(f["nonce"], "0");
    let hash = f["hash"].clone();
    assert_eq!(hash.len(), 64);
    let tx_height = f["height"].clone();
    assert_eq!(account(node, &addrs[0]), (start[0] - 1234, 1, 1));
    assert_eq!(account(node, &addrs[1]).0, start[1] + 1234);

    // tx HASH, --json and text.
    let o = cairn(Some(node), None, &["--json", "tx", &hash]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["status"], "committed");
    assert_eq!(v["hash"], hash.as_str());
    assert_eq!(v["height"], tx_height.as_str());
    assert_eq!(v["index"].as_u64(), f["index"].parse().ok());
    assert_eq!(v["receipt"], serde_json::json!({"ok": true}));
    let o = cairn(Some(node), None, &["tx", &hash]);
    assert_exit(&o, 0);
    let t = fields(&o);
    assert_eq!(t["hash"], hash);
    assert_eq!(t["status"], "committed");
    assert_eq!(t["height"], tx_height);
    assert_eq!(t["receipt"], "ok");
    // Another validator (through --node) has the same block and balances once it commits.
    let other = net.api(3);
    let v = wait_committed(&other, &hash, limit);
    assert_eq!(v["height"], tx_height.as_str());
    assert_eq!(account(&other, &addrs[0]).0, start[0] - 1234);
    assert_eq!(account(&other, &addrs[1]).0, start[1] + 1234);

    // transfer --wait --json back: 234 from wallet 1.
    let o = cairn(
        Some(node),
        Some(&wallets[1]),
        &[
            "--json", "transfer", "--to", &addrs[0], "--amount", "234", "--wait",
        ],
    );
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["status"], "committed", "{v}");
    assert_eq!(v["receipt"]["ok"], true);
    assert_eq!(v["nonce"], "0");
    assert_eq!(v["amount"], "234");
    assert_eq!(v["from"], addrs[1].as_str());
    assert_eq!(v["to"], addrs[0].as_str());
    assert_eq!(v["hash"].as_str().map(str::len), Some(64));
    assert_eq!(account(node, &addrs[0]), (start[0] - 1000, 1, 1));
    assert_eq!(account(node, &addrs[1]), (start[1] + 1000, 1, 1));

    // Five back-to-back transfers without --wait from one wallet: nonces 0..5, all commit.
    let mut hashes = Vec::new();
    for (i, amount) in (1..=5u64).enumerate() {
        let o = cairn(
            Some(node),
            Some(&wallets[2]),
            &[
                "transfer",
                "--to",
                &addrs[3],
                "--amount",
                &amount.to_string(),
            ],
        );
        assert_exit(&o, 0);
        let f = fields(&o);
        assert!(
            f["status"] == "pending" || f["status"] == "in_flight",
            "{f:?}"
        );
        assert_eq!(f["nonce"], i.to_string(), "transfer {i}: {f:?}");
        hashes.push(f["hash"].clone());
    }
    for h in &hashes {
        wait_committed(node, h, limit);
    }
    let o = cairn(Some(node), Some(&wallets[2]), &["--json", "nonce"]);
    assert_exit(&o, 0);
    let v = json(&o);
    assert_eq!(v["nonce"], "5");
    assert_eq!(v["pending_nonce"], "5");
    assert_eq!(account(node, &addrs[2]).0, start[2] - 15);
    assert_eq!(account(node, &addrs[3]).0, start[3] + 15);

    // Three transfers from one wallet at the same moment: the ones that lose a nonce race are
    // signed again with the next nonce; all commit, with nonces 0, 1, 2.
    let children: Vec<_> = [10u64, 20, 30]
        .iter()
        .map(|amount| {
            let mut cmd = Command::new(CAIRN);
            cmd.env_remove("CAIRN_NODE")
                .args(["--node", node, "--json", "--key"])
                .arg(&wallets[3])
                .args([
                    "transfer",
                    "--to",
                    &addrs[2],
                    "--amount",
                    &amount.to_string(),
                ]);
            std::thread::spawn(move || cmd.output())
        })
        .collect();
    let mut nonces = Vec::new();
    let mut hashes = Vec::new();
    for c in children {
        let o = c.join().unwrap().unwrap();
        assert_exit(&o, 0);
        let v = json(&o);
        nonces.push(v["nonce"].as_str().unwrap().to_string());
        hashes.push(v["hash"].as_str().unwrap().to_string());
    }
    nonces.sort();
    assert_eq!(nonces, ["0", "1", "2"]);
    for h in &hashes {
        wait_committed(node, h, limit);
    }
    assert_eq!(account(node, &addrs[3]), (start[3] + 15 - 60, 3, 3));
    assert_eq!(account(node, &addrs[2]).0, start[2] - 15 + 60);

    // Rejected: more than the balance. Exit 1 with the node's reason; nothing changes.
    let too_much = (start[1] * 10).to_string();
    let o = cairn(
        Some(node),
        Some(&wallets[1]),
        &[
            "--json", "transfer", "--to", &addrs[0], "--amount", &too_much,
        ],
    );
    assert_exit(&o, 1);
    assert_stderr(&o, "insufficient balance");
    let v = json(&o);
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["exit_code"], 1);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient balance"),
        "{v}"
    );
    assert_eq!(v["hash"].as_str().map(str::len), Some(64));
    let o = cairn(
        Some(node),
        Some(&wallets[1]),
        &[
            "transfer", "--to", &addrs[0], "--amount", &too_much, "--wait",
        ],
    );
    assert_exit(&o, 1);
    assert_eq!(fields(&o)["status"], "rejected");
    assert_eq!(account(node, &addrs[1]), (start[1] + 1000, 1, 1));

    // Unknown hash: exit 3.
    let unknown = "ab".repeat(32);
    let o = cairn(Some(node), None, &["--json", "tx", &unknown]);
    assert_exit(&o, 3);
    assert_stderr(&o, "does not know transaction");
    let v = json(&o);
    assert_eq!(v["status"], "unknown");
    assert_eq!(v["hash"], unknown.as_str());

    // --wait with no time to wait: accepted, outcome unknown (3), hash printed; it commits
    // later and `cairn tx` then says so.
    let o = cairn(
        Some(node),
        Some(&wallets[0]),
        &[
            "--json",
            "transfer",
            "--to",
            &addrs[1],
            "--amount",
            "7",
            "--wait",
            "--timeout",
            "0",
        ],
    );
    assert_exit(&o, 3);
    assert_stderr(&o, "not committed after 0s");
    let v = json(&o);
    assert!(
        v["status"] == "pending" || v["status"] == "in_flight",
        "{v}"
    );
    assert_eq!(v["exit_code"], 3);
    let hash = v["hash"].as_str().unwrap().to_string();
    assert!(stderr(&o).contains(&format!("cairn tx {hash}")));
    wait_committed(node, &hash, limit);
    assert_eq!(account(node, &addrs[0]).0, start[0] - 1000 - 7);

    // Quorum lost: with two of four validators down nothing commits. --wait times out (3)
    // with the transaction pending; `tx` says it is not final (3); a stopped validator's API
    // is unreachable (4).
    vs[2].take().unwrap().stop("-KILL");
    vs[3].take().unwrap().stop("-KILL");
    let o = cairn(
        Some(node),
        Some(&wallets[0]),
        &[
            "transfer",
            "--to",
            &addrs[1],
            "--amount",
            "5",
            "--wait",
            "--timeout",
            "1",
        ],
    );
    assert_exit(&o, 3);
    assert_stderr(&o, "not committed after 1s");
    let f = fields(&o);
    assert!(
        f["status"] == "pending" || f["status"] == "in_flight",
        "{f:?}"
    );
    assert_eq!(f["nonce"], "2");
    let o = cairn(Some(node), None, &["tx", &f["hash"]]);
    assert_exit(&o, 3);
    assert_stderr(&o, "not committed yet");
    let o = cairn(Some(&net.api(3)), None, &["status"]);
    assert_exit(&o, 4);
    assert_stderr(
        &o,
        &format!("cannot reach node {}: connection refused", net.api(3)),
    );
    let o = cairn(
        Some(&net.api(3)),
        Some(&wallets[0]),
        &["--json", "transfer", "--to", &addrs[1], "--amount", "5"],
    );
    assert_exit(&o, 4);
    assert_eq!(json(&o)["exit_code"], 4);

    support::stop_all(&mut vs, "-TERM");
    eprintln!("wallet test took {:?}", started.elapsed());
}

/// A server on loopback that answers every request with `response` and closes.
fn stub_server(response: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = conn.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn wallet_errors_without_a_network() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("w.json");
    let o = cairn(None, Some(&key), &["keygen"]);
    assert_exit(&o, 0);
    let to = "00112233445566778899aabbccddeeff00112233";
    let dead = "http://127.0.0.1:1";

    // Usage and input errors: 2, before any network access.
    let usage: &[&[&str]] = &[
        &["transfer", "--to", "xyz", "--amount", "1"],
        &["transfer", "--to", &to[..38], "--amount", "1"],
        &["transfer", "--to", to, "--amount", "0"],
        &["transfer", "--to", to, "--amount", "-5"],
        &["transfer", "--to", to, "--amount", "18446744073709551616"],
        &["transfer", "--to", to],
        &[
            "transfer",
            "--to",
            to,
            "--amount",
            "1",
            "--wait",
            "--timeout",
            "x",
        ],
        &["tx", "12"],
        &["tx"],
        &["balance", "not-an-address"],
    ];
    for args in usage {
        let o = cairn(Some(dead), Some(&key), args);
        assert_exit(&o, 2);
        assert!(
            stderr(&o).starts_with("error: "),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let o = cairn(
        Some(dead),
        Some(&key),
        &["transfer", "--to", "xyz", "--amount", "1"],
    );
    assert_stderr(
        &o,
        "'--to <ADDR>': expected an address of 40 hex characters",
    );
    let o = cairn(
        Some(dead),
        Some(&key),
        &["transfer", "--to", to, "--amount", "0"],
    );
    assert_stderr(&o, "the amount must be positive");
    let missing = tmp.path().join("missing.json");
    for args in [
        &["balance"][..],
        &["nonce"],
        &["transfer", "--to", to, "--amount", "1"],
    ] {
        let o = cairn(Some(dead), Some(&missing), args);
        assert_exit(&o, 2);
        assert_stderr(&o, "missing.json: cannot read it");
    }
    for bad in [
        "https://127.0.0.1:1",
        "ftp://x",
        "http://",
        "http://h:1/?q=1",
        "::",
    ] {
        let o = cairn(Some(bad), Some(&key), &["status"]);
        assert_exit(&o, 2);
        assert_stderr(&o, "--node");
    }
    let o = Command::new(CAIRN)
        .env("CAIRN_NODE", "https://127.0.0.1:1")
        .arg("status")
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert_stderr(&o, "CAIRN_NODE \"https://127.0.0.1:1\"");

    // Unreachable: 4, naming the node, for every network command.
    let network: &[&[&str]] = &[
        &["status"],
        &["balance"],
        &["balance", to],
        &["nonce"],
        &["tx", &"0".repeat(64)],
        &["transfer", "--to", to, "--amount", "1"],
        &["transfer", "--to", to, "--amount", "1", "--wait"],
    ];
    for args in network {
        let o = cairn(Some(dead), Some(&key), args);
        assert_exit(&o, 4);
        assert_stderr(
            &o,
            "cannot reach node http://127.0.0.1:1: connection refused; is it running? pass \
             --node URL",
        );
    }
    let o = cairn(Some(dead), Some(&key), &["--json", "status"]);
    assert_exit(&o, 4);
    assert_eq!(json(&o)["exit_code"], 4);
    // CAIRN_NODE is used without --node, and --node wins over it.
    let o = Command::new(CAIRN)
        .env("CAIRN_NODE", "127.0.0.1:1")
        .arg("status")
        .output()
        .unwrap();
    assert_exit(&o, 4);
    assert_stderr(&o, "cannot reach node http://127.0.0.1:1:");
    let o = Command::new(CAIRN)
        .env("CAIRN_NODE", "http://127.0.0.1:1")
        .args(["--node", "https://x", "status"])
        .output()
        .unwrap();
    assert_exit(&o, 2);

    // A node URL ending in the API root /v1 is the same node, never /v1/v1/...
    let o = cairn(Some("http://127.0.0.1:1/v1"), Some(&key), &["status"]);
    assert_exit(&o, 4);
    assert_stderr(
        &o,
        "cannot reach node http://127.0.0.1:1: connection refused",
    );
    // A Cairn API that has no such endpoint (a wrong path prefix in --node) is a usage
    // error: 2, saying to check the path.
    let no_route = stub_server(
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 51\r\n\
         Connection: close\r\n\r\n{\"error\":\"no such endpoint: GET /x/v1/status; ...\"}",
    );
    let o = cairn(Some(&format!("{no_route}/x")), Some(&key), &["status"]);
    assert_exit(&o, 2);
    assert_stderr(&o, "check the path of --node");

    // A server that is not a Cairn API, or one that is unavailable: 4, no panic.
    let html = stub_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: \
         close\r\n\r\n<html></html>",
    );
    for args in network {
        let o = cairn(Some(&html), Some(&key), args);
        assert_exit(&o, 4);
        assert_stderr(&o, "not the expected JSON");
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    let busy = stub_server(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \
         42\r\nConnection: close\r\n\r\n{\"error\":\"the validator loop has stopped\"}",
    );
    let o = cairn(Some(&busy), Some(&key), &["tx", &"0".repeat(64)]);
    assert_exit(&o, 4);
    assert_stderr(&o, "HTTP 503: the validator loop has stopped");
    let cut = stub_server("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"chain");
    let o = cairn(Some(&cut), Some(&key), &["status"]);
    assert_exit(&o, 4);

    // The exit codes are in --help.
    let o = cairn(None, None, &["--help"]);
    assert_exit(&o, 0);
    let help = stdout(&o);
    for line in [
        "Exit codes:",
        "0  ok:",
        "1  not done:",
        "2  usage or input error",
        "3  outcome unknown:",
        "4  node unreachable:",
        "5  duplicate:",
        "CAIRN_NODE",
    ] {
        assert!(help.contains(line), "{line:?} missing from --help:\n{help}");
    }
}
