//! The leader's side of membership changes (`membership.rs` has the rules): steering the
//! configuration towards the members the ledger names, one configuration entry at a time,
//! and leader transfer (thesis §3.10).

use super::core::{Out, Progress, Raft, Role};
use super::membership::Membership;
use super::messages::{Entry, Message};
use crate::core::Action;
use crate::durable::Route;
use crate::types::{Committee, ReplicaId};
use std::collections::BTreeSet;

/// Election-timer periods a leader transfer may take before the leader resumes leading.
const TRANSFER_PERIODS: u32 = 2;

/// A leader transfer in progress.
#[derive(Clone, Debug)]
pub(super) struct Transfer {
    pub(super) to: ReplicaId,
    /// Election-timer periods since it began.
    periods: u32,
    /// `TimeoutNow` was sent (once the target's log matched ours).
    sent: bool,
}

/// Why [`Raft::transfer_leadership`] did not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("this server is not the leader")]
    NotLeader,
    #[error("{0} is not a voter of the current configuration")]
    NotAVoter(ReplicaId),
    #[error("no other voter to hand leadership to")]
    NoCandidate,
}

impl Raft {
    /// The latest configuration in this replica's log (the one it uses).
    pub fn membership(&self) -> &Membership {
        self.log.config()
    }

    /// The index of the entry that set [`Raft::membership`] (or the committed point it was
    /// known at); committed iff it is at most [`Raft::commit_index`].
    pub fn membership_index(&self) -> u64 {
        self.log.config_index()
    }

    /// The configuration in effect at `index` in this replica's log (the committed one for
    /// anything at or below the point it was recovered or compacted at).
    pub fn membership_at(&self, index: u64) -> &Membership {
        self.log.config_at(index)
    }

    /// A leader transfer is in progress here.
    pub fn transferring(&self) -> Option<ReplicaId> {
        self.transfer.as_ref().map(|t| t.to)
    }

    /// The servers the ledger names as members (every replica is told the same, at the same
    /// ledger height). A leader steers the configuration towards them, one server at a
    /// time; every member must have a key in the committee ([`Raft::set_committee`]).
    pub fn set_members(&mut self, members: BTreeSet<ReplicaId>) -> Vec<Action<Message>> {
        let mut out = Vec::new();
        if !members.is_empty() {
            self.target = Some(members);
            self.steer(&mut out);
        }
        out
    }

    /// The servers whose messages this replica accepts, and whose entries it can check,
    /// grew (a server joined the ledger's set): ids are stable, so it must extend the
    /// committee it replaces.
    pub fn set_committee(&mut self, committee: Committee) {
        assert!(
            self.cfg
                .committee
                .ids()
                .all(|id| committee.key(id).is_some()),
            "a committee may only grow: replica ids are stable"
        );
        self.cfg.committee = committee;
    }

    /// Hands leadership to `to` (or to the most caught-up other voter): no new entries until
    /// it takes over or [`TRANSFER_PERIODS`] election periods pass. The target starts an
    /// election as soon as its log matches ours.
    pub fn transfer_leadership(
        &mut self,
        to: Option<ReplicaId>,
    ) -> Result<Vec<Action<Message>>, TransferError> {
        let mut out = Vec::new();
        self.start_transfer(to, &mut out)?;
        Ok(out)
    }

    /// NEGATIVE CONTROL ONLY — BREAKS SAFETY. With `on`, a leader jumps to the ledger's
    /// members in one configuration entry (several voters at once, without joint
    /// consensus), so the majorities of two successive configurations can be disjoint. The
    /// simulator uses it to show that its checkers catch exactly that; nothing else may
    /// call it.
    pub fn set_unsafe_multi_server_changes(&mut self, on: bool) {
        self.unsafe_multi_server_changes = on;
    }

    /// Leader: one progress record per member of the latest configuration but us, and of
    /// the committed one until the latest commits — so that a removed server receives the
    /// entry that removes it, and stops campaigning.
    pub(super) fn sync_progress(&mut self) {
        let next = self.log.last_index() + 1;
        let config = self.log.config().clone();
        let committed = self.log.config_at(self.commit).clone();
        let keep = |id: ReplicaId| config.contains(id) || committed.contains(id);
        self.progress
            .retain(|id, _| keep(*id) && *id != self.cfg.me);
        for id in config
            .members()
            .chain(committed.members())
            .filter(|id| *id != self.cfg.me)
        {
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(next));
        }
    }

    /// Leader: if the latest configuration is committed and this term has committed an
    /// entry, takes one step towards the ledger's members (see `membership.rs`).
    pub(super) fn steer(&mut self, out: &mut Out) {
        if self.role != Role::Leader || self.transfer.is_some() {
            return;
        }
        let me = self.cfg.me;
        let settled = self.log.config_index() <= self.commit;
        if settled && !self.is_voter(me) {
            // §4.2.2: a leader outside the committed configuration steps down.
            self.become_follower(self.term, out);
            return self.reset_election_timer(out);
        }
        let Some(target) = self.target.as_ref() else {
            return;
        };
        let config = self.log.config();
        let reached = config.learners.is_empty() && config.voters == *target;
        if reached || !settled || self.log.term_at(self.commit) != Some(self.term) {
            // Nothing to do (the common case, after every commit and heartbeat), or not now.
            return;
        }
        let target = target.clone();
        let cur = self.log.config().clone();
        let known = |id: &ReplicaId| self.cfg.committee.key(*id).is_some();
        let mut next = cur.clone();
        if self.unsafe_multi_server_changes {
            next = Membership::voters(target.iter().copied().filter(known));
        } else if let Some(l) = cur.learners.iter().find(|l| !target.contains(l)) {
            next.learners.remove(l);
        } else if let Some(v) = cur.voters.iter().find(|v| !target.contains(v) && **v != me) {
            next.voters.remove(v);
        } else if let Some(n) = target.iter().find(|t| !cur.contains(**t) && known(t)) {
            next.learners.insert(*n);
        } else if let Some(l) = cur.learners.iter().find(|l| self.caught_up(**l)) {
            next.learners.remove(l);
            next.voters.insert(*l);
        } else if !target.contains(&me) {
            // The ledger removed the leader: hand over first; the next leader removes it.
            let _ = self.start_transfer(None, out);
            return;
        }
        if next != cur && !next.voters.is_empty() {
            self.append_config(next, out);
        }
    }

    /// A learner whose acknowledged log is within one Append of our commit index (under
    /// load the commit index moves on while the learner's answer travels: exact equality
    /// might never be seen).
    fn caught_up(&self, id: ReplicaId) -> bool {
        let slack = self.max_append_entries() as u64;
        self.progress
            .get(&id)
            .is_some_and(|p| p.matched > 0 && p.matched + slack >= self.commit)
    }

    /// Appends a configuration entry (it takes effect here at once) and replicates it.
    fn append_config(&mut self, next: Membership, out: &mut Out) {
        let after = self.log.last_index();
        let at = (self.term, after + 1, self.cfg.me, self.now);
        let e = Entry::with_config(&self.cfg.key, &self.cfg.genesis, at, Vec::new(), Some(next));
        let encoded = vec![e.encode()];
        self.log.push(e);
        self.persist_log(after, encoded, out);
        self.stats.config_changes += 1;
        self.sync_progress();
        self.broadcast_append(false, out);
    }

    fn start_transfer(
        &mut self,
        to: Option<ReplicaId>,
        out: &mut Out,
    ) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        let me = self.cfg.me;
        let to = match to {
            Some(id) if id == me || !self.is_voter(id) => return Err(TransferError::NotAVoter(id)),
            Some(id) => id,
            None => {
                let wanted = |id: &ReplicaId| self.target.as_ref().is_none_or(|t| t.contains(id));
                self.progress
                    .iter()
                    .filter(|(id, _)| self.is_voter(**id) && wanted(id))
                    .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
                    .map(|(id, _)| *id)
                    .ok_or(TransferError::NoCandidate)?
            }
        };
        self.transfer = Some(Transfer {
            to,
            periods: 0,
            sent: false,
        });
        self.send_timeout_now(out);
        Ok(())
    }

    /// Sends `TimeoutNow` once the target's log matches ours (replicating until it does).
    pub(super) fn send_timeout_now(&mut self, out: &mut Out) {
        let last = self.log.last_index();
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.sent || self.progress.get(&t.to).is_none_or(|p| p.matched < last) {
            return;
        }
        t.sent = true;
        let to = t.to;
        self.stats.transfers += 1;
        let msg = Message::TimeoutNow { term: self.term };
        self.send(Route::To(to), msg, 0, out);
    }

    /// Leader, at each election-timer period: a transfer that did not complete in time is
    /// abandoned, and the leader proposes again.
    pub(super) fn expire_transfer(&mut self) {
        if let Some(t) = self.transfer.as_mut() {
            t.periods += 1;
            if t.periods > TRANSFER_PERIODS {
                self.transfer = None;
            }
        }
    }

    /// `TimeoutNow` from our leader: start a real election now (no pre-vote), flagged so
    /// that voters still hearing that leader answer.
    pub(super) fn on_timeout_now(&mut self, from: ReplicaId, term: u64, out: &mut Out) {
        let ours = term == self.term && self.leader == Some(from) && self.role == Role::Follower;
        if !ours || !self.is_voter(self.cfg.me) {
            self.stats.ignored += 1;
            return;
        }
        self.become_candidate(out, true);
    }
}
