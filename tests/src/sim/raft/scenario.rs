//! Raft's random fault scenarios: crash faults only. Lossy, jittery, reordering network;
//! up to three partitions (symmetric, or one way: `from` → rest lost, rest → `from`
//! delivered) that heal; up to three crash-restarts (some within milliseconds, losing the
//! writes not yet fsynced); n = 3 or 5; small snapshot intervals so compaction and
//! snapshot installs happen often; in two seeds of five, membership changes.

use super::super::net::Crash;
use super::super::scenario::{Scenario, random_partition};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The Raft scenario of `seed` (n drawn from {3, 5}). Never Byzantine.
pub fn raft_scenario(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7261_6674_5f73_696d);
    let n = *[3, 5].choose(&mut rng).expect("non-empty");
    let mut sc = Scenario::calm(seed, n);
    sc.faults_until_ms = 4_000;
    sc.liveness_window_ms = 4_000;
    let lo = rng.gen_range(1..5);
    sc.network.min_latency_ms = lo;
    sc.network.max_latency_ms = lo + rng.gen_range(5..60);
    if rng.gen_bool(0.6) {
        sc.network.drop = rng.gen_range(0.0..0.1);
    }
    if rng.gen_bool(0.4) {
        sc.network.duplicate = rng.gen_range(0.0..0.05);
    }
    sc.network.lossy_until_ms = sc.faults_until_ms;

    for _ in 0..rng.gen_range(0..=3) {
        let p = random_partition(&mut rng, n, sc.faults_until_ms, 2_500, 0.4);
        sc.network.partitions.push(p);
    }
    for _ in 0..rng.gen_range(0..=3) {
        let instance = rng.gen_range(0..n);
        let at_ms = rng.gen_range(0..sc.faults_until_ms);
        let down_ms = if rng.gen_bool(0.3) {
            rng.gen_range(1..10)
        } else {
            rng.gen_range(100..2_500)
        };
        sc.crashes.push(Crash {
            instance,
            at_ms,
            restart_ms: at_ms + down_ms,
        });
    }
    if rng.gen_bool(0.3) {
        sc.tx_interval_ms = rng.gen_range(60..300);
    }
    // Linearizable reads at random replicas throughout (no draw from `rng`: adding them
    // left every seed's faults as they were).
    sc.read_interval_ms = 30;
    let (interval, keep) = *[(8, 4), (4, 2), (16, 8)]
        .choose(&mut rng)
        .expect("non-empty");
    sc.params.raft.snapshot_interval = interval;
    sc.params.raft.log_keep = keep;
    // Batching × pipelining: at least 8 entries per round trip, so that a leader catching
    // a follower up outpaces the ~50 entries/s the workload creates even at the slowest
    // latencies drawn (round trips up to ~130 ms). Fewer is a throughput limit rather than a
    // fault: seed 1969 with 1 × 4 left a restarted replica 17 blocks behind at the end of
    // the liveness window, converging a second later.
    let (entries, inflight) = *[(2, 4), (4, 2), (4, 4), (8, 1), (8, 4)]
        .choose(&mut rng)
        .expect("non-empty");
    sc.params.raft.max_append_entries = entries;
    sc.params.raft.max_inflight = inflight;
    sc.params.raft.election_timeout_ms = *[150, 300].choose(&mut rng).expect("non-empty");
    sc.params.raft.heartbeat_ms = sc.params.raft.election_timeout_ms / 5;
    membership_changes(&mut sc);
    sc
}

/// Membership changes in two seeds of five (issue 21), from their own random stream so
/// that every seed's faults stay what they were: with five servers, three or five vote at
/// genesis; one to four times during the faults, the ledger names a new random set of two
/// or more members (the leader gets there one server at a time).
fn membership_changes(sc: &mut Scenario) {
    let mut rng = ChaCha8Rng::seed_from_u64(sc.seed ^ 0x6d65_6d62_6572_7321);
    if !rng.gen_bool(0.4) {
        return;
    }
    let n = sc.n;
    if n == 5 && rng.gen_bool(0.5) {
        sc.params.raft.initial_voters = Some(3);
    }
    let mut at = 0;
    for _ in 0..rng.gen_range(1..=4) {
        at += rng.gen_range(200..sc.faults_until_ms / 2);
        if at >= sc.faults_until_ms {
            break;
        }
        let size = rng.gen_range(2..=n);
        let mut members: Vec<usize> = (0..n).collect();
        members.shuffle(&mut rng);
        members.truncate(size);
        members.sort_unstable();
        sc.members.push((at, members));
    }
    if sc.members.is_empty() {
        sc.members.push((500, (0..n).collect()));
    }
}
