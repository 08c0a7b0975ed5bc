//! Signed transactions, and unsigned raw ones for benchmarks ([`Payload::Raw`]).

use crate::Address;
use crypto::{Digest, Domain, Hasher, PublicKey, SecretKey, Signature, codec};

/// The sender of every raw transaction ([`Transaction::raw`]). All zeros is a small-order
/// point, which Cairn's verification rule refuses, so no signed transaction can come from it.
pub const RAW_SENDER: PublicKey = PublicKey([0; 32]);
/// The signature of every raw transaction: no key signs it.
const RAW_SIGNATURE: Signature = Signature([0; 64]);
use serde::{Deserialize, Serialize};

/// Largest encoded transaction accepted from anywhere (API, network, block).
pub const MAX_TX_BYTES: u64 = 64 * 1024;
/// Longest chain id (also enforced by genesis validation).
pub const MAX_CHAIN_ID_LEN: usize = 64;

/// What binds a transaction to one chain: both are inside the signed bytes, so a transaction
/// signed for another chain (or another genesis of a chain with the same name) never applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBinding {
    pub chain_id: String,
    pub genesis_hash: Digest,
}

/// What a transaction does. New variants go at the end (the tag is the variant index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Move `amount` from the sender's account to `to`.
    Transfer { to: Address, amount: u64 },
    /// Opaque bytes, for measuring ordering alone (against ordering-only systems such as
    /// asonnino/hotstuff): ordered, stored and committed, but never executed.
    ///
    /// - **Unsigned**: built by [`Transaction::raw`] with an all-zero sender and signature,
    ///   and the client's unique id as the nonce (so equal `data` still hashes differently).
    /// - **Accepted only where genesis enables them** (`params.raw_transactions`): the mempool
    ///   refuses them otherwise, since anyone who can reach the API could fill blocks for free.
    /// - **No effect on any account**: execution checks only the chain binding, then records
    ///   the transaction as applied without reading or changing any account (no nonce, no
    ///   balance, no signature).
    Raw {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A validator-set change with a quorum of the current set's approvals
    /// ([`crate::validators`]). The sender pays nothing but its nonce: any funded account
    /// may carry it, since the approvals, not the sender, authorise the change.
    Governance(crate::validators::Change),
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    pub chain_id: String,
    pub genesis_hash: Digest,
    pub sender: PublicKey,
    /// Must equal the sender account's nonce at execution; the first transaction uses 0.
    pub nonce: u64,
    pub payload: Payload,
}

/// A transaction: body plus the sender's signature over the body's canonical bytes
/// (domain [`Domain::Transaction`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub body: TxBody,
    pub signature: Signature,
}

/// Verifies, as one batch under the one rule, the signatures of the transactions named in
/// `bodies` (index into `txs`, that transaction's [`TxBody::signing_bytes`]); one verdict
/// per entry of `bodies`, in order.
pub fn verify_bodies(txs: &[Transaction], bodies: &[(usize, Vec<u8>)]) -> Vec<bool> {
    let items: Vec<_> = bodies
        .iter()
        .map(|(i, b)| {
            let t = &txs[*i];
            (
                Domain::Transaction,
                b.as_slice(),
                t.body.sender,
                t.signature,
            )
        })
        .collect();
    crypto::verify_batch(&items)
}

/// A transaction's encoding is its body's followed by the signature's fixed 64 bytes.
const SIGNATURE_ENCODED_LEN: usize = 64;

/// [`Transaction::hash`] from the body's canonical bytes.
fn hash_signing_bytes(body: &[u8]) -> Digest {
    let mut h = Hasher::new();
    h.part(b"cairn/tx/v1").part(body);
    h.finish()
}

impl TxBody {
    /// The canonical bytes that are signed and hashed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

impl Transaction {
    /// Builds and signs a transaction.
    pub fn sign(
        key: &SecretKey,
        chain: &ChainBinding,
        nonce: u64,
        payload: Payload,
    ) -> Transaction {
        let body = TxBody {
            chain_id: chain.chain_id.clone(),
            genesis_hash: chain.genesis_hash,
            sender: key.public(),
            nonce,
            payload,
        };
        let signature = key.sign(Domain::Transaction, &body.signing_bytes());
        Transaction { body, signature }
    }

    /// An unsigned raw transaction carrying `data` ([`Payload::Raw`]). `id` becomes the nonce:
    /// the client's unique number for it, so two raw transactions with equal `data` still
    /// have different hashes.
    pub fn raw(chain: &ChainBinding, id: u64, data: Vec<u8>) -> Transaction {
        let body = TxBody {
            chain_id: chain.chain_id.clone(),
            genesis_hash: chain.genesis_hash,
            sender: RAW_SENDER,
            nonce: id,
            payload: Payload::Raw { data },
        };
        Transaction {
            body,
            signature: RAW_SIGNATURE,
        }
    }

    /// Whether this is a raw transaction ([`Payload::Raw`]): unsigned, never executed.
    pub fn is_raw(&self) -> bool {
        matches!(self.body.payload, Payload::Raw { .. })
    }

    /// The transaction's identity: sha256 over the signed body (not the signature), so it is
    /// fixed before signing and a resubmission of the same body is recognised as the same
    /// transaction (the idempotency key for clients).
    pub fn hash(&self) -> Digest {
        hash_signing_bytes(&self.body.signing_bytes())
    }

    /// The hash and the encoded size ([`Transaction::encode`]'s length) from one encoding of
    /// the body: what a validator computes once, where a transaction enters it, and carries
    /// through its pool, batches, blocks and receipts.
    pub fn hash_and_size(&self) -> (Digest, usize) {
        let (_, hash, size) = self.signing_bytes_hash_size();
        (hash, size)
    }

    /// The body's canonical bytes (what the signature covers), the hash and the encoded size,
    /// from one encoding: for a stage that both hashes and verifies.
    pub fn signing_bytes_hash_size(&self) -> (Vec<u8>, Digest, usize) {
        let body = self.body.signing_bytes();
        let hash = hash_signing_bytes(&body);
        let size = body.len() + SIGNATURE_ENCODED_LEN;
        (body, hash, size)
    }

    pub fn sender_address(&self) -> Address {
        Address::of(&self.body.sender)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Parses exactly one transaction of at most [`MAX_TX_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Transaction, codec::DecodeError> {
        codec::decode(bytes, MAX_TX_BYTES, "transaction")
    }

    /// Checks the signature under Cairn's one verification rule.
    pub fn verify_signature(&self) -> Result<(), crypto::SignatureError> {
        crypto::verify(
            Domain::Transaction,
            &self.body.signing_bytes(),
            &self.body.sender,
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The carried hash and size are exactly what hashing and encoding the whole transaction
    /// give, for signed and raw transactions of several sizes (so a validator that computes
    /// them once never disagrees with one that recomputes them).
    #[test]
    fn hash_and_size_match_hash_and_encoding() {
        let chain = ChainBinding {
            chain_id: "hash-once".into(),
            genesis_hash: crypto::hash(b"g"),
        };
        let key = SecretKey::from_seed([7; 32]);
        let mut txs = Vec::new();
        for n in [0u64, 1, 300, u64::MAX] {
            txs.push(Transaction::sign(
                &key,
                &chain,
                n,
                Payload::Transfer {
                    to: Address::of(&key.public()),
                    amount: n | 1,
                },
            ));
        }
        for len in [0usize, 1, 127, 128, 512, 70_000] {
            txs.push(Transaction::raw(&chain, len as u64, vec![0xab; len]));
        }
        for tx in &txs {
            assert_eq!(tx.hash_and_size(), (tx.hash(), tx.encode().len()));
        }
    }
}
