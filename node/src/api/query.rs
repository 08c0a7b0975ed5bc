//! Reads: accounts, blocks, status, health, metrics, evidence.

use super::{
    AccountView, ApiCommand, ApiError, BlockView, Ctx, NodeStatus, read_store, shorten, strip_0x,
};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use crypto::Digest;
use ledger::{Address, Store};
use serde::Serialize;

pub(super) async fn account(
    State(ctx): State<Ctx>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let raw = path?.0;
    let address: Address = strip_0x(&raw).parse().map_err(|_| {
        ApiError::bad_request(format!(
            "expected an address of 40 hex characters, got {:?} ({} characters)",
            shorten(&raw),
            raw.chars().count()
        ))
    })?;
    let account = read_store(&ctx.api.store, move |s| s.account(&address)).await?;
    let account = account.unwrap_or_default();
    let committed = account.nonce;
    // Committed data never depends on the loop: if it cannot answer, the pool is not counted.
    let pending_nonce = super::ask(&ctx.api, |reply| ApiCommand::NextNonce {
        address,
        committed,
        reply,
    })
    .await
    .unwrap_or(committed);
    Ok(Json(AccountView {
        address,
        balance: account.balance,
        nonce: account.nonce,
        pending_nonce,
    }))
}

/// A height exactly as the error message promises: decimal digits, no sign, no leading
/// zero (`0` itself is allowed), within u64. `u64::from_str` alone would take `+1` and
/// `00001`.
fn parse_height(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let canonical = s == "0" || !s.starts_with('0');
    if digits && canonical {
        s.parse().ok()
    } else {
        None
    }
}

pub(super) async fn block(
    State(ctx): State<Ctx>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockView>, ApiError> {
    let raw = path?.0;
    let wanted = match raw.as_str() {
        "latest" => None,
        s => Some(parse_height(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "expected a block height (decimal digits without sign or leading zeros, at \
                 most {}) or \"latest\", got {:?}",
                u64::MAX,
                shorten(s)
            ))
        })?),
    };
    let (latest, block) = read_store(&ctx.api.store, move |s| {
        let latest = s.height()?;
        let block = s.block(wanted.unwrap_or(latest))?;
        Ok((latest, block))
    })
    .await?;
    match block {
        Some(b) => Ok(Json(BlockView::from(&b))),
        None if latest == 0 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no block has been committed yet",
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no block at height {}: heights run from 1 to the latest, {latest}",
                wanted.unwrap_or(latest)
            ),
        )),
    }
}

#[derive(Serialize)]
pub(super) struct StatusView {
    #[serde(flatten)]
    node: NodeStatus,
    /// With `chain_id`, what a transaction must be signed for.
    genesis_hash: Digest,
}

pub(super) async fn status(State(ctx): State<Ctx>) -> Json<StatusView> {
    // A writer that panicked left the status as it was; still worth showing.
    let node = match ctx.api.status.read() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    Json(StatusView {
        node,
        genesis_hash: ctx.api.chain.genesis_hash,
    })
}

pub(super) async fn health(State(ctx): State<Ctx>) -> Response {
    if ctx.api.commands.is_closed() {
        let body = serde_json::json!({ "ok": false, "error": "the validator loop has stopped" });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(serde_json::json!({ "ok": true })).into_response()
}

pub(super) async fn metrics(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    let text = ctx
        .api
        .metrics
        .encode()
        .map_err(|_| ApiError::unavailable("metrics could not be encoded"))?;
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response())
}

/// `GET /v1/evidence`: the equivocation evidence this validator found and stored, as
/// `{"count": N, "evidence": [record, ...]}` (records as in
/// [`crate::validator::evidence::Evidence`]; at most [`crate::store::MAX_EVIDENCE`]).
pub(super) async fn evidence(State(ctx): State<Ctx>) -> Result<Json<serde_json::Value>, ApiError> {
    let raw = read_store(&ctx.api.store, |s| s.evidence()).await?;
    let records: Vec<serde_json::Value> = raw
        .iter()
        .filter_map(|r| serde_json::from_slice(r).ok())
        .collect();
    Ok(Json(serde_json::json!({
        "count": records.len(),
        "evidence": records,
    })))
}

#[cfg(test)]
mod tests {
    use super::parse_height;

    #[test]
    fn heights_are_plain_decimal() {
        assert_eq!(parse_height("0"), Some(0));
        assert_eq!(parse_height("1"), Some(1));
        assert_eq!(parse_height("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+1",
            "-1",
            "00001",
            "01",
            "00",
            " 1",
            "1 ",
            "1e3",
            "0x10",
            "١",
            "18446744073709551616",
        ] {
            assert_eq!(parse_height(bad), None, "{bad:?} must be refused");
        }
    }
}
