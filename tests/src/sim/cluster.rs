//! Invariants over the whole cluster rather than one replica's commits: a protocol that has
//! them (Raft) hands the simulator a [`ClusterInvariants`] checker, which sees every
//! replica — its core if it is up, its ledger and its durable log — after every event.

use super::protocol::SimProtocol;
use consensus::ReplicaId;
use ledger::{Ledger, MemStore};
use std::collections::BTreeMap;

/// One replica as a cluster-wide invariant sees it.
pub struct NodeView<'a, P: SimProtocol> {
    pub inst: usize,
    pub id: ReplicaId,
    /// Changes whenever the core is rebuilt (restart, snapshot install).
    pub life: u64,
    /// `None` while crashed.
    pub core: Option<&'a P::Core>,
    /// Survives crashes: what the replica committed and applied.
    pub ledger: &'a Ledger<MemStore>,
    /// Survives crashes: the fsynced log, by index (unsynced writes are not in it).
    pub disk_log: &'a BTreeMap<u64, Vec<u8>>,
}

/// A stateful checker of cluster-wide invariants (it remembers history across events, e.g.
/// which replica led which term).
pub trait ClusterInvariants<P: SimProtocol> {
    /// Called after every event; returns what is violated now.
    fn after_event(&mut self, now_ms: u64, nodes: &[NodeView<'_, P>]) -> Vec<String>;

    /// Called once at the end of a run, after every fault has healed and the liveness window
    /// has passed: what must hold of a settled cluster (convergence).
    fn at_end(&mut self, nodes: &[NodeView<'_, P>]) -> Vec<String>;
}
