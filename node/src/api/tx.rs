//! `POST /v1/transactions` and `GET /v1/transactions/{hash}`.

use super::{ApiCommand, ApiError, Ctx, Submitted, TxStatus, ask, read_store, shorten, strip_0x};
use crate::mempool::{Admitted, Checked, PoolStatus, Rejected};
use crate::validator::admission::AdmissionError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use crypto::Digest;
use ledger::{Store, Transaction, TxRecord};
use serde::Deserialize;
use tokio::sync::broadcast;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    Async,
    #[default]
    Sync,
    Commit,
}

#[derive(Debug, Deserialize)]
pub(super) struct SubmitQuery {
    #[serde(default)]
    mode: Mode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    tx: String,
}

type Answer = Result<(StatusCode, Json<TxStatus>), ApiError>;

fn answer(status: StatusCode, body: TxStatus) -> Answer {
    Ok((status, Json(body)))
}

type SubmitAnswer = Result<Response, ApiError>;

/// Seconds an overloaded validator asks a client to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// A submission's answer; `known`: the node had this exact transaction before the request.
fn submitted(status: StatusCode, body: TxStatus, known: bool) -> SubmitAnswer {
    Ok((
        status,
        Json(Submitted {
            status: body,
            known,
            note: None,
        }),
    )
        .into_response())
}

/// 503 with `Retry-After` around `body`: the validator is overloaded, not the request wrong.
fn overloaded(body: impl IntoResponse) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
        body,
    )
        .into_response()
}

pub(super) async fn submit(
    State(ctx): State<Ctx>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> SubmitAnswer {
    let mode = query?.0.mode;
    let tx = parse_tx(&body?)?;
    if ctx.api.is_busy() || !ctx.api.admission.has_room(1) {
        let hash = tx.hash();
        // A committed transaction is still answered as such.
        if let Some(rec) = committed(&ctx, hash).await? {
            return submitted(StatusCode::OK, TxStatus::committed(hash, &rec), true);
        }
        return rejection(&ctx, hash, Rejected::Busy(BEHIND)).await;
    }
    let origin = Origin {
        sender: tx.sender_address(),
        nonce: tx.body.nonce,
        raw: tx.is_raw(),
    };
    // Hashed once and verified on the admission workers.
    let asked = std::time::Instant::now();
    let tx = on_workers(&ctx, vec![tx])
        .await?
        .pop()
        .ok_or_else(|| ApiError::unavailable(STOPPED))?;
    let hash = tx.hash;
    // Subscribe before anything else, so no commit after this point can be missed.
    let events = (mode == Mode::Commit).then(|| ctx.api.events.subscribe());

    if let Some(rec) = committed(&ctx, hash).await? {
        return submitted(StatusCode::OK, TxStatus::committed(hash, &rec), true);
    }
    let verdict = ask_admission(&ctx, asked, |reply| ApiCommand::Submit {
        tx: Box::new(tx),
        reply,
    })
    .await?;
    let admitted = match verdict {
        Ok(a) => a,
        Err(rejected) => {
            if matches!(rejected, Rejected::NonceUsed { .. })
                && let Some(rec) = stored_consumer(&ctx, hash, origin).await?
            {
                return submitted(StatusCode::OK, TxStatus::committed(hash, &rec), true);
            }
            return rejection(&ctx, hash, rejected).await;
        }
    };
    let known = !matches!(admitted, Admitted::Added(_));
    let pooled = match admitted {
        Admitted::Added(_) | Admitted::AlreadyPending(_) => TxStatus::Pending { hash },
        Admitted::InFlight(_) => TxStatus::InFlight { hash },
    };
    match (mode, events) {
        (Mode::Commit, Some(events)) => wait_for_commit(&ctx, hash, origin, known, events).await,
        (Mode::Async, _) => submitted(StatusCode::ACCEPTED, pooled, known),
        _ => submitted(StatusCode::OK, pooled, known),
    }
}

/// Who sent a submitted transaction and with which nonce, to explain a wait.
#[derive(Clone, Copy)]
struct Origin {
    sender: ledger::Address,
    nonce: u64,
    raw: bool,
}

fn parse_tx(body: &[u8]) -> Result<Transaction, ApiError> {
    let body: SubmitBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid JSON body ({e}); expected {{\"tx\": \"<hex of the encoded transaction>\"}}"
        ))
    })?;
    let raw = hex::decode(strip_0x(&body.tx)).map_err(|e| {
        ApiError::bad_request(format!(
            "field \"tx\" is not hex ({e}): it must be the hex of the encoded transaction"
        ))
    })?;
    Transaction::decode(&raw).map_err(|e| ApiError::bad_request(format!("field \"tx\": {e}")))
}

/// How long a `nonce_used` answer waits, at most, for the store to hold the block that used
/// the nonce (the pool judges by executed blocks, which the store stage writes a moment later).
const STORE_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// The pool said `origin`'s nonce is used. If this very transaction used it in a block the
/// store stage has not written yet, waits (at most [`STORE_CATCH_UP`]) until the store holds
/// the nonce's consumer, and answers its record when that is this transaction. Without the
/// wait, a wallet resubmitting its own committed transaction would hear `nonce_used` and sign
/// it again (found by the Raft 20-change test, issue 21).
async fn stored_consumer(
    ctx: &Ctx,
    hash: Digest,
    origin: Origin,
) -> Result<Option<TxRecord>, ApiError> {
    if origin.raw {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::now() + STORE_CATCH_UP;
    let sender = origin.sender;
    loop {
        // The account first: once it shows the nonce used, the record of whatever used it
        // is visible too (the store remembers a block's records before lookups resume).
        let stored = read_store(&ctx.api.store, move |s| s.account(&sender))
            .await?
            .unwrap_or_default()
            .nonce;
        if let Some(rec) = committed(ctx, hash).await? {
            return Ok(Some(rec));
        }
        if stored > origin.nonce || tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The 422 answer, unless the transaction committed while the pool was being asked (then
/// the pool says its nonce is used, but the truth is `committed`).
async fn rejection(ctx: &Ctx, hash: Digest, rejected: Rejected) -> SubmitAnswer {
    if matches!(rejected, Rejected::NonceUsed { .. })
        && let Some(rec) = committed(ctx, hash).await?
    {
        return submitted(StatusCode::OK, TxStatus::committed(hash, &rec), true);
    }
    tracing::debug!(%hash, reason = %rejected, "API submission rejected");
    let body = TxStatus::Rejected {
        hash,
        reason: rejected.to_string(),
        retryable: rejected.is_retryable(),
        code: Some(rejected.code().to_string()),
    };
    if rejected.is_overload() {
        return Ok(overloaded(Json(Submitted {
            status: body,
            known: false,
            note: None,
        })));
    }
    submitted(StatusCode::UNPROCESSABLE_ENTITY, body, false)
}

/// Waits up to `commit_wait` for a committed event naming `hash`, then answers from the
/// store: `committed`, or 202 with the status the transaction has now (`pending` — with the
/// missing nonce when a lower one holds it back —, `in_flight`, or `unknown`) and a note.
async fn wait_for_commit(
    ctx: &Ctx,
    hash: Digest,
    origin: Origin,
    known: bool,
    mut events: broadcast::Receiver<super::CommittedEvent>,
) -> SubmitAnswer {
    let wait = ctx.api.commit_wait;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let check_store = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = ctx.stopped() => break,
            ev = events.recv() => match ev {
                Ok(ev) => ev.tx_hashes.contains(&hash),
                // Missed some events: one of them may have been ours.
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if check_store && let Some(rec) = committed(ctx, hash).await? {
            return submitted(StatusCode::OK, TxStatus::committed(hash, &rec), known);
        }
    }
    if let Some(rec) = committed(ctx, hash).await? {
        return submitted(StatusCode::OK, TxStatus::committed(hash, &rec), known);
    }
    let ms = wait.as_millis();
    let later = format!(
        "check GET /v1/transactions/{hash} later (resubmitting the same transaction is safe: \
         it is never applied twice)"
    );
    let pool = ask(&ctx.api, |reply| ApiCommand::PoolStatus { hash, reply }).await?;
    let (status, note) = match pool {
        Some(PoolStatus::Pending) => (
            TxStatus::Pending { hash },
            format!("{}; {later}", pending_note(ctx, origin, ms).await),
        ),
        Some(PoolStatus::InFlight) => (
            TxStatus::InFlight { hash },
            format!("in a batch being ordered, not committed within {ms} ms; {later}"),
        ),
        None => {
            // It may have committed (and left the pool) between the two looks.
            if let Some(rec) = committed(ctx, hash).await? {
                return submitted(StatusCode::OK, TxStatus::committed(hash, &rec), known);
            }
            let hint = format!(
                "not committed within {ms} ms and no longer in this validator's pool; {later}"
            );
            (
                TxStatus::Unknown {
                    hash,
                    hint: Some(hint.clone()),
                },
                hint,
            )
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Submitted {
            status,
            known,
            note: Some(note),
        }),
    )
        .into_response())
}

/// Why a pooled transaction is still pending: a missing lower nonce, or simply not batched
/// yet.
async fn pending_note(ctx: &Ctx, origin: Origin, ms: u128) -> String {
    let plain = format!("still pending in this validator's pool after {ms} ms");
    if origin.raw {
        return plain;
    }
    let sender = origin.sender;
    let Ok(account) = read_store(&ctx.api.store, move |s| s.account(&sender)).await else {
        return plain;
    };
    let committed = account.unwrap_or_default().nonce;
    let Ok(ready_to) = ask(&ctx.api, |reply| ApiCommand::NextNonce {
        address: sender,
        committed,
        reply,
    })
    .await
    else {
        return plain;
    };
    if origin.nonce > ready_to {
        format!(
            "pending: its nonce {} waits for nonce {ready_to} of {sender} (the account's next \
             nonce is {committed}), which this validator's pool does not hold; send the missing \
             nonce, or wait if it was sent to another validator",
            origin.nonce
        )
    } else {
        plain
    }
}

async fn committed(ctx: &Ctx, hash: Digest) -> Result<Option<TxRecord>, ApiError> {
    read_store(&ctx.api.store, move |s| s.tx(&hash)).await
}

/// Query parameters of `GET /v1/transactions/{hash}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusQuery {
    /// For a committed transaction: add its inclusion proof (`true`).
    #[serde(default)]
    prove: bool,
    /// Answer only once this validator has stored at least this height.
    min_height: Option<u64>,
    #[serde(default)]
    consistency: super::query::Consistency,
}

pub(super) async fn status(
    State(ctx): State<Ctx>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<StatusQuery>, QueryRejection>,
) -> Answer {
    let hash = parse_hash(&path?.0)?;
    let query = query?.0;
    super::query::ready_to_read(&ctx, query.min_height, query.consistency).await?;
    if let Some(rec) = committed(&ctx, hash).await? {
        let mut status = TxStatus::committed(hash, &rec);
        if query.prove {
            let (height, index) = (rec.height, rec.index);
            let proof = read_store(&ctx.api.store, move |s| {
                super::proof::prove_tx(s, height, index)
            })
            .await?;
            let Some(proof) = proof else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "transaction {hash} is committed at height {height}, which has no \
                         header certificate here (yet; a Raft chain has none): retry shortly \
                         or ask another validator"
                    ),
                ));
            };
            if let TxStatus::Committed { proof: p, .. } = &mut status {
                *p = Some(proof);
            }
        }
        return answer(StatusCode::OK, status);
    }
    match ask(&ctx.api, |reply| ApiCommand::PoolStatus { hash, reply }).await? {
        Some(PoolStatus::Pending) => answer(StatusCode::OK, TxStatus::Pending { hash }),
        Some(PoolStatus::InFlight) => answer(StatusCode::OK, TxStatus::InFlight { hash }),
        None => {
            // It may have committed (and left the pool) between the two looks.
            if let Some(rec) = committed(&ctx, hash).await? {
                return answer(StatusCode::OK, TxStatus::committed(hash, &rec));
            }
            let kept_from = read_store(&ctx.api.store, |s| s.floors()).await?.tx;
            if kept_from > 1 {
                let hint = format!(
                    "not committed at heights {kept_from} and above and not in this \
                     validator's pool; it keeps no transaction records below height \
                     {kept_from} (pruned, retain_blocks), so it may have committed there: ask \
                     a validator that keeps more history, or check the sender's nonce"
                );
                return answer(
                    StatusCode::NOT_FOUND,
                    TxStatus::Pruned {
                        hash,
                        kept_from,
                        hint,
                    },
                );
            }
            let hint = "not committed and not in this validator's pool: it was never \
                        received here, or was dropped; submit it (again) if it should apply"
                .to_string();
            answer(
                StatusCode::NOT_FOUND,
                TxStatus::Unknown {
                    hash,
                    hint: Some(hint),
                },
            )
        }
    }
}

fn parse_hash(s: &str) -> Result<Digest, ApiError> {
    strip_0x(s).parse().map_err(|_| {
        ApiError::bad_request(format!(
            "expected a transaction hash of 64 hex characters, got {:?} ({} characters)",
            shorten(s),
            s.chars().count()
        ))
    })
}

/// Largest body of `POST /v1/transactions/batch`.
pub const MAX_BATCH_BODY_BYTES: usize = 16 << 20;
/// Most transactions in one `POST /v1/transactions/batch`.
pub const MAX_BATCH_TXS: usize = 10_000;

/// The answer to `POST /v1/transactions/batch`: how many transactions were admitted (new,
/// or already pooled) and why each of the others was not.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchVerdict {
    pub accepted: usize,
    pub rejected: Vec<BatchRejection>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchRejection {
    /// Position of the transaction in the request.
    pub index: usize,
    pub hash: Digest,
    pub reason: String,
    pub retryable: bool,
    /// [`Rejected::code`]: `busy` and `pool_full` mean the validator is overloaded.
    #[serde(default)]
    pub code: String,
}

impl BatchRejection {
    fn is_overload(&self) -> bool {
        matches!(self.code.as_str(), "busy" | "pool_full")
    }
}

/// The body of `POST /v1/transactions/batch`: each transaction as a 4-byte little-endian
/// length followed by [`Transaction::encode`].
pub fn encode_batch<'a>(txs: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for tx in txs {
        body.extend_from_slice(&(tx.len() as u32).to_le_bytes());
        body.extend_from_slice(tx);
    }
    body
}

/// `POST /v1/transactions/batch`: many transactions in one binary request, for load
/// generators and relays (the body format is [`encode_batch`]'s). Transactions are hashed
/// and their signatures checked on the admission workers, so the validator loop only runs
/// the pool checks.
/// The answer is 200 with a [`BatchVerdict`] (every verdict `sync` would give, in one
/// answer), or 400 naming the first malformed transaction, in which case none is admitted.
/// Unlike the single submit, a transaction that already committed is not looked up in the
/// store: it is refused by the pool (its nonce is used), so resubmitting never pays twice.
pub(super) async fn submit_batch(
    State(ctx): State<Ctx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let txs = parse_batch(&body?)?;
    let total = txs.len();
    if ctx.api.is_busy() || !ctx.api.admission.has_room(total) {
        // Refused before the signatures are checked: an overloaded validator spends nothing
        // on work it would throw away.
        let busy = Rejected::Busy(BEHIND);
        let rejected = txs
            .iter()
            .enumerate()
            .map(|(i, tx)| rejection_of(i, tx.hash(), &busy))
            .collect();
        return Ok(overloaded(Json(BatchVerdict {
            accepted: 0,
            rejected,
        })));
    }
    // Hashed once and verified on the admission workers; the loop only inserts.
    let asked = std::time::Instant::now();
    let checked = on_workers(&ctx, txs).await?;
    let hashes: Vec<Digest> = checked.iter().map(|c| c.hash).collect();
    let answers = ask_admission(&ctx, asked, |reply| ApiCommand::SubmitBatch {
        txs: checked,
        reply,
    })
    .await?;
    let rejected: Vec<BatchRejection> = hashes
        .into_iter()
        .zip(answers)
        .enumerate()
        .filter_map(|(i, (hash, answer))| answer.err().map(|r| rejection_of(i, hash, &r)))
        .collect();
    let verdict = Json(BatchVerdict {
        accepted: total - rejected.len(),
        rejected,
    });
    // Nothing admitted because the validator is overloaded (busy, pool full): 503.
    if verdict.accepted == 0
        && total > 0
        && verdict.rejected.iter().all(BatchRejection::is_overload)
    {
        return Ok(overloaded(verdict));
    }
    Ok(verdict.into_response())
}

/// Asks the loop to admit checked transactions, and records the admission stage's time
/// (from `asked`, before the workers, to the loop's answer).
async fn ask_admission<T>(
    ctx: &Ctx,
    asked: std::time::Instant,
    command: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> ApiCommand,
) -> Result<T, ApiError> {
    let answer = ask(&ctx.api, command).await?;
    ctx.api
        .metrics
        .stages
        .admission
        .observe(asked.elapsed().as_secs_f64());
    Ok(answer)
}

/// Hashes and verifies `txs` on the admission workers.
async fn on_workers(ctx: &Ctx, txs: Vec<Transaction>) -> Result<Vec<Checked>, ApiError> {
    ctx.api.admission.check(txs).await.map_err(|e| match e {
        AdmissionError::Busy => ApiError::unavailable(WORKERS_BUSY),
        AdmissionError::Stopped => ApiError::unavailable(STOPPED),
    })
}

/// The answer when the admission workers' queue filled between the check and the send.
const WORKERS_BUSY: &str = "the validator's signature workers are busy; retry later";
/// The answer when the admission workers are gone (the validator is stopping).
const STOPPED: &str = "the validator is stopping; retry later";

/// Why a busy validator refuses (see `Driver::backlogged`).
const BEHIND: &str = "the validator has more queued than it can order, execute and store promptly";

fn rejection_of(index: usize, hash: Digest, r: &Rejected) -> BatchRejection {
    BatchRejection {
        index,
        hash,
        reason: r.to_string(),
        retryable: r.is_retryable(),
        code: r.code().to_string(),
    }
}

/// Splits a batch body into transactions; the error names the first bad one.
fn parse_batch(body: &[u8]) -> Result<Vec<Transaction>, ApiError> {
    let mut txs = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let i = txs.len();
        if i >= MAX_BATCH_TXS {
            return Err(ApiError::bad_request(format!(
                "more than {MAX_BATCH_TXS} transactions in one batch; split it"
            )));
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(ApiError::bad_request(format!(
                "transaction {i}: {} bytes left, too few for its 4-byte length prefix",
                rest.len()
            )));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > tail.len() {
            return Err(ApiError::bad_request(format!(
                "transaction {i}: length prefix says {len} bytes but only {} remain",
                tail.len()
            )));
        }
        let (bytes, tail) = tail.split_at(len);
        let tx = Transaction::decode(bytes)
            .map_err(|e| ApiError::bad_request(format!("transaction {i}: {e}")))?;
        txs.push(tx);
        rest = tail;
    }
    Ok(txs)
}
