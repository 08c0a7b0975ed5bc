//! Raft log entries (each one a ledger block), the messages replicas exchange, and the
//! certificate a committed block carries.
//!
//! Crash-fault model: messages carry no signatures (the libp2p transport authenticates the
//! sender). Only a log entry is signed, once, by the leader that creates it, so that a
//! committed ledger block names its leader and term verifiably: the block's certificate is
//! the signed [`Entry`] itself. That signature proves who proposed the block in which term,
//! not that a majority stored it (in the crash model every validator is trusted to report
//! commits honestly).

use super::membership::Membership;
use crate::types::{Committee, ReplicaId, View};
use crypto::{Digest, Domain, Hasher, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};

/// Largest encoded message accepted from the network.
pub const MAX_MESSAGE_BYTES: u64 = 8 << 20;
/// Entries per AppendEntries at most (a leader sends fewer; a receiver refuses more).
pub const MAX_ENTRIES_PER_APPEND: usize = 256;
/// Batch digests per entry at most.
pub const MAX_PAYLOAD: usize = 4096;

/// One log entry, which becomes ledger block `index` when committed. A leader appends an
/// empty entry (no payload) when it is elected, to commit the entries of earlier terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    /// The leader that created the entry.
    pub leader: ReplicaId,
    pub timestamp_ms: u64,
    /// Batch digests, in order.
    pub payload: Vec<Digest>,
    /// The leader's signature over [`Entry::id`] ([`Domain::RaftBlock`]).
    pub signature: Signature,
    /// A configuration entry carries the cluster's next configuration, in effect from the
    /// moment the entry is in a replica's log (`membership.rs`).
    pub config: Option<Membership>,
}

/// Why an entry (as a certificate) or a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("undecodable: {0}")]
    Decode(String),
    #[error("leader {0} is not in the committee")]
    UnknownLeader(ReplicaId),
    #[error("bad signature by {0}")]
    BadSignature(ReplicaId),
}

impl Entry {
    /// The entry's id: sha256 over the genesis hash and every field but the signature,
    /// domain-separated. Equal across replicas for the same entry; it is the block's
    /// consensus id.
    pub fn id_for(
        genesis: &Digest,
        term: u64,
        index: u64,
        leader: ReplicaId,
        timestamp_ms: u64,
        payload: &[Digest],
        config: Option<&Membership>,
    ) -> Digest {
        let mut h = Hasher::new();
        h.part(b"cairn/raft-entry/v1")
            .part(genesis.as_bytes())
            .part(&codec::encode(&(
                term,
                index,
                leader,
                timestamp_ms,
                payload,
            )));
        // Entries without a configuration keep the ids they always had.
        if let Some(c) = config {
            h.part(b"config").part(&codec::encode(c));
        }
        h.finish()
    }

    pub fn id(&self, genesis: &Digest) -> Digest {
        Entry::id_for(
            genesis,
            self.term,
            self.index,
            self.leader,
            self.timestamp_ms,
            &self.payload,
            self.config.as_ref(),
        )
    }

    /// Creates and signs an entry as `leader`.
    pub fn new(
        key: &SecretKey,
        genesis: &Digest,
        term: u64,
        index: u64,
        leader: ReplicaId,
        timestamp_ms: u64,
        payload: Vec<Digest>,
    ) -> Entry {
        let at = (term, index, leader, timestamp_ms);
        Entry::with_config(key, genesis, at, payload, None)
    }

    /// Creates and signs an entry as `leader`, at `(term, index, leader, timestamp_ms)`,
    /// carrying `config` if it is a configuration entry.
    pub fn with_config(
        key: &SecretKey,
        genesis: &Digest,
        (term, index, leader, timestamp_ms): (u64, u64, ReplicaId, u64),
        payload: Vec<Digest>,
        config: Option<Membership>,
    ) -> Entry {
        let id = Entry::id_for(
            genesis,
            term,
            index,
            leader,
            timestamp_ms,
            &payload,
            config.as_ref(),
        );
        Entry {
            term,
            index,
            leader,
            timestamp_ms,
            payload,
            signature: key.sign(Domain::RaftBlock, id.as_bytes()),
            config,
        }
    }

    /// Checks the leader's signature against the committee.
    pub fn verify(&self, committee: &Committee, genesis: &Digest) -> Result<(), Invalid> {
        let key = committee
            .key(self.leader)
            .ok_or(Invalid::UnknownLeader(self.leader))?;
        crypto::verify(
            Domain::RaftBlock,
            self.id(genesis).as_bytes(),
            key,
            &self.signature,
        )
        .map_err(|_| Invalid::BadSignature(self.leader))
    }

    /// The canonical bytes: the durable log record and the committed block's certificate.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, Invalid> {
        let e: Entry = codec::decode(bytes, MAX_MESSAGE_BYTES, "raft entry")
            .map_err(|e| Invalid::Decode(e.to_string()))?;
        if e.payload.len() > MAX_PAYLOAD {
            return Err(Invalid::Decode(format!(
                "{} batch digests in one entry (at most {MAX_PAYLOAD})",
                e.payload.len()
            )));
        }
        if e.oversized_config() {
            return Err(Invalid::Decode(format!(
                "the entry names more than {} servers",
                Committee::MAX
            )));
        }
        Ok(e)
    }

    /// A configuration larger than any committee (the decoder bounds the bytes; this bounds
    /// what a replica keeps per configuration).
    fn oversized_config(&self) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.voters.len() + c.learners.len() > Committee::MAX)
    }

    /// The term as a [`View`], for the ledger header and status.
    pub fn view(&self) -> View {
        View(self.term)
    }
}

/// What Raft replicas send each other. `term` is always the sender's current term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Pre-vote (Raft thesis §9.6): "would you vote for me in `term`?" — sent with the term
    /// the candidate *would* use; neither side changes its term.
    PreVote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    PreVoteReply {
        term: u64,
        granted: bool,
    },
    RequestVote {
        term: u64,
        last_index: u64,
        last_term: u64,
        /// The election follows a leader transfer (`TimeoutNow`): voters that still hear
        /// the old leader vote anyway (thesis §3.10), since that leader asked for it.
        transfer: bool,
    },
    /// Leader transfer (thesis §3.10): the leader tells a caught-up voter to start an
    /// election at once, skipping pre-vote.
    TimeoutNow {
        term: u64,
    },
    /// Sent only after the vote (and term) is durable.
    VoteReply {
        term: u64,
        granted: bool,
    },
    /// AppendEntries; empty `entries` is a heartbeat.
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: u64,
        /// The leader's latest ReadIndex round when it sent this (0: none yet). Echoed in
        /// the reply: a reply carrying round r proves the follower still took the sender
        /// for this term's leader after round r began.
        read_round: u64,
    },
    /// Success: the follower's log matches the leader's through `index` (sent only after
    /// the entries are durable). Failure: `index` is a hint, the follower's last log index
    /// (or the index before its first conflicting term), from which the leader retries.
    AppendReply {
        term: u64,
        success: bool,
        index: u64,
        /// The `read_round` of the Append this answers.
        read_round: u64,
    },
    /// A follower forwards a client's linearizable read (its own `id`) to the leader
    /// (Raft thesis §6.4).
    ReadIndex {
        term: u64,
        id: u64,
    },
    /// The leader's answer: serve read `id` once applied ≥ `index`; `None`: refused (no
    /// longer leader, or too many reads open).
    ReadIndexReply {
        term: u64,
        id: u64,
        index: Option<u64>,
    },
    /// InstallSnapshot: the entries this follower needs are compacted away at the leader.
    /// The follower's node fetches the leader's ledger state (at a height of at least
    /// `last_index`) in chunks, outside the core, installs it and restarts its core from it;
    /// the core then answers the next Append as usual.
    InstallSnapshot {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
}

impl Message {
    pub fn term(&self) -> u64 {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteReply { term, .. }
            | Message::RequestVote { term, .. }
            | Message::VoteReply { term, .. }
            | Message::Append { term, .. }
            | Message::AppendReply { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::ReadIndex { term, .. }
            | Message::ReadIndexReply { term, .. }
            | Message::TimeoutNow { term } => *term,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, Invalid> {
        let m: Message = codec::decode(bytes, MAX_MESSAGE_BYTES, "raft message")
            .map_err(|e| Invalid::Decode(e.to_string()))?;
        if let Message::Append { entries, .. } = &m {
            if entries.len() > MAX_ENTRIES_PER_APPEND {
                return Err(Invalid::Decode(format!(
                    "{} entries in one append (at most {MAX_ENTRIES_PER_APPEND})",
                    entries.len()
                )));
            }
            // The same bound as `Entry::decode`: an entry accepted here is persisted, and a
            // stored entry that `Entry::decode` refuses would stop the replica from restarting.
            if let Some(e) = entries.iter().find(|e| e.oversized_config()) {
                return Err(Invalid::Decode(format!(
                    "entry {} names more than {} servers",
                    e.index,
                    Committee::MAX
                )));
            }
            if let Some(e) = entries.iter().find(|e| e.payload.len() > MAX_PAYLOAD) {
                return Err(Invalid::Decode(format!(
                    "{} batch digests in entry {} (at most {MAX_PAYLOAD})",
                    e.payload.len(),
                    e.index
                )));
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committee() -> (Vec<SecretKey>, Committee) {
        let keys: Vec<SecretKey> = (0..3).map(|i| SecretKey::from_seed([i; 32])).collect();
        let c = Committee::new_cft(keys.iter().map(|k| k.public()).collect(), 1, 2).unwrap();
        (keys, c)
    }

    #[test]
    fn entry_signature_binds_every_field_and_the_chain() {
        let (keys, c) = committee();
        let g = crypto::hash(b"genesis");
        let e = Entry::new(
            &keys[1],
            &g,
            3,
            7,
            ReplicaId(1),
            5,
            vec![crypto::hash(b"b")],
        );
        assert_eq!(e.verify(&c, &g), Ok(()));
        assert_eq!(Entry::decode(&e.encode()), Ok(e.clone()));
        let other = crypto::hash(b"other chain");
        assert!(e.verify(&c, &other).is_err(), "another chain's entry");
        for bad in [
            Entry {
                term: 4,
                ..e.clone()
            },
            Entry {
                index: 8,
                ..e.clone()
            },
            Entry {
                timestamp_ms: 6,
                ..e.clone()
            },
            Entry {
                payload: vec![],
                ..e.clone()
            },
            Entry {
                leader: ReplicaId(2),
                ..e.clone()
            },
            Entry {
                config: Some(Membership::voters([ReplicaId(0)])),
                ..e.clone()
            },
        ] {
            assert!(bad.verify(&c, &g).is_err(), "{bad:?}");
        }
        let stranger = Entry {
            leader: ReplicaId(9),
            ..e.clone()
        };
        assert_eq!(
            stranger.verify(&c, &g),
            Err(Invalid::UnknownLeader(ReplicaId(9)))
        );
    }

    #[test]
    fn oversized_appends_are_refused_before_use() {
        let (keys, _) = committee();
        let g = crypto::hash(b"genesis");
        let e = Entry::new(&keys[0], &g, 1, 1, ReplicaId(0), 0, vec![]);
        let m = Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![e; MAX_ENTRIES_PER_APPEND + 1],
            commit: 0,
            read_round: 0,
        };
        assert!(Message::decode(&m.encode()).is_err());
        assert!(Message::decode(b"\xff\xff").is_err());
    }

    #[test]
    fn a_configuration_larger_than_any_committee_is_refused_before_use() {
        let (keys, _) = committee();
        let g = crypto::hash(b"genesis");
        let config = |n: usize| Membership::voters((0..n).map(|i| ReplicaId(i as u16)));
        let entry = |n| {
            let at = (1, 1, ReplicaId(0), 0);
            Entry::with_config(&keys[0], &g, at, vec![], Some(config(n)))
        };
        let append = |e: Entry| Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![e],
            commit: 0,
            read_round: 0,
        };
        let fits = entry(Committee::MAX);
        assert_eq!(Entry::decode(&fits.encode()), Ok(fits.clone()));
        assert!(Message::decode(&append(fits).encode()).is_ok());
        let big = entry(Committee::MAX + 1);
        let err = Entry::decode(&big.encode()).unwrap_err().to_string();
        assert!(err.contains("more than 1024 servers"), "{err}");
        let err = Message::decode(&append(big).encode())
            .unwrap_err()
            .to_string();
        assert!(err.contains("names more than 1024 servers"), "{err}");
    }
}
