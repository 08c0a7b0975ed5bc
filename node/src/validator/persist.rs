//! The store writes for a core's persists ([`consensus::Durable`]): its safety record, Raft's
//! log entries (with the batches they name) and compaction.

use super::driver::{Driver, DriverError};
use super::protocol::Protocol;
use crate::store::{DurableOp, LogRow};
use consensus::Durable;

impl<P: Protocol> Driver<P> {
    /// The store write for one of the core's persists. Log entries are stored with the
    /// batches they name, which are here: the leader offers only stored batches, and a
    /// follower sees an append only once its batches are stored (see
    /// [`Protocol::payload_of`]).
    pub(super) fn durable_op(&self, what: Durable) -> Result<DurableOp, DriverError> {
        Ok(match what {
            Durable::Safety(bytes) => DurableOp::Meta(self.params.safety_key(P::SAFETY_KEY), bytes),
            Durable::Compact { before } => DurableOp::Compact { before },
            Durable::Log {
                truncate_after,
                entries,
            } => {
                let mut rows = Vec::with_capacity(entries.len());
                for (i, entry) in entries.into_iter().enumerate() {
                    let (term, payload) = P::log_entry(&entry).ok_or_else(|| {
                        DriverError::Safety(format!(
                            "the {} core asked to store a log entry it cannot decode",
                            P::NAME
                        ))
                    })?;
                    let mut batches = Vec::with_capacity(payload.len());
                    for d in &payload {
                        match self.batches.get(d) {
                            Some(b) => batches.push(b.txs.clone()),
                            None => {
                                return Err(DriverError::Safety(format!(
                                    "log entry {} names batch {d}, which is not stored here",
                                    truncate_after + 1 + i as u64
                                )));
                            }
                        }
                    }
                    rows.push(LogRow {
                        index: truncate_after + 1 + i as u64,
                        term,
                        entry,
                        batches,
                    });
                }
                DurableOp::Log {
                    truncate_after,
                    rows,
                }
            }
        })
    }
}
