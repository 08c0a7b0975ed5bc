//! Validator-set epochs in the driver (issue 21, step 4), on the in-process cluster: four
//! validators rotate validator 2's consensus key by a governance transaction approved by a
//! quorum of the set. Every validator switches cores after the same block (the one the
//! change names), blocks of the new epoch are certified by the new set under the new anchor
//! (and fail under the old), the rotated validator proposes with its new key, transfers
//! submitted before and across the boundary all commit, a validator restarted after the
//! boundary comes back in the new epoch, and one that was down across the boundary catches
//! up through it by block sync. HotStuff and PBFT.

mod cluster;

use cluster::*;
use crypto::SecretKey;
use ledger::validators::{Change, SetChange, ValidatorState, approve};
use ledger::{Address, Payload, Store, Transaction};
use node::mempool::{Admitted, Rejected};
use node::validator::{EpochSet, HotStuffProtocol, PbftProtocol, Protocol};

/// Blocks between the one that accepts the change and the epoch's last.
const DELAY: u64 = 8;
/// The validator whose key is rotated.
const ROTATED: usize = 2;
/// Transfers per wallet in each of the two rounds.
const ROUND: u64 = 10;

fn new_key() -> SecretKey {
    SecretKey::from_seed([77; 32])
}

fn cluster<P: Protocol>() -> Cluster<P> {
    let mut next = vec![Vec::new(); N];
    next[ROTATED] = vec![new_key()];
    Cluster::with_sets(DELAY, 0, next)
}

/// The change rotating validator `ROTATED` to [`new_key`] (same network key and address).
fn rotation<P: Protocol>(c: &Cluster<P>) -> SetChange {
    let old = &c.sets.as_ref().unwrap().members[ROTATED];
    let mut new = old.clone();
    new.consensus_key = new_key().public();
    SetChange::Rotate {
        old_consensus_key: old.consensus_key,
        new,
    }
}

/// `op` approved in epoch 0 by the first quorum of the genesis set (3 of 4, 4 of 5), paid by
/// wallet 3.
fn change_tx<P: Protocol>(c: &Cluster<P>, op: SetChange, nonce: u64) -> Transaction {
    let n = c.sets.as_ref().unwrap().members.len();
    let approvals = (0..ledger::validators::Rule::Bft.quorum(n) as u16)
        .map(|i| (i, approve(&c.keys[i as usize], &c.chain, 0, &op)))
        .collect();
    let change = Change {
        epoch: 0,
        op,
        approvals,
    };
    Transaction::sign(&wallet(3), &c.chain, nonce, Payload::Governance(change))
}

/// Transfers from wallets 0..4, wallet `w`'s nonces from `first[w]`, each submitted to
/// validator `w`; their hashes.
fn submit_round<P: Protocol>(c: &mut Cluster<P>, first: [u64; 4]) -> Vec<crypto::Digest> {
    submit_round_via(c, first, |w| w)
}

/// As [`submit_round`], wallet `w`'s transfers submitted to validator `via(w)`.
fn submit_round_via<P: Protocol>(
    c: &mut Cluster<P>,
    first: [u64; 4],
    via: impl Fn(usize) -> usize,
) -> Vec<crypto::Digest> {
    let mut hashes = Vec::new();
    for (w, start) in first.iter().enumerate() {
        for n in *start..start + ROUND {
            let to = Address::of(&wallet((w as u8 + 1) % 4).public());
            let tx = Transaction::sign(
                &wallet(w as u8),
                &c.chain,
                n,
                Payload::Transfer { to, amount: 1 },
            );
            hashes.push(tx.hash());
            if let Some(d) = c.nodes[via(w)].as_mut() {
                assert!(matches!(d.submit(tx), Ok(Admitted::Added(_))));
            }
        }
    }
    hashes
}

/// Transfers from wallets 0..4, one per wallet every 20 ms of simulated time, wallet `w`'s
/// nonces from `first[w]`, each submitted to validator `via(w)`, until validator 0 is past
/// `height`: many small batches per sender, on both sides of a boundary. Their hashes.
fn trickle<P: Protocol>(
    c: &mut Cluster<P>,
    first: [u64; 4],
    height: u64,
    via: impl Fn(usize) -> usize,
) -> Vec<crypto::Digest> {
    let mut hashes = Vec::new();
    let mut next = first;
    while c.node(0).ledger().height() <= height {
        for (w, nonce) in next.iter_mut().enumerate() {
            let to = Address::of(&wallet((w as u8 + 1) % 4).public());
            let tx = Transaction::sign(
                &wallet(w as u8),
                &c.chain,
                *nonce,
                Payload::Transfer { to, amount: 1 },
            );
            if let Some(d) = c.nodes[via(w)].as_mut()
                && matches!(d.submit(tx.clone()), Ok(Admitted::Added(_)))
            {
                hashes.push(tx.hash());
                *nonce += 1;
            }
        }
        c.run_until(20, |_| false);
        assert!(c.now < 600_000, "the chain did not pass {height}");
    }
    hashes
}

/// Every one of `hashes` committed on validator `i` with a successful receipt: no sender's
/// later transfer was ordered before an earlier one.
fn assert_all_ok<P: Protocol>(c: &Cluster<P>, i: usize, hashes: &[crypto::Digest]) {
    for h in hashes {
        let rec = c.node(i).ledger().store().tx(h).unwrap().unwrap();
        assert_eq!(
            rec.receipt.outcome,
            Ok(()),
            "transfer {h} at {}",
            rec.height
        );
    }
}

/// Runs until `op` is accepted everywhere; returns the epoch's last block.
fn accept_change<P: Protocol>(c: &mut Cluster<P>, op: SetChange) -> u64 {
    let first = submit_round(c, [0; 4]);
    let tx = change_tx(c, op, ROUND);
    let gov = tx.hash();
    assert!(matches!(
        c.nodes[3].as_mut().unwrap().submit(tx),
        Ok(Admitted::Added(_))
    ));
    let mut all = first;
    all.push(gov);
    assert!(
        c.run_until(30_000, |c| c.all_committed(&all)),
        "the first round and the change did not commit"
    );
    let rec = c.node(0).ledger().store().tx(&gov).unwrap().unwrap();
    assert_eq!(rec.receipt.outcome, Ok(()), "the change was refused");
    // The set stored with the accepting block holds the change as pending (the chain may
    // be past the boundary already: a joiner syncing slowly delays `all_committed`).
    let after = c
        .node(0)
        .ledger()
        .validators_at(rec.height)
        .unwrap()
        .unwrap();
    let last = after
        .pending
        .expect("the change is pending")
        .effective_after;
    assert_eq!(last, rec.height + DELAY);
    last
}

/// Every running validator is in epoch 1 and at least at `height`.
fn all_in_epoch_1_at<P: Protocol>(c: &Cluster<P>, height: u64) -> bool {
    c.nodes
        .iter()
        .flatten()
        .all(|d| d.epoch() == 1 && d.ledger().height() >= height)
}

/// What every validator must agree on after the switch: the same blocks, the boundary
/// after `last`, epoch 0's certificates under the genesis set, epoch 1's under the new set
/// only (whose member `index` has consensus key `key`), that key signing certificates of
/// epoch 1 and, in HotStuff, proposing.
fn check_chain<P: Protocol>(c: &Cluster<P>, last: u64, index: usize, key: crypto::PublicKey) {
    let top = (0..c.n).map(|i| c.node(i).ledger().height()).min().unwrap();
    assert!(top > last + 2);
    let genesis = c.chain.genesis_hash;
    let store0 = c.node(0).ledger().store();
    let next: ValidatorState = store0.validators_at(last).unwrap().unwrap();
    assert_eq!((next.epoch, next.start_height), (1, last + 1));
    assert_eq!(
        next.members[index].consensus_key, key,
        "the new set names the key"
    );
    let before: ValidatorState = store0.validators_at(last - 1).unwrap().unwrap();
    assert_eq!(
        before.epoch, 0,
        "the switch is after block {last}, not before"
    );
    let set = EpochSet::of(&next, &genesis, &c.committee).unwrap();
    assert_ne!(set.anchor, genesis);
    let mut proposed_with_new_key = false;
    let mut first_signed = None;
    for h in 1..=top {
        let b = store0.block(h).unwrap().unwrap();
        for i in 1..c.n {
            let other = c.node(i).ledger().store().block(h).unwrap().unwrap();
            assert_eq!(other.hash(), b.hash(), "validator {i} differs at {h}");
        }
        let under_genesis = P::certified(&b.certificate, &c.committee, &genesis).is_some();
        let under_new = P::certified(&b.certificate, &set.committee, &set.anchor).is_some();
        if h <= last {
            assert!(
                under_genesis,
                "block {h} is not certified by the genesis set"
            );
        } else {
            assert!(under_new, "block {h} is not certified by the new set");
            assert!(
                !under_genesis,
                "block {h}'s certificate also passes as epoch 0's"
            );
            // A certificate that verifies under the new set and counts `index` holds its
            // signature by `key`.
            if signers::<P>(&b.certificate).contains(&(index as u16)) {
                first_signed.get_or_insert(h);
            }
            proposed_with_new_key |= b.header.proposer == key;
        }
    }
    let Some(first) = first_signed else {
        panic!(
            "validator {index}'s key signs no certificate in blocks {}..={top}",
            last + 1
        );
    };
    let last_block = store0.block(last).unwrap().unwrap();
    let proves = P::decode_certified(&last_block.certificate, &genesis).map(|c| c.proves_commit);
    eprintln!(
        "{}: switched after block {last} (its certificate proves its commit: {proves:?}); \
         validator {index}'s key first in the certificate of block {first}; proposed with \
         it: {proposed_with_new_key}",
        P::NAME
    );
    if P::NAME == "hotstuff" {
        // Leaders rotate every view: it leads within a few blocks. (A PBFT primary keeps
        // its view until a view change, so the validator need not lead at all.)
        assert!(
            proposed_with_new_key,
            "validator {index} never proposed with its key in blocks {}..={top}",
            last + 1
        );
    }
    for i in 0..c.n {
        assert_eq!(c.node(i).epoch(), 1, "validator {i} did not switch");
        assert!(c.node(i).is_member());
    }
}

/// The replicas whose signatures a committed block's certificate carries (HotStuff: its
/// QC's votes; PBFT: its commits).
fn signers<P: Protocol>(cert: &[u8]) -> Vec<u16> {
    match P::NAME {
        "hotstuff" => consensus::hotstuff::CommitCertificate::decode(cert)
            .map(|c| c.qc.votes.iter().map(|(r, _)| r.0).collect())
            .unwrap_or_default(),
        "pbft" => consensus::pbft::CommitCertificate::decode(cert)
            .map(|c| c.commits.iter().map(|(r, _)| r.0).collect())
            .unwrap_or_default(),
        other => panic!("no certificates to read in {other}"),
    }
}

fn rotate_under_load<P: Protocol>() {
    let mut c = cluster::<P>();
    let op = rotation(&c);
    let last = accept_change(&mut c, op);
    // The second round trickles in across the boundary and commits.
    let second = trickle(&mut c, [ROUND, ROUND, ROUND, ROUND + 1], last + 4, |w| w);
    assert!(
        c.run_until(60_000, |c| all_in_epoch_1_at(c, last + 6)
            && c.all_committed(&second)),
        "the validators did not all reach epoch 1 with the second round committed"
    );
    check_chain(&c, last, ROTATED, new_key().public());
    assert_all_ok(&c, 0, &second);

    // A validator restarted after the boundary comes back in epoch 1 and keeps up.
    c.nodes[1] = None;
    c.open(1);
    assert_eq!(c.node(1).epoch(), 1, "restarted into the wrong epoch");
    let target = c.node(0).ledger().height() + 5;
    assert!(
        c.run_until(30_000, |c| all_in_epoch_1_at(c, target)),
        "commits stopped after validator 1 restarted in epoch 1"
    );
    check_chain(&c, last, ROTATED, new_key().public());
}

fn down_across_the_boundary<P: Protocol>() {
    let mut c = cluster::<P>();
    let op = rotation(&c);
    let last = accept_change(&mut c, op);
    // Validator 3 stops before the boundary and misses it.
    c.nodes[3] = None;
    assert!(
        c.run_until(60_000, |c| all_in_epoch_1_at(c, last + 12)),
        "the other three did not go on into epoch 1 without validator 3"
    );
    let stopped = c.node(0).ledger().height();
    c.open(3);
    assert_eq!(c.node(3).epoch(), 0);
    assert!(
        c.run_until(60_000, |c| all_in_epoch_1_at(c, stopped + 4)),
        "validator 3 did not catch up through the boundary (height {}, epoch {})",
        c.node(3).ledger().height(),
        c.node(3).epoch()
    );
    check_chain(&c, last, ROTATED, new_key().public());
}

/// A fifth node runs from genesis with a key no set names: it follows the chain by block
/// sync without voting; a change adds it; from the new epoch on it is member 4 and signs.
fn add_under_load<P: Protocol>() {
    let mut c = Cluster::<P>::with_sets(DELAY, 1, Vec::new());
    let joiner = c.keys[N].public();
    assert!(!c.node(N).is_member());
    let op = SetChange::Add(members_of(&c.keys)[N].clone());
    let last = accept_change(&mut c, op);
    let j = c.node(N);
    assert!(
        j.epoch() == 1 || !j.is_member(),
        "a member before its epoch"
    );
    let second = trickle(&mut c, [ROUND, ROUND, ROUND, ROUND + 1], last + 4, |w| w);
    assert!(
        c.run_until(60_000, |c| all_in_epoch_1_at(c, last + 8)
            && c.all_committed(&second)
            && c.node(N).is_member()),
        "the five did not all reach epoch 1 with the second round committed (node {N}: \
         height {}, epoch {}; boundary {last}; missing on each node: {:?})",
        c.node(N).ledger().height(),
        c.node(N).epoch(),
        (0..c.n)
            .map(|i| {
                second
                    .iter()
                    .filter(|h| c.node(i).ledger().store().tx(h).unwrap().is_none())
                    .map(|h| {
                        (
                            h.to_string()[..8].to_string(),
                            format!("{:?}", c.node(i).mempool().status(h)),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    );
    check_chain(&c, last, N, joiner);
    assert_all_ok(&c, N, &second);
}

/// Five validators remove validator `removed`: from the new epoch the four certify blocks
/// alone (a certificate of the new set has no place for its signature), and every validator
/// after it in the list takes the index before (the four number each other by the new set:
/// frames are addressed and attributed by it). The removed validator is cut off: the four
/// take its frames no longer, so it stops at or before the boundary and never votes in the
/// new epoch. Transfers commit on both sides of the boundary, those it accepted included.
fn remove_under_load<P: Protocol>(removed: usize) {
    let mut c = Cluster::<P>::with_sets_n(N + 1, DELAY, 0, Vec::new());
    let op = SetChange::Remove {
        consensus_key: c.keys[removed].public(),
    };
    let last = accept_change(&mut c, op);
    let members: Vec<usize> = (0..c.n).filter(|&i| i != removed).collect();
    // Its removal accepted, it takes no more transactions: it would be cut off before
    // ordering them.
    let late = Transaction::sign(
        &wallet(0),
        &c.chain,
        1_000,
        Payload::Transfer {
            to: Address::of(&wallet(1).public()),
            amount: 1,
        },
    );
    match c.nodes[removed].as_mut().unwrap().submit(late) {
        Err(Rejected::Busy(why)) => assert!(why.contains("leaves the validator set"), "{why}"),
        other => panic!("the leaving validator answered {other:?}"),
    }
    // Its wallet's second round goes to the next member (the removed one may be out already
    // and refuse it).
    let second = trickle(&mut c, [ROUND, ROUND, ROUND, ROUND + 1], last + 4, |w| {
        if w == removed { (w + 1) % N } else { w }
    });
    assert!(
        c.run_until(60_000, |c| members.iter().all(|&i| {
            c.node(i).epoch() == 1 && c.node(i).ledger().height() >= last + 8
        }) && c.committed_on(members.clone(), &second)),
        "the four did not all reach epoch 1 with the second round committed"
    );
    let genesis = c.chain.genesis_hash;
    let store0 = c.node(0).ledger().store();
    let next: ValidatorState = store0.validators_at(last).unwrap().unwrap();
    assert_eq!((next.epoch, next.start_height), (1, last + 1));
    assert_eq!(next.members.len(), N);
    assert!(next.member(&c.keys[removed].public()).is_none());
    let set = EpochSet::of(&next, &genesis, &c.committee).unwrap();
    let top = members
        .iter()
        .map(|&i| c.node(i).ledger().height())
        .min()
        .unwrap();
    let mut signers_seen = std::collections::BTreeSet::new();
    for h in last + 1..=top {
        let b = store0.block(h).unwrap().unwrap();
        assert!(P::certified(&b.certificate, &set.committee, &set.anchor).is_some());
        assert!(P::certified(&b.certificate, &c.committee, &genesis).is_none());
        assert_ne!(b.header.proposer, c.keys[removed].public());
        signers_seen.extend(signers::<P>(&b.certificate));
        for &i in &members[1..] {
            let other = c.node(i).ledger().store().block(h).unwrap().unwrap();
            assert_eq!(other.hash(), b.hash(), "validator {i} differs at {h}");
        }
    }
    // The four sign under their new indices (a PBFT certificate holds the first quorum of
    // commits, which may leave the same one out every time).
    assert!(
        signers_seen.iter().all(|&s| (s as usize) < N),
        "{signers_seen:?}"
    );
    assert!(
        signers_seen.len() >= 3,
        "signers of epoch 1: {signers_seen:?}"
    );
    for &i in &members {
        assert_eq!(c.node(i).epoch(), 1, "validator {i} did not switch");
        assert!(c.node(i).is_member(), "validator {i}");
    }
    let cut_off = c.node(removed);
    assert!(
        cut_off.ledger().height() <= last || !cut_off.is_member(),
        "the removed validator went on as a member past the boundary"
    );
    assert!(
        cut_off.ledger().height() <= last + 8,
        "it followed far past the boundary"
    );
    eprintln!(
        "{}: validator {removed} removed after block {last}; the four certified blocks {}..={top}; \
         it stopped at {}",
        P::NAME,
        last + 1,
        cut_off.ledger().height()
    );
}

#[test]
fn hotstuff_removes_the_last_validator_under_load() {
    remove_under_load::<HotStuffProtocol>(N);
}

#[test]
fn pbft_removes_the_last_validator_under_load() {
    remove_under_load::<PbftProtocol>(N);
}

/// Removing validator 1 moves validators 2, 3 and 4 to indices 1, 2 and 3.
#[test]
fn hotstuff_removes_a_middle_validator_and_renumbers_under_load() {
    remove_under_load::<HotStuffProtocol>(1);
}

#[test]
fn pbft_removes_a_middle_validator_and_renumbers_under_load() {
    remove_under_load::<PbftProtocol>(1);
}

#[test]
fn hotstuff_adds_a_fifth_validator_under_load() {
    add_under_load::<HotStuffProtocol>();
}

#[test]
fn pbft_adds_a_fifth_validator_under_load() {
    add_under_load::<PbftProtocol>();
}

#[test]
fn hotstuff_rotates_a_key_at_an_epoch_boundary_under_load() {
    rotate_under_load::<HotStuffProtocol>();
}

#[test]
fn pbft_rotates_a_key_at_an_epoch_boundary_under_load() {
    rotate_under_load::<PbftProtocol>();
}

#[test]
fn hotstuff_validator_down_across_the_boundary_catches_up() {
    down_across_the_boundary::<HotStuffProtocol>();
}

#[test]
fn pbft_validator_down_across_the_boundary_catches_up() {
    down_across_the_boundary::<PbftProtocol>();
}

/// Block sync across an epoch boundary relies on header certificates: a HotStuff epoch's
/// last block may carry no commit proof of its own (the blocks that would prove it belong
/// to the retired instance). Here every synced block's proof is stripped (the header, and
/// so its hash, stays): without a header certificate nothing applies, a forged one does not
/// help, and a genuine one for the last block applies them all.
#[test]
fn synced_blocks_without_commit_proofs_apply_on_a_header_certificate() {
    use node::validator::Wire;
    let mut c = Cluster::<HotStuffProtocol>::with_protocol();
    c.nodes[3] = None;
    assert!(
        c.run_until(30_000, |c| (0..3)
            .all(|i| c.node(i).ledger().height() >= 14)),
        "three validators did not commit 14 blocks"
    );
    let top = 10;
    let store = c.node(0).ledger().store();
    let cert = store
        .header_cert(top)
        .unwrap()
        .expect("validator 0 holds a header certificate for block 10");
    let blocks: Vec<ledger::Block> = (1..=top)
        .map(|h| {
            let mut b = store.block(h).unwrap().unwrap();
            let mut cc = consensus::hotstuff::CommitCertificate::decode(&b.certificate).unwrap();
            cc.proof = None;
            b.certificate = crypto::codec::encode(&cc);
            b
        })
        .collect();
    let frame = |certs: Vec<(u64, Vec<u8>)>| {
        Wire::<consensus::hotstuff::Message>::Blocks {
            blocks: blocks.clone(),
            tip: top,
            certs,
        }
        .encode()
    };
    c.open(3);
    let now = c.now;
    let d = c.nodes[3].as_mut().unwrap();
    d.on_frame(now, consensus::ReplicaId(0), &frame(Vec::new()))
        .unwrap();
    assert_eq!(
        d.ledger().height(),
        0,
        "applied blocks nothing proves committed"
    );
    let mut forged = cert.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    d.on_frame(
        now + 200,
        consensus::ReplicaId(0),
        &frame(vec![(top, forged)]),
    )
    .unwrap();
    assert_eq!(
        d.ledger().height(),
        0,
        "applied blocks on a forged header certificate"
    );
    d.on_frame(
        now + 400,
        consensus::ReplicaId(0),
        &frame(vec![(top, cert)]),
    )
    .unwrap();
    assert_eq!(d.ledger().height(), top);
    assert_eq!(
        d.ledger().tip(),
        c.node(0)
            .ledger()
            .store()
            .block(top)
            .unwrap()
            .unwrap()
            .hash()
    );
}
