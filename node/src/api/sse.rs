//! `GET /v1/events`: Server-Sent Events, one `committed` event per block.
//!
//! Each subscriber has its own place in the broadcast channel. One that falls more than the
//! channel's capacity behind skips ahead to the oldest event still held and is told so in an
//! SSE comment line (`: lagged, skipped N committed events ...`); the loop never waits.

use super::{CommittedEvent, Ctx};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

pub(super) async fn events(
    State(ctx): State<Ctx>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = ctx.api.events.subscribe();
    let stream = futures::stream::unfold((ctx, rx), |(ctx, mut rx)| async move {
        let event = tokio::select! {
            _ = ctx.stopped() => return None,
            ev = rx.recv() => next(ev)?,
        };
        Some((Ok(event), (ctx, rx)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The SSE event for one broadcast result; `None` ends the stream.
fn next(ev: Result<CommittedEvent, RecvError>) -> Option<Event> {
    match ev {
        Ok(ev) => Some(committed(&ev)),
        Err(RecvError::Lagged(n)) => Some(Event::default().comment(format!(
            "lagged, skipped {n} committed events; read the missed blocks from \
             GET /v1/blocks/{{height}}"
        ))),
        Err(RecvError::Closed) => None,
    }
}

fn committed(ev: &CommittedEvent) -> Event {
    let data = serde_json::to_string(ev).unwrap_or_else(|_| "{}".to_string());
    Event::default()
        .event("committed")
        .id(ev.height.to_string())
        .data(data)
}
