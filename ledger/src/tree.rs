//! The authenticated account tree (issue 19), whose root is every header's `state_root`: a
//! Jellyfish Merkle Tree (`jmt` 0.12 over sha256) with one version per height, keyed by
//! [`key_hash`] of the address, whose leaves hold [`encode_value`]'s 36 bytes (address,
//! balance, nonce). Updating it costs O(changed accounts × log n), not O(accounts), and any
//! account — or its absence — at a version can be proven against that version's root
//! ([`prove`], [`AccountProof::verify`]). The design, the redb layout it will be stored in and
//! the pitfalls of `jmt` are in `docs/design/authenticated-state.md`.
//!
//! Storage is behind `jmt`'s [`TreeReader`]; [`MemTreeStore`] keeps it in memory (tests, and
//! the reference the redb store will be checked against).
//!
//! # Rules the callers must keep (from `jmt`'s source)
//! - Versions are consecutive and every version has a root: a block that changes nothing
//!   still calls [`update`] with no changes.
//! - An empty tree has the placeholder root [`EMPTY_ROOT`].

use crate::{Account, Address};
use crypto::Digest;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, RootHash, Sha256Jmt, Version};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// The root of a tree with no account (`jmt`'s placeholder).
pub const EMPTY_ROOT: Digest = Digest(*b"SPARSE_MERKLE_PLACEHOLDER_HASH__");
/// Encoded bytes of a leaf value: address, balance, nonce.
pub const VALUE_BYTES: usize = 36;
/// Largest encoded proof accepted by [`AccountProof::verify`] (a proof has at most 256
/// siblings of at most 65 bytes).
pub const MAX_PROOF_BYTES: usize = 32 * 1024;

/// What went wrong reading or writing the tree.
#[derive(Debug, Clone, thiserror::Error)]
#[error("account tree: {0}")]
pub struct TreeError(String);

impl From<anyhow::Error> for TreeError {
    fn from(e: anyhow::Error) -> TreeError {
        TreeError(format!("{e:#}"))
    }
}

/// Why a proof does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the proof is {0} bytes, more than the {MAX_PROOF_BYTES} a proof can need")]
    TooLarge(usize),
    #[error("the proof does not decode: {0}")]
    Malformed(String),
    #[error("the account value is {0} bytes, not {VALUE_BYTES}")]
    BadValue(usize),
    #[error("the proven account is {got}, not the address asked for ({asked})")]
    OtherAddress { got: Address, asked: Address },
    #[error("the proof does not lead to the expected root: {0}")]
    Mismatch(String),
}

/// The tree key of `address`: sha256 over a domain tag and the address.
pub fn key_hash(address: &Address) -> KeyHash {
    let mut h = crypto::Hasher::new();
    h.part(b"cairn/account/v1").part(&address.0);
    KeyHash(h.finish().0)
}

/// A leaf's value: the address (so a proof names whose account it is), balance and nonce,
/// little-endian.
pub fn encode_value(address: &Address, account: &Account) -> [u8; VALUE_BYTES] {
    let mut v = [0u8; VALUE_BYTES];
    v[..20].copy_from_slice(&address.0);
    v[20..28].copy_from_slice(&account.balance.to_le_bytes());
    v[28..].copy_from_slice(&account.nonce.to_le_bytes());
    v
}

/// The inverse of [`encode_value`].
pub fn decode_value(bytes: &[u8]) -> Result<(Address, Account), ProofError> {
    let v: &[u8; VALUE_BYTES] = bytes
        .try_into()
        .map_err(|_| ProofError::BadValue(bytes.len()))?;
    let mut address = [0u8; 20];
    address.copy_from_slice(&v[..20]);
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[r]);
        u64::from_le_bytes(b)
    };
    Ok((
        Address(address),
        Account {
            balance: word(20..28),
            nonce: word(28..36),
        },
    ))
}

/// Writes `changed` at `version` (the next one after the last written): returns the new root
/// and the nodes and values to store. Accounts are never deleted. Each touched node is
/// hashed once however many of `changed` lie under it.
pub fn update<R: TreeReader>(
    reader: &R,
    version: Version,
    changed: &[(Address, Account)],
) -> Result<(Digest, TreeUpdateBatch), TreeError> {
    let tree = Sha256Jmt::new(reader);
    if changed.is_empty() {
        // Every version needs its root: an empty update copies the last one.
        let (root, batch) = tree.put_value_set(Vec::new(), version)?;
        return Ok((Digest(root.0), batch));
    }
    let set: Vec<(KeyHash, OwnedValue)> = changed
        .iter()
        .map(|(a, acct)| (key_hash(a), encode_value(a, acct).to_vec()))
        .collect();
    let (roots, batch) = tree.batch_put_value_sets(vec![set], None, version)?;
    let root = roots
        .last()
        .ok_or_else(|| TreeError("jmt returned no root for a non-empty update".into()))?;
    Ok((Digest(root.0), batch))
}

/// Every account in the tree at `version`, in key-hash order (a state snapshot).
pub fn accounts_at<R: TreeReader>(
    reader: std::sync::Arc<R>,
    version: Version,
) -> Result<Vec<(Address, Account)>, TreeError> {
    let mut out = Vec::new();
    for item in jmt::JellyfishMerkleIterator::new(reader, version, KeyHash([0; 32]))? {
        let (_, value) = item?;
        out.push(decode_value(&value).map_err(|e| TreeError(format!("a stored leaf: {e}")))?);
    }
    Ok(out)
}

/// The node key of the tree's root at `version` (jmt keeps its constructor private: this is
/// the borsh form of an empty nibble path, a u64 count and a u32 length, both zero).
pub fn root_key(version: Version) -> NodeKey {
    let empty: jmt::storage::NibblePath =
        borsh::from_slice(&[0u8; 12]).expect("twelve zero bytes are the empty nibble path");
    NodeKey::new(version, empty)
}

/// The root at `version`.
pub fn root<R: TreeReader>(reader: &R, version: Version) -> Result<Digest, TreeError> {
    Ok(Digest(Sha256Jmt::new(reader).get_root_hash(version)?.0))
}

/// An account's leaf value at a version (absent: `None`) with the proof that it is, or is
/// not, in the tree under that version's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountProof {
    pub value: Option<Vec<u8>>,
    /// `borsh` bytes of `jmt`'s `SparseMerkleProof<Sha256>`.
    pub proof: Vec<u8>,
}

/// Proves `address`'s account, or its absence, at `version`.
pub fn prove<R: TreeReader>(
    reader: &R,
    address: &Address,
    version: Version,
) -> Result<AccountProof, TreeError> {
    let (value, proof) = Sha256Jmt::new(reader).get_with_proof(key_hash(address), version)?;
    let proof = borsh::to_vec(&proof).map_err(|e| TreeError(format!("encoding a proof: {e}")))?;
    Ok(AccountProof { value, proof })
}

impl AccountProof {
    /// Checks the proof against `root` for `address`: the account it proves (`None`: the
    /// address has no account, i.e. balance and nonce 0), or why it proves nothing.
    pub fn verify(&self, root: Digest, address: &Address) -> Result<Option<Account>, ProofError> {
        if self.proof.len() > MAX_PROOF_BYTES {
            return Err(ProofError::TooLarge(self.proof.len()));
        }
        let proof: jmt::proof::SparseMerkleProof<sha2::Sha256> =
            borsh::from_slice(&self.proof).map_err(|e| ProofError::Malformed(e.to_string()))?;
        let key = key_hash(address);
        let root = RootHash(root.0);
        match &self.value {
            Some(v) => {
                let (got, account) = decode_value(v)?;
                if got != *address {
                    return Err(ProofError::OtherAddress {
                        got,
                        asked: *address,
                    });
                }
                proof
                    .verify_existence(root, key, v)
                    .map_err(|e| ProofError::Mismatch(format!("{e:#}")))?;
                Ok(Some(account))
            }
            None => {
                proof
                    .verify_nonexistence(root, key)
                    .map_err(|e| ProofError::Mismatch(format!("{e:#}")))?;
                Ok(None)
            }
        }
    }
}

/// The tree's nodes and values in memory.
#[derive(Default, Debug)]
pub struct MemTreeStore {
    nodes: RwLock<BTreeMap<NodeKey, Node>>,
    /// Per key, its values by version (a key is written at most once per version).
    values: RwLock<BTreeMap<(KeyHash, Version), Option<OwnedValue>>>,
}

impl MemTreeStore {
    /// Stores what [`update`] returned.
    pub fn write(&self, batch: &TreeUpdateBatch) {
        self.write_nodes(&batch.node_batch);
    }

    /// Stores a restore's nodes and values (see `statesync`).
    pub fn write_nodes(&self, batch: &jmt::storage::NodeBatch) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        for (k, n) in batch.nodes() {
            nodes.insert(k.clone(), n.clone());
        }
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        for ((version, key), v) in batch.values() {
            values.insert((*key, *version), v.clone());
        }
    }

    /// Nodes held (grows with changed accounts × depth per version; pruning comes later).
    pub fn node_count(&self) -> usize {
        self.nodes.read().map_or(0, |n| n.len())
    }
}

impl TreeReader for MemTreeStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        Ok(nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        // The newest value at or below `max_version` (`None` there is a deletion).
        Ok(values
            .range((key_hash, 0)..=(key_hash, max_version))
            .next_back()
            .and_then(|(_, v)| v.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        Ok(nodes
            .iter()
            .filter_map(|(k, n)| match n {
                Node::Leaf(l) => Some((k.clone(), l.clone())),
                _ => None,
            })
            .max_by_key(|(_, l)| l.key_hash()))
    }
}
