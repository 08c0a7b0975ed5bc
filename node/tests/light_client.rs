//! The light client across epoch changes (issue 21, step 5). Four HotStuff validators on the
//! in-process cluster change their set twice — epoch 1 rotates validator 2's consensus key,
//! epoch 2 (approved by epoch 1's set, with the rotated key) rotates validator 3's — and a
//! transfer commits in epoch 2. Validator 0's store is then served over HTTP by the real API,
//! and a wallet that trusts only the genesis set walks `GET /v1/epochs` and verifies a
//! proven balance and a transaction's inclusion at a height of epoch 2.
//!
//! Negative controls, each with the reason it must name: a certificate signed with a
//! rotated-out (removed) key; the same answer checked by a wallet that was not shown the
//! second epoch change (the answer's own header names epoch 2); an epoch link whose
//! certificate is signed by the old set's removed keys; a link carrying a set its header does
//! not name.

mod cluster;

use cluster::*;
use consensus::attest::{CertError, HeaderCert, HeaderVote};
use crypto::{SecretKey, codec};
use ledger::validators::{Change, LinkError, SetChange, ValidatorState, approve};
use ledger::{Address, Payload, Store, Transaction};
use node::api::epochs::{EpochLinkView, EpochsView, SetChain};
use node::api::proof::{VerifyError, verify_account, verify_tx};
use node::api::{self, ApiState, Metrics, NodeStatus, TxStatus};
use node::cli::client::NodeClient;
use node::mempool::Admitted;
use node::validator::{HotStuffProtocol, PbftProtocol, Protocol};
use std::sync::{Arc, RwLock};

const DELAY: u64 = 6;

fn key2() -> SecretKey {
    SecretKey::from_seed([77; 32])
}
fn key3() -> SecretKey {
    SecretKey::from_seed([78; 32])
}

/// `Rotate` of member `i` of `set` to consensus key `to`.
fn rotate(set: &ValidatorState, i: usize, to: &SecretKey) -> SetChange {
    let old = &set.members[i];
    let mut new = old.clone();
    new.consensus_key = to.public();
    SetChange::Rotate {
        old_consensus_key: old.consensus_key,
        new,
    }
}

/// Submits `op`, approved in `epoch` by `approvers` (index, key), through validator 0 and
/// runs until every running validator is in `epoch + 1`, a few blocks past the boundary. The
/// boundary (the last block of `epoch`).
fn change<P: Protocol>(
    c: &mut Cluster<P>,
    epoch: u64,
    op: SetChange,
    approvers: &[(u16, &SecretKey)],
    nonce: u64,
) -> u64 {
    let approvals = approvers
        .iter()
        .map(|(i, k)| (*i, approve(k, &c.chain, epoch, &op)))
        .collect();
    let change = Change {
        epoch,
        op,
        approvals,
    };
    let tx = Transaction::sign(&wallet(3), &c.chain, nonce, Payload::Governance(change));
    let hash = tx.hash();
    assert!(matches!(
        c.nodes[0].as_mut().unwrap().submit(tx),
        Ok(Admitted::Added(_))
    ));
    assert!(
        c.run_until(30_000, |c| c.committed_on(running(c), &[hash])),
        "the change of epoch {epoch} did not commit"
    );
    let rec = c.node(0).ledger().store().tx(&hash).unwrap().unwrap();
    assert_eq!(rec.receipt.outcome, Ok(()), "the change was refused");
    let set = c
        .node(0)
        .ledger()
        .validators_at(rec.height)
        .unwrap()
        .unwrap();
    let last = set.pending.expect("the change is pending").effective_after;
    assert!(
        c.run_until(60_000, |c| running(c).all(|i| c.node(i).epoch()
            == epoch + 1
            && c.node(i).ledger().height() >= last + 4)),
        "the validators did not all reach epoch {}",
        epoch + 1
    );
    last
}

/// The validators running.
fn running<P: Protocol>(c: &Cluster<P>) -> impl Iterator<Item = usize> + '_ {
    (0..c.n).filter(|i| c.nodes[*i].is_some())
}

/// A certificate on `header` at `height` signed by `keys`, hex.
fn cert_by(
    keys: &[&SecretKey],
    genesis: &crypto::Digest,
    height: u64,
    header: crypto::Digest,
) -> String {
    hex::encode(codec::encode(&HeaderCert::signed_by(
        keys, genesis, height, header,
    )))
}

/// Serves validator 0's store with the real API (the loop is gone: reads need only the
/// store) on a runtime of its own; its base URL.
fn serve(c: &Cluster<HotStuffProtocol>) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let store = c.node(0).ledger().store().clone();
    let height = store.height().unwrap();
    let (commands, _) = tokio::sync::mpsc::channel(1);
    let (events, _) = tokio::sync::broadcast::channel(4);
    let state = ApiState {
        status: Arc::new(RwLock::new(NodeStatus {
            chain_id: c.chain.chain_id.clone(),
            protocol: "hotstuff".into(),
            height,
            latest_hash: store.block(height).unwrap().unwrap().hash(),
            view: 0,
            leader: None,
            peers: Vec::new(),
            catching_up: false,
            mempool_size: 0,
            raft: None,
        })),
        store,
        commands,
        events,
        metrics: Arc::new(Metrics::new()),
        chain: c.chain.clone(),
        commit_wait: std::time::Duration::from_millis(100),
        busy: Default::default(),
        admission: node::validator::admission::Admission::for_clients(1).unwrap(),
    };
    rt.spawn(api::serve(listener, state, std::future::pending()));
    (rt, base)
}

/// The genesis set of a cluster with sets.
fn genesis_set<P: Protocol>(c: &Cluster<P>) -> ValidatorState {
    ValidatorState::genesis(
        c.sets.as_ref().unwrap().members.clone(),
        ledger::validators::Rule::Bft,
    )
    .unwrap()
}

/// Four validators that change their set twice (see the module docs); the two boundaries.
fn two_changes<P: Protocol>() -> (Cluster<P>, u64, u64) {
    let mut next = vec![Vec::new(); N];
    next[2] = vec![key2()];
    next[3] = vec![key3()];
    let mut c = Cluster::<P>::with_sets(DELAY, 0, next);
    let keys = c.keys.clone();
    // Epoch 1: validator 2's key rotated, approved by genesis validators 0, 1, 2.
    let op = rotate(&genesis_set(&c), 2, &key2());
    let approvers = [(0, &keys[0]), (1, &keys[1]), (2, &keys[2])];
    let e1 = change(&mut c, 0, op, &approvers, 0);
    // Epoch 2: validator 3's, approved by epoch 1's 0, 1 and 2 (with its new key).
    let set1 = c.node(0).ledger().validators().clone();
    assert_eq!(set1.epoch, 1);
    let op = rotate(&set1, 3, &key3());
    let k2 = key2();
    let approvers = [(0, &keys[0]), (1, &keys[1]), (2, &k2)];
    let e2 = change(&mut c, 1, op, &approvers, 1);
    assert!(e2 > e1);
    (c, e1, e2)
}

#[test]
fn a_wallet_trusting_only_genesis_verifies_reads_after_two_epoch_changes() {
    let (mut c, e1, e2) = two_changes::<HotStuffProtocol>();
    let genesis_set = genesis_set(&c);
    let keys = c.keys.clone();
    let k2 = key2();

    // A transfer in epoch 2, and header certificates past it.
    let to = Address::of(&wallet(1).public());
    let tx = Transaction::sign(&wallet(0), &c.chain, 0, Payload::Transfer { to, amount: 5 });
    let transfer = tx.hash();
    assert!(matches!(
        c.nodes[0].as_mut().unwrap().submit(tx),
        Ok(Admitted::Added(_))
    ));
    assert!(c.run_until(30_000, |c| c.all_committed(&[transfer])));
    let at = c
        .node(0)
        .ledger()
        .store()
        .tx(&transfer)
        .unwrap()
        .unwrap()
        .height;
    assert!(at > e2, "the transfer committed at {at}, not in epoch 2");
    assert!(
        c.run_until(30_000, |c| c
            .node(0)
            .ledger()
            .store()
            .latest_header_cert(u64::MAX)
            .unwrap()
            .is_some_and(|(h, _)| h > at)),
        "no header certificate above the transfer's height"
    );

    // Validator 0 stored one link per epoch, at the boundaries.
    let stored = c.node(0).ledger().store().epoch_links(0).unwrap();
    let heights: Vec<(u64, u64)> = stored
        .iter()
        .map(|l| (l.next.epoch, l.header.height))
        .collect();
    assert_eq!(heights, [(1, e1), (2, e2)]);

    let (_rt, base) = serve(&c);
    let client = NodeClient::new(base).unwrap();
    let genesis = c.chain.genesis_hash;
    let trust_genesis = || SetChain::new(genesis_set.clone(), c.committee.clone(), genesis);
    let page = client.epochs(0).unwrap();
    assert!(!page.more);
    assert_eq!(page.links.len(), 2);
    assert_eq!(client.epochs(1).unwrap().links.len(), 1);
    assert!(client.epochs(2).unwrap().links.is_empty());
    let mut chain = trust_genesis();
    chain.walk(&page).unwrap();
    assert_eq!(chain.latest().state.epoch, 2);

    // A proven balance at a height of epoch 2 verifies; so does the transfer's inclusion.
    let alice = Address::of(&wallet(0).public());
    let view = client.account_with(&alice, true, Some(at), false).unwrap();
    assert!(view.height > e2);
    assert_eq!(chain.at(view.height).state.epoch, 2);
    let account = verify_account(&view, &chain).unwrap();
    assert_eq!(account.nonce, 1);
    let status = client
        .tx_with(&transfer, std::time::Duration::from_secs(5), true)
        .unwrap();
    assert!(matches!(status, TxStatus::Committed { .. }), "{status:?}");
    verify_tx(&status, &chain).unwrap();

    // The answer's header, re-certified by validators 0 and 1 and the key rotated out in
    // epoch 1: a quorum of the genesis set, not of epoch 2's.
    let header: ledger::BlockHeader = codec::decode(
        &hex::decode(&view.proof.as_ref().unwrap().header).unwrap(),
        1 << 20,
        "header",
    )
    .unwrap();
    let mut forged = view.clone();
    forged.proof.as_mut().unwrap().certificate = cert_by(
        &[&keys[0], &keys[1], &keys[2]],
        &genesis,
        header.height,
        header.hash(),
    );
    let err = verify_account(&forged, &chain).unwrap_err();
    assert!(
        matches!(err, VerifyError::Cert(CertError::UnknownSigner(k)) if k == keys[2].public()),
        "{err}"
    );
    // Control: the same certificate is good under the genesis set.
    let cert: HeaderCert = codec::decode(
        &hex::decode(&forged.proof.as_ref().unwrap().certificate).unwrap(),
        1 << 20,
        "cert",
    )
    .unwrap();
    cert.verify(&c.committee, &genesis, header.height, &header.hash())
        .unwrap();
    // ... so a wallet shown only the genesis set (a validator withholding both links) is
    // refused by the header itself, which names the epoch-2 set.
    let err = verify_account(&forged, &trust_genesis()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::UnwalkedEpoch {
                epoch: 2,
                trusted: 0,
                ..
            }
        ),
        "{err}"
    );
    // A certificate valid under both epochs 1 and 2 (signers 0, 1 and the rotated 2), shown
    // to a wallet that was given only the first link: refused for the epoch, not the keys.
    let mut both = view.clone();
    both.proof.as_mut().unwrap().certificate = cert_by(
        &[&keys[0], &keys[1], &k2],
        &genesis,
        header.height,
        header.hash(),
    );
    verify_account(&both, &chain).unwrap();
    let mut one = trust_genesis();
    one.walk(&EpochsView {
        links: page.links[..1].to_vec(),
        more: false,
    })
    .unwrap();
    let err = verify_account(&both, &one).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::UnwalkedEpoch {
                epoch: 2,
                trusted: 1,
                ..
            }
        ),
        "{err}"
    );

    // Epoch 2's link certified by the genesis set's 0, 1, 2 (2's key is gone in epoch 1).
    let mut bad: Vec<EpochLinkView> = page.links.clone();
    let l2 = bad[1].decode().unwrap();
    bad[1].certificate = cert_by(
        &[&keys[0], &keys[1], &keys[2]],
        &genesis,
        l2.header.height,
        l2.header.hash(),
    );
    let walk = |links: Vec<EpochLinkView>| {
        trust_genesis()
            .walk(&EpochsView { links, more: false })
            .unwrap_err()
    };
    let err = walk(bad);
    assert!(
        matches!(err, VerifyError::LinkCert { epoch: 2, why: CertError::UnknownSigner(k) } if k == keys[2].public()),
        "{err}"
    );
    // Epoch 1's link carrying a set its header does not name (the genesis members again).
    let mut bad: Vec<EpochLinkView> = page.links.clone();
    let mut l1 = bad[0].decode().unwrap();
    l1.next.members = genesis_set.members.clone();
    bad[0] = EpochLinkView::of(&l1);
    let err = walk(bad);
    assert!(
        matches!(
            err,
            VerifyError::Link {
                epoch: 1,
                why: LinkError::SetMismatch { .. }
            }
        ),
        "{err}"
    );
    eprintln!(
        "light client: epochs end after blocks {e1} and {e2}; verified a balance at height {} \
         and a transfer at {at} from genesis",
        view.height
    );
}

/// State sync walks the same links: validator 1's store is wiped after the two changes, the
/// others prune their history (replaying blocks from genesis is impossible), and it restarts
/// knowing only genesis. It must verify an offer of epoch 2 through both links, install the
/// state with epoch 2's set, keep the links, and vote in epoch 2: with validator 2 stopped
/// the chain only moves on with its votes.
fn wiped_validator_syncs_into_a_later_epoch<P: Protocol>() {
    let (mut c, _, e2) = two_changes::<P>();
    c.nodes[1] = None;
    c.dirs[1] = tempfile::tempdir().unwrap();
    let target = c.node(0).ledger().height() + 60;
    assert!(c.run_until(120_000, |c| c.node(0).ledger().height() >= target));
    for i in [0, 2, 3] {
        let store = c.node(i).ledger().store().clone();
        store.tx_index().flush().unwrap();
        let floor = store.height().unwrap() - 40;
        while store.prune_step(floor).unwrap().more {}
        assert!(store.block(e2).unwrap().is_none(), "validator {i} pruned");
    }
    c.open(1);
    assert_eq!(c.node(1).epoch(), 0);
    let top = c.node(0).ledger().height();
    assert!(
        c.run_until(120_000, |c| c.node(1).ledger().height() >= top
            && c.node(1).epoch() == 2),
        "validator 1 stuck at height {} of {top}, epoch {} ({:?})",
        c.node(1).ledger().height(),
        c.node(1).epoch(),
        c.node(1).stats
    );
    let stats = &c.node(1).stats;
    assert_eq!(stats.state_syncs, 1, "{stats:?}");
    assert_eq!(stats.bad_state_offers, 0, "{stats:?}");
    let links = c.node(1).ledger().store().epoch_links(0).unwrap();
    assert_eq!(links.len(), 2, "the walked links are kept and served");
    assert!(c.node(1).is_member());
    // Validator 2 stops: 0, 1 and 3 are the only quorum left.
    c.nodes[2] = None;
    let stopped_at = c.now;
    let next = c.node(0).ledger().height() + 5;
    assert!(
        c.run_until(60_000, |c| c.node(0).ledger().height() >= next
            && c.node(1).ledger().height() >= next),
        "no progress without validator 2: the synced validator does not vote: {:?}; {:?}; heights {:?}",
        c.node(1).stats,
        c.node(0).stats,
        [0, 1, 3].map(|i| c.node(i).ledger().height())
    );
    eprintln!(
        "{}: wiped validator synced into epoch 2 at height {top} (boundary {e2}) and votes; \
         5 blocks without validator 2 took {} ms (simulated)",
        P::NAME,
        c.now - stopped_at
    );
}

#[test]
fn hotstuff_wiped_validator_state_syncs_into_a_later_epoch() {
    wiped_validator_syncs_into_a_later_epoch::<HotStuffProtocol>();
}

#[test]
fn pbft_wiped_validator_state_syncs_into_a_later_epoch() {
    wiped_validator_syncs_into_a_later_epoch::<PbftProtocol>();
}

/// A validator joins from an empty home on a chain whose early history is pruned: a change
/// adds a fifth validator while it is not running; the four go on 60 blocks and prune all but
/// the last 40. Started then, it knows only genesis (where it is no member), state-syncs
/// through the epoch link to epoch 1's set — in which it is member 4 — and votes: with
/// validator 3 stopped, the four others (quorum 4 of 5) commit only with it.
fn joiner_from_an_empty_home_syncs_and_votes<P: Protocol>() {
    let mut c = Cluster::<P>::with_sets(DELAY, 1, Vec::new());
    c.nodes[N] = None;
    c.dirs[N] = tempfile::tempdir().unwrap();
    let keys = c.keys.clone();
    let op = SetChange::Add(members_of(&keys)[N].clone());
    let approvers = [(0, &keys[0]), (1, &keys[1]), (2, &keys[2])];
    let e1 = change(&mut c, 0, op, &approvers, 0);
    let target = c.node(0).ledger().height() + 60;
    assert!(c.run_until(120_000, |c| c.node(0).ledger().height() >= target));
    for i in 0..N {
        let store = c.node(i).ledger().store().clone();
        store.tx_index().flush().unwrap();
        let floor = store.height().unwrap() - 40;
        while store.prune_step(floor).unwrap().more {}
        assert!(store.block(e1).unwrap().is_none(), "validator {i} pruned");
    }
    c.open(N);
    assert!(!c.node(N).is_member());
    let top = c.node(0).ledger().height();
    assert!(
        c.run_until(120_000, |c| c.node(N).ledger().height() >= top
            && c.node(N).is_member()),
        "the joiner is stuck at height {} of {top}, epoch {}",
        c.node(N).ledger().height(),
        c.node(N).epoch()
    );
    assert_eq!(c.node(N).epoch(), 1);
    assert_eq!(c.node(N).stats.state_syncs, 1);
    c.nodes[3] = None;
    let stopped_at = c.now;
    let next = c.node(0).ledger().height() + 5;
    assert!(
        c.run_until(60_000, |c| c.node(0).ledger().height() >= next),
        "no progress without validator 3: the joiner does not vote (heights {:?})",
        [0, 1, 2, N].map(|i| c.node(i).ledger().height())
    );
    eprintln!(
        "{}: a joiner from an empty home synced into epoch 1 (boundary {e1}) at height {top} \
         and votes; 5 blocks without validator 3 took {} ms (simulated)",
        P::NAME,
        c.now - stopped_at
    );
}

#[test]
fn hotstuff_joiner_from_an_empty_home_state_syncs_and_votes() {
    joiner_from_an_empty_home_syncs_and_votes::<HotStuffProtocol>();
}

#[test]
fn pbft_joiner_from_an_empty_home_state_syncs_and_votes() {
    joiner_from_an_empty_home_syncs_and_votes::<PbftProtocol>();
}

/// A header vote signed with a key the chain removed, for a height after its removal, is
/// evidence: validator 0 records it once, and the record verifies on its own against the
/// sets walked from genesis. The same key's vote for a height of its own epoch, a stranger's
/// vote, and a record moved to another height or checked without the epoch links are not.
#[test]
fn a_removed_key_signing_a_later_header_is_recorded_as_evidence() {
    use node::validator::Wire;
    use node::validator::evidence::{Evidence, REMOVED_KEY_HEADER_VOTE, verify_removed_key_vote};
    let (mut c, e1, e2) = two_changes::<HotStuffProtocol>();
    let genesis = c.chain.genesis_hash;
    let keys = c.keys.clone();
    let header_at = |c: &Cluster<HotStuffProtocol>, h: u64| {
        c.node(0).ledger().store().block(h).unwrap().unwrap().hash()
    };
    let send = |c: &mut Cluster<HotStuffProtocol>, key: &SecretKey, h: u64| {
        let vote = HeaderVote::sign(key, &genesis, h, header_at(c, h));
        let bytes = Wire::<consensus::hotstuff::Message>::HeaderVote(vote).encode();
        let at = c.now;
        c.schedule(
            at,
            Ev::Frame {
                to: 0,
                from: 2,
                bytes,
            },
        );
        c.run_until(50, |_| false);
    };
    let records = |c: &Cluster<HotStuffProtocol>| -> Vec<Evidence> {
        c.node(0)
            .ledger()
            .store()
            .evidence()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .filter(|e: &Evidence| e.kind == REMOVED_KEY_HEADER_VOTE)
            .collect()
    };
    // Validator 2's genesis key, rotated out in epoch 1: its vote for block e1 (epoch 0, where
    // it was the key) is not evidence; a stranger's for e2 + 1 is not either.
    send(&mut c, &keys[2], e1);
    send(&mut c, &SecretKey::from_seed([99; 32]), e2 + 1);
    assert!(records(&c).is_empty());
    // Its vote for a height of epoch 2: recorded, once.
    send(&mut c, &keys[2], e2 + 1);
    send(&mut c, &keys[2], e2 + 1);
    let found = records(&c);
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0];
    assert_eq!((e.epoch, e.slot.clone()), (2, (e2 + 1).to_string()));

    let mut chain = SetChain::new(genesis_set(&c), c.committee.clone(), genesis);
    for l in c.node(0).ledger().store().epoch_links(0).unwrap() {
        chain.extend(&l).unwrap();
    }
    assert!(verify_removed_key_vote(e, &chain));
    // Checked against genesis alone, the key still rules: no evidence.
    let genesis_only = SetChain::new(genesis_set(&c), c.committee.clone(), genesis);
    assert!(!verify_removed_key_vote(e, &genesis_only));
    // The record moved to a height where the key was a member.
    let mut moved = e.clone();
    moved.slot = e1.to_string();
    assert!(!verify_removed_key_vote(&moved, &chain));
    // A vote whose signature does not verify (signed on another header).
    let mut forged = e.clone();
    let mut v: HeaderVote =
        codec::decode(&hex::decode(&e.first.message).unwrap(), 4096, "vote").unwrap();
    v.header = crypto::Digest([5; 32]);
    forged.first.message = hex::encode(codec::encode(&v));
    assert!(!verify_removed_key_vote(&forged, &chain));
}
