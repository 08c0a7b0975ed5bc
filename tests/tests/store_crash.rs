//! Crash test for the durable store: a child process commits blocks and is killed with
//! SIGKILL mid-run. Reopening must find every block the child reported committed, intact and
//! hash-linked, and the stored state must equal a replay of those blocks on a fresh ledger.

use ledger::{BlockInput, Ledger, MemStore, Store};
use node::store::RedbStore;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn crash_once(seed: u64, kill_after: u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.redb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_store_crash_writer"))
        .arg(&db)
        .arg(seed.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked < kill_after {
        assert!(Instant::now() < deadline, "child too slow");
        let line = lines.next().expect("child exited early").unwrap();
        acked = line.split(' ').nth(1).unwrap().parse().unwrap();
    }
    // SIGKILL while the child is in the middle of further commits.
    child.kill().unwrap();
    child.wait().unwrap();

    let store = RedbStore::open(&db).expect("reopen after SIGKILL");
    let height = store.height().unwrap();
    assert!(
        height >= acked,
        "lost acknowledged blocks: {height} < {acked}"
    );

    // Replay the stored blocks' transactions on a fresh in-memory ledger.
    let (chain, alloc, _) = tests::crash_workload(seed);
    let mut replay = Ledger::open(MemStore::new(), chain.clone(), &alloc).unwrap();
    let mut parent = chain.genesis_hash;
    for h in 1..=height {
        let b = store.block(h).unwrap().expect("every height present");
        assert_eq!(b.header.height, h);
        assert_eq!(b.header.parent, parent, "hash link at {h}");
        assert!(b.tx_root_matches(), "tx root at {h}");
        let (rb, _) = replay.commit(BlockInput::of(&b)).unwrap();
        assert_eq!(rb.hash(), b.hash(), "replayed block {h} differs");
        assert_eq!(store.height_of(&b.hash()).unwrap(), Some(h));
        parent = b.hash();
    }
    // The ledger reopened on the crashed store checks its accounts against the last root.
    let reopened = Ledger::open(store, chain, &alloc).expect("consistent after crash");
    assert_eq!(reopened.state_root(), replay.state_root());
    assert_eq!(reopened.tip(), parent);
}

#[test]
fn sigkill_mid_commit_loses_no_acknowledged_block() {
    for (seed, kill_after) in [(1, 5), (2, 17), (3, 40)] {
        crash_once(seed, kill_after);
    }
}
