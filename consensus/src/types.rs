//! Identifiers and the committee.

use crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A validator's index in the genesis validator list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaId(pub u16);

/// A HotStuff view (round), PBFT view, or Raft term.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct View(pub u64);

impl View {
    /// The following view. Saturates: a Byzantine `u64::MAX` must not panic or wrap.
    pub fn next(self) -> View {
        View(self.0.saturating_add(1))
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitteeError {
    #[error("committee is empty")]
    Empty,
    #[error("committee of {n} is too large (at most {max})")]
    TooLarge { n: usize, max: usize },
    #[error("quorum {quorum} of {n} with f={f} is unsafe: two quorums must share f+1 members")]
    UnsafeQuorum { n: usize, f: usize, quorum: usize },
    #[error("quorum {quorum} of {n} with f={f} is not live: n-f correct members cannot form it")]
    NotLive { n: usize, f: usize, quorum: usize },
}

/// The fixed validator set from genesis: keys in genesis order, the fault bound `f` and
/// the quorum size. The node derives `f` and `quorum` from genesis (BFT: f = ⌊(n−1)/3⌋,
/// quorum = ⌈(n+f+1)/2⌉; Raft: f = ⌊(n−1)/2⌋, quorum = ⌊n/2⌋+1); the committee only checks
/// that they are safe (any two quorums share f+1 members, so at least one correct member in
/// the BFT case) and live (n−f members can form a quorum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committee {
    keys: Vec<PublicKey>,
    f: usize,
    quorum: usize,
    /// Leaders of views 1, 2, ... for Twins-style tests; round-robin after it runs out.
    schedule: Vec<ReplicaId>,
}

impl Committee {
    pub const MAX: usize = 1024;

    /// A BFT committee (quorums intersect in ≥ f+1).
    pub fn new_bft(keys: Vec<PublicKey>, f: usize, quorum: usize) -> Result<Self, CommitteeError> {
        Self::check(keys, f, quorum, f + 1)
    }

    /// A crash-fault committee (quorums intersect in ≥ 1).
    pub fn new_cft(keys: Vec<PublicKey>, f: usize, quorum: usize) -> Result<Self, CommitteeError> {
        Self::check(keys, f, quorum, 1)
    }

    fn check(
        keys: Vec<PublicKey>,
        f: usize,
        quorum: usize,
        overlap: usize,
    ) -> Result<Self, CommitteeError> {
        let n = keys.len();
        if n == 0 {
            return Err(CommitteeError::Empty);
        }
        if n > Self::MAX {
            return Err(CommitteeError::TooLarge { n, max: Self::MAX });
        }
        if 2 * quorum < n + overlap {
            return Err(CommitteeError::UnsafeQuorum { n, f, quorum });
        }
        if quorum + f > n {
            return Err(CommitteeError::NotLive { n, f, quorum });
        }
        Ok(Committee {
            keys,
            f,
            quorum,
            schedule: Vec::new(),
        })
    }

    /// The standard BFT committee for `keys`: f = ⌊(n−1)/3⌋, quorum = ⌈(n+f+1)/2⌉ — the
    /// ledger's `validators::Rule::Bft` (genesis and set changes use it; the cores do not
    /// depend on the ledger, so a test pins the two to each other).
    pub fn bft(keys: Vec<PublicKey>) -> Result<Self, CommitteeError> {
        let n = keys.len();
        let f = n.saturating_sub(1) / 3;
        Self::new_bft(keys, f, (n + f + 1).div_ceil(2))
    }

    pub fn n(&self) -> usize {
        self.keys.len()
    }
    pub fn f(&self) -> usize {
        self.f
    }
    pub fn quorum(&self) -> usize {
        self.quorum
    }
    pub fn key(&self, id: ReplicaId) -> Option<&PublicKey> {
        self.keys.get(id.0 as usize)
    }
    /// The replica id of the member with `key`, if one has it.
    pub fn index_of(&self, key: &PublicKey) -> Option<ReplicaId> {
        self.keys
            .iter()
            .position(|k| k == key)
            .map(|i| ReplicaId(i as u16))
    }
    pub fn ids(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        (0..self.keys.len()).map(|i| ReplicaId(i as u16))
    }
    /// Leader of `view`: round-robin, unless a test schedule names it.
    pub fn leader(&self, view: View) -> ReplicaId {
        self.scheduled_leader(view)
            .unwrap_or(ReplicaId((view.0 % self.keys.len() as u64) as u16))
    }

    /// The leader a test schedule names for `view`, if any.
    pub fn scheduled_leader(&self, view: View) -> Option<ReplicaId> {
        view.0
            .checked_sub(1)
            .and_then(|i| self.schedule.get(i as usize))
            .filter(|id| (id.0 as usize) < self.keys.len())
            .copied()
    }

    /// Fixes the leaders of views 1..=schedule.len() (Twins enumeration). Every replica must
    /// use the same schedule. Views whose scheduled id is outside the committee fall back to
    /// round-robin.
    pub fn with_leader_schedule(mut self, schedule: Vec<ReplicaId>) -> Self {
        self.schedule = schedule;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n)
            .map(|i| crypto::SecretKey::from_seed([i as u8; 32]).public())
            .collect()
    }

    #[test]
    fn bft_sizes() {
        for (n, f, q) in [(4, 1, 3), (5, 1, 4), (7, 2, 5), (10, 3, 7)] {
            let c = Committee::bft(keys(n)).unwrap();
            assert_eq!((c.n(), c.f(), c.quorum()), (n, f, q), "n={n}");
        }
    }

    #[test]
    fn the_committee_and_the_ledgers_rule_agree_on_every_size() {
        let rule = ledger::validators::Rule::Bft;
        for n in 1..=200 {
            let c = Committee::bft(keys(n)).unwrap();
            assert_eq!(
                (c.f(), c.quorum()),
                (rule.faults(n), rule.quorum(n)),
                "n={n}"
            );
        }
    }

    #[test]
    fn unsafe_and_dead_quorums_rejected() {
        assert!(matches!(
            Committee::new_bft(keys(5), 1, 3),
            Err(CommitteeError::UnsafeQuorum { .. })
        ));
        assert!(matches!(
            Committee::new_bft(keys(4), 1, 4),
            Err(CommitteeError::NotLive { .. })
        ));
        assert!(Committee::new_cft(keys(3), 1, 2).is_ok());
        assert!(Committee::new_cft(keys(4), 1, 2).is_err());
        assert_eq!(Committee::bft(vec![]), Err(CommitteeError::Empty));
    }
}
