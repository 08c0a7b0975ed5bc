//! Tests of the redb store: the transaction index and its receipts journal across reopens,
//! group commits, and moving consensus state out of an old single-file store.

use super::*;
use crypto::SecretKey;
use ledger::{BlockInput, ChainBinding, Ledger, Payload, Transaction};

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "t".into(),
        genesis_hash: crypto::hash(b"g"),
    }
}

fn input(key: &SecretKey, txs: Vec<Transaction>) -> BlockInput {
    BlockInput {
        proposer: key.public(),
        view: 1,
        timestamp_ms: 0,
        txs,
        certificate: Vec::new(),
        batch_sizes: Vec::new(),
    }
}

/// The transaction index keeps a transaction's first inclusion: a second inclusion
/// (skipped as a replay) never overwrites the record of the one that applied — whether
/// the first is still in memory, flushed into the index file between or after the two
/// blocks, or rebuilt from the journal after a reopen.
#[test]
fn the_index_keeps_the_first_inclusion() {
    for (flush_between, flush_after) in [(false, false), (true, false), (true, true), (false, true)]
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = RedbStore::open(&path).unwrap();
        let key = SecretKey::from_seed([5; 32]);
        let chain = chain();
        let from = Address::of(&key.public());
        let mut l = Ledger::open(store, chain.clone(), &[(from, 100)]).unwrap();
        let to = Address([9; 20]);
        let tx = Transaction::sign(&key, &chain, 0, Payload::Transfer { to, amount: 5 });
        let other = Transaction::sign(&key, &chain, 1, Payload::Transfer { to, amount: 6 });
        l.commit(input(&key, vec![tx.clone()])).unwrap();
        if flush_between {
            assert_eq!(l.store().tx_index().flush().unwrap(), 1);
        }
        let (_, again) = l
            .commit(input(&key, vec![other.clone(), tx.clone()]))
            .unwrap();
        assert!(again[1].outcome.is_err(), "the replay is skipped");
        if flush_after {
            l.store().tx_index().flush().unwrap();
            assert_eq!(l.store().tx_index().unflushed(), 0);
        }
        let case = format!("flush between {flush_between}, after {flush_after}");
        let check = |s: &RedbStore| {
            let rec = s.tx(&tx.hash()).unwrap().unwrap();
            assert_eq!((rec.height, rec.index), (1, 0), "{case}");
            assert!(rec.receipt.outcome.is_ok(), "{case}");
            let rec = s.tx(&other.hash()).unwrap().unwrap();
            assert_eq!((rec.height, rec.index), (2, 0), "{case}");
        };
        check(l.store());
        drop(l);
        check(&RedbStore::open(&path).unwrap());
    }
}

/// Records not flushed into the index file survive a reopen (rebuilt from the journal);
/// after a flush, the next block write drops the journal rows the index file holds, and
/// a reopen rebuilds only what is above them.
#[test]
fn unflushed_receipts_survive_a_reopen_and_flushed_rows_leave_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = RedbStore::open(&path).unwrap();
    let key = SecretKey::from_seed([6; 32]);
    let chain = chain();
    let from = Address::of(&key.public());
    let mut l = Ledger::open(store, chain.clone(), &[(from, 1000)]).unwrap();
    let to = Address([1; 20]);
    let mut hashes = Vec::new();
    let mut commit = |l: &mut Ledger<RedbStore>, n: u64| {
        let t = Transaction::sign(&key, &chain, n, Payload::Transfer { to, amount: 1 });
        hashes.push(t.hash());
        l.commit(input(&key, vec![t])).unwrap();
    };
    for n in 0..4 {
        commit(&mut l, n);
    }
    assert_eq!(l.store().tx_index().unflushed(), 4);
    drop(l);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.tx_index().unflushed(), 4, "rebuilt from the journal");
    let journal = |s: &RedbStore| s.read(|tx| Ok(tx.open_table(RECEIPTS)?.len()?)).unwrap();
    assert_eq!(journal(&store), 4);
    assert_eq!(store.tx_index().flush().unwrap(), 4);
    assert_eq!(store.tx_index().indexed_height(), 4);
    let mut l = Ledger::open(store, chain.clone(), &[(from, 1000)]).unwrap();
    commit(&mut l, 4);
    assert_eq!(journal(l.store()), 1, "rows 1-4 dropped, row 5 written");
    assert_eq!(l.store().tx_index().unflushed(), 1);
    drop(l);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.tx_index().unflushed(),
        1,
        "only the row above the index"
    );
    for (i, h) in hashes.iter().enumerate() {
        assert_eq!(store.tx(h).unwrap().unwrap().height, i as u64 + 1);
    }
}

/// Several executed blocks go into one write, in order; a gap is refused whole.
#[test]
fn group_commit_writes_blocks_in_order_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    let key = SecretKey::from_seed([7; 32]);
    let chain = chain();
    let from = Address::of(&key.public());
    let mut l = Ledger::open(store.clone(), chain.clone(), &[(from, 1000)]).unwrap();
    let to = Address([2; 20]);
    let mut executed = Vec::new();
    for n in 0..3 {
        let t = Transaction::sign(&key, &chain, n, Payload::Transfer { to, amount: 1 });
        executed.push(l.execute_checked(input(&key, vec![t]), &[]).unwrap());
    }
    let err = store.commit_executed(&executed[1..]).unwrap_err();
    assert!(err.to_string().contains("cannot follow height 0"), "{err}");
    assert_eq!(
        store.height().unwrap(),
        0,
        "nothing of a refused group is written"
    );
    store.commit_executed(&executed).unwrap();
    assert_eq!(store.height().unwrap(), 3);
    assert_eq!(
        store.account(&to).unwrap().unwrap().balance,
        3,
        "the last block's accounts are stored"
    );
    assert_eq!(store.block(3).unwrap().unwrap(), executed[2].block);
}

/// A store from before the two-file split keeps its safety record and Raft log in the
/// chain file: opening it moves both into the consensus file, where they are read.
#[test]
fn consensus_state_moves_out_of_an_old_single_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        // An old store: everything in one file.
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("hotstuff/safety", [1u8, 2, 3].as_slice())
            .unwrap();
        let row = codec::encode(&(7u64, vec![9u8], Vec::<Vec<Transaction>>::new()));
        tx.open_table(RAFT_LOG)
            .unwrap()
            .insert(4, row.as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    assert!(consensus_path(&path).exists());
    assert_eq!(store.meta("hotstuff/safety").unwrap(), Some(vec![1, 2, 3]));
    let rows = store.log_rows().unwrap();
    assert_eq!((rows.len(), rows[0].index, rows[0].term), (1, 4, 7));
    // Gone from the chain file, so the moved copy is the only one.
    let left = store
        .read(|tx| Ok(tx.open_table(META)?.get("hotstuff/safety")?.is_some()))
        .unwrap();
    assert!(!left);
    drop(store);
    let again = RedbStore::open(&path).unwrap();
    assert_eq!(again.meta("hotstuff/safety").unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(again.log_rows().unwrap().len(), 1);
}

/// A ledger over a fresh store at `path` with `n` funded wallets, and their keys.
fn funded(path: &std::path::Path, n: u8) -> (Ledger<RedbStore>, Vec<SecretKey>) {
    let keys: Vec<SecretKey> = (0..n).map(|i| SecretKey::from_seed([i + 1; 32])).collect();
    let alloc: Vec<(Address, u64)> = keys
        .iter()
        .map(|k| (Address::of(&k.public()), 1_000_000))
        .collect();
    let store = RedbStore::open(path).unwrap();
    (Ledger::open(store, chain(), &alloc).unwrap(), keys)
}

/// Block `h`'s transfers: a few wallets pay the next one; every fifth block is empty.
fn transfers(keys: &[SecretKey], nonces: &mut [u64], h: u64) -> Vec<Transaction> {
    if h.is_multiple_of(5) {
        return Vec::new();
    }
    (0..4)
        .map(|k| {
            let i = (h as usize * 3 + k) % keys.len();
            let to = Address::of(&keys[(i + 1) % keys.len()].public());
            let tx = Transaction::sign(
                &keys[i],
                &chain(),
                nonces[i],
                Payload::Transfer { to, amount: 1 },
            );
            nonces[i] += 1;
            tx
        })
        .collect()
}

/// Pruning below a floor deletes the blocks, header certificates, transaction records and
/// state-tree versions below it — and nothing a kept version needs: every account proves
/// against the recorded root at every kept height, and a pruned ledger goes on computing
/// the same roots as an unpruned twin.
#[test]
fn pruning_keeps_everything_above_the_floor_and_the_roots_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pruned, keys) = funded(&dir.path().join("p.redb"), 12);
    let (mut full, _) = funded(&dir.path().join("f.redb"), 12);
    let mut nonces = vec![0u64; keys.len()];
    let (mut roots, mut txs_at) = (vec![pruned.state_root()], vec![Vec::new()]);
    for h in 1..=300u64 {
        let txs = transfers(&keys, &mut nonces, h);
        txs_at.push(txs.iter().map(|t| t.hash()).collect::<Vec<_>>());
        let (b, _) = pruned.commit(input(&keys[0], txs.clone())).unwrap();
        let (f, _) = full.commit(input(&keys[0], txs)).unwrap();
        assert_eq!(b.header.state_root, f.header.state_root);
        pruned
            .store()
            .commit_with_certs(&[], &[(h, vec![h as u8])])
            .unwrap();
        roots.push(b.header.state_root);
    }
    let s = pruned.store().clone();
    s.tx_index().flush().unwrap();
    let mut total = PruneStep::default();
    loop {
        let step = s.prune_step(200).unwrap();
        total.blocks += step.blocks;
        total.tx_records += step.tx_records;
        total.tree_nodes += step.tree_nodes;
        total.tree_values += step.tree_values;
        if !step.more {
            break;
        }
    }
    assert_eq!(
        s.floors().unwrap(),
        Floors {
            history: 200,
            tx: 200
        }
    );
    assert_eq!(total.blocks, 199);
    let pruned_txs: usize = txs_at[1..200].iter().map(Vec::len).sum();
    assert_eq!(total.tx_records, pruned_txs as u64);
    assert!(total.tree_nodes > 0 && total.tree_values > 0, "{total:?}");
    for h in 1..=300u64 {
        let kept = h >= 200;
        assert_eq!(s.block(h).unwrap().is_some(), kept, "block {h}");
        assert_eq!(s.header_cert(h).unwrap().is_some(), kept, "cert {h}");
        for t in &txs_at[h as usize] {
            assert_eq!(s.tx(t).unwrap().is_some(), kept, "tx at {h}");
        }
    }
    let snap = s.tree_snapshot().unwrap();
    assert_eq!(snap.floor, 200);
    for h in 200..=300u64 {
        for k in &keys {
            let a = Address::of(&k.public());
            let p = ledger::tree::prove(&snap, &a, h).unwrap();
            assert!(p.verify(roots[h as usize], &a).unwrap().is_some(), "{h}");
        }
    }
    // A second pass finds nothing left to do below the same floor.
    let again = s.prune_step(200).unwrap();
    assert_eq!((again.blocks, again.tree_nodes, again.more), (0, 0, false));
    // The pruned ledger goes on as the full one does (and survives a reopen).
    let path = dir.path().join("p.redb");
    drop((pruned, snap, s));
    let alloc: Vec<(Address, u64)> = keys
        .iter()
        .map(|k| (Address::of(&k.public()), 1_000_000))
        .collect();
    let mut pruned = Ledger::open(RedbStore::open(&path).unwrap(), chain(), &alloc).unwrap();
    for h in 301..=340u64 {
        let txs = transfers(&keys, &mut nonces, h);
        let (b, _) = pruned.commit(input(&keys[0], txs.clone())).unwrap();
        let (f, _) = full.commit(input(&keys[0], txs)).unwrap();
        assert_eq!(b.header.state_root, f.header.state_root, "height {h}");
    }
}

/// With pruning, the chain file stops growing once the window is full; without it, it
/// keeps growing (the control).
#[test]
fn a_pruned_store_stops_growing() {
    const WINDOW: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for prune in [true, false] {
        let path = dir.path().join(format!("{prune}.redb"));
        let (mut l, keys) = funded(&path, 12);
        let mut nonces = vec![0u64; keys.len()];
        let mut at = Vec::new();
        for h in 1..=1200u64 {
            l.commit(input(&keys[0], transfers(&keys, &mut nonces, h)))
                .unwrap();
            if prune && h % 50 == 0 {
                l.store().tx_index().flush().unwrap();
                while l.store().prune_step(h.saturating_sub(WINDOW)).unwrap().more {}
            }
            if h == 600 || h == 1200 {
                at.push(std::fs::metadata(&path).unwrap().len());
            }
        }
        sizes.push(at);
    }
    let (pruned, full) = (&sizes[0], &sizes[1]);
    println!("chain file at 600 and 1,200 blocks: pruned {pruned:?}, unpruned {full:?}");
    assert!(
        pruned[1] as f64 <= pruned[0] as f64 * 1.15,
        "pruned store grew from {} to {} bytes",
        pruned[0],
        pruned[1]
    );
    assert!(
        full[1] as f64 > full[0] as f64 * 1.3,
        "the unpruned control grew only from {} to {} bytes",
        full[0],
        full[1]
    );
}

/// A state snapshot sets the floors: the snapshot's block is held, nothing below it, and
/// no transaction record at or below it (lookups answer "pruned", never "unknown").
#[test]
fn a_snapshot_install_sets_the_floors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, keys) = funded(&dir.path().join("a.redb"), 6);
    let (mut b, _) = funded(&dir.path().join("b.redb"), 6);
    let mut nonces = vec![0u64; keys.len()];
    let mut block = None;
    for h in 1..=7u64 {
        block = Some(
            a.commit(input(&keys[0], transfers(&keys, &mut nonces, h)))
                .unwrap()
                .0,
        );
    }
    let block = block.unwrap();
    let accounts = a.store().accounts().unwrap();
    let set = a.validators().clone();
    b.install_snapshot(block.clone(), accounts, set).unwrap();
    assert_eq!(b.store().floors().unwrap(), Floors { history: 7, tx: 8 });
    assert!(b.store().block(7).unwrap().is_some());
    assert!(b.store().block(6).unwrap().is_none());
    assert!(b.store().tx(&block.txs[0].hash()).unwrap().is_none());
    drop(b);
    let reopened = RedbStore::open(&dir.path().join("b.redb")).unwrap();
    assert_eq!(reopened.floors().unwrap(), Floors { history: 7, tx: 8 });
}

/// The pruner thread prunes to `height − retain` on its own and reports the floor.
#[test]
fn the_pruner_thread_keeps_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let (mut l, keys) = funded(&dir.path().join("p.redb"), 6);
    let mut nonces = vec![0u64; keys.len()];
    for h in 1..=260u64 {
        l.commit(input(&keys[0], transfers(&keys, &mut nonces, h)))
            .unwrap();
    }
    l.store().tx_index().flush().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s2 = seen.clone();
    let t = l.store().start_pruner(100, stop.clone(), move |f| {
        s2.store(f, std::sync::atomic::Ordering::SeqCst);
    });
    std::thread::sleep(std::time::Duration::from_millis(2500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    t.join().unwrap();
    assert_eq!(l.store().floors().unwrap().history, 160);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 160);
}

/// The validator states a chain produced are in the chain file, at the heights that produced
/// them, written with their blocks (group commit), kept by pruning, and read back by a
/// reopened ledger; a store without them (written before they were recorded) is refused
/// with a message that says what to do.
#[test]
fn validator_states_are_stored_with_their_blocks_and_survive_pruning_and_reopening() {
    use ledger::validators::{
        Change, Governance, Member, Rule, SetChange, ValidatorState, approve,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let keys: Vec<SecretKey> = (1..=5).map(|i| SecretKey::from_seed([i; 32])).collect();
    let member = |i: usize| Member {
        name: format!("v{i}"),
        consensus_key: keys[i].public(),
        network_key: SecretKey::from_seed([50 + i as u8; 32]).public(),
        p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 27000 + i),
    };
    let genesis = ledger::LedgerGenesis {
        accounts: vec![(Address::of(&keys[0].public()), 10)],
        validators: ValidatorState::genesis((0..4).map(member).collect(), Rule::Bft).unwrap(),
        governance: Some(Governance {
            rule: Rule::Bft,
            epoch_delay: 2,
        }),
    };
    let open = || Ledger::open_genesis(RedbStore::open(&path).unwrap(), chain(), &genesis, 1 << 20);
    let mut l = open().unwrap();
    let op = SetChange::Add(member(4));
    let change = Change {
        epoch: 0,
        approvals: (0..3u16)
            .map(|i| (i, approve(&keys[i as usize], &chain(), 0, &op)))
            .collect(),
        op,
    };
    let carrier = Transaction::sign(&keys[0], &chain(), 0, Payload::Governance(change));
    // Heights 1 to 4 in one group commit: the change is accepted at 1, its epoch ends at 3.
    let executed: Vec<_> = [vec![carrier], vec![], vec![], vec![]]
        .into_iter()
        .map(|txs| l.execute_checked(input(&keys[0], txs), &[]).unwrap())
        .collect();
    assert_eq!(executed[0].receipts[0].outcome, Ok(()));
    let changed: Vec<u64> = executed
        .iter()
        .filter(|e| e.validators.is_some())
        .map(|e| e.block.header.height)
        .collect();
    assert_eq!(changed, [1, 3]);
    // Block 3 ends epoch 0. Its header certificate arrives before the block is stored (a
    // certificate on another header at 2 alongside: no link from it).
    let cert_on = |h: u64, header: Digest| {
        let signers: Vec<&SecretKey> = keys[..3].iter().collect();
        let c =
            consensus::attest::HeaderCert::signed_by(&signers, &chain().genesis_hash, h, header);
        codec::encode(&c)
    };
    let boundary = executed[2].block.clone();
    l.store()
        .commit_with_certs(
            &[],
            &[
                (3, cert_on(3, boundary.hash())),
                (2, cert_on(2, Digest([9; 32]))),
            ],
        )
        .unwrap();
    assert!(l.store().epoch_links(0).unwrap().is_empty());
    l.store().commit_executed(&executed).unwrap();
    l.stored_up_to(4);
    let after = l.validators().clone();
    assert_eq!((after.epoch, after.members.len()), (1, 5));
    let links = l.store().epoch_links(0).unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (&links[0].header, &links[0].next),
        (&boundary.header, &after)
    );
    links[0].follows(&genesis.validators).unwrap();
    assert!(l.store().epoch_links(1).unwrap().is_empty());
    // A store from before links were kept gets them when it opens.
    l.store()
        .write(|tx| {
            tx.open_table(epochs::EPOCH_LINKS)?.retain(|_, _| false)?;
            Ok(())
        })
        .unwrap();
    drop(l);
    let mut l = open().unwrap();
    assert_eq!(l.store().epoch_links(0).unwrap(), links);
    for _ in 5..=8 {
        l.commit(input(&keys[0], Vec::new())).unwrap();
    }
    // Pruning deletes block 3 and its certificate; the link stays.
    l.store().tx_index().flush().unwrap();
    while l.store().prune_step(7).unwrap().more {}
    assert!(l.store().header_cert(3).unwrap().is_none());
    drop(l);
    let l = open().unwrap();
    assert_eq!(l.validators(), &after);
    assert_eq!(l.store().epoch_links(0).unwrap(), links);
    let epochs: Vec<u64> = (0..=8)
        .map(|h| l.validators_at(h).unwrap().unwrap().epoch)
        .collect();
    assert_eq!(epochs, [0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert!(l.validators_at(1).unwrap().unwrap().pending.is_some());
    // A store from before validator states were recorded: no row at all.
    let store = l.into_store();
    store
        .write(|tx| {
            tx.open_table(VALIDATORS)?.retain(|_, _| false)?;
            Ok(())
        })
        .unwrap();
    drop(store);
    let err = open().err().expect("refused").to_string();
    assert!(
        err.contains("from before validator sets were recorded") && err.contains("empty data"),
        "{err}"
    );
}
