//! The ingress stage (thread `cairn-ingress`): frames from peers are decoded here, in the
//! order the transport delivers them, and every transaction of a batch is hashed once
//! (its hash travels with it into the batch store, blocks, receipts, events and the
//! index). The validator loop receives [`Inbound`]s and never decodes a frame itself.
//!
//! Channels: `(peer, bytes)` in from [`crate::net::Incoming`], the peer named by its network
//! key (its index may change with the validator set); `(peer, Inbound<M>)` out to
//! the loop on a bounded tokio channel of [`INGRESS_QUEUE`] (a full queue stops this thread
//! reading, so the transport's per-peer queues fill and pause their peers: backpressure, not
//! loss). Per-peer order is kept: a batch always reaches the loop before the proposal that
//! names it.

use super::batches::Batch;
use super::wire::{MAX_BATCHES_PER_MESSAGE, Wire};
use crate::net::Incoming;
use crypto::Digest;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Frames decoded and waiting for the loop, at most.
pub const INGRESS_QUEUE: usize = 1024;

/// A frame from a peer, decoded, with batches hashed.
#[derive(Debug)]
pub enum Inbound<M> {
    /// A frame that carries no batch.
    Frame(Wire<M>),
    /// `Wire::Batch`: the batch and its digest.
    Batch(Digest, Arc<Batch>),
    /// `Wire::Batches` (an answer to a batch request): each batch and its digest.
    Batches(Vec<(Digest, Arc<Batch>)>),
    /// Not a frame (counted as a bad frame).
    Bad,
}

/// Decodes `bytes` and hashes the transactions of any batch in it.
pub fn prepare<M: DeserializeOwned>(bytes: &[u8]) -> Inbound<M> {
    let Ok(wire) = Wire::<M>::decode(bytes) else {
        return Inbound::Bad;
    };
    match wire {
        Wire::Batch(txs) => {
            let (d, b) = hashed(txs);
            Inbound::Batch(d, b)
        }
        Wire::Batches(bs) => Inbound::Batches(
            bs.into_iter()
                .take(MAX_BATCHES_PER_MESSAGE)
                .map(hashed)
                .collect(),
        ),
        other => Inbound::Frame(other),
    }
}

fn hashed(txs: Vec<ledger::Transaction>) -> (Digest, Arc<Batch>) {
    let batch = Batch::new(txs);
    (batch.digest(), Arc::new(batch))
}

/// The stage's output: what the loop receives.
pub type InboundRx<M> = tokio::sync::mpsc::Receiver<(crypto::PublicKey, Inbound<M>)>;

/// Starts the ingress thread over the transport's `incoming` frames. It ends when the
/// transport stops or the loop drops its receiver.
pub fn start<M: DeserializeOwned + Send + 'static>(
    mut incoming: Incoming,
) -> std::io::Result<(InboundRx<M>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(INGRESS_QUEUE);
    let rt = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("cairn-ingress".into())
        .spawn(move || {
            while let Some((from, bytes)) = rt.block_on(incoming.recv_keyed()) {
                let inbound = prepare::<M>(&bytes);
                drop(bytes);
                if tx.blocking_send((from, inbound)).is_err() {
                    break;
                }
            }
        })?;
    Ok((rx, thread))
}
