//! Twins, exhaustively: every one of the 262,144 scenarios of the n = 4 space with one twin,
//! up to two partitions per view and three scheduled views (`tests::sim::twins`), for
//! HotStuff and for PBFT. Each takes tens of minutes on 2 cores, so they are ignored in the
//! default run; run one with
//!
//!     cargo test -p tests --release --test twins_exhaustive -- --ignored --nocapture hotstuff
//!
//! A scenario fails on any invariant the simulator checks after every event (two honest
//! replicas committing different blocks at one height, state roots that differ at one
//! height, lost progress after the partitions heal, ...). The count, the time and the
//! violations (none) are in the README.

use tests::sim::runner::{Summary, run_many};
use tests::sim::{HotStuffSim, PbftSim, SimProtocol, twins};

fn exhaustive<P: SimProtocol>() -> Summary {
    let cases: Vec<u64> = (0..twins::CASES).collect();
    let done = std::sync::atomic::AtomicU64::new(0);
    let started = std::time::Instant::now();
    let s = run_many::<P>(
        &cases,
        twins::case,
        |c| c.to_string(),
        || {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_multiple_of(16_384) {
                eprintln!(
                    "{}: {n} of {} cases, {:.0} s",
                    P::NAME,
                    twins::CASES,
                    started.elapsed().as_secs_f64()
                );
            }
        },
    );
    println!(
        "{} twins, exhaustive: {} cases, {} blocks committed, {} view changes, {} with \
         violations, {:.0} s on {} threads",
        P::NAME,
        s.runs,
        s.blocks,
        s.view_changes,
        s.failures.len(),
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    assert_eq!(s.runs, twins::CASES);
    s.assert_clean(&format!("{} twins, exhaustive", P::NAME));
    s
}

#[test]
#[ignore = "about an hour on 2 cores; see the module docs"]
fn hotstuff_every_twins_scenario() {
    exhaustive::<HotStuffSim>();
}

#[test]
#[ignore = "tens of minutes on 2 cores; see the module docs"]
fn pbft_every_twins_scenario() {
    exhaustive::<PbftSim>();
}
