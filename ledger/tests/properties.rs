//! Property tests over random transaction sequences: supply is conserved, nonces only move
//! forward (by exactly the number of applied transactions), two independent replays of the
//! same blocks reach the same blocks and state root, and raw transactions mixed in change
//! nothing (the state equals a replay of the signed transactions alone).

use crypto::SecretKey;
use ledger::{
    Account, Address, BlockInput, ChainBinding, Ledger, MemStore, Payload, State, Transaction,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const KEYS: u8 = 6;

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "prop".into(),
        genesis_hash: crypto::hash(b"prop genesis"),
    }
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n + 1; 32])
}

#[derive(Debug, Clone)]
struct TxSpec {
    from: u8,
    to: u8,
    amount: u64,
    nonce_skew: i8,
    corrupt_sig: bool,
    /// A raw transaction of this many bytes instead of a transfer.
    raw: Option<usize>,
}

fn tx_spec() -> impl Strategy<Value = TxSpec> {
    (
        0..KEYS,
        0..KEYS + 2, // two recipients that start unfunded
        prop_oneof![0u64..50, 0u64..5_000, Just(u64::MAX)],
        prop_oneof![8 => Just(0i8), 1 => -2i8..3],
        prop::bool::weighted(0.05),
        prop::option::weighted(0.15, 0usize..300),
    )
        .prop_map(|(from, to, amount, nonce_skew, corrupt_sig, raw)| TxSpec {
            from,
            to,
            amount,
            nonce_skew,
            corrupt_sig,
            raw,
        })
}

/// Turns specs into signed transactions, tracking the nonce each sender would expect if
/// every earlier transaction applied (so most are valid, some are not).
fn build(specs: &[TxSpec]) -> Vec<Transaction> {
    let mut next: BTreeMap<u8, u64> = BTreeMap::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if let Some(len) = s.raw {
                let mut tx = Transaction::raw(&chain(), i as u64, vec![s.from; len]);
                if s.corrupt_sig {
                    // Garbage where a signature would be changes nothing either.
                    tx.signature = key(s.from).sign(crypto::Domain::Transaction, b"x");
                    tx.body.sender = key(s.from).public();
                }
                return tx;
            }
            let n = next.entry(s.from).or_insert(0);
            let nonce = (*n as i64 + s.nonce_skew as i64).max(0) as u64;
            *n += 1;
            let to = Address::of(&key(s.to).public());
            let mut tx = Transaction::sign(
                &key(s.from),
                &chain(),
                nonce,
                Payload::Transfer {
                    to,
                    amount: s.amount,
                },
            );
            if s.corrupt_sig {
                tx.signature.0[3] ^= 0x10;
            }
            tx
        })
        .collect()
}

fn genesis() -> Vec<(Address, u64)> {
    (0..KEYS)
        .map(|i| (Address::of(&key(i).public()), 1_000 * (i as u64 + 1)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn supply_nonces_and_replay_determinism(
        specs in prop::collection::vec(tx_spec(), 0..120),
        cuts in prop::collection::vec(1usize..20, 1..12),
    ) {
        let txs = build(&specs);
        let supply: u128 = genesis().iter().map(|(_, b)| *b as u128).sum();
        let mut a = Ledger::open(MemStore::new(), chain(), &genesis()).unwrap();
        let mut b = Ledger::open(MemStore::new(), chain(), &genesis()).unwrap();
        let mut prev_nonces: BTreeMap<Address, u64> = BTreeMap::new();
        let mut rest = txs.as_slice();
        let mut cut = cuts.iter().cycle();
        let mut view = 0;
        while !rest.is_empty() {
            let take = (*cut.next().unwrap()).min(rest.len());
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            view += 1;
            let input = BlockInput {
                proposer: key(0).public(),
                view,
                timestamp_ms: view * 10,
                txs: batch.to_vec(),
                certificate: vec![],
                batch_sizes: vec![],
            };
            let (block_a, receipts) = a.commit(input.clone()).unwrap();
            let (block_b, _) = b.commit(input).unwrap();
            prop_assert_eq!(block_a.hash(), block_b.hash());
            prop_assert_eq!(a.state_root(), b.state_root());
            prop_assert_eq!(block_a.header.state_root, a.state_root());
            prop_assert_eq!(a.total_supply().unwrap(), supply);

            // Nonces move forward by exactly the applied transactions of each sender.
            let mut applied: BTreeMap<Address, u64> = BTreeMap::new();
            for (tx, r) in batch.iter().zip(&receipts) {
                prop_assert!(!tx.is_raw() || r.outcome.is_ok(), "raw transactions apply");
                if r.outcome.is_ok() && !tx.is_raw() {
                    *applied.entry(tx.sender_address()).or_default() += 1;
                }
            }
            for (addr, acc) in &a.store_accounts() {
                let before = prev_nonces.get(addr).copied().unwrap_or(0);
                let expect = before + applied.get(addr).copied().unwrap_or(0);
                prop_assert_eq!(acc.nonce, expect);
                prop_assert!(acc.balance as u128 <= supply);
                prev_nonces.insert(*addr, acc.nonce);
            }
        }
        // A tree built afresh from the accounts the store holds has the same root: the root
        // depends on the accounts, not on the order or the blocks that wrote them.
        let fresh = ledger::tree::MemTreeStore::default();
        let (restored, _) = ledger::tree::update(&fresh, 0, &a.store_accounts()).unwrap();
        prop_assert_eq!(restored, a.state_root());
        // The signed transactions alone, in one block, reach the same state.
        let signed: Vec<Transaction> = txs.iter().filter(|t| !t.is_raw()).cloned().collect();
        let mut alone = State::new(genesis().into_iter().map(|(a, balance)| {
            (a, Account { balance, nonce: 0 })
        }));
        alone.execute(&chain(), &signed);
        let alone: Vec<(Address, Account)> = alone.accounts().map(|(a, b)| (*a, *b)).collect();
        prop_assert_eq!(alone, a.store_accounts());
    }
}

trait StoreAccounts {
    fn store_accounts(&self) -> Vec<(Address, Account)>;
}

impl StoreAccounts for Ledger<MemStore> {
    fn store_accounts(&self) -> Vec<(Address, Account)> {
        use ledger::Store;
        self.store().accounts().unwrap()
    }
}
