//! PBFT view change with proofs: VIEW-CHANGE, NEW-VIEW and entering the new view, and the
//! view timer that retransmits, probes for missed blocks or gives up on the primary.

use super::core::{Out, Pbft, route_action};
use super::messages::{CheckpointCert, Message, NewView, Phase, PreparedCert, ViewChange, Vote};
use crate::core::Action;
use crate::durable::{Route, Unreleased};
use crate::types::{ReplicaId, View};
use crypto::Digest;
use std::collections::BTreeSet;

/// Batches whose starving view changes are counted, at most.
const MAX_STARVE_COUNTS: usize = 1024;

impl Pbft {
    pub(super) fn start_view_change(&mut self, view: View, out: &mut Out) {
        if view <= self.view && (self.changing || view < self.view) {
            return;
        }
        self.view = view;
        self.changing = true;
        self.new_view = None;
        self.idle = None;
        self.retransmitted = false;
        if let Some(d) = self.starved.take() {
            *self.starve_counts.entry(d).or_default() += 1;
            if self.starve_counts.len() > MAX_STARVE_COUNTS {
                self.starve_counts.pop_first();
            }
        }
        for slot in self.slots.values_mut() {
            slot.pre_prepare = None;
            slot.prepared = false;
            slot.mine.clear();
        }
        let prepared: Vec<PreparedCert> = self
            .records
            .values()
            .filter_map(|r| r.prepared.clone())
            .collect();
        let vc = ViewChange::new(
            view,
            self.stable.clone(),
            prepared,
            self.cfg.me,
            &self.cfg.genesis,
            &self.cfg.key,
        );
        let ps = self.persist(out);
        self.send_after(ps, Route::All, Message::ViewChange(Box::new(vc.clone())));
        self.my_vc = Some((ps, vc.clone()));
        self.view_changes.insert(self.cfg.me, vc);
        self.arm_view_timer(out);
        self.attempts = self.attempts.saturating_add(1);
        self.try_new_view(out);
    }

    pub(super) fn on_view_change(&mut self, from: ReplicaId, vc: ViewChange, out: &mut Out) {
        if vc.view < self.view {
            return;
        }
        if vc.view == self.view && !self.changing {
            // It missed the NEW-VIEW that started our view: send it again.
            if let Some(nv) = &self.new_view
                && self.primary(self.view) == self.cfg.me
            {
                out.push(Action::Send {
                    to: from,
                    msg: Message::NewView(Box::new(nv.clone())),
                });
            }
            return;
        }
        if self
            .view_changes
            .get(&vc.replica)
            .is_some_and(|have| have.view >= vc.view)
        {
            return;
        }
        if vc
            .verify(
                &self.cfg.committee,
                &self.cfg.genesis,
                self.cfg.max_payload,
                self.window,
                &self.cfg.start,
            )
            .is_err()
        {
            return self.invalid();
        }
        // The stable checkpoint it proves may be ahead of ours.
        if vc.stable.seq > self.stable.seq {
            self.install_stable(vc.stable.clone(), out);
        }
        self.view_changes.insert(vc.replica, vc);
        // f+1 replicas want a view above ours: join the smallest of those views.
        let mine = self.view;
        let mut above: Vec<View> = self
            .view_changes
            .values()
            .map(|vc| vc.view)
            .filter(|v| *v > mine)
            .collect();
        if above.len() > self.cfg.committee.f() {
            // The largest view that f+1 of them want (at least one honest replica).
            above.sort_unstable_by(|a, b| b.cmp(a));
            let target = above[self.cfg.committee.f()];
            self.start_view_change(target, out);
        }
        self.try_new_view(out);
    }

    /// As the primary of the view we are changing to, with `quorum` view changes for it,
    /// send NEW-VIEW and enter the view.
    fn try_new_view(&mut self, out: &mut Out) {
        let view = self.view;
        if !self.changing || self.primary(view) != self.cfg.me {
            return;
        }
        let vcs: Vec<ViewChange> = self
            .view_changes
            .values()
            .filter(|vc| vc.view == view)
            .cloned()
            .collect();
        if vcs.len() < self.cfg.committee.quorum() {
            return;
        }
        let nv = NewView::new(
            view,
            vcs,
            &self.cfg.committee,
            &self.cfg.genesis,
            &self.cfg.key,
        );
        let (stable, _) = NewView::reissue(view, &nv.view_changes, &self.cfg.committee);
        self.install_new_view(nv, stable, out);
    }

    pub(super) fn on_new_view(&mut self, nv: NewView, out: &mut Out) {
        if nv.view < self.view || (nv.view == self.view && !self.changing) {
            return;
        }
        let Ok(stable) = nv.verify(
            &self.cfg.committee,
            &self.cfg.genesis,
            self.cfg.max_payload,
            self.window,
            &self.cfg.start,
        ) else {
            return self.invalid();
        };
        self.install_new_view(nv, stable, out);
    }

    /// Enters `nv.view`: adopts its stable checkpoint, takes its re-issued pre-prepares into
    /// the log and prepares them (the primary just records them), then the NEW-VIEW (from
    /// the primary) and the prepares leave after one persist.
    fn install_new_view(&mut self, nv: NewView, stable: CheckpointCert, out: &mut Out) {
        self.stats.view_changes += 1;
        self.view = nv.view;
        self.changing = false;
        self.idle = None;
        self.retransmitted = false;
        for slot in self.slots.values_mut() {
            slot.pre_prepare = None;
            slot.prepared = false;
            slot.mine.clear();
        }
        if stable.seq > self.stable.seq {
            self.install_stable(stable, out);
        }
        let me = self.cfg.me;
        let primary = self.primary(self.view) == me;
        let mut prepares = Vec::new();
        let mut max_s = self.stable.seq;
        for pp in &nv.pre_prepares {
            let seq = pp.block.seq;
            max_s = max_s.max(seq);
            if !self.in_window(seq) {
                continue;
            }
            let d = pp.block.digest();
            let slot = self.slots.entry(seq).or_default();
            slot.pre_prepare = Some(pp.clone());
            for digest in &pp.block.payload {
                self.offered.insert(*digest, self.now);
            }
            self.record_signed(seq, d);
            if !primary {
                let vote = Vote::new(
                    Phase::Prepare,
                    self.view,
                    seq,
                    d,
                    me,
                    &self.cfg.genesis,
                    &self.cfg.key,
                );
                self.slots
                    .get_mut(&seq)
                    .expect("present")
                    .prepares
                    .insert(me, vote.clone());
                prepares.push(vote);
            }
        }
        self.next_seq = max_s.max(self.committed) + 1;
        let ps = self.persist(out);
        if primary {
            self.send_after(ps, Route::All, Message::NewView(Box::new(nv.clone())));
        }
        for vote in prepares {
            let seq = vote.seq;
            let msg = Message::Prepare(vote);
            self.send_after(ps, Route::All, msg.clone());
            self.slots
                .get_mut(&seq)
                .expect("present")
                .mine
                .push((ps, msg));
        }
        self.new_view = Some(nv);
        // Offered batches that did not survive into the new log go back to pending.
        let in_log: BTreeSet<Digest> = self
            .slots
            .values()
            .filter_map(|s| s.pre_prepare.as_ref())
            .flat_map(|p| p.block.payload.iter().copied())
            .collect();
        self.pending.clear();
        self.pending_set.clear();
        for d in self.offered.in_order().collect::<Vec<_>>().iter() {
            if !in_log.contains(d) {
                self.pending.push_back(*d);
                self.pending_set.insert(*d);
            }
        }
        let entered = self.view;
        self.starved = None;
        self.view_changes.retain(|_, vc| vc.view > entered);
        self.arm_view_timer(out);
        let seqs: Vec<u64> = self.slots.keys().copied().collect();
        for seq in seqs {
            self.check_prepared(seq, out);
        }
        self.try_propose(out);
        let future: Vec<(ReplicaId, Message)> = self.future.drain(..).collect();
        for (from, msg) in future {
            self.on_message(from, msg, out);
        }
    }

    // ---------------------------------------------------------------- timers

    /// Whether this replica expects a commit: the primary sends heartbeats, or work is
    /// pending, or the log holds an uncommitted request (a pre-prepare, or prepares from
    /// more than f replicas, so one Byzantine replica cannot fake work).
    fn waiting(&self) -> bool {
        let f = self.cfg.committee.f();
        self.cfg.idle_block_ms > 0
            || !self.pending.is_empty()
            || self
                .slots
                .range(self.committed + 1..)
                .any(|(_, s)| s.pre_prepare.is_some() || s.prepares.len() > f)
            || self.committed < self.fetch_target
    }

    pub(super) fn on_view_timer(&mut self, out: &mut Out) {
        if self.changing {
            // Move on to the next view only when a quorum wanted this one (or a later one:
            // a replica's view change for a later view replaces the one it sent for this
            // view, and says it gave up on everything below) and its primary still sent
            // nothing; otherwise say our view change again (the new primary resends its
            // NEW-VIEW to a replica that missed it). A replica alone in a view change so
            // never runs ahead of the others.
            let view = self.view;
            let have = self
                .view_changes
                .values()
                .filter(|vc| vc.view >= view)
                .count();
            // The others may be committing in the view we left (we alone lost messages):
            // ask a peer for what we miss at every timeout, so a lost fetch or answer is
            // asked again and a replica alone in a view change keeps up.
            self.probe(out);
            if have >= self.cfg.committee.quorum() && self.retransmitted {
                return self.start_view_change(view.next(), out);
            }
            self.retransmitted = true;
            if let Some((ps, vc)) = &self.my_vc {
                self.gate.send_after(
                    *ps,
                    Route::All,
                    Unreleased::new(Message::ViewChange(Box::new(vc.clone()))),
                );
                for (route, msg) in self.gate.release_durable() {
                    out.push(route_action(route, msg));
                }
            }
            return self.arm_view_timer(out);
        }
        // Commits are progress, unless the primary starves an offered batch (see
        // `starved`): then the view changes as if it had stopped.
        if self.starved.is_none() && (self.committed > self.committed_at_arm || !self.waiting()) {
            self.retransmitted = false;
            return self.arm_view_timer(out);
        }
        if !self.retransmitted {
            // Messages may have been lost: say everything again once before giving up on
            // the primary, and ask a peer whether we are simply behind.
            self.retransmitted = true;
            for slot in self.slots.range(self.committed + 1..).map(|(_, s)| s) {
                for (ps, msg) in &slot.mine {
                    self.gate
                        .send_after(*ps, Route::All, Unreleased::new(msg.clone()));
                }
            }
            for (route, msg) in self.gate.release_durable() {
                out.push(route_action(route, msg));
            }
            self.probe(out);
            return self.arm_view_timer(out);
        }
        let next = self.view.next();
        self.start_view_change(next, out);
    }
}
