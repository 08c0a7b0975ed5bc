//! The consensus file's durable writes: safety records and Raft's log ([`DurableOp`],
//! [`RedbStore::write_durable`]), and reading the log back ([`RedbStore::log_rows`]).

use super::{MAX_LOG_ROW_BYTES, META, RAFT_LOG, RedbStore};
use crypto::codec;
use ledger::StoreError;
use redb::ReadableTable;

/// One durable Raft log entry: its term, its encoded entry and the batches it names (so a
/// committed entry can be executed after a crash of every replica).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    pub index: u64,
    pub term: u64,
    pub entry: Vec<u8>,
    pub batches: Vec<Vec<ledger::Transaction>>,
}

/// One write to the durable consensus state; [`RedbStore::write_durable`] applies a list of
/// them in one fsynced transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurableOp {
    /// Replace the metadata record `key` (a protocol's safety record; one per epoch).
    Meta(String, Vec<u8>),
    /// Drop log rows above `truncate_after`, then store `rows`.
    Log {
        truncate_after: u64,
        rows: Vec<LogRow>,
    },
    /// Drop log rows below `before`.
    Compact { before: u64 },
    /// Drop every log row below `index`; if the row at `index` is missing or has another
    /// term than `term`, drop every row (the log does not extend a snapshot at `index`).
    Rebase { index: u64, term: u64 },
}

impl RedbStore {
    /// Applies `ops` in order in one write transaction, fsynced before it returns.
    pub fn write_durable(&self, ops: &[DurableOp]) -> Result<(), StoreError> {
        self.write_consensus(|tx| {
            let mut meta = tx.open_table(META)?;
            let mut log = tx.open_table(RAFT_LOG)?;
            for op in ops {
                match op {
                    DurableOp::Meta(key, value) => {
                        meta.insert(key.as_str(), value.as_slice())?;
                    }
                    DurableOp::Log {
                        truncate_after,
                        rows,
                    } => {
                        log.retain_in((truncate_after.saturating_add(1)).., |_, _| false)?;
                        for r in rows {
                            let value = codec::encode(&(r.term, &r.entry, &r.batches));
                            log.insert(r.index, value.as_slice())?;
                        }
                    }
                    DurableOp::Compact { before } => {
                        log.retain_in(..*before, |_, _| false)?;
                    }
                    DurableOp::Rebase { index, term } => {
                        log.retain_in(..*index, |_, _| false)?;
                        let keeps = match log.get(*index)? {
                            Some(v) => decode_row(*index, v.value()).is_ok_and(|r| r.term == *term),
                            None => false,
                        };
                        if !keeps {
                            log.retain(|_, _| false)?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// The durable Raft log, in index order.
    pub fn log_rows(&self) -> Result<Vec<LogRow>, StoreError> {
        let raw: Vec<(u64, Vec<u8>)> = self.read_consensus(|tx| {
            let t = tx.open_table(RAFT_LOG)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })?;
        raw.into_iter()
            .map(|(i, v)| decode_row(i, &v).map_err(|e| StoreError::new("stored raft log row", e)))
            .collect()
    }
}

fn decode_row(index: u64, bytes: &[u8]) -> Result<LogRow, codec::DecodeError> {
    let (term, entry, batches): (u64, Vec<u8>, Vec<Vec<ledger::Transaction>>) =
        codec::decode(bytes, MAX_LOG_ROW_BYTES, "raft log row")?;
    Ok(LogRow {
        index,
        term,
        entry,
        batches,
    })
}
