//! The interface every protocol core implements: inputs in, actions out.
//!
//! # To ensure correctness (what a driver must do)
//!
//! A driver (the real node, or the simulator) owns one core and loops:
//! feed an [`Input`] to [`Core::handle`], then carry out every [`Action`] it returned, in
//! order. In particular:
//!
//! - [`Action::Persist`] must be written to stable storage (fsynced) before the driver feeds
//!   back [`Input::Persisted`] with that sequence number (or a later one). The driver may
//!   batch: write several records and acknowledge only the highest. Messages that depend on
//!   the record (votes, timeouts, Raft replies) are held *inside the core* and appear as
//!   actions only after the acknowledgement, so they cannot be sent early by mistake.
//! - [`Action::SetTimer`] replaces any earlier timer with the same id; when it expires the
//!   driver feeds [`Input::Timer`] with that id.
//! - [`Action::Commit`]s arrive in commit order, each exactly once per core lifetime (a core
//!   rebuilt after a crash starts from the committed point the driver recovered).
//! - `now_ms` passed to [`Core::handle`] is the driver's clock; cores use it only for values
//!   they put in proposals (timestamps), never for timing decisions.
//!
//! Block and payload sync between replicas is part of each protocol's message type; the
//! driver only moves messages.

use crate::types::{ReplicaId, View};
use crypto::Digest;

/// One durable write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durable {
    /// Replace the protocol's safety record (HotStuff/PBFT: last votes and certificates;
    /// Raft: term and vote). Opaque bytes the core decodes when it is rebuilt.
    Safety(Vec<u8>),
    /// Raft: drop every log entry after index `truncate_after`, then append `entries`
    /// (opaque encoded entries) starting at `truncate_after + 1`.
    Log {
        truncate_after: u64,
        entries: Vec<Vec<u8>>,
    },
    /// Raft: log entries with index `< before` are applied to the ledger and may be deleted
    /// (log compaction). Nothing waits on it, but it is ordered with the other writes.
    Compact { before: u64 },
}

/// What a core is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<M> {
    /// A message from replica `from`, as authenticated by the transport.
    Message { from: ReplicaId, msg: M },
    /// A timer the core set has expired.
    Timer(u64),
    /// A batch of transactions, identified by the digest of its canonical bytes, is stored
    /// locally and may be proposed. The driver guarantees batch availability; the core only
    /// orders digests.
    Payload(Digest),
    /// Every [`Action::Persist`] with `seq <= this` is durable.
    Persisted(u64),
    /// The ledger executed the block at `height` (the `height`-th [`Action::Commit`] of the
    /// chain) and its state root is `state_root`. PBFT checkpoints sign it; HotStuff and Raft
    /// ignore it. Fed in height order, after the block is durable.
    Executed { height: u64, state_root: Digest },
    /// A client asks for a linearizable read; `id` is the driver's, unique among its open
    /// reads. Raft answers [`Action::ReadReady`] once it has confirmed, by ReadIndex, an
    /// index every acknowledged write is at or below; the BFT cores answer
    /// [`Action::ReadFailed`] (their reads are verified with certificates instead).
    Read(u64),
}

/// A block the protocol has committed, in commit order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The protocol's identifier of the block (HotStuff block id, PBFT digest, Raft entry id).
    pub id: Digest,
    pub view: View,
    pub proposer: ReplicaId,
    pub timestamp_ms: u64,
    /// Batch digests in order.
    pub payload: Vec<Digest>,
    /// The protocol's proof that the block is committed, canonically encoded: anyone with the
    /// genesis file can check it.
    pub certificate: Vec<u8>,
}

/// What a core asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<M> {
    Send {
        to: ReplicaId,
        msg: M,
    },
    /// Send to every other replica.
    Broadcast {
        msg: M,
    },
    Persist {
        seq: u64,
        what: Durable,
    },
    Commit(Committed),
    SetTimer {
        id: u64,
        after_ms: u64,
    },
    /// Read `id` may be served from this replica's state once it has applied `index`
    /// (and not before): every write acknowledged before the read was asked is at or below
    /// `index`.
    ReadReady {
        id: u64,
        index: u64,
    },
    /// Read `id` cannot be served here (no leader known, leadership lost or never
    /// confirmed, too many reads open, or a protocol without ReadIndex): ask again or
    /// elsewhere.
    ReadFailed {
        id: u64,
    },
}

/// A protocol state machine.
pub trait Core {
    type Message: Clone + std::fmt::Debug;

    /// Called once after construction (fresh or recovered): sets the first timers and sends
    /// whatever a starting replica sends.
    fn start(&mut self, now_ms: u64) -> Vec<Action<Self::Message>>;

    /// Processes one input. Invalid or irrelevant inputs are ignored (and counted), never
    /// fatal: everything a core is given may come from a Byzantine replica.
    fn handle(&mut self, now_ms: u64, input: Input<Self::Message>) -> Vec<Action<Self::Message>>;

    /// This replica's current view or term, for status and metrics.
    fn view(&self) -> View;
}
