//! The validator transport (`node::net`) on 127.0.0.1: delivery and order, permissioning,
//! the frame cap, reconnection after a restart, the set changing under running transports
//! (a joiner admitted with no queued frame lost, a removed validator cut off and the next one
//! renumbered), queue bounds (frames and bytes, both
//! directions), the per-peer inbound rate limit and fairness between peers, and the "dialed ID
//! mismatch" explanation. Every wait is bounded.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, SwarmBuilder, identity, noise, tcp, yamux};
use node::net::{self, InboundLimit, Incoming, NetConfig, NetError, NetHandle, PeerInfo};

/// Records the allocation high-water mark, so tests can show that a claimed frame length is
/// not allocated.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

const WAIT: Duration = Duration::from_secs(20);

type Rx = Incoming;

fn seed(i: u8) -> [u8; 32] {
    [i.wrapping_mul(37).wrapping_add(11); 32]
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn addr(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// A validator set of `n` on fresh ports: seeds and the genesis view of it.
struct Set {
    seeds: Vec<[u8; 32]>,
    ports: Vec<u16>,
    peers: Vec<PeerInfo>,
}

impl Set {
    fn new(n: u8, salt: u8) -> Set {
        let seeds: Vec<[u8; 32]> = (0..n).map(|i| seed(salt.wrapping_add(i))).collect();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers = (0..n as usize)
            .map(|i| PeerInfo {
                index: i as u16,
                network_key: crypto::SecretKey::from_seed(seeds[i]).public(),
                address: addr(ports[i]),
            })
            .collect();
        Set {
            seeds,
            ports,
            peers,
        }
    }

    fn config(&self, i: usize) -> NetConfig {
        NetConfig::new(addr(self.ports[i]), self.seeds[i], self.peers.clone())
    }

    async fn start(&self, i: usize) -> (NetHandle, Rx) {
        net::start(self.config(i)).await.expect("start node")
    }
}

/// Polls `f` every 20 ms until it holds; panics with `what` after `WAIT`.
async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn recv(rx: &mut Rx) -> (u16, Vec<u8>) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a frame")
        .expect("incoming channel closed")
}

/// Asserts that nothing arrives within `d`.
async fn quiet(rx: &mut Rx, d: Duration) {
    if let Ok(Some((from, frame))) = tokio::time::timeout(d, rx.recv()).await {
        panic!("unexpected frame from {from} ({} bytes)", frame.len());
    }
}

async fn all_connected(nodes: &[&NetHandle]) {
    let n = nodes.len();
    wait_for("all validators connected", || {
        nodes.iter().all(|h| h.connected().len() == n - 1)
    })
    .await;
}

/// Test 1: three validators deliver to each other; broadcast reaches both peers; 1,000 frames
/// on one stream arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_validators_deliver_broadcast_and_keep_order() {
    let set = Set::new(3, 0);
    let (h0, mut r0) = set.start(0).await;
    let (h1, mut r1) = set.start(1).await;
    let (h2, mut r2) = set.start(2).await;
    assert_eq!(h0.local_index(), Some(0));
    all_connected(&[&h0, &h1, &h2]).await;
    assert_eq!(h1.connected(), vec![0, 2]);

    h0.send(1, b"0->1".to_vec());
    h1.send(2, b"1->2".to_vec());
    h2.send(0, b"2->0".to_vec());
    assert_eq!(recv(&mut r1).await, (0, b"0->1".to_vec()));
    assert_eq!(recv(&mut r2).await, (1, b"1->2".to_vec()));
    assert_eq!(recv(&mut r0).await, (2, b"2->0".to_vec()));

    h1.broadcast(b"from 1 to all".to_vec());
    assert_eq!(recv(&mut r0).await, (1, b"from 1 to all".to_vec()));
    assert_eq!(recv(&mut r2).await, (1, b"from 1 to all".to_vec()));

    let started = Instant::now();
    for i in 0u32..1000 {
        let mut frame = i.to_be_bytes().to_vec();
        frame.resize(512, 0xAB);
        h0.send(2, frame);
    }
    for i in 0u32..1000 {
        let (from, frame) = recv(&mut r2).await;
        assert_eq!(from, 0);
        assert_eq!(frame.len(), 512);
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()),
            i,
            "order"
        );
    }
    let took = started.elapsed();
    println!(
        "1,000 x 512 B frames 0->2 in {took:?} ({:.0} frames/s)",
        1000.0 / took.as_secs_f64()
    );
    let s0 = h0.stats();
    assert_eq!(s0.dropped, 0);
    assert_eq!(s0.frames_out, 1001, "{s0:?}"); // 0->1 and the 1,000
    assert_eq!(h2.stats().frames_in, 1002);
    for h in [h0, h1, h2] {
        h.shutdown().await;
    }
}

/// Test 2: a node whose network key is not in genesis dials a validator; the validator
/// refuses the connection and nothing the outsider sends is delivered.
#[tokio::test]
async fn non_validator_is_refused() {
    let set = Set::new(2, 40);
    let (h0, mut r0) = set.start(0).await;
    // The outsider knows validator 0's address and key and trusts it; validator 0 does not
    // trust the outsider.
    let outsider_cfg = NetConfig::new(addr(free_port()), seed(200), vec![set.peers[0].clone()]);
    let (outsider, _r) = net::start(outsider_cfg).await.expect("start outsider");
    assert_eq!(outsider.local_index(), None);
    for i in 0..50u8 {
        outsider.send(0, vec![i; 100]);
    }
    wait_for("the validator to refuse the outsider", || {
        h0.stats().rejected_connections >= 2
    })
    .await;
    quiet(&mut r0, Duration::from_millis(500)).await;
    let s = h0.stats();
    assert_eq!((s.frames_in, s.bytes_in), (0, 0), "{s:?}");
    assert!(h0.connected().is_empty());
    outsider.shutdown().await;
    h0.shutdown().await;
}

/// Test 3a: a length prefix claiming 3 GiB (cap 16 MiB) is refused before anything is read or
/// allocated, the stream is reset, and a fresh stream from the same peer works.
#[tokio::test]
async fn oversized_prefix_resets_stream_without_allocating() {
    let set = Set::new(2, 80);
    let (h1, mut r1) = set.start(1).await;
    // A hand-driven libp2p client holding validator 0's key, speaking the raw protocol.
    let keypair = identity::Keypair::ed25519_from_bytes(set.seeds[0]).unwrap();
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let mut control = swarm.behaviour().new_control();
    let target = net::peer_id_of(&set.peers[1].network_key).unwrap();
    let dial: Multiaddr = format!("{}/p2p/{target}", set.peers[1].address)
        .parse()
        .unwrap();
    swarm.dial(dial).unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                break;
            }
        }
    })
    .await
    .expect("raw client connects");
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });

    let claimed: u32 = 3 << 30;
    let mut s = control.open_stream(target, net::PROTOCOL).await.unwrap();
    s.write_all(&claimed.to_be_bytes()).await.unwrap();
    s.write_all(&[7u8; 4096]).await.unwrap();
    s.flush().await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(WAIT, s.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "stream must be closed: {closed:?}"
    );
    assert_eq!(h1.stats().oversized, 1);
    assert!(
        ALLOC.max_allocated() < (1 << 30),
        "allocation high-water mark {} B: the claimed length was allocated",
        ALLOC.max_allocated()
    );
    quiet(&mut r1, Duration::from_millis(300)).await;

    // A fresh stream on the same connection is read normally.
    let mut s2 = control.open_stream(target, net::PROTOCOL).await.unwrap();
    s2.write_all(&5u32.to_be_bytes()).await.unwrap();
    s2.write_all(b"hello").await.unwrap();
    s2.flush().await.unwrap();
    assert_eq!(recv(&mut r1).await, (0, b"hello".to_vec()));
    assert_eq!(h1.stats().oversized, 1);
    driver.abort();
    h1.shutdown().await;
}

/// Test 3b: a real sender with a larger cap than the receiver's. The receiver resets the
/// stream; the sender notices, opens a fresh stream, and later frames arrive. Frames the
/// sender wrote into the old stream before it learned of the reset are lost (consensus
/// retransmits), so the test sends until one arrives.
#[tokio::test]
async fn oversized_frame_from_a_validator_and_recovery() {
    let set = Set::new(2, 120);
    let (h0, _r0) = set.start(0).await;
    let mut small = set.config(1);
    small.max_frame_bytes = 64 << 10;
    let (h1, mut r1) = net::start(small).await.unwrap();
    all_connected(&[&h0, &h1]).await;

    h0.send(1, vec![1u8; 100 << 10]);
    wait_for("the receiver to count the oversized frame", || {
        h1.stats().oversized == 1
    })
    .await;
    quiet(&mut r1, Duration::from_millis(200)).await;

    // The sender's own cap refuses (and counts) frames above it.
    h0.send(1, vec![0u8; (16 << 20) + 1]);
    assert_eq!(h0.stats().dropped, 1);

    let mut got = None;
    for attempt in 0u8..100 {
        h0.send(1, vec![attempt; 10]);
        if let Ok(Some(frame)) = tokio::time::timeout(Duration::from_millis(200), r1.recv()).await {
            got = Some(frame);
            break;
        }
    }
    let (from, frame) = got.expect("a normal frame arrives over a fresh stream");
    assert_eq!((from, frame.len()), (0, 10));
    assert_eq!(h1.stats().oversized, 1);
    h0.shutdown().await;
    h1.shutdown().await;
}

/// Test 4: shut one validator down and start it again on the same port: the others redial it,
/// a frame queued while it was down is delivered, and traffic flows both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_validator_is_reconnected() {
    let set = Set::new(3, 160);
    let (h0, mut r0) = set.start(0).await;
    let (h1, _r1) = set.start(1).await;
    let (h2, _r2) = set.start(2).await;
    all_connected(&[&h0, &h1, &h2]).await;

    h2.shutdown().await;
    wait_for("the others to see validator 2 go", || {
        h0.connected() == vec![1] && h1.connected() == vec![0]
    })
    .await;
    h0.send(2, b"queued while 2 was down".to_vec());
    tokio::time::sleep(Duration::from_millis(700)).await; // a few failed redials

    let (h2, mut r2) = set.start(2).await;
    all_connected(&[&h0, &h1, &h2]).await;
    assert_eq!(
        recv(&mut r2).await,
        (0, b"queued while 2 was down".to_vec())
    );
    h1.send(2, b"1->2 after restart".to_vec());
    assert_eq!(recv(&mut r2).await, (1, b"1->2 after restart".to_vec()));
    h2.send(0, b"2->0 after restart".to_vec());
    assert_eq!(recv(&mut r0).await, (2, b"2->0 after restart".to_vec()));
    for h in [h0, h1, h2] {
        h.shutdown().await;
    }
}

/// A validator joins running transports (`set_peers`): until the others list it, its
/// connections are refused; then it is dialed and frames flow both ways. Frames a kept peer
/// sent across the change all arrive, in order (nothing queued is dropped, as the withdrawn
/// transport restart dropped them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_validator_is_admitted_without_losing_queued_frames() {
    let set = Set::new(3, 180);
    let two = set.peers[..2].to_vec();
    let (mut h0, mut r0) = net::start(NetConfig::new(
        addr(set.ports[0]),
        set.seeds[0],
        two.clone(),
    ))
    .await
    .unwrap();
    let (mut h1, mut r1) = net::start(NetConfig::new(addr(set.ports[1]), set.seeds[1], two))
        .await
        .unwrap();
    let (h2, mut r2) = set.start(2).await;
    all_connected(&[&h0, &h1]).await;
    wait_for("the two to refuse the joiner", || {
        h0.stats().rejected_connections + h1.stats().rejected_connections >= 2
    })
    .await;
    h2.send(0, b"too early".to_vec());

    for i in 0u32..2000 {
        if i == 1000 {
            h0.set_peers(set.peers.clone()).unwrap();
            h1.set_peers(set.peers.clone()).unwrap();
        }
        h0.send(1, i.to_be_bytes().to_vec());
    }
    for i in 0u32..2000 {
        assert_eq!(
            recv(&mut r1).await,
            (0, i.to_be_bytes().to_vec()),
            "frame {i}"
        );
    }
    all_connected(&[&h0, &h1, &h2]).await;
    h0.send(2, b"0->2".to_vec());
    assert_eq!(recv(&mut r2).await, (0, b"0->2".to_vec()));
    h2.send(1, b"2->1".to_vec());
    assert_eq!(recv(&mut r1).await, (2, b"2->1".to_vec()));
    // What the joiner queued while it was refused may arrive once it is let in; nothing else.
    let joiner_key = set.peers[2].network_key;
    h2.send(0, b"2->0".to_vec());
    loop {
        let (key, frame) = tokio::time::timeout(WAIT, r0.recv_keyed())
            .await
            .expect("a frame from the joiner")
            .unwrap();
        assert_eq!(key, joiner_key);
        if frame == b"2->0" {
            break;
        }
        assert_eq!(frame, b"too early");
    }
    for h in [h0, h1, h2] {
        h.shutdown().await;
    }
}

/// A validator leaves (`set_peers` without it): its connections are closed and its redials
/// refused, nothing it sends is delivered, and the validator after it takes its index: frames
/// are addressed and reported by the new index while its network key stays the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_validator_is_disconnected_and_the_next_one_renumbered() {
    let set = Set::new(3, 200);
    let (mut h0, mut r0) = set.start(0).await;
    let (h1, _r1) = set.start(1).await;
    let (mut h2, mut r2) = set.start(2).await;
    all_connected(&[&h0, &h1, &h2]).await;

    // Validator 1 leaves; validator 2 is now index 1.
    let mut after = vec![set.peers[0].clone(), set.peers[2].clone()];
    after[1].index = 1;
    h0.set_peers(after.clone()).unwrap();
    h2.set_peers(after).unwrap();
    assert_eq!(h2.local_index(), Some(1));
    wait_for("the removed validator to be cut off", || {
        h1.connected().is_empty() && h0.connected() == vec![1] && h2.connected() == vec![0]
    })
    .await;
    let refused = h0.stats().rejected_connections;
    wait_for("its redials to be refused", || {
        h0.stats().rejected_connections > refused
    })
    .await;
    h1.send(0, b"from the removed one".to_vec());
    h0.send(1, b"0->new 1".to_vec());
    assert_eq!(recv(&mut r2).await, (0, b"0->new 1".to_vec()));
    h2.send(0, b"new 1->0".to_vec());
    let (key, frame) = tokio::time::timeout(WAIT, r0.recv_keyed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (key, frame),
        (set.peers[2].network_key, b"new 1->0".to_vec())
    );
    h2.send(0, b"again".to_vec());
    assert_eq!(recv(&mut r0).await, (1, b"again".to_vec()));
    quiet(&mut r0, Duration::from_millis(500)).await;
    for h in [h0, h1, h2] {
        h.shutdown().await;
    }
}

/// Test 5: 10 x queue_len frames of 1 MiB for a validator that is down: the queue keeps
/// queue_len (the oldest), the rest are dropped and counted, memory stays bounded, and the
/// queued frames are flushed in order when the validator comes up.
#[tokio::test]
async fn queue_for_a_down_peer_is_bounded() {
    let set = Set::new(2, 200);
    let mut cfg = set.config(0);
    cfg.queue_len = 16;
    let (h0, _r0) = net::start(cfg).await.unwrap();
    let before = ALLOC.allocated();
    for i in 0..160u32 {
        let mut frame = vec![0u8; 1 << 20];
        frame[..4].copy_from_slice(&i.to_be_bytes());
        h0.send(1, frame);
    }
    let grown = ALLOC.allocated().saturating_sub(before);
    let s = h0.stats();
    assert_eq!((s.queued, s.dropped, s.frames_out), (16, 144, 0), "{s:?}");
    assert_eq!((s.queue_full, s.queued_bytes), (144, 16 << 20), "{s:?}");
    // 160 MiB were offered; about 16 MiB are held.
    assert!(grown < 64 << 20, "memory grew by {grown} B");

    let (h1, mut r1) = set.start(1).await;
    for i in 0..16u32 {
        let (from, frame) = recv(&mut r1).await;
        assert_eq!(from, 0);
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()), i);
    }
    quiet(&mut r1, Duration::from_millis(300)).await;
    assert_eq!(h0.stats().queued, 0);
    h0.shutdown().await;
    h1.shutdown().await;
}

/// Test 5b: the same for bytes: with room for 1,000 frames but 8 MiB, a down peer's queue
/// holds 8 frames of 1 MiB (the oldest); the other 92 are dropped and counted as queue-full,
/// memory stays near 8 MiB, and the 8 are flushed in order when the peer comes up.
#[tokio::test]
async fn queue_for_a_down_peer_is_bounded_in_bytes() {
    let set = Set::new(2, 210);
    let mut cfg = set.config(0);
    cfg.queue_len = 1000;
    cfg.queue_bytes = 8 << 20;
    cfg.max_frame_bytes = 1 << 20;
    let (h0, _r0) = net::start(cfg).await.unwrap();
    let before = ALLOC.allocated();
    for i in 0..100u32 {
        let mut frame = vec![0u8; 1 << 20];
        frame[..4].copy_from_slice(&i.to_be_bytes());
        h0.send(1, frame);
    }
    let grown = ALLOC.allocated().saturating_sub(before);
    let s = h0.stats();
    assert_eq!((s.queued, s.queued_bytes), (8, 8 << 20), "{s:?}");
    assert_eq!(
        (s.dropped, s.queue_full, s.frames_out),
        (92, 92, 0),
        "{s:?}"
    );
    // 100 MiB were offered; 8 MiB are held.
    assert!(grown < 32 << 20, "memory grew by {grown} B");

    let (h1, mut r1) = set.start(1).await;
    for i in 0..8u32 {
        let (from, frame) = recv(&mut r1).await;
        assert_eq!((from, frame.len()), (0, 1 << 20));
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()), i);
    }
    quiet(&mut r1, Duration::from_millis(300)).await;
    let s = h0.stats();
    assert_eq!((s.queued, s.queued_bytes, s.frames_out), (0, 0, 8), "{s:?}");
    // Room again: the next frame is queued and sent, not dropped.
    h0.send(1, b"after the flush".to_vec());
    assert_eq!(recv(&mut r1).await, (0, b"after the flush".to_vec()));
    assert_eq!(h0.stats().queue_full, 92);
    h0.shutdown().await;
    h1.shutdown().await;
}

/// A byte budget that cannot hold one frame of the maximum size is refused at start.
#[tokio::test]
async fn queue_bytes_below_the_frame_cap_is_refused() {
    let set = Set::new(2, 215);
    let mut cfg = set.config(0);
    cfg.queue_bytes = (16 << 20) - 1;
    match net::start(cfg).await {
        Err(e @ NetError::BadQueueBytes { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("queue_bytes (16777215)") && msg.contains("max_frame_bytes"),
                "{msg}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a queue_bytes below max_frame_bytes was accepted"),
    }
}

/// Test 6: validator 1 floods validator 0, whose inbound limit is 200 frames/s with bursts of
/// 100. Validator 0 reads validator 1's frames no faster than the limit (at most
/// 100 + 200 × t of them by time t, so the 1,000 take at least 4.5 s), counts the waits, and
/// loses none (the reader pauses; flow control holds the rest at the sender). Meanwhile
/// validator 2's frames, sent while the flood is throttled, arrive at once, and its own burst
/// right after the flood is not throttled at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_is_throttled_and_an_honest_peer_is_not() {
    const FLOOD: u32 = 1000;
    const HONEST: u32 = 20;
    let (rate, burst) = (200.0, 100.0);
    let set = Set::new(3, 220);
    let mut c0 = set.config(0);
    c0.inbound_limit = InboundLimit {
        frames_per_sec: 200,
        frame_burst: 100,
        bytes_per_sec: 0,
        byte_burst: 0,
    };
    let (h0, mut r0) = net::start(c0).await.unwrap();
    let (h1, _r1) = set.start(1).await;
    let (h2, _r2) = set.start(2).await;
    all_connected(&[&h0, &h1, &h2]).await;
    assert_eq!(h0.stats().throttled_frames, 0);

    let flood_start = Instant::now();
    for i in 0..FLOOD {
        let mut frame = i.to_be_bytes().to_vec();
        frame.resize(64, 0xF1);
        h1.send(0, frame);
    }
    // Well into the throttled part of the flood (the burst lasts a moment, the rest 4.5 s).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let honest_sent = Instant::now();
    for i in 0..HONEST {
        h2.send(0, i.to_be_bytes().to_vec());
    }

    let mut flood_seen = 0u32;
    let mut honest_seen = 0u32;
    let mut honest_done = None;
    while flood_seen < FLOOD || honest_seen < HONEST {
        let (from, frame) = recv(&mut r0).await;
        let at = Instant::now();
        match from {
            1 => {
                assert_eq!(
                    u32::from_be_bytes(frame[..4].try_into().unwrap()),
                    flood_seen
                );
                flood_seen += 1;
                let t = at.duration_since(flood_start).as_secs_f64();
                assert!(
                    f64::from(flood_seen) <= burst + rate * t + 1.0,
                    "{flood_seen} flood frames read within {t:.3} s: over 100 + 200/s"
                );
            }
            2 => {
                assert_eq!(
                    u32::from_be_bytes(frame[..4].try_into().unwrap()),
                    honest_seen
                );
                honest_seen += 1;
                if honest_seen == HONEST {
                    honest_done = Some((at.duration_since(honest_sent), flood_seen));
                }
            }
            other => panic!("frame from {other}"),
        }
    }
    let flood_took = flood_start.elapsed();
    let (honest_took, flood_before) = honest_done.unwrap();
    println!(
        "flood: {FLOOD} frames in {flood_took:?}; honest: {HONEST} frames in {honest_took:?}, \
         after {flood_before} flood frames; {:?}",
        h0.stats()
    );
    assert!(flood_took >= Duration::from_millis(4400), "{flood_took:?}");
    assert!(
        flood_before < FLOOD,
        "the honest frames waited for the whole flood"
    );
    assert!(
        honest_took < Duration::from_secs(3),
        "the honest frames took {honest_took:?}"
    );
    let s = h0.stats();
    assert_eq!(s.frames_in, u64::from(FLOOD + HONEST), "{s:?}");
    assert!(s.throttled_frames >= 100, "{s:?}");
    assert!(s.throttled_micros >= 1_000_000, "{s:?}");
    assert_eq!(h1.stats().dropped, 0);

    // The buckets are per peer: right after the flood, a burst of 100 from validator 2 (its
    // own burst) waits for nothing, although validator 1's bucket is empty.
    for i in 0..100u32 {
        h2.send(0, i.to_be_bytes().to_vec());
    }
    for i in 0..100u32 {
        assert_eq!(recv(&mut r0).await, (2, i.to_be_bytes().to_vec()));
    }
    let after = h0.stats();
    assert_eq!(
        after.throttled_frames, s.throttled_frames,
        "validator 2 was throttled for validator 1's flood: {after:?}"
    );
    for h in [h0, h1, h2] {
        h.shutdown().await;
    }
}

/// Test 7: validator 0 stops consuming while validator 1 sends 200 frames of 64 KiB. Validator
/// 1's inbound queue at 0 fills to its byte budget (1 MiB: 16 frames) and no further; then one
/// frame from validator 2 is the second frame out, not the 17th; and all 200 arrive in order
/// once 0 consumes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_from_one_peer_does_not_delay_another() {
    const FRAMES: u32 = 200;
    let set = Set::new(3, 230);
    let mut c0 = set.config(0);
    c0.queue_len = 32;
    c0.queue_bytes = 1 << 20;
    c0.max_frame_bytes = 256 << 10;
    c0.inbound_limit = InboundLimit::OFF;
    let (h0, mut r0) = net::start(c0).await.unwrap();
    let (h1, _r1) = set.start(1).await;
    let (h2, _r2) = set.start(2).await;
    all_connected(&[&h0, &h1, &h2]).await;

    for i in 0..FRAMES {
        let mut frame = i.to_be_bytes().to_vec();
        frame.resize(64 << 10, 0xB1);
        h1.send(0, frame);
    }
    wait_for("16 frames of 64 KiB queued at validator 0", || {
        h0.stats().frames_in >= 16
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = h0.stats();
    assert_eq!(s.frames_in, 16, "the byte budget did not hold: {s:?}");
    assert_eq!(s.inbound_queued_bytes, 1 << 20, "{s:?}");

    h2.send(0, b"honest".to_vec());
    wait_for("the honest frame queued", || h0.stats().frames_in == 17).await;
    let mut order = Vec::new();
    for _ in 0..2 {
        order.push(recv(&mut r0).await);
    }
    let at = order.iter().position(|(from, _)| *from == 2);
    assert_eq!(
        at,
        Some(1),
        "the honest frame must come right after one backlog frame: {:?}",
        order.iter().map(|(f, p)| (*f, p.len())).collect::<Vec<_>>()
    );
    assert_eq!(order[1].1, b"honest".to_vec());

    let mut next = 0u32;
    let (from, frame) = &order[0];
    assert_eq!(*from, 1);
    assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()), next);
    next += 1;
    while next < FRAMES {
        let (from, frame) = recv(&mut r0).await;
        assert_eq!((from, frame.len()), (1, 64 << 10));
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()), next);
        next += 1;
    }
    let s = h0.stats();
    assert_eq!((s.frames_in, s.inbound_queued_bytes), (201, 0), "{s:?}");
    assert_eq!(h1.stats().dropped, 0);
    for h in [h0, h1, h2] {
        h.shutdown().await;
    }
}

/// Log lines written while the test runs (tests on other threads are not captured).
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// Complaint #5: when the node at validator 1's genesis address has another network key, the
/// log says which validator, which address, and what to fix.
#[tokio::test] // current-thread runtime: every task logs to this thread's subscriber
async fn dialed_id_mismatch_is_explained() {
    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let set = Set::new(2, 240);
    let (h0, _r0) = set.start(0).await;
    // An impostor with its own key listens where genesis says validator 1 is.
    let impostor = NetConfig::new(addr(set.ports[1]), seed(250), vec![set.peers[0].clone()]);
    let (h_imp, _ri) = net::start(impostor).await.unwrap();
    let text = || String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    wait_for("the ID mismatch log line", || {
        text().contains("dialed ID mismatch")
    })
    .await;
    let line = text()
        .lines()
        .find(|l| l.contains("dialed ID mismatch"))
        .unwrap()
        .to_string();
    let _ = writeln!(std::io::stderr(), "{line}");
    for needle in [
        "validators[1].p2p_address",
        &set.peers[1].address,
        &set.peers[1].network_key.to_string(),
        &h_imp.local_peer_id().to_string(),
        "network_key.json",
    ] {
        assert!(line.contains(needle), "log line lacks {needle:?}: {line}");
    }
    assert!(h0.connected().is_empty());
    h_imp.shutdown().await;
    h0.shutdown().await;
}

/// Not a check: throughput and round-trip time between two validators on loopback.
/// `cargo test -p node --release --test net -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure() {
    let set = Set::new(2, 20);
    let mut c0 = set.config(0);
    let mut c1 = set.config(1);
    c0.queue_len = 1 << 18;
    c1.queue_len = 1 << 18;
    c0.queue_bytes = 1 << 30;
    c1.queue_bytes = 1 << 30;
    c0.inbound_limit = InboundLimit::OFF;
    c1.inbound_limit = InboundLimit::OFF;
    let (h0, mut r0) = net::start(c0).await.unwrap();
    let (h1, mut r1) = net::start(c1).await.unwrap();
    all_connected(&[&h0, &h1]).await;

    let n = 200_000u32;
    let started = Instant::now();
    for i in 0..n {
        let mut frame = i.to_be_bytes().to_vec();
        frame.resize(512, 0);
        h0.send(1, frame);
    }
    for i in 0..n {
        let (_, frame) = recv(&mut r1).await;
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()), i);
    }
    let took = started.elapsed();
    println!(
        "pipelined: {n} x 512 B in {took:?}: {:.0} frames/s, {:.1} MB/s",
        n as f64 / took.as_secs_f64(),
        n as f64 * 512.0 / took.as_secs_f64() / 1e6
    );
    assert_eq!(h0.stats().dropped, 0);

    let mut rtts = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        h0.send(1, vec![1; 512]);
        let (_, f) = recv(&mut r1).await;
        h1.send(0, f);
        recv(&mut r0).await;
        rtts.push(t.elapsed());
    }
    rtts.sort();
    println!(
        "round trip 512 B: median {:?}, p99 {:?}",
        rtts[rtts.len() / 2],
        rtts[rtts.len() * 99 / 100]
    );
    h0.shutdown().await;
    h1.shutdown().await;
}
