//! A discrete-event, fully seeded simulator that drives the real protocol cores with real
//! ledger execution on the in-memory store.
//!
//! - `protocol.rs`: what the simulator needs from a protocol ([`SimProtocol`]).
//! - `raft/`: [`RaftSim`], Raft's crash-fault scenarios, its invariants and a scripted
//!   cluster for hand-written schedules (the Raft paper's Figure 8).
//! - `net.rs`: latency, drops, duplicates, partitions, Twins' per-view partitions.
//! - `node.rs`: one simulated replica — the driver loop around a core, its disk, timers,
//!   mempool and ledger.
//! - `check.rs`: the invariants, checked after every commit. `cluster.rs`: the hook for
//!   cluster-wide invariants, checked after every event.
//! - `snapshot.rs`: a replica's state transfer when its core is offered a snapshot.
//! - `byz.rs`: Byzantine behaviours. `scenario.rs`: random fault schedules from a seed.
//! - `twins.rs`: Twins enumeration. `reads.rs`: client reads and the stale-read check.
//!
//! Everything random comes from one ChaCha8 stream seeded by the scenario's seed, and every
//! collection iterated is ordered, so one seed gives one trace (checked by its hash).

mod actions;
mod byz;
mod check;
mod cluster;
mod epochs;
mod net;
mod node;
mod protocol;
pub mod raft;
pub mod reads;
pub mod runner;
mod scenario;
mod snapshot;
pub mod statesync;
pub mod twins;

pub use byz::Behaviour;
pub use check::{Checker, VoteKind, VoteSlot};
pub use cluster::{ClusterInvariants, NodeView};
pub use net::{Crash, Cut, Network, Partition, TwinsSchedule};
pub use protocol::{
    ByzCtx, Dest, Disk, HotStuffSim, Named, Params, PbftSim, RaftParams, SimProtocol,
};
pub use raft::RaftSim;
pub use scenario::{
    Scenario, SetChangeAt, SetChanges, SetKind, SyncFaults, amnesia_scenario,
    amnesia_scenario_with, epoch_scenario, random_scenario, wipe_scenario,
};

use consensus::{Committee, Core, ReplicaId};
use crypto::{Digest, Hasher, SecretKey};
use ledger::{ChainBinding, Transaction};
use node::Instance;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// What one run found.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub protocol: &'static str,
    /// Highest height any honest replica committed.
    pub height: u64,
    pub view_changes: u64,
    pub violations: Vec<String>,
    pub trace: Digest,
    pub events: u64,
    /// Deliveries by message kind (the encoded enum tag).
    pub deliveries: BTreeMap<u8, u64>,
    /// State snapshots installed (Raft).
    pub snapshots: u64,
    /// Client reads answered ready (and checked against their floor), and refused.
    pub reads_served: u64,
    pub reads_failed: u64,
    /// BFT state syncs of wiped replicas (see `statesync.rs`).
    pub sync: statesync::SyncStats,
    /// The highest validator-set epoch an honest replica switched to (`epochs.rs`).
    pub epochs: u64,
    /// Ledger-level catch-ups to an epoch boundary (`epochs.rs`).
    pub catch_ups: u64,
    /// Raft membership changes told to the replicas.
    pub membership_changes: u64,
    /// BFT epochs that added a validator, and epochs that removed one (`epochs.rs`).
    pub joins: u64,
    pub leaves: u64,
}

enum Ev<M> {
    Deliver {
        to: usize,
        from: ReplicaId,
        msg: M,
    },
    Timer {
        inst: usize,
        id: u64,
        generation: u64,
    },
    Fsync {
        inst: usize,
        epoch: u64,
    },
    ClientTx,
    /// A client asks a random replica for a linearizable read.
    ClientRead,
    BatchTick {
        inst: usize,
    },
    BatchArrive {
        inst: usize,
        digest: Digest,
    },
    Crash {
        inst: usize,
    },
    Restart {
        inst: usize,
    },
    /// Raft: the `k`-th membership change of the scenario.
    Members {
        k: usize,
    },
    /// A crash that also deletes the ledger store.
    Wipe {
        inst: usize,
    },
    /// A wiped replica restarts: state sync, then its core.
    SyncRestart {
        inst: usize,
    },
    /// A state transfer from instance `from` to `inst` (started in `epoch`) completes.
    SnapshotDone {
        inst: usize,
        from: usize,
        epoch: u64,
    },
    Healed,
    /// Validator-set change `k` of the scenario is submitted (`epochs.rs`).
    SetChange {
        k: usize,
    },
    /// Instance `inst` looks for a peer past an epoch boundary it has not reached.
    CatchUp {
        inst: usize,
    },
}

/// A simulation of one scenario.
pub struct Sim<P: SimProtocol> {
    sc: Scenario,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev<P::Msg>>,
    instances: Vec<Instance<P>>,
    committee: Committee,
    genesis: Digest,
    chain: ChainBinding,
    batches: BTreeMap<Digest, Vec<Transaction>>,
    workload: crate::workload::Transfers,
    wallets: usize,
    checker: Checker,
    healed_heights: Vec<u64>,
    trace: Hasher,
    processed: u64,
    deliveries: BTreeMap<u8, u64>,
    /// Verdicts of certificates already checked, by the hash of their bytes (replicas
    /// often commit with byte-identical certificates; signature checks dominate run time).
    certificates: BTreeMap<Digest, bool>,
    /// Instance whose inputs and actions are printed (env SIM_DEBUG=instance).
    debug: Option<usize>,
    /// The protocol's cluster-wide invariants (Raft), checked after every event.
    cluster: Option<Box<dyn ClusterInvariants<P>>>,
    snapshots: u64,
    sync_stats: statesync::SyncStats,
    reads: reads::ReadChecker,
    /// Every consensus key's secret, genesis and rotated (`epochs.rs`).
    keys: BTreeMap<crypto::PublicKey, SecretKey>,
    catch_ups: u64,
    /// Raft: the last membership change told (index into `sc.members`).
    members_told: Option<usize>,
    /// The size of each epoch's set, as honest replicas switched to it.
    set_sizes: BTreeMap<u64, usize>,
}

const BATCH_TICK_MS: u64 = 25;
const BATCH_MAX_TXS: usize = 32;
const WALLETS: usize = 24;

impl<P: SimProtocol> Sim<P> {
    pub fn new(sc: Scenario) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let keys: Vec<SecretKey> = (0..sc.n)
            .map(|_| SecretKey::from_seed(rng.r#gen()))
            .collect();
        assert!(
            !P::CRASH_FAULTS_ONLY || sc.byzantine.is_empty(),
            "{} tolerates crash faults only: no Byzantine replicas or twins",
            P::NAME
        );
        let mut committee = P::committee(keys.iter().map(|k| k.public()).collect());
        if let Some(s) = &sc.leader_schedule {
            committee = committee.with_leader_schedule(s.clone());
        }
        let genesis = crypto::hash(&sc.seed.to_le_bytes());
        let chain = ChainBinding {
            chain_id: "sim".into(),
            genesis_hash: genesis,
        };
        let wallet_keys = crate::workload::keys(sc.seed ^ 0x5eed, WALLETS);
        let mut alloc = crate::workload::allocation(&wallet_keys, 1_000_000);
        if !sc.sets.changes.is_empty() {
            alloc.push((
                ledger::Address::of(&epochs::carrier_key(sc.seed).public()),
                1,
            ));
        }
        let supply = alloc.iter().map(|(_, b)| *b as u128).sum();
        let genesis_state = ledger::LedgerGenesis {
            accounts: alloc,
            validators: ledger::validators::ValidatorState::from_members(epochs::members(
                &keys, sc.seed,
            )),
            governance: P::governance().map(|rule| ledger::validators::Governance {
                rule,
                epoch_delay: sc.sets.epoch_delay,
            }),
        };
        let workload = crate::workload::Transfers::new(sc.seed, wallet_keys, chain.clone());

        // One instance per replica, plus a second one for each twin.
        let mut ids: Vec<ReplicaId> = committee.ids().collect();
        for (id, b) in &sc.byzantine {
            if *b == Behaviour::Twin {
                ids.push(*id);
            }
        }
        let mut instances: Vec<Instance<P>> = ids
            .iter()
            .map(|id| {
                let byz = sc.byzantine.iter().find(|(b, _)| b == id).map(|(_, b)| *b);
                Instance::new(
                    *id,
                    keys[id.0 as usize].clone(),
                    byz,
                    chain.clone(),
                    &genesis_state,
                    committee.clone(),
                )
            })
            .collect();
        // Spares (set changes add them): keys from their own stream, so scenarios without
        // spares draw exactly what they drew before.
        let mut all_keys = keys.clone();
        for s in 0..sc.sets.spares {
            let seed = crypto::hash_parts(&[b"spare", &sc.seed.to_le_bytes(), &[s as u8]]).0;
            let key = SecretKey::from_seed(seed);
            all_keys.push(key.clone());
            instances.push(Instance::new(
                node::OUTSIDER,
                key,
                None,
                chain.clone(),
                &genesis_state,
                committee.clone(),
            ));
        }
        let checker = Checker::new(instances.len(), supply, genesis);
        Sim {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            committee,
            genesis,
            chain,
            batches: BTreeMap::new(),
            workload,
            wallets: WALLETS,
            checker,
            healed_heights: vec![],
            trace: Hasher::new(),
            processed: 0,
            deliveries: BTreeMap::new(),
            certificates: BTreeMap::new(),
            debug: std::env::var("SIM_DEBUG").ok().and_then(|v| v.parse().ok()),
            cluster: P::cluster_invariants(genesis, &sc.params),
            snapshots: 0,
            sync_stats: statesync::SyncStats::default(),
            reads: reads::ReadChecker::default(),
            keys: all_keys.iter().map(|k| (k.public(), k.clone())).collect(),
            catch_ups: 0,
            members_told: None,
            set_sizes: BTreeMap::from([(0, sc.n)]),
            instances,
            sc,
        }
    }

    fn schedule(&mut self, at: u64, ev: Ev<P::Msg>) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Runs the scenario to its end and reports.
    pub fn run(mut self) -> Report {
        for i in 0..self.instances.len() {
            self.start_instance(i);
            let jitter = self.rng.gen_range(0..BATCH_TICK_MS);
            self.schedule(jitter, Ev::BatchTick { inst: i });
        }
        self.schedule(self.sc.tx_interval_ms, Ev::ClientTx);
        if self.sc.read_interval_ms > 0 {
            self.schedule(self.sc.read_interval_ms, Ev::ClientRead);
        }
        for c in self.sc.crashes.clone() {
            self.schedule(c.at_ms, Ev::Crash { inst: c.instance });
            self.schedule(c.restart_ms, Ev::Restart { inst: c.instance });
        }
        for c in self.sc.sync.wipes.clone() {
            self.schedule(c.at_ms, Ev::Wipe { inst: c.instance });
            self.schedule(c.restart_ms, Ev::SyncRestart { inst: c.instance });
        }
        for (k, (at, _)) in self.sc.members.clone().into_iter().enumerate() {
            self.schedule(at, Ev::Members { k });
        }
        for (k, c) in self.sc.sets.changes.clone().into_iter().enumerate() {
            self.schedule(c.at_ms, Ev::SetChange { k });
        }
        if !self.sc.sets.changes.is_empty() {
            for inst in 0..self.instances.len() {
                self.schedule(epochs::CATCH_UP_EVERY_MS, Ev::CatchUp { inst });
            }
        }
        let heal = self.sc.heal_ms();
        self.schedule(heal, Ev::Healed);
        let end = heal + self.sc.liveness_window_ms;

        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > end {
                break;
            }
            self.now = at;
            let ev = self.events.remove(&seq).expect("queued event exists");
            self.processed += 1;
            self.step(ev);
            self.check_cluster(false);
        }
        self.now = end;
        self.check_cluster(true);
        self.check_epochs_at_end();
        for (inst, before) in self.healed_heights.clone().into_iter().enumerate() {
            if self.instances[inst].honest() && self.is_member(inst) {
                self.checker.require_progress(end, inst, before);
            }
        }
        self.check_members_at_end(end);
        for inst in 0..self.instances.len() {
            if let Some(core) = &self.instances[inst].core
                && self.instances[inst].honest()
                && let Err(e) = P::settled(core, &self.sc.params)
            {
                self.checker.on_core(end, inst, e);
            }
        }
        let view_changes = self
            .instances
            .iter()
            .filter(|i| i.honest())
            .filter_map(|i| i.core.as_ref().map(P::view_changes))
            .max()
            .unwrap_or(0);
        Report {
            seed: self.sc.seed,
            protocol: P::NAME,
            height: self.checker.max_height(),
            view_changes,
            violations: self.checker.violations.clone(),
            trace: self.trace.finish(),
            events: self.processed,
            deliveries: self.deliveries,
            snapshots: self.snapshots,
            reads_served: self.reads.served,
            reads_failed: self.reads.failed,
            sync: self.sync_stats.clone(),
            epochs: self.checker.epochs(),
            catch_ups: self.catch_ups,
            membership_changes: self.members_told.map_or(0, |k| k as u64 + 1),
            joins: epochs::resizes(&self.set_sizes, true),
            leaves: epochs::resizes(&self.set_sizes, false),
        }
    }

    /// Runs the protocol's cluster-wide invariants (after an event, or at the end).
    fn check_cluster(&mut self, at_end: bool) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let nodes: Vec<NodeView<'_, P>> = self
            .instances
            .iter()
            .enumerate()
            .map(|(inst, i)| NodeView {
                inst,
                id: i.id,
                life: i.epoch,
                core: i.core.as_ref(),
                ledger: &i.ledger,
                disk_log: i.disk_log(),
            })
            .collect();
        let found = if at_end {
            cluster.at_end(&nodes)
        } else {
            cluster.after_event(self.now, &nodes)
        };
        for v in found {
            self.checker.on_cluster(self.now, v);
        }
    }

    fn step(&mut self, ev: Ev<P::Msg>) {
        match ev {
            Ev::Deliver { to, from, msg } => {
                let bytes = P::encode(&msg);
                *self.deliveries.entry(bytes[0]).or_default() += 1;
                self.trace
                    .part(&self.now.to_le_bytes())
                    .part(&[to as u8, from.0 as u8])
                    .part(&bytes);
                self.instances[to].remember(&msg);
                let offer = P::snapshot_offer(&msg);
                self.input(to, consensus::Input::Message { from, msg });
                if let Some(height) = offer {
                    self.snapshot_offered(to, from, height);
                }
            }
            Ev::Timer {
                inst,
                id,
                generation,
            } => {
                if self.instances[inst].timer_current(id, generation) {
                    self.input(inst, consensus::Input::Timer(id));
                }
            }
            Ev::Fsync { inst, epoch } => {
                if let Some(seq) = self.instances[inst].fsync_done(epoch) {
                    self.input(inst, consensus::Input::Persisted(seq));
                }
            }
            Ev::ClientTx => {
                let tx = self.workload.next_tx();
                // Each wallet talks to one replica, so its nonces arrive in order.
                let sender = tx.body.sender.0[0] as usize % self.wallets;
                let inst = sender % self.instances.len();
                self.instances[inst].submit(tx);
                self.schedule(self.now + self.sc.tx_interval_ms, Ev::ClientTx);
            }
            Ev::ClientRead => {
                let inst = self.rng.gen_range(0..self.instances.len());
                if self.instances[inst].core.is_some() {
                    let floor = (0..self.instances.len())
                        .map(|i| self.instances[i].ledger.height())
                        .max()
                        .unwrap_or(0);
                    let id = self.reads.ask(inst, floor);
                    self.input(inst, consensus::Input::Read(id));
                }
                self.schedule(self.now + self.sc.read_interval_ms, Ev::ClientRead);
            }
            Ev::BatchTick { inst } => {
                if let Some(batch) = self.instances[inst].take_batch(BATCH_MAX_TXS) {
                    let digest = crypto::hash(&crypto::codec::encode(&batch));
                    self.batches.insert(digest, batch);
                    // Batch data reaches every replica (data availability is the node's job;
                    // the cores order digests).
                    for j in 0..self.instances.len() {
                        let d = if j == inst {
                            0
                        } else {
                            self.rng.gen_range(1..=20)
                        };
                        self.schedule(self.now + d, Ev::BatchArrive { inst: j, digest });
                    }
                }
                self.schedule(self.now + BATCH_TICK_MS, Ev::BatchTick { inst });
            }
            Ev::BatchArrive { inst, digest } => {
                // The core is told either way (as before set changes existed); the driver
                // remembers only batches not executed yet, to offer the next epoch's core.
                self.instances[inst].batch_arrived(digest);
                self.input(inst, consensus::Input::Payload(digest));
            }
            Ev::Crash { inst } => {
                self.instances[inst].crash();
                self.reads.crashed(inst);
            }
            Ev::Restart { inst } => {
                if self.instances[inst].core.is_none() {
                    self.start_instance(inst);
                }
            }
            Ev::SnapshotDone { inst, from, epoch } => self.snapshot_done(inst, from, epoch),
            Ev::Wipe { inst } => self.wipe(inst),
            Ev::SyncRestart { inst } => self.sync_restart(inst),
            Ev::Healed => {
                self.healed_heights = (0..self.instances.len())
                    .map(|i| self.checker.height(i))
                    .collect();
            }
            Ev::SetChange { k } => self.set_change(k),
            Ev::Members { k } => {
                self.members_told = Some(k);
                for inst in 0..self.instances.len() {
                    self.tell_members(inst);
                }
            }
            Ev::CatchUp { inst } => self.catch_up(inst),
        }
    }

    fn start_instance(&mut self, i: usize) {
        self.start_core(i, self.sc.amnesia);
    }

    /// Builds instance `i`'s core from its disk (without the safety record if `amnesia`)
    /// and starts it.
    fn start_core(&mut self, i: usize, amnesia: bool) {
        let disk = self.instances[i].disk(amnesia);
        let (epoch, committee, anchor) = self.epoch_context(i);
        let inst = &mut self.instances[i];
        inst.up = true;
        if inst.id == node::OUTSIDER {
            // Not in its ledger's set: no core; it follows the chain (`epochs::catch_up`).
            (inst.core_epoch, inst.committee, inst.anchor) = (epoch, committee, anchor);
            let (h, tip) = (inst.ledger.height(), inst.ledger.tip());
            self.checker.restarted(i, h, tip);
            return;
        }
        let core = P::build(
            inst.id,
            inst.key.clone(),
            committee.clone(),
            anchor,
            &self.sc.params,
            &disk,
        );
        inst.core = Some(core);
        (inst.core_epoch, inst.committee, inst.anchor) = (epoch, committee, anchor);
        let (h, tip) = (inst.ledger.height(), inst.ledger.tip());
        self.checker.restarted(i, h, tip);
        let actions = self.instances[i]
            .core
            .as_mut()
            .expect("just built")
            .start(self.now);
        self.apply(i, actions);
        self.tell_members(i);
        self.check_core(i);
    }

    /// The members of the latest membership change told so far (Raft), as replica ids.
    fn members(&self) -> Option<BTreeSet<ReplicaId>> {
        let (_, m) = &self.sc.members[self.members_told?];
        Some(m.iter().map(|i| self.instances[*i].id).collect())
    }

    /// Whether instance `inst` is a member the ledger names (always, without changes).
    fn is_member(&self, inst: usize) -> bool {
        self.members()
            .is_none_or(|m| m.contains(&self.instances[inst].id))
    }

    /// Tells instance `inst`'s core the latest members, if any change happened.
    fn tell_members(&mut self, inst: usize) {
        let Some(members) = self.members() else {
            return;
        };
        if let Some(core) = self.instances[inst].core.as_mut() {
            let actions = P::set_members(core, &members);
            self.apply(inst, actions);
        }
    }

    /// After the liveness window, every live member's configuration has reached the
    /// members the ledger names, all of them voters.
    fn check_members_at_end(&mut self, end: u64) {
        let Some(members) = self.members() else {
            return;
        };
        for inst in 0..self.instances.len() {
            let Some(voters) = self.instances[inst].core.as_ref().and_then(P::voters) else {
                continue;
            };
            if self.is_member(inst) && voters != members {
                self.checker.on_core(
                    end,
                    inst,
                    format!(
                        "MEMBERSHIP NOT REACHED: voters {voters:?}, the ledger names {members:?}"
                    ),
                );
            }
        }
    }

    /// Protocol-specific bounds on an honest core, after every input.
    fn check_core(&mut self, i: usize) {
        if let Some(core) = &self.instances[i].core
            && self.instances[i].honest()
            && let Err(e) = P::bounded(core, &self.sc.params)
        {
            self.checker.on_core(self.now, i, e);
        }
    }

    fn input(&mut self, i: usize, input: consensus::Input<P::Msg>) {
        let now = self.now;
        let Some(core) = self.instances[i].core.as_mut() else {
            return; // crashed
        };
        let debug = self.debug == Some(i);
        if debug {
            eprintln!("[{now}] inst {i} view {} <- {input:?}", core.view());
        }
        let actions = consensus::Core::handle(core, now, input);
        if debug {
            for a in &actions {
                eprintln!("    -> {a:?}");
            }
        }
        self.apply(i, actions);
        self.check_core(i);
    }

    /// The chain binding of this run (for tests that build their own transactions).
    pub fn chain(&self) -> &ChainBinding {
        &self.chain
    }
}

/// Runs one scenario with protocol `P`.
/// Verdicts and signatures each simulation thread remembers (about 10 MB).
pub const SIM_MEMO_ENTRIES: usize = 1 << 17;

pub fn run<P: SimProtocol>(sc: Scenario) -> Report {
    // Every replica of a scenario runs on this thread and checks the same signatures: each
    // is verified (and each twin's message signed) once per thread, not once per replica.
    // Verdicts are pure functions of their inputs, so this changes no outcome.
    crypto::memo::remember_on_this_thread(SIM_MEMO_ENTRIES);
    Sim::<P>::new(sc).run()
}
