//! Valid genesis documents: parsing, defaults, fault-tolerance arithmetic and the hash.

mod common;

use common::{addr, parse, pk, valid, valid_n};
use genesis::{Genesis, Params, Protocol};
use serde_json::{Value, json};

#[test]
fn valid_file_parses() {
    let g = parse(&valid()).unwrap();
    assert_eq!(g.chain_id, "cairn-testnet");
    assert_eq!(g.genesis_time, "2026-11-23T00:00:00Z");
    assert_eq!(g.genesis_unix_seconds(), Ok(1_795_392_000));
    assert_eq!(g.protocol, Protocol::HotStuff);
    assert_eq!(g.params, Params::default());
    assert_eq!(g.validators.len(), 4);
    assert_eq!(g.validators[2].name, "validator-2");
    assert_eq!(g.validators[2].consensus_key.to_string(), pk(3));
    assert_eq!(g.validators[2].network_key.to_string(), pk(103));
    assert_eq!(g.validators[2].p2p_address, "/ip4/127.0.0.1/tcp/26602");
    assert_eq!(g.accounts[0].address.to_string(), addr(200));
    assert_eq!(g.accounts[0].balance, 1_000_000_000);
    assert_eq!(g.total_supply(), 1_000_002_500);
    assert_eq!(g.validate().unwrap(), Vec::<String>::new());
}

#[test]
fn params_and_each_param_are_optional() {
    let mut g = valid();
    g.as_object_mut().unwrap().remove("params");
    assert_eq!(parse(&g).unwrap().params, Params::default());
    g["params"] = json!({"round_timeout_ms": 2000});
    let p = parse(&g).unwrap().params;
    assert_eq!(p.round_timeout_ms, 2000);
    assert_eq!(p.max_round_timeout_ms, 10_000);
    assert_eq!(p.max_block_bytes, 4_194_304);
}

#[test]
fn validator_set_changes_are_off_by_default_and_on_for_bft_with_a_delay() {
    assert_eq!(Params::default().epoch_delay_blocks, 0);
    let g = parse(&valid()).unwrap();
    assert_eq!(g.governance(), None);
    assert_eq!(g.ledger_genesis().governance, None);
    let mut doc = valid();
    doc["params"]["epoch_delay_blocks"] = json!(100);
    let g = parse(&doc).unwrap();
    let gov = g.governance().expect("on with a delay");
    assert_eq!(gov.epoch_delay, 100);
    assert_eq!(gov.rule, ledger::validators::Rule::Bft);
    assert_eq!(g.ledger_genesis().governance, Some(gov));
    // Raft: approved by a majority.
    doc["protocol"] = json!("raft");
    let g = parse(&doc).unwrap();
    let gov = g.governance().expect("raft changes its members too");
    assert_eq!(gov.rule, ledger::validators::Rule::Majority);
    assert_eq!(gov.epoch_delay, 100);
    // Above the limit.
    let mut doc = valid();
    doc["params"]["epoch_delay_blocks"] = json!(1_000_001);
    let err = parse(&doc).unwrap_err().to_string();
    assert!(err.contains("above the limit"), "{err}");
}

#[test]
fn raw_transactions_are_off_by_default_and_warn_when_on() {
    assert!(!Params::default().raw_transactions);
    assert!(!parse(&valid()).unwrap().params.raw_transactions);
    let mut g = valid();
    g["params"]["raw_transactions"] = json!(true);
    let parsed = parse(&g).unwrap();
    assert!(parsed.params.raw_transactions);
    let warnings = parsed.validate().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("params.raw_transactions: true; anyone who can reach"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].ends_with("(use it for benchmarks only)"),
        "{warnings:?}"
    );
    // It round-trips through the JSON form.
    assert_eq!(
        parse(&serde_json::from_str(&parsed.to_json_pretty()).unwrap()),
        Ok(parsed)
    );
}

#[test]
fn empty_accounts_are_allowed_with_a_warning() {
    let mut g = valid();
    g["accounts"] = json!([]);
    let parsed = parse(&g).unwrap();
    assert_eq!(parsed.total_supply(), 0);
    let warnings = parsed.validate().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("accounts: empty"), "{warnings:?}");
}

#[test]
fn dns_and_ip6_addresses_are_accepted() {
    let mut g = valid();
    g["validators"][0]["p2p_address"] = json!("/dns/node0.example.com/tcp/26600");
    g["validators"][1]["p2p_address"] = json!("/ip6/::1/tcp/26600");
    assert!(parse(&g).is_ok());
}

#[test]
fn balance_may_be_a_json_number() {
    let mut g = valid();
    g["accounts"][0]["balance"] = json!(1_000_000_000u64);
    let from_number = parse(&g).unwrap();
    assert_eq!(from_number.accounts[0].balance, 1_000_000_000);
    assert_eq!(from_number.hash(), parse(&valid()).unwrap().hash());
    // Written back as a string.
    let text = from_number.to_json_pretty();
    assert!(text.contains("\"balance\": \"1000000000\""), "{text}");
}

#[test]
fn json_roundtrip() {
    let g = parse(&valid()).unwrap();
    assert_eq!(Genesis::from_json(&g.to_json_pretty()).unwrap(), g);
}

fn nfq(protocol: &str, n: u8) -> (usize, usize, usize) {
    let mut g = valid_n(n);
    g["protocol"] = json!(protocol);
    let g = parse(&g).unwrap();
    (g.n(), g.f(), g.quorum())
}

#[test]
fn bft_fault_tolerance() {
    for p in ["hotstuff", "pbft"] {
        assert_eq!(nfq(p, 4), (4, 1, 3), "{p}");
        assert_eq!(nfq(p, 5), (5, 1, 4), "{p}");
        assert_eq!(nfq(p, 6), (6, 1, 4), "{p}");
        assert_eq!(nfq(p, 7), (7, 2, 5), "{p}");
        assert_eq!(nfq(p, 10), (10, 3, 7), "{p}");
    }
}

#[test]
fn bft_quorums_intersect_in_f_plus_one_and_honest_nodes_suffice() {
    for n in 4..=40u8 {
        let (n, f, q) = nfq("hotstuff", n);
        // Two quorums share at least 2q - n validators; that must be at least f + 1.
        let overlap = (2 * q).saturating_sub(n);
        assert!(
            overlap > f,
            "n={n}: quorums of {q} may share only {overlap} ≤ f={f}"
        );
        assert!(
            q <= n - f,
            "n={n}: {q} votes cannot be gathered without the {f} faulty"
        );
    }
}

#[test]
fn raft_fault_tolerance() {
    assert_eq!(nfq("raft", 1), (1, 0, 1));
    assert_eq!(nfq("raft", 3), (3, 1, 2));
    assert_eq!(nfq("raft", 4), (4, 1, 3));
    assert_eq!(nfq("raft", 5), (5, 2, 3));
}

#[test]
fn raft_even_validator_count_warns() {
    let mut g = valid_n(4);
    g["protocol"] = json!("raft");
    let warnings = parse(&g).unwrap().validate().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .contains("raft with 4 validators tolerates 1 crash fault(s), no more than with 3"),
        "{warnings:?}"
    );
    g["validators"].as_array_mut().unwrap().pop();
    assert_eq!(parse(&g).unwrap().validate().unwrap(), Vec::<String>::new());
}

#[test]
fn protocol_names() {
    for (name, p) in [
        ("hotstuff", Protocol::HotStuff),
        ("pbft", Protocol::Pbft),
        ("raft", Protocol::Raft),
    ] {
        assert_eq!(name.parse::<Protocol>(), Ok(p));
        assert_eq!(p.to_string(), name);
        assert_eq!(p.is_bft(), name != "raft");
    }
    let err = "HotStuff".parse::<Protocol>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown protocol \"HotStuff\"; expected one of: hotstuff, pbft, raft"
    );
}

const REFORMATTED: &str = r#"{"validators":[
 {"p2p_address":"/ip4/127.0.0.1/tcp/26600","network_key":"NK0","name":"validator-0","consensus_key":"CK0"},
 {"network_key":"NK1","consensus_key":"CK1","p2p_address":"/ip4/127.0.0.1/tcp/26601","name":"validator-1"},
 {"name":"validator-2","p2p_address":"/ip4/127.0.0.1/tcp/26602","consensus_key":"CK2","network_key":"NK2"},
 {"name":"validator-3","consensus_key":"CK3","network_key":"NK3","p2p_address":"/ip4/127.0.0.1/tcp/26603"}],
     "accounts":[{"balance":1000000000,"address":"A0"},{"address":"A1","balance":"2500"}],
  "protocol":"hotstuff","genesis_time":"2026-11-23T00:00:00Z","chain_id":"cairn-testnet"}"#;

#[test]
fn hash_ignores_formatting_key_order_and_omitted_defaults() {
    let reference = parse(&valid()).unwrap().hash();
    let mut text = REFORMATTED.to_string();
    for i in 0..4u8 {
        text = text
            .replace(&format!("CK{i}"), &pk(i + 1))
            .replace(&format!("NK{i}"), &pk(i + 101));
    }
    text = text.replace("\"A0\"", &format!("\"{}\"", addr(200)));
    text = text.replace("\"A1\"", &format!("\"{}\"", addr(201)));
    assert_eq!(Genesis::from_json(&text).unwrap().hash(), reference);
    let compact = serde_json::to_string(&valid()).unwrap();
    assert_eq!(Genesis::from_json(&compact).unwrap().hash(), reference);
    let pretty = parse(&valid()).unwrap().to_json_pretty();
    assert_eq!(Genesis::from_json(&pretty).unwrap().hash(), reference);
}

#[test]
fn hash_changes_with_every_field() {
    type Edit = fn(&mut Value);
    let edits: Vec<(&str, Edit)> = vec![
        ("chain_id", |g| g["chain_id"] = json!("cairn-testnet2")),
        ("genesis_time", |g| {
            g["genesis_time"] = json!("2026-11-23T00:00:01Z")
        }),
        ("protocol", |g| g["protocol"] = json!("pbft")),
        ("round_timeout", |g| {
            g["params"]["round_timeout_ms"] = json!(1001)
        }),
        ("max_round_timeout", |g| {
            g["params"]["max_round_timeout_ms"] = json!(10001)
        }),
        ("heartbeat", |g| g["params"]["heartbeat_ms"] = json!(101)),
        ("max_block_txs", |g| {
            g["params"]["max_block_txs"] = json!(4097)
        }),
        ("max_block_bytes", |g| {
            g["params"]["max_block_bytes"] = json!(4194305)
        }),
        ("checkpoint", |g| {
            g["params"]["checkpoint_interval"] = json!(17)
        }),
        ("snapshot", |g| {
            g["params"]["snapshot_interval"] = json!(1025)
        }),
        ("raw transactions", |g| {
            g["params"]["raw_transactions"] = json!(true)
        }),
        ("epoch delay", |g| {
            g["params"]["epoch_delay_blocks"] = json!(100)
        }),
        ("name", |g| g["validators"][0]["name"] = json!("v0")),
        ("consensus_key", |g| {
            g["validators"][0]["consensus_key"] = json!(pk(50))
        }),
        ("network_key", |g| {
            g["validators"][0]["network_key"] = json!(pk(51))
        }),
        ("p2p", |g| {
            g["validators"][0]["p2p_address"] = json!("/ip4/127.0.0.1/tcp/1")
        }),
        ("validator order", |g| {
            g["validators"].as_array_mut().unwrap().swap(0, 1)
        }),
        ("extra validator", |g| {
            g["validators"]
                .as_array_mut()
                .unwrap()
                .push(common::validator(4))
        }),
        ("address", |g| {
            g["accounts"][0]["address"] = json!(addr(202))
        }),
        ("balance", |g| {
            g["accounts"][0]["balance"] = json!("1000000001")
        }),
        ("account order", |g| {
            g["accounts"].as_array_mut().unwrap().swap(0, 1)
        }),
        ("no accounts", |g| g["accounts"] = json!([])),
    ];
    let mut seen = vec![parse(&valid()).unwrap().hash()];
    for (what, edit) in edits {
        let mut g = valid();
        edit(&mut g);
        let h = parse(&g).unwrap_or_else(|e| panic!("{what}: {e}")).hash();
        assert!(
            !seen.contains(&h),
            "changing {what} did not change the hash"
        );
        seen.push(h);
    }
}

#[test]
fn hash_is_pinned() {
    // Guards the canonical encoding: if this changes, every existing chain's genesis hash
    // changes with it. (Last changed on purpose by params.epoch_delay_blocks, from
    // 45839e1dbe60c1463dd361cafde7eafe8a8e1653cb98d990c1683a52df55aebb.)
    assert_eq!(
        parse(&valid()).unwrap().hash().to_string(),
        "cb65822c14ad9ece190c0a129bab9d2f6fea08f92931bbc2c7367c4cbd1c52ca"
    );
}

#[test]
fn hash_is_sha256_of_the_tagged_canonical_encoding() {
    let g = parse(&valid()).unwrap();
    let encoded = crypto::codec::encode(&g);
    // The canonical encoding starts with the length-prefixed chain id...
    assert_eq!(encoded[..8], 13u64.to_le_bytes());
    assert_eq!(&encoded[8..21], b"cairn-testnet");
    // ...and ends with the last balance as a little-endian u64, not as a string.
    assert_eq!(encoded[encoded.len() - 8..], 2500u64.to_le_bytes());
    let tag = b"cairn/genesis/v1";
    let mut preimage = (tag.len() as u64).to_le_bytes().to_vec();
    preimage.extend_from_slice(tag);
    preimage.extend_from_slice(&(encoded.len() as u64).to_le_bytes());
    preimage.extend_from_slice(&encoded);
    assert_eq!(g.hash(), crypto::hash(&preimage));
}

#[test]
fn canonical_encoding_roundtrips() {
    let g = parse(&valid()).unwrap();
    let bytes = crypto::codec::encode(&g);
    let back: Genesis =
        crypto::codec::decode(&bytes, crypto::codec::DEFAULT_LIMIT, "genesis").unwrap();
    assert_eq!(back, g);
}

/// What a ledger starts from: every genesis validator in order (a validator's index is its
/// replica id), epoch 0 from height 1, nothing pending, a set that passes the ledger's own
/// rules; the accounts as listed; and no validator-set changes until a protocol can switch
/// sets (issue 21).
#[test]
fn the_ledger_starts_from_the_genesis_set_and_accounts() {
    use ledger::validators::{Rule, check_set};
    let g = parse(&valid()).unwrap();
    let l = g.ledger_genesis();
    let set = &l.validators;
    assert_eq!(
        (set.epoch, set.start_height, set.pending.clone()),
        (0, 1, None)
    );
    assert_eq!(set.members.len(), g.validators.len());
    for (m, v) in set.members.iter().zip(&g.validators) {
        assert_eq!(
            (&m.name, m.consensus_key, m.network_key, &m.p2p_address),
            (&v.name, v.consensus_key, v.network_key, &v.p2p_address)
        );
    }
    assert_eq!(check_set(&set.members, Rule::Bft), Ok(()));
    let accounts: Vec<_> = g.accounts.iter().map(|a| (a.address, a.balance)).collect();
    assert_eq!(l.accounts, accounts);
    assert_eq!(l.governance, None);
}
