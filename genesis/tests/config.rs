//! Node config: defaults, roundtrip, field-precise errors naming the file.

use genesis::{CONFIG_FILE, NodeConfig};
use std::path::{Path, PathBuf};

const MINIMAL: &str = r#"
name = "validator-0"
p2p_listen = "/ip4/0.0.0.0/tcp/26600"
api_listen = "127.0.0.1:27600"
"#;

fn home_with(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
    dir
}

fn assert_load_error(text: &str, field: &str, fragment: &str) {
    let home = home_with(text);
    let err = NodeConfig::load(home.path()).unwrap_err();
    let file = home.path().join(CONFIG_FILE);
    assert_eq!(err.file, file);
    assert_eq!(err.field, field, "{err}");
    assert!(
        err.message.contains(fragment),
        "{:?} lacks {fragment:?}",
        err.message
    );
    let prefix = if field.is_empty() {
        format!("{}: ", file.display())
    } else {
        format!("{}: {field}: ", file.display())
    };
    assert!(err.to_string().starts_with(&prefix), "{err}");
}

#[test]
fn minimal_config_gets_defaults() {
    let home = home_with(MINIMAL);
    let c = NodeConfig::load(home.path()).unwrap();
    assert_eq!(c.name, "validator-0");
    assert_eq!(c.p2p_listen, "/ip4/0.0.0.0/tcp/26600");
    assert_eq!(c.api_socket_addr().unwrap().port(), 27600);
    assert_eq!(c.data_dir, PathBuf::from("data"));
    assert_eq!(c.log_level, "info");
    let h = home.path();
    assert_eq!(c.data_dir_path(h), h.join("data"));
    assert_eq!(c.consensus_key_path(h), h.join("consensus_key.json"));
    assert_eq!(c.network_key_path(h), h.join("network_key.json"));
    assert_eq!(c.genesis_path(h), h.join("genesis.json"));
}

#[test]
fn absolute_paths_are_kept() {
    let home = home_with(&format!("{MINIMAL}data_dir = \"/var/lib/cairn\"\n"));
    let c = NodeConfig::load(home.path()).unwrap();
    assert_eq!(c.data_dir_path(home.path()), Path::new("/var/lib/cairn"));
}

#[test]
fn save_load_roundtrip() {
    let home = tempfile::tempdir().unwrap();
    let mut c = NodeConfig::new("v1", "/ip4/127.0.0.1/tcp/26601", "127.0.0.1:27601");
    c.log_level = "info,cairn::consensus=debug".into();
    c.save(home.path()).unwrap();
    assert_eq!(NodeConfig::load(home.path()).unwrap(), c);
    c.name = "v2".into();
    c.save(home.path()).unwrap();
    assert_eq!(NodeConfig::load(home.path()).unwrap().name, "v2");
}

#[test]
fn unknown_field() {
    assert_load_error(
        &format!("{MINIMAL}datadir = \"x\"\n"),
        "datadir",
        "unknown field `datadir`",
    );
}

#[test]
fn missing_name() {
    assert_load_error(
        "p2p_listen = \"/ip4/0.0.0.0/tcp/1\"\napi_listen = \"127.0.0.1:1\"\n",
        "name",
        "required field is missing",
    );
}

#[test]
fn bad_api_listen() {
    assert_load_error(
        &MINIMAL.replace("127.0.0.1:27600", "localhost"),
        "api_listen",
        "\"localhost\" is not an IP:PORT address",
    );
}

#[test]
fn bad_p2p_listen() {
    assert_load_error(
        &MINIMAL.replace("/ip4/0.0.0.0/tcp/26600", "0.0.0.0:26600"),
        "p2p_listen",
        "is not a valid multiaddr",
    );
}

#[test]
fn bad_log_level() {
    assert_load_error(
        &format!("{MINIMAL}log_level = \"verbose\"\n"),
        "log_level",
        "\"verbose\" is not a log level; use one of off, error",
    );
}

#[test]
fn bad_log_level_among_directives() {
    assert_load_error(
        &format!("{MINIMAL}log_level = \"info,cairn=loud\"\n"),
        "log_level",
        "\"loud\" (in \"info,cairn=loud\") is not a log level",
    );
}

#[test]
fn wrong_type() {
    assert_load_error(
        &format!("{MINIMAL}data_dir = 5\n"),
        "data_dir",
        "invalid type: integer `5`",
    );
}

#[test]
fn invalid_toml_reports_the_line() {
    assert_load_error(
        &format!("{MINIMAL}log_level = \n"),
        "",
        "invalid string; expected `\"`, `'` (line 5, column 13)",
    );
}

#[test]
fn missing_file() {
    let home = tempfile::tempdir().unwrap();
    let err = NodeConfig::load(home.path()).unwrap_err();
    assert_eq!(err.field, "");
    assert!(
        err.message.starts_with("cannot read the node config"),
        "{err}"
    );
}
