//! Votes into quorum certificates, timeouts into timeout certificates. Bounded: only views
//! in a window above the current one are kept, and everything below is pruned on advance.

use super::messages::{QuorumCert, Timeout, TimeoutCert, Vote};
use crate::types::{ReplicaId, View};
use crypto::{Digest, Signature};
use std::collections::BTreeMap;

/// How far ahead of the current view messages are kept.
pub const VIEW_WINDOW: u64 = 64;

#[derive(Default)]
pub struct Aggregator {
    votes: BTreeMap<View, BTreeMap<Digest, BTreeMap<ReplicaId, Signature>>>,
    /// First vote of each replica per view: a second, different vote is equivocation.
    voted: BTreeMap<View, BTreeMap<ReplicaId, Digest>>,
    timeouts: BTreeMap<View, BTreeMap<ReplicaId, Timeout>>,
    pub equivocations: u64,
}

fn in_window(view: View, current: View) -> bool {
    view.0.saturating_add(1) >= current.0 && view.0 <= current.0.saturating_add(VIEW_WINDOW)
}

impl Aggregator {
    /// Adds a verified vote; returns a QC when this vote completes a quorum (exactly once).
    pub fn add_vote(&mut self, v: &Vote, current: View, quorum: usize) -> Option<QuorumCert> {
        if !in_window(v.view, current) {
            return None;
        }
        let first = self
            .voted
            .entry(v.view)
            .or_default()
            .entry(v.voter)
            .or_insert(v.block);
        if *first != v.block {
            self.equivocations += 1;
            return None;
        }
        let sigs = self
            .votes
            .entry(v.view)
            .or_default()
            .entry(v.block)
            .or_default();
        if sigs.insert(v.voter, v.signature).is_some() || sigs.len() != quorum {
            return None;
        }
        Some(QuorumCert {
            block: v.block,
            view: v.view,
            votes: sigs.iter().map(|(id, s)| (*id, *s)).collect(),
        })
    }

    /// Adds a verified timeout; returns a TC when this timeout completes a quorum.
    pub fn add_timeout(
        &mut self,
        t: &Timeout,
        current: View,
        quorum: usize,
    ) -> Option<TimeoutCert> {
        if !in_window(t.view, current) {
            return None;
        }
        let set = self.timeouts.entry(t.view).or_default();
        if set.contains_key(&t.author) {
            return None;
        }
        set.insert(t.author, t.clone());
        if set.len() != quorum {
            return None;
        }
        let high_qc = set
            .values()
            .map(|t| &t.high_qc)
            .max_by_key(|qc| qc.view)
            .expect("quorum is non-empty")
            .clone();
        Some(TimeoutCert {
            view: t.view,
            timeouts: set
                .iter()
                .map(|(id, t)| (*id, t.high_qc.view, t.signature))
                .collect(),
            high_qc,
        })
    }

    /// Distinct replicas that timed out `view`.
    pub fn timeouts_for(&self, view: View) -> usize {
        self.timeouts.get(&view).map_or(0, |s| s.len())
    }

    /// Drops everything for views below `current - 1`.
    pub fn prune(&mut self, current: View) {
        let keep = View(current.0.saturating_sub(1));
        self.votes = self.votes.split_off(&keep);
        self.voted = self.voted.split_off(&keep);
        self.timeouts = self.timeouts.split_off(&keep);
    }

    /// Number of views with state, for bounds checks in tests.
    #[cfg(test)]
    pub fn views_held(&self) -> usize {
        self.votes.len().max(self.timeouts.len())
    }
}
