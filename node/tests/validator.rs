//! Four validators (real HotStuff cores, real redb stores in temp folders, real mempools and
//! batches) connected by an in-process message pump with a simulated clock: transfers from
//! several wallets commit with equal blocks and state everywhere, and a validator reopened
//! from its store catches up. The libp2p transport is tested separately.
//!
//! The cluster is generic over the driver's [`Protocol`]; `Recording` (HotStuff that also
//! records what `Input::Executed` tells it) checks that the core hears of every block the
//! ledger commits, in height order. Raft runs on three validators (a crash-fault committee),
//! where a follower left behind a log compaction pulls the leader's state in chunks.

mod cluster;

use cluster::*;
use consensus::{Committee, ReplicaId};
use ledger::{Address, Payload, Store, Transaction};
use node::mempool::Admitted;
use node::store::RedbStore;
use node::validator::{CoreParams, HotStuffProtocol, Protocol, RaftProtocol, Wire};
use std::cell::RefCell;
use std::rc::Rc;

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
    // Every validator stored header certificates: 2f+1 signatures on the header it holds,
    // which proves that header's state root (and not another height's).
    for i in 0..N {
        let store = c.node(i).ledger().store();
        let (at, bytes) = store
            .latest_header_cert(h)
            .unwrap()
            .unwrap_or_else(|| panic!("validator {i} has no header certificate up to {h}"));
        let cert: consensus::attest::HeaderCert =
            crypto::codec::decode(&bytes, 1 << 20, "cert").unwrap();
        let header = store.block(at).unwrap().unwrap().hash();
        cert.verify(&c.committee, &c.chain.genesis_hash, at, &header)
            .unwrap();
        if at > 1 {
            let other = store.block(at - 1).unwrap().unwrap().hash();
            assert!(
                cert.verify(&c.committee, &c.chain.genesis_hash, at, &other)
                    .is_err()
            );
        }
        assert!(c.node(i).stats.header_certs > 0);
    }
    // Wallet w sent 50 × (1 + w) and received 50 × (1 + (w + 3) % 4).
    for w in 0..4u64 {
        let got = c
            .node(1)
            .ledger()
            .account(&Address::of(&wallet(w as u8).public()))
            .unwrap();
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
        .map(|i| (c.node(i).ledger().height(), c.node(i).ledger().state_root()))
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
        certs: Vec::new(),
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
        certs: Vec::new(),
    }
    .encode();
    d.on_frame(now, ReplicaId(0), &frame).unwrap();
    assert_eq!(d.ledger().height(), top);
    assert_eq!(d.ledger().state_root(), c.node(0).ledger().state_root());
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
    fn leader(core: &RecordingCore) -> Option<ReplicaId> {
        HotStuffProtocol::leader(&core.inner)
    }
    fn view_changes(core: &RecordingCore) -> u64 {
        HotStuffProtocol::view_changes(&core.inner)
    }
    fn payload_of(msg: &Self::Message) -> Vec<crypto::Digest> {
        HotStuffProtocol::payload_of(msg)
    }
    fn vote_slot(msg: &Self::Message, to: Option<ReplicaId>) -> Option<(String, crypto::Digest)> {
        HotStuffProtocol::vote_slot(msg, to)
    }
    fn certified(
        cert: &[u8],
        committee: &Committee,
        genesis: &crypto::Digest,
    ) -> Option<node::validator::Certified> {
        HotStuffProtocol::certified(cert, committee, genesis)
    }
    fn decode_certified(
        cert: &[u8],
        genesis: &crypto::Digest,
    ) -> Option<node::validator::Certified> {
        HotStuffProtocol::decode_certified(cert, genesis)
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
    let frame = Wire::Blocks {
        blocks,
        tip: top,
        certs: Vec::new(),
    }
    .encode();
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

type RaftWire = node::validator::Wire<consensus::raft::Message>;

/// Funded genesis accounts besides the wallets in the Raft snapshot tests: with the wallets,
/// three snapshot chunks (8192 accounts each).
const RAFT_EXTRA_ACCOUNTS: usize = 20_000;
const RAFT_SNAPSHOT_INTERVAL: u64 = 8;

impl Cluster<RaftProtocol> {
    /// The validator whose core is the Raft leader, if one is.
    fn raft_leader(&self) -> Option<usize> {
        (0..self.n).find(|i| {
            self.nodes[*i]
                .as_ref()
                .is_some_and(|d| d.core().role() == consensus::raft::Role::Leader)
        })
    }

    /// One transfer from each wallet with nonce `nonce`, sent to the leader; runs until they
    /// are committed on every validator in `live`.
    fn raft_wave(&mut self, nonce: u64, live: &[usize]) {
        let leader = self.raft_leader().expect("a leader");
        let mut hashes = Vec::new();
        for (_, tx) in transfers(&self.chain, nonce, 1) {
            hashes.push(tx.hash());
            self.nodes[leader].as_mut().unwrap().submit(tx).unwrap();
        }
        let committed = |c: &Cluster<RaftProtocol>| {
            live.iter().all(|i| {
                hashes
                    .iter()
                    .all(|h| c.node(*i).ledger().store().tx(h).unwrap().is_some())
            })
        };
        assert!(
            self.run_until(5_000, committed),
            "the transfers with nonce {nonce} did not commit on {live:?}"
        );
    }

    /// Same height, top block and state on every validator.
    fn assert_raft_agree(&self) {
        let top = self.node(0).ledger().height();
        let block = |i: usize| self.node(i).ledger().store().block(top).unwrap().unwrap();
        for i in 1..self.n {
            let d = self.node(i);
            assert_eq!(d.ledger().height(), top, "validator {i}'s height");
            assert_eq!(
                block(i).hash(),
                block(0).hash(),
                "validator {i}'s block {top}"
            );
            assert_eq!(
                d.ledger().state_root(),
                self.node(0).ledger().state_root(),
                "validator {i}'s state"
            );
        }
    }
}

/// Three Raft validators, one follower stopped while the other two commit until the leader
/// has compacted the entries it lacks.
struct LeftBehind {
    c: Cluster<RaftProtocol>,
    leader: usize,
    follower: usize,
    /// The follower's height when it stopped.
    down_at: u64,
    /// The wallets' next nonce.
    nonce: u64,
}

fn raft_follower_left_behind() -> LeftBehind {
    let mut c = Cluster::raft(3, RAFT_EXTRA_ACCOUNTS, RAFT_SNAPSHOT_INTERVAL);
    assert!(
        c.run_until(10_000, |c| c.raft_leader().is_some()),
        "no leader elected"
    );
    let mut nonce = 0;
    for _ in 0..3 {
        c.raft_wave(nonce, &[0, 1, 2]);
        nonce += 1;
    }
    let leader = c.raft_leader().unwrap();
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let down_at = c.node(follower).ledger().height();
    assert!(down_at > 0);
    c.nodes[follower] = None;
    // Raft makes one block per batch (none when idle): one wave is at least one block.
    let target = down_at + 3 * RAFT_SNAPSHOT_INTERVAL;
    while c.node(leader).ledger().height() < target || c.node(leader).core().log_base().0 <= down_at
    {
        c.raft_wave(nonce, &[leader, other]);
        nonce += 1;
    }
    assert_eq!(c.raft_leader(), Some(leader), "the leader did not change");
    LeftBehind {
        c,
        leader,
        follower,
        down_at,
        nonce,
    }
}

/// What the snapshot filter saw of a pull.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Request {
        height: u64,
        offset: u64,
    },
    Chunk {
        height: u64,
        offset: u64,
        accounts: usize,
        total: u64,
        /// Dropped (not delivered) or altered by the filter.
        tampered: bool,
    },
}

/// A follower that missed entries the leader compacted pulls the leader's state in chunks;
/// a lost chunk is asked for again from its offset after a silence, and the state installs
/// once, equal to the leader's, without the blocks below it. Then it takes part again.
#[test]
fn raft_snapshot_is_pulled_in_chunks_and_resumes_after_a_lost_chunk() {
    let LeftBehind {
        mut c,
        leader,
        follower,
        down_at,
        mut nonce,
    } = raft_follower_left_behind();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    c.filter = Some(Box::new(move |_from, _to, bytes| {
        let mut log = log.borrow_mut();
        match RaftWire::decode(bytes) {
            Ok(RaftWire::SnapshotRequest { height, offset }) => {
                log.push(Seen::Request { height, offset });
                true
            }
            Ok(RaftWire::SnapshotChunk {
                height,
                total,
                offset,
                accounts,
                ..
            }) => {
                let drop = offset > 0
                    && !log
                        .iter()
                        .any(|s| matches!(s, Seen::Chunk { tampered: true, .. }));
                log.push(Seen::Chunk {
                    height,
                    offset,
                    accounts: accounts.len(),
                    total,
                    tampered: drop,
                });
                !drop
            }
            _ => true,
        }
    }));
    c.open(follower);
    let top = c.node(leader).ledger().height();
    assert!(
        c.run_until(30_000, |c| c.node(follower).ledger().height() >= top),
        "the follower stuck at height {} of {top}; saw {:?}",
        c.node(follower).ledger().height(),
        seen.borrow()
    );
    c.assert_raft_agree();
    assert_eq!(c.node(follower).stats.snapshots_installed, 1);
    let served = c.node(leader).stats.snapshot_chunks_served;
    assert!(served >= 4, "the leader served {served} chunks");

    let seen = seen.borrow().clone();
    let chunks: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Chunk {
                height,
                offset,
                accounts,
                total,
                tampered,
            } => Some((*height, *offset, *accounts, *total, *tampered)),
            _ => None,
        })
        .collect();
    // One snapshot, at the leader's height, of every account, in at least three chunks.
    let (height, _, _, total, _) = chunks[0];
    assert_eq!(height, top);
    assert_eq!(total, 4 + RAFT_EXTRA_ACCOUNTS as u64);
    assert!(chunks.iter().all(|c| c.0 == height && c.3 == total));
    let delivered: Vec<_> = chunks.iter().filter(|c| !c.4).collect();
    assert!(delivered.len() >= 3, "{chunks:?}");
    assert_eq!(
        delivered.iter().map(|c| c.2 as u64).sum::<u64>(),
        total,
        "each account delivered once: {chunks:?}"
    );
    // The lost chunk is asked for again from its own offset, not from the start.
    let lost = seen
        .iter()
        .position(|s| matches!(s, Seen::Chunk { tampered: true, .. }))
        .expect("a chunk was dropped");
    let Seen::Chunk {
        offset: lost_at, ..
    } = seen[lost]
    else {
        unreachable!()
    };
    assert!(lost_at > 0);
    let next_request = seen[lost + 1..]
        .iter()
        .find(|s| matches!(s, Seen::Request { .. }));
    assert_eq!(
        next_request,
        Some(&Seen::Request {
            height,
            offset: lost_at
        }),
        "{seen:?}"
    );

    // The blocks below the snapshot were never stored here; the snapshot's block was.
    let store = c.node(follower).ledger().store();
    assert!(store.block(down_at).unwrap().is_some());
    assert!(store.block(height).unwrap().is_some());
    assert!((down_at + 1..height).all(|h| store.block(h).unwrap().is_none()));

    // It takes part again: transfers commit on all three, to the same state.
    for _ in 0..3 {
        c.raft_wave(nonce, &[0, 1, 2]);
        nonce += 1;
    }
    c.assert_raft_agree();
    assert!(c.node(follower).ledger().height() > top);
    assert_eq!(c.node(follower).stats.snapshots_installed, 1);
}

/// A snapshot whose accounts do not hash to its block's state root is refused (nothing
/// installed, no panic); the follower pulls it again and installs the genuine one.
#[test]
fn raft_forged_snapshot_chunk_is_refused() {
    let LeftBehind {
        mut c,
        leader,
        follower,
        down_at,
        nonce,
    } = raft_follower_left_behind();
    let forged = Rc::new(RefCell::new(None));
    let flag = forged.clone();
    c.filter = Some(Box::new(move |_from, _to, bytes| {
        if flag.borrow().is_some() {
            return true;
        }
        if let Ok(RaftWire::SnapshotChunk {
            height,
            block,
            head,
            total,
            offset,
            mut accounts,
        }) = RaftWire::decode(bytes)
            && offset + accounts.len() as u64 == total
            && offset > 0
        {
            // The last chunk: one account richer than it is.
            accounts[0].1.balance += 1;
            *bytes = RaftWire::SnapshotChunk {
                height,
                block,
                head,
                total,
                offset,
                accounts,
            }
            .encode();
            *flag.borrow_mut() = Some(height);
        }
        true
    }));
    c.open(follower);
    assert!(
        c.run_until(30_000, |_| forged.borrow().is_some()),
        "no snapshot was pulled"
    );
    // The forged chunk was just handled: nothing installed.
    let d = c.node(follower);
    assert_eq!(d.stats.snapshots_installed, 0);
    assert_eq!(d.ledger().height(), down_at);
    let block = d.ledger().store().block(down_at).unwrap().unwrap();
    assert_eq!(d.ledger().state_root(), block.header.state_root);
    let served = c.node(leader).stats.snapshot_chunks_served;
    assert_eq!(served, 3, "one pull of three chunks so far");

    // The next offer starts a new pull, of the genuine state.
    let top = c.node(leader).ledger().height();
    assert!(
        c.run_until(30_000, |c| c.node(follower).ledger().height() >= top),
        "the follower stuck at height {} of {top}",
        c.node(follower).ledger().height()
    );
    assert_eq!(c.node(follower).stats.snapshots_installed, 1);
    assert_eq!(
        c.node(leader).stats.snapshot_chunks_served,
        served + 3,
        "the refused snapshot was pulled again from the start"
    );
    c.assert_raft_agree();
    c.raft_wave(nonce, &[0, 1, 2]);
    c.assert_raft_agree();
}

/// Peers' batches checked by admission workers, as `cairnd run` does: a batch whose
/// signatures are all valid executes without a second check once its verdict is in (commits
/// wait for it), and a batch carrying a forged signature, injected as if from validator 1,
/// is found not all valid, so execution checks each transaction and every validator records
/// the forged one as failed, and they all agree block by block. (Were a "not all valid"
/// verdict trusted as valid, the forged transfer would apply: the outcome check is the
/// negative control.)
#[test]
fn peer_batches_verified_by_workers_commit_and_a_forged_signature_fails_everywhere() {
    let mut c = Cluster::new();
    for i in 0..N {
        c.verdicts[i] = Some(tokio::sync::mpsc::unbounded_channel().1);
        c.nodes[i] = None;
        c.open(i);
    }
    let txs = transfers(&c.chain, 0, 20);
    let mut hashes = Vec::new();
    for (w, tx) in txs {
        hashes.push(tx.hash());
        c.nodes[w].as_mut().unwrap().submit(tx).unwrap();
    }
    // Wallet 3's next transfer with a forged signature, in a batch "from validator 1" that
    // validator 1 never had.
    let mut forged = Transaction::sign(
        &wallet(3),
        &c.chain,
        20,
        Payload::Transfer {
            to: Address::of(&wallet(0).public()),
            amount: 7,
        },
    );
    forged.signature.0[9] ^= 0x10;
    let frame = node::validator::Wire::<()>::Batch(vec![forged.clone()]).encode();
    for to in [0, 2, 3] {
        c.schedule(
            40,
            Ev::Frame {
                to,
                from: 1,
                bytes: frame.clone(),
            },
        );
    }
    let all = |c: &Cluster| {
        c.all_committed(&hashes) && c.all_committed(std::slice::from_ref(&forged.hash()))
    };
    assert!(c.run_until(30_000, all), "transfers did not commit");
    assert!(
        c.verdicts_delivered > 0,
        "no verdict went through the workers"
    );
    for i in 0..N {
        let store = c.node(i).ledger().store();
        let rec = store.tx(&forged.hash()).unwrap().unwrap();
        assert!(
            matches!(rec.receipt.outcome, Err(ledger::RejectReason::BadSignature)),
            "validator {i}: forged transfer {:?}",
            rec.receipt.outcome
        );
        for h in &hashes {
            assert_eq!(store.tx(h).unwrap().unwrap().receipt.outcome, Ok(()));
        }
    }
    let top = (0..N).map(|i| c.node(i).ledger().height()).min().unwrap();
    for height in 1..=top {
        let b0 = c
            .node(0)
            .ledger()
            .store()
            .block(height)
            .unwrap()
            .unwrap()
            .hash();
        for i in 1..N {
            let b = c
                .node(i)
                .ledger()
                .store()
                .block(height)
                .unwrap()
                .unwrap()
                .hash();
            assert_eq!(b, b0, "validator {i} differs at height {height}");
        }
    }
    let w3 = c
        .node(0)
        .ledger()
        .account(&Address::of(&wallet(3).public()))
        .unwrap();
    assert_eq!(w3.nonce, 20, "the forged transfer did not use a nonce");
}

/// BFT state sync: a HotStuff validator whose disk is wiped comes back after its peers have
/// pruned the blocks it would replay; it fetches the state at a certified height in chunks
/// from the others (one of which corrupts every chunk it serves: refused, counted, fetched
/// elsewhere), block-syncs to the tip, agrees on every common block, and orders again.
#[test]
fn a_wiped_validator_state_syncs_past_pruned_history_despite_a_corrupt_peer() {
    wiped_validator_state_syncs::<HotStuffProtocol>();
}

/// The same for PBFT.
#[test]
fn pbft_wiped_validator_state_syncs_past_pruned_history_despite_a_corrupt_peer() {
    wiped_validator_state_syncs::<node::validator::PbftProtocol>();
}

fn wiped_validator_state_syncs<P: Protocol>() {
    let keys = validator_keys(N);
    let committee = Committee::bft(keys.iter().map(|k| k.public()).collect()).unwrap();
    // Enough accounts for several chunks.
    let mut c = Cluster::<P>::build(keys, committee, 10_000, 1024);
    assert!(c.run_until(10_000, |c| c.node(3).ledger().height() >= 5));
    c.nodes[3] = None;
    c.dirs[3] = tempfile::tempdir().unwrap();
    let target = c.node(0).ledger().height() + 300;
    assert!(c.run_until(600_000, |c| c.node(0).ledger().height() >= target));
    // The others prune all but the last 50 heights: replaying from genesis is impossible.
    for i in 0..3 {
        let store = c.node(i).ledger().store().clone();
        store.tx_index().flush().unwrap();
        let floor = store.height().unwrap() - 50;
        for _ in 0..10_000 {
            if !store.prune_step(floor).unwrap().more {
                break;
            }
        }
        assert!(store.block(2).unwrap().is_none(), "validator {i} pruned");
    }
    // Validator 1 raises a balance in every state chunk it serves.
    let corrupted = Rc::new(RefCell::new(0u32));
    let count = corrupted.clone();
    c.filter = Some(Box::new(move |from, _to, bytes| {
        if from != 1 {
            return true;
        }
        if let Ok(Wire::<consensus::hotstuff::Message>::StateChunk(mut chunk)) = Wire::decode(bytes)
        {
            let leaf = &mut chunk.leaves[0];
            let (a, mut acct) = ledger::tree::decode_value(&leaf.value).unwrap();
            acct.balance += 1;
            leaf.value = ledger::tree::encode_value(&a, &acct).to_vec();
            *bytes = Wire::<P::Message>::StateChunk(chunk).encode();
            *count.borrow_mut() += 1;
        }
        true
    }));
    c.open(3);
    let top = c.node(0).ledger().height();
    assert!(
        c.run_until(120_000, |c| c.node(3).ledger().height() >= top),
        "validator 3 stuck at height {} of {top}",
        c.node(3).ledger().height()
    );
    let stats = &c.node(3).stats;
    assert_eq!(stats.state_syncs, 1, "{stats:?}");
    assert!(
        *corrupted.borrow() >= 1,
        "validator 1 was asked for a chunk"
    );
    assert_eq!(
        stats.bad_state_chunks, 1,
        "the corrupt peer is caught once, then not asked"
    );
    // (PBFT may first replay a few blocks from its peers' consensus logs, which pruning
    // does not shorten, before it meets the gap only a snapshot closes.)
    let synced = c.node(3).ledger().store();
    let mut common = 0;
    for h in 1..=top {
        let theirs = c.node(0).ledger().store().block(h).unwrap();
        if let (Some(ours), Some(theirs)) = (synced.block(h).unwrap(), theirs) {
            assert_eq!(ours.hash(), theirs.hash(), "height {h}");
            common += 1;
        }
    }
    assert!(common >= 1, "no common height");
    assert_eq!(
        synced.block(top).unwrap().map(|b| b.hash()),
        c.node(0)
            .ledger()
            .store()
            .block(top)
            .unwrap()
            .map(|b| b.hash())
    );
    for (a, _) in c.alloc.iter().take(50) {
        assert_eq!(
            c.node(3).ledger().account(a).unwrap(),
            c.node(0).ledger().account(a).unwrap()
        );
    }
    let (_, tx) = transfers(&c.chain, 0, 1).remove(0);
    let hash = tx.hash();
    c.nodes[3].as_mut().unwrap().submit(tx).unwrap();
    assert!(
        c.run_until(30_000, |c| c.all_committed(&[hash])),
        "a transfer sent to the synced validator did not commit"
    );
    // The blocks ordered since agree too.
    let end = c.node(0).ledger().height().min(c.node(3).ledger().height());
    assert!(end > top);
    for h in top..=end {
        let b = |i: usize| c.node(i).ledger().store().block(h).unwrap().unwrap().hash();
        assert_eq!(b(3), b(0), "height {h}");
    }
}

/// Regression: a HotStuff validator that was down and came back (block sync), then another
/// validator stops before the first is back in the leader rotation. The rotation was the
/// three validators active while it was down, one of them now dead, which never commits (a
/// 2-chain needs three live leaders in a row), so the rotation never changed and the three
/// live validators (quorum 3 of 4) never committed again. Leader election now falls back to
/// round-robin when nothing has committed for a while (`election::stall`).
#[test]
fn a_validator_back_from_downtime_then_another_stopping_does_not_stall_hotstuff() {
    let mut c = Cluster::<HotStuffProtocol>::with_sets(6, 0, vec![Vec::new(); N]);
    assert!(c.run_until(30_000, |c| c.node(0).ledger().height() >= 20));
    c.nodes[1] = None;
    let target = c.node(0).ledger().height() + 60;
    assert!(c.run_until(120_000, |c| c.node(0).ledger().height() >= target));
    c.open(1);
    let top = c.node(0).ledger().height();
    assert!(c.run_until(120_000, |c| c.node(1).ledger().height() >= top));
    assert_commits_without_validator_2(&mut c);
}

/// Control: the same stop without the earlier restart commits on.
#[test]
fn control_another_stopping_without_the_downtime_commits_on() {
    let mut c = Cluster::<HotStuffProtocol>::with_sets(6, 0, vec![Vec::new(); N]);
    assert!(c.run_until(30_000, |c| c.node(0).ledger().height() >= 140));
    assert_commits_without_validator_2(&mut c);
}

/// Stops validator 2; the other three (a quorum) must commit 5 more blocks.
fn assert_commits_without_validator_2(c: &mut Cluster<HotStuffProtocol>) {
    c.nodes[2] = None;
    let next = c.node(0).ledger().height() + 5;
    assert!(
        c.run_until(60_000, |c| c.node(0).ledger().height() >= next),
        "stuck {:?}",
        [0, 1, 3].map(|i| c.node(i).ledger().height())
    );
}
