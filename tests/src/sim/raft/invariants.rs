//! Raft's safety properties (Ongaro & Ousterhout 2014, Figure 3), checked over the whole
//! cluster after every event, plus durability of committed entries and convergence at the
//! end of a run. State machine safety at the ledger (one block per height, equal state
//! roots, conserved supply) is the simulator's common check (`check.rs`).
//!
//! Each violation is reported once (the first time it is seen).

use super::RaftSim;
use crate::sim::cluster::{ClusterInvariants, NodeView};
use crate::sim::protocol::Params;
use consensus::ReplicaId;
use consensus::raft::{Entry, Raft, Role};
use crypto::Digest;
use ledger::Store;
use std::collections::{BTreeMap, BTreeSet};

/// At the end of a run, live replicas' ledgers are within this many blocks of the highest.
const CONVERGED_LAG_MAX: u64 = 16;

/// A committed entry, as first seen in a ledger.
#[derive(Clone, Debug)]
struct Committed {
    entry: Entry,
    bytes: Vec<u8>,
    /// The term of the replica that first committed it, when it did (≥ the term in which
    /// the entry became committed, so leaders of later terms must hold it).
    in_term: u64,
    /// The voters whose majority must hold it: the configurations from its index to the end
    /// of the log of the replica that first committed it; empty: every replica.
    voters: Vec<BTreeSet<ReplicaId>>,
}

pub struct RaftInvariants {
    genesis: Digest,
    /// Every term's leader, including leaders that later crashed (§5.2: at most one).
    leaders: BTreeMap<u64, ReplicaId>,
    /// Every committed entry, by index (bounded by the run's length).
    committed: BTreeMap<u64, Committed>,
    /// Compaction trigger: `snapshot_interval + log_keep`.
    compact_at: u64,
    /// Per instance: the life of its core and its ledger height when that life began.
    lives: BTreeMap<usize, (u64, u64)>,
    reported: BTreeSet<String>,
    /// Every committed entry up to here is in the ledgers of a majority of its voters (for
    /// good: ledgers never lose blocks).
    durable_floor: u64,
}

impl RaftInvariants {
    pub fn new(genesis: Digest, params: &Params) -> RaftInvariants {
        RaftInvariants {
            genesis,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            compact_at: params.raft.snapshot_interval + params.raft.log_keep,
            lives: BTreeMap::new(),
            reported: BTreeSet::new(),
            durable_floor: 0,
        }
    }

    /// Records that `leader` led `term` (also the checker-level negative control's way in).
    pub fn saw_leader(&mut self, term: u64, leader: ReplicaId, out: &mut Vec<String>) {
        let first = *self.leaders.entry(term).or_insert(leader);
        if first != leader {
            out.push(format!(
                "ELECTION SAFETY (§5.2): two leaders in term {term}: {first} and {leader}"
            ));
        }
    }

    /// Records that `entry` is committed at its index (first seen in term `in_term`); a
    /// different entry already committed there is a violation.
    pub fn saw_committed(&mut self, entry: Entry, in_term: u64, out: &mut Vec<String>) {
        let index = entry.index;
        if let Some(c) = self.committed.get(&index) {
            if c.entry != entry {
                out.push(format!(
                    "STATE MACHINE SAFETY (§5.4.3): index {index} committed as {} (term {}) \
                     and as {} (term {})",
                    c.entry.id(&self.genesis).short(),
                    c.entry.term,
                    entry.id(&self.genesis).short(),
                    entry.term
                ));
            }
            return;
        }
        let bytes = entry.encode();
        self.committed.insert(
            index,
            Committed {
                entry,
                bytes,
                in_term,
                voters: Vec::new(),
            },
        );
    }

    /// New ledger blocks: each one's certificate is the committed entry.
    fn record_commits(&mut self, nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        let top = nodes.iter().map(|n| n.ledger.height()).max().unwrap_or(0);
        let from = self.committed.keys().next_back().map_or(1, |h| h + 1);
        for h in from..=top {
            let node = nodes
                .iter()
                .find(|n| n.ledger.height() >= h)
                .expect("some ledger reached the top");
            let block = node
                .ledger
                .store()
                .block(h)
                .expect("in-memory store cannot fail")
                .expect("block below the height");
            let Ok(entry) = Entry::decode(&block.certificate) else {
                out.push(format!(
                    "ledger block {h} of {} is not a raft entry",
                    node.id
                ));
                continue;
            };
            if entry.index != h {
                out.push(format!(
                    "ledger block {h} of {} holds the entry of index {}",
                    node.id, entry.index
                ));
            }
            let in_term = node.core.map_or(entry.term, Raft::term);
            self.saw_committed(entry, in_term, out);
            if let (Some(core), Some(c)) = (node.core, self.committed.get_mut(&h))
                && c.voters.is_empty()
            {
                // The leader counted with the latest configuration in its log when it
                // committed: one of those from the entry's index to the end of this log.
                for i in h..=core.last_index().max(h) {
                    let v = &core.membership_at(i).voters;
                    if !c.voters.contains(v) {
                        c.voters.push(v.clone());
                    }
                }
            }
        }
    }

    /// §5.2 Election safety: at most one leader per term, ever.
    fn election_safety(&mut self, nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        for n in nodes {
            if let Some(core) = n.core
                && core.role() == Role::Leader
            {
                self.saw_leader(core.term(), n.id, out);
            }
        }
    }

    /// §5.3 Log matching: if two logs hold an entry with the same index and term, the logs
    /// are identical in all entries up through that index (both still hold).
    fn log_matching(nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        let live: Vec<(ReplicaId, &Raft)> = nodes
            .iter()
            .filter_map(|n| n.core.map(|c| (n.id, c)))
            .collect();
        for (k, (ra, a)) in live.iter().enumerate() {
            for (rb, b) in &live[k + 1..] {
                let lo = a.log_base().0.max(b.log_base().0) + 1;
                let hi = a.last_index().min(b.last_index());
                let mut matched = None;
                for i in (lo..=hi).rev() {
                    let (Some(ea), Some(eb)) = (a.entry(i), b.entry(i)) else {
                        continue;
                    };
                    if ea.term == eb.term && matched.is_none() {
                        matched = Some(i);
                    }
                    if let Some(m) = matched
                        && ea != eb
                    {
                        out.push(format!(
                            "LOG MATCHING (§5.3): {ra} and {rb} agree on the term at index {m} \
                             but differ at index {i}"
                        ));
                        break;
                    }
                }
            }
        }
    }

    /// A live log never contradicts a committed entry at or below its commit index.
    fn committed_prefix(&self, nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        for n in nodes {
            let Some(core) = n.core else { continue };
            let lo = core.log_base().0 + 1;
            let hi = core.commit_index().min(core.last_index());
            if hi < lo {
                continue;
            }
            for (i, c) in self.committed.range(lo..=hi) {
                if core.entry(*i).is_some_and(|e| *e != c.entry) {
                    out.push(format!(
                        "STATE MACHINE SAFETY (§5.4.3): {} counts index {i} as committed with \
                         another entry than the one committed",
                        n.id
                    ));
                }
            }
        }
    }

    /// §5.4 Leader completeness: an entry committed in a term is in the log of every
    /// leader of a later term (below the leader's log base: in its ledger).
    fn leader_completeness(&self, nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        for n in nodes {
            let Some(core) = n.core.filter(|c| c.role() == Role::Leader) else {
                continue;
            };
            let (term, base) = (core.term(), core.log_base().0);
            if n.ledger.height() < base {
                out.push(format!(
                    "LEADER COMPLETENESS (§5.4): leader {} of term {term} compacted to {base} \
                     but its ledger is at {}",
                    n.id,
                    n.ledger.height()
                ));
            }
            for (i, c) in self.committed.range(base + 1..) {
                if c.in_term >= term {
                    continue;
                }
                if core.entry(*i) != Some(&c.entry) {
                    out.push(format!(
                        "LEADER COMPLETENESS (§5.4): leader {} of term {term} lacks the entry \
                         committed at index {i} (entry term {}, committed by term {})",
                        n.id, c.entry.term, c.in_term
                    ));
                    break;
                }
            }
        }
    }

    /// Durability: every committed entry is on the disk (durable log or ledger) of a
    /// majority, after every event — what persisting before acknowledging exists for.
    ///
    /// With membership changes, "a majority" is one of the voters the committing replica
    /// used (the configuration at the entry's index, or its latest).
    fn committed_durable(&mut self, nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        let all: BTreeSet<ReplicaId> = nodes.iter().map(|n| n.id).collect();
        let shortfall = |c: &Committed, held: &dyn Fn(&NodeView<'_, RaftSim>) -> bool| {
            let sets = match c.voters.is_empty() {
                true => std::slice::from_ref(&all),
                false => &c.voters[..],
            };
            let mut worst = None;
            for v in sets {
                let holders = nodes
                    .iter()
                    .filter(|n| v.contains(&n.id) && held(n))
                    .count();
                if holders > v.len() / 2 {
                    return None;
                }
                worst.get_or_insert((holders, v.len()));
            }
            worst
        };
        // Ledgers never lose blocks: advance the floor over entries a majority holds there.
        while let Some(c) = self.committed.get(&(self.durable_floor + 1)) {
            let i = self.durable_floor + 1;
            if shortfall(c, &|n| n.ledger.height() >= i).is_some() {
                break;
            }
            self.durable_floor = i;
        }
        for (i, c) in self.committed.range(self.durable_floor + 1..) {
            let held = |n: &NodeView<'_, RaftSim>| {
                n.ledger.height() >= *i
                    || n.disk_log.get(i).is_some_and(|d| {
                        *d == c.bytes || Entry::decode(d).is_ok_and(|e| e == c.entry)
                    })
            };
            if let Some((holders, voters)) = shortfall(c, &held) {
                out.push(format!(
                    "COMMITTED ENTRY NOT DURABLE: index {i} (term {}) is on the disk of {holders} \
                     of its {voters} voters (a majority is {})",
                    c.entry.term,
                    voters / 2 + 1
                ));
            }
        }
    }

    /// §7 Log compaction keeps the log bounded: once a core has been told of an executed
    /// block in its life, fewer than `snapshot_interval + log_keep` applied entries are
    /// above its log base after every event.
    fn log_bounded(&mut self, nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        for n in nodes {
            let Some(core) = n.core else { continue };
            let height = n.ledger.height();
            let life = self.lives.entry(n.inst).or_insert((n.life, height));
            if life.0 != n.life {
                *life = (n.life, height);
            }
            let base = core.log_base().0;
            if height > life.1 && height.saturating_sub(base) >= self.compact_at {
                out.push(format!(
                    "UNBOUNDED LOG: {} applied {height} entries but its log base is {base} \
                     (compaction at {} applied entries above the base)",
                    n.id, self.compact_at
                ));
            }
        }
    }

    /// §4.1: every configuration in a log differs from the one before it by one voter at
    /// most (so majorities of the two intersect), and names at least one voter.
    fn single_steps(nodes: &[NodeView<'_, RaftSim>], out: &mut Vec<String>) {
        for n in nodes {
            let Some(core) = n.core else { continue };
            let at = core.membership_index();
            let (before, now) = (core.membership_at(at.saturating_sub(1)), core.membership());
            if !before.single_step_to(now) {
                out.push(format!(
                    "CONFIGURATION STEP (§4.1): {} holds voters {:?} after {:?} (entry {at}): \
                     majorities of the two need not intersect",
                    n.id, now.voters, before.voters
                ));
            }
        }
    }

    /// Keeps only violations not reported before.
    fn fresh(&mut self, found: Vec<String>) -> Vec<String> {
        found
            .into_iter()
            .filter(|v| self.reported.insert(v.clone()))
            .collect()
    }
}

impl ClusterInvariants<RaftSim> for RaftInvariants {
    fn after_event(&mut self, _now_ms: u64, nodes: &[NodeView<'_, RaftSim>]) -> Vec<String> {
        let mut out = Vec::new();
        self.record_commits(nodes, &mut out);
        self.election_safety(nodes, &mut out);
        Self::log_matching(nodes, &mut out);
        self.committed_prefix(nodes, &mut out);
        self.leader_completeness(nodes, &mut out);
        self.committed_durable(nodes, &mut out);
        self.log_bounded(nodes, &mut out);
        Self::single_steps(nodes, &mut out);
        self.fresh(out)
    }

    /// Liveness after healing: one term and one leader that no live replica contradicts, and
    /// every live ledger within [`CONVERGED_LAG_MAX`] blocks of the highest.
    fn at_end(&mut self, nodes: &[NodeView<'_, RaftSim>]) -> Vec<String> {
        let mut out = Vec::new();
        // Servers the leaders' configurations no longer name are out of the cluster (a
        // removed server that was down when it was removed never hears of it).
        let members: BTreeSet<ReplicaId> = nodes
            .iter()
            .filter_map(|n| n.core.filter(|c| c.role() == Role::Leader))
            .flat_map(|c| c.membership().members().collect::<Vec<_>>())
            .collect();
        let live: Vec<&NodeView<'_, RaftSim>> = nodes
            .iter()
            .filter(|n| n.core.is_some() && (members.is_empty() || members.contains(&n.id)))
            .collect();
        let top = nodes.iter().map(|n| n.ledger.height()).max().unwrap_or(0);
        for n in &live {
            if n.ledger.height() + CONVERGED_LAG_MAX < top {
                out.push(format!(
                    "NOT CONVERGED: {} is at height {} of {top}",
                    n.id,
                    n.ledger.height()
                ));
            }
        }
        // One term, one live leader; a replica rebuilt moments ago (restart, snapshot) may
        // not have heard it yet, but none follows another.
        let terms: BTreeSet<u64> = live.iter().filter_map(|n| n.core.map(Raft::term)).collect();
        let leaders: BTreeSet<ReplicaId> = live
            .iter()
            .filter(|n| n.core.is_some_and(|c| c.role() == Role::Leader))
            .map(|n| n.id)
            .collect();
        let followed: BTreeSet<ReplicaId> = live
            .iter()
            .filter_map(|n| n.core.and_then(Raft::leader))
            .collect();
        if terms.len() != 1 || leaders.len() != 1 || followed != leaders {
            out.push(format!(
                "NOT CONVERGED: live replicas are in terms {terms:?}, leaders {leaders:?}, \
                 following {followed:?}"
            ));
        }
        self.fresh(out)
    }
}
