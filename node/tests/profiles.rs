//! Wallet profiles (`cairn config`, `--profile NAME`) and shell completions, run as processes
//! with `CAIRN_CONFIG` pointing into a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

fn cairn(args: &[&str], cwd: &Path, config: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.args(args)
        .current_dir(cwd)
        .env("CAIRN_CONFIG", config)
        .env_remove("CAIRN_NODE")
        .env_remove("CAIRN_GENESIS")
        .env_remove("CAIRN_PROFILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn a_profile_fills_in_the_node_key_and_output_and_flags_win() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("conf/config.toml");
    let run = |args: &[&str]| cairn(args, dir, &config, &[]);
    ok(&run(&["keygen", "--out", "a.json"]));
    ok(&run(&["keygen", "--out", "b.json"]));
    let a = json(&run(&["--json", "--key", "a.json", "address"]))["address"].clone();
    let b = json(&run(&["--json", "--key", "b.json", "address"]))["address"].clone();
    assert_ne!(a, b);

    // The first profile saved becomes the default; paths are stored absolute.
    let saved = run(&[
        "config",
        "set",
        "dev",
        "--node",
        "http://127.0.0.1:9",
        "--key-file",
        "a.json",
        "--output",
        "json",
    ]);
    assert!(ok(&saved).contains("profile dev saved"), "{}", text(&saved));
    let shown = json(&run(&["--json", "config", "show"]));
    assert_eq!(shown["default_profile"], "dev", "{shown}");
    let key = shown["profiles"]["dev"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new(&key).is_absolute(), "{shown}");

    // The profile's key and output (JSON without --json), from another folder too.
    let other = tempfile::tempdir().unwrap();
    let from_other = cairn(&["--profile", "dev", "address"], other.path(), &config, &[]);
    assert_eq!(json(&from_other)["address"], a);
    assert_eq!(
        json(&run(&["address"]))["address"],
        a,
        "the default profile"
    );
    // A flag wins over the profile.
    assert_eq!(
        json(&run(&["--profile", "dev", "--key", "b.json", "address"]))["address"],
        b
    );
    // The profile's node: nothing listens on port 9, and the error names it.
    let status = run(&["--profile", "dev", "status"]);
    assert_eq!(status.status.code(), Some(4), "{}", text(&status));
    assert!(text(&status).contains("127.0.0.1:9"), "{}", text(&status));
    // $CAIRN_NODE wins over the profile.
    let env = cairn(
        &["--profile", "dev", "status"],
        dir,
        &config,
        &[("CAIRN_NODE", "http://127.0.0.1:8")],
    );
    assert_eq!(env.status.code(), Some(4), "{}", text(&env));
    assert!(text(&env).contains("127.0.0.1:8"), "{}", text(&env));

    // A second profile, made the default; then removed.
    ok(&run(&[
        "config",
        "set",
        "other",
        "--key-file",
        "b.json",
        "--default",
    ]));
    assert_eq!(json(&run(&["--json", "address"]))["address"], b);
    ok(&run(&["config", "remove", "other"]));
    let shown = json(&run(&["--json", "config", "show"]));
    assert!(shown["profiles"].get("other").is_none(), "{shown}");
    assert_eq!(
        ok(&run(&["config", "path"])).trim(),
        config.to_str().unwrap()
    );
}

#[test]
fn profile_errors_name_the_file_and_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("config.toml");
    let path = config.to_str().unwrap().to_string();
    let run = |args: &[&str]| cairn(args, dir, &config, &[]);
    let fails = |args: &[&str], needles: &[&str]| {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        for n in needles {
            assert!(text(&o).contains(n), "{n:?} not in: {}", text(&o));
        }
    };
    // No file: fine without --profile, an error naming the file with it.
    ok(&run(&["keygen", "--out", "w.json"]));
    ok(&run(&["--key", "w.json", "address"]));
    fails(
        &["--profile", "dev", "--key", "w.json", "address"],
        &[&path, "no config file", "cairn config set dev"],
    );
    // A misspelt field.
    std::fs::write(&config, "[profiles.dev]\nnod = \"http://127.0.0.1:1\"\n").unwrap();
    fails(&["--profile", "dev", "address"], &[&path, "nod", "line 2"]);
    // Not a URL the wallet can use.
    std::fs::write(&config, "[profiles.dev]\nnode = \"ftp://x\"\n").unwrap();
    fails(
        &["--key", "w.json", "address"],
        &[&path, "profiles.dev.node"],
    );
    // A wrong type.
    std::fs::write(&config, "[profiles.dev]\noutput = \"yaml\"\n").unwrap();
    fails(&["--key", "w.json", "address"], &[&path, "output"]);
    // A profile the file does not have; a default that names none.
    std::fs::write(&config, "[profiles.dev]\n").unwrap();
    fails(
        &["--profile", "prod", "address"],
        &[&path, "\"prod\"", "\"dev\""],
    );
    std::fs::write(&config, "default_profile = \"x\"\n[profiles.dev]\n").unwrap();
    fails(&["--key", "w.json", "address"], &[&path, "default_profile"]);
}

#[test]
fn completions_for_each_shell() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    for (shell, needle) in [
        ("bash", "_cairn()"),
        ("zsh", "#compdef cairn"),
        ("fish", "complete -c cairn"),
    ] {
        let script = ok(&cairn(&["completions", shell], tmp.path(), &config, &[]));
        assert!(script.contains(needle), "{shell}: {script}");
        assert!(
            script.contains("transfer") && script.contains("--profile"),
            "{shell}"
        );
    }
}
