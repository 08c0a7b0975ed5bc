//! `cairn`: the wallet's commands.
//!
//! | Command | What it does |
//! |---|---|
//! | `keygen [--out FILE] [--force]` | writes a new key file (0600) |
//! | `address` | the wallet's account address |
//! | `balance [ADDR]` | balance and nonce of an account (default: the wallet's) |
//! | `nonce` | the wallet's committed nonce and the next one to use (`pending_nonce`) |
//! | `transfer --to ADDR --amount N [--wait] [--timeout SECS]` | signs and submits a transfer |
//! | `tx HASH` | where a transaction is: pending, in flight, committed, unknown |
//! | `status` | the node's chain, height, view, leader, peers |
//! | `config path\|show\|set\|remove` | named profiles in the user's config file ([`profile`]) |
//! | `completions SHELL` | a shell completion script |
//!
//! The network commands talk to one validator's HTTP API ([`crate::api`]) through
//! [`super::client`]: `--node URL`, else `$CAIRN_NODE`, else [`DEFAULT_NODE`]. `--json` prints
//! one JSON object on stdout for every command (64-bit integers as decimal strings, as in the
//! API); when the command fails the object also has `error` and `exit_code`.
//!
//! `transfer` takes the chain binding (chain id, genesis hash) from `GET /v1/status`. It signs
//! under the key's signing lock ([`super::nonces`]: `KEY.lock` beside the key file), with
//! nonce `max(the node's pending_nonce, the local record KEY.nonce)`, submits (`sync`) and
//! records the nonce as taken before it lets the next process sign: several `cairn`
//! processes using one key on one machine each sign their own nonce, through any validator.
//!
//! **Re-signing.** A transfer whose nonce turns out to be taken is signed again with the next
//! nonce, at most [`MAX_ATTEMPTS`] signatures in all, but only when the earlier signature is
//! known to have changed nothing and never to apply later:
//! - refused at admission with `nonce_used` (the account's nonce is already past it) or
//!   `nonce_conflict` (another transaction holds that nonce in the validator's pool; ours was
//!   never pooled anywhere);
//! - while waiting, committed with a failed receipt `nonce_too_low` (another transaction used
//!   the nonce first), or refused on resubmission with `nonce_used` after the validator
//!   dropped it from its pool (the node checks its store first, so that refusal means another
//!   transaction took the nonce).
//!
//! A transaction whose fate is open (no answer, pending at the timeout) is never replaced.
//!
//! **Duplicates.** Signatures are deterministic: the same key, nonce, recipient and amount
//! give the same transaction. When the node answers that it already had the exact
//! transaction (`known`: submitted before by another process or machine with this key),
//! `transfer` says so and exits [`EXIT_DUPLICATE`]: this command made no new payment. Run it
//! again to pay again (the nonce after it is then used). `--nonce N` pins the nonce: the user
//! asks for that exact transaction, so a known one is simply resent (exit by its status) and
//! nothing is re-signed.
//!
//! `--wait` asks the node to wait for the block (`mode=commit`) and then polls
//! `GET /v1/transactions/{hash}` until the transaction commits or `--timeout` runs out (if the
//! node forgets it, e.g. after a restart, it is resubmitted: the hash is the idempotency key,
//! it never applies twice).
//!
//! Exit codes ([`EXIT_OK`] .. [`EXIT_DUPLICATE`]):
//!
//! | Code | Meaning |
//! |---|---|
//! | 0 | done; the transaction committed (`transfer --wait`, `tx`) or was accepted (`transfer`) |
//! | 1 | not done: the node refused the transaction, it committed with a failed receipt, the re-signing attempts ran out, or another process held the key's signing lock too long; nothing was paid by this command |
//! | 2 | usage or input error: bad flag, address, hash, amount, node URL (or a path the node has no endpoint for) or key file |
//! | 3 | outcome unknown: `--wait` timed out, or the transaction is pending or unknown to the node; the hash is printed, check later with `cairn tx HASH` |
//! | 4 | node unreachable: no connection, no answer, HTTP 5xx (503), or not a Cairn API answer |
//! | 5 | duplicate: the node already had this exact transaction (another process or machine sent it); this command made no new payment |
//! | 6 | `--verify`: the answer did not verify (a certificate, header or proof check failed); the message says which |

use super::CliError;
use super::client::{self, ClientError, DEFAULT_NODE, Mode, NodeClient, REQUEST_TIMEOUT};
use super::nonces::{self, SigningLock};
use crate::api::{AccountView, TxReceipt, TxStatus};
use crypto::{Digest, SecretKey};
use genesis::keyfile::{replace_key_file, try_generate_key};
use genesis::{load_key_file, write_key_file};
use ledger::{Address, Payload, Transaction};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use transfer::{Order, transfer, warn};

mod args;

pub use args::{Cli, Command, ConfigCommand, Output, ValidatorsCommand};

/// Success: done, committed, or (`transfer` without `--wait`) accepted by the node.
pub const EXIT_OK: u8 = 0;
/// The node refused the transaction, or it committed with a failed receipt.
pub const EXIT_REJECTED: u8 = 1;
/// Usage or input error (clap's own usage errors exit 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// The transaction's outcome is not known (yet): `--wait` timed out, or it is pending or
/// unknown to the node. The hash is printed.
pub const EXIT_UNKNOWN: u8 = 3;
/// The node could not be reached or gave no usable answer.
pub const EXIT_UNREACHABLE: u8 = 4;
/// The node already had this exact transaction: this command made no new payment.
pub const EXIT_DUPLICATE: u8 = 5;

/// How many signatures `transfer` makes at most when nonces turn out to be taken.
pub const MAX_ATTEMPTS: u32 = 5;
/// Interval of `transfer --wait`'s status polls.
const POLL: Duration = Duration::from_millis(200);

/// A failed command: the error (exit code and `error:` line) and, for `--json`, the object to
/// print on stdout (the transaction's status when there is one).
#[derive(Debug)]
pub struct Fail {
    pub error: CliError,
    pub json: Option<Value>,
}

impl Fail {
    fn new(code: u8, message: impl std::fmt::Display) -> Fail {
        Fail {
            error: CliError {
                code,
                message: message.to_string(),
            },
            json: None,
        }
    }

    fn with_json(mut self, json: Value) -> Fail {
        self.json = Some(json);
        self
    }
}

impl From<CliError> for Fail {
    fn from(error: CliError) -> Fail {
        Fail { error, json: None }
    }
}

impl From<genesis::KeyFileError> for Fail {
    fn from(e: genesis::KeyFileError) -> Fail {
        CliError::from(e).into()
    }
}

/// A failed query: the node gave no usable answer (or the node URL's path is wrong).
fn query_fail(e: ClientError) -> Fail {
    match e {
        ClientError::WrongPath(m) => Fail::new(EXIT_USAGE, m),
        e => Fail::new(EXIT_UNREACHABLE, e),
    }
}

/// Entry point of the `cairn` binary.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let applied = match cli.command {
        // These edit or do not need the profiles: none applies.
        Command::Config(_) | Command::Completions { .. } => Ok(()),
        _ => profile::apply(&mut cli, &matches),
    };
    match applied.and_then(|()| run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => {
            if cli.json {
                let mut obj = match fail.json {
                    Some(Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                obj.insert("error".into(), json!(fail.error.message));
                obj.insert("exit_code".into(), json!(fail.error.code));
                print_json(&Value::Object(obj));
            }
            eprintln!("error: {}", fail.error.message);
            ExitCode::from(fail.error.code)
        }
    }
}

mod profile;
mod transfer;
mod validators;
mod verify;
pub use verify::EXIT_UNVERIFIED;

pub fn run(cli: &Cli) -> Result<(), Fail> {
    match &cli.command {
        Command::Keygen { out, force } => keygen(cli, out.as_ref().unwrap_or(&cli.key), *force),
        Command::Address => address(cli),
        Command::Balance {
            address,
            verify,
            linearizable,
        } => verify::balance(cli, address.as_ref(), *verify, *linearizable),
        Command::Nonce { reset } => nonce(cli, *reset),
        Command::Transfer {
            to,
            amount,
            wait,
            nonce,
        } => transfer(
            cli,
            Order {
                payload: Payload::Transfer {
                    to: *to,
                    amount: *amount,
                },
                wait: wait.duration(),
                pinned: *nonce,
            },
        ),
        Command::Tx { hash, verify } => tx(cli, hash, *verify),
        Command::Status => status(cli),
        Command::Validators(command) => validators::run(cli, command),
        Command::Config(command) => profile::run(cli, command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "cairn", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn print_json(value: &Value) {
    super::print_json(value);
}

/// Prints `key: value` lines with the values aligned (in one column across calls).
fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len() + 2).fold(15, usize::max);
    let mut out = std::io::stdout().lock();
    for (k, v) in fields {
        let _ = writeln!(out, "{:<width$}{v}", format!("{k}:"));
    }
    let _ = out.flush();
}

fn load_key(cli: &Cli) -> Result<SecretKey, Fail> {
    Ok(load_key_file(&cli.key)?)
}

/// The node to talk to: `--node`, else `$CAIRN_NODE`, else [`DEFAULT_NODE`].
fn node(cli: &Cli) -> Result<NodeClient, Fail> {
    let (source, raw) = match (&cli.node, std::env::var("CAIRN_NODE")) {
        (Some(n), _) => ("--node", n.clone()),
        (None, Ok(env)) if !env.trim().is_empty() => ("CAIRN_NODE", env),
        _ => ("--node", DEFAULT_NODE.to_string()),
    };
    let base = client::parse_node_url(source, &raw).map_err(|e| Fail::new(EXIT_USAGE, e))?;
    NodeClient::new(base).map_err(|e| Fail::new(EXIT_UNREACHABLE, e))
}

fn keygen(cli: &Cli, out: &Path, force: bool) -> Result<(), Fail> {
    let key = try_generate_key()?;
    if force {
        replace_key_file(out, &key)?;
    } else {
        write_key_file(out, &key)?;
    }
    let public = key.public();
    let address = Address::of(&public);
    if cli.json {
        print_json(&json!({
            "file": out.display().to_string(),
            "address": address.to_string(),
            "public_key": public.to_string(),
        }));
    } else {
        println!("wrote {}", out.display());
        println!("address: {address}");
        println!("public_key: {public}");
    }
    Ok(())
}

fn address(cli: &Cli) -> Result<(), Fail> {
    let public = load_key(cli)?.public();
    let address = Address::of(&public);
    if cli.json {
        print_json(&json!({
            "address": address.to_string(),
            "public_key": public.to_string(),
        }));
    } else {
        println!("{address}");
    }
    Ok(())
}

fn account_json(a: &AccountView) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

fn nonce(cli: &Cli, reset: bool) -> Result<(), Fail> {
    let address = Address::of(&load_key(cli)?.public());
    if reset {
        let lock = SigningLock::acquire(&cli.key, warn).map_err(|e| Fail::new(EXIT_REJECTED, e))?;
        let had = lock.reset().map_err(|e| Fail::new(EXIT_REJECTED, e))?;
        if cli.json {
            print_json(&json!({ "address": address.to_string(), "reset": had }));
        } else if had {
            println!("removed {}", nonces::record_path(&cli.key).display());
        } else {
            println!(
                "no nonce record at {}",
                nonces::record_path(&cli.key).display()
            );
        }
        return Ok(());
    }
    let node = node(cli)?;
    let account = node.account(&address).map_err(query_fail)?;
    let record = nonces::read_record(&cli.key).filter(|r| r.address == address);
    let now_ms = nonces::now_ms();
    let local = record.as_ref().map(|r| {
        let age = r.age(now_ms);
        let fresh = age <= nonces::RECORD_FRESH;
        (r.next_nonce, age.as_secs(), fresh)
    });
    if cli.json {
        let mut v = json!({
            "address": account.address.to_string(),
            "nonce": account.nonce.to_string(),
            "pending_nonce": account.pending_nonce.to_string(),
        });
        if let Some((next, age, fresh)) = local {
            v["local_next_nonce"] = json!(next.to_string());
            v["local_age_secs"] = json!(age.to_string());
            v["local_fresh"] = json!(fresh);
        }
        print_json(&v);
    } else {
        let mut f = vec![
            ("address", account.address.to_string()),
            ("nonce", account.nonce.to_string()),
            ("pending_nonce", account.pending_nonce.to_string()),
        ];
        if let Some((next, age, fresh)) = local {
            let state = if fresh { "used" } else { "stale, ignored" };
            f.push((
                "local_next_nonce",
                format!("{next} (recorded {age}s ago; {state})"),
            ));
        }
        print_fields(&f);
    }
    Ok(())
}

fn status(cli: &Cli) -> Result<(), Fail> {
    let node = node(cli)?;
    let s = node.status().map_err(query_fail)?;
    if cli.json {
        let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("node".into(), json!(node.base()));
        }
        print_json(&v);
    } else {
        let n = &s.node;
        let peers = if n.peers.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", n.peers.len(), n.peers.join(", "))
        };
        print_fields(&[
            ("node", node.base().to_string()),
            ("chain_id", n.chain_id.clone()),
            ("genesis_hash", s.genesis_hash.to_string()),
            ("protocol", n.protocol.clone()),
            ("height", n.height.to_string()),
            ("latest_hash", n.latest_hash.to_string()),
            ("view", n.view.to_string()),
            (
                "leader",
                n.leader
                    .map_or("none (election)".to_string(), |l| l.to_string()),
            ),
            ("peers", peers),
            ("catching_up", n.catching_up.to_string()),
            ("mempool_size", n.mempool_size.to_string()),
        ]);
    }
    Ok(())
}

/// The status's own fields as `key: value` lines (the hash is printed separately).
fn status_fields(s: &TxStatus) -> Vec<(&'static str, String)> {
    match s {
        TxStatus::Pending { .. } => vec![("status", "pending".into())],
        TxStatus::InFlight { .. } => vec![("status", "in_flight".into())],
        TxStatus::Committed {
            height,
            index,
            receipt,
            ..
        } => vec![
            ("status", "committed".into()),
            ("height", height.to_string()),
            ("index", index.to_string()),
            ("receipt", receipt_text(receipt)),
        ],
        TxStatus::Rejected {
            reason, retryable, ..
        } => vec![
            ("status", "rejected".into()),
            ("reason", reason.clone()),
            ("retryable", retryable.to_string()),
        ],
        TxStatus::Pruned {
            kept_from, hint, ..
        } => vec![
            ("status", "pruned".into()),
            ("kept_from", kept_from.to_string()),
            ("hint", hint.clone()),
        ],
        TxStatus::Unknown { hint, .. } => {
            let mut v = vec![("status", "unknown".into())];
            if let Some(h) = hint {
                v.push(("hint", h.clone()));
            }
            v
        }
    }
}

fn receipt_text(r: &TxReceipt) -> String {
    match (r.ok, &r.reason) {
        (true, _) => "ok".into(),
        (false, Some(reason)) => format!("failed: {reason}"),
        (false, None) => "failed".into(),
    }
}

fn status_json(s: &TxStatus) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// The exit code and message for a transaction in status `s` (None: committed and applied).
fn outcome(s: &TxStatus, node: &str) -> Option<Fail> {
    let hash = client::status_hash(s);
    let later = format!("check again later with `cairn tx {hash}`");
    match s {
        TxStatus::Committed { receipt, .. } if receipt.ok => None,
        TxStatus::Committed {
            height, receipt, ..
        } => Some(Fail::new(
            EXIT_REJECTED,
            format!(
                "transaction {hash} was committed in block {height} but failed: {}; it changed \
                 nothing",
                receipt.reason.as_deref().unwrap_or("no reason given")
            ),
        )),
        TxStatus::Rejected { reason, .. } => Some(Fail::new(
            EXIT_REJECTED,
            format!("node {node} rejected transaction {hash}: {reason}"),
        )),
        TxStatus::Pending { .. } => Some(Fail::new(
            EXIT_UNKNOWN,
            format!(
                "transaction {hash} is not committed yet (pending in the pool of {node}); {later}"
            ),
        )),
        TxStatus::InFlight { .. } => Some(Fail::new(
            EXIT_UNKNOWN,
            format!("transaction {hash} is not committed yet (in flight: being ordered); {later}"),
        )),
        TxStatus::Pruned { hint, .. } => Some(Fail::new(
            EXIT_UNKNOWN,
            format!("node {node} cannot tell about transaction {hash}: {hint}"),
        )),
        TxStatus::Unknown { hint, .. } => Some(Fail::new(
            EXIT_UNKNOWN,
            format!(
                "node {node} does not know transaction {hash}: {}",
                hint.as_deref()
                    .unwrap_or("not committed and not in its pool")
            ),
        )),
    }
}

fn tx(cli: &Cli, hash: &Digest, verify: bool) -> Result<(), Fail> {
    if verify {
        verify::trust(cli)?;
    }
    let node = node(cli)?;
    let s = node
        .tx_with(hash, REQUEST_TIMEOUT, verify)
        .map_err(query_fail)?;
    let mut json = status_json(&s);
    if verify && matches!(s, TxStatus::Committed { .. }) {
        verify::check_tx(cli, &node, &s).map_err(|f| f.with_json(json.clone()))?;
        // Inclusion only: the receipt's outcome is not in the header.
        json["verified"] = json!("inclusion");
    }
    if !cli.json {
        let mut fields = vec![("hash", hash.to_string())];
        fields.extend(status_fields(&s));
        if json.get("verified").is_some() {
            fields.push((
                "verified",
                "included in a block certified by 2f+1 genesis validators (the receipt's outcome \
                 is not in the header: it is this validator's word)"
                    .into(),
            ));
        }
        print_fields(&fields);
    }
    match outcome(&s, node.base()) {
        None => {
            if cli.json {
                print_json(&json);
            }
            Ok(())
        }
        Some(fail) => Err(fail.with_json(json)),
    }
}

#[cfg(test)]
mod tests {
    use super::args::{parse_address, parse_hash};
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            EXIT_OK,
            EXIT_REJECTED,
            EXIT_USAGE,
            EXIT_UNKNOWN,
            EXIT_UNREACHABLE,
            EXIT_DUPLICATE,
            EXIT_UNVERIFIED,
        ];
        for (i, a) in codes.iter().enumerate() {
            for b in &codes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(EXIT_USAGE, 2, "clap's usage errors exit 2");
    }

    #[test]
    fn addresses_and_hashes_accept_0x() {
        let a = "00112233445566778899aabbccddeeff00112233";
        assert_eq!(parse_address(&format!("0x{a}")).unwrap().to_string(), a);
        assert!(parse_address("xyz").unwrap_err().contains("40 hex"));
        let h = "ab".repeat(32);
        assert_eq!(parse_hash(&format!("0X{h}")).unwrap().to_string(), h);
        assert!(parse_hash("ab").unwrap_err().contains("64 hex"));
    }
}
