//! The validator-to-validator transport: TCP + Noise + Yamux over libp2p, on tokio.
//!
//! * **Identity.** A node's libp2p identity is its *network key* (a 32-byte ed25519 seed, kept
//!   apart from the consensus key). A validator's `PeerId` is derived from its genesis
//!   `network_key` by [`peer_id_of`].
//! * **Permissioning.** Only the validators of the current set may connect: an allow list
//!   (`libp2p::allow_block_list`) closes every other connection right after the Noise
//!   handshake, and such closures are counted in [`NetStats::rejected_connections`]. The set
//!   starts as `NetConfig::peers` (genesis, or the set the chain has changed to) and follows
//!   the chain through [`NetHandle::set_peers`], without a restart: a peer that stays keeps its
//!   connection, streams and queued frames (so the order of its frames is kept across the
//!   change); a peer that left is taken off the allow list, which closes its connections, and
//!   its queued frames are dropped; a peer that joined gets fresh queues and is dialed.
//! * **Dialing.** Every other validator is dialed at its address with `/p2p/<PeerId>`
//!   appended, so Noise proves the remote is who the set says. Failed dials and dropped
//!   connections are retried with capped exponential backoff (100 ms doubling to 5 s, with
//!   jitter); libp2p itself never reconnects.
//! * **Indices and identities.** Frames are addressed by a peer's index in the current list
//!   ([`NetHandle::send`]); the index of a peer may change when a validator before it leaves.
//!   [`Incoming::recv_keyed`] names each frame's sender by its network key, which does not.
//! * **Frames.** Messages are opaque byte strings. Each direction between two validators uses
//!   ONE long-lived `libp2p-stream` stream (protocol [`PROTOCOL`]), framed as a u32 big-endian
//!   length followed by the payload. A length above `max_frame_bytes` is rejected before any
//!   payload is read or allocated: the stream is reset and [`NetStats::oversized`] counted.
//!   Order is preserved per stream. When a stream or connection breaks, frames that the sender
//!   had not yet handed to the stream are resent on the next stream; frames already written
//!   into a stream that then broke may be lost, and a frame may be delivered twice. The
//!   consensus layer retransmits and tolerates duplicates, exactly as in the simulator.
//! * **Outgoing bounds.** Each peer has an outgoing queue of at most `queue_len` frames and
//!   `queue_bytes` payload bytes (counting frames taken by its writer but not yet written).
//!   When either is reached the *newest* frame is dropped and counted
//!   ([`NetStats::queue_full`], also in [`NetStats::dropped`]): the queue keeps the oldest,
//!   in order, and consensus recovers what was dropped as it recovers any lost message (view
//!   timeouts, retransmission, block sync). So a peer that is down or slow costs at most
//!   `queue_bytes` of memory here. Frames for a peer that is down wait in its queue and are
//!   flushed when it connects.
//! * **Inbound rate.** Each peer's reader takes one frame and its length in bytes from the
//!   peer's token buckets ([`InboundLimit`], [`NetConfig::inbound_limit`]) after reading the
//!   length prefix and before reading the payload. A peer over its rate is not dropped: its
//!   reader sleeps until the buckets allow the frame, and meanwhile Yamux and TCP flow control
//!   slow the sender down (counted in [`NetStats::throttled_frames`] and
//!   [`NetStats::throttled_micros`]). The buckets belong to the peer, not to a stream.
//! * **Inbound queues and fairness.** Each peer may have at most `queue_len` frames and
//!   `queue_bytes` payload bytes received and not yet taken by the consumer; its reader
//!   reserves both before it reads (and allocates) a payload, and otherwise waits. [`Incoming`]
//!   takes frames from the peers' queues in turn, so a peer with a backlog (a flood, or a
//!   burst the consumer cannot keep up with) delays another peer's frame by at most one of its
//!   own, and never holds room that another peer's reader needs.
//!
//! Nothing received from outside panics: bad frames, unknown peers and protocol violations
//! close the offending stream or connection.

mod behaviour;
mod config;
mod dialer;
mod limit;
mod peers;
mod stream;

pub use config::{
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_LEN, NetConfig, NetError, PeerInfo,
};
pub use limit::InboundLimit;

use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId, StreamProtocol, identity};
use libp2p_stream::Control;
use peers::{Entries, NewPeer, Peer, Plan, QueueLimits, Table};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

/// The stream protocol that carries consensus frames.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/consensus/1");

/// Counters since start. Frames and bytes count payloads (without the 4-byte length prefix).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames written to a peer's stream.
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Complete frames received (within the cap), handed to the incoming channel.
    pub frames_in: u64,
    pub bytes_in: u64,
    /// Outgoing frames dropped: queue full, larger than `max_frame_bytes`, addressed to an
    /// unknown index or to this node itself.
    pub dropped: u64,
    /// Of `dropped`: frames dropped because the peer's queue held `queue_len` frames or
    /// `queue_bytes` bytes (the peer is down or slower than what is sent to it).
    pub queue_full: u64,
    /// Incoming frames whose length prefix exceeded `max_frame_bytes` (each reset its stream).
    pub oversized: u64,
    /// Inbound connections or streams refused: not in the current validator set, over the connection
    /// limits, or a failed handshake.
    pub rejected_connections: u64,
    /// Incoming frames that had to wait for their peer's inbound rate limit.
    pub throttled_frames: u64,
    /// Total time readers waited for the inbound rate limit, in microseconds.
    pub throttled_micros: u64,
    /// Frames waiting in outgoing queues now (a gauge, not a counter).
    pub queued: u64,
    /// Payload bytes in outgoing queues now, including frames taken by a writer and not yet
    /// written (a gauge).
    pub queued_bytes: u64,
    /// Payload bytes received (or being read) and not yet taken from [`Incoming`] (a gauge).
    pub inbound_queued_bytes: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub dropped: AtomicU64,
    pub queue_full: AtomicU64,
    pub oversized: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub throttled_frames: AtomicU64,
    pub throttled_micros: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub(crate) struct Shared {
    /// The current peers; replaced as a whole by [`NetHandle::set_peers`].
    pub table: RwLock<Table>,
    /// Bumped whenever the table changes (the swarm task follows it: allow list, dialing).
    pub changed: watch::Sender<u64>,
    pub counters: Counters,
    pub max_frame_bytes: usize,
    pub queue_bytes: usize,
}

impl Shared {
    /// The table for reading; a poisoned lock is still a consistent table (it is only ever
    /// replaced whole).
    pub(crate) fn peers(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn peer(&self, id: &PeerId) -> Option<Arc<Peer>> {
        self.peers().by_id(id).cloned()
    }
}

/// A received frame in its peer's inbound queue. Its byte permit goes back to the peer's
/// budget when the consumer takes the frame.
pub(crate) struct Delivery {
    /// The sender's index when the frame was read.
    pub from: u16,
    /// The sender's network key.
    pub key: crypto::PublicKey,
    pub payload: Vec<u8>,
    pub _bytes: OwnedSemaphorePermit,
}

/// The frames received from all peers. Each peer has its own bounded queue; [`Incoming::recv`]
/// takes from them in turn (round robin), so one peer's backlog cannot push another peer's
/// frames back by more than one frame. Peers that join later add their queues here; a peer
/// that left has its queue drained and then forgotten.
pub struct Incoming {
    /// One queue per peer.
    queues: Vec<mpsc::Receiver<Delivery>>,
    /// The queues of peers added by [`NetHandle::set_peers`].
    added: mpsc::UnboundedReceiver<mpsc::Receiver<Delivery>>,
    /// Never carries a frame; closes when the accept loop stops (the transport stopped).
    anchor: mpsc::Receiver<Delivery>,
    /// Where the next round starts.
    next: usize,
}

impl Incoming {
    /// The next frame as `(sender index when it was read, payload)`; `None` once the
    /// transport has stopped. Cancel safe.
    pub async fn recv(&mut self) -> Option<(u16, Vec<u8>)> {
        poll_fn(|cx| self.poll_recv(cx))
            .await
            .map(|d| (d.from, d.payload))
    }

    /// The next frame as `(sender's network key, payload)`: the identity that stays right
    /// when indices move with the validator set. `None` once the transport has stopped.
    /// Cancel safe.
    pub async fn recv_keyed(&mut self) -> Option<(crypto::PublicKey, Vec<u8>)> {
        poll_fn(|cx| self.poll_recv(cx))
            .await
            .map(|d| (d.key, d.payload))
    }

    /// Polls for the next frame, starting with the peer after the one that gave the last.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        while let Poll::Ready(Some(q)) = self.added.poll_recv(cx) {
            self.queues.push(q);
        }
        let n = self.queues.len();
        let mut closed = Vec::new();
        let mut found = None;
        for k in 0..n {
            let i = (self.next + k) % n;
            match self.queues[i].poll_recv(cx) {
                Poll::Ready(Some(d)) => {
                    self.next = (i + 1) % n;
                    found = Some(d);
                    break;
                }
                Poll::Ready(None) => closed.push(i),
                Poll::Pending => {}
            }
        }
        if !closed.is_empty() {
            closed.sort_unstable();
            for i in closed.into_iter().rev() {
                self.queues.remove(i);
            }
            self.next = 0;
        }
        if let Some(d) = found {
            return Poll::Ready(Some(d));
        }
        match self.anchor.poll_recv(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("queues", &self.queues.len())
            .finish()
    }
}

/// The running transport. Dropping it stops everything, like [`NetHandle::shutdown`] without
/// waiting.
pub struct NetHandle {
    shared: Arc<Shared>,
    local_peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    limits: QueueLimits,
    /// Opens outbound streams (each new peer's writer gets a clone).
    control: Control,
    /// Hands new peers' inbound queues to [`Incoming`].
    added: mpsc::UnboundedSender<mpsc::Receiver<Delivery>>,
    tasks: JoinSet<()>,
}

/// Starts listening and dialing. Returns once the listener is bound (so a port in use is an
/// error here), with the handle and the [`Incoming`] frames.
pub async fn start(cfg: NetConfig) -> Result<(NetHandle, Incoming), NetError> {
    if cfg.max_frame_bytes == 0 || u32::try_from(cfg.max_frame_bytes).is_err() {
        return Err(NetError::BadFrameCap(cfg.max_frame_bytes));
    }
    if cfg.queue_len == 0 {
        return Err(NetError::BadQueueLen);
    }
    if cfg.queue_bytes < cfg.max_frame_bytes || cfg.queue_bytes > Semaphore::MAX_PERMITS {
        return Err(NetError::BadQueueBytes {
            queue_bytes: cfg.queue_bytes,
            max_frame_bytes: cfg.max_frame_bytes,
        });
    }
    let listen: Multiaddr = cfg.listen.parse().map_err(|e| NetError::Listen {
        address: cfg.listen.clone(),
        reason: format!("not a multiaddr: {e}"),
    })?;
    // `ed25519_from_bytes` zeroizes its argument: hand it a copy.
    let keypair = identity::Keypair::ed25519_from_bytes(cfg.key_seed)
        .map_err(|e| NetError::BadSeed(e.to_string()))?;
    let local_peer_id = keypair.public().to_peer_id();
    let limits = QueueLimits {
        queue_len: cfg.queue_len,
        queue_bytes: cfg.queue_bytes,
        inbound_limit: cfg.inbound_limit,
    };
    let Plan { table, created, .. } = peers::plan(
        &Table::default(),
        &cfg.peers,
        &local_peer_id,
        limits,
        Entries::Strict,
    )?;
    let allowed: Vec<PeerId> = table.peers.iter().map(|p| p.peer_id).collect();
    let shared = Arc::new(Shared {
        table: RwLock::new(table),
        changed: watch::Sender::new(0),
        counters: Counters::default(),
        max_frame_bytes: cfg.max_frame_bytes,
        queue_bytes: cfg.queue_bytes,
    });

    let mut swarm = behaviour::build_swarm(keypair, &allowed)?;
    let mut control = swarm.behaviour().stream.new_control();
    let incoming_streams = control
        .accept(PROTOCOL)
        .map_err(|e| NetError::Transport(e.to_string()))?;
    let listen_addrs = dialer::listen(&mut swarm, listen, &cfg.listen).await?;

    let (anchor_tx, anchor) = mpsc::channel(1);
    let (added, added_rx) = mpsc::unbounded_channel();
    let incoming = Incoming {
        queues: Vec::new(),
        added: added_rx,
        anchor,
        next: 0,
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(dialer::run(swarm, shared.clone()));
    tasks.spawn(stream::accept_loop(
        incoming_streams,
        shared.clone(),
        anchor_tx,
    ));
    let mut handle = NetHandle {
        shared,
        local_peer_id,
        listen_addrs,
        limits,
        control,
        added,
        tasks,
    };
    for new in created {
        handle.spawn_peer(new);
    }
    tracing::info!(
        peer_id = %local_peer_id,
        index = ?handle.local_index(),
        listen = ?handle.listen_addrs(),
        peers = allowed.len(),
        "network started"
    );
    Ok((handle, incoming))
}

impl NetHandle {
    /// Follows a changed validator set: `peers` replaces the current list (this node's own
    /// entry, recognised by its network key, may be included). Peers that stay keep their
    /// connection, streams and queued frames, and take their new indices; peers that left are
    /// disconnected and refused from now on (their queued frames are dropped); peers that
    /// joined are allowed and dialed. An entry that cannot be used (a network key that is no
    /// ed25519 key, an address that cannot be dialed, a duplicate) is left out with a warning;
    /// the others are kept.
    pub fn set_peers(&mut self, peers: Vec<PeerInfo>) -> Result<(), NetError> {
        let mut table = self.shared.table.write().unwrap_or_else(|e| e.into_inner());
        let Plan {
            table: next,
            created,
            removed,
        } = peers::plan(
            &table,
            &peers,
            &self.local_peer_id,
            self.limits,
            Entries::SkipBad,
        )?;
        peers::renumber(&next, &peers);
        *table = next;
        let (joined, left) = (created.len(), removed.len());
        drop(table);
        for peer in removed {
            tracing::info!(peer_id = %peer.peer_id, "validator left the set: disconnecting");
            peer.removed.send_replace(true);
        }
        for new in created {
            tracing::info!(peer = new.peer.index(), peer_id = %new.peer.peer_id, addr = %new.peer.addr,
                "validator joined the set: dialing");
            self.spawn_peer(new);
        }
        self.shared.changed.send_modify(|g| *g += 1);
        tracing::info!(
            index = ?self.local_index(),
            peers = self.shared.peers().peers.len(),
            joined,
            left,
            "network follows the validator set"
        );
        Ok(())
    }

    fn spawn_peer(&mut self, new: NewPeer) {
        let _ = self.added.send(new.inbound);
        self.tasks.spawn(stream::writer(
            new.peer,
            new.outgoing,
            self.control.clone(),
            self.shared.clone(),
        ));
    }

    /// Queues `frame` for validator `to`. Never blocks: when the queue is full (`queue_len`
    /// frames or `queue_bytes` bytes), the frame is larger than `max_frame_bytes`, or `to` is
    /// unknown or this node, the frame is dropped and counted in [`NetStats::dropped`].
    pub fn send(&self, to: u16, frame: Vec<u8>) {
        let table = self.shared.peers();
        match table.by_index(to) {
            Some(peer) => self.enqueue(peer, Bytes::from(frame)),
            None => {
                tracing::debug!(to, "frame for an unknown or local validator index dropped");
                Counters::add(&self.shared.counters.dropped, 1);
            }
        }
    }

    /// Queues `frame` for every other validator (one shared buffer, no copies).
    pub fn broadcast(&self, frame: Vec<u8>) {
        let frame = Bytes::from(frame);
        for peer in &self.shared.peers().peers {
            self.enqueue(peer, frame.clone());
        }
    }

    fn enqueue(&self, peer: &Peer, frame: Bytes) {
        if frame.len() > self.shared.max_frame_bytes {
            tracing::warn!(
                to = peer.index(),
                len = frame.len(),
                max = self.shared.max_frame_bytes,
                "frame larger than max_frame_bytes dropped"
            );
            Counters::add(&self.shared.counters.dropped, 1);
            return;
        }
        let len = frame.len();
        let before = peer.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.queue_bytes || peer.queue.try_send(frame).is_err() {
            peer.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            Counters::add(&self.shared.counters.dropped, 1);
            Counters::add(&self.shared.counters.queue_full, 1);
        }
    }

    /// Indices of the validators with at least one established connection, ascending.
    pub fn connected(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .shared
            .peers()
            .peers
            .iter()
            .filter(|p| *p.connected.borrow())
            .map(|p| p.index())
            .collect();
        v.sort_unstable();
        v
    }

    /// How many peers (other validators) the transport talks to now.
    pub fn peer_count(&self) -> usize {
        self.shared.peers().peers.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NetStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let table = self.shared.peers();
        let peers = &table.peers;
        let queued = peers
            .iter()
            .map(|p| (p.queue.max_capacity() - p.queue.capacity()) as u64)
            .sum();
        let queued_bytes = peers
            .iter()
            .map(|p| p.queued_bytes.load(Ordering::Acquire) as u64)
            .sum();
        let inbound_queued_bytes = peers
            .iter()
            .map(|p| {
                let free = p.inbound_bytes.available_permits();
                self.shared.queue_bytes.saturating_sub(free) as u64
            })
            .sum();
        NetStats {
            frames_out: get(&c.frames_out),
            bytes_out: get(&c.bytes_out),
            frames_in: get(&c.frames_in),
            bytes_in: get(&c.bytes_in),
            dropped: get(&c.dropped),
            queue_full: get(&c.queue_full),
            oversized: get(&c.oversized),
            rejected_connections: get(&c.rejected_connections),
            throttled_frames: get(&c.throttled_frames),
            throttled_micros: get(&c.throttled_micros),
            queued,
            queued_bytes,
            inbound_queued_bytes,
        }
    }

    /// This node's index, if its network key is among the peers (`NetConfig::peers`, or the
    /// last [`NetHandle::set_peers`]).
    pub fn local_index(&self) -> Option<u16> {
        self.shared.peers().local_index
    }

    /// This node's libp2p identity.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses the listener is bound to (with the OS-assigned port if port 0 was asked).
    pub fn listen_addrs(&self) -> Vec<String> {
        self.listen_addrs.iter().map(|a| a.to_string()).collect()
    }

    /// Closes the listener and every connection and stops all tasks; queued frames are
    /// discarded. Returns when the listening port is free again.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!(peer_id = %self.local_peer_id, "network stopped");
    }
}

/// The libp2p `PeerId` of a validator with this genesis `network_key`.
pub fn peer_id_of(network_key: &crypto::PublicKey) -> Result<PeerId, NetError> {
    let key = identity::ed25519::PublicKey::try_from_bytes(&network_key.0).map_err(|e| {
        NetError::BadNetworkKey {
            key: network_key.to_string(),
            reason: e.to_string(),
        }
    })?;
    Ok(identity::PublicKey::from(key).to_peer_id())
}

/// Backoff bounds shared by dialing and stream reopening.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// `d` scaled by a random factor in [0.75, 1.25), so that peers do not retry in lockstep.
pub(crate) fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.75 + (r % 1000) as f64 / 2000.0;
    d.mul_f64(factor)
}
