//! What validators send each other: consensus messages and transaction batches.

use crypto::{Digest, codec};
use ledger::Transaction;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest frame a validator accepts (checked by the transport before reading, and by the
/// decoder's limit).
pub const MAX_WIRE_BYTES: u64 = 16 << 20;
/// Batches per request or response, at most.
pub const MAX_BATCHES_PER_MESSAGE: usize = 64;
/// Committed blocks per sync response, at most (fewer if they are large).
pub const MAX_BLOCKS_PER_MESSAGE: usize = 128;
/// Encoded bytes of the blocks in one sync response, normally at most; up to twice this to
/// reach a proof-bearing block (one block alone may exceed it). Twice it stays below
/// [`MAX_WIRE_BYTES`] for blocks within the genesis size limit.
pub const MAX_BLOCKS_BYTES: usize = 6 << 20;

/// A frame, generic over the protocol's message type `M` (`Wire<hotstuff::Message>` for
/// HotStuff). Frames other than `Consensus` encode the same whatever `M` is; the variant
/// order is the encoding (bincode's enum tag), so do not reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire<M> {
    Consensus(M),
    /// A batch of the sender's clients' transactions; its id is [`batch_digest`].
    Batch(Vec<Transaction>),
    /// "Send me these batches" (they are named by a proposal or a commit).
    BatchRequest(Vec<Digest>),
    Batches(Vec<Vec<Transaction>>),
    /// "Send me your committed blocks from height `from`" (a validator catching up).
    BlocksRequest {
        from: u64,
    },
    /// Committed ledger blocks in height order, with certificates and batch sizes, and the
    /// sender's height. The requester checks them itself (see `Driver::on_blocks`).
    Blocks {
        blocks: Vec<ledger::Block>,
        tip: u64,
    },
    /// "Send me your state snapshot" (Raft's InstallSnapshot, moved outside the core): at a
    /// height of at least `height` from the start (`offset` 0), or, resuming, the snapshot
    /// at exactly `height` from account number `offset`.
    SnapshotRequest {
        height: u64,
        offset: u64,
    },
    /// Accounts `offset..offset+accounts.len()` of the sender's state at `height` (of
    /// `total`, sorted by address); the first chunk carries the block at `height`, whose
    /// certificate and state root the requester checks before installing anything.
    SnapshotChunk {
        height: u64,
        block: Option<Box<ledger::Block>>,
        total: u64,
        offset: u64,
        accounts: Vec<(ledger::Address, ledger::Account)>,
    },
}

impl<M: Serialize> Wire<M> {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
}

impl<M: DeserializeOwned> Wire<M> {
    pub fn decode(bytes: &[u8]) -> Result<Wire<M>, codec::DecodeError> {
        codec::decode(bytes, MAX_WIRE_BYTES, "validator frame")
    }
}

/// A batch's id: sha256 over its canonical bytes, domain-separated.
pub fn batch_digest(txs: &[Transaction]) -> Digest {
    let mut h = crypto::Hasher::new();
    h.part(b"cairn/batch/v1").part(&codec::encode(txs));
    h.finish()
}
