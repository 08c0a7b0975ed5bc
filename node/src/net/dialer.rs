//! The swarm task: listens, keeps the allow list equal to the peer table (following
//! [`super::NetHandle::set_peers`]), dials every other validator with capped exponential backoff,
//! redials after a connection drops (libp2p never reconnects on its own), keeps each peer's
//! `connected` flag, and explains connection failures in the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, allow_block_list::NotAllowed};
use tokio::time::Instant;

use super::behaviour::Behaviour;
use super::{BACKOFF_MAX, BACKOFF_MIN, Counters, NetError, Peer, Shared, jitter};

/// How often due redials are checked.
const TICK: Duration = Duration::from_millis(25);
/// A connection that lasted this long counts as healthy: the next redial starts from the
/// minimum backoff again.
const STABLE: Duration = Duration::from_secs(10);
/// Rejected inbound connections are logged at most this often (anyone can cause them).
const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Binds the listener and waits until it reports its address.
pub(crate) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addr: Multiaddr,
    text: &str,
) -> Result<Vec<Multiaddr>, NetError> {
    let err = |reason: String| NetError::Listen {
        address: text.to_string(),
        reason,
    };
    let id = swarm.listen_on(addr).map_err(|e| err(error_chain(&e)))?;
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } if listener_id == id => {
                    return Ok(vec![address]);
                }
                SwarmEvent::ListenerError { listener_id, error } if listener_id == id => {
                    return Err(err(error.to_string()));
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } if listener_id == id => {
                    return Err(err(format!("listener closed: {reason:?}")));
                }
                _ => {}
            },
            _ = &mut deadline => return Err(err("no listen address after 10 s".into())),
        }
    }
}

/// Dial state of one peer.
struct DialState {
    /// Established connections, as reported by the swarm.
    established: u32,
    /// When to dial next; `None` while a dial is in flight or while connected.
    next_dial: Option<Instant>,
    backoff: Duration,
    /// When the first of the current connections was established.
    since: Option<Instant>,
}

impl DialState {
    fn new() -> DialState {
        DialState {
            established: 0,
            next_dial: Some(Instant::now()),
            backoff: BACKOFF_MIN,
            since: None,
        }
    }
}

/// Rejected inbound connections: counted always, logged at most every `REJECT_LOG_EVERY`.
#[derive(Default)]
struct RejectLog {
    last: Option<Instant>,
    since_last: u64,
}

/// Runs until the task is aborted (which drops the swarm: listener and connections close).
pub(crate) async fn run(mut swarm: Swarm<Behaviour>, shared: Arc<Shared>) {
    let mut state: HashMap<PeerId, DialState> = HashMap::new();
    let mut changed = shared.changed.subscribe();
    follow_table(&mut swarm, &shared, &mut state);
    let mut rejects = RejectLog::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = swarm.select_next_some() => on_event(&shared, &mut state, &mut rejects, event),
            _ = tick.tick() => dial_due(&mut swarm, &shared, &mut state),
            Ok(()) = changed.changed() => follow_table(&mut swarm, &shared, &mut state),
        }
    }
}

/// Brings the allow list and the dial states in line with the peer table: a peer that left
/// is disallowed (which closes its connections), a peer that joined is allowed and dialed.
fn follow_table(
    swarm: &mut Swarm<Behaviour>,
    shared: &Shared,
    state: &mut HashMap<PeerId, DialState>,
) {
    let ids: Vec<PeerId> = shared.peers().peers.iter().map(|p| p.peer_id).collect();
    let allow = &mut swarm.behaviour_mut().allow;
    state.retain(|id, _| {
        let keep = ids.contains(id);
        if !keep {
            allow.disallow_peer(*id);
        }
        keep
    });
    for id in ids {
        allow.allow_peer(id);
        state.entry(id).or_insert_with(DialState::new);
    }
}

fn dial_due(swarm: &mut Swarm<Behaviour>, shared: &Shared, state: &mut HashMap<PeerId, DialState>) {
    let now = Instant::now();
    let table = shared.peers();
    for peer in &table.peers {
        let Some(st) = state.get_mut(&peer.peer_id) else {
            continue;
        };
        if st.established > 0 || st.next_dial.is_none_or(|t| t > now) {
            continue;
        }
        st.next_dial = None;
        // A fresh local port for each dial: reusing the listening port lets two validators that
        // dial each other at the same instant collide on one TCP 4-tuple (simultaneous open),
        // which breaks the handshake for both.
        let opts = DialOpts::peer_id(peer.peer_id)
            .addresses(vec![peer.addr.clone()])
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        match swarm.dial(opts) {
            Ok(()) => tracing::trace!(to = peer.index(), addr = %peer.addr, "dialing"),
            Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => {
                tracing::debug!(to = peer.index(), error = %error_chain(&e), "dial refused");
                schedule(st);
            }
        }
    }
}

/// Schedules the next dial after the current backoff (with jitter) and doubles the backoff.
fn schedule(st: &mut DialState) {
    st.next_dial = Some(Instant::now() + jitter(st.backoff));
    st.backoff = (st.backoff * 2).min(BACKOFF_MAX);
}

fn on_event(
    shared: &Shared,
    state: &mut HashMap<PeerId, DialState>,
    rejects: &mut RejectLog,
    event: SwarmEvent<super::behaviour::BehaviourEvent>,
) {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id,
            num_established,
            endpoint,
            ..
        } => {
            let (Some(peer), Some(st)) = (shared.peer(&peer_id), state.get_mut(&peer_id)) else {
                return;
            };
            st.established = num_established.get();
            st.next_dial = None;
            if st.established == 1 {
                st.since = Some(Instant::now());
                tracing::info!(
                    peer = peer.index(),
                    remote = %endpoint.get_remote_address(),
                    "connected to validator {}",
                    peer.index()
                );
                peer.connected.send_replace(true);
            }
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established,
            cause,
            ..
        } => {
            let (Some(peer), Some(st)) = (shared.peer(&peer_id), state.get_mut(&peer_id)) else {
                return;
            };
            st.established = num_established;
            if num_established == 0 {
                let why = match &cause {
                    Some(e) => error_chain(e),
                    None => "closed".into(),
                };
                tracing::info!(peer = peer.index(), cause = %why, "disconnected from validator {}; redialing", peer.index());
                peer.connected.send_replace(false);
                // A connection that stayed up resets the backoff; one that is closed right
                // away (e.g. the remote does not list us in its genesis) keeps backing off.
                if st.since.take().is_some_and(|t| t.elapsed() >= STABLE) {
                    st.backoff = BACKOFF_MIN;
                }
                schedule(st);
            }
        }
        SwarmEvent::OutgoingConnectionError {
            peer_id: Some(peer_id),
            error,
            ..
        } => {
            let (Some(peer), Some(st)) = (shared.peer(&peer_id), state.get_mut(&peer_id)) else {
                return;
            };
            match &error {
                DialError::DialPeerConditionFalse(_) => return,
                DialError::Aborted if st.established > 0 => return,
                DialError::WrongPeerId { obtained, address } => {
                    log_wrong_peer(shared, &peer, obtained, address)
                }
                e => {
                    // Expected while a validator is down: quiet until the backoff is at its cap.
                    if st.backoff >= BACKOFF_MAX {
                        tracing::info!(peer = peer.index(), addr = %peer.addr, error = %error_chain(e),
                            "validator {} unreachable; retrying every {} s", peer.index(), BACKOFF_MAX.as_secs());
                    } else {
                        tracing::debug!(peer = peer.index(), error = %error_chain(e), "dial failed");
                    }
                }
            }
            if st.established == 0 && st.next_dial.is_none() {
                schedule(st);
            }
        }
        SwarmEvent::IncomingConnectionError {
            send_back_addr,
            error,
            peer_id,
            ..
        } => {
            Counters::add(&shared.counters.rejected_connections, 1);
            rejects.since_last += 1;
            let why = match &error {
                ListenError::Denied { cause } if cause.downcast_ref::<NotAllowed>().is_some() => {
                    "its network key is not the network_key of a validator in the current set"
                        .to_string()
                }
                ListenError::Denied { cause } => error_chain(cause),
                e => error_chain(e),
            };
            let now = Instant::now();
            if rejects.last.is_none_or(|t| now - t >= REJECT_LOG_EVERY) {
                tracing::warn!(
                    from = %send_back_addr,
                    peer_id = ?peer_id,
                    rejected_since_last_log = rejects.since_last,
                    "refused an inbound connection: {why}"
                );
                rejects.last = Some(now);
                rejects.since_last = 0;
            }
        }
        SwarmEvent::ListenerError { error, .. } => {
            tracing::warn!(error = %error, "listener error");
        }
        SwarmEvent::ListenerClosed { reason, .. } => {
            tracing::error!(reason = ?reason, "listener closed; no inbound connections any more");
        }
        _ => {}
    }
}

/// "dialed ID mismatch", explained: which genesis validator, which address, and how to fix it.
fn log_wrong_peer(shared: &Shared, peer: &Peer, obtained: &PeerId, address: &Multiaddr) {
    let who = match shared.peer(obtained) {
        Some(other) => format!(
            "validator {}'s network identity: validators[{}].p2p_address and validators[{}]'s \
             may be swapped in genesis.json",
            other.index(),
            peer.index(),
            other.index()
        ),
        None => format!("{obtained}, which is no current validator's network key"),
    };
    tracing::error!(
        validator = peer.index(),
        address = %address,
        expected_peer_id = %peer.peer_id,
        obtained_peer_id = %obtained,
        "dialed ID mismatch: validators[{idx}].p2p_address ({address}) is served by {who}. \
         Genesis says validator {idx} has network_key {key} (PeerId {expected}). Fix: start \
         validator {idx} with the network_key.json matching validators[{idx}].network_key, or \
         correct validators[{idx}].p2p_address / network_key in genesis.json (every validator \
         needs the identical genesis file). Retrying with backoff.",
        idx = peer.index(),
        key = peer.network_key,
        expected = peer.peer_id,
    );
}

/// An error with its sources, "a: b: c".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let next = inner.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        src = inner.source();
    }
    s
}
