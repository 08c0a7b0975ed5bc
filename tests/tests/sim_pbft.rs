//! The simulator's default run for PBFT: random fault seeds (with small checkpoint intervals,
//! so garbage collection, catch-up and view changes with checkpoint proofs happen often), a
//! Twins sample, determinism, bounded memory in a long run, and negative controls proving
//! every checker can fail.
//!
//! Replay any seed with `cargo run -p tests --release --bin sim -- --protocol pbft --seed N`.

use consensus::pbft::{self, Pbft};
use consensus::{Committee, ReplicaId, View};
use crypto::{Digest, SecretKey};
use rand_chacha::ChaCha8Rng;
use tests::sim::runner::run_many;
use tests::sim::{
    self, Behaviour, ByzCtx, Dest, Disk, Params, PbftSim, Scenario, SimProtocol, VoteSlot, twins,
};

fn seeds(range: std::ops::Range<u64>) {
    let items: Vec<u64> = range.clone().collect();
    let s = run_many::<PbftSim>(
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
    // Faults force view changes in some seeds (the view-change path is exercised).
    assert!(s.view_changes > 0, "no view change in {} runs", s.runs);
}

#[test]
fn pbft_random_faults_seeds_0_to_99() {
    seeds(0..100);
}

/// Seeds 100-199, so the default run covers 200 per protocol; the `sim` binary runs
/// thousands.
#[test]
fn pbft_random_faults_seeds_100_to_199() {
    seeds(100..200);
}

#[test]
fn pbft_twins_sample_of_300_scenarios() {
    let cases: Vec<u64> = twins::sample(300).collect();
    assert_eq!(cases.len(), 300);
    let s = run_many::<PbftSim>(&cases, twins::case, |c| c.to_string(), || {});
    s.assert_clean("twins");
}

#[test]
fn pbft_same_seed_same_trace() {
    let a = sim::run::<PbftSim>(sim::random_scenario(7, 4));
    let b = sim::run::<PbftSim>(sim::random_scenario(7, 4));
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.height, b.height);
    let c = sim::run::<PbftSim>(sim::random_scenario(8, 4));
    assert_ne!(a.trace, c.trace, "different seeds must differ");
}

#[test]
fn pbft_fault_free_network_needs_no_view_change() {
    for seed in 0..3 {
        let mut sc = Scenario::calm(seed, 4);
        sc.faults_until_ms = 3_000;
        let r = sim::run::<PbftSim>(sc);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.view_changes, 0, "seed {seed}");
        assert!(r.height > 100, "seed {seed}: height {}", r.height);
    }
}

/// A long calm run with checkpoints every 4 blocks: thousands of blocks, and after every
/// input each replica's log held at most 2k entries; at the end the stable checkpoint is
/// within the water marks of the committed height (the checks are in `PbftSim::bounded` and
/// `PbftSim::settled`; the control below shows they fire).
#[test]
fn pbft_memory_stays_bounded_in_a_long_run() {
    let mut sc = Scenario::calm(3, 4);
    sc.params.checkpoint_interval = 4;
    sc.params.idle_block_ms = 0;
    sc.faults_until_ms = 60_000;
    let r = sim::run::<PbftSim>(sc);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.height > 2_000, "height {}", r.height);
}

/// PBFT whose cores run with water marks 8 times wider than the checks are told: as if
/// garbage collection lagged. The bounded-log and GC checks must notice.
struct PbftWideWindow;

impl SimProtocol for PbftWideWindow {
    type Msg = pbft::Message;
    type Core = Pbft;
    const NAME: &'static str = "pbft-wide-window";
    const HISTORY: u64 = PbftSim::HISTORY;

    fn build(
        me: ReplicaId,
        key: SecretKey,
        committee: Committee,
        genesis: Digest,
        params: &Params,
        disk: &Disk,
    ) -> Pbft {
        let mut wide = params.clone();
        wide.checkpoint_interval *= 8;
        PbftSim::build(me, key, committee, genesis, &wide, disk)
    }
    fn committed_ref(certificate: &[u8]) -> Option<(Digest, View)> {
        PbftSim::committed_ref(certificate)
    }
    fn verify_certificate(certificate: &[u8], committee: &Committee, genesis: &Digest) -> bool {
        PbftSim::verify_certificate(certificate, committee, genesis)
    }
    fn view_of(msg: &pbft::Message) -> Option<View> {
        PbftSim::view_of(msg)
    }
    fn encode(msg: &pbft::Message) -> Vec<u8> {
        PbftSim::encode(msg)
    }
    fn votes_of(msg: &pbft::Message) -> Vec<(VoteSlot, Digest)> {
        PbftSim::votes_of(msg)
    }
    fn view_changes(core: &Pbft) -> u64 {
        PbftSim::view_changes(core)
    }
    fn bounded(core: &Pbft, params: &Params) -> Result<(), String> {
        PbftSim::bounded(core, params)
    }
    fn settled(core: &Pbft, params: &Params) -> Result<(), String> {
        PbftSim::settled(core, params)
    }
    fn misbehave(
        ctx: &ByzCtx<'_, pbft::Message>,
        dest: Dest,
        msg: pbft::Message,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(Dest, pbft::Message)> {
        PbftSim::misbehave(ctx, dest, msg, rng)
    }
}

#[test]
fn negative_control_unbounded_log_is_detected() {
    let mut sc = Scenario::calm(1, 4);
    sc.params.checkpoint_interval = 4;
    sc.params.idle_block_ms = 0;
    let r = sim::run::<PbftWideWindow>(sc.clone());
    assert!(
        r.violations.iter().any(|v| v.contains("UNBOUNDED LOG")),
        "{:?}",
        r.violations
    );
    // The same scenario with the window the checks expect is clean.
    let r = sim::run::<PbftSim>(sc);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// Negative control: two twins are f+1 = 2 Byzantine replicas out of 4; the checker must
/// catch the fork they can cause.
#[test]
fn negative_control_two_twins_fork_is_detected() {
    let found = (0..300).find(|seed| {
        let r = sim::run::<PbftSim>(twins::two_twins(*seed, 8));
        r.violations.iter().any(|v| v.contains("FORK"))
    });
    assert!(found.is_some(), "no fork detected in 300 two-twin seeds");
}

/// Negative control: restarting validators without their safety record (amnesia) while the
/// primary of view 1 (replica 1) equivocates must be caught as a double vote (a prepare or
/// commit for two digests at one sequence number in one view); the same schedule with the
/// record kept must be clean.
#[test]
fn negative_control_amnesia_is_detected() {
    let mut detected = None;
    for seed in 0..40 {
        let r = sim::run::<PbftSim>(sim::amnesia_scenario_with(seed, true, ReplicaId(1)));
        if r.violations.iter().any(|v| v.contains("DOUBLE VOTE")) {
            detected = Some(seed);
            break;
        }
    }
    let seed = detected.expect("amnesia not detected in 40 seeds");
    let r = sim::run::<PbftSim>(sim::amnesia_scenario_with(seed, false, ReplicaId(1)));
    assert!(
        r.violations.is_empty(),
        "control without amnesia: {:?}",
        r.violations
    );
}

/// Negative control: two replicas that never send their prepares and commits (f+1) leave no
/// quorum; the liveness check must notice that the honest ones commit nothing.
#[test]
fn negative_control_two_withholding_replicas_stall_is_detected() {
    let mut sc = Scenario::calm(5, 4);
    sc.byzantine = vec![
        (ReplicaId(0), Behaviour::Withhold),
        (ReplicaId(3), Behaviour::Withhold),
    ];
    sc.faults_until_ms = 1_000;
    let r = sim::run::<PbftSim>(sc);
    assert_eq!(r.height, 0);
    assert!(
        r.violations.iter().any(|v| v.contains("LIVENESS")),
        "{:?}",
        r.violations
    );
}

/// The commit-certificate check the simulator applies to every honest commit accepts a
/// quorum of commits and refuses anything less or anything altered.
#[test]
fn negative_control_bad_commit_certificates_are_refused() {
    let keys: Vec<SecretKey> = (0..4u8).map(|i| SecretKey::from_seed([i; 32])).collect();
    let committee = Committee::bft(keys.iter().map(|k| k.public()).collect()).unwrap();
    let genesis = crypto::hash(b"certificate control");
    let block = pbft::Block {
        seq: 1,
        proposer: ReplicaId(1),
        timestamp_ms: 5,
        payload: vec![crypto::hash(b"batch")],
    };
    let commits: Vec<(ReplicaId, crypto::Signature)> = (0..3u16)
        .map(|i| {
            let v = pbft::Vote::new(
                pbft::Phase::Commit,
                View(1),
                1,
                block.digest(),
                ReplicaId(i),
                &genesis,
                &keys[i as usize],
            );
            (ReplicaId(i), v.signature)
        })
        .collect();
    let cert = pbft::CommitCertificate {
        view: View(1),
        block,
        commits,
    };
    let ok = |c: &pbft::CommitCertificate| {
        PbftSim::verify_certificate(&c.encode(), &committee, &genesis)
    };
    assert!(ok(&cert));
    let mut short = cert.clone();
    short.commits.pop();
    assert!(!ok(&short), "two commits are not a quorum");
    let mut altered = cert.clone();
    altered.block.payload.clear();
    assert!(!ok(&altered), "commits for another block");
    let mut other_view = cert.clone();
    other_view.view = View(2);
    assert!(!ok(&other_view), "commits of another view");
    assert!(!PbftSim::verify_certificate(
        b"garbage", &committee, &genesis
    ));
    assert!(!PbftSim::verify_certificate(
        &cert.encode(),
        &committee,
        &crypto::hash(b"other chain")
    ));
}
