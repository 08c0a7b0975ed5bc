//! [`Driver`]: one validator's consensus core, ledger, mempool and batches, without the
//! event loop. Every method takes the current time and returns what to do ([`Out`]); the
//! caller (the tokio loop, or a test pump) moves frames and fires timers.
//!
//! # To ensure correctness
//! - Safety records are written (fsynced, through [`Store::put_meta`]) before the core is
//!   told they are durable; only then can the votes that depend on them leave. All persists
//!   of one core step share one write.
//! - A proposal reaches the core only once every batch it names is stored here, so a vote
//!   always means "I can execute this". Commits wait, in order, for missing batch data.
//! - After the ledger commits a block, the core is told (`Input::Executed`, in height order),
//!   never from inside the handling of another input.
//!
//! The driver is generic over the consensus protocol ([`Protocol`]); nothing here knows
//! HotStuff's messages or certificates.

use super::batches::{Batch, BatchStore};
use super::dissemination::RequestBudget;
use super::ingress::Inbound;
use super::protocol::{CoreParams, Protocol};
use super::snapshot::{Chunk, SnapshotState};
pub(super) use super::stats::sample;
pub use super::stats::{DriverStats, StageSamples};
use super::store_stage::StoreWriter;
use super::sync::SyncState;
use super::wire::Wire;
use crate::mempool::{Limits, Mempool};
use crate::store::{DurableOp, RedbStore};
use consensus::{Action, Committed, Committee, Core, Durable, Input, ReplicaId};
use crypto::{Digest, SecretKey};
use ledger::{Block, ChainBinding, Ledger, LedgerError, Receipt, Store};
use std::collections::{BTreeSet, VecDeque};

/// Proposals held for missing batches, at most.
pub(super) const MAX_HELD_PROPOSALS: usize = 16;
/// Batches kept in memory, at most.
pub(super) const MAX_STORED_BATCHES: usize = 100_000;
/// Digests of committed batches remembered (about 20 MB): a batch arriving later than this
/// many committed batches after its block is not expected.
const COMMITTED_DIGESTS_KEPT: usize = 262_144;
pub(super) type Res = Result<Vec<Out>, DriverError>;

pub struct DriverConfig {
    pub me: ReplicaId,
    pub key: SecretKey,
    /// Further consensus keys this validator holds: a validator-set change may rotate it to
    /// one of them (issue 21), and it then signs with that key from the change's epoch on.
    pub next_keys: Vec<SecretKey>,
    /// The genesis committee (epoch 0); later epochs' come from the ledger's validator set.
    pub committee: Committee,
    pub chain: ChainBinding,
    /// The genesis accounts and validator set, and how the set may change.
    pub genesis: ledger::LedgerGenesis,
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// How long a leader with nothing to order waits before an empty block
    /// ([`CoreParams::idle_block_ms`]).
    pub idle_block_ms: u64,
    /// Blocks between checkpoints (PBFT; genesis `params.checkpoint_interval`). Unused by
    /// HotStuff.
    pub checkpoint_interval: u64,
    /// Applied entries between Raft log compactions (genesis `params.snapshot_interval`).
    pub snapshot_interval: u64,
    /// Batches per block.
    pub max_block_batches: usize,
    /// Transactions and bytes per batch.
    pub batch_max_txs: usize,
    pub batch_max_bytes: usize,
    pub mempool: Limits,
    /// Bytes of accounts and tree nodes the ledger caches (config `state_cache_mb`).
    pub state_cache_bytes: u64,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Send(ReplicaId, Vec<u8>),
    Broadcast(Vec<u8>),
    Timer {
        id: u64,
        after_ms: u64,
    },
    /// A block was committed and executed (for the API, logs and metrics).
    Committed {
        block: Box<Block>,
        receipts: Vec<Receipt>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] ledger::StoreError),
    #[error("{0}")]
    Stage(String),
    #[error(
        "the stored safety record is unreadable ({0}); refusing to start, as voting without it could sign twice"
    )]
    Safety(String),
}

pub struct Driver<P: Protocol> {
    pub(super) core: P::Core,
    /// What the core is built from (again after a block sync moves the committed root).
    pub(super) params: CoreParams,
    pub(super) ledger: Ledger<RedbStore>,
    pub(super) mempool: Mempool,
    pub(super) batches: BatchStore,
    pub(super) committee: Committee,
    /// Messages waiting for the batches they name ([`Protocol::payload_of`], kept with them).
    pub(super) held: VecDeque<(ReplicaId, P::Message, Vec<Digest>)>,
    pub(super) commits: VecDeque<Committed>,
    /// Blocks the ledger committed that the core has not been told about yet (height, state
    /// root), in height order; see [`Driver::run`].
    pub(super) executed: VecDeque<(u64, Digest)>,
    pub(super) requested: BTreeSet<Digest>,
    pub(super) batch_max_txs: usize,
    pub(super) batch_max_bytes: usize,
    pub stats: DriverStats,
    /// Where each signed vote is recorded as it leaves (see [`Driver::log_votes_to`]).
    pub(super) vote_log: Option<std::fs::File>,
    pub(super) sync: SyncState,
    pub(super) snapshot: SnapshotState,
    pub(super) statesync: super::statesync::StateSyncState,
    pub(super) watcher: super::evidence::Watcher,
    pub(super) requests: RequestBudget,
    /// The store stage, when blocks are written off this thread ([`Driver::use_store_stage`]);
    /// without it, each block is written before `apply_commits` goes on (tests).
    pub(super) writer: Option<StoreWriter>,
    /// Header attestation (BFT modes only; see [`super::attestation`]).
    pub(super) attestor: Option<consensus::attest::Attestor>,
    /// Blocks handed to the store stage and not yet reported durable ([`Driver::on_stored`]).
    pub(super) unstored: usize,
    /// Their transactions.
    pub(super) unstored_txs: usize,
    /// This validator's batches not committed yet (consensus stage time, backpressure).
    pub(super) own: super::dissemination::OwnBatches,
    /// The admission workers, when peers' batch signatures are checked off this thread
    /// ([`Driver::use_admission`]); without them, execution checks them (tests).
    pub(super) admission: Option<super::admission::Admission>,
    /// Linearizable reads waiting for the core's answer.
    pub(super) reads: super::reads::OpenReads,
    /// Batches the core committed: never offered to it again (`Driver::offer`).
    pub(super) committed_batches: super::batches::RecentDigests,
    /// The validator-set epoch the core runs, and what a switch needs ([`super::epochs`]).
    pub(super) epochs: super::epochs::Epochs<P::Message>,
    /// Keeps each sender's batches in nonce order on the way to the core
    /// ([`super::ordering`]).
    pub(super) gate: super::ordering::OfferGate,
}

impl<P: Protocol> Driver<P> {
    /// Opens a validator over `store`: recovers the ledger, the safety record and the last
    /// committed block, so a restarted validator neither double-votes nor re-executes.
    pub fn open(cfg: DriverConfig, store: RedbStore) -> Result<Driver<P>, DriverError> {
        let ledger = Ledger::open_genesis(
            store,
            cfg.chain.clone(),
            &cfg.genesis,
            cfg.state_cache_bytes,
        )?;
        let mut keys = vec![cfg.key.clone()];
        keys.extend(cfg.next_keys.iter().cloned());
        let vs = ledger.validators();
        // Raft: members by stable id, with the set before this one (a server it removed
        // may still be in the configuration).
        let known = if P::EPOCH_CORES {
            Default::default()
        } else {
            let previous = match vs.epoch {
                0 => None,
                _ => ledger.validators_at(vs.start_height.saturating_sub(1))?,
            };
            super::raft_set::known_members(vs, previous.as_ref())
        };
        // The set the ledger is in now (a restarted validator may be past a set change).
        let set = if P::EPOCH_CORES {
            super::epochs::EpochSet::of(vs, &cfg.chain.genesis_hash, &cfg.committee)?
        } else {
            super::raft_set::raft_epoch_set(vs, &known, &cfg.committee, &cfg.chain.genesis_hash)?
        };
        // A ledger that does not track its set (tools, tests) runs the committee it is given;
        // otherwise this validator's place is where one of its keys is in the current set (a
        // validator joining later is in none until its epoch).
        let place = if vs.members.is_empty() {
            Some((cfg.me, cfg.key.clone()))
        } else if P::EPOCH_CORES {
            super::epochs::place_in(vs, &keys)
        } else {
            super::raft_set::raft_place(vs, &known, &keys)
        };
        let outsider = if P::EPOCH_CORES {
            cfg.me
        } else {
            super::raft_set::OUTSIDER
        };
        let (me, key) = place.clone().unwrap_or((outsider, cfg.key.clone()));
        if place.is_none() {
            tracing::warn!(
                epoch = set.epoch,
                "none of this validator's consensus keys is in the current validator set: it \
                 follows the chain without voting{}",
                if P::EPOCH_CORES {
                    ""
                } else {
                    " (as a raft learner, once the leader adds it)"
                }
            );
        }
        let attestor = (P::ATTESTS_HEADERS && place.is_some()).then(|| {
            consensus::attest::Attestor::new(
                key.clone(),
                set.committee.clone(),
                cfg.chain.genesis_hash,
                ledger.height(),
            )
        });
        let params = CoreParams {
            me,
            key,
            committee: set.committee.clone(),
            genesis: set.anchor,
            // Raft runs one instance across epochs (`super::raft_set`).
            epoch: if P::EPOCH_CORES { set.epoch } else { 0 },
            start_height: if P::EPOCH_CORES { set.start_height } else { 1 },
            genesis_members: cfg.committee.n(),
            base_timeout_ms: cfg.base_timeout_ms,
            max_timeout_ms: cfg.max_timeout_ms,
            max_payload: cfg.max_block_batches,
            idle_block_ms: cfg.idle_block_ms,
            checkpoint_interval: cfg.checkpoint_interval,
            snapshot_interval: cfg.snapshot_interval,
        };
        let core = P::build(&params, &ledger, None)?;
        // Batches of durable log entries not yet executed (Raft): committed entries must
        // execute after a restart even if no peer still has their batches.
        let mut batches = BatchStore::new(MAX_STORED_BATCHES);
        for row in ledger.store().log_rows()? {
            if row.index > ledger.height() {
                for b in row.batches {
                    batches.insert(Batch::new(b));
                }
            }
        }
        Ok(Driver {
            core,
            params,
            ledger,
            mempool: Mempool::new(cfg.mempool),
            batches,
            committee: set.committee.clone(),
            held: VecDeque::new(),
            commits: VecDeque::new(),
            executed: VecDeque::new(),
            requested: BTreeSet::new(),
            batch_max_txs: cfg.batch_max_txs,
            batch_max_bytes: cfg.batch_max_bytes,
            stats: DriverStats::default(),
            vote_log: None,
            watcher: Default::default(),
            requests: RequestBudget::default(),
            sync: SyncState::default(),
            snapshot: SnapshotState::default(),
            statesync: Default::default(),
            writer: None,
            attestor,
            unstored: 0,
            unstored_txs: 0,
            own: Default::default(),
            admission: None,
            reads: Default::default(),
            committed_batches: super::batches::RecentDigests::new(COMMITTED_DIGESTS_KEPT),
            epochs: super::epochs::Epochs {
                set,
                genesis_committee: cfg.committee,
                keys,
                // Raft's core runs outside the set too: a joiner learns as a learner.
                member: place.is_some() || !P::EPOCH_CORES,
                future: Default::default(),
                old_attestor: None,
                reoffer: Default::default(),
                peers_seen: None,
                numbered: Vec::new(),
                unoffered: Default::default(),
                former: Default::default(),
                known,
                advertised: None,
                asked_set_ms: 0,
            },
            gate: Default::default(),
        })
    }

    pub fn ledger(&self) -> &Ledger<RedbStore> {
        &self.ledger
    }
    pub fn core(&self) -> &P::Core {
        &self.core
    }
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Durations in seconds of the durable writes since the last call (for the fsync
    /// histogram). Writes are not timed against a wall clock anywhere else.
    pub fn take_fsync_seconds(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.stats.fsync_seconds)
    }

    /// Stage durations since the last call (for the stage histograms).
    pub fn take_stage_samples(&mut self) -> StageSamples {
        std::mem::take(&mut self.stats.stages)
    }

    pub fn start(&mut self, now: u64) -> Res {
        let acts = if self.epochs.member {
            self.core.start(now)
        } else {
            Vec::new()
        };
        let mut out = self.run(now, acts)?;
        // Behind by more than the peers' cores keep? Ask (an empty answer costs little).
        if P::LEDGER_SYNC {
            out.extend(self.request_blocks());
        }
        Ok(out)
    }

    /// The consensus id of the ledger's last block, from its certificate (the genesis hash
    /// before the first block).
    pub(super) fn ledger_tip_id(&self) -> Result<Digest, DriverError> {
        let h = self.ledger.height();
        if h < self.params.first_height() {
            // The instance starts from its anchor (the genesis hash in epoch 0).
            return Ok(self.params.genesis);
        }
        let b = self
            .ledger
            .store()
            .block(h)?
            .ok_or_else(|| DriverError::Safety(format!("block {h} missing from the store")))?;
        P::decode_certified(&b.certificate, &self.params.genesis)
            .map(|c| c.id)
            .ok_or_else(|| {
                DriverError::Safety(format!("the certificate of block {h} is unreadable"))
            })
    }

    pub fn on_timer(&mut self, now: u64, id: u64) -> Res {
        let mut out = self.feed(now, Input::Timer(id))?;
        out.extend(self.maybe_sync(now)?);
        if id == P::VIEW_TIMER {
            // Retry batch fetches that have not been answered.
            self.requested.clear();
        }
        out.extend(self.run(now, Vec::new())?);
        out.extend(self.replay_future(now)?);
        Ok(out)
    }

    /// A frame from validator `from` (already authenticated by the transport), decoded here:
    /// [`Driver::on_inbound`] after the ingress stage's work, on this thread (tests; the
    /// running validator decodes on `cairn-ingress`).
    pub fn on_frame(&mut self, now: u64, from: ReplicaId, bytes: &[u8]) -> Res {
        self.on_inbound(now, from, super::ingress::prepare(bytes))
    }

    /// A decoded frame from validator `from` (see [`super::ingress`]).
    pub fn on_inbound(&mut self, now: u64, from: ReplicaId, inbound: Inbound<P::Message>) -> Res {
        let mut out = self.inbound(now, from, inbound)?;
        // A block sync may have moved the core into the epoch of frames held for it.
        out.extend(self.replay_future(now)?);
        Ok(out)
    }

    fn inbound(&mut self, now: u64, from: ReplicaId, inbound: Inbound<P::Message>) -> Res {
        let wire = match inbound {
            Inbound::Bad => {
                self.stats.bad_frames += 1;
                return Ok(Vec::new());
            }
            Inbound::Batch(d, batch) => return self.on_batch(now, d, batch),
            Inbound::Batches(bs) => return self.on_batches(now, bs),
            Inbound::Frame(wire) => wire,
        };
        match wire {
            Wire::Consensus(epoch, msg) => match self.route(from, epoch, msg) {
                Some(msg) => self.on_consensus(now, from, msg),
                None => Ok(Vec::new()),
            },
            Wire::SnapshotRequest { .. }
            | Wire::BatchRequest(_)
            | Wire::StateOfferRequest { .. }
            | Wire::StateChunkRequest { .. }
                if !self.requests.take(from, now) =>
            {
                self.stats.limited_requests += 1;
                Ok(Vec::new())
            }
            Wire::SnapshotRequest { height, offset } => {
                self.answer_snapshot_request(from, height, offset)
            }
            Wire::SnapshotChunk {
                height,
                block,
                head,
                total,
                offset,
                accounts,
            } => self.on_snapshot_chunk(
                now,
                from,
                Chunk {
                    height,
                    block,
                    head,
                    total,
                    offset,
                    accounts,
                },
            ),
            Wire::BatchRequest(ds) => Ok(self.answer_batch_request(from, &ds)),
            Wire::BlocksRequest { from: start } => self.answer_blocks_request(now, from, start),
            Wire::Blocks { blocks, tip, certs } => self.on_blocks(now, from, blocks, tip, certs),
            Wire::HeaderVote(vote) => self.on_header_vote(from, vote),
            Wire::StateOfferRequest { epoch } if P::LEDGER_SYNC => {
                self.answer_state_offer(from, epoch)
            }
            Wire::StateOffer {
                block,
                cert,
                leaves,
                floor,
                tip,
                set,
                links,
            } => {
                let offer = block.map(|b| super::statesync::Offer {
                    block: *b,
                    cert,
                    leaves,
                    floor,
                    tip,
                    set,
                    links,
                });
                self.on_state_offer(now, from, offer)
            }
            Wire::StateChunkRequest { version, index } if P::LEDGER_SYNC => {
                self.answer_state_chunk(from, version, index)
            }
            Wire::StateChunk(chunk) => self.on_state_chunk(now, from, chunk),
            Wire::StateChunkMissing { version, index } => {
                self.on_state_chunk_missing(now, from, version, index)
            }
            Wire::SetRequest if !P::EPOCH_CORES => Ok(self.answer_set_request(from)),
            Wire::SetReply(vs) => Ok(self.on_set_reply(vs)),
            Wire::StateOfferRequest { .. } | Wire::StateChunkRequest { .. } | Wire::SetRequest => {
                Ok(Vec::new())
            }
            // The ingress stage turned these into `Inbound::Batch(es)`.
            Wire::Batch(_) | Wire::Batches(_) => {
                self.stats.bad_frames += 1;
                Ok(Vec::new())
            }
        }
    }

    /// A consensus message of the core's epoch.
    pub(super) fn on_consensus(&mut self, now: u64, from: ReplicaId, msg: P::Message) -> Res {
        self.watch(&msg);
        let offer = P::snapshot_offer(&msg).and_then(|h| self.on_snapshot_offer(now, from, h));
        let mut out = self.on_message(now, from, msg)?;
        out.extend(offer);
        Ok(out)
    }

    /// Offers a stored batch to the core, unless the core already committed it (a batch that
    /// arrives after its block, or one held across a restart): proposing it again would put
    /// it in a second block, by which time its data may be gone.
    ///
    /// A batch whose every transfer is below its sender's committed nonce is not offered
    /// either: it was committed in blocks this validator did not see being committed (it was
    /// restarted, or caught up by block sync or a Raft snapshot), and proposing it again
    /// would only fill a block with refused duplicates — which a validator holding no record
    /// of the first inclusion would then index as the transaction's commit.
    pub(super) fn feed(&mut self, now: u64, input: Input<P::Message>) -> Res {
        if !self.epochs.member {
            // Not in the current set: the core is never started, and hears nothing.
            return self.run(now, Vec::new());
        }
        let acts = self.core.handle(now, input);
        self.run(now, acts)
    }

    /// Carries out the core's actions; persists are written once per step, then
    /// acknowledged, which may release more actions. Queued commits are executed as their
    /// batches allow; then the core is told of each block executed (`Input::Executed`, one at
    /// a time, in height order), and those actions are carried out the same way. The core is
    /// handed nothing while a persist it asked for is unwritten, and this never calls itself.
    pub(super) fn run(&mut self, now: u64, mut acts: Vec<Action<P::Message>>) -> Res {
        let mut out = Vec::new();
        loop {
            let mut ops: Vec<DurableOp> = Vec::new();
            let mut top_seq = None;
            for a in acts.drain(..) {
                match a {
                    Action::Send { to, msg } => {
                        self.record_vote(&msg, Some(to));
                        out.push(Out::Send(to, Wire::Consensus(self.epoch(), msg).encode()))
                    }
                    Action::Broadcast { msg } => {
                        self.record_vote(&msg, None);
                        let epoch = self.epoch();
                        out.push(Out::Broadcast(Wire::Consensus(epoch, msg).encode()))
                    }
                    Action::Persist { seq, what } => {
                        top_seq = Some(seq);
                        // Raft: the configuration at the compaction point goes with it.
                        if let Durable::Compact { before } = &what
                            && let Some(rec) =
                                P::config_record(&self.core, before.saturating_sub(1))
                        {
                            ops.push(DurableOp::Meta(
                                super::protocol::RAFT_CONFIG_KEY.into(),
                                rec,
                            ));
                        }
                        ops.push(self.durable_op(what)?);
                    }
                    Action::Commit(c) => {
                        for d in &c.payload {
                            self.committed_batches.insert(*d);
                            if let Some(at) = self.own.committed(d) {
                                sample(
                                    &mut self.stats.stages.consensus,
                                    at.elapsed().as_secs_f64(),
                                );
                            }
                        }
                        self.commits.push_back(c)
                    }
                    Action::SetTimer { id, after_ms } => out.push(Out::Timer { id, after_ms }),
                    Action::ReadReady { id, index } => self.read_answered(id, Some(index)),
                    Action::ReadFailed { id } => self.read_answered(id, None),
                }
            }
            self.apply_commits(&mut out)?;
            if let Some(seq) = top_seq {
                let started = std::time::Instant::now();
                self.ledger.store().write_durable(&ops)?;
                self.stats.fsync(started);
                super::failpoints::crash_point!("after-persist", 0);
                #[cfg(feature = "failpoints")]
                if ops.iter().any(|op| matches!(op, DurableOp::Meta(..))) {
                    super::failpoints::crash_point!("after-persist-safety", 0);
                }
                acts = self.core.handle(now, Input::Persisted(seq));
            } else if self.epoch_ended() {
                // The ledger executed the epoch's last block: the next epoch's core takes
                // over (`super::epochs`), or Raft's core follows the new set
                // (`super::raft_set`).
                acts = if P::EPOCH_CORES {
                    self.switch_core(now)?
                } else {
                    self.raft_follow(now, false)?
                };
            } else if let Some((height, state_root)) = self.executed.pop_front() {
                // Blocks of an earlier epoch are not this core's to hear of.
                if height >= self.params.first_height() && self.epochs.member {
                    acts = self
                        .core
                        .handle(now, Input::Executed { height, state_root });
                }
            } else if let Some(a) = self.reoffer_next(now) {
                acts = a;
            } else if let Some(a) = self.unpark_next(now) {
                acts = a;
            } else {
                return Ok(out);
            }
        }
    }
}
