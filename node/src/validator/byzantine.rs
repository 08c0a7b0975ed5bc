//! Test-only Byzantine behaviours (the `byzantine` feature): `cairnd run --byzantine B` makes
//! this validator attack the others on purpose, so that tests can show the honest ones stay
//! safe and live (`tests/tests/byzantine.rs`). The validator runs the honest core; what it
//! sends is changed on the way out ([`Byzantine::filter`]) or added ([`Byzantine::flood`]).
//!
//! Never compiled into a release build: `cargo build --release` leaves the feature out.

use super::wire::{MAX_BATCHES_PER_MESSAGE, Wire};
use super::{Out, Protocol};
use consensus::{Committee, ReplicaId};
use crypto::{Digest, SecretKey};
use std::marker::PhantomData;

/// What the Byzantine validator does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Behaviour {
    /// As leader, signs two conflicting proposals for each view and sends both to every
    /// validator, in a different order to each half.
    Equivocate,
    /// Signs a second, conflicting vote with each vote and sends both.
    DoubleVote,
    /// Every signed consensus message goes out with a signature made for another purpose.
    BadSignatures,
    /// Sends no consensus message at all (proposals, votes, timeouts), while staying
    /// connected and answering sync and batch requests.
    Withhold,
    /// Behaves honestly and also floods every peer with garbage frames, oversized frames and
    /// requests (blocks, batches, snapshots).
    Flood,
    /// Runs consensus honestly but lies to wallets: every account its API reports has 1,000
    /// more than it holds, in the plain answer and in the proven value (`?prove=true`), so
    /// only a check against the certified state root can tell.
    LieBalance,
}

/// Set when this process runs [`Behaviour::LieBalance`]; read by the API.
pub static LIE_ABOUT_BALANCES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// What a [`Behaviour::LieBalance`] API does to an account answer.
pub fn lie(view: &mut crate::api::AccountView) {
    view.balance += 1_000;
    if let Some(p) = &mut view.proof
        && let Some(v) = &p.value
        && let Ok(mut bytes) = hex::decode(v)
        && bytes.len() == ledger::tree::VALUE_BYTES
    {
        let balance = u64::from_le_bytes(bytes[20..28].try_into().unwrap_or_default());
        bytes[20..28].copy_from_slice(&(balance + 1_000).to_le_bytes());
        p.value = Some(hex::encode(bytes));
    }
}

/// How often [`Byzantine::flood`] runs, and what it sends each time to each peer.
pub const FLOOD_INTERVAL_MS: u64 = 10;
const FLOOD_FRAMES: usize = 16;
/// One frame of this size per peer per second.
const FLOOD_BIG_BYTES: usize = 1 << 20;

pub struct Byzantine<P: Protocol> {
    behaviour: Behaviour,
    me: ReplicaId,
    key: SecretKey,
    committee: Committee,
    genesis: Digest,
    /// xorshift state for the flood's garbage (seeded by the validator index: reproducible).
    rng: u64,
    ticks: u64,
    _p: PhantomData<P>,
}

impl<P: Protocol> Byzantine<P> {
    pub fn new(
        behaviour: Behaviour,
        me: ReplicaId,
        key: SecretKey,
        committee: Committee,
        genesis: Digest,
    ) -> Self {
        tracing::warn!(
            ?behaviour,
            "this validator is BYZANTINE on purpose (test build)"
        );
        if behaviour == Behaviour::LieBalance {
            LIE_ABOUT_BALANCES.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Byzantine {
            behaviour,
            me,
            key,
            committee,
            genesis,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (u64::from(me.0) + 1),
            ticks: 0,
            _p: PhantomData,
        }
    }

    pub fn floods(&self) -> bool {
        self.behaviour == Behaviour::Flood
    }

    fn peers(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        (0..self.committee.n() as u16)
            .map(ReplicaId)
            .filter(move |p| *p != self.me)
    }

    /// Rewrites what the honest driver wants to send.
    pub fn filter(&mut self, out: Vec<Out>) -> Vec<Out> {
        let mut kept = Vec::with_capacity(out.len());
        for o in out {
            match o {
                Out::Send(to, bytes) => self.frame(Some(to), bytes, &mut kept),
                Out::Broadcast(bytes) => self.frame(None, bytes, &mut kept),
                other => kept.push(other),
            }
        }
        kept
    }

    fn frame(&mut self, to: Option<ReplicaId>, bytes: Vec<u8>, out: &mut Vec<Out>) {
        let keep = |out: &mut Vec<Out>, bytes| {
            out.push(match to {
                Some(to) => Out::Send(to, bytes),
                None => Out::Broadcast(bytes),
            })
        };
        let Ok(Wire::Consensus(epoch, msg)) = Wire::<P::Message>::decode(&bytes) else {
            return keep(out, bytes);
        };
        tracing::debug!(?msg, "byzantine: outgoing consensus message");
        let encode = |m: P::Message| Wire::<P::Message>::Consensus(epoch, m).encode();
        let proposal = P::statement(&msg, &self.committee)
            .map(|s| s.kind.ends_with("proposal") || s.kind.ends_with("pre-prepare"));
        match self.behaviour {
            Behaviour::Withhold => {}
            Behaviour::LieBalance | Behaviour::Flood => keep(out, bytes),
            Behaviour::BadSignatures => match P::corrupt(&msg, &self.key) {
                Some(bad) => keep(out, encode(bad)),
                None => keep(out, bytes),
            },
            Behaviour::Equivocate | Behaviour::DoubleVote => {
                let wanted = match self.behaviour {
                    Behaviour::Equivocate => proposal == Some(true),
                    _ => proposal == Some(false),
                };
                let twin = wanted
                    .then(|| P::twin(&msg, &self.key, &self.genesis))
                    .flatten();
                let Some(twin) = twin else {
                    return keep(out, bytes);
                };
                let twin = encode(twin);
                // Both to each recipient, the honest one first to even-numbered validators
                // and second to odd ones, so that the honest validators see them in different
                // orders and their first choices split.
                let recipients: Vec<ReplicaId> = match to {
                    Some(to) => vec![to],
                    None => self.peers().collect(),
                };
                for r in recipients {
                    let (a, b) = if r.0 % 2 == 0 {
                        (&bytes, &twin)
                    } else {
                        (&twin, &bytes)
                    };
                    out.push(Out::Send(r, a.clone()));
                    out.push(Out::Send(r, b.clone()));
                }
            }
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn garbage(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// The frames of one flood round ([`FLOOD_INTERVAL_MS`]): to every peer, garbage of
    /// random sizes, requests for everything from height 1, for batches that do not exist
    /// and for snapshots; once a second a [`FLOOD_BIG_BYTES`] frame of garbage.
    pub fn flood(&mut self) -> Vec<Out> {
        self.ticks += 1;
        let mut out = Vec::new();
        let peers: Vec<ReplicaId> = self.peers().collect();
        for p in peers {
            for i in 0..FLOOD_FRAMES {
                let frame = match i % 4 {
                    0 => {
                        let len = 1 + (self.next() % 2048) as usize;
                        self.garbage(len)
                    }
                    1 => Wire::<P::Message>::BlocksRequest { from: 1 }.encode(),
                    2 => {
                        let ds = (0..MAX_BATCHES_PER_MESSAGE)
                            .map(|_| crypto::hash(&self.next().to_le_bytes()))
                            .collect();
                        Wire::<P::Message>::BatchRequest(ds).encode()
                    }
                    _ => Wire::<P::Message>::SnapshotRequest {
                        height: 0,
                        offset: 0,
                    }
                    .encode(),
                };
                out.push(Out::Send(p, frame));
            }
            if self.ticks.is_multiple_of(1000 / FLOOD_INTERVAL_MS) {
                let big = self.garbage(FLOOD_BIG_BYTES);
                out.push(Out::Send(p, big));
            }
        }
        out
    }
}
