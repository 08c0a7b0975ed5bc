//! ed25519 key files.
//!
//! ```json
//! {"type": "ed25519", "secret_key": "<64 hex seed>", "public_key": "<64 hex>"}
//! ```
//!
//! Written atomically with mode `0600` (a temporary file in the same directory, fsynced, then
//! moved into place, then the directory fsynced), never over an existing file unless asked.
//! Loading refuses files that group or others can read, and checks that `public_key` is the
//! key `secret_key` derives. Error messages never include secret material.

use crypto::SecretKey;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A key file is about 170 bytes; anything past this is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "key file {} already exists; refusing to overwrite it (that would destroy the key it \
         holds). Move it away first, or pass --force to replace it",
        .path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "key file {} is readable by group or others (mode {mode:04o}); run: chmod 600 {}",
        .path.display(), .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("key file {}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("cannot generate a key: the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

impl KeyFileError {
    /// True when the problem is in what the user gave (a missing, unsafe, malformed or
    /// existing file) rather than a failure of the machine (disk full, no randomness).
    pub fn is_input_error(&self) -> bool {
        match self {
            KeyFileError::Exists { .. }
            | KeyFileError::Permissions { .. }
            | KeyFileError::Invalid { .. } => true,
            KeyFileError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ),
            KeyFileError::Random(_) => false,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    #[serde(rename = "type")]
    kind: String,
    secret_key: String,
    public_key: String,
}

/// A new key from the operating system's random number generator.
///
/// # Panics
/// If the OS has no randomness to give (see [`try_generate_key`] for the fallible form).
pub fn generate_key() -> SecretKey {
    match try_generate_key() {
        Ok(k) => k,
        Err(e) => panic!("{e}"),
    }
}

/// A new key from the operating system's random number generator.
pub fn try_generate_key() -> Result<SecretKey, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(KeyFileError::Random)?;
    Ok(SecretKey::from_seed(seed))
}

/// Writes `key` to a new file at `path` (mode 0600, atomically). Fails with
/// [`KeyFileError::Exists`] if `path` exists.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    write_impl(path, key, false)
}

/// Like [`write_key_file`] but replaces an existing file (`keygen --force`).
pub fn replace_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    write_impl(path, key, true)
}

fn write_impl(path: &Path, key: &SecretKey, overwrite: bool) -> Result<(), KeyFileError> {
    let io_err = |action, source| KeyFileError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(KeyFileError::Exists {
            path: path.to_path_buf(),
        });
    }
    let body = KeyFileJson {
        kind: "ed25519".to_string(),
        secret_key: hex::encode(key.seed()),
        public_key: key.public().to_string(),
    };
    // Serializing three strings cannot fail.
    let mut text = serde_json::to_string_pretty(&body).unwrap_or_default();
    text.push('\n');

    let dir = parent_dir(path);
    let tmp = temp_path(path).map_err(|e| io_err("pick a temporary file name", e))?;
    let written = write_new_private(&tmp, text.as_bytes()).and_then(|()| {
        if overwrite {
            fs::rename(&tmp, path)
        } else {
            publish_no_clobber(&tmp, path)
        }
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        if e.kind() == io::ErrorKind::AlreadyExists {
            return Err(KeyFileError::Exists {
                path: path.to_path_buf(),
            });
        }
        return Err(io_err("write", e));
    }
    sync_dir(&dir).map_err(|e| io_err("sync its directory", e))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", hex::encode(nonce)));
    Ok(parent_dir(path).join(tmp))
}

/// Creates `path` (which must not exist) with mode 0600 and writes `bytes` durably.
fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Moves `tmp` to `path` unless `path` exists, atomically: a hard link fails if the target
/// exists, so two concurrent writers cannot both succeed. Filesystems without hard links fall
/// back to check-then-rename.
fn publish_no_clobber(tmp: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(tmp, path) {
        Ok(()) => {
            // The key is in place; a leftover temporary copy (also 0600) is only clutter.
            let _ = fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(tmp, path)
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads the key in `path`, refusing files readable by group or others.
pub fn load_key_file(path: &Path) -> Result<SecretKey, KeyFileError> {
    let invalid = |message: String| KeyFileError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let meta = fs::metadata(path).map_err(|e| KeyFileError::Io {
        path: path.to_path_buf(),
        action: "read it",
        source: e,
    })?;
    if !meta.is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    check_private(path, &meta)?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(invalid(format!(
            "is {} bytes; a key file is a few hundred bytes, so this is not one",
            meta.len()
        )));
    }
    let bytes = fs::read(path).map_err(|e| KeyFileError::Io {
        path: path.to_path_buf(),
        action: "read it",
        source: e,
    })?;
    // Not text is a malformed file (an input error), not a failure of the machine.
    let text = String::from_utf8(bytes)
        .map_err(|_| invalid("is not UTF-8 text; a key file is JSON".to_string()))?;
    parse_key(&text).map_err(invalid)
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

/// Parses key file text. Messages never quote `secret_key`.
fn parse_key(text: &str) -> Result<SecretKey, String> {
    let file: KeyFileJson = serde_json::from_str(text).map_err(|e| {
        format!("is not a key file ({e}); expected {{\"type\": \"ed25519\", \"secret_key\": \"<64 hex>\", \"public_key\": \"<64 hex>\"}}")
    })?;
    if file.kind != "ed25519" {
        return Err(format!(
            "type is {:?}; only \"ed25519\" keys are supported",
            file.kind
        ));
    }
    let seed: [u8; 32] = hex::decode(&file.secret_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format!(
                "secret_key is not 64 hex characters (a 32-byte ed25519 seed); it has {} \
                 characters",
                file.secret_key.chars().count()
            )
        })?;
    let key = SecretKey::from_seed(seed);
    let derived = key.public();
    if !file.public_key.eq_ignore_ascii_case(&derived.to_string()) {
        return Err(format!(
            "public_key {:?} does not match secret_key, which derives {derived}; the file was \
             edited or corrupted, restore it from a backup",
            file.public_key
        ));
    }
    Ok(key)
}
