//! Validator-set changes in the simulator (issue 21, HotStuff and PBFT): three random changes
//! per run — a member's keys rotated, a spare replica added (it followed the chain without a
//! core and joins at its epoch's first block), a member removed (it stops its core and
//! follows, still serving the blocks it has) — while the usual faults go on; every replica
//! switches cores after the same block to the same set, every replica its set names runs a
//! core at the end, and every safety check still holds across epochs. The negative control:
//! a replica that switches one block late is caught.
//!
//! Many seeds: `cargo run -p tests --release --bin sim -- --protocol pbft --epochs --seeds 500`.
//! Replay one: `... --epochs --seed N`.

use tests::sim::{self, HotStuffSim, PbftSim, SimProtocol};

#[test]
fn hotstuff_set_changes_across_epochs_under_random_faults() {
    changes_under_random_faults::<HotStuffSim>();
}

#[test]
fn pbft_set_changes_across_epochs_under_random_faults() {
    changes_under_random_faults::<PbftSim>();
}

fn changes_under_random_faults<P: SimProtocol>() {
    let mut epochs = Vec::new();
    let mut failures = Vec::new();
    let mut catch_ups = 0;
    let (mut joins, mut leaves) = (0, 0);
    for seed in 0..40 {
        let r = sim::run::<P>(sim::epoch_scenario(seed, 4, false));
        if !r.violations.is_empty() {
            failures.push(format!("seed {seed}: {}", r.violations.join("; ")));
        }
        epochs.push(r.epochs);
        catch_ups += r.catch_ups;
        joins += r.joins;
        leaves += r.leaves;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every change was carried out in most runs (a change whose approvals name an epoch that
    // ended before it executed is refused, so a run may see fewer), and in none fewer than
    // one: the switches are exercised, not skipped.
    let total: u64 = epochs.iter().sum();
    println!(
        "epochs reached per seed: {epochs:?}; {catch_ups} catch-ups to a boundary; {joins} \
         epochs added a validator, {leaves} removed one"
    );
    // Sets grew and shrank, not only rotated keys.
    assert!(joins >= 5 && leaves >= 5, "joins {joins}, leaves {leaves}");
    assert!(
        catch_ups > 0,
        "no replica ever crossed a boundary late: that path went untested"
    );
    assert!(epochs.iter().all(|e| *e >= 1), "{epochs:?}");
    assert!(total >= 2 * epochs.len() as u64, "{epochs:?}");
}

#[test]
fn negative_control_a_late_switch_is_detected_hotstuff() {
    late_switch_is_detected::<HotStuffSim>();
}

#[test]
fn negative_control_a_late_switch_is_detected_pbft() {
    late_switch_is_detected::<PbftSim>();
}

fn late_switch_is_detected<P: SimProtocol>() {
    let mut caught = 0;
    for seed in 0..10 {
        let r = sim::run::<P>(sim::epoch_scenario(seed, 4, true));
        // Caught as a switch at another height, a core left in an old epoch, a fork, or a
        // refused catch-up (its stale committee cannot check the next epoch's blocks),
        // depending on what the late core did.
        let found = r.violations.iter().any(|v| {
            ["EPOCH", "still runs its epoch", "FORK", "refused block"]
                .iter()
                .any(|kind| v.contains(kind))
        });
        if found {
            println!("seed {seed}: caught: {}", r.violations[0]);
            caught += 1;
        } else {
            println!(
                "seed {seed}: not caught (epochs {}): {:?}",
                r.epochs, r.violations
            );
        }
    }
    assert_eq!(
        caught, 10,
        "a replica switching one block late went unnoticed"
    );
}
