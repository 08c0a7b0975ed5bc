//! Real `cairnd run` processes over libp2p (issue 21's Raft target): a Raft network whose
//! genesis allows set changes adds and removes one server at a time, twenty changes in a row,
//! with the wallet CLI (`cairn validators add|remove`, `sign` with a majority of the current
//! members' consensus key files, `submit --wait`) while three wallets send transfers.
//!
//! Each added server starts from an empty home with keys no genesis names: it gets the chain
//! as a learner (the leader compacts every 32 entries, so later joiners install a state
//! snapshot first), is promoted, and the next change removes the oldest member but
//! validator 0 (sometimes the leader: it hands over first). After each change every step
//! is checked on validator 0's `GET /v1/validators`: the configuration holds exactly the
//! members the ledger names, as voters, committed. At the end every transfer the validators
//! accepted is committed with a successful receipt, and the final members' stores agree
//! block by block.

mod support;

use std::time::{Duration, Instant};
use support::{Load, Testnet, Validator, dec, get_json, stop_all, wait_for};

/// Blocks between the block that accepts a change and the end of its epoch.
const DELAY: &str = "2";
/// Changes in a row (half additions, half removals).
const CHANGES: usize = 20;

/// The first majority of `members` (homes, in set order) approve `change`, and wallet 3
/// submits it with `--wait` (this test found a wallet race there: a resubmission of the
/// committed change was answered `nonce_used` while the store stage had not written its
/// block, and the wallet signed it again; `api/tx.rs: stored_consumer` and `TxIndex::hold`
/// fixed it).
fn approve_by_majority(net: &Testnet, change: &str, members: &[usize]) {
    support::approve_and_submit(net, change, &members[..members.len() / 2 + 1]);
}

/// Waits until validator 0's Raft configuration is exactly `members` (their stable ids:
/// the home index, as servers are added in home order), all voters, no learner, committed.
/// Returns the configuration's index.
fn wait_for_configuration(net: &Testnet, members: &[usize], step: usize) -> u64 {
    let want: Vec<u64> = members.iter().map(|&i| i as u64).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = get_json(&format!("{}/v1/validators", net.api(0)));
        let r = &v["raft"];
        let mut voters: Vec<u64> = r["voters"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default();
        voters.sort();
        let mut sorted = want.clone();
        sorted.sort();
        if voters == sorted
            && r["learners"].as_array().is_some_and(Vec::is_empty)
            && r["committed"] == true
        {
            return dec(&r["config_index"]);
        }
        assert!(
            Instant::now() < deadline,
            "change {step}: validator 0's configuration is {r}, not the voters {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn raft_adds_and_removes_one_server_at_a_time_twenty_times_under_load() {
    let net = Testnet::with_args(
        3,
        "raft",
        &["--epoch-delay-blocks", DELAY, "--snapshot-interval", "32"],
    );
    let limit = Duration::from_secs(60);
    let mut vs = net.start_all();
    // A Raft leader's first entry (it orders nothing more until transactions come).
    wait_for(&mut vs, 1, limit);
    // Every wallet sends through validator 0, which stays.
    let load = Load::start(&net, &[(0, 0), (1, 0), (2, 0)]);
    let dir = tempfile::tempdir().unwrap();
    let mut members: Vec<usize> = vec![0, 1, 2];
    let mut timings = Vec::new();
    for step in 0..CHANGES {
        let change = dir.path().join(format!("change-{step}.json"));
        let change = change.to_str().unwrap();
        let started = Instant::now();
        let removed = if step % 2 == 0 {
            let i = vs.len();
            let joiner = net.joiner_home(i, 50 + 2 * i as u8);
            vs.push(Some(Validator::start(&joiner.home)));
            support::write_add(&net, &joiner, i, change);
            approve_by_majority(&net, change, &members);
            members.push(i);
            None
        } else {
            // The oldest member but validator 0.
            let gone = members.remove(1);
            let key = genesis::keyfile::load_key_file(&net.home(gone).join("consensus_key.json"))
                .unwrap();
            support::write_remove(&net, &key.public(), change);
            let mut approvers = members.clone();
            approvers.insert(1, gone);
            approve_by_majority(&net, change, &approvers);
            Some(gone)
        };
        let index = wait_for_configuration(&net, &members, step);
        timings.push(started.elapsed().as_millis());
        if let Some(gone) = removed
            && let Some(v) = vs[gone].take()
        {
            v.stop("-TERM");
        }
        eprintln!(
            "change {step}: members {members:?}, configuration entry {index}, {} ms",
            timings[step]
        );
    }
    let accepted = load.stop();
    assert!(!accepted.is_empty());
    for &i in &members {
        support::committed_heights(&net, i, &accepted[accepted.len() - 10..], limit);
    }
    let heights = support::committed_heights(&net, 0, &accepted, limit);
    stop_all(&mut vs, "-TERM");
    // The nemesis checker on the final members: their stores agree block by block (the
    // joiners hold blocks from their snapshot on), every accepted transfer is in each store
    // at one height and index with a successful receipt (or below a snapshot's transaction
    // floor), and no vote log holds two votes for one term; nor any removed server's.
    net.check(&members, &accepted);
    net.assert_no_double_votes_of(&(0..vs.len()).collect::<Vec<_>>());
    let mut sorted = timings.clone();
    sorted.sort();
    eprintln!(
        "raft: {CHANGES} changes, one server at a time, under load: {} transfers committed \
         (up to height {}); per change (submit to committed configuration) median {} ms, \
         longest {} ms",
        accepted.len(),
        heights.iter().max().unwrap(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
}
