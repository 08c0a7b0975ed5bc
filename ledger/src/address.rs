//! Account addresses.

use crypto::{Hasher, PublicKey};
use std::fmt;
use std::str::FromStr;

/// An account address: the first 20 bytes of
/// `sha256(len(tag) || "cairn/address/v1" || len(pk) || ed25519 public key)`
/// (see [`crypto::Hasher`] for the length prefixes). Displays as 40 lowercase hex characters.
///
/// Hashing (rather than using the key itself) keeps addresses short and makes a typo in a
/// pasted address unlikely to name a key anyone holds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 20]);

crypto::hex_or_bytes_serde!(Address, 20);

impl Address {
    pub fn of(key: &PublicKey) -> Address {
        let mut h = Hasher::new();
        h.part(b"cairn/address/v1").part(&key.0);
        let d = h.finish();
        let mut out = [0u8; 20];
        out.copy_from_slice(&d.0[..20]);
        Address(out)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", hex::encode(&self.0[..4]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an address of 40 hex characters, got {0:?}")]
pub struct ParseAddressError(pub String);

impl FromStr for Address {
    type Err = ParseAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| ParseAddressError(s.to_string()))?;
        let arr: [u8; 20] = bytes
            .try_into()
            .map_err(|_| ParseAddressError(s.to_string()))?;
        Ok(Address(arr))
    }
}
