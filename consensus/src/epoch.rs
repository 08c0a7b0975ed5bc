//! Validator-set epochs (issue 21): one consensus instance per epoch, each with its own
//! anchor.

use crypto::{Digest, Hasher};

/// The id a consensus instance starts from, and that its signed messages sign (HotStuff's
/// votes and timeouts; PBFT signs its `genesis` in every slot and checkpoint): the genesis
/// hash for epoch 0; for a later epoch, a hash of the genesis hash, the epoch and `set`, the
/// hash of the validator state the epoch starts with (`ledger::validators::ValidatorState`
/// with no pending change: what the header of the previous epoch's last block names). Every
/// honest replica computes the same anchor from the same committed chain, including one
/// that restored a state snapshot taken later in the epoch.
pub fn epoch_anchor(genesis: &Digest, epoch: u64, set: &Digest) -> Digest {
    if epoch == 0 {
        return *genesis;
    }
    let mut h = Hasher::new();
    h.part(b"cairn/consensus/epoch/v1")
        .part(&genesis.0)
        .part(&epoch.to_le_bytes())
        .part(&set.0);
    h.finish()
}
