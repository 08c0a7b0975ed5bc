//! The hostile-input kit shared by every crate's `tests/hostile.rs` (included with
//! `#[path]`; the workspace has no test-support crate): a counting global allocator and
//! [`measured`], the allocation [`budget`] a decoder may use, byte mutations including huge
//! length prefixes, and the proptest config. Each test binary that includes it holds
//! [`serial`] for its whole run so that allocation counts see one decoder at a time.
#![allow(dead_code)] // Each binary uses a different part.

use proptest::prelude::*;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[global_allocator]
pub static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

static SERIAL: Mutex<()> = Mutex::new(());

/// Every test in this binary holds this for its whole run, so that the allocation counts
/// below see the decoder under test and nothing else.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `f`'s result and the bytes allocated while it ran, freed or not: an upper bound on how far
/// it raised the heap.
pub fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOC.total_allocated();
    let out = f();
    (out, ALLOC.total_allocated().saturating_sub(before))
}

/// What decoding `len` hostile bytes may allocate: serde preallocates at most 1 MiB for a
/// sequence whatever its length prefix claims, a few such sequences nest, and everything else
/// is proportional to the input.
pub fn budget(len: usize) -> usize {
    (8 << 20) + 64 * len
}

/// Length prefixes an attacker would write (bincode's are u64; u32 windows catch the
/// enum tags and the API's batch framing).
pub fn huge_prefixes() -> Vec<Vec<u8>> {
    let wide = [
        u64::MAX,
        1 << 63,
        i64::MAX as u64,
        1 << 40,
        1 << 32,
        u32::MAX as u64,
        64 << 20,
        16 << 20,
        8 << 20,
        1 << 20,
    ];
    let narrow = [u32::MAX, 1 << 31, 1 << 24];
    let mut v: Vec<Vec<u8>> = wide.iter().map(|n| n.to_le_bytes().to_vec()).collect();
    v.extend(narrow.iter().map(|n| n.to_le_bytes().to_vec()));
    v
}

#[derive(Clone, Debug)]
pub enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    HugePrefix(usize, usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, k)| Mutation::HugePrefix(i, k)),
    ]
}

pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

pub fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let n = b.len();
        match *m {
            Mutation::Flip(i, bit) if n > 0 => b[i % n] ^= 1 << bit,
            Mutation::Set(i, v) if n > 0 => b[i % n] = v,
            Mutation::Insert(i, v) => b.insert(i % (n + 1), v),
            Mutation::Delete(i) if n > 0 => {
                b.remove(i % n);
            }
            Mutation::Truncate(i) => b.truncate(i % (n + 1)),
            Mutation::HugePrefix(i, k) => {
                let all = huge_prefixes();
                let p = &all[k % all.len()];
                if n >= p.len() {
                    let i = i % (n - p.len() + 1);
                    b[i..i + p.len()].copy_from_slice(p);
                }
            }
            _ => {}
        }
    }
    b
}

/// Calls `check` on `valid` with each window overwritten by each huge prefix, in turn.
pub fn every_prefix_attack(valid: &[u8], mut check: impl FnMut(&[u8])) {
    let mut b = valid.to_vec();
    for p in huge_prefixes() {
        for i in 0..=valid.len().saturating_sub(p.len()) {
            if i + p.len() > valid.len() {
                break;
            }
            b[i..i + p.len()].copy_from_slice(&p);
            check(&b);
            b[i..i + p.len()].copy_from_slice(&valid[i..i + p.len()]);
        }
    }
}

pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
