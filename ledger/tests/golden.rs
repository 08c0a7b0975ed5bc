//! Canonical bytes and hashes, pinned. If one of these changes, every stored block and
//! every signature in the wild changes meaning: change them only on purpose.

use crypto::{Digest, SecretKey};
use ledger::{Address, BlockHeader, ChainBinding, Payload, Transaction};

fn fixed_tx() -> Transaction {
    let chain = ChainBinding {
        chain_id: "golden".into(),
        genesis_hash: crypto::hash(b"golden genesis"),
    };
    Transaction::sign(
        &SecretKey::from_seed([1; 32]),
        &chain,
        7,
        Payload::Transfer {
            to: Address::of(&SecretKey::from_seed([2; 32]).public()),
            amount: 12_345,
        },
    )
}

/// A raw transaction: unsigned, tag 1 after `Transfer`'s 0.
fn fixed_raw_tx() -> Transaction {
    let chain = ChainBinding {
        chain_id: "golden".into(),
        genesis_hash: crypto::hash(b"golden genesis"),
    };
    Transaction::raw(&chain, 7, vec![0xde, 0xad, 0xbe, 0xef])
}

fn fixed_header() -> BlockHeader {
    BlockHeader {
        height: 42,
        parent: Digest([0xaa; 32]),
        tx_root: ledger::tx_root(&[fixed_tx()]),
        state_root: Digest([0xbb; 32]),
        validators: Digest([0xcc; 32]),
        proposer: SecretKey::from_seed([3; 32]).public(),
        view: 99,
        timestamp_ms: 1_764_000_000_000,
    }
}

#[test]
fn transaction_bytes_and_hash() {
    let tx = fixed_tx();
    assert_eq!(hex::encode(tx.encode()), GOLDEN_TX_BYTES);
    assert_eq!(tx.hash().to_string(), GOLDEN_TX_HASH);
    assert_eq!(Transaction::decode(&tx.encode()).unwrap(), tx);
}

#[test]
fn raw_transaction_bytes_and_hash() {
    let tx = fixed_raw_tx();
    let bytes = tx.encode();
    assert_eq!(hex::encode(&bytes), GOLDEN_RAW_TX_BYTES);
    assert_eq!(tx.hash().to_string(), GOLDEN_RAW_TX_HASH);
    assert_eq!(Transaction::decode(&bytes).unwrap(), tx);
    // The layout, field by field: chain id, genesis hash, an all-zero sender, the id as the
    // nonce, variant tag 1, the length-prefixed data, an all-zero signature.
    let body = &bytes[..bytes.len() - 64];
    assert_eq!(body[..14], *b"\x06\0\0\0\0\0\0\0golden");
    assert_eq!(body[14..46], crypto::hash(b"golden genesis").0);
    assert_eq!(body[46..78], [0; 32]);
    assert_eq!(body[78..86], 7u64.to_le_bytes());
    assert_eq!(body[86..90], 1u32.to_le_bytes());
    assert_eq!(body[90..98], 4u64.to_le_bytes());
    assert_eq!(body[98..], [0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(bytes[bytes.len() - 64..], [0; 64]);
    assert_eq!(body, tx.body.signing_bytes());
}

#[test]
fn header_bytes_and_hash() {
    let h = fixed_header();
    assert_eq!(hex::encode(crypto::codec::encode(&h)), GOLDEN_HEADER_BYTES);
    assert_eq!(h.hash().to_string(), GOLDEN_HEADER_HASH);
}

#[test]
fn decoding_rejects_trailing_and_truncated_bytes() {
    let mut bytes = fixed_tx().encode();
    bytes.push(0);
    assert!(Transaction::decode(&bytes).is_err());
    bytes.truncate(bytes.len() - 2);
    assert!(Transaction::decode(&bytes).is_err());
}

const GOLDEN_TX_BYTES: &str = "0600000000000000676f6c64656ef268c47b202ba36e725dbe89c486bccfa3aed2ab8696e31d8a4afea09112cf728a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0700000000000000000000004c1afb945231601f50e2b12b14329ce6eeb295ad3930000000000000c3abd08932409f44b97b2836f3b1e47e44e30dd93e80b70660cae25bdb58f82c7a5844d6c6094bcb317b3d5a8ab02bbb133399d7a21a0e8e2dfe1fbdf9157c08";
const GOLDEN_HEADER_HASH: &str = "6cda303c6a58ddcdeddb0fc6d1448e45c3ce76c4a3fee7f182b1b80df647d5de";
// The fields in order: height, parent, tx_root, state_root, validators, proposer, view,
// timestamp.
const GOLDEN_HEADER_BYTES: &str = concat!(
    "2a00000000000000",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "19f160de685e3a00adaae80ee43267cf84699327635f631c0c69d017ba4bf9f3",
    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
    "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1",
    "6300000000000000",
    "00e897b69a010000",
);
const GOLDEN_TX_HASH: &str = "be29e88bafad7dd24b8c3f60e85694e6b7289a98cb2e49e2eb588791c7af33de";
const GOLDEN_RAW_TX_BYTES: &str = "0600000000000000676f6c64656ef268c47b202ba36e725dbe89c486bccfa3aed2ab8696e31d8a4afea09112cf7200000000000000000000000000000000000000000000000000000000000000000700000000000000010000000400000000000000deadbeef00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const GOLDEN_RAW_TX_HASH: &str = "0bb16d843d08a7b05020a06e2f78d38ccc7eb748a1063fede68f2bac3d07fb8b";

/// `Block::certificate` and `Payload::Raw::data` are written as byte strings (serde_bytes),
/// which in the canonical codec are exactly a plain `Vec<u8>`'s bytes (a u64 length, then
/// the bytes): a block's encoding is its fields' plain encodings, one after the other.
#[test]
fn byte_fields_encode_as_plain_byte_vectors() {
    use crypto::codec;
    let certificate: Vec<u8> = (0..=255u8).collect();
    let block = ledger::Block {
        header: fixed_header(),
        txs: vec![fixed_tx(), fixed_raw_tx()],
        certificate: certificate.clone(),
        batch_sizes: vec![1, 1],
    };
    let mut plain = codec::encode(&block.header);
    plain.extend(codec::encode(&block.txs));
    plain.extend(codec::encode(&certificate)); // a Vec<u8> as serde's sequence of u8
    plain.extend(codec::encode(&block.batch_sizes));
    assert_eq!(block.encode(), plain);
    assert_eq!(ledger::Block::decode(&plain).unwrap(), block);
}
