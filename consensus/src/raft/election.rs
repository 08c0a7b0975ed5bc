//! Timers, pre-vote (thesis §9.6), votes (§5.2, §5.4.1), check-quorum (thesis §6.2) and the
//! role changes between them.
//!
//! Leader stickiness: a replica that heard from a leader during its current election-timer
//! period (`leader_contact`, set by the leader's Appends and cleared when the timer fires)
//! neither grants a pre-vote nor even looks at a higher-term RequestVote (thesis §4.2.3), and
//! a leader treats itself as such a replica. So a replica that was partitioned away and kept
//! timing out cannot depose a leader that a majority still hears: its pre-votes fail, and if
//! it somehow got to a real election its higher term would be ignored. The period is counted
//! in timer ticks, never with `now_ms`.

use super::core::{ELECTION_TIMER, Out, Raft, Role};
use super::messages::Message;
use crate::core::Action;
use crate::durable::Route;
use crate::types::ReplicaId;

impl Raft {
    /// A fresh timeout drawn uniformly from `[T, 2T)`.
    pub(super) fn reset_election_timer(&mut self, out: &mut Out) {
        let t = self.cfg.election_timeout_ms.max(1);
        let after_ms = t + self.rng.next() % t;
        out.push(Action::SetTimer {
            id: ELECTION_TIMER,
            after_ms,
        });
    }

    /// Whether a leader is known to be alive: stickiness for votes and pre-votes.
    fn leader_is_live(&self) -> bool {
        self.role == Role::Leader || self.leader_contact
    }

    /// `(last_term, last_index)` at least as up-to-date as ours (§5.4.1).
    fn up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        (last_term, last_index) >= (self.log.last_term(), self.log.last_index())
    }

    pub(super) fn on_election_timer(&mut self, out: &mut Out) {
        if self.role == Role::Leader {
            self.expire_transfer();
            return self.check_quorum(out);
        }
        self.leader_contact = false;
        if !self.is_voter(self.cfg.me) {
            // A learner, or a server the configuration no longer names: it never campaigns
            // (it could not count its own vote, and a removed server must not disrupt).
            self.role = Role::Follower;
            return self.reset_election_timer(out);
        }
        self.start_pre_vote(out);
    }

    /// The votes gathered so far include a majority of the voters.
    fn won(&self) -> bool {
        self.log.config().count_voters(&self.votes) >= self.quorum()
    }

    /// A leader that did not hear from a majority (itself included) during one election
    /// period steps down, keeping its term: clients then find the real leader instead of
    /// waiting on one that cannot commit.
    fn check_quorum(&mut self, out: &mut Out) {
        let me = usize::from(self.is_voter(self.cfg.me));
        let heard = self.log.config().count_voters(&self.heard) + me;
        self.heard.clear();
        if heard >= self.quorum() {
            out.push(Action::SetTimer {
                id: ELECTION_TIMER,
                after_ms: self.cfg.election_timeout_ms.max(1),
            });
            return;
        }
        self.stats.stepped_down += 1;
        self.become_follower(self.term, out);
        self.reset_election_timer(out);
    }

    /// Becomes a follower of `term` (≥ ours) with no known leader yet; persists the hard
    /// state if the term moves. The caller resets the election timer.
    pub(super) fn become_follower(&mut self, term: u64, out: &mut Out) {
        assert!(term >= self.term, "terms never go back");
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state(out);
        }
        self.fail_reads(out);
        self.role = Role::Follower;
        self.transfer = None;
        self.leader = None;
        self.leader_contact = false;
        self.votes.clear();
        self.progress.clear();
        self.heard.clear();
    }

    /// Asks for pre-votes for `term + 1` without changing anything durable.
    fn start_pre_vote(&mut self, out: &mut Out) {
        self.fail_reads(out);
        self.role = Role::PreCandidate;
        self.leader = None;
        self.progress.clear();
        self.votes.clear();
        self.votes.insert(self.cfg.me);
        self.reset_election_timer(out);
        let Some(term) = self.term.checked_add(1) else {
            return;
        };
        if self.won() {
            return self.become_candidate(out, false);
        }
        let msg = Message::PreVote {
            term,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
        };
        self.send(Route::All, msg, 0, out);
    }

    pub(super) fn on_pre_vote(
        &mut self,
        from: ReplicaId,
        term: u64,
        last_index: u64,
        last_term: u64,
        out: &mut Out,
    ) {
        let granted =
            term > self.term && !self.leader_is_live() && self.up_to_date(last_index, last_term);
        // A granted reply names the term asked for; a refusal our own, which a pre-candidate
        // behind it adopts (see `on_pre_vote_reply`).
        let term = if granted { term } else { self.term };
        self.send(
            Route::To(from),
            Message::PreVoteReply { term, granted },
            0,
            out,
        );
    }

    pub(super) fn on_pre_vote_reply(
        &mut self,
        from: ReplicaId,
        term: u64,
        granted: bool,
        out: &mut Out,
    ) {
        // A refusal from a replica in a later term: we are behind, so we follow that term
        // (as etcd does). Without this, replicas whose terms are ahead but whose logs are stale
        // and replicas with the longest logs but older terms refuse each other for ever: the
        // former cannot win, the latter ask for a term the former already hold (found by the
        // simulator: Figure 8 at step (c) with S5 down). Asking for pre-votes still moves no
        // one's term: only a replica that is genuinely behind catches up.
        if !granted && term > self.term {
            self.step_down_if_behind(term, out);
            return;
        }
        if self.role != Role::PreCandidate || !granted || Some(term) != self.term.checked_add(1) {
            return;
        }
        self.votes.insert(from);
        if self.won() {
            self.become_candidate(out, false);
        }
    }

    /// A real election: a new term, our own vote, durable before any RequestVote leaves.
    /// `transfer`: the previous leader asked for it (`TimeoutNow`).
    pub(super) fn become_candidate(&mut self, out: &mut Out, transfer: bool) {
        let Some(term) = self.term.checked_add(1) else {
            return;
        };
        self.fail_reads(out);
        self.term = term;
        self.voted_for = Some(self.cfg.me);
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.cfg.me);
        self.stats.elections += 1;
        self.persist_hard_state(out);
        self.reset_election_timer(out);
        if self.won() {
            return self.become_leader(out);
        }
        let msg = Message::RequestVote {
            term,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            transfer,
        };
        self.send(Route::All, msg, self.hard_seq, out);
    }

    pub(super) fn on_request_vote(
        &mut self,
        from: ReplicaId,
        term: u64,
        (last_index, last_term): (u64, u64),
        transfer: bool,
        out: &mut Out,
    ) {
        if term > self.term && self.leader_is_live() && !transfer {
            // Thesis §4.2.3: a live leader is not deposed by a higher term it did not earn
            // (unless it handed over itself: §3.10).
            self.stats.ignored += 1;
            return;
        }
        let mut timer_reset = false;
        if term > self.term {
            self.become_follower(term, out);
            timer_reset = true;
        }
        let granted = term == self.term
            && self.voted_for.is_none_or(|v| v == from)
            && self.up_to_date(last_index, last_term);
        if granted && self.voted_for.is_none() {
            self.voted_for = Some(from);
            self.persist_hard_state(out);
        }
        if granted || timer_reset {
            self.reset_election_timer(out);
        }
        let msg = Message::VoteReply {
            term: self.term,
            granted,
        };
        self.reply(from, msg, self.hard_seq, out);
    }

    pub(super) fn on_vote_reply(
        &mut self,
        from: ReplicaId,
        term: u64,
        granted: bool,
        out: &mut Out,
    ) {
        if self.role != Role::Candidate || term != self.term || !granted {
            return;
        }
        self.votes.insert(from);
        if self.won() {
            self.become_leader(out);
        }
    }

    /// §5.2 and §8: a new leader appends a no-op of its term (which commits the entries of
    /// earlier terms once it does), then whatever batches it holds, and replicates at once.
    fn become_leader(&mut self, out: &mut Out) {
        self.fail_reads(out);
        self.role = Role::Leader;
        self.leader = Some(self.cfg.me);
        self.leader_contact = false;
        self.votes.clear();
        self.heard.clear();
        self.transfer = None;
        self.stats.became_leader += 1;
        self.progress.clear();
        self.sync_progress();
        out.push(Action::SetTimer {
            id: ELECTION_TIMER,
            after_ms: self.cfg.election_timeout_ms.max(1),
        });
        out.push(Action::SetTimer {
            id: super::core::HEARTBEAT_TIMER,
            after_ms: self.cfg.heartbeat_ms.max(1),
        });
        let mut batches = vec![Vec::new()];
        while !self.pending.is_empty() && batches.len() < self.max_append_entries() {
            let b = self.take_payload(self.max_payload());
            batches.push(b);
        }
        self.append_as_leader(batches, out);
        self.broadcast_append(true, out);
    }
}
