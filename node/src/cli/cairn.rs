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

use super::CliError;
use super::client::{self, ClientError, DEFAULT_NODE, Mode, NodeClient, REQUEST_TIMEOUT};
use super::nonces::{self, SigningLock};
use crate::api::{AccountView, Submitted, TxReceipt, TxStatus};
use clap::{Parser, Subcommand};
use crypto::{Digest, SecretKey};
use genesis::keyfile::{replace_key_file, try_generate_key};
use genesis::{load_key_file, write_key_file};
use ledger::{Address, Payload, Transaction};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
/// Longest `--timeout`.
const MAX_TIMEOUT_SECS: u64 = 86_400;

const LONG_ABOUT: &str = "\
Cairn wallet: keys, balances and transfers through a validator's HTTP API.

The node is --node URL, else $CAIRN_NODE, else http://127.0.0.1:27600 (validator-0 of \
`cairnd testnet` / `cairnd localnet` with the default base port 26600). --json prints one JSON \
object on stdout for every command (64-bit integers as decimal strings, as in the API; on \
failure it also has \"error\" and \"exit_code\"). Errors go to stderr as `error: ...`.

Concurrent use: processes using one key file on one machine take turns to sign (the lock \
KEY.lock, the record KEY.nonce beside the key), so each signs its own nonce; a transfer whose \
nonce was taken and that changed nothing is signed again with the next nonce (at most 5 \
signatures).

Exit codes:
  0  ok: done; the transaction committed (transfer --wait, tx) or was accepted (transfer)
  1  not done: the node refused the transaction, it committed with a failed receipt, the
     re-signing attempts ran out, or the key's signing lock stayed busy; nothing was paid
  2  usage or input error: bad flag, address, hash, amount, node URL or key file
  3  outcome unknown: --wait timed out, or the transaction is pending or unknown to the
     node; the hash is printed, check later with `cairn tx HASH`
  4  node unreachable: no connection, no answer, HTTP 5xx (503), or not a Cairn API answer
  5  duplicate: the node already had this exact transaction (sent by another process or
     machine with this key); this command made no new payment";

const EXAMPLES: &str = "\
Examples:
  cairn keygen --out wallet.json
  cairn --key wallet.json balance
  cairn --key wallet.json transfer --to 5e1f...c0de --amount 100 --wait
  cairn tx 9a4b...e21f
  cairn --node http://127.0.0.1:27601 --json status";

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Cairn wallet: keys, balances and transfers",
    long_about = LONG_ABOUT,
    after_long_help = EXAMPLES
)]
pub struct Cli {
    /// Key file of the wallet to use
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "wallet.json"
    )]
    pub key: PathBuf,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Validator API to use [env: CAIRN_NODE] [default: http://127.0.0.1:27600]
    #[arg(long, global = true, value_name = "URL")]
    pub node: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new wallet key file (mode 0600)
    Keygen {
        /// Where to write the key [default: the --key file, wallet.json]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace an existing key file (its key is lost)
        #[arg(long)]
        force: bool,
    },
    /// Print the account address of the wallet's key
    Address,
    /// Show an account's balance and nonce
    Balance {
        /// Account address, 40 hex characters [default: the wallet's own]
        #[arg(value_name = "ADDR", value_parser = parse_address)]
        address: Option<Address>,
    },
    /// Show the wallet's committed nonce, the node's next nonce and the local nonce record
    Nonce {
        /// Forget the local nonce record (KEY.nonce), e.g. after transactions were lost
        #[arg(long)]
        reset: bool,
    },
    /// Sign and send a transfer; prints its hash
    Transfer {
        /// Recipient address, 40 hex characters
        #[arg(long, value_name = "ADDR", value_parser = parse_address)]
        to: Address,
        /// Amount to send (a positive integer)
        #[arg(long, value_name = "N", value_parser = parse_amount)]
        amount: u64,
        /// Wait until the transfer is committed (exit 3 if it is not within --timeout)
        #[arg(long)]
        wait: bool,
        /// How long --wait waits for the commit, in seconds
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = 30,
            value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_SECS)
        )]
        timeout: u64,
        /// Sign with exactly this nonce (to resend a transfer whose outcome is unknown: the
        /// same recipient, amount and nonce give the same transaction, which never applies
        /// twice). Never re-signed with another nonce.
        #[arg(long, value_name = "N")]
        nonce: Option<u64>,
    },
    /// Show where a transaction is: pending, in_flight, committed (with its receipt), unknown
    Tx {
        /// Transaction hash, 64 hex characters
        #[arg(value_name = "HASH", value_parser = parse_hash)]
        hash: Digest,
    },
    /// Show the node's chain, height, view, leader, peers and whether it is catching up
    Status,
}

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
}

fn parse_address(s: &str) -> Result<Address, String> {
    strip_0x(s.trim()).parse().map_err(|e| format!("{e}"))
}

fn parse_amount(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("the amount must be positive".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "expected a whole number of coins from 1 to {}",
            u64::MAX
        )),
    }
}

fn parse_hash(s: &str) -> Result<Digest, String> {
    strip_0x(s.trim())
        .parse()
        .map_err(|_| format!("expected a transaction hash of 64 hex characters, got {s:?}"))
}

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
    let cli = Cli::parse();
    match run(&cli) {
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

pub fn run(cli: &Cli) -> Result<(), Fail> {
    match &cli.command {
        Command::Keygen { out, force } => keygen(cli, out.as_ref().unwrap_or(&cli.key), *force),
        Command::Address => address(cli),
        Command::Balance { address } => balance(cli, address.as_ref()),
        Command::Nonce { reset } => nonce(cli, *reset),
        Command::Transfer {
            to,
            amount,
            wait,
            timeout,
            nonce,
        } => transfer(
            cli,
            Order {
                to: *to,
                amount: *amount,
                wait: wait.then_some(Duration::from_secs(*timeout)),
                pinned: *nonce,
            },
        ),
        Command::Tx { hash } => tx(cli, hash),
        Command::Status => status(cli),
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

fn balance(cli: &Cli, address: Option<&Address>) -> Result<(), Fail> {
    let address = match address {
        Some(a) => *a,
        None => Address::of(&load_key(cli)?.public()),
    };
    let node = node(cli)?;
    let account = node.account(&address).map_err(query_fail)?;
    if cli.json {
        print_json(&account_json(&account));
    } else {
        print_fields(&[
            ("address", account.address.to_string()),
            ("balance", account.balance.to_string()),
            ("nonce", account.nonce.to_string()),
        ]);
    }
    Ok(())
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
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
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

fn tx(cli: &Cli, hash: &Digest) -> Result<(), Fail> {
    let node = node(cli)?;
    let s = node.tx(hash, REQUEST_TIMEOUT).map_err(query_fail)?;
    let json = status_json(&s);
    if !cli.json {
        let mut fields = vec![("hash", hash.to_string())];
        fields.extend(status_fields(&s));
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

/// A transfer as the user asked for it.
struct Order {
    to: Address,
    amount: u64,
    wait: Option<Duration>,
    /// `--nonce N`: this exact transaction, never re-signed.
    pinned: Option<u64>,
}

/// One signed transfer, for output: who, what, which nonce and hash.
struct Sent {
    tx: Transaction,
    from: Address,
    to: Address,
    amount: u64,
    nonce: u64,
}

impl Sent {
    fn hash(&self) -> Digest {
        self.tx.hash()
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hash", self.hash().to_string()),
            ("from", self.from.to_string()),
            ("to", self.to.to_string()),
            ("amount", self.amount.to_string()),
            ("nonce", self.nonce.to_string()),
        ]
    }

    /// The status as JSON plus the transfer's fields.
    fn json(&self, s: Option<&TxStatus>) -> Value {
        let mut m = match s.map(status_json) {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        m.insert("hash".into(), json!(self.hash().to_string()));
        m.insert("from".into(), json!(self.from.to_string()));
        m.insert("to".into(), json!(self.to.to_string()));
        m.insert("amount".into(), json!(self.amount.to_string()));
        m.insert("nonce".into(), json!(self.nonce.to_string()));
        Value::Object(m)
    }
}

fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// What `transfer` does after an answer about its transaction.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Report this status (success or failure).
    Report,
    /// The node already had this exact transaction and the user did not pin the nonce:
    /// report a duplicate, not a new payment.
    Duplicate,
    /// The signature changed nothing and never will (its nonce is taken): sign again with
    /// the next nonce. The text says why, for the note.
    Resign(String),
}

/// The code of a refusal or of a failed receipt.
fn code_of(s: &TxStatus) -> Option<&str> {
    match s {
        TxStatus::Rejected { code, .. } => code.as_deref(),
        TxStatus::Committed { receipt, .. } if !receipt.ok => receipt.code.as_deref(),
        _ => None,
    }
}

/// After the first (`sync`) submission. A refusal at admission means the transaction was
/// not pooled: with `nonce_used` its nonce is behind the account's, with `nonce_conflict`
/// another transaction holds it, and ours was sent nowhere else, so it changed nothing.
fn after_admission(answer: &Submitted, pinned: bool) -> Next {
    if pinned {
        return Next::Report;
    }
    if answer.known {
        return Next::Duplicate;
    }
    match code_of(&answer.status) {
        Some("nonce_used") => Next::Resign("was already used by another transaction".into()),
        Some("nonce_conflict") => {
            Next::Resign("is held by another pending transaction in the node's pool".into())
        }
        _ => Next::Report,
    }
}

/// After waiting. Only outcomes that prove the transaction can never apply lead to a new
/// signature: committed with `nonce_too_low` (its nonce was used by another transaction),
/// or refused with `nonce_used` on a resubmission (the node checked its store first: the
/// nonce went to another transaction). `nonce_conflict` here is not proof (ours may still be
/// in a batch), and `nonce_too_high` leaves the nonce free, so neither is re-signed.
fn after_wait(status: &TxStatus, pinned: bool) -> Next {
    if pinned {
        return Next::Report;
    }
    match (status, code_of(status)) {
        (TxStatus::Committed { height, .. }, Some("nonce_too_low")) => Next::Resign(format!(
            "was used by another transaction first: it was committed in block {height} with a \
             failed receipt and changed nothing"
        )),
        (TxStatus::Rejected { .. }, Some("nonce_used")) => Next::Resign(
            "was used by another transaction while this one waited: the node dropped it from \
             its pool and refuses it now; it changed nothing"
                .into(),
        ),
        _ => Next::Report,
    }
}

fn transfer(cli: &Cli, order: Order) -> Result<(), Fail> {
    let key = load_key(cli)?;
    let node = node(cli)?;
    let chain = node.status().map_err(query_fail)?.chain();
    // Nonces below `floor` are known to be taken (this process saw them refused or failed).
    let mut floor = 0u64;
    let mut attempt = 1;
    loop {
        let (sent, first) = sign_and_submit(cli, &node, &key, &chain, &order, floor)?;
        let pinned = order.pinned.is_some();
        let last = match after_admission(&first, pinned) {
            Next::Duplicate => return Err(duplicate(cli, &node, &sent, &first.status)),
            Next::Resign(why) if attempt < MAX_ATTEMPTS => {
                eprintln!(
                    "note: nonce {} {why}; signing again with the next nonce",
                    sent.nonce
                );
                std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                floor = sent.nonce + 1;
                attempt += 1;
                continue;
            }
            _ => match (order.wait, is_final(&first.status)) {
                (Some(timeout), false) => {
                    wait_for_commit(&node, &sent.tx, first.status.clone(), timeout)
                }
                _ => Waited {
                    status: first.status,
                    error: None,
                },
            },
        };
        match after_wait(&last.status, pinned) {
            Next::Resign(why) if attempt < MAX_ATTEMPTS => {
                eprintln!(
                    "note: transaction {} (nonce {}) {why}; signing again with the next nonce",
                    sent.hash(),
                    sent.nonce
                );
                floor = sent.nonce + 1;
                attempt += 1;
                continue;
            }
            _ => return report(cli, &node, &sent, &last, order.wait, attempt),
        }
    }
}

/// Under the key's signing lock: picks the nonce, signs, submits (`sync`) and records the
/// nonce as taken if the node took the transaction.
fn sign_and_submit(
    cli: &Cli,
    node: &NodeClient,
    key: &SecretKey,
    chain: &ledger::ChainBinding,
    order: &Order,
    floor: u64,
) -> Result<(Sent, Submitted), Fail> {
    let from = Address::of(&key.public());
    let lock = SigningLock::acquire(&cli.key, warn).map_err(|e| Fail::new(EXIT_REJECTED, e))?;
    let nonce = match order.pinned {
        Some(n) => n,
        None => {
            let pending = node.account(&from).map_err(query_fail)?.pending_nonce;
            let recorded = lock.recorded_next(chain, &from).unwrap_or(0);
            pending.max(recorded).max(floor)
        }
    };
    let payload = Payload::Transfer {
        to: order.to,
        amount: order.amount,
    };
    let sent = Sent {
        tx: Transaction::sign(key, chain, nonce, payload),
        from,
        to: order.to,
        amount: order.amount,
        nonce,
    };
    let answer = node.submit_full(&sent.tx, Mode::Sync, REQUEST_TIMEOUT);
    if let Ok(a) = &answer
        && !matches!(
            a.status,
            TxStatus::Rejected { .. } | TxStatus::Unknown { .. }
        )
    {
        lock.record(chain, &from, nonce.saturating_add(1), warn);
    }
    drop(lock);
    match answer {
        Ok(a) => Ok((sent, a)),
        Err(e) => Err(submit_fail(cli, &sent, e)),
    }
}

/// The node already had this exact transaction: not a new payment.
fn duplicate(cli: &Cli, node: &NodeClient, sent: &Sent, status: &TxStatus) -> Fail {
    let hash = sent.hash();
    if !cli.json {
        print_fields(&sent.fields());
        print_fields(&status_fields(status));
    }
    let mut json = sent.json(Some(status));
    json["known"] = json!(true);
    Fail::new(
        EXIT_DUPLICATE,
        format!(
            "node {} already had transaction {hash} (nonce {}, the same recipient and amount): \
             another process or machine using this key sent it first, so this command made no \
             new payment (its status: {}); to pay again, run the command again (it signs with \
             the next nonce), or use `cairn tx {hash}` to follow this one",
            node.base(),
            sent.nonce,
            status_fields(status)[0].1
        ),
    )
    .with_json(json)
}

/// Prints the final transfer and status and turns it into the exit code.
fn report(
    cli: &Cli,
    node: &NodeClient,
    sent: &Sent,
    last: &Waited,
    wait: Option<Duration>,
    attempts: u32,
) -> Result<(), Fail> {
    if !cli.json {
        print_fields(&sent.fields());
        print_fields(&status_fields(&last.status));
    }
    let mut json = sent.json(Some(&last.status));
    json["attempts"] = json!(attempts);
    let fail = match (&last.status, wait) {
        // Without --wait, accepted into the pool is success.
        (TxStatus::Pending { .. } | TxStatus::InFlight { .. }, None) => None,
        (
            TxStatus::Pending { .. } | TxStatus::InFlight { .. } | TxStatus::Unknown { .. },
            Some(t),
        ) => {
            let hash = sent.hash();
            let mut msg = format!(
                "transaction {hash} was accepted but is not committed after {}s (last status: \
                 {})",
                t.as_secs(),
                status_fields(&last.status)[0].1
            );
            if let Some(e) = &last.error {
                msg.push_str(&format!("; last error: {e}"));
            }
            msg.push_str(&format!(
                "; check later with `cairn tx {hash}` (do not send it again as a new transfer: \
                 it may still commit; `--nonce {}` resends this exact one)",
                sent.nonce
            ));
            Some(Fail::new(EXIT_UNKNOWN, msg))
        }
        (s, _) => outcome(s, node.base()).map(|mut f| {
            if attempts > 1 {
                f.error.message.push_str(&format!(
                    " (signature {attempts} of at most {MAX_ATTEMPTS}: the earlier ones lost \
                     their nonce to other transactions and changed nothing)"
                ));
            }
            f
        }),
    };
    match fail {
        None => {
            if cli.json {
                print_json(&json);
            }
            Ok(())
        }
        Some(f) => Err(f.with_json(json)),
    }
}

/// A submission that got no verdict.
fn submit_fail(cli: &Cli, sent: &Sent, e: ClientError) -> Fail {
    if !cli.json {
        print_fields(&sent.fields());
    }
    let hash = sent.hash();
    let (code, msg) = match &e {
        ClientError::Unreachable(m) => (
            EXIT_UNREACHABLE,
            format!("{m} (transaction {hash} was not sent)"),
        ),
        ClientError::Unavailable(m) => (
            EXIT_UNREACHABLE,
            format!(
                "{m}; transaction {hash} may or may not have been accepted: check with `cairn \
                 tx {hash}` (resubmitting it is safe)"
            ),
        ),
        ClientError::NoAnswer(m) | ClientError::BadAnswer(m) => (
            EXIT_UNKNOWN,
            format!(
                "{m}; transaction {hash} may or may not have been accepted: check with `cairn \
                 tx {hash}`"
            ),
        ),
        ClientError::WrongPath(m) => (
            EXIT_USAGE,
            format!("{m} (transaction {hash} was not accepted)"),
        ),
        ClientError::Refused { message, .. } => {
            (EXIT_REJECTED, format!("{message} (transaction {hash})"))
        }
    };
    Fail::new(code, msg).with_json(sent.json(None))
}

/// Where `transfer --wait` ended: the last status seen, and the last error on the way.
struct Waited {
    status: TxStatus,
    error: Option<ClientError>,
}

fn is_final(s: &TxStatus) -> bool {
    matches!(s, TxStatus::Committed { .. } | TxStatus::Rejected { .. })
}

/// Waits up to `timeout` for `tx` (admitted with status `status`) to commit: one `mode=commit`
/// submission (the node waits for the block), then polls of its status. Errors on the way
/// (the node restarting, say) do not end the wait; a node that forgot the transaction gets it
/// again.
fn wait_for_commit(
    node: &NodeClient,
    tx: &Transaction,
    mut status: TxStatus,
    timeout: Duration,
) -> Waited {
    let deadline = Instant::now() + timeout;
    let hash = tx.hash();
    let mut error = None;
    let mut first = true;
    loop {
        if is_final(&status) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let answer = if first {
            first = false;
            node.submit(tx, Mode::Commit, left)
        } else {
            std::thread::sleep(POLL.min(left));
            let within = || {
                deadline
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(100), REQUEST_TIMEOUT)
            };
            match node.tx(&hash, within()) {
                // Not in the pool and not committed: dropped, or the node restarted. Sending
                // it again is safe (it never applies twice).
                Ok(TxStatus::Unknown { .. }) => node.submit(tx, Mode::Sync, within()),
                other => other,
            }
        };
        match answer {
            // `mode=commit` answers `unknown` when the block did not come within its wait.
            Ok(TxStatus::Unknown { .. }) => {}
            Ok(s) => status = s,
            Err(e) => error = Some(e),
        }
    }
    Waited { status, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::Rejected;
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
        ];
        for (i, a) in codes.iter().enumerate() {
            for b in &codes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(EXIT_USAGE, 2, "clap's usage errors exit 2");
    }

    fn h() -> Digest {
        Digest([7; 32])
    }

    fn answer(status: TxStatus, known: bool) -> Submitted {
        Submitted {
            status,
            known,
            note: None,
        }
    }

    fn refused(r: &Rejected) -> TxStatus {
        TxStatus::Rejected {
            hash: h(),
            reason: r.to_string(),
            retryable: r.is_retryable(),
            code: Some(r.code().to_string()),
        }
    }

    fn committed_failed(reason: &ledger::RejectReason) -> TxStatus {
        TxStatus::Committed {
            hash: h(),
            height: 9,
            index: 0,
            receipt: TxReceipt {
                ok: false,
                reason: Some(reason.to_string()),
                code: Some(reason.code().to_string()),
            },
        }
    }

    #[test]
    fn admission_refusals_of_a_taken_nonce_are_signed_again() {
        let used = refused(&Rejected::NonceUsed { nonce: 3, next: 4 });
        let taken = refused(&Rejected::NonceConflict {
            nonce: 3,
            pending: Digest([8; 32]),
        });
        for s in [&used, &taken] {
            assert!(matches!(
                after_admission(&answer(s.clone(), false), false),
                Next::Resign(_)
            ));
            // A pinned nonce is the user's exact transaction: never re-signed.
            assert_eq!(
                after_admission(&answer(s.clone(), false), true),
                Next::Report
            );
        }
        let ahead = refused(&Rejected::NonceTooFarAhead {
            nonce: 9,
            next: 1,
            max_per_sender: 4,
        });
        assert_eq!(after_admission(&answer(ahead, false), false), Next::Report);
        let zero = refused(&Rejected::ZeroAmount);
        assert_eq!(after_admission(&answer(zero, false), false), Next::Report);
        let pending = TxStatus::Pending { hash: h() };
        assert_eq!(
            after_admission(&answer(pending.clone(), false), false),
            Next::Report
        );
    }

    #[test]
    fn a_known_transaction_is_a_duplicate_unless_pinned() {
        for s in [
            TxStatus::Pending { hash: h() },
            TxStatus::InFlight { hash: h() },
            committed_failed(&ledger::RejectReason::ZeroAmount),
        ] {
            assert_eq!(
                after_admission(&answer(s.clone(), true), false),
                Next::Duplicate
            );
            assert_eq!(after_admission(&answer(s, true), true), Next::Report);
        }
    }

    #[test]
    fn only_proof_that_nothing_can_apply_leads_to_a_new_signature() {
        let low = committed_failed(&ledger::RejectReason::NonceTooLow {
            expected: 5,
            got: 4,
        });
        assert!(matches!(after_wait(&low, false), Next::Resign(_)));
        assert_eq!(after_wait(&low, true), Next::Report);
        let used = refused(&Rejected::NonceUsed { nonce: 3, next: 4 });
        assert!(matches!(after_wait(&used, false), Next::Resign(_)));
        // Not proof: ours may still be in a batch, or its nonce is still free.
        let conflict = refused(&Rejected::NonceConflict {
            nonce: 3,
            pending: Digest([8; 32]),
        });
        assert_eq!(after_wait(&conflict, false), Next::Report);
        let high = committed_failed(&ledger::RejectReason::NonceTooHigh {
            expected: 4,
            got: 5,
        });
        assert_eq!(after_wait(&high, false), Next::Report);
        let poor = committed_failed(&ledger::RejectReason::InsufficientBalance {
            balance: 1,
            needed: 2,
        });
        assert_eq!(after_wait(&poor, false), Next::Report);
        for open in [
            TxStatus::Pending { hash: h() },
            TxStatus::InFlight { hash: h() },
            TxStatus::Unknown {
                hash: h(),
                hint: None,
            },
        ] {
            assert_eq!(after_wait(&open, false), Next::Report, "{open:?}");
        }
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
