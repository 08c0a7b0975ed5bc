//! Every verification path gives the same verdict on the 15 ed25519 speccheck edge cases
//! ("Taming the many EdDSAs"), copied from `shared/test-vectors` into `tests/vectors`.

use crypto::{PublicKey, SecretKey, Signature, verify_batch_raw, verify_raw};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    message: String,
    pub_key: String,
    signature: String,
}

fn cases() -> Vec<(Vec<u8>, PublicKey, Signature)> {
    let text = include_str!("vectors/ed25519-speccheck.json");
    let cases: Vec<Case> = serde_json::from_str(text).expect("vector file parses");
    assert_eq!(cases.len(), 15);
    cases
        .into_iter()
        .map(|c| {
            let pk: [u8; 32] = hex::decode(c.pub_key).unwrap().try_into().unwrap();
            let sig: [u8; 64] = hex::decode(c.signature).unwrap().try_into().unwrap();
            (
                hex::decode(c.message).unwrap(),
                PublicKey(pk),
                Signature(sig),
            )
        })
        .collect()
}

/// The verdicts of Cairn's rule (small-order keys rejected, then ZIP-215 as implemented by
/// ed25519-consensus 2.1, and unchanged with ed25519-zebra 4.2), as measured on adoption.
/// Pinned so that a dependency upgrade that changes the rule is caught, not silently adopted. Cases 0-3 use a small-order public
/// key and are rejected by rule 1; 4-8 and 12 are accepted by ZIP-215's cofactored equation
/// (mixed-order points, non-canonical point encodings); 9-11, 13, 14 fail it (non-canonical
/// `s`, or the equation itself).
const EXPECTED: [bool; 15] = [
    false, false, false, false, true, true, true, true, true, false, false, false, true, false,
    false,
];

#[test]
fn single_and_batch_agree_on_every_case() {
    let cases = cases();
    let single: Vec<bool> = cases
        .iter()
        .map(|(m, k, s)| verify_raw(m, k, s).is_ok())
        .collect();

    // Batch of one, per case.
    let batch_of_one: Vec<bool> = cases
        .iter()
        .map(|c| verify_batch_raw(std::slice::from_ref(c))[0])
        .collect();
    assert_eq!(single, batch_of_one, "single vs batch-of-one");

    // All fifteen in one batch (forces the fallback path, since some are invalid).
    assert_eq!(
        single,
        verify_batch_raw(&cases),
        "single vs one batch of all"
    );

    // Each case hidden among valid signatures, in a batch large enough to take the real
    // batch-verification path: the verdicts must still match single verification.
    let k = SecretKey::from_seed([42; 32]);
    for (i, case) in cases.iter().enumerate() {
        let msg = b"valid".to_vec();
        let good = (msg.clone(), k.public(), raw_sign(&k, &msg));
        let mut items = vec![good.clone(); 9];
        items.insert(4, case.clone());
        let mut expect = vec![true; 10];
        expect[4] = single[i];
        assert_eq!(
            verify_batch_raw(&items),
            expect,
            "case {i} among valid signatures"
        );
    }

    assert_eq!(single.as_slice(), EXPECTED.as_slice(), "pinned verdicts");
}

/// A raw (undomained) RFC 8032 signature, made with ed25519-dalek directly, to mix valid
/// signatures into batches of raw vectors.
fn raw_sign(k: &SecretKey, msg: &[u8]) -> Signature {
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(&k.seed());
    Signature(sk.sign(msg).to_bytes())
}
