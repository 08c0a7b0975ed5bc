//! The store stage: makes executed blocks durable behind consensus, on its own thread
//! (`cairn-store`), and then announces them (events, metrics, status, the log line).
//!
//! The consensus loop executes a committed block in memory ([`ledger::Ledger::execute_checked`])
//! and hands it here ([`ToStore`]); it goes on voting and proposing while this thread writes.
//! Whatever has queued up by the time a write starts goes into that one redb transaction: one
//! fsync for several blocks under load (group commit), one per block when idle. Only after
//! the write returns is a block announced, and reported back ([`FromStore`]) so the loop can
//! tell the core it executed (`Input::Executed`: PBFT checkpoints, Raft compaction) and drop
//! its transactions from the mempool.
//!
//! # To ensure correctness
//! - Blocks are written in the order they were executed (one thread, one FIFO queue).
//! - Nothing is announced or reported before it is durable: an API client never sees a
//!   block or receipt that a crash could take back.
//! - The queue is bounded by the loop ([`MAX_UNSTORED`] blocks in flight); a full queue
//!   stops execution, never consensus safety (votes depend only on the consensus file,
//!   which this thread never writes; see [`crate::store`]).
//! - A failed write is reported and ends the thread; the loop stops the validator (its
//!   state is ahead of its store, see [`ledger::Ledger::poison`]).

use crate::store::RedbStore;
use crypto::Digest;
use ledger::{Block, Executed, Receipt, Transaction};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

/// Executed blocks the consensus loop may have handed over and not heard back about.
pub const MAX_UNSTORED: usize = 32;
/// Blocks one group commit writes, at most.
const MAX_GROUP: usize = 32;

/// Into the store stage.
pub enum ToStore {
    /// Write this block (after those sent before it); handed over at this instant.
    Block(Box<Executed>, std::time::Instant),
}

/// Back from the store stage to the consensus loop.
#[derive(Debug)]
pub enum FromStore {
    /// These blocks are durable and announced, in height order.
    Stored(Vec<StoredBlock>),
    /// A write failed; nothing after it was written. The validator must stop.
    Failed(String),
}

/// A block the store stage made durable, with what the loop needs of it.
#[derive(Debug)]
pub struct StoredBlock {
    pub height: u64,
    /// The block's (header's) hash.
    pub hash: Digest,
    pub state_root: Digest,
    pub txs: Vec<Transaction>,
    /// The transactions' hashes, in order (from the receipts: never recomputed).
    pub hashes: Vec<Digest>,
    /// Seconds the write that covered this block took (shared by its group).
    pub write_seconds: f64,
    /// Seconds from its hand-over to the store stage until it was durable and announced.
    pub stage_seconds: f64,
}

/// What the store stage tells the world about a durable block (events, metrics, logs).
pub trait Announce: Send + 'static {
    fn committed(&mut self, block: &Block, receipts: &[Receipt]);
}

/// Header certificates waiting for the store stage's next write: (height, encoded).
type Certs = std::sync::Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;
/// Certificates queued at most; beyond it the oldest are dropped (a height without a stored
/// certificate only means proofs are served at another height).
const MAX_QUEUED_CERTS: usize = 1024;
/// How long the stage waits for a block before it writes queued certificates alone.
const CERT_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The consensus loop's end of the store stage.
pub struct StoreWriter {
    jobs: SyncSender<ToStore>,
    certs: Certs,
}

impl StoreWriter {
    /// Queues `block` for writing. Never blocks while the caller keeps at most
    /// [`MAX_UNSTORED`] blocks in flight.
    pub fn send(&self, block: Executed) -> Result<(), String> {
        self.jobs
            .send(ToStore::Block(Box::new(block), std::time::Instant::now()))
            .map_err(|_| "the store stage stopped".to_string())
    }

    /// Queues a header certificate, written with the next blocks (or within [`CERT_WAIT`]
    /// when none come). Never blocks on the write.
    pub fn send_cert(&self, height: u64, cert: Vec<u8>) {
        let mut q = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_QUEUED_CERTS {
            q.remove(0);
        }
        q.push((height, cert));
    }
}

/// Starts the store stage over `store`. Returns the loop's end of it, the thread (it ends,
/// after writing everything queued, when the [`StoreWriter`] is dropped) and the reports.
pub fn start(
    store: RedbStore,
    mut announce: impl Announce,
) -> (
    StoreWriter,
    std::thread::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<FromStore>,
) {
    // Room for every block the loop may have in flight, so `send` never blocks.
    let (jobs, rx) = std::sync::mpsc::sync_channel(MAX_UNSTORED + 1);
    let (reports, reports_rx) = tokio::sync::mpsc::unbounded_channel();
    let certs = Certs::default();
    let queued = certs.clone();
    let thread = std::thread::Builder::new()
        .name("cairn-store".into())
        .spawn(move || run(store, rx, &queued, &reports, &mut announce))
        .expect("spawning the store thread");
    (StoreWriter { jobs, certs }, thread, reports_rx)
}

fn take(certs: &Certs) -> Vec<(u64, Vec<u8>)> {
    std::mem::take(&mut *certs.lock().unwrap_or_else(|e| e.into_inner()))
}

fn run(
    store: RedbStore,
    jobs: Receiver<ToStore>,
    certs: &Certs,
    reports: &tokio::sync::mpsc::UnboundedSender<FromStore>,
    announce: &mut impl Announce,
) {
    loop {
        let first = match jobs.recv_timeout(CERT_WAIT) {
            Ok(job) => job,
            Err(e) => {
                let pending = take(certs);
                if !pending.is_empty()
                    && let Err(e) = store.commit_with_certs(&[], &pending)
                {
                    let _ = reports.send(FromStore::Failed(e.to_string()));
                    return;
                }
                if e == std::sync::mpsc::RecvTimeoutError::Disconnected {
                    return;
                }
                continue;
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let (blocks, handed): (Vec<Executed>, Vec<std::time::Instant>) = group
            .into_iter()
            .map(|ToStore::Block(b, at)| (*b, at))
            .unzip();
        super::failpoints::crash_point!("before-block-write", 0);
        let started = std::time::Instant::now();
        if let Err(e) = store.commit_with_certs(&blocks, &take(certs)) {
            let _ = reports.send(FromStore::Failed(e.to_string()));
            return;
        }
        let write_seconds = started.elapsed().as_secs_f64();
        super::failpoints::crash_point!("after-block-write", 0);
        let mut stored = Vec::with_capacity(blocks.len());
        for (b, at) in blocks.into_iter().zip(handed) {
            announce.committed(&b.block, &b.receipts);
            stored.push(StoredBlock {
                stage_seconds: at.elapsed().as_secs_f64(),
                height: b.block.header.height,
                hash: b.block.hash(),
                state_root: b.block.header.state_root,
                hashes: b.receipts.iter().map(|r| r.tx_hash).collect(),
                txs: b.block.txs,
                write_seconds,
            });
        }
        if reports.send(FromStore::Stored(stored)).is_err() {
            // The loop is gone; keep writing what is queued so a clean stop loses nothing.
            continue;
        }
    }
}
