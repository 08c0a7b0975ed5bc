//! [`RaftProtocol`]: the Raft core (`consensus::raft`) as the driver sees it.
//!
//! The crash-fault trade, concretely: Raft messages are not signed (libp2p authenticates the
//! sender), each log entry is signed once by its leader, and that signed entry is the
//! committed block's certificate. It proves which leader proposed the block in which term,
//! not that a majority stored it.

use super::driver::DriverError;
use super::protocol::{Certified, CoreParams, Protocol, Transfer};
use crate::store::RedbStore;
use consensus::raft::{self, Entry, Membership, Message, Raft};
use consensus::{Committee, ReplicaId};
use crypto::{Digest, codec};
use ledger::{Ledger, Store};

/// Raft (`consensus::raft`): pre-vote, check-quorum, log compaction and snapshots.
pub struct RaftProtocol;

/// Entries per append, at most.
const APPEND_ENTRIES: usize = 64;
/// Appends in flight to one follower (pipelining), at most.
const INFLIGHT: usize = 8;

fn raft_certified(e: &Entry, genesis: &Digest) -> Certified {
    Certified {
        id: e.id(genesis),
        view: e.view(),
        proposer: e.leader,
        timestamp_ms: e.timestamp_ms,
        payload: e.payload.clone(),
        parent: None,
        proves_commit: true,
        height: Some(e.index),
    }
}

/// Most bytes a stored configuration record may take (a configuration of
/// `Committee::MAX` voters and as many learners, with room to spare).
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// A configuration record ([`super::protocol::RAFT_CONFIG_KEY`]): `(index, membership)`.
fn decode_config(bytes: &[u8]) -> Result<(u64, Membership), String> {
    let (index, m): (u64, Membership) =
        codec::decode(bytes, MAX_CONFIG_BYTES, "raft configuration").map_err(|e| e.to_string())?;
    if m.voters.is_empty() || m.voters.len() + m.learners.len() > Committee::MAX {
        return Err(format!(
            "a raft configuration of {} voters and {} learners",
            m.voters.len(),
            m.learners.len()
        ));
    }
    Ok((index, m))
}

/// The configuration at the applied height: the stored one (at the compaction point or an
/// installed snapshot), or a later one in the stored log at or below the applied height;
/// with neither, the genesis set's (every genesis validator a voter).
fn recovered_config(
    params: &CoreParams,
    ledger: &Ledger<RedbStore>,
    rows: &[crate::store::LogRow],
) -> Result<Membership, DriverError> {
    let applied = ledger.height();
    let mut config = match ledger.store().meta(super::protocol::RAFT_CONFIG_KEY)? {
        Some(bytes) => Some(
            decode_config(&bytes)
                .map_err(|e| DriverError::Safety(format!("the stored raft configuration: {e}")))?,
        ),
        None => None,
    };
    for r in rows.iter().filter(|r| r.index <= applied) {
        if config.as_ref().is_some_and(|(i, _)| *i >= r.index) {
            continue;
        }
        let e = Entry::decode(&r.entry)
            .map_err(|e| DriverError::Safety(format!("stored log entry {}: {e}", r.index)))?;
        if let Some(c) = e.config {
            config = Some((r.index, c));
        }
    }
    Ok(config.map(|(_, m)| m).unwrap_or_else(|| {
        Membership::voters((0..params.genesis_members).map(|i| ReplicaId(i as u16)))
    }))
}

/// Seeds the election-timeout draws: distinct per validator and per start, so two validators
/// (or two lives of one) do not time out in lockstep. The core itself uses no randomness but
/// this seed.
fn election_seed(params: &CoreParams) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut h = crypto::Hasher::new();
    h.part(b"cairn/raft-seed")
        .part(&params.key.public().0)
        .part(&nanos.to_le_bytes())
        .part(&std::process::id().to_le_bytes());
    let d = h.finish();
    u64::from_le_bytes(d.0[..8].try_into().expect("8 bytes"))
}

impl Protocol for RaftProtocol {
    type Message = Message;
    type Core = Raft;

    const NAME: &'static str = "raft";
    const SAFETY_KEY: &'static str = "raft/hard_state";
    const VIEW_TIMER: u64 = raft::ELECTION_TIMER;
    const LEDGER_SYNC: bool = false;
    const TRUSTS_PEER_BATCHES: bool = true;
    const ATTESTS_HEADERS: bool = false;
    const EPOCH_CORES: bool = false;

    /// Term and vote, the ledger tip (every entry up to it is applied) with its entry, and
    /// the durable log.
    fn build(
        params: &CoreParams,
        ledger: &Ledger<RedbStore>,
        safety: Option<Vec<u8>>,
    ) -> Result<Raft, DriverError> {
        let hard_state = match safety {
            Some(s) => Some(s),
            None => ledger.store().meta(&params.safety_key(Self::SAFETY_KEY))?,
        };
        let applied = ledger.height();
        let rows = ledger.store().log_rows()?;
        // The applied entry: the stored block's certificate, or (a block executed but not
        // yet written by the store stage, when a joiner's core is rebuilt mid-stream) its
        // log row, which compaction cannot have dropped before the block was stored.
        let applied_entry = match applied {
            0 => None,
            h => Some(match ledger.store().block(h)? {
                Some(b) => b.certificate,
                None => rows
                    .iter()
                    .find(|r| r.index == h)
                    .map(|r| r.entry.clone())
                    .ok_or_else(|| {
                        DriverError::Safety(format!("block {h} missing from the store"))
                    })?,
            }),
        };
        let config = recovered_config(params, ledger, &rows)?;
        let entries = rows.into_iter().map(|r| r.entry).collect();
        let snapshot_interval = params.snapshot_interval.max(1);
        let cfg = raft::Config {
            me: params.me,
            key: params.key.clone(),
            committee: params.committee.clone(),
            genesis: params.genesis,
            election_timeout_ms: params.base_timeout_ms,
            heartbeat_ms: params
                .idle_block_ms
                .clamp(1, params.base_timeout_ms.max(2) / 2),
            seed: election_seed(params),
            max_payload: params.max_payload,
            max_append_entries: APPEND_ENTRIES,
            max_inflight: INFLIGHT,
            snapshot_interval,
            log_keep: (snapshot_interval / 4).max(1),
        };
        let mut core = Raft::new(
            cfg,
            raft::Recovered {
                hard_state,
                applied,
                applied_entry,
                entries,
                config: Some(config),
            },
        )
        .map_err(|e| DriverError::Safety(e.to_string()))?;
        // The members the ledger names: the target a leader steers to (not durable in the
        // core; a new core needs it again). A follower's core does nothing with it yet.
        let vs = ledger.validators();
        if !vs.members.is_empty() {
            let _ = core.set_members(vs.ids.iter().map(|id| ReplicaId(*id)).collect());
        }
        Ok(core)
    }

    fn follow_members(
        core: &mut Raft,
        committee: Committee,
        members: std::collections::BTreeSet<ReplicaId>,
    ) -> Vec<consensus::Action<Message>> {
        core.set_committee(committee);
        core.set_members(members)
    }

    fn config_record(core: &Raft, index: u64) -> Option<Vec<u8>> {
        Some(codec::encode(&(index, core.membership_at(index))))
    }

    fn valid_config_record(bytes: &[u8]) -> bool {
        decode_config(bytes).is_ok()
    }

    fn safety_bytes(core: &Raft) -> Vec<u8> {
        core.hard_state().encode()
    }

    fn pending_payload(core: &Raft) -> Vec<Digest> {
        core.pending_payload()
    }

    fn leader(core: &Raft) -> Option<ReplicaId> {
        core.leader()
    }

    /// Elections this validator started.
    fn view_changes(core: &Raft) -> u64 {
        core.stats().elections
    }

    fn raft_config(core: &Raft) -> Option<crate::api::RaftConfigView> {
        let m = core.membership();
        Some(crate::api::RaftConfigView {
            voters: m.voters.iter().map(|v| v.0).collect(),
            learners: m.learners.iter().map(|l| l.0).collect(),
            config_index: core.membership_index(),
            committed: core.membership_index() <= core.commit_index(),
        })
    }

    fn transfer_leadership(core: &mut Raft, to: Option<ReplicaId>) -> Transfer<Message> {
        let acts = core.transfer_leadership(to).map_err(|e| match e {
            raft::TransferError::NotLeader => match core.leader() {
                Some(l) => format!("this validator is not the leader: validator {} is", l.0),
                None => "this validator is not the leader, and no leader is known yet".into(),
            },
            e => e.to_string(),
        })?;
        let target = core
            .transferring()
            .expect("a transfer that started has a target");
        Ok((target, acts))
    }

    fn payload_of(msg: &Message) -> Vec<Digest> {
        match msg {
            Message::Append { entries, .. } => entries
                .iter()
                .flat_map(|e| e.payload.iter().copied())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// One granted vote per term; the digest names the candidate.
    fn vote_slot(msg: &Message, to: Option<ReplicaId>) -> Option<(String, Digest)> {
        match (msg, to) {
            (
                Message::VoteReply {
                    term,
                    granted: true,
                },
                Some(to),
            ) => Some((format!("{term}/vote"), crypto::hash(&to.0.to_le_bytes()))),
            _ => None,
        }
    }

    /// The entry, signed by its leader, who is in the committee.
    fn certified(cert: &[u8], committee: &Committee, genesis: &Digest) -> Option<Certified> {
        let e = Entry::decode(cert).ok()?;
        e.verify(committee, genesis).ok()?;
        Some(raft_certified(&e, genesis))
    }

    fn decode_certified(cert: &[u8], genesis: &Digest) -> Option<Certified> {
        Entry::decode(cert)
            .ok()
            .map(|e| raft_certified(&e, genesis))
    }

    fn log_entry(entry: &[u8]) -> Option<(u64, Vec<Digest>)> {
        Entry::decode(entry).ok().map(|e| (e.term, e.payload))
    }

    fn snapshot_offer(msg: &Message) -> Option<u64> {
        match msg {
            Message::InstallSnapshot { last_index, .. } => Some(*last_index),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_votes_are_logged_and_name_the_candidate() {
        let granted = Message::VoteReply {
            term: 3,
            granted: true,
        };
        let a = RaftProtocol::vote_slot(&granted, Some(ReplicaId(1))).unwrap();
        let b = RaftProtocol::vote_slot(&granted, Some(ReplicaId(2))).unwrap();
        assert_eq!(a.0, "3/vote");
        assert_eq!(a.0, b.0);
        assert_ne!(
            a.1, b.1,
            "two candidates in one term are two different votes"
        );
        let refused = Message::VoteReply {
            term: 3,
            granted: false,
        };
        assert_eq!(RaftProtocol::vote_slot(&refused, Some(ReplicaId(1))), None);
    }
}
