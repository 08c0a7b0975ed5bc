//! Linearizable reads through the consensus core (Raft's ReadIndex; see
//! `consensus/src/raft/read.rs`). The API asks with [`ApiCommand::ReadIndex`]; the loop
//! feeds the core [`Input::Read`] and answers the request when the core answers the read:
//! with the index the validator must have applied before the API reads its store, or
//! refused. The BFT cores refuse every read (their reads are verified with certificates).
//!
//! [`ApiCommand::ReadIndex`]: crate::api::ApiCommand::ReadIndex

use super::driver::{Driver, Res};
use super::protocol::Protocol;
use consensus::Input;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// Reads waiting for the core at most; more are refused at once.
pub const MAX_OPEN_READS: usize = 4096;

/// The answer to a read: the index to have applied before reading, or `None` (refused:
/// no leader, leadership lost, too many reads; retry).
pub type ReadReply = oneshot::Sender<Option<u64>>;

/// Reads handed to the core and not answered yet, by the id the core knows them by.
#[derive(Debug, Default)]
pub struct OpenReads {
    next: u64,
    open: BTreeMap<u64, ReadReply>,
}

impl<P: Protocol> Driver<P> {
    /// A client's linearizable read: the core answers through [`Driver::read_answered`].
    pub fn read_index(&mut self, now: u64, reply: ReadReply) -> Res {
        // Requests whose client gave up (the API waits a bounded time) are dropped first.
        self.reads.open.retain(|_, r| !r.is_closed());
        if self.reads.open.len() >= MAX_OPEN_READS {
            let _ = reply.send(None);
            return Ok(Vec::new());
        }
        self.reads.next += 1;
        let id = self.reads.next;
        self.reads.open.insert(id, reply);
        self.feed(now, Input::Read(id))
    }

    /// The core's answer to read `id` (from [`Driver::run`]).
    pub(super) fn read_answered(&mut self, id: u64, index: Option<u64>) {
        if let Some(reply) = self.reads.open.remove(&id) {
            let _ = reply.send(index);
        }
    }

    /// Reads waiting for the core.
    pub fn open_reads(&self) -> usize {
        self.reads.open.len()
    }
}
