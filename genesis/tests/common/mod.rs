//! Shared fixtures: a valid genesis document as a JSON value, with deterministic keys.
#![allow(dead_code)]

use crypto::SecretKey;
use genesis::{Genesis, GenesisError};
use serde_json::{Value, json};

/// Hex public key of the key with seed `[n; 32]`.
pub fn pk(n: u8) -> String {
    SecretKey::from_seed([n; 32]).public().to_string()
}

/// Hex address of the key with seed `[n; 32]`.
pub fn addr(n: u8) -> String {
    ledger::Address::of(&SecretKey::from_seed([n; 32]).public()).to_string()
}

pub fn validator(i: u8) -> Value {
    json!({
        "name": format!("validator-{i}"),
        "consensus_key": pk(i + 1),
        "network_key": pk(i + 101),
        "p2p_address": format!("/ip4/127.0.0.1/tcp/{}", 26600 + u16::from(i)),
    })
}

/// A valid hotstuff genesis with `n` validators and two accounts.
pub fn valid_n(n: u8) -> Value {
    json!({
        "chain_id": "cairn-testnet",
        "genesis_time": "2026-11-23T00:00:00Z",
        "protocol": "hotstuff",
        "params": {
            "round_timeout_ms": 1000, "max_round_timeout_ms": 10000, "heartbeat_ms": 100,
            "max_block_txs": 4096, "max_block_bytes": 4194304,
            "checkpoint_interval": 16, "snapshot_interval": 1024
        },
        "validators": (0..n).map(validator).collect::<Vec<_>>(),
        "accounts": [
            {"address": addr(200), "balance": "1000000000"},
            {"address": addr(201), "balance": "2500"}
        ]
    })
}

pub fn valid() -> Value {
    valid_n(4)
}

pub fn parse(v: &Value) -> Result<Genesis, GenesisError> {
    Genesis::from_json(&serde_json::to_string_pretty(v).unwrap())
}

/// Asserts `v` is rejected at `path` with a message containing `fragment`.
pub fn assert_rejected(v: &Value, path: &str, fragment: &str) -> GenesisError {
    assert_text_rejected(&serde_json::to_string_pretty(v).unwrap(), path, fragment)
}

pub fn assert_text_rejected(text: &str, path: &str, fragment: &str) -> GenesisError {
    let err = Genesis::from_json(text).expect_err("document should be rejected");
    assert_eq!(err.path, path, "wrong path in: {err}");
    assert!(
        err.message.contains(fragment),
        "message {:?} lacks {fragment:?}",
        err.message
    );
    let shown = err.to_string();
    if path.is_empty() {
        assert_eq!(shown, err.message);
    } else {
        assert_eq!(shown, format!("{path}: {}", err.message));
    }
    err
}
