//! The PBFT view-change messages: VIEW-CHANGE and NEW-VIEW, how the new primary re-issues
//! the prepared requests (O from V), and how each is signed and verified.

use super::{Block, CheckpointCert, Invalid, PrePrepare, PreparedCert, check_signers, key_of};
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, Domain, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};

/// VIEW-CHANGE(v+1, n, C, P, i): the sender's stable checkpoint with its proof, and every
/// request it has prepared above it (the highest view's certificate per sequence number).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    pub view: View,
    pub stable: CheckpointCert,
    /// Sorted by sequence number, at most one per number.
    pub prepared: Vec<PreparedCert>,
    pub replica: ReplicaId,
    pub signature: Signature,
}

/// NEW-VIEW(v+1, V, O): `quorum` view changes for `view` and the pre-prepares the new
/// primary re-issues for every sequence number between the highest stable checkpoint in V
/// and the highest prepared request in V (null requests in gaps). Backups recompute O from V
/// ([`NewView::reissue`]) and reject a NEW-VIEW whose O differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    pub view: View,
    /// Sorted by replica, no duplicates.
    pub view_changes: Vec<ViewChange>,
    /// Sorted by sequence number, contiguous.
    pub pre_prepares: Vec<PrePrepare>,
    pub signature: Signature,
}

impl ViewChange {
    fn signed_bytes(&self, genesis: &Digest) -> Vec<u8> {
        let prepared: Vec<(View, u64, Digest)> = self
            .prepared
            .iter()
            .map(|p| (p.view(), p.seq(), p.digest()))
            .collect();
        codec::encode(&(
            genesis,
            self.view,
            self.stable.seq,
            self.stable.state_root,
            prepared,
            self.replica,
        ))
    }

    pub fn new(
        view: View,
        stable: CheckpointCert,
        prepared: Vec<PreparedCert>,
        replica: ReplicaId,
        genesis: &Digest,
        key: &SecretKey,
    ) -> ViewChange {
        let mut vc = ViewChange {
            view,
            stable,
            prepared,
            replica,
            signature: Signature([0; 64]),
        };
        vc.signature = key.sign(Domain::PbftViewChange, &vc.signed_bytes(genesis));
        vc
    }

    /// The signature, the checkpoint proof, and every prepared certificate: for a view below
    /// this one, above the checkpoint and within the water marks (`window` above it), at
    /// most one per sequence number, in order.
    pub fn verify(
        &self,
        c: &Committee,
        genesis: &Digest,
        max_payload: usize,
        window: u64,
        start: &CheckpointCert,
    ) -> Result<(), Invalid> {
        crypto::verify(
            Domain::PbftViewChange,
            &self.signed_bytes(genesis),
            key_of(c, self.replica)?,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(self.replica))?;
        self.stable.verify(c, genesis, start)?;
        let mut prev = self.stable.seq;
        for p in &self.prepared {
            if p.seq() <= prev || p.seq() > self.stable.seq + window {
                return Err(Invalid::Malformed(
                    "view change's prepared certificates out of order or outside the water marks",
                ));
            }
            if p.view() >= self.view {
                return Err(Invalid::Malformed(
                    "prepared certificate not below the new view",
                ));
            }
            p.verify(c, genesis, max_payload)?;
            prev = p.seq();
        }
        Ok(())
    }
}

impl NewView {
    fn signed_bytes(
        genesis: &Digest,
        view: View,
        vcs: &[ViewChange],
        pps: &[PrePrepare],
    ) -> Vec<u8> {
        let vcs: Vec<(ReplicaId, Signature)> =
            vcs.iter().map(|vc| (vc.replica, vc.signature)).collect();
        let pps: Vec<Digest> = pps.iter().map(|p| p.block.digest()).collect();
        codec::encode(&(genesis, view, vcs, pps))
    }

    /// O, computed from V as in Castro & Liskov §4.4: `min_s` is the highest stable
    /// checkpoint in V, `max_s` the highest prepared sequence number; for each n in
    /// (min_s, max_s] the block of the prepared certificate with the highest view, or a null
    /// request. Returns the stable checkpoint to adopt and the blocks, in order. Null blocks
    /// name the new primary and the highest timestamp of a block in V (so every backup gets
    /// the same digest).
    pub fn reissue(view: View, vcs: &[ViewChange], c: &Committee) -> (CheckpointCert, Vec<Block>) {
        let stable = vcs
            .iter()
            .map(|vc| &vc.stable)
            .max_by_key(|s| s.seq)
            .cloned()
            .unwrap_or_else(CheckpointCert::genesis);
        let min_s = stable.seq;
        let mut best: std::collections::BTreeMap<u64, &PreparedCert> = Default::default();
        for p in vcs.iter().flat_map(|vc| &vc.prepared) {
            if p.seq() <= min_s {
                continue;
            }
            match best.get(&p.seq()) {
                Some(b) if b.view() >= p.view() => {}
                _ => {
                    best.insert(p.seq(), p);
                }
            }
        }
        let max_s = best.keys().next_back().copied().unwrap_or(min_s);
        let timestamp = best
            .values()
            .map(|p| p.pre_prepare.block.timestamp_ms)
            .max()
            .unwrap_or(0);
        let primary = c.leader(view);
        let blocks = (min_s + 1..=max_s)
            .map(|n| match best.get(&n) {
                Some(p) => p.pre_prepare.block.clone(),
                None => Block::null(n, primary, timestamp),
            })
            .collect();
        (stable, blocks)
    }

    pub fn new(
        view: View,
        view_changes: Vec<ViewChange>,
        c: &Committee,
        genesis: &Digest,
        key: &SecretKey,
    ) -> NewView {
        let (_, blocks) = NewView::reissue(view, &view_changes, c);
        let pre_prepares: Vec<PrePrepare> = blocks
            .into_iter()
            .map(|b| PrePrepare::new(view, b, genesis, key))
            .collect();
        NewView::sign(view, view_changes, pre_prepares, genesis, key)
    }

    /// Signs a NEW-VIEW with the given O as is, right or wrong (tests and Byzantine
    /// simulations; honest primaries use [`NewView::new`]).
    pub fn sign(
        view: View,
        view_changes: Vec<ViewChange>,
        pre_prepares: Vec<PrePrepare>,
        genesis: &Digest,
        key: &SecretKey,
    ) -> NewView {
        let signature = key.sign(
            Domain::PbftNewView,
            &NewView::signed_bytes(genesis, view, &view_changes, &pre_prepares),
        );
        NewView {
            view,
            view_changes,
            pre_prepares,
            signature,
        }
    }

    /// The new primary's signature; `quorum` valid view changes for this view from distinct
    /// replicas; and O exactly as recomputed from them. Returns the stable checkpoint to
    /// adopt.
    pub fn verify(
        &self,
        c: &Committee,
        genesis: &Digest,
        max_payload: usize,
        window: u64,
        start: &CheckpointCert,
    ) -> Result<CheckpointCert, Invalid> {
        let primary = c.leader(self.view);
        crypto::verify(
            Domain::PbftNewView,
            &NewView::signed_bytes(genesis, self.view, &self.view_changes, &self.pre_prepares),
            key_of(c, primary)?,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(primary))?;
        let entries: Vec<(ReplicaId, ())> = self
            .view_changes
            .iter()
            .map(|vc| (vc.replica, ()))
            .collect();
        check_signers(&entries, c, c.quorum())?;
        for vc in &self.view_changes {
            if vc.view != self.view {
                return Err(Invalid::Malformed(
                    "new view carries a view change for another view",
                ));
            }
            vc.verify(c, genesis, max_payload, window, start)?;
        }
        let (stable, blocks) = NewView::reissue(self.view, &self.view_changes, c);
        if blocks.len() != self.pre_prepares.len()
            || blocks
                .iter()
                .zip(&self.pre_prepares)
                .any(|(b, p)| p.view != self.view || *b != p.block)
        {
            return Err(Invalid::Malformed(
                "new view's re-issued pre-prepares differ from the ones its view changes imply",
            ));
        }
        for p in &self.pre_prepares {
            p.verify(c, genesis, max_payload)?;
        }
        Ok(stable)
    }
}
