//! Raft linearizable reads (`consistency=linearizable`, ReadIndex) against five real
//! `cairnd-test` processes while the leader is killed and a follower keeps falling behind
//! (issue 19):
//!
//! - a writer runs `cairn transfer --wait` through a follower; each exit 0 is an
//!   acknowledged write, and it records the sender's nonce after it;
//! - readers ask random live validators for the sender's account with
//!   `consistency=linearizable`, each noting the highest acknowledged nonce *before* it
//!   asks; an answer with a lower nonce is a stale read;
//! - one follower (the *lagger*) is paused (SIGSTOP) for four writes out of every eight,
//!   so it keeps falling behind and catching up while reads reach it;
//! - midway, the leader is SIGKILLed; reads go on through the election.
//!
//! Negative control: the same run with reads that do not ask for `consistency=linearizable`
//! — the lagger then answers stale reads, and the checker reports them.
//!
//! Reads refused during the election (503) are counted, not failures: a linearizable
//! read may be refused, never stale. The checker is the simulator's rule on real processes;
//! its negative control (a leader answering without confirming a majority) is in
//! `sim_raft.rs`.

use clap::Parser;
use ledger::Address;
use node::cli::cairn::Cli;
use node::cli::client::NodeClient;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::cluster::{Cluster, ClusterOpts};

fn cairn(args: &[&str]) -> (u8, String) {
    let cli = Cli::try_parse_from(std::iter::once("cairn").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("cairn {args:?}: {e}"));
    match node::cli::cairn::run(&cli) {
        Ok(()) => (0, String::new()),
        Err(f) => (f.error.code, f.error.message),
    }
}

#[derive(Default)]
struct Tally {
    served: u64,
    served_after_kill: u64,
    refused: u64,
    stale: Vec<String>,
}

#[test]
fn raft_linearizable_reads_are_never_stale_across_a_leader_kill() {
    let t = run(true);
    assert!(t.stale.is_empty(), "stale reads: {:?}", t.stale);
    assert!(
        t.served >= 100 && t.served_after_kill >= 50,
        "too few reads served to show anything: {} ({} after the kill)",
        t.served,
        t.served_after_kill
    );
}

#[test]
fn negative_control_plain_reads_from_a_lagging_follower_are_caught_as_stale() {
    let t = run(false);
    assert!(
        !t.stale.is_empty(),
        "no stale read among {} plain reads: the checker could not tell",
        t.served
    );
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One run (see the module doc) with linearizable reads or plain ones; what the readers saw.
fn run(linearizable: bool) -> Tally {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 5;
    let mut c = Cluster::new("raft", N, ClusterOpts::default());
    c.start_all();
    // Raft makes no blocks when idle: wait for a leader.
    let waited = Instant::now();
    let leader = loop {
        if let Some(l) = (0..N).find_map(|i| c.leader(i)) {
            break l;
        }
        if waited.elapsed() > Duration::from_secs(60) {
            c.dump_logs(30);
            panic!("no leader within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let writer_node = (leader + 1) % N;
    let lagger = (leader + 2) % N;
    let key_path = c.dir().join("wallets/wallet-0.json");
    let me = Address::of(&c.wallet_key(0).public());
    let to = Address::of(&c.wallet_key(1).public()).to_string();
    let apis: Vec<String> = (0..N).map(|i| c.api(i)).collect();
    let start_nonce = NodeClient::new(apis[writer_node].clone())
        .unwrap()
        .account(&me)
        .unwrap()
        .nonce;

    let acked = Arc::new(AtomicU64::new(start_nonce));
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let dead = Arc::new(AtomicU64::new(u64::MAX));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (acked, stop, killed, dead, tally, apis) = (
                acked.clone(),
                stop.clone(),
                killed.clone(),
                dead.clone(),
                tally.clone(),
                apis.clone(),
            );
            std::thread::spawn(move || {
                let clients: Vec<NodeClient> = apis
                    .iter()
                    .map(|a| NodeClient::new(a.clone()).unwrap())
                    .collect();
                let mut k = r;
                while !stop.load(Ordering::SeqCst) {
                    k = (k + 1) % N;
                    if dead.load(Ordering::SeqCst) == k as u64 {
                        continue;
                    }
                    let after_kill = killed.load(Ordering::SeqCst);
                    let floor = acked.load(Ordering::SeqCst);
                    let answer = clients[k].account_with(&me, false, None, linearizable);
                    let mut t = tally.lock().unwrap();
                    match answer {
                        Ok(a) if a.nonce < floor => t.stale.push(format!(
                            "validator {k}: nonce {} at height {}, but nonce {floor} was \
                             acknowledged before the read",
                            a.nonce, a.height
                        )),
                        Ok(_) => {
                            t.served += 1;
                            t.served_after_kill += u64::from(after_kill);
                        }
                        Err(_) => t.refused += 1,
                    }
                    drop(t);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    let key = key_path.to_str().unwrap().to_string();
    let writer_api = apis[writer_node].clone();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut writes = 0u64;
    let mut failed_writes = 0u64;
    while Instant::now() < deadline && writes < 60 {
        match writes % 8 {
            0 if !c.is_paused(lagger) => c.pause(lagger),
            4 if c.is_paused(lagger) => c.resume(lagger),
            _ => {}
        }
        if writes == 20 && !killed.load(Ordering::SeqCst) {
            c.kill(leader);
            dead.store(leader as u64, Ordering::SeqCst);
            killed.store(true, Ordering::SeqCst);
        }
        let (code, _msg) = cairn(&[
            "--node",
            &writer_api,
            "--key",
            &key,
            "transfer",
            "--to",
            &to,
            "--amount",
            "1",
            "--wait",
            "--timeout",
            "10",
        ]);
        if code == 0 {
            writes += 1;
            let nonce = NodeClient::new(writer_api.clone())
                .unwrap()
                .account(&me)
                .unwrap()
                .nonce;
            acked.fetch_max(nonce, Ordering::SeqCst);
        } else {
            failed_writes += 1;
        }
    }
    if c.is_paused(lagger) {
        c.resume(lagger);
    }
    // Reads go on a moment after the last write.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    let t = std::mem::take(&mut *tally.lock().unwrap());
    println!(
        "{} reads: {} served ({} after the leader kill), {} refused, {} stale; \
         {writes} writes acknowledged, {failed_writes} not",
        if linearizable {
            "linearizable"
        } else {
            "plain"
        },
        t.served,
        t.served_after_kill,
        t.refused,
        t.stale.len()
    );
    let new_leader = (0..N).filter(|i| *i != leader).find_map(|i| c.leader(i));
    if t.served_after_kill == 0 || writes < 40 {
        c.dump_logs(30);
    }
    c.stop_all();
    assert!(killed.load(Ordering::SeqCst), "the leader was never killed");
    assert!(
        new_leader.is_some_and(|l| l != leader),
        "no new leader after the kill"
    );
    assert!(writes >= 40, "only {writes} writes acknowledged");
    t
}
