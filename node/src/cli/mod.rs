//! Command-line front ends of `cairnd` (validator daemon) and `cairn` (wallet).
//!
//! Exit codes: 0 success; 2 usage or input error (bad flag, bad genesis, bad or unsafe key
//! file, existing output); 1 any other failure. Errors go to stderr as `error: ...`. The
//! wallet adds 3 (transaction outcome unknown) and 4 (node unreachable): see [`cairn`].

pub mod cairn;
pub mod cairnd;
pub mod client;
pub mod localnet;
pub mod nonces;

use std::process::ExitCode;

/// A command failure: what to print and which exit code to use.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// A usage or input error (exit code 2).
    pub fn input(message: impl std::fmt::Display) -> Self {
        CliError {
            code: 2,
            message: message.to_string(),
        }
    }

    /// Any other failure (exit code 1).
    pub fn failure(message: impl std::fmt::Display) -> Self {
        CliError {
            code: 1,
            message: message.to_string(),
        }
    }
}

impl From<genesis::GenesisError> for CliError {
    fn from(e: genesis::GenesisError) -> Self {
        CliError::input(e)
    }
}

impl From<genesis::KeyFileError> for CliError {
    fn from(e: genesis::KeyFileError) -> Self {
        if e.is_input_error() {
            CliError::input(e)
        } else {
            CliError::failure(e)
        }
    }
}

impl From<genesis::TestnetError> for CliError {
    fn from(e: genesis::TestnetError) -> Self {
        if e.is_input_error() {
            CliError::input(e)
        } else {
            CliError::failure(e)
        }
    }
}

/// Prints `result`'s error, if any, and turns it into the process exit code.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Prints `value` as pretty JSON on stdout (for `--json`).
pub(crate) fn print_json(value: &serde_json::Value) {
    // A `Value` always serializes.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}
