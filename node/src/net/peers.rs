//! The peer table: which validators this node talks to, each with its queues, and how the
//! table follows a changed validator set ([`super::NetHandle::set_peers`]) without a restart.
//!
//! A peer is known by its network identity (`PeerId`, from its network key); its *index* is
//! only where the current set lists it, and may change when a validator before it leaves.
//! A peer that stays keeps its queues, its connection, its streams and its rate limit across
//! a change: nothing it had queued or sent is lost. A peer that leaves is marked `removed`:
//! its writer and readers stop, its queued frames are dropped, and the swarm task takes it
//! off the allow list, which closes its connections. A peer that joins gets fresh queues and
//! a writer, and the swarm task allows and dials it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use tokio::sync::{Semaphore, mpsc, watch};

use super::{Delivery, InboundLimit, NetError, PeerInfo, limit, peer_id_of};

/// What the swarm task, the writers and the readers share about one peer.
pub(crate) struct Peer {
    /// Where the current set lists it (frames are addressed by it).
    index: AtomicU16,
    pub peer_id: PeerId,
    pub network_key: crypto::PublicKey,
    /// The address with `/p2p/<peer_id>` appended.
    pub addr: Multiaddr,
    /// Whether at least one connection is established; set by the swarm task.
    pub connected: watch::Sender<bool>,
    /// Set once when the peer leaves the table: its writer and readers stop.
    pub removed: watch::Sender<bool>,
    pub(super) queue: mpsc::Sender<Bytes>,
    /// Payload bytes in `queue` plus those its writer took and has not written yet.
    pub queued_bytes: AtomicUsize,
    /// The peer's inbound rate limit (used by whichever reader is current).
    pub throttle: Mutex<limit::Throttle>,
    /// Permits for payload bytes received from this peer and not yet taken from
    /// [`super::Incoming`]; `queue_bytes` in all.
    pub inbound_bytes: Arc<Semaphore>,
    /// The peer's inbound queue (closes when the peer is gone and its readers ended).
    pub inbound: mpsc::Sender<Delivery>,
}

impl Peer {
    pub fn index(&self) -> u16 {
        self.index.load(Ordering::Relaxed)
    }

    /// Resolves once the peer has left the table.
    pub async fn gone(&self) {
        let mut rx = self.removed.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// The peers of the current set (not this node), and this node's own index in it.
#[derive(Default)]
pub(crate) struct Table {
    pub peers: Vec<Arc<Peer>>,
    pub local_index: Option<u16>,
}

impl Table {
    pub fn by_id(&self, id: &PeerId) -> Option<&Arc<Peer>> {
        self.peers.iter().find(|p| p.peer_id == *id)
    }

    pub fn by_index(&self, index: u16) -> Option<&Arc<Peer>> {
        self.peers.iter().find(|p| p.index() == index)
    }
}

/// How a new peer's queues are sized.
#[derive(Clone, Copy)]
pub(crate) struct QueueLimits {
    pub queue_len: usize,
    pub queue_bytes: usize,
    pub inbound_limit: InboundLimit,
}

/// A peer that [`plan`] wants created: the peer, its outgoing queue's receiver (for its
/// writer) and its inbound queue's receiver (for [`super::Incoming`]).
pub(crate) struct NewPeer {
    pub peer: Arc<Peer>,
    pub outgoing: mpsc::Receiver<Bytes>,
    pub inbound: mpsc::Receiver<Delivery>,
}

/// What [`plan`] decided: the new table, the peers to create, the peers that left.
pub(crate) struct Plan {
    pub table: Table,
    pub created: Vec<NewPeer>,
    pub removed: Vec<Arc<Peer>>,
}

/// How [`plan`] treats an entry it cannot use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entries {
    /// Refuse the whole list (genesis at start: the operator fixes the file).
    Strict,
    /// Skip the entry with a warning and keep the others (a set the chain committed: the
    /// validator must keep talking to the rest of it).
    SkipBad,
}

/// The table for `infos`, reusing the peers of `old` that stay (same identity and address),
/// with the peers to create and those that left. Checks everything before anything changes:
/// on an error the caller keeps `old` as it was.
pub(crate) fn plan(
    old: &Table,
    infos: &[PeerInfo],
    local: &PeerId,
    limits: QueueLimits,
    entries: Entries,
) -> Result<Plan, NetError> {
    let mut seen: HashMap<PeerId, u16> = HashMap::new();
    let mut seen_index = Vec::new();
    let mut table = Table::default();
    let mut created = Vec::new();
    let now = Instant::now();
    for info in infos {
        let checked = check(info, &mut seen, &mut seen_index);
        let (peer_id, addr) = match (checked, entries) {
            (Ok(ok), _) => ok,
            (Err(e), Entries::Strict) => return Err(e),
            (Err(e), Entries::SkipBad) => {
                tracing::warn!(index = info.index, error = %e, "validator left out of the network");
                continue;
            }
        };
        if peer_id == *local {
            table.local_index = Some(info.index);
            continue;
        }
        match old.by_id(&peer_id).filter(|p| p.addr == addr) {
            Some(kept) => table.peers.push(kept.clone()),
            None => {
                let new = new_peer(info, peer_id, addr, limits, now);
                table.peers.push(new.peer.clone());
                created.push(new);
            }
        }
    }
    let removed = old
        .peers
        .iter()
        .filter(|p| !table.peers.iter().any(|q| Arc::ptr_eq(p, q)))
        .cloned()
        .collect();
    // Indices of kept peers move only once the plan is taken ([`renumber`]).
    Ok(Plan {
        table,
        created,
        removed,
    })
}

/// The entry's identity and dial address, if it is usable and not a duplicate.
fn check(
    info: &PeerInfo,
    seen: &mut HashMap<PeerId, u16>,
    seen_index: &mut Vec<u16>,
) -> Result<(PeerId, Multiaddr), NetError> {
    if seen_index.contains(&info.index) {
        return Err(NetError::DuplicatePeer { index: info.index });
    }
    let peer_id = peer_id_of(&info.network_key)?;
    if seen.contains_key(&peer_id) {
        return Err(NetError::DuplicatePeer { index: info.index });
    }
    let addr = dial_addr(info, peer_id)?;
    seen_index.push(info.index);
    seen.insert(peer_id, info.index);
    Ok((peer_id, addr))
}

/// Applies a [`plan`]'s indices to the kept peers (their new places in `infos`).
pub(crate) fn renumber(table: &Table, infos: &[PeerInfo]) {
    for peer in &table.peers {
        if let Some(info) = infos
            .iter()
            .find(|i| peer_id_of(&i.network_key).ok() == Some(peer.peer_id))
        {
            peer.index.store(info.index, Ordering::Relaxed);
        }
    }
}

fn new_peer(
    info: &PeerInfo,
    peer_id: PeerId,
    addr: Multiaddr,
    limits: QueueLimits,
    now: Instant,
) -> NewPeer {
    let (queue, outgoing) = mpsc::channel(limits.queue_len);
    let (inbound_tx, inbound) = mpsc::channel(limits.queue_len);
    let peer = Arc::new(Peer {
        index: AtomicU16::new(info.index),
        peer_id,
        network_key: info.network_key,
        addr,
        connected: watch::Sender::new(false),
        removed: watch::Sender::new(false),
        queue,
        queued_bytes: AtomicUsize::new(0),
        throttle: Mutex::new(limit::Throttle::new(limits.inbound_limit, now)),
        inbound_bytes: Arc::new(Semaphore::new(limits.queue_bytes)),
        inbound: inbound_tx,
    });
    NewPeer {
        peer,
        outgoing,
        inbound,
    }
}

/// The address with `/p2p/<peer_id>` appended (or checked, if already present).
fn dial_addr(info: &PeerInfo, peer_id: PeerId) -> Result<Multiaddr, NetError> {
    let bad = |reason: String| NetError::BadPeerAddress {
        index: info.index,
        address: info.address.clone(),
        reason,
    };
    let mut addr: Multiaddr = info
        .address
        .parse()
        .map_err(|e| bad(format!("not a multiaddr: {e}")))?;
    match addr.iter().last() {
        Some(Protocol::P2p(id)) if id == peer_id => {}
        Some(Protocol::P2p(id)) => {
            return Err(bad(format!(
                "ends in /p2p/{id}, but the validator's network_key gives {peer_id}"
            )));
        }
        _ => addr.push(Protocol::P2p(peer_id)),
    }
    if !addr.iter().any(|p| {
        matches!(
            p,
            Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_)
        )
    }) {
        return Err(bad(
            "not a dialable address: expected /ip4, /ip6, /dns, /dns4 or /dns6 then /tcp".into(),
        ));
    }
    Ok(addr)
}
