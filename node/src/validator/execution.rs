//! The execution stage's half on the validator loop: committed blocks are executed in
//! order, in memory, as soon as their batches are here and their signature verdicts are in
//! (the hashes computed at ingress or admission are reused, never recomputed), and handed
//! to the store stage (`store_stage.rs`, thread `cairn-store`) on a bounded channel of
//! [`MAX_UNSTORED`] blocks; the core hears that a block executed only once the store stage
//! reports it durable ([`Driver::on_stored`]). While execution or the store is behind,
//! the validator counts as backlogged: admission refuses (503) and no batch is cut.

use super::Out;
use super::driver::{Driver, DriverError, Res, sample};
use super::protocol::Protocol;
use super::store_stage::{MAX_UNSTORED, StoreWriter, StoredBlock};
use super::wire::Wire;
use crypto::Digest;

/// Transactions in blocks the store stage holds beyond which the validator counts as
/// backlogged (about half a second of the store's throughput on the reference machine).
const MAX_UNSTORED_TXS: usize = 16_384;
/// Blocks' worth of this validator's transactions that may wait for consensus before
/// admission refuses more: two absorb a stall of a few hundred milliseconds at moderate load
/// (one made 20,000 tx/s runs answer 503 now and then), and under overload the queue
/// inside the validator stays about two blocks long per validator.
const MAX_OWN_BLOCKS_IN_CONSENSUS: usize = 2;
/// How long an own batch counts as waiting for consensus, at most.
pub(super) const STALE_BATCH: std::time::Duration = std::time::Duration::from_secs(5);
/// Committed blocks queued for execution (waiting for batches or for room in the store
/// stage) beyond which the validator counts as backlogged ([`Driver::backlogged`]).
const MAX_QUEUED_COMMITS: usize = 16;

impl<P: Protocol> Driver<P> {
    /// From now on, committed blocks are executed here and written by the store stage
    /// (see [`super::store_stage`]); the caller passes its reports to [`Driver::on_stored`].
    pub fn use_store_stage(&mut self, writer: StoreWriter) {
        self.writer = Some(writer);
    }

    /// Stops handing blocks to the store stage (returns its writer: dropping it lets the
    /// stage finish what is queued and end).
    pub fn take_store_stage(&mut self) -> Option<StoreWriter> {
        self.writer.take()
    }

    /// The height of the last block known durable (the ledger's height, less the blocks the
    /// store stage has not written yet).
    pub fn stored_height(&self) -> u64 {
        self.ledger.height() - self.unstored as u64
    }

    /// Whether the validator has more work queued than it can turn over promptly: this
    /// validator's own batches waiting for consensus hold [`MAX_OWN_BLOCKS_IN_CONSENSUS`]
    /// blocks' worth of transactions (`batch_max_txs` × the batches a block carries), commits are queued, or the store
    /// stage holds as many blocks as it may or [`MAX_UNSTORED_TXS`] transactions. Admission
    /// refuses new transactions while this holds (the API answers 503 with `Retry-After`),
    /// and no new batch is cut: under overload, work waits at the client, not in a queue
    /// inside the validator where it only adds latency.
    pub fn backlogged(&self) -> bool {
        self.own.txs() >= MAX_OWN_BLOCKS_IN_CONSENSUS * self.batch_max_txs * self.params.max_payload
            || self.commits.len() > MAX_QUEUED_COMMITS
            || (self.writer.is_some()
                && (self.unstored >= MAX_UNSTORED || self.unstored_txs >= MAX_UNSTORED_TXS))
    }

    /// Blocks the store stage made durable, in height order: the mempool forgets their
    /// transactions, the core hears that they executed, and commits waiting for room in
    /// the store stage go on.
    pub fn on_stored(&mut self, now: u64, blocks: Vec<StoredBlock>) -> Res {
        let mut out = Vec::new();
        for b in blocks {
            self.attest(b.height, b.hash, &mut out)?;
            self.unstored = self.unstored.saturating_sub(1);
            self.unstored_txs = self.unstored_txs.saturating_sub(b.hashes.len());
            sample(&mut self.stats.stages.store, b.stage_seconds);
            self.stats.fsync_seconds(b.write_seconds);
            self.ledger.stored_up_to(b.height);
            let ledger = &self.ledger;
            self.mempool
                .committed_hashed(&b.txs, &b.hashes, |a| ledger.account_hint(a));
            self.executed.push_back((b.height, b.state_root));
        }
        out.extend(self.run(now, Vec::new())?);
        // The core may have moved to the epoch of frames held for it.
        out.extend(self.replay_future(now)?);
        Ok(out)
    }

    /// Executes queued commits in order while their batches are available (the core hears of
    /// each in [`Driver::run`]).
    pub(super) fn apply_commits(&mut self, out: &mut Vec<Out>) -> Result<(), DriverError> {
        while let Some(c) = self.commits.front() {
            if self.epoch_ended() {
                // What the old core commits above its epoch's last block is dropped; the
                // next core takes over in `run` (`super::epochs`).
                return Ok(());
            }
            if self.writer.is_some() && self.unstored >= MAX_UNSTORED {
                // The store stage is full: execution waits for `on_stored`.
                return Ok(());
            }
            let missing = self.batches.missing(&c.payload);
            if !missing.is_empty() {
                let new: Vec<Digest> = missing
                    .into_iter()
                    .filter(|d| self.requested.insert(*d))
                    .collect();
                if !new.is_empty() {
                    out.push(Out::Broadcast(
                        Wire::<P::Message>::BatchRequest(new).encode(),
                    ));
                }
                return Ok(());
            }
            if self.batches.any_pending(&c.payload) {
                // The admission workers are checking a batch's signatures: wait for the
                // verdict (`on_verified`) rather than check them again here.
                return Ok(());
            }
            let c = self.commits.pop_front().expect("front exists");
            let payload = c.payload.clone();
            let batches = &self.batches;
            // Transactions whose signatures need no second check: those of this validator's
            // own batches (checked at admission), peers' batches the admission workers found
            // all valid, and in a crash-fault protocol every batch (checked by the validator
            // that admitted it, which is trusted).
            let mut checked = Vec::new();
            let mut hashes = Vec::new();
            for d in &c.payload {
                if let Some(b) = batches.get(d) {
                    let ok = P::TRUSTS_PEER_BATCHES || batches.is_checked(d);
                    checked.extend(std::iter::repeat_n(ok, b.len()));
                    hashes.extend_from_slice(&b.hashes);
                }
            }
            let input = super::block_input(c, &self.committee, |d| {
                batches.get(d).map(|b| b.txs.clone())
            });
            if let Some(writer) = &self.writer {
                // Executed here, written and announced by the store stage, reported back
                // through `on_stored`.
                let started = std::time::Instant::now();
                let executed = self.ledger.execute_hashed(input, &checked, &hashes)?;
                sample(
                    &mut self.stats.stages.execution,
                    started.elapsed().as_secs_f64(),
                );
                self.unstored += 1;
                self.unstored_txs += executed.block.txs.len();
                if let Err(e) = writer.send(executed) {
                    self.ledger.poison();
                    return Err(DriverError::Stage(e));
                }
                self.batches.executed(&payload);
                continue;
            }
            let started = std::time::Instant::now();
            let executed = self.ledger.execute_hashed(input, &checked, &hashes)?;
            self.batches.executed(&payload);
            let (block, receipts) = self.ledger.store_executed(executed)?;
            self.stats.fsync(started);
            self.written_here(block, receipts, out)?;
        }
        Ok(())
    }

    /// A block this thread executed and wrote (no store stage, or a block sync): the mempool
    /// forgets its transactions, the core will hear it executed, the caller announces it.
    pub(super) fn written_here(
        &mut self,
        block: ledger::Block,
        receipts: Vec<ledger::Receipt>,
        out: &mut Vec<Out>,
    ) -> Result<(), DriverError> {
        self.attest(block.header.height, block.hash(), out)?;
        let ledger = &self.ledger;
        let hashes: Vec<Digest> = receipts.iter().map(|r| r.tx_hash).collect();
        self.mempool
            .committed_hashed(&block.txs, &hashes, |a| ledger.account_hint(a));
        self.executed
            .push_back((block.header.height, block.header.state_root));
        out.push(Out::Committed {
            block: Box::new(block),
            receipts,
        });
        Ok(())
    }
}
