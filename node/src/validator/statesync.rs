//! BFT state sync in the validator: a HotStuff or PBFT validator that is more than
//! `state_sync_distance` heights behind, or whose next block its peers have pruned, fetches a
//! verified state snapshot instead of replaying blocks (`ledger::statesync` has the part that
//! needs no network, and why each chunk is verified before it is kept).
//!
//! 1. It asks every peer what it can serve (`StateOfferRequest`). Each answers with a height
//!    whose header it holds a header certificate for — the newest that still leaves the
//!    asker the blocks HotStuff's leader election needs to replay, if kept, else the newest
//!    ([`replay_after_snapshot`]) — with that block, the certificate, its leaf count, the
//!    heights whose state it keeps, the set after it and the epoch links the asker needs.
//! 2. After [`OFFER_WAIT_MS`] (or once every peer answered) it checks each offer: it walks
//!    the offer's epoch links from the set it trusts (its own epoch's), each checked with the
//!    set before it ([`crate::api::epochs::SetChain`], the light client's walk), to the set
//!    of H's epoch; H's header certificate must be signed by 2f+1 of that set on exactly
//!    that block's header, the block's consensus certificate must verify under that epoch,
//!    and the offered set after H must be the one the header names, in an epoch the walk
//!    reached. Offers that fail are counted and logged. It takes the highest verified height
//!    H; every peer that keeps H serves chunks.
//! 3. Chunks come from those peers in parallel, each verified against H's certified state
//!    root before it is kept; a peer that sends a bad one is logged, counted and asked nothing
//!    more in this sync.
//! 4. The state is installed at H (with H's block, certificate and set, and the epoch links
//!    it walked, which it then serves in turn), the core restarts from H — in H's epoch, if
//!    the set changed meanwhile — and block sync takes it to the tip; it then votes again.
//!
//! A sync that stops making progress for [`STALL_MS`] is dropped; the next block-sync answer
//! that shows the gap starts another.

use super::driver::{Driver, Out, Res};
use super::epochs::EpochSet;
use super::protocol::Protocol;
use super::wire::Wire;
use crate::api::epochs::SetChain;
use consensus::ReplicaId;
use consensus::attest::HeaderCert;
use crypto::codec;
use ledger::statesync::{Fetch, StateChunk, serve_chunk};
use ledger::validators::{EpochLink, ValidatorState};
use ledger::{Block, Store};
use std::collections::BTreeMap;

/// How long offers are collected before the best is taken.
pub(super) const OFFER_WAIT_MS: u64 = 500;
/// A chunk request unanswered this long goes to another peer.
const CHUNK_TIMEOUT_MS: u64 = 2_000;
/// A sync with no verified chunk for this long is dropped.
const STALL_MS: u64 = 15_000;
/// A header certificate's encoded size, at most (a signature and key per validator).
const MAX_CERT_BYTES: u64 = 1 << 20;
/// Epoch links one offer carries, at most: with the block, within a frame even for the
/// largest sets. A validator further behind walks them over several syncs (each keeps the
/// links it verified, and asks from the last).
pub(super) const OFFER_LINKS: usize = 8;

#[derive(Default)]
pub(super) struct StateSyncState {
    /// Heights behind the peers that start a sync (0: only when the blocks are pruned).
    pub(super) distance: u64,
    phase: Phase,
}

#[derive(Default)]
enum Phase {
    #[default]
    Idle,
    Offers {
        since_ms: u64,
        offers: BTreeMap<u16, Offer>,
        answered: std::collections::BTreeSet<u16>,
    },
    Fetching(Box<Fetching>),
}

/// A `Wire::StateOffer` that names a block.
pub(super) struct Offer {
    pub(super) block: Block,
    pub(super) cert: Vec<u8>,
    pub(super) leaves: u64,
    pub(super) floor: u64,
    pub(super) tip: u64,
    pub(super) set: Option<Box<ValidatorState>>,
    pub(super) links: Vec<EpochLink>,
}

/// What checking an offer established: the set after its block, and the epoch links walked
/// to reach it.
struct Verified {
    set: ValidatorState,
    links: Vec<EpochLink>,
}

struct Fetching {
    fetch: Fetch,
    block: Block,
    cert: Vec<u8>,
    verified_set: Verified,
    from: u16,
    started: std::time::Instant,
    progress_ms: u64,
    verified: u64,
}

impl StateSyncState {
    pub(super) fn active(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }
}

impl<P: Protocol> Driver<P> {
    /// Sets how far behind (heights) this validator starts a state sync (config
    /// `state_sync_distance`; 0: only when its peers pruned the blocks it needs).
    pub fn use_state_sync_distance(&mut self, distance: u64) {
        self.statesync.distance = distance;
    }

    /// Whether a block-sync answer (`blocks` non-empty or not, the peer at `tip`) shows a gap
    /// that only a state snapshot closes, or one wider than the distance.
    pub(super) fn wants_state_sync(&self, got_blocks: bool, tip: u64) -> bool {
        let height = self.ledger.height();
        let d = self.statesync.distance;
        tip > height && (!got_blocks || (d > 0 && tip - height > d))
    }

    /// Starts a state sync: asks every peer for an offer.
    pub(super) fn start_state_sync(&mut self, now: u64, tip: u64) -> Vec<Out> {
        if self.statesync.active() {
            return Vec::new();
        }
        tracing::info!(
            height = self.ledger.height(),
            peers_at = tip,
            "far behind (or the blocks we need are pruned): starting a state sync"
        );
        self.statesync.phase = Phase::Offers {
            since_ms: now,
            offers: BTreeMap::new(),
            answered: Default::default(),
        };
        let epoch = self.trusted_epoch();
        vec![Out::Broadcast(
            Wire::<P::Message>::StateOfferRequest { epoch }.encode(),
        )]
    }

    /// The newest epoch this validator can check certificates of: its ledger's, or a later
    /// one whose link it keeps (an earlier sync verified it).
    fn trusted_epoch(&self) -> u64 {
        let own = self.ledger.validators().epoch;
        match self.ledger.store().epoch_links(own) {
            Ok(links) => links.last().map_or(own, |l| l.next.epoch),
            Err(_) => own,
        }
    }

    /// Answers an offer request: a certified height whose state this validator keeps (see
    /// step 1 of the module docs), with the set after it and the epoch links after the
    /// asker's `epoch`.
    pub(super) fn answer_state_offer(&mut self, from: ReplicaId, epoch: u64) -> Res {
        let store = self.ledger.store();
        let tip = store.height()?;
        let floor = store.floors()?.history;
        let none = Wire::<P::Message>::StateOffer {
            block: None,
            cert: Vec::new(),
            leaves: 0,
            floor,
            tip,
            set: None,
            links: Vec::new(),
        };
        // Not the newest certified height but one that leaves the asker enough blocks to
        // replay for HotStuff's leader election (its history of recent activity), if kept.
        let lowest = floor.max(1);
        let aim = tip.saturating_sub(replay_after_snapshot(self.committee.n()));
        let found = match store.latest_header_cert(aim)? {
            Some((h, cert)) if h >= lowest => Some((h, cert)),
            _ => store.latest_header_cert(tip)?,
        };
        let offer = match found {
            Some((h, cert)) if h >= lowest => match store.block(h)? {
                Some(block) => {
                    let leaves = ledger::statesync::leaf_count(&store.tree_snapshot()?, h);
                    match leaves {
                        Ok(leaves) => {
                            let mut links = store.epoch_links(epoch)?;
                            links.truncate(OFFER_LINKS);
                            Wire::<P::Message>::StateOffer {
                                block: Some(Box::new(block)),
                                cert,
                                leaves,
                                floor,
                                tip,
                                set: store.validators_at(h)?.map(Box::new),
                                links,
                            }
                        }
                        Err(_) => none,
                    }
                }
                None => none,
            },
            _ => none,
        };
        Ok(vec![Out::Send(from, offer.encode())])
    }

    /// A peer's offer (`None`: it has none to serve), while offers are being collected.
    pub(super) fn on_state_offer(
        &mut self,
        now: u64,
        from: ReplicaId,
        offer: Option<Offer>,
    ) -> Res {
        let Phase::Offers {
            offers, answered, ..
        } = &mut self.statesync.phase
        else {
            return Ok(Vec::new());
        };
        answered.insert(from.0);
        if let Some(o) = offer {
            offers.insert(from.0, o);
        }
        if answered.len() + 1 >= self.committee.n() {
            return self.choose_offer(now);
        }
        Ok(Vec::new())
    }

    /// Checks an offer (see the module docs): the set after its block and the links walked
    /// to it, or why not.
    fn check_offer(&self, o: &Offer) -> Result<Verified, String> {
        let h = o.block.header.height;
        let genesis = self.ledger.chain().genesis_hash;
        let cert: HeaderCert = codec::decode(&o.cert, MAX_CERT_BYTES, "header certificate")
            .map_err(|e| e.to_string())?;
        let after = o.set.as_ref().ok_or("the offer carries no validator set")?;
        if o.links.len() > OFFER_LINKS {
            return Err(format!("{} epoch links in one offer", o.links.len()));
        }
        // The walk starts from this validator's own epoch.
        let vs = self.ledger.validators();
        let own = EpochSet::of(vs, &genesis, &self.epochs.genesis_committee)
            .map_err(|e| e.to_string())?;
        let start = ValidatorState {
            pending: None,
            ..vs.clone()
        };
        let mut chain = SetChain::new(start, own.committee.clone(), genesis);
        let kept = self
            .ledger
            .store()
            .epoch_links(vs.epoch)
            .map_err(|e| e.to_string())?;
        let mut walked = Vec::new();
        for (i, l) in kept.iter().chain(&o.links).enumerate() {
            if l.next.epoch <= chain.latest().state.epoch {
                continue;
            }
            chain.extend(l).map_err(|e| e.to_string())?;
            if i >= kept.len() {
                walked.push(l.clone());
            }
        }
        // Verified links are kept even if the offer fails below: a validator more than
        // `OFFER_LINKS` epochs behind gets further with every sync.
        if !walked.is_empty() {
            self.ledger
                .store()
                .put_epoch_links(&walked)
                .map_err(|e| e.to_string())?;
        }
        chain
            .check_set_after(&o.block.header, after)
            .map_err(|e| e.to_string())?;
        let at = &chain.at(h).state;
        let set = if at.epoch == own.epoch {
            own
        } else {
            EpochSet::of(at, &genesis, &self.epochs.genesis_committee).map_err(|e| e.to_string())?
        };
        cert.verify(&set.committee, &genesis, h, &o.block.hash())
            .map_err(|e| format!("header certificate: {e}"))?;
        let certified = P::certified(&o.block.certificate, &set.committee, &set.anchor)
            .ok_or("the block's consensus certificate does not verify")?;
        if certified.height.is_some_and(|c| c != h) {
            return Err(format!(
                "the consensus certificate is for another height than {h}"
            ));
        }
        if o.leaves == 0 || o.leaves > ledger::statesync::MAX_LEAVES {
            return Err(format!("a leaf count of {}", o.leaves));
        }
        Ok(Verified {
            set: (**after).clone(),
            links: walked,
        })
    }

    /// Takes the highest verified offer above our height and starts fetching its state.
    fn choose_offer(&mut self, now: u64) -> Res {
        let Phase::Offers { offers, .. } = std::mem::take(&mut self.statesync.phase) else {
            return Ok(Vec::new());
        };
        let height = self.ledger.height();
        let mut best: Option<(u16, Offer, Verified)> = None;
        let mut holders: Vec<(u16, u64, u64)> = Vec::new();
        for (peer, o) in offers {
            holders.push((peer, o.floor, o.tip));
            let v = match self.check_offer(&o) {
                Ok(v) => v,
                Err(why) => {
                    self.stats.bad_state_offers += 1;
                    tracing::warn!(peer, why, "state offer refused");
                    continue;
                }
            };
            let h = o.block.header.height;
            if h > height
                && best
                    .as_ref()
                    .is_none_or(|(_, b, _)| h > b.block.header.height)
            {
                best = Some((peer, o, v));
            }
        }
        let Some((from, o, verified_set)) = best else {
            tracing::info!("no verified state offer above our height; block sync goes on");
            return Ok(Vec::new());
        };
        let h = o.block.header.height;
        let peers: Vec<u16> = holders
            .iter()
            .filter(|(_, floor, tip)| *floor <= h && h <= *tip)
            .map(|(p, _, _)| *p)
            .collect();
        let fetch = match Fetch::new(
            h,
            o.block.header.state_root,
            o.leaves,
            peers.clone(),
            CHUNK_TIMEOUT_MS,
        ) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(peer = from, error = %e, "state offer refused");
                return Ok(Vec::new());
            }
        };
        tracing::info!(
            height = h,
            leaves = o.leaves,
            from = ?peers,
            "fetching the state at a certified height"
        );
        let mut f = Box::new(Fetching {
            fetch,
            block: o.block,
            cert: o.cert,
            verified_set,
            from,
            started: std::time::Instant::now(),
            progress_ms: now,
            verified: 0,
        });
        let asks = f.fetch.poll(now);
        self.statesync.phase = Phase::Fetching(f);
        Ok(chunk_requests::<P>(asks, h))
    }

    /// Serves chunk `index` of the state at `version`, or says it is not kept.
    pub(super) fn answer_state_chunk(&mut self, from: ReplicaId, version: u64, index: u64) -> Res {
        let store = self.ledger.store();
        let missing = Wire::<P::Message>::StateChunkMissing { version, index };
        let snap = store.tree_snapshot()?;
        if version < snap.floor.max(1) || version > store.height()? {
            return Ok(vec![Out::Send(from, missing.encode())]);
        }
        let frame = match serve_chunk(std::sync::Arc::new(snap), version, index) {
            Ok(Some(chunk)) => {
                self.stats.snapshot_chunks_served += 1;
                Wire::<P::Message>::StateChunk(chunk)
            }
            Ok(None) => missing,
            Err(e) => {
                tracing::debug!(peer = from.0, version, index, error = %e, "state chunk");
                missing
            }
        };
        Ok(vec![Out::Send(from, frame.encode())])
    }

    pub(super) fn on_state_chunk_missing(
        &mut self,
        now: u64,
        from: ReplicaId,
        version: u64,
        index: u64,
    ) -> Res {
        let Phase::Fetching(f) = &mut self.statesync.phase else {
            return Ok(Vec::new());
        };
        if f.fetch.version() != version {
            return Ok(Vec::new());
        }
        let asks = f.fetch.on_missing(now, from.0, index);
        Ok(chunk_requests::<P>(asks, version))
    }

    pub(super) fn on_state_chunk(&mut self, now: u64, from: ReplicaId, chunk: StateChunk) -> Res {
        let Phase::Fetching(f) = &mut self.statesync.phase else {
            return Ok(Vec::new());
        };
        let version = f.fetch.version();
        if chunk.version != version {
            return Ok(Vec::new());
        }
        let step = f.fetch.on_chunk(now, from.0, chunk);
        if let Some((peer, why)) = &step.bad {
            self.stats.bad_state_chunks += 1;
            tracing::warn!(
                peer,
                height = version,
                error = %why,
                "a state chunk failed verification; that peer is asked nothing more in this sync"
            );
        }
        let (done, _) = f.fetch.progress();
        if done > f.verified {
            f.verified = done;
            f.progress_ms = now;
        }
        let mut out = chunk_requests::<P>(step.ask, version);
        if f.fetch.complete() {
            out.extend(self.install_synced_state(now)?);
        }
        Ok(out)
    }

    /// On the tick: gives up a sync that stopped, re-asks late chunks, ends offer collection.
    pub(super) fn poll_state_sync(&mut self, now: u64) -> Res {
        match &mut self.statesync.phase {
            Phase::Idle => Ok(Vec::new()),
            Phase::Offers { since_ms, .. } => {
                if now.saturating_sub(*since_ms) >= OFFER_WAIT_MS {
                    self.choose_offer(now)
                } else {
                    Ok(Vec::new())
                }
            }
            Phase::Fetching(f) => {
                if f.fetch.complete() {
                    return self.install_synced_state(now);
                }
                if f.fetch.stuck() || now.saturating_sub(f.progress_ms) >= STALL_MS {
                    tracing::warn!(
                        height = f.fetch.version(),
                        verified = f.verified,
                        "state sync stopped making progress; dropping it (block sync retries)"
                    );
                    self.statesync.phase = Phase::Idle;
                    return Ok(Vec::new());
                }
                let version = f.fetch.version();
                let asks = f.fetch.poll(now);
                Ok(chunk_requests::<P>(asks, version))
            }
        }
    }

    /// Every chunk is in: installs the state at the snapshot's height, restarts the core from
    /// it and asks for the blocks after it. Waits (the next tick retries) while blocks are
    /// still being stored.
    fn install_synced_state(&mut self, now: u64) -> Res {
        if self.unstored > 0 || !self.commits.is_empty() {
            return Ok(Vec::new());
        }
        let Phase::Fetching(f) = std::mem::take(&mut self.statesync.phase) else {
            return Ok(Vec::new());
        };
        let Fetching {
            fetch,
            block,
            cert,
            verified_set,
            from,
            started,
            ..
        } = *f;
        let h = block.header.height;
        if h <= self.ledger.height() {
            tracing::info!(
                height = h,
                "caught up by blocks meanwhile; state sync dropped"
            );
            return Ok(Vec::new());
        }
        let chunks = fetch.progress().1;
        let bad = fetch.bad_chunks;
        let accounts = match fetch.finish() {
            Ok(a) => a,
            Err(e) => {
                self.stats.bad_state_chunks += 1;
                tracing::warn!(height = h, error = %e, "state sync refused at the end");
                return Ok(Vec::new());
            }
        };
        let n = accounts.len();
        let begun = std::time::Instant::now();
        // The links walked to H's epoch, kept (they were verified) so this validator serves
        // them in turn; then the state with the set the offer's header names.
        let Verified { set, links } = verified_set;
        let epoch = set.epoch;
        self.ledger.store().put_epoch_links(&links)?;
        if let Err(e) = self.ledger.install_snapshot(block, accounts, set) {
            if matches!(e, ledger::LedgerError::Snapshot(_)) {
                tracing::warn!(height = h, error = %e, "state snapshot refused");
                return Ok(Vec::new());
            }
            return Err(e.into());
        }
        self.ledger.store().commit_with_certs(&[], &[(h, cert)])?;
        self.stats.fsync(begun);
        self.stats.state_syncs += 1;
        let ledger = &self.ledger;
        self.mempool.resync(|a| ledger.account_hint(a));
        tracing::info!(
            height = h,
            accounts = n,
            epoch,
            chunks,
            bad_chunks = bad,
            seconds = started.elapsed().as_secs_f64(),
            "state sync installed a verified snapshot; block sync continues from it"
        );
        let mut out = self.restart_core(now)?;
        out.push(Out::Send(
            ReplicaId(from),
            Wire::<P::Message>::BlocksRequest { from: h + 1 }.encode(),
        ));
        Ok(out)
    }
}

/// Blocks an asker replays after a snapshot, when its peers keep them: the committed
/// history a restarted HotStuff core reads for leader election (`HotStuffProtocol::build`).
/// A validator synced to the very tip would elect leaders from too little history and
/// disagree with its peers about whose proposal to vote for — harmless for safety, but its
/// vote is lost until it has committed that many blocks itself, and with f peers down the
/// chain waits for the election's stall fallback. Measured in `light_client.rs` (simulated
/// time for 5 blocks once another validator stops after the sync): a joiner 3.5 s with the
/// replay, 33 s without; a wiped validator 13 s with it, no 5 blocks in 60 s without.
fn replay_after_snapshot(n: usize) -> u64 {
    use consensus::hotstuff::election;
    election::window(n) as u64 + election::LAG + 8
}

fn chunk_requests<P: Protocol>(asks: Vec<(u16, u64)>, version: u64) -> Vec<Out> {
    asks.into_iter()
        .map(|(p, index)| {
            Out::Send(
                ReplicaId(p),
                Wire::<P::Message>::StateChunkRequest { version, index }.encode(),
            )
        })
        .collect()
}
