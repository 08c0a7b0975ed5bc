//! One Byzantine validator among four real `cairnd-test` processes (`--byzantine B`, a
//! test-only build feature; see node/src/validator/byzantine.rs), under transfer load sent
//! to the three honest ones. For every behaviour:
//! - commits continue on every honest validator;
//! - every transfer an honest API reported committed is in every honest store, the honest
//!   stores agree block by block, and no honest validator signed two votes for one slot
//!   ([`check`]);
//! - equivocation (two conflicting proposals, two conflicting votes) is recorded as evidence
//!   that a third party can verify from the genesis alone, naming the Byzantine validator;
//!   a forged signature is never taken as evidence against anyone.
//!
//! The clusters run one at a time (four validators each on a two-core machine).

use consensus::Committee;
use node::validator::evidence::{self, Evidence};
use node::validator::{HotStuffProtocol, PbftProtocol, Protocol};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tests::cluster::{Cluster, ClusterOpts, Load, check};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Blocks every honest validator must commit with the Byzantine one running.
const PROGRESS_BLOCKS: u64 = 8;
/// Transfers the honest APIs must report committed.
const COMMITTED_TRANSFERS: usize = 40;
const LIMIT: Duration = Duration::from_secs(90);

/// What one run found on the honest validators.
struct Outcome {
    byzantine: usize,
    honest: Vec<usize>,
    /// Evidence records each honest validator serves at `GET /v1/evidence`.
    evidence: Vec<Vec<Evidence>>,
    /// `(bad frames, limited requests, view changes)` per honest validator.
    counters: Vec<(u64, u64, u64)>,
    committee: Committee,
    genesis: crypto::Digest,
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn get(url: &str) -> String {
    reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Runs `protocol` with validator `byzantine` misbehaving as `behaviour` until the honest
/// validators made progress and committed transfers; checks safety; returns what was seen.
fn run(protocol: &str, byzantine: usize, behaviour: &str) -> Outcome {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = vec![Vec::new(); 4];
    args[byzantine] = vec!["--byzantine".to_string(), behaviour.to_string()];
    let mut c = Cluster::new(
        protocol,
        4,
        ClusterOpts {
            args,
            ..Default::default()
        },
    );
    c.start_all();
    let honest: Vec<usize> = (0..4).filter(|i| *i != byzantine).collect();
    let started = Instant::now();
    let load = Load::start(&c, &honest);
    let start_heights: Vec<u64> = honest.iter().map(|&i| c.height(i).unwrap_or(0)).collect();
    if let Err(e) = c.wait_progress(&honest, PROGRESS_BLOCKS, LIMIT) {
        c.dump_logs(30);
        panic!("{protocol} with a {behaviour} validator {byzantine}: no progress: {e}");
    }
    while load.committed() < COMMITTED_TRANSFERS {
        if started.elapsed() > LIMIT {
            c.dump_logs(30);
            panic!(
                "{protocol} with a {behaviour} validator: only {} transfers committed in {LIMIT:?}",
                load.committed()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut evidence = Vec::new();
    let mut counters = Vec::new();
    for &i in &honest {
        let body: serde_json::Value =
            serde_json::from_str(&get(&format!("{}/v1/evidence", c.api(i)))).unwrap();
        let records: Vec<Evidence> = serde_json::from_value(body["evidence"].clone()).unwrap();
        assert_eq!(body["count"].as_u64(), Some(records.len() as u64));
        evidence.push(records);
        // Metrics are refreshed every 500 ms; evidence is stored as it is found.
        std::thread::sleep(Duration::from_millis(700));
        let m = get(&format!("{}/metrics", c.api(i)));
        counters.push((
            metric(&m, "cairn_bad_frames_total"),
            metric(&m, "cairn_limited_requests_total"),
            metric(&m, "cairn_view_changes_total"),
        ));
        // The metric counts what the endpoint lists (plus records beyond the store's cap).
        assert!(metric(&m, "cairn_evidence_total") >= evidence.last().unwrap().len() as u64);
    }
    let acked = load.stop();
    let elapsed = started.elapsed();
    if let Err(e) = c.converge(&honest, Duration::from_secs(30)) {
        c.dump_logs(30);
        panic!("{protocol} with a {behaviour} validator: the honest did not converge: {e}");
    }
    c.stop_all();
    let verdict = check(&c, &honest, &honest, &acked);
    let g = c.genesis();
    let keys = g.validators.iter().map(|v| v.consensus_key).collect();
    let committee = Committee::new_bft(keys, g.f(), g.quorum()).unwrap();
    println!(
        "{protocol} {behaviour} (validator {byzantine}): {} transfers acked, heights {:?} -> {}, \
         {} votes checked, evidence per honest validator {:?}, (bad frames, limited requests, \
         view changes) {:?}, {:.1} s",
        acked.committed.len(),
        start_heights,
        verdict.height,
        verdict.votes_checked,
        evidence.iter().map(Vec::len).collect::<Vec<_>>(),
        counters,
        elapsed.as_secs_f64()
    );
    Outcome {
        byzantine,
        honest,
        evidence,
        counters,
        committee,
        genesis: g.hash(),
    }
}

impl Outcome {
    /// Every record verifies on its own, names the Byzantine validator and one of `kinds`;
    /// returns how many honest validators hold at least one.
    fn assert_evidence<P: Protocol>(&self, kinds: &[&str]) -> usize {
        for (records, i) in self.evidence.iter().zip(&self.honest) {
            for e in records {
                assert!(
                    evidence::verify::<P>(e, &self.committee, &self.genesis),
                    "validator {i} holds evidence that does not verify: {e:?}"
                );
                assert_eq!(e.signer as usize, self.byzantine, "evidence against {e:?}");
                assert!(kinds.contains(&e.kind.as_str()), "kind {}", e.kind);
                // Tampering breaks it: the check is not a formality.
                let mut forged = e.clone();
                forged.second = forged.first.clone();
                assert!(!evidence::verify::<P>(
                    &forged,
                    &self.committee,
                    &self.genesis
                ));
            }
        }
        self.evidence.iter().filter(|r| !r.is_empty()).count()
    }

    fn assert_no_evidence(&self) {
        for (records, i) in self.evidence.iter().zip(&self.honest) {
            assert!(
                records.is_empty(),
                "validator {i} accuses someone: {records:?}"
            );
        }
    }
}

#[test]
fn hotstuff_equivocating_leader_is_caught_and_the_honest_stay_safe_and_live() {
    let o = run("hotstuff", 3, "equivocate");
    let holders = o.assert_evidence::<HotStuffProtocol>(&["hotstuff-proposal"]);
    assert_eq!(holders, 3, "every honest validator receives both proposals");
}

#[test]
fn pbft_equivocating_primary_is_caught_and_the_honest_stay_safe_and_live() {
    // Validator 1 is the primary of view 1, where PBFT starts.
    let o = run("pbft", 1, "equivocate");
    let holders = o.assert_evidence::<PbftProtocol>(&["pbft-pre-prepare"]);
    assert_eq!(holders, 3);
}

#[test]
fn hotstuff_double_voter_is_caught_and_the_honest_stay_safe_and_live() {
    let o = run("hotstuff", 1, "double-vote");
    // Votes go to the next leader only: every honest validator that led a view saw them.
    let holders = o.assert_evidence::<HotStuffProtocol>(&["hotstuff-vote"]);
    assert!(
        holders >= 1,
        "no honest validator recorded the double votes"
    );
}

#[test]
fn pbft_double_voter_is_caught_and_the_honest_stay_safe_and_live() {
    let o = run("pbft", 2, "double-vote");
    let holders = o.assert_evidence::<PbftProtocol>(&["pbft-prepare", "pbft-commit"]);
    assert_eq!(holders, 3, "PBFT votes are broadcast: everyone sees both");
}

#[test]
fn hotstuff_bad_signatures_are_refused_and_frame_no_one() {
    let o = run("hotstuff", 2, "bad-signatures");
    o.assert_no_evidence();
}

#[test]
fn pbft_primary_with_bad_signatures_is_replaced() {
    let o = run("pbft", 1, "bad-signatures");
    o.assert_no_evidence();
    assert!(
        o.counters.iter().all(|c| c.2 >= 1),
        "the honest replicas left the view of a primary whose pre-prepares never verify: {:?}",
        o.counters
    );
}

#[test]
fn pbft_withholding_primary_is_replaced() {
    let o = run("pbft", 1, "withhold");
    o.assert_no_evidence();
    assert!(o.counters.iter().all(|c| c.2 >= 1), "{:?}", o.counters);
}

#[test]
fn hotstuff_withholding_validator_is_routed_around() {
    let o = run("hotstuff", 2, "withhold");
    o.assert_no_evidence();
}

#[test]
fn hotstuff_flooding_validator_is_throttled() {
    let o = run("hotstuff", 1, "flood");
    o.assert_no_evidence();
    for (c, i) in o.counters.iter().zip(&o.honest) {
        assert!(c.0 > 0, "validator {i} saw no garbage frame: {c:?}");
        assert!(c.1 > 0, "validator {i} limited no request: {c:?}");
    }
}
