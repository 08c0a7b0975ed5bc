//! An opt-in, per-thread memo of signature verdicts and signatures, for the simulator.
//!
//! A simulated cluster runs every replica of a scenario on one thread, so the same
//! proposal, vote or certificate is verified once per replica (five times with a twin),
//! and the twins of a replica sign the same messages twice. Profiling the Twins enumeration
//! put about 90 % of its time in ed25519. Both verification and signing are pure functions
//! of their inputs (RFC 8032 signatures are deterministic), so a thread may remember their
//! results: a remembered verdict is the verdict, never a different one.
//!
//! Nothing remembers anything until a thread calls [`remember_on_this_thread`]; the
//! validator never does, so its verification costs and behaviour are untouched (one
//! thread-local flag read per call). Entries are keyed by sha256 over the key, signature
//! and the exact signed bytes, and each memo holds at most its capacity (emptied when
//! full), so memory is bounded.

use crate::{Digest, Hasher, PublicKey, Signature};
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;

/// Fixed hash keys: the memo draws no randomness (its keys are sha256 digests already).
type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

struct Memo {
    capacity: usize,
    verdicts: HashMap<Digest, bool>,
    signatures: HashMap<Digest, Signature>,
    hits: u64,
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// From now on this thread remembers up to `capacity` verification verdicts and as many
/// signatures (see the module docs). Calling it again keeps what is remembered and only
/// changes the capacity; a capacity of 0 stops remembering and forgets everything.
pub fn remember_on_this_thread(capacity: usize) {
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        if capacity == 0 {
            *m = None;
            return;
        }
        match m.as_mut() {
            Some(memo) => memo.capacity = capacity,
            None => {
                *m = Some(Memo {
                    capacity,
                    verdicts: HashMap::default(),
                    signatures: HashMap::default(),
                    hits: 0,
                })
            }
        }
    });
}

/// How many answers this thread's memo has given instead of computing them.
pub fn hits_on_this_thread() -> u64 {
    MEMO.with(|m| m.borrow().as_ref().map_or(0, |m| m.hits))
}

pub(crate) fn active() -> bool {
    MEMO.with(|m| m.borrow().is_some())
}

fn verdict_key(bytes: &[u8], key: &PublicKey, sig: &Signature) -> Digest {
    let mut h = Hasher::new();
    h.part(b"verdict").part(&key.0).part(&sig.0).part(bytes);
    h.finish()
}

fn signature_key(bytes: &[u8], key: &PublicKey) -> Digest {
    let mut h = Hasher::new();
    h.part(b"signature").part(&key.0).part(bytes);
    h.finish()
}

fn insert<V>(map: &mut HashMap<Digest, V>, capacity: usize, k: Digest, v: V) {
    if map.len() >= capacity {
        map.clear();
    }
    map.insert(k, v);
}

/// `compute()`, answered from the map `pick` selects when this thread remembers `k`, and
/// remembered there otherwise.
fn remembered<V: Copy>(
    pick: impl Fn(&mut Memo) -> &mut HashMap<Digest, V>,
    k: Digest,
    compute: impl FnOnce() -> V,
) -> V {
    let known = MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let memo = m.as_mut()?;
        let v = pick(memo).get(&k).copied();
        memo.hits += u64::from(v.is_some());
        v
    });
    if let Some(v) = known {
        return v;
    }
    let v = compute();
    MEMO.with(|m| {
        if let Some(memo) = m.borrow_mut().as_mut() {
            let capacity = memo.capacity;
            insert(pick(memo), capacity, k, v);
        }
    });
    v
}

/// `compute()`, the verdict on `sig` by `key` over `bytes`, answered from the memo when this
/// thread remembers it.
pub(crate) fn verdict(
    bytes: &[u8],
    key: &PublicKey,
    sig: &Signature,
    compute: impl FnOnce() -> bool,
) -> bool {
    if !active() {
        return compute();
    }
    remembered(|m| &mut m.verdicts, verdict_key(bytes, key, sig), compute)
}

/// Remembers verdicts already computed elsewhere (a batch), when this thread remembers.
pub(crate) fn record(items: impl Iterator<Item = (Digest, bool)>) {
    MEMO.with(|m| {
        if let Some(memo) = m.borrow_mut().as_mut() {
            for (k, v) in items {
                insert(&mut memo.verdicts, memo.capacity, k, v);
            }
        }
    });
}

/// The remembered verdict of each item, if this thread remembers verdicts: `None` when it
/// does not; otherwise, per item, its key and what is known of it.
#[allow(clippy::type_complexity)]
pub(crate) fn lookup_batch(
    items: &[(Vec<u8>, PublicKey, Signature)],
) -> Option<Vec<(Digest, Option<bool>)>> {
    if !active() {
        return None;
    }
    let keys: Vec<Digest> = items.iter().map(|(b, k, s)| verdict_key(b, k, s)).collect();
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let memo = m.as_mut()?;
        let found: Vec<(Digest, Option<bool>)> = keys
            .into_iter()
            .map(|k| {
                let v = memo.verdicts.get(&k).copied();
                (k, v)
            })
            .collect();
        memo.hits += found.iter().filter(|(_, v)| v.is_some()).count() as u64;
        Some(found)
    })
}

/// `compute()`, the signature of `bytes` by `key`, answered from the memo when this thread
/// remembers it.
pub(crate) fn signature(
    bytes: &[u8],
    key: &PublicKey,
    compute: impl FnOnce() -> Signature,
) -> Signature {
    if !active() {
        return compute();
    }
    remembered(|m| &mut m.signatures, signature_key(bytes, key), compute)
}

#[cfg(test)]
mod tests {
    use crate::{Domain, SecretKey, verify, verify_batch};

    /// Runs `f` with verdicts remembered on this thread, then stops remembering.
    fn remembering(f: impl FnOnce()) {
        super::remember_on_this_thread(64);
        f();
        super::remember_on_this_thread(0);
    }

    #[test]
    fn remembered_verdicts_are_the_verdicts() {
        remembering(|| {
            let k = SecretKey::from_seed([5; 32]);
            let good = k.sign(Domain::Vote, b"block");
            let mut bad = good;
            bad.0[0] ^= 1;
            for round in 0..3 {
                assert_eq!(verify(Domain::Vote, b"block", &k.public(), &good), Ok(()));
                assert!(verify(Domain::Vote, b"block", &k.public(), &bad).is_err());
                // Same signature, other bytes or other domain: another entry, still refused.
                assert!(verify(Domain::Vote, b"blocl", &k.public(), &good).is_err());
                assert!(verify(Domain::Proposal, b"block", &k.public(), &good).is_err());
                assert!(
                    verify(
                        Domain::Vote,
                        b"block",
                        &SecretKey::from_seed([6; 32]).public(),
                        &good
                    )
                    .is_err()
                );
                if round > 0 {
                    assert!(
                        super::hits_on_this_thread() > 0,
                        "the memo answered nothing"
                    );
                }
            }
        });
        assert_eq!(super::hits_on_this_thread(), 0);
    }

    #[test]
    fn batches_mix_remembered_and_new_items_and_keep_verdicts() {
        remembering(|| {
            let msgs: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 8]).collect();
            let keys: Vec<SecretKey> = (0..12u8).map(|i| SecretKey::from_seed([i; 32])).collect();
            let mut items: Vec<_> = msgs
                .iter()
                .zip(&keys)
                .map(|(m, k)| {
                    (
                        Domain::Transaction,
                        m.as_slice(),
                        k.public(),
                        k.sign(Domain::Transaction, m),
                    )
                })
                .collect();
            items[7].3.0[3] ^= 1;
            let mut expect = vec![true; 12];
            expect[7] = false;
            // Half remembered first (singly), then the whole batch, then again.
            for (d, m, k, s) in &items[..6] {
                let _ = verify(*d, m, k, s);
            }
            assert_eq!(verify_batch(&items), expect);
            assert_eq!(verify_batch(&items), expect);
            assert!(super::hits_on_this_thread() >= 18);
        });
    }

    #[test]
    fn remembered_signatures_equal_fresh_ones_and_the_memo_stays_bounded() {
        let k = SecretKey::from_seed([9; 32]);
        let fresh: Vec<_> = (0..10u8).map(|i| k.sign(Domain::Vote, &[i])).collect();
        remembering(|| {
            super::remember_on_this_thread(4);
            for _ in 0..2 {
                for (i, s) in fresh.iter().enumerate() {
                    assert_eq!(&k.sign(Domain::Vote, &[i as u8]), s);
                }
            }
            super::MEMO.with(|m| {
                let m = m.borrow();
                let m = m.as_ref().expect("remembering");
                assert!(m.signatures.len() <= 4 && m.verdicts.len() <= 4);
            });
        });
    }
}
