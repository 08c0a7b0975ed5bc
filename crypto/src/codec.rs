//! The canonical binary codec: the only place Cairn turns values into bytes and back.
//!
//! Hashes of transactions, blocks and genesis depend on these bytes, so the options are fixed
//! here once: bincode 1.3.3, fixed-width little-endian integers, length-prefixed (u64)
//! sequences and strings, enum variants as u32 tags. Golden tests in `ledger` pin the output.
//!
//! Decoding always takes a size limit (no input can make us allocate more than it) and
//! rejects trailing bytes (one value has exactly one encoding we accept).

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Default cap for a decoded value: 16 MiB.
pub const DEFAULT_LIMIT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
#[error("cannot decode {what}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
}

/// Canonical bytes of `value`.
///
/// # Panics
/// Only if `value`'s `Serialize` impl itself fails, which none of Cairn's types do (they hold
/// no maps with non-string keys, no unsized sequences). That would be a bug, not bad input.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    options()
        .serialize(value)
        .expect("canonical encoding of an in-memory value cannot fail")
}

/// Number of bytes [`encode`] would produce.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    options()
        .serialized_size(value)
        .expect("canonical encoding of an in-memory value cannot fail")
}

/// Parse `bytes` as exactly one `T`, reading at most `limit` bytes and rejecting any trailing
/// bytes. `what` names the thing being decoded in the error ("transaction", "block", ...).
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    limit: u64,
    what: &'static str,
) -> Result<T, DecodeError> {
    if bytes.len() as u64 > limit {
        return Err(DecodeError {
            what,
            reason: format!("{} bytes is over the limit of {limit}", bytes.len()),
        });
    }
    options()
        .with_limit(limit)
        .reject_trailing_bytes()
        .deserialize(bytes)
        .map_err(|e| DecodeError {
            what,
            reason: e.to_string(),
        })
}

/// Implements `Serialize`/`Deserialize` for a newtype over `[u8; N]`: hex in human-readable
/// formats (JSON), a fixed tuple of N bytes (no length prefix) in binary ones.
#[macro_export]
macro_rules! hex_or_bytes_serde {
    ($ty:ident, $n:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&$crate::__hex::encode(&self.0))
                } else {
                    use serde::ser::SerializeTuple;
                    let mut t = s.serialize_tuple($n)?;
                    for b in self.0.iter() {
                        t.serialize_element(b)?;
                    }
                    t.end()
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = [u8; $n];
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "{} hex characters ({} bytes)", 2 * $n, $n)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                        let bytes = $crate::__hex::decode(v).map_err(|_| {
                            E::custom(format!(
                                "expected {} hex characters, got {:?} (not hex)",
                                2 * $n,
                                v
                            ))
                        })?;
                        let len = bytes.len();
                        bytes.try_into().map_err(|_| {
                            E::custom(format!(
                                "expected {} hex characters ({} bytes), got {} bytes",
                                2 * $n,
                                $n,
                                len
                            ))
                        })
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<Self::Value, A::Error> {
                        let mut out = [0u8; $n];
                        for (i, slot) in out.iter_mut().enumerate() {
                            *slot = seq
                                .next_element()?
                                .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                        }
                        Ok(out)
                    }
                }
                let bytes = if d.is_human_readable() {
                    d.deserialize_str(V)?
                } else {
                    d.deserialize_tuple($n, V)?
                };
                Ok($ty(bytes))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_layout() {
        assert_eq!(encode(&1u64), vec![1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode("ab"), vec![2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut b = encode(&7u32);
        assert_eq!(decode::<u32>(&b, 64, "n").unwrap(), 7);
        b.push(0);
        let e = decode::<u32>(&b, 64, "n").unwrap_err();
        assert!(e.to_string().contains("cannot decode n"), "{e}");
    }

    #[test]
    fn limit_bounds_allocation() {
        // A length prefix claiming 2^40 elements must not allocate: the limit stops it.
        let mut b = (1u64 << 40).to_le_bytes().to_vec();
        b.extend([0u8; 16]);
        assert!(decode::<Vec<u8>>(&b, 1024, "vec").is_err());
        assert!(decode::<Vec<u8>>(&encode(&vec![0u8; 100]), 50, "vec").is_err());
    }
}
