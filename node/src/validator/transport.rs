//! The validator's transport as the run loop holds it: the libp2p network, the ingress
//! thread that decodes its frames, and the numbering that names each sender by its index in
//! the current validator set.
//!
//! It follows the set (`Transport::follow`): kept peers keep their connections and queued
//! frames, removed ones are closed, joiners dialed (`NetHandle::set_peers`). When a change
//! rotates *this* validator's network key to the one in its home's `network_key.next.json`,
//! the transport is restarted with that identity on the same listen address: the old one is
//! shut down (its port freed), frames still queued in it are dropped (consensus retransmits
//! what matters: votes and proposals of the current view are resent on timeout), and the
//! peers, which switched to the new key at the same boundary, accept the new identity. No
//! process restart.
//!
//! A validator a little behind can be cut off by its own rotation: the others pass the
//! boundary first and refuse its old identity, and it cannot fetch the boundary block
//! without a connection. So while a change that rotates its network key to the next key is
//! pending, a validator that has had no connected peer for [`CUT_OFF`] takes the new
//! identity early (`Transport::rotate_if_cut_off`): the others, past the boundary, admit it,
//! and it syncs across. (Taken too early, it is out only until the others switch; f
//! tolerates that.)

use super::ingress::{self, InboundRx};
use crate::net::{self, NetConfig, NetHandle, PeerInfo};
use anyhow::Context;
use crypto::{PublicKey, SecretKey};
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// How long a validator with a pending network-key rotation may have no connected peer
/// before it takes its new identity early (see the module docs).
pub const CUT_OFF: std::time::Duration = std::time::Duration::from_secs(2);

/// The network key a pending change rotates a member to, if the pending change is a
/// rotation that gives a new network key.
pub(super) fn pending_rotation(vs: &ledger::validators::ValidatorState) -> Option<PublicKey> {
    let pending = vs.pending.as_ref()?;
    match &pending.op {
        ledger::validators::SetChange::Rotate {
            old_consensus_key,
            new,
        } => {
            let old = vs
                .members
                .iter()
                .find(|m| m.consensus_key == *old_consensus_key)?;
            (old.network_key != new.network_key).then_some(new.network_key)
        }
        _ => None,
    }
}

pub(super) struct Transport<M> {
    pub net: NetHandle,
    /// Decoded frames, each with its sender's network key.
    pub inbound: InboundRx<M>,
    ingress: std::thread::JoinHandle<()>,
    /// Network key → index: the numbering the driver gave out last
    /// (`Driver::take_network_change`), so a frame's sender is named as the driver's current
    /// set names it, whenever the frame was read.
    numbering: HashMap<PublicKey, u16>,
    /// What the transport was started with (listen address, limits, key).
    cfg: NetConfig,
    /// A network key a set change may rotate this validator to.
    next: Option<SecretKey>,
    /// Since when no peer has been connected (with a rotation to `next` pending).
    alone_since: Option<tokio::time::Instant>,
}

impl<M: DeserializeOwned + Send + 'static> Transport<M> {
    /// Starts the transport for `peers` (with `next`'s identity if they already name it:
    /// the rotation happened while this validator was down).
    pub async fn start(
        mut cfg: NetConfig,
        next: Option<SecretKey>,
        peers: Vec<PeerInfo>,
    ) -> anyhow::Result<Self> {
        if let Some(k) = &next
            && peers.iter().any(|p| p.network_key == k.public())
        {
            cfg.key_seed = k.seed();
        }
        cfg.peers = peers;
        let numbering = numbering(&cfg.peers);
        let (net, incoming) = net::start(cfg.clone()).await?;
        let (inbound, ingress) =
            ingress::start::<M>(incoming).context("starting the ingress thread")?;
        Ok(Transport {
            net,
            inbound,
            ingress,
            numbering,
            cfg,
            next,
            alone_since: None,
        })
    }

    /// Takes the next network key early when `pending` (see [`pending_rotation`]) rotates
    /// this validator to it and no peer has been connected for [`CUT_OFF`].
    pub async fn rotate_if_cut_off(mut self, pending: Option<PublicKey>) -> anyhow::Result<Self> {
        let due = self
            .next
            .as_ref()
            .is_some_and(|k| pending == Some(k.public()) && k.seed() != self.cfg.key_seed);
        if !due || !self.net.connected().is_empty() {
            self.alone_since = None;
            return Ok(self);
        }
        let now = tokio::time::Instant::now();
        let since = *self.alone_since.get_or_insert(now);
        if now.duration_since(since) < CUT_OFF {
            return Ok(self);
        }
        tracing::warn!(
            "no peer connected for {CUT_OFF:?} while a change rotating this validator's \
             network key is pending (the others may have passed the boundary and refuse the \
             old identity): taking the new one now"
        );
        // Its own old entry is no peer to dial under the new identity.
        let old = SecretKey::from_seed(self.cfg.key_seed).public();
        let mut peers = self.cfg.peers.clone();
        peers.retain(|p| p.network_key != old);
        self.restart(peers).await
    }

    /// The index of the peer with network key `key` in the current numbering.
    pub fn index_of(&self, key: &PublicKey) -> Option<u16> {
        self.numbering.get(key).copied()
    }

    /// Follows the validator set `peers` (see the module docs); restarts with the next
    /// network key when `peers` name it and the running identity is another.
    pub async fn follow(mut self, peers: Vec<PeerInfo>) -> anyhow::Result<Self> {
        self.numbering = numbering(&peers);
        let rotated = self.next.as_ref().filter(|k| {
            let public = k.public();
            peers.iter().any(|p| p.network_key == public) && k.seed() != self.cfg.key_seed
        });
        if rotated.is_none() {
            if let Err(e) = self.net.set_peers(peers.clone()) {
                tracing::error!(error = %e, "the network cannot follow the validator set");
            }
            self.cfg.peers = peers;
            return Ok(self);
        }
        self.restart(peers).await
    }

    /// Restarts the transport with the next network key, for `peers`.
    async fn restart(self, peers: Vec<PeerInfo>) -> anyhow::Result<Self> {
        let next = self.next.clone().expect("a restart needs the next key");
        let old = self.net.local_peer_id();
        let Rest { mut cfg, next: n } = self.shutdown_keep().await;
        cfg.key_seed = next.seed();
        let restarted = Self::start(cfg, n, peers).await.with_context(|| {
            format!(
                "restarting the transport with the rotated network key {} (from \
                 network_key.next.json)",
                next.public()
            )
        })?;
        tracing::info!(
            old = %old,
            new = %restarted.net.local_peer_id(),
            "network key rotated: the transport restarted with the identity the validator set \
             now names"
        );
        Ok(restarted)
    }

    /// Stops the network and the ingress thread.
    pub async fn shutdown(self) {
        self.shutdown_keep().await;
    }

    /// Stops the network and the ingress thread; what to start a new one with.
    async fn shutdown_keep(self) -> Rest {
        let Transport {
            net,
            inbound,
            ingress,
            cfg,
            next,
            ..
        } = self;
        // The ingress thread ends when its output is gone or the transport stops.
        drop(inbound);
        net.shutdown().await;
        let _ = tokio::task::spawn_blocking(move || ingress.join()).await;
        Rest { cfg, next }
    }
}

/// What a stopped transport leaves to start the next one with.
struct Rest {
    cfg: NetConfig,
    next: Option<SecretKey>,
}

fn numbering(peers: &[PeerInfo]) -> HashMap<PublicKey, u16> {
    peers.iter().map(|p| (p.network_key, p.index)).collect()
}
