//! Cairn's cryptographic ground floor. No I/O, no clock, no unseeded randomness.
//!
//! - [`Digest`]: a sha256 digest with hex display ([`hash`], [`Hasher`]).
//! - [`SecretKey`], [`PublicKey`], [`Signature`]: ed25519 keys and signatures.
//! - [`Domain`]: every signature is made for exactly one purpose; a signature made for one
//!   domain never verifies for another.
//! - [`verify`] / [`verify_batch`]: the single verification rule (ZIP-215 plus a small-order
//!   key check) used by every path in Cairn. See `sig.rs` for why.
//! - [`codec`]: the one place where canonical bytes are produced and parsed.
//! - [`memo`]: an opt-in per-thread memo of verdicts and signatures (the simulator's).

pub mod codec;
#[doc(hidden)]
pub use hex as __hex;
mod digest;
pub mod memo;
mod sig;

pub use digest::{Digest, Hasher, ParseDigestError, hash, hash_parts};
pub use sig::{
    Domain, KeyError, PublicKey, SecretKey, Signature, SignatureError, verify, verify_batch,
    verify_batch_raw, verify_raw,
};
