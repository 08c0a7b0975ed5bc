//! The pool's lanes: each sender's transactions by nonce ([`Sender`]) and the raw lane by
//! arrival ([`RawLane`]), with the [`Entry`] both keep.

use crypto::Digest;
use ledger::{Address, Transaction};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) tx: Transaction,
    pub(super) hash: Digest,
    pub(super) size: usize,
    pub(super) in_flight: bool,
    /// When it was admitted (for the batching stage time only: no rule depends on it).
    pub(super) since: std::time::Instant,
}

/// Where [`Mempool::by_hash`] finds a pooled transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// In a sender's lane, at this nonce.
    Account(Address, u64),
    /// In the raw lane, at this arrival number.
    Raw(u64),
}

/// One sender's pooled transactions. Never empty while in [`Mempool::senders`].
#[derive(Clone, Debug)]
pub(super) struct Sender {
    /// The highest committed account nonce seen; every entry's nonce is at least this.
    pub(super) next: u64,
    pub(super) txs: BTreeMap<u64, Entry>,
}

impl Sender {
    /// The first pending nonce at or after `from` if every nonce from `from` to it is pooled.
    pub(super) fn ready_from(&self, from: u64) -> Option<u64> {
        let mut expect = from;
        for (&n, e) in self.txs.range(from..) {
            if n != expect {
                return None;
            }
            if !e.in_flight {
                return Some(n);
            }
            expect = n.checked_add(1)?;
        }
        None
    }
}

/// The raw lane: raw transactions by arrival number, pending and in flight. Every operation
/// is O(log n) in the lane's size; a batch takes from the front of `pending` and never walks
/// the in-flight entries.
#[derive(Clone, Debug, Default)]
pub(super) struct RawLane {
    pub(super) txs: BTreeMap<u64, Entry>,
    /// Arrival numbers of the entries that are not in flight.
    pub(super) pending: BTreeSet<u64>,
    /// Arrival number of the next raw transaction admitted.
    pub(super) next_seq: u64,
}

impl RawLane {
    /// Adds a pending entry; returns its arrival number.
    pub(super) fn push(&mut self, entry: Entry) -> u64 {
        assert!(!entry.in_flight, "a new raw transaction is pending");
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).expect("2^64 raw transactions");
        assert!(
            self.txs.insert(seq, entry).is_none(),
            "arrival numbers are unique"
        );
        self.pending.insert(seq);
        seq
    }

    /// Marks the first pending entry in flight and returns it, if it fits `room` bytes.
    pub(super) fn take_first(&mut self, room: usize) -> Option<&Entry> {
        let seq = *self.pending.first()?;
        let entry = self
            .txs
            .get_mut(&seq)
            .expect("a pending raw entry is pooled");
        assert!(!entry.in_flight, "a pending raw entry is not in flight");
        if entry.size > room {
            return None;
        }
        self.pending.remove(&seq);
        entry.in_flight = true;
        Some(entry)
    }

    /// Makes an in-flight entry pending again, in its arrival place.
    pub(super) fn requeue(&mut self, seq: u64) {
        let entry = self
            .txs
            .get_mut(&seq)
            .expect("by_hash points at a pooled raw entry");
        if entry.in_flight {
            entry.in_flight = false;
            self.pending.insert(seq);
        }
    }

    pub(super) fn remove(&mut self, seq: u64) -> Entry {
        self.pending.remove(&seq);
        self.txs
            .remove(&seq)
            .expect("by_hash points at a pooled raw entry")
    }

    pub(super) fn get(&self, seq: u64) -> &Entry {
        self.txs
            .get(&seq)
            .expect("by_hash points at a pooled raw entry")
    }
}
