//! [`Driver`]: one validator's consensus core, ledger, mempool and batches, without the
//! event loop. Every method takes the current time and returns what to do ([`Out`]); the
//! caller (the tokio loop, or a test pump) moves frames and fires timers.
//!
//! # To ensure correctness
//! - Safety records are written (fsynced, through [`Store::put_meta`]) before the core is
//!   told they are durable; only then can the votes that depend on them leave. All persists
//!   of one core step share one write.
//! - A proposal reaches the core only once every batch it names is stored here, so a vote
//!   always means "I can execute this". Commits wait, in order, for missing batch data.
//! - After the ledger commits a block, the core is told (`Input::Executed`, in height order),
//!   never from inside the handling of another input.
//!
//! The driver is generic over the consensus protocol ([`Protocol`]); nothing here knows
//! HotStuff's messages or certificates.

use super::batches::BatchStore;
use super::protocol::{CoreParams, Protocol};
use super::store_stage::{MAX_UNSTORED, StoreWriter, StoredBlock};
use super::wire::{
    MAX_BATCHES_PER_MESSAGE, MAX_BLOCKS_BYTES, MAX_BLOCKS_PER_MESSAGE, Wire, batch_digest,
};
use crate::mempool::{Admitted, Limits, Mempool, Rejected};
use crate::store::{DurableOp, LogRow, RedbStore};
use consensus::{Action, Committed, Committee, Core, Durable, Input, ReplicaId};
use crypto::{Digest, SecretKey};
use ledger::{Account, Address, Block, ChainBinding, Ledger, LedgerError, Receipt, Store};
use std::collections::{BTreeSet, VecDeque};

const MAX_HELD_PROPOSALS: usize = 16;
const MAX_STORED_BATCHES: usize = 100_000;
/// Transactions in blocks the store stage holds beyond which the validator counts as
/// backlogged (about half a second of the store's throughput on the reference machine).
const MAX_UNSTORED_TXS: usize = 16_384;
/// Committed blocks queued for execution (waiting for batches or for room in the store
/// stage) beyond which the validator counts as backlogged ([`Driver::backlogged`]).
const MAX_QUEUED_COMMITS: usize = 16;
/// Most batches [`Driver::make_batch`] cuts at once.
const MAX_BATCHES_PER_TICK: usize = 8;

pub struct DriverConfig {
    pub me: ReplicaId,
    pub key: SecretKey,
    pub committee: Committee,
    pub chain: ChainBinding,
    pub genesis_accounts: Vec<(Address, u64)>,
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// How long a leader with nothing to order waits before an empty block
    /// ([`CoreParams::idle_block_ms`]).
    pub idle_block_ms: u64,
    /// Blocks between checkpoints (PBFT; genesis `params.checkpoint_interval`). Unused by
    /// HotStuff.
    pub checkpoint_interval: u64,
    /// Applied entries between Raft log compactions (genesis `params.snapshot_interval`).
    pub snapshot_interval: u64,
    /// Batches per block.
    pub max_block_batches: usize,
    /// Transactions and bytes per batch.
    pub batch_max_txs: usize,
    pub batch_max_bytes: usize,
    pub mempool: Limits,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Send(ReplicaId, Vec<u8>),
    Broadcast(Vec<u8>),
    Timer {
        id: u64,
        after_ms: u64,
    },
    /// A block was committed and executed (for the API, logs and metrics).
    Committed {
        block: Box<Block>,
        receipts: Vec<Receipt>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] ledger::StoreError),
    #[error("{0}")]
    Stage(String),
    #[error(
        "the stored safety record is unreadable ({0}); refusing to start, as voting without it could sign twice"
    )]
    Safety(String),
}

/// Counters for status and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriverStats {
    pub bad_frames: u64,
    pub fsyncs: u64,
    pub held_proposals: u64,
    /// State snapshots installed (Raft's InstallSnapshot) and served, chunk by chunk.
    pub snapshots_installed: u64,
    pub snapshot_chunks_served: u64,
    /// Equivocations found (two validly signed, conflicting messages from one validator);
    /// see [`super::evidence`].
    pub evidence: u64,
    /// Peer requests (batches, snapshot chunks) ignored because the peer asked too often.
    pub limited_requests: u64,
    /// Durations of durable writes (safety records and blocks) not yet taken by
    /// [`Driver::take_fsync_seconds`]; bounded.
    fsync_seconds: Vec<f64>,
    /// Stage durations not yet taken by [`Driver::take_stage_samples`].
    stages: StageSamples,
}

/// Durations (seconds) of the pipeline stages the driver sees, for the
/// `cairn_stage_*_seconds` histograms (see `crate::api::StageHistograms`); each list
/// keeps at most 4,096 samples between takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSamples {
    pub batching: Vec<f64>,
    pub consensus: Vec<f64>,
    pub execution: Vec<f64>,
    pub store: Vec<f64>,
}

fn sample(list: &mut Vec<f64>, secs: f64) {
    if list.len() < MAX_FSYNC_SAMPLES {
        list.push(secs);
    }
}

/// Durations kept for [`Driver::take_fsync_seconds`] at most (older ones are dropped).
const MAX_FSYNC_SAMPLES: usize = 4096;

impl DriverStats {
    fn fsync(&mut self, started: std::time::Instant) {
        self.fsync_seconds(started.elapsed().as_secs_f64());
    }

    fn fsync_seconds(&mut self, secs: f64) {
        self.fsyncs += 1;
        if self.fsync_seconds.len() < MAX_FSYNC_SAMPLES {
            self.fsync_seconds.push(secs);
        }
    }
}

pub struct Driver<P: Protocol> {
    core: P::Core,
    /// What the core is built from (again after a block sync moves the committed root).
    params: CoreParams,
    ledger: Ledger<RedbStore>,
    mempool: Mempool,
    batches: BatchStore,
    committee: Committee,
    /// Messages waiting for the batches they name ([`Protocol::payload_of`], kept with them).
    held: VecDeque<(ReplicaId, P::Message, Vec<Digest>)>,
    commits: VecDeque<Committed>,
    /// Blocks the ledger committed that the core has not been told about yet (height, state
    /// root), in height order; see [`Driver::run`].
    executed: VecDeque<(u64, Digest)>,
    requested: BTreeSet<Digest>,
    batch_max_txs: usize,
    batch_max_bytes: usize,
    pub stats: DriverStats,
    /// Where each signed vote is recorded as it leaves (see [`Driver::log_votes_to`]).
    vote_log: Option<std::fs::File>,
    sync: SyncState,
    snapshot: SnapshotState,
    watcher: super::evidence::Watcher,
    requests: RequestBudget,
    /// The store stage, when blocks are written off this thread ([`Driver::use_store_stage`]);
    /// without it, each block is written before `apply_commits` goes on (tests).
    writer: Option<StoreWriter>,
    /// Blocks handed to the store stage and not yet reported durable ([`Driver::on_stored`]).
    unstored: usize,
    /// Their transactions.
    unstored_txs: usize,
    /// When each of this validator's batches not committed yet was cut (the consensus stage
    /// time); cleared when it grows past [`MAX_STORED_BATCHES`].
    cut_at: std::collections::HashMap<Digest, std::time::Instant>,
}

/// Batch and snapshot requests one peer may make per second (and at once): enough for a
/// validator fetching the batches of every proposal under load or pulling a snapshot, while
/// a peer that asks faster is ignored rather than served without bound.
const REQUESTS_PER_SECOND: u64 = 200;
const REQUEST_BURST: u64 = 400;

/// A token bucket per peer for the requests it makes of this validator.
#[derive(Default)]
struct RequestBudget {
    /// Peer → (tokens, last refill ms).
    buckets: std::collections::BTreeMap<u16, (u64, u64)>,
}

impl RequestBudget {
    /// Takes one token from `peer`'s bucket, if it has one.
    fn take(&mut self, peer: ReplicaId, now: u64) -> bool {
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

/// Accounts per snapshot chunk (about 300 KiB encoded).
const SNAPSHOT_CHUNK_ACCOUNTS: usize = 8192;
/// Accounts a snapshot may hold, at most (about 600 MB while it is pulled): a peer claiming
/// more is refused rather than letting the pull grow without bound.
const MAX_SNAPSHOT_ACCOUNTS: u64 = 10_000_000;
/// A snapshot pull that heard nothing for this long asks again from where it stopped.
const SNAPSHOT_RETRY_MS: u64 = 1000;

/// Raft's state transfer, both ways: the snapshot this validator serves (taken once, so that
/// a follower pulling it chunk by chunk sees one consistent state) and the one it pulls.
#[derive(Default)]
struct SnapshotState {
    serving: Option<Served>,
    pulling: Option<Pull>,
}

struct Served {
    block: Block,
    accounts: std::sync::Arc<Vec<(Address, Account)>>,
}

/// A `Wire::SnapshotChunk`'s fields.
struct Chunk {
    height: u64,
    block: Option<Box<Block>>,
    total: u64,
    offset: u64,
    accounts: Vec<(Address, Account)>,
}

struct Pull {
    from: ReplicaId,
    /// The lowest height wanted (from the offer), until the first chunk names the snapshot's.
    height: u64,
    block: Option<Block>,
    total: u64,
    accounts: Vec<(Address, Account)>,
    asked_ms: u64,
}

/// Ledger-level catch-up: a validator that missed more blocks than the consensus core keeps
/// asks a peer for committed blocks (see [`Driver::on_blocks`]).
#[derive(Debug, Default)]
struct SyncState {
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

type Res = Result<Vec<Out>, DriverError>;

/// `b`'s transactions cut by its batch sizes, if every piece hashes to the digest in
/// `payload` at its position.
fn split_batches(b: &Block, payload: &[Digest]) -> Option<Vec<Vec<ledger::Transaction>>> {
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
        if batch_digest(batch) != *d {
            return None;
        }
        out.push(batch.to_vec());
        rest = tail;
    }
    rest.is_empty().then_some(out)
}

impl<P: Protocol> Driver<P> {
    /// Opens a validator over `store`: recovers the ledger, the safety record and the last
    /// committed block, so a restarted validator neither double-votes nor re-executes.
    pub fn open(cfg: DriverConfig, store: RedbStore) -> Result<Driver<P>, DriverError> {
        let ledger = Ledger::open(store, cfg.chain.clone(), &cfg.genesis_accounts)?;
        let params = CoreParams {
            me: cfg.me,
            key: cfg.key,
            committee: cfg.committee.clone(),
            genesis: cfg.chain.genesis_hash,
            base_timeout_ms: cfg.base_timeout_ms,
            max_timeout_ms: cfg.max_timeout_ms,
            max_payload: cfg.max_block_batches,
            idle_block_ms: cfg.idle_block_ms,
            checkpoint_interval: cfg.checkpoint_interval,
            snapshot_interval: cfg.snapshot_interval,
        };
        let core = P::build(&params, &ledger, None)?;
        // Batches of durable log entries not yet executed (Raft): committed entries must
        // execute after a restart even if no peer still has their batches.
        let mut batches = BatchStore::new(MAX_STORED_BATCHES);
        for row in ledger.store().log_rows()? {
            if row.index > ledger.height() {
                for b in row.batches {
                    batches.insert(b);
                }
            }
        }
        Ok(Driver {
            core,
            params,
            ledger,
            mempool: Mempool::new(cfg.mempool),
            batches,
            committee: cfg.committee,
            held: VecDeque::new(),
            commits: VecDeque::new(),
            executed: VecDeque::new(),
            requested: BTreeSet::new(),
            batch_max_txs: cfg.batch_max_txs,
            batch_max_bytes: cfg.batch_max_bytes,
            stats: DriverStats::default(),
            vote_log: None,
            watcher: Default::default(),
            requests: RequestBudget::default(),
            sync: SyncState::default(),
            snapshot: SnapshotState::default(),
            writer: None,
            unstored: 0,
            unstored_txs: 0,
            cut_at: Default::default(),
        })
    }

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

    /// Whether execution or the store has fallen behind consensus: commits are queued, or
    /// the store stage holds as many blocks as it may or [`MAX_UNSTORED_TXS`] transactions.
    /// Admission refuses new transactions while this holds (the API answers 503), and no new
    /// batch is cut.
    pub fn backlogged(&self) -> bool {
        self.commits.len() > MAX_QUEUED_COMMITS
            || (self.writer.is_some()
                && (self.unstored >= MAX_UNSTORED || self.unstored_txs >= MAX_UNSTORED_TXS))
    }

    /// Blocks the store stage made durable, in height order: the mempool forgets their
    /// transactions, the core hears that they executed, and commits waiting for room in
    /// the store stage go on.
    pub fn on_stored(&mut self, now: u64, blocks: Vec<StoredBlock>) -> Res {
        for b in blocks {
            self.unstored = self.unstored.saturating_sub(1);
            self.unstored_txs = self.unstored_txs.saturating_sub(b.hashes.len());
            sample(&mut self.stats.stages.store, b.stage_seconds);
            self.stats.fsync_seconds(b.write_seconds);
            let state = self.ledger.state();
            self.mempool
                .committed_hashed(&b.txs, &b.hashes, |a| state.account(a));
            self.executed.push_back((b.height, b.state_root));
        }
        self.run(now, Vec::new())
    }

    pub fn ledger(&self) -> &Ledger<RedbStore> {
        &self.ledger
    }
    pub fn core(&self) -> &P::Core {
        &self.core
    }
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Durations in seconds of the durable writes since the last call (for the fsync
    /// histogram). Writes are not timed against a wall clock anywhere else.
    pub fn take_fsync_seconds(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.stats.fsync_seconds)
    }

    /// Stage durations since the last call (for the stage histograms).
    pub fn take_stage_samples(&mut self) -> StageSamples {
        std::mem::take(&mut self.stats.stages)
    }

    /// Appends one line per vote this validator sends to `path`: `vote SLOT DIGEST` (see
    /// [`Protocol::vote_slot`]; for HotStuff `vote VIEW BLOCK_HASH`), written (one `write`, no
    /// fsync) before the vote is handed to the network, so a process killed at any point
    /// never sent a vote that is not in the file. An audit aid: the real-process tests read
    /// it to show that no validator signs two different votes in one slot, across crashes and
    /// restarts. It grows by about 80 bytes per vote; off by default.
    pub fn log_votes_to(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.vote_log = Some(file);
        Ok(())
    }

    fn record_vote(&mut self, msg: &P::Message, to: Option<ReplicaId>) {
        use std::io::Write;
        let Some(file) = &mut self.vote_log else {
            return;
        };
        // One `write` per record, so that a process killed at any moment leaves whole lines.
        if let Some((slot, digest)) = P::vote_slot(msg, to)
            && let Err(e) = file.write_all(format!("vote {slot} {digest}\n").as_bytes())
        {
            tracing::warn!(error = %e, "cannot write the vote log; no longer recording votes");
            self.vote_log = None;
        }
    }

    pub fn start(&mut self, now: u64) -> Res {
        let acts = self.core.start(now);
        let mut out = self.run(now, acts)?;
        // Behind by more than the peers' cores keep? Ask (an empty answer costs little).
        if P::LEDGER_SYNC {
            out.extend(self.request_blocks());
        }
        Ok(out)
    }

    /// The consensus id of the ledger's last block, from its certificate (the genesis hash
    /// before the first block).
    fn ledger_tip_id(&self) -> Result<Digest, DriverError> {
        let h = self.ledger.height();
        if h == 0 {
            return Ok(self.params.genesis);
        }
        let b = self
            .ledger
            .store()
            .block(h)?
            .ok_or_else(|| DriverError::Safety(format!("block {h} missing from the store")))?;
        P::decode_certified(&b.certificate, &self.params.genesis)
            .map(|c| c.id)
            .ok_or_else(|| {
                DriverError::Safety(format!("the certificate of block {h} is unreadable"))
            })
    }

    /// Whether the last peer asked for blocks was ahead of us.
    pub fn catching_up(&self) -> bool {
        self.sync.behind
    }

    /// Asks a peer (the next one each time) for blocks when our ledger height has not moved
    /// for a whole base timeout, at most once per base timeout. Cheap when nobody is ahead:
    /// the answer is empty.
    fn maybe_sync(&mut self, now: u64) -> Option<Out> {
        if !P::LEDGER_SYNC {
            return self.retry_snapshot_pull(now);
        }
        let height = self.ledger.height();
        if height != self.sync.height {
            self.sync.height = height;
            self.sync.since_ms = now;
        }
        let wait = self.params.base_timeout_ms;
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

    fn request_blocks(&mut self) -> Option<Out> {
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
    fn answer_blocks_request(
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
        Ok(vec![Out::Send(
            from,
            Wire::<P::Message>::Blocks { blocks, tip }.encode(),
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
    fn on_blocks(&mut self, now: u64, from: ReplicaId, blocks: Vec<Block>, tip: u64) -> Res {
        if !P::LEDGER_SYNC || !self.commits.is_empty() || self.unstored > 0 {
            // The core is ahead of the ledger (commits wait for batches, or blocks for the
            // store stage): not behind by much, and the ledger tip is not the core's root
            // or not stored yet. Let consensus finish; the next sync request comes later.
            return Ok(Vec::new());
        }
        let height = self.ledger.height();
        self.sync.behind = tip > height;
        let mut checked = Vec::new();
        // The consensus id of the block before the next one (our tip's is read when needed).
        let mut parent: Option<Digest> = None;
        let mut last_proven = None;
        for (i, b) in blocks.into_iter().enumerate() {
            if b.header.height != height + 1 + i as u64 {
                break;
            }
            // Every certificate verifies, so nothing unverified reaches the store or the core.
            let Some(cert) = P::certified(&b.certificate, &self.committee, &self.params.genesis)
            else {
                break;
            };
            if cert.height.is_some_and(|h| h != b.header.height) {
                break;
            }
            if let Some(p) = cert.parent {
                let previous = match parent {
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
            if cert.proves_commit {
                last_proven = Some(i);
            }
            checked.push((b, cert, batches));
        }
        let Some(last) = last_proven else {
            return Ok(Vec::new());
        };
        checked.truncate(last + 1);
        let mut out = Vec::new();
        for (b, cert, batches) in checked {
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
            let by_digest: std::collections::BTreeMap<Digest, Vec<ledger::Transaction>> =
                c.payload.iter().copied().zip(batches).collect();
            let input = super::block_input(c, &self.committee, |d| by_digest.get(d).cloned());
            let started = std::time::Instant::now();
            let (block, receipts) = self.ledger.commit(input)?;
            self.stats.fsync(started);
            if block.hash() != sent {
                tracing::warn!(
                    peer = from.0,
                    height = block.header.height,
                    "a synced block executed to a different header than the peer sent (its \
                     state root or timestamp is wrong); keeping ours"
                );
            }
            let state = self.ledger.state();
            let hashes: Vec<Digest> = receipts.iter().map(|r| r.tx_hash).collect();
            self.mempool
                .committed_hashed(&block.txs, &hashes, |a| state.account(a));
            self.executed
                .push_back((block.header.height, block.header.state_root));
            out.push(Out::Committed {
                block: Box::new(block),
                receipts,
            });
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
    fn restart_core(&mut self, now: u64) -> Res {
        let safety = P::safety_bytes(&self.core);
        let pending = P::pending_payload(&self.core);
        self.core = P::build(&self.params, &self.ledger, Some(safety))?;
        self.commits.clear();
        let acts = self.core.start(now);
        let mut out = self.run(now, acts)?;
        // A batch whose every transfer is below its sender's nonce was committed in blocks
        // this validator skipped (block sync, a Raft snapshot): proposing it again would
        // only fill a block with refused duplicates.
        let state = self.ledger.state();
        let stale = |txs: &Vec<ledger::Transaction>| {
            !txs.is_empty()
                && txs
                    .iter()
                    .all(|t| !t.is_raw() && t.body.nonce < state.account(&t.sender_address()).nonce)
        };
        let pending: Vec<Digest> = pending
            .into_iter()
            .filter(|d| !self.batches.get(d).is_some_and(stale))
            .collect();
        for d in pending {
            out.extend(self.feed(now, Input::Payload(d))?);
        }
        out.extend(self.after_batches(now)?);
        Ok(out)
    }

    /// Serves a chunk of this validator's state snapshot (Raft's InstallSnapshot, moved
    /// outside the core). A pull starts at offset 0 with the lowest height it needs and gets
    /// the snapshot's height and last block in the first chunk; later requests name that
    /// height and resume at their offset. The snapshot is taken at the ledger's height when
    /// a pull starts and kept while pulls start or resume from it, until a pull needs a
    /// higher one.
    fn answer_snapshot_request(&mut self, from: ReplicaId, height: u64, offset: u64) -> Res {
        let tip = self.ledger.height();
        // One snapshot is served to every puller until one needs a higher one, so that
        // followers pulling at the same time do not reset each other.
        let fresh = match &self.snapshot.serving {
            None => true,
            Some(s) if offset == 0 => s.block.header.height < height,
            Some(s) => s.block.header.height != height,
        };
        if fresh {
            if tip == 0 || tip < height {
                return Ok(Vec::new());
            }
            let Some(block) = self.ledger.store().block(tip)? else {
                return Ok(Vec::new());
            };
            let accounts = self
                .ledger
                .state()
                .accounts()
                .map(|(a, b)| (*a, *b))
                .collect();
            self.snapshot.serving = Some(Served {
                block,
                accounts: std::sync::Arc::new(accounts),
            });
        }
        let s = self.snapshot.serving.as_ref().expect("set above");
        // A resumed pull of an older snapshot restarts from the beginning of this one.
        let offset = if fresh { 0 } else { offset };
        let start = (offset as usize).min(s.accounts.len());
        let end = (start + SNAPSHOT_CHUNK_ACCOUNTS).min(s.accounts.len());
        self.stats.snapshot_chunks_served += 1;
        let chunk = Wire::<P::Message>::SnapshotChunk {
            height: s.block.header.height,
            block: (start == 0).then(|| Box::new(s.block.clone())),
            total: s.accounts.len() as u64,
            offset: start as u64,
            accounts: s.accounts[start..end].to_vec(),
        };
        Ok(vec![Out::Send(from, chunk.encode())])
    }

    /// A snapshot offer (Raft's InstallSnapshot) from `from`: starts pulling its state unless
    /// a pull is already under way and making progress.
    fn on_snapshot_offer(&mut self, now: u64, from: ReplicaId, height: u64) -> Option<Out> {
        if height <= self.ledger.height() {
            return None;
        }
        // A pull from this peer resumes by itself (`retry_snapshot_pull`); an offer from
        // another peer (a new leader) replaces a pull that stalled.
        if let Some(p) = &self.snapshot.pulling
            && (p.from == from || now.saturating_sub(p.asked_ms) < SNAPSHOT_RETRY_MS)
        {
            return None;
        }
        tracing::info!(
            peer = from.0,
            height,
            ours = self.ledger.height(),
            "the leader compacted the entries we miss; fetching its state snapshot"
        );
        self.snapshot.pulling = Some(Pull {
            from,
            height,
            block: None,
            total: 0,
            accounts: Vec::new(),
            asked_ms: now,
        });
        Some(Out::Send(
            from,
            Wire::<P::Message>::SnapshotRequest { height, offset: 0 }.encode(),
        ))
    }

    /// Asks again, from where it stopped, for a snapshot pull that heard nothing lately.
    fn retry_snapshot_pull(&mut self, now: u64) -> Option<Out> {
        let height = self.ledger.height();
        if self
            .snapshot
            .pulling
            .as_ref()
            .is_some_and(|p| p.block.as_ref().map_or(p.height, |b| b.header.height) <= height)
        {
            // Caught up some other way (the leader's log reached us after all).
            self.snapshot.pulling = None;
        }
        let p = self.snapshot.pulling.as_mut()?;
        if now.saturating_sub(p.asked_ms) < SNAPSHOT_RETRY_MS {
            return None;
        }
        p.asked_ms = now;
        let (height, offset) = match &p.block {
            Some(b) => (b.header.height, p.accounts.len() as u64),
            None => (p.height, 0),
        };
        Some(Out::Send(
            p.from,
            Wire::<P::Message>::SnapshotRequest { height, offset }.encode(),
        ))
    }

    /// One chunk of the snapshot being pulled. When the last one is in, checks the block's
    /// certificate and that the accounts hash to its state root, installs the state durably,
    /// drops the log below it (and all of it unless the log extends the snapshot), and
    /// restarts the core from it.
    fn on_snapshot_chunk(&mut self, now: u64, from: ReplicaId, chunk: Chunk) -> Res {
        let Chunk {
            height,
            block,
            total,
            offset,
            accounts,
        } = chunk;
        let Some(p) = self.snapshot.pulling.as_mut() else {
            return Ok(Vec::new());
        };
        if self.unstored > 0 {
            // Installing replaces the store's state: not while blocks are still being
            // written. The pull asks for this chunk again (`retry_snapshot_pull`).
            return Ok(Vec::new());
        }
        if p.from != from {
            return Ok(Vec::new());
        }
        if offset == 0 {
            let Some(block) = block else {
                self.stats.bad_frames += 1;
                return Ok(Vec::new());
            };
            if height < p.height || block.header.height != height || total > MAX_SNAPSHOT_ACCOUNTS {
                self.stats.bad_frames += 1;
                return Ok(Vec::new());
            }
            p.block = Some(*block);
            p.total = total;
            p.accounts.clear();
        } else if p.block.as_ref().is_none_or(|b| b.header.height != height)
            || offset != p.accounts.len() as u64
        {
            return Ok(Vec::new());
        }
        if p.accounts.len() as u64 + accounts.len() as u64 > p.total {
            self.stats.bad_frames += 1;
            self.snapshot.pulling = None;
            return Ok(Vec::new());
        }
        p.accounts.extend(accounts);
        p.asked_ms = now;
        if (p.accounts.len() as u64) < p.total {
            let next = p.accounts.len() as u64;
            return Ok(vec![Out::Send(
                from,
                Wire::<P::Message>::SnapshotRequest {
                    height,
                    offset: next,
                }
                .encode(),
            )]);
        }
        let p = self.snapshot.pulling.take().expect("checked above");
        let block = p.block.expect("set by the first chunk");
        if height <= self.ledger.height() {
            return Ok(Vec::new());
        }
        let Some(cert) = P::certified(&block.certificate, &self.committee, &self.params.genesis)
            .filter(|c| c.height.is_none_or(|h| h == height))
        else {
            tracing::warn!(
                peer = from.0,
                height,
                "snapshot refused: its block's certificate does not verify"
            );
            return Ok(Vec::new());
        };
        let n = p.accounts.len();
        let started = std::time::Instant::now();
        if let Err(e) = self.ledger.install_snapshot(block, p.accounts) {
            if matches!(e, LedgerError::Snapshot(_)) {
                tracing::warn!(peer = from.0, height, error = %e, "snapshot refused");
                return Ok(Vec::new());
            }
            return Err(e.into());
        }
        self.ledger.store().write_durable(&[DurableOp::Rebase {
            index: height,
            term: cert.view.0,
        }])?;
        self.stats.fsync(started);
        self.stats.snapshots_installed += 1;
        let state = self.ledger.state();
        self.mempool.resync(|a| state.account(a));
        tracing::info!(
            peer = from.0,
            height,
            accounts = n,
            "installed the leader's state snapshot; continuing from it"
        );
        self.restart_core(now)
    }

    /// Admission check of a client transaction against the committed state and the pool.
    pub fn submit(&mut self, tx: ledger::Transaction) -> Result<Admitted, Rejected> {
        self.check_room()?;
        let account = self.ledger.state().account(&tx.sender_address());
        self.mempool.admit(tx, self.ledger.chain(), account)
    }

    /// [`Driver::submit`] for a transaction whose signature the caller has checked (the API
    /// checks batches of submissions off the loop).
    pub fn submit_verified(&mut self, tx: ledger::Transaction) -> Result<Admitted, Rejected> {
        self.check_room()?;
        let account = self.ledger.state().account(&tx.sender_address());
        self.mempool
            .admit_verified(tx, self.ledger.chain(), account)
    }

    /// Refuses new transactions while the validator is backlogged ([`Driver::backlogged`]).
    fn check_room(&self) -> Result<(), Rejected> {
        if !self.backlogged() {
            return Ok(());
        }
        Err(Rejected::Busy("execution and storage are behind consensus"))
    }

    /// Turns pending transactions into batches, shares them and offers them to consensus:
    /// one batch, or more while they come out full (a backlog drains at up to
    /// [`MAX_BATCHES_PER_TICK`] batches per tick instead of one).
    /// Also the driver's periodic tick: checks whether to ask peers for missed blocks.
    pub fn make_batch(&mut self, now: u64) -> Res {
        let mut out: Vec<Out> = self.maybe_sync(now).into_iter().collect();
        // Behind: no new batches until execution and the store catch up (the pool holds
        // what was admitted; admission refuses more).
        let batches = if self.backlogged() {
            0
        } else {
            MAX_BATCHES_PER_TICK
        };
        for _ in 0..batches {
            let txs = self
                .mempool
                .next_batch(self.batch_max_txs, self.batch_max_bytes);
            if txs.is_empty() {
                break;
            }
            sample(
                &mut self.stats.stages.batching,
                self.mempool.last_batch_wait(txs.len()),
            );
            let full = txs.len() >= self.batch_max_txs;
            let frame = Wire::<P::Message>::Batch(txs.clone()).encode();
            let full = full || frame.len() * 2 >= self.batch_max_bytes;
            let d = self.batches.insert_checked(txs);
            if self.cut_at.len() >= MAX_STORED_BATCHES {
                self.cut_at.clear();
            }
            self.cut_at.insert(d, std::time::Instant::now());
            out.push(Out::Broadcast(frame));
            out.extend(self.feed(now, Input::Payload(d))?);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    pub fn on_timer(&mut self, now: u64, id: u64) -> Res {
        let mut out = self.feed(now, Input::Timer(id))?;
        out.extend(self.maybe_sync(now));
        if id == P::VIEW_TIMER {
            // Retry batch fetches that have not been answered.
            self.requested.clear();
        }
        out.extend(self.run(now, Vec::new())?);
        Ok(out)
    }

    /// A frame from validator `from` (already authenticated by the transport).
    pub fn on_frame(&mut self, now: u64, from: ReplicaId, bytes: &[u8]) -> Res {
        let Ok(wire) = Wire::<P::Message>::decode(bytes) else {
            self.stats.bad_frames += 1;
            return Ok(Vec::new());
        };
        match wire {
            Wire::Consensus(msg) => {
                self.watch(&msg);
                let offer =
                    P::snapshot_offer(&msg).and_then(|h| self.on_snapshot_offer(now, from, h));
                let mut out = self.on_message(now, from, msg)?;
                out.extend(offer);
                Ok(out)
            }
            Wire::SnapshotRequest { .. } | Wire::BatchRequest(_)
                if !self.requests.take(from, now) =>
            {
                self.stats.limited_requests += 1;
                Ok(Vec::new())
            }
            Wire::SnapshotRequest { height, offset } => {
                self.answer_snapshot_request(from, height, offset)
            }
            Wire::SnapshotChunk {
                height,
                block,
                total,
                offset,
                accounts,
            } => self.on_snapshot_chunk(
                now,
                from,
                Chunk {
                    height,
                    block,
                    total,
                    offset,
                    accounts,
                },
            ),
            Wire::Batch(txs) => {
                if txs.len() > self.batch_max_txs {
                    self.stats.bad_frames += 1;
                    return Ok(Vec::new());
                }
                let d = self.batches.insert(txs);
                let mut out = self.feed(now, Input::Payload(d))?;
                out.extend(self.after_batches(now)?);
                Ok(out)
            }
            Wire::BatchRequest(ds) => Ok(self.answer_batch_request(from, &ds)),
            Wire::BlocksRequest { from: start } => self.answer_blocks_request(now, from, start),
            Wire::Blocks { blocks, tip } => self.on_blocks(now, from, blocks, tip),
            Wire::Batches(bs) => {
                for txs in bs.into_iter().take(MAX_BATCHES_PER_MESSAGE) {
                    let d = batch_digest(&txs);
                    if self.requested.remove(&d) || self.wanted(&d) {
                        self.batches.insert(txs);
                    }
                }
                self.after_batches(now)
            }
        }
    }

    /// Looks for equivocation in a consensus message as received (see [`super::evidence`]);
    /// stores what it finds. Never fails: evidence is a by-product, not a reason to stop.
    fn watch(&mut self, msg: &P::Message) {
        let height = self.ledger.height();
        let Some(e) = self
            .watcher
            .observe::<P>(msg, &self.committee, &self.params.genesis, height)
        else {
            return;
        };
        self.stats.evidence += 1;
        tracing::warn!(
            signer = e.signer,
            kind = %e.kind,
            slot = %e.slot,
            first = %e.first.digest,
            second = %e.second.digest,
            "equivocation: validator {} signed two conflicting messages; evidence recorded",
            e.signer
        );
        let record = serde_json::to_vec(&e).unwrap_or_default();
        match self.ledger.store().put_evidence(&e.key(), &record) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(key = %e.key(), "evidence already stored or table full"),
            Err(err) => tracing::warn!(error = %err, "cannot store evidence"),
        }
    }

    fn wanted(&self, d: &Digest) -> bool {
        self.held.iter().any(|(_, _, payload)| payload.contains(d))
            || self.commits.iter().any(|c| c.payload.contains(d))
    }

    fn answer_batch_request(&self, from: ReplicaId, ds: &[Digest]) -> Vec<Out> {
        let found: Vec<Vec<ledger::Transaction>> = ds
            .iter()
            .take(MAX_BATCHES_PER_MESSAGE)
            .filter_map(|d| self.batches.get(d).cloned())
            .collect();
        if found.is_empty() {
            return Vec::new();
        }
        vec![Out::Send(from, Wire::<P::Message>::Batches(found).encode())]
    }

    /// Hands a consensus message to the core, or, if it names batches not stored here (a
    /// proposal, see [`Protocol::payload_of`]), holds it until they are, fetching them from
    /// the sender.
    fn on_message(&mut self, now: u64, from: ReplicaId, msg: P::Message) -> Res {
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

    fn after_batches(&mut self, now: u64) -> Res {
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

    fn feed(&mut self, now: u64, input: Input<P::Message>) -> Res {
        let acts = self.core.handle(now, input);
        self.run(now, acts)
    }

    /// Carries out the core's actions; persists are written once per step, then
    /// acknowledged, which may release more actions. Queued commits are executed as their
    /// batches allow; then the core is told of each block executed (`Input::Executed`, one at
    /// a time, in height order), and those actions are carried out the same way. The core is
    /// handed nothing while a persist it asked for is unwritten, and this never calls itself.
    fn run(&mut self, now: u64, mut acts: Vec<Action<P::Message>>) -> Res {
        let mut out = Vec::new();
        loop {
            let mut ops: Vec<DurableOp> = Vec::new();
            let mut top_seq = None;
            for a in acts.drain(..) {
                match a {
                    Action::Send { to, msg } => {
                        self.record_vote(&msg, Some(to));
                        out.push(Out::Send(to, Wire::Consensus(msg).encode()))
                    }
                    Action::Broadcast { msg } => {
                        self.record_vote(&msg, None);
                        out.push(Out::Broadcast(Wire::Consensus(msg).encode()))
                    }
                    Action::Persist { seq, what } => {
                        top_seq = Some(seq);
                        ops.push(self.durable_op(what)?);
                    }
                    Action::Commit(c) => {
                        for d in &c.payload {
                            if let Some(at) = self.cut_at.remove(d) {
                                sample(
                                    &mut self.stats.stages.consensus,
                                    at.elapsed().as_secs_f64(),
                                );
                            }
                        }
                        self.commits.push_back(c)
                    }
                    Action::SetTimer { id, after_ms } => out.push(Out::Timer { id, after_ms }),
                }
            }
            self.apply_commits(&mut out)?;
            if let Some(seq) = top_seq {
                let started = std::time::Instant::now();
                self.ledger.store().write_durable(&ops)?;
                self.stats.fsync(started);
                super::failpoints::crash_point!("after-persist", 0);
                #[cfg(feature = "failpoints")]
                if ops.iter().any(|op| matches!(op, DurableOp::Meta(..))) {
                    super::failpoints::crash_point!("after-persist-safety", 0);
                }
                acts = self.core.handle(now, Input::Persisted(seq));
            } else if let Some((height, state_root)) = self.executed.pop_front() {
                acts = self
                    .core
                    .handle(now, Input::Executed { height, state_root });
            } else {
                return Ok(out);
            }
        }
    }

    /// The store write for one of the core's persists. Log entries are stored with the
    /// batches they name, which are here: the leader offers only stored batches, and a
    /// follower sees an append only once its batches are stored (see
    /// [`Protocol::payload_of`]).
    fn durable_op(&self, what: Durable) -> Result<DurableOp, DriverError> {
        Ok(match what {
            Durable::Safety(bytes) => DurableOp::Meta(P::SAFETY_KEY, bytes),
            Durable::Compact { before } => DurableOp::Compact { before },
            Durable::Log {
                truncate_after,
                entries,
            } => {
                let mut rows = Vec::with_capacity(entries.len());
                for (i, entry) in entries.into_iter().enumerate() {
                    let (term, payload) = P::log_entry(&entry).ok_or_else(|| {
                        DriverError::Safety(format!(
                            "the {} core asked to store a log entry it cannot decode",
                            P::NAME
                        ))
                    })?;
                    let mut batches = Vec::with_capacity(payload.len());
                    for d in &payload {
                        match self.batches.get(d) {
                            Some(b) => batches.push(b.clone()),
                            None => {
                                return Err(DriverError::Safety(format!(
                                    "log entry {} names batch {d}, which is not stored here",
                                    truncate_after + 1 + i as u64
                                )));
                            }
                        }
                    }
                    rows.push(LogRow {
                        index: truncate_after + 1 + i as u64,
                        term,
                        entry,
                        batches,
                    });
                }
                DurableOp::Log {
                    truncate_after,
                    rows,
                }
            }
        })
    }

    /// Executes queued commits in order while their batches are available (the core hears of
    /// each in [`Driver::run`]).
    fn apply_commits(&mut self, out: &mut Vec<Out>) -> Result<(), DriverError> {
        while let Some(c) = self.commits.front() {
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
            let c = self.commits.pop_front().expect("front exists");
            let batches = &self.batches;
            // Transactions whose signatures need no second check: those of this validator's
            // own batches (checked at admission), and in a crash-fault protocol every
            // batch (checked by the validator that admitted it, which is trusted).
            let checked: Vec<bool> = c
                .payload
                .iter()
                .flat_map(|d| {
                    let len = batches.get(d).map_or(0, Vec::len);
                    let ok = P::TRUSTS_PEER_BATCHES || batches.is_checked(d);
                    std::iter::repeat_n(ok, len)
                })
                .collect();
            let input = super::block_input(c, &self.committee, |d| batches.get(d).cloned());
            if let Some(writer) = &self.writer {
                // Executed here, written and announced by the store stage, reported back
                // through `on_stored`.
                let started = std::time::Instant::now();
                let executed = self.ledger.execute_checked(input, &checked)?;
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
                continue;
            }
            let started = std::time::Instant::now();
            let (block, receipts) = self.ledger.commit_checked(input, &checked)?;
            self.stats.fsync(started);
            let state = self.ledger.state();
            let hashes: Vec<Digest> = receipts.iter().map(|r| r.tx_hash).collect();
            self.mempool
                .committed_hashed(&block.txs, &hashes, |a| state.account(a));
            self.executed
                .push_back((block.header.height, block.header.state_root));
            out.push(Out::Committed {
                block: Box::new(block),
                receipts,
            });
        }
        Ok(())
    }
}
