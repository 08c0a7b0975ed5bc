//! Many `cairn transfer --wait` processes from one key at the same moment, against a real
//! 4-validator network: the wallet never reports one payment as two, re-signs through any
//! validator, and every money movement matches what the processes reported.
//!
//! Three situations, each for several rounds, started together so they race:
//! 1. one key file (one machine): 4 processes, each through a different validator, with the
//!    same and with different amounts. The signing lock gives each its own nonce: all must
//!    succeed, with distinct transactions.
//! 2. two copies of the key file (two machines, so no shared lock), identical transfers
//!    through one validator: a process whose transaction the node already had exits 5 and
//!    names it; it is never counted as a payment.
//! 3. two copies, different amounts, through different validators: nonces collide across
//!    validators; the losers see their nonce taken (refused, or committed with a failed
//!    receipt) and sign again. All must succeed.
//!
//! After every situation: each exit 0 is a distinct committed transaction whose amount moved,
//! every other exit says why, the validators agree on the balances and the total supply is
//! unchanged.

mod support;

use ledger::Address;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{CAIRN, Testnet, get_json, wait_for};

/// One process's result.
struct Run {
    amount: u64,
    node: usize,
    out: Output,
}

impl Run {
    fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&self.out.stdout),
                self.stderr()
            )
        })
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

/// Starts one `cairn --json transfer --wait` per (key, node, amount) at once; waits for all.
fn race(net: &Testnet, to: &str, jobs: &[(&Path, usize, u64)]) -> Vec<Run> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(jobs.len()));
    let threads: Vec<_> = jobs
        .iter()
        .map(|&(key, node, amount)| {
            let mut cmd = Command::new(CAIRN);
            cmd.env_remove("CAIRN_NODE")
                .args(["--node", &net.api(node), "--json", "--key"])
                .arg(key)
                .args(["transfer", "--to", to, "--amount", &amount.to_string()])
                .args(["--wait", "--timeout", "60"]);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let out = cmd.output().expect("cannot start cairn");
                Run { amount, node, out }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// `(balance, nonce)` of `addr` on validator `i`.
fn account(net: &Testnet, i: usize, addr: &str) -> (u64, u64) {
    let (status, v) = get_json(&format!("{}/v1/accounts/{addr}", net.api(i)));
    assert_eq!(status, 200, "{v}");
    let num = |k: &str| v[k].as_str().unwrap().parse::<u64>().unwrap();
    (num("balance"), num("nonce"))
}

/// Waits (up to 20 s) for validator `i` to show `addr` with exactly `balance` (a validator
/// may still be a block behind the one that answered the wallet). A balance that passes it
/// (a payment moved that no process reported) never matches and fails.
#[track_caller]
fn assert_balance(net: &Testnet, i: usize, addr: &str, balance: u64) {
    let mut last = 0;
    for _ in 0..400 {
        last = account(net, i, addr).0;
        if last == balance {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("validator {i}: balance of {addr} is {last}, the processes reported {balance}");
}

/// Checks that the validators agree on every genesis account and that the total supply is
/// what genesis gave out. Empty blocks keep coming, so heights rarely match at one instant;
/// but once no transfer is in flight the balances stand still, so every validator must reach
/// the same values (a diverged one never does).
fn assert_validators_agree(net: &Testnet) {
    let genesis = net.genesis();
    let supply: u128 = genesis.accounts.iter().map(|a| u128::from(a.balance)).sum();
    let addrs: Vec<String> = genesis
        .accounts
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    let mut views = Vec::new();
    for _ in 0..200 {
        views = (0..net.n)
            .map(|i| addrs.iter().map(|a| account(net, i, a)).collect::<Vec<_>>())
            .collect();
        if views.iter().all(|v| *v == views[0]) {
            for (i, v) in views.iter().enumerate() {
                let total: u128 = v.iter().map(|(b, _)| u128::from(*b)).sum();
                assert_eq!(total, supply, "validator {i}: total supply changed");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the validators never agreed on the accounts: {views:?}");
}

/// What a set of runs proved: the distinct transactions reported done, and their sum.
struct Tally {
    paid: u64,
    done: BTreeSet<String>,
    duplicates: usize,
    resigned: usize,
}

/// Checks every run: exit 0 is a committed, applied transfer of its amount, not reported by
/// any other exit 0; exit 5 names a transaction another run reported done; nothing else is
/// allowed unless `allow` lists it. Returns what was paid.
fn tally(runs: &[Run], sender: &str, to: &str, allow: &[i32]) -> Tally {
    let mut t = Tally {
        paid: 0,
        done: BTreeSet::new(),
        duplicates: 0,
        resigned: 0,
    };
    let mut dup_hashes = Vec::new();
    for r in runs {
        let v = r.json();
        assert_eq!(v["from"], sender);
        assert_eq!(v["to"], to);
        assert_eq!(v["amount"], r.amount.to_string(), "{v}");
        let hash = v["hash"].as_str().unwrap().to_string();
        match r.code() {
            0 => {
                assert_eq!(v["status"], "committed", "{v}");
                assert_eq!(v["receipt"]["ok"], true, "{v}");
                assert!(
                    t.done.insert(hash.clone()),
                    "two processes reported transaction {hash} as their payment"
                );
                t.paid += r.amount;
                let attempts = v["attempts"].as_u64().unwrap();
                if attempts > 1 {
                    t.resigned += 1;
                    assert!(r.stderr().contains("signing again with the next nonce"));
                }
            }
            5 => {
                assert_eq!(v["known"], true, "{v}");
                assert_eq!(v["exit_code"], 5);
                let err = r.stderr();
                assert!(
                    err.contains(&format!("already had transaction {hash}"))
                        && err.contains("made no new payment"),
                    "{err}"
                );
                dup_hashes.push(hash);
                t.duplicates += 1;
            }
            c => {
                assert!(
                    allow.contains(&c),
                    "process (amount {}, validator {}) exited {c}:\n{}",
                    r.amount,
                    r.node,
                    r.stderr()
                );
                assert!(r.stderr().starts_with("error: "), "{}", r.stderr());
                assert_eq!(v["exit_code"], c);
            }
        }
    }
    for h in dup_hashes {
        assert!(
            t.done.contains(&h),
            "a duplicate names {h}, which no process reported done"
        );
    }
    t
}

/// A copy of a key file (another machine's wallet: its own lock and nonce record).
fn copy_key(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to).unwrap();
    to
}

#[test]
fn concurrent_wallets_from_one_key_never_pay_twice_or_report_twice() {
    let net = Testnet::new(4, "hotstuff");
    let mut vs = net.start_all();
    wait_for(&mut vs, 2, Duration::from_secs(60));
    let key = net.wallet(0);
    let sender = Address::of(&net.wallet_key(0).public()).to_string();
    let to = Address::of(&net.wallet_key(1).public()).to_string();
    let mut expected = account(&net, 0, &to).0;
    let mut sender_nonce = account(&net, 0, &sender).1;

    // 1. One key file, four processes, each through its own validator.
    let rounds: [[u64; 4]; 3] = [[100; 4], [10, 20, 30, 40], [7, 7, 8, 8]];
    for (round, amounts) in rounds.iter().enumerate() {
        let jobs: Vec<(&Path, usize, u64)> = amounts
            .iter()
            .enumerate()
            .map(|(i, a)| (key.as_path(), i, *a))
            .collect();
        let runs = race(&net, &to, &jobs);
        let t = tally(&runs, &sender, &to, &[]);
        assert_eq!(
            t.done.len(),
            4,
            "round {round}: every process made its payment"
        );
        assert_eq!(
            t.duplicates, 0,
            "round {round}: one machine never signs one nonce twice"
        );
        let nonces: BTreeSet<String> = runs
            .iter()
            .map(|r| r.json()["nonce"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(nonces.len(), 4, "round {round}: four distinct nonces");
        expected += t.paid;
        sender_nonce += 4;
        // Every payment moved once: the recipient gained exactly the reported sum.
        assert_balance(&net, 0, &to, expected);
        assert_eq!(account(&net, 0, &sender).1, sender_nonce, "round {round}");
        eprintln!("one key file, round {round}: {} re-signed", t.resigned);
    }
    assert_validators_agree(&net);

    // 2. Two machines (two copies of the key file), identical transfers, one validator.
    let dir = tempfile::tempdir().unwrap();
    let a = copy_key(&key, dir.path(), "a.json");
    let b = copy_key(&key, dir.path(), "b.json");
    let mut duplicates = 0;
    for round in 0..4 {
        let jobs = [
            (a.as_path(), 2, 50),
            (b.as_path(), 2, 50),
            (b.as_path(), 2, 50),
        ];
        let runs = race(&net, &to, &jobs);
        // Exit 1 is allowed only as "re-signing ran out", which a run names.
        let t = tally(&runs, &sender, &to, &[1]);
        assert!(!t.done.is_empty(), "round {round}: some payment was made");
        duplicates += t.duplicates;
        expected += t.paid;
        assert_balance(&net, 2, &to, expected);
    }
    eprintln!("two machines, one validator: {duplicates} duplicates reported as such");
    assert_validators_agree(&net);

    // 3. Two machines, different amounts, through different validators: nonces collide
    //    across pools and the losers sign again.
    let mut resigned = 0;
    for round in 0..4 {
        let jobs = [
            (a.as_path(), 0, 11),
            (b.as_path(), 1, 12),
            (a.as_path(), 2, 13),
            (b.as_path(), 3, 14),
        ];
        let runs = race(&net, &to, &jobs);
        let t = tally(&runs, &sender, &to, &[]);
        assert_eq!(
            t.done.len(),
            4,
            "round {round}: every process made its payment"
        );
        resigned += t.resigned;
        expected += t.paid;
        assert_eq!(t.paid, 11 + 12 + 13 + 14);
        assert_balance(&net, 0, &to, expected);
    }
    eprintln!("two machines, four validators: {resigned} transfers re-signed after a clash");
    assert_validators_agree(&net);
}

/// A fabricated run: exit `code` with the `--json` object `v`.
fn fake(code: i32, amount: u64, v: Value) -> Run {
    use std::os::unix::process::ExitStatusExt;
    Run {
        amount,
        node: 0,
        out: Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: v.to_string().into_bytes(),
            stderr: b"error: node x already had transaction bb made no new payment".to_vec(),
        },
    }
}

fn done_json(hash: &str, amount: u64) -> Value {
    serde_json::json!({
        "from": "s", "to": "r", "amount": amount.to_string(), "hash": hash,
        "status": "committed", "receipt": {"ok": true}, "attempts": 1,
    })
}

/// Negative control: the old wallet's failure (two processes, one transaction, both exit 0)
/// is caught.
#[test]
#[should_panic(expected = "two processes reported transaction aa as their payment")]
fn checker_catches_one_payment_reported_twice() {
    let runs = [
        fake(0, 5, done_json("aa", 5)),
        fake(0, 5, done_json("aa", 5)),
    ];
    tally(&runs, "s", "r", &[]);
}

/// Negative control: a duplicate must name a payment some process made.
#[test]
#[should_panic(expected = "a duplicate names bb, which no process reported done")]
fn checker_catches_a_duplicate_of_nothing() {
    let mut dup = done_json("bb", 5);
    dup["known"] = Value::Bool(true);
    dup["exit_code"] = 5.into();
    let runs = [fake(0, 5, done_json("aa", 5)), fake(5, 5, dup)];
    tally(&runs, "s", "r", &[]);
}

/// Negative control: a failure that is not allowed fails the check.
#[test]
#[should_panic(expected = "exited 1")]
fn checker_catches_an_unexpected_failure() {
    let mut v = done_json("aa", 5);
    v["exit_code"] = 1.into();
    tally(&[fake(1, 5, v)], "s", "r", &[]);
}
