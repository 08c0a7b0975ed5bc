//! The notify stage: what the outside world hears of the validator. The [`Announcer`]
//! runs on the store stage's thread (`cairn-store`) and announces each block once it is
//! durable: the API's committed events (`/v1/events`, `/v1/events/hashes`, `mode=commit`
//! waits), the height in status and metrics, the log line. The [`Reporter`] runs on the
//! validator loop every `STATUS_INTERVAL` and keeps status, gauges, stage histograms and the
//! summary line current.
//!
//! Channels: committed events go out on the API's `tokio::sync::broadcast` channel (a slow
//! reader lags and skips ahead; nothing here waits for readers); status is an
//! `Arc<RwLock<NodeStatus>>` the API reads; metrics are atomic.

use super::store_stage::{Announce, StoredBlock};
use super::{Driver, Protocol};
use crate::api::{CommittedEvent, Metrics, NodeStatus};
use crate::net::NetHandle;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the loop logs a summary line (blocks, transactions, view changes, peers).
pub(super) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Announces durable blocks for the store stage: the API's events, status and metrics, and
/// the log line.
#[derive(Clone)]
pub(super) struct Announcer {
    pub(super) events: tokio::sync::broadcast::Sender<CommittedEvent>,
    pub(super) status: Arc<RwLock<NodeStatus>>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) last_commit: Option<std::time::Instant>,
}

impl Announce for Announcer {
    fn committed(&mut self, block: &ledger::Block, receipts: &[ledger::Receipt]) {
        let hashes = receipts.iter().map(|r| r.tx_hash).collect();
        let event = CommittedEvent::with_hashes(block, hashes);
        let hash = event.hash;
        let _ = self.events.send(event);
        self.metrics.height.set(block.header.height);
        self.metrics.committed_txs.inc_by(block.txs.len() as u64);
        let now = std::time::Instant::now();
        if let Some(prev) = self.last_commit.replace(now) {
            self.metrics
                .block_interval
                .observe(now.duration_since(prev).as_secs_f64());
        }
        if let Ok(mut s) = self.status.write() {
            s.height = block.header.height;
            s.latest_hash = hash;
        }
        let valid = receipts.iter().filter(|r| r.outcome.is_ok()).count();
        tracing::info!(
            height = block.header.height,
            txs = block.txs.len(),
            valid,
            invalid = block.txs.len() - valid,
            hash = %hash.short(),
            view = block.header.view,
            "committed block"
        );
    }
}

/// Counts blocks the store stage reported for the summary line.
pub(super) fn report_stored(report: &mut Reporter, blocks: &[StoredBlock]) {
    for b in blocks {
        report.summary.blocks += 1;
        report.summary.txs += b.hashes.len() as u64;
    }
}

/// Keeps the API's view of the node (status, metrics) current and logs a summary every
/// [`SUMMARY_INTERVAL`]; committed blocks are announced by the store stage ([`Announcer`]).
pub(super) struct Reporter {
    /// For blocks written on the loop's thread (a block sync).
    pub(super) announce: Announcer,
    pub(super) status: Arc<RwLock<NodeStatus>>,
    pub(super) metrics: Arc<Metrics>,
    /// The leader of the view seen at the last status update.
    pub(super) leader: Option<Option<u16>>,
    /// Recipients of a broadcast: the other validators.
    pub(super) fanout: u64,
    /// The core's count of view changes ([`Protocol::view_changes`]), as last reported.
    pub(super) view_changes: u64,
    pub(super) summary: Summary,
    pub(super) summary_due: tokio::time::Instant,
}

/// What happened since the last summary line.
#[derive(Default)]
pub(super) struct Summary {
    pub(super) blocks: u64,
    pub(super) txs: u64,
    pub(super) fsyncs: u64,
    pub(super) fsync_seconds: f64,
    pub(super) view_changes: u64,
}

impl Reporter {
    /// Counts a frame sent to `copies` validators.
    pub(super) fn sent(&self, copies: u64, len: usize) {
        self.metrics.sent_frames.inc_by(copies);
        self.metrics.sent_bytes.inc_by(copies * len as u64);
    }

    pub(super) fn status<P: Protocol>(&mut self, driver: &mut Driver<P>, net: &NetHandle) {
        let view = consensus::Core::view(driver.core()).0;
        let leader = P::leader(driver.core()).map(|l| l.0);
        let peers = net.connected();
        let m = &self.metrics;
        m.view.set(view);
        m.peers.set(peers.len() as u64);
        let quorum = match P::raft_config(driver.core()) {
            Some(c) => c.voters.len() / 2 + 1,
            None => driver.params.committee.quorum(),
        };
        m.quorum.set(quorum as u64);
        m.mempool_size.set(driver.mempool().len() as u64);
        m.rejected_connections.set(net.stats().rejected_connections);
        m.set_net(&net.stats());
        m.bad_frames.set(driver.stats.bad_frames);
        m.evidence.set(driver.stats.evidence);
        m.limited_requests.set(driver.stats.limited_requests);
        m.epoch.set(driver.epoch());
        m.stale_epoch_frames.set(driver.stats.stale_epoch_frames);
        m.parked_batches.set(driver.parked_batches() as u64);
        let stats = &driver.stats;
        m.state_syncs
            .set(stats.state_syncs + stats.snapshots_installed);
        m.state_sync_bad
            .set(stats.bad_state_chunks + stats.bad_state_offers);
        if self.leader.replace(leader).is_some_and(|l| l != leader) {
            m.leader_changes.inc();
            match leader {
                Some(l) => tracing::info!(leader = l, view, "following a new leader"),
                None => tracing::info!(view, "no leader known (election under way)"),
            }
        }
        let view_changes = P::view_changes(driver.core());
        let new = view_changes.saturating_sub(self.view_changes);
        self.view_changes = view_changes;
        m.view_changes.inc_by(new);
        self.summary.view_changes += new;
        let stages = driver.take_stage_samples();
        for (list, h) in [
            (&stages.batching, &m.stages.batching),
            (&stages.consensus, &m.stages.consensus),
            (&stages.execution, &m.stages.execution),
            (&stages.store, &m.stages.store),
        ] {
            for secs in list {
                h.observe(*secs);
            }
        }
        for secs in driver.take_fsync_seconds() {
            m.fsync.observe(secs);
            self.summary.fsyncs += 1;
            self.summary.fsync_seconds += secs;
        }
        // The ledger can also move without a commit event (a block sync, a state snapshot
        // installed). Only what is durable is shown: the store stage may hold the tip.
        let stored = driver.stored_height();
        m.height.set(stored);
        if let Ok(mut s) = self.status.write() {
            if stored == driver.ledger().height() {
                s.height = stored;
                s.latest_hash = driver.ledger().tip();
            }
            s.view = view;
            s.leader = leader;
            s.peers = peers.iter().map(|p| format!("validator-{p}")).collect();
            s.mempool_size = driver.mempool().len();
            s.catching_up = driver.catching_up();
            s.raft = P::raft_config(driver.core());
        }
        if tokio::time::Instant::now() >= self.summary_due {
            self.summary_due += SUMMARY_INTERVAL;
            let s = std::mem::take(&mut self.summary);
            let secs = SUMMARY_INTERVAL.as_secs_f64();
            let fsync_ms = if s.fsyncs == 0 {
                0.0
            } else {
                1000.0 * s.fsync_seconds / s.fsyncs as f64
            };
            tracing::info!(
                height = driver.ledger().height(),
                view,
                leader,
                blocks = s.blocks,
                txs = s.txs,
                tx_per_s = format!("{:.1}", s.txs as f64 / secs),
                view_changes = s.view_changes,
                peers = peers.len(),
                mempool = driver.mempool().len(),
                fsync_avg_ms = format!("{fsync_ms:.2}"),
                "summary of the last {}s",
                SUMMARY_INTERVAL.as_secs()
            );
        }
    }
}
