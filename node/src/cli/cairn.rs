//! `cairn`: the wallet's commands.

use super::{CliError, finish, print_json};
use clap::{Parser, Subcommand};
use genesis::keyfile::{replace_key_file, try_generate_key};
use genesis::{load_key_file, write_key_file};
use ledger::Address;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn wallet")]
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
}

/// Entry point of the `cairn` binary.
pub fn main() -> ExitCode {
    finish(run(Cli::parse()))
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Keygen { out, force } => keygen(&cli, out.as_ref().unwrap_or(&cli.key), *force),
        Command::Address => address(&cli),
    }
}

fn keygen(cli: &Cli, out: &Path, force: bool) -> Result<(), CliError> {
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

fn address(cli: &Cli) -> Result<(), CliError> {
    let public = load_key_file(&cli.key)?.public();
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
