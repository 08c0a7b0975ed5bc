//! The validator set as ledger state (issue 21, step 1): quorums, every refusal of a change
//! with its own reason, the epoch boundary's arithmetic, and replay across epochs.

use crypto::{Digest, Domain, KeyError, SecretKey};
use ledger::ChainBinding;
use ledger::validators::{
    Change, GovernanceError, Member, Rule, SetChange, ValidatorState, approve, check_set,
};

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "epochs".into(),
        genesis_hash: crypto::hash(b"epochs genesis"),
    }
}

fn consensus_key(i: u8) -> SecretKey {
    SecretKey::from_seed([i; 32])
}

fn member(i: u8) -> Member {
    Member {
        name: format!("validator-{i}"),
        consensus_key: consensus_key(i).public(),
        network_key: SecretKey::from_seed([100 + i; 32]).public(),
        p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26600 + u16::from(i)),
    }
}

fn set(n: u8) -> ValidatorState {
    ValidatorState::genesis((0..n).map(member).collect(), Rule::Bft).expect("valid set")
}

/// `op` approved in `epoch` by the members at `signers` (indices into `state`), whose keys
/// are `consensus_key(seed)` for the seeds listed.
fn approved(epoch: u64, op: SetChange, signers: &[(u16, u8)]) -> Change {
    Change {
        epoch,
        approvals: signers
            .iter()
            .map(|(i, seed)| (*i, approve(&consensus_key(*seed), &chain(), epoch, &op)))
            .collect(),
        op,
    }
}

#[test]
fn quorums_and_faults() {
    // The table consensus/src/types.rs checks for Committee::bft, which calls this rule.
    for (n, q) in [(4, 3), (5, 4), (7, 5), (10, 7), (100, 67)] {
        assert_eq!(Rule::Bft.quorum(n), q, "bft n={n}");
    }
    for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)] {
        assert_eq!(Rule::Majority.quorum(n), q, "majority n={n}");
    }
    for (n, f) in [(1, 0), (3, 0), (4, 1), (6, 1), (7, 2), (10, 3)] {
        assert_eq!(Rule::Bft.faults(n), f, "bft n={n}");
    }
    for (n, f) in [(1, 0), (2, 0), (3, 1), (5, 2)] {
        assert_eq!(Rule::Majority.faults(n), f, "majority n={n}");
    }
    // Safe and live for every size: two quorums share f+1 (BFT) or 1 (majority) members, and
    // the members that do not fail are a quorum.
    for n in 1..=200 {
        let (fb, qb) = (Rule::Bft.faults(n), Rule::Bft.quorum(n));
        assert!(2 * qb > n + fb && qb + fb <= n, "bft n={n}");
        let (fm, qm) = (Rule::Majority.faults(n), Rule::Majority.quorum(n));
        assert!(2 * qm > n && qm + fm <= n, "majority n={n}");
    }
}

#[test]
fn sets_are_refused_with_the_reason() {
    let four: Vec<Member> = (0..4).map(member).collect();
    assert_eq!(check_set(&four, Rule::Bft), Ok(()));
    assert_eq!(
        check_set(&four[..3], Rule::Bft),
        Err(GovernanceError::TooFew { n: 3, min: 4 })
    );
    assert_eq!(check_set(&four[..1], Rule::Majority), Ok(()));
    assert!(matches!(
        check_set(&[], Rule::Majority),
        Err(GovernanceError::TooFew { n: 0, min: 1 })
    ));

    let mut dup = four.clone();
    dup[3].consensus_key = dup[1].consensus_key;
    assert!(matches!(
        check_set(&dup, Rule::Bft),
        Err(GovernanceError::DuplicateKey {
            what: "consensus key",
            ..
        })
    ));
    let mut dup = four.clone();
    dup[2].network_key = dup[0].network_key;
    assert!(matches!(
        check_set(&dup, Rule::Bft),
        Err(GovernanceError::DuplicateKey {
            what: "network key",
            ..
        })
    ));
    let mut dup = four.clone();
    dup[2].name = dup[0].name.clone();
    assert!(matches!(
        check_set(&dup, Rule::Bft),
        Err(GovernanceError::DuplicateName { .. })
    ));

    let mut small = four.clone();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    small[1].network_key = crypto::PublicKey(identity);
    let e = check_set(&small, Rule::Bft).unwrap_err();
    assert_eq!(
        e,
        GovernanceError::InvalidKey {
            which: "validator \"validator-1\" network_key".into(),
            reason: KeyError::SmallOrder
        }
    );
    assert!(e.to_string().contains("network_key"), "{e}");

    for bad in ["", "/ip4/1.2.3.4/tcp/1\n", &"x".repeat(257), "/ip4/ünïcode"] {
        let mut s = four.clone();
        s[0].p2p_address = bad.to_string();
        assert!(
            matches!(
                check_set(&s, Rule::Bft),
                Err(GovernanceError::BadAddress { .. })
            ),
            "address {bad:?}"
        );
    }
    let mut s = four;
    s[0].name = String::new();
    assert!(matches!(
        check_set(&s, Rule::Bft),
        Err(GovernanceError::BadName { .. })
    ));
}

#[test]
fn an_approved_addition_waits_for_the_end_of_its_epoch_then_rules() {
    let mut s = set(4);
    let genesis_hash = s.hash();
    let add = approved(0, SetChange::Add(member(4)), &[(0, 0), (1, 1), (3, 3)]);
    s.accept(&chain(), &add, Rule::Bft, 50, 10)
        .expect("accepted");
    let pending = s.pending.clone().expect("pending");
    assert_eq!((pending.accepted_at, pending.effective_after), (50, 60));
    assert_ne!(
        s.hash(),
        genesis_hash,
        "a pending change is part of the hash"
    );
    // Not before its height, and only once.
    for h in 51..60 {
        assert!(!s.after_block(h), "epoch ended early at {h}");
    }
    assert_eq!(s.members.len(), 4);
    assert!(s.after_block(60));
    assert_eq!((s.epoch, s.start_height, s.members.len()), (1, 61, 5));
    assert_eq!(s.members[4], member(4));
    assert!(s.pending.is_none());
    assert!(!s.after_block(60), "an epoch ends once");

    // A delay of 0 still leaves the accepting block in the old epoch.
    let mut s = set(4);
    s.accept(&chain(), &add, Rule::Bft, 7, 0).unwrap();
    assert_eq!(s.pending.as_ref().unwrap().effective_after, 8);
}

#[test]
fn every_refusal_names_its_reason() {
    let s = set(4);
    let op = SetChange::Add(member(4));
    let check = |c: &Change| s.check(&chain(), c, Rule::Bft);

    assert_eq!(
        check(&approved(1, op.clone(), &[(0, 0), (1, 1), (2, 2)])),
        Err(GovernanceError::WrongEpoch { current: 0, got: 1 })
    );
    assert_eq!(
        check(&approved(0, op.clone(), &[(0, 0), (1, 1)])),
        Err(GovernanceError::NotEnoughApprovals {
            got: 2,
            need: 3,
            n: 4
        })
    );
    assert_eq!(
        check(&approved(0, op.clone(), &[(0, 0), (1, 1), (7, 2)])),
        Err(GovernanceError::UnknownApprover { index: 7, n: 4 })
    );
    assert_eq!(
        check(&approved(0, op.clone(), &[(0, 0), (1, 1), (1, 1)])),
        Err(GovernanceError::UnsortedApprovals { index: 1 })
    );
    assert_eq!(
        check(&approved(0, op.clone(), &[(2, 2), (0, 0), (1, 1)])),
        Err(GovernanceError::UnsortedApprovals { index: 0 })
    );
    // Index 2 signed with validator 3's key.
    assert_eq!(
        check(&approved(0, op.clone(), &[(0, 0), (1, 1), (2, 3)])),
        Err(GovernanceError::BadApproval { index: 2 })
    );
    // Approvals of another operation, another chain, or under another domain.
    let mut other_op = approved(0, SetChange::Add(member(5)), &[(0, 0), (1, 1), (2, 2)]);
    other_op.op = op.clone();
    assert_eq!(
        check(&other_op),
        Err(GovernanceError::BadApproval { index: 0 })
    );
    let elsewhere = ChainBinding {
        chain_id: "other".into(),
        genesis_hash: Digest([7; 32]),
    };
    let mut other_chain = approved(0, op.clone(), &[(0, 0), (1, 1), (2, 2)]);
    other_chain.approvals[1].1 = approve(&consensus_key(1), &elsewhere, 0, &op);
    assert_eq!(
        check(&other_chain),
        Err(GovernanceError::BadApproval { index: 1 })
    );
    let mut other_domain = approved(0, op.clone(), &[(0, 0), (1, 1), (2, 2)]);
    other_domain.approvals[2].1 = consensus_key(2).sign(
        Domain::Test,
        &ledger::validators::approval_bytes(&chain(), 0, &op),
    );
    assert_eq!(
        check(&other_domain),
        Err(GovernanceError::BadApproval { index: 2 })
    );

    // Operations the set cannot take.
    let stranger = consensus_key(9).public();
    assert_eq!(
        check(&approved(
            0,
            SetChange::Remove {
                consensus_key: stranger
            },
            &[(0, 0), (1, 1), (2, 2)]
        )),
        Err(GovernanceError::NotMember { key: stranger })
    );
    assert_eq!(
        check(&approved(
            0,
            SetChange::Remove {
                consensus_key: member(3).consensus_key
            },
            &[(0, 0), (1, 1), (2, 2)]
        )),
        Err(GovernanceError::TooFew { n: 3, min: 4 })
    );
    let mut twin = member(4);
    twin.consensus_key = member(2).consensus_key;
    assert!(matches!(
        check(&approved(
            0,
            SetChange::Add(twin),
            &[(0, 0), (1, 1), (2, 2)]
        )),
        Err(GovernanceError::DuplicateKey { .. })
    ));

    // One pending change per epoch.
    let mut s = set(4);
    s.accept(
        &chain(),
        &approved(0, op.clone(), &[(0, 0), (1, 1), (2, 2)]),
        Rule::Bft,
        10,
        5,
    )
    .unwrap();
    let again = approved(0, SetChange::Add(member(5)), &[(0, 0), (1, 1), (2, 2)]);
    assert_eq!(
        s.check(&chain(), &again, Rule::Bft),
        Err(GovernanceError::ChangePending {
            effective_after: 15
        })
    );
    // A refused change leaves the state as it was.
    let before = s.clone();
    assert!(s.accept(&chain(), &again, Rule::Bft, 11, 5).is_err());
    assert_eq!(s, before);
}

#[test]
fn approvals_do_not_carry_over_epochs_and_a_rotated_key_stops_counting() {
    let mut s = set(5);
    // Epoch 0: validator 2's consensus key is rotated to a new one (seed 42).
    let mut new = member(2);
    new.consensus_key = consensus_key(42).public();
    let rotate = approved(
        0,
        SetChange::Rotate {
            old_consensus_key: member(2).consensus_key,
            new: new.clone(),
        },
        &[(0, 0), (1, 1), (2, 2), (3, 3)],
    );
    s.accept(&chain(), &rotate, Rule::Bft, 1, 1).unwrap();
    assert!(s.after_block(2));
    assert_eq!((s.epoch, s.members.len()), (1, 5));
    assert_eq!(s.members[2], new, "rotation keeps the index");

    // The same approvals replayed in epoch 1: refused by epoch.
    assert_eq!(
        s.check(&chain(), &rotate, Rule::Bft),
        Err(GovernanceError::WrongEpoch { current: 1, got: 0 })
    );
    // The old key at index 2 no longer approves anything; the new one does.
    let op = SetChange::Remove {
        consensus_key: member(4).consensus_key,
    };
    assert_eq!(
        s.check(
            &chain(),
            &approved(1, op.clone(), &[(0, 0), (1, 1), (2, 2), (3, 3)]),
            Rule::Bft
        ),
        Err(GovernanceError::BadApproval { index: 2 })
    );
    let members = s
        .check(
            &chain(),
            &approved(1, op, &[(0, 0), (1, 1), (2, 42), (3, 3)]),
            Rule::Bft,
        )
        .expect("the rotated key approves");
    assert_eq!(members.len(), 4);
}

#[test]
fn raft_sets_need_a_majority_and_may_shrink_to_one() {
    let mut s = ValidatorState::genesis((0..3).map(member).collect(), Rule::Majority).unwrap();
    for (epoch, remove, signers) in [
        (0, 2u8, vec![(0u16, 0u8), (1, 1)]),
        (1, 1, vec![(0, 0), (1, 1)]),
    ] {
        let c = approved(
            epoch,
            SetChange::Remove {
                consensus_key: member(remove).consensus_key,
            },
            &signers,
        );
        s.accept(&chain(), &c, Rule::Majority, 10 * (epoch + 1), 1)
            .unwrap();
        assert!(s.after_block(10 * (epoch + 1) + 1));
    }
    assert_eq!(s.members, vec![member(0)]);
    assert_eq!(Rule::Majority.quorum(1), 1);
}
