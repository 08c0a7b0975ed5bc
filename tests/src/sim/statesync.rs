//! BFT state sync in the simulator: a replica whose store was deleted while it was down
//! (`Scenario::sync.wipes`) restarts empty and, before its core starts, fetches a verified
//! snapshot with the validator's own [`ledger::statesync::Fetch`]:
//!
//! - every peer that is up and reachable offers its last block; an offer counts only if a
//!   quorum (2f+1) of replicas stored that very block at that height (what a header
//!   certificate proves in the node); a forged offer (`sync.forged_offer`) is refused;
//! - chunks of the highest certified height come from every reachable peer that holds it,
//!   through `Fetch` (a peer that is cut off times out and its chunks go elsewhere); a peer
//!   that corrupts chunks (`sync.corrupt_chunks`) is caught by the range proofs;
//! - the state is installed with the ledger's own `install_snapshot` and the checker
//!   compares the installed block and supply with what the honest replicas committed
//!   ([`super::Checker::on_state_sync`]); then the core starts from it, as after a restart.
//!
//! Negative control (`sync.unverified`): chunks are taken without their proofs and the
//! state as received (a node that trusted its peers would take the root the chunks hash to),
//! so a corrupt chunk must show up as a state-sync violation.

use super::{Sim, SimProtocol};
use ledger::statesync::{Fetch, StateChunk, serve_chunk};
use ledger::tree::{self, MemTreeStore};
use ledger::view::StoreReader;
use ledger::{Block, Store};
use std::sync::Arc;

/// How long a chunk request waits before it goes to another peer (simulated ms).
const CHUNK_TIMEOUT_MS: u64 = 200;
/// Requests answered per sync, at most (a sync that cannot finish gives up).
const MAX_REQUESTS: usize = 10_000;

/// What state syncs did in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub syncs: u64,
    pub bad_chunks: u64,
    pub bad_offers: u64,
    /// Syncs that found no certified offer or could not finish (the core then replays).
    pub gave_up: u64,
}

impl<P: SimProtocol> Sim<P> {
    /// Instance `inst` crashes and its store is deleted.
    pub(super) fn wipe(&mut self, inst: usize) {
        self.instances[inst].crash();
        self.reads.crashed(inst);
        self.instances[inst].wipe_store();
        self.checker.wiped(inst);
    }

    /// The wiped instance restarts: state sync first, then its core.
    pub(super) fn sync_restart(&mut self, to: usize) {
        if self.instances[to].core.is_some() {
            return;
        }
        if let Some(block) = self.state_sync(to) {
            let supply = self.instances[to]
                .ledger
                .total_supply()
                .expect("in-memory store cannot fail");
            self.checker.on_state_sync(self.now, to, &block, supply);
            self.trace.part(&[0xc6, to as u8]).part(&block.hash().0);
            self.sync_stats.syncs += 1;
        } else {
            self.sync_stats.gave_up += 1;
        }
        self.start_instance(to);
    }

    /// Whether `b` is up (a running core, or an outsider following the chain: a removed
    /// validator still serves the blocks it has) and linked to `a` both ways.
    pub(super) fn reachable(&self, a: usize, b: usize) -> bool {
        self.instances[b].up
            && !self.sc.network.cut(a, b, self.now, None)
            && !self.sc.network.cut(b, a, self.now, None)
    }

    /// Whether a quorum of replicas stored exactly `block` at its height (what a header
    /// certificate proves in the node).
    fn certified(&self, block: &Block) -> bool {
        let h = block.header.height;
        let holders = self
            .instances
            .iter()
            .filter(|i| {
                i.ledger
                    .store()
                    .block(h)
                    .ok()
                    .flatten()
                    .is_some_and(|b| b.hash() == block.hash())
            })
            .count();
        holders >= self.committee.quorum()
    }

    /// What peer `j` offers: its newest block a quorum also stored (the node's newest header
    /// certificate), or, if it forges offers, its tip with a forged state root.
    fn offer(&self, j: usize) -> Option<Block> {
        let store = self.instances[j].ledger.store();
        let tip = self.instances[j].ledger.height();
        let block = |h| store.block(h).ok().flatten();
        if self.sc.sync.forged_offer == Some(j) {
            let mut b = block(tip.max(1))?;
            b.header.state_root = crypto::hash(b"a forged state root");
            return Some(b);
        }
        (tip.saturating_sub(64).max(1)..=tip)
            .rev()
            .filter_map(block)
            .find(|b| self.certified(b))
    }

    /// Fetches and installs the state at the highest certified height a peer offers; the
    /// installed block, or `None` if there was none to take or the fetch could not finish.
    fn state_sync(&mut self, to: usize) -> Option<Block> {
        let n = self.instances.len();
        let mut best: Option<(usize, Block)> = None;
        let offering: Vec<usize> = (0..n)
            .filter(|&j| j != to && self.reachable(to, j))
            .collect();
        for j in offering {
            let Some(block) = self.offer(j) else {
                continue;
            };
            if !self.certified(&block) {
                self.sync_stats.bad_offers += 1;
                continue;
            }
            let h = block.header.height;
            if best.as_ref().is_none_or(|(_, b)| h > b.header.height) {
                best = Some((j, block));
            }
        }
        let (src, block) = best?;
        let h = block.header.height;
        let leaves = {
            let store = self.instances[src].ledger.store();
            ledger::statesync::leaf_count(&StoreReader(store), h).ok()?
        };
        let peers: Vec<u16> = (0..n)
            .filter(|&j| j != to && self.instances[j].ledger.height() >= h)
            .map(|j| j as u16)
            .collect();
        let mut fetch = Fetch::new(h, block.header.state_root, leaves, peers, CHUNK_TIMEOUT_MS)
            .expect("a leaf count read from a tree");
        if self.sc.sync.unverified {
            fetch.trust_peers_unverified();
        }
        let mut t = self.now;
        let mut asks = fetch.poll(t);
        let mut answered = 0;
        while !fetch.complete() {
            if fetch.stuck() || answered > MAX_REQUESTS {
                return None;
            }
            if asks.is_empty() {
                t += CHUNK_TIMEOUT_MS;
                asks = fetch.poll(t);
                continue;
            }
            let mut next = Vec::new();
            for (p, index) in asks {
                answered += 1;
                let j = p as usize;
                if !self.reachable(to, j) {
                    continue; // times out
                }
                let served = {
                    let store = self.instances[j].ledger.store();
                    serve_chunk(Arc::new(StoreReader(store)), h, index)
                };
                match served {
                    Ok(Some(mut chunk)) => {
                        if self.sc.sync.corrupt_chunks == Some(j) {
                            corrupt(&mut chunk);
                        }
                        let step = fetch.on_chunk(t, p, chunk);
                        if step.bad.is_some() {
                            self.sync_stats.bad_chunks += 1;
                        }
                        next.extend(step.ask);
                    }
                    _ => next.extend(fetch.on_missing(t, p, index)),
                }
            }
            asks = next;
        }
        let accounts = fetch.finish().ok()?;
        let mut block = block;
        if self.sc.sync.unverified {
            // Trusting the peers: the state is what they sent, its root whatever it hashes to
            // (a root does not depend on the version it is written at).
            let (root, _) = tree::update(&MemTreeStore::default(), 0, &accounts).ok()?;
            block.header.state_root = root;
        }
        let set = self.instances[to].ledger.validators().clone();
        if let Err(e) = self.instances[to]
            .ledger
            .install_snapshot(block.clone(), accounts, set)
        {
            if std::env::var("SIM_DEBUG_SYNC").is_ok() {
                eprintln!("instance {to}: install at {h}: {e}");
            }
            return None;
        }
        Some(block)
    }
}

/// Raises the first leaf's balance by one (the chunk still decodes; only its proof fails).
fn corrupt(c: &mut StateChunk) {
    let leaf = &mut c.leaves[0];
    let (a, mut acct) = tree::decode_value(&leaf.value).expect("a served leaf decodes");
    acct.balance += 1;
    leaf.value = tree::encode_value(&a, &acct).to_vec();
}
