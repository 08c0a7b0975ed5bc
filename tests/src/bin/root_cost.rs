//! Issue 19's root-cost benchmark: the time to execute a block of 1,000 transfers and update
//! the account tree (the new state root) over a ledger of N funded accounts, for several N,
//! next to what the root cost before the tree (sha256 over every account, as
//! `State::root` did). The ledger runs over the in-memory store, so the figures are CPU
//! cost, not disk.
//!
//!   cargo run --release -p tests --bin root_cost [N ...]   (default 10000 100000 1000000)

use crypto::{Digest, Hasher, SecretKey};
use ledger::{Address, BlockInput, ChainBinding, Ledger, MemStore, Payload, Transaction};
use std::time::Instant;

const SENDERS: usize = 1_000;
const BLOCKS: u64 = 20;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("account counts"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let chain = ChainBinding {
        chain_id: "bench".into(),
        genesis_hash: Digest([1; 32]),
    };
    let keys: Vec<SecretKey> = (0..SENDERS as u64)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect();
    println!(
        "| accounts | changed per block | execute + tree update, median ms | old full-state root, ms |"
    );
    println!("|---:|---:|---:|---:|");
    for n in sizes {
        let mut alloc: Vec<(Address, u64)> = keys
            .iter()
            .map(|k| (Address::of(&k.public()), 1 << 40))
            .collect();
        alloc.extend((0..(n - SENDERS) as u64).map(|i| {
            let d = crypto::hash(&i.to_le_bytes());
            let mut a = [0u8; 20];
            a.copy_from_slice(&d.0[..20]);
            (Address(a), 1_000)
        }));
        let mut ledger = Ledger::open(MemStore::new(), chain.clone(), &alloc).expect("genesis");
        let mut times = Vec::new();
        for b in 0..BLOCKS {
            // Each sender pays a random-looking existing account.
            let txs: Vec<Transaction> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let to = alloc[(i * 7919 + b as usize * 104_729) % alloc.len()].0;
                    Transaction::sign(k, &chain, b, Payload::Transfer { to, amount: 1 })
                })
                .collect();
            let checked = vec![true; txs.len()];
            let input = BlockInput {
                proposer: keys[0].public(),
                view: b + 1,
                timestamp_ms: 0,
                txs,
                certificate: Vec::new(),
                batch_sizes: Vec::new(),
            };
            let started = Instant::now();
            let executed = ledger.execute_checked(input, &checked).expect("execute");
            times.push(started.elapsed().as_secs_f64() * 1e3);
            ledger.store_executed(executed).expect("store");
        }
        times.sort_by(f64::total_cmp);
        // What every block paid before the tree: one sha256 pass over all accounts.
        let started = Instant::now();
        let mut h = Hasher::new();
        for (a, bal) in &alloc {
            let mut leaf = [0u8; 36];
            leaf[..20].copy_from_slice(&a.0);
            leaf[20..28].copy_from_slice(&bal.to_le_bytes());
            h.part(&leaf);
        }
        std::hint::black_box(h.finish());
        let old = started.elapsed().as_secs_f64() * 1e3;
        println!(
            "| {n} | about {} | {:.2} | {old:.2} |",
            2 * SENDERS,
            times[times.len() / 2]
        );
    }
}
