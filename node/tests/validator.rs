//! Four validators (real HotStuff cores, real redb stores in temp folders, real mempools and
//! batches) connected by an in-process message pump with a simulated clock: transfers from
//! several wallets commit with equal blocks and state everywhere, and a validator reopened
//! from its store catches up. The libp2p transport is tested separately.
//!
//! The cluster is generic over the driver's [`Protocol`]; `Recording` (HotStuff that also
//! records what `Input::Executed` tells it) checks that the core hears of every block the
//! ledger commits, in height order.

use consensus::{Committee, ReplicaId};
use crypto::SecretKey;
use ledger::{Address, ChainBinding, Payload, Store, Transaction};
use node::mempool::{Admitted, Limits};
use node::store::RedbStore;
use node::validator::{CoreParams, Driver, DriverConfig, HotStuffProtocol, Out, Protocol};
use std::collections::BTreeMap;
use std::path::PathBuf;

const N: usize = 4;
const LATENCY_MS: u64 = 2;
const BATCH_EVERY_MS: u64 = 10;

enum Ev {
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
}

struct Cluster<P: Protocol = HotStuffProtocol> {
    dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Driver<P>>>,
    keys: Vec<SecretKey>,
    committee: Committee,
    chain: ChainBinding,
    alloc: Vec<(Address, u64)>,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,
    timers: BTreeMap<(usize, u64), u64>,
}

fn wallet(i: u8) -> SecretKey {
    SecretKey::from_seed([100 + i; 32])
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_protocol()
    }
}

impl<P: Protocol> Cluster<P> {
    fn with_protocol() -> Cluster<P> {
        let keys: Vec<SecretKey> = (0..N as u8)
            .map(|i| SecretKey::from_seed([i + 1; 32]))
            .collect();
        let committee = Committee::bft(keys.iter().map(|k| k.public()).collect()).unwrap();
        let chain = ChainBinding {
            chain_id: "validator-test".into(),
            genesis_hash: crypto::hash(b"validator-test genesis"),
        };
        let alloc = (0..4)
            .map(|i| (Address::of(&wallet(i).public()), 1_000_000))
            .collect();
        let mut c = Cluster {
            dirs: (0..N).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: (0..N).map(|_| None).collect(),
            keys,
            committee,
            chain,
            alloc,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            timers: BTreeMap::new(),
        };
        for i in 0..N {
            c.open(i);
            c.schedule(BATCH_EVERY_MS + i as u64, Ev::Batch { node: i });
        }
        c
    }

    fn db(&self, i: usize) -> PathBuf {
        self.dirs[i].path().join("store.redb")
    }

    fn open(&mut self, i: usize) {
        let cfg = DriverConfig {
            me: ReplicaId(i as u16),
            key: self.keys[i].clone(),
            committee: self.committee.clone(),
            chain: self.chain.clone(),
            genesis_accounts: self.alloc.clone(),
            base_timeout_ms: 500,
            max_timeout_ms: 4_000,
            idle_block_ms: 50,
            checkpoint_interval: CoreParams::DEFAULT_CHECKPOINT_INTERVAL,
            max_block_batches: 16,
            batch_max_txs: 64,
            batch_max_bytes: 1 << 20,
            mempool: Limits::default(),
        };
        let mut d = Driver::<P>::open(cfg, RedbStore::open(&self.db(i)).unwrap()).unwrap();
        let out = d.start(self.now).unwrap();
        self.nodes[i] = Some(d);
        self.apply(i, out);
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    fn apply(&mut self, from: usize, out: Vec<Out>) {
        for o in out {
            match o {
                Out::Send(to, bytes) => {
                    let at = self.now + LATENCY_MS;
                    self.schedule(
                        at,
                        Ev::Frame {
                            to: to.0 as usize,
                            from,
                            bytes,
                        },
                    );
                }
                Out::Broadcast(bytes) => {
                    for to in (0..N).filter(|t| *t != from) {
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
    fn run_until(&mut self, limit_ms: u64, done: impl Fn(&Cluster<P>) -> bool) -> bool {
        let end = self.now + limit_ms;
        while let Some(((at, _), ev)) = self.events.pop_first() {
            if at > end {
                break;
            }
            self.now = at;
            let (node, out) = match ev {
                Ev::Frame { to, from, bytes } => match self.nodes[to].as_mut() {
                    Some(d) => (to, d.on_frame(at, ReplicaId(from as u16), &bytes).unwrap()),
                    None => continue,
                },
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
                    match self.nodes[node].as_mut() {
                        Some(d) => (node, d.make_batch(at).unwrap()),
                        None => continue,
                    }
                }
            };
            self.apply(node, out);
            if done(self) {
                return true;
            }
        }
        false
    }

    fn node(&self, i: usize) -> &Driver<P> {
        self.nodes[i].as_ref().unwrap()
    }

    fn all_committed(&self, hashes: &[crypto::Digest]) -> bool {
        (0..N).all(|i| {
            self.nodes[i].as_ref().is_some_and(|d| {
                hashes
                    .iter()
                    .all(|h| d.ledger().store().tx(h).unwrap().is_some())
            })
        })
    }
}

/// `count` transfers from each of wallets 0..4 to the next wallet, nonces from `first`.
fn transfers(chain: &ChainBinding, first: u64, count: u64) -> Vec<(usize, Transaction)> {
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

#[test]
fn four_validators_commit_transfers_and_a_restarted_one_catches_up() {
    let mut c = Cluster::new();
    let txs = transfers(&c.chain, 0, 50);
    let mut hashes = Vec::new();
    for (w, tx) in txs {
        hashes.push(tx.hash());
        // Each wallet talks to one validator, so its nonces arrive in order.
        let d = c.nodes[w].as_mut().unwrap();
        assert!(matches!(d.submit(tx.clone()), Ok(Admitted::Added(_))));
        // Resubmitting is idempotent, not an error and not a second copy.
        assert!(matches!(d.submit(tx), Ok(Admitted::AlreadyPending(_))));
    }
    assert!(
        c.run_until(30_000, |c| c.all_committed(&hashes)),
        "200 transfers did not commit"
    );

    // Every committed receipt is a success, and every validator agrees block by block.
    let h = (0..N).map(|i| c.node(i).ledger().height()).min().unwrap();
    assert!(h > 0);
    for height in 1..=h {
        let b0 = c.node(0).ledger().store().block(height).unwrap().unwrap();
        for i in 1..N {
            let b = c.node(i).ledger().store().block(height).unwrap().unwrap();
            assert_eq!(
                b.hash(),
                b0.hash(),
                "validator {i} differs at height {height}"
            );
        }
    }
    for hash in &hashes {
        let rec = c.node(0).ledger().store().tx(hash).unwrap().unwrap();
        assert_eq!(rec.receipt.outcome, Ok(()), "tx {hash} rejected");
    }
    // Wallet w sent 50 × (1 + w) and received 50 × (1 + (w + 3) % 4).
    for w in 0..4u64 {
        let got = c
            .node(1)
            .ledger()
            .state()
            .account(&Address::of(&wallet(w as u8).public()));
        let expected = 1_000_000 - 50 * (1 + w) + 50 * (1 + (w + 3) % 4);
        assert_eq!((got.balance, got.nonce), (expected, 50), "wallet {w}");
    }

    // Stop validator 2 and reopen it from its store; more transfers commit everywhere.
    let before = c.node(2).ledger().height();
    c.nodes[2] = None;
    c.open(2);
    assert_eq!(
        c.node(2).ledger().height(),
        before,
        "recovered from its store"
    );
    let more = transfers(&c.chain, 50, 10);
    let mut more_hashes = Vec::new();
    for (w, tx) in more {
        more_hashes.push(tx.hash());
        let target = if w == 2 { 3 } else { w };
        c.nodes[target].as_mut().unwrap().submit(tx).unwrap();
    }
    assert!(
        c.run_until(30_000, |c| c.all_committed(&more_hashes)),
        "transfers after the restart did not commit on every validator"
    );
    let roots: Vec<_> = (0..N)
        .map(|i| {
            (
                c.node(i).ledger().height(),
                c.node(i).ledger().state().root(),
            )
        })
        .collect();
    let top = roots.iter().map(|r| r.0).min().unwrap();
    let hash_at = |i: usize| {
        c.node(i)
            .ledger()
            .store()
            .block(top)
            .unwrap()
            .unwrap()
            .hash()
    };
    assert!((1..N).all(|i| hash_at(i) == hash_at(0)));
    assert!(c.node(0).stats.fsyncs > 0);
}

/// A validator that was down while the others committed more blocks than any core keeps for
/// sync (`COMMITTED_WINDOW`, 512) catches up from the others' stores through ledger-level
/// block sync, then takes part again: a transfer sent to it commits everywhere.
#[test]
fn a_validator_down_longer_than_the_sync_window_catches_up() {
    let mut c = Cluster::new();
    assert!(c.run_until(10_000, |c| c.node(3).ledger().height() >= 5));
    c.nodes[3] = None;
    let gap = consensus::hotstuff::COMMITTED_WINDOW as u64 + 100;
    let target = c.node(0).ledger().height() + gap;
    assert!(
        c.run_until(600_000, |c| c.node(0).ledger().height() >= target),
        "the other three did not commit {gap} blocks"
    );
    c.open(3);
    let top = c.node(0).ledger().height();
    assert!(
        c.run_until(120_000, |c| c.node(3).ledger().height() >= top),
        "validator 3 stuck at height {} of {top}",
        c.node(3).ledger().height()
    );
    let block = |i: usize| c.node(i).ledger().store().block(top).unwrap().unwrap();
    assert_eq!(block(3).hash(), block(0).hash());
    assert_eq!(block(3).header.state_root, block(0).header.state_root);

    let (_, tx) = transfers(&c.chain, 0, 1).remove(0);
    let hash = tx.hash();
    c.nodes[3].as_mut().unwrap().submit(tx).unwrap();
    assert!(
        c.run_until(30_000, |c| c.all_committed(&[hash])),
        "a transfer sent to the caught-up validator did not commit"
    );
}

/// Synced blocks prove themselves: blocks whose transactions do not match the batch digests
/// their certificates sign are not applied; the genuine ones are.
#[test]
fn forged_synced_blocks_are_not_applied() {
    type Wire = node::validator::Wire<consensus::hotstuff::Message>;
    let mut c = Cluster::new();
    let txs = transfers(&c.chain, 0, 5);
    let hashes: Vec<_> = txs.iter().map(|(_, t)| t.hash()).collect();
    c.nodes[3] = None;
    for (w, tx) in txs {
        c.nodes[w % 3].as_mut().unwrap().submit(tx).unwrap();
    }
    let done = |c: &Cluster| {
        (0..3).all(|i| {
            hashes
                .iter()
                .all(|h| c.node(i).ledger().store().tx(h).unwrap().is_some())
        })
    };
    assert!(c.run_until(30_000, done));
    c.open(3);
    let top = c.node(0).ledger().height();
    let genuine: Vec<ledger::Block> = (1..=top)
        .map(|h| c.node(0).ledger().store().block(h).unwrap().unwrap())
        .collect();
    let with_txs = genuine.iter().position(|b| !b.txs.is_empty()).unwrap();

    // Drop one transaction (and fix up the sizes): the batch digest no longer matches.
    let mut forged = genuine.clone();
    let b = &mut forged[with_txs];
    b.txs.pop();
    let last = b.batch_sizes.iter().rposition(|s| *s > 0).unwrap();
    b.batch_sizes[last] -= 1;
    let frame = Wire::Blocks {
        blocks: forged,
        tip: top,
    }
    .encode();
    let now = c.now;
    let d = c.nodes[3].as_mut().unwrap();
    d.on_frame(now, ReplicaId(0), &frame).unwrap();
    assert_eq!(
        d.ledger().height(),
        with_txs as u64,
        "stops before the forged block"
    );

    // The genuine blocks from there on apply, up to the same state.
    let frame = Wire::Blocks {
        blocks: genuine[with_txs..].to_vec(),
        tip: top,
    }
    .encode();
    d.on_frame(now, ReplicaId(0), &frame).unwrap();
    assert_eq!(d.ledger().height(), top);
    assert_eq!(d.ledger().state().root(), c.node(0).ledger().state().root());
}

/// HotStuff whose core also records every `Input::Executed` it is given, as (validator,
/// height, state root), across core rebuilds (a block sync replaces the core).
struct Recording;

static EXECUTED: std::sync::Mutex<Vec<(u16, u64, crypto::Digest)>> =
    std::sync::Mutex::new(Vec::new());

fn executed_by(me: u16) -> Vec<(u64, crypto::Digest)> {
    let all = EXECUTED.lock().unwrap();
    all.iter()
        .filter(|(v, _, _)| *v == me)
        .map(|(_, h, r)| (*h, *r))
        .collect()
}

struct RecordingCore {
    me: u16,
    inner: consensus::hotstuff::HotStuff,
}

impl consensus::Core for RecordingCore {
    type Message = consensus::hotstuff::Message;
    fn start(&mut self, now_ms: u64) -> Vec<consensus::Action<Self::Message>> {
        self.inner.start(now_ms)
    }
    fn handle(
        &mut self,
        now_ms: u64,
        input: consensus::Input<Self::Message>,
    ) -> Vec<consensus::Action<Self::Message>> {
        if let consensus::Input::Executed { height, state_root } = &input {
            EXECUTED
                .lock()
                .unwrap()
                .push((self.me, *height, *state_root));
        }
        self.inner.handle(now_ms, input)
    }
    fn view(&self) -> consensus::View {
        self.inner.view()
    }
}

impl Protocol for Recording {
    type Message = consensus::hotstuff::Message;
    type Core = RecordingCore;
    const NAME: &'static str = "hotstuff";
    const SAFETY_KEY: &'static str = HotStuffProtocol::SAFETY_KEY;
    const VIEW_TIMER: u64 = HotStuffProtocol::VIEW_TIMER;
    fn build(
        params: &CoreParams,
        ledger: &ledger::Ledger<RedbStore>,
        safety: Option<Vec<u8>>,
    ) -> Result<RecordingCore, node::validator::DriverError> {
        Ok(RecordingCore {
            me: params.me.0,
            inner: HotStuffProtocol::build(params, ledger, safety)?,
        })
    }
    fn safety_bytes(core: &RecordingCore) -> Vec<u8> {
        HotStuffProtocol::safety_bytes(&core.inner)
    }
    fn pending_payload(core: &RecordingCore) -> Vec<crypto::Digest> {
        HotStuffProtocol::pending_payload(&core.inner)
    }
    fn leader(core: &RecordingCore) -> ReplicaId {
        HotStuffProtocol::leader(&core.inner)
    }
    fn view_changes(core: &RecordingCore) -> u64 {
        HotStuffProtocol::view_changes(&core.inner)
    }
    fn payload_of(msg: &Self::Message) -> Vec<crypto::Digest> {
        HotStuffProtocol::payload_of(msg)
    }
    fn vote_slot(msg: &Self::Message) -> Option<(String, crypto::Digest)> {
        HotStuffProtocol::vote_slot(msg)
    }
    fn certified(
        cert: &[u8],
        committee: &Committee,
        genesis: &crypto::Digest,
    ) -> Option<node::validator::Certified> {
        HotStuffProtocol::certified(cert, committee, genesis)
    }
    fn decode_certified(cert: &[u8]) -> Option<node::validator::Certified> {
        HotStuffProtocol::decode_certified(cert)
    }
}

/// The core hears of every block the ledger commits, once, in height order, with the block's
/// state root: blocks committed by consensus, across a restart, and blocks applied by block
/// sync (which the rebuilt core hears of).
#[test]
fn the_core_hears_of_every_executed_block_in_height_order() {
    type Wire = node::validator::Wire<consensus::hotstuff::Message>;
    let mut c = Cluster::<Recording>::with_protocol();
    let txs = transfers(&c.chain, 0, 5);
    let hashes: Vec<_> = txs.iter().map(|(_, t)| t.hash()).collect();
    c.nodes[3] = None;
    for (w, tx) in txs {
        c.nodes[w % 3].as_mut().unwrap().submit(tx).unwrap();
    }
    let done = |c: &Cluster<Recording>| {
        (0..3).all(|i| {
            hashes
                .iter()
                .all(|h| c.node(i).ledger().store().tx(h).unwrap().is_some())
        })
    };
    assert!(c.run_until(30_000, done));
    // Validator 1 restarts from its store; the others go on committing.
    c.nodes[1] = None;
    c.open(1);
    let target = c.node(0).ledger().height() + 5;
    assert!(c.run_until(30_000, |c| {
        (0..3).all(|i| c.node(i).ledger().height() >= target)
    }));

    // Validator 3 catches up through block sync.
    c.open(3);
    let top = c.node(0).ledger().height();
    let blocks: Vec<ledger::Block> = (1..=top)
        .map(|h| c.node(0).ledger().store().block(h).unwrap().unwrap())
        .collect();
    let frame = Wire::Blocks { blocks, tip: top }.encode();
    let now = c.now;
    let d = c.nodes[3].as_mut().unwrap();
    d.on_frame(now, ReplicaId(0), &frame).unwrap();
    assert!(d.ledger().height() > 0, "the synced blocks were applied");

    for i in 0..N {
        let ledger = c.node(i).ledger();
        let expected: Vec<(u64, crypto::Digest)> = (1..=ledger.height())
            .map(|h| {
                (
                    h,
                    ledger.store().block(h).unwrap().unwrap().header.state_root,
                )
            })
            .collect();
        assert_eq!(executed_by(i as u16), expected, "validator {i}");
    }
}

#[test]
fn pbft_transfers_commit_after_the_primary_dies() {
    use node::validator::PbftProtocol;
    let mut c = Cluster::<PbftProtocol>::with_protocol();
    let txs = transfers(&c.chain, 0, 60);
    let mut hashes = Vec::new();
    let mut later = Vec::new();
    for (w, tx) in txs {
        // Wallet 1's transfers go to validator 0 (validator 1 is view 1's primary and dies).
        let v = if w == 1 { 0 } else { w };
        if tx.body.nonce < 20 {
            hashes.push(tx.hash());
            let d = c.nodes[v].as_mut().unwrap();
            assert!(matches!(d.submit(tx), Ok(Admitted::Added(_))));
        } else {
            later.push((v, tx));
        }
    }
    assert!(
        c.run_until(20_000, |c| c.all_committed(&hashes)),
        "first wave"
    );
    // Kill the primary while the second wave is in flight.
    for (v, tx) in later.iter().take(40) {
        hashes.push(tx.hash());
        let _ = c.nodes[*v].as_mut().unwrap().submit(tx.clone());
    }
    c.run_until(15, |_| false);
    c.nodes[1] = None;
    for (v, tx) in later.iter().skip(40) {
        hashes.push(tx.hash());
        let _ = c.nodes[*v].as_mut().unwrap().submit(tx.clone());
    }
    let live = [0usize, 2, 3];
    let ok = c.run_until(60_000, |c| {
        live.iter().all(|i| {
            hashes
                .iter()
                .all(|h| c.node(*i).ledger().store().tx(h).unwrap().is_some())
        })
    });
    if !ok {
        for i in live {
            let d = c.node(i);
            let missing = hashes
                .iter()
                .filter(|h| d.ledger().store().tx(h).unwrap().is_none())
                .count();
            eprintln!(
                "validator {i}: height {} view {:?} pending {} mempool {} missing {missing}",
                d.ledger().height(),
                consensus::Core::view(d.core()),
                d.core().pending_payload().len(),
                d.mempool().len(),
            );
        }
        panic!("second wave did not commit after the primary died");
    }
}
