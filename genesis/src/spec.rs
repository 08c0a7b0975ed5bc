//! The genesis document's types, its JSON form, its hash and its fault-tolerance arithmetic.

use crate::GenesisError;
use crypto::{Digest, Hasher, PublicKey};
use ledger::validators::{Governance, Member, ValidatorState};
use ledger::{Address, LedgerGenesis};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Domain tag of [`Genesis::hash`].
const HASH_TAG: &[u8] = b"cairn/genesis/v1";

/// Largest genesis file [`Genesis::load`] reads (256 MiB, about 3 million accounts): a bound
/// on memory, not a real limit.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// The consensus protocol a chain runs. Fixed at genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "hotstuff")]
    HotStuff,
    #[serde(rename = "pbft")]
    Pbft,
    #[serde(rename = "raft")]
    Raft,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::HotStuff, Protocol::Pbft, Protocol::Raft];

    /// True for the Byzantine-fault-tolerant protocols (hotstuff, pbft); false for raft,
    /// which tolerates only crash faults.
    pub fn is_bft(self) -> bool {
        matches!(self, Protocol::HotStuff | Protocol::Pbft)
    }

    /// The name used in genesis files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HotStuff => "hotstuff",
            Protocol::Pbft => "pbft",
            Protocol::Raft => "raft",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}; expected one of: hotstuff, pbft, raft")]
pub struct ParseProtocolError(pub String);

impl FromStr for Protocol {
    type Err = ParseProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParseProtocolError(s.to_string()))
    }
}

/// Consensus and block parameters. Every field is optional in JSON; missing ones take the
/// [`Default`] values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Initial round (view) timeout.
    pub round_timeout_ms: u64,
    /// Cap on the round timeout as it backs off.
    pub max_round_timeout_ms: u64,
    /// Leader heartbeat interval (raft), idle-proposal interval (BFT).
    pub heartbeat_ms: u64,
    pub max_block_txs: u32,
    pub max_block_bytes: u32,
    /// Blocks between PBFT checkpoints (k): the log holds at most 2k sequence numbers, and
    /// each vote's durable record carries the prepared ones, so keep it small (at most 256).
    pub checkpoint_interval: u64,
    /// Blocks between state snapshots.
    pub snapshot_interval: u64,
    /// Accept unsigned raw transactions (benchmarks only: anyone who can reach the API can
    /// then fill blocks for free). See `ledger::Payload::Raw`.
    pub raw_transactions: bool,
    /// Validator-set changes (BFT protocols; issue 21): 0 turns them off (the default, and
    /// the only value a raft chain accepts until its membership changes are built); `d ≥ 1`
    /// lets a governance transaction approved by a quorum of the current set change it,
    /// with effect after block `h + d` (`h`: the block that accepted the change), so that a
    /// joining validator has `d` blocks to connect and sync before it must vote.
    pub epoch_delay_blocks: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            round_timeout_ms: 1000,
            max_round_timeout_ms: 10_000,
            heartbeat_ms: 100,
            max_block_txs: 4096,
            max_block_bytes: 4 << 20,
            checkpoint_interval: 16,
            snapshot_interval: 1024,
            raw_transactions: false,
            epoch_delay_blocks: 0,
        }
    }
}

/// One validator of the initial set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorInfo {
    pub name: String,
    /// Signs proposals and votes.
    pub consensus_key: PublicKey,
    /// Authenticates the validator's peer-to-peer connections.
    pub network_key: PublicKey,
    /// Multiaddr others dial, e.g. `/ip4/127.0.0.1/tcp/26600`.
    pub p2p_address: String,
}

/// An account funded at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInfo {
    pub address: Address,
    /// A decimal string in JSON (`"1000000000"`), since JSON tools lose precision on large
    /// integers; a JSON number is accepted too. A `u64` in the canonical encoding.
    #[serde(serialize_with = "ser_balance", deserialize_with = "de_balance")]
    pub balance: u64,
}

/// The genesis document. Build it with [`Genesis::from_json`] or [`Genesis::load`], which
/// also [validate](Genesis::validate) it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    /// RFC 3339, e.g. `2026-11-23T00:00:00Z`.
    pub genesis_time: String,
    pub protocol: Protocol,
    #[serde(default)]
    pub params: Params,
    pub validators: Vec<ValidatorInfo>,
    #[serde(default)]
    pub accounts: Vec<AccountInfo>,
}

impl Genesis {
    /// Parses and validates a genesis document. Warnings from validation are dropped; call
    /// [`Genesis::validate`] again to get them.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let genesis: Genesis =
            serde_path_to_error::deserialize(&mut de).map_err(GenesisError::from_json_error)?;
        de.end().map_err(GenesisError::from_serde_json)?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Reads, parses and validates `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = read_bounded(path).map_err(|message| GenesisError {
            file: Some(path.to_path_buf()),
            path: String::new(),
            message,
        })?;
        Genesis::from_json(&text).map_err(|e| e.in_file(path))
    }

    /// The document as pretty-printed JSON with a trailing newline.
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain structs, strings and integers to JSON cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// sha256 of the canonical encoding (not of the JSON text): whitespace, key order, omitted
    /// defaults and balance-as-string-or-number do not change it.
    pub fn hash(&self) -> Digest {
        let mut h = Hasher::new();
        h.part(HASH_TAG).part(&crypto::codec::encode(self));
        h.finish()
    }

    /// Number of validators.
    pub fn n(&self) -> usize {
        self.validators.len()
    }

    /// Faults tolerated. BFT (hotstuff, pbft): `⌊(n−1)/3⌋` Byzantine validators. Raft:
    /// `⌊(n−1)/2⌋` crashed validators.
    pub fn f(&self) -> usize {
        self.rule().faults(self.n())
    }

    /// Votes needed to decide: [`ledger::validators::Rule::quorum`] (its docs say why the BFT
    /// quorum is `⌈(n+f+1)/2⌉` and not `2f+1`).
    pub fn quorum(&self) -> usize {
        self.rule().quorum(self.n())
    }

    /// Epoch 0: the genesis validators, in order (a validator's index is its replica id).
    /// Genesis validation has checked them.
    pub fn validator_state(&self) -> ValidatorState {
        ValidatorState::from_members(
            self.validators
                .iter()
                .map(|v| Member {
                    name: v.name.clone(),
                    consensus_key: v.consensus_key,
                    network_key: v.network_key,
                    p2p_address: v.p2p_address.clone(),
                })
                .collect(),
        )
    }

    /// How the validator set may change on this chain: `None` unless the chain sets
    /// `params.epoch_delay_blocks` (without it every change is refused, at admission with
    /// `governance_disabled` and at execution with a receipt saying so,
    /// `ledger::GOVERNANCE_DISABLED`). BFT chains approve changes by their consensus quorum,
    /// Raft chains by a majority ([`Genesis::rule`]).
    pub fn governance(&self) -> Option<Governance> {
        (self.params.epoch_delay_blocks > 0).then(|| Governance {
            rule: self.rule(),
            epoch_delay: self.params.epoch_delay_blocks,
        })
    }

    /// What a ledger for this chain starts from ([`Ledger::open_genesis`]): the accounts,
    /// the validator set and [`Genesis::governance`].
    ///
    /// [`Ledger::open_genesis`]: ledger::Ledger::open_genesis
    pub fn ledger_genesis(&self) -> LedgerGenesis {
        LedgerGenesis {
            accounts: self
                .accounts
                .iter()
                .map(|a| (a.address, a.balance))
                .collect(),
            validators: self.validator_state(),
            governance: self.governance(),
        }
    }

    /// The protocol's fault model, as the quorum rules know it.
    pub fn rule(&self) -> ledger::validators::Rule {
        if self.protocol.is_bft() {
            ledger::validators::Rule::Bft
        } else {
            ledger::validators::Rule::Majority
        }
    }

    /// Sum of all genesis balances. [`Genesis::validate`] rejects sums past `u64::MAX`; on an
    /// unvalidated document this saturates instead of overflowing.
    pub fn total_supply(&self) -> u64 {
        self.accounts
            .iter()
            .fold(0u64, |sum, a| sum.saturating_add(a.balance))
    }

    /// `genesis_time` as seconds since the Unix epoch.
    pub fn genesis_unix_seconds(&self) -> Result<i64, GenesisError> {
        crate::rfc3339::parse(&self.genesis_time)
            .map_err(|why| GenesisError::new("genesis_time", why))
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read genesis file: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; pass the path of a genesis.json".to_string());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "is {} bytes, over the {MAX_FILE_BYTES}-byte limit for a genesis file",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read genesis file: {e}"))
}

fn ser_balance<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&v.to_string())
    } else {
        s.serialize_u64(*v)
    }
}

fn de_balance<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a balance as a decimal string such as \"1000000000\"")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("balance {v} is negative")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
            Err(E::custom(format!(
                "balance {v} is not a whole number within the u64 range; \
                 write balances as decimal strings such as \"1000000000\""
            )))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!(
                    "balance {v:?} is not a decimal number; use digits only, e.g. \"1000000000\""
                )));
            }
            v.parse()
                .map_err(|_| E::custom(format!("balance {v} is past the u64 limit ({})", u64::MAX)))
        }
    }
    if d.is_human_readable() {
        d.deserialize_any(V)
    } else {
        d.deserialize_u64(V)
    }
}
