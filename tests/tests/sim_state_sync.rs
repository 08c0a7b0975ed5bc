//! State sync in the simulator (issue 20): under the usual random faults, an honest replica's
//! store is deleted while it is down; it restarts empty and fetches a verified snapshot from
//! its peers with the validator's own `ledger::statesync::Fetch`, while one peer corrupts
//! every chunk it serves and offers a snapshot for a forged root. Every safety check must
//! hold, the installed block and supply must be what the honest replicas committed, the
//! corrupt chunks and forged offers must be caught, and the wiped replica must commit again.
//! Negative control: taking chunks without their proofs must make the checker fail.
//!
//! Replay a seed: `cargo test -p tests --release --test sim_state_sync` with the seed range
//! edited, or run `sim::run::<HotStuffSim>(sim::wipe_scenario(seed, 4, false))`.

use tests::sim::{self, HotStuffSim, PbftSim, SimProtocol};

const SEEDS: std::ops::Range<u64> = 0..24;

fn verified<P: SimProtocol>() {
    let mut total = sim::statesync::SyncStats::default();
    for seed in SEEDS {
        let sc = sim::wipe_scenario(seed, 4, false);
        let describe = sc.describe();
        let r = sim::run::<P>(sc);
        assert!(
            r.violations.is_empty(),
            "{} seed {seed} ({describe}): {:?}",
            P::NAME,
            r.violations
        );
        total.syncs += r.sync.syncs;
        total.bad_chunks += r.sync.bad_chunks;
        total.bad_offers += r.sync.bad_offers;
        total.gave_up += r.sync.gave_up;
    }
    println!("{} seeds {SEEDS:?}: {total:?}", P::NAME);
    let runs = SEEDS.end - SEEDS.start;
    assert!(total.syncs >= runs / 2, "{total:?}");
    assert!(
        total.bad_chunks > 0,
        "no corrupt chunk was ever asked for: {total:?}"
    );
    assert!(total.bad_offers > 0, "no forged offer was seen: {total:?}");
}

fn negative_control<P: SimProtocol>() {
    for seed in SEEDS {
        let r = sim::run::<P>(sim::wipe_scenario(seed, 4, true));
        if r.violations.iter().any(|v| v.contains("STATE SYNC")) {
            let clean = sim::run::<P>(sim::wipe_scenario(seed, 4, false));
            assert!(
                clean.violations.is_empty(),
                "seed {seed} verified: {:?}",
                clean.violations
            );
            return;
        }
    }
    panic!(
        "{}: unverified chunks were never caught in seeds {SEEDS:?}",
        P::NAME
    );
}

#[test]
fn hotstuff_wiped_replica_state_syncs_under_faults() {
    verified::<HotStuffSim>();
}

#[test]
fn pbft_wiped_replica_state_syncs_under_faults() {
    verified::<PbftSim>();
}

#[test]
fn hotstuff_negative_control_unverified_chunks_are_caught() {
    negative_control::<HotStuffSim>();
}

#[test]
fn pbft_negative_control_unverified_chunks_are_caught() {
    negative_control::<PbftSim>();
}
