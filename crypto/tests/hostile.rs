//! Hostile input for the canonical codec and for the text forms of keys, signatures and
//! digests: arbitrary and mutated bytes never panic, never allocate much more than the input
//! is long (whatever a length prefix claims), and whatever decodes re-encodes to exactly the
//! bytes it came from (one value, one accepted encoding).
//!
//! Every decoder in Cairn goes through `crypto::codec::decode`; the other crates'
//! `tests/hostile.rs` feed their own types to it. Here it gets a type with every shape those
//! use: fixed arrays, integers, bools, strings, nested sequences, options, boxes, enums.

use crypto::codec::{self, DEFAULT_LIMIT};
use crypto::{Digest, PublicKey, Signature};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

// ---- The hostile-input kit (shared; see crypto/tests/kit/hostile.rs) ----

#[path = "kit/hostile.rs"]
mod kit;
use kit::*;

// ---- The codec ----

/// Every shape Cairn's wire and storage types use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    id: Digest,
    key: PublicKey,
    sig: Signature,
    n: u64,
    small: u16,
    flag: bool,
    name: String,
    bytes: Vec<u8>,
    nested: Vec<Vec<u64>>,
    maybe: Option<Box<Kind>>,
    digests: Vec<Digest>,
    kind: Kind,
    pairs: Vec<(u32, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    Tuple(u64, Vec<u8>),
    Struct { a: Option<u8>, b: Vec<String> },
}

fn samples() -> Vec<Sample> {
    let base = Sample {
        id: crypto::hash(b"id"),
        key: crypto::SecretKey::from_seed([4; 32]).public(),
        sig: crypto::SecretKey::from_seed([4; 32]).sign(crypto::Domain::Test, b"m"),
        n: 0x0102_0304_0506_0708,
        small: 513,
        flag: true,
        name: "validator-ü".into(),
        bytes: vec![1, 2, 3, 4, 5],
        nested: vec![vec![], vec![7], vec![8, 9]],
        maybe: Some(Box::new(Kind::Tuple(5, vec![6]))),
        digests: vec![crypto::hash(b"a"), crypto::hash(b"b")],
        kind: Kind::Struct {
            a: Some(3),
            b: vec!["x".into(), String::new()],
        },
        pairs: vec![(1, "one".into()), (2, "two".into())],
    };
    vec![
        base.clone(),
        Sample {
            maybe: None,
            kind: Kind::Unit,
            nested: vec![],
            ..base.clone()
        },
        Sample {
            kind: Kind::Tuple(9, vec![0; 40]),
            pairs: vec![],
            flag: false,
            ..base
        },
    ]
}

/// Decodes `bytes` as a `T` with `limit`: within the allocation budget, refused when the
/// input is over the limit, and canonical when it decodes.
fn check_codec<T>(bytes: &[u8], limit: u64) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let (r, used) = measured(|| codec::decode::<T>(bytes, limit, "sample"));
    assert!(
        used <= budget(bytes.len()),
        "decoding {} bytes allocated {used} B",
        bytes.len()
    );
    match r {
        Ok(v) => {
            assert!(bytes.len() as u64 <= limit, "decoded past the limit");
            assert_eq!(codec::encode(&v), bytes, "a second encoding of {v:?}");
            true
        }
        Err(e) => {
            assert!(e.to_string().starts_with("cannot decode sample"), "{e}");
            false
        }
    }
}

/// Every type the codec checks below, on the same bytes.
fn check_all_types(bytes: &[u8], limit: u64) {
    check_codec::<Sample>(bytes, limit);
    check_codec::<Vec<Sample>>(bytes, limit);
    check_codec::<Kind>(bytes, limit);
    check_codec::<Vec<u8>>(bytes, limit);
    check_codec::<String>(bytes, limit);
    check_codec::<Vec<String>>(bytes, limit);
    check_codec::<Vec<Vec<Vec<u8>>>>(bytes, limit);
    check_codec::<Option<Box<Vec<Digest>>>>(bytes, limit);
    check_codec::<(PublicKey, Signature, bool)>(bytes, limit);
}

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![Just(DEFAULT_LIMIT), Just(1024), 0u64..256]
}

#[test]
fn arbitrary_bytes_decode_cleanly() {
    let _s = serial();
    proptest!(config(2000), |(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        limit in limit(),
    )| {
        check_all_types(&bytes, limit);
    });
}

#[test]
fn mutated_encodings_decode_cleanly() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..3, ms in mutations(), limit in limit())| {
        let valid = codec::encode(&samples()[which]);
        check_all_types(&mutate(valid, &ms), limit);
    });
}

#[test]
fn valid_encodings_roundtrip_exactly_within_their_limit() {
    let _s = serial();
    for s in samples() {
        let b = codec::encode(&s);
        assert_eq!(codec::encoded_len(&s), b.len() as u64);
        assert!(check_codec::<Sample>(&b, b.len() as u64));
        assert!(!check_codec::<Sample>(&b, b.len() as u64 - 1));
        for cut in 0..b.len() {
            assert!(
                !check_codec::<Sample>(&b[..cut], DEFAULT_LIMIT),
                "cut at {cut}"
            );
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(
            !check_codec::<Sample>(&longer, DEFAULT_LIMIT),
            "trailing byte"
        );
    }
}

#[test]
fn huge_length_prefixes_allocate_little() {
    let _s = serial();
    for s in samples() {
        every_prefix_attack(&codec::encode(&s), |b| check_all_types(b, DEFAULT_LIMIT));
    }
    // A bare prefix claiming the world, with and without a little data after it.
    for p in huge_prefixes() {
        for tail in [0usize, 1, 64, 4096] {
            let mut b = p.clone();
            b.resize(p.len() + tail, 0xAB);
            check_all_types(&b, DEFAULT_LIMIT);
            check_all_types(&b, u64::MAX);
        }
    }
    // Nested prefixes: each level claims u64::MAX elements.
    let b: Vec<u8> = std::iter::repeat_n(u64::MAX.to_le_bytes(), 64)
        .flatten()
        .collect();
    check_all_types(&b, u64::MAX);
    assert!(
        ALLOC.max_allocated() < 256 << 20,
        "heap high-water mark {} B",
        ALLOC.max_allocated()
    );
}

/// Negative control for the allocation checks in every crate's `tests/hostile.rs`: the meter
/// sees serde's bounded preallocation, and a decoder that trusted a length prefix would blow
/// the budget.
#[test]
fn the_meter_catches_a_decoder_that_trusts_its_prefix() {
    let _s = serial();
    let mut b = u64::MAX.to_le_bytes().to_vec();
    b.extend([0u8; 8]);
    let (r, used) = measured(|| codec::decode::<Vec<u64>>(&b, DEFAULT_LIMIT, "v"));
    assert!(r.is_err());
    assert!(
        (1 << 20..=budget(b.len())).contains(&used),
        "serde preallocates 1 MiB for a claimed u64::MAX elements; the meter saw {used} B"
    );
    let naive = |bytes: &[u8]| {
        let claimed = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let mut v: Vec<u8> = Vec::with_capacity(claimed.min(64 << 20) as usize);
        v.extend_from_slice(&bytes[8..]);
        std::hint::black_box(v).len()
    };
    let (_, used) = measured(|| naive(&b));
    assert!(used > budget(b.len()), "the meter missed {used} B");
}

// ---- Text forms: hex keys, signatures and digests (genesis, key files, the API) ----

fn hexish() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[0-9a-fA-F]{0,130}",
        "[0-9a-f]{64}",
        "[0-9a-f]{128}",
        "(0x)?[0-9a-fA-F ]{60,70}",
    ]
}

#[test]
fn hex_text_parses_or_fails_cleanly() {
    let _s = serial();
    proptest!(config(2000), |(s in hexish())| {
        let (r, used) = measured(|| {
            if let Ok(k) = PublicKey::from_hex(&s) {
                prop_assert!(k.validate().is_ok());
                prop_assert_eq!(PublicKey::from_hex(&k.to_string()), Ok(k));
            }
            if let Ok(d) = s.parse::<Digest>() {
                prop_assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
            }
            let quoted = serde_json::to_string(&s).unwrap();
            if let Ok(k) = serde_json::from_str::<PublicKey>(&quoted) {
                prop_assert_eq!(serde_json::to_string(&k).unwrap(), quoted.to_lowercase());
            }
            if let Ok(sig) = serde_json::from_str::<Signature>(&quoted) {
                prop_assert_eq!(serde_json::to_string(&sig).unwrap(), quoted.to_lowercase());
            }
            if let Ok(d) = serde_json::from_str::<Digest>(&quoted) {
                prop_assert_eq!(serde_json::to_string(&d).unwrap(), quoted.to_lowercase());
            }
            Ok(())
        });
        r?;
        prop_assert!(used <= budget(s.len()), "parsing {} bytes allocated {used} B", s.len());
    });
}

#[test]
fn arbitrary_json_for_keys_fails_cleanly() {
    let _s = serial();
    proptest!(config(2000), |(bytes in prop::collection::vec(any::<u8>(), 0..512))| {
        let (_, used) = measured(|| {
            let _ = serde_json::from_slice::<PublicKey>(&bytes);
            let _ = serde_json::from_slice::<Signature>(&bytes);
            let _ = serde_json::from_slice::<Digest>(&bytes);
            let _ = serde_json::from_slice::<Vec<Digest>>(&bytes);
        });
        prop_assert!(used <= budget(bytes.len()));
    });
}
