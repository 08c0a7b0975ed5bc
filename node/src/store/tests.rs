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
