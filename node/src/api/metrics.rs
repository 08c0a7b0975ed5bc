//! [`Metrics`]: the node's Prometheus metrics, prefix `cairn_`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The value of the sample `name` (no labels) in a `/metrics` text, if it is there.
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

/// A validator's `/metrics` text (`api` is its base URL), within 5 s; `None` if it does not
/// answer. For readers such as `cairnd bench` and the localnet live line.
pub async fn fetch(http: &reqwest::Client, api: &str) -> Option<String> {
    http.get(format!("{api}/metrics"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// A gauge holding a `u64`.
pub type U64Gauge = Gauge<u64, AtomicU64>;
/// A gauge holding an `f64`.
pub type F64Gauge = Gauge<f64, AtomicU64>;

/// The node's metrics. The loop updates the fields (all are lock-free atomics except the
/// histograms, which take a short lock); `GET /metrics` encodes them. Counters are exposed
/// with the `_total` suffix, e.g. `cairn_view_changes_total`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `cairn_height`: height of the last committed block.
    pub height: U64Gauge,
    /// `cairn_history_floor`: the lowest height whose block and state this validator keeps
    /// (pruning, `retain_blocks`; a state snapshot's height).
    pub history_floor: U64Gauge,
    /// `cairn_view`: current consensus view (HotStuff view, PBFT view, Raft term).
    pub view: U64Gauge,
    /// `cairn_view_changes_total`: views left by timeout rather than by a certified block.
    pub view_changes: Counter,
    /// `cairn_committed_txs_total`: transactions in committed blocks (applied or skipped).
    pub committed_txs: Counter,
    /// `cairn_block_interval_seconds`: time between consecutive commits on this node.
    pub block_interval: Histogram,
    /// `cairn_mempool_size`: pooled transactions, pending and in flight.
    pub mempool_size: U64Gauge,
    /// `cairn_peers`: connected validators.
    pub peers: U64Gauge,
    /// `cairn_quorum`: votes a quorum of the current set needs, this validator's included
    /// (BFT: the certificate quorum; Raft: a majority of the voters). With `cairn_peers` it
    /// tells whether this validator can take part in a quorum.
    pub quorum: U64Gauge,
    /// `cairn_leader_changes_total`: times the leader this node follows changed.
    pub leader_changes: Counter,
    /// `cairn_fsync_seconds`: duration of durable store writes (blocks and safety records).
    pub fsync: Histogram,
    /// `cairn_rejected_connections_total`: inbound connections refused (not in the current
    /// validator set, over the limits, failed handshake).
    pub rejected_connections: U64Gauge,
    /// `cairn_bad_frames_total`: frames from validators that did not decode.
    pub bad_frames: U64Gauge,
    /// `cairn_evidence_total`: equivocations this validator found (two validly signed,
    /// conflicting messages from one validator; see `GET /v1/evidence`).
    pub evidence: U64Gauge,
    /// `cairn_limited_requests_total`: batch and snapshot requests from validators ignored
    /// because the peer asked too often.
    pub limited_requests: U64Gauge,
    /// `cairn_epoch`: the validator-set epoch this validator's consensus instance runs.
    pub epoch: U64Gauge,
    /// `cairn_stale_epoch_frames_total`: consensus frames of an epoch this validator had left
    /// (or too many of a later one) dropped.
    pub stale_epoch_frames: U64Gauge,
    /// `cairn_parked_batches`: batches held back from consensus now, waiting for an earlier
    /// batch of one of their senders.
    pub parked_batches: U64Gauge,
    /// `cairn_state_syncs_total`: verified state snapshots this validator installed to catch
    /// up (BFT state sync and Raft's InstallSnapshot).
    pub state_syncs: U64Gauge,
    /// `cairn_state_sync_bad_chunks_total`: state chunks and offers from peers that failed
    /// verification (each names the peer in the log).
    pub state_sync_bad: U64Gauge,
    /// `cairn_sent_frames_total`: frames (consensus messages, batches, sync) handed to the
    /// transport for other validators; a broadcast counts once per recipient.
    pub sent_frames: Counter,
    /// `cairn_sent_bytes_total`: payload bytes of those frames (before transport framing and
    /// encryption).
    pub sent_bytes: Counter,
    /// `cairn_net_throttled_frames_total`: frames from validators that waited for the
    /// per-peer inbound rate limit (`NetStats::throttled_frames`).
    pub net_throttled_frames: U64Gauge,
    /// `cairn_net_throttled_seconds_total`: time readers waited for that limit.
    pub net_throttled_seconds: F64Gauge,
    /// `cairn_net_dropped_frames_total`: outgoing frames the transport dropped (a peer's queue
    /// full in frames or bytes, too large, no such peer).
    pub net_dropped_frames: U64Gauge,
    /// `cairn_net_queued_bytes`: payload bytes waiting in the outgoing queues.
    pub net_queued_bytes: U64Gauge,
    /// `cairn_api_rate_limited_total`: HTTP requests answered 429 (client over its rate).
    pub api_rate_limited: Counter,
    /// `cairn_api_refused_connections_total`: HTTP connections closed at once because their
    /// client address had `api_max_connections_per_ip` open.
    pub api_refused_connections: Counter,
    /// `cairn_api_connections`: open HTTP connections.
    pub api_connections: Gauge,
    /// `cairn_stage_*_seconds`: where a transaction waits, stage by stage (see
    /// [`StageHistograms`]).
    pub stages: StageHistograms,
}

/// Time spent in each stage of the validator's pipeline (`cairnd bench` reports their means):
/// - `admission`: an API submission waiting for the validator loop's verdict;
/// - `batching`: a transaction pending in the pool until it is cut into a batch (mean per
///   batch);
/// - `consensus`: one of this validator's batches, from being cut to being committed by
///   consensus;
/// - `execution`: executing one committed block in memory;
/// - `store`: a block from its hand-over to the store stage until it is durable and announced
///   (queueing, the group commit, events).
#[derive(Debug, Clone)]
pub struct StageHistograms {
    pub admission: Histogram,
    pub batching: Histogram,
    pub consensus: Histogram,
    pub execution: Histogram,
    pub store: Histogram,
}

impl StageHistograms {
    /// The stages in pipeline order, with their metric names (`cairn_stage_NAME_seconds`).
    pub const NAMES: [&'static str; 5] =
        ["admission", "batching", "consensus", "execution", "store"];

    fn new() -> StageHistograms {
        // 20 µs .. ~10 s
        let h = || Histogram::new(exponential_buckets(0.00002, 2.0, 20));
        StageHistograms {
            admission: h(),
            batching: h(),
            consensus: h(),
            execution: h(),
            store: h(),
        }
    }

    fn all(&self) -> [&Histogram; 5] {
        [
            &self.admission,
            &self.batching,
            &self.consensus,
            &self.execution,
            &self.store,
        ]
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cairn");
        let m = Metrics {
            height: U64Gauge::default(),
            history_floor: U64Gauge::default(),
            view: U64Gauge::default(),
            view_changes: Counter::default(),
            committed_txs: Counter::default(),
            // 10 ms .. ~82 s
            block_interval: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            mempool_size: U64Gauge::default(),
            peers: U64Gauge::default(),
            quorum: U64Gauge::default(),
            leader_changes: Counter::default(),
            // 100 µs .. ~3.3 s
            fsync: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            rejected_connections: U64Gauge::default(),
            bad_frames: U64Gauge::default(),
            evidence: U64Gauge::default(),
            limited_requests: U64Gauge::default(),
            epoch: U64Gauge::default(),
            stale_epoch_frames: U64Gauge::default(),
            parked_batches: U64Gauge::default(),
            state_syncs: U64Gauge::default(),
            state_sync_bad: U64Gauge::default(),
            sent_frames: Counter::default(),
            sent_bytes: Counter::default(),
            net_throttled_frames: U64Gauge::default(),
            net_throttled_seconds: F64Gauge::default(),
            net_dropped_frames: U64Gauge::default(),
            net_queued_bytes: U64Gauge::default(),
            api_rate_limited: Counter::default(),
            api_refused_connections: Counter::default(),
            api_connections: Gauge::default(),
            stages: StageHistograms::new(),
            registry: Registry::default(),
        };
        for (name, h) in StageHistograms::NAMES.iter().zip(m.stages.all()) {
            registry.register_with_unit(
                format!("stage_{name}"),
                format!("Time a transaction or block spends in the {name} stage"),
                Unit::Seconds,
                h.clone(),
            );
        }
        registry.register(
            "height",
            "Height of the last committed block",
            m.height.clone(),
        );
        registry.register(
            "history_floor",
            "Lowest height whose block and state are kept (pruning)",
            m.history_floor.clone(),
        );
        registry.register("view", "Current consensus view", m.view.clone());
        registry.register(
            "view_changes",
            "Views left by timeout",
            m.view_changes.clone(),
        );
        registry.register(
            "committed_txs",
            "Transactions in committed blocks (applied or skipped)",
            m.committed_txs.clone(),
        );
        registry.register_with_unit(
            "block_interval",
            "Time between consecutive commits",
            Unit::Seconds,
            m.block_interval.clone(),
        );
        registry.register(
            "mempool_size",
            "Pooled transactions, pending and in flight",
            m.mempool_size.clone(),
        );
        registry.register("peers", "Connected validators", m.peers.clone());
        registry.register(
            "quorum",
            "Votes a quorum of the current set needs, this validator's included",
            m.quorum.clone(),
        );
        registry.register(
            "leader_changes",
            "Changes of the leader this node follows",
            m.leader_changes.clone(),
        );
        registry.register_with_unit(
            "fsync",
            "Duration of durable store writes",
            Unit::Seconds,
            m.fsync.clone(),
        );
        // Totals kept by the transport and the driver, copied in (hence gauges named _total).
        registry.register(
            "rejected_connections_total",
            "Inbound connections refused: not in the current validator set, over the limits, failed handshake",
            m.rejected_connections.clone(),
        );
        registry.register(
            "bad_frames_total",
            "Frames from validators that did not decode",
            m.bad_frames.clone(),
        );
        registry.register(
            "evidence_total",
            "Equivocations found: two validly signed, conflicting messages from one validator",
            m.evidence.clone(),
        );
        registry.register(
            "limited_requests_total",
            "Batch and snapshot requests from validators ignored for asking too often",
            m.limited_requests.clone(),
        );
        registry.register(
            "epoch",
            "The validator-set epoch this validator's consensus instance runs",
            m.epoch.clone(),
        );
        registry.register(
            "stale_epoch_frames_total",
            "Consensus frames of an epoch this validator had left (or too many of a later one) dropped",
            m.stale_epoch_frames.clone(),
        );
        registry.register(
            "parked_batches",
            "Batches held back from consensus, waiting for an earlier batch of one of their senders",
            m.parked_batches.clone(),
        );
        registry.register(
            "state_syncs_total",
            "Verified state snapshots installed to catch up (BFT state sync, Raft snapshots)",
            m.state_syncs.clone(),
        );
        registry.register(
            "state_sync_bad_chunks_total",
            "State chunks and offers from peers that failed verification",
            m.state_sync_bad.clone(),
        );
        registry.register(
            "sent_frames",
            "Frames sent to other validators (a broadcast counts once per recipient)",
            m.sent_frames.clone(),
        );
        registry.register(
            "sent_bytes",
            "Payload bytes of the frames sent to other validators",
            m.sent_bytes.clone(),
        );
        registry.register(
            "net_throttled_frames_total",
            "Frames from validators that waited for the per-peer inbound rate limit",
            m.net_throttled_frames.clone(),
        );
        registry.register(
            "net_throttled_seconds_total",
            "Time spent waiting for the per-peer inbound rate limit",
            m.net_throttled_seconds.clone(),
        );
        registry.register(
            "net_dropped_frames_total",
            "Outgoing frames dropped: a peer's queue full (frames or bytes), too large, no such peer",
            m.net_dropped_frames.clone(),
        );
        registry.register(
            "net_queued_bytes",
            "Payload bytes waiting in the outgoing queues to other validators",
            m.net_queued_bytes.clone(),
        );
        registry.register(
            "api_rate_limited",
            "HTTP requests answered 429: the client address was over its request rate",
            m.api_rate_limited.clone(),
        );
        registry.register(
            "api_refused_connections",
            "HTTP connections closed at once: the client address had too many open",
            m.api_refused_connections.clone(),
        );
        registry.register(
            "api_connections",
            "Open HTTP API connections",
            m.api_connections.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Copies the transport's counters in (the loop calls it with its status refresh).
    pub fn set_net(&self, s: &crate::net::NetStats) {
        self.net_throttled_frames.set(s.throttled_frames);
        self.net_throttled_seconds
            .set(s.throttled_micros as f64 / 1e6);
        self.net_dropped_frames.set(s.dropped);
        self.net_queued_bytes.set(s.queued_bytes);
    }

    /// The OpenMetrics text exposition (served as [`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
