//! Crash points on real processes: a validator built with the test-only `failpoints` feature
//! (`cairnd-test`) exits on the spot, under transfer load, exactly
//! - after a durable write of its safety state, before the votes it releases are sent
//!   (`after-persist-safety`; for Raft: term and vote),
//! - after a durable write of any kind (`after-persist`; for Raft: log entries, before the
//!   acknowledgement leaves),
//! - after handing a frame to the network, before the next persist (`after-send`);
//! - in the store stage, with executed blocks not yet written (`before-block-write`), or
//!   written but not yet announced or reported to the consensus loop (`after-block-write`);
//!
//! then restarts without the failpoint. Afterwards no validator has two different votes for
//! one slot in its vote log (the crashed one voted again after restarting, so the check
//! spans the crash), every transfer an API acknowledged as committed is in every store, and
//! the stores agree ([`check`]). See node/src/validator/failpoints.rs.

use node::validator::failpoints::CRASH_EXIT_CODE;
use std::sync::Mutex;
use std::time::Duration;
use tests::cluster::{Cluster, ClusterOpts, Load, check};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const LIMIT: Duration = Duration::from_secs(60);

fn vote_count(c: &Cluster, i: usize) -> usize {
    std::fs::read_to_string(c.vote_log_path(i))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn start(protocol: &str, n: usize, victim: usize, failpoint: &str) -> Cluster {
    let mut env = vec![Vec::new(); n];
    env[victim] = vec![("FAILPOINTS".to_string(), failpoint.to_string())];
    let mut c = Cluster::new(
        protocol,
        n,
        ClusterOpts {
            env,
            ..Default::default()
        },
    );
    c.start_all();
    c
}

/// Waits for `victim` to exit at its failpoint; restarts it without the failpoint; returns
/// how many votes it had logged when it crashed.
fn crash_and_restart(c: &mut Cluster, victim: usize, failpoint: &str) -> usize {
    let status = c.wait_exit(victim, LIMIT);
    let Some(status) = status else {
        c.dump_logs(20);
        panic!("validator {victim} never reached failpoint {failpoint}");
    };
    assert_eq!(
        status.code(),
        Some(CRASH_EXIT_CODE),
        "validator {victim} did not stop at the failpoint: {status}"
    );
    assert!(c.log(victim).contains("crashing now"), "no failpoint line");
    let votes = vote_count(c, victim);
    c.set_env(victim, Vec::new());
    c.start(victim);
    votes
}

/// Load on every validator, a crash at `failpoint` on `victim`, a restart, progress, checks.
fn crash_point(protocol: &str, n: usize, victim: usize, failpoint: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = start(protocol, n, victim, failpoint);
    let all: Vec<usize> = (0..n).collect();
    let load = Load::start(&c, &all);
    let votes_at_crash = crash_and_restart(&mut c, victim, failpoint);
    let committed_at_crash = load.committed();
    if let Err(e) = c.wait_progress(&all, 6, LIMIT) {
        c.dump_logs(30);
        panic!("{protocol}: no progress after the restart: {e}");
    }
    // Transfers keep committing after the crash, through the restarted validator too.
    let deadline = std::time::Instant::now() + LIMIT;
    while load.committed() < committed_at_crash + 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "{protocol}: transfers stalled after the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Raft votes only in elections; its log tests are about acknowledged entries. A restarted
    // follower causes no election, so one is forced (the leader is killed and restarted) for
    // the vote check to span the crash.
    let strict = protocol != "raft";
    if !strict {
        force_an_election(&mut c, &all);
    }
    finish(c, load, victim, votes_at_crash, failpoint, strict);
}

/// Kills the Raft leader, waits for the others to elect a new one and commit, and restarts
/// it: votes are cast after whatever happened before.
fn force_an_election(c: &mut Cluster, all: &[usize]) {
    let deadline = std::time::Instant::now() + LIMIT;
    let leader = loop {
        if let Some(l) = all.iter().find_map(|&i| c.leader(i)) {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "raft: no leader");
        std::thread::sleep(Duration::from_millis(50));
    };
    c.kill(leader);
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    if let Err(e) = c.wait_progress(&rest, 4, LIMIT) {
        c.dump_logs(30);
        panic!("raft: no new leader after killing validator {leader}: {e}");
    }
    c.start(leader);
    if let Err(e) = c.wait_progress(all, 2, LIMIT) {
        c.dump_logs(30);
        panic!("raft: validator {leader} did not catch up: {e}");
    }
}

/// Stops everything and checks. `strict`: the victim voted both before the crash and after
/// the restart. Otherwise (Raft, where a candidate's vote for itself is not logged and votes
/// happen only in elections, one of which the caller forced after the restart): votes were
/// cast in the cluster after the restart.
fn finish(
    mut c: Cluster,
    load: Load,
    victim: usize,
    votes_at_crash: usize,
    failpoint: &str,
    strict: bool,
) {
    let acked = load.stop();
    let all: Vec<usize> = (0..c.n).collect();
    if let Err(e) = c.converge(&all, Duration::from_secs(60)) {
        c.dump_logs(30);
        panic!("{failpoint}: the validators did not converge after the restart: {e}");
    }
    c.stop_all();
    let verdict = check(&c, &all, &all, &acked);
    let votes_now = vote_count(&c, victim);
    println!(
        "{} {failpoint} on validator {victim}: {} votes before the crash, {} after; {} acked \
         transfers in every store; height {}; {} votes checked",
        c.protocol,
        votes_at_crash,
        votes_now - votes_at_crash,
        verdict.acked_checked,
        verdict.height,
        verdict.votes_checked
    );
    if strict {
        assert!(votes_at_crash > 0, "the crash came before any vote");
        assert!(
            votes_now > votes_at_crash,
            "validator {victim} never voted after restarting: the check does not span the crash"
        );
    } else {
        assert!(
            verdict.votes_checked > votes_at_crash,
            "no vote after the restart"
        );
    }
    assert!(verdict.acked_checked > 0);
}

#[test]
fn hotstuff_crash_after_persisting_a_vote_before_sending_it() {
    crash_point("hotstuff", 4, 2, "after-persist-safety=20*off->return");
}

#[test]
fn hotstuff_crash_after_sending_before_the_next_persist() {
    crash_point("hotstuff", 4, 1, "after-send=60*off->return");
}

#[test]
fn pbft_crash_after_persisting_a_vote_before_sending_it() {
    crash_point("pbft", 4, 2, "after-persist-safety=30*off->return");
}

#[test]
fn pbft_crash_after_sending_before_the_next_persist() {
    crash_point("pbft", 4, 3, "after-send=60*off->return");
}

#[test]
fn raft_crash_after_persisting_log_entries_before_acknowledging() {
    crash_point("raft", 3, 1, "after-persist=40*off->return");
}

#[test]
fn hotstuff_crash_with_executed_blocks_not_yet_written() {
    crash_point("hotstuff", 4, 3, "before-block-write=30*off->return");
}

#[test]
fn pbft_crash_after_a_block_write_before_it_is_announced() {
    crash_point("pbft", 4, 1, "after-block-write=30*off->return");
}

#[test]
fn raft_crash_with_executed_blocks_not_yet_written() {
    crash_point("raft", 3, 2, "before-block-write=30*off->return");
}

#[test]
fn raft_crash_after_persisting_term_and_vote_before_replying() {
    // Crashes at its first term/vote write: during the first election. Then, once it is back,
    // the leader is killed, so that it votes again in later terms.
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let failpoint = "after-persist-safety=return";
    let victim = 0;
    let mut c = start("raft", 3, victim, failpoint);
    let all: Vec<usize> = (0..3).collect();
    let load = Load::start(&c, &all);
    let votes_at_crash = crash_and_restart(&mut c, victim, failpoint);
    if let Err(e) = c.wait_progress(&all, 4, LIMIT) {
        c.dump_logs(30);
        panic!("raft: no progress after the restart: {e}");
    }
    force_an_election(&mut c, &all);
    finish(c, load, victim, votes_at_crash, failpoint, false);
}
