//! Reads: accounts, blocks, status, health, metrics, evidence.

use super::{
    AccountView, ApiCommand, ApiError, BlockView, Ctx, NodeStatus, read_store, shorten, strip_0x,
};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use crypto::Digest;
use ledger::{Address, Store};
use serde::Serialize;

/// Query parameters of `GET /v1/accounts/{address}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountQuery {
    /// Answer with a proof (`true`): at `height`, or at the latest certified height.
    #[serde(default)]
    prove: bool,
    /// With `prove`: the height to prove at (it must have a header certificate).
    height: Option<u64>,
    /// Answer only once this validator has stored at least this height.
    min_height: Option<u64>,
    #[serde(default)]
    consistency: Consistency,
}

/// `consistency=` of a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Consistency {
    /// What this validator has stored (with `min_height`: at least that).
    #[default]
    Latest,
    /// Raft only: ReadIndex. The leader confirms with a majority that it still leads and
    /// names its commit index; the read waits until this validator has stored it. Reflects
    /// every write acknowledged before the read began, whichever validator acknowledged it.
    Linearizable,
}

/// How long a read waits for `min_height` before it answers 503.
const MIN_HEIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until this validator has stored `min_height` (at most [`MIN_HEIGHT_WAIT`]); 503
/// with the height it is at otherwise.
async fn wait_for_height(ctx: &Ctx, min_height: Option<u64>) -> Result<(), ApiError> {
    wait_for(ctx, min_height, "min_height").await
}

async fn wait_for(ctx: &Ctx, min_height: Option<u64>, what: &str) -> Result<(), ApiError> {
    let Some(min) = min_height else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + MIN_HEIGHT_WAIT;
    loop {
        let at = read_store(&ctx.api.store, |s| s.height()).await?;
        if at >= min {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::unavailable(format!(
                "this validator is at height {at}, below {what} {min}; retry, or ask \
                 another validator"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The chain's protocol name (`hotstuff`, `pbft`, `raft`).
fn protocol(ctx: &Ctx) -> String {
    match ctx.api.status.read() {
        Ok(s) => s.protocol.clone(),
        Err(poisoned) => poisoned.into_inner().protocol.clone(),
    }
}

/// Everything a read waits for before it looks at the store: `min_height`, and for a
/// linearizable read the height the Raft leader confirms (ReadIndex).
pub(super) async fn ready_to_read(
    ctx: &Ctx,
    min_height: Option<u64>,
    consistency: Consistency,
) -> Result<(), ApiError> {
    wait_for_height(ctx, min_height).await?;
    if consistency == Consistency::Latest {
        return Ok(());
    }
    if protocol(ctx) != "raft" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "consistency=linearizable is Raft's ReadIndex; a BFT validator's answer is checked \
             instead: use min_height for read-your-writes, and prove=true (cairn --verify) to \
             verify it against a certificate",
        ));
    }
    let index = super::ask(&ctx.api, |reply| ApiCommand::ReadIndex { reply })
        .await?
        .ok_or_else(|| {
            ApiError::unavailable(
                "no leader confirmed this read (an election may be under way, or this \
                 validator cannot reach the leader); retry shortly",
            )
        })?;
    wait_for(ctx, Some(index), "the read index").await
}

pub(super) async fn account(
    State(ctx): State<Ctx>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<AccountQuery>, QueryRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let raw = path?.0;
    let query = query?.0;
    let address: Address = strip_0x(&raw).parse().map_err(|_| {
        ApiError::bad_request(format!(
            "expected an address of 40 hex characters, got {:?} ({} characters)",
            shorten(&raw),
            raw.chars().count()
        ))
    })?;
    if query.height.is_some() && !query.prove {
        return Err(ApiError::bad_request(
            "height= is only for proofs (prove=true); a plain read answers at the latest height",
        ));
    }
    if query.prove && query.consistency == Consistency::Linearizable {
        return Err(ApiError::bad_request(
            "prove=true and consistency=linearizable do not combine: a proof is checked \
             against a certificate (BFT chains), a linearizable read is Raft's ReadIndex",
        ));
    }
    ready_to_read(&ctx, query.min_height, query.consistency).await?;
    let (account, height, proof) = if query.prove {
        // Proofs are served at certified heights, which trail the stored one: with
        // `min_height`, wait for a certificate at or above it too.
        let deadline = tokio::time::Instant::now() + MIN_HEIGHT_WAIT;
        let (account, height, proof) = loop {
            let r = proven(&ctx, address, query.height).await?;
            let min = query.min_height.unwrap_or(0);
            if query.height.is_some() || r.1 >= min {
                break r;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::unavailable(format!(
                    "the latest certified height here is {}, below min_height {min}; retry \
                     shortly, or ask another validator",
                    r.1
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        (account, height, Some(proof))
    } else {
        let (account, height) =
            read_store(&ctx.api.store, move |s| s.account_at_tip(&address)).await?;
        (account, height, None)
    };
    let committed = account.nonce;
    // Committed data never depends on the loop: if it cannot answer, the pool is not counted.
    let pending_nonce = super::ask(&ctx.api, |reply| ApiCommand::NextNonce {
        address,
        committed,
        reply,
    })
    .await
    .unwrap_or(committed);
    #[cfg_attr(not(feature = "byzantine"), allow(unused_mut))]
    let mut view = AccountView {
        address,
        height,
        balance: account.balance,
        nonce: account.nonce,
        pending_nonce,
        proof,
    };
    #[cfg(feature = "byzantine")]
    if crate::validator::byzantine::LIE_ABOUT_BALANCES.load(std::sync::atomic::Ordering::Relaxed) {
        crate::validator::byzantine::lie(&mut view);
    }
    Ok(Json(view))
}

/// The account at `height` (default: the latest certified height) with its proof.
async fn proven(
    ctx: &Ctx,
    address: Address,
    height: Option<u64>,
) -> Result<(ledger::Account, u64, super::proof::AccountProofView), ApiError> {
    if protocol(ctx) == "raft" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this chain runs Raft: its validators sign no header certificates (Raft tolerates \
             crashes, not lies), so there is nothing a wallet could verify a proof against",
        ));
    }
    let answer = read_store(&ctx.api.store, move |s| {
        let stored = s.height()?;
        let found = match height {
            Some(h) if h > stored => {
                return Ok(Err(format!(
                    "height {h} is above this validator's height {stored}"
                )));
            }
            Some(h) => s.header_cert(h)?.map(|c| (h, c)),
            None => s.latest_header_cert(stored)?,
        };
        let Some((h, cert)) = found else {
            let latest = s.latest_header_cert(stored)?.map(|(h, _)| h);
            return Ok(Err(format!(
                "no header certificate {}: one forms once 2f+1 validators have stored a \
                 block{}",
                height.map_or("yet".to_string(), |h| format!("at height {h}")),
                latest.map_or(String::new(), |l| format!(
                    "; the latest certified height is {l}"
                ))
            )));
        };
        Ok(super::proof::prove(s, &address, h, cert)?.map(|(a, p)| (a, h, p)))
    })
    .await?;
    answer.map_err(|m| ApiError::new(StatusCode::NOT_FOUND, m))
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

/// Query parameters of `GET /v1/blocks/{height}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BlockQuery {
    /// Answer only once this validator has stored at least this height.
    min_height: Option<u64>,
    #[serde(default)]
    consistency: Consistency,
}

pub(super) async fn block(
    State(ctx): State<Ctx>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<BlockQuery>, QueryRejection>,
) -> Result<Json<BlockView>, ApiError> {
    let raw = path?.0;
    let query = query?.0;
    ready_to_read(&ctx, query.min_height, query.consistency).await?;
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
    let (latest, block, floor) = read_store(&ctx.api.store, move |s| {
        let latest = s.height()?;
        let block = s.block(wanted.unwrap_or(latest))?;
        Ok((latest, block, s.floors()?.history))
    })
    .await?;
    match block {
        Some(b) => Ok(Json(BlockView::from(&b))),
        None if latest == 0 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no block has been committed yet",
        )),
        None if wanted.is_some_and(|h| h >= 1 && h < floor) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "block {} is pruned here: this validator keeps blocks from height {floor} to \
                 the latest, {latest} (retain_blocks, or a state snapshot); ask a validator \
                 that keeps more history",
                wanted.unwrap_or(latest)
            ),
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
