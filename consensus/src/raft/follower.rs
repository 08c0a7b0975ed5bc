//! The receiving side of AppendEntries (§5.3) and InstallSnapshot (§7).
//!
//! A success reply says "my log matches yours through `index`", so it leaves only once the
//! entries through `index` are durable here. Entries at or below the commit index are never
//! truncated: a leader whose Append would do so contradicts a committed entry, which cannot
//! happen in a correct cluster, and the Append is ignored (and counted).

use super::core::{Out, Raft, Role};
use super::messages::{Entry, MAX_ENTRIES_PER_APPEND, MAX_PAYLOAD, Message};
use super::replication::MAX_UNCOMMITTED;
use crate::types::ReplicaId;

/// Entries a follower holds above its commit index, at most (a correct leader stays far
/// below: it appends at most [`MAX_UNCOMMITTED`] beyond its own commit).
const MAX_HELD_UNCOMMITTED: u64 = 8 * MAX_UNCOMMITTED;

/// The entries of an Append are well formed: consecutive from `prev_index + 1`, terms
/// non-decreasing from `prev_term` and not above the message's, batches within limits.
fn well_formed(term: u64, prev_index: u64, prev_term: u64, entries: &[Entry]) -> bool {
    if entries.len() > MAX_ENTRIES_PER_APPEND || prev_term > term {
        return false;
    }
    let mut t = prev_term;
    for (k, e) in entries.iter().enumerate() {
        if prev_index.checked_add(1 + k as u64) != Some(e.index)
            || e.term == 0
            || e.term < t
            || e.term > term
            || e.payload.len() > MAX_PAYLOAD
        {
            return false;
        }
        t = e.term;
    }
    true
}

impl Raft {
    /// Term handling shared by Append and InstallSnapshot: a stale term is refused (the
    /// leader learns ours), a later one adopted; then `from` is followed as this term's
    /// leader. False if the message must go no further.
    fn accept_leader(&mut self, from: ReplicaId, term: u64, round: u64, out: &mut Out) -> bool {
        if term < self.term {
            self.reject_stale(from, round, out);
            return false;
        }
        if term > self.term {
            self.become_follower(term, out);
        }
        self.follow(from, out)
    }

    /// A message from `from` as leader of our (possibly just adopted) term: follow it and
    /// restart the election timer. False if another replica already leads this term or we
    /// do (impossible in a correct cluster).
    fn follow(&mut self, from: ReplicaId, out: &mut Out) -> bool {
        if self.role == Role::Leader || self.leader.is_some_and(|l| l != from) {
            self.stats.ignored += 1;
            return false;
        }
        if self.role != Role::Follower {
            self.become_follower(self.term, out);
        }
        self.leader = Some(from);
        self.leader_contact = true;
        self.reset_election_timer(out);
        true
    }

    /// Rejects a message from an older term with our term, so that its sender steps down.
    fn reject_stale(&mut self, from: ReplicaId, read_round: u64, out: &mut Out) {
        self.stats.ignored += 1;
        let msg = Message::AppendReply {
            term: self.term,
            success: false,
            index: self.log.last_index(),
            read_round,
        };
        self.reply(from, msg, 0, out);
    }

    /// An Append from `from`; every reply echoes its `round` (ReadIndex, `read.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append(
        &mut self,
        from: ReplicaId,
        term: u64,
        (prev_index, prev_term): (u64, u64),
        mut entries: Vec<Entry>,
        leader_commit: u64,
        round: u64,
        out: &mut Out,
    ) {
        if !self.accept_leader(from, term, round, out) {
            return;
        }
        if !well_formed(term, prev_index, prev_term, &entries) {
            self.stats.ignored += 1;
            return;
        }
        // Memory bound: accept a prefix only (the leader resends the rest).
        let cap = self.commit.saturating_add(MAX_HELD_UNCOMMITTED);
        entries.retain(|e| e.index <= cap);

        let last = self.log.last_index();
        if prev_index > last {
            return self.reject(from, last, round, out);
        }
        let (base, base_term) = self.log.base();
        // Everything this Append proves we share with the leader.
        let verified = prev_index + entries.len() as u64;
        let mut new: &[Entry] = &entries;
        if prev_index < base {
            // Entries up to the base are committed, hence the leader's too: skip them.
            let skip = (base - prev_index) as usize;
            if skip <= new.len() && skip > 0 && new[skip - 1].term != base_term {
                self.stats.ignored += 1;
                return;
            }
            new = &new[skip.min(new.len())..];
        } else if self.log.term_at(prev_index) != Some(prev_term) {
            if prev_index <= self.commit {
                // Contradicts a committed entry.
                self.stats.ignored += 1;
                return;
            }
            // Skip the whole conflicting term at once (§5.3's optimisation); entries up to
            // the commit index match in any case.
            let hint = (self.log.first_index_of_term_at(prev_index) - 1).max(self.commit);
            return self.reject(from, hint, round, out);
        }
        // The first entry we do not hold with the same term.
        let first_new = new
            .iter()
            .position(|e| self.log.term_at(e.index) != Some(e.term));
        if let Some(k) = first_new {
            let at = new[k].index;
            if at <= self.commit || self.log.term_at(at - 1).is_none_or(|t| new[k].term < t) {
                self.stats.ignored += 1;
                return;
            }
            self.store(&new[k..], out);
        }
        if leader_commit.min(verified) > self.commit {
            self.commit_to(leader_commit.min(verified), out);
        }
        // Durable through `verified` once every log write issued so far is.
        let dep = if self.durable_index >= verified {
            0
        } else {
            self.last_log_seq
        };
        let msg = Message::AppendReply {
            term: self.term,
            success: true,
            index: verified,
            read_round: round,
        };
        self.reply(from, msg, dep, out);
    }

    /// Truncates the log before `new[0]` (above the commit index, checked) and appends
    /// `new`, as one durable write.
    fn store(&mut self, new: &[Entry], out: &mut Out) {
        let after = new[0].index - 1;
        assert!(after >= self.commit, "truncating a committed entry");
        let removed = self.log.truncate_after(after);
        self.requeue_payload(&removed);
        for e in new {
            self.log.push(e.clone());
        }
        self.forget_payload(new);
        let encoded = new.iter().map(Entry::encode).collect();
        self.persist_log(after, encoded, out);
    }

    fn reject(&mut self, from: ReplicaId, hint: u64, read_round: u64, out: &mut Out) {
        let msg = Message::AppendReply {
            term: self.term,
            success: false,
            index: hint,
            read_round,
        };
        self.reply(from, msg, 0, out);
    }

    /// The leader compacted the entries we need. The node fetches its ledger state and
    /// restarts the core; if we already have everything up to the snapshot point, we tell
    /// the leader where our log ends instead.
    pub(super) fn on_install_snapshot(
        &mut self,
        from: ReplicaId,
        term: u64,
        last_index: u64,
        _last_term: u64,
        out: &mut Out,
    ) {
        if !self.accept_leader(from, term, 0, out) {
            return;
        }
        if last_index <= self.commit {
            self.reject(from, self.log.last_index(), 0, out);
        }
    }
}
