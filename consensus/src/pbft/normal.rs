//! PBFT's normal case: pre-prepares, prepares and commits, committing in sequence order,
//! and the primary's proposing.

use super::core::{IDLE_TIMER, MAX_INFLIGHT, Out, Pbft, RECENT_CERTIFICATES, SlotRecord};
use super::messages::{Block, CommitCertificate, Message, Phase, PrePrepare, PreparedCert, Vote};
use crate::core::{Action, Committed};
use crate::durable::Route;
use crate::types::{ReplicaId, View};
use crypto::{Digest, Signature};
use std::collections::BTreeMap;

impl Pbft {
    pub(super) fn in_window(&self, seq: u64) -> bool {
        seq > self.stable.seq && seq <= self.high_water_mark()
    }

    /// Notes that `seq` is beyond what we can take and someone claims it: if a stable
    /// checkpoint says so too we fetch (a single replica's claim moves nothing).
    pub(super) fn on_pre_prepare(&mut self, p: PrePrepare, out: &mut Out) {
        let seq = p.block.seq;
        if !self.in_window(seq) {
            return self.invalid();
        }
        if p.block.proposer != self.primary(self.view)
            || p.verify(&self.cfg.committee, &self.cfg.genesis, self.cfg.max_payload)
                .is_err()
        {
            return self.invalid();
        }
        self.accept_pre_prepare(p, out);
    }

    /// Takes a verified pre-prepare of the current view into the log and prepares it,
    /// unless this replica already signed another digest at that number in this view.
    /// Returns whether a prepare was signed (the caller persists and sends).
    fn accept_pre_prepare(&mut self, p: PrePrepare, out: &mut Out) {
        let seq = p.block.seq;
        let d = p.block.digest();
        let slot = self.slots.entry(seq).or_default();
        if let Some(have) = &slot.pre_prepare {
            if have.block.digest() != d {
                self.stats.invalid += 1;
            }
            return;
        }
        if let Some(r) = self.records.get(&seq)
            && r.signed.0 == self.view
            && r.signed.1 != d
        {
            return self.invalid();
        }
        slot.pre_prepare = Some(p.clone());
        // A block with room to spare that leaves out a batch offered to us long ago.
        if p.block.payload.len() < self.cfg.max_payload
            && let Some(oldest) = self.pending.front()
            && !p.block.payload.contains(oldest)
            && self
                .offered
                .since(oldest)
                .is_some_and(|at| at.saturating_add(self.request_timeout_ms()) <= self.now)
            && self.starve_counts.get(oldest).copied().unwrap_or(0) <= self.cfg.committee.f()
        {
            self.starved = Some(*oldest);
        }
        for digest in &p.block.payload {
            if self.pending_set.remove(digest) {
                self.pending.retain(|x| x != digest);
            }
            // The driver feeds a pre-prepare only once its batches are stored here, so this
            // replica can propose them itself if this block does not survive a view change
            // (a batch it fetched for this block was never offered to it otherwise).
            self.offered.insert(*digest, self.now);
        }
        let me = self.cfg.me;
        if self.primary(self.view) != me {
            let vote = Vote::new(
                Phase::Prepare,
                self.view,
                seq,
                d,
                me,
                &self.cfg.genesis,
                &self.cfg.key,
            );
            self.record_signed(seq, d);
            let ps = self.persist(out);
            let msg = Message::Prepare(vote.clone());
            self.send_after(ps, Route::All, msg.clone());
            let slot = self.slots.entry(seq).or_default();
            slot.prepares.insert(me, vote);
            slot.mine.push((ps, msg));
        }
        self.check_prepared(seq, out);
    }

    pub(super) fn record_signed(&mut self, seq: u64, d: Digest) {
        let view = self.view;
        self.records
            .entry(seq)
            .and_modify(|r| r.signed = (view, d))
            .or_insert(SlotRecord {
                signed: (view, d),
                prepared: None,
            });
    }

    pub(super) fn on_vote(&mut self, phase: Phase, v: Vote, out: &mut Out) {
        if !self.in_window(v.seq) {
            return self.invalid();
        }
        if phase == Phase::Prepare && v.replica == self.primary(self.view) {
            return self.invalid();
        }
        if v.verify(phase, &self.cfg.committee, &self.cfg.genesis)
            .is_err()
        {
            return self.invalid();
        }
        let seq = v.seq;
        let slot = self.slots.entry(seq).or_default();
        match phase {
            Phase::Prepare => {
                slot.prepares.insert(v.replica, v);
                self.check_prepared(seq, out);
            }
            Phase::Commit => {
                slot.commits.insert(v.replica, v);
                self.check_committed(seq, out);
            }
        }
    }

    fn matching(
        votes: &BTreeMap<ReplicaId, Vote>,
        view: View,
        d: &Digest,
    ) -> Vec<(ReplicaId, Signature)> {
        votes
            .values()
            .filter(|v| v.view == view && v.digest == *d)
            .map(|v| (v.replica, v.signature))
            .collect()
    }

    /// Prepared: the pre-prepare and `quorum - 1` matching prepares from distinct backups.
    /// Then the prepared certificate is made durable before our commit leaves.
    pub(super) fn check_prepared(&mut self, seq: u64, out: &mut Out) {
        let view = self.view;
        let need = self.cfg.committee.quorum() - 1;
        let Some(slot) = self.slots.get(&seq) else {
            return;
        };
        let Some(pp) = &slot.pre_prepare else {
            return;
        };
        if slot.prepared {
            return;
        }
        let d = pp.block.digest();
        let prepares = Self::matching(&slot.prepares, view, &d);
        if prepares.len() < need {
            return;
        }
        let cert = PreparedCert {
            pre_prepare: pp.clone(),
            prepares,
        };
        let me = self.cfg.me;
        let commit = Vote::new(
            Phase::Commit,
            view,
            seq,
            d,
            me,
            &self.cfg.genesis,
            &self.cfg.key,
        );
        let rec = self.records.entry(seq).or_insert(SlotRecord {
            signed: (view, d),
            prepared: None,
        });
        rec.prepared = Some(cert);
        let ps = self.persist(out);
        let msg = Message::Commit(commit.clone());
        self.send_after(ps, Route::All, msg.clone());
        let slot = self.slots.get_mut(&seq).expect("present");
        slot.prepared = true;
        slot.commits.insert(me, commit);
        slot.mine.push((ps, msg));
        self.check_committed(seq, out);
    }

    /// Committed-local: prepared here and `quorum` matching commits.
    fn check_committed(&mut self, seq: u64, out: &mut Out) {
        let view = self.view;
        let Some(slot) = self.slots.get(&seq) else {
            return;
        };
        if !slot.prepared || seq <= self.committed || self.ready.contains_key(&seq) {
            return;
        }
        let Some(pp) = &slot.pre_prepare else {
            return;
        };
        let d = pp.block.digest();
        let commits = Self::matching(&slot.commits, view, &d);
        if commits.len() < self.cfg.committee.quorum() {
            return;
        }
        let cert = CommitCertificate {
            view,
            block: pp.block.clone(),
            commits,
        };
        self.ready.insert(seq, cert);
        self.commit_ready(out);
    }

    /// Emits ready blocks in sequence order.
    pub(super) fn commit_ready(&mut self, out: &mut Out) {
        let before = self.committed;
        while let Some(cert) = self.ready.remove(&(self.committed + 1)) {
            self.committed += 1;
            self.stats.commits += 1;
            for d in &cert.block.payload {
                self.offered.remove(d);
                if self.pending_set.remove(d) {
                    self.pending.retain(|x| x != d);
                }
            }
            out.push(Action::Commit(Committed {
                id: cert.block.digest(),
                // Not `cert.view`: replicas agree on (seq, digest), not on the view they saw
                // it commit in (a block committed at some replicas in view v is re-issued
                // in v+1 and commits there at the others), and the ledger hashes this into
                // the block header, which must be the same everywhere. A PBFT block names
                // no view of its own; the certificate says in which one this copy
                // committed.
                view: View(0),
                proposer: cert.block.proposer,
                timestamp_ms: cert.block.timestamp_ms,
                payload: cert.block.payload.clone(),
                certificate: cert.encode(),
            }));
            if self.recent.len() == RECENT_CERTIFICATES {
                self.recent.pop_front();
            }
            self.recent.push_back(cert);
        }
        // Stale entries (a fetch went past them) would never be emitted.
        let committed = self.committed;
        self.ready.retain(|s, _| *s > committed);
        if self.committed > before {
            if self.starved.is_none() {
                // Progress (the view timer starts over), unless the primary starves a batch.
                self.attempts = 0;
                self.retransmitted = false;
            }
            self.fetch_asked = false;
            self.try_propose(out);
            if self.committed < self.fetch_target {
                self.fetch(out);
            }
        }
    }

    // ---------------------------------------------------------------- proposing

    pub(super) fn try_propose(&mut self, out: &mut Out) {
        let me = self.cfg.me;
        if self.changing || self.primary(self.view) != me {
            return;
        }
        loop {
            let seq = self.next_seq;
            if seq <= self.committed {
                self.next_seq = self.committed + 1;
                continue;
            }
            if !self.in_window(seq) || seq - 1 - self.committed >= MAX_INFLIGHT {
                return;
            }
            if self
                .records
                .get(&seq)
                .is_some_and(|r| r.signed.0 == self.view)
            {
                // Already pre-prepared here in this view (before a restart).
                self.next_seq += 1;
                continue;
            }
            let mut payload = Vec::new();
            while payload.len() < self.cfg.max_payload
                && let Some(d) = self.pending.pop_front()
            {
                self.pending_set.remove(&d);
                payload.push(d);
            }
            if payload.is_empty() {
                // Nothing to order: an empty block after the idle wait, and only when
                // nothing is in flight.
                if self.cfg.idle_block_ms == 0 || seq - 1 != self.committed {
                    return;
                }
                match self.idle {
                    Some((v, true)) if v == self.view => {}
                    Some((v, false)) if v == self.view => return,
                    _ => {
                        self.idle = Some((self.view, false));
                        out.push(Action::SetTimer {
                            id: IDLE_TIMER,
                            after_ms: self.cfg.idle_block_ms,
                        });
                        return;
                    }
                }
            }
            self.idle = None;
            let block = Block {
                seq,
                proposer: me,
                timestamp_ms: self.now,
                payload,
            };
            let pp = PrePrepare::new(self.view, block, &self.cfg.genesis, &self.cfg.key);
            let d = pp.block.digest();
            self.record_signed(seq, d);
            let ps = self.persist(out);
            let msg = Message::PrePrepare(Box::new(pp.clone()));
            self.send_after(ps, Route::All, msg.clone());
            let slot = self.slots.entry(seq).or_default();
            slot.pre_prepare = Some(pp);
            slot.mine.push((ps, msg));
            self.next_seq += 1;
            self.check_prepared(seq, out);
        }
    }

    pub(super) fn add_payload(&mut self, d: Digest) {
        if self.offered.insert(d, self.now) {
            let in_log = self.slots.values().any(|s| {
                s.pre_prepare
                    .as_ref()
                    .is_some_and(|p| p.block.payload.contains(&d))
            });
            if !in_log && self.pending_set.insert(d) {
                self.pending.push_back(d);
            }
        }
    }
}
