//! What the simulator needs to know about a protocol beyond the [`consensus::Core`] trait:
//! how to build a core from persisted state, which view a message belongs to (for Twins
//! partitions), and how a Byzantine replica of this protocol misbehaves.

use super::byz::Behaviour;
use consensus::hotstuff::{self, HotStuff, Message};
use consensus::{Committee, Core, ReplicaId, View};
use crypto::{Digest, SecretKey};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Everything a replica finds on its disk after a restart.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub safety: Option<Vec<u8>>,
    pub log: Vec<Vec<u8>>,
    /// From the last committed ledger block's certificate.
    pub committed: Option<(Digest, View)>,
    /// Certificates of the last committed ledger blocks, oldest first (leader election).
    pub certificates: Vec<Vec<u8>>,
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
}

pub trait SimProtocol {
    type Msg: Clone + std::fmt::Debug;
    type Core: Core<Message = Self::Msg>;
    const NAME: &'static str;

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

    /// Checks a committed block's certificate as an outside verifier would.
    fn verify_certificate(certificate: &[u8], committee: &Committee, genesis: &Digest) -> bool;

    /// The view a message belongs to (Twins partitions are per view).
    fn view_of(msg: &Self::Msg) -> Option<View>;

    fn encode(msg: &Self::Msg) -> Vec<u8>;

    /// If `msg` is a signed vote, the view and what it votes for (for the double-vote check).
    fn vote_of(msg: &Self::Msg) -> Option<(View, Digest)>;

    /// Views (or terms) that ended without progress, for the summary.
    fn view_changes(core: &Self::Core) -> u64;

    /// Rewrites an outgoing message of a Byzantine replica.
    fn misbehave(
        b: Behaviour,
        key: &SecretKey,
        committee: &Committee,
        dest: Dest,
        msg: Self::Msg,
        rng: &mut ChaCha8Rng,
        seen: &[Self::Msg],
    ) -> Vec<(Dest, Self::Msg)>;
}

pub struct HotStuffSim;

impl SimProtocol for HotStuffSim {
    type Msg = Message;
    type Core = HotStuff;
    const NAME: &'static str = "hotstuff";

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

    fn vote_of(msg: &Message) -> Option<(View, Digest)> {
        match msg {
            Message::Vote(v) => Some((v.view, v.block)),
            _ => None,
        }
    }

    fn view_changes(core: &HotStuff) -> u64 {
        core.stats().views_by_tc
    }

    fn misbehave(
        b: Behaviour,
        key: &SecretKey,
        committee: &Committee,
        dest: Dest,
        msg: Message,
        rng: &mut ChaCha8Rng,
        seen: &[Message],
    ) -> Vec<(Dest, Message)> {
        match (b, msg) {
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
                    let future = hotstuff::Timeout::new(ahead, t.high_qc.clone(), me, key);
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
