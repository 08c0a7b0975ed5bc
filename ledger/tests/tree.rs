//! The authenticated account tree (`ledger::tree`): roots depend only on the accounts, not on
//! how they were written; every account and every absence at every version is provable; and
//! a proof that was altered in any way, checked against another root, or for another address
//! proves nothing.

use ledger::tree::{self, AccountProof, EMPTY_ROOT, MemTreeStore, ProofError};
use ledger::{Account, Address};

fn addr(i: u32) -> Address {
    let mut a = [0x5a; 20];
    a[..4].copy_from_slice(&i.to_le_bytes());
    Address(a)
}

fn acct(balance: u64, nonce: u64) -> Account {
    Account { balance, nonce }
}

/// Writes `blocks` as versions 0, 1, … and returns the roots.
fn build(store: &MemTreeStore, blocks: &[Vec<(Address, Account)>]) -> Vec<crypto::Digest> {
    blocks
        .iter()
        .enumerate()
        .map(|(v, changed)| {
            let (root, batch) = tree::update(store, v as u64, changed).unwrap();
            store.write(&batch);
            assert_eq!(tree::root(store, v as u64).unwrap(), root);
            root
        })
        .collect()
}

#[test]
fn an_empty_tree_has_the_placeholder_root() {
    let store = MemTreeStore::default();
    assert_eq!(build(&store, &[vec![]]), vec![EMPTY_ROOT]);
}

#[test]
fn the_root_depends_on_the_accounts_only() {
    let all: Vec<_> = (0..200)
        .map(|i| (addr(i), acct(1000 + u64::from(i), 0)))
        .collect();
    // One block with everything...
    let a = MemTreeStore::default();
    let one = *build(&a, std::slice::from_ref(&all)).last().unwrap();
    // ... equals three blocks in another order, with an empty block and an overwrite.
    let b = MemTreeStore::default();
    let mut rev = all.clone();
    rev.reverse();
    let mut first: Vec<_> = rev[..120].to_vec();
    first[0].1 = acct(1, 1); // overwritten below
    let mut third = rev[119..].to_vec();
    third.push(rev[0]); // the overwrite
    let three = build(&b, &[first, vec![], third]);
    assert_eq!(*three.last().unwrap(), one);
    // Empty blocks keep the root.
    assert_eq!(three[0], three[1]);
    // Any change of any field moves it.
    let c = MemTreeStore::default();
    let roots = build(
        &c,
        &[
            all.clone(),
            vec![(addr(7), acct(1007, 1))],
            vec![(addr(7), acct(1008, 1))],
        ],
    );
    assert_eq!(roots[0], one);
    assert_ne!(roots[1], roots[0]);
    assert_ne!(roots[2], roots[1]);
    assert_ne!(one, EMPTY_ROOT);
}

#[test]
fn the_same_writes_give_the_same_nodes() {
    // The tree's own hash maps are randomly seeded: nothing it writes may depend on them.
    let blocks: Vec<Vec<_>> = (0..5)
        .map(|b| {
            (0..50)
                .map(|i| (addr(i * 7 + b), acct(u64::from(i) + 1, u64::from(b))))
                .collect()
        })
        .collect();
    let runs: Vec<Vec<String>> = (0..2)
        .map(|_| {
            let s = MemTreeStore::default();
            let mut out = Vec::new();
            for (v, changed) in blocks.iter().enumerate() {
                let (root, batch) = tree::update(&s, v as u64, changed).unwrap();
                s.write(&batch);
                out.push(format!(
                    "{root} {:?}",
                    batch.node_batch.nodes().keys().collect::<Vec<_>>()
                ));
            }
            out
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn every_account_and_absence_is_provable_at_every_version() {
    let store = MemTreeStore::default();
    let blocks = vec![
        (0..64).map(|i| (addr(i), acct(100, 0))).collect::<Vec<_>>(),
        vec![(addr(3), acct(90, 1)), (addr(64), acct(10, 0))],
        vec![],
        vec![(addr(3), acct(80, 2))],
    ];
    let roots = build(&store, &blocks);
    let mut expected = std::collections::BTreeMap::new();
    for (v, changed) in blocks.iter().enumerate() {
        expected.extend(changed.iter().copied());
        for i in 0..70 {
            let a = addr(i);
            let p = tree::prove(&store, &a, v as u64).unwrap();
            assert_eq!(
                p.verify(roots[v], &a).unwrap(),
                expected.get(&a).copied(),
                "address {i} at version {v}"
            );
        }
    }
}

/// The proof for `addr(3)` at the last version of a small tree, and that root.
fn sample() -> (AccountProof, crypto::Digest, MemTreeStore) {
    let store = MemTreeStore::default();
    let blocks = vec![
        (0..32).map(|i| (addr(i), acct(100, 0))).collect::<Vec<_>>(),
        vec![(addr(3), acct(90, 1))],
    ];
    let roots = build(&store, &blocks);
    let p = tree::prove(&store, &addr(3), 1).unwrap();
    (p, roots[1], store)
}

#[test]
fn a_proof_checked_against_another_root_or_address_proves_nothing() {
    let (p, root, store) = sample();
    assert_eq!(p.verify(root, &addr(3)).unwrap(), Some(acct(90, 1)));
    let old_root = tree::root(&store, 0).unwrap();
    assert!(matches!(
        p.verify(old_root, &addr(3)),
        Err(ProofError::Mismatch(_))
    ));
    assert!(matches!(
        p.verify(root, &addr(4)),
        Err(ProofError::OtherAddress { .. })
    ));
    // Claiming the account is absent, with the inclusion proof, fails.
    let absent = AccountProof {
        value: None,
        proof: p.proof.clone(),
    };
    assert!(absent.verify(root, &addr(3)).is_err());
    // An absence proof for an unknown address cannot be turned into a balance.
    let none = tree::prove(&store, &addr(999), 1).unwrap();
    assert_eq!(none.verify(root, &addr(999)).unwrap(), None);
    let forged = AccountProof {
        value: Some(tree::encode_value(&addr(999), &acct(5, 0)).to_vec()),
        proof: none.proof.clone(),
    };
    assert!(forged.verify(root, &addr(999)).is_err());
}

#[test]
fn any_altered_byte_of_value_or_proof_proves_nothing() {
    let (p, root, _) = sample();
    let value = p.value.clone().unwrap();
    for i in 0..value.len() {
        let mut v = value.clone();
        v[i] ^= 0x01;
        let altered = AccountProof {
            value: Some(v),
            proof: p.proof.clone(),
        };
        assert!(altered.verify(root, &addr(3)).is_err(), "value byte {i}");
    }
    for i in 0..p.proof.len() {
        let mut bytes = p.proof.clone();
        bytes[i] ^= 0x01;
        let altered = AccountProof {
            value: p.value.clone(),
            proof: bytes,
        };
        // Either it no longer decodes, or it no longer leads to the root; never the account.
        assert!(altered.verify(root, &addr(3)).is_err(), "proof byte {i}");
    }
    let mut long = p.proof.clone();
    long.resize(tree::MAX_PROOF_BYTES + 1, 0);
    let too_large = AccountProof {
        value: p.value.clone(),
        proof: long,
    };
    assert!(matches!(
        too_large.verify(root, &addr(3)),
        Err(ProofError::TooLarge(_))
    ));
    let truncated = AccountProof {
        value: p.value.clone(),
        proof: p.proof[..p.proof.len() - 1].to_vec(),
    };
    assert!(matches!(
        truncated.verify(root, &addr(3)),
        Err(ProofError::Malformed(_))
    ));
}

#[test]
fn values_round_trip_and_wrong_lengths_are_named() {
    let v = tree::encode_value(&addr(1), &acct(u64::MAX, 3));
    assert_eq!(
        tree::decode_value(&v).unwrap(),
        (addr(1), acct(u64::MAX, 3))
    );
    assert_eq!(tree::decode_value(&v[..35]), Err(ProofError::BadValue(35)));
}

/// `root_key(v)` names the root node every update writes at version v (the ledger checks that
/// node to tell a store without a tree from one with a damaged tree).
#[test]
fn root_key_names_the_root_each_version_writes() {
    let store = MemTreeStore::default();
    for (v, changed) in [
        vec![(addr(1), acct(5, 0))],
        vec![],
        vec![(addr(2), acct(7, 1))],
    ]
    .iter()
    .enumerate()
    {
        let (_, batch) = tree::update(&store, v as u64, changed).unwrap();
        assert!(
            batch
                .node_batch
                .nodes()
                .contains_key(&tree::root_key(v as u64)),
            "version {v}"
        );
        assert!(
            !batch
                .node_batch
                .nodes()
                .contains_key(&tree::root_key(v as u64 + 1))
        );
        store.write(&batch);
    }
}
