//! Catch-up, outside the consensus core: a validator whose ledger has not moved for a
//! round asks a peer for committed blocks and applies those that prove themselves
//! ([`Driver::on_blocks`]). Raft's InstallSnapshot is in `super::snapshot`. Both run on
//! the validator loop, and only while the store stage holds nothing.

use super::Out;
use super::batches::Batch;
use super::driver::{Driver, DriverError, Res};
use super::protocol::Protocol;
use super::wire::{MAX_BLOCKS_BYTES, MAX_BLOCKS_PER_MESSAGE, Wire};
use consensus::{Committed, Core, ReplicaId};
use crypto::Digest;
use ledger::{Block, Store};

/// Ledger-level catch-up: a validator that missed more blocks than the consensus core keeps
/// asks a peer for committed blocks (see [`Driver::on_blocks`]).
/// A validator outside the set asks for blocks this many times as often as a member.
const FOLLOWER_POLL_DIVISOR: u64 = 10;
/// And at most every this many ms (peers answer one request per 100 ms each).
const MIN_FOLLOWER_POLL_MS: u64 = 50;

#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// Peers are asked in turn; this counts requests.
    requests: u64,
    /// Our ledger height when last looked at, and since when (ms) it has not moved.
    height: u64,
    since_ms: u64,
    /// When we last asked (ms).
    asked_ms: Option<u64>,
    /// The last peer that answered reported a height above ours.
    behind: bool,
    /// When each peer's last request was answered (ms), to bound the work one peer causes.
    served_ms: std::collections::BTreeMap<u16, u64>,
}

/// `b`'s transactions cut by its batch sizes and hashed, if every piece's digest is the one
/// in `payload` at its position.
fn split_batches(b: &Block, payload: &[Digest]) -> Option<Vec<Batch>> {
    if b.batch_sizes.len() != payload.len() {
        return None;
    }
    let mut rest = b.txs.as_slice();
    let mut out = Vec::with_capacity(payload.len());
    for (size, d) in b.batch_sizes.iter().zip(payload) {
        let size = *size as usize;
        if size > rest.len() {
            return None;
        }
        let (batch, tail) = rest.split_at(size);
        let batch = Batch::new(batch.to_vec());
        if batch.digest() != *d {
            return None;
        }
        out.push(batch);
        rest = tail;
    }
    rest.is_empty().then_some(out)
}

impl<P: Protocol> Driver<P> {
    /// Whether the last peer asked for blocks was ahead of us.
    pub fn catching_up(&self) -> bool {
        self.sync.behind
    }

    /// Asks a peer (the next one each time) for blocks when our ledger height has not moved
    /// for a whole base timeout, at most once per base timeout. Cheap when nobody is ahead:
    /// the answer is empty.
    /// Also drives a state sync under way ([`super::statesync`]).
    pub(super) fn maybe_sync(&mut self, now: u64) -> Res {
        if !P::LEDGER_SYNC {
            let mut out: Vec<Out> = self.retry_snapshot_pull(now).into_iter().collect();
            out.extend(self.ask_for_set(now));
            return Ok(out);
        }
        if self.statesync.active() {
            return self.poll_state_sync(now);
        }
        Ok(self.maybe_request_blocks(now).into_iter().collect())
    }

    fn maybe_request_blocks(&mut self, now: u64) -> Option<Out> {
        let height = self.ledger.height();
        if height != self.sync.height {
            self.sync.height = height;
            self.sync.since_ms = now;
        }
        // A validator outside the set has no core to learn blocks from: block sync is how it
        // follows, so it asks ten times as often (a joiner must be at the boundary when its
        // epoch starts, or its first turn to lead times out).
        let wait = if self.is_member() {
            self.params.base_timeout_ms
        } else {
            (self.params.base_timeout_ms / FOLLOWER_POLL_DIVISOR).max(MIN_FOLLOWER_POLL_MS)
        };
        let stalled = now.saturating_sub(self.sync.since_ms) >= wait;
        let due = self
            .sync
            .asked_ms
            .is_none_or(|t| now.saturating_sub(t) >= wait);
        if !(stalled && due) {
            return None;
        }
        self.sync.asked_ms = Some(now);
        self.request_blocks()
    }

    pub(super) fn request_blocks(&mut self) -> Option<Out> {
        let n = self.committee.n() as u64;
        if n < 2 {
            return None;
        }
        let me = u64::from(self.params.me.0);
        let peer = (me + 1 + self.sync.requests % (n - 1)) % n;
        self.sync.requests += 1;
        let from = self.ledger.height() + 1;
        Some(Out::Send(
            ReplicaId(peer as u16),
            Wire::<P::Message>::BlocksRequest { from }.encode(),
        ))
    }

    /// Serves committed blocks from the store, from height `start`: up to
    /// [`MAX_BLOCKS_PER_MESSAGE`] blocks and [`MAX_BLOCKS_BYTES`], and past those limits (up to
    /// twice them) to reach a block whose certificate proves the commit (HotStuff: carries the
    /// 2-chain proof), which the requester needs to know the blocks before it are committed.
    /// The first block always goes in. At most one answer per peer per 100 ms.
    pub(super) fn answer_blocks_request(
        &mut self,
        now: u64,
        from: ReplicaId,
        start: u64,
    ) -> Result<Vec<Out>, DriverError> {
        if self
            .sync
            .served_ms
            .get(&from.0)
            .is_some_and(|t| now.saturating_sub(*t) < 100)
        {
            return Ok(Vec::new());
        }
        self.sync.served_ms.insert(from.0, now);
        let tip = self.ledger.height();
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        let mut h = start.max(1);
        while h <= tip {
            let Some(b) = self.ledger.store().block(h)? else {
                break;
            };
            let size = b.certificate.len() + b.txs.iter().map(|t| t.encode().len()).sum::<usize>();
            let over = blocks.len() >= MAX_BLOCKS_PER_MESSAGE || bytes + size > MAX_BLOCKS_BYTES;
            let hard =
                blocks.len() >= 2 * MAX_BLOCKS_PER_MESSAGE || bytes + size > 2 * MAX_BLOCKS_BYTES;
            let last_proven = blocks.last().is_some_and(|b: &Block| {
                P::decode_certified(&b.certificate, &self.params.genesis)
                    .is_some_and(|c| c.proves_commit)
            });
            if !blocks.is_empty() && (hard || (over && last_proven)) {
                break;
            }
            bytes += size;
            blocks.push(b);
            h += 1;
        }
        let certs = self.proving_certs(&blocks)?;
        Ok(vec![Out::Send(
            from,
            Wire::<P::Message>::Blocks { blocks, tip, certs }.encode(),
        )])
    }

    /// Applies committed blocks a peer sent, as far as they prove themselves: the last one
    /// applied carries a certificate that proves the commit (HotStuff: QC and 2-chain proof),
    /// every certificate verifies against the committee, the blocks follow our last one by
    /// height and, where the protocol links them (HotStuff), each block's consensus parent is
    /// the one before it (the first's is our last committed block), and each block's
    /// transactions, split by its batch sizes, hash to the batch digests its certificate
    /// names. The ledger then executes them as if consensus had committed them here, and the
    /// core restarts from the new committed block, as after a crash (its safety record is
    /// untouched), and is then told of the blocks executed.
    pub(super) fn on_blocks(
        &mut self,
        now: u64,
        from: ReplicaId,
        blocks: Vec<Block>,
        tip: u64,
        certs: Vec<(u64, Vec<u8>)>,
    ) -> Res {
        if !P::LEDGER_SYNC || !self.commits.is_empty() || self.unstored > 0 {
            // The core is ahead of the ledger (commits wait for batches, or blocks for the
            // store stage): not behind by much, and the ledger tip is not the core's root
            // or not stored yet. Let consensus finish; the next sync request comes later.
            return Ok(Vec::new());
        }
        let height = self.ledger.height();
        self.sync.behind = tip > height;
        if self.statesync.active() {
            return Ok(Vec::new());
        }
        if self.wants_state_sync(!blocks.is_empty(), tip) {
            return Ok(self.start_state_sync(now, tip));
        }
        let mut checked = Vec::new();
        // The consensus id of the block before the next one (our tip's is read when needed),
        // and its header hash.
        let mut parent: Option<Digest> = None;
        let mut header_parent = self.ledger.tip();
        let mut last_proven = None;
        for (i, b) in blocks.into_iter().enumerate() {
            let h = height + 1 + i as u64;
            if b.header.height != h || b.header.parent != header_parent {
                break;
            }
            // The set of the block's epoch: past the end of the ledger's epoch it is not
            // known until the epoch's last block has executed, so the rest waits.
            let Some(set) = self.set_for_height(h)? else {
                break;
            };
            // Every certificate verifies, so nothing unverified reaches the store or the core.
            let Some(cert) = P::certified(&b.certificate, &set.committee, &set.anchor) else {
                break;
            };
            if cert.height.is_some_and(|c| c != h) {
                break;
            }
            if let Some(p) = cert.parent {
                let previous = match parent {
                    // An epoch's first block extends the epoch's anchor.
                    _ if h == set.start_height => set.anchor,
                    Some(d) => d,
                    None => self.ledger_tip_id()?,
                };
                if p != previous {
                    break;
                }
            }
            let Some(batches) = split_batches(&b, &cert.payload) else {
                break;
            };
            parent = Some(cert.id);
            header_parent = b.hash();
            if cert.proves_commit {
                last_proven = Some(i);
            }
            checked.push((b, cert, batches, set));
        }
        // A header certificate (a quorum of the block's set signed its header after
        // storing it as committed) proves the block and, through the header links, every
        // block before it.
        let by_header = checked
            .iter()
            .enumerate()
            .skip(last_proven.map_or(0, |l| l + 1))
            .rev()
            .find(|(_, (b, _, _, set))| self.header_certified(b, set, &certs))
            .map(|(i, _)| i);
        let Some(last) = by_header.or(last_proven) else {
            return Ok(Vec::new());
        };
        checked.truncate(last + 1);
        let mut out = Vec::new();
        for (b, cert, batches, set) in checked {
            let sent = b.hash();
            let c = Committed {
                id: cert.id,
                view: cert.view,
                proposer: cert.proposer,
                timestamp_ms: cert.timestamp_ms,
                payload: cert.payload,
                certificate: b.certificate,
            };
            // A block names each batch once (the core refuses duplicates).
            let hashes: Vec<Digest> = batches.iter().flat_map(|b| b.hashes.clone()).collect();
            let by_digest: std::collections::BTreeMap<Digest, Batch> =
                c.payload.iter().copied().zip(batches).collect();
            let input = super::block_input(c, &set.committee, |d| {
                by_digest.get(d).map(|b| b.txs.clone())
            });
            let started = std::time::Instant::now();
            let executed = self.ledger.execute_hashed(input, &[], &hashes)?;
            let (block, receipts) = self.ledger.store_executed(executed)?;
            self.stats.fsync(started);
            if block.hash() != sent {
                tracing::warn!(
                    peer = from.0,
                    height = block.header.height,
                    "a synced block executed to a different header than the peer sent (its \
                     state root or timestamp is wrong); keeping ours"
                );
            }
            self.written_here(block, receipts, &mut out)?;
        }
        out.extend(self.restart_core(now)?);
        self.sync.behind = tip > self.ledger.height();
        if self.sync.behind {
            // More to fetch: ask the same peer again at once.
            let next = self.ledger.height() + 1;
            out.push(Out::Send(
                from,
                Wire::<P::Message>::BlocksRequest { from: next }.encode(),
            ));
        }
        Ok(out)
    }

    /// Restarts the core from the ledger's new last block (after a block sync or a snapshot),
    /// with its safety record as it is in memory (the durable one plus certificates seen
    /// since: every persist completes within the driver call that asks for it), and the
    /// batches it had not proposed yet. The new core hears of blocks executed before it
    /// started once it has started (in `run`).
    pub(super) fn restart_core(&mut self, now: u64) -> Res {
        if !P::EPOCH_CORES {
            // Raft (a snapshot): one core across epochs, rebuilt on the new ledger with the
            // set it carries (`super::raft_set`).
            let acts = self.raft_follow(now, true)?;
            let mut out = self.run(now, acts)?;
            out.extend(self.after_batches(now)?);
            return Ok(out);
        }
        if self.epoch_ended() {
            // The blocks reached the end of the core's epoch: the next epoch's core takes
            // over instead (`Driver::run`, `super::epochs`), with these batches offered again.
            let mut out = self.run(now, Vec::new())?;
            out.extend(self.after_batches(now)?);
            return Ok(out);
        }
        self.commits.clear();
        if !self.is_member() {
            // Not in the current set: nothing to restart; the ledger follows by block sync.
            return self.run(now, Vec::new());
        }
        let safety = P::safety_bytes(&self.core);
        let pending = P::pending_payload(&self.core);
        self.core = P::build(&self.params, &self.ledger, Some(safety))?;
        self.gate.reset();
        let acts = self.core.start(now);
        let mut out = self.run(now, acts)?;
        // Stale batches (committed in blocks this validator skipped) are filtered by `offer`.
        for d in pending {
            out.extend(self.offer(now, d)?);
        }
        out.extend(self.after_batches(now)?);
        Ok(out)
    }
}
