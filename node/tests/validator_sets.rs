//! Real `cairnd run` processes over libp2p (issue 21, step 4): four HotStuff validators whose
//! genesis allows set changes (`--epoch-delay-blocks 20`) rotate validator 2's consensus and
//! network keys with the wallet CLI — `cairn validators rotate`, `sign` with three
//! validators' consensus key files, `submit --wait` — while three wallets send transfers
//! through three validators; validator 2 restarts its transport with the identity in its
//! home's `network_key.next.json` at the boundary, in the same process, and the others
//! connect to it. Then validator 3's key, approved by the new set; after each, `cairn balance
//! --verify` with only
//! the genesis file walks the epoch links to the set that signed the answer.
//! `GET /v1/validators` shows the pending change and then the new set; every validator
//! switches after the same block; validator 2 proposes with its new key (read from its
//! home's `consensus_key.next.json`); every transfer a validator accepted commits; and the
//! nemesis checker (`node::audit`, run on the stopped validators) finds the stores agreeing
//! block by block, every accepted transfer in each of them with a successful receipt, and no
//! vote log with two votes for one slot.
//!
//! And a fifth validator joins a running network under load: a home whose keys genesis does
//! not name starts beside the four (they refuse its connections), `cairn validators add` is
//! approved and submitted, the four add it to their running transports when the change is
//! accepted (no restart: their connections and queued frames stay), it syncs the chain, and
//! from the new epoch it votes: its vote log names one of the epoch's first blocks, and its
//! signature is in the certificates of the new epoch's blocks. Every accepted transfer
//! commits. The longest gap between blocks around the
//! boundary is printed (the target is one view timeout, 1 s).

mod support;

use std::time::{Duration, Instant};
use support::{Load, Testnet, Validator, cairn, dec, get_json, sign_with_key, stop_all, wait_for};

const DELAY: u64 = 20;
const ROTATED: usize = 2;

/// Wallets 0, 1 and 2 sending transfers through validators `via` (`send_until`).
fn load_via(net: &Testnet, via: [usize; 3]) -> Load {
    Load::start(net, &[(0, via[0]), (1, via[1]), (2, via[2])])
}

/// Waits (up to 60 s) until validator `i` reports each of `hashes` committed with a
/// successful receipt; their heights.
fn committed_heights(net: &Testnet, i: usize, hashes: &[crypto::Digest]) -> Vec<u64> {
    support::committed_heights(net, i, hashes, Duration::from_secs(60))
}

#[test]
fn hotstuff_rotates_a_validator_key_under_load_with_the_wallet_cli() {
    let net = Testnet::with_args(4, "hotstuff", &["--epoch-delay-blocks", &DELAY.to_string()]);
    let new_key = crypto::SecretKey::from_seed([42; 32]);
    genesis::write_key_file(&net.home(ROTATED).join("consensus_key.next.json"), &new_key).unwrap();
    // Its network key too: it restarts its transport with this identity at the boundary,
    // without a process restart.
    let new_net_key = crypto::SecretKey::from_seed([44; 32]);
    genesis::write_key_file(
        &net.home(ROTATED).join("network_key.next.json"),
        &new_net_key,
    )
    .unwrap();
    // Validator 3's key is rotated too, in a second change (epoch 2).
    let new_key3 = crypto::SecretKey::from_seed([43; 32]);
    genesis::write_key_file(&net.home(3).join("consensus_key.next.json"), &new_key3).unwrap();
    let old_key = net.genesis().validators[ROTATED].consensus_key;
    let limit = Duration::from_secs(60);
    let mut vs = net.start_all();
    wait_for(&mut vs, 3, limit);

    // Wallets 0..3 send transfers through validators 0..3 for the whole test.
    let load = load_via(&net, [0, 1, 2]);

    // Write the change, approve it with validators 0, 1 and 2, submit it from wallet 3.
    let dir = tempfile::tempdir().unwrap();
    let change = dir.path().join("change.json");
    let change = change.to_str().unwrap();
    let api0 = net.api(0);
    write_rotation(
        &api0,
        &old_key,
        &new_key.public(),
        Some(&new_net_key.public()),
        change,
    );
    // Not enough approvals yet: refused before anything is sent.
    let wallet3 = net.wallet(3);
    let wallet3 = wallet3.to_str().unwrap();
    let (code, text) = cairn(&[
        "--key",
        wallet3,
        "--node",
        &api0,
        "validators",
        "submit",
        change,
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("needs 3"), "{text}");
    // A key outside the approving set (a wallet's) cannot approve.
    let (code, text) = cairn(&["validators", "sign", change, "--consensus-key", wallet3]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("is not in the set that approves"), "{text}");
    for i in 0..3 {
        let text = sign_with(&net, change, i);
        assert!(
            text.contains(&format!("{} of 3 approvals", i + 1)),
            "{text}"
        );
    }
    let (code, text) = cairn(&[
        "--key",
        wallet3,
        "--node",
        &api0,
        "--json",
        "validators",
        "submit",
        change,
        "--wait",
    ]);
    assert_eq!(code, 0, "{text}");

    // The change is pending, with its boundary, once validator 1 has stored its block
    // (`--wait` saw it commit on validator 0; the others may be a block behind).
    let deadline = Instant::now() + limit;
    let last = loop {
        let (status, v) = get_json(&format!("{}/v1/validators", net.api(1)));
        assert_eq!(status, 200, "{v}");
        if let Some(e) = v["pending"]["effective_after"].as_str() {
            break e.parse::<u64>().unwrap();
        }
        if v["epoch"] != "0" {
            // Already past it (a slow machine): the stored set says where it switched.
            break dec(&v["start_height"]) - 1;
        }
        assert!(Instant::now() < deadline, "no pending change: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(last >= DELAY, "the epoch ends after block {last}");

    // Every validator goes past the boundary; validator 2 proposes with its new key.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut proposed_with_new_key = false;
    let mut h = last + 1;
    while !proposed_with_new_key {
        assert!(
            Instant::now() < deadline,
            "validator {ROTATED} proposed no block with its new key in {}..{h}",
            last + 1
        );
        wait_for(&mut vs, h, limit);
        let (_, b) = get_json(&format!("{}/v1/blocks/{h}", net.api(0)));
        proposed_with_new_key = b["proposer"] == serde_json::json!(new_key.public().to_string());
        h += 1;
    }
    wait_for(&mut vs, last + 10, limit);
    for i in 0..4 {
        let (_, v) = get_json(&format!("{}/v1/validators", net.api(i)));
        assert_eq!(v["epoch"], "1", "validator {i}: {v}");
        assert_eq!(dec(&v["start_height"]), last + 1, "validator {i}: {v}");
        assert_eq!(
            v["members"][ROTATED]["consensus_key"],
            serde_json::json!(new_key.public().to_string()),
            "validator {i}: {v}"
        );
        assert_eq!(
            v["members"][ROTATED]["network_key"],
            serde_json::json!(new_net_key.public().to_string()),
            "validator {i}: {v}"
        );
        assert!(v["pending"].is_null(), "validator {i}: {v}");
    }
    // Its transport restarted with the new identity, in the same process, and the others,
    // which refuse the old one from the epoch's start, are connected to it (its proposals
    // above were certified, so they reached a quorum over the new identity).
    assert!(vs[ROTATED].as_mut().unwrap().poll() > last, "still running");
    let log = std::fs::read_to_string(net.home(ROTATED).join("cairnd.log")).unwrap();
    assert!(log.contains("network key rotated"), "{log}");
    // (Status refreshes twice a second; a connection may be being redialed: poll.)
    for i in [0, 1, 3] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, st) = get_json(&format!("{}/v1/status", net.api(i)));
            let peers = st["peers"].as_array().cloned().unwrap_or_default();
            if peers.contains(&serde_json::json!(format!("validator-{ROTATED}"))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "validator {i} is not connected to validator {ROTATED}: {st}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // A wallet that trusts only the genesis file verifies a balance read in epoch 1: it
    // walks the epoch change (certified by the genesis set) to the rotated set.
    verify_balance_from_genesis(&net, 1, 1);

    // Every accepted transfer commits.
    let accepted = load.stop();
    let heights = committed_heights(&net, 3, &accepted);
    let before = heights.iter().filter(|h| **h <= last).count();
    let after = heights.len() - before;
    // The load ran on both sides of the boundary.
    assert!(
        before > 0 && after > 0,
        "transfers committed {before} at or before the boundary and {after} after it"
    );

    // A second change, approved by epoch 1's set (validator 2 signs with its new key):
    // validator 3's key. Then a wallet holding only the genesis file walks both changes.
    let change2 = dir.path().join("change2.json");
    let change2 = change2.to_str().unwrap();
    let old_key3 = net.genesis().validators[3].consensus_key;
    write_rotation(&api0, &old_key3, &new_key3.public(), None, change2);
    for key in [
        net.home(0).join("consensus_key.json"),
        net.home(1).join("consensus_key.json"),
        net.home(ROTATED).join("consensus_key.next.json"),
    ] {
        sign_with_key(change2, &key);
    }
    let (code, text) = cairn(&[
        "--key",
        wallet3,
        "--node",
        &api0,
        "validators",
        "submit",
        change2,
        "--wait",
    ]);
    assert_eq!(code, 0, "{text}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let second = loop {
        let epochs: Vec<serde_json::Value> = (0..4)
            .map(|i| get_json(&format!("{}/v1/validators", net.api(i))).1)
            .collect();
        if epochs.iter().all(|v| v["epoch"] == "2") {
            break dec(&epochs[0]["start_height"]) - 1;
        }
        assert!(Instant::now() < deadline, "not all in epoch 2: {epochs:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_for(&mut vs, second + 5, limit);
    verify_balance_from_genesis(&net, 2, 2);
    let (_, epochs) = get_json(&format!("{}/v1/epochs", net.api(3)));
    assert_eq!(
        epochs["links"].as_array().map(Vec::len),
        Some(2),
        "{epochs}"
    );

    assert_no_evidence(&net, &[0, 1, 2, 3]);
    stop_all(&mut vs, "-TERM");
    // The nemesis checker: the stores agree, every accepted transfer is in each of them
    // with a successful receipt, one vote per slot.
    let (top, _) = net.check(&[0, 1, 2, 3], &accepted);
    assert!(top >= second + 5);
    eprintln!(
        "rotation: switched after block {last}; {} transfers committed ({before} at or before \
         it, {after} after); validator {ROTATED} proposed with its new key by block {}; a \
         second change (validator 3's key) after block {second}; `balance --verify` from \
         genesis verified in epochs 1 and 2",
        accepted.len(),
        h - 1
    );
}

/// `cairn validators rotate` through `api`: the change file `out` rotating `old` to `new`.
/// The nemesis checker's last property (`tests::cluster::check` sums it): no running
/// validator reports evidence — no honest validator signed two things for one slot, nor with
/// a key its set no longer holds, across the changes. (The rest of the checker,
/// `node::audit`, runs on the stopped validators: `Testnet::check`.)
fn assert_no_evidence(net: &Testnet, running: &[usize]) {
    for &i in running {
        let (status, v) = get_json(&format!("{}/v1/evidence", net.api(i)));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["count"], 0, "validator {i} reports evidence: {v}");
    }
}

fn write_rotation(
    api: &str,
    old: &crypto::PublicKey,
    new: &crypto::PublicKey,
    network: Option<&crypto::PublicKey>,
    out: &str,
) {
    let (old, new) = (old.to_string(), new.to_string());
    let mut args = vec![
        "--node",
        api,
        "validators",
        "rotate",
        "--old-key",
        &old,
        "--new-key",
        &new,
        "--out",
        out,
    ];
    let network = network.map(|k| k.to_string());
    if let Some(k) = &network {
        args.extend(["--network-key", k]);
    }
    let (code, text) = cairn(&args);
    assert_eq!(code, 0, "{text}");
}

/// `cairn balance --verify` through validator `i` with only the genesis file: it must verify
/// with the set of `epoch`, reached by walking the epoch links.
fn verify_balance_from_genesis(net: &Testnet, i: usize, epoch: u64) {
    let genesis_file = net.out.join("genesis.json");
    let (code, text) = cairn(&[
        "--node",
        &net.api(i),
        "--genesis",
        genesis_file.to_str().unwrap(),
        "--key",
        net.wallet(0).to_str().unwrap(),
        "balance",
        "--verify",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "yes (2f+1 of epoch {epoch}'s validators, walked from genesis"
        )),
        "{text}"
    );
}

/// `cairn validators sign CHANGE` with validator `i`'s consensus key file; its output.
fn sign_with(net: &Testnet, change: &str, i: usize) -> String {
    sign_with_key(change, &net.home(i).join("consensus_key.json"))
}

/// The first `quorum` validators approve `change`; wallet 3 submits it with `--wait`.
fn approve_and_submit(net: &Testnet, change: &str, quorum: usize) {
    support::approve_and_submit(net, change, &(0..quorum).collect::<Vec<_>>());
}

/// The replica ids whose votes a HotStuff block's certificate (hex, as the API gives it)
/// carries.
fn qc_voters(block: &serde_json::Value) -> Vec<u16> {
    let bytes = hex::decode(block["certificate"].as_str().unwrap_or_default()).unwrap_or_default();
    consensus::hotstuff::CommitCertificate::decode(&bytes)
        .map(|c| c.qc.votes.iter().map(|(r, _)| r.0).collect())
        .unwrap_or_default()
}

#[test]
fn hotstuff_adds_a_fifth_validator_under_load() {
    let mut net = Testnet::with_args(4, "hotstuff", &["--epoch-delay-blocks", &DELAY.to_string()]);
    let limit = Duration::from_secs(60);
    // The joiner's home: its own keys, the chain's genesis, the next ports.
    let joiner = net.joiner_home(4, 43);
    let home = joiner.home.clone();

    let mut vs = net.start_all();
    vs.push(Some(Validator::start(&home)));
    wait_for(&mut vs[..4], 3, limit);

    let load = load_via(&net, [0, 1, 2]);

    let dir = tempfile::tempdir().unwrap();
    let change = dir.path().join("add.json");
    let change = change.to_str().unwrap();
    support::write_add(&net, &joiner, 4, change);
    approve_and_submit(&net, change, 3);

    // The joiner is admitted, syncs, and switches with the others.
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        if let Some((200, v)) = support::try_get_json(&format!("{}/v1/validators", net.api(4)))
            && v["epoch"] == "1"
            && v["members"].as_array().map(Vec::len) == Some(5)
        {
            break dec(&v["start_height"]) - 1;
        }
        assert!(
            Instant::now() < deadline,
            "validator 4 did not reach epoch 1 (its height {})",
            support::api_height(&net.api(4))
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its votes are in the new epoch's certificates.
    let mut first_vote = None;
    let mut h = last + 1;
    while first_vote.is_none() {
        assert!(
            h <= last + 60,
            "validator 4's vote is in no certificate of blocks {}..{h}",
            last + 1
        );
        wait_for(&mut vs[..4], h, limit);
        let (_, b) = get_json(&format!("{}/v1/blocks/{h}", net.api(0)));
        if qc_voters(&b).contains(&4) {
            first_vote = Some(h);
        }
        h += 1;
    }
    // The longest gap between consecutive blocks from 5 before the change's acceptance to 10
    // after the boundary (block timestamps, the proposers' clocks: one machine here).
    let accepted_at = last - DELAY;
    let times: Vec<u64> = (accepted_at.saturating_sub(5).max(1)..=last + 10)
        .map(|k| {
            wait_for(&mut vs[..4], k, limit);
            let (_, b) = get_json(&format!("{}/v1/blocks/{k}", net.api(0)));
            dec(&b["timestamp_ms"])
        })
        .collect();
    let from = accepted_at.saturating_sub(5).max(1);
    let gap = times.windows(2).map(|w| w[1].saturating_sub(w[0])).max();
    let long: Vec<(u64, u64)> = times
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1].saturating_sub(w[0]) >= 500)
        .map(|(k, w)| (from + k as u64 + 1, w[1] - w[0]))
        .collect();

    let accepted = load.stop();
    committed_heights(&net, 4, &accepted);
    // The consensus ids of the new epoch's first blocks, for the vote log below.
    let ids: Vec<(u64, String)> = (last + 1..=last + 10)
        .map(|h| {
            let (_, b) = get_json(&format!("{}/v1/blocks/{h}", net.api(0)));
            let bytes = hex::decode(b["certificate"].as_str().unwrap_or_default()).unwrap();
            let cert = consensus::hotstuff::CommitCertificate::decode(&bytes).unwrap();
            (h, cert.block.id().to_string())
        })
        .collect();
    assert_no_evidence(&net, &[0, 1, 2, 3, 4]);
    stop_all(&mut vs, "-TERM");
    net.n = 5;
    let (top, _) = net.check(&[0, 1, 2, 3, 4], &accepted);
    assert!(top > last + 10);
    // The joiner votes in its epoch (a certificate holds the first 4 of 5 votes, so its vote
    // need not be in one): a block's consensus id in its vote log. Which block is printed;
    // the target is the first (BENCHMARKS.md: 48 of 50 runs).
    let votes = std::fs::read_to_string(home.join("votes.log")).unwrap_or_default();
    let first_voted = ids
        .iter()
        .find(|(_, id)| votes.lines().any(|l| l.ends_with(&format!(" {id}"))))
        .map(|(h, _)| *h)
        .expect("validator 4 voted for none of its epoch's first 10 blocks");
    eprintln!(
        "add: accepted at {accepted_at}, epoch 1 from {}; validator 4 voted first for block {}, \
         its first vote in a certificate in block {}; \
         {} transfers committed; longest gap between blocks {from}..={}: {gap:?} ms; gaps of \
         500 ms or more (block, ms): {long:?}",
        last + 1,
        first_voted,
        first_vote.unwrap(),
        accepted.len(),
        last + 10
    );
}

/// A counter or gauge from validator `i`'s `/metrics`.
fn metric(net: &Testnet, i: usize, name: &str) -> u64 {
    let text = reqwest::blocking::get(format!("{}/metrics", net.api(i)))
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in validator {i}'s metrics")) as u64
}

/// Five validators remove validator 1 under load with the wallet CLI: from the new epoch the
/// four certify blocks alone under their new indices (2, 3 and 4 become 1, 2 and 3), the
/// removed validator's connections are closed and its redials refused (counted in
/// `cairn_rejected_connections_total`), it stops near the boundary, and every transfer the
/// validators accepted commits. Once its removal is accepted it takes no new transactions.
#[test]
fn hotstuff_removes_a_validator_under_load_with_the_wallet_cli() {
    const REMOVED: usize = 1;
    let net = Testnet::with_args(5, "hotstuff", &["--epoch-delay-blocks", &DELAY.to_string()]);
    let limit = Duration::from_secs(60);
    let removed_key = net.genesis().validators[REMOVED].consensus_key;
    let mut vs = net.start_all();
    wait_for(&mut vs, 3, limit);
    // Wallets 0..3 send through validators 0, 2 and 3 (members throughout).
    let load = load_via(&net, [0, 2, 3]);

    let dir = tempfile::tempdir().unwrap();
    let change = dir.path().join("remove.json");
    let change = change.to_str().unwrap();
    support::write_remove(&net, &removed_key, change);
    approve_and_submit(&net, change, 4);

    // Validator 1 knows it leaves: it refuses new transactions.
    let deadline = Instant::now() + limit;
    let last = loop {
        let (_, v) = get_json(&format!("{}/v1/validators", net.api(REMOVED)));
        if let Some(e) = v["pending"]["effective_after"].as_str() {
            break e.parse::<u64>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no pending removal on validator 1: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let chain = net.chain();
    let late = ledger::Transaction::sign(
        &net.wallet_key(3),
        &chain,
        1_000,
        ledger::Payload::Transfer {
            to: ledger::Address([7; 20]),
            amount: 1,
        },
    );
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/transactions", net.api(REMOVED)))
        .json(&serde_json::json!({ "tx": hex::encode(late.encode()) }))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().unwrap_or_default();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("leaves the validator set"), "{body}");

    // The four go on past the boundary without it.
    let removed = vs[REMOVED].take().unwrap();
    wait_for(&mut vs, last + 12, limit);
    let refused_before = metric(&net, 0, "cairn_rejected_connections_total");
    for k in last + 1..=last + 12 {
        let (_, b) = get_json(&format!("{}/v1/blocks/{k}", net.api(0)));
        assert_ne!(
            b["proposer"],
            serde_json::json!(removed_key.to_string()),
            "block {k}"
        );
        let voters = qc_voters(&b);
        assert!(
            voters.len() >= 3 && voters.iter().all(|&r| r < 4),
            "block {k}: {voters:?}"
        );
    }
    for i in [0, 2, 3, 4] {
        let (_, v) = get_json(&format!("{}/v1/validators", net.api(i)));
        assert_eq!(v["epoch"], "1", "validator {i}: {v}");
        let members = v["members"].as_array().unwrap();
        assert_eq!(members.len(), 4, "validator {i}: {v}");
        assert!(
            members
                .iter()
                .all(|m| m["consensus_key"] != serde_json::json!(removed_key.to_string())),
            "validator {i}: {v}"
        );
    }
    // The four report the new epoch in their metrics too.
    let deadline = Instant::now() + limit;
    for i in [0, 2, 3, 4] {
        while metric(&net, i, "cairn_epoch") != 1 {
            assert!(
                Instant::now() < deadline,
                "validator {i}'s cairn_epoch is not 1"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Its redials are refused, and it does not follow the chain.
    let deadline = Instant::now() + limit;
    while metric(&net, 0, "cairn_rejected_connections_total") <= refused_before {
        assert!(
            Instant::now() < deadline,
            "validator 1 was not refused again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stuck = support::api_height(&net.api(REMOVED));
    assert!(
        stuck <= last + 3,
        "the removed validator followed to {stuck} (boundary {last})"
    );

    let accepted = load.stop();
    let heights = committed_heights(&net, 0, &accepted);
    let after = heights.iter().filter(|h| **h > last).count();
    assert!(after > 0, "no transfer committed after the boundary");
    let stayed: Vec<usize> = (0..5).filter(|i| *i != REMOVED).collect();
    assert_no_evidence(&net, &stayed);
    let mut removed = Some(removed);
    stop_all(std::slice::from_mut(&mut removed), "-TERM");
    stop_all(&mut vs, "-TERM");
    // The removed validator's store agrees up to where it stopped; the others hold every
    // accepted transfer; no vote log of the five holds two votes for one slot.
    assert!(net.assert_same_chain() >= stuck);
    net.check(&stayed, &accepted);
    net.assert_no_double_votes();
    eprintln!(
        "remove: epoch 1 from {}; the removed validator stopped at {stuck}; {} transfers \
         committed ({after} after the boundary)",
        last + 1,
        accepted.len()
    );
}
