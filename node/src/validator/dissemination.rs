//! The dissemination stage's half on the validator loop: client transactions into the pool
//! (already hashed and verified by the admission workers), the pool cut into batches by
//! bytes, count or time, batches shared with peers and offered to consensus, peers' batches
//! stored (hashed by the ingress stage, their signatures queued on the admission workers),
//! and proposals held until every batch they name is here.
//!
//! A block is cut by bytes and time, not by a count alone: a batch closes at
//! `batch_max_bytes` or `batch_max_txs` (sized from the genesis `max_block_bytes` and
//! `max_block_txs` divided by the batches a block may carry), or when the batch tick fires
//! (`batch_delay_ms` in config.toml, 10 ms by default); the leader proposes the batches it has as
//! soon as the protocol lets it (never waiting to fill a block), so a block holds at most
//! `max_block_bytes` and waits at most one batch tick plus one consensus step.

use super::Out;
use super::admission::{Admission, Checked, Verified};
use super::batches::Batch;
use super::driver::{Driver, MAX_HELD_PROPOSALS, Res, sample};
use super::execution::STALE_BATCH;
use super::protocol::Protocol;
use super::wire::{MAX_BATCHES_PER_MESSAGE, Wire, encode_batch_frame, encode_batches_frame};
use crate::mempool::{Admitted, Rejected};
use consensus::{Input, ReplicaId};
use crypto::Digest;
use std::sync::Arc;

/// This validator's batches cut and not committed yet: when each was cut (the consensus
/// stage's time) and how many transactions they hold (what holds admission back, see
/// `Driver::backlogged`).
#[derive(Default)]
pub(super) struct OwnBatches {
    at: std::collections::HashMap<Digest, (std::time::Instant, usize)>,
    txs: usize,
}

impl OwnBatches {
    fn cut(&mut self, d: Digest, txs: usize) {
        if let Some((_, old)) = self.at.insert(d, (std::time::Instant::now(), txs)) {
            self.txs -= old;
        }
        self.txs += txs;
    }

    /// When `d` was cut, if it is one of ours; it no longer counts.
    pub(super) fn committed(&mut self, d: &Digest) -> Option<std::time::Instant> {
        let (at, txs) = self.at.remove(d)?;
        self.txs -= txs;
        Some(at)
    }

    /// Stops counting batches cut longer than [`STALE_BATCH`] ago (dropped, or to commit
    /// later without holding admission back).
    fn prune(&mut self) {
        let txs = &mut self.txs;
        self.at.retain(|_, (at, n)| {
            let keep = at.elapsed() < STALE_BATCH;
            if !keep {
                *txs -= *n;
            }
            keep
        });
    }

    /// Transactions in our batches waiting for consensus.
    pub(super) fn txs(&self) -> usize {
        self.txs
    }
}

/// Most batches [`Driver::make_batch`] cuts at once.
const MAX_BATCHES_PER_TICK: usize = 8;

/// Batch and snapshot requests one peer may make per second (and at once): enough for a
/// validator fetching the batches of every proposal under load or pulling a snapshot, while
/// a peer that asks faster is ignored rather than served without bound.
const REQUESTS_PER_SECOND: u64 = 200;
const REQUEST_BURST: u64 = 400;

/// A token bucket per peer for the requests it makes of this validator.
#[derive(Default)]
pub(super) struct RequestBudget {
    /// Peer → (tokens, last refill ms).
    buckets: std::collections::BTreeMap<u16, (u64, u64)>,
}

impl RequestBudget {
    /// Takes one token from `peer`'s bucket, if it has one.
    pub(super) fn take(&mut self, peer: ReplicaId, now: u64) -> bool {
        let (tokens, at) = self.buckets.entry(peer.0).or_insert((REQUEST_BURST, now));
        let refill = now.saturating_sub(*at) * REQUESTS_PER_SECOND / 1000;
        if refill > 0 {
            *tokens = (*tokens + refill).min(REQUEST_BURST);
            *at = now;
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }
}

impl<P: Protocol> Driver<P> {
    /// Admission check of a client transaction against the committed state and the pool,
    /// signature included (tests; the running validator checks signatures on the admission
    /// workers and calls [`Driver::submit_checked`]).
    pub fn submit(&mut self, tx: ledger::Transaction) -> Result<Admitted, Rejected> {
        self.check_room()?;
        let account = self.ledger.account_hint(&tx.sender_address());
        self.mempool.admit(tx, self.ledger.chain(), account)
    }

    /// Admission of a transaction the admission workers hashed and verified: a pool insert.
    pub fn submit_checked(&mut self, c: Checked) -> Result<Admitted, Rejected> {
        self.check_room()?;
        let account = self.ledger.account_hint(&c.tx.sender_address());
        self.mempool.admit_checked(c, self.ledger.chain(), account)
    }

    /// From now on, the signatures of peers' batches are checked on `workers` (their
    /// verdicts come back through [`Driver::on_verified`]) instead of by execution.
    pub fn use_admission(&mut self, workers: Admission) {
        self.admission = Some(workers);
    }

    /// Stops using the admission workers (returns the handle).
    pub fn take_admission(&mut self) -> Option<Admission> {
        self.admission.take()
    }

    /// Refuses new transactions while the validator is backlogged ([`Driver::backlogged`]),
    /// while it is not in the current validator set (its batches would reach no member: the
    /// members' transports refuse it), and once its own removal is accepted (it is cut off at
    /// the epoch's end, perhaps before what it took now is ordered).
    pub(super) fn check_room(&self) -> Result<(), Rejected> {
        if !self.is_member() {
            return Err(Rejected::Busy(
                "this validator is not in the current validator set: it follows the chain but \
                 orders nothing; send the transaction to a member (GET /v1/validators)",
            ));
        }
        if self.leaving() {
            return Err(Rejected::Busy(
                "this validator leaves the validator set at the end of the epoch (a change \
                 removing it is accepted): send the transaction to another member (GET \
                 /v1/validators)",
            ));
        }
        if !self.backlogged() {
            return Ok(());
        }
        Err(Rejected::Busy(
            "the validator has more queued than it can order, execute and store promptly",
        ))
    }

    /// Turns pending transactions into batches, shares them and offers them to consensus:
    /// one batch, or more while they come out full (a backlog drains at up to
    /// [`MAX_BATCHES_PER_TICK`] batches per tick instead of one).
    /// Also the driver's periodic tick: checks whether to ask peers for missed blocks.
    pub fn make_batch(&mut self, now: u64) -> Res {
        let mut out: Vec<Out> = self.maybe_sync(now)?;
        self.own.prune();
        // Behind: no new batches until execution and the store catch up (the pool holds
        // what was admitted; admission refuses more).
        let batches = if self.backlogged() {
            0
        } else {
            MAX_BATCHES_PER_TICK
        };
        for _ in 0..batches {
            let (txs, hashes) = self
                .mempool
                .next_batch_hashed(self.batch_max_txs, self.batch_max_bytes);
            if txs.is_empty() {
                break;
            }
            sample(
                &mut self.stats.stages.batching,
                self.mempool.last_batch_wait(txs.len()),
            );
            let full = txs.len() >= self.batch_max_txs;
            let frame = encode_batch_frame(&txs);
            let full = full || frame.len() * 2 >= self.batch_max_bytes;
            let n = txs.len();
            let d = self.batches.insert_checked(Batch { txs, hashes });
            self.own.cut(d, n);
            out.push(Out::Broadcast(frame));
            out.extend(self.offer(now, d)?);
            if !full || self.backlogged() {
                break;
            }
        }
        Ok(out)
    }

    /// A peer's batch (`Wire::Batch`), hashed by the ingress stage: stored, its signatures
    /// queued on the admission workers (Byzantine protocols), offered to the core, and the
    /// proposals and commits waiting for it go on.
    pub(super) fn on_batch(&mut self, now: u64, d: Digest, batch: Arc<Batch>) -> Res {
        if batch.len() > self.batch_max_txs {
            self.stats.bad_frames += 1;
            return Ok(Vec::new());
        }
        self.store_peer_batch(d, batch);
        let mut out = self.offer(now, d)?;
        out.extend(self.after_batches(now)?);
        Ok(out)
    }

    /// Batches a peer sent because they were asked for (`Wire::Batches`): only the ones
    /// wanted are stored.
    pub(super) fn on_batches(&mut self, now: u64, bs: Vec<(Digest, Arc<Batch>)>) -> Res {
        for (d, batch) in bs {
            if self.requested.remove(&d) || self.wanted(&d) {
                self.store_peer_batch(d, batch);
            }
        }
        self.after_batches(now)
    }

    fn store_peer_batch(&mut self, d: Digest, batch: Arc<Batch>) {
        self.batches.insert_as(d, batch.clone());
        if P::TRUSTS_PEER_BATCHES || !self.batches.is_unchecked(&d) {
            return;
        }
        if batch.txs.iter().all(ledger::Transaction::is_raw) {
            // No signature to check (raw transactions carry none).
            self.batches.set_checked(&d);
            return;
        }
        if let Some(workers) = &self.admission
            && workers.check_peer_batch(d, batch)
        {
            self.batches.set_pending(&d);
        }
    }

    /// Peers' batches whose signatures the admission workers are checking.
    pub fn verifying(&self) -> usize {
        self.batches.pending()
    }

    /// The admission workers' verdict on a peer's batch: commits waiting for it go on.
    pub fn on_verified(&mut self, now: u64, v: Verified) -> Res {
        self.batches.set_verified(&v.digest, v.all_valid);
        self.run(now, Vec::new())
    }

    pub(super) fn wanted(&self, d: &Digest) -> bool {
        self.held.iter().any(|(_, _, payload)| payload.contains(d))
            || self.commits.iter().any(|c| c.payload.contains(d))
    }

    pub(super) fn answer_batch_request(&self, from: ReplicaId, ds: &[Digest]) -> Vec<Out> {
        let found: Vec<&[ledger::Transaction]> = ds
            .iter()
            .take(MAX_BATCHES_PER_MESSAGE)
            .filter_map(|d| self.batches.get(d).map(|b| b.txs.as_slice()))
            .collect();
        if found.is_empty() {
            return Vec::new();
        }
        vec![Out::Send(from, encode_batches_frame(&found))]
    }

    /// Hands a consensus message to the core, or, if it names batches not stored here (a
    /// proposal, see [`Protocol::payload_of`]), holds it until they are, fetching them from
    /// the sender.
    pub(super) fn on_message(&mut self, now: u64, from: ReplicaId, msg: P::Message) -> Res {
        let payload = P::payload_of(&msg);
        let missing = self.batches.missing(&payload);
        if missing.is_empty() {
            return self.feed(now, Input::Message { from, msg });
        }
        self.stats.held_proposals += 1;
        if self.held.len() >= MAX_HELD_PROPOSALS {
            self.held.pop_front();
        }
        self.held.push_back((from, msg, payload));
        self.requested.extend(missing.iter().copied());
        Ok(vec![Out::Send(
            from,
            Wire::<P::Message>::BatchRequest(missing).encode(),
        )])
    }

    pub(super) fn after_batches(&mut self, now: u64) -> Res {
        let mut out = Vec::new();
        let held: Vec<_> = self.held.drain(..).collect();
        for (from, msg, payload) in held {
            if self.batches.has_all(&payload) {
                out.extend(self.feed(now, Input::Message { from, msg })?);
            } else {
                self.held.push_back((from, msg, payload));
            }
        }
        // Commits waiting for these batches.
        out.extend(self.run(now, Vec::new())?);
        Ok(out)
    }
}
