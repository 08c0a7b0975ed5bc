//! Execution rules: each invalid transaction is skipped with its reason; valid ones apply.

use crypto::{Digest, PublicKey, SecretKey, Signature};
use ledger::{
    Account, Address, BlockInput, ChainBinding, Ledger, MemStore, Payload, RejectReason, State,
    Store, Transaction,
};

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "test-chain".into(),
        genesis_hash: crypto::hash(b"genesis"),
    }
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn addr(n: u8) -> Address {
    Address::of(&key(n).public())
}

fn transfer(from: u8, nonce: u64, to: u8, amount: u64) -> Transaction {
    Transaction::sign(
        &key(from),
        &chain(),
        nonce,
        Payload::Transfer {
            to: addr(to),
            amount,
        },
    )
}

fn state_with(balances: &[(u8, u64)]) -> State {
    State::new(balances.iter().map(|(n, b)| {
        (
            addr(*n),
            Account {
                balance: *b,
                nonce: 0,
            },
        )
    }))
}

/// Runs `txs` on a fresh state funded with 1000 for key 1, returns the outcomes.
fn outcomes(txs: &[Transaction]) -> Vec<Result<(), RejectReason>> {
    let mut s = state_with(&[(1, 1000)]);
    s.execute(&chain(), txs)
        .receipts
        .into_iter()
        .map(|r| r.outcome)
        .collect()
}

#[test]
fn valid_transfer_moves_funds_and_bumps_nonce() {
    let mut s = state_with(&[(1, 1000)]);
    let exec = s.execute(&chain(), &[transfer(1, 0, 2, 300)]);
    assert_eq!(exec.receipts[0].outcome, Ok(()));
    assert_eq!(
        s.account(&addr(1)),
        Account {
            balance: 700,
            nonce: 1
        }
    );
    assert_eq!(
        s.account(&addr(2)),
        Account {
            balance: 300,
            nonce: 0
        }
    );
    assert_eq!(exec.changed.len(), 2);
    assert_eq!(s.total_supply(), 1000);
}

#[test]
fn same_transaction_twice_is_a_replay() {
    let tx = transfer(1, 0, 2, 10);
    assert_eq!(
        outcomes(&[tx.clone(), tx]),
        vec![
            Ok(()),
            Err(RejectReason::NonceTooLow {
                expected: 1,
                got: 0
            })
        ]
    );
}

#[test]
fn transaction_for_another_chain_is_rejected() {
    for other in [
        ChainBinding {
            chain_id: "other-chain".into(),
            genesis_hash: chain().genesis_hash,
        },
        ChainBinding {
            chain_id: chain().chain_id,
            genesis_hash: crypto::hash(b"other genesis"),
        },
    ] {
        let tx = Transaction::sign(
            &key(1),
            &other,
            0,
            Payload::Transfer {
                to: addr(2),
                amount: 1,
            },
        );
        let got = outcomes(&[tx]);
        assert!(
            matches!(got[0], Err(RejectReason::WrongChain { .. })),
            "{got:?}"
        );
    }
}

#[test]
fn wrong_nonce_is_rejected_both_ways() {
    assert_eq!(
        outcomes(&[transfer(1, 1, 2, 10)]),
        vec![Err(RejectReason::NonceTooHigh {
            expected: 0,
            got: 1
        })]
    );
    // After a skipped transaction, the nonce has not moved.
    assert_eq!(
        outcomes(&[transfer(1, 5, 2, 10), transfer(1, 0, 2, 10)]),
        vec![
            Err(RejectReason::NonceTooHigh {
                expected: 0,
                got: 5
            }),
            Ok(())
        ]
    );
}

#[test]
fn insufficient_balance_is_rejected() {
    assert_eq!(
        outcomes(&[transfer(1, 0, 2, 1001)]),
        vec![Err(RejectReason::InsufficientBalance {
            balance: 1000,
            needed: 1001
        })]
    );
    // An unfunded sender has balance 0.
    assert_eq!(
        outcomes(&[transfer(9, 0, 2, 1)]),
        vec![Err(RejectReason::InsufficientBalance {
            balance: 0,
            needed: 1
        })]
    );
}

#[test]
fn recipient_overflow_is_rejected_and_changes_nothing() {
    let mut s = state_with(&[(1, 10), (2, u64::MAX - 5)]);
    let before = s.clone();
    let exec = s.execute(&chain(), &[transfer(1, 0, 2, 6)]);
    assert_eq!(exec.receipts[0].outcome, Err(RejectReason::Overflow));
    assert_eq!(s, before);
    assert!(exec.changed.is_empty());
}

#[test]
fn zero_amount_is_rejected() {
    assert_eq!(
        outcomes(&[transfer(1, 0, 2, 0)]),
        vec![Err(RejectReason::ZeroAmount)]
    );
}

#[test]
fn bad_signature_is_rejected() {
    let mut tx = transfer(1, 0, 2, 10);
    tx.signature.0[10] ^= 0x40;
    assert_eq!(outcomes(&[tx]), vec![Err(RejectReason::BadSignature)]);
    // Signature valid, but by someone else for the claimed sender.
    let mut tx = transfer(1, 0, 2, 10);
    tx.signature = transfer(3, 0, 2, 10).signature;
    assert_eq!(outcomes(&[tx]), vec![Err(RejectReason::BadSignature)]);
}

#[test]
fn a_bad_signature_in_a_batch_does_not_taint_its_neighbours() {
    let mut bad = transfer(1, 1, 2, 10);
    bad.signature.0[0] ^= 1;
    let got = outcomes(&[transfer(1, 0, 2, 10), bad, transfer(1, 1, 2, 10)]);
    assert_eq!(got, vec![Ok(()), Err(RejectReason::BadSignature), Ok(())]);
}

#[test]
fn speccheck_edge_case_signatures_are_rejected_as_transactions() {
    // The 15 edge cases sign raw messages, never a Cairn transaction body, so under the one
    // rule each must be rejected with BadSignature whatever its raw verdict; small-order and
    // malformed keys must not panic or be accepted.
    #[derive(serde::Deserialize)]
    struct Case {
        pub_key: String,
        signature: String,
    }
    let text = include_str!("../../crypto/tests/vectors/ed25519-speccheck.json");
    let cases: Vec<Case> = serde_json::from_str(text).unwrap();
    assert_eq!(cases.len(), 15);
    for (i, c) in cases.iter().enumerate() {
        let pk = PublicKey(hex::decode(&c.pub_key).unwrap().try_into().unwrap());
        let sig = Signature(hex::decode(&c.signature).unwrap().try_into().unwrap());
        let mut tx = transfer(1, 0, 2, 1);
        tx.body.sender = pk;
        tx.signature = sig;
        let mut s = State::new([(
            Address::of(&pk),
            Account {
                balance: 5,
                nonce: 0,
            },
        )]);
        let exec = s.execute(&chain(), &[tx]);
        assert_eq!(
            exec.receipts[0].outcome,
            Err(RejectReason::BadSignature),
            "case {i}"
        );
    }
}

#[test]
fn self_transfer_keeps_balance_and_bumps_nonce() {
    let mut s = state_with(&[(1, 50)]);
    let exec = s.execute(&chain(), &[transfer(1, 0, 1, 20)]);
    assert_eq!(exec.receipts[0].outcome, Ok(()));
    assert_eq!(
        s.account(&addr(1)),
        Account {
            balance: 50,
            nonce: 1
        }
    );
}

#[test]
fn reject_reasons_read_well() {
    let r = RejectReason::NonceTooLow {
        expected: 3,
        got: 1,
    };
    assert_eq!(r.to_string(), "nonce 1 already used (next nonce is 3)");
}

#[test]
fn ledger_links_blocks_and_indexes_first_inclusion() {
    let genesis = [(addr(1), 1000)];
    let mut l = Ledger::open(MemStore::new(), chain(), &genesis).unwrap();
    let tx = transfer(1, 0, 2, 10);
    let input = |txs: Vec<Transaction>| BlockInput {
        proposer: key(100).public(),
        view: 7,
        timestamp_ms: 1,
        txs,
        certificate: vec![1, 2, 3],
        batch_sizes: vec![],
    };
    let (b1, r1) = l.commit(input(vec![tx.clone()])).unwrap();
    assert_eq!(b1.header.height, 1);
    assert_eq!(b1.header.parent, chain().genesis_hash);
    assert!(b1.tx_root_matches());
    assert_eq!(r1[0].outcome, Ok(()));
    // The same transaction again is rejected, and its index entry still says committed.
    let (b2, r2) = l.commit(input(vec![tx.clone()])).unwrap();
    assert_eq!(b2.header.parent, b1.hash());
    assert!(r2[0].outcome.is_err());
    let rec = l.store().tx(&tx.hash()).unwrap().unwrap();
    assert_eq!((rec.height, rec.index, rec.receipt.outcome), (1, 0, Ok(())));
    assert_eq!(l.store().height_of(&b2.hash()).unwrap(), Some(2));

    // Reopening from the store reproduces the same tip and state.
    let root = l.state_root();
    let tip = l.tip();
    let l2 = Ledger::open(l.into_store(), chain(), &genesis).unwrap();
    assert_eq!((l2.height(), l2.tip(), l2.state_root()), (2, tip, root));

    // A store created for another genesis is refused with a clear message.
    let other = ChainBinding {
        chain_id: "x".into(),
        genesis_hash: Digest([9; 32]),
    };
    let err = Ledger::open(l2.into_store(), other, &genesis)
        .err()
        .unwrap();
    assert!(err.to_string().contains("belongs to genesis"), "{err}");
}

#[test]
fn checked_transactions_skip_only_the_signature_check() {
    let txs: Vec<Transaction> = (0..12).map(|n| transfer(1, n, 2, 10)).collect();
    // Marking valid signatures as checked changes nothing (a batch of 12 really batches).
    let mut plain = state_with(&[(1, 1000)]);
    let mut skipped = state_with(&[(1, 1000)]);
    let a = plain.execute(&chain(), &txs);
    let marks: Vec<bool> = (0..12).map(|i| i % 2 == 0).collect();
    let b = skipped.execute_checked(&chain(), &txs, &marks);
    assert_eq!(a.receipts, b.receipts);
    assert_eq!(plain, skipped);
    // The mark is trusted: a forged signature marked checked applies, unmarked it does not.
    // (This is why only this validator's own admitted batches, or Raft's, are marked.)
    let mut forged = txs.clone();
    forged[3].signature.0[0] ^= 1;
    let mut s = state_with(&[(1, 1000)]);
    let trusted = s.execute_checked(&chain(), &forged, &[false, false, false, true]);
    assert_eq!(trusted.receipts[3].outcome, Ok(()));
    let mut s = state_with(&[(1, 1000)]);
    let checked = s.execute_checked(&chain(), &forged, &[true, true, true]);
    assert_eq!(checked.receipts[3].outcome, Err(RejectReason::BadSignature));
    // Other rules still apply to checked transactions.
    let wrong_nonce = [transfer(1, 5, 2, 10)];
    let mut s = state_with(&[(1, 1000)]);
    let r = s.execute_checked(&chain(), &wrong_nonce, &[true]);
    assert!(
        matches!(
            r.receipts[0].outcome,
            Err(RejectReason::NonceTooHigh { .. })
        ),
        "{:?}",
        r.receipts
    );
}
