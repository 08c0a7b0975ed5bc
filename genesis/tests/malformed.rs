//! Malformed genesis documents: each is rejected with the offending field's path and a
//! message saying what is wrong.

mod common;

use common::{assert_rejected, assert_text_rejected, pk, valid, valid_n};
use genesis::Genesis;
use serde_json::json;

#[test]
fn missing_chain_id() {
    let mut g = valid();
    g.as_object_mut().unwrap().remove("chain_id");
    assert_rejected(&g, "chain_id", "required field is missing");
}

#[test]
fn missing_field_in_a_validator() {
    let mut g = valid();
    g["validators"][2]
        .as_object_mut()
        .unwrap()
        .remove("network_key");
    assert_rejected(&g, "validators[2].network_key", "required field is missing");
}

#[test]
fn empty_chain_id() {
    let mut g = valid();
    g["chain_id"] = json!("");
    assert_rejected(&g, "chain_id", "must not be empty");
}

#[test]
fn chain_id_with_a_space() {
    let mut g = valid();
    g["chain_id"] = json!("cairn testnet");
    assert_rejected(&g, "chain_id", "contains ' ' at position 6");
}

#[test]
fn chain_id_too_long() {
    let mut g = valid();
    g["chain_id"] = json!("c".repeat(65));
    assert_rejected(&g, "chain_id", "is 65 characters long; the limit is 64");
}

#[test]
fn chain_id_of_wrong_type() {
    let mut g = valid();
    g["chain_id"] = json!(5);
    assert_rejected(
        &g,
        "chain_id",
        "invalid type: integer `5`, expected a string",
    );
}

#[test]
fn no_validators() {
    let mut g = valid();
    g["validators"] = json!([]);
    assert_rejected(&g, "validators", "at least one validator is required");
}

#[test]
fn three_validators_for_hotstuff() {
    assert_rejected(
        &valid_n(3),
        "validators",
        "hotstuff needs at least 4 validators (3f+1 with f ≥ 1), got 3",
    );
}

#[test]
fn one_validator_for_pbft() {
    let mut g = valid_n(1);
    g["protocol"] = json!("pbft");
    assert_rejected(
        &g,
        "validators",
        "pbft needs at least 4 validators (3f+1 with f ≥ 1), got 1",
    );
}

#[test]
fn duplicate_consensus_key() {
    let mut g = valid();
    g["validators"][3]["consensus_key"] = g["validators"][1]["consensus_key"].clone();
    assert_rejected(
        &g,
        "validators[3].consensus_key",
        "same key as validators[1].consensus_key",
    );
}

#[test]
fn duplicate_network_key() {
    let mut g = valid();
    g["validators"][2]["network_key"] = g["validators"][0]["network_key"].clone();
    assert_rejected(
        &g,
        "validators[2].network_key",
        "same key as validators[0].network_key",
    );
}

#[test]
fn consensus_key_not_hex() {
    let mut g = valid();
    g["validators"][1]["consensus_key"] = json!("zz".repeat(32));
    assert_rejected(
        &g,
        "validators[1].consensus_key",
        "expected 64 hex characters, got \"zzzz",
    );
}

#[test]
fn consensus_key_wrong_length() {
    let mut g = valid();
    g["validators"][1]["consensus_key"] = json!(&pk(1)[..62]);
    assert_rejected(
        &g,
        "validators[1].consensus_key",
        "expected 64 hex characters (32 bytes), got 31 bytes",
    );
}

#[test]
fn consensus_key_of_small_order() {
    let mut g = valid();
    g["validators"][2]["consensus_key"] =
        json!("0100000000000000000000000000000000000000000000000000000000000000");
    let err = assert_rejected(&g, "validators[2].consensus_key", "has small order");
    assert!(err.message.contains("cairnd keygen"), "{err}");
}

#[test]
fn network_key_not_on_the_curve() {
    let mut g = valid();
    g["validators"][0]["network_key"] =
        json!("0200000000000000000000000000000000000000000000000000000000000000");
    assert_rejected(
        &g,
        "validators[0].network_key",
        "not a valid ed25519 public key (the bytes do not decode to a curve point)",
    );
}

#[test]
fn bad_multiaddr() {
    let mut g = valid();
    g["validators"][1]["p2p_address"] = json!("127.0.0.1:26601");
    assert_rejected(
        &g,
        "validators[1].p2p_address",
        "\"127.0.0.1:26601\" is not a valid multiaddr",
    );
}

#[test]
fn multiaddr_without_tcp() {
    let mut g = valid();
    g["validators"][3]["p2p_address"] = json!("/ip4/127.0.0.1/udp/26603");
    assert_rejected(&g, "validators[3].p2p_address", "is not a TCP address");
}

#[test]
fn duplicate_p2p_address() {
    let mut g = valid();
    g["validators"][2]["p2p_address"] = json!("/ip4/127.0.0.1/tcp/26600");
    assert_rejected(
        &g,
        "validators[2].p2p_address",
        "is also the address of validators[0]",
    );
}

#[test]
fn duplicate_validator_name() {
    let mut g = valid();
    g["validators"][3]["name"] = json!("validator-1");
    assert_rejected(
        &g,
        "validators[3].name",
        "\"validator-1\" is also the name of validators[1]",
    );
}

#[test]
fn empty_validator_name() {
    let mut g = valid();
    g["validators"][0]["name"] = json!(" ");
    assert_rejected(&g, "validators[0].name", "must not be empty");
}

#[test]
fn duplicate_account() {
    let mut g = valid();
    g["accounts"][1]["address"] = g["accounts"][0]["address"].clone();
    let a = g["accounts"][0]["address"].as_str().unwrap().to_string();
    assert_rejected(
        &g,
        "accounts[1].address",
        &format!("{a} is also accounts[0].address"),
    );
}

#[test]
fn balances_sum_past_u64() {
    let mut g = valid();
    g["accounts"][0]["balance"] = json!("18446744073709551000");
    g["accounts"][1]["balance"] = json!("616");
    assert_rejected(
        &g,
        "accounts",
        "balances sum past the u64 limit (18446744073709551615) at accounts[1]",
    );
}

#[test]
fn balances_at_exactly_u64_max_are_fine() {
    let mut g = valid();
    g["accounts"][0]["balance"] = json!("18446744073709551000");
    g["accounts"][1]["balance"] = json!("615");
    assert_eq!(common::parse(&g).unwrap().total_supply(), u64::MAX);
}

#[test]
fn balance_past_u64() {
    let mut g = valid();
    g["accounts"][1]["balance"] = json!("18446744073709551616");
    assert_rejected(&g, "accounts[1].balance", "is past the u64 limit");
}

#[test]
fn balance_not_decimal() {
    let mut g = valid();
    g["accounts"][0]["balance"] = json!("1e9");
    assert_rejected(&g, "accounts[0].balance", "\"1e9\" is not a decimal number");
}

#[test]
fn balance_negative_number() {
    let mut g = valid();
    g["accounts"][0]["balance"] = json!(-5);
    assert_rejected(&g, "accounts[0].balance", "balance -5 is negative");
}

#[test]
fn account_address_wrong_length() {
    let mut g = valid();
    g["accounts"][0]["address"] = json!("abcd");
    assert_rejected(&g, "accounts[0].address", "got 2 bytes");
}

#[test]
fn unknown_protocol() {
    let mut g = valid();
    g["protocol"] = json!("tendermint");
    assert_rejected(
        &g,
        "protocol",
        "unknown variant `tendermint`, expected one of `hotstuff`, `pbft`, `raft`",
    );
}

#[test]
fn zero_round_timeout() {
    let mut g = valid();
    g["params"]["round_timeout_ms"] = json!(0);
    assert_rejected(&g, "params.round_timeout_ms", "must be greater than 0");
}

#[test]
fn zero_snapshot_interval() {
    let mut g = valid();
    g["params"] = json!({"snapshot_interval": 0});
    assert_rejected(
        &g,
        "params.snapshot_interval",
        "must be greater than 0 (the default is 1024",
    );
}

#[test]
fn max_timeout_below_initial() {
    let mut g = valid();
    g["params"]["max_round_timeout_ms"] = json!(500);
    assert_rejected(
        &g,
        "params.max_round_timeout_ms",
        "500 is less than round_timeout_ms (1000)",
    );
}

#[test]
fn heartbeat_not_below_timeout() {
    let mut g = valid();
    g["params"]["heartbeat_ms"] = json!(501);
    assert_rejected(
        &g,
        "params.heartbeat_ms",
        "501 must be at most half of round_timeout_ms (1000)",
    );
    g["params"]["heartbeat_ms"] = json!(500);
    assert!(Genesis::from_json(&serde_json::to_string(&g).unwrap()).is_ok());
}

#[test]
fn tiny_blocks() {
    let mut g = valid();
    g["params"]["max_block_bytes"] = json!(1023);
    assert_rejected(
        &g,
        "params.max_block_bytes",
        "1023 is below the minimum of 1024",
    );
}

#[test]
fn negative_param() {
    let mut g = valid();
    g["params"]["max_block_txs"] = json!(-1);
    assert_rejected(&g, "params.max_block_txs", "invalid value: integer `-1`");
}

#[test]
fn unknown_top_level_field() {
    let mut g = valid();
    g["chainid"] = json!("typo");
    assert_rejected(&g, "chainid", "unknown field `chainid`, expected one of");
}

#[test]
fn unknown_field_in_a_validator() {
    let mut g = valid();
    g["validators"][1]["power"] = json!(10);
    assert_rejected(&g, "validators[1].power", "unknown field `power`");
}

#[test]
fn unknown_field_in_params() {
    let mut g = valid();
    g["params"]["round_timeout"] = json!(10);
    assert_rejected(&g, "params.round_timeout", "unknown field `round_timeout`");
}

#[test]
fn unknown_field_in_an_account() {
    let mut g = valid();
    g["accounts"][0]["nonce"] = json!(1);
    assert_rejected(&g, "accounts[0].nonce", "unknown field `nonce`");
}

#[test]
fn invalid_json_reports_line_and_column() {
    let text =
        "{\n  \"chain_id\": \"cairn-testnet\",\n  \"genesis_time\" \"2026-11-23T00:00:00Z\"\n}";
    assert_text_rejected(text, "", "invalid JSON at line 3, column 18: expected `:`");
}

#[test]
fn truncated_json() {
    let text = "{\n  \"chain_id\": \"cairn-testnet\",\n";
    assert_text_rejected(
        text,
        "",
        "invalid JSON: the document ends early, at line 3 (EOF while parsing a value)",
    );
}

#[test]
fn trailing_text_after_json() {
    let text = format!("{}\n}}", serde_json::to_string_pretty(&valid()).unwrap());
    let lines = text.lines().count();
    assert_text_rejected(
        &text,
        "",
        &format!("invalid JSON at line {lines}, column 1: trailing characters"),
    );
}

#[test]
fn bad_genesis_time() {
    let mut g = valid();
    g["genesis_time"] = json!("23 Nov 2026");
    assert_rejected(
        &g,
        "genesis_time",
        "\"23 Nov 2026\" is not an RFC 3339 timestamp",
    );
}

#[test]
fn genesis_time_on_a_missing_day() {
    let mut g = valid();
    g["genesis_time"] = json!("2026-02-29T00:00:00Z");
    assert_rejected(
        &g,
        "genesis_time",
        "day 29 is out of range for 2026-02 (01-28)",
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let mut g = valid();
    g["params"]["heartbeat_ms"] = json!(5000);
    std::fs::write(&path, serde_json::to_string(&g).unwrap()).unwrap();
    let err = Genesis::load(&path).unwrap_err();
    assert_eq!(err.file.as_deref(), Some(path.as_path()));
    assert_eq!(err.path, "params.heartbeat_ms");
    assert!(
        err.to_string().starts_with(&format!(
            "{}: params.heartbeat_ms: 5000 must be at most half",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn load_of_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.json");
    let err = Genesis::load(&path).unwrap_err();
    assert_eq!(err.path, "");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read genesis file:", path.display())),
        "{err}"
    );
}

#[test]
fn duplicate_json_key() {
    let text = serde_json::to_string_pretty(&valid()).unwrap().replacen(
        "{",
        "{\n  \"chain_id\": \"other-chain\",",
        1,
    );
    assert_text_rejected(&text, "chain_id", "duplicate field `chain_id`");
}

#[test]
fn checkpoint_interval_over_the_limit() {
    let mut g = valid();
    g["params"]["checkpoint_interval"] = json!(257);
    assert_rejected(
        &g,
        "params.checkpoint_interval",
        "257 is above the limit of 256",
    );
    g["params"]["checkpoint_interval"] = json!(256);
    assert!(Genesis::from_json(&serde_json::to_string(&g).unwrap()).is_ok());
}
