//! The safety checker, run on the validators' stores and vote logs after they stopped:
//! agreement (equal block hashes and state roots at every height two honest stores share,
//! hash links within each store), durability of acknowledged transactions (every one in
//! every honest store, at the same height and index with the same successful receipt, in the
//! block that says so), and one vote per slot in every vote log. The checks themselves are
//! `node::audit`'s (the set-change tests in `node/tests` run them too); this file runs them
//! on a [`Cluster`].

use super::{Acked, Cluster};
use node::audit::{VoteLog, acked_in_stores, same_chain};
use node::store::RedbStore;

/// What [`check`] looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The lowest top height among the honest stores (all of them hold that block and agree
    /// on everything below that they hold).
    pub height: u64,
    /// Votes read from the vote logs of the `voters`.
    pub votes_checked: usize,
    /// Distinct acknowledged transactions found in the honest stores.
    pub acked_checked: usize,
    /// Sum over the honest validators of the last evidence count each reported
    /// ([`Cluster::last_evidence_count`]: read by `stop`/`stop_all` just before stopping
    /// it, or by [`Cluster::evidence_count`]); 0 for a validator that never reported one.
    pub evidence: usize,
}

/// Checks the stopped cluster (call `stop_all` first: redb locks a store while its
/// validator runs): every transaction in `acked` is in every store of `honest` with a
/// successful receipt (a store whose transaction floor is above it — pruning, a Raft state
/// snapshot — may lack it, and then answers `pruned`; it may not record a later duplicate
/// inclusion instead), the honest stores have equal block hashes and state roots at
/// every height they share, and no validator in `voters` logged two different votes for one
/// slot. Panics naming the validator, height or slot on any violation. A store that ends
/// below an acknowledged transaction's height counts as lacking it: stop the load and let
/// the honest validators reach the highest height before stopping them.
pub fn check(cluster: &Cluster, honest: &[usize], voters: &[usize], acked: &Acked) -> Verdict {
    match try_check(cluster, honest, voters, acked) {
        Ok(v) => v,
        // The cluster's drop prints the log tails while the test unwinds.
        Err(e) => panic!("{} cluster: safety check failed: {e}", cluster.protocol),
    }
}

/// [`check`] returning the first violation instead of panicking.
pub fn try_check(
    cluster: &Cluster,
    honest: &[usize],
    voters: &[usize],
    acked: &Acked,
) -> Result<Verdict, String> {
    assert!(!honest.is_empty(), "check: no honest validator given");
    let mut stores = Vec::new();
    for &i in honest {
        let path = cluster.store_path(i);
        let store = RedbStore::open(&path).map_err(|e| {
            format!(
                "validator {i}: cannot open {}: {e} (is it still running? stop the validators \
                 before check)",
                path.display()
            )
        })?;
        stores.push((i, store));
    }
    let height = same_chain(&stores)?;
    let acked_checked = acked_in_stores(&stores, &acked.committed, &acked.heights)?;
    let mut votes_checked = 0;
    for &i in voters {
        let path = cluster.vote_log_path(i);
        let log = match std::fs::read_to_string(&path) {
            Ok(log) => log,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("validator {i}: {}: {e}", path.display())),
        };
        let parsed = VoteLog::parse(&log).map_err(|e| format!("validator {i}: {e}"))?;
        votes_checked += parsed.votes;
        if parsed.torn > 0 {
            eprintln!(
                "cluster check: validator {i}: {} vote log record(s) torn by a SIGKILL \
                 (the validator writes a record in several write calls), skipped",
                parsed.torn
            );
        }
        if let Some((slot, first, second)) = parsed.conflicts.first() {
            return Err(format!(
                "validator {i} double-voted: slot {slot}: {first} then {second} ({} slot(s) \
                 with two votes in {})",
                parsed.conflicts.len(),
                path.display()
            ));
        }
    }
    let evidence = honest
        .iter()
        .map(|&i| cluster.last_evidence_count(i).unwrap_or(0) as usize)
        .sum();
    Ok(Verdict {
        height,
        votes_checked,
        acked_checked,
        evidence,
    })
}
