//! Keys and committees shared by `consensus/tests/{hostile,cross_purpose}.rs` and
//! `node/tests/hostile.rs` (included with `#[path]`), as in the cores' unit tests.
#![allow(dead_code)] // Each binary uses a different part.

use consensus::Committee;
use crypto::{Digest, SecretKey};
use std::sync::LazyLock;

pub fn key(i: u16) -> SecretKey {
    SecretKey::from_seed([i as u8 + 1; 32])
}
pub fn genesis() -> Digest {
    crypto::hash(b"genesis")
}
pub fn d(i: u8) -> Digest {
    crypto::hash(&[i])
}
/// n = 4, f = 1, quorum 3.
pub fn bft() -> &'static Committee {
    static C: LazyLock<Committee> =
        LazyLock::new(|| Committee::bft((0..4).map(|i| key(i).public()).collect()).unwrap());
    &C
}
/// n = 3, majority 2.
pub fn cft() -> &'static Committee {
    static C: LazyLock<Committee> = LazyLock::new(|| {
        Committee::new_cft((0..3).map(|i| key(i).public()).collect(), 1, 2).unwrap()
    });
    &C
}
