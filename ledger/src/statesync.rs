//! State sync, the part that needs no network: a state snapshot is the account tree's leaves
//! at one version, in key-hash order, cut into fixed chunks of [`CHUNK_LEAVES`] leaves. Any
//! validator that holds the version serves chunk `k` ([`serve_chunk`]) with a range proof
//! for its last leaf, so chunk `k` is the same bytes from every honest peer and a syncing
//! validator can ask different peers for different chunks.
//!
//! [`Fetch`] is the syncing side, a state machine that does no I/O: given a version and the
//! root a certificate proved for it, it says which peer to ask for which chunk (a window of
//! requests spread over the peers, re-asked on timeout), buffers chunks that arrive out of
//! order (at most the window), and feeds them in order to `jmt`'s restore, which checks each
//! chunk with its range proof against the root **before** it is kept. A chunk that fails is
//! dropped, its sender is excluded from the rest of the sync and reported, and the chunk is
//! asked of another peer; the restore is rebuilt from the chunks already verified, because
//! `jmt` changes its state before it verifies. Nothing a peer sends can make it hold more
//! than the window of chunks of at most [`CHUNK_LEAVES`] leaves each, plus the verified
//! snapshot, whose size the certified version bounds (and [`MAX_LEAVES`] caps).

use crate::tree::{MemTreeStore, VALUE_BYTES, decode_value, key_hash};
use crate::{Account, Address};
use crypto::Digest;
use jmt::proof::SparseMerkleRangeProof;
use jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use jmt::storage::{NodeBatch, TreeReader, TreeWriter};
use jmt::{KeyHash, RootHash, Sha256Jmt, Version};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Leaves per chunk: 4,096 × (32 + 36) bytes, about 280 KB on the wire.
pub const CHUNK_LEAVES: u64 = 4096;
/// Leaves a snapshot may claim, at most (about 700 MB of verified state while it is pulled).
pub const MAX_LEAVES: u64 = 10_000_000;
/// A range proof's encoded size, at most (256 siblings of 33 bytes and a length).
pub const MAX_RANGE_PROOF_BYTES: usize = 16 * 1024;
/// Chunk requests out at once, at most (the out-of-order buffer is no larger).
pub const MAX_WINDOW: usize = 16;

/// Chunk `index` of the snapshot at `version`: leaves `index * CHUNK_LEAVES ..` in key-hash
/// order, and the borsh bytes of the range proof of the last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChunk {
    pub version: u64,
    pub index: u64,
    pub leaves: Vec<Leaf>,
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

/// One leaf: its key hash and its value ([`crate::tree::encode_value`]'s bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    pub key: Digest,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Why a chunk was refused, or why a sync cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("chunk {index} is for version {got}, not {want}")]
    Version { index: u64, got: u64, want: u64 },
    #[error("chunk {index} has {got} leaves, not the {want} its place in the snapshot needs")]
    Leaves { index: u64, got: usize, want: u64 },
    #[error("chunk {index} has a malformed leaf: {why}")]
    Leaf { index: u64, why: String },
    #[error("chunk {index}'s range proof is {bytes} bytes, more than {MAX_RANGE_PROOF_BYTES}")]
    ProofSize { index: u64, bytes: usize },
    #[error("chunk {index} does not verify against the snapshot's root: {why}")]
    Proof { index: u64, why: String },
    #[error("the snapshot claims {0} leaves, outside 1..={MAX_LEAVES}")]
    Size(u64),
    #[error("the restored tree's root is {got}, not the certified {want}")]
    Root { got: Digest, want: Digest },
    #[error("restoring the tree: {0}")]
    Tree(String),
}

/// Serves chunk `index` of the tree at `version` (`None`: the snapshot has fewer chunks).
pub fn serve_chunk<R: TreeReader>(
    reader: Arc<R>,
    version: Version,
    index: u64,
) -> Result<Option<StateChunk>, SyncError> {
    let tree_err = |e: anyhow::Error| SyncError::Tree(format!("{e:#}"));
    let start = index
        .checked_mul(CHUNK_LEAVES)
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| SyncError::Tree(format!("chunk index {index} is out of range")))?;
    let mut leaves = Vec::new();
    let iter = jmt::JellyfishMerkleIterator::new_by_index(reader.clone(), version, start)
        .map_err(tree_err)?;
    for item in iter.take(CHUNK_LEAVES as usize) {
        let (key, value) = item.map_err(tree_err)?;
        leaves.push(Leaf {
            key: Digest(key.0),
            value,
        });
    }
    let Some(last) = leaves.last() else {
        return Ok(None);
    };
    let proof = Sha256Jmt::new(reader.as_ref())
        .get_range_proof(KeyHash(last.key.0), version)
        .map_err(tree_err)?;
    let proof = borsh::to_vec(&proof).map_err(|e| SyncError::Tree(e.to_string()))?;
    Ok(Some(StateChunk {
        version,
        index,
        leaves,
        proof,
    }))
}

/// The leaves in the tree at `version` (what a snapshot offer announces).
pub fn leaf_count<R: TreeReader>(reader: &R, version: Version) -> Result<u64, SyncError> {
    Sha256Jmt::new(reader)
        .get_leaf_count(version)
        .map(|n| n as u64)
        .map_err(|e| SyncError::Tree(format!("{e:#}")))
}

/// A restore target that keeps nothing: the restore's nodes are only needed for the root
/// at the end, which [`Restore`] computes itself from the verified leaves.
#[derive(Default)]
struct Sink(MemTreeStore);

impl TreeWriter for Sink {
    fn write_node_batch(&self, batch: &NodeBatch) -> anyhow::Result<()> {
        self.0.write_nodes(batch);
        Ok(())
    }
}

/// The verified part of a snapshot and `jmt`'s restore over it.
struct Restore {
    version: Version,
    root: Digest,
    total: u64,
    /// In order; kept whole because a failed chunk rebuilds the restore from them (their
    /// accounts are decoded once more at the end rather than held twice).
    verified: Vec<StateChunk>,
    store: Arc<Sink>,
    inner: JellyfishMerkleRestore<sha2::Sha256>,
}

impl Restore {
    fn new(version: Version, root: Digest, total: u64) -> Result<Restore, SyncError> {
        if total == 0 || total > MAX_LEAVES {
            return Err(SyncError::Size(total));
        }
        let store = Arc::new(Sink::default());
        let inner = JellyfishMerkleRestore::new_overwrite(store.clone(), version, RootHash(root.0))
            .map_err(|e| SyncError::Tree(format!("{e:#}")))?;
        Ok(Restore {
            version,
            root,
            total,
            verified: Vec::new(),
            store,
            inner,
        })
    }

    fn chunks(&self) -> u64 {
        self.total.div_ceil(CHUNK_LEAVES)
    }

    fn next(&self) -> u64 {
        self.verified.len() as u64
    }

    /// The accounts of the chunks taken, in key-hash order (each leaf was checked to decode
    /// when its chunk came in).
    fn accounts(&self) -> Vec<(Address, Account)> {
        self.verified
            .iter()
            .flat_map(|c| &c.leaves)
            .filter_map(|l| decode_value(&l.value).ok())
            .collect()
    }

    /// Checks `chunk`'s shape before `jmt` sees it (every leaf decodes to an account whose
    /// address hashes to its key).
    fn check(&self, chunk: &StateChunk) -> Result<(), SyncError> {
        let index = chunk.index;
        if chunk.version != self.version {
            return Err(SyncError::Version {
                index,
                got: chunk.version,
                want: self.version,
            });
        }
        let want = (self.total - index * CHUNK_LEAVES).min(CHUNK_LEAVES);
        if chunk.leaves.len() as u64 != want {
            return Err(SyncError::Leaves {
                index,
                got: chunk.leaves.len(),
                want,
            });
        }
        if chunk.proof.len() > MAX_RANGE_PROOF_BYTES {
            return Err(SyncError::ProofSize {
                index,
                bytes: chunk.proof.len(),
            });
        }
        for leaf in &chunk.leaves {
            if leaf.value.len() != VALUE_BYTES {
                return Err(SyncError::Leaf {
                    index,
                    why: format!("a value of {} bytes, not {VALUE_BYTES}", leaf.value.len()),
                });
            }
            let (address, _) = decode_value(&leaf.value).map_err(|e| SyncError::Leaf {
                index,
                why: e.to_string(),
            })?;
            if key_hash(&address).0 != leaf.key.0 {
                return Err(SyncError::Leaf {
                    index,
                    why: format!("key {} is not the hash of address {address}", leaf.key),
                });
            }
        }
        Ok(())
    }

    /// Takes the next chunk with its shape checked but not its proof (negative controls).
    fn unverified_add(&mut self, chunk: StateChunk) -> Result<(), SyncError> {
        self.check(&chunk)?;
        self.verified.push(chunk);
        Ok(())
    }

    /// Adds the next chunk, verified. On failure nothing of it is kept.
    fn add(&mut self, chunk: StateChunk) -> Result<(), SyncError> {
        debug_assert_eq!(chunk.index, self.next());
        self.check(&chunk)?;
        if let Err(why) = feed(&mut self.inner, &chunk) {
            // `jmt` took the leaves in before the proof failed: start again from what was
            // verified.
            self.rebuild()?;
            return Err(SyncError::Proof {
                index: chunk.index,
                why,
            });
        }
        self.verified.push(chunk);
        Ok(())
    }

    fn rebuild(&mut self) -> Result<(), SyncError> {
        let fresh = Restore::new(self.version, self.root, self.total)?;
        self.store = fresh.store;
        self.inner = fresh.inner;
        for c in &self.verified {
            feed(&mut self.inner, c).map_err(SyncError::Tree)?;
        }
        Ok(())
    }

    /// The snapshot's accounts, once every chunk is in and the tree they build has the root.
    fn finish(self) -> Result<Vec<(Address, Account)>, SyncError> {
        let accounts = self.accounts();
        self.inner
            .finish()
            .map_err(|e| SyncError::Tree(format!("{e:#}")))?;
        let got = Sha256Jmt::new(&self.store.0)
            .get_root_hash(self.version)
            .map_err(|e| SyncError::Tree(format!("{e:#}")))?;
        if got.0 != self.root.0 {
            return Err(SyncError::Root {
                got: Digest(got.0),
                want: self.root,
            });
        }
        Ok(accounts)
    }
}

fn feed(inner: &mut JellyfishMerkleRestore<sha2::Sha256>, c: &StateChunk) -> Result<(), String> {
    let proof: SparseMerkleRangeProof<sha2::Sha256> =
        borsh::from_slice(&c.proof).map_err(|e| format!("the proof does not decode: {e}"))?;
    let leaves = c
        .leaves
        .iter()
        .map(|l| (KeyHash(l.key.0), l.value.clone()))
        .collect();
    inner.add_chunk(leaves, proof).map_err(|e| format!("{e:#}"))
}

/// What [`Fetch`] learned from a reply, for the caller to log and count.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Chunk requests to send now: (peer, chunk index).
    pub ask: Vec<(u16, u64)>,
    /// A peer whose chunk failed verification, and why (it is asked nothing more).
    pub bad: Option<(u16, SyncError)>,
}

/// The syncing side of one snapshot (see the module docs).
pub struct Fetch {
    restore: Restore,
    /// Peers that said they hold the version, in the order they are asked.
    peers: Vec<u16>,
    excluded: BTreeSet<u16>,
    /// Chunks asked and not yet in: index → (peer, when asked).
    asked: BTreeMap<u64, (u16, u64)>,
    /// Chunks in but not yet verified (they came before an earlier one): index → sender.
    buffered: BTreeMap<u64, (u16, StateChunk)>,
    /// Peers that answered "I do not have it" for a chunk: never asked for it again.
    refused: BTreeMap<u64, BTreeSet<u16>>,
    next_ask: u64,
    turn: usize,
    timeout_ms: u64,
    window: usize,
    /// Unverified chunks refused, in total.
    pub bad_chunks: u64,
    /// Negative controls only: take chunks without their proofs and skip the root check.
    unverified: bool,
}

impl Fetch {
    /// A sync of the snapshot at `version`, whose certified root is `root` and which a peer
    /// said has `total` leaves, from `peers`; requests unanswered for `timeout_ms` go to the
    /// next peer.
    pub fn new(
        version: Version,
        root: Digest,
        total: u64,
        peers: Vec<u16>,
        timeout_ms: u64,
    ) -> Result<Fetch, SyncError> {
        let window = (2 * peers.len()).clamp(1, MAX_WINDOW);
        Ok(Fetch {
            restore: Restore::new(version, root, total)?,
            peers,
            excluded: BTreeSet::new(),
            asked: BTreeMap::new(),
            buffered: BTreeMap::new(),
            refused: BTreeMap::new(),
            next_ask: 0,
            turn: 0,
            timeout_ms,
            window,
            bad_chunks: 0,
            unverified: false,
        })
    }

    pub fn version(&self) -> Version {
        self.restore.version
    }

    /// (chunks verified, chunks in the snapshot).
    pub fn progress(&self) -> (u64, u64) {
        (self.restore.next(), self.restore.chunks())
    }

    /// Every chunk is verified: [`Fetch::finish`] next.
    pub fn complete(&self) -> bool {
        self.restore.next() == self.restore.chunks()
    }

    /// No peer is left to ask for some chunk still missing: this sync cannot finish.
    pub fn stuck(&self) -> bool {
        let missing = self.restore.next()..self.restore.chunks();
        missing
            .into_iter()
            .any(|i| self.candidate(i, None).is_none())
    }

    fn candidate(&self, index: u64, not: Option<u16>) -> Option<u16> {
        let refused = self.refused.get(&index);
        let n = self.peers.len();
        (0..n)
            .map(|k| self.peers[(self.turn + k) % n.max(1)])
            .find(|p| {
                !self.excluded.contains(p)
                    && Some(*p) != not
                    && refused.is_none_or(|r| !r.contains(p))
            })
            .or_else(|| {
                // The only peer left is the one that timed out: ask it again.
                not.filter(|p| !self.excluded.contains(p) && refused.is_none_or(|r| !r.contains(p)))
            })
    }

    fn ask(&mut self, now: u64, index: u64, not: Option<u16>, out: &mut Vec<(u16, u64)>) {
        if let Some(p) = self.candidate(index, not) {
            self.turn = self.turn.wrapping_add(1);
            self.asked.insert(index, (p, now));
            out.push((p, index));
        }
    }

    /// Requests to send now: the timed-out ones again (to another peer) and new ones up to
    /// the window.
    pub fn poll(&mut self, now: u64) -> Vec<(u16, u64)> {
        let mut out = Vec::new();
        let late: Vec<(u64, u16)> = self
            .asked
            .iter()
            .filter(|(_, (_, t))| now.saturating_sub(*t) >= self.timeout_ms)
            .map(|(i, (p, _))| (*i, *p))
            .collect();
        for (i, p) in late {
            self.asked.remove(&i);
            self.ask(now, i, Some(p), &mut out);
        }
        while self.next_ask < self.restore.chunks()
            && self.asked.len() + self.buffered.len() < self.window
        {
            let i = self.next_ask;
            self.next_ask += 1;
            if i >= self.restore.next() && !self.buffered.contains_key(&i) {
                self.ask(now, i, None, &mut out);
            }
        }
        out
    }

    /// `from` does not hold the version (pruned past it, or never had it).
    pub fn on_missing(&mut self, now: u64, from: u16, index: u64) -> Vec<(u16, u64)> {
        if self.asked.get(&index).is_some_and(|(p, _)| *p == from) {
            self.asked.remove(&index);
            self.refused.entry(index).or_default().insert(from);
            let mut out = Vec::new();
            self.ask(now, index, Some(from), &mut out);
            out.extend(self.poll(now));
            return out;
        }
        Vec::new()
    }

    /// A chunk from `from`. Only a chunk asked of `from` is taken; it is verified as soon as
    /// every chunk before it is.
    pub fn on_chunk(&mut self, now: u64, from: u16, chunk: StateChunk) -> Step {
        let index = chunk.index;
        if self.asked.get(&index).is_none_or(|(p, _)| *p != from) {
            return Step::default();
        }
        self.asked.remove(&index);
        self.buffered.insert(index, (from, chunk));
        let mut step = Step::default();
        while let Some((sender, c)) = self.buffered.remove(&self.restore.next()) {
            let i = c.index;
            let added = if self.unverified {
                self.restore.unverified_add(c)
            } else {
                self.restore.add(c)
            };
            if let Err(e) = added {
                self.bad_chunks += 1;
                self.excluded.insert(sender);
                // Whatever else it sent or was asked for goes to other peers.
                self.buffered.retain(|_, (p, _)| *p != sender);
                self.asked.retain(|_, (p, _)| *p != sender);
                let again: Vec<u64> = (i..self.next_ask)
                    .filter(|j| !self.buffered.contains_key(j) && !self.asked.contains_key(j))
                    .collect();
                for j in again {
                    self.ask(now, j, Some(sender), &mut step.ask);
                }
                step.bad = Some((sender, e));
                break;
            }
        }
        step.ask.extend(self.poll(now));
        step
    }

    /// The snapshot's accounts, in key-hash order, once [`Fetch::complete`].
    pub fn finish(self) -> Result<Vec<(Address, Account)>, SyncError> {
        if self.unverified {
            return Ok(self.restore.accounts());
        }
        self.restore.finish()
    }

    /// Negative controls only: from now on chunks are taken without their range proofs and
    /// the restored root is not checked (what a sync that trusted its peers would do).
    #[doc(hidden)]
    pub fn trust_peers_unverified(&mut self) {
        self.unverified = true;
    }
}
