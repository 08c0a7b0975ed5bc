//! The HotStuff replica's message handlers: proposals and votes, timeouts and timeout
//! certificates, and the view timer.

use super::core::{HotStuff, MAX_BUFFERED, Out, VIEW_TIMER};
use super::messages::{Message, Proposal, Timeout, TimeoutCert, Verify, Vote};
use crate::core::Action;
use crate::durable::Route;
use crate::types::ReplicaId;
use std::collections::BTreeSet;

impl HotStuff {
    pub(super) fn on_message(&mut self, from: ReplicaId, msg: Message, out: &mut Out) {
        match msg {
            Message::Propose(p) => self.on_proposal(from, *p, out),
            Message::Vote(v) => self.on_vote(v, out),
            Message::Timeout(t) => self.on_timeout(from, *t, out),
            Message::Tc(tc) => self.on_tc(tc, out),
            Message::SyncRequest { block, above } => self.on_sync_request(from, block, above, out),
            Message::SyncResponse { blocks } => self.on_sync_response(from, blocks, out),
        }
    }

    fn on_proposal(&mut self, from: ReplicaId, p: Proposal, out: &mut Out) {
        if p.block.view <= self.tree.root().1 {
            return; // below the committed root: nothing to learn
        }
        let payload = &p.block.payload;
        if payload.len() > self.cfg.max_payload
            || payload.iter().collect::<BTreeSet<_>>().len() != payload.len()
            || p.verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
                .is_err()
        {
            return self.invalid();
        }
        if let Some(tc) = &p.tc {
            self.process_tc(tc, out);
        }
        self.process_qc(&p.block.justify, out);
        if p.block.proposer != self.leader(p.block.view) {
            // Its certificates are verified and were used; the block itself is not ours to
            // vote for (or we lag and disagree on the leader, and will sync).
            return self.invalid();
        }
        if !self.tree.knows(&p.block.parent()) {
            self.request_sync(from, p.block.parent(), out);
            if p.block.view >= self.view {
                if self.buffered.len() >= MAX_BUFFERED {
                    self.buffered.pop_front();
                }
                self.buffered.push_back(p);
            }
            return;
        }
        self.accept_proposal(p, out);
    }

    /// A verified proposal whose parent is known. Stored even when its view has passed (a
    /// leader may have formed this block's QC from votes before seeing the block, and needs
    /// it to extend it); voted only in the current view.
    pub(super) fn accept_proposal(&mut self, p: Proposal, out: &mut Out) {
        if !self.tree.insert(p.block.clone(), false) {
            if p.block.view > self.tree.root().1 {
                self.stats.equivocations += 1;
            }
            return;
        }
        // The block's own QC may already be known: the 2-chain it heads may now commit.
        if let Some(qc) = self.tree.qc_for(&p.block.id()).cloned() {
            self.process_qc(&qc, out);
        }
        // A leader waiting for this block (its high QC certifies it) can now propose.
        self.try_propose(out);
        if p.block.view != self.view {
            return;
        }
        let Ok((vote, fresh)) = self.safety.vote(&p.block, p.tc.as_ref()) else {
            return;
        };
        // A repeated request gets the same vote, without another fsync (a replayed proposal
        // must not cost us a disk write).
        let seq = if fresh {
            self.persist_safety(out)
        } else {
            self.last_safety_seq
        };
        let next_leader = self.leader(self.view.next());
        self.send_after(seq, Route::To(next_leader), vote.map(Message::Vote), out);
    }

    fn on_vote(&mut self, v: Vote, out: &mut Out) {
        if v.view.next() < self.view || self.leader(v.view.next()) != self.cfg.me {
            return;
        }
        if v.verify(&self.cfg.committee, &self.cfg.genesis).is_err() {
            return self.invalid();
        }
        if let Some(qc) = self
            .agg
            .add_vote(&v, self.view, self.cfg.committee.quorum())
        {
            self.process_qc(&qc, out);
        }
    }

    fn on_timeout(&mut self, from: ReplicaId, t: Timeout, out: &mut Out) {
        if t.view < self.view {
            // The sender is behind: help it with the certificate that moved us on.
            if let Some(tc) = self.high_tc.clone().filter(|tc| tc.view >= t.view) {
                out.push(Action::Send {
                    to: from,
                    msg: Message::Tc(tc),
                });
            }
            return;
        }
        if t.verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
            .is_err()
        {
            return self.invalid();
        }
        self.process_qc(&t.high_qc, out);
        if let Some(tc) = &t.high_tc {
            self.process_tc(tc, out);
        }
        let view = t.view;
        if let Some(tc) = self
            .agg
            .add_timeout(&t, self.view, self.cfg.committee.quorum())
        {
            // Re-broadcast as soon as it forms, so a silent leader cannot stall the view.
            out.push(Action::Broadcast {
                msg: Message::Tc(tc.clone()),
            });
            self.process_tc(&tc, out);
        } else if view == self.view
            && self.agg.timeouts_for(view) > self.cfg.committee.f()
            && self
                .safety
                .data
                .last_timeout
                .as_ref()
                .is_none_or(|t| t.view < view)
        {
            // f+1 replicas gave up on our view, so at least one correct one did: join them
            // rather than wait for our own timer (view synchronisation).
            self.local_timeout(out);
        }
    }

    fn on_tc(&mut self, tc: TimeoutCert, out: &mut Out) {
        if tc.view < self.view {
            return;
        }
        if tc
            .verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
            .is_err()
        {
            return self.invalid();
        }
        self.process_tc(&tc, out);
    }

    pub(super) fn on_timer(&mut self, out: &mut Out) {
        // Re-arm first: if the TC does not form (lost timeouts), we time out again and
        // re-send the same timeout — at the base interval, not the backed-off one, since
        // the view has already been given up.
        out.push(Action::SetTimer {
            id: VIEW_TIMER,
            after_ms: self.cfg.base_timeout_ms,
        });
        self.local_timeout(out);
    }

    /// Signs (or re-sends) our timeout for the current view.
    fn local_timeout(&mut self, out: &mut Out) {
        let Ok((t, fresh)) = self
            .safety
            .timeout(self.view, &self.high_qc, self.high_tc.as_ref())
        else {
            return;
        };
        let seq = if fresh {
            self.persist_safety(out)
        } else {
            self.last_safety_seq
        };
        let high_tc = self.high_tc.clone().map(Box::new);
        let msg = t.map(|mut t| {
            t.high_tc = high_tc;
            Message::Timeout(Box::new(t))
        });
        self.send_after(seq, Route::All, msg, out);
    }
}
