//! [`Genesis::validate`]: every rule a genesis document must meet, each failing with the
//! field's path and what to change.

use crate::{AccountInfo, Genesis, GenesisError, Params, ValidatorInfo};
use crypto::PublicKey;
use multiaddr::{Multiaddr, Protocol as Proto};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

const MAX_CHAIN_ID_LEN: usize = 64;
const MIN_BLOCK_BYTES: u32 = 1024;

impl Genesis {
    /// Checks every rule; returns the first violation, or the warnings (legal but probably
    /// unintended choices, such as raft with an even number of validators).
    pub fn validate(&self) -> Result<Vec<String>, GenesisError> {
        let mut warnings = Vec::new();
        check_chain_id(&self.chain_id)?;
        crate::rfc3339::parse(&self.genesis_time).map_err(|why| {
            GenesisError::new(
                "genesis_time",
                format!(
                    "{:?} is not an RFC 3339 timestamp: {why}; use a UTC time such as \
                     \"2026-11-23T00:00:00Z\"",
                    self.genesis_time
                ),
            )
        })?;
        check_params(&self.params)?;
        if self.params.raw_transactions {
            warnings.push(
                "params.raw_transactions: true; anyone who can reach a validator's API can \
                 fill blocks with unsigned transactions for free (use it for benchmarks only)"
                    .into(),
            );
        }
        self.check_validator_count(&mut warnings)?;
        check_validators(&self.validators)?;
        check_accounts(&self.accounts, &mut warnings)?;
        Ok(warnings)
    }

    fn check_validator_count(&self, warnings: &mut Vec<String>) -> Result<(), GenesisError> {
        let n = self.n();
        if n == 0 {
            return Err(GenesisError::new(
                "validators",
                "at least one validator is required",
            ));
        }
        if self.protocol.is_bft() && n < 4 {
            return Err(GenesisError::new(
                "validators",
                format!(
                    "{} needs at least 4 validators (3f+1 with f ≥ 1), got {n}; \
                     add validators or use raft",
                    self.protocol
                ),
            ));
        }
        if !self.protocol.is_bft() && n.is_multiple_of(2) {
            warnings.push(format!(
                "validators: raft with {n} validators tolerates {} crash fault(s), no more \
                 than with {}; an odd number of validators is recommended",
                self.f(),
                n - 1
            ));
        }
        Ok(())
    }
}

fn check_chain_id(id: &str) -> Result<(), GenesisError> {
    let err = |msg: String| Err(GenesisError::new("chain_id", msg));
    if id.is_empty() {
        return err("must not be empty; use a short name such as \"cairn-testnet\"".into());
    }
    let len = id.chars().count();
    if len > MAX_CHAIN_ID_LEN {
        return err(format!(
            "is {len} characters long; the limit is {MAX_CHAIN_ID_LEN}"
        ));
    }
    if let Some((i, c)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return err(format!(
            "{id:?} contains {c:?} at position {}; use only letters A-Z a-z, digits, '.', '_' \
             and '-'",
            i + 1
        ));
    }
    Ok(())
}

/// Largest `params.checkpoint_interval` accepted.
pub const MAX_CHECKPOINT_INTERVAL: u64 = 256;
/// Largest `params.epoch_delay_blocks` accepted (a change waits at most this long).
pub const MAX_EPOCH_DELAY_BLOCKS: u64 = 1_000_000;

fn check_params(p: &Params) -> Result<(), GenesisError> {
    let err = |field: &str, msg: String| Err(GenesisError::new(format!("params.{field}"), msg));
    let d = Params::default();
    let positive = [
        ("round_timeout_ms", p.round_timeout_ms, d.round_timeout_ms),
        (
            "max_round_timeout_ms",
            p.max_round_timeout_ms,
            d.max_round_timeout_ms,
        ),
        ("heartbeat_ms", p.heartbeat_ms, d.heartbeat_ms),
        (
            "max_block_txs",
            p.max_block_txs.into(),
            d.max_block_txs.into(),
        ),
        (
            "max_block_bytes",
            p.max_block_bytes.into(),
            d.max_block_bytes.into(),
        ),
        (
            "checkpoint_interval",
            p.checkpoint_interval,
            d.checkpoint_interval,
        ),
        (
            "snapshot_interval",
            p.snapshot_interval,
            d.snapshot_interval,
        ),
    ];
    if let Some((field, _, default)) = positive.iter().find(|(_, v, _)| *v == 0) {
        return err(
            field,
            format!("must be greater than 0 (the default is {default}; omit the field to use it)"),
        );
    }
    if p.max_round_timeout_ms < p.round_timeout_ms {
        return err(
            "max_round_timeout_ms",
            format!(
                "{} is less than round_timeout_ms ({}); the cap on the timeout must be at \
                 least the initial timeout",
                p.max_round_timeout_ms, p.round_timeout_ms
            ),
        );
    }
    if p.checkpoint_interval > MAX_CHECKPOINT_INTERVAL {
        return err(
            "checkpoint_interval",
            format!(
                "{} is above the limit of {MAX_CHECKPOINT_INTERVAL}: a PBFT replica keeps 2× this \
                 many sequence numbers and writes their prepared certificates with every vote",
                p.checkpoint_interval
            ),
        );
    }
    if p.heartbeat_ms.saturating_mul(2) > p.round_timeout_ms {
        return err(
            "heartbeat_ms",
            format!(
                "{} must be at most half of round_timeout_ms ({}), or followers time out \
                 while an idle leader waits (BFT) or between heartbeats (raft)",
                p.heartbeat_ms, p.round_timeout_ms
            ),
        );
    }
    if p.epoch_delay_blocks > MAX_EPOCH_DELAY_BLOCKS {
        return err(
            "epoch_delay_blocks",
            format!(
                "{} is above the limit of {MAX_EPOCH_DELAY_BLOCKS} blocks",
                p.epoch_delay_blocks
            ),
        );
    }
    if p.max_block_bytes < MIN_BLOCK_BYTES {
        return err(
            "max_block_bytes",
            format!(
                "{} is below the minimum of {MIN_BLOCK_BYTES} bytes",
                p.max_block_bytes
            ),
        );
    }
    Ok(())
}

fn check_validators(validators: &[ValidatorInfo]) -> Result<(), GenesisError> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut consensus: HashMap<PublicKey, usize> = HashMap::new();
    let mut network: HashMap<PublicKey, usize> = HashMap::new();
    let mut addrs: HashMap<String, usize> = HashMap::new();
    for (i, v) in validators.iter().enumerate() {
        let at = |field: &str| format!("validators[{i}].{field}");
        if v.name.trim().is_empty() {
            return Err(GenesisError::new(
                at("name"),
                "must not be empty; name each validator, e.g. \"validator-0\"",
            ));
        }
        unique(&mut names, v.name.as_str(), i, |j| {
            GenesisError::new(
                at("name"),
                format!(
                    "{:?} is also the name of validators[{j}]; names must be unique",
                    v.name
                ),
            )
        })?;
        check_key(&v.consensus_key, &at("consensus_key"))?;
        unique(&mut consensus, v.consensus_key, i, |j| {
            GenesisError::new(
                at("consensus_key"),
                format!(
                    "same key as validators[{j}].consensus_key; every validator needs its own \
                     key (generate one with `cairnd keygen`)"
                ),
            )
        })?;
        check_key(&v.network_key, &at("network_key"))?;
        unique(&mut network, v.network_key, i, |j| {
            GenesisError::new(
                at("network_key"),
                format!(
                    "same key as validators[{j}].network_key; every validator needs its own \
                     key (generate one with `cairnd keygen`)"
                ),
            )
        })?;
        let addr = check_p2p_address(&v.p2p_address, false)
            .map_err(|why| GenesisError::new(at("p2p_address"), why))?;
        unique(&mut addrs, addr, i, |j| {
            GenesisError::new(
                at("p2p_address"),
                format!(
                    "{} is also the address of validators[{j}]; each validator needs its own",
                    v.p2p_address
                ),
            )
        })?;
    }
    Ok(())
}

/// Records `key` for entry `i`; if an earlier entry `j` has it, returns `dup(j)`.
fn unique<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    key: K,
    i: usize,
    dup: impl FnOnce(usize) -> GenesisError,
) -> Result<(), GenesisError> {
    match seen.entry(key) {
        Entry::Vacant(e) => {
            e.insert(i);
            Ok(())
        }
        Entry::Occupied(e) => Err(dup(*e.get())),
    }
}

fn check_key(key: &PublicKey, path: &str) -> Result<(), GenesisError> {
    key.validate().map_err(|e| {
        GenesisError::new(
            path,
            format!("{e}; generate a fresh key with `cairnd keygen`"),
        )
    })
}

/// Checks that `s` is a multiaddr of the form `/{ip4,ip6,dns,dns4,dns6}/HOST/tcp/PORT` and
/// returns its normalized text. Port 0 is refused unless `allow_port_zero` (a listen address
/// may ask the OS for a port; an address others dial may not).
pub(crate) fn check_p2p_address(s: &str, allow_port_zero: bool) -> Result<String, String> {
    const FORM: &str = "expected the form /ip4/HOST/tcp/PORT (or /ip6/, /dns/, /dns4/, /dns6/), \
                        e.g. /ip4/127.0.0.1/tcp/26600";
    let addr: Multiaddr = s
        .parse()
        .map_err(|e| format!("{s:?} is not a valid multiaddr ({e}); {FORM}"))?;
    let parts: Vec<Proto<'_>> = addr.iter().collect();
    let host_ok = |p: &Proto<'_>| {
        matches!(
            p,
            Proto::Ip4(_) | Proto::Ip6(_) | Proto::Dns(_) | Proto::Dns4(_) | Proto::Dns6(_)
        )
    };
    match parts.as_slice() {
        [host, Proto::Tcp(port)] if host_ok(host) => {
            if *port == 0 && !allow_port_zero {
                return Err(format!("{s:?} has port 0; give the real TCP port"));
            }
            Ok(addr.to_string())
        }
        _ => Err(format!("{s:?} is not a TCP address; {FORM}")),
    }
}

fn check_accounts(
    accounts: &[AccountInfo],
    warnings: &mut Vec<String>,
) -> Result<(), GenesisError> {
    if accounts.is_empty() {
        warnings.push("accounts: empty; the chain starts with no funds (total supply 0)".into());
    }
    let mut seen: HashMap<ledger::Address, usize> = HashMap::new();
    let mut total: u64 = 0;
    for (i, a) in accounts.iter().enumerate() {
        unique(&mut seen, a.address, i, |j| {
            GenesisError::new(
                format!("accounts[{i}].address"),
                format!(
                    "{} is also accounts[{j}].address; list each account once (add the \
                     balances together)",
                    a.address
                ),
            )
        })?;
        if a.balance == 0 {
            warnings.push(format!(
                "accounts[{i}]: balance is 0; the entry has no effect"
            ));
        }
        total = total.checked_add(a.balance).ok_or_else(|| {
            GenesisError::new(
                "accounts",
                format!(
                    "balances sum past the u64 limit ({}) at accounts[{i}]; lower the balances",
                    u64::MAX
                ),
            )
        })?;
    }
    Ok(())
}
