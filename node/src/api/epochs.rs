//! `GET /v1/epochs?from=K`: the epoch links after epoch `K` (design note, section 4), and
//! [`SetChain`], the walk a light client runs over them. It starts from the genesis set and
//! checks each link with the set it already trusts: the link's header certificate must be
//! signed by 2f+1 of that set, and the set the link carries must be the one the header
//! names. So a certificate signed by a removed validator's key stops counting at the first
//! epoch without it, and a validator cannot make a wallet trust a set the chain never named.

use super::proof::{VerifyError, unhex};
use super::{ApiError, Ctx, read_store, types::dec};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use consensus::Committee;
use consensus::attest::HeaderCert;
use crypto::{Digest, codec};
use ledger::BlockHeader;
use ledger::validators::{EpochLink, ValidatorState};
use serde::{Deserialize, Serialize};

/// One epoch link, its parts as canonical bytes in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochLinkView {
    /// The epoch the link starts.
    #[serde(with = "dec")]
    pub epoch: u64,
    /// The last height of the epoch before it.
    #[serde(with = "dec")]
    pub height: u64,
    pub header: String,
    pub certificate: String,
    /// The set after `height` (the new epoch's), which the header's `validators` names.
    pub validators: String,
}

/// The answer of `GET /v1/epochs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochsView {
    /// Links for the epochs after `from`, in order.
    pub links: Vec<EpochLinkView>,
    /// More links follow the last: ask again with `from` = its epoch.
    pub more: bool,
}

impl EpochLinkView {
    pub fn of(l: &EpochLink) -> EpochLinkView {
        EpochLinkView {
            epoch: l.next.epoch,
            height: l.header.height,
            header: hex::encode(codec::encode(&l.header)),
            certificate: hex::encode(&l.certificate),
            validators: hex::encode(codec::encode(&l.next)),
        }
    }

    /// The link, decoded (nothing checked yet).
    pub fn decode(&self) -> Result<EpochLink, VerifyError> {
        let part = |s: &str, what: &'static str| -> Result<Vec<u8>, VerifyError> {
            let bytes = unhex(s, what)?;
            if bytes.len() as u64 > crate::store::MAX_LINK_BYTES {
                return Err(VerifyError::LinkDecode {
                    epoch: self.epoch,
                    why: format!("its {what} is {} bytes", bytes.len()),
                });
            }
            Ok(bytes)
        };
        let bad = |e: codec::DecodeError| VerifyError::LinkDecode {
            epoch: self.epoch,
            why: e.to_string(),
        };
        let max = crate::store::MAX_LINK_BYTES;
        let header: BlockHeader =
            codec::decode(&part(&self.header, "header")?, max, "header").map_err(bad)?;
        let next: ValidatorState =
            codec::decode(&part(&self.validators, "validators")?, max, "set").map_err(bad)?;
        Ok(EpochLink {
            header,
            certificate: part(&self.certificate, "certificate")?,
            next,
        })
    }
}

/// Query parameters of `GET /v1/epochs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EpochsQuery {
    /// Links after this epoch (default 0: every link).
    #[serde(default)]
    from: u64,
}

pub(super) async fn epochs(
    State(ctx): State<Ctx>,
    query: Result<Query<EpochsQuery>, QueryRejection>,
) -> Result<Json<EpochsView>, ApiError> {
    let from = query?.0.from;
    let links = read_store(&ctx.api.store, move |s| s.epoch_links(from)).await?;
    Ok(Json(EpochsView {
        more: links.len() == crate::store::MAX_LINKS_PER_READ,
        links: links.iter().map(EpochLinkView::of).collect(),
    }))
}

/// A set the walk trusts.
#[derive(Clone, Debug)]
pub struct TrustedSet {
    pub state: ValidatorState,
    pub committee: Committee,
}

/// The sets trusted so far: genesis, then one per verified link.
#[derive(Clone, Debug)]
pub struct SetChain {
    genesis: Digest,
    sets: Vec<TrustedSet>,
}

impl SetChain {
    /// Trusts only epoch 0: `state` (the genesis set) with `committee` (its keys under the
    /// chain's fault model), on the chain with genesis hash `genesis`.
    pub fn new(state: ValidatorState, committee: Committee, genesis: Digest) -> SetChain {
        SetChain {
            genesis,
            sets: vec![TrustedSet { state, committee }],
        }
    }

    pub fn genesis_hash(&self) -> &Digest {
        &self.genesis
    }

    /// Every trusted set, epoch 0 first.
    pub fn sets(&self) -> &[TrustedSet] {
        &self.sets
    }

    /// The newest trusted set.
    pub fn latest(&self) -> &TrustedSet {
        self.sets.last().expect("a chain holds its genesis set")
    }

    /// The trusted set whose epoch holds `height`: the newest one starting at or below it.
    /// (Whether a newer epoch exists that the walk has not seen is for the caller to check:
    /// the header names the set after it, see [`SetChain::check_set_after`].)
    pub fn at(&self, height: u64) -> &TrustedSet {
        self.sets
            .iter()
            .rev()
            .find(|s| s.state.start_height <= height)
            .unwrap_or(&self.sets[0])
    }

    /// Trusts the next epoch's set if `link` follows the newest trusted set and its
    /// certificate is signed by a quorum of that set.
    pub fn extend(&mut self, link: &EpochLink) -> Result<(), VerifyError> {
        let prev = self.latest();
        let epoch = link.next.epoch;
        link.follows(&prev.state)
            .map_err(|why| VerifyError::Link { epoch, why })?;
        let cert: HeaderCert = codec::decode(
            &link.certificate,
            crate::store::MAX_LINK_BYTES,
            "certificate",
        )
        .map_err(|e| VerifyError::LinkDecode {
            epoch,
            why: e.to_string(),
        })?;
        cert.verify(
            &prev.committee,
            &self.genesis,
            link.header.height,
            &link.header.hash(),
        )
        .map_err(|why| VerifyError::LinkCert { epoch, why })?;
        let keys = link.next.members.iter().map(|m| m.consensus_key).collect();
        let committee = Committee::bft(keys).map_err(|e| VerifyError::LinkDecode {
            epoch,
            why: format!("its set: {e}"),
        })?;
        self.sets.push(TrustedSet {
            state: link.next.clone(),
            committee,
        });
        Ok(())
    }

    /// [`SetChain::extend`] with every link of an answer, in order.
    pub fn walk(&mut self, view: &EpochsView) -> Result<(), VerifyError> {
        for l in &view.links {
            if l.epoch <= self.latest().state.epoch {
                continue;
            }
            self.extend(&l.decode()?)?;
        }
        Ok(())
    }

    /// A certified `header`'s set after it (`after`, from the answer): it must be the one the
    /// header names, and in the epoch the walk trusts for that height (or, for an epoch's
    /// last block, the next one). Otherwise the validator withheld an epoch change, and the
    /// certificate was checked against a set that no longer rules.
    pub fn check_set_after(
        &self,
        header: &BlockHeader,
        after: &ValidatorState,
    ) -> Result<(), VerifyError> {
        if after.hash() != header.validators {
            return Err(VerifyError::SetAfter {
                height: header.height,
            });
        }
        let trusted = self.at(header.height).state.epoch;
        let ends_epoch = after.start_height == header.height + 1;
        if after.epoch == trusted || (ends_epoch && after.epoch == trusted + 1) {
            return Ok(());
        }
        Err(VerifyError::UnwalkedEpoch {
            height: header.height,
            epoch: after.epoch,
            trusted,
        })
    }
}
