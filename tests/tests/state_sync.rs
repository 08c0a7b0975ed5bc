//! BFT state sync with real processes (issue 20): four HotStuff (or PBFT) validators keep the
//! last 100 heights under a transfer load; one is stopped and its data directory deleted, the others
//! go on until the blocks it would replay are pruned everywhere (and are older than what
//! HotStuff's core keeps), and it restarts empty. It
//! must rejoin by state sync (its log and `cairn_state_syncs_total` say so), reach the tip
//! and order again, and afterwards every validator agrees on the block and state root at
//! every height they share, every acknowledged transaction is recorded (or below a store's
//! floor), and no validator signed two votes for one slot (the cluster checker).

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tests::cluster::{Cluster, ClusterOpts, Load, check};

/// Two 4-validator clusters under load at once would share 2 cores and time each other out.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_wiped_validator_rejoins_by_state_sync_and_agrees_on_every_common_height() {
    wiped_validator_rejoins("hotstuff");
}

#[test]
fn a_wiped_pbft_validator_rejoins_by_state_sync_and_agrees_on_every_common_height() {
    wiped_validator_rejoins("pbft");
}

fn wiped_validator_rejoins(protocol: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const RETAIN: u64 = 100;
    let mut c = Cluster::new(protocol, 4, ClusterOpts::default());
    c.edit_config(|cfg| {
        cfg.retain_blocks = RETAIN;
        // Far behind means 100 heights here (the default is 1,000).
        cfg.state_sync_distance = 100;
    });
    c.start_all();
    let all = [0, 1, 2, 3];
    if let Err(e) = c.wait_progress(&all, 5, Duration::from_secs(60)) {
        c.dump_logs(30);
        panic!("no progress: {e}");
    }
    let load = Load::start(&c, &all);
    std::thread::sleep(Duration::from_secs(2));
    let stopped_at = c.height(3).unwrap_or(0);
    c.stop(3);
    load.set_targets(&[0, 1, 2]);
    std::fs::remove_dir_all(c.home(3).join("data")).expect("wiping validator 3's data");
    // The others go on until their history floors pass everything validator 3 ever had.
    let http = reqwest::blocking::Client::new();
    let floor_of = |i: usize| {
        http.get(format!("{}/metrics", c.api(i)))
            .send()
            .and_then(|r| r.text())
            .ok()
            .and_then(|t| node::api::sample_value(&t, "cairn_history_floor"))
            .unwrap_or(0.0) as u64
    };
    let started = Instant::now();
    // Past what HotStuff's core keeps of committed blocks too (PBFT's keeps less), so neither
    // blocks nor the core's own catch-up can bring validator 3 back: only a snapshot.
    let window = consensus::hotstuff::COMMITTED_WINDOW as u64;
    let gone = |i: usize| {
        floor_of(i) > stopped_at + 1 && c.height(i).unwrap_or(0) > stopped_at + window + 100
    };
    while !(0..3).all(gone) && started.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        (0..3).all(gone),
        "the others did not prune: {}",
        c.heights_text(&[0, 1, 2])
    );
    c.start(3);
    load.set_targets(&all);
    let top = (0..3).filter_map(|i| c.height(i)).max().unwrap();
    if let Err(e) = c.wait_height(&[3], top, Duration::from_secs(90)) {
        c.dump_logs(40);
        panic!("validator 3 did not catch up: {e}");
    }
    // Metrics are refreshed every half second: poll.
    let syncs = || {
        http.get(format!("{}/metrics", c.api(3)))
            .send()
            .and_then(|r| r.text())
            .ok()
            .and_then(|t| node::api::sample_value(&t, "cairn_state_syncs_total"))
            .unwrap_or(0.0)
    };
    let asked = Instant::now();
    let mut synced = syncs();
    while synced < 1.0 && asked.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        synced = syncs();
    }
    let log = c.log(3);
    assert!(
        synced >= 1.0,
        "cairn_state_syncs_total is {synced}; validator 3's log after the restart:\n{}",
        log.lines()
            .skip_while(|l| !l.contains("starting"))
            .filter(|l| !l.contains("committed block"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        log.contains("state sync installed a verified snapshot"),
        "validator 3's log does not show a state sync"
    );
    // It orders again: the chain moves with validator 3 counted among the live.
    if let Err(e) = c.wait_progress(&all, 5, Duration::from_secs(60)) {
        c.dump_logs(30);
        panic!("no progress after the rejoin: {e}");
    }
    let acked = load.stop();
    if let Err(e) = c.converge(&all, Duration::from_secs(60)) {
        c.dump_logs(30);
        panic!("{e}");
    }
    c.stop_all();
    let verdict = check(&c, &all, &all, &acked);
    println!(
        "{protocol}: state sync at validator 3 after the others pruned past its height; {} \
         acknowledged; {verdict:?}",
        acked.committed.len()
    );
}
