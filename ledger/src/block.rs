//! Blocks: a header that is hashed, the ordered transactions, and the consensus proof.

use crate::merkle::merkle_root;
use crate::tx::Transaction;
use crypto::{Digest, Hasher, PublicKey, codec};
use serde::{Deserialize, Serialize};

/// Largest encoded block accepted from anywhere (store, network).
pub const MAX_BLOCK_BYTES: u64 = 64 << 20;

/// The hashed part of a block. Height 1 is the first block; its parent is the genesis hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub height: u64,
    /// Hash of the block at `height - 1`, or the genesis hash for height 1.
    pub parent: Digest,
    /// Merkle root (see [`crate::merkle_root`]) over the transaction hashes, in block order.
    pub tx_root: Digest,
    /// State root after executing this block's transactions.
    pub state_root: Digest,
    /// Hash of the validator state after this block ([`crate::validators::ValidatorState`]):
    /// the header of an epoch's last block names the next set, and that of the block that
    /// accepted a change names the pending change. A header certificate proves it.
    pub validators: Digest,
    /// Consensus key of the validator that proposed the batch (HotStuff leader, PBFT primary,
    /// Raft leader).
    pub proposer: PublicKey,
    /// HotStuff view, PBFT view, or Raft term in which the block was ordered.
    pub view: u64,
    /// Milliseconds since the Unix epoch, as proposed by the proposer. Informational: no rule
    /// depends on it.
    pub timestamp_ms: u64,
}

/// A committed block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
    /// The consensus proof that this block was committed, encoded by the protocol that
    /// produced it (a quorum certificate, 2f+1 PBFT commits, or a Raft leader signature).
    /// Not covered by the block hash: the proof signs the block, not the other way round.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// How `txs` split into the consensus batches the certificate names, in order (empty if
    /// not recorded). Not covered by the hash; lets a validator serve the block to one that
    /// is catching up, which checks each batch against the digests the certificate signs.
    pub batch_sizes: Vec<u32>,
}

impl BlockHeader {
    /// sha256 over the canonical header bytes, domain-separated.
    pub fn hash(&self) -> Digest {
        let mut h = Hasher::new();
        h.part(b"cairn/block/v1").part(&codec::encode(self));
        h.finish()
    }
}

impl Block {
    pub fn hash(&self) -> Digest {
        self.header.hash()
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Block, codec::DecodeError> {
        codec::decode(bytes, MAX_BLOCK_BYTES, "block")
    }

    /// Checks that the header's tx_root matches the transactions.
    pub fn tx_root_matches(&self) -> bool {
        tx_root(&self.txs) == self.header.tx_root
    }
}

/// The Merkle root over the transactions' hashes.
pub fn tx_root(txs: &[Transaction]) -> Digest {
    let hashes: Vec<Digest> = txs.iter().map(Transaction::hash).collect();
    merkle_root(&hashes)
}
