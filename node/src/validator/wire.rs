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

/// What a Raft state snapshot carries beside its block and accounts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotHead {
    /// The validator set after the snapshot's block (its header names the hash; the
    /// installer checks it).
    pub validators: ledger::validators::ValidatorState,
    /// The Raft configuration at the snapshot's height, as the store keeps it
    /// ([`super::protocol::RAFT_CONFIG_KEY`]); empty if the sender has none to give.
    #[serde(with = "serde_bytes")]
    pub config: Vec<u8>,
}

/// A frame, generic over the protocol's message type `M` (`Wire<hotstuff::Message>` for
/// HotStuff). Frames other than `Consensus` encode the same whatever `M` is; the variant
/// order is the encoding (bincode's enum tag), so do not reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wire<M> {
    /// A message of the consensus instance of a validator-set epoch (issue 21): the receiver
    /// routes by the epoch before it checks anything (an older epoch's messages are dropped,
    /// a later one's held until it gets there).
    Consensus(u64, M),
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
        /// Header certificates (height, encoded `consensus::attest::HeaderCert`) the sender
        /// holds for the last block and for every block that ends a validator-set epoch: a
        /// HotStuff epoch's last block may carry no commit proof of its own, since the
        /// blocks that would prove it belong to the retired instance.
        certs: Vec<(u64, Vec<u8>)>,
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
        /// With the first chunk: what the state alone does not say (the validator set and
        /// Raft's configuration at `height`).
        head: Option<Box<SnapshotHead>>,
        total: u64,
        offset: u64,
        accounts: Vec<(ledger::Address, ledger::Account)>,
    },
    /// Raft: "which validator set are you in?", from a validator its own ledger does not
    /// name yet (a joiner), so that it can reach the current members (`super::raft_set`).
    SetRequest,
    /// The sender's current validator set (Raft; trusted as a crash-fault peer's word).
    SetReply(Box<ledger::validators::ValidatorState>),
    /// The sender's signature on the header it stored at a height (BFT modes).
    HeaderVote(consensus::attest::HeaderVote),
    /// BFT state sync: "which state snapshot can you serve?", from a validator that trusts
    /// the sets up to `epoch` (the offer carries the epoch links after it).
    StateOfferRequest {
        epoch: u64,
    },
    /// The newest height whose header the sender holds a certificate for (`None`: it holds
    /// none it can serve), that header's block and certificate (`consensus::attest`'s
    /// `HeaderCert`, encoded), the leaves of its state tree there, the heights whose state
    /// it keeps (`floor..=tip`): it serves chunks of any of them, and what the asker needs
    /// to check the certificate in a later epoch than its own.
    StateOffer {
        block: Option<Box<ledger::Block>>,
        #[serde(with = "serde_bytes")]
        cert: Vec<u8>,
        leaves: u64,
        floor: u64,
        tip: u64,
        /// The validator set after the offered block (its header names its hash).
        set: Option<Box<ledger::validators::ValidatorState>>,
        /// The epoch links after the asker's epoch, at most
        /// [`super::statesync::OFFER_LINKS`]: the asker walks them to the offered epoch.
        links: Vec<ledger::validators::EpochLink>,
    },
    /// "Send me chunk `index` of your state at `version`."
    StateChunkRequest {
        version: u64,
        index: u64,
    },
    StateChunk(ledger::statesync::StateChunk),
    /// "I do not keep the state at `version`" (pruned, or not reached).
    StateChunkMissing {
        version: u64,
        index: u64,
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

/// A batch's id: sha256, domain-separated, over each transaction's hash and signature in
/// order. The hashes are the ones computed where the transactions entered (hash once), so
/// the id costs 96 bytes of hashing per transaction instead of a re-encoding of the batch.
/// The signatures are included because a transaction's hash covers its body only: two
/// batches that differ in a signature must have different ids, or a Byzantine leader could
/// swap a valid signature for an invalid one under the same id.
pub fn batch_digest_hashed(txs: &[Transaction], hashes: &[Digest]) -> Digest {
    debug_assert_eq!(txs.len(), hashes.len());
    let mut h = crypto::Hasher::new();
    h.part(b"cairn/batch/v2");
    for (tx, hash) in txs.iter().zip(hashes) {
        h.part(hash.as_bytes()).part(&tx.signature.0);
    }
    h.finish()
}

/// [`batch_digest_hashed`], hashing the transactions here.
pub fn batch_digest(txs: &[Transaction]) -> Digest {
    let hashes: Vec<Digest> = txs.iter().map(Transaction::hash).collect();
    batch_digest_hashed(txs, &hashes)
}

/// `Wire::Batch(txs.to_vec()).encode()` without copying the transactions.
pub fn encode_batch_frame(txs: &[Transaction]) -> Vec<u8> {
    // The frame is the variant's tag (bincode: a u32, fixed width) then the sequence.
    let mut frame = codec::encode(&BATCH_TAG);
    frame.extend_from_slice(&codec::encode(txs));
    frame
}

/// `Wire::Batches(batches.iter().map(|b| b.to_vec()).collect()).encode()` without copying.
pub fn encode_batches_frame(batches: &[&[Transaction]]) -> Vec<u8> {
    let mut frame = codec::encode(&BATCHES_TAG);
    frame.extend_from_slice(&codec::encode(batches));
    frame
}

/// `Wire::Batch`'s and `Wire::Batches`' positions in the enum: their tags on the wire.
const BATCH_TAG: u32 = 1;
const BATCHES_TAG: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_frame_encodes_as_the_enum_does() {
        let chain = ledger::ChainBinding {
            chain_id: "wire".into(),
            genesis_hash: crypto::hash(b"g"),
        };
        for n in [0usize, 1, 3] {
            let txs: Vec<Transaction> = (0..n)
                .map(|i| Transaction::raw(&chain, i as u64, vec![i as u8; 40 * i]))
                .collect();
            assert_eq!(
                encode_batch_frame(&txs),
                Wire::<()>::Batch(txs.clone()).encode()
            );
            let two: [&[Transaction]; 2] = [&txs, &txs[..n / 2]];
            assert_eq!(
                encode_batches_frame(&two),
                Wire::<()>::Batches(vec![txs.clone(), txs[..n / 2].to_vec()]).encode()
            );
        }
    }

    #[test]
    fn batch_id_covers_order_hashes_and_signatures() {
        let chain = ledger::ChainBinding {
            chain_id: "wire".into(),
            genesis_hash: crypto::hash(b"g"),
        };
        let key = crypto::SecretKey::from_seed([3; 32]);
        let to = ledger::Address::of(&key.public());
        let pay =
            |n| Transaction::sign(&key, &chain, n, ledger::Payload::Transfer { to, amount: 1 });
        let (a, b) = (pay(0), pay(1));
        let base = batch_digest(&[a.clone(), b.clone()]);
        assert_ne!(base, batch_digest(&[b.clone(), a.clone()]), "order");
        assert_ne!(base, batch_digest(std::slice::from_ref(&a)), "length");
        let mut forged = b.clone();
        forged.signature.0[0] ^= 1;
        assert_eq!(forged.hash(), b.hash(), "the hash covers the body only");
        assert_ne!(base, batch_digest(&[a.clone(), forged]), "signature");
        let hashes = [a.hash(), b.hash()];
        assert_eq!(base, batch_digest_hashed(&[a, b], &hashes));
    }
}
