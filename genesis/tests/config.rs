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
    assert_eq!(
        (
            c.api_rate_limit_per_ip,
            c.api_rate_burst,
            c.api_max_connections,
            c.api_max_connections_per_ip
        ),
        (1000, 2000, 512, 128)
    );
    assert_eq!(c.batch_delay_ms, 10);
    assert_eq!(
        c,
        NodeConfig::new("validator-0", "/ip4/0.0.0.0/tcp/26600", "127.0.0.1:27600")
    );
}

#[test]
fn api_limits_parse_and_roundtrip() {
    let home = home_with(&format!(
        "{MINIMAL}api_rate_limit_per_ip = 50\napi_rate_burst = 75\napi_max_connections = 64\n\
         api_max_connections_per_ip = 8\n"
    ));
    let c = NodeConfig::load(home.path()).unwrap();
    assert_eq!(
        (
            c.api_rate_limit_per_ip,
            c.api_rate_burst,
            c.api_max_connections,
            c.api_max_connections_per_ip
        ),
        (50, 75, 64, 8)
    );
    c.save(home.path()).unwrap();
    assert_eq!(NodeConfig::load(home.path()).unwrap(), c);
}

#[test]
fn api_limits_zero_turns_them_off() {
    let home = home_with(&format!(
        "{MINIMAL}api_rate_limit_per_ip = 0\napi_rate_burst = 0\napi_max_connections = 0\n\
         api_max_connections_per_ip = 0\n"
    ));
    let c = NodeConfig::load(home.path()).unwrap();
    assert_eq!(c.api_rate_limit_per_ip, 0);
    assert_eq!(c.api_max_connections, 0);
}

#[test]
fn batch_delay_parses_and_out_of_range_names_the_field() {
    let home = home_with(&format!("{MINIMAL}batch_delay_ms = 2\n"));
    assert_eq!(NodeConfig::load(home.path()).unwrap().batch_delay_ms, 2);
    for bad in ["0", "1001"] {
        assert_load_error(
            &format!("{MINIMAL}batch_delay_ms = {bad}\n"),
            "batch_delay_ms",
            &format!("must be 1..=1000 milliseconds (it is {bad}); the default is 10"),
        );
    }
}

#[test]
fn api_rate_burst_zero_with_the_limit_on() {
    assert_load_error(
        &format!("{MINIMAL}api_rate_burst = 0\n"),
        "api_rate_burst",
        "must be at least 1 while api_rate_limit_per_ip is on (it is 1000)",
    );
}

#[test]
fn api_limits_bad_values_name_the_field() {
    assert_load_error(
        &format!("{MINIMAL}api_rate_limit_per_ip = -5\n"),
        "api_rate_limit_per_ip",
        "invalid value: integer `-5`, expected u32",
    );
    assert_load_error(
        &format!("{MINIMAL}api_rate_burst = 5000000000\n"),
        "api_rate_burst",
        "invalid value: integer `5000000000`, expected u32",
    );
    assert_load_error(
        &format!("{MINIMAL}api_max_connections = \"many\"\n"),
        "api_max_connections",
        "invalid type: string \"many\", expected u32",
    );
    assert_load_error(
        &format!("{MINIMAL}api_max_connections_per_ip = 1.5\n"),
        "api_max_connections_per_ip",
        "invalid type: floating point `1.5`, expected u32",
    );
    assert_load_error(
        &format!("{MINIMAL}api_rate_limit = 10\n"),
        "api_rate_limit",
        "unknown field `api_rate_limit`",
    );
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

#[test]
fn retain_blocks_defaults_to_ten_thousand_zero_keeps_all_and_small_windows_are_refused() {
    let home = home_with(MINIMAL);
    assert_eq!(NodeConfig::load(home.path()).unwrap().retain_blocks, 10_000);
    for ok in [0u64, 100, 1_000_000] {
        let home = home_with(&format!("{MINIMAL}retain_blocks = {ok}\n"));
        assert_eq!(NodeConfig::load(home.path()).unwrap().retain_blocks, ok);
    }
    for bad in ["1", "99"] {
        assert_load_error(
            &format!("{MINIMAL}retain_blocks = {bad}\n"),
            "retain_blocks",
            &format!(
                "must be 0 (keep everything) or at least 100 heights (it is {bad}); the default \
                 is 10000"
            ),
        );
    }
}
