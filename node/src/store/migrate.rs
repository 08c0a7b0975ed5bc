//! Opening a store written before the chain and consensus files were split: its safety
//! records and Raft log move into the consensus file.

use super::{GENESIS_KEY, META, RAFT_LOG, RedbStore};
use ledger::StoreError;
use redb::{ReadableTable, ReadableTableMetadata};

impl RedbStore {
    /// Moves safety records and Raft log rows that a store from before the two-file split
    /// kept in the chain file into the consensus file: copied durably first, then removed,
    /// so a crash in between leaves both copies (and the next open moves them again).
    pub(super) fn move_consensus_state(&self) -> Result<(), StoreError> {
        type Rows = (Vec<(String, Vec<u8>)>, Vec<(u64, Vec<u8>)>);
        let (meta, log): Rows = self.read(|tx| {
            let mut meta = Vec::new();
            for row in tx.open_table(META)?.iter()? {
                let (k, v) = row?;
                if k.value() != GENESIS_KEY {
                    meta.push((k.value().to_string(), v.value().to_vec()));
                }
            }
            let mut log = Vec::new();
            for row in tx.open_table(RAFT_LOG)?.iter()? {
                let (k, v) = row?;
                log.push((k.value(), v.value().to_vec()));
            }
            Ok((meta, log))
        })?;
        if meta.is_empty() && log.is_empty() {
            return Ok(());
        }
        self.write_consensus(|tx| {
            let mut m = tx.open_table(META)?;
            for (k, v) in &meta {
                if m.get(k.as_str())?.is_none() {
                    m.insert(k.as_str(), v.as_slice())?;
                }
            }
            let mut l = tx.open_table(RAFT_LOG)?;
            if l.is_empty()? {
                for (k, v) in &log {
                    l.insert(*k, v.as_slice())?;
                }
            }
            Ok(())
        })?;
        self.write(|tx| {
            let mut m = tx.open_table(META)?;
            for (k, _) in &meta {
                m.remove(k.as_str())?;
            }
            tx.open_table(RAFT_LOG)?.retain(|_, _| false)?;
            Ok(())
        })
    }
}
