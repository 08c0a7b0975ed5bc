//! Key files: roundtrip, permissions, tampering, overwrite protection.

use crypto::SecretKey;
use genesis::keyfile::{KeyFileError, replace_key_file};
use genesis::{generate_key, load_key_file, write_key_file};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The error from loading `path`, which must fail (`SecretKey` has no `Debug`, by design).
fn load_err(path: &Path) -> KeyFileError {
    match load_key_file(path) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e,
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consensus_key.json");
    let key = generate_key();
    write_key_file(&path, &key).unwrap();
    let loaded = load_key_file(&path).unwrap();
    assert_eq!(loaded.seed(), key.seed());
    assert_eq!(loaded.public(), key.public());
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["type"], "ed25519");
    assert_eq!(json["secret_key"], hex::encode(key.seed()));
    assert_eq!(json["public_key"], key.public().to_string());
}

#[test]
fn generated_keys_differ() {
    assert_ne!(generate_key().seed(), generate_key().seed());
}

#[test]
fn written_with_mode_0600_and_no_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.json");
    write_key_file(&path, &generate_key()).unwrap();
    assert_eq!(mode(&path), 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["k.json".to_string()]);
}

#[test]
fn group_readable_file_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consensus_key.json");
    write_key_file(&path, &generate_key()).unwrap();
    chmod(&path, 0o644);
    let err = load_err(&path);
    assert!(
        matches!(err, KeyFileError::Permissions { mode: 0o644, .. }),
        "{err:?}"
    );
    let p = path.display();
    assert_eq!(
        err.to_string(),
        format!("key file {p} is readable by group or others (mode 0644); run: chmod 600 {p}")
    );
    chmod(&path, 0o640);
    assert!(matches!(
        load_key_file(&path),
        Err(KeyFileError::Permissions { mode: 0o640, .. })
    ));
    chmod(&path, 0o400);
    assert!(load_key_file(&path).is_ok());
}

fn write_raw(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("key.json");
    std::fs::write(&path, text).unwrap();
    chmod(&path, 0o600);
    path
}

fn assert_invalid(text: &str, fragment: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_raw(dir.path(), text);
    let err = load_err(&path);
    let shown = err.to_string();
    assert!(matches!(err, KeyFileError::Invalid { .. }), "{err:?}");
    assert!(
        shown.starts_with(&format!("key file {}: ", path.display())),
        "{shown}"
    );
    assert!(shown.contains(fragment), "{shown:?} lacks {fragment:?}");
}

fn key_json(kind: &str, secret: &str, public: &str) -> String {
    format!(r#"{{"type": "{kind}", "secret_key": "{secret}", "public_key": "{public}"}}"#)
}

#[test]
fn mismatched_public_key_is_refused() {
    let a = SecretKey::from_seed([1; 32]);
    let b = SecretKey::from_seed([2; 32]);
    let text = key_json("ed25519", &hex::encode(a.seed()), &b.public().to_string());
    assert_invalid(
        &text,
        &format!("does not match secret_key, which derives {}", a.public()),
    );
    let dir = tempfile::tempdir().unwrap();
    let err = load_err(&write_raw(dir.path(), &text));
    assert!(
        !err.to_string().contains(&hex::encode(a.seed())),
        "secret leaked: {err}"
    );
}

#[test]
fn wrong_type_is_refused() {
    let a = SecretKey::from_seed([1; 32]);
    let text = key_json("secp256k1", &hex::encode(a.seed()), &a.public().to_string());
    assert_invalid(
        &text,
        "type is \"secp256k1\"; only \"ed25519\" keys are supported",
    );
}

#[test]
fn bad_secret_hex_is_refused() {
    let a = SecretKey::from_seed([1; 32]);
    let text = key_json("ed25519", &"g".repeat(64), &a.public().to_string());
    assert_invalid(&text, "secret_key is not 64 hex characters");
    let text = key_json("ed25519", "abcd", &a.public().to_string());
    assert_invalid(&text, "it has 4 characters");
}

#[test]
fn malformed_json_is_refused() {
    assert_invalid(
        "{\"type\": \"ed25519\",",
        "is not a key file (EOF while parsing",
    );
    assert_invalid(r#"{"type": "ed25519"}"#, "missing field `secret_key`");
    assert_invalid(
        r#"{"type": "ed25519", "secret_key": "", "public_key": "", "note": 1}"#,
        "unknown field `note`",
    );
}

#[test]
fn missing_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    let err = load_err(&path);
    assert!(err.is_input_error());
    assert!(
        err.to_string()
            .starts_with(&format!("key file {}: cannot read it:", path.display())),
        "{err}"
    );
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wallet.json");
    let first = generate_key();
    write_key_file(&path, &first).unwrap();
    let err = write_key_file(&path, &generate_key()).unwrap_err();
    assert!(matches!(err, KeyFileError::Exists { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("already exists; refusing to overwrite"),
        "{err}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(load_key_file(&path).unwrap().seed(), first.seed());

    let second = generate_key();
    replace_key_file(&path, &second).unwrap();
    assert_eq!(load_key_file(&path).unwrap().seed(), second.seed());
    assert_eq!(mode(&path), 0o600);
}
