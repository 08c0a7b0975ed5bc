//! Linearizable reads in the simulator: clients ask replicas for reads ([`Input::Read`]),
//! and every answer is checked against what was committed before the read was asked.
//!
//! The rule (linearizability of reads, as a client sees it): a read asked at time t must
//! reflect every write acknowledged before t. A write is acknowledged once some replica
//! committed (and, in the simulator, at once executed) it, so the *floor* of a read is the
//! highest ledger height any replica holds when the read is asked; the index a replica
//! answers with ([`Action::ReadReady`]) — the state the read is served from — must be at
//! least that floor. A replica must also answer only reads asked of it.
//!
//! [`Input::Read`]: consensus::Input::Read
//! [`Action::ReadReady`]: consensus::Action::ReadReady

use std::collections::BTreeMap;

/// Open reads and what their answers were.
#[derive(Debug, Default)]
pub struct ReadChecker {
    next: u64,
    /// Read id → (instance asked, floor).
    open: BTreeMap<u64, (usize, u64)>,
    /// Reads answered ready (and checked).
    pub served: u64,
    /// Reads refused (no leader, leadership lost): the client would retry.
    pub failed: u64,
    /// Reads answered with an index above their floor (they waited for a newer commit).
    pub above_floor: u64,
}

impl ReadChecker {
    /// A client asks instance `inst` for a read while the highest ledger height anywhere is
    /// `floor`; the read's id.
    pub fn ask(&mut self, inst: usize, floor: u64) -> u64 {
        self.next += 1;
        self.open.insert(self.next, (inst, floor));
        self.next
    }

    /// Instance `inst` answered read `id` ready at `index` (`Some`) or refused it (`None`);
    /// a violation, if the answer breaks the rule.
    pub fn answered(
        &mut self,
        now: u64,
        inst: usize,
        id: u64,
        index: Option<u64>,
    ) -> Option<String> {
        let Some((asked, floor)) = self.open.remove(&id) else {
            return Some(format!(
                "t={now}ms: instance {inst} answered read {id}, which is not open"
            ));
        };
        if asked != inst {
            return Some(format!(
                "t={now}ms: instance {inst} answered read {id}, asked of instance {asked}"
            ));
        }
        let Some(index) = index else {
            self.failed += 1;
            return None;
        };
        self.served += 1;
        if index > floor {
            self.above_floor += 1;
        }
        (index < floor).then(|| {
            format!(
                "t={now}ms: STALE READ: instance {inst} served read {id} at index {index}, \
                 but height {floor} was committed before the read was asked"
            )
        })
    }

    /// Forgets the reads open at a crashed instance (their client times out).
    pub fn crashed(&mut self, inst: usize) {
        self.open.retain(|_, (asked, _)| *asked != inst);
    }
}
