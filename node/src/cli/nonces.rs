//! The wallet's signing lock and local nonce record, beside its key file.
//!
//! Several `cairn` processes may use one key at the same time (a script, two terminals, a
//! payroll job). A validator's `pending_nonce` counts only the transactions in *its* pool, so
//! two processes that ask two validators, or ask one before the other's transaction arrived,
//! read the same nonce; identical transfers would then even be the same transaction. So a
//! process that signs:
//!
//! 1. takes an exclusive lock on `KEY.lock` (waiting at most [`LOCK_WAIT`]);
//! 2. reads the record `KEY.nonce`: the next nonce this machine has not used yet for this
//!    account and chain, trusted for [`RECORD_FRESH`] after it was written (a transaction
//!    that was admitted and then lost, say by a validator restart, would otherwise leave a
//!    gap that holds back every later nonce);
//! 3. signs with `max(node's pending_nonce, the record)`, submits, and, when the node took
//!    the transaction (or already had it), records the nonce after it;
//! 4. releases the lock, and only then waits for the commit.
//!
//! So on one machine every signing gets its own nonce. The record is advisory: if it is
//! missing, stale, corrupt or for another chain or key, the node's `pending_nonce` alone is
//! used, as before. `cairn nonce` shows it and `cairn nonce --reset` removes it.

use crypto::Digest;
use ledger::{Address, ChainBinding};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait for another process's signing lock. A holder keeps it for one account read
/// and one `sync` submission (each bounded by the client's request timeout).
pub const LOCK_WAIT: Duration = Duration::from_secs(60);
/// How long a record is trusted after it was written.
pub const RECORD_FRESH: Duration = Duration::from_secs(60);
/// Interval between tries of a held lock.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// `KEY.lock` for key file `KEY`.
pub fn lock_path(key: &Path) -> PathBuf {
    beside(key, "lock")
}

/// `KEY.nonce` for key file `KEY`.
pub fn record_path(key: &Path) -> PathBuf {
    beside(key, "nonce")
}

fn beside(key: &Path, ext: &str) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// The record's JSON (`KEY.nonce`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub chain_id: String,
    pub genesis_hash: Digest,
    pub address: Address,
    /// The next nonce this machine has not signed with.
    #[serde(with = "crate::api::dec")]
    pub next_nonce: u64,
    #[serde(with = "crate::api::dec")]
    pub updated_unix_ms: u64,
}

impl Record {
    fn is_for(&self, chain: &ChainBinding, address: &Address) -> bool {
        self.chain_id == chain.chain_id
            && self.genesis_hash == chain.genesis_hash
            && self.address == *address
    }

    /// How long ago it was written (zero if the clock went back).
    pub fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.updated_unix_ms))
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads the record; None if there is none or it cannot be read (it is advisory).
pub fn read_record(key: &Path) -> Option<Record> {
    let text = fs::read(record_path(key)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Held while a process picks a nonce, signs and submits. Dropping it releases the lock.
pub struct SigningLock {
    key: PathBuf,
    /// None: the lock file could not be created or locked (read-only folder, a file system
    /// without locks); signing goes on unserialised, as the warning said.
    _file: Option<File>,
}

impl SigningLock {
    /// Takes the lock of `key`'s signing, waiting up to [`LOCK_WAIT`]. `warn` gets a message
    /// when the lock cannot be used at all (signing then goes on without it).
    pub fn acquire(key: &Path, mut warn: impl FnMut(&str)) -> Result<SigningLock, String> {
        let path = lock_path(key);
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                warn(&format!(
                    "cannot create the signing lock {} ({e}); concurrent cairn processes using \
                     this key may pick the same nonce",
                    path.display()
                ));
                return Ok(SigningLock {
                    key: key.to_path_buf(),
                    _file: None,
                });
            }
        };
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(SigningLock {
                        key: key.to_path_buf(),
                        _file: Some(file),
                    });
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(format!(
                        "another cairn process has held the signing lock {} for {}s; if none \
                         is running, delete that file",
                        path.display(),
                        LOCK_WAIT.as_secs()
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    warn(&format!(
                        "cannot lock {} ({e}); concurrent cairn processes using this key may \
                         pick the same nonce",
                        path.display()
                    ));
                    return Ok(SigningLock {
                        key: key.to_path_buf(),
                        _file: None,
                    });
                }
            }
        }
    }

    /// The record's next nonce, if the record is for this chain and account and fresh.
    pub fn recorded_next(&self, chain: &ChainBinding, address: &Address) -> Option<u64> {
        let r = read_record(&self.key)?;
        (r.is_for(chain, address) && r.age(now_ms()) <= RECORD_FRESH).then_some(r.next_nonce)
    }

    /// Records that nonces below `next` are taken. Never lowers a fresh record of the same
    /// chain and account. A write that fails is reported through `warn` (the record is
    /// advisory).
    pub fn record(
        &self,
        chain: &ChainBinding,
        address: &Address,
        next: u64,
        mut warn: impl FnMut(&str),
    ) {
        let next = self
            .recorded_next(chain, address)
            .map_or(next, |r| r.max(next));
        let record = Record {
            chain_id: chain.chain_id.clone(),
            genesis_hash: chain.genesis_hash,
            address: *address,
            next_nonce: next,
            updated_unix_ms: now_ms(),
        };
        if let Err(e) = write_record(&self.key, &record) {
            warn(&format!(
                "cannot write the nonce record {} ({e}); concurrent cairn processes using \
                 this key may pick the same nonce",
                record_path(&self.key).display()
            ));
        }
    }

    /// Removes the nonce record and the seen-height record (`KEY.seen`); whether there was
    /// a nonce record.
    pub fn reset(&self) -> Result<bool, String> {
        let remove = |path: PathBuf| match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        };
        remove(seen_path(&self.key))?;
        remove(record_path(&self.key))
    }
}

/// `KEY.seen` for key file `KEY`: the highest height at which this wallet saw one of its
/// transactions commit. Reads ask validators for at least that height (`min_height`), so a
/// `balance` after `transfer --wait` reflects the transfer on any validator.
pub fn seen_path(key: &Path) -> PathBuf {
    beside(key, "seen")
}

/// The `KEY.seen` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub genesis_hash: Digest,
    #[serde(with = "crate::api::dec")]
    pub height: u64,
}

/// The height recorded in `KEY.seen` for the chain `genesis` (None: none, or unreadable;
/// the record is advisory).
pub fn read_seen(key: &Path, genesis: &Digest) -> Option<u64> {
    let text = fs::read(seen_path(key)).ok()?;
    let seen: Seen = serde_json::from_slice(&text).ok()?;
    (seen.genesis_hash == *genesis).then_some(seen.height)
}

impl SigningLock {
    /// Records that a transaction of this wallet committed at `height` (never lowers the
    /// record of the same chain).
    pub fn record_seen(&self, genesis: &Digest, height: u64, mut warn: impl FnMut(&str)) {
        let height = read_seen(&self.key, genesis).map_or(height, |h| h.max(height));
        let seen = Seen {
            genesis_hash: *genesis,
            height,
        };
        if let Err(e) = write_json(&self.key, "seen", &seen) {
            warn(&format!(
                "cannot write {} ({e}); a read right after this transfer may not show it",
                seen_path(&self.key).display()
            ));
        }
    }
}

/// Writes the record through a temporary file and a rename, so a reader never sees half.
fn write_record(key: &Path, record: &Record) -> std::io::Result<()> {
    write_json(key, "nonce", record)
}

fn write_json(key: &Path, ext: &str, value: &impl Serialize) -> std::io::Result<()> {
    let path = beside(key, ext);
    let tmp = beside(key, &format!("{ext}.tmp"));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    // Records always serialize.
    let json = serde_json::to_vec_pretty(value).unwrap_or_default();
    f.write_all(&json)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    fs::rename(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(id: &str) -> ChainBinding {
        ChainBinding {
            chain_id: id.into(),
            genesis_hash: Digest([1; 32]),
        }
    }

    #[test]
    fn paths_sit_beside_the_key() {
        let key = Path::new("/x/wallet.json");
        assert_eq!(lock_path(key), Path::new("/x/wallet.json.lock"));
        assert_eq!(record_path(key), Path::new("/x/wallet.json.nonce"));
    }

    #[test]
    fn the_record_only_rises_and_only_counts_for_its_chain_and_account() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("w.json");
        let (a, b) = (Address([1; 20]), Address([2; 20]));
        let lock = SigningLock::acquire(&key, |w| panic!("{w}")).unwrap();
        assert_eq!(lock.recorded_next(&chain("c"), &a), None);
        lock.record(&chain("c"), &a, 5, |w| panic!("{w}"));
        assert_eq!(lock.recorded_next(&chain("c"), &a), Some(5));
        lock.record(&chain("c"), &a, 3, |w| panic!("{w}"));
        assert_eq!(
            lock.recorded_next(&chain("c"), &a),
            Some(5),
            "never lowered"
        );
        lock.record(&chain("c"), &a, 9, |w| panic!("{w}"));
        assert_eq!(lock.recorded_next(&chain("c"), &a), Some(9));
        assert_eq!(lock.recorded_next(&chain("other"), &a), None);
        assert_eq!(lock.recorded_next(&chain("c"), &b), None);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(record_path(&key)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(lock.reset().unwrap());
        assert!(!lock.reset().unwrap());
        assert_eq!(lock.recorded_next(&chain("c"), &a), None);
    }

    #[test]
    fn a_stale_or_corrupt_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("w.json");
        let a = Address([1; 20]);
        let stale = Record {
            chain_id: "c".into(),
            genesis_hash: Digest([1; 32]),
            address: a,
            next_nonce: 40,
            updated_unix_ms: now_ms() - RECORD_FRESH.as_millis() as u64 - 1_000,
        };
        write_record(&key, &stale).unwrap();
        let lock = SigningLock::acquire(&key, |w| panic!("{w}")).unwrap();
        assert_eq!(lock.recorded_next(&chain("c"), &a), None);
        // A stale record does not hold a new one up either.
        lock.record(&chain("c"), &a, 2, |w| panic!("{w}"));
        assert_eq!(lock.recorded_next(&chain("c"), &a), Some(2));
        fs::write(record_path(&key), b"{not json").unwrap();
        assert_eq!(lock.recorded_next(&chain("c"), &a), None);
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("w.json");
        let first = SigningLock::acquire(&key, |w| panic!("{w}")).unwrap();
        // Another open file description of the same lock file cannot take it meanwhile.
        let other = File::open(lock_path(&key)).unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(first);
        other.try_lock().unwrap();
    }
}
