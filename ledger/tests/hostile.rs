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
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

// ---- The hostile-input kit (the same in every crate's tests/hostile.rs) ----

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

static SERIAL: Mutex<()> = Mutex::new(());

/// Every test in this binary holds this for its whole run, so that the allocation counts
/// below see the decoder under test and nothing else.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `f`'s result and the bytes allocated while it ran, freed or not: an upper bound on how far
/// it raised the heap.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOC.total_allocated();
    let out = f();
    (out, ALLOC.total_allocated().saturating_sub(before))
}

/// What decoding `len` hostile bytes may allocate: serde preallocates at most 1 MiB for a
/// sequence whatever its length prefix claims, a few such sequences nest, and everything else
/// is proportional to the input.
fn budget(len: usize) -> usize {
    (8 << 20) + 64 * len
}

/// Length prefixes an attacker would write (bincode's are u64; u32 windows catch the
/// enum tags and the API's batch framing).
fn huge_prefixes() -> Vec<Vec<u8>> {
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
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    HugePrefix(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, k)| Mutation::HugePrefix(i, k)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
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
fn every_prefix_attack(valid: &[u8], mut check: impl FnMut(&[u8])) {
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

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

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
