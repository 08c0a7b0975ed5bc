//! Hostile input for the files a person writes or keeps: the genesis document (JSON), key
//! files (JSON) and a node home's `config.toml`. Arbitrary and mutated bytes, fields with
//! arbitrary values, deep nesting and oversized files never panic (nor overflow the stack) and
//! never allocate much more than the input is long; what loads is valid and survives a
//! write-and-reload unchanged.

mod common;

use genesis::{CONFIG_FILE, Genesis, NodeConfig, load_key_file};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt};
use std::path::{Path, PathBuf};

// ---- The hostile-input kit (shared; see crypto/tests/kit/hostile.rs) ----

#[path = "../../crypto/tests/kit/hostile.rs"]
mod kit;
use kit::*;

// ---- Genesis ----

/// Parses `text` as a genesis document: within the allocation budget; if it loads, it is
/// valid, and writing it out and reading it back gives the same document and hash.
fn check_genesis_text(text: &str) {
    let (r, used) = measured(|| Genesis::from_json(text));
    assert!(
        used <= budget(text.len()),
        "parsing {} bytes allocated {used} B",
        text.len()
    );
    match r {
        Ok(g) => {
            assert!(g.validate().is_ok());
            let again = Genesis::from_json(&g.to_json_pretty()).expect("written genesis loads");
            assert_eq!(again, g);
            assert_eq!(again.hash(), g.hash());
            let _ = (g.n(), g.f(), g.quorum(), g.total_supply());
            assert!(g.genesis_unix_seconds().is_ok());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn check_genesis_bytes(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        check_genesis_text(text);
    }
    check_genesis_text(&String::from_utf8_lossy(bytes));
}

fn valid_genesis_text() -> String {
    serde_json::to_string_pretty(&common::valid()).unwrap()
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings near what each field expects, and anything at all.
fn field_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})?",
        "/(ip4|ip6|dns|dns4|dns6|tcp|udp|p2p|unix)/[^/]{0,20}(/tcp/[0-9]{0,8})?(/.{0,10})?",
        "[0-9a-fA-F]{0,70}",
        "[0-9]{0,25}",
        "[a-zA-Z0-9._-]{0,70}",
    ]
}

/// A field value: text near what it expects, a number, or any JSON.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => field_text().prop_map(Value::from),
        2 => prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()].prop_map(Value::from),
        1 => json_value(),
    ]
}

/// The fields of a valid genesis that a replacement goes into.
const GENESIS_FIELDS: &[&str] = &[
    "/chain_id",
    "/genesis_time",
    "/protocol",
    "/params",
    "/params/round_timeout_ms",
    "/params/max_round_timeout_ms",
    "/params/heartbeat_ms",
    "/params/max_block_txs",
    "/params/max_block_bytes",
    "/params/checkpoint_interval",
    "/params/snapshot_interval",
    "/params/raw_transactions",
    "/params/epoch_delay_blocks",
    "/validators",
    "/validators/0",
    "/validators/1/name",
    "/validators/1/consensus_key",
    "/validators/2/network_key",
    "/validators/3/p2p_address",
    "/accounts",
    "/accounts/0/address",
    "/accounts/1/balance",
];

fn replace(doc: &mut Value, pointer: &str, v: Value) {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = v;
    }
}

// ---- Key files ----

fn valid_key_text() -> String {
    let k = crypto::SecretKey::from_seed([7; 32]);
    serde_json::to_string_pretty(&json!({
        "type": "ed25519",
        "secret_key": hex::encode(k.seed()),
        "public_key": k.public().to_string(),
    }))
    .unwrap()
}

/// A fresh directory, in memory where there is a tmpfs: the file cases below create
/// thousands of files, and on a busy disk each waits for the journal.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// A private (0600) file in a fresh directory, rewritten by each case.
struct PrivateFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PrivateFile {
    fn new(name: &str) -> PrivateFile {
        let dir = scratch_dir();
        let path = dir.path().join(name);
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        PrivateFile { _dir: dir, path }
    }

    /// Replaces the file (a new one each time: ext4 flushes a file truncated and rewritten
    /// in place when it is closed, which would make every case wait for the disk).
    fn write(&self, bytes: &[u8]) -> &Path {
        let _ = std::fs::remove_file(&self.path);
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .unwrap();
        f.write_all(bytes).unwrap();
        &self.path
    }

    fn home(&self) -> &Path {
        self.path.parent().unwrap()
    }
}

/// Loads `bytes` as a key file: within the budget; a key that loads is the one the file's
/// secret derives, and its public key is the file's.
fn check_key_file(f: &PrivateFile, bytes: &[u8]) {
    let path = f.write(bytes);
    let (r, used) = measured(|| load_key_file(path));
    assert!(used <= budget(bytes.len()), "{used} B");
    match r {
        Ok(k) => {
            let v: Value = serde_json::from_slice(bytes).expect("a loaded key file is JSON");
            assert_eq!(v["secret_key"], hex::encode(k.seed()));
            let public = v["public_key"].as_str().unwrap().to_ascii_lowercase();
            assert_eq!(public, k.public().to_string());
        }
        Err(e) => {
            // Every refusal is an input error (exit code 2), a file that is not UTF-8
            // included (this test found it counted as a machine failure; fixed).
            assert!(e.is_input_error(), "{e}");
            let shown = e.to_string();
            // Never the secret, even of a file that failed for another reason.
            let seed = hex::encode([7u8; 32]);
            if !shown.contains("does not match") {
                assert!(!shown.contains(&seed), "{shown}");
            }
        }
    }
}

// ---- Node config ----

const VALID_CONFIG: &str = r#"name = "validator-0"
p2p_listen = "/ip4/127.0.0.1/tcp/26600"
api_listen = "127.0.0.1:27600"
data_dir = "data"
consensus_key_file = "consensus_key.json"
network_key_file = "network_key.json"
genesis_file = "genesis.json"
log_level = "info,cairn=debug"
"#;

/// Loads `bytes` as `config.toml`: within the budget; a config that loads is valid and
/// survives save and reload.
fn check_config(f: &PrivateFile, bytes: &[u8]) {
    f.write(bytes);
    let (r, used) = measured(|| NodeConfig::load(f.home()));
    assert!(
        used <= budget(bytes.len()),
        "{used} B for {} bytes",
        bytes.len()
    );
    match r {
        Ok(c) => {
            assert!(c.validate().is_ok());
            c.save(f.home()).unwrap();
            assert_eq!(NodeConfig::load(f.home()).unwrap(), c);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fn config_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("p2p_listen"),
        Just("api_listen"),
        Just("data_dir"),
        Just("consensus_key_file"),
        Just("log_level"),
        Just("unknown"),
    ];
    let value = prop_oneof![
        field_text().prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("[1, 2, 3]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("true".to_string()),
        ".{0,30}",
    ];
    (key, value).prop_map(|(k, v)| format!("{k} = {v}"))
}

// ---- Properties ----

#[test]
fn genesis_arbitrary_bytes() {
    let _s = serial();
    proptest!(config(1000), |(bytes in prop::collection::vec(any::<u8>(), 0..4096))| {
        check_genesis_bytes(&bytes);
    });
}

#[test]
fn genesis_mutated() {
    let _s = serial();
    proptest!(config(1000), |(ms in mutations())| {
        check_genesis_bytes(&mutate(valid_genesis_text().into_bytes(), &ms));
    });
}

#[test]
fn genesis_fields_with_arbitrary_values() {
    let _s = serial();
    proptest!(config(1000), |(
        edits in prop::collection::vec((0..GENESIS_FIELDS.len(), field_value()), 1..4),
        validators in prop_oneof![Just(4u8), 0u8..12],
        protocol in prop_oneof![Just("hotstuff"), Just("pbft"), Just("raft")],
    )| {
        let mut doc = common::valid_n(validators);
        doc["protocol"] = json!(protocol);
        for (field, v) in edits {
            replace(&mut doc, GENESIS_FIELDS[field], v);
        }
        check_genesis_text(&serde_json::to_string(&doc).unwrap());
    });
}

#[test]
fn key_file_arbitrary_and_mutated() {
    let _s = serial();
    let f = PrivateFile::new("key.json");
    // Fewer cases: each writes files.
    proptest!(config(500), |(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        ms in mutations(),
        field in prop_oneof![Just("type"), Just("secret_key"), Just("public_key"), Just("extra")],
        value in field_value(),
    )| {
        check_key_file(&f, &bytes);
        check_key_file(&f, &mutate(valid_key_text().into_bytes(), &ms));
        let mut doc: Value = serde_json::from_str(&valid_key_text()).unwrap();
        doc[field] = value;
        check_key_file(&f, serde_json::to_string(&doc).unwrap().as_bytes());
    });
}

#[test]
fn node_config_arbitrary_and_mutated() {
    let _s = serial();
    let f = PrivateFile::new(CONFIG_FILE);
    // Fewer cases: each writes files (and a config that loads is saved, with an fsync).
    proptest!(config(400), |(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        ms in mutations(),
        lines in prop::collection::vec(config_line(), 0..6),
    )| {
        check_config(&f, &bytes);
        check_config(&f, &mutate(VALID_CONFIG.as_bytes().to_vec(), &ms));
        let mut text = VALID_CONFIG.to_string();
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        check_config(&f, text.as_bytes());
        // The same lines first (overriding a required field, or not), then only them.
        check_config(&f, format!("{}\n{VALID_CONFIG}", lines.join("\n")).as_bytes());
        check_config(&f, lines.join("\n").as_bytes());
    });
}

#[test]
fn the_valid_inputs_load() {
    let _s = serial();
    let g = Genesis::from_json(&valid_genesis_text()).unwrap();
    assert_eq!(g.n(), 4);
    check_genesis_text(&valid_genesis_text());
    let f = PrivateFile::new("key.json");
    f.write(valid_key_text().as_bytes());
    assert!(load_key_file(&f.path).is_ok());
    let c = PrivateFile::new(CONFIG_FILE);
    c.write(VALID_CONFIG.as_bytes());
    assert!(NodeConfig::load(c.home()).is_ok());
}

/// Nesting far past any parser's recursion limit is an error, not a stack overflow.
#[test]
fn deep_nesting_is_refused() {
    let _s = serial();
    for depth in [200, 10_000, 200_000] {
        let open = "[".repeat(depth);
        let objects = "{\"a\":".repeat(depth);
        for text in [
            open.clone(),
            format!("{open}{}", "]".repeat(depth)),
            format!("{{\"chain_id\": {open}"),
            format!("{{\"params\": {objects}1{}}}", "}".repeat(depth)),
            objects.clone(),
        ] {
            assert!(Genesis::from_json(&text).is_err());
            let f = PrivateFile::new("key.json");
            assert!(load_key_file(f.write(text.as_bytes())).is_err());
        }
        let c = PrivateFile::new(CONFIG_FILE);
        for text in [
            format!("name = {open}"),
            format!("name = {open}{}", "]".repeat(depth)),
            format!("name = {}1{}", "{ a = ".repeat(depth), "}".repeat(depth)),
            format!("{}\nname = 1", "[a]\n".repeat(depth.min(10_000))),
            format!("{} = 1", vec!["a"; depth.min(10_000)].join(".")),
        ] {
            check_config(&c, text.as_bytes());
            assert!(NodeConfig::load(c.home()).is_err());
        }
    }
}

/// Files over their size limit are refused before they are read: a 256 MiB genesis, a
/// 4 KiB key file, a 1 MiB config (sparse files, so nothing is written).
#[test]
fn oversized_files_are_refused_unread() {
    let _s = serial();
    let dir = scratch_dir();
    let genesis = dir.path().join("genesis.json");
    std::fs::File::create(&genesis)
        .unwrap()
        .set_len((256 << 20) + 1)
        .unwrap();
    let (r, used) = measured(|| Genesis::load(&genesis));
    assert!(r.unwrap_err().message.contains("limit"));
    assert!(used < 64 << 10, "{used} B");

    let key = PrivateFile::new("key.json");
    std::fs::File::options()
        .write(true)
        .open(&key.path)
        .unwrap()
        .set_len(4097)
        .unwrap();
    let (r, used) = measured(|| load_key_file(&key.path));
    assert!(r.is_err());
    assert!(used < 64 << 10, "{used} B");

    let config = PrivateFile::new(CONFIG_FILE);
    std::fs::File::options()
        .write(true)
        .open(&config.path)
        .unwrap()
        .set_len((1 << 20) + 1)
        .unwrap();
    let (r, used) = measured(|| NodeConfig::load(config.home()));
    assert!(r.is_err());
    assert!(used < 64 << 10, "{used} B");
}

/// A genesis file that is not UTF-8 is an error naming the file.
#[test]
fn genesis_file_that_is_not_text() {
    let _s = serial();
    let dir = scratch_dir();
    let path = dir.path().join("genesis.json");
    let mut bytes = valid_genesis_text().into_bytes();
    bytes[10] = 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let e = Genesis::load(&path).unwrap_err();
    assert_eq!(e.file.as_deref(), Some(path.as_path()));
}
