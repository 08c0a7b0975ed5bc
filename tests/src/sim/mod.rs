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

mod byz;
mod check;
mod cluster;
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
pub use protocol::{ByzCtx, Dest, Disk, HotStuffSim, Params, PbftSim, RaftParams, SimProtocol};
pub use raft::RaftSim;
pub use scenario::{
    Scenario, SyncFaults, amnesia_scenario, amnesia_scenario_with, random_scenario, wipe_scenario,
};

use consensus::{Committee, Core, ReplicaId};
use crypto::{Digest, Hasher, SecretKey};
use ledger::{ChainBinding, Transaction};
use node::Instance;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

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
        let alloc = crate::workload::allocation(&wallet_keys, 1_000_000);
        let supply = alloc.iter().map(|(_, b)| *b as u128).sum();
        let workload = crate::workload::Transfers::new(sc.seed, wallet_keys, chain.clone());

        // One instance per replica, plus a second one for each twin.
        let mut ids: Vec<ReplicaId> = committee.ids().collect();
        for (id, b) in &sc.byzantine {
            if *b == Behaviour::Twin {
                ids.push(*id);
            }
        }
        let instances: Vec<Instance<P>> = ids
            .iter()
            .map(|id| {
                let byz = sc.byzantine.iter().find(|(b, _)| b == id).map(|(_, b)| *b);
                Instance::new(*id, keys[id.0 as usize].clone(), byz, chain.clone(), &alloc)
            })
            .collect();
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
        for (inst, before) in self.healed_heights.clone().into_iter().enumerate() {
            if self.instances[inst].honest() {
                self.checker.require_progress(end, inst, before);
            }
        }
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
        }
    }

    fn start_instance(&mut self, i: usize) {
        self.start_core(i, self.sc.amnesia);
    }

    /// Builds instance `i`'s core from its disk (without the safety record if `amnesia`)
    /// and starts it.
    fn start_core(&mut self, i: usize, amnesia: bool) {
        let disk = self.instances[i].disk(amnesia);
        let inst = &mut self.instances[i];
        let core = P::build(
            inst.id,
            inst.key.clone(),
            self.committee.clone(),
            self.genesis,
            &self.sc.params,
            &disk,
        );
        inst.core = Some(core);
        let (h, tip) = (inst.ledger.height(), inst.ledger.tip());
        self.checker.restarted(i, h, tip);
        let actions = self.instances[i]
            .core
            .as_mut()
            .expect("just built")
            .start(self.now);
        self.apply(i, actions);
        self.check_core(i);
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

    fn apply(&mut self, i: usize, actions: Vec<consensus::Action<P::Msg>>) {
        use consensus::Action;
        for a in actions {
            match a {
                Action::Send { to, msg } => self.route(i, protocol::Dest::To(to), msg),
                Action::Broadcast { msg } => self.route(i, protocol::Dest::All, msg),
                Action::Persist { seq, what } => {
                    if self.instances[i].persist(seq, what) {
                        let (lo, hi) = self.sc.fsync_ms;
                        let at = self.now + self.rng.gen_range(lo..=hi);
                        let epoch = self.instances[i].epoch;
                        self.schedule(at, Ev::Fsync { inst: i, epoch });
                    }
                }
                Action::Commit(c) => self.commit(i, c),
                Action::ReadReady { id, index } => self.read_answered(i, id, Some(index)),
                Action::ReadFailed { id } => self.read_answered(i, id, None),
                Action::SetTimer { id, after_ms } => {
                    let generation = self.instances[i].set_timer(id);
                    self.schedule(
                        self.now + after_ms,
                        Ev::Timer {
                            inst: i,
                            id,
                            generation,
                        },
                    );
                }
            }
        }
        self.feed_executed(i);
    }

    /// Tells the core of every block its ledger executed, one at a time and in height order,
    /// once the actions that committed them are carried out. Blocks those inputs commit in
    /// turn are queued behind and told by the same loop (never out of order by recursion).
    fn feed_executed(&mut self, i: usize) {
        if std::mem::replace(&mut self.instances[i].feeding, true) {
            return;
        }
        while let Some((height, state_root)) = self.instances[i].executed.pop_front() {
            self.input(i, consensus::Input::Executed { height, state_root });
        }
        self.instances[i].feeding = false;
    }

    fn commit(&mut self, i: usize, c: consensus::Committed) {
        let (committee, genesis) = (&self.committee, &self.genesis);
        let cert_ok = *self
            .certificates
            .entry(crypto::hash(&c.certificate))
            .or_insert_with(|| P::verify_certificate(&c.certificate, committee, genesis));
        let batches = &self.batches;
        let input = ::node::validator::block_input(c, &self.committee, |d| batches.get(d).cloned());
        let block = self.instances[i].execute(input);
        self.instances[i]
            .executed
            .push_back((block.header.height, block.header.state_root));
        self.trace.part(&[0xc0, i as u8]).part(&block.hash().0);
        if self.instances[i].honest() {
            if !cert_ok {
                self.checker.violations.push(format!(
                    "t={}ms: instance {i} committed height {} with an invalid certificate",
                    self.now, block.header.height
                ));
            }
            let supply = self.instances[i]
                .ledger
                .total_supply()
                .expect("in-memory store cannot fail");
            self.checker.on_commit(self.now, i, &block, supply);
        }
    }

    fn read_answered(&mut self, i: usize, id: u64, index: Option<u64>) {
        if let Some(v) = self.reads.answered(self.now, i, id, index) {
            self.checker.violations.push(v);
        }
    }

    fn route(&mut self, from: usize, dest: protocol::Dest, msg: P::Msg) {
        let inst = &self.instances[from];
        let outgoing = match inst.byz {
            Some(behaviour) if behaviour != Behaviour::Twin => {
                let ctx = protocol::ByzCtx {
                    behaviour,
                    key: &inst.key,
                    committee: &self.committee,
                    genesis: &self.genesis,
                    seen: &inst.seen,
                };
                P::misbehave(&ctx, dest, msg, &mut self.rng)
            }
            _ => vec![(dest, msg)],
        };
        let sender = self.instances[from].id;
        let honest = self.instances[from].honest();
        for (dest, msg) in outgoing {
            if honest {
                for (slot, what) in P::votes_of(&msg) {
                    self.checker.on_vote(self.now, sender, slot, what);
                }
            }
            let view = P::view_of(&msg);
            for to in 0..self.instances.len() {
                let id = self.instances[to].id;
                let wanted = id != sender
                    && match &dest {
                        protocol::Dest::To(r) => *r == id,
                        protocol::Dest::All => true,
                        protocol::Dest::Some(set) => set.contains(&id),
                    };
                if !wanted || self.sc.network.cut(from, to, self.now, view) {
                    continue;
                }
                for d in self.sc.network.delays(self.now, &mut self.rng) {
                    self.schedule(
                        self.now + d,
                        Ev::Deliver {
                            to,
                            from: sender,
                            msg: msg.clone(),
                        },
                    );
                }
            }
        }
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
