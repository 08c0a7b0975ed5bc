//! Offline audits of stopped validators (the safety checker the real-process tests run after
//! a fault schedule, `tests::cluster::check`, and the set-change tests in `node/tests`):
//!
//! - [`same_chain`]: the stores agree (equal block hashes and state roots at every height two
//!   of them hold) and each store's blocks link by hash;
//! - [`acked_in_stores`]: every acknowledged transaction is in every store at the same
//!   height and index with the same successful receipt, in the block that says so (or below
//!   that store's transaction floor, where the API answers `pruned`);
//! - [`VoteLog`]: no vote log (`CAIRN_VOTE_LOG`) holds two different votes for one slot.
//!
//! Each returns the first violation as a message naming the validator, height or slot. The
//! stores must be closed by their validators first (redb locks an open store).

use crate::store::RedbStore;
use crypto::Digest;
use ledger::Store;
use std::collections::{BTreeMap, BTreeSet};

fn store_err(i: usize, e: impl std::fmt::Display) -> String {
    format!("validator {i}: store: {e}")
}

/// Agreement across the stores (validator index, store) and hash links within each; returns
/// the lowest top height. A store that installed a state snapshot lacks the blocks below it:
/// those heights are compared among the stores that hold them; every store must hold the
/// lowest top block.
pub fn same_chain(stores: &[(usize, RedbStore)]) -> Result<u64, String> {
    let mut genesis: Option<(usize, Option<Digest>)> = None;
    let mut tops = Vec::new();
    for (i, s) in stores {
        let g = s.genesis_hash().map_err(|e| store_err(*i, e))?;
        match &genesis {
            None => genesis = Some((*i, g)),
            Some((j, first)) if *first != g => {
                return Err(format!(
                    "validator {i} has genesis {g:?}, validator {j} has {first:?}"
                ));
            }
            Some(_) => {}
        }
        tops.push(s.height().map_err(|e| store_err(*i, e))?);
    }
    let low = tops.iter().copied().min().unwrap_or(0);
    let high = tops.iter().copied().max().unwrap_or(0);
    // The previous height's block per store, for the hash links.
    let mut prev: Vec<Option<ledger::Block>> = vec![None; stores.len()];
    for h in 1..=high {
        let mut first: Option<(usize, Digest, Digest)> = None;
        for (k, (i, s)) in stores.iter().enumerate() {
            let block = s.block(h).map_err(|e| store_err(*i, e))?;
            let Some(b) = block else {
                if h == low {
                    return Err(format!(
                        "validator {i} lacks block {h}, the lowest top height of the honest \
                         stores (tops: {:?})",
                        stores.iter().map(|(i, _)| i).zip(&tops).collect::<Vec<_>>()
                    ));
                }
                prev[k] = None;
                continue;
            };
            let hash = b.hash();
            if b.header.height != h {
                return Err(format!(
                    "validator {i}: block stored at height {h} says height {}",
                    b.header.height
                ));
            }
            if let Some(p) = &prev[k]
                && b.header.parent != p.hash()
            {
                return Err(format!(
                    "validator {i}: block {h} ({hash}) names parent {}, but its block {} is {}",
                    b.header.parent,
                    h - 1,
                    p.hash()
                ));
            }
            match &first {
                None => first = Some((*i, hash, b.header.state_root)),
                Some((j, fh, fr)) => {
                    if *fh != hash || *fr != b.header.state_root {
                        return Err(format!(
                            "fork at height {h}: validator {j} has block {fh} (state root \
                             {fr}), validator {i} has block {hash} (state root {})",
                            b.header.state_root
                        ));
                    }
                }
            }
            prev[k] = Some(b);
        }
    }
    Ok(low)
}

/// Every acknowledged transaction is in every store at the same height and index with the
/// same successful receipt, and the block there holds it — or, on a store whose transaction
/// floor is above that height (pruning, a Raft state snapshot), absent: the API then answers
/// `pruned`, never `unknown`, and never a later duplicate inclusion's failed receipt.
/// `heights` holds the height each acknowledgement named (needed for a transaction every
/// store has pruned). Returns the number of distinct transactions checked.
pub fn acked_in_stores(
    stores: &[(usize, RedbStore)],
    acked: &[Digest],
    heights: &BTreeMap<Digest, u64>,
) -> Result<usize, String> {
    let uniq: BTreeSet<Digest> = acked.iter().copied().collect();
    let honest: Vec<usize> = stores.iter().map(|(i, _)| *i).collect();
    let mut floors = Vec::new();
    for (i, s) in stores {
        floors.push(s.floors().map_err(|e| store_err(*i, e))?.tx);
    }
    // Transaction hashes per height, read once: many transactions share a block.
    let mut block_txs: BTreeMap<u64, Vec<Digest>> = BTreeMap::new();
    for h in &uniq {
        let mut records = Vec::new();
        for (i, s) in stores {
            records.push((*i, s.tx(h).map_err(|e| store_err(*i, e))?));
        }
        // The first inclusion: the lowest height any store records.
        let Some((j, rec)) = records
            .iter()
            .filter_map(|(i, r)| r.clone().map(|r| (*i, r)))
            .min_by_key(|(_, r)| r.height)
        else {
            // Every store pruned it: acknowledged below every transaction floor.
            if let Some(at) = heights.get(h)
                && floors.iter().all(|f| *f > *at)
            {
                continue;
            }
            return Err(format!(
                "acknowledged transaction {h} is in no honest store (validators {honest:?})"
            ));
        };
        // The load signs each wallet's transfers in nonce order and sends the next only
        // once the previous one is acknowledged, so an acknowledged transfer cannot fail.
        if let Err(reason) = &rec.receipt.outcome {
            return Err(format!(
                "acknowledged transaction {h} committed at height {} index {} on validator {j} \
                 with a failed receipt: {reason:?}",
                rec.height, rec.index
            ));
        }
        let kj = stores.iter().position(|(i, _)| *i == j).unwrap_or(0);
        if let std::collections::btree_map::Entry::Vacant(slot) = block_txs.entry(rec.height) {
            let block = stores[kj]
                .1
                .block(rec.height)
                .map_err(|e| store_err(j, e))?
                .ok_or_else(|| {
                    format!(
                        "validator {j} records transaction {h} at height {} but has no block there",
                        rec.height
                    )
                })?;
            slot.insert(block.txs.iter().map(|t| t.hash()).collect());
        }
        let in_block = block_txs[&rec.height].get(rec.index as usize);
        if in_block != Some(h) {
            return Err(format!(
                "validator {j} records transaction {h} at height {} index {}, but that block \
                 holds {in_block:?} there",
                rec.height, rec.index
            ));
        }
        for (k, (i, r)) in records.iter().enumerate() {
            if r.as_ref() == Some(&rec) {
                continue;
            }
            let s = &stores[k].1;
            let top = s.height().map_err(|e| store_err(*i, e))?;
            if top < rec.height {
                return Err(format!(
                    "validator {i} lacks acknowledged transaction {h}: its store ends at height \
                     {top}, validator {j} committed it at height {}",
                    rec.height
                ));
            }
            let below_floor = rec.height < floors[k];
            match r {
                // Reported pruned (its transaction floor is above the first inclusion).
                None if below_floor => {}
                None => {
                    let below = rec.height > 1
                        && s.block(rec.height - 1)
                            .map_err(|e| store_err(*i, e))?
                            .is_some();
                    return Err(format!(
                        "validator {i} holds block {} with acknowledged transaction {h} but has \
                         no transaction record for it (its transaction floor is {}; block {} \
                         is {}held there; its store ends at {top})",
                        rec.height,
                        floors[k],
                        rec.height - 1,
                        if below { "" } else { "not " }
                    ));
                }
                Some(r) => {
                    return Err(format!(
                        "transaction {h}: validator {j} has it at height {} index {} ({:?}), \
                         validator {i} at height {} index {} ({:?}){}",
                        rec.height,
                        rec.index,
                        rec.receipt.outcome,
                        r.height,
                        r.index,
                        r.receipt.outcome,
                        if below_floor {
                            " — a later duplicate inclusion, recorded by a validator whose \
                             transaction floor is above the first"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
    }
    Ok(uniq.len())
}

/// Slots in which a vote log (`CAIRN_VOTE_LOG` format: `vote SLOT DIGEST`; the slot is the
/// view for HotStuff, e.g. `VIEW/SEQ/prepare` for PBFT, the term for Raft) holds two votes
/// for different digests, as (slot, first digest, second digest). Slots are compared as
/// strings. Resending the same vote is not a conflict. Panics on a malformed line.
pub fn double_votes(log: &str) -> Vec<(String, String, String)> {
    VoteLog::parse(log)
        .unwrap_or_else(|e| panic!("{e}"))
        .conflicts
}

/// A parsed vote log.
///
/// A validator writes each record with `writeln!` on an unbuffered file, which is several
/// `write` calls (`vote `, the slot, ` `, the digest, the newline), so a SIGKILL can leave a
/// record without its newline (or cut shorter), and the next run's first record is then
/// glued to it: `vote 2/841/commit 64e7…5bdvote 2/842/prepare adf9…`. A record not ended by
/// its newline was being written when the process died, before the vote could be sent (the
/// vote leaves only after the write returns), so it is skipped and counted in `torn`; the
/// record after it on the same line is read. Anything else that is not
/// `vote SLOT DIGEST` is malformed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoteLog {
    /// Complete records.
    pub votes: usize,
    /// Records cut by a crash, skipped.
    pub torn: usize,
    /// (slot, first digest, second digest) for each second, different vote in a slot.
    pub conflicts: Vec<(String, String, String)>,
}

impl VoteLog {
    pub fn parse(log: &str) -> Result<VoteLog, String> {
        const TAG: &str = "vote ";
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut out = VoteLog::default();
        for raw in log.split_inclusive('\n') {
            let ended = raw.ends_with('\n');
            let line = raw.trim_end_matches('\n');
            if line.is_empty() {
                continue;
            }
            if !ended {
                // The last record, cut by a crash (or still being written).
                out.torn += 1;
                continue;
            }
            // The record: the line, or after a torn record its longest suffix that is one
            // (`vote SLOT DIGEST`, three words; a slot may itself hold `vote`, as Raft's
            // `TERM/vote` does, so the first `vote ` that leaves three words).
            let is_record = |r: &str| r.starts_with(TAG) && r.split_whitespace().count() == 3;
            let Some(at) = std::iter::once(0)
                .chain(line.match_indices(TAG).map(|(k, _)| k))
                .find(|&k| is_record(&line[k..]))
            else {
                return Err(format!("malformed vote log line {line:?}"));
            };
            if at > 0 {
                // Before it: the torn start of a record (`vo`, `vote 2/84`, ...).
                let torn = &line[..at];
                if !(torn.starts_with(TAG) || TAG.starts_with(torn)) {
                    return Err(format!("malformed vote log line {line:?}"));
                }
                out.torn += 1;
            }
            let mut w = line[at..].split_whitespace().skip(1);
            let (Some(slot), Some(digest)) = (w.next(), w.next()) else {
                return Err(format!("malformed vote log line {line:?}"));
            };
            out.votes += 1;
            match seen.get(slot) {
                Some(first) if *first != digest => {
                    out.conflicts
                        .push((slot.to_string(), first.to_string(), digest.to_string()))
                }
                Some(_) => {}
                None => {
                    seen.insert(slot, digest);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::double_votes;

    #[test]
    fn a_second_digest_in_one_slot_is_a_double_vote_and_a_resend_is_not() {
        let log = "vote 1 aa\nvote 2 bb\nvote 1 aa\nvote 3 cc\nvote 2 dd\n";
        assert_eq!(
            double_votes(log),
            vec![("2".to_string(), "bb".to_string(), "dd".to_string())]
        );
        assert!(double_votes("vote 7/3/prepare x\nvote 7/3/commit y\n").is_empty());
    }

    #[test]
    #[should_panic(expected = "malformed vote log line")]
    fn a_malformed_line_panics() {
        double_votes("vote 1\n");
    }

    #[test]
    fn records_torn_by_a_crash_are_skipped() {
        use super::VoteLog;
        // The record the crash cut is glued to the next run's first one.
        let log = "vote 1 aa\nvote 2 bbvote 3 cc\nvote 4 dvote 4 dd\nvovote 5 ee\nvote 6 f";
        let parsed = VoteLog::parse(log).unwrap();
        assert_eq!((parsed.votes, parsed.torn), (4, 4), "{parsed:?}");
        assert!(parsed.conflicts.is_empty());
        // Raft's slots are `TERM/vote`.
        let raft =
            VoteLog::parse("vote 1/vote aa\nvote 2/vovote 3/vote bb\nvote 1/vote cc\n").unwrap();
        assert_eq!((raft.votes, raft.torn), (3, 1), "{raft:?}");
        assert_eq!(
            raft.conflicts,
            vec![("1/vote".into(), "aa".into(), "cc".into())]
        );
        assert!(VoteLog::parse("garbage vote 1 aa\n").is_err());
        assert!(VoteLog::parse("vo\n").is_err());
    }
}
