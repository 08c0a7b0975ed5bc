//! End-to-end tests of the `cairnd` and `cairn` commands, run as processes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(bin: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
}

fn cairnd(args: &[&str], cwd: &Path) -> Output {
    run(env!("CARGO_BIN_EXE_cairnd"), args, cwd)
}

fn cairn(args: &[&str], cwd: &Path) -> Output {
    run(env!("CARGO_BIN_EXE_cairn"), args, cwd)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it differs.
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Runs `cairnd testnet --validators 4 --protocol PROTOCOL --out TMP/net`; returns the
/// output directory and the command's output.
fn make_testnet(tmp: &Path, protocol: &str) -> (PathBuf, Output) {
    let out = tmp.join("net");
    let args = [
        "testnet",
        "--validators",
        "4",
        "--protocol",
        protocol,
        "--out",
    ];
    let o = cairnd(&[&args[..], &[out.to_str().unwrap()]].concat(), tmp);
    assert_exit(&o, 0);
    (out, o)
}

#[test]
fn testnet_then_genesis_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, o) = make_testnet(tmp.path(), "hotstuff");
    let genesis_path = out.join("genesis.json");
    let hash = genesis::Genesis::load(&genesis_path)
        .unwrap()
        .hash()
        .to_string();
    let printed = stdout(&o);
    assert!(printed.contains(&format!("hash {hash}")), "{printed}");
    assert!(printed.contains("n=4 f=1 quorum=3"), "{printed}");

    let o = cairnd(
        &["genesis", "validate", genesis_path.to_str().unwrap()],
        tmp.path(),
    );
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("protocol:     hotstuff"), "{text}");
    assert!(text.contains("validators:   n=4 f=1 quorum=3"), "{text}");
    assert!(text.contains("total_supply: 4000000000"), "{text}");
    assert!(text.contains(&format!("hash:         {hash}")), "{text}");
}

/// `cairnd testnet --hosts-file` writes one home per host; `genesis validate --hosts`
/// checks the peer list against genesis and names the first entry that differs.
#[test]
fn testnet_for_hosts_then_validate_the_peer_list() {
    let tmp = tempfile::tempdir().unwrap();
    let hosts = tmp.path().join("hosts.txt");
    std::fs::write(
        &hosts,
        "# one per validator\na.example:26600\nb.example:26600\n\n10.1.0.3:26600\nd.example:26600\n",
    )
    .unwrap();
    let out = tmp.path().join("net");
    let o = cairnd(
        &[
            "testnet",
            "--protocol",
            "hotstuff",
            "--hosts-file",
            hosts.to_str().unwrap(),
            "--api-bind",
            "0.0.0.0",
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_exit(&o, 0);
    let config = std::fs::read_to_string(out.join("validator-1/config.toml")).unwrap();
    assert!(
        config.contains("p2p_listen = \"/ip4/0.0.0.0/tcp/26600\""),
        "{config}"
    );
    assert!(
        config.contains("api_listen = \"0.0.0.0:27600\""),
        "{config}"
    );
    let g = out.join("genesis.json");
    let g = g.to_str().unwrap();
    let list = "a.example:26600,b.example:26600,10.1.0.3:26600,d.example:26600";
    let o = cairnd(&["genesis", "validate", g, "--hosts", list], tmp.path());
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("all 4 match"), "{}", stdout(&o));
    let wrong = "a.example:26600,b.example:26601,10.1.0.3:26600,d.example:26600";
    let o = cairnd(&["genesis", "validate", g, "--hosts", wrong], tmp.path());
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("validators[1].p2p_address is /dns/b.example/tcp/26600"),
        "{}",
        stderr(&o)
    );
    let o = cairnd(
        &["genesis", "validate", g, "--hosts", "a.example:26600"],
        tmp.path(),
    );
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("1 entries, genesis 4"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn testnet_key_files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _) = make_testnet(tmp.path(), "raft");
    let files = files_under(&out);
    // genesis.json, 4 x (genesis.json, config.toml, 2 keys), 4 wallets: no stray temp files.
    assert_eq!(files.len(), 1 + 4 * 4 + 4, "{files:?}");
    let is_key = |p: &Path| {
        let name = p.file_name().unwrap().to_str().unwrap();
        name.ends_with("_key.json") || name.starts_with("wallet-")
    };
    let keys: Vec<_> = files.iter().filter(|p| is_key(p)).collect();
    assert_eq!(keys.len(), 4 * 2 + 4, "{keys:?}");
    for f in keys {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

#[test]
fn unsafe_wallet_file_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _) = make_testnet(tmp.path(), "pbft");
    let g = genesis::Genesis::load(&out.join("genesis.json")).unwrap();
    let wallet = out.join("wallets/wallet-2.json");
    let wallet_s = wallet.to_str().unwrap();
    let o = cairn(&["address", "--key", wallet_s], tmp.path());
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), g.accounts[2].address.to_string());

    std::fs::set_permissions(&wallet, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = cairn(&["address", "--key", wallet_s], tmp.path());
    assert_exit(&o, 2);
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "error: key file {wallet_s} is readable by group or others (mode 0644); \
             run: chmod 600 {wallet_s}"
        )
    );
    assert_eq!(stdout(&o), "");
}

#[test]
fn malformed_genesis_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _) = make_testnet(tmp.path(), "pbft");
    let path = out.join("genesis.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["validators"][3]["consensus_key"] = doc["validators"][0]["consensus_key"].clone();
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    let o = cairnd(&["genesis", "validate", path.to_str().unwrap()], tmp.path());
    assert_exit(&o, 2);
    assert!(
        stderr(&o).starts_with(&format!(
            "error: {}: validators[3].consensus_key: same key as validators[0].consensus_key",
            path.display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");

    std::fs::write(&path, "{\"chain_id\": }").unwrap();
    let o = cairnd(&["genesis", "validate", path.to_str().unwrap()], tmp.path());
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("invalid JSON at line 1, column 14"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn testnet_input_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("net");
    let out_s = out.to_str().unwrap();
    let o = cairnd(
        &[
            "testnet",
            "--validators",
            "3",
            "--protocol",
            "hotstuff",
            "--out",
            out_s,
        ],
        tmp.path(),
    );
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("hotstuff needs at least 4 validators"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    let o = cairnd(
        &[
            "testnet",
            "--validators",
            "4",
            "--protocol",
            "paxos",
            "--out",
            out_s,
        ],
        tmp.path(),
    );
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("unknown protocol \"paxos\""),
        "{}",
        stderr(&o)
    );

    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("x"), "").unwrap();
    let o = cairnd(
        &[
            "testnet",
            "--validators",
            "1",
            "--protocol",
            "raft",
            "--out",
            out_s,
        ],
        tmp.path(),
    );
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
}

#[test]
fn wallet_keygen_and_address_roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let o = cairn(&["keygen"], tmp.path());
    assert_exit(&o, 0);
    let wallet = tmp.path().join("wallet.json");
    assert_eq!(mode(&wallet), 0o600);
    let key = genesis::load_key_file(&wallet).unwrap();
    let address = ledger::Address::of(&key.public()).to_string();
    assert!(
        stdout(&o).contains(&format!("address: {address}")),
        "{}",
        stdout(&o)
    );

    let o = cairn(&["address"], tmp.path());
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), format!("{address}\n"));

    let o = cairn(&["address", "--json"], tmp.path());
    assert_exit(&o, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["address"], address.as_str());
    assert_eq!(json["public_key"], key.public().to_string().as_str());

    let o = cairn(&["keygen"], tmp.path());
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("wallet.json already exists"),
        "{}",
        stderr(&o)
    );
    assert_eq!(genesis::load_key_file(&wallet).unwrap().seed(), key.seed());

    let o = cairn(&["keygen", "--force"], tmp.path());
    assert_exit(&o, 0);
    assert_ne!(genesis::load_key_file(&wallet).unwrap().seed(), key.seed());

    let o = cairn(&["keygen", "--out", "other.json"], tmp.path());
    assert_exit(&o, 0);
    let o2 = cairn(&["address", "--key", "other.json"], tmp.path());
    assert_exit(&o2, 0);
    assert!(stdout(&o).contains(&format!("address: {}", stdout(&o2).trim())));

    let o = cairn(&["address", "--key", "missing.json"], tmp.path());
    assert_exit(&o, 2);
    assert!(
        stderr(&o).starts_with("error: key file missing.json: cannot read it"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn validator_keygen() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("node");
    let home_s = home.to_str().unwrap();
    let o = cairnd(&["keygen", "--home", home_s], tmp.path());
    assert_exit(&o, 0);
    let ck = genesis::load_key_file(&home.join("consensus_key.json")).unwrap();
    let nk = genesis::load_key_file(&home.join("network_key.json")).unwrap();
    assert_ne!(ck.seed(), nk.seed());
    let text = stdout(&o);
    assert!(
        text.contains(&format!("consensus_key: {}", ck.public())),
        "{text}"
    );
    assert!(
        text.contains(&format!("network_key: {}", nk.public())),
        "{text}"
    );
    assert_eq!(mode(&home.join("consensus_key.json")), 0o600);
    assert_eq!(mode(&home.join("network_key.json")), 0o600);

    let o = cairnd(&["keygen", "--home", home_s], tmp.path());
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let again = genesis::load_key_file(&home.join("consensus_key.json")).unwrap();
    assert_eq!(again.seed(), ck.seed());

    let o = cairnd(&["keygen", "--home", home_s, "--force"], tmp.path());
    assert_exit(&o, 0);
    let replaced = genesis::load_key_file(&home.join("consensus_key.json")).unwrap();
    assert_ne!(replaced.seed(), ck.seed());
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let o = cairnd(&["testnet", "--validators", "four"], tmp.path());
    assert_exit(&o, 2);
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    let o = cairn(&["frobnicate"], tmp.path());
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("unrecognized subcommand 'frobnicate'"),
        "{}",
        stderr(&o)
    );
}
