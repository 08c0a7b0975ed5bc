//! What the simulator needs to know about a protocol beyond the [`consensus::Core`] trait:
//! how to build a core from persisted state, which view a message belongs to (for Twins
//! partitions), what it signs (for the double-vote check), what must stay bounded in its
//! core, and how a Byzantine replica of this protocol misbehaves.
//!
//! [`HotStuffSim`] and [`PbftSim`] are implemented here, `RaftSim` in `raft/`.

use super::byz::Behaviour;
use super::check::{VoteKind, VoteSlot};
use super::cluster::ClusterInvariants;
use super::scenario::{Scenario, random_scenario};
use consensus::hotstuff::{self, HotStuff, Message};
use consensus::pbft::{self, Pbft};
use consensus::{Committee, Core, ReplicaId, View};
use crypto::{Digest, PublicKey, SecretKey};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Everything a replica finds on its disk after a restart.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub safety: Option<Vec<u8>>,
    /// The ledger height (last committed block).
    pub height: u64,
    pub log: Vec<Vec<u8>>,
    /// From the last committed ledger block's certificate.
    pub committed: Option<(Digest, View)>,
    /// Certificates of the last [`SimProtocol::HISTORY`] committed ledger blocks, oldest
    /// first (HotStuff: leader election; PBFT: answering peers that fetch).
    pub certificates: Vec<Vec<u8>>,
    /// The ledger height the running epoch's instance starts after (0 in epoch 0; the
    /// previous epoch's last block after a set change): PBFT's start checkpoint.
    pub start: u64,
    /// Raft: the configuration the newest configuration-carrying certificate at or below
    /// `height` names (what the node keeps beside its ledger), encoded; `None`: none yet.
    pub config: Option<Vec<u8>>,
}

/// Where a (possibly mutated) outgoing message goes.
#[derive(Clone, Debug)]
pub enum Dest {
    To(ReplicaId),
    All,
    /// Every replica in the set.
    Some(Vec<ReplicaId>),
}

#[derive(Clone, Debug)]
pub struct Params {
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub max_payload: usize,
    /// [`hotstuff::Config::idle_block_ms`].
    pub idle_block_ms: u64,
    /// [`pbft::Config::checkpoint_interval`] (HotStuff has no checkpoints).
    pub checkpoint_interval: u64,
    /// The run's seed: seeds the cores' own randomness (Raft's election timeouts), mixed with
    /// each replica's id.
    pub seed: u64,
    pub raft: RaftParams,
}

/// Raft's settings ([`consensus::raft::Config`]).
#[derive(Clone, Debug)]
pub struct RaftParams {
    pub election_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub max_append_entries: usize,
    pub max_inflight: usize,
    pub snapshot_interval: u64,
    pub log_keep: u64,
    /// Negative control: replies leave before the writes they acknowledge are durable.
    pub unsafe_reply_before_persist: bool,
    /// Negative control: a leader answers reads without confirming it still leads.
    pub unsafe_stale_reads: bool,
    /// Negative control: a leader changes several voters in one configuration entry.
    pub unsafe_multi_server_changes: bool,
    /// The first `k` replicas vote at genesis, the others are only known (they join through
    /// membership changes); `None`: all vote.
    pub initial_voters: Option<usize>,
}

impl Default for RaftParams {
    fn default() -> Self {
        RaftParams {
            election_timeout_ms: 300,
            heartbeat_ms: 50,
            max_append_entries: 8,
            max_inflight: 4,
            snapshot_interval: 8,
            log_keep: 4,
            unsafe_reply_before_persist: false,
            unsafe_stale_reads: false,
            unsafe_multi_server_changes: false,
            initial_voters: None,
        }
    }
}

/// What a Byzantine replica knows when it rewrites a message.
pub struct ByzCtx<'a, M> {
    pub behaviour: Behaviour,
    pub key: &'a SecretKey,
    pub committee: &'a Committee,
    pub genesis: &'a Digest,
    /// Messages it received lately (to replay).
    pub seen: &'a [M],
}

pub trait SimProtocol {
    type Msg: Clone + std::fmt::Debug;
    type Core: Core<Message = Self::Msg>;
    const NAME: &'static str;
    /// Ledger certificates a restarted replica reads back from its store.
    const HISTORY: u64;
    /// The protocol tolerates crash faults only (Raft): a scenario with Byzantine replicas
    /// or twins is refused.
    const CRASH_FAULTS_ONLY: bool = false;

    /// The committee of `keys` (BFT by default; Raft's is crash-fault, majority quorums).
    fn committee(keys: Vec<PublicKey>) -> Committee {
        Committee::bft(keys).expect("valid committee")
    }

    /// The random fault scenario of `seed` (the `sim` command and the default run).
    fn random_scenario(seed: u64) -> Scenario {
        random_scenario(seed, 4)
    }

    /// If `msg` tells its receiver to install a state snapshot from the sender (Raft's
    /// InstallSnapshot): the lowest ledger height it must reach.
    fn snapshot_offer(_msg: &Self::Msg) -> Option<u64> {
        None
    }

    /// The protocol's cluster-wide invariants, if it has any beyond the ledger checks.
    fn cluster_invariants(
        _genesis: Digest,
        _params: &Params,
    ) -> Option<Box<dyn ClusterInvariants<Self>>> {
        None
    }

    fn build(
        me: ReplicaId,
        key: SecretKey,
        committee: Committee,
        genesis: Digest,
        params: &Params,
        disk: &Disk,
    ) -> Self::Core;

    /// The committed block's (id, view) named by a ledger block's certificate.
    fn committed_ref(certificate: &[u8]) -> Option<(Digest, View)>;

    /// Raft: the configuration a committed block's certificate carries, encoded.
    fn config_of(_certificate: &[u8]) -> Option<Vec<u8>> {
        None
    }

    /// Checks a committed block's certificate as an outside verifier would.
    fn verify_certificate(certificate: &[u8], committee: &Committee, genesis: &Digest) -> bool;

    /// How the validator set may change (issue 21): `None` where the protocol's cores cannot
    /// switch sets yet, so every change is refused.
    fn governance() -> Option<ledger::validators::Rule> {
        None
    }

    /// What a (verified) certificate names, for ledger-level catch-up.
    fn certified_payload(_certificate: &[u8]) -> Option<Named> {
        None
    }

    /// The view a message belongs to (Twins partitions are per view).
    fn view_of(msg: &Self::Msg) -> Option<View>;

    fn encode(msg: &Self::Msg) -> Vec<u8>;

    /// Every vote `msg` carries that its signer may sign only once per slot, with what it
    /// votes for (for the double-vote check).
    fn votes_of(msg: &Self::Msg) -> Vec<(VoteSlot, Digest)>;

    /// Views (or terms) that ended without progress, for the summary.
    fn view_changes(core: &Self::Core) -> u64;

    /// Raft: the members the ledger names, told to a core; its actions.
    fn set_members(
        _core: &mut Self::Core,
        _members: &std::collections::BTreeSet<ReplicaId>,
    ) -> Vec<consensus::Action<Self::Msg>> {
        Vec::new()
    }

    /// Raft: the voters of the core's latest configuration.
    fn voters(_core: &Self::Core) -> Option<std::collections::BTreeSet<ReplicaId>> {
        None
    }

    /// What must hold of an honest core after every input (memory bounds).
    fn bounded(_core: &Self::Core, _params: &Params) -> Result<(), String> {
        Ok(())
    }

    /// What must hold of an honest running core at the end of a run, after every fault has
    /// healed and the liveness window has passed (garbage collection kept up).
    fn settled(_core: &Self::Core, _params: &Params) -> Result<(), String> {
        Ok(())
    }

    /// Rewrites an outgoing message of a Byzantine replica.
    fn misbehave(
        ctx: &ByzCtx<'_, Self::Msg>,
        dest: Dest,
        msg: Self::Msg,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(Dest, Self::Msg)>;
}

/// What a commit certificate names about its block ([`SimProtocol::certified_payload`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// The protocol's id of the block.
    pub id: Digest,
    /// Its parent's id, where the protocol links blocks (HotStuff).
    pub parent: Option<Digest>,
    /// Its ledger height, where the certificate names one (PBFT's sequence number).
    pub height: Option<u64>,
    /// Its batch digests, in order.
    pub payload: Vec<Digest>,
}

pub struct HotStuffSim;

impl SimProtocol for HotStuffSim {
    type Msg = Message;
    type Core = HotStuff;
    const NAME: &'static str = "hotstuff";
    const HISTORY: u64 = 64;

    fn build(
        me: ReplicaId,
        key: SecretKey,
        committee: Committee,
        genesis: Digest,
        params: &Params,
        disk: &Disk,
    ) -> HotStuff {
        let cfg = hotstuff::Config {
            me,
            key,
            committee,
            genesis,
            base_timeout_ms: params.base_timeout_ms,
            max_timeout_ms: params.max_timeout_ms,
            max_payload: params.max_payload,
            idle_block_ms: params.idle_block_ms,
        };
        let rec = hotstuff::Recovered {
            safety: disk.safety.clone(),
            committed: disk.committed,
            history: disk
                .certificates
                .iter()
                .filter_map(|c| hotstuff::activity_of(c))
                .collect(),
        };
        HotStuff::new(cfg, rec).expect("simulated disk holds a valid safety record")
    }

    fn committed_ref(certificate: &[u8]) -> Option<(Digest, View)> {
        hotstuff::CommitCertificate::decode(certificate)
            .ok()
            .map(|c| (c.block.id(), c.block.view))
    }

    fn verify_certificate(certificate: &[u8], committee: &Committee, genesis: &Digest) -> bool {
        hotstuff::CommitCertificate::decode(certificate)
            .is_ok_and(|c| c.verify(committee, genesis).is_ok())
    }

    fn governance() -> Option<ledger::validators::Rule> {
        Some(ledger::validators::Rule::Bft)
    }

    fn certified_payload(certificate: &[u8]) -> Option<Named> {
        let c = hotstuff::CommitCertificate::decode(certificate).ok()?;
        Some(Named {
            id: c.block.id(),
            parent: Some(c.block.parent()),
            height: None,
            payload: c.block.payload,
        })
    }

    fn view_of(msg: &Message) -> Option<View> {
        match msg {
            Message::Propose(p) => Some(p.block.view),
            Message::Vote(v) => Some(v.view),
            Message::Timeout(t) => Some(t.view),
            Message::Tc(tc) => Some(tc.view),
            Message::SyncRequest { .. } | Message::SyncResponse { .. } => None,
        }
    }

    fn encode(msg: &Message) -> Vec<u8> {
        msg.encode()
    }

    fn votes_of(msg: &Message) -> Vec<(VoteSlot, Digest)> {
        match msg {
            Message::Vote(v) => vec![(VoteSlot::view(v.view), v.block)],
            _ => vec![],
        }
    }

    fn view_changes(core: &HotStuff) -> u64 {
        core.stats().views_by_tc
    }

    fn misbehave(
        ctx: &ByzCtx<'_, Message>,
        dest: Dest,
        msg: Message,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(Dest, Message)> {
        let (key, committee, seen) = (ctx.key, ctx.committee, ctx.seen);
        match (ctx.behaviour, msg) {
            (Behaviour::Equivocate, Message::Propose(p)) => {
                // A second block for the same view. Each half gets one block first and the
                // other one after it, so every replica sees both, in different orders.
                let mut other = p.block.clone();
                other.payload.reverse();
                other.payload.truncate(other.payload.len() / 2);
                other.timestamp_ms += 1;
                let p2 = hotstuff::Proposal::new(other, p.tc.clone(), key);
                let ids: Vec<ReplicaId> = committee.ids().collect();
                let (a, b) = ids.split_at(ids.len() / 2);
                let p2 = Message::Propose(Box::new(p2));
                let p = Message::Propose(p);
                vec![
                    (Dest::Some(a.to_vec()), p.clone()),
                    (Dest::Some(b.to_vec()), p2.clone()),
                    (Dest::Some(b.to_vec()), p),
                    (Dest::Some(a.to_vec()), p2),
                ]
            }
            (Behaviour::BadSignatures, mut m) => {
                match &mut m {
                    Message::Propose(p) => p.signature.0[7] ^= 1,
                    Message::Vote(v) => v.signature.0[7] ^= 1,
                    Message::Timeout(t) => t.signature.0[7] ^= 1,
                    Message::Tc(tc) => {
                        if let Some(e) = tc.timeouts.first_mut() {
                            e.2.0[7] ^= 1
                        }
                    }
                    _ => {}
                }
                vec![(dest, m)]
            }
            (Behaviour::Withhold, Message::Vote(_)) => vec![],
            (Behaviour::StaleAndFuture, m) => {
                let mut out = vec![(dest, m.clone())];
                // Replay something old.
                if !seen.is_empty() {
                    let old = seen[rng.gen_range(0..seen.len())].clone();
                    out.push((Dest::All, old));
                }
                // A correctly signed timeout for a view far ahead, and a forged TC for one.
                if let Message::Timeout(t) = &m {
                    let ahead = View(t.view.0 + rng.gen_range(2..40));
                    let me = t.author;
                    let future =
                        hotstuff::Timeout::new(ctx.genesis, ahead, t.high_qc.clone(), me, key);
                    out.push((Dest::All, Message::Timeout(Box::new(future.clone()))));
                    let forged = hotstuff::TimeoutCert {
                        view: ahead,
                        timeouts: committee
                            .ids()
                            .map(|id| (id, t.high_qc.view, future.signature))
                            .collect(),
                        high_qc: t.high_qc.clone(),
                    };
                    out.push((Dest::All, Message::Tc(forged)));
                }
                out
            }
            (_, m) => vec![(dest, m)],
        }
    }
}

/// The committee split in two halves (an equivocator shows each half something else).
fn halves(committee: &Committee) -> (Vec<ReplicaId>, Vec<ReplicaId>) {
    let ids: Vec<ReplicaId> = committee.ids().collect();
    let (a, b) = ids.split_at(ids.len() / 2);
    (a.to_vec(), b.to_vec())
}

pub struct PbftSim;

impl SimProtocol for PbftSim {
    type Msg = pbft::Message;
    type Core = Pbft;
    const NAME: &'static str = "pbft";
    /// As many as the core keeps to answer fetches.
    const HISTORY: u64 = pbft::RECENT_CERTIFICATES as u64;

    fn build(
        me: ReplicaId,
        key: SecretKey,
        committee: Committee,
        genesis: Digest,
        params: &Params,
        disk: &Disk,
    ) -> Pbft {
        let cfg = pbft::Config {
            me,
            key,
            committee,
            genesis,
            base_timeout_ms: params.base_timeout_ms,
            max_timeout_ms: params.max_timeout_ms,
            max_payload: params.max_payload,
            idle_block_ms: params.idle_block_ms,
            checkpoint_interval: params.checkpoint_interval,
            start: pbft::CheckpointCert::start(disk.start, genesis),
        };
        let rec = pbft::Recovered {
            safety: disk.safety.clone(),
            height: disk.height,
            recent: disk.certificates.clone(),
        };
        Pbft::new(cfg, rec).expect("simulated disk holds a valid safety record")
    }

    fn committed_ref(certificate: &[u8]) -> Option<(Digest, View)> {
        pbft::CommitCertificate::decode(certificate)
            .ok()
            .map(|c| (c.block.digest(), c.view))
    }

    fn verify_certificate(certificate: &[u8], committee: &Committee, genesis: &Digest) -> bool {
        pbft::CommitCertificate::decode(certificate)
            .is_ok_and(|c| c.verify(committee, genesis).is_ok())
    }

    fn governance() -> Option<ledger::validators::Rule> {
        Some(ledger::validators::Rule::Bft)
    }

    fn certified_payload(certificate: &[u8]) -> Option<Named> {
        let c = pbft::CommitCertificate::decode(certificate).ok()?;
        Some(Named {
            id: c.block.digest(),
            parent: None,
            height: Some(c.block.seq),
            payload: c.block.payload,
        })
    }

    fn view_of(msg: &pbft::Message) -> Option<View> {
        msg.view()
    }

    fn encode(msg: &pbft::Message) -> Vec<u8> {
        msg.encode()
    }

    /// PRE-PREPAREs (also those a NEW-VIEW re-issues), PREPAREs and COMMITs by (view, seq,
    /// phase); CHECKPOINTs by sequence number (an honest replica's state root at a number
    /// never changes).
    fn votes_of(msg: &pbft::Message) -> Vec<(VoteSlot, Digest)> {
        use pbft::Message as M;
        let slot = |view, seq, kind| VoteSlot { view, seq, kind };
        match msg {
            M::PrePrepare(p) => vec![(
                slot(p.view, p.block.seq, VoteKind::PrePrepare),
                p.block.digest(),
            )],
            M::NewView(nv) => nv
                .pre_prepares
                .iter()
                .map(|p| {
                    (
                        slot(p.view, p.block.seq, VoteKind::PrePrepare),
                        p.block.digest(),
                    )
                })
                .collect(),
            M::Prepare(v) => vec![(slot(v.view, v.seq, VoteKind::Prepare), v.digest)],
            M::Commit(v) => vec![(slot(v.view, v.seq, VoteKind::Commit), v.digest)],
            M::Checkpoint(c) => vec![(slot(View(0), c.seq, VoteKind::Checkpoint), c.state_root)],
            M::ViewChange(_) | M::Fetch { .. } | M::Committed(_) => vec![],
        }
    }

    fn view_changes(core: &Pbft) -> u64 {
        core.stats().view_changes
    }

    /// The log holds only sequence numbers inside the water marks: (h, h + 2k].
    fn bounded(core: &Pbft, params: &Params) -> Result<(), String> {
        let max = 2 * params.checkpoint_interval.max(1) as usize;
        if core.log_len() > max {
            return Err(format!(
                "UNBOUNDED LOG: {} entries, more than 2k = {max}",
                core.log_len()
            ));
        }
        Ok(())
    }

    /// Garbage collection kept up: the stable checkpoint is within the water-mark window of
    /// what the replica committed, and the safety record holds no more than the window.
    fn settled(core: &Pbft, params: &Params) -> Result<(), String> {
        let window = 2 * params.checkpoint_interval.max(1);
        let (committed, low) = (core.committed(), core.low_water_mark());
        if committed > low + window {
            return Err(format!(
                "GC BEHIND: committed {committed} but the stable checkpoint is {low} (window {window})"
            ));
        }
        let records = core.safety_data().slots.len() as u64;
        if records > window {
            return Err(format!(
                "UNBOUNDED SAFETY RECORD: {records} sequence numbers, more than {window}"
            ));
        }
        Ok(())
    }

    fn misbehave(
        ctx: &ByzCtx<'_, pbft::Message>,
        dest: Dest,
        msg: pbft::Message,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(Dest, pbft::Message)> {
        use pbft::Message as M;
        let (key, committee, genesis, seen) = (ctx.key, ctx.committee, ctx.genesis, ctx.seen);
        match (ctx.behaviour, msg) {
            (Behaviour::Equivocate, M::PrePrepare(p)) => {
                // A second block for the same (view, seq). Each half gets one first and the
                // other after it, so every replica sees both, in different orders.
                let mut other = p.block.clone();
                other.payload.reverse();
                other.payload.truncate(other.payload.len() / 2);
                other.timestamp_ms += 1;
                let p2 =
                    M::PrePrepare(Box::new(pbft::PrePrepare::new(p.view, other, genesis, key)));
                let (a, b) = halves(committee);
                let p = M::PrePrepare(p);
                vec![
                    (Dest::Some(a.clone()), p.clone()),
                    (Dest::Some(b.clone()), p2.clone()),
                    (Dest::Some(b), p),
                    (Dest::Some(a), p2),
                ]
            }
            (Behaviour::BadSignatures, mut m) => {
                match &mut m {
                    M::PrePrepare(p) => p.signature.0[7] ^= 1,
                    M::Prepare(v) | M::Commit(v) => v.signature.0[7] ^= 1,
                    M::Checkpoint(c) => c.signature.0[7] ^= 1,
                    M::ViewChange(vc) => vc.signature.0[7] ^= 1,
                    M::NewView(nv) => nv.signature.0[7] ^= 1,
                    M::Committed(certs) => {
                        for c in certs.iter_mut() {
                            if let Some(s) = c.commits.first_mut() {
                                s.1.0[7] ^= 1;
                            }
                        }
                    }
                    M::Fetch { .. } => {}
                }
                vec![(dest, m)]
            }
            // Its commits never leave, not even inside the certificates it answers
            // fetches with.
            (Behaviour::Withhold, M::Prepare(_) | M::Commit(_) | M::Committed(_)) => vec![],
            (Behaviour::StaleAndFuture, m) => {
                let mut out = vec![];
                // A fetch answer whose first certificate does not match its block, ahead of
                // the true one.
                if let M::Committed(certs) = &m
                    && let Some(first) = certs.first()
                {
                    let mut bad = first.clone();
                    bad.block.timestamp_ms += 1;
                    out.push((dest.clone(), M::Committed(vec![bad])));
                }
                out.push((dest, m.clone()));
                // Replay something old.
                if !seen.is_empty() {
                    let old = seen[rng.gen_range(0..seen.len())].clone();
                    out.push((Dest::All, old));
                }
                let me = match &m {
                    M::ViewChange(vc) => Some(vc.replica),
                    M::Checkpoint(c) => Some(c.replica),
                    M::Prepare(v) | M::Commit(v) => Some(v.replica),
                    _ => None,
                };
                let Some(me) = me else {
                    return out;
                };
                // A correctly signed VIEW-CHANGE for a view far ahead, once in a while (every
                // view change of its own, and about every 8th vote or checkpoint).
                let current = seen
                    .iter()
                    .chain(std::iter::once(&m))
                    .filter_map(|m| m.view())
                    .max()
                    .unwrap_or(View(1));
                if matches!(m, M::ViewChange(_)) || rng.gen_ratio(1, 8) {
                    let ahead = View(current.0 + rng.gen_range(2..40));
                    let (stable, prepared) = match &m {
                        M::ViewChange(vc) => (vc.stable.clone(), vc.prepared.clone()),
                        _ => (pbft::CheckpointCert::genesis(), vec![]),
                    };
                    let future = pbft::ViewChange::new(ahead, stable, prepared, me, genesis, key);
                    out.push((Dest::All, M::ViewChange(Box::new(future.clone()))));
                    // A NEW-VIEW for it made of copies of that one view change relabelled as
                    // everyone's (their signatures are the Byzantine replica's).
                    let forged = pbft::NewView {
                        view: ahead,
                        view_changes: committee
                            .ids()
                            .map(|id| pbft::ViewChange {
                                replica: id,
                                ..future.clone()
                            })
                            .collect(),
                        pre_prepares: vec![],
                        signature: future.signature,
                    };
                    out.push((Dest::All, M::NewView(Box::new(forged))));
                }
                // Checkpoints far ahead: its own, correctly signed, for a made-up state, and
                // the same claimed for every other replica with its signature (forged); and
                // a correctly signed view change that carries that forged "stable" checkpoint.
                if let M::Checkpoint(c) = &m {
                    let far = c.seq + rng.gen_range(1..2_000);
                    let root = crypto::hash(&rng.r#gen::<u64>().to_le_bytes());
                    let own = pbft::Checkpoint::new(far, root, me, genesis, key);
                    let forged = pbft::CheckpointCert {
                        seq: far,
                        state_root: root,
                        signatures: committee.ids().map(|id| (id, own.signature)).collect(),
                    };
                    for id in committee.ids().filter(|id| *id != me) {
                        out.push((
                            Dest::All,
                            M::Checkpoint(pbft::Checkpoint {
                                replica: id,
                                ..own.clone()
                            }),
                        ));
                    }
                    out.push((Dest::All, M::Checkpoint(own)));
                    let vc = pbft::ViewChange::new(
                        View(current.0 + 1),
                        forged,
                        vec![],
                        me,
                        genesis,
                        key,
                    );
                    out.push((Dest::All, M::ViewChange(Box::new(vc))));
                }
                out
            }
            (_, m) => vec![(dest, m)],
        }
    }
}
