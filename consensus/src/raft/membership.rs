//! Raft membership changes, one server at a time (Raft thesis §4.1, §4.2), with learners.
//!
//! - A configuration ([`Membership`]) names the voters and the learners. Learners receive
//!   the log (or a snapshot) but neither vote nor count for commit; quorums are majorities
//!   of the voters.
//! - A configuration travels in a log entry ([`super::Entry::config`]) and takes effect on
//!   every replica as soon as the entry is in its log, committed or not (§4.1): a replica
//!   always uses the latest configuration in its log, and goes back to the one before if
//!   the entry is truncated ([`Configs`]).
//! - **Single-server changes.** Two successive configurations differ by at most one voter,
//!   so every majority of the one intersects every majority of the other (§4.1's argument).
//!   A leader appends a configuration only when the previous one is committed and it has
//!   committed an entry of its own term (the fix to the single-server bug Ongaro posted to
//!   raft-dev in 2015), so no two uncommitted configurations are ever in flight.
//! - **Why not joint consensus.** Cairn's changes come from the ledger one at a time
//!   (at most one pending change per epoch), so a single-server step is always enough, and
//!   it needs no second quorum rule anywhere in the core. The leader steers towards the
//!   members the ledger names ([`super::Raft::set_members`]): it drops learners and voters
//!   the ledger removed, adds a new member as a learner, and promotes a learner once its log
//!   has caught up (its acknowledged index is within one Append of the leader's commit index), one entry at
//!   a time.
//! - A leader the ledger removes hands leadership to the most caught-up remaining voter
//!   first (leader transfer, `TimeoutNow`, §3.10); the new leader removes it. A leader that
//!   nevertheless finds itself outside the voters (`unsafe` control) steps down once that
//!   configuration is committed (§4.2.2).
//!
//! [`super::Raft::set_unsafe_multi_server_changes`] makes a leader jump to the target in one
//! entry — the negative control that the simulator must catch.

use crate::types::ReplicaId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One Raft configuration: who votes, who only learns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<ReplicaId>,
    pub learners: BTreeSet<ReplicaId>,
}

impl Membership {
    /// Every id a voter, no learner (a genesis configuration).
    pub fn voters(ids: impl IntoIterator<Item = ReplicaId>) -> Membership {
        Membership {
            voters: ids.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// A majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn is_voter(&self, id: ReplicaId) -> bool {
        self.voters.contains(&id)
    }

    /// A voter or a learner: the leader replicates to it.
    pub fn contains(&self, id: ReplicaId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Voters, then learners.
    pub fn members(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// How many of `ids` are voters here.
    pub fn count_voters<'a>(&self, ids: impl IntoIterator<Item = &'a ReplicaId>) -> usize {
        ids.into_iter().filter(|id| self.is_voter(**id)).count()
    }

    /// The rule every configuration entry a correct leader appends follows: the voters of
    /// `self` and `next` differ by at most one server, there is at least one voter, and no
    /// server is both voter and learner.
    pub fn single_step_to(&self, next: &Membership) -> bool {
        !next.voters.is_empty()
            && next.voters.is_disjoint(&next.learners)
            && self.voters.symmetric_difference(&next.voters).count() <= 1
    }
}

/// The configurations of a replica's log: the one in effect at `base` (committed: the
/// applied height at restart, or an earlier log position) and one per configuration entry
/// above it, in index order.
#[derive(Clone, Debug, Default)]
pub(super) struct Configs {
    base_index: u64,
    base: Membership,
    above: Vec<(u64, Membership)>,
}

impl Configs {
    pub(super) fn new(base_index: u64, base: Membership) -> Configs {
        Configs {
            base_index,
            base,
            above: Vec::new(),
        }
    }

    /// The latest configuration: the one this replica uses.
    pub(super) fn latest(&self) -> &Membership {
        self.above.last().map_or(&self.base, |(_, m)| m)
    }

    /// The index of the latest configuration's entry (the base index if none is above it).
    pub(super) fn latest_index(&self) -> u64 {
        self.above.last().map_or(self.base_index, |(i, _)| *i)
    }

    /// The configuration in effect at `index` (the base's for anything at or below it).
    pub(super) fn at(&self, index: u64) -> &Membership {
        self.above
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or(&self.base, |(_, m)| m)
    }

    /// A configuration entry at `index` entered the log (above every one held).
    pub(super) fn push(&mut self, index: u64, m: Membership) {
        if index <= self.base_index {
            return;
        }
        assert!(
            self.above.last().is_none_or(|(i, _)| *i < index),
            "configuration entries out of order"
        );
        self.above.push((index, m));
    }

    /// The log lost every entry after `index`.
    pub(super) fn truncate_after(&mut self, index: u64) {
        self.above.retain(|(i, _)| *i <= index);
    }

    /// Entries up to `index` are compacted (committed): fold their configurations into the
    /// base.
    pub(super) fn compact(&mut self, index: u64) {
        if index <= self.base_index {
            return;
        }
        let keep = self.above.partition_point(|(i, _)| *i <= index);
        if let Some((_, m)) = self.above.drain(..keep).next_back() {
            self.base = m;
        }
        self.base_index = index;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u16]) -> BTreeSet<ReplicaId> {
        v.iter().map(|i| ReplicaId(*i)).collect()
    }

    fn m(voters: &[u16], learners: &[u16]) -> Membership {
        Membership {
            voters: ids(voters),
            learners: ids(learners),
        }
    }

    #[test]
    fn single_steps_change_one_voter_at_most() {
        let three = m(&[0, 1, 2], &[]);
        assert!(three.single_step_to(&m(&[0, 1, 2], &[3])));
        assert!(three.single_step_to(&m(&[0, 1, 2, 3], &[])));
        assert!(three.single_step_to(&m(&[0, 1], &[])));
        // Two voters at once: majorities {0,1} and {2,3,4} of the two would be disjoint.
        assert!(!three.single_step_to(&m(&[0, 1, 2, 3, 4], &[])));
        assert!(!three.single_step_to(&m(&[0, 3], &[])));
        assert!(!three.single_step_to(&m(&[], &[0])));
        assert!(!three.single_step_to(&m(&[0, 1, 2], &[2])));
        assert_eq!(m(&[0, 1, 2, 3], &[4]).quorum(), 3);
        assert_eq!(m(&[0, 1, 2, 3, 4], &[]).quorum(), 3);
    }

    #[test]
    fn configs_follow_the_log_through_truncation_and_compaction() {
        let mut c = Configs::new(10, m(&[0, 1, 2], &[]));
        c.push(5, m(&[9], &[])); // at or below the base: already folded in
        assert_eq!(c.latest(), &m(&[0, 1, 2], &[]));
        c.push(12, m(&[0, 1, 2], &[3]));
        c.push(15, m(&[0, 1, 2, 3], &[]));
        assert_eq!(c.latest(), &m(&[0, 1, 2, 3], &[]));
        assert_eq!(c.latest_index(), 15);
        assert_eq!(c.at(14), &m(&[0, 1, 2], &[3]));
        assert_eq!(c.at(11), &m(&[0, 1, 2], &[]));
        c.truncate_after(14);
        assert_eq!(c.latest(), &m(&[0, 1, 2], &[3]));
        c.compact(13);
        assert_eq!(c.latest_index(), 13);
        assert_eq!(c.at(0), &m(&[0, 1, 2], &[3]));
        c.truncate_after(13);
        assert_eq!(c.latest(), &m(&[0, 1, 2], &[3]));
    }
}
