//! The canonical binary codec: the only place Cairn turns values into bytes and back.
//!
//! Hashes of transactions, blocks and genesis depend on these bytes, so the options are fixed
//! here once: bincode 1.3.3, fixed-width little-endian integers, length-prefixed (u64)
//! sequences and strings, enum variants as u32 tags. Golden tests in `ledger` pin the output.
//!
//! Decoding always takes a size limit (no input can make us allocate more than it) and
//! rejects trailing bytes (one value has exactly one encoding we accept). A failure names the
//! field and the byte where decoding stopped (`explain.rs`).

mod explain;

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
            // The slow second pass runs only on failure; it names the field and the byte.
            reason: explain::explain::<T>(bytes).unwrap_or_else(|| e.to_string()),
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

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        tag: u32,
        name: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    enum Kind {
        Plain { n: u64 },
        Data { data: Vec<u8> },
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
        key: [u8; 4],
        kind: Kind,
    }

    fn outer_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(7u32.to_le_bytes()); // inner.tag, bytes 0..4
        b.extend(2u64.to_le_bytes()); // inner.name length, 4..12
        b.extend(b"ab"); // 12..14
        b.extend([1, 2, 3, 4]); // key, 14..18
        b.extend(1u32.to_le_bytes()); // kind tag: Data, 18..22
        b.extend(3u64.to_le_bytes()); // data length, 22..30
        b.extend([9, 9, 9]); // 30..33
        b
    }

    fn reason(bytes: &[u8]) -> String {
        let e = decode::<Outer>(bytes, 1024, "outer").unwrap_err();
        assert!(e.to_string().starts_with("cannot decode outer: "), "{e}");
        e.reason
    }

    #[test]
    fn the_explanation_decodes_what_the_fast_path_decodes() {
        assert!(decode::<Outer>(&outer_bytes(), 1024, "outer").is_ok());
        assert_eq!(explain::explain::<Outer>(&outer_bytes()), None);
    }

    #[test]
    fn errors_name_the_field_and_the_byte() {
        let full = outer_bytes();
        // Cut inside the fixed-size tag.
        assert_eq!(
            reason(&full[..2]),
            "field inner.tag (from byte 0): it needs 4 bytes at byte 0, but the input ends \
             there (2 remain of 2)"
        );
        // A length prefix far larger than the input (2^63), as in a hostile request.
        let mut huge = full.clone();
        huge[4..12].copy_from_slice(&(1u64 << 63).to_le_bytes());
        assert_eq!(
            reason(&huge),
            "field inner.name (from byte 4): its length prefix at byte 4 says \
             9223372036854775808 bytes, but only 21 bytes remain after it"
        );
        // The length prefix itself cut off.
        assert_eq!(
            reason(&full[..7]),
            "field inner.name (from byte 4): the input ends inside its 8-byte length prefix \
             at byte 4 (only 3 bytes remain)"
        );
        // Not UTF-8.
        let mut bad = full.clone();
        bad[12] = 0xff;
        assert!(
            reason(&bad).starts_with("field inner.name (from byte 4): it is not valid UTF-8"),
            "{}",
            reason(&bad)
        );
        // Inside a fixed array.
        assert_eq!(
            reason(&full[..16]),
            "field key[2] (from byte 16, one of 4 declared elements): it needs 1 byte at byte \
             16, but the input ends there (0 remain of 16)"
        );
        // An unknown enum tag.
        let mut tag = full.clone();
        tag[18..22].copy_from_slice(&7u32.to_le_bytes());
        let r = reason(&tag);
        assert!(r.starts_with("field kind (from byte 18): "), "{r}");
        assert!(r.contains('7'), "{r}");
        // Inside a variant's sequence.
        assert_eq!(
            reason(&full[..31]),
            "field kind.Data.data[1] (from byte 31, one of 3 declared elements): it needs 1 \
             byte at byte 31, but the input ends there (0 remain of 31)"
        );
        // Trailing bytes.
        let mut long = full.clone();
        long.extend([0, 0]);
        assert_eq!(
            reason(&long),
            "2 trailing bytes after the end of the value (it ends at byte 33 of 35)"
        );
        // Empty input.
        assert_eq!(
            reason(&[]),
            "field inner.tag (from byte 0): it needs 4 bytes at byte 0, but the input ends \
             there (0 remain of 0)"
        );
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
