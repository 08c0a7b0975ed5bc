//! Binary Merkle roots in the style of RFC 6962 (leaf and node hashes domain-separated, the
//! tree split at the largest power of two below the leaf count), so no two different lists
//! of leaves share a root.

use crypto::{Digest, Hasher};

/// Root over `leaves` in order. The empty list has the root `sha256("cairn/merkle/empty")`.
pub fn merkle_root(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => crypto::hash(b"cairn/merkle/empty"),
        1 => {
            let mut h = Hasher::new();
            h.part(&[0]).part(&leaves[0].0);
            h.finish()
        }
        n => {
            let k = largest_power_of_two_below(n);
            let (l, r) = leaves.split_at(k);
            let mut h = Hasher::new();
            h.part(&[1]).part(&merkle_root(l).0).part(&merkle_root(r).0);
            h.finish()
        }
    }
}

fn leaf_hash(leaf: &Digest) -> Digest {
    let mut h = Hasher::new();
    h.part(&[0]).part(&leaf.0);
    h.finish()
}

fn node_hash(l: &Digest, r: &Digest) -> Digest {
    let mut h = Hasher::new();
    h.part(&[1]).part(&l.0).part(&r.0);
    h.finish()
}

/// The audit path of leaf `index` in [`merkle_root`]`(leaves)`: the sibling roots from the
/// leaf's level up to the top. `None` if `index` is out of range.
pub fn merkle_proof(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut i) = (0, leaves.len(), index);
    // Walk down, collecting siblings top first; reversed at the end.
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if i < k {
            path.push(merkle_root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(merkle_root(&leaves[lo..lo + k]));
            lo += k;
            i -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// Whether `path` ([`merkle_proof`]) proves `leaf` at `index` of `count` leaves under
/// `root`. What it proves is inclusion under the root: the root does not commit to the
/// number of leaves, so the position is only as true as the `count` given.
pub fn verify_merkle_proof(
    root: &Digest,
    leaf: &Digest,
    index: u64,
    count: u64,
    path: &[Digest],
) -> bool {
    fn up(leaf: &Digest, index: u64, count: u64, path: &[Digest]) -> Option<Digest> {
        if count == 1 {
            return path.is_empty().then(|| leaf_hash(leaf));
        }
        let k = largest_power_of_two_below(usize::try_from(count).ok()?) as u64;
        let (sibling, rest) = path.split_last()?;
        if index < k {
            Some(node_hash(&up(leaf, index, k, rest)?, sibling))
        } else {
            Some(node_hash(sibling, &up(leaf, index - k, count - k, rest)?))
        }
    }
    // No block holds more than 2^32 transactions, and a path longer than 64 levels cannot
    // belong to any list that fits in memory (this also keeps the split arithmetic in range).
    count <= u64::from(u32::MAX)
        && index < count
        && path.len() <= 64
        && up(leaf, index, count, path).as_ref() == Some(root)
}

fn largest_power_of_two_below(n: usize) -> usize {
    assert!(n > 1);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_differ_for_different_lists() {
        let a = crypto::hash(b"a");
        let b = crypto::hash(b"b");
        let roots = [
            merkle_root(&[]),
            merkle_root(&[a]),
            merkle_root(&[b]),
            merkle_root(&[a, b]),
            merkle_root(&[b, a]),
            merkle_root(&[a, b, a]),
            merkle_root(&[a, a, b]),
        ];
        for i in 0..roots.len() {
            for j in i + 1..roots.len() {
                assert_ne!(roots[i], roots[j], "{i} vs {j}");
            }
        }
    }

    /// Every leaf of lists of 1..=33 leaves proves against the root; another leaf, index or
    /// root does not. (The count is not authenticated by a path: a path proves that the
    /// leaf is under the root, at the position the count and index describe if they are
    /// the true ones.)
    #[test]
    fn audit_paths_prove_each_leaf_and_nothing_else() {
        for n in 1..=33usize {
            let leaves: Vec<Digest> = (0..n).map(|i| crypto::hash(&[i as u8])).collect();
            let root = merkle_root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let path = merkle_proof(&leaves, i).unwrap();
                let (i, n64) = (i as u64, n as u64);
                assert!(
                    verify_merkle_proof(&root, leaf, i, n64, &path),
                    "{i} of {n}"
                );
                assert!(!verify_merkle_proof(
                    &root,
                    &crypto::hash(b"x"),
                    i,
                    n64,
                    &path
                ));
                assert!(!verify_merkle_proof(
                    &crypto::hash(b"r"),
                    leaf,
                    i,
                    n64,
                    &path
                ));
                if n > 1 {
                    assert!(!verify_merkle_proof(&root, leaf, (i + 1) % n64, n64, &path));
                }
            }
            assert!(merkle_proof(&leaves, n).is_none());
        }
    }

    #[test]
    fn split_point() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(3), 2);
        assert_eq!(largest_power_of_two_below(4), 2);
        assert_eq!(largest_power_of_two_below(5), 4);
    }
}
