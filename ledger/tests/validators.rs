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

/// An epoch link follows the set before it only as the boundary it claims: the next epoch,
/// starting right after its header, which lies in the previous epoch and names the set.
#[test]
fn an_epoch_link_follows_only_the_set_before_it() {
    use ledger::BlockHeader;
    use ledger::validators::{EpochLink, LinkError};
    let prev = set(4);
    let mut next = set(4);
    let add = approved(0, SetChange::Add(member(4)), &[(0, 0), (1, 1), (3, 3)]);
    next.accept(&chain(), &add, Rule::Bft, 50, 10).unwrap();
    assert!(next.after_block(60));
    let link = |next: &ValidatorState, height: u64| EpochLink {
        header: BlockHeader {
            height,
            parent: Digest([1; 32]),
            tx_root: Digest([2; 32]),
            state_root: Digest([3; 32]),
            validators: next.hash(),
            proposer: consensus_key(0).public(),
            view: 7,
            timestamp_ms: 0,
        },
        certificate: Vec::new(),
        next: next.clone(),
    };
    link(&next, 60)
        .follows(&prev)
        .expect("the real boundary follows");
    // Epoch 1 does not follow epoch 1.
    assert_eq!(
        link(&next, 60).follows(&next),
        Err(LinkError::WrongEpoch { trusted: 1, got: 1 })
    );
    // The header is not the block before the set's start.
    assert_eq!(
        link(&next, 59).follows(&prev),
        Err(LinkError::WrongStart {
            height: 59,
            start: 61
        })
    );
    // A set whose hash the header does not carry.
    let mut l = link(&next, 60);
    l.next.members.pop();
    assert_eq!(l.follows(&prev), Err(LinkError::SetMismatch { height: 60 }));
    // A boundary before the previous epoch began.
    let mut later = prev.clone();
    later.start_height = 100;
    assert_eq!(
        link(&next, 60).follows(&later),
        Err(LinkError::BeforeStart {
            height: 60,
            start: 100
        })
    );
    // A set that is still waiting for a change is no epoch's start.
    let mut pending = next.clone();
    pending.pending = prev.pending.clone().or(Some(ledger::validators::Pending {
        op: SetChange::Add(member(5)),
        accepted_at: 60,
        effective_after: 70,
    }));
    assert_eq!(
        link(&pending, 60).follows(&prev),
        Err(LinkError::StillPending)
    );
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

#[test]
fn stable_ids_survive_removals_are_never_reused_and_rotations_keep_them() {
    let mut s = set(5);
    assert_eq!((s.ids.clone(), s.next_id), (vec![0, 1, 2, 3, 4], 5));
    let all = [(0u16, 0u8), (1, 1), (2, 2), (3, 3)];
    // Remove the second member: the others keep their ids although their indices move.
    let c = approved(
        0,
        SetChange::Remove {
            consensus_key: member(1).consensus_key,
        },
        &all,
    );
    s.accept(&chain(), &c, Rule::Bft, 5, 1).unwrap();
    assert!(s.after_block(6));
    assert_eq!(s.ids, vec![0, 2, 3, 4]);
    // Add two, one epoch each.
    for (epoch, new, height) in [(1u64, 7u8, 10u64), (2, 8, 20)] {
        let signers: Vec<(u16, u8)> = s
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let seed = (0..10).find(|k| member(*k).consensus_key == m.consensus_key);
                (i as u16, seed.unwrap())
            })
            .collect();
        let c = approved(epoch, SetChange::Add(member(new)), &signers);
        s.accept(&chain(), &c, Rule::Bft, height, 1).unwrap();
        assert!(s.after_block(height + 1));
    }
    assert_eq!(
        s.ids,
        vec![0, 2, 3, 4, 5, 6],
        "removed id 1 is never given out again"
    );
    assert_eq!(s.next_id, 7);
    assert_eq!(s.id_of(&member(8).consensus_key), Some(6));
    assert_eq!(s.id_of(&member(1).consensus_key), None);
    // A rotation keeps the rotated member's id.
    let signers: Vec<(u16, u8)> = [0u8, 2, 3, 4]
        .iter()
        .enumerate()
        .map(|(i, k)| (i as u16, *k))
        .collect();
    let c = approved(
        3,
        SetChange::Rotate {
            old_consensus_key: member(2).consensus_key,
            new: member(9),
        },
        &signers,
    );
    s.accept(&chain(), &c, Rule::Bft, 30, 1).unwrap();
    assert!(s.after_block(31));
    assert_eq!(s.id_of(&member(9).consensus_key), Some(2));
    assert_eq!(s.ids, vec![0, 2, 3, 4, 5, 6]);
    // The ids are part of what headers name: the same members with other ids hash apart.
    let mut renumbered = s.clone();
    renumbered.ids = vec![0, 1, 2, 3, 4, 5];
    assert_ne!(renumbered.hash(), s.hash());
}

#[test]
fn raft_refuses_rotations_in_place_and_bft_accepts_them() {
    let rotate = SetChange::Rotate {
        old_consensus_key: member(2).consensus_key,
        new: member(9),
    };
    let raft = ValidatorState::genesis((0..3).map(member).collect(), Rule::Majority).unwrap();
    let c = approved(0, rotate.clone(), &[(0, 0), (1, 1)]);
    assert_eq!(
        raft.check(&chain(), &c, Rule::Majority),
        Err(GovernanceError::RotateUnsupported)
    );
    let bft = set(4);
    let c = approved(0, rotate, &[(0, 0), (1, 1), (2, 2)]);
    assert!(bft.check(&chain(), &c, Rule::Bft).is_ok());
}

// ---- Execution: a change as a transaction, through the ledger (issue 21, step 1) ----

use ledger::validators::Governance;
use ledger::{
    Address, BlockInput, GOVERNANCE_DISABLED, Ledger, LedgerGenesis, MemStore, Payload,
    RejectReason, Store, Transaction,
};

/// A funded account that carries changes (any account may: the approvals authorise them).
fn carrier() -> SecretKey {
    SecretKey::from_seed([200; 32])
}

fn ledger(governance: Option<Governance>) -> Ledger<MemStore> {
    let genesis = LedgerGenesis {
        accounts: vec![(Address::of(&carrier().public()), 1_000)],
        validators: set(4),
        governance,
    };
    Ledger::open_genesis(MemStore::new(), chain(), &genesis, 1 << 20).expect("genesis")
}

fn block(txs: Vec<Transaction>) -> BlockInput {
    BlockInput {
        proposer: consensus_key(0).public(),
        view: 1,
        timestamp_ms: 0,
        txs,
        certificate: Vec::new(),
        batch_sizes: Vec::new(),
    }
}

fn carried(nonce: u64, change: Change) -> Transaction {
    Transaction::sign(&carrier(), &chain(), nonce, Payload::Governance(change))
}

const BFT_DELAY_3: Governance = Governance {
    rule: Rule::Bft,
    epoch_delay: 3,
};

/// A fifth validator approved by validators 0, 1 and 2 in epoch 0.
fn add_fifth() -> Change {
    approved(0, SetChange::Add(member(4)), &[(0, 0), (1, 1), (2, 2)])
}

#[test]
fn a_chain_without_governance_refuses_every_change_and_changes_nothing() {
    let mut l = ledger(None);
    let before = l.validators().clone();
    let (b, receipts) = l.commit(block(vec![carried(0, add_fifth())])).unwrap();
    assert_eq!(
        receipts[0].outcome,
        Err(RejectReason::Governance(GOVERNANCE_DISABLED.into()))
    );
    assert_eq!(
        receipts[0].outcome.as_ref().unwrap_err().code(),
        "governance_refused"
    );
    assert_eq!(l.validators(), &before);
    assert_eq!(b.header.validators, before.hash());
    let sender = Address::of(&carrier().public());
    assert_eq!(
        l.account(&sender).unwrap().nonce,
        0,
        "a refusal changes nothing"
    );
}

/// The whole path: accepted at height 1 (the header names the pending change), blocks 2 and
/// 3 keep it, block 4 = 1 + 3 ends epoch 0 (its header names the five), and every version is
/// in the store at the height that produced it, and read back on reopening.
#[test]
fn an_accepted_change_is_in_the_headers_the_store_and_a_reopened_ledger() {
    let mut l = ledger(Some(BFT_DELAY_3));
    let genesis = l.validators().clone();
    let (b1, r1) = l.commit(block(vec![carried(0, add_fifth())])).unwrap();
    assert_eq!(r1[0].outcome, Ok(()));
    let pending = l.validators().clone();
    assert_eq!(pending.epoch, 0);
    assert_eq!(pending.pending.as_ref().unwrap().effective_after, 4);
    assert_eq!(b1.header.validators, pending.hash());
    assert_ne!(pending.hash(), genesis.hash());
    let sender = Address::of(&carrier().public());
    assert_eq!(
        l.account(&sender).unwrap().nonce,
        1,
        "the carrier's nonce moves"
    );
    let mut headers = vec![b1.header];
    for _ in 2..=5 {
        headers.push(l.commit(block(Vec::new())).unwrap().0.header);
    }
    let next = l.validators().clone();
    assert_eq!((next.epoch, next.start_height), (1, 5));
    assert_eq!(next.members.len(), 5);
    assert_eq!(next.pending, None);
    let names: Vec<_> = headers.iter().map(|h| h.validators).collect();
    assert_eq!(
        names,
        [
            pending.hash(),
            pending.hash(),
            pending.hash(),
            next.hash(),
            next.hash()
        ]
    );
    let store = l.store();
    assert_eq!(store.validators_at(0).unwrap(), Some(genesis.clone()));
    for h in 1..=3 {
        assert_eq!(
            store.validators_at(h).unwrap(),
            Some(pending.clone()),
            "{h}"
        );
    }
    for h in 4..=9 {
        assert_eq!(store.validators_at(h).unwrap(), Some(next.clone()), "{h}");
    }
    let reopened = Ledger::open(l.into_store(), chain(), &[]).unwrap();
    assert_eq!(reopened.validators(), &next);
}

#[test]
fn execution_refuses_bad_changes_with_the_rule_they_break() {
    let mut l = ledger(Some(BFT_DELAY_3));
    let too_few = approved(0, SetChange::Add(member(5)), &[(0, 0), (1, 1)]);
    let second = approved(0, SetChange::Add(member(6)), &[(0, 0), (1, 1), (3, 3)]);
    let (_, r) = l
        .commit(block(vec![
            carried(0, too_few),
            carried(0, add_fifth()),
            carried(1, second),
            carried(0, add_fifth()),
        ]))
        .unwrap();
    let refused = |i: usize| match &r[i].outcome {
        Err(RejectReason::Governance(why)) => why.clone(),
        other => panic!("receipt {i}: {other:?}"),
    };
    assert_eq!(
        refused(0),
        GovernanceError::NotEnoughApprovals {
            got: 2,
            need: 3,
            n: 4
        }
        .to_string()
    );
    assert_eq!(r[1].outcome, Ok(()), "the carrier's nonce 0 is still free");
    assert_eq!(
        refused(2),
        GovernanceError::ChangePending { effective_after: 4 }.to_string(),
        "one change per epoch, even within one block"
    );
    // The accepted transaction again: its nonce is spent, checked before any governance
    // rule is read.
    assert!(matches!(
        r[3].outcome,
        Err(RejectReason::NonceTooLow { .. })
    ));
}

#[test]
fn a_snapshot_must_carry_the_validator_set_its_block_names() {
    let mut source = ledger(Some(BFT_DELAY_3));
    source.commit(block(vec![carried(0, add_fifth())])).unwrap();
    let (b2, _) = source.commit(block(Vec::new())).unwrap();
    let (block2, accounts) = source.snapshot().unwrap().unwrap();
    assert_eq!(block2, b2);
    let mut fresh = ledger(Some(BFT_DELAY_3));
    let wrong = fresh.validators().clone();
    let err = fresh
        .install_snapshot(block2.clone(), accounts.clone(), wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not block 2's validators"), "{err}");
    let right = source.validators().clone();
    fresh
        .install_snapshot(block2, accounts, right.clone())
        .unwrap();
    assert_eq!(fresh.validators(), &right);
    assert_eq!(fresh.store().validators_at(2).unwrap(), Some(right));
    assert_eq!(
        fresh.store().validators_at(1).unwrap(),
        None,
        "history below is unknown"
    );
}

/// Every replica that executes the same blocks computes the same boundary and set: two
/// ledgers fed the same blocks agree on every header (so a replica that switched at another
/// height would produce a different block hash at once).
#[test]
fn two_ledgers_fed_the_same_blocks_agree_on_every_header() {
    let mut a = ledger(Some(BFT_DELAY_3));
    let mut b = ledger(Some(BFT_DELAY_3));
    let inputs = [
        vec![],
        vec![carried(0, add_fifth())],
        vec![],
        vec![],
        vec![],
        vec![],
    ];
    for txs in inputs {
        let (ba, _) = a.commit(block(txs.clone())).unwrap();
        let (bb, _) = b.commit(block(txs)).unwrap();
        assert_eq!(ba.hash(), bb.hash(), "height {}", ba.header.height);
    }
    assert_eq!(a.validators().epoch, 1);
}
