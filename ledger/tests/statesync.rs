//! State sync's pure half: chunks served from a tree verify against its root, whoever sends
//! them and in whatever order they arrive; a corrupt chunk is caught before it is kept and
//! the sync finishes from honest peers; a forged root verifies nothing. The negative control
//! shows the verification is what catches the corruption.

use ledger::statesync::{CHUNK_LEAVES, Fetch, StateChunk, SyncError, serve_chunk};
use ledger::tree::{self, MemTreeStore};
use ledger::{Account, Address};
use std::collections::BTreeMap;
use std::sync::Arc;

const VERSION: u64 = 3;

fn addr(i: u32) -> Address {
    let mut a = [9u8; 20];
    a[..4].copy_from_slice(&i.to_le_bytes());
    Address(a)
}

/// A tree of `n` accounts written over four versions (so old leaves and new ones mix), and
/// its accounts at [`VERSION`] in key-hash order.
fn tree(n: u32) -> (Arc<MemTreeStore>, crypto::Digest, Vec<(Address, Account)>) {
    let store = Arc::new(MemTreeStore::default());
    let mut all = BTreeMap::new();
    for v in 0..=VERSION {
        let changed: Vec<(Address, Account)> = (0..n)
            .filter(|i| v == 0 || i % (v as u32 + 3) == 0)
            .map(|i| {
                (
                    addr(i),
                    Account {
                        balance: 1_000 + u64::from(i) + v,
                        nonce: v,
                    },
                )
            })
            .collect();
        let (_, batch) = tree::update(store.as_ref(), v, &changed).unwrap();
        store.write(&batch);
        all.extend(changed);
    }
    let root = tree::root(store.as_ref(), VERSION).unwrap();
    let mut expect: Vec<(Address, Account)> = all.into_iter().collect();
    expect.sort_by_key(|(a, _)| tree::key_hash(a));
    (store, root, expect)
}

/// Peers: how each answers a chunk request.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Honest,
    /// Raises one balance in every chunk it serves.
    Corrupt,
    /// Answers nothing.
    Silent,
    /// Does not hold the version.
    Pruned,
}

/// A run's outcome, the bad peers reported, and whether it got stuck.
type Outcome = (Result<Vec<(Address, Account)>, SyncError>, Vec<u16>, bool);

/// Runs a sync to the end: requests are answered in a scrambled order (later ones first),
/// one per round; returns the outcome and the bad peers reported.
fn run(
    store: &Arc<MemTreeStore>,
    root: crypto::Digest,
    total: u64,
    peers: &[Peer],
    trust: bool,
) -> Outcome {
    let ids: Vec<u16> = (0..peers.len() as u16).collect();
    let mut f = Fetch::new(VERSION, root, total, ids, 100).unwrap();
    if trust {
        f.trust_peers_unverified();
    }
    let mut now = 0;
    let mut queue: Vec<(u16, u64)> = f.poll(now);
    let mut bad = Vec::new();
    for _round in 0..10_000 {
        if f.complete() {
            return (f.finish(), bad, false);
        }
        if f.stuck() {
            return (Err(SyncError::Tree("stuck".into())), bad, true);
        }
        let Some((p, index)) = queue.pop() else {
            now += 100;
            queue = f.poll(now);
            continue;
        };
        match peers[p as usize] {
            Peer::Silent => {}
            Peer::Pruned => queue.extend(f.on_missing(now, p, index)),
            kind => {
                let Some(mut c) = serve_chunk(store.clone(), VERSION, index).unwrap() else {
                    queue.extend(f.on_missing(now, p, index));
                    continue;
                };
                if kind == Peer::Corrupt {
                    corrupt(&mut c);
                }
                let step = f.on_chunk(now, p, c);
                if let Some((who, _)) = step.bad {
                    bad.push(who);
                }
                // Newer requests go to the front: answers arrive out of order.
                for r in step.ask {
                    queue.insert(0, r);
                }
            }
        }
    }
    panic!("the sync neither finished nor got stuck");
}

fn corrupt(c: &mut StateChunk) {
    let leaf = &mut c.leaves[0];
    let (a, mut acct) = tree::decode_value(&leaf.value).unwrap();
    acct.balance += 1_000_000;
    leaf.value = tree::encode_value(&a, &acct).to_vec();
}

#[test]
fn chunks_from_honest_peers_rebuild_the_state_in_any_order() {
    let (store, root, expect) = tree(10_000);
    let total = ledger::statesync::leaf_count(store.as_ref(), VERSION).unwrap();
    assert_eq!(total, expect.len() as u64);
    assert!(total > 2 * CHUNK_LEAVES, "several chunks");
    let (got, bad, _) = run(&store, root, total, &[Peer::Honest; 3], false);
    assert_eq!(got.unwrap(), expect);
    assert!(bad.is_empty());
    // One peer alone also works, and a silent one is routed around.
    let (got, _, _) = run(&store, root, total, &[Peer::Honest], false);
    assert_eq!(got.unwrap(), expect);
    let (got, _, _) = run(&store, root, total, &[Peer::Silent, Peer::Honest], false);
    assert_eq!(got.unwrap(), expect);
    let (got, _, _) = run(&store, root, total, &[Peer::Pruned, Peer::Honest], false);
    assert_eq!(got.unwrap(), expect);
}

#[test]
fn a_corrupt_chunk_is_refused_named_and_fetched_elsewhere() {
    let (store, root, expect) = tree(10_000);
    let total = expect.len() as u64;
    let peers = [Peer::Honest, Peer::Corrupt, Peer::Honest];
    let (got, bad, _) = run(&store, root, total, &peers, false);
    assert_eq!(
        got.unwrap(),
        expect,
        "the sync finished from the honest peers"
    );
    assert_eq!(
        bad,
        vec![1],
        "the corrupt peer is reported once, then not asked again"
    );
}

/// Negative control: the same corrupt peer with verification off installs a wrong state.
#[test]
fn without_verification_the_corrupt_chunk_gets_in() {
    let (store, root, expect) = tree(10_000);
    let total = expect.len() as u64;
    let peers = [Peer::Honest, Peer::Corrupt, Peer::Honest];
    let (got, bad, _) = run(&store, root, total, &peers, true);
    let got = got.unwrap();
    assert!(bad.is_empty());
    assert_ne!(got, expect, "an unverified sync takes the corrupt balances");
}

#[test]
fn a_forged_root_verifies_nothing_and_the_sync_stops() {
    let (store, _, expect) = tree(5_000);
    let forged = crypto::hash(b"forged root");
    let (got, bad, stuck) = run(
        &store,
        forged,
        expect.len() as u64,
        &[Peer::Honest; 3],
        false,
    );
    assert!(stuck, "{got:?}");
    assert_eq!(bad.len(), 3, "each peer's chunk failed once");
}

#[test]
fn a_wrong_leaf_count_is_caught() {
    let (store, root, expect) = tree(5_000);
    let n = expect.len() as u64;
    // Too few: the last chunk the peers serve is longer than the count allows.
    let (got, _, _) = run(&store, root, n - 10, &[Peer::Honest; 2], false);
    assert!(got.is_err());
    // Too many: a chunk beyond the end is missing everywhere.
    let (got, _, _) = run(
        &store,
        root,
        n + 2 * CHUNK_LEAVES,
        &[Peer::Honest; 2],
        false,
    );
    assert!(got.is_err());
    // Absurd counts are refused before anything is allocated.
    assert!(matches!(
        Fetch::new(VERSION, root, u64::MAX, vec![0], 100),
        Err(SyncError::Size(_))
    ));
    assert!(matches!(
        Fetch::new(VERSION, root, 0, vec![0], 100),
        Err(SyncError::Size(_))
    ));
}

#[test]
fn unasked_and_malformed_chunks_are_dropped() {
    let (store, root, expect) = tree(5_000);
    let total = expect.len() as u64;
    let mut f = Fetch::new(VERSION, root, total, vec![0, 1], 100).unwrap();
    let asks = f.poll(0);
    assert!(!asks.is_empty());
    let (p, i) = asks[0];
    let good = serve_chunk(store.clone(), VERSION, i).unwrap().unwrap();
    // From a peer not asked: ignored.
    let other = if p == 0 { 1 } else { 0 };
    assert_eq!(f.on_chunk(0, other, good.clone()).bad, None);
    assert_eq!(f.progress().0, 0);
    // From the peer asked, with a leaf whose key is not its address's hash.
    let mut bad = good.clone();
    let v = bad.leaves[0].value.clone();
    bad.leaves[0].value = bad.leaves[1].value.clone();
    bad.leaves[1].value = v;
    let step = f.on_chunk(0, p, bad);
    assert!(
        matches!(step.bad, Some((who, SyncError::Leaf { .. })) if who == p),
        "{step:?}"
    );
}
