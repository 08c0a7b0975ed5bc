//! The `cairn` command line: its flags and subcommands ([`Cli`], [`Command`]), the long help
//! and examples, and the parsers of addresses, amounts and hashes.

use clap::{Args, Parser, Subcommand};
use crypto::Digest;
use ledger::Address;
use std::path::PathBuf;

/// Longest `--timeout`.
const MAX_TIMEOUT_SECS: u64 = 86_400;

const LONG_ABOUT: &str = "\
Cairn wallet: keys, balances and transfers through a validator's HTTP API.

The node is --node URL, else $CAIRN_NODE, else http://127.0.0.1:27600 (validator-0 of \
`cairnd testnet` / `cairnd localnet` with the default base port 26600). --json prints one JSON \
object on stdout for every command (64-bit integers as decimal strings, as in the API; on \
failure it also has \"error\" and \"exit_code\"). Errors go to stderr as `error: ...`.

Profiles: --profile NAME (or $CAIRN_PROFILE, or the config file's default_profile) takes \
the node, key file, genesis file and output format the command line leaves open from a \
profile kept with `cairn config set`; a flag, then its environment variable, wins.

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
    /// The chain's genesis file: what `--verify` checks answers against (the validator set)
    /// [env: CAIRN_GENESIS]
    #[arg(long, global = true, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    /// Take the node, key, genesis file and output format this command line leaves open
    /// from this profile of the config file (`cairn config`) [env: CAIRN_PROFILE] [default:
    /// the file's default_profile]
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// A profile's output format.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    Text,
    Json,
}

/// `cairn config ...`: the profiles in the user's config file.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the config file's path ($CAIRN_CONFIG, else cairn/config.toml in the user's
    /// config directory)
    Path,
    /// Show the profiles (or one)
    Show {
        /// Only this profile
        name: Option<String>,
    },
    /// Create or update a profile; the first one saved becomes the default
    Set {
        /// The profile's name
        name: String,
        /// Validator API URL
        #[arg(long, value_name = "URL")]
        node: Option<String>,
        /// Wallet key file (stored as an absolute path)
        #[arg(long = "key-file", value_name = "FILE")]
        key: Option<PathBuf>,
        /// Genesis file for --verify (stored as an absolute path)
        #[arg(long = "genesis-file", value_name = "FILE")]
        genesis: Option<PathBuf>,
        /// Output format
        #[arg(long, value_enum)]
        output: Option<Output>,
        /// Make it the default profile
        #[arg(long)]
        default: bool,
    },
    /// Remove a profile
    Remove {
        /// The profile's name
        name: String,
    },
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
    /// Show an account's balance and nonce (at least as new as this wallet's last committed
    /// transfer)
    #[command(visible_alias = "account")]
    Balance {
        /// Account address, 40 hex characters [default: the wallet's own]
        #[arg(value_name = "ADDR", value_parser = parse_address)]
        address: Option<Address>,
        /// Check the answer with a proof: 2f+1 signatures on the header by the validators of
        /// its epoch (reached from the genesis set through the chain's epoch changes, each
        /// checked with the set before it), and the account (or its absence) under the
        /// header's state root. Needs --genesis. BFT chains only.
        #[arg(long, conflicts_with = "linearizable")]
        verify: bool,
        /// Raft chains: a linearizable read (ReadIndex) — the answer reflects every transfer
        /// committed before the read began, whichever validator it went through
        #[arg(long)]
        linearizable: bool,
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
        #[command(flatten)]
        wait: WaitArgs,
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
        /// For a committed transaction: check its inclusion in a block certified by 2f+1
        /// validators of its epoch (walked from the genesis set). Needs --genesis. BFT chains
        /// only.
        #[arg(long)]
        verify: bool,
    },
    /// Show the node's chain, height, view, leader, peers and whether it is catching up
    Status,
    /// Validator-set changes (chains with `params.epoch_delay_blocks`): show the set;
    /// write a change, approve it offline with validators' consensus keys, submit it
    #[command(subcommand)]
    Validators(ValidatorsCommand),
    /// Named profiles (node, key, genesis file, output) in the user's config file; pick one
    /// with --profile NAME
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `cairn completions bash > /etc/bash_completion.d/cairn`
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// `cairn validators ...`. A change is a JSON file: written by `add`, `remove` or `rotate`
/// for the node's current epoch, approved by `sign` (one validator's consensus key at a
/// time, offline), submitted by `submit` once a quorum of the current set approved it. It
/// takes effect after block `h + epoch_delay_blocks`, `h` the block that accepted it.
#[derive(Subcommand, Debug)]
pub enum ValidatorsCommand {
    /// Show the current set: epoch, members, quorum, and a pending change
    List,
    /// Write a change that adds a validator
    Add {
        /// The new validator's name, e.g. validator-4
        #[arg(long)]
        name: String,
        /// The new validator's consensus public key, 64 hex characters
        #[arg(long, value_name = "HEX", value_parser = parse_key)]
        consensus_key: crypto::PublicKey,
        /// Its network public key, 64 hex characters
        #[arg(long, value_name = "HEX", value_parser = parse_key)]
        network_key: crypto::PublicKey,
        /// The multiaddr others dial, e.g. /ip4/10.0.0.5/tcp/26600
        #[arg(long, value_name = "MULTIADDR")]
        address: String,
        /// Where to write the change
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a change that removes the validator with this consensus key
    Remove {
        /// The consensus public key of the validator to remove, 64 hex characters
        #[arg(long, value_name = "HEX", value_parser = parse_key)]
        consensus_key: crypto::PublicKey,
        /// Where to write the change
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a change that gives a validator a new consensus key (and, optionally, a new
    /// network key, address or name); its index in the set stays
    Rotate {
        /// The consensus key it has now
        #[arg(long, value_name = "HEX", value_parser = parse_key)]
        old_key: crypto::PublicKey,
        /// The consensus key it will sign with (the public key of its home's
        /// consensus_key.next.json)
        #[arg(long, value_name = "HEX", value_parser = parse_key)]
        new_key: crypto::PublicKey,
        /// A new network public key [default: unchanged]
        #[arg(long, value_name = "HEX", value_parser = parse_key)]
        network_key: Option<crypto::PublicKey>,
        /// A new multiaddr [default: unchanged]
        #[arg(long, value_name = "MULTIADDR")]
        address: Option<String>,
        /// A new name [default: unchanged]
        #[arg(long)]
        name: Option<String>,
        /// Where to write the change
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add one validator's approval to a change file, signed with its consensus key file
    /// (needs no node)
    Sign {
        /// The change file (written by `add`, `remove` or `rotate`); rewritten in place
        #[arg(value_name = "CHANGE")]
        file: PathBuf,
        /// A current validator's consensus key file
        #[arg(long, value_name = "FILE")]
        consensus_key: PathBuf,
    },
    /// Raft: ask the leader (--node, on its own host) to hand leadership to another voter,
    /// to drain it before a restart or removal
    TransferLeader {
        /// The validator that should lead [default: the most caught-up voter]
        #[arg(long, value_name = "INDEX")]
        to: Option<u16>,
    },
    /// Submit an approved change, signed and paid by the wallet (--key) like a transfer
    Submit {
        /// The change file, approved by a quorum of the current validators
        #[arg(value_name = "CHANGE")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `--wait` and `--timeout`, for the commands that submit a transaction.
#[derive(Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Wait until the transaction is committed (exit 3 if it is not within --timeout)
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits for the commit, in seconds
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_SECS)
    )]
    pub timeout: u64,
}

impl WaitArgs {
    /// How long to wait for the commit, if at all.
    pub fn duration(self) -> Option<std::time::Duration> {
        self.wait
            .then_some(std::time::Duration::from_secs(self.timeout))
    }
}

fn parse_key(s: &str) -> Result<crypto::PublicKey, String> {
    let hex = strip_0x(s.trim());
    let bytes = hex::decode(hex).map_err(|_| format!("expected 64 hex characters, got {s:?}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("expected 64 hex characters (32 bytes), got {s:?}"))?;
    let key = crypto::PublicKey(bytes);
    key.validate()
        .map_err(|e| format!("{s:?} is not a valid ed25519 public key: {e}"))?;
    Ok(key)
}

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
}

pub(super) fn parse_address(s: &str) -> Result<Address, String> {
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

pub(super) fn parse_hash(s: &str) -> Result<Digest, String> {
    strip_0x(s.trim())
        .parse()
        .map_err(|_| format!("expected a transaction hash of 64 hex characters, got {s:?}"))
}
