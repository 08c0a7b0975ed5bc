//! The nemesis: real `cairnd-test run` processes under a transfer load while a seeded
//! schedule of faults hits them one at a time (never more than f faulty): SIGKILL and
//! restart, SIGSTOP and SIGCONT, a validator cut off from the others by a network
//! partition (one network namespace per validator). After each fault heals, every validator
//! must commit again within a bounded time; at the end every transaction a validator
//! acknowledged as committed must be in every store, the stores must agree block by block,
//! no vote log may hold two votes for one slot and no validator may report evidence.
//!
//! Each protocol (HotStuff n=4, PBFT n=4, Raft n=3 with a snapshot every 128 blocks, so that
//! restarted followers catch up through state snapshots; PBFT's validators configured by
//! `cairnd testnet --hosts` with their namespace addresses, listening on 0.0.0.0, as on real
//! hosts) runs `CAIRN_NEMESIS_CYCLES` cycles
//! (default 5) drawn from `CAIRN_NEMESIS_SEED` (printed; it replays the schedule, not the
//! timing), topped up to at least 5 kill/restart cycles, kills the majority, and one
//! partition. Per cycle it prints the fault, how many blocks the others committed while it
//! lasted and how long until every validator had committed 2 more blocks after the heal; at
//! the end the counts by kind, acknowledged transactions, final height, votes checked and
//! the longest recovery.
//!
//! ```sh
//! cargo test --release -p tests --test nemesis -- --nocapture
//! CAIRN_NEMESIS_SEED=7 CAIRN_NEMESIS_CYCLES=50 \
//!     cargo test --release -p tests --test nemesis -- --nocapture --test-threads 1
//! ```
//!
//! The cluster tests in this binary run one at a time (a static lock): three clusters at
//! once on a 2-core machine would measure the machine, not the protocols.

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tests::cluster::{Acked, Cluster, ClusterOpts, Load, check, double_votes, try_check};

static SERIAL: Mutex<()> = Mutex::new(());

/// Bound on every "commits resume" wait after a fault heals.
const RECOVERY: Duration = Duration::from_secs(30);
const DEFAULT_SEED: u64 = 0xCA1B_2026;
const DEFAULT_CYCLES: usize = 5;
/// How long after a cut the isolated validator's reported height is taken as its height at
/// the cut (`GET /v1/status` is refreshed every 0.5 s); partitions last at least 1 s.
const SETTLE: Duration = Duration::from_millis(700);
/// Kill/restart cycles every run has at least.
const MIN_KILLS: usize = 5;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    Pause,
    Partition,
}

/// `cycles` faults drawn at random (kill 60 %, pause 20 %, partition 20 %), then topped up so
/// that there are at least [`MIN_KILLS`] kills, kills are the majority and there is a
/// partition (when partitions are possible), and shuffled.
fn schedule(rng: &mut ChaCha8Rng, cycles: usize, partitions: bool) -> Vec<Fault> {
    let mut faults: Vec<Fault> = (0..cycles)
        .map(|_| match rng.gen_range(0..10) {
            0..=5 => Fault::Kill,
            6 | 7 => Fault::Pause,
            _ if partitions => Fault::Partition,
            _ => Fault::Pause,
        })
        .collect();
    let count = |f: &[Fault], k: Fault| f.iter().filter(|x| **x == k).count();
    if partitions && count(&faults, Fault::Partition) == 0 {
        faults.push(Fault::Partition);
    }
    while count(&faults, Fault::Kill) < MIN_KILLS || 2 * count(&faults, Fault::Kill) <= faults.len()
    {
        faults.push(Fault::Kill);
    }
    faults.shuffle(rng);
    faults
}

/// Panics; the cluster's drop then prints the tail of every validator's log.
fn fail(c: &Cluster, what: String) -> ! {
    panic!("{} cluster: {what}", c.protocol);
}

struct Figures {
    kills: usize,
    pauses: usize,
    partitions: usize,
    longest_recovery: Duration,
    recoveries: Vec<Duration>,
    /// Blocks the validators not hit committed while the fault lasted, per cycle.
    during: Vec<Option<u64>>,
}

fn progress(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// `hosts`: the validators are configured by `cairnd testnet --hosts` with their namespace
/// addresses (see `ClusterOpts::hosts`) rather than a loopback testnet rewritten.
fn nemesis(protocol: &str, n: usize, hosts: bool) {
    let _serial = serial();
    let t0 = Instant::now();
    let seed = env_u64("CAIRN_NEMESIS_SEED").unwrap_or(DEFAULT_SEED);
    let cycles = env_u64("CAIRN_NEMESIS_CYCLES").map_or(DEFAULT_CYCLES, |c| c as usize);
    // Each protocol its own stream from the one seed.
    let stream = protocol
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131) ^ b as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stream);
    eprintln!(
        "nemesis {protocol} n={n}: seed {seed} (replay the schedule with \
         CAIRN_NEMESIS_SEED={seed}), {cycles} cycles"
    );

    let all: Vec<usize> = (0..n).collect();
    let mut testnet_args: Vec<String> = vec!["--accounts".into(), "8".into()];
    if protocol == "raft" {
        // Compact every 128 applied blocks, keeping 32: a follower killed for more than a
        // fraction of a second under load catches up through a state snapshot.
        testnet_args.extend(["--snapshot-interval".into(), "128".into()]);
    }
    let mut c = Cluster::new(
        protocol,
        n,
        ClusterOpts {
            netns: true,
            hosts,
            testnet_args,
            ..Default::default()
        },
    );
    c.start_all();
    // Raft makes blocks only for transactions (and one no-op per new leader).
    if let Err(e) = c.wait_height(&all, 1, Duration::from_secs(30)) {
        fail(&c, format!("{protocol}: the cluster did not start: {e}"));
    }
    let load = Load::start(&c, &all);
    if let Err(e) = c.wait_progress(&all, 3, Duration::from_secs(30)) {
        fail(&c, format!("{protocol}: no progress under load: {e}"));
    }
    let setup = t0.elapsed();

    let faults = schedule(&mut rng, cycles, c.netns_available());
    if !c.netns_available() {
        eprintln!("nemesis {protocol}: netns unavailable, no partition cycles");
    }
    let mut fig = Figures {
        kills: 0,
        pauses: 0,
        partitions: 0,
        longest_recovery: Duration::ZERO,
        recoveries: Vec::new(),
        during: Vec::new(),
    };
    for (cycle, fault) in faults.iter().enumerate() {
        let v = rng.gen_range(0..n);
        let before = c.heights_text(&all);
        // The fault starts at a random moment of the load.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1000)));
        let others: Vec<usize> = all.iter().copied().filter(|i| *i != v).collect();
        let top = |c: &Cluster| others.iter().filter_map(|&i| c.height(i)).max();
        let others_before;
        let what = match fault {
            Fault::Kill => {
                let down = Duration::from_millis(rng.gen_range(200..=2000));
                c.kill(v);
                others_before = top(&c);
                std::thread::sleep(down);
                fig.during.push(progress(others_before, top(&c)));
                c.start(v);
                fig.kills += 1;
                format!("SIGKILL validator {v}, restarted after {down:?}")
            }
            Fault::Pause => {
                let frozen = Duration::from_millis(rng.gen_range(500..=3000));
                c.pause(v);
                others_before = top(&c);
                std::thread::sleep(frozen);
                fig.during.push(progress(others_before, top(&c)));
                c.resume(v);
                fig.pauses += 1;
                format!("SIGSTOP validator {v}, SIGCONT after {frozen:?}")
            }
            Fault::Partition => {
                let cut = Duration::from_millis(rng.gen_range(1000..=3000));
                c.partition(&[&[v], &others]);
                others_before = top(&c);
                // The API's status is refreshed every 0.5 s: the isolated validator's height
                // is read once that has caught up with the moment of the cut.
                std::thread::sleep(SETTLE);
                let alone_before = c.height(v);
                std::thread::sleep(cut - SETTLE);
                let alone_after = c.height(v);
                fig.during.push(progress(others_before, top(&c)));
                c.heal();
                fig.partitions += 1;
                // The cut is real: the isolated validator commits nothing (a block or two
                // already on its way may land).
                if progress(alone_before, alone_after).is_none_or(|k| k > 2) {
                    fail(
                        &c,
                        format!(
                            "cycle {cycle}: validator {v}, cut off for {cut:?}, went from \
                             {alone_before:?} ({SETTLE:?} after the cut) to {alone_after:?}: the \
                             partition did not isolate it"
                        ),
                    );
                }
                format!("partition {{{v}}} | {others:?}, healed after {cut:?}")
            }
        };
        let healed = Instant::now();
        if let Err(e) = c.wait_progress(&all, 2, RECOVERY) {
            fail(
                &c,
                format!(
                    "{protocol} cycle {cycle} ({what}): commits did not resume on every \
                     validator: {e}"
                ),
            );
        }
        let recovery = healed.elapsed();
        fig.longest_recovery = fig.longest_recovery.max(recovery);
        fig.recoveries.push(recovery);
        for i in 0..n {
            if !c.is_running(i) {
                fail(&c, format!("{protocol}: validator {i} exited on its own"));
            }
        }
        let during = match fig.during.last().copied().flatten() {
            Some(k) => format!("the others committed {k} blocks during the fault"),
            None => "the others' heights unknown during the fault".into(),
        };
        eprintln!(
            "nemesis {protocol} cycle {cycle}: {what}; {during}; all progressed {recovery:?} \
             after the heal (heights before: {before}; acked so far {})",
            load.committed()
        );
    }
    assert!(
        fig.kills >= MIN_KILLS && 2 * fig.kills > faults.len(),
        "{} kills in {} cycles",
        fig.kills,
        faults.len()
    );
    if c.netns_available() {
        assert!(fig.partitions >= 1, "no partition cycle");
    } else {
        eprintln!("nemesis {protocol}: NOTE: partitions skipped (netns unavailable)");
    }

    // The end: healed, all running, the load stopped (every acknowledged transaction is then
    // at or below the highest height), everyone at that height.
    c.heal();
    let acked = load.stop();
    if let Err(e) = c.converge(&all, Duration::from_secs(60)) {
        fail(&c, format!("{protocol}: validators did not converge: {e}"));
    }
    let mut evidence_endpoint = true;
    for i in 0..n {
        match c.evidence_count(i) {
            Some(count) => assert_eq!(
                count, 0,
                "{protocol}: honest validator {i} reports {count} pieces of evidence"
            ),
            None => evidence_endpoint = false,
        }
    }
    if !evidence_endpoint {
        eprintln!(
            "nemesis {protocol}: NOTE: GET /v1/evidence not answered (endpoint absent?); \
             evidence assertion skipped"
        );
    }
    c.stop_all();
    let verdict = check(&c, &all, &all, &acked);
    assert!(
        verdict.acked_checked > 0,
        "{protocol}: no transaction was acknowledged"
    );
    assert!(verdict.votes_checked > 0, "{protocol}: no vote logged");

    let mut sorted = fig.recoveries.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let stalled = fig.during.iter().filter(|d| **d == Some(0)).count();
    eprintln!(
        "nemesis {protocol} n={n} seed {seed}: {} cycles ({} kill/restart, {} pause, {} \
         partition); {} transactions acknowledged ({} submitted); final height {}; {} votes \
         checked; evidence {}; recovery after heal: median {median:?}, longest {:?}; faults \
         during which the others committed nothing: {stalled} of {}; setup {setup:?}, total \
         {:?}",
        faults.len(),
        fig.kills,
        fig.pauses,
        fig.partitions,
        verdict.acked_checked,
        acked.submitted,
        verdict.height,
        verdict.votes_checked,
        verdict.evidence,
        fig.longest_recovery,
        fig.during.len(),
        t0.elapsed()
    );
}

#[test]
fn nemesis_hotstuff() {
    nemesis("hotstuff", 4, false);
}

#[test]
fn nemesis_pbft() {
    nemesis("pbft", 4, true);
}

#[test]
fn nemesis_raft() {
    nemesis("raft", 3, false);
}

/// The checker can fail: a validator killed before any load lacks the acknowledged
/// transactions, a fabricated hash is in no store, a fabricated second vote in one slot is a
/// double vote, and a store that is not stopped cannot be checked.
#[test]
fn checker_detects_missing_transactions_and_double_votes() {
    let _serial = serial();
    assert_eq!(
        double_votes("vote 4 aa\nvote 5 bb\nvote 4 cc\n"),
        vec![("4".into(), "aa".into(), "cc".into())]
    );

    let mut c = Cluster::new("raft", 3, ClusterOpts::default());
    c.start_all();
    c.wait_height(&[0, 1, 2], 1, Duration::from_secs(30))
        .unwrap_or_else(|e| fail(&c, e));
    // Validator 2 goes down before any transfer: the other two (a majority) commit them.
    c.kill(2);
    let load = Load::start(&c, &[0, 1]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.committed() < 20 {
        assert!(Instant::now() < deadline, "only {} acked", load.committed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let acked = load.stop();

    // Running validators' stores cannot be checked.
    let err = try_check(&c, &[0, 1], &[0, 1], &acked).unwrap_err();
    assert!(err.contains("cannot open"), "{err}");
    c.stop_all();

    // The positive case: the two that ran agree and hold every acked transaction.
    let ok = check(&c, &[0, 1], &[0, 1, 2], &acked);
    assert_eq!(ok.acked_checked, acked.committed.len());
    assert!(ok.height >= 2, "{ok:?}");

    // Validator 2's store lacks them.
    let err = try_check(&c, &[0, 1, 2], &[0, 1, 2], &acked).unwrap_err();
    assert!(
        err.contains("validator 2 lacks acknowledged transaction"),
        "{err}"
    );
    // And check panics with that message.
    eprintln!("negative control: the panic message below is expected");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check(&c, &[0, 1, 2], &[0, 1, 2], &acked)
    }))
    .unwrap_err();
    let msg = panicked
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(msg.contains("safety check failed"), "{msg}");

    // A transaction nobody committed.
    let mut forged = Acked {
        committed: acked.committed.clone(),
        heights: acked.heights.clone(),
        submitted: acked.submitted,
    };
    forged.committed.push(crypto::hash(b"never submitted"));
    let err = try_check(&c, &[0, 1], &[0, 1], &forged).unwrap_err();
    assert!(err.contains("is in no honest store"), "{err}");

    // A second, different vote in a slot (term) a validator already voted in. (Raft logs
    // only the votes a validator grants to others: the one elected may have none; then a
    // first vote is forged too.)
    let v = [0, 1]
        .into_iter()
        .find(|&v| std::fs::read_to_string(c.vote_log_path(v)).is_ok_and(|l| !l.trim().is_empty()))
        .unwrap_or(0);
    let log_path = c.vote_log_path(v);
    let mut log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if log.trim().is_empty() {
        log = format!("vote 1 {}\n", crypto::hash(b"a block"));
    }
    let first = log.lines().next().unwrap().to_string();
    let slot = first.split_whitespace().nth(1).unwrap();
    let forged_vote = format!("vote {slot} {}\n", crypto::hash(b"another block"));
    std::fs::write(&log_path, format!("{log}{forged_vote}")).unwrap();
    let err = try_check(&c, &[0, 1], &[0, 1], &acked).unwrap_err();
    assert!(
        err.contains(&format!("validator {v} double-voted: slot {slot}")),
        "{err}"
    );
    eprintln!(
        "negative control: {} acked transactions, {} votes; detected: missing transactions, \
         a forged hash, a forged double vote",
        acked.committed.len(),
        ok.votes_checked
    );
}
