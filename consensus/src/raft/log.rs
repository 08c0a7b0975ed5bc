//! The in-memory Raft log: a base (the snapshot point, whose term is remembered) and the
//! entries after it.
//!
//! Index `base` is the last compacted index: its entry is no longer held here, but its term
//! is, so that an Append whose `prev_index` is the base can still be checked (§7). At start
//! the base is the implicit genesis entry (index 0, term 0).

use super::membership::{Configs, Membership};
use super::messages::Entry;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct Log {
    base_index: u64,
    base_term: u64,
    /// Entries `base_index + 1 ..= last_index()`, consecutive.
    entries: VecDeque<Entry>,
    /// The configurations these entries carry, above the committed one they start from.
    configs: Configs,
}

impl Log {
    /// A log based at `(base_index, base_term)` holding `entries`, which must follow the base
    /// consecutively (the caller checked it); `config` is the configuration in effect at
    /// index `config.0` (committed, at or above the base), and the configuration entries
    /// above it take effect on top of it.
    pub(super) fn new(
        base_index: u64,
        base_term: u64,
        entries: Vec<Entry>,
        config: (u64, Membership),
    ) -> Log {
        let mut configs = Configs::new(config.0, config.1);
        for (k, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                base_index + 1 + k as u64,
                "log entries not consecutive"
            );
            if let Some(c) = &e.config {
                configs.push(e.index, c.clone());
            }
        }
        Log {
            base_index,
            base_term,
            entries: entries.into(),
            configs,
        }
    }

    /// The latest configuration in the log: the one this replica uses.
    pub(super) fn config(&self) -> &Membership {
        self.configs.latest()
    }

    /// Index of the entry that carries [`Log::config`] (or of the committed point it was
    /// known at).
    pub(super) fn config_index(&self) -> u64 {
        self.configs.latest_index()
    }

    /// The configuration in effect at `index`.
    pub(super) fn config_at(&self, index: u64) -> &Membership {
        self.configs.at(index)
    }

    pub(super) fn base(&self) -> (u64, u64) {
        (self.base_index, self.base_term)
    }

    pub(super) fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    pub(super) fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.base_term, |e| e.term)
    }

    /// Position of `index` in `entries`, if it is held.
    fn pos(&self, index: u64) -> Option<usize> {
        if index <= self.base_index || index > self.last_index() {
            return None;
        }
        Some((index - self.base_index - 1) as usize)
    }

    pub(super) fn get(&self, index: u64) -> Option<&Entry> {
        self.pos(index).map(|p| &self.entries[p])
    }

    /// The term at `index`: the base's term at the base, an entry's term above it.
    pub(super) fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.get(index).map(|e| e.term)
    }

    /// Entries `from ..= to` (clamped to what is held), at most `max` of them and at most
    /// `bytes_max` encoded bytes (but always at least one, if any is held).
    pub(super) fn slice(&self, from: u64, to: u64, max: usize, bytes_max: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let Some(start) = self.pos(from) else {
            return out;
        };
        for e in self.entries.range(start..) {
            if e.index > to || out.len() >= max {
                break;
            }
            bytes += crypto::codec::encoded_len(e);
            if bytes > bytes_max && !out.is_empty() {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    pub(super) fn push(&mut self, e: Entry) {
        assert_eq!(e.index, self.last_index() + 1, "log append out of order");
        assert!(e.term >= self.last_term(), "log terms must not decrease");
        if let Some(c) = &e.config {
            self.configs.push(e.index, c.clone());
        }
        self.entries.push_back(e);
    }

    /// Drops every entry after `index` (`base ≤ index`) and returns them, oldest first.
    pub(super) fn truncate_after(&mut self, index: u64) -> Vec<Entry> {
        assert!(
            index >= self.base_index,
            "truncating into the compacted log"
        );
        let keep = (index - self.base_index) as usize;
        if keep >= self.entries.len() {
            return Vec::new();
        }
        self.configs.truncate_after(index);
        self.entries.drain(keep..).collect()
    }

    /// Makes `new_base` (held, above the current base) the base: entries up to it are
    /// dropped, its term is remembered.
    pub(super) fn compact(&mut self, new_base: u64) {
        let term = self
            .term_at(new_base)
            .expect("compacting to an index not in the log");
        assert!(
            new_base > self.base_index,
            "compaction must move the base up"
        );
        let drop = (new_base - self.base_index) as usize;
        self.entries.drain(..drop);
        self.configs.compact(new_base);
        self.base_index = new_base;
        self.base_term = term;
    }

    /// The first index (above the base) of the run of entries that share the term of the
    /// entry at `index` (held), for the conflict hint of a rejected Append (§5.3).
    pub(super) fn first_index_of_term_at(&self, index: u64) -> u64 {
        let term = self.term_at(index).expect("index held");
        let mut i = index;
        while i > self.base_index + 1 && self.term_at(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// Number of entries held (bounded by compaction).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
