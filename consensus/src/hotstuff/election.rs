//! Leader election by recent activity ("leader reputation", as in DiemBFT v4 / Aptos).
//!
//! Plain round-robin gives a crashed validator its turn every n views, and each turn costs a
//! timeout — two, in fact, since the votes of the view before go to the dead leader too. Here
//! the leader of view `v` is chosen round-robin among the validators that were *active* in
//! recent committed blocks: proposers of, or signers in the QCs of, the last
//! [`window`] committed blocks whose view is at most `v - LAG`. When every validator is active
//! the rotation is exactly round-robin.
//!
//! Every input is committed history, so replicas that have committed up to `v - LAG` agree on
//! the leader of `v`; one that lags may disagree (it then refuses that proposal, which costs
//! liveness for it alone until it catches up, never safety: one vote per view still holds).
//! Too little history (a fresh chain) falls back to round-robin, so a restarted replica is
//! given the history from its store ([`super::Recovered::history`]).
//!
//! So does a *stale* history: nothing committed for [`stall`] views. The history only moves
//! when blocks commit, and a rotation can stop them for good: a validator left out while it
//! was down (or partitioned) is only let back in by blocks that commit after it returns, and
//! if a validator of the rotation crashes meanwhile, a rotation of three with one crashed
//! never has the three live leaders in a row that a 2-chain needs (the proposer of `v`, the
//! collectors of the QCs of `v` and `v + 1`). Nothing would commit again, so nothing would
//! change the rotation. Round-robin over the whole committee always has such a run while at
//! most `f` validators are faulty.

use crate::types::{Committee, ReplicaId, View};
use std::collections::{BTreeSet, VecDeque};

/// Only blocks committed with a view at most this far below the elected view count, so that
/// replicas a few views apart in commits still agree.
pub const LAG: u64 = 10;
/// Committed blocks kept, at most (the window never exceeds it).
pub const MAX_HISTORY: usize = 512;

/// Committed blocks considered: two per validator (a live validator proposes at least once in
/// that many committed blocks), at least 8, at most [`MAX_HISTORY`].
pub fn window(n: usize) -> usize {
    (2 * n).clamp(8, MAX_HISTORY)
}

/// Views without a commit (beyond [`LAG`]) after which the history is stale and the leader is
/// chosen round-robin: twice the [`window`], well above the gaps that crashed leaders cause
/// while they are still in the rotation (a few views each).
pub fn stall(n: usize) -> u64 {
    2 * window(n) as u64
}

/// One committed block's activity: its view, and who proposed it or signed its QC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub view: View,
    pub active: Vec<ReplicaId>,
}

#[derive(Clone, Debug, Default)]
pub struct Election {
    /// Committed blocks, oldest first, views increasing.
    history: VecDeque<Activity>,
}

impl Election {
    pub fn new(history: Vec<Activity>) -> Election {
        let mut e = Election::default();
        for a in history {
            e.committed(a);
        }
        e
    }

    /// Records a committed block (in commit order; out-of-order views are ignored).
    pub fn committed(&mut self, a: Activity) {
        if self.history.back().is_some_and(|last| last.view >= a.view) {
            return;
        }
        if self.history.len() == MAX_HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(a);
    }

    /// The leader of `view`: a test schedule's, else round-robin over the recently active
    /// validators, else (too little history, a stale one, or fewer active than a quorum)
    /// round-robin.
    pub fn leader(&self, c: &Committee, view: View) -> ReplicaId {
        if let Some(id) = c.scheduled_leader(view) {
            return id;
        }
        let w = window(c.n());
        let mut eligible = self
            .history
            .iter()
            .rev()
            .skip_while(|a| a.view.0.saturating_add(LAG) > view.0)
            .take(w)
            .peekable();
        // Nothing committed for `stall` views: the chain has stalled, perhaps because of the
        // rotation itself (see the module doc).
        if eligible
            .peek()
            .is_none_or(|a| a.view.0.saturating_add(LAG + stall(c.n())) < view.0)
        {
            return c.leader(view);
        }
        let mut active = BTreeSet::new();
        let mut count = 0;
        for a in eligible {
            count += 1;
            active.extend(a.active.iter().filter(|id| c.key(**id).is_some()));
        }
        if count < w || active.len() < c.quorum() {
            return c.leader(view);
        }
        let active: Vec<ReplicaId> = active.into_iter().collect();
        active[(view.0 % active.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::SecretKey;

    fn committee(n: usize) -> Committee {
        Committee::bft(
            (0..n)
                .map(|i| SecretKey::from_seed([i as u8 + 1; 32]).public())
                .collect(),
        )
        .unwrap()
    }

    fn activity(view: u64, active: &[u16]) -> Activity {
        Activity {
            view: View(view),
            active: active.iter().map(|i| ReplicaId(*i)).collect(),
        }
    }

    #[test]
    fn everyone_active_is_round_robin() {
        let c = committee(4);
        let e = Election::new((1..=40).map(|v| activity(v, &[0, 1, 2, 3])).collect());
        for v in 1..60 {
            assert_eq!(e.leader(&c, View(v)), c.leader(View(v)), "view {v}");
        }
    }

    #[test]
    fn a_silent_validator_is_skipped_once_the_window_has_passed() {
        let c = committee(4);
        // Validator 1 active up to view 20, silent from view 21 on.
        let mut e = Election::new((1..=20).map(|v| activity(v, &[0, 1, 2, 3])).collect());
        for v in 21..=40 {
            e.committed(activity(v, &[v as u16 % 2 * 2, 2, 3, 0]));
        }
        // View 50 looks at blocks with view <= 40: the last 8 (33..=40) lack validator 1.
        let leaders: Vec<u16> = (50..62).map(|v| e.leader(&c, View(v)).0).collect();
        assert!(!leaders.contains(&1), "{leaders:?}");
        assert_eq!(leaders, vec![3, 0, 2, 3, 0, 2, 3, 0, 2, 3, 0, 2]);
        // View 29 looks at views <= 19, when it was active: plain round-robin.
        assert_eq!(e.leader(&c, View(29)), ReplicaId(1));
    }

    #[test]
    fn too_little_history_or_activity_falls_back_to_round_robin() {
        let c = committee(4);
        let short = Election::new((1..=5).map(|v| activity(v, &[0, 2, 3])).collect());
        assert_eq!(short.leader(&c, View(41)), ReplicaId(1));
        // Fewer active than a quorum (3): something is off, do not narrow the rotation.
        let thin = Election::new((1..=40).map(|v| activity(v, &[0, 2])).collect());
        assert_eq!(thin.leader(&c, View(41)), ReplicaId(1));
        // Unknown ids are ignored.
        let odd = Election::new((1..=40).map(|v| activity(v, &[0, 2, 9])).collect());
        assert_eq!(odd.leader(&c, View(41)), ReplicaId(1));
    }

    #[test]
    fn a_stalled_history_falls_back_to_round_robin() {
        let c = committee(4);
        // Validator 1 was left out (silent up to view 40); then 2 crashed, so the rotation
        // {0, 2, 3} commits nothing more.
        let e = Election::new((1..=40).map(|v| activity(v, &[0, 2, 3])).collect());
        let last = 40 + LAG + stall(4);
        let leaders: Vec<u16> = (last - 2..=last).map(|v| e.leader(&c, View(v)).0).collect();
        assert!(!leaders.contains(&1), "{leaders:?}");
        for v in last + 1..last + 9 {
            assert_eq!(e.leader(&c, View(v)), c.leader(View(v)), "view {v}");
        }
    }

    #[test]
    fn out_of_order_and_bounded() {
        let mut e = Election::default();
        e.committed(activity(5, &[0]));
        e.committed(activity(4, &[1]));
        assert_eq!(e.history.len(), 1);
        for v in 6..(6 + 2 * MAX_HISTORY as u64) {
            e.committed(activity(v, &[0]));
        }
        assert_eq!(e.history.len(), MAX_HISTORY);
    }

    #[test]
    fn a_test_schedule_wins() {
        let c = committee(4).with_leader_schedule(vec![ReplicaId(3), ReplicaId(3)]);
        let e = Election::new((1..=40).map(|v| activity(v, &[0, 2, 3])).collect());
        assert_eq!(e.leader(&c, View(2)), ReplicaId(3));
    }
}
