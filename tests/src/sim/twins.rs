//! Twins (Bano et al., "Twins: BFT Systems Made Robust", 2021): a Byzantine replica is two
//! honest instances sharing one key and identity; the test enumerates which replica leads
//! each view and how the network is split in it.
//!
//! For n = 4 with one twin (5 instances) and 3 scheduled views: 4 leaders × 16 ways to split
//! 5 instances into at most 2 groups (all together, or one of the 15 non-trivial splits with
//! instance 0 in the first group) per view gives (4·16)³ = 262,144 scenarios.

use super::byz::Behaviour;
use super::net::{Network, TwinsSchedule};
use super::scenario::Scenario;
use consensus::ReplicaId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const N: usize = 4;
pub const ROUNDS: usize = 3;
pub const SPLITS: u64 = 16;
/// How long the scheduled per-view partitions hold.
pub const TWINS_PHASE_MS: u64 = 600;
pub const CASES: u64 = (N as u64 * SPLITS).pow(ROUNDS as u32);

/// Groups of each of `instances` instances under split `p` (0 = no split).
fn split(p: u64, instances: usize) -> Vec<u8> {
    (0..instances)
        .map(|k| {
            if k == 0 || p == 0 {
                0
            } else {
                ((p >> (k - 1)) & 1) as u8
            }
        })
        .collect()
}

fn twins_scenario(
    seed: u64,
    twins: &[ReplicaId],
    leaders: Vec<ReplicaId>,
    groups: Vec<Vec<u8>>,
) -> Scenario {
    let mut sc = Scenario::calm(seed, N);
    sc.byzantine = twins.iter().map(|id| (*id, Behaviour::Twin)).collect();
    sc.leader_schedule = Some(leaders);
    sc.network = Network {
        min_latency_ms: 1,
        max_latency_ms: 4,
        twins: TwinsSchedule {
            groups,
            until_ms: TWINS_PHASE_MS,
        },
        ..Network::reliable()
    };
    sc.params.base_timeout_ms = 50;
    sc.params.max_timeout_ms = 200;
    // Small, so that PBFT's checkpoints and garbage collection happen inside the schedule.
    sc.params.checkpoint_interval = 4;
    sc.tx_interval_ms = 100;
    sc.faults_until_ms = TWINS_PHASE_MS;
    // Three of the longest view timeouts (`max_timeout_ms`) after the partitions heal:
    // enough for the views to synchronise past a twin's equivocating proposal and for every
    // honest replica to commit again (1 s before; 600 ms runs the exhaustive enumeration in
    // about an hour on 2 cores, and no sampled case needed more).
    sc.liveness_window_ms = 600;
    sc
}

/// Scenario number `index` (0..CASES) of the enumeration with replica 0 twinned.
pub fn case(index: u64) -> Scenario {
    assert!(index < CASES);
    let mut rest = index;
    let mut leaders = Vec::new();
    let mut groups = Vec::new();
    for _ in 0..ROUNDS {
        let digit = rest % (N as u64 * SPLITS);
        rest /= N as u64 * SPLITS;
        leaders.push(ReplicaId((digit / SPLITS) as u16));
        groups.push(split(digit % SPLITS, N + 1));
    }
    twins_scenario(index, &[ReplicaId(0)], leaders, groups)
}

/// `count` case indices spread evenly over the whole enumeration (deterministic).
pub fn sample(count: u64) -> impl Iterator<Item = u64> {
    let step = (CASES / count.max(1)).max(1);
    (0..count.min(CASES)).map(move |k| (k * step + k % step) % CASES)
}

/// Negative control: two twins (f + 1 = 2 Byzantine replicas for n = 4), random leaders
/// among the twins and a random 2-way split held for `views` views. Safety is not expected
/// to hold; the checker must notice.
pub fn two_twins(seed: u64, views: usize) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let instances = N + 2;
    let mut groups = Vec::new();
    let mut leaders = Vec::new();
    let pattern: Vec<u8> = (0..instances).map(|_| rng.gen_range(0..2)).collect();
    for _ in 0..views {
        leaders.push(ReplicaId(rng.gen_range(0..2)));
        groups.push(pattern.clone());
    }
    twins_scenario(seed, &[ReplicaId(0), ReplicaId(1)], leaders, groups)
}
