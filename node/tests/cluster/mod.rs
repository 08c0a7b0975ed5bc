//! The in-process cluster the driver tests share: validators (real cores, real redb stores
//! in temp folders, real mempools and batches) connected by a message pump with a simulated
//! clock. Used by `validator.rs` and `epochs.rs`; each test binary uses part of it.
#![allow(dead_code)]

use consensus::{Committee, ReplicaId};
use crypto::SecretKey;
use ledger::{Address, ChainBinding, Payload, Store, Transaction};
use node::mempool::Limits;
use node::store::RedbStore;
use node::validator::admission::{Admission, Verified};
use node::validator::{
    CoreParams, Driver, DriverConfig, HotStuffProtocol, Out, Protocol, RaftProtocol,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const N: usize = 4;
pub const LATENCY_MS: u64 = 2;
pub const BATCH_EVERY_MS: u64 = 10;

pub enum Ev {
    Frame {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        id: u64,
        generation: u64,
    },
    Batch {
        node: usize,
    },
    /// The admission workers' verdict on a peer batch, delivered late on purpose.
    Verified {
        node: usize,
        v: Verified,
    },
}

/// How long (simulated) a worker verdict takes to reach the driver: long enough that
/// commits whose batches are pending must wait for it.
pub const VERIFY_DELAY_MS: u64 = 30;

/// Sees every frame as it is delivered (from, to, bytes): may change it, or drop it by
/// returning false.
pub type Filter = Box<dyn FnMut(usize, usize, &mut Vec<u8>) -> bool>;

pub struct Cluster<P: Protocol = HotStuffProtocol> {
    /// Validators (`N` unless built otherwise).
    pub n: usize,
    pub dirs: Vec<tempfile::TempDir>,
    pub nodes: Vec<Option<Driver<P>>>,
    pub keys: Vec<SecretKey>,
    pub committee: Committee,
    pub chain: ChainBinding,
    pub alloc: Vec<(Address, u64)>,
    pub now: u64,
    pub seq: u64,
    pub events: BTreeMap<(u64, u64), Ev>,
    pub timers: BTreeMap<(usize, u64), u64>,
    pub snapshot_interval: u64,
    pub filter: Option<Filter>,
    /// Per validator, when peers' batch signatures are checked by admission workers (as in
    /// `cairnd run`): the workers' verdicts, picked up by the pump.
    pub verdicts: Vec<Option<tokio::sync::mpsc::UnboundedReceiver<Verified>>>,
    /// Verdicts delivered to drivers.
    pub verdicts_delivered: usize,
    /// The validator set as ledger state and how it may change (`None`: an untracked set
    /// that never changes).
    pub sets: Option<SetSetup>,
    /// Per validator, its current numbering of the set: (replica id, network key) (`None`:
    /// the set is not tracked and node `i` is replica `i` everywhere).
    pub numbering: Vec<Option<Vec<(u16, crypto::PublicKey)>>>,
}

/// A cluster whose ledgers track the validator set and accept changes to it.
#[derive(Clone)]
pub struct SetSetup {
    pub members: Vec<ledger::validators::Member>,
    pub governance: ledger::validators::Governance,
    /// Per validator, the further consensus keys it holds (`DriverConfig::next_keys`).
    pub next_keys: Vec<Vec<SecretKey>>,
}

/// The ledger members for consensus `keys`, with made-up network keys and addresses.
pub fn members_of(keys: &[SecretKey]) -> Vec<ledger::validators::Member> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| ledger::validators::Member {
            name: format!("validator-{i}"),
            consensus_key: k.public(),
            network_key: SecretKey::from_seed([200 + i as u8; 32]).public(),
            p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 27000 + i),
        })
        .collect()
}

pub fn wallet(i: u8) -> SecretKey {
    SecretKey::from_seed([100 + i; 32])
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster::with_protocol()
    }
}

pub fn validator_keys(n: usize) -> Vec<SecretKey> {
    (0..n as u8)
        .map(|i| SecretKey::from_seed([i + 1; 32]))
        .collect()
}

impl Cluster<RaftProtocol> {
    /// `n` Raft validators (a crash-fault committee, quorum a majority), compacting every
    /// `snapshot_interval` entries, with `extra_accounts` funded genesis accounts besides the
    /// wallets.
    pub fn raft(n: usize, extra_accounts: usize, snapshot_interval: u64) -> Cluster<RaftProtocol> {
        let keys = validator_keys(n);
        let committee = Committee::new_cft(
            keys.iter().map(|k| k.public()).collect(),
            (n - 1) / 2,
            n / 2 + 1,
        )
        .unwrap();
        Cluster::build(keys, committee, extra_accounts, snapshot_interval)
    }
}

impl Cluster<RaftProtocol> {
    /// `n` Raft validators whose ledgers track the set and accept changes approved by a
    /// majority, compacting every `snapshot_interval` entries, and `joiners` more nodes
    /// (indices `n..`) whose keys no genesis set names.
    pub fn raft_with_sets(
        n: usize,
        epoch_delay: u64,
        joiners: usize,
        snapshot_interval: u64,
    ) -> Cluster<RaftProtocol> {
        let keys = validator_keys(n + joiners);
        let committee = Committee::new_cft(
            keys[..n].iter().map(|k| k.public()).collect(),
            (n - 1) / 2,
            n / 2 + 1,
        )
        .unwrap();
        let sets = SetSetup {
            members: members_of(&keys[..n]),
            governance: ledger::validators::Governance {
                rule: ledger::validators::Rule::Majority,
                epoch_delay,
            },
            next_keys: Vec::new(),
        };
        Cluster::build_with(keys, committee, 0, snapshot_interval, Some(sets))
    }
}

impl<P: Protocol> Cluster<P> {
    pub fn with_protocol() -> Cluster<P> {
        let keys = validator_keys(N);
        let committee = Committee::bft(keys.iter().map(|k| k.public()).collect()).unwrap();
        Cluster::build(keys, committee, 0, 1024)
    }

    pub fn build(
        keys: Vec<SecretKey>,
        committee: Committee,
        extra_accounts: usize,
        snapshot_interval: u64,
    ) -> Cluster<P> {
        Cluster::build_with(keys, committee, extra_accounts, snapshot_interval, None)
    }

    /// `N` BFT validators whose ledgers track the set and accept changes (`next_keys[i]`:
    /// the keys validator `i` may be rotated to), and `joiners` more nodes (indices `N..`)
    /// whose keys no genesis set names: they follow the chain until a change adds them.
    pub fn with_sets(
        epoch_delay: u64,
        joiners: usize,
        next_keys: Vec<Vec<SecretKey>>,
    ) -> Cluster<P> {
        Cluster::with_sets_n(N, epoch_delay, joiners, next_keys)
    }

    /// As [`Cluster::with_sets`], with `n` genesis validators.
    pub fn with_sets_n(
        n: usize,
        epoch_delay: u64,
        joiners: usize,
        next_keys: Vec<Vec<SecretKey>>,
    ) -> Cluster<P> {
        let keys = validator_keys(n + joiners);
        let committee = Committee::bft(keys[..n].iter().map(|k| k.public()).collect()).unwrap();
        let sets = SetSetup {
            members: members_of(&keys[..n]),
            governance: ledger::validators::Governance {
                rule: ledger::validators::Rule::Bft,
                epoch_delay,
            },
            next_keys,
        };
        Cluster::build_with(keys, committee, 0, 1024, Some(sets))
    }

    pub fn build_with(
        keys: Vec<SecretKey>,
        committee: Committee,
        extra_accounts: usize,
        snapshot_interval: u64,
        sets: Option<SetSetup>,
    ) -> Cluster<P> {
        let n = keys.len();
        let chain = ChainBinding {
            chain_id: "validator-test".into(),
            genesis_hash: crypto::hash(b"validator-test genesis"),
        };
        let mut alloc: Vec<(Address, u64)> = (0..4)
            .map(|i| (Address::of(&wallet(i).public()), 1_000_000))
            .collect();
        alloc.extend((0..extra_accounts).map(|i| {
            let mut a = [0xA5; 20];
            a[..8].copy_from_slice(&(i as u64).to_le_bytes());
            (Address(a), 1 + i as u64)
        }));
        let mut c = Cluster {
            n,
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: (0..n).map(|_| None).collect(),
            keys,
            committee,
            chain,
            alloc,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            timers: BTreeMap::new(),
            snapshot_interval,
            filter: None,
            verdicts: (0..n).map(|_| None).collect(),
            verdicts_delivered: 0,
            sets,
            numbering: vec![None; n],
        };
        for i in 0..n {
            c.open(i);
            c.schedule(BATCH_EVERY_MS + i as u64, Ev::Batch { node: i });
        }
        c
    }

    pub fn db(&self, i: usize) -> PathBuf {
        self.dirs[i].path().join("store.redb")
    }

    pub fn open(&mut self, i: usize) {
        let cfg = DriverConfig {
            me: ReplicaId(i as u16),
            key: self.keys[i].clone(),
            next_keys: self
                .sets
                .as_ref()
                .and_then(|s| s.next_keys.get(i).cloned())
                .unwrap_or_default(),
            committee: self.committee.clone(),
            chain: self.chain.clone(),
            genesis: ledger::LedgerGenesis {
                accounts: self.alloc.clone(),
                validators: match &self.sets {
                    Some(s) => ledger::validators::ValidatorState::from_members(s.members.clone()),
                    None => Default::default(),
                },
                governance: self.sets.as_ref().map(|s| s.governance),
            },
            base_timeout_ms: 500,
            max_timeout_ms: 4_000,
            idle_block_ms: 50,
            checkpoint_interval: CoreParams::DEFAULT_CHECKPOINT_INTERVAL,
            snapshot_interval: self.snapshot_interval,
            max_block_batches: 16,
            batch_max_txs: 64,
            batch_max_bytes: 1 << 20,
            mempool: Limits {
                governance: self.sets.is_some(),
                ..Limits::default()
            },
            // Small, so the tests read accounts and tree nodes back from disk.
            state_cache_bytes: 256 << 10,
        };
        let mut d = Driver::<P>::open(cfg, RedbStore::open(&self.db(i)).unwrap()).unwrap();
        if self.verdicts[i].is_some() {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (workers, _threads) = Admission::start(1, tx).unwrap();
            d.use_admission(workers);
            self.verdicts[i] = Some(rx);
        }
        let out = d.start(self.now).unwrap();
        self.nodes[i] = Some(d);
        self.apply(i, out);
    }

    pub fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    /// Node `node`'s network key (as [`members_of`] gives it).
    pub fn net_key(node: usize) -> crypto::PublicKey {
        SecretKey::from_seed([200 + node as u8; 32]).public()
    }

    /// The node that `from` means by replica `to`: the one at that place in `from`'s
    /// numbering (`Driver::take_network_change`), as the real transport addresses it.
    fn node_at(&self, from: usize, to: usize) -> Option<usize> {
        match &self.numbering[from] {
            None => Some(to),
            Some(keys) => {
                let (_, key) = keys.iter().find(|(i, _)| usize::from(*i) == to)?;
                (0..self.n).find(|&j| Self::net_key(j) == *key)
            }
        }
    }

    /// Where node `to` numbers node `from`, if it lets `from` in at all (the real transport
    /// refuses a validator outside its list).
    fn index_at(&self, to: usize, from: usize) -> Option<usize> {
        match &self.numbering[to] {
            None => Some(from),
            Some(keys) => keys
                .iter()
                .find(|(_, k)| *k == Self::net_key(from))
                .map(|(i, _)| usize::from(*i)),
        }
    }

    /// Like the run loop after each step: the numbering follows the node's validator set
    /// before its frames go out.
    fn follow_set(&mut self, node: usize) {
        if let Some(d) = self.nodes[node].as_mut()
            && let Some(peers) = d.take_network_change()
        {
            self.numbering[node] = Some(peers.iter().map(|p| (p.index, p.network_key)).collect());
        }
    }

    pub fn apply(&mut self, from: usize, out: Vec<Out>) {
        self.follow_set(from);
        for o in out {
            match o {
                Out::Send(to, bytes) => {
                    let at = self.now + LATENCY_MS;
                    let Some(to) = self.node_at(from, to.0 as usize) else {
                        continue;
                    };
                    self.schedule(at, Ev::Frame { to, from, bytes });
                }
                Out::Broadcast(bytes) => {
                    let peers: Vec<usize> = (0..self.n)
                        .filter(|t| *t != from)
                        .filter(|&t| match &self.numbering[from] {
                            None => true,
                            Some(keys) => keys.iter().any(|(_, k)| *k == Self::net_key(t)),
                        })
                        .collect();
                    for to in peers {
                        let at = self.now + LATENCY_MS + to as u64 % 2;
                        self.schedule(
                            at,
                            Ev::Frame {
                                to,
                                from,
                                bytes: bytes.clone(),
                            },
                        );
                    }
                }
                Out::Timer { id, after_ms } => {
                    let generation = self.seq + 1;
                    self.timers.insert((from, id), generation);
                    self.schedule(
                        self.now + after_ms,
                        Ev::Timer {
                            node: from,
                            id,
                            generation,
                        },
                    );
                }
                Out::Committed { .. } => {}
            }
        }
    }

    /// Runs until `done` holds or `limit_ms` of simulated time pass; returns whether it held.
    pub fn run_until(&mut self, limit_ms: u64, done: impl Fn(&Cluster<P>) -> bool) -> bool {
        let end = self.now + limit_ms;
        // Peek first: an event past `end` stays for the next run (popping and dropping it
        // would end a node's batch timer chain for good).
        while self
            .events
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= end)
        {
            let ((at, _), ev) = self.events.pop_first().expect("peeked above");
            self.now = at;
            let (node, out) = match ev {
                Ev::Frame {
                    to,
                    from,
                    mut bytes,
                } => {
                    if self.nodes[to].is_none() {
                        continue;
                    }
                    if let Some(filter) = self.filter.as_mut()
                        && !filter(from, to, &mut bytes)
                    {
                        continue;
                    }
                    let Some(index) = self.index_at(to, from) else {
                        continue;
                    };
                    let d = self.nodes[to].as_mut().expect("checked above");
                    (to, d.on_frame(at, ReplicaId(index as u16), &bytes).unwrap())
                }
                Ev::Timer {
                    node,
                    id,
                    generation,
                } => {
                    if self.timers.get(&(node, id)) != Some(&generation) {
                        continue;
                    }
                    match self.nodes[node].as_mut() {
                        Some(d) => (node, d.on_timer(at, id).unwrap()),
                        None => continue,
                    }
                }
                Ev::Batch { node } => {
                    self.schedule(at + BATCH_EVERY_MS, Ev::Batch { node });
                    self.collect_verdicts();
                    match self.nodes[node].as_mut() {
                        Some(d) => (node, d.make_batch(at).unwrap()),
                        None => continue,
                    }
                }
                Ev::Verified { node, v } => match self.nodes[node].as_mut() {
                    Some(d) => {
                        self.verdicts_delivered += 1;
                        (node, d.on_verified(at, v).unwrap())
                    }
                    None => continue,
                },
            };
            self.apply(node, out);
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Schedules the verdicts the workers have sent so far, [`VERIFY_DELAY_MS`] from now.
    /// The workers run in real time, the pump in simulated time: a verdict not in yet is
    /// waited for a little, so that every one is delivered.
    pub fn collect_verdicts(&mut self) {
        for i in 0..self.n {
            let Some(rx) = self.verdicts[i].as_mut() else {
                continue;
            };
            let mut got = Vec::new();
            while let Ok(v) = rx.try_recv() {
                got.push(v);
            }
            if got.is_empty() && self.nodes[i].as_ref().is_some_and(|d| d.verifying() > 0) {
                std::thread::sleep(std::time::Duration::from_millis(2));
                while let Ok(v) = rx.try_recv() {
                    got.push(v);
                }
            }
            for v in got {
                self.schedule(self.now + VERIFY_DELAY_MS, Ev::Verified { node: i, v });
            }
        }
    }

    pub fn node(&self, i: usize) -> &Driver<P> {
        self.nodes[i].as_ref().unwrap()
    }

    pub fn all_committed(&self, hashes: &[crypto::Digest]) -> bool {
        self.committed_on(0..self.n, hashes)
    }

    /// Whether every one of `nodes` runs and has committed every one of `hashes`.
    pub fn committed_on(
        &self,
        nodes: impl IntoIterator<Item = usize>,
        hashes: &[crypto::Digest],
    ) -> bool {
        nodes.into_iter().all(|i| {
            self.nodes[i].as_ref().is_some_and(|d| {
                hashes
                    .iter()
                    .all(|h| d.ledger().store().tx(h).unwrap().is_some())
            })
        })
    }
}

/// `count` transfers from each of wallets 0..4 to the next wallet, nonces from `first`.
pub fn transfers(chain: &ChainBinding, first: u64, count: u64) -> Vec<(usize, Transaction)> {
    let mut out = Vec::new();
    for n in first..first + count {
        for w in 0..4u8 {
            let to = Address::of(&wallet((w + 1) % 4).public());
            let tx = Transaction::sign(
                &wallet(w),
                chain,
                n,
                Payload::Transfer {
                    to,
                    amount: 1 + w as u64,
                },
            );
            out.push((w as usize, tx));
        }
    }
    out
}
