//! Scenarios: who misbehaves, what breaks and when, all drawn from one seed.

use super::byz::Behaviour;
use super::net::{Crash, Cut, Network, Partition};
use super::protocol::{Params, RaftParams};
use consensus::ReplicaId;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub n: usize,
    pub network: Network,
    pub crashes: Vec<Crash>,
    pub byzantine: Vec<(ReplicaId, Behaviour)>,
    /// Restarts lose the safety record (negative control).
    pub amnesia: bool,
    pub leader_schedule: Option<Vec<ReplicaId>>,
    pub params: Params,
    pub tx_interval_ms: u64,
    /// A client asks a random replica for a linearizable read this often (0: never).
    pub read_interval_ms: u64,
    pub fsync_ms: (u64, u64),
    /// No fault starts after this time.
    pub faults_until_ms: u64,
    /// After every fault has healed, honest replicas must commit within this window.
    pub liveness_window_ms: u64,
    /// Stores wiped and rebuilt by state sync (HotStuff, PBFT).
    pub sync: SyncFaults,
    /// Validator-set changes (issue 21), for protocols that switch sets.
    pub sets: SetChanges,
    /// Raft membership changes (issue 21): at each time, every live replica is told the
    /// members the ledger names (instance indices), as the node tells its core.
    pub members: Vec<(u64, Vec<usize>)>,
}

/// Validator-set changes: each is approved by a quorum of the set of its moment and carried
/// by a transaction through every replica's mempool; it takes effect after `epoch_delay`
/// blocks, when every replica retires its core and starts the next epoch's.
#[derive(Clone, Debug, Default)]
pub struct SetChanges {
    pub changes: Vec<SetChangeAt>,
    /// `ledger::validators::Governance::epoch_delay`.
    pub epoch_delay: u64,
    /// Negative control: this instance's driver switches cores one block late (it keeps its
    /// old core for the block after the epoch's last).
    pub late_switch: Option<usize>,
    /// Replicas outside the genesis set (instances `n..n + spares`): they follow the chain
    /// without a core until a change adds them.
    pub spares: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct SetChangeAt {
    pub at_ms: u64,
    /// The member (index in the set of that moment) whose consensus key is replaced, or who
    /// is removed.
    pub rotate: usize,
    pub kind: SetKind,
}

/// What a [`SetChangeAt`] does, decided when it is made from the set of that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// Replace a member's keys.
    Rotate,
    /// At the genesis size, add the next spare that was never a member (a rotation when
    /// none is left); above it, remove a member. The set stays within `n..=n + 1`, so f
    /// stays what the scenario's Byzantine replicas assume.
    Resize,
}

/// State-sync faults: replicas whose store is deleted while they are down (they restart
/// empty and fetch a verified snapshot, `sim::statesync`), and peers that lie to them.
#[derive(Clone, Debug, Default)]
pub struct SyncFaults {
    /// Each crash here also deletes the instance's ledger store (its safety record stays,
    /// as the node keeps it in its own file).
    pub wipes: Vec<Crash>,
    /// This instance raises a balance in every state chunk it serves.
    pub corrupt_chunks: Option<usize>,
    /// This instance offers a snapshot whose block carries a forged state root.
    pub forged_offer: Option<usize>,
    /// Negative control: chunks are taken without their proofs and the state as received.
    pub unverified: bool,
}

impl Scenario {
    /// No faults: a reliable network, no crashes, no Byzantine replica.
    pub fn calm(seed: u64, n: usize) -> Scenario {
        Scenario {
            seed,
            n,
            network: Network::reliable(),
            crashes: vec![],
            byzantine: vec![],
            amnesia: false,
            leader_schedule: None,
            params: Params {
                base_timeout_ms: 400,
                max_timeout_ms: 3_000,
                max_payload: 16,
                idle_block_ms: 100,
                checkpoint_interval: consensus::pbft::DEFAULT_CHECKPOINT_INTERVAL,
                seed,
                raft: RaftParams::default(),
            },
            tx_interval_ms: 20,
            read_interval_ms: 0,
            fsync_ms: (1, 6),
            faults_until_ms: 0,
            liveness_window_ms: 5_000,
            sync: SyncFaults::default(),
            sets: SetChanges::default(),
            members: Vec::new(),
        }
    }

    /// When the last fault has healed (partitions ended, crashed replicas restarted).
    pub fn heal_ms(&self) -> u64 {
        let restarts = self
            .crashes
            .iter()
            .chain(&self.sync.wipes)
            .map(|c| c.restart_ms)
            .max()
            .unwrap_or(0);
        self.faults_until_ms
            .max(self.network.healed_at())
            .max(restarts)
    }

    /// A one-line description for failure reports.
    pub fn describe(&self) -> String {
        let byz: Vec<String> = self
            .byzantine
            .iter()
            .map(|(id, b)| format!("{id}:{b}"))
            .collect();
        format!(
            "n={} drop={:.2} dup={:.2} latency={}..{}ms partitions={} crashes={} idle={}ms tx_every={}ms checkpoint_every={} byzantine=[{}]{}",
            self.n,
            self.network.drop,
            self.network.duplicate,
            self.network.min_latency_ms,
            self.network.max_latency_ms,
            self.network.partitions.len(),
            self.crashes.len(),
            self.params.idle_block_ms,
            self.tx_interval_ms,
            self.params.checkpoint_interval,
            byz.join(","),
            if self.amnesia { " amnesia" } else { "" }
        )
    }
}

/// A random fault scenario for `seed`: lossy, jittery network, up to two partitions
/// (symmetric or one-way) that heal, up to two crash-restarts of honest replicas, and, in
/// most seeds, one Byzantine replica (at most f = 1 for n = 4).
pub fn random_scenario(seed: u64, n: usize) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut sc = Scenario::calm(seed, n);
    let f = (n - 1) / 3;
    sc.faults_until_ms = 6_000;
    sc.liveness_window_ms = 10_000;
    let lo = rng.gen_range(1..5);
    sc.network.min_latency_ms = lo;
    sc.network.max_latency_ms = lo + rng.gen_range(5..60);
    if rng.gen_bool(0.6) {
        sc.network.drop = rng.gen_range(0.0..0.08);
    }
    if rng.gen_bool(0.4) {
        sc.network.duplicate = rng.gen_range(0.0..0.05);
    }
    sc.network.lossy_until_ms = sc.faults_until_ms;

    let mut byz_ids = Vec::new();
    if f > 0 && rng.gen_bool(0.7) {
        let id = ReplicaId(rng.gen_range(0..n as u16));
        let b = *Behaviour::ALL_SINGLE.choose(&mut rng).expect("non-empty");
        sc.byzantine.push((id, b));
        byz_ids.push(id.0 as usize);
    }
    let instances = n + sc
        .byzantine
        .iter()
        .filter(|(_, b)| *b == Behaviour::Twin)
        .count();

    for _ in 0..rng.gen_range(0..=2) {
        let p = random_partition(&mut rng, instances, sc.faults_until_ms, 3_000, 0.3);
        sc.network.partitions.push(p);
    }

    let honest: Vec<usize> = (0..n).filter(|i| !byz_ids.contains(i)).collect();
    for _ in 0..rng.gen_range(0..=2) {
        let instance = *honest.choose(&mut rng).expect("honest replicas exist");
        let at_ms = rng.gen_range(0..sc.faults_until_ms);
        sc.crashes.push(Crash {
            instance,
            at_ms,
            restart_ms: at_ms + rng.gen_range(100..2_500),
        });
    }
    // Idle pacing: without it, or with sparse client traffic so leaders often wait.
    sc.params.idle_block_ms = *[0, 50, 100].choose(&mut rng).expect("non-empty");
    if rng.gen_bool(0.3) {
        sc.tx_interval_ms = rng.gen_range(100..600);
    }
    // PBFT checkpoints (drawn last, so the draws above and HotStuff's seeds are unchanged):
    // often small, so garbage collection, catch-up past the water marks and view changes
    // carrying checkpoint proofs happen many times per run.
    sc.params.checkpoint_interval = *[4, 8, 16].choose(&mut rng).expect("non-empty");
    sc
}

/// The amnesia control: an equivocating leader (replica 0) shows both of its blocks to
/// everyone in different orders, and honest replicas crash and reboot within milliseconds,
/// many times. With `amnesia` they come back without their safety record and can vote twice
/// in one view; without it they must not.
pub fn amnesia_scenario(seed: u64, amnesia: bool) -> Scenario {
    amnesia_scenario_with(seed, amnesia, ReplicaId(0))
}

/// [`amnesia_scenario`] with `equivocator` as the Byzantine leader (PBFT's primary of view 1
/// is replica 1) and the other three crashing.
pub fn amnesia_scenario_with(seed: u64, amnesia: bool, equivocator: ReplicaId) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa5a5);
    let mut sc = Scenario::calm(seed, 4);
    sc.amnesia = amnesia;
    sc.byzantine = vec![(equivocator, Behaviour::Equivocate)];
    sc.network.max_latency_ms = 40;
    sc.faults_until_ms = 5_000;
    let others: Vec<usize> = (0..4).filter(|i| *i != equivocator.0 as usize).collect();
    for k in 0..16u64 {
        let at_ms = 100 + k * 300 + rng.gen_range(0..100);
        sc.crashes.push(Crash {
            instance: others[(k % 3) as usize],
            at_ms,
            restart_ms: at_ms + rng.gen_range(1..5),
        });
    }
    sc
}

/// A partition starting before `faults_until_ms` and lasting 300 ms to `max_ms`, cutting a
/// random non-empty proper subset of `instances` off from the rest: one way with probability
/// `one_way` (its messages out are lost, messages in delivered), else both ways.
pub fn random_partition(
    rng: &mut ChaCha8Rng,
    instances: usize,
    faults_until_ms: u64,
    max_ms: u64,
    one_way: f64,
) -> Partition {
    let start_ms = rng.gen_range(0..faults_until_ms);
    let end_ms = start_ms + rng.gen_range(300..max_ms);
    let mut all: Vec<usize> = (0..instances).collect();
    all.shuffle(rng);
    let side = all[..rng.gen_range(1..instances)].to_vec();
    let kind = if rng.gen_bool(one_way) {
        Cut::Asymmetric { from: side }
    } else {
        Cut::Symmetric { side }
    };
    Partition {
        start_ms,
        end_ms,
        kind,
    }
}

/// [`random_scenario`] with one honest replica's store deleted while it is down (it
/// restarts by state sync), one replica corrupting the chunks it serves and one offering a
/// forged root (the Byzantine one when there is one); `unverified` is the negative control.
pub fn wipe_scenario(seed: u64, n: usize, unverified: bool) -> Scenario {
    let mut sc = random_scenario(seed, n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5747_5f57_4950_4521);
    let byz: Vec<usize> = sc.byzantine.iter().map(|(id, _)| id.0 as usize).collect();
    let crashed: Vec<usize> = sc.crashes.iter().map(|c| c.instance).collect();
    let free: Vec<usize> = (0..n)
        .filter(|i| !byz.contains(i) && !crashed.contains(i))
        .collect();
    let Some(&wiped) = free.choose(&mut rng) else {
        return sc;
    };
    let at_ms = rng.gen_range(1_000..3_000);
    sc.sync.wipes.push(Crash {
        instance: wiped,
        at_ms,
        restart_ms: at_ms + rng.gen_range(1_000..3_000),
    });
    let liar = byz
        .first()
        .copied()
        .unwrap_or_else(|| (wiped + 1 + rng.gen_range(0..n - 1)) % n);
    sc.sync.corrupt_chunks = Some(liar);
    sc.sync.forged_offer = Some(liar);
    sc.sync.unverified = unverified;
    sc
}

/// [`random_scenario`] with three validator-set changes (issue 21) at about 0.5 s, 2.5 s and
/// 4.5 s, each taking effect 8 blocks after the block that accepts it, while the scenario's
/// faults (partitions, crashes, a Byzantine replica, lossy links) go on. Each change is, at
/// random, a key rotation or a resize ([`SetKind`]: a spare replica joins, or a member
/// leaves); two spares follow the chain from the start. `late_switch` is the negative
/// control: one honest replica's driver keeps its old core one block past each epoch's end.
pub fn epoch_scenario(seed: u64, n: usize, late_switch: bool) -> Scenario {
    let mut sc = random_scenario(seed, n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6570_6f63_6873);
    sc.sets.epoch_delay = 8;
    sc.sets.spares = 2;
    for k in 0..3u64 {
        sc.sets.changes.push(SetChangeAt {
            at_ms: 500 + 2_000 * k + rng.gen_range(0..200),
            rotate: rng.gen_range(0..n),
            kind: if rng.gen_range(0..3) == 0 {
                SetKind::Rotate
            } else {
                SetKind::Resize
            },
        });
    }
    if late_switch {
        let byz: Vec<usize> = sc.byzantine.iter().map(|(id, _)| id.0 as usize).collect();
        sc.sets.late_switch = (0..n).find(|i| !byz.contains(i));
    }
    // The run lasts past the last change's epoch, whatever the faults' heal time.
    sc.faults_until_ms = sc.faults_until_ms.max(5_000);
    sc
}
