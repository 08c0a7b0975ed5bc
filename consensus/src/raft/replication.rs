//! The leader's side of log replication (§5.3): proposing batches, Appends with batching
//! and pipelining, InstallSnapshot offers (§7), and commit by counting (§5.4.2).
//!
//! Flow control, so that every queue has a limit:
//! - a leader cuts new entries only while none of its own log writes is unacknowledged
//!   (group commit: under load, the digests that arrive during one fsync share an entry)
//!   and while fewer than [`MAX_UNCOMMITTED`] entries are above its commit index;
//! - at most `max_inflight` entry-carrying Appends per follower are unanswered; after a
//!   rejection it probes with one at a time; after [`STALL_TICKS`] silent heartbeats the
//!   in-flight Appends are presumed lost and resent from the last match.

use super::core::{HEARTBEAT_TIMER, Out, Raft, Role};
use super::messages::{Entry, MAX_MESSAGE_BYTES, Message};
use crate::core::Action;
use crate::durable::Route;
use crate::types::ReplicaId;
use crypto::Digest;

/// Entries a leader holds above its commit index, at most; pending digests wait beyond it.
pub(super) const MAX_UNCOMMITTED: u64 = 1024;
/// Encoded entry bytes per Append, at most (half of what a receiver accepts).
const APPEND_BYTES_MAX: u64 = MAX_MESSAGE_BYTES / 2;
/// Heartbeats without any reply after which a follower's in-flight Appends are resent.
const STALL_TICKS: u32 = 2;

impl Raft {
    /// Appends one entry of our term per batch (an empty batch is a no-op), as one log
    /// write. Leader only.
    pub(super) fn append_as_leader(&mut self, batches: Vec<Vec<Digest>>, out: &mut Out) {
        assert_eq!(self.role, Role::Leader, "only a leader creates entries");
        let after = self.log.last_index();
        let mut encoded = Vec::with_capacity(batches.len());
        for payload in batches {
            let e = Entry::new(
                &self.cfg.key,
                &self.cfg.genesis,
                self.term,
                self.log.last_index() + 1,
                self.cfg.me,
                self.now,
                payload,
            );
            encoded.push(e.encode());
            self.log.push(e);
        }
        self.persist_log(after, encoded, out);
    }

    /// Cuts entries from the pending digests, if flow control allows, and sends them.
    pub(super) fn propose(&mut self, out: &mut Out) {
        if self.role != Role::Leader
            || self.pending.is_empty()
            || !self.log_writes.is_empty()
            || self.transfer.is_some()
        {
            return;
        }
        let uncommitted = self.log.last_index() - self.commit;
        let room = MAX_UNCOMMITTED.saturating_sub(uncommitted) as usize;
        let mut batches = Vec::new();
        while !self.pending.is_empty() && batches.len() < room.min(self.max_append_entries()) {
            let b = self.take_payload(self.max_payload());
            batches.push(b);
        }
        if batches.is_empty() {
            return;
        }
        self.append_as_leader(batches, out);
        self.broadcast_append(false, out);
    }

    /// [`Raft::replicate`] to every follower.
    pub(super) fn broadcast_append(&mut self, heartbeat: bool, out: &mut Out) {
        let peers: Vec<ReplicaId> = self.progress.keys().copied().collect();
        for p in peers {
            self.replicate(p, heartbeat, out);
        }
    }

    /// Sends `peer` what it lacks, as far as the in-flight limit allows; with `heartbeat`,
    /// at least an empty Append (which also carries the commit index).
    fn replicate(&mut self, peer: ReplicaId, heartbeat: bool, out: &mut Out) {
        let (base, base_term) = self.log.base();
        let last = self.log.last_index();
        let limit = self.max_inflight();
        let max_entries = self.max_append_entries();
        let (term, commit, read_round) = (self.term, self.commit, self.reads.round);
        let Some(p) = self.progress.get_mut(&peer) else {
            return;
        };
        if p.next <= base {
            // The entries it needs are compacted: its node must fetch the ledger state.
            if !p.snapshot_offered {
                p.snapshot_offered = true;
                self.stats.snapshots_offered += 1;
                let msg = Message::InstallSnapshot {
                    term,
                    last_index: base,
                    last_term: base_term,
                };
                self.send(Route::To(peer), msg, 0, out);
            }
            return;
        }
        let limit = if p.probing { 1 } else { limit };
        let mut msgs = Vec::new();
        while p.next <= last && p.inflight.len() < limit {
            let prev_index = p.next - 1;
            let entries = self.log.slice(p.next, last, max_entries, APPEND_BYTES_MAX);
            let end = entries.last().expect("next ≤ last is held").index;
            p.next = end + 1;
            p.inflight.push_back(end);
            msgs.push(Message::Append {
                term,
                prev_index,
                prev_term: self.log.term_at(prev_index).expect("base ≤ prev ≤ last"),
                entries,
                commit,
                read_round,
            });
        }
        if heartbeat && msgs.is_empty() {
            // Point at the last entry sent: on an ordered link the follower has it by the
            // time this arrives, so the heartbeat carries the commit index that far. If it
            // overtook an Append, the rejection resends from the follower's hint.
            let prev_index = p.next - 1;
            msgs.push(Message::Append {
                term,
                prev_index,
                prev_term: self.log.term_at(prev_index).expect("base ≤ prev ≤ last"),
                entries: Vec::new(),
                commit,
                read_round,
            });
        }
        for msg in msgs {
            self.send(Route::To(peer), msg, 0, out);
        }
    }

    pub(super) fn on_heartbeat_timer(&mut self, out: &mut Out) {
        if self.role != Role::Leader {
            return;
        }
        out.push(Action::SetTimer {
            id: HEARTBEAT_TIMER,
            after_ms: self.cfg.heartbeat_ms.max(1),
        });
        for p in self.progress.values_mut() {
            p.snapshot_offered = false;
            p.silent_ticks = p.silent_ticks.saturating_add(1);
            if p.silent_ticks > STALL_TICKS && !p.inflight.is_empty() {
                p.inflight.clear();
                p.next = p.matched + 1;
                p.probing = true;
            }
        }
        self.broadcast_append(true, out);
        self.steer(out);
    }

    pub(super) fn on_append_reply(
        &mut self,
        from: ReplicaId,
        term: u64,
        success: bool,
        index: u64,
        read_round: u64,
        out: &mut Out,
    ) {
        if self.role != Role::Leader || term != self.term {
            self.stats.ignored += 1;
            return;
        }
        self.on_read_echo(from, read_round, out);
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        self.heard.insert(from);
        p.silent_ticks = 0;
        if !success {
            // Retry from the hint, never below what is known to match (a stale or
            // garbage hint costs a resend, nothing more).
            p.next = index.saturating_add(1).max(p.matched + 1).min(last + 1);
            p.inflight.clear();
            p.probing = true;
            return self.replicate(from, false, out);
        }
        if index > last {
            self.stats.ignored += 1;
            return;
        }
        while p.inflight.front().is_some_and(|&end| end <= index) {
            p.inflight.pop_front();
        }
        if index > p.matched {
            p.matched = index;
            p.probing = false;
        }
        p.next = p.next.max(index + 1);
        self.maybe_commit(out);
        self.replicate(from, false, out);
        self.send_timeout_now(out);
    }

    /// §5.4.2: commit the highest index a majority of the voters holds (the leader counting
    /// only what it has made durable, and only while it is a voter itself), if that entry is
    /// of the current term; earlier-term entries commit with it, never by counting alone
    /// (Figure 8). The latest configuration in the log decides who counts (§4.1).
    pub(super) fn maybe_commit(&mut self, out: &mut Out) {
        if self.role != Role::Leader {
            return;
        }
        let config = self.log.config();
        let mut matched: Vec<u64> = self
            .progress
            .iter()
            .filter(|(id, _)| config.is_voter(**id))
            .map(|(_, p)| p.matched)
            .collect();
        if config.is_voter(self.cfg.me) {
            matched.push(self.durable_index.min(self.log.last_index()));
        }
        let quorum = self.quorum();
        if matched.len() < quorum {
            return;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let n = matched[quorum - 1];
        if n <= self.commit || self.log.term_at(n) != Some(self.term) {
            return;
        }
        let before = self.commit;
        self.commit_to(n, out);
        if (before + 1..=n).contains(&self.log.config_index()) {
            // The latest configuration just committed: stop replicating to servers it
            // removed.
            self.sync_progress();
        }
        // The first commit of this term lets reads waiting for it start their round; the
        // heartbeats below carry it.
        self.start_read_round();
        self.answer_confirmed_reads(out);
        // Tell the followers now (etcd does the same), and make room for more entries.
        self.broadcast_append(true, out);
        self.propose(out);
        self.steer(out);
    }
}
