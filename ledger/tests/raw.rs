//! Raw transactions (`Payload::Raw`): unsigned, ordered, stored and committed, never executed.

use crypto::{KeyError, SecretKey, Signature};
use ledger::{
    Account, Address, BlockInput, ChainBinding, Ledger, MemStore, Payload, RAW_SENDER,
    RejectReason, State, Store, Transaction,
};

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "raw-chain".into(),
        genesis_hash: crypto::hash(b"raw genesis"),
    }
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn addr(n: u8) -> Address {
    Address::of(&key(n).public())
}

fn transfer(from: u8, nonce: u64, to: u8, amount: u64) -> Transaction {
    let payload = Payload::Transfer {
        to: addr(to),
        amount,
    };
    Transaction::sign(&key(from), &chain(), nonce, payload)
}

fn raw(id: u64, data: &[u8]) -> Transaction {
    Transaction::raw(&chain(), id, data.to_vec())
}

fn funded() -> State {
    let account = |balance| Account { balance, nonce: 0 };
    State::new([(addr(1), account(1000)), (addr(2), account(500))])
}

fn input(view: u64, txs: Vec<Transaction>) -> BlockInput {
    BlockInput {
        proposer: key(100).public(),
        view,
        timestamp_ms: view,
        txs,
        certificate: vec![],
        batch_sizes: vec![],
    }
}

#[test]
fn a_raw_transaction_is_unsigned_and_its_id_is_the_nonce() {
    let t = raw(42, b"payload");
    assert!(t.is_raw() && !transfer(1, 0, 2, 1).is_raw());
    assert_eq!(t.body.sender, RAW_SENDER);
    assert_eq!(t.body.sender.0, [0; 32]);
    assert_eq!(t.signature, Signature([0; 64]));
    assert_eq!(t.body.nonce, 42);
    assert_eq!(
        t.body.payload,
        Payload::Raw {
            data: b"payload".to_vec()
        }
    );
    // Equal data, another id: another transaction.
    assert_ne!(raw(43, b"payload").hash(), t.hash());
    assert_eq!(raw(42, b"payload").hash(), t.hash());
    // No key can sign for the raw sender: it is a small-order point.
    assert_eq!(RAW_SENDER.validate(), Err(KeyError::SmallOrder));
    assert!(t.verify_signature().is_err());
}

#[test]
fn transfers_with_raw_transactions_reach_the_state_of_the_transfers_alone() {
    let transfers = vec![
        transfer(1, 0, 2, 10),
        transfer(2, 0, 3, 7),
        transfer(1, 1, 3, 2000), // insufficient: skipped either way
        transfer(1, 1, 1, 5),
    ];
    let mut mixed = Vec::new();
    for (i, t) in transfers.iter().enumerate() {
        mixed.push(raw(i as u64, &[i as u8; 100]));
        mixed.push(t.clone());
    }
    mixed.push(raw(99, b""));

    let mut alone = funded();
    let alone_exec = alone.execute(&chain(), &transfers);
    let mut with_raw = funded();
    let exec = with_raw.execute(&chain(), &mixed);

    assert_eq!(with_raw, alone);
    assert_eq!(exec.changed, alone_exec.changed);
    assert_eq!(exec.receipts.len(), mixed.len());
    for (tx, r) in mixed.iter().zip(&exec.receipts) {
        assert_eq!(r.tx_hash, tx.hash());
    }
    let signed: Vec<_> = exec.receipts.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(signed, alone_exec.receipts);
    // Every raw receipt says applied (with no effect).
    let raw_outcomes: Vec<_> = (0..transfers.len())
        .map(|i| exec.receipts[2 * i].outcome.clone())
        .chain([exec.receipts[mixed.len() - 1].outcome.clone()])
        .collect();
    assert_eq!(raw_outcomes, vec![Ok(()); transfers.len() + 1]);
    // The raw sender never gets an account.
    assert_eq!(
        with_raw.account(&Address::of(&RAW_SENDER)),
        Account::default()
    );
    assert_eq!(with_raw.accounts().count(), alone.accounts().count());
}

#[test]
fn raw_garbage_in_the_signature_batch_does_not_change_the_signed_verdicts() {
    // More than 8 signed transactions, so they are checked as one batch.
    let good: Vec<Transaction> = (0..10).map(|n| transfer(1, n, 2, 1)).collect();
    let mut bad = transfer(1, 10, 2, 1);
    bad.signature.0[0] ^= 1;
    // Raw transactions whose sender and signature fields hold garbage, or a real key with a
    // real signature over something else: none may poison (or rescue) the batch.
    let mut garbage = Vec::new();
    for i in 0..6u8 {
        let mut t = raw(u64::from(i), &[i; 8]);
        match i % 3 {
            0 => t.signature = Signature([0xff; 64]),
            1 => {
                t.body.sender = key(1).public();
                t.signature = good[0].signature;
            }
            _ => t.body.sender.0 = [i; 32],
        }
        garbage.push(t);
    }
    let mut txs = Vec::new();
    for (i, g) in good.iter().enumerate() {
        txs.push(g.clone());
        if let Some(r) = garbage.get(i) {
            txs.push(r.clone());
        }
    }
    txs.push(bad.clone());

    let mut s = funded();
    let exec = s.execute(&chain(), &txs);
    for (tx, r) in txs.iter().zip(&exec.receipts) {
        let expected = if tx == &bad {
            Err(RejectReason::BadSignature)
        } else {
            Ok(())
        };
        assert_eq!(r.outcome, expected, "{:?}", tx.body.payload);
    }
    // Only the ten good transfers moved anything; the raw one claiming key 1 did not.
    assert_eq!(
        s.account(&addr(1)),
        Account {
            balance: 990,
            nonce: 10
        }
    );
}

#[test]
fn a_raw_transaction_for_another_chain_is_rejected() {
    let other = ChainBinding {
        chain_id: "elsewhere".into(),
        ..chain()
    };
    let t = Transaction::raw(&other, 1, vec![1]);
    let exec = funded().execute(&chain(), &[t]);
    assert_eq!(
        exec.receipts[0].outcome,
        Err(RejectReason::WrongChain {
            chain_id: "elsewhere".into(),
            genesis_hash: chain().genesis_hash,
        })
    );
}

#[test]
fn the_ledger_stores_raw_transactions_and_indexes_them_by_hash() {
    let genesis = [(addr(1), 1000)];
    let mut l = Ledger::open(MemStore::new(), chain(), &genesis).unwrap();
    let (r0, t, r1) = (raw(0, b"a"), transfer(1, 0, 2, 10), raw(1, b"a"));
    let (b1, receipts) = l.commit(input(1, vec![r0.clone(), t, r1.clone()])).unwrap();
    assert!(b1.tx_root_matches());
    assert!(receipts.iter().all(|r| r.outcome.is_ok()));
    let rec = l.store().tx(&r1.hash()).unwrap().unwrap();
    assert_eq!((rec.height, rec.index, rec.receipt.outcome), (1, 2, Ok(())));
    assert_eq!(l.store().block(1).unwrap().unwrap().txs[0], r0);

    // A raw transaction has no nonce to stop a repeat: it applies again (with no effect),
    // and the index keeps its first inclusion.
    let (_, again) = l.commit(input(2, vec![r0.clone()])).unwrap();
    assert_eq!(again[0].outcome, Ok(()));
    let rec = l.store().tx(&r0.hash()).unwrap().unwrap();
    assert_eq!((rec.height, rec.index), (1, 0));

    // Reopening from the store reproduces the tip and the state.
    let (root, tip) = (l.state_root(), l.tip());
    let l2 = Ledger::open(l.into_store(), chain(), &genesis).unwrap();
    assert_eq!((l2.height(), l2.tip(), l2.state_root()), (2, tip, root));
    assert_eq!(
        l2.account(&Address::of(&RAW_SENDER)).unwrap(),
        Account::default()
    );
}
