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

    #[test]
    fn split_point() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(3), 2);
        assert_eq!(largest_power_of_two_below(4), 2);
        assert_eq!(largest_power_of_two_below(5), 4);
    }
}
