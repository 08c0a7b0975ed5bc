//! Epoch links (issue 21, design note section 4): for every epoch after 0, the header of the
//! block that ended the one before, its header certificate, and the set it names
//! ([`ledger::validators::EpochLink`]). `GET /v1/epochs` serves them, so a light client that
//! trusts only genesis can walk to the set that signs any later certificate; state sync
//! walks them the same way.
//!
//! A link is written in the chain file's transaction that completes it: the one that stores
//! the boundary block (if its certificate came first) or the certificate (usually, since a
//! certificate needs the block's votes). Pruning never deletes one, and a state snapshot
//! keeps them, so the walk from genesis always works on every validator that holds them.

use super::{BLOCKS, HEADER_CERTS, MAX_RECORD_BYTES, RedbStore, VALIDATORS};
use consensus::attest::HeaderCert;
use crypto::codec;
use ledger::validators::{EpochLink, ValidatorState};
use ledger::{Block, StoreError};
use redb::{ReadableTable, TableDefinition};

/// Epoch number → encoded [`EpochLink`] that started it.
pub(super) const EPOCH_LINKS: TableDefinition<u64, &[u8]> = TableDefinition::new("epoch_links");
/// Links one answer carries, at most (each holds a set: up to a few hundred KiB for the
/// largest committees).
pub const MAX_LINKS_PER_READ: usize = 64;
/// The largest link accepted from disk or a peer (a set of `MAX_MEMBERS` and a certificate).
pub const MAX_LINK_BYTES: u64 = 1 << 20;

/// In a write transaction: for each of `heights` that ended an epoch and now has both its
/// block and a certificate on that block's header, stores the epoch link if it is missing.
pub(super) fn link_boundaries(
    tx: &redb::WriteTransaction,
    heights: impl IntoIterator<Item = u64>,
) -> Result<(), redb::Error> {
    let sets = tx.open_table(VALIDATORS)?;
    let blocks = tx.open_table(BLOCKS)?;
    let certs = tx.open_table(HEADER_CERTS)?;
    let mut links = tx.open_table(EPOCH_LINKS)?;
    for h in heights {
        let Some(set) = sets.get(h)? else { continue };
        let Ok(next) =
            codec::decode::<ValidatorState>(set.value(), MAX_RECORD_BYTES, "validator state")
        else {
            continue;
        };
        if next.epoch == 0 || next.start_height != h + 1 || links.get(next.epoch)?.is_some() {
            continue;
        }
        let (Some(block), Some(cert)) = (blocks.get(h)?, certs.get(h)?) else {
            continue;
        };
        let Ok(block) = Block::decode(block.value()) else {
            tracing::warn!(
                height = h,
                "an epoch's last block does not decode; no epoch link"
            );
            continue;
        };
        let certificate = cert.value().to_vec();
        let on_header = codec::decode::<HeaderCert>(&certificate, MAX_LINK_BYTES, "certificate")
            .is_ok_and(|c| c.height == h && c.header == block.hash());
        if !on_header {
            continue;
        }
        let link = EpochLink {
            header: block.header,
            certificate,
            next,
        };
        links.insert(link.next.epoch, codec::encode(&link).as_slice())?;
    }
    Ok(())
}

/// [`link_boundaries`] for every stored set that starts an epoch (when a store opens: the
/// table of sets is small, one row per change).
pub(super) fn link_stored_boundaries(tx: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let mut heights = Vec::new();
    for row in tx.open_table(VALIDATORS)?.iter()? {
        let (h, v) = row?;
        let starts = codec::decode::<ValidatorState>(v.value(), MAX_RECORD_BYTES, "set")
            .is_ok_and(|s| s.epoch > 0 && s.start_height == h.value() + 1);
        if starts {
            heights.push(h.value());
        }
    }
    link_boundaries(tx, heights)
}

impl RedbStore {
    /// The stored epoch links for epochs above `after`, in order, at most
    /// [`MAX_LINKS_PER_READ`]. A gap (a link this store never completed) ends the list.
    pub fn epoch_links(&self, after: u64) -> Result<Vec<EpochLink>, StoreError> {
        let raw = self.read(|tx| {
            let t = tx.open_table(EPOCH_LINKS)?;
            let mut out = Vec::new();
            for row in t.range(after.saturating_add(1)..)? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
                if out.len() == MAX_LINKS_PER_READ {
                    break;
                }
            }
            Ok(out)
        })?;
        let mut links = Vec::with_capacity(raw.len());
        for (expect, (epoch, bytes)) in (after.saturating_add(1)..).zip(raw) {
            if epoch != expect {
                break;
            }
            let link: EpochLink = codec::decode(&bytes, MAX_LINK_BYTES, "epoch link")
                .map_err(|e| StoreError::new("a stored epoch link", e))?;
            links.push(link);
        }
        Ok(links)
    }

    /// Stores links a syncing validator verified (state sync walks them before it installs
    /// a snapshot of a later epoch), so that it can serve them in turn.
    pub fn put_epoch_links(&self, verified: &[EpochLink]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(EPOCH_LINKS)?;
            for l in verified {
                if t.get(l.next.epoch)?.is_none() {
                    t.insert(l.next.epoch, codec::encode(l).as_slice())?;
                }
            }
            Ok(())
        })
    }
}
