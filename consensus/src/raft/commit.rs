//! Raft commit and payload bookkeeping: emitting committed entries in order, the queue of
//! batch digests waiting for the log, and log compaction once the ledger has executed.

use super::core::{MAX_PENDING_PAYLOAD, Out, Raft};
use super::messages::Entry;
use crate::core::{Action, Committed, Durable};
use crate::types::View;
use crypto::Digest;

impl Raft {
    /// Commits every entry up to `index` (held in the log), in order, once each.
    pub(super) fn commit_to(&mut self, index: u64, out: &mut Out) {
        assert!(index <= self.log.last_index(), "commit beyond the log");
        while self.commit < index {
            let i = self.commit + 1;
            let e = self
                .log
                .get(i)
                .expect("entries above the commit index are held");
            assert_eq!(e.index, i, "log position and entry index disagree");
            // A committed digest is never pending again (it may have been offered again
            // after its entry was stored): proposing it twice would only duplicate it.
            let mut dropped = false;
            for d in &e.payload {
                dropped |= self.pending_set.remove(d);
            }
            if dropped {
                let live = &self.pending_set;
                self.pending.retain(|d| live.contains(d));
            }
            out.push(Action::Commit(Committed {
                id: e.id(&self.cfg.genesis),
                view: View(e.term),
                proposer: e.leader,
                timestamp_ms: e.timestamp_ms,
                payload: e.payload.clone(),
                certificate: e.encode(),
            }));
            self.commit = i;
        }
    }

    pub(super) fn add_payload(&mut self, d: Digest) {
        if !self.pending_set.insert(d) {
            return;
        }
        self.pending.push_back(d);
        while self.pending.len() > MAX_PENDING_PAYLOAD {
            let old = self.pending.pop_front().expect("non-empty");
            self.pending_set.remove(&old);
        }
    }

    /// Digests of entries that left the log (truncated) become pending again, at the front.
    pub(super) fn requeue_payload(&mut self, removed: &[Entry]) {
        for d in removed.iter().rev().flat_map(|e| e.payload.iter().rev()) {
            if self.pending_set.insert(*d) {
                self.pending.push_front(*d);
            }
        }
        while self.pending.len() > MAX_PENDING_PAYLOAD {
            let old = self.pending.pop_back().expect("non-empty");
            self.pending_set.remove(&old);
        }
    }

    /// Digests that are now in the log are no longer pending.
    pub(super) fn forget_payload(&mut self, entries: &[Entry]) {
        let mut removed = false;
        for d in entries.iter().flat_map(|e| &e.payload) {
            removed |= self.pending_set.remove(d);
        }
        if removed {
            let live = &self.pending_set;
            self.pending.retain(|d| live.contains(d));
        }
    }

    /// Takes up to `max` digests off the front of the pending queue.
    pub(super) fn take_payload(&mut self, max: usize) -> Vec<Digest> {
        let n = max.min(self.pending.len());
        let batch: Vec<Digest> = self.pending.drain(..n).collect();
        for d in &batch {
            self.pending_set.remove(d);
        }
        batch
    }

    /// Compacts the log once the ledger has executed far enough past the base (§7): the
    /// new base keeps `log_keep` applied entries for followers that lag a little.
    pub(super) fn on_executed(&mut self, height: u64, out: &mut Out) {
        if height > self.commit {
            self.stats.ignored += 1;
            return;
        }
        if height <= self.applied {
            return;
        }
        self.applied = height;
        let (base, _) = self.log.base();
        let trigger = self.cfg.snapshot_interval.saturating_add(self.cfg.log_keep);
        if self.applied - base < trigger {
            return;
        }
        let new_base = self.applied.saturating_sub(self.cfg.log_keep);
        if new_base <= base {
            return;
        }
        self.log.compact(new_base);
        self.gate
            .persist(Durable::Compact { before: new_base }, out);
    }
}
