//! Hostile input for the ledger's decoders: transactions (API, network, blocks), blocks
//! (network sync, store) and transaction records (store). Arbitrary and mutated bytes never
//! panic and never allocate much more than the input is long, whatever a length prefix claims;
//! what decodes re-encodes to exactly the same bytes; and a decoded transaction, whatever its
//! fields hold, can be hashed, verified and executed without a panic or a change in supply.

use crypto::SecretKey;
use crypto::codec;
use ledger::{
    Account, Address, Block, BlockInput, ChainBinding, Ledger, MAX_BLOCK_BYTES, MAX_CHAIN_ID_LEN,
    MAX_TX_BYTES, MemStore, Payload, Receipt, State, Transaction, TxRecord,
};
use proptest::prelude::*;
use serde::Serialize;
use std::fmt::Debug;
use std::sync::LazyLock;

// ---- The hostile-input kit (shared; see crypto/tests/kit/hostile.rs) ----

#[path = "../../crypto/tests/kit/hostile.rs"]
mod kit;
use kit::*;

// ---- Corpus: real signed transactions, committed blocks, records ----

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "hostile-test".into(),
        genesis_hash: crypto::hash(b"hostile genesis"),
    }
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn txs() -> Vec<Transaction> {
    let to = Address::of(&key(2).public());
    let long = ChainBinding {
        chain_id: "x".repeat(MAX_CHAIN_ID_LEN),
        ..chain()
    };
    vec![
        Transaction::sign(&key(1), &chain(), 0, Payload::Transfer { to, amount: 10 }),
        Transaction::sign(
            &key(1),
            &chain(),
            u64::MAX,
            Payload::Transfer {
                to,
                amount: u64::MAX,
            },
        ),
        Transaction::raw(&chain(), 7, (0..100).collect()),
        Transaction::sign(&key(3), &long, 1, Payload::Transfer { to, amount: 1 }),
    ]
}

fn genesis_accounts() -> Vec<(Address, u64)> {
    vec![
        (Address::of(&key(1).public()), 1_000),
        (Address::of(&key(3).public()), 1_000),
    ]
}

/// Two committed blocks (one with every corpus transaction, one empty) and their records.
fn blocks_and_records() -> &'static (Vec<Block>, Vec<TxRecord>) {
    static CORPUS: LazyLock<(Vec<Block>, Vec<TxRecord>)> = LazyLock::new(commit_corpus);
    &CORPUS
}

fn commit_corpus() -> (Vec<Block>, Vec<TxRecord>) {
    let mut ledger = Ledger::open(MemStore::new(), chain(), &genesis_accounts()).unwrap();
    let mut blocks = Vec::new();
    let mut records = Vec::new();
    for (txs, sizes) in [(txs(), vec![2, 2]), (vec![], vec![])] {
        let input = BlockInput {
            proposer: key(9).public(),
            view: 3,
            timestamp_ms: 1_700_000_000_000,
            txs,
            certificate: (0..=255).collect(),
            batch_sizes: sizes,
        };
        let (block, receipts) = ledger.commit(input).unwrap();
        for (i, receipt) in receipts.into_iter().enumerate() {
            records.push(TxRecord {
                height: block.header.height,
                index: i as u32,
                receipt,
            });
        }
        blocks.push(block);
    }
    (blocks, records)
}

/// What `node::store` reads a transaction record with (`MAX_RECORD_BYTES` there).
const RECORD_LIMIT: u64 = 1 << 20;

// ---- Checks ----

/// Decodes `bytes` with `decode`: within the allocation budget, and when it decodes, the value
/// re-encodes to exactly `bytes` (no second encoding of one value) and decodes back to itself.
fn check<T, E>(bytes: &[u8], decode: impl Fn(&[u8]) -> Result<T, E>) -> Option<T>
where
    T: Serialize + PartialEq + Debug,
{
    let (r, used) = measured(|| decode(bytes));
    assert!(
        used <= budget(bytes.len()),
        "decoding {} bytes allocated {used} B",
        bytes.len()
    );
    let v = r.ok()?;
    let again = codec::encode(&v);
    assert_eq!(again, bytes, "a second encoding of {v:?}");
    assert!(decode(&again).is_ok_and(|w| w == v));
    Some(v)
}

/// A decoded transaction, whatever it holds, can be hashed, checked and executed (with its
/// signature taken as checked, so that hostile amounts and nonces reach the state rules)
/// without a panic or a change in total supply.
fn use_transaction(tx: &Transaction) {
    let _ = tx.hash();
    let _ = tx.sender_address();
    let _ = tx.verify_signature();
    let mut state = State::new(
        genesis_accounts()
            .into_iter()
            .chain([(tx.sender_address(), u64::MAX / 2)])
            .map(|(a, balance)| (a, Account { balance, nonce: 0 })),
    );
    let supply = state.total_supply();
    let out = state.execute_checked(&chain(), std::slice::from_ref(tx), &[true]);
    assert_eq!(out.receipts.len(), 1);
    assert_eq!(state.total_supply(), supply);
    let _ = state.execute(&chain(), std::slice::from_ref(tx));
    assert_eq!(state.total_supply(), supply);
}

fn check_transaction(bytes: &[u8]) {
    if let Some(tx) = check(bytes, Transaction::decode) {
        use_transaction(&tx);
    }
}

fn check_block(bytes: &[u8]) {
    if let Some(b) = check(bytes, Block::decode) {
        let _ = b.hash();
        let _ = b.tx_root_matches();
        for tx in &b.txs {
            let _ = tx.hash();
            let _ = tx.verify_signature();
        }
    }
}

fn check_record(bytes: &[u8]) {
    check(bytes, |b| {
        codec::decode::<TxRecord>(b, RECORD_LIMIT, "tx record")
    });
    check(bytes, |b| {
        codec::decode::<Receipt>(b, RECORD_LIMIT, "receipt")
    });
}

#[test]
fn transaction_arbitrary_bytes() {
    let _s = serial();
    proptest!(config(2000), |(bytes in prop::collection::vec(any::<u8>(), 0..4096))| {
        check_transaction(&bytes);
    });
}

#[test]
fn transaction_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..4, ms in mutations())| {
        check_transaction(&mutate(txs()[which].encode(), &ms));
    });
}

#[test]
fn block_arbitrary_bytes() {
    let _s = serial();
    proptest!(config(2000), |(bytes in prop::collection::vec(any::<u8>(), 0..4096))| {
        check_block(&bytes);
    });
}

#[test]
fn block_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..2, ms in mutations())| {
        let (blocks, _) = blocks_and_records();
        check_block(&mutate(blocks[which].encode(), &ms));
    });
}

#[test]
fn record_arbitrary_and_mutated() {
    let _s = serial();
    proptest!(config(2000), |(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        which in 0usize..4,
        ms in mutations(),
    )| {
        check_record(&bytes);
        let (_, records) = blocks_and_records();
        check_record(&mutate(codec::encode(&records[which]), &ms));
        check_record(&mutate(codec::encode(&records[which].receipt), &ms));
    });
}

#[test]
fn the_corpus_decodes() {
    let _s = serial();
    for tx in txs() {
        assert_eq!(check(&tx.encode(), Transaction::decode), Some(tx.clone()));
        assert_eq!(tx.verify_signature().is_ok(), !tx.is_raw());
        use_transaction(&tx);
    }
    let (blocks, records) = blocks_and_records();
    assert_eq!(blocks[0].txs.len(), 4);
    for b in blocks {
        assert_eq!(check(&b.encode(), Block::decode).as_ref(), Some(b));
    }
    for r in records {
        let bytes = codec::encode(r);
        let decoded = check(&bytes, |b| codec::decode::<TxRecord>(b, RECORD_LIMIT, "r"));
        assert_eq!(decoded.as_ref(), Some(r));
    }
}

#[test]
fn huge_length_prefixes_allocate_little() {
    let _s = serial();
    // Decoding only: what a decoded value then goes through is covered above.
    for tx in txs() {
        every_prefix_attack(&tx.encode(), |b| {
            check(b, Transaction::decode);
        });
    }
    let (blocks, records) = blocks_and_records();
    for b in blocks {
        every_prefix_attack(&b.encode(), |b| {
            check(b, Block::decode);
        });
    }
    for r in records {
        every_prefix_attack(&codec::encode(r), check_record);
    }
    assert!(
        ALLOC.max_allocated() < 256 << 20,
        "heap high-water mark {} B",
        ALLOC.max_allocated()
    );
}

#[test]
fn over_the_limit_is_refused_before_decoding() {
    let _s = serial();
    // One byte over MAX_TX_BYTES, every byte a plausible prefix: refused, allocating nothing
    // like its claims.
    let bytes = vec![0xFF; MAX_TX_BYTES as usize + 1];
    let (r, used) = measured(|| Transaction::decode(&bytes));
    assert!(r.unwrap_err().to_string().contains("over the limit"));
    assert!(used < 64 << 10, "{used} B");
    let bytes = vec![0xFF; MAX_BLOCK_BYTES as usize + 1];
    let (r, used) = measured(|| Block::decode(&bytes));
    assert!(r.unwrap_err().to_string().contains("over the limit"));
    assert!(used < 64 << 10, "{used} B");
}
