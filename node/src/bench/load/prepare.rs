//! Preparing a bench run's load before its window: the bench accounts, and every transaction
//! built (transfers signed on every core) and grouped into request bodies per validator.

use crate::api::encode_batch;
use bytes::Bytes;
use crypto::{Digest, SecretKey};
use ledger::{Address, ChainBinding, Payload, Transaction};
use std::collections::HashMap;

/// What the transactions do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Signed transfers among the bench's funded accounts (executed).
    Transfer,
    /// Unsigned opaque payloads of --tx-size bytes: ordered, stored, committed, not executed.
    Raw,
}

impl Workload {
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Transfer => "transfer",
            Workload::Raw => "raw",
        }
    }
}

/// The bench's accounts: deterministic keys, so every run funds the same addresses.
pub struct Accounts {
    pub keys: Vec<SecretKey>,
    pub addresses: Vec<Address>,
}

impl Accounts {
    pub fn new(count: usize) -> Accounts {
        let keys: Vec<SecretKey> = (0..count)
            .map(|i| {
                let mut h = crypto::Hasher::new();
                h.part(b"cairn/bench/account")
                    .part(&(i as u64).to_le_bytes());
                SecretKey::from_seed(h.finish().0)
            })
            .collect();
        let addresses = keys.iter().map(|k| Address::of(&k.public())).collect();
        Accounts { keys, addresses }
    }
}

/// Transactions ready to send, grouped into request bodies per validator.
pub struct Prepared {
    /// Position of each transaction by hash.
    pub(super) index: HashMap<Digest, u32>,
    /// The validator each transaction is sent to.
    pub(super) target: Vec<u8>,
    /// Request bodies in sending order: (validator, first index, indices).
    pub(super) chunks: Vec<Chunk>,
    pub tx_bytes: usize,
}

pub(super) struct Chunk {
    pub(super) validator: usize,
    pub(super) ids: Vec<u32>,
    pub(super) body: Bytes,
}

/// Builds `count` transactions for `validators` validators, `chunk` per request. Transfers
/// are signed here, on every core, before anything is measured; each account always sends
/// to the same validator, in nonce order, so no validator waits for a nonce sent elsewhere.
pub fn prepare(
    workload: Workload,
    count: usize,
    tx_size: usize,
    validators: usize,
    chunk: usize,
    accounts: &Accounts,
    chain: &ChainBinding,
) -> Prepared {
    let n_acc = accounts.keys.len().max(1);
    let make = |j: usize| -> (Vec<u8>, Digest, u8) {
        match workload {
            Workload::Transfer => {
                let a = j % n_acc;
                let to = accounts.addresses[(a + 1) % n_acc];
                let tx = Transaction::sign(
                    &accounts.keys[a],
                    chain,
                    (j / n_acc) as u64,
                    Payload::Transfer { to, amount: 1 },
                );
                (tx.encode(), tx.hash(), (a % validators) as u8)
            }
            Workload::Raw => {
                let tx = raw_tx(chain, j as u64, tx_size);
                (tx.encode(), tx.hash(), (j % validators) as u8)
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads).max(1);
    let made: Vec<(Vec<u8>, Digest, u8)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .step_by(per)
            .map(|start| {
                let make = &make;
                s.spawn(move || {
                    (start..(start + per).min(count))
                        .map(make)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a preparing thread panicked"))
            .collect()
    });
    let tx_bytes = made.first().map_or(0, |(b, _, _)| b.len());
    let mut index = HashMap::with_capacity(count);
    let mut target = Vec::with_capacity(count);
    let mut per_validator: Vec<Vec<u32>> = vec![Vec::new(); validators];
    for (j, (_, hash, v)) in made.iter().enumerate() {
        index.insert(*hash, j as u32);
        target.push(*v);
        per_validator[*v as usize].push(j as u32);
    }
    // Round-robin over validators, `chunk` transactions per request.
    let mut queues: Vec<std::vec::IntoIter<u32>> =
        per_validator.into_iter().map(Vec::into_iter).collect();
    let mut chunks = Vec::new();
    loop {
        let mut any = false;
        for (v, q) in queues.iter_mut().enumerate() {
            let ids: Vec<u32> = q.by_ref().take(chunk.max(1)).collect();
            if ids.is_empty() {
                continue;
            }
            any = true;
            let body = encode_batch(ids.iter().map(|&j| made[j as usize].0.as_slice()));
            chunks.push(Chunk {
                validator: v,
                ids,
                body: Bytes::from(body),
            });
        }
        if !any {
            break;
        }
    }
    Prepared {
        index,
        target,
        chunks,
        tx_bytes,
    }
}

/// A raw transaction whose encoding is `size` bytes (or the smallest possible, if less).
pub fn raw_tx(chain: &ChainBinding, id: u64, size: usize) -> Transaction {
    let empty = Transaction::raw(chain, id, Vec::new()).encode().len();
    let mut data = vec![0u8; size.saturating_sub(empty)];
    // Contents do not matter; make them differ between transactions anyway.
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    Transaction::raw(chain, id, data)
}
