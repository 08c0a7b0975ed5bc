//! Restarting a Raft replica: [`Raft::new`] rebuilds it from what its node found on disk,
//! with the applied entry's term and the in-memory log the stored entries allow.

use super::core::{Config, HardState, Raft, RecoverError, Recovered, Role, SplitMix64, Stats};
use super::log::Log;
use super::membership::Membership;
use super::messages::Entry;
use crate::durable::PersistGate;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

impl Raft {
    /// Rebuilds a replica from what its node found on disk (see [`Recovered`]). Fails if the
    /// stored data is undecodable: the node must not start, or it could vote twice.
    pub fn new(cfg: Config, rec: Recovered) -> Result<Raft, RecoverError> {
        let hard = match &rec.hard_state {
            Some(bytes) => HardState::decode(bytes)?,
            None => HardState::default(),
        };
        let entries = rec
            .entries
            .iter()
            .map(|b| Entry::decode(b).map_err(|e| RecoverError(format!("stored entry: {e}"))))
            .collect::<Result<Vec<Entry>, RecoverError>>()?;
        let applied_term = applied_term(&rec, &entries)?;
        let config = rec
            .config
            .clone()
            .unwrap_or_else(|| Membership::voters(cfg.committee.ids()));
        let log = recover_log(rec.applied, applied_term, entries, config);
        let (mut term, mut voted_for) = (hard.term, hard.voted_for);
        let hard_state_dirty = log.last_term() > term;
        if hard_state_dirty {
            // Never run with a term below the log's (a stale hard state next to an installed
            // snapshot): our own entries would go below theirs.
            term = log.last_term();
            voted_for = None;
        }
        // Mix in our id: replicas given the same seed (a simulator's run seed) must still draw
        // different timeouts, or every election splits the vote.
        let me = u64::from(cfg.me.0);
        let seed = cfg.seed ^ me.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let last = log.last_index();
        Ok(Raft {
            rng: SplitMix64(seed),
            gate: PersistGate::default(),
            role: Role::Follower,
            term,
            voted_for,
            leader: None,
            hard_seq: 0,
            hard_state_dirty,
            log,
            commit: rec.applied,
            applied: rec.applied,
            log_writes: VecDeque::new(),
            durable_index: last,
            last_log_seq: 0,
            pending: VecDeque::new(),
            pending_set: BTreeSet::new(),
            votes: BTreeSet::new(),
            progress: BTreeMap::new(),
            heard: BTreeSet::new(),
            leader_contact: false,
            now: 0,
            stats: Stats::default(),
            unsafe_reply_before_persist: false,
            reads: Default::default(),
            unsafe_stale_reads: false,
            target: None,
            transfer: None,
            unsafe_multi_server_changes: false,
            cfg,
        })
    }
}

/// The term of log index `applied`: from the applied block's certificate, else from the
/// stored log.
fn applied_term(rec: &Recovered, entries: &[Entry]) -> Result<u64, RecoverError> {
    if rec.applied == 0 {
        return Ok(0);
    }
    match &rec.applied_entry {
        Some(bytes) => {
            let e =
                Entry::decode(bytes).map_err(|e| RecoverError(format!("applied entry: {e}")))?;
            if e.index != rec.applied {
                return Err(RecoverError(format!(
                    "applied entry has index {} but the ledger height is {}",
                    e.index, rec.applied
                )));
            }
            Ok(e.term)
        }
        None => entries
            .iter()
            .find(|e| e.index == rec.applied)
            .map(|e| e.term)
            .ok_or_else(|| RecoverError(format!("no entry for applied height {}", rec.applied))),
    }
}

/// The log a restarted replica resumes with (see [`Recovered::entries`]): the stored entries
/// if they are consecutive, with non-decreasing terms, and hold the applied entry, start
/// right after it, or start at index 1 on a fresh ledger; else an empty log based at the
/// applied height. A stored log
/// that starts at index 1 was never compacted, so its base is genesis; otherwise its first
/// entry is the base `Compact` kept.
fn recover_log(applied: u64, applied_term: u64, entries: Vec<Entry>, config: Membership) -> Log {
    let config = (applied, config);
    let sound = entries
        .windows(2)
        .all(|w| w[0].index.checked_add(1) == Some(w[1].index) && w[0].term <= w[1].term);
    let first = entries.first().map(|e| e.index);
    let holds_applied = if applied == 0 {
        first == Some(1)
    } else {
        entries
            .iter()
            .any(|e| e.index == applied && e.term == applied_term)
    };
    // After a snapshot install the store drops the rows that do not extend the snapshot
    // (`Rebase`), and the rows written since start right after it: they were appended by
    // Appends checked against (applied, applied_term), and some were acknowledged, so they
    // must survive a restart (found by the simulator, seed 1894 with membership changes: a
    // follower forgot entries 19-26 it had acknowledged, and a leader that needed its vote
    // for commit waited for ever).
    let follows_applied =
        applied > 0 && first == Some(applied + 1) && entries[0].term >= applied_term;
    if sound && follows_applied && entries[0].term != 0 {
        return Log::new(applied, applied_term, entries, config);
    }
    if !sound || !holds_applied || entries[0].term == 0 {
        return Log::new(applied, applied_term, Vec::new(), config);
    }
    if first == Some(1) {
        return Log::new(0, 0, entries, config);
    }
    let mut entries = entries;
    let base = entries.remove(0);
    Log::new(base.index, base.term, entries, config)
}
