//! Deterministic transaction workloads: funded keys and signed transfers from a seed.

use crypto::SecretKey;
use ledger::{Address, ChainBinding, Payload, Transaction};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` wallet keys derived from `seed` (never from the OS).
pub fn keys(seed: u64, n: usize) -> Vec<SecretKey> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| SecretKey::from_seed(rng.r#gen())).collect()
}

/// Genesis allocation giving each key `balance`.
pub fn allocation(keys: &[SecretKey], balance: u64) -> Vec<(Address, u64)> {
    keys.iter()
        .map(|k| (Address::of(&k.public()), balance))
        .collect()
}

/// Generates valid transfers among `keys`, tracking nonces, from a seeded RNG.
pub struct Transfers {
    rng: ChaCha8Rng,
    keys: Vec<SecretKey>,
    nonces: Vec<u64>,
    chain: ChainBinding,
}

impl Transfers {
    pub fn new(seed: u64, keys: Vec<SecretKey>, chain: ChainBinding) -> Transfers {
        let nonces = vec![0; keys.len()];
        Transfers {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys,
            nonces,
            chain,
        }
    }

    /// The next transfer: random sender and recipient, amount 1..=10.
    pub fn next_tx(&mut self) -> Transaction {
        let from = self.rng.gen_range(0..self.keys.len());
        let to = self.rng.gen_range(0..self.keys.len());
        let amount = self.rng.gen_range(1..=10);
        let nonce = self.nonces[from];
        self.nonces[from] += 1;
        Transaction::sign(
            &self.keys[from],
            &self.chain,
            nonce,
            Payload::Transfer {
                to: Address::of(&self.keys[to].public()),
                amount,
            },
        )
    }
}
