//! Sender order in what the core may propose: the gate on [`Driver::offer`].
//!
//! A sender's transactions execute only in nonce order: a block that carries nonce 16 before
//! nonce 12..15 are executed fails the later ones for good (`nonce_too_high`), although the
//! validator that took them acknowledged them. A validator's mempool cuts each sender's
//! transactions into batches in order, and every peer receives a validator's batches in order;
//! but a leader may still lack the earlier batch: it restarted after receiving it, joined the
//! set after it (a validator outside the set runs no core), or a full queue dropped the frame.
//! Proposing the later batch then would lose transactions.
//!
//! So the driver offers a batch to its core only when each of its senders continues where the
//! executed state or the batches already offered to this core leave off. Other batches are
//! *parked* (in arrival order, bounded) and offered as soon as the gap closes: the earlier batch
//! arrives and is offered, or a block that another leader proposed with it is executed. A parked
//! batch that became stale (all its nonces executed) is dropped.
//!
//! # To ensure correctness
//! - Forgetting what was offered ([`OfferGate::reset`] with each new core, or trimming) only
//!   makes the gate stricter: a batch then waits until its predecessor is executed.
//! - Raw transactions (benchmarks) have no nonces and never wait.

use super::driver::{Driver, Res};
use super::protocol::Protocol;
use consensus::{Action, Core, Input};
use crypto::Digest;
use ledger::Address;
use std::collections::{HashMap, HashSet, VecDeque};

/// Batches waiting for an earlier batch of one of their senders, at most (the oldest go).
pub const MAX_PARKED: usize = 4_096;
/// Up to this many parked batches are looked at again after every offer; more (not seen in
/// honest runs: a gap closes within a block or two) only after each executed block, so a
/// peer flooding far-ahead batches cannot make every offer scan thousands of them.
const RESCAN_ON_OFFER: usize = 64;
/// Senders whose offered nonces are remembered, at most (then forgotten all at once).
const MAX_SENDERS: usize = 1 << 20;

/// What the gate knows (see the module docs).
#[derive(Default)]
pub(super) struct OfferGate {
    /// Per sender, the nonce after the highest one in a batch offered to the current core.
    next: HashMap<Address, u64>,
    /// Batches waiting for an earlier one, in arrival order.
    parked: VecDeque<Digest>,
    /// The ledger height and the offers count (0 while many are parked) when the parked
    /// batches were last looked at.
    looked: Option<(u64, u64)>,
    offers: u64,
}

impl OfferGate {
    /// A new core has been offered nothing.
    pub(super) fn reset(&mut self) {
        self.next.clear();
        self.looked = None;
    }
}

/// How a batch's senders stand against the executed state and the offers.
enum Standing {
    /// Every sender continues where the state or the offers leave off.
    Ready,
    /// Some sender's first nonce here is ahead: an earlier batch is missing.
    Ahead,
    /// Every transaction's nonce is executed already.
    Stale,
}

impl<P: Protocol> Driver<P> {
    /// Batches parked now, waiting for an earlier batch of one of their senders.
    pub fn parked_batches(&self) -> usize {
        self.gate.parked.len()
    }

    /// Offers batch `d` to the core, now if its senders are in order, or once the gap closes.
    pub(super) fn offer(&mut self, now: u64, d: Digest) -> Res {
        if self.committed_batches.contains(&d) {
            return Ok(Vec::new());
        }
        if !self.epochs.member {
            if !matches!(self.standing(&d), Standing::Stale) {
                // No core hears it; kept for the core of an epoch that adds this validator.
                self.epochs.hold_unoffered(d);
            }
            return self.run(now, Vec::new());
        }
        match self.offer_in_order(now, d) {
            Some(acts) => self.run(now, acts),
            None => Ok(Vec::new()),
        }
    }

    /// For a member's core: `d` handed to it now (`Some` actions) if its senders are in
    /// order; parked (`None`) if one is ahead; dropped (`None`) if stale.
    pub(super) fn offer_in_order(
        &mut self,
        now: u64,
        d: Digest,
    ) -> Option<Vec<Action<P::Message>>> {
        match self.standing(&d) {
            Standing::Stale => None,
            Standing::Ahead => {
                self.park(d);
                None
            }
            Standing::Ready => Some(self.offer_now(now, d)),
        }
    }

    /// Hands `d` to the core and notes its senders' nonces as offered.
    pub(super) fn offer_now(&mut self, now: u64, d: Digest) -> Vec<Action<P::Message>> {
        if let Some(b) = self.batches.get(&d).cloned() {
            if self.gate.next.len() >= MAX_SENDERS {
                self.gate.next.clear();
            }
            for t in b.txs.iter().filter(|t| !t.is_raw()) {
                let next = self.gate.next.entry(t.sender_address()).or_default();
                *next = (*next).max(t.body.nonce.saturating_add(1));
            }
        }
        self.gate.offers += 1;
        self.core.handle(now, Input::Payload(d))
    }

    fn park(&mut self, d: Digest) {
        if self.gate.parked.contains(&d) {
            return;
        }
        if self.gate.parked.len() >= MAX_PARKED {
            self.gate.parked.pop_front();
        }
        tracing::debug!(batch = %d, "batch waits for an earlier batch of one of its senders");
        self.stats.parked_batches += 1;
        self.gate.parked.push_back(d);
    }

    /// The first parked batch whose gap has closed, handed to the core (`Some` actions), or
    /// `None`. Looks only when something changed since it last looked (a block executed, a
    /// batch offered); drops parked batches that went stale or were committed.
    pub(super) fn unpark_next(&mut self, now: u64) -> Option<Vec<Action<P::Message>>> {
        if self.gate.parked.is_empty() || !self.epochs.member {
            return None;
        }
        let offers = if self.gate.parked.len() <= RESCAN_ON_OFFER {
            self.gate.offers
        } else {
            0
        };
        let mark = (self.ledger.height(), offers);
        if self.gate.looked == Some(mark) {
            return None;
        }
        let mut i = 0;
        while i < self.gate.parked.len() {
            let d = self.gate.parked[i];
            if self.committed_batches.contains(&d) {
                self.gate.parked.remove(i);
                continue;
            }
            match self.standing(&d) {
                Standing::Stale => {
                    self.gate.parked.remove(i);
                }
                Standing::Ahead => i += 1,
                Standing::Ready => {
                    self.gate.parked.remove(i);
                    return Some(self.offer_now(now, d));
                }
            }
        }
        self.gate.looked = Some(mark);
        None
    }

    /// Whether batch `d` (if this validator holds it) may go to the core now. A batch it does
    /// not hold is `Ready`: the core asks for it when it is needed.
    fn standing(&self, d: &Digest) -> Standing {
        let Some(b) = self.batches.get(d) else {
            return Standing::Ready;
        };
        if b.is_empty() {
            return Standing::Ready;
        }
        let mut stale = true;
        let mut ahead = false;
        let mut seen: HashSet<Address> = HashSet::new();
        for t in b.txs.iter() {
            if t.is_raw() {
                stale = false;
                continue;
            }
            let sender = t.sender_address();
            let executed = self.ledger.account_hint(&sender).nonce;
            if t.body.nonce >= executed {
                stale = false;
            }
            // Within a batch a sender's nonces are contiguous: its first one decides.
            if seen.insert(sender) {
                let offered = self.gate.next.get(&sender).copied().unwrap_or(0);
                if t.body.nonce > executed.max(offered) {
                    ahead = true;
                }
            }
        }
        if stale {
            Standing::Stale
        } else if ahead {
            Standing::Ahead
        } else {
            Standing::Ready
        }
    }
}
