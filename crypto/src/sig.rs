//! ed25519 keys, domain-separated signing, and Cairn's single verification rule.
//!
//! # The verification rule
//!
//! ed25519-dalek's `verify_strict` and `verify_batch` disagree on two of the fifteen
//! speccheck edge cases (`../shared/test-vectors`): case 6 is accepted singly and rejected in
//! a batch, case 14 the reverse. If one replica batch-verifies a block and another verifies
//! its transactions one by one, they could disagree on the block's validity. So Cairn uses
//! one rule on every path:
//!
//! 1. the public key must decode to a curve point that is **not of small order** (a
//!    small-order key lets anyone forge signatures for it); then
//! 2. the **ZIP-215** verification equation (cofactored, canonical `s`, non-canonical point
//!    encodings allowed), as implemented by `ed25519-zebra` 4 (the same rule as
//!    `ed25519-consensus`, on curve25519-dalek 4, whose AVX2 backend is picked at run time),
//!    whose single and batch verifiers are specified to agree.
//!
//! [`verify`] and [`verify_batch`] both apply exactly that; tests run every speccheck case
//! through both and through a batch among valid signatures.
//!
//! Signing uses ed25519-dalek (deterministic RFC 8032 signatures, identical to what
//! ed25519-zebra would produce).
//!
//! # Domains
//!
//! Every signature covers `"cairn/v1/" || domain tag || 0x00 || message`. Tags contain no
//! zero byte, so the prefix is unambiguous and a signature for one [`Domain`] never verifies
//! for another.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::Signer as _;
use rand_core::SeedableRng;
use std::fmt;

/// What a signature is for. Adding a variant is safe; changing a tag breaks every signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    Transaction,
    Proposal,
    Vote,
    Timeout,
    PbftPrePrepare,
    PbftPrepare,
    PbftCommit,
    PbftCheckpoint,
    PbftViewChange,
    PbftNewView,
    RaftBlock,
    /// A validator's attestation of a ledger header it executed and stored (the header
    /// certificate that proofs of state are checked against).
    Header,
    /// Test-only and tooling signatures that must never be confused with protocol ones.
    Test,
    /// A validator's approval of a change to the validator set (`ledger::validators`).
    Governance,
}

impl Domain {
    pub const ALL: [Domain; 14] = [
        Domain::Transaction,
        Domain::Proposal,
        Domain::Vote,
        Domain::Timeout,
        Domain::PbftPrePrepare,
        Domain::PbftPrepare,
        Domain::PbftCommit,
        Domain::PbftCheckpoint,
        Domain::PbftViewChange,
        Domain::PbftNewView,
        Domain::RaftBlock,
        Domain::Header,
        Domain::Test,
        Domain::Governance,
    ];

    pub fn tag(self) -> &'static str {
        match self {
            Domain::Transaction => "transaction",
            Domain::Proposal => "hotstuff-proposal",
            Domain::Vote => "hotstuff-vote",
            Domain::Timeout => "hotstuff-timeout",
            Domain::PbftPrePrepare => "pbft-pre-prepare",
            Domain::PbftPrepare => "pbft-prepare",
            Domain::PbftCommit => "pbft-commit",
            Domain::PbftCheckpoint => "pbft-checkpoint",
            Domain::PbftViewChange => "pbft-view-change",
            Domain::PbftNewView => "pbft-new-view",
            Domain::RaftBlock => "raft-block",
            Domain::Header => "ledger-header",
            Domain::Test => "test",
            Domain::Governance => "validator-set-change",
        }
    }

    fn signing_bytes(self, msg: &[u8]) -> Vec<u8> {
        let tag = self.tag().as_bytes();
        let mut out = Vec::with_capacity(9 + tag.len() + 1 + msg.len());
        out.extend_from_slice(b"cairn/v1/");
        out.extend_from_slice(tag);
        out.push(0);
        out.extend_from_slice(msg);
        out
    }
}

/// An ed25519 public key as 32 raw bytes. Any 32 bytes can be held (so that decoding a
/// transaction never fails on the key alone); [`PublicKey::validate`] and every verification
/// reject keys that are not valid, non-small-order points.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (R || s), 64 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

crate::hex_or_bytes_serde!(PublicKey, 32);
crate::hex_or_bytes_serde!(Signature, 64);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.0[..4]))
    }
}
impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..4]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected 64 hex characters (32 bytes), got {0:?}")]
    BadHex(String),
    #[error("not a valid ed25519 public key (the bytes do not decode to a curve point)")]
    NotAPoint,
    #[error("ed25519 public key has small order (signatures for it can be forged)")]
    SmallOrder,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("signature does not verify")]
    Invalid,
}

/// Keys each thread remembers as valid (see [`PublicKey::validate`]).
pub const VALID_KEY_CACHE: usize = 65_536;

thread_local! {
    static VALID_KEYS: std::cell::RefCell<std::collections::HashSet<[u8; 32]>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

impl PublicKey {
    /// Checks the key is a curve point of large order (rule 1 of the verification rule).
    ///
    /// Point decompression costs a square root (about a quarter of a verification), and the
    /// same senders sign again and again, so each thread remembers up to
    /// [`VALID_KEY_CACHE`] keys that passed (a pure function of the 32 bytes: the cache can
    /// only save time, never change a verdict; it is emptied when full).
    pub fn validate(&self) -> Result<(), KeyError> {
        if VALID_KEYS.with(|c| c.borrow().contains(&self.0)) {
            return Ok(());
        }
        self.validate_uncached()?;
        VALID_KEYS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= VALID_KEY_CACHE {
                c.clear();
            }
            c.insert(self.0);
        });
        Ok(())
    }

    fn validate_uncached(&self) -> Result<(), KeyError> {
        let point = CompressedEdwardsY(self.0)
            .decompress()
            .ok_or(KeyError::NotAPoint)?;
        if point.is_small_order() {
            return Err(KeyError::SmallOrder);
        }
        Ok(())
    }

    /// Parses 64 hex characters and validates the point.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s).map_err(|_| KeyError::BadHex(s.to_string()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::BadHex(s.to_string()))?;
        let pk = PublicKey(arr);
        pk.validate()?;
        Ok(pk)
    }
}

/// An ed25519 signing key. Not `Debug`/`Display`: secrets never reach logs.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// The key whose RFC 8032 seed is `seed`. Callers get seeds from the OS (key generation in
    /// `genesis`) or from a seeded RNG (simulator); this crate never draws randomness itself.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The 32-byte seed, for key files.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `msg` for `domain`.
    pub fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
        let bytes = domain.signing_bytes(msg);
        crate::memo::signature(&bytes, &self.public(), || {
            Signature(self.0.sign(&bytes).to_bytes())
        })
    }
}

/// Cairn's one verification rule (see module docs): large-order key, then ZIP-215.
pub fn verify(
    domain: Domain,
    msg: &[u8],
    key: &PublicKey,
    sig: &Signature,
) -> Result<(), SignatureError> {
    verify_raw(&domain.signing_bytes(msg), key, sig)
}

/// The verification rule on raw message bytes, without a domain prefix. Only for checking
/// third-party test vectors; protocol code always goes through [`verify`].
pub fn verify_raw(msg: &[u8], key: &PublicKey, sig: &Signature) -> Result<(), SignatureError> {
    if !crate::memo::active() {
        return verify_uncached(msg, key, sig);
    }
    if crate::memo::verdict(msg, key, sig, || verify_uncached(msg, key, sig).is_ok()) {
        Ok(())
    } else {
        // Remembered as refused: computed again for the reason (a rare path).
        verify_uncached(msg, key, sig)
    }
}

fn verify_uncached(msg: &[u8], key: &PublicKey, sig: &Signature) -> Result<(), SignatureError> {
    key.validate()?;
    let vk = ed25519_zebra::VerificationKey::try_from(key.0).map_err(|_| KeyError::NotAPoint)?;
    vk.verify(&ed25519_zebra::Signature::from(sig.0), msg)
        .map_err(|_| SignatureError::Invalid)
}

/// Verifies many signatures at once under the same rule as [`verify`], returning one verdict
/// per item in order. A batch that fails is re-checked item by item, which is safe because
/// ZIP-215 batch and single verification agree by specification (tested on the speccheck
/// vectors).
///
/// The batch's random coefficients come from a ChaCha20 stream seeded with sha256 of every
/// item, so verification is deterministic and needs no OS randomness.
pub fn verify_batch(items: &[(Domain, &[u8], PublicKey, Signature)]) -> Vec<bool> {
    let raw: Vec<(Vec<u8>, PublicKey, Signature)> = items
        .iter()
        .map(|(d, m, k, s)| (d.signing_bytes(m), *k, *s))
        .collect();
    verify_batch_raw(&raw)
}

/// [`verify_batch`] on raw message bytes; see [`verify_raw`].
pub fn verify_batch_raw(items: &[(Vec<u8>, PublicKey, Signature)]) -> Vec<bool> {
    let Some(known) = crate::memo::lookup_batch(items) else {
        return verify_batch_uncached(items);
    };
    let todo: Vec<usize> = (0..items.len()).filter(|i| known[*i].1.is_none()).collect();
    let sub: Vec<(Vec<u8>, PublicKey, Signature)> =
        todo.iter().map(|i| items[*i].clone()).collect();
    let fresh = verify_batch_uncached(&sub);
    crate::memo::record(todo.iter().zip(&fresh).map(|(i, v)| (known[*i].0, *v)));
    let mut verdicts: Vec<bool> = known.iter().map(|(_, v)| v.unwrap_or(false)).collect();
    for (i, v) in todo.iter().zip(fresh) {
        verdicts[*i] = v;
    }
    verdicts
}

fn verify_batch_uncached(items: &[(Vec<u8>, PublicKey, Signature)]) -> Vec<bool> {
    // Below this size a batch costs more than single verifications (same rule either way).
    const MIN_BATCH: usize = 8;
    if items.len() < MIN_BATCH {
        return items
            .iter()
            .map(|(m, k, s)| verify_uncached(m, k, s).is_ok())
            .collect();
    }
    let mut verdicts = vec![true; items.len()];
    let mut batch = ed25519_zebra::batch::Verifier::new();
    let mut seed = crate::Hasher::new();
    let mut queued = 0usize;
    for (i, (bytes, key, sig)) in items.iter().enumerate() {
        if key.validate().is_err() {
            verdicts[i] = false;
            continue;
        }
        seed.part(&key.0).part(&sig.0).part(bytes);
        batch.queue((
            ed25519_zebra::VerificationKeyBytes::from(key.0),
            ed25519_zebra::Signature::from(sig.0),
            bytes,
        ));
        queued += 1;
    }
    if queued == 0 {
        return verdicts;
    }
    let rng = rand_chacha::ChaCha20Rng::from_seed(seed.finish().0);
    if batch.verify(rng).is_ok() {
        return verdicts;
    }
    for (i, (bytes, key, sig)) in items.iter().enumerate() {
        if verdicts[i] {
            verdicts[i] = verify_uncached(bytes, key, sig).is_ok();
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    #[test]
    fn sign_verify_roundtrip() {
        let k = key(1);
        let s = k.sign(Domain::Vote, b"hello");
        assert_eq!(verify(Domain::Vote, b"hello", &k.public(), &s), Ok(()));
        assert_eq!(
            verify(Domain::Vote, b"hellp", &k.public(), &s),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(Domain::Vote, b"hello", &key(2).public(), &s),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn every_domain_rejects_every_other() {
        let k = key(3);
        for a in Domain::ALL {
            let s = k.sign(a, b"same bytes");
            for b in Domain::ALL {
                let ok = verify(b, b"same bytes", &k.public(), &s).is_ok();
                assert_eq!(ok, a == b, "signed for {a:?}, checked as {b:?}");
            }
        }
    }

    #[test]
    fn domain_tags_are_distinct_and_zero_free() {
        let mut tags: Vec<_> = Domain::ALL.iter().map(|d| d.tag()).collect();
        assert!(tags.iter().all(|t| !t.as_bytes().contains(&0)));
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), Domain::ALL.len());
    }

    #[test]
    fn batch_reports_the_bad_item() {
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut items: Vec<(Domain, &[u8], PublicKey, Signature)> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let k = key(i as u8 + 10);
                (
                    Domain::Transaction,
                    m.as_slice(),
                    k.public(),
                    k.sign(Domain::Transaction, m),
                )
            })
            .collect();
        assert_eq!(verify_batch(&items), vec![true; 8]);
        items[5].3.0[0] ^= 1;
        let mut expect = vec![true; 8];
        expect[5] = false;
        assert_eq!(verify_batch(&items), expect);
        assert!(verify_batch(&[]).is_empty());
    }

    #[test]
    fn small_order_and_garbage_keys_rejected() {
        // The identity point (0, 1) encodes as 1 followed by zeros: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey(identity).validate(), Err(KeyError::SmallOrder));
        // y = 2 is not on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(PublicKey(bad).validate(), Err(KeyError::NotAPoint));
        assert!(PublicKey::from_hex("abcd").is_err());
        assert!(key(9).public().validate().is_ok());
    }

    #[test]
    fn secret_seed_roundtrip() {
        let k = key(7);
        assert_eq!(SecretKey::from_seed(k.seed()).public(), k.public());
    }
}

#[cfg(test)]
mod key_cache_tests {
    use super::*;

    #[test]
    fn the_valid_key_cache_never_changes_a_verdict() {
        let good = SecretKey::from_seed([3; 32]).public();
        // Small order: the identity point (y = 1).
        let mut small = [0u8; 32];
        small[0] = 1;
        let small = PublicKey(small);
        for _ in 0..3 {
            assert_eq!(good.validate(), Ok(()));
            assert_eq!(small.validate(), Err(KeyError::SmallOrder));
        }
        // Fill the cache to its cap: the next new key empties it and is still checked.
        VALID_KEYS.with(|c| {
            let mut c = c.borrow_mut();
            for i in 0..VALID_KEY_CACHE as u32 {
                let mut k = [0xEEu8; 32];
                k[..4].copy_from_slice(&i.to_le_bytes());
                c.insert(k);
            }
        });
        let other = SecretKey::from_seed([4; 32]).public();
        assert_eq!(other.validate(), Ok(()));
        assert_eq!(VALID_KEYS.with(|c| c.borrow().len()), 1);
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(small.validate(), Err(KeyError::SmallOrder));
    }
}
