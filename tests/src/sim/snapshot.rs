//! State transfer (Raft's InstallSnapshot), as the node does it outside the core: a replica
//! whose core is told that the entries it needs are compacted away at the sender fetches the
//! sender's ledger, installs it, and rebuilds its core from disk — what a restart does.
//!
//! The transfer takes a simulated while; it completes only if the receiver is still up in
//! the same life (no crash in between), the sender is up and the two can talk. The blocks
//! are re-committed from the sender's ledger with the same inputs (proposer, view,
//! timestamp, transactions, certificate, batch sizes) and must come out with the same hashes
//! and state roots.

use super::{Ev, Sim, SimProtocol};
use consensus::ReplicaId;
use ledger::{BlockInput, Store};
use rand::Rng;

/// How long a state transfer takes, in milliseconds (chunks over the network).
const TRANSFER_MS: (u64, u64) = (20, 200);

impl<P: SimProtocol> Sim<P> {
    /// Instance `to` was offered a snapshot by replica `from` and must reach `height`.
    pub(super) fn snapshot_offered(&mut self, to: usize, from: ReplicaId, height: u64) {
        let inst = &self.instances[to];
        if inst.core.is_none() || inst.snapshot_pending || inst.ledger.height() >= height {
            return;
        }
        let Some(src) = self.instances.iter().position(|i| i.id == from) else {
            return;
        };
        self.instances[to].snapshot_pending = true;
        let epoch = self.instances[to].epoch;
        let at = self.now + self.rng.gen_range(TRANSFER_MS.0..=TRANSFER_MS.1);
        self.schedule(
            at,
            Ev::SnapshotDone {
                inst: to,
                from: src,
                epoch,
            },
        );
    }

    pub(super) fn snapshot_done(&mut self, to: usize, src: usize, epoch: u64) {
        if self.instances[to].epoch != epoch || self.instances[to].core.is_none() {
            return; // the receiver crashed meanwhile: the transfer is lost
        }
        self.instances[to].snapshot_pending = false;
        let cut = self.sc.network.cut(src, to, self.now, None)
            || self.sc.network.cut(to, src, self.now, None);
        let (from_h, to_h) = (
            self.instances[src].ledger.height(),
            self.instances[to].ledger.height(),
        );
        if self.instances[src].core.is_none() || cut || from_h <= to_h {
            return; // the fetch failed (the core will be offered a snapshot again)
        }
        for h in to_h + 1..=from_h {
            let b = self.instances[src]
                .ledger
                .store()
                .block(h)
                .expect("in-memory store cannot fail")
                .expect("block below the sender's height");
            let copied = self.instances[to].execute(BlockInput::of(&b));
            if copied.hash() != b.hash() || copied.header.state_root != b.header.state_root {
                self.checker.violations.push(format!(
                    "t={}ms: SNAPSHOT: instance {to} rebuilt block {h} from instance {src} \
                     with another hash or state root",
                    self.now
                ));
            }
            self.trace.part(&[0xc5, to as u8]).part(&copied.hash().0);
            let supply = self.instances[to]
                .ledger
                .total_supply()
                .expect("in-memory store cannot fail");
            self.checker.on_commit(self.now, to, &copied, supply);
        }
        // The log restarts at the snapshot unless it extends it (the store's `Rebase`).
        let top = self.instances[to]
            .ledger
            .store()
            .block(from_h)
            .expect("in-memory store cannot fail")
            .expect("just installed");
        let term = P::committed_ref(&top.certificate).map(|(_, v)| v.0);
        let term_of = |e: &[u8]| P::committed_ref(e).map(|(_, v)| v.0);
        let inst = &mut self.instances[to];
        inst.retire_core();
        if let Some(term) = term {
            inst.rebase_log(from_h, term, term_of);
        }
        self.snapshots += 1;
        // Not a process restart: the safety record is read back even in amnesia runs.
        self.start_core(to, false);
    }
}
