//! `POST /v1/transactions` and `GET /v1/transactions/{hash}`.

use super::{ApiCommand, ApiError, Ctx, TxStatus, ask, read_store, shorten, strip_0x};
use crate::mempool::{Admitted, PoolStatus, Rejected};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
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

pub(super) async fn submit(
    State(ctx): State<Ctx>,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let mode = query?.0.mode;
    let tx = parse_tx(&body?)?;
    let hash = tx.hash();
    // Subscribe before anything else, so no commit after this point can be missed.
    let events = (mode == Mode::Commit).then(|| ctx.api.events.subscribe());

    if let Some(rec) = committed(&ctx, hash).await? {
        return answer(StatusCode::OK, TxStatus::committed(hash, &rec));
    }
    let verdict = ask(&ctx.api, |reply| ApiCommand::Submit { tx, reply }).await?;
    let admitted = match verdict {
        Ok(a) => a,
        Err(rejected) => return rejection(&ctx, hash, rejected).await,
    };
    let pooled = match admitted {
        Admitted::Added(_) | Admitted::AlreadyPending(_) => TxStatus::Pending { hash },
        Admitted::InFlight(_) => TxStatus::InFlight { hash },
    };
    match (mode, events) {
        (Mode::Commit, Some(events)) => wait_for_commit(&ctx, hash, events).await,
        (Mode::Async, _) => answer(StatusCode::ACCEPTED, pooled),
        _ => answer(StatusCode::OK, pooled),
    }
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

/// The 422 answer, unless the transaction committed while the pool was being asked (then
/// the pool says its nonce is used, but the truth is `committed`).
async fn rejection(ctx: &Ctx, hash: Digest, rejected: Rejected) -> Answer {
    if matches!(rejected, Rejected::NonceUsed { .. })
        && let Some(rec) = committed(ctx, hash).await?
    {
        return answer(StatusCode::OK, TxStatus::committed(hash, &rec));
    }
    tracing::debug!(%hash, reason = %rejected, "API submission rejected");
    let body = TxStatus::Rejected {
        hash,
        reason: rejected.to_string(),
        retryable: rejected.is_retryable(),
    };
    answer(StatusCode::UNPROCESSABLE_ENTITY, body)
}

/// Waits up to `commit_wait` for a committed event naming `hash`, then answers from the
/// store: `committed`, or 202 `unknown` with the hash to check later.
async fn wait_for_commit(
    ctx: &Ctx,
    hash: Digest,
    mut events: broadcast::Receiver<super::CommittedEvent>,
) -> Answer {
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
            return answer(StatusCode::OK, TxStatus::committed(hash, &rec));
        }
    }
    if let Some(rec) = committed(ctx, hash).await? {
        return answer(StatusCode::OK, TxStatus::committed(hash, &rec));
    }
    let hint = format!(
        "not committed within {} ms; check GET /v1/transactions/{hash} later (resubmitting \
         the same transaction is safe: it is never applied twice)",
        wait.as_millis()
    );
    answer(
        StatusCode::ACCEPTED,
        TxStatus::Unknown {
            hash,
            hint: Some(hint),
        },
    )
}

async fn committed(ctx: &Ctx, hash: Digest) -> Result<Option<TxRecord>, ApiError> {
    read_store(&ctx.api.store, move |s| s.tx(&hash)).await
}

pub(super) async fn status(
    State(ctx): State<Ctx>,
    path: Result<Path<String>, PathRejection>,
) -> Answer {
    let hash = parse_hash(&path?.0)?;
    if let Some(rec) = committed(&ctx, hash).await? {
        return answer(StatusCode::OK, TxStatus::committed(hash, &rec));
    }
    match ask(&ctx.api, |reply| ApiCommand::PoolStatus { hash, reply }).await? {
        Some(PoolStatus::Pending) => answer(StatusCode::OK, TxStatus::Pending { hash }),
        Some(PoolStatus::InFlight) => answer(StatusCode::OK, TxStatus::InFlight { hash }),
        None => {
            // It may have committed (and left the pool) between the two looks.
            if let Some(rec) = committed(&ctx, hash).await? {
                return answer(StatusCode::OK, TxStatus::committed(hash, &rec));
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
