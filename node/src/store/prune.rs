//! Pruning: a validator keeps the last `retain_blocks` heights of history and deletes what
//! is older, in the background, in small transactions, so that commits never wait long.
//!
//! Two floors, in the chain file's `floors` table, say what is kept:
//! - `history_floor` F: blocks, header certificates and state-tree versions below F are
//!   gone; blocks, proofs and state are served from F on;
//! - `tx_floor` T ≥ F: transaction records are kept for heights from T on, so a lookup that
//!   finds nothing on a store with T > 1 answers "pruned below T", never "unknown".
//!
//! A state snapshot (Raft's InstallSnapshot) sets both: F = its height (the block is held),
//! T = its height + 1 (its block's transactions were never indexed here).
//!
//! # To ensure correctness
//! - The floor moves in the same transaction that deletes the blocks below it, and proofs
//!   read the floor in the read transaction they build the proof from
//!   ([`super::tree::TreeSnapshot::floor`]), so a proof never meets a half-pruned tree.
//! - A state-tree node is deleted only if the stale index says a version ≤ F replaced it:
//!   then no root at or above F reaches it (the rule of jmt's own `purge_stale_nodes`). A
//!   value row (key, v) is deleted only if a newer row (key, v') with v < v' ≤ F exists: every
//!   read at a version ≥ F then finds v' or newer first.
//! - The root written for an empty block is a copy jmt does not mark stale; roots of versions
//!   below F are deleted explicitly.
//! - Transaction records are deleted (from the index file, before the blocks holding them)
//!   only up to the index's durable height, and only rows that point at the pruned height
//!   (the first inclusion wins, so a later duplicate never deletes the first one's row).

use super::tree::{JMT_NODES, JMT_STALE, JMT_VALUES, decode_node, encode};
use super::{BLOCK_HEIGHTS, BLOCKS, HEADER_CERTS, RedbStore};
use jmt::storage::Node;
use ledger::{Store, StoreError};
use redb::ReadableTable;
use std::collections::BTreeSet;

/// The floors by name, in the chain file (not `meta`: an old store's `meta` keys move to
/// the consensus file when it opens).
pub(super) const FLOORS: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("floors");
pub(super) const HISTORY_FLOOR: &str = "history_floor";
const TX_FLOOR: &str = "tx_floor";

/// What a store keeps (see the module documentation). 0 or 1: everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floors {
    pub history: u64,
    pub tx: u64,
}

/// What one [`RedbStore::prune_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneStep {
    /// The history floor after the step.
    pub floor: u64,
    pub blocks: u64,
    pub tx_records: u64,
    pub tree_nodes: u64,
    pub tree_values: u64,
    /// Work is left below the target (call again).
    pub more: bool,
}

/// Blocks deleted per step, at most.
pub const BLOCKS_PER_STEP: u64 = 64;
/// Stale tree nodes deleted per step, at most.
pub const STALE_PER_STEP: usize = 20_000;

/// A floor (0 if never set).
pub(super) fn read_u64(
    t: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<u64, redb::Error> {
    Ok(t.get(key)?.map(|v| v.value()).unwrap_or(0))
}

/// Sets the floors in `tx` (a snapshot install): history `h`, transactions `t`.
pub(super) fn set_floors(tx: &redb::WriteTransaction, h: u64, t: u64) -> Result<(), redb::Error> {
    let mut m = tx.open_table(FLOORS)?;
    m.insert(HISTORY_FLOOR, h)?;
    m.insert(TX_FLOOR, t)?;
    Ok(())
}

impl RedbStore {
    /// What this store keeps.
    pub fn floors(&self) -> Result<Floors, StoreError> {
        self.read(|tx| {
            let m = tx.open_table(FLOORS)?;
            Ok(Floors {
                history: read_u64(&m, HISTORY_FLOOR)?,
                tx: read_u64(&m, TX_FLOOR)?,
            })
        })
    }

    /// One bounded step of pruning towards history floor `target` (never above the stored
    /// height or the transaction index's durable height): at most [`BLOCKS_PER_STEP`] blocks
    /// and [`STALE_PER_STEP`] stale tree nodes. Each part is one durable transaction.
    pub fn prune_step(&self, target: u64) -> Result<PruneStep, StoreError> {
        let floors = self.floors()?;
        let from = floors.history.max(1);
        let limit = target
            .min(self.height()?)
            .min(self.index.indexed_height() + 1);
        let to = limit.min(from + BLOCKS_PER_STEP).max(from);
        let mut step = PruneStep {
            floor: floors.history.max(to),
            ..PruneStep::default()
        };
        if to > from {
            // Transaction records first: a crash after this leaves blocks whose records are
            // gone, but below a floor the next step moves anyway.
            let mut hashes = Vec::new();
            let mut block_hashes = Vec::new();
            for h in from..to {
                if let Some(b) = self.block(h)? {
                    block_hashes.push(b.hash());
                    hashes.extend(b.txs.iter().map(|t| (t.hash(), h)));
                }
            }
            step.tx_records = self.index.forget(&hashes)?;
            step.blocks = block_hashes.len() as u64;
            self.write(|tx| {
                let mut blocks = tx.open_table(BLOCKS)?;
                let mut certs = tx.open_table(HEADER_CERTS)?;
                let mut nodes = tx.open_table(JMT_NODES)?;
                for h in from..to {
                    blocks.remove(h)?;
                    certs.remove(h)?;
                }
                // Roots of versions below the floor (an empty block's root is a copy that
                // the stale index does not list). Version 0 is genesis.
                for v in from.saturating_sub(1)..to {
                    nodes.remove(encode(&ledger::tree::root_key(v)).as_slice())?;
                }
                let mut heights = tx.open_table(BLOCK_HEIGHTS)?;
                for h in &block_hashes {
                    heights.remove(h.0)?;
                }
                let mut m = tx.open_table(FLOORS)?;
                let tx_floor = read_u64(&m, TX_FLOOR)?.max(to);
                m.insert(HISTORY_FLOOR, to)?;
                m.insert(TX_FLOOR, tx_floor)?;
                Ok(())
            })?;
        }
        let (nodes, values, more) = self.prune_stale(step.floor)?;
        step.tree_nodes = nodes;
        step.tree_values = values;
        step.more = more || to < limit;
        Ok(step)
    }

    /// Deletes up to [`STALE_PER_STEP`] tree nodes made stale at or below `floor`, and the
    /// value rows they leave unreachable. (deleted nodes, deleted values, more left).
    fn prune_stale(&self, floor: u64) -> Result<(u64, u64, bool), StoreError> {
        if floor == 0 {
            return Ok((0, 0, false));
        }
        let mut out = (0, 0, false);
        self.write(|tx| {
            let mut stale = tx.open_table(JMT_STALE)?;
            let mut nodes = tx.open_table(JMT_NODES)?;
            let mut values = tx.open_table(JMT_VALUES)?;
            let mut rows = Vec::new();
            for row in stale.range((0u64, &[][..])..)? {
                let (k, _) = row?;
                let (since, key) = k.value();
                if since > floor {
                    break;
                }
                if rows.len() == STALE_PER_STEP {
                    out.2 = true;
                    break;
                }
                rows.push((since, key.to_vec()));
            }
            let mut leaves = BTreeSet::new();
            for (since, key) in &rows {
                if let Some(node) = nodes.remove(key.as_slice())? {
                    out.0 += 1;
                    if let Ok(Node::Leaf(leaf)) = decode_node(node.value()) {
                        leaves.insert(leaf.key_hash().0);
                    }
                }
                stale.remove((*since, key.as_slice()))?;
            }
            // Each replaced leaf's key: rows older than its newest at or below the floor
            // are unreachable from every version kept.
            for kh in leaves {
                let newest = values
                    .range((kh, 0)..=(kh, floor))?
                    .next_back()
                    .transpose()?
                    .map(|(k, _)| k.value().1);
                let Some(newest) = newest else { continue };
                let old: Vec<u64> = values
                    .range((kh, 0)..(kh, newest))?
                    .map(|r| r.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()?;
                for v in old {
                    values.remove((kh, v))?;
                    out.1 += 1;
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// How often the pruner looks at the height.
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl RedbStore {
    /// Starts the pruner thread (`cairn-prune`): about once a second, while the stored
    /// height is more than `retain` above the history floor, it prunes step by step up to
    /// `height − retain` (sleeping 5 ms between steps so block writes are never kept
    /// waiting long), and reports each new floor to `on_floor`. Ends once `stop` is set. A
    /// failed step is logged and retried on the next round.
    pub fn start_pruner(
        &self,
        retain: u64,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        on_floor: impl Fn(u64) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        use std::sync::atomic::Ordering;
        let store = self.clone();
        std::thread::Builder::new()
            .name("cairn-prune".into())
            .spawn(move || {
                if let Ok(f) = store.floors() {
                    on_floor(f.history);
                }
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(PRUNE_INTERVAL);
                    let target = match store.height() {
                        Ok(h) => h.saturating_sub(retain),
                        Err(e) => {
                            tracing::warn!(error = %e, "pruner: cannot read the height");
                            continue;
                        }
                    };
                    let mut pruned = PruneStep::default();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match store.prune_step(target) {
                            Ok(step) => {
                                pruned.floor = step.floor;
                                pruned.blocks += step.blocks;
                                pruned.tx_records += step.tx_records;
                                pruned.tree_nodes += step.tree_nodes;
                                pruned.tree_values += step.tree_values;
                                if !step.more {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "pruner: a step failed; retrying later");
                                break;
                            }
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    if pruned.blocks + pruned.tree_nodes > 0 {
                        on_floor(pruned.floor);
                        tracing::debug!(
                            floor = pruned.floor,
                            blocks = pruned.blocks,
                            tx_records = pruned.tx_records,
                            tree_nodes = pruned.tree_nodes,
                            tree_values = pruned.tree_values,
                            "pruned"
                        );
                    }
                }
            })
            .expect("spawning the pruner thread")
    }
}
