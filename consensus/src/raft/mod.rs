//! Raft (Ongaro & Ousterhout, 2014; thesis 2014) for crash faults only, on the same ledger,
//! store and network as the BFT modes.
//!
//! - `messages.rs`: [`Entry`] (a log entry = a ledger block, signed once by its leader; the
//!   committed block's certificate), [`Message`].
//! - `core.rs`: [`Raft`], the replica: pre-vote, check-quorum, randomized (seeded) election
//!   timeouts, log replication with batching and pipelining, commit by counting only for
//!   entries of the current term, a no-op entry on election, log compaction and
//!   InstallSnapshot offers; the durable [`HardState`].
//!   Its handlers: `election.rs` (timers, pre-vote, votes, check-quorum, role changes),
//!   `replication.rs` (the leader: proposing, Appends, commit), `follower.rs` (receiving
//!   Append and InstallSnapshot), `log.rs` (the in-memory log above its base),
//!   `commit.rs` (committed entries, pending payload, compaction), `recovery.rs` (restart),
//!   `read.rs` (linearizable reads by ReadIndex), `membership.rs` (configurations: voters
//!   and learners, single-server changes) and `reconfig.rs` (the leader steering the
//!   configuration towards the ledger's members; leader transfer).
//! - `tests.rs`: exact-action unit tests.
//!
//! Log index i is ledger height i.

mod commit;
mod core;
mod election;
mod follower;
mod log;
mod membership;
mod messages;
mod read;
mod reconfig;
mod recovery;
mod replication;
#[cfg(test)]
mod tests;

pub use core::{
    Config, ELECTION_TIMER, HEARTBEAT_TIMER, HardState, Raft, RecoverError, Recovered, Role, Stats,
};
pub use membership::Membership;
pub use messages::{
    Entry, Invalid, MAX_ENTRIES_PER_APPEND, MAX_MESSAGE_BYTES, MAX_PAYLOAD, Message,
};
pub use read::MAX_OPEN_READS;
pub use reconfig::TransferError;
