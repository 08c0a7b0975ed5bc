//! Mempool tests.

use super::*;
use PoolStatus::{InFlight, Pending};
use crypto::SecretKey;
use crypto::SignatureError;
use ledger::RAW_SENDER;

const RICH: u64 = 1_000_000;
const ANY: usize = usize::MAX;

fn chain() -> ChainBinding {
    let genesis_hash = crypto::hash(b"genesis");
    ChainBinding {
        chain_id: "cairn-test".into(),
        genesis_hash,
    }
}
fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}
fn addr(n: u8) -> Address {
    Address::of(&key(n).public())
}
fn signed(n: u8, chain: &ChainBinding, nonce: u64, amount: u64) -> Transaction {
    let to = addr(200);
    Transaction::sign(&key(n), chain, nonce, Payload::Transfer { to, amount })
}
fn tx(n: u8, nonce: u64, amount: u64) -> Transaction {
    signed(n, &chain(), nonce, amount)
}
fn acct(balance: u64, nonce: u64) -> Account {
    Account { balance, nonce }
}
fn pool(max_txs: usize, max_bytes: usize, max_per_sender: usize) -> Mempool {
    let limits = Limits {
        max_txs,
        max_bytes,
        max_per_sender,
        ..Limits::default()
    };
    Mempool::new(limits)
}
fn size() -> usize {
    tx(1, 0, 1).encode().len()
}
/// Admits `t` for a sender with a rich account at `nonce`.
fn add(pool: &mut Mempool, t: &Transaction, nonce: u64) -> Result<Admitted, Rejected> {
    pool.admit(t.clone(), &chain(), acct(RICH, nonce))
}
fn reject(pool: &mut Mempool, t: Transaction, a: Account) -> (Rejected, String) {
    let r = pool.admit(t, &chain(), a).unwrap_err();
    let msg = r.to_string();
    (r, msg)
}
/// The ready transactions, without taking them.
fn ready(pool: &Mempool) -> Vec<Transaction> {
    pool.clone().next_batch(ANY, ANY)
}

#[test]
fn admits_a_valid_transaction() {
    let mut pool = Mempool::new(Limits::default());
    let t = tx(1, 0, 10);
    assert_eq!(add(&mut pool, &t, 0), Ok(Admitted::Added(t.hash())));
    assert_eq!(pool.status(&t.hash()), Some(Pending));
    assert_eq!(
        (pool.len(), pool.bytes(), pool.is_empty()),
        (1, size(), false)
    );
    assert_eq!(ready(&pool), vec![t]);
    assert_eq!(Limits::default().max_tx_bytes, 64 * 1024);
}

#[test]
fn rejects_oversized_wrong_chain_and_bad_signature() {
    let mut small = Mempool::new(Limits {
        max_tx_bytes: size() - 1,
        ..Limits::default()
    });
    let (r, msg) = reject(&mut small, tx(1, 0, 10), acct(RICH, 0));
    assert_eq!(
        r,
        Rejected::TooLarge {
            size: size(),
            max: size() - 1
        }
    );
    assert!(msg.starts_with(&format!("transaction is {} bytes, over the", size())));

    let mut pool = Mempool::new(Limits::default());
    let other = ChainBinding {
        chain_id: "other".into(),
        ..chain()
    };
    let (r, msg) = reject(&mut pool, signed(1, &other, 0, 1), acct(RICH, 0));
    let expected = "cairn-test".to_string();
    assert_eq!(
        r,
        Rejected::WrongChainId {
            got: "other".into(),
            expected
        }
    );
    assert!(
        msg.starts_with("wrong chain id: signed for \"other\", but this chain is \"cairn-test\"")
    );

    let long = ChainBinding {
        chain_id: "x".repeat(100),
        ..chain()
    };
    let (r, _) = reject(&mut pool, signed(1, &long, 0, 1), acct(RICH, 0));
    let got = format!("{}…", "x".repeat(64));
    assert_eq!(
        r,
        Rejected::WrongChainId {
            got,
            expected: "cairn-test".into()
        }
    );

    let old = ChainBinding {
        genesis_hash: crypto::hash(b"old"),
        ..chain()
    };
    let (r, msg) = reject(&mut pool, signed(1, &old, 0, 1), acct(RICH, 0));
    let (got, expected) = (old.genesis_hash, chain().genesis_hash);
    assert_eq!(
        r,
        Rejected::WrongGenesis {
            chain_id: "cairn-test".into(),
            got,
            expected
        }
    );
    assert!(msg.starts_with(&format!(
        "wrong genesis hash: signed for genesis {got}, but"
    )));
    assert!(msg.contains(&format!("chain \"cairn-test\" has genesis {expected}")));

    let mut t = tx(1, 0, 10);
    t.body.payload = Payload::Transfer {
        to: addr(200),
        amount: 11,
    };
    let (r, msg) = reject(&mut pool, t, acct(RICH, 0));
    assert_eq!(r, Rejected::BadSignature(SignatureError::Invalid));
    assert!(msg.starts_with("bad signature (signature does not verify): sign"));
    assert!(pool.is_empty());
}

#[test]
fn rejects_bad_nonces_and_zero_amount() {
    let mut pool = pool(100, 1 << 20, 4);
    let (r, msg) = reject(&mut pool, tx(1, 3, 10), acct(RICH, 5));
    assert_eq!(r, Rejected::NonceUsed { nonce: 3, next: 5 });
    assert!(
        msg.starts_with("nonce 3 already used (next nonce is 5)"),
        "{msg}"
    );

    // The window is next .. next + max_per_sender: 5..9.
    let t8 = tx(1, 8, 10);
    assert_eq!(add(&mut pool, &t8, 5), Ok(Admitted::Added(t8.hash())));
    let (r, msg) = reject(&mut pool, tx(1, 9, 10), acct(RICH, 5));
    assert_eq!(
        r,
        Rejected::NonceTooFarAhead {
            nonce: 9,
            next: 5,
            max_per_sender: 4
        }
    );
    assert!(msg.starts_with(
        "nonce 9 is too far ahead (next nonce is 5; the pool accepts nonces below 9)"
    ));

    let (r, msg) = reject(&mut pool, tx(1, 5, 0), acct(RICH, 5));
    assert_eq!(r, Rejected::ZeroAmount);
    assert_eq!(msg, "transfer amount is 0: send a positive amount");
    assert_eq!(pool.len(), 1);
}

#[test]
fn resubmission_is_idempotent() {
    let mut pool = pool(1, 1 << 20, 16);
    let t = tx(1, 0, 10);
    assert_eq!(add(&mut pool, &t, 0), Ok(Admitted::Added(t.hash())));
    // Even with the pool full, a resubmission is answered, not rejected.
    assert_eq!(
        add(&mut pool, &t, 0),
        Ok(Admitted::AlreadyPending(t.hash()))
    );
    assert_eq!((pool.len(), pool.bytes()), (1, size()));
    assert_eq!(pool.next_batch(10, 1 << 20), vec![t.clone()]);
    assert_eq!(add(&mut pool, &t, 0), Ok(Admitted::InFlight(t.hash())));
    assert_eq!(Admitted::InFlight(t.hash()).hash(), t.hash());
    assert_eq!((pool.len(), pool.bytes()), (1, size()));
    assert_eq!(pool.next_batch(10, 1 << 20), vec![]);
}

#[test]
fn same_nonce_different_transaction_conflicts() {
    let mut pool = Mempool::new(Limits::default());
    let (a, b) = (tx(1, 0, 10), tx(1, 0, 11));
    add(&mut pool, &a, 0).unwrap();
    let (r, msg) = reject(&mut pool, b, acct(RICH, 0));
    assert_eq!(
        r,
        Rejected::NonceConflict {
            nonce: 0,
            pending: a.hash()
        }
    );
    let prefix = format!("nonce 0 is taken by pending transaction {}: wait", a.hash());
    assert!(msg.starts_with(&prefix), "{msg}");
    assert_eq!(pool.len(), 1);
}

#[test]
fn only_a_contiguous_run_from_the_next_nonce_is_ready() {
    let mut pool = Mempool::new(Limits::default());
    let (t0, t1, t2) = (tx(1, 0, 1), tx(1, 1, 1), tx(1, 2, 1));
    add(&mut pool, &t2, 0).unwrap();
    assert_eq!(ready(&pool), vec![]);
    add(&mut pool, &t0, 0).unwrap();
    assert_eq!(ready(&pool), vec![t0.clone()]);
    add(&mut pool, &t1, 0).unwrap();
    assert_eq!(ready(&pool), vec![t0.clone(), t1.clone(), t2.clone()]);
    // In-flight transactions keep the run contiguous for the ones after them.
    assert_eq!(pool.next_batch(1, ANY), vec![t0]);
    assert_eq!(ready(&pool), vec![t1, t2]);
}

#[test]
fn batches_take_turns_across_senders_within_limits() {
    let mut pool = Mempool::new(Limits::default());
    let mut senders = [1u8, 2, 3];
    senders.sort_by_key(|&n| addr(n));
    let [a, b, c] = senders;
    for n in senders {
        for nonce in 0..3 {
            add(&mut pool, &tx(n, nonce, 1), 0).unwrap();
        }
    }
    let copy = pool.clone();
    let first = pool.next_batch(5, ANY);
    let expected = [(a, 0), (b, 0), (c, 0), (a, 1), (b, 1)].map(|(n, k)| tx(n, k, 1));
    assert_eq!(first, expected);
    assert_eq!(copy.clone().next_batch(5, ANY), first, "deterministic");
    // Starts after b. Two transactions fit the bytes, a third would not.
    assert_eq!(
        pool.next_batch(10, 3 * size() - 1),
        vec![tx(c, 1, 1), tx(a, 2, 1)]
    );
    assert_eq!(pool.next_batch(10, size() - 1), vec![]);
    assert_eq!(pool.next_batch(0, ANY), vec![]);
    assert_eq!(pool.next_batch(10, ANY), vec![tx(b, 2, 1), tx(c, 2, 1)]);
    assert_eq!(pool.len(), 9);
    assert!((0..3).all(|k| pool.status(&tx(a, k, 1).hash()) == Some(InFlight)));
}

#[test]
fn committed_drops_committed_and_stale_transactions() {
    let mut pool = Mempool::new(Limits::default());
    let (t0, t1, t2, u0) = (tx(1, 0, 1), tx(1, 1, 1), tx(1, 2, 1), tx(2, 0, 1));
    for t in [&t0, &t1, &t2, &u0] {
        add(&mut pool, t, 0).unwrap();
    }
    assert_eq!(pool.next_batch(3, ANY).len(), 3); // t0, u0, t1 in some order
    // The block holds t0 and another nonce-1 transaction of sender 1 (from elsewhere).
    let accounts = |a: &Address| acct(RICH, if *a == addr(1) { 2 } else { 0 });
    pool.committed(&[t0.clone(), tx(1, 1, 7)], accounts);
    assert_eq!(pool.status(&t0.hash()), None);
    assert_eq!(pool.status(&t1.hash()), None, "stale: nonce 1 was used");
    assert_eq!(pool.status(&t2.hash()), Some(Pending));
    assert_eq!(pool.status(&u0.hash()), Some(InFlight));
    assert_eq!((pool.len(), pool.bytes()), (2, 2 * size()));
    assert_eq!(ready(&pool), vec![t2.clone()]);
    // Resubmitting a committed transaction: the API must answer it from the store first.
    let (r, _) = reject(&mut pool, t0, acct(RICH, 2));
    assert_eq!(r, Rejected::NonceUsed { nonce: 0, next: 2 });

    pool.committed(&[t2, u0], |_| acct(RICH, 3));
    assert_eq!((pool.len(), pool.bytes(), pool.is_empty()), (0, 0, true));
}

#[test]
fn admit_with_a_newer_account_drops_stale_transactions() {
    let mut pool = Mempool::new(Limits::default());
    let (t0, t1, t2) = (tx(1, 0, 1), tx(1, 1, 1), tx(1, 2, 1));
    add(&mut pool, &t0, 0).unwrap();
    add(&mut pool, &t1, 0).unwrap();
    assert_eq!(add(&mut pool, &t2, 1), Ok(Admitted::Added(t2.hash())));
    assert_eq!(pool.status(&t0.hash()), None);
    assert_eq!((pool.len(), pool.bytes()), (2, 2 * size()));
    // An older account view does not move the sender's next nonce back.
    let (r, _) = reject(&mut pool, t0, acct(RICH, 0));
    assert_eq!(r, Rejected::NonceUsed { nonce: 0, next: 1 });
}

#[test]
fn requeue_makes_in_flight_transactions_pending_again() {
    let mut pool = Mempool::new(Limits::default());
    let (t0, t1) = (tx(1, 0, 1), tx(1, 1, 1));
    add(&mut pool, &t0, 0).unwrap();
    add(&mut pool, &t1, 0).unwrap();
    assert_eq!(pool.next_batch(1, ANY), vec![t0.clone()]);
    assert_eq!(pool.next_batch(1, ANY), vec![t1.clone()]);
    assert_eq!(pool.next_batch(10, ANY), vec![]);
    pool.requeue_in_flight(&[t0.hash(), crypto::hash(b"unknown")]);
    assert_eq!(pool.status(&t0.hash()), Some(Pending));
    assert_eq!(pool.status(&t1.hash()), Some(InFlight));
    assert_eq!(pool.next_batch(10, ANY), vec![t0.clone()]);
    pool.requeue_in_flight(&[t0.hash(), t1.hash()]);
    assert_eq!(pool.next_batch(10, ANY), vec![t0, t1]);
    assert_eq!((pool.len(), pool.bytes()), (2, 2 * size()));
}

#[test]
fn full_pool_rejects_until_a_commit_frees_room() {
    let mut full = pool(2, 1 << 20, 16);
    let (t, u, v) = (tx(1, 0, 1), tx(2, 0, 1), tx(3, 0, 1));
    add(&mut full, &t, 0).unwrap();
    add(&mut full, &u, 0).unwrap();
    let (r, msg) = reject(&mut full, v.clone(), acct(RICH, 0));
    let (bytes, max_bytes) = (2 * size(), 1 << 20);
    assert_eq!(
        r,
        Rejected::PoolFull {
            txs: 2,
            bytes,
            max_txs: 2,
            max_bytes
        }
    );
    assert!(r.is_retryable() && !Rejected::ZeroAmount.is_retryable());
    let prefix = format!("mempool full (2/2 transactions, {bytes}/{max_bytes} bytes): retry later");
    assert!(msg.starts_with(&prefix), "{msg}");
    full.next_batch(1, ANY);
    full.committed(&[t], |_| acct(RICH, 1));
    assert_eq!(add(&mut full, &v, 0), Ok(Admitted::Added(v.hash())));

    // The byte limit.
    let mut full = pool(100, 2 * size() - 1, 16);
    add(&mut full, &u, 0).unwrap();
    let (r, _) = reject(&mut full, v, acct(RICH, 0));
    assert!(matches!(r, Rejected::PoolFull { txs: 1, .. }), "{r:?}");
}

#[test]
fn balance_covers_pending_transfers_with_lower_nonces() {
    let mut pool = Mempool::new(Limits::default());
    // Nonce 1 arrives first: nothing below it is pooled, so 90 of 100 fits.
    assert!(pool.admit(tx(1, 1, 90), &chain(), acct(100, 0)).is_ok());
    assert!(pool.admit(tx(1, 0, 60), &chain(), acct(100, 0)).is_ok());
    let (r, msg) = reject(&mut pool, tx(1, 2, 1), acct(100, 0));
    assert_eq!(
        r,
        Rejected::InsufficientBalance {
            balance: 100,
            needed: 151,
            pending: 2
        }
    );
    let prefix = "insufficient balance: have 100, need 151 (this transfer plus 2 pending";
    assert!(msg.starts_with(prefix), "{msg}");
    // Sums past u64::MAX are refused, not wrapped.
    let mut pool = Mempool::new(Limits::default());
    pool.admit(tx(1, 0, u64::MAX), &chain(), acct(u64::MAX, 0))
        .unwrap();
    let (r, _) = reject(&mut pool, tx(1, 1, 1), acct(u64::MAX, 0));
    let needed = u128::from(u64::MAX) + 1;
    assert_eq!(
        r,
        Rejected::InsufficientBalance {
            balance: u64::MAX,
            needed,
            pending: 1
        }
    );
}

// Raw transactions (benchmarks only): unsigned, in one FIFO lane after the account ones.

fn raw(id: u64, len: usize) -> Transaction {
    Transaction::raw(&chain(), id, vec![7; len])
}
fn raw_pool(max_txs: usize, max_bytes: usize) -> Mempool {
    Mempool::new(Limits {
        max_txs,
        max_bytes,
        raw_transactions: true,
        ..Limits::default()
    })
}
/// Admits a raw transaction (the account passed is irrelevant to it: an empty one).
fn add_raw(pool: &mut Mempool, t: &Transaction) -> Result<Admitted, Rejected> {
    pool.admit(t.clone(), &chain(), acct(0, 0))
}
/// The pool's bookkeeping agrees with its contents.
fn check(pool: &Mempool) {
    let account = pool.senders.values().flat_map(|s| s.txs.values());
    let all: Vec<&Entry> = account.chain(pool.raw.txs.values()).collect();
    assert_eq!(pool.by_hash.len(), all.len());
    assert_eq!(pool.bytes, all.iter().map(|e| e.size).sum::<usize>());
    for (&seq, e) in &pool.raw.txs {
        assert!(e.tx.is_raw());
        assert_eq!(pool.by_hash.get(&e.hash), Some(&Slot::Raw(seq)));
        assert_eq!(pool.raw.pending.contains(&seq), !e.in_flight);
    }
    assert!(
        pool.raw
            .pending
            .iter()
            .all(|s| pool.raw.txs.contains_key(s))
    );
    assert!(pool.senders.values().all(|s| !s.txs.is_empty()));
    assert!(!pool.senders.contains_key(&Address::of(&RAW_SENDER)));
}

#[test]
fn raw_transactions_are_refused_unless_genesis_enables_them() {
    assert!(!Limits::default().raw_transactions);
    let mut pool = Mempool::new(Limits::default());
    let (r, msg) = reject(&mut pool, raw(1, 10), acct(0, 0));
    assert_eq!(r, Rejected::RawDisabled);
    assert_eq!(
        msg,
        "raw transactions are disabled on this chain (genesis params.raw_transactions enables \
         them, for benchmarks only): send signed transactions"
    );
    assert!(!r.is_retryable());
    // The envelope checks come first.
    let other = ChainBinding {
        chain_id: "other".into(),
        ..chain()
    };
    let r = pool.admit(Transaction::raw(&other, 1, vec![]), &chain(), acct(0, 0));
    assert!(matches!(r, Err(Rejected::WrongChainId { .. })), "{r:?}");
    let r = pool.admit_verified(raw(1, 10), &chain(), acct(0, 0));
    assert_eq!(r, Err(Rejected::RawDisabled));
    assert!(pool.is_empty());
    check(&pool);
}

#[test]
fn enabled_raw_transactions_skip_signature_nonce_and_balance() {
    let mut pool = raw_pool(100, 1 << 20);
    let r = raw(5, 100);
    assert_eq!(add_raw(&mut pool, &r), Ok(Admitted::Added(r.hash())));
    // Equal data, another id: another transaction.
    let r2 = raw(6, 100);
    assert_eq!(add_raw(&mut pool, &r2), Ok(Admitted::Added(r2.hash())));
    // Whatever the sender and signature fields hold, a raw transaction stays in the raw lane.
    let mut odd = raw(7, 1);
    odd.body.sender = key(1).public();
    odd.signature = tx(1, 0, 1).signature;
    assert_eq!(add_raw(&mut pool, &odd), Ok(Admitted::Added(odd.hash())));
    assert_eq!(pool.status(&r.hash()), Some(Pending));
    let bytes = r.encode().len() + r2.encode().len() + odd.encode().len();
    assert_eq!((pool.len(), pool.bytes()), (3, bytes));
    assert_eq!(pool.next_nonce(&addr(1), 0), 0);
    assert_eq!(pool.next_nonce(&Address::of(&RAW_SENDER), 0), 0);
    // Signed transactions are checked as before, next to the raw ones.
    let t = tx(1, 0, 10);
    assert_eq!(add(&mut pool, &t, 0), Ok(Admitted::Added(t.hash())));
    assert_eq!(pool.next_nonce(&addr(1), 0), 1);
    check(&pool);
}

#[test]
fn raw_resubmission_is_idempotent() {
    let mut pool = raw_pool(1, 1 << 20);
    let r = raw(1, 10);
    assert_eq!(add_raw(&mut pool, &r), Ok(Admitted::Added(r.hash())));
    // Even with the pool full, a resubmission is answered, not rejected.
    assert_eq!(
        add_raw(&mut pool, &r),
        Ok(Admitted::AlreadyPending(r.hash()))
    );
    assert_eq!(pool.next_batch(10, ANY), vec![r.clone()]);
    assert_eq!(add_raw(&mut pool, &r), Ok(Admitted::InFlight(r.hash())));
    assert_eq!(pool.status(&r.hash()), Some(InFlight));
    assert_eq!((pool.len(), pool.bytes()), (1, r.encode().len()));
    assert_eq!(pool.next_batch(10, ANY), vec![]);
    check(&pool);
}

#[test]
fn batches_take_raw_transactions_after_account_ones_in_arrival_order() {
    let mut pool = raw_pool(100, 1 << 20);
    let (r0, r1, r2) = (raw(0, 10), raw(1, 10), raw(2, 10));
    let (t, u) = (tx(1, 0, 1), tx(2, 0, 1));
    add_raw(&mut pool, &r0).unwrap();
    add(&mut pool, &t, 0).unwrap();
    add_raw(&mut pool, &r1).unwrap();
    add(&mut pool, &u, 0).unwrap();
    add_raw(&mut pool, &r2).unwrap();
    let mut accounts = [t, u];
    accounts.sort_by_key(|t| t.sender_address());
    let expected: Vec<_> = accounts.into_iter().chain([r0, r1, r2]).collect();
    assert_eq!(ready(&pool), expected);
    // max_txs cuts the raw lane too, and the next batch continues where it stopped.
    assert_eq!(pool.next_batch(3, ANY), expected[..3]);
    assert_eq!(pool.next_batch(0, ANY), vec![]);
    assert_eq!(pool.next_batch(10, ANY), expected[3..]);
    check(&pool);
}

#[test]
fn the_raw_lane_stops_at_the_first_transaction_that_does_not_fit() {
    let mut pool = raw_pool(100, 1 << 20);
    let (big, small) = (raw(0, 1000), raw(1, 10));
    add_raw(&mut pool, &big).unwrap();
    add_raw(&mut pool, &small).unwrap();
    let (big_size, small_size) = (big.encode().len(), small.encode().len());
    // Room for the small one only: arrival order wins, nothing is taken.
    assert_eq!(pool.next_batch(10, big_size - 1), vec![]);
    assert_eq!(pool.next_batch(10, big_size + small_size - 1), vec![big]);
    assert_eq!(pool.next_batch(10, small_size), vec![small]);
    check(&pool);
}

#[test]
fn raw_transactions_are_requeued_in_place_and_dropped_when_committed() {
    let mut pool = raw_pool(100, 1 << 20);
    let rs: Vec<Transaction> = (0..4).map(|i| raw(i, 20)).collect();
    let t = tx(1, 0, 1);
    for r in &rs[..3] {
        add_raw(&mut pool, r).unwrap();
    }
    add(&mut pool, &t, 0).unwrap();
    assert_eq!(
        pool.next_batch(3, ANY),
        vec![t.clone(), rs[0].clone(), rs[1].clone()]
    );
    add_raw(&mut pool, &rs[3]).unwrap();
    assert_eq!(pool.status(&rs[1].hash()), Some(InFlight));
    // A requeued raw transaction goes back to its arrival place, ahead of later arrivals.
    pool.requeue_in_flight(&[rs[1].hash(), rs[2].hash(), crypto::hash(b"unknown")]);
    assert_eq!(pool.status(&rs[1].hash()), Some(Pending));
    assert_eq!(pool.status(&rs[0].hash()), Some(InFlight));
    check(&pool);
    assert_eq!(ready(&pool), rs[1..].to_vec());

    // A block with t and r0 commits; only signed senders are asked about their accounts.
    let raw_sender = Address::of(&RAW_SENDER);
    let accounts = |a: &Address| {
        assert_ne!(*a, raw_sender, "raw transactions have no account");
        acct(RICH, 1)
    };
    pool.committed(&[t.clone(), rs[0].clone()], accounts);
    assert_eq!(pool.status(&rs[0].hash()), None);
    assert_eq!(pool.status(&t.hash()), None);
    assert_eq!((pool.len(), pool.bytes()), (3, 3 * rs[0].encode().len()));
    // Committing again, or requeuing a committed hash, changes nothing.
    pool.committed(&[rs[0].clone()], accounts);
    pool.requeue_in_flight(&[rs[0].hash()]);
    assert_eq!(pool.len(), 3);
    // Resync after a snapshot keeps raw transactions: they have no nonce to go stale.
    pool.resync(|_| acct(RICH, 1_000));
    assert_eq!(pool.len(), 3);
    check(&pool);

    assert_eq!(pool.next_batch(10, ANY), rs[1..].to_vec());
    pool.committed(&rs[1..], accounts);
    assert_eq!((pool.len(), pool.bytes(), pool.is_empty()), (0, 0, true));
    check(&pool);
}

#[test]
fn raw_transactions_count_toward_the_pool_limits() {
    let mut full = raw_pool(2, 1 << 20);
    let (r, t) = (raw(0, 10), tx(1, 0, 1));
    add_raw(&mut full, &r).unwrap();
    add(&mut full, &t, 0).unwrap();
    let bytes = r.encode().len() + size();
    let (e, _) = reject(&mut full, raw(1, 10), acct(0, 0));
    let pool_full = Rejected::PoolFull {
        txs: 2,
        bytes,
        max_txs: 2,
        max_bytes: 1 << 20,
    };
    assert_eq!(e, pool_full);
    assert!(e.is_retryable());
    let (e, _) = reject(&mut full, tx(2, 0, 1), acct(RICH, 0));
    assert_eq!(e, pool_full);
    // Committing the raw one frees room.
    full.next_batch(10, ANY);
    full.committed(std::slice::from_ref(&r), |_| acct(RICH, 1));
    assert_eq!(
        add_raw(&mut full, &raw(1, 10)).map(|a| a.hash()),
        Ok(raw(1, 10).hash())
    );

    // The byte limit.
    let big = raw(0, 1000);
    let mut full = raw_pool(100, big.encode().len() + 10);
    add_raw(&mut full, &big).unwrap();
    let (e, _) = reject(&mut full, raw(1, 10), acct(0, 0));
    assert!(matches!(e, Rejected::PoolFull { txs: 1, .. }), "{e:?}");
    let mut tiny = Mempool::new(Limits {
        max_tx_bytes: 100,
        raw_transactions: true,
        ..Limits::default()
    });
    let (e, _) = reject(&mut tiny, big, acct(0, 0));
    assert!(matches!(e, Rejected::TooLarge { max: 100, .. }), "{e:?}");
    check(&full);
}

#[test]
fn a_signed_transaction_from_the_raw_sender_never_opens_a_sender_lane() {
    let mut pool = raw_pool(100, 1 << 20);
    let mut t = tx(1, 0, 10);
    t.body.sender = RAW_SENDER;
    let expected = Rejected::BadSignature(SignatureError::Key(crypto::KeyError::SmallOrder));
    assert_eq!(
        pool.admit(t.clone(), &chain(), acct(RICH, 0)),
        Err(expected.clone())
    );
    assert_eq!(
        pool.admit_verified(t, &chain(), acct(RICH, 0)),
        Err(expected.clone())
    );
    assert!(
        expected
            .to_string()
            .starts_with("bad signature (ed25519 public key has small")
    );
    assert!(pool.is_empty());
    check(&pool);
}

#[test]
fn admit_verified_skips_only_the_signature_check() {
    let mut pool = Mempool::new(Limits::default());
    let mut forged = tx(1, 0, 10);
    forged.body.payload = Payload::Transfer {
        to: addr(200),
        amount: 11,
    };
    let (r, _) = reject(&mut pool, forged.clone(), acct(RICH, 0));
    assert_eq!(r, Rejected::BadSignature(SignatureError::Invalid));
    // The caller vouches for the signature: everything else is still checked.
    let verified =
        |pool: &mut Mempool, t: &Transaction, a| pool.admit_verified(t.clone(), &chain(), a);
    assert_eq!(
        verified(&mut pool, &forged, acct(5, 0)),
        Err(Rejected::InsufficientBalance {
            balance: 5,
            needed: 11,
            pending: 0
        })
    );
    assert_eq!(
        verified(&mut pool, &forged, acct(RICH, 1)),
        Err(Rejected::NonceUsed { nonce: 0, next: 1 })
    );
    let h = forged.hash();
    assert_eq!(
        verified(&mut pool, &forged, acct(RICH, 0)),
        Ok(Admitted::Added(h))
    );
    assert_eq!(
        verified(&mut pool, &forged, acct(RICH, 0)),
        Ok(Admitted::AlreadyPending(h))
    );
    let wrong = signed(
        1,
        &ChainBinding {
            chain_id: "x".into(),
            ..chain()
        },
        1,
        1,
    );
    let r = verified(&mut pool, &wrong, acct(RICH, 0));
    assert!(matches!(r, Err(Rejected::WrongChainId { .. })), "{r:?}");
    check(&pool);
}

#[test]
fn ten_thousand_raw_transactions_drain_in_batches_without_loss_or_duplicates() {
    const RAW: u64 = 10_000;
    let mut pool = raw_pool(20_000, 64 << 20);
    let mut expected = BTreeSet::new();
    for i in 0..RAW {
        let r = raw(i, (i % 200) as usize);
        expected.insert(r.hash());
        assert_eq!(add_raw(&mut pool, &r), Ok(Admitted::Added(r.hash())));
    }
    for s in 1..=5u8 {
        for nonce in 0..20 {
            let t = tx(s, nonce, 1);
            expected.insert(t.hash());
            add(&mut pool, &t, 0).unwrap();
        }
    }
    assert_eq!(pool.len(), expected.len());
    check(&pool);

    let mut committed = BTreeSet::new();
    let mut batches = 0;
    let mut nonces = BTreeMap::new();
    while !pool.is_empty() {
        let batch = pool.next_batch(512, 16 * 1024);
        assert!(!batch.is_empty(), "pending transactions are always taken");
        assert!(batch.iter().map(|t| t.encode().len()).sum::<usize>() <= 16 * 1024);
        batches += 1;
        // Every third batch is dropped and requeued; the others commit.
        if batches % 3 == 0 {
            pool.requeue_in_flight(&batch.iter().map(Transaction::hash).collect::<Vec<_>>());
            continue;
        }
        for t in &batch {
            assert!(committed.insert(t.hash()), "taken twice: {}", t.hash());
            if !t.is_raw() {
                *nonces.entry(t.sender_address()).or_insert(0u64) += 1;
            }
        }
        pool.committed(&batch, |a| acct(RICH, nonces.get(a).copied().unwrap_or(0)));
        if batches % 17 == 0 {
            check(&pool);
        }
    }
    assert_eq!(committed, expected);
    assert_eq!((pool.len(), pool.bytes()), (0, 0));
    check(&pool);
}

/// A validator-set change: refused at admission, with the reason, where the chain does not
/// enable changes; where it does, admitted like a transfer of nothing (no zero-amount or
/// balance refusal: it moves no balance), its nonce in its sender's lane.
#[test]
fn validator_set_changes_are_admitted_only_where_enabled() {
    let change = ledger::validators::Change {
        epoch: 0,
        op: ledger::validators::SetChange::Remove {
            consensus_key: key(9).public(),
        },
        approvals: Vec::new(),
    };
    let t = Transaction::sign(&key(1), &chain(), 0, Payload::Governance(change));
    let mut off = pool(ANY, ANY, 16);
    let (r, msg) = reject(&mut off, t.clone(), acct(0, 0));
    assert_eq!(r, Rejected::GovernanceDisabled);
    assert_eq!(r.code(), "governance_disabled");
    assert!(
        msg.starts_with("validator-set changes are not enabled"),
        "{msg}"
    );
    let mut on = Mempool::new(Limits {
        governance: true,
        ..Limits::default()
    });
    assert_eq!(
        on.admit(t.clone(), &chain(), acct(0, 0)),
        Ok(Admitted::Added(t.hash()))
    );
}
