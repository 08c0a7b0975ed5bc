//! Raft in the simulator: [`RaftSim`], its crash-fault scenarios (`scenario.rs`), its
//! cluster-wide invariants (`invariants.rs`) and a scripted cluster for hand-written
//! message schedules such as the Raft paper's Figure 8 (`script.rs`).
//!
//! Raft tolerates crash faults only: its scenarios crash and restart replicas, partition the
//! network (also one way), drop, duplicate, delay and reorder messages, and never make a
//! replica Byzantine (the simulator refuses such a scenario for Raft).

mod invariants;
mod scenario;
pub mod script;

pub use invariants::RaftInvariants;
pub use scenario::raft_scenario;

use super::check::VoteSlot;
use super::cluster::ClusterInvariants;
use super::protocol::{ByzCtx, Dest, Disk, Params, SimProtocol};
use super::scenario::Scenario;
use consensus::raft::{self, Entry, Message, Raft};
use consensus::{Committee, ReplicaId, View};
use crypto::{Digest, PublicKey, SecretKey};
use rand_chacha::ChaCha8Rng;

pub struct RaftSim;

/// The crash-fault committee of `keys`: f = ⌊(n−1)/2⌋, quorum = majority.
pub fn cft_committee(keys: Vec<PublicKey>) -> Committee {
    let n = keys.len();
    Committee::new_cft(keys, (n - 1) / 2, n / 2 + 1).expect("valid crash-fault committee")
}

/// The core's configuration in a simulation run.
pub fn config(
    me: ReplicaId,
    key: SecretKey,
    committee: Committee,
    genesis: Digest,
    params: &Params,
) -> raft::Config {
    let r = &params.raft;
    raft::Config {
        me,
        key,
        committee,
        genesis,
        election_timeout_ms: r.election_timeout_ms,
        heartbeat_ms: r.heartbeat_ms,
        // One election-timeout stream per run and replica.
        seed: params.seed ^ (u64::from(me.0) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        max_payload: params.max_payload,
        max_append_entries: r.max_append_entries,
        max_inflight: r.max_inflight,
        snapshot_interval: r.snapshot_interval,
        log_keep: r.log_keep,
    }
}

/// What a (re)started replica reads back: hard state, ledger height, the certificate of the
/// ledger's last block (its encoded entry) and the durable log in index order.
pub fn recovered(disk: &Disk, params: &Params) -> raft::Recovered {
    let config = match &disk.config {
        Some(bytes) => {
            Some(crypto::codec::decode(bytes, 1 << 20, "raft config").expect("encoded here"))
        }
        None => params
            .raft
            .initial_voters
            .map(|k| raft::Membership::voters((0..k).map(|i| ReplicaId(i as u16)))),
    };
    raft::Recovered {
        config,
        hard_state: disk.safety.clone(),
        applied: disk.height,
        applied_entry: match disk.height {
            0 => None,
            _ => disk.certificates.last().cloned(),
        },
        entries: disk.log.clone(),
    }
}

impl SimProtocol for RaftSim {
    type Msg = Message;
    type Core = Raft;
    const NAME: &'static str = "raft";
    /// The last block's certificate: the entry at the applied index.
    const HISTORY: u64 = 1;
    const CRASH_FAULTS_ONLY: bool = true;

    fn committee(keys: Vec<PublicKey>) -> Committee {
        cft_committee(keys)
    }

    fn random_scenario(seed: u64) -> Scenario {
        raft_scenario(seed)
    }

    fn snapshot_offer(msg: &Message) -> Option<u64> {
        match msg {
            Message::InstallSnapshot { last_index, .. } => Some(*last_index),
            _ => None,
        }
    }

    fn cluster_invariants(
        genesis: Digest,
        params: &Params,
    ) -> Option<Box<dyn ClusterInvariants<Self>>> {
        Some(Box::new(RaftInvariants::new(genesis, params)))
    }

    fn build(
        me: ReplicaId,
        key: SecretKey,
        committee: Committee,
        genesis: Digest,
        params: &Params,
        disk: &Disk,
    ) -> Raft {
        let cfg = config(me, key, committee, genesis, params);
        let mut core =
            Raft::new(cfg, recovered(disk, params)).expect("simulated disk holds a valid log");
        core.set_unsafe_reply_before_persist(params.raft.unsafe_reply_before_persist);
        core.set_unsafe_stale_reads(params.raft.unsafe_stale_reads);
        core.set_unsafe_multi_server_changes(params.raft.unsafe_multi_server_changes);
        core
    }

    /// The entry's term as the view; the id is the hash of the certificate bytes (the entry
    /// id needs the genesis, which this function is not given; only the view is used).
    fn committed_ref(certificate: &[u8]) -> Option<(Digest, View)> {
        Entry::decode(certificate)
            .ok()
            .map(|e| (crypto::hash(certificate), e.view()))
    }

    fn set_members(
        core: &mut Raft,
        members: &std::collections::BTreeSet<ReplicaId>,
    ) -> Vec<consensus::Action<Message>> {
        core.set_members(members.clone())
    }

    fn voters(core: &Raft) -> Option<std::collections::BTreeSet<ReplicaId>> {
        Some(core.membership().voters.clone())
    }

    fn config_of(certificate: &[u8]) -> Option<Vec<u8>> {
        let e = Entry::decode(certificate).ok()?;
        e.config.map(|c| crypto::codec::encode(&c))
    }

    fn verify_certificate(certificate: &[u8], committee: &Committee, genesis: &Digest) -> bool {
        Entry::decode(certificate).is_ok_and(|e| e.verify(committee, genesis).is_ok())
    }

    fn view_of(msg: &Message) -> Option<View> {
        Some(View(msg.term()))
    }

    fn encode(msg: &Message) -> Vec<u8> {
        msg.encode()
    }

    /// A vote reply does not name the candidate; election safety is checked on the cores.
    fn votes_of(_msg: &Message) -> Vec<(VoteSlot, Digest)> {
        vec![]
    }

    /// Terms after the first: elections that followed a leader's loss.
    fn view_changes(core: &Raft) -> u64 {
        core.term().saturating_sub(1)
    }

    fn misbehave(
        _ctx: &ByzCtx<'_, Message>,
        _dest: Dest,
        _msg: Message,
        _rng: &mut ChaCha8Rng,
    ) -> Vec<(Dest, Message)> {
        unreachable!("Raft scenarios have no Byzantine replicas (Sim::new refuses them)")
    }
}
