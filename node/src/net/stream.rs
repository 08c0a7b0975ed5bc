//! Framed consensus streams: one long-lived outbound stream per peer (the writer task) and one
//! inbound stream per peer (a reader task). A frame is a u32 big-endian payload length followed
//! by the payload. A reader checks the length against the frame cap, waits for the peer's
//! inbound rate limit and for room in the peer's inbound queue (a slot and the payload's
//! bytes), and only then reads and allocates the payload.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::Stream;
use libp2p_stream::{Control, IncomingStreams};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::{BACKOFF_MAX, BACKOFF_MIN, Counters, Delivery, PROTOCOL, Peer, Shared, jitter};
use libp2p::PeerId;

/// Opening a stream on an established connection normally takes one round trip.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames up to this size are copied into one write buffer with their neighbours; larger ones
/// are written straight from their own buffer.
const COALESCE_BYTES: usize = 64 << 10;
/// At most this many bytes (about) are taken from the queue before writing and flushing.
const BATCH_BYTES: usize = 256 << 10;
/// Initial buffer for an incoming payload; it grows only as bytes actually arrive.
const READ_CHUNK: usize = 64 << 10;

/// Why `pump` returned.
enum PumpEnd {
    /// The stream failed or the peer closed it; open another.
    StreamBroken,
    /// The handle is gone (shutdown).
    QueueClosed,
}

/// Carries `peer`'s outgoing queue over one stream at a time, reopening it (with backoff)
/// whenever it breaks, until the transport stops or the peer leaves the set. While the peer
/// is not connected, frames wait in the bounded queue.
pub(crate) async fn writer(
    peer: Arc<Peer>,
    queue: mpsc::Receiver<Bytes>,
    control: Control,
    shared: Arc<Shared>,
) {
    tokio::select! {
        _ = peer.gone() => tracing::debug!(peer_id = %peer.peer_id, "writer stopped: peer left"),
        _ = write_loop(&peer, queue, control, shared) => {}
    }
}

async fn write_loop(
    peer: &Peer,
    mut queue: mpsc::Receiver<Bytes>,
    mut control: Control,
    shared: Arc<Shared>,
) {
    let mut connected = peer.connected.subscribe();
    // Frames taken from the queue but not yet written: kept across a stream failure.
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let mut backoff = BACKOFF_MIN;
    loop {
        if connected.wait_for(|c| *c).await.is_err() {
            return;
        }
        let opened =
            tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer.peer_id, PROTOCOL));
        let mut stream = match opened.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(peer = peer.index(), error = %e, "cannot open consensus stream");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(_) => {
                tracing::debug!(peer = peer.index(), "opening consensus stream timed out");
                continue;
            }
        };
        tracing::debug!(peer = peer.index(), "consensus stream open");
        match pump(
            &mut stream,
            &mut queue,
            &mut batch,
            peer,
            &shared,
            &mut backoff,
        )
        .await
        {
            PumpEnd::QueueClosed => return,
            PumpEnd::StreamBroken => {
                tracing::debug!(
                    peer = peer.index(),
                    unsent = batch.len(),
                    "consensus stream closed; reopening"
                );
                drop(stream);
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Writes frames from `queue` to `stream` until one of them fails. The peer never writes on
/// this stream, so a completed read means it was closed or reset: that is noticed at once,
/// not at the next write.
async fn pump(
    stream: &mut Stream,
    queue: &mut mpsc::Receiver<Bytes>,
    batch: &mut VecDeque<Bytes>,
    peer: &Peer,
    shared: &Shared,
    backoff: &mut Duration,
) -> PumpEnd {
    let mut buf = Vec::with_capacity(COALESCE_BYTES);
    let mut probe = [0u8; 1];
    loop {
        if !batch.is_empty() {
            if write_batch(stream, batch, &mut buf).await.is_err() {
                return PumpEnd::StreamBroken;
            }
            let bytes: usize = batch.iter().map(Bytes::len).sum();
            Counters::add(&shared.counters.frames_out, batch.len() as u64);
            Counters::add(&shared.counters.bytes_out, bytes as u64);
            // Written: no longer held for this peer.
            peer.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            batch.clear();
            *backoff = BACKOFF_MIN;
        }
        enum Next {
            Frame(Option<Bytes>),
            Closed,
        }
        let next = tokio::select! {
            frame = queue.recv() => Next::Frame(frame),
            _ = stream.read(&mut probe) => Next::Closed,
        };
        match next {
            Next::Frame(None) => return PumpEnd::QueueClosed,
            Next::Closed => return PumpEnd::StreamBroken,
            Next::Frame(Some(frame)) => {
                let mut size = frame.len();
                batch.push_back(frame);
                while size < BATCH_BYTES {
                    let Ok(frame) = queue.try_recv() else { break };
                    size += frame.len();
                    batch.push_back(frame);
                }
            }
        }
    }
}

async fn write_batch(
    stream: &mut Stream,
    batch: &VecDeque<Bytes>,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    for frame in batch {
        // `enqueue` refuses frames above max_frame_bytes, which is at most u32::MAX.
        let len = u32::try_from(frame.len()).map_err(std::io::Error::other)?;
        buf.extend_from_slice(&len.to_be_bytes());
        if frame.len() <= COALESCE_BYTES {
            buf.extend_from_slice(frame);
        } else {
            stream.write_all(buf).await?;
            buf.clear();
            stream.write_all(frame).await?;
        }
    }
    stream.write_all(buf).await?;
    stream.flush().await
}

/// Accepts inbound consensus streams and runs one reader per peer. A new stream from a peer
/// replaces its previous one (a peer opens a new stream only after the old one broke), so a
/// peer can hold at most one reader. `_anchor` only keeps [`super::Incoming`] open while this
/// loop runs.
pub(crate) async fn accept_loop(
    mut incoming: IncomingStreams,
    shared: Arc<Shared>,
    _anchor: mpsc::Sender<Delivery>,
) {
    let mut readers = JoinSet::new();
    let mut current: HashMap<PeerId, AbortHandle> = HashMap::new();
    while let Some((peer_id, stream)) = incoming.next().await {
        while readers.try_join_next().is_some() {}
        current.retain(|_, h| !h.is_finished());
        let Some(peer) = shared.peer(&peer_id) else {
            // The allow list admits only validators of the set; one that just left may still
            // have a connection open for a moment.
            Counters::add(&shared.counters.rejected_connections, 1);
            tracing::debug!(%peer_id, "consensus stream from a peer outside the set dropped");
            continue;
        };
        tracing::debug!(peer = peer.index(), "inbound consensus stream");
        let task = read_loop(stream, peer, shared.clone());
        if let Some(old) = current.insert(peer_id, readers.spawn(task)) {
            old.abort();
        }
    }
}

/// Reads frames from one inbound stream until it ends or misbehaves, then drops (resets) it.
/// Stops when the peer leaves the set.
async fn read_loop(stream: Stream, peer: Arc<Peer>, shared: Arc<Shared>) {
    tokio::select! {
        _ = peer.gone() => {}
        _ = read_frames(stream, &peer, &shared) => {}
    }
}

async fn read_frames(mut stream: Stream, peer: &Peer, shared: &Shared) {
    let deliver = &peer.inbound;
    let from = peer.index();
    let max = shared.max_frame_bytes;
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(prefix) as usize;
        if len > max {
            // Refused before reading or allocating the payload.
            Counters::add(&shared.counters.oversized, 1);
            tracing::warn!(
                peer = from,
                claimed = len,
                max_frame_bytes = max,
                "validator {from} sent a frame above max_frame_bytes; stream reset (if it is a \
                 valid message, raise max_frame_bytes on every validator)"
            );
            return;
        }
        // The peer's rate limit: wait (not reading, so flow control slows the sender) until
        // its buckets allow this frame.
        let wait = match peer.throttle.lock() {
            Ok(mut t) => t.take(len, Instant::now()),
            Err(poisoned) => poisoned.into_inner().take(len, Instant::now()),
        };
        if !wait.is_zero() {
            let started = Instant::now();
            tokio::time::sleep(wait).await;
            Counters::add(&shared.counters.throttled_frames, 1);
            let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            Counters::add(&shared.counters.throttled_micros, waited);
        }
        // Room in the peer's inbound queue, in frames and in bytes, before the payload is
        // read or allocated. `len <= max <= queue_bytes`, so the permits always exist.
        let Ok(slot) = deliver.reserve().await else {
            return;
        };
        let Ok(bytes) = peer
            .inbound_bytes
            .clone()
            .acquire_many_owned(len as u32)
            .await
        else {
            return;
        };
        // Grows with the bytes that actually arrive, not with the claimed length.
        let mut payload = Vec::with_capacity(len.min(READ_CHUNK));
        match (&mut stream)
            .take(len as u64)
            .read_to_end(&mut payload)
            .await
        {
            Ok(n) if n == len => {}
            _ => return,
        }
        Counters::add(&shared.counters.frames_in, 1);
        Counters::add(&shared.counters.bytes_in, len as u64);
        slot.send(Delivery {
            from: peer.index(),
            key: peer.network_key,
            payload,
            _bytes: bytes,
        });
    }
}
