//! [`PbftProtocol`]: the PBFT core (`consensus::pbft`) as the driver sees it.

use super::driver::DriverError;
use super::protocol::{Certified, CoreParams, Protocol, Statement};
use crate::store::RedbStore;
use consensus::pbft::{self, CommitCertificate, Message, Pbft};
use consensus::{Committee, ReplicaId};
use crypto::Digest;
use ledger::{Ledger, Store};

/// Commit certificates handed to a rebuilt core to answer peers' fetches (older blocks are
/// served by the driver's block sync).
const RECENT_ON_START: u64 = 128;

/// PBFT with checkpoints and view changes (`consensus::pbft`).
pub struct PbftProtocol;

fn pbft_certified(c: &CommitCertificate) -> Certified {
    Certified {
        id: c.block.digest(),
        // As the core commits it: replicas agree on (seq, digest), not on the view each saw
        // it commit in, and the ledger header must be the same everywhere.
        view: consensus::View(0),
        proposer: c.block.proposer,
        timestamp_ms: c.block.timestamp_ms,
        payload: c.block.payload.clone(),
        parent: None,
        proves_commit: true,
        height: Some(c.block.seq),
    }
}

impl Protocol for PbftProtocol {
    type Message = Message;
    type Core = Pbft;

    const NAME: &'static str = "pbft";
    const SAFETY_KEY: &'static str = "pbft/safety";
    const VIEW_TIMER: u64 = pbft::VIEW_TIMER;

    /// The safety record, the ledger height (= the last committed sequence number) and the
    /// certificates of the last blocks.
    fn build(
        params: &CoreParams,
        ledger: &Ledger<RedbStore>,
        safety: Option<Vec<u8>>,
    ) -> Result<Pbft, DriverError> {
        let safety = match safety {
            Some(s) => Some(s),
            None => ledger.store().meta(&params.safety_key(Self::SAFETY_KEY))?,
        };
        let height = ledger.height();
        let mut recent = Vec::new();
        let from = (height.saturating_sub(RECENT_ON_START) + 1).max(params.first_height());
        for h in from..=height {
            if let Some(b) = ledger.store().block(h)? {
                recent.push(b.certificate);
            }
        }
        let cfg = pbft::Config {
            me: params.me,
            key: params.key.clone(),
            committee: params.committee.clone(),
            genesis: params.genesis,
            base_timeout_ms: params.base_timeout_ms,
            max_timeout_ms: params.max_timeout_ms,
            max_payload: params.max_payload,
            idle_block_ms: params.idle_block_ms,
            checkpoint_interval: params.checkpoint_interval,
            // The instance starts stable after the previous epoch's last block.
            start: pbft::CheckpointCert::start(params.first_height() - 1, params.genesis),
        };
        Pbft::new(
            cfg,
            pbft::Recovered {
                safety,
                height,
                recent,
            },
        )
        .map_err(|e| DriverError::Safety(e.to_string()))
    }

    fn safety_bytes(core: &Pbft) -> Vec<u8> {
        core.safety_data().encode()
    }

    fn pending_payload(core: &Pbft) -> Vec<Digest> {
        core.pending_payload()
    }

    fn leader(core: &Pbft) -> Option<ReplicaId> {
        Some(core.primary(consensus::Core::view(core)))
    }

    fn view_changes(core: &Pbft) -> u64 {
        core.stats().view_changes
    }

    /// A pre-prepare's batches, and those of every pre-prepare a NEW-VIEW re-issues.
    fn payload_of(msg: &Message) -> Vec<Digest> {
        match msg {
            Message::PrePrepare(p) => p.block.payload.clone(),
            Message::NewView(nv) => nv
                .pre_prepares
                .iter()
                .flat_map(|p| p.block.payload.iter().copied())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// One pre-prepare, prepare and commit per (view, sequence number).
    fn vote_slot(msg: &Message, _to: Option<ReplicaId>) -> Option<(String, Digest)> {
        match msg {
            Message::PrePrepare(p) => Some((
                format!("{}/{}/pre-prepare", p.view.0, p.block.seq),
                p.block.digest(),
            )),
            Message::Prepare(v) => Some((format!("{}/{}/prepare", v.view.0, v.seq), v.digest)),
            Message::Commit(v) => Some((format!("{}/{}/commit", v.view.0, v.seq), v.digest)),
            _ => None,
        }
    }

    /// `quorum` signed commits for its block's digest at its sequence number.
    fn certified(cert: &[u8], committee: &Committee, genesis: &Digest) -> Option<Certified> {
        let c = CommitCertificate::decode(cert).ok()?;
        c.verify(committee, genesis).ok()?;
        Some(pbft_certified(&c))
    }

    fn decode_certified(cert: &[u8], _genesis: &Digest) -> Option<Certified> {
        CommitCertificate::decode(cert)
            .ok()
            .map(|c| pbft_certified(&c))
    }

    /// A pre-prepare (one per primary, view and sequence number), a prepare or a commit (one
    /// per replica, view and sequence number).
    fn statement(msg: &Message, committee: &Committee) -> Option<Statement> {
        let vote = |kind, v: &pbft::Vote| Statement {
            signer: v.replica,
            kind,
            slot: format!("{}/{}", v.view.0, v.seq),
            digest: v.digest,
        };
        match msg {
            Message::PrePrepare(p) => Some(Statement {
                signer: committee.leader(p.view),
                kind: "pbft-pre-prepare",
                slot: format!("{}/{}", p.view.0, p.block.seq),
                digest: p.block.digest(),
            }),
            Message::Prepare(v) => Some(vote("pbft-prepare", v)),
            Message::Commit(v) => Some(vote("pbft-commit", v)),
            _ => None,
        }
    }

    fn verify_statement(msg: &Message, committee: &Committee, genesis: &Digest) -> bool {
        match msg {
            Message::PrePrepare(p) => p.verify(committee, genesis, usize::MAX).is_ok(),
            Message::Prepare(v) => v.verify(pbft::Phase::Prepare, committee, genesis).is_ok(),
            Message::Commit(v) => v.verify(pbft::Phase::Commit, committee, genesis).is_ok(),
            _ => false,
        }
    }

    #[cfg(feature = "byzantine")]
    fn twin(msg: &Message, key: &crypto::SecretKey, genesis: &Digest) -> Option<Message> {
        use super::protocol::other_digest;
        let vote = |phase, v: &pbft::Vote| {
            pbft::Vote::new(
                phase,
                v.view,
                v.seq,
                other_digest(&v.digest),
                v.replica,
                genesis,
                key,
            )
        };
        match msg {
            Message::PrePrepare(p) => {
                let mut block = p.block.clone();
                block.timestamp_ms = block.timestamp_ms.wrapping_add(1);
                Some(Message::PrePrepare(Box::new(pbft::PrePrepare::new(
                    p.view, block, genesis, key,
                ))))
            }
            Message::Prepare(v) => Some(Message::Prepare(vote(pbft::Phase::Prepare, v))),
            Message::Commit(v) => Some(Message::Commit(vote(pbft::Phase::Commit, v))),
            _ => None,
        }
    }

    #[cfg(feature = "byzantine")]
    fn corrupt(msg: &Message, key: &crypto::SecretKey) -> Option<Message> {
        let wrong = |bytes: &[u8]| key.sign(crypto::Domain::Test, bytes);
        let mut m = msg.clone();
        match &mut m {
            Message::PrePrepare(p) => p.signature = wrong(&p.block.digest().0),
            Message::Prepare(v) | Message::Commit(v) => v.signature = wrong(&v.digest.0),
            Message::Checkpoint(c) => c.signature = wrong(&c.state_root.0),
            _ => return None,
        }
        Some(m)
    }
}
