//! The simulator's default run for HotStuff: random fault seeds, a Twins sample,
//! determinism, and negative controls proving the checker can fail.
//!
//! Replay any seed with `cargo run -p tests --release --bin sim -- --seed N`.

use tests::sim::runner::run_many;
use tests::sim::{self, HotStuffSim, Scenario, twins};

fn seeds(range: std::ops::Range<u64>) {
    let items: Vec<u64> = range.clone().collect();
    let s = run_many::<HotStuffSim>(
        &items,
        |s| sim::random_scenario(s, 4),
        |s| s.to_string(),
        || {},
    );
    s.assert_clean(&format!("seeds {range:?}"));
    assert_eq!(s.runs, items.len() as u64);
    // Faults slow the chain down but every seed must have committed something.
    assert!(
        s.blocks > 10 * s.runs,
        "only {} blocks in {} runs",
        s.blocks,
        s.runs
    );
}

#[test]
fn hotstuff_random_faults_seeds_0_to_99() {
    seeds(0..100);
}

/// Seeds 100-199, so the default run covers 200 per protocol; the `sim` binary runs
/// thousands.
#[test]
fn hotstuff_random_faults_seeds_100_to_199() {
    seeds(100..200);
}

#[test]
fn hotstuff_twins_sample_of_500_scenarios() {
    let cases: Vec<u64> = twins::sample(500).collect();
    assert_eq!(cases.len(), 500);
    let s = run_many::<HotStuffSim>(&cases, twins::case, |c| c.to_string(), || {});
    s.assert_clean("twins");
}

#[test]
fn same_seed_same_trace() {
    let a = sim::run::<HotStuffSim>(sim::random_scenario(7, 4));
    let b = sim::run::<HotStuffSim>(sim::random_scenario(7, 4));
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.height, b.height);
    let c = sim::run::<HotStuffSim>(sim::random_scenario(8, 4));
    assert_ne!(a.trace, c.trace, "different seeds must differ");
}

#[test]
fn fault_free_network_needs_no_view_change() {
    for seed in 0..3 {
        let mut sc = Scenario::calm(seed, 4);
        sc.faults_until_ms = 3_000;
        let r = sim::run::<HotStuffSim>(sc);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.view_changes, 0, "seed {seed}");
        assert!(r.height > 100, "seed {seed}: height {}", r.height);
    }
}

/// Negative control: two twins are f+1 = 2 Byzantine replicas out of 4; the checker must
/// catch the fork they can cause.
#[test]
fn negative_control_two_twins_fork_is_detected() {
    let found = (0..300).find(|seed| {
        let r = sim::run::<HotStuffSim>(twins::two_twins(*seed, 8));
        r.violations.iter().any(|v| v.contains("FORK"))
    });
    assert!(found.is_some(), "no fork detected in 300 two-twin seeds");
}

/// Negative control: restarting validators without their safety record (amnesia) must be
/// caught as a double vote; the same schedule with the record kept must be clean.
#[test]
fn negative_control_amnesia_is_detected() {
    let mut detected = None;
    for seed in 0..40 {
        let r = sim::run::<HotStuffSim>(sim::amnesia_scenario(seed, true));
        if r.violations.iter().any(|v| v.contains("DOUBLE VOTE")) {
            detected = Some(seed);
            break;
        }
    }
    let seed = detected.expect("amnesia not detected in 40 seeds");
    let r = sim::run::<HotStuffSim>(sim::amnesia_scenario(seed, false));
    assert!(
        r.violations.is_empty(),
        "control without amnesia: {:?}",
        r.violations
    );
}

/// The simulator remembers signature verdicts and signatures per thread
/// (`crypto::memo`). That may only save time: a run with the memo off must give the same
/// trace, blocks and violations as with it on, for a twins case (where a twin signs the
/// same messages as its sibling) and for a replica that corrupts every signature it sends
/// (its refused signatures are checked by every other replica: a memo that remembered a
/// refusal as anything else would change the run; checked by breaking it on purpose).
#[test]
fn the_signature_memo_changes_no_outcome() {
    let mut forger = Scenario::calm(11, 4);
    forger.byzantine = vec![(consensus::ReplicaId(1), sim::Behaviour::BadSignatures)];
    forger.faults_until_ms = 2_000;
    forger.liveness_window_ms = 2_000;
    for sc in [twins::case(123_457), forger] {
        crypto::memo::remember_on_this_thread(0);
        let plain = sim::Sim::<HotStuffSim>::new(sc.clone()).run();
        assert_eq!(crypto::memo::hits_on_this_thread(), 0);
        let remembered = sim::run::<HotStuffSim>(sc);
        assert!(
            crypto::memo::hits_on_this_thread() > 0,
            "the memo answered nothing"
        );
        assert_eq!(plain.trace, remembered.trace);
        assert_eq!(plain.height, remembered.height);
        assert_eq!(plain.violations, remembered.violations);
    }
}
