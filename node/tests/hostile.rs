//! Hostile input for what validators and clients send a validator: every `Wire` frame
//! (consensus messages, transaction batches, and the sync responses `Blocks`, `Batches` and
//! `SnapshotChunk`) for each protocol's message type, the certificates inside synced blocks,
//! and the body of `POST /v1/transactions/batch`. Arbitrary and mutated bytes never panic and
//! never allocate much more than the input is long, whatever a length prefix claims; what
//! decodes re-encodes to exactly the same bytes; and the batch endpoint answers every body
//! as its documented framing says (checked against an independent parser), never with a 500.

use consensus::hotstuff as hs;
use consensus::{Committee, ReplicaId, View, pbft, raft};
use crypto::{SecretKey, codec};
use ledger::{
    Account, Address, Block, BlockInput, ChainBinding, Ledger, MemStore, Payload, Transaction,
};
use node::api::{self, ApiCommand, ApiState, Metrics, NodeStatus};
use node::mempool::{Admitted, Rejected};
use node::validator::{HotStuffProtocol, PbftProtocol, Protocol, RaftProtocol, Wire, batch_digest};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

// ---- The hostile-input kit (shared; see crypto/tests/kit/hostile.rs) ----

#[path = "../../crypto/tests/kit/hostile.rs"]
mod kit;
use kit::*;

// ---- Keys, committees, transactions ----

#[path = "../../consensus/tests/kit/fixtures.rs"]
mod fixtures;
use fixtures::*;
fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "hostile-node".into(),
        genesis_hash: genesis(),
    }
}
fn wallet(n: u8) -> SecretKey {
    SecretKey::from_seed([100 + n; 32])
}
fn txs() -> Vec<Transaction> {
    let to = Address::of(&wallet(9).public());
    vec![
        Transaction::sign(
            &wallet(1),
            &chain(),
            0,
            Payload::Transfer { to, amount: 10 },
        ),
        Transaction::sign(&wallet(2), &chain(), 3, Payload::Transfer { to, amount: 1 }),
        Transaction::raw(&chain(), 7, (0..50).collect()),
    ]
}

// ---- Certificates of each protocol, and ledger blocks carrying them ----

fn hs_certificate() -> Vec<u8> {
    let block = |view: u64, justify: hs::QuorumCert| hs::Block {
        view: View(view),
        justify,
        proposer: bft().leader(View(view)),
        timestamp_ms: view,
        payload: vec![d(view as u8)],
    };
    let qc = |b: &hs::Block| hs::QuorumCert {
        block: b.id(),
        view: b.view,
        votes: (0..3)
            .map(|i| {
                let v = hs::Vote::new(&genesis(), b.id(), b.view, ReplicaId(i), &key(i));
                (ReplicaId(i), v.signature)
            })
            .collect(),
    };
    let b1 = block(1, hs::QuorumCert::genesis(genesis()));
    let qc1 = qc(&b1);
    let b2 = block(2, qc1.clone());
    let qc2 = qc(&b2);
    codec::encode(&hs::CommitCertificate {
        block: b1,
        qc: qc1,
        proof: Some((b2, qc2)),
    })
}

fn pbft_certificate() -> Vec<u8> {
    let block = pbft::Block {
        seq: 1,
        proposer: bft().leader(View(1)),
        timestamp_ms: 1,
        payload: vec![d(1)],
    };
    let commits = (0..3)
        .map(|i| {
            let v = pbft::Vote::new(
                pbft::Phase::Commit,
                View(1),
                1,
                block.digest(),
                ReplicaId(i),
                &genesis(),
                &key(i),
            );
            (ReplicaId(i), v.signature)
        })
        .collect();
    pbft::CommitCertificate {
        view: View(1),
        block,
        commits,
    }
    .encode()
}

fn raft_certificate() -> Vec<u8> {
    raft::Entry::new(&key(1), &genesis(), 1, 1, ReplicaId(1), 1, vec![d(1)]).encode()
}

/// Block 1 with every corpus transaction and `certificate`, and an empty block 2.
fn ledger_blocks(certificate: Vec<u8>) -> Vec<Block> {
    let funded: Vec<(Address, u64)> = (1..3)
        .map(|n| (Address::of(&wallet(n).public()), 1000))
        .collect();
    let mut ledger = Ledger::open(MemStore::new(), chain(), &funded).unwrap();
    [(txs(), vec![2, 1]), (vec![], vec![])]
        .into_iter()
        .map(|(txs, batch_sizes)| {
            let input = BlockInput {
                proposer: key(1).public(),
                view: 1,
                timestamp_ms: 1,
                txs,
                certificate: certificate.clone(),
                batch_sizes,
            };
            ledger.commit(input).unwrap().0
        })
        .collect()
}

// ---- Frames of each protocol ----

/// What the test needs of a protocol beyond `node::validator::Protocol`.
trait Fixture: Protocol {
    fn messages() -> Vec<Self::Message>;
    fn certificate() -> Vec<u8>;
    fn committee() -> &'static Committee;
}

impl Fixture for HotStuffProtocol {
    fn messages() -> Vec<hs::Message> {
        let b = hs::Block {
            view: View(1),
            justify: hs::QuorumCert::genesis(genesis()),
            proposer: bft().leader(View(1)),
            timestamp_ms: 1,
            payload: vec![d(1), d(2)],
        };
        let leader = key(b.proposer.0);
        vec![
            hs::Message::Vote(hs::Vote::new(
                &genesis(),
                b.id(),
                View(1),
                ReplicaId(3),
                &key(3),
            )),
            hs::Message::Propose(Box::new(hs::Proposal::new(b.clone(), None, &leader))),
            hs::Message::SyncResponse { blocks: vec![b] },
        ]
    }
    fn certificate() -> Vec<u8> {
        hs_certificate()
    }
    fn committee() -> &'static Committee {
        bft()
    }
}

impl Fixture for PbftProtocol {
    fn messages() -> Vec<pbft::Message> {
        let cert = pbft::CommitCertificate::decode(&pbft_certificate()).unwrap();
        let pp = pbft::PrePrepare::new(View(1), cert.block.clone(), &genesis(), &key(1));
        vec![
            pbft::Message::PrePrepare(Box::new(pp)),
            pbft::Message::Fetch { from: 1 },
            pbft::Message::Committed(vec![cert]),
        ]
    }
    fn certificate() -> Vec<u8> {
        pbft_certificate()
    }
    fn committee() -> &'static Committee {
        bft()
    }
}

impl Fixture for RaftProtocol {
    fn messages() -> Vec<raft::Message> {
        let e = raft::Entry::decode(&raft_certificate()).unwrap();
        vec![
            raft::Message::Append {
                term: 1,
                prev_index: 0,
                prev_term: 0,
                entries: vec![e.clone(), e],
                commit: 1,
                read_round: 0,
            },
            raft::Message::InstallSnapshot {
                term: 2,
                last_index: 9,
                last_term: 1,
            },
        ]
    }
    fn certificate() -> Vec<u8> {
        raft_certificate()
    }
    fn committee() -> &'static Committee {
        cft()
    }
}

/// One of each frame, with this protocol's messages and certificates.
fn frames<P: Fixture>() -> Vec<Wire<P::Message>> {
    let blocks = ledger_blocks(P::certificate());
    let accounts: Vec<(Address, Account)> = (0..5u8)
        .map(|n| {
            let a = Address::of(&wallet(n).public());
            (
                a,
                Account {
                    balance: 10 * n as u64,
                    nonce: n as u64,
                },
            )
        })
        .collect();
    let mut out: Vec<Wire<P::Message>> = P::messages()
        .into_iter()
        .map(|m| Wire::Consensus(0, m))
        .collect();
    out.extend([
        Wire::Batch(txs()),
        Wire::BatchRequest(vec![batch_digest(&txs()), d(9)]),
        Wire::Batches(vec![txs(), vec![], txs()[..1].to_vec()]),
        Wire::BlocksRequest { from: 1 },
        Wire::Blocks {
            blocks: blocks.clone(),
            tip: 2,
            certs: vec![(2, vec![0xff; 40])],
        },
        Wire::SnapshotRequest {
            height: 2,
            offset: 0,
        },
        Wire::SnapshotChunk {
            height: 2,
            block: Some(Box::new(blocks[1].clone())),
            head: Some(Box::new(node::validator::SnapshotHead {
                validators: Default::default(),
                config: vec![0xff; 9],
            })),
            total: 5,
            offset: 0,
            accounts: accounts.clone(),
        },
        Wire::StateOfferRequest { epoch: 3 },
        Wire::StateOffer {
            block: Some(Box::new(blocks[1].clone())),
            cert: crypto::codec::encode(&consensus::attest::HeaderCert {
                height: 2,
                header: blocks[1].hash(),
                signatures: vec![(
                    wallet(1).public(),
                    wallet(1).sign(crypto::Domain::Header, b"x"),
                )],
            }),
            leaves: 5,
            floor: 1,
            tip: 2,
            set: Some(Box::default()),
            links: Vec::new(),
        },
        Wire::StateChunkRequest {
            version: 2,
            index: 0,
        },
        Wire::StateChunk(state_chunk(&accounts)),
        Wire::StateChunkMissing {
            version: 2,
            index: 1,
        },
    ]);
    out
}

/// Chunk 0 of a small tree holding `accounts` at version 2.
fn state_chunk(accounts: &[(Address, Account)]) -> ledger::statesync::StateChunk {
    let tree = std::sync::Arc::new(ledger::tree::MemTreeStore::default());
    for v in 0..=2 {
        let (_, batch) = ledger::tree::update(tree.as_ref(), v, accounts).unwrap();
        tree.write(&batch);
    }
    ledger::statesync::serve_chunk(tree, 2, 0).unwrap().unwrap()
}

static HS_FRAMES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    frames::<HotStuffProtocol>()
        .iter()
        .map(Wire::encode)
        .collect()
});
static PBFT_FRAMES: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| frames::<PbftProtocol>().iter().map(Wire::encode).collect());
static RAFT_FRAMES: LazyLock<Vec<Vec<u8>>> =
    LazyLock::new(|| frames::<RaftProtocol>().iter().map(Wire::encode).collect());

// ---- Checks ----

/// Decodes `bytes` as a `Wire<P::Message>`: within the allocation budget; when it decodes,
/// canonical, and (`deep`) whatever it carries (certificates of synced blocks, batches) can
/// be decoded and checked in turn without a panic.
fn check_frame<P: Fixture>(bytes: &[u8], deep: bool) -> bool
where
    P::Message: PartialEq + Serialize + DeserializeOwned + Debug,
{
    let (r, used) = measured(|| Wire::<P::Message>::decode(bytes));
    assert!(
        used <= budget(bytes.len()),
        "decoding {} bytes allocated {used} B",
        bytes.len()
    );
    let Ok(frame) = r else {
        return false;
    };
    let again = frame.encode();
    assert_eq!(again, bytes, "a second encoding of {frame:?}");
    assert!(Wire::<P::Message>::decode(&again).is_ok_and(|f| f == frame));
    if !deep {
        return true;
    }
    let (g, committee) = (genesis(), P::committee());
    let blocks: Vec<&Block> = match &frame {
        Wire::Blocks { blocks, .. } => blocks.iter().collect(),
        Wire::SnapshotChunk { block: Some(b), .. } => vec![b],
        Wire::StateOffer { block: Some(b), .. } => vec![b],
        _ => vec![],
    };
    if let Wire::StateOffer {
        block: Some(b),
        cert,
        ..
    } = &frame
    {
        let (r, used) = measured(|| {
            crypto::codec::decode::<consensus::attest::HeaderCert>(cert, 1 << 20, "cert")
        });
        assert!(used <= budget(cert.len()));
        if let Ok(c) = r {
            let _ = c.verify(committee, &g, b.header.height, &b.hash());
        }
    }
    if let Wire::StateChunk(chunk) = &frame {
        // A syncing validator that asked for this chunk takes it without a panic.
        let total = (chunk.leaves.len() as u64).max(1);
        if let Ok(mut f) = ledger::statesync::Fetch::new(chunk.version, d(3), total, vec![0], 100) {
            let asks = f.poll(0);
            if asks.contains(&(0, chunk.index)) {
                let _ = f.on_chunk(0, 0, chunk.clone());
            }
        }
    }
    for b in blocks {
        let _ = (b.hash(), b.tx_root_matches());
        let (r, used) = measured(|| P::certified(&b.certificate, committee, &g));
        assert!(used <= budget(b.certificate.len()));
        let _ = r;
        let _ = P::decode_certified(&b.certificate, &g);
        let _ = P::log_entry(&b.certificate);
    }
    let batches: Vec<&Vec<Transaction>> = match &frame {
        Wire::Batch(txs) => vec![txs],
        Wire::Batches(bs) => bs.iter().collect(),
        _ => vec![],
    };
    for txs in batches {
        let _ = batch_digest(txs);
        for tx in txs {
            let _ = (tx.hash(), tx.verify_signature());
        }
    }
    true
}

fn check_every_protocol(bytes: &[u8]) {
    check_frame::<HotStuffProtocol>(bytes, true);
    check_frame::<PbftProtocol>(bytes, true);
    check_frame::<RaftProtocol>(bytes, true);
}

/// Arbitrary bytes, half of them behind a plausible `Wire` tag (0..=8) and, for
/// `Consensus`, a plausible message tag.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(any::<u8>(), 0..4096),
    ];
    (prop::option::of((0u32..10, 0u32..9)), body).prop_map(|(tags, body)| {
        let mut b = Vec::new();
        if let Some((wire, msg)) = tags {
            b.extend(wire.to_le_bytes());
            if wire == 0 {
                b.extend(msg.to_le_bytes());
            }
        }
        b.extend(body);
        b
    })
}

#[test]
fn frames_arbitrary_bytes() {
    let _s = serial();
    proptest!(config(1000), |(bytes in hostile_bytes())| {
        check_every_protocol(&bytes);
    });
}

#[test]
fn hotstuff_frames_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..HS_FRAMES.len(), ms in mutations())| {
        let bytes = mutate(HS_FRAMES[which].clone(), &ms);
        check_frame::<HotStuffProtocol>(&bytes, true);
    });
}

#[test]
fn pbft_frames_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..PBFT_FRAMES.len(), ms in mutations())| {
        let bytes = mutate(PBFT_FRAMES[which].clone(), &ms);
        check_frame::<PbftProtocol>(&bytes, true);
    });
}

#[test]
fn raft_frames_mutated() {
    let _s = serial();
    proptest!(config(2000), |(which in 0usize..RAFT_FRAMES.len(), ms in mutations())| {
        let bytes = mutate(RAFT_FRAMES[which].clone(), &ms);
        check_frame::<RaftProtocol>(&bytes, true);
    });
}

#[test]
fn the_frames_decode_and_their_certificates_verify() {
    let _s = serial();
    assert_eq!(HS_FRAMES.len(), 15);
    assert_eq!(PBFT_FRAMES.len(), 15);
    assert_eq!(RAFT_FRAMES.len(), 14);
    for b in HS_FRAMES.iter() {
        assert!(check_frame::<HotStuffProtocol>(b, true));
    }
    for b in PBFT_FRAMES.iter() {
        assert!(check_frame::<PbftProtocol>(b, true));
    }
    for b in RAFT_FRAMES.iter() {
        assert!(check_frame::<RaftProtocol>(b, true));
    }
    let g = genesis();
    assert!(HotStuffProtocol::certified(&hs_certificate(), bft(), &g).is_some());
    assert!(PbftProtocol::certified(&pbft_certificate(), bft(), &g).is_some());
    assert!(RaftProtocol::certified(&raft_certificate(), cft(), &g).is_some());
}

#[test]
fn huge_length_prefixes_allocate_little() {
    let _s = serial();
    // Decoding only: what a decoded frame then goes through is covered above.
    for b in HS_FRAMES.iter() {
        every_prefix_attack(b, |b| {
            check_frame::<HotStuffProtocol>(b, false);
        });
    }
    for b in PBFT_FRAMES.iter() {
        every_prefix_attack(b, |b| {
            check_frame::<PbftProtocol>(b, false);
        });
    }
    for b in RAFT_FRAMES.iter() {
        every_prefix_attack(b, |b| {
            check_frame::<RaftProtocol>(b, false);
        });
    }
    assert!(
        ALLOC.max_allocated() < 256 << 20,
        "heap high-water mark {} B",
        ALLOC.max_allocated()
    );
}

/// A frame at the size limit made of one huge claim: refused before anything is built.
#[test]
fn oversized_frames_are_refused() {
    let _s = serial();
    let bytes = vec![0xFF; node::validator::MAX_WIRE_BYTES as usize + 1];
    let (r, used) = measured(|| Wire::<hs::Message>::decode(&bytes));
    assert!(r.is_err());
    assert!(used < 64 << 10, "{used} B");
}

// ---- POST /v1/transactions/batch ----

/// The body format, parsed independently of `node::api`: each transaction after its 4-byte
/// little-endian length, at most `MAX_BATCH_TXS` of them. `Err` means 400.
fn oracle(body: &[u8]) -> Result<Vec<Transaction>, ()> {
    let mut rest = body;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if out.len() == api::MAX_BATCH_TXS || rest.len() < 4 {
            return Err(());
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(());
        }
        out.push(Transaction::decode(&rest[..len]).map_err(|_| ())?);
        rest = &rest[len..];
    }
    Ok(out)
}

/// A real API server over an empty store, whose validator loop admits every transaction
/// handed to it.
struct Server {
    rt: tokio::runtime::Runtime,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static S: LazyLock<Server> = LazyLock::new(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = node::store::RedbStore::open(&dir.path().join("store.redb")).unwrap();
        let url = rt.block_on(async {
            let (commands, mut rx) = tokio::sync::mpsc::channel::<ApiCommand>(16);
            tokio::spawn(async move {
                while let Some(cmd) = rx.recv().await {
                    match cmd {
                        ApiCommand::SubmitBatch { txs, reply } => {
                            // The loop's verdict on a checked transaction: refused when
                            // the admission workers found its signature bad.
                            let verdicts = txs.iter().map(|t| match &t.signature {
                                Ok(()) => Ok(Admitted::Added(t.hash)),
                                Err(e) => Err(Rejected::BadSignature(e.clone())),
                            });
                            let _ = reply.send(verdicts.collect());
                        }
                        ApiCommand::Submit { tx, reply } => {
                            let _ = reply.send(Ok(Admitted::Added(tx.hash)));
                        }
                        _ => {}
                    }
                }
            });
            let (events, _) = tokio::sync::broadcast::channel(4);
            let state = ApiState {
                store,
                commands,
                events,
                status: Arc::new(RwLock::new(NodeStatus::default())),
                metrics: Arc::new(Metrics::new()),
                chain: chain(),
                commit_wait: Duration::from_millis(10),
                busy: Default::default(),
                admission: node::validator::admission::Admission::for_clients(2).unwrap(),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/v1/transactions", listener.local_addr().unwrap());
            tokio::spawn(api::serve(listener, state, std::future::pending()));
            url
        });
        Server {
            rt,
            url,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    });
    &S
}

/// Posts `body` to `path` (under `/v1/transactions`), asking again while the API's per-client
/// rate limit refuses; the status and the JSON answer.
fn post(path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let s = server();
    s.rt.block_on(async {
        loop {
            let r = s
                .http
                .post(format!("{}{path}", s.url))
                .body(body.clone())
                .send()
                .await
                .expect("the server answers (a panicking handler would drop the connection)");
            let status = r.status().as_u16();
            if status == 429 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            break (status, r.json::<serde_json::Value>().await.unwrap());
        }
    })
}

/// Posts `body` and checks the answer against [`oracle`]: 400 exactly when it says the body
/// is malformed; otherwise 200, with every transaction whose signature verifies (or that is
/// raw) accepted and every other one rejected at its index.
fn check_batch_body(body: Vec<u8>) {
    let expected = oracle(&body);
    let (status, json) = post("/batch", body);
    match expected {
        Err(()) => {
            assert_eq!(status, 400, "{json}");
            assert!(json["error"].is_string(), "{json}");
        }
        Ok(txs) => {
            assert_eq!(status, 200, "{json}");
            let bad: Vec<u64> = txs
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.is_raw() && t.verify_signature().is_err())
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(json["accepted"], txs.len() - bad.len(), "{json}");
            let rejected: Vec<u64> = json["rejected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["index"].as_u64().unwrap())
                .collect();
            assert_eq!(rejected, bad, "{json}");
        }
    }
}

fn valid_batch_body() -> Vec<u8> {
    let encoded: Vec<Vec<u8>> = txs().iter().map(Transaction::encode).collect();
    api::encode_batch(encoded.iter().map(Vec::as_slice))
}

#[test]
fn batch_body_arbitrary_and_mutated() {
    let _s = serial();
    proptest!(config(300), |(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        ms in mutations(),
    )| {
        check_batch_body(bytes);
        check_batch_body(mutate(valid_batch_body(), &ms));
    });
}

#[test]
fn batch_bodies_at_the_edges() {
    let _s = serial();
    let valid = valid_batch_body();
    check_batch_body(valid.clone());
    check_batch_body(Vec::new());
    // Every huge length in place of each transaction's length prefix (the transactions'
    // own length prefixes are attacked in ledger/tests/hostile.rs).
    let mut at = 0;
    while at < valid.len() {
        let len = u32::from_le_bytes(valid[at..at + 4].try_into().unwrap()) as usize;
        for p in huge_prefixes() {
            let mut b = valid.clone();
            let end = (at + p.len()).min(b.len());
            b[at..end].copy_from_slice(&p[..end - at]);
            check_batch_body(b);
        }
        at += 4 + len;
    }
    // Lengths that claim more than the body holds, or nothing at all.
    for claim in [u32::MAX, 1 << 31, 0] {
        let mut b = claim.to_le_bytes().to_vec();
        b.extend(&valid);
        check_batch_body(b);
    }
    // One transaction over the count limit, and exactly at it.
    let raw = Transaction::raw(&chain(), 1, vec![]).encode();
    let at_limit = vec![raw.as_slice(); api::MAX_BATCH_TXS];
    let over = vec![raw.as_slice(); api::MAX_BATCH_TXS + 1];
    check_batch_body(api::encode_batch(over));
    check_batch_body(api::encode_batch(at_limit));
}

// ---- POST /v1/transactions ----

/// `{"tx": "<hex>"}`, parsed independently of `node::api`: `None` means 400.
fn submit_oracle(body: &[u8]) -> Option<Transaction> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        tx: String,
    }
    let b: Body = serde_json::from_slice(body).ok()?;
    let hex_text =
        b.tx.strip_prefix("0x")
            .or_else(|| b.tx.strip_prefix("0X"))
            .unwrap_or(&b.tx);
    Transaction::decode(&hex::decode(hex_text).ok()?).ok()
}

/// Posts `body` as a single submission: 400 exactly when [`submit_oracle`] refuses it,
/// otherwise the loop's verdict (pending) for the transaction's hash.
fn check_submit_body(body: Vec<u8>) {
    let expected = submit_oracle(&body);
    let (status, json) = post("", body);
    match expected {
        None => {
            assert_eq!(status, 400, "{json}");
            assert!(json["error"].is_string(), "{json}");
        }
        Some(tx) => {
            assert_eq!(status, 200, "{json}");
            assert_eq!(json["hash"], tx.hash().to_string(), "{json}");
        }
    }
}

fn submit_json(tx_hex: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "tx": tx_hex })).unwrap()
}

#[test]
fn submit_body_arbitrary_and_mutated() {
    let _s = serial();
    let valid = hex::encode(txs()[0].encode());
    proptest!(config(200), |(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        ms in mutations(),
        which in 0usize..3,
    )| {
        check_submit_body(bytes);
        // The JSON text mutated, and the transaction's bytes mutated inside valid JSON.
        check_submit_body(mutate(submit_json(&valid), &ms));
        let tx = mutate(txs()[which].encode(), &ms);
        check_submit_body(submit_json(&format!("0x{}", hex::encode(tx))));
    });
}
