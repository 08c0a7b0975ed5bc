//! Wallet profiles: named sets of defaults (node URL, key file, genesis file, output format)
//! kept in the user's config file, picked with `--profile NAME` (or `$CAIRN_PROFILE`, or the
//! file's `default_profile`), and edited with `cairn config`.
//!
//! The file is `$CAIRN_CONFIG`, else `cairn/config.toml` in the user's config directory
//! (`$XDG_CONFIG_HOME`, else `~/.config`, on Linux):
//!
//! ```toml
//! default_profile = "local"
//!
//! [profiles.local]
//! node = "http://127.0.0.1:27600"
//! key = "/home/me/wallet.json"        # relative paths are relative to this file's folder
//! genesis = "/home/me/genesis.json"   # what --verify checks answers against
//! output = "text"                     # or "json" (as --json)
//! ```
//!
//! A profile only fills in what the command line leaves open: a flag wins, then its
//! environment variable (`CAIRN_NODE`, `CAIRN_GENESIS`), then the profile, then the built-in
//! default. `cairn config ...` and `cairn completions` never apply a profile. A file that
//! does not parse is an error naming the file, the line and the field, for every command
//! that reads it.

use super::args::{Cli, ConfigCommand, Output};
use super::{EXIT_USAGE, Fail, print_fields, print_json};
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "CAIRN_CONFIG";
/// Environment variable naming the profile (as `--profile`).
pub const PROFILE_ENV: &str = "CAIRN_PROFILE";

/// The config file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    /// The profile used when neither `--profile` nor `$CAIRN_PROFILE` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One profile; every field optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

fn usage(message: String) -> Fail {
    Fail::new(EXIT_USAGE, message)
}

/// Where the config file is: `$CAIRN_CONFIG`, else `cairn/config.toml` in the user's config
/// directory.
pub fn config_path() -> Result<PathBuf, Fail> {
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir()
        .map(|d| d.join("cairn").join("config.toml"))
        .ok_or_else(|| {
            usage(format!(
                "cannot find the user's config directory (no $HOME?); set {CONFIG_ENV} to the \
                 config file's path"
            ))
        })
}

/// Reads the config file; `None` if it does not exist. A file that does not parse is an
/// error naming the file, the line and the field.
pub fn load(path: &Path) -> Result<Option<WalletConfig>, Fail> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(usage(format!("{}: cannot read: {e}", path.display()))),
    };
    let config: WalletConfig = toml::from_str(&text)
        .map_err(|e| usage(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    for (name, p) in &config.profiles {
        if let Some(node) = &p.node {
            crate::cli::client::parse_node_url(&format!("profiles.{name}.node"), node)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
        }
    }
    if let Some(d) = &config.default_profile
        && !config.profiles.contains_key(d)
    {
        return Err(usage(format!(
            "{}: default_profile = {d:?} names no [profiles.{d}] section",
            path.display()
        )));
    }
    Ok(Some(config))
}

fn save(path: &Path, config: &WalletConfig) -> Result<(), Fail> {
    let text = toml::to_string_pretty(config)
        .map_err(|e| usage(format!("cannot write the config: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| usage(format!("{}: cannot create: {e}", dir.display())))?;
    }
    // Written beside and renamed over, so a crash leaves the old file or the new one.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| usage(format!("{}: cannot write: {e}", path.display())))
}

/// Fills in what the command line left open from the chosen profile (see the module docs).
pub fn apply(cli: &mut Cli, matches: &clap::ArgMatches) -> Result<(), Fail> {
    let named = cli
        .profile
        .clone()
        .or_else(|| std::env::var(PROFILE_ENV).ok().filter(|p| !p.is_empty()));
    // `CAIRN_CONFIG` unset and no home: only an error when a profile was asked for.
    let path = match config_path() {
        Ok(p) => p,
        Err(e) if named.is_some() => return Err(e),
        Err(_) => return Ok(()),
    };
    let Some(config) = load(&path)? else {
        return match named {
            Some(n) => Err(usage(format!(
                "profile {n:?}: no config file at {} (create it with `cairn config set {n} \
                 --node URL --key FILE`)",
                path.display()
            ))),
            None => Ok(()),
        };
    };
    let Some(name) = named.or(config.default_profile.clone()) else {
        return Ok(());
    };
    let Some(profile) = config.profiles.get(&name) else {
        let known: Vec<&String> = config.profiles.keys().collect();
        return Err(usage(format!(
            "profile {name:?} is not in {} (it has {known:?})",
            path.display()
        )));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let unset = |var: &str| std::env::var(var).map_or(true, |v| v.trim().is_empty());
    if cli.node.is_none() && unset("CAIRN_NODE") {
        cli.node = profile.node.clone();
    }
    if cli.genesis.is_none() && unset("CAIRN_GENESIS") {
        cli.genesis = profile.genesis.as_ref().map(|g| base.join(g));
    }
    if matches.value_source("key") == Some(ValueSource::DefaultValue)
        && let Some(k) = &profile.key
    {
        cli.key = base.join(k);
    }
    if profile.output == Some(Output::Json) {
        cli.json = true;
    }
    Ok(())
}

/// `cairn config ...`.
pub fn run(cli: &Cli, command: &ConfigCommand) -> Result<(), Fail> {
    let path = config_path()?;
    match command {
        ConfigCommand::Path => {
            if cli.json {
                print_json(&serde_json::json!({ "path": path }));
            } else {
                println!("{}", path.display());
            }
        }
        ConfigCommand::Show { name } => {
            let config = load(&path)?.unwrap_or_default();
            let profiles: BTreeMap<&String, &Profile> = config
                .profiles
                .iter()
                .filter(|(n, _)| name.as_ref().is_none_or(|want| want == *n))
                .collect();
            if let Some(n) = name
                && profiles.is_empty()
            {
                return Err(usage(format!("profile {n:?} is not in {}", path.display())));
            }
            if cli.json {
                print_json(&serde_json::json!({
                    "path": path,
                    "default_profile": config.default_profile,
                    "profiles": profiles,
                }));
                return Ok(());
            }
            println!("# {}", path.display());
            for (n, p) in profiles {
                let default = config.default_profile.as_ref() == Some(n);
                println!("[{n}]{}", if default { " (default)" } else { "" });
                let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                print_fields(&[
                    ("node", show(p.node.clone())),
                    ("key", show(p.key.as_ref().map(|k| k.display().to_string()))),
                    (
                        "genesis",
                        show(p.genesis.as_ref().map(|g| g.display().to_string())),
                    ),
                    (
                        "output",
                        show(p.output.map(|o| format!("{o:?}").to_lowercase())),
                    ),
                ]);
            }
        }
        ConfigCommand::Set {
            name,
            node,
            key,
            genesis,
            output,
            default,
        } => {
            let mut config = load(&path)?.unwrap_or_default();
            let p = config.profiles.entry(name.clone()).or_default();
            if let Some(n) = node {
                crate::cli::client::parse_node_url("--node", n).map_err(usage)?;
                p.node = Some(n.clone());
            }
            // Files are stored as absolute paths: the profile works from any folder.
            let absolute = |f: &PathBuf| std::path::absolute(f).unwrap_or_else(|_| f.clone());
            if let Some(k) = key {
                p.key = Some(absolute(k));
            }
            if let Some(g) = genesis {
                p.genesis = Some(absolute(g));
            }
            if let Some(o) = output {
                p.output = Some(*o);
            }
            if *default || config.default_profile.is_none() {
                config.default_profile = Some(name.clone());
            }
            save(&path, &config)?;
            if cli.json {
                print_json(&serde_json::json!({ "path": path, "profile": name }));
            } else {
                println!("profile {name} saved in {}", path.display());
            }
        }
        ConfigCommand::Remove { name } => {
            let mut config = load(&path)?.unwrap_or_default();
            if config.profiles.remove(name).is_none() {
                return Err(usage(format!(
                    "profile {name:?} is not in {}",
                    path.display()
                )));
            }
            if config.default_profile.as_ref() == Some(name) {
                config.default_profile = None;
            }
            save(&path, &config)?;
            if !cli.json {
                println!("profile {name} removed from {}", path.display());
            }
        }
    }
    Ok(())
}
