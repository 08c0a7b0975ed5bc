//! The validator's HTTP API (axum 0.8, HTTP/1, JSON), independent of the event loop.
//!
//! The loop owns the [`crate::validator::Driver`]; the API reaches it only through
//! [`ApiCommand`]s on a bounded channel (admission and pool status) and reads everything that
//! is committed straight from the store (a [`RedbStore`] clone: each read is its own redb read
//! transaction, concurrent with the loop's writes). Commits arrive as [`CommittedEvent`]s on a
//! broadcast channel, which feeds `mode=commit` and the event stream; a slow reader lags and
//! skips ahead, it never holds the loop back.
//!
//! | Route | Answer |
//! |---|---|
//! | `POST /v1/transactions?mode=async\|sync\|commit` | body `{"tx": "<hex of Transaction::encode()>"}` → [`TxStatus`] |
//! | `POST /v1/transactions/batch` | binary body of length-prefixed transactions → [`BatchVerdict`] |
//! | `GET /v1/transactions/{hash}` | [`TxStatus`]: pending, in_flight, committed; 404 unknown |
//! | `GET /v1/accounts/{address}` | [`AccountView`] (a never-credited address is all zeros) |
//! | `GET /v1/blocks/{height\|latest}` | [`BlockView`]; 404 if there is none |
//! | `GET /v1/status` | [`NodeStatus`] plus the genesis hash |
//! | `GET /v1/health` | `{"ok":true}`; 503 once the loop has stopped |
//! | `GET /v1/events` | Server-Sent Events, one `committed` event per block |
//! | `GET /v1/events/hashes` | the same, compact: binary frames of height, timestamp and 32-byte hashes ([`compact`]) |
//! | `GET /v1/validators` | [`ValidatorsView`]: the set, its epoch, a pending change |
//! | `GET /v1/epochs?from=K` | [`epochs::EpochsView`]: the epoch links after epoch K, for a light client's walk |
//! | `GET /metrics` | Prometheus ([`Metrics`], OpenMetrics text) |
//!
//! Conventions: 64-bit integers are JSON strings of decimal digits (JavaScript loses precision
//! above 2^53); smaller ones (`index`, `leader`) are numbers. Hashes, addresses, keys and the
//! certificate are lowercase hex (an `0x` prefix is accepted on input). Every error is JSON
//! `{"error": "..."}` saying what was wrong: 400 for malformed input, 404 for nothing there,
//! 413 for bodies over [`MAX_BODY_BYTES`], 422 for a transaction the mempool refuses, 429 with
//! `Retry-After` for a client address over its request rate, 503 with `Retry-After` for a
//! submission while the validator is overloaded (its pool is full, or execution and storage
//! are behind consensus: code `pool_full` or `busy`), 503 when the store or the loop cannot
//! answer (retry); hyper's own 414 (URI over 65,534 bytes) and 431 (head over its
//! buffer, or more than 100 headers) carry the same JSON body (`conn.rs`). No client input
//! produces a 500.
//!
//! Limits per client ([`ApiLimits`], `config.toml`; see `limit.rs`): requests started per
//! second per client address (default 1,000, bursts of 2,000), open connections in all (512)
//! and per client address (128).
//!
//! Reads (accounts, transactions, blocks) take `min_height=H` (answer once this validator
//! stored H) and, on Raft, `consistency=linearizable` (ReadIndex through the loop:
//! [`ApiCommand::ReadIndex`]; 503 while no leader confirms it, 409 on BFT chains).
//!
//! Submit modes (CometBFT's three): a transaction already committed answers `committed`
//! in every mode, so resubmitting after a timeout never pays twice (its hash is the
//! idempotency key; a pooled one answers `pending` / `in_flight` again). `sync` answers the
//! admission verdict: 200 `pending`, or 422 `rejected` with `reason` and `retryable`. `async`
//! waits for the same verdict but answers 202: admission is an in-memory check of
//! microseconds, and answering before it would report `pending` for transactions the pool
//! then refuses. `commit` also waits, up to [`ApiState::commit_wait`], for a block with the
//! transaction: 200 `committed`, or 202 `unknown` with the hash to check later.
//!
//! Not done yet: TLS and CORS, resuming the event stream from `Last-Event-ID`.

pub mod compact;
mod conn;
pub mod epochs;
mod limit;
mod metrics;
pub mod proof;
mod query;
mod sse;
mod tx;
mod types;
mod validators;

pub use limit::ApiLimits;
pub use metrics::{Metrics, StageHistograms, fetch as fetch_metrics, sample_value};
pub use tx::{BatchRejection, BatchVerdict, MAX_BATCH_BODY_BYTES, MAX_BATCH_TXS, encode_batch};
pub(crate) use types::dec;
pub use types::{AccountView, BlockView, Submitted, TxReceipt, TxStatus};
pub use validators::{MemberView, PendingView, RaftConfigView, TransferView, ValidatorsView};

use crate::mempool::{Admitted, Checked, PoolStatus, Rejected};
use crate::store::RedbStore;
use crate::validator::admission::Admission;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use crypto::Digest;
use ledger::{Block, ChainBinding, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Largest request body: a hex-encoded [`ledger::MAX_TX_BYTES`] transaction is 128 KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long a request waits for room on the command channel, and then for the loop's answer,
/// before it answers 503.
pub const LOOP_WAIT: Duration = Duration::from_secs(5);

/// What the API asks of the validator loop. The loop answers on `reply`; dropping `reply`
/// makes the request answer 503.
#[derive(Debug)]
pub enum ApiCommand {
    /// Admission of a transaction the admission workers hashed and verified: the loop
    /// answers with the mempool's verdict (`Driver::submit_checked`).
    Submit {
        tx: Box<Checked>,
        reply: oneshot::Sender<Result<Admitted, Rejected>>,
    },
    /// The same for many, in order; one verdict per transaction.
    SubmitBatch {
        txs: Vec<Checked>,
        reply: oneshot::Sender<Vec<Result<Admitted, Rejected>>>,
    },
    /// Pool status of a hash (pending / in flight), None if not in the pool
    /// (`Driver::mempool().status(&hash)`).
    PoolStatus {
        hash: Digest,
        reply: oneshot::Sender<Option<PoolStatus>>,
    },
    /// The next nonce of `address` counting its pooled transactions, given its committed
    /// nonce (`Driver::mempool().next_nonce`).
    NextNonce {
        address: ledger::Address,
        committed: u64,
        reply: oneshot::Sender<u64>,
    },
    /// A linearizable read (Raft's ReadIndex): the height this validator must have stored
    /// before the read, or `None` if no leader confirmed it (`Driver::read_index`).
    ReadIndex {
        reply: crate::validator::reads::ReadReply,
    },
    /// Leader transfer (Raft): hand leadership to validator `to`, or to the one the core
    /// picks (`Driver::transfer_leadership`).
    TransferLeader {
        to: Option<u16>,
        reply: crate::validator::leadership::TransferReply,
    },
}

/// What the loop knows about the node; `GET /v1/status` shows it as it is (the loop keeps it
/// current).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub chain_id: String,
    /// `hotstuff`, `pbft` or `raft`.
    pub protocol: String,
    /// Height of the last committed block (0 before the first).
    #[serde(with = "types::dec")]
    pub height: u64,
    /// Hash of that block, or the genesis hash before the first.
    pub latest_hash: Digest,
    #[serde(with = "types::dec")]
    pub view: u64,
    /// Replica index of the current leader; `null` while none is known (a Raft election).
    pub leader: Option<u16>,
    /// Connected peers (libp2p peer ids or addresses).
    pub peers: Vec<String>,
    /// The node is fetching blocks it missed and its view of the chain is behind.
    pub catching_up: bool,
    #[serde(with = "types::dec")]
    pub mempool_size: usize,
    /// Raft chains: the configuration this validator's core uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftConfigView>,
}

/// One committed block, as broadcast by the loop and streamed by `GET /v1/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedEvent {
    #[serde(with = "types::dec")]
    pub height: u64,
    pub hash: Digest,
    /// Number of transactions in the block (applied or skipped).
    #[serde(with = "types::dec")]
    pub txs: usize,
    pub tx_hashes: Vec<Digest>,
    #[serde(with = "types::dec")]
    pub timestamp_ms: u64,
}

impl CommittedEvent {
    /// The event for a committed block (what the loop sends on `Out::Committed`).
    pub fn of(block: &Block) -> CommittedEvent {
        let hashes = block.txs.iter().map(ledger::Transaction::hash).collect();
        CommittedEvent::with_hashes(block, hashes)
    }

    /// [`CommittedEvent::of`] with the transactions' hashes already known (from the
    /// block's receipts, in order), so nothing is hashed again.
    pub fn with_hashes(block: &Block, tx_hashes: Vec<Digest>) -> CommittedEvent {
        assert_eq!(tx_hashes.len(), block.txs.len(), "one hash per transaction");
        CommittedEvent {
            height: block.header.height,
            hash: block.hash(),
            txs: block.txs.len(),
            tx_hashes,
            timestamp_ms: block.header.timestamp_ms,
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Read only: the ledger in the loop is the one writer.
    pub store: RedbStore,
    pub commands: mpsc::Sender<ApiCommand>,
    pub events: broadcast::Sender<CommittedEvent>,
    pub status: Arc<RwLock<NodeStatus>>,
    pub metrics: Arc<Metrics>,
    pub chain: ChainBinding,
    /// How long `mode=commit` waits for the block before answering `unknown`.
    pub commit_wait: Duration,
    /// Set by the validator loop while it is backlogged (execution or storage behind
    /// consensus): submissions are answered 503 with `Retry-After` before any work is done
    /// on them.
    pub busy: Arc<std::sync::atomic::AtomicBool>,
    /// The admission stage's workers: every submission is hashed and its signature checked
    /// there, off the validator loop and off the HTTP threads.
    pub admission: Admission,
}

impl ApiState {
    fn is_busy(&self) -> bool {
        self.busy.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The router's state: the API state plus the shutdown signal that ends event streams and
/// commit waits (so a graceful shutdown does not wait for them).
#[derive(Clone)]
struct Ctx {
    api: ApiState,
    stop: watch::Receiver<bool>,
}

impl Ctx {
    /// Completes once shutdown has begun; never if there is no shutdown signal.
    async fn stopped(&self) {
        let mut stop = self.stop.clone();
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// All routes, without a shutdown signal (event streams end when the client leaves) and
/// without the per-client limits (they need the client's address: use [`serve_with`]).
pub fn router(state: ApiState) -> Router {
    let (_never, stop) = watch::channel(false);
    routes(Ctx { api: state, stop })
}

/// Serves the API on `listener` with the default [`ApiLimits`] until `shutdown` completes
/// (see [`serve_with`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ApiLimits::default(), shutdown).await
}

/// Serves the API on `listener` with `limits` until `shutdown` completes, then stops
/// accepting, ends event streams and commit waits, and returns once open requests are
/// answered.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: ApiState,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    let metrics = state.metrics.clone();
    let mut app = routes(Ctx { api: state, stop });
    let mut forget = None;
    if let Some(rate) = limit::RateLimit::new(limits, metrics.clone()) {
        let rate = Arc::new(rate);
        forget = Some(tokio::spawn(rate.clone().forget_idle()));
        // Outermost: a request over the rate costs no routing, body reading or store access.
        app = app.layer(axum::middleware::from_fn_with_state(
            rate,
            limit::rate_limit,
        ));
    }
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, ?limits, "API listening");
    }
    let listener = limit::LimitedListener::new(listener, limits, metrics);
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let app = app.into_make_service_with_connect_info::<limit::ClientAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await;
    if let Some(task) = forget {
        task.abort();
    }
    served
}

fn routes(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/transactions", post(tx::submit))
        .route(
            "/v1/transactions/batch",
            post(tx::submit_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .route("/v1/transactions/{hash}", get(tx::status))
        .route("/v1/accounts/{address}", get(query::account))
        .route("/v1/blocks/{height}", get(query::block))
        .route("/v1/status", get(query::status))
        .route("/v1/evidence", get(query::evidence))
        .route("/v1/validators", get(validators::validators))
        .route("/v1/leader/transfer", post(validators::transfer_leader))
        .route("/v1/epochs", get(epochs::epochs))
        .route("/v1/health", get(query::health))
        .route("/v1/events", get(sse::events))
        .route("/v1/events/hashes", get(compact::hashes))
        .route("/metrics", get(query::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {method} {}; the API is under /v1 (transactions, accounts, \
             blocks, status, health, events) and /metrics",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// An error answer: `{"error": message}` with a status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::warn!(error = %e, "API store read failed");
        ApiError::unavailable(format!("{e}; retry later"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// Maps an axum extractor rejection (bad path encoding, bad query, body too large or
/// unreadable) to a JSON error with the rejection's own status.
macro_rules! from_rejection {
    ($($ty:ty),*) => {$(
        impl From<$ty> for ApiError {
            fn from(r: $ty) -> ApiError {
                ApiError::new(r.status(), r.body_text())
            }
        }
    )*};
}
from_rejection!(
    axum::extract::rejection::PathRejection,
    axum::extract::rejection::QueryRejection,
    axum::extract::rejection::BytesRejection
);

/// Runs a store read on the blocking pool (redb reads do file I/O).
async fn read_store<T: Send + 'static>(
    store: &RedbStore,
    f: impl FnOnce(&RedbStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ApiError::unavailable(format!("store read failed: {e}"))),
    }
}

/// Sends a command to the loop and waits for its answer, each for at most [`LOOP_WAIT`].
async fn ask<T>(
    api: &ApiState,
    command: impl FnOnce(oneshot::Sender<T>) -> ApiCommand,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    let secs = LOOP_WAIT.as_secs();
    api.commands
        .send_timeout(command(reply), LOOP_WAIT)
        .await
        .map_err(|e| match e {
            mpsc::error::SendTimeoutError::Timeout(_) => ApiError::unavailable(format!(
                "the validator is busy (its command queue stayed full for {secs}s); retry \
                 later (resubmitting the same transaction is safe)"
            )),
            mpsc::error::SendTimeoutError::Closed(_) => {
                ApiError::unavailable("the validator loop has stopped")
            }
        })?;
    match tokio::time::timeout(LOOP_WAIT, answer).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(ApiError::unavailable(
            "the validator loop dropped the request; retry later",
        )),
        Err(_) => Err(ApiError::unavailable(format!(
            "the validator did not answer within {secs}s; retry later"
        ))),
    }
}

/// At most 80 characters of client input, for error messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Client-supplied hex, with an optional `0x` prefix.
fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
}
