//! The HTTP API end to end: the real server on 127.0.0.1:0 over a real redb store holding three
//! committed blocks, and a fake validator loop with a real mempool and ledger that can also
//! "commit" (write a block with what it admitted and broadcast the event), driven by reqwest.
//! Also the per-client limits: request rate (429 + Retry-After) and open connections.

use consensus::attest::{CertError, HeaderCert};
use crypto::{Digest, SecretKey};
use ledger::validators::ValidatorState;
use ledger::{Address, Block, BlockInput, ChainBinding, Ledger, Payload, Transaction};
use node::api::AccountView;
use node::api::epochs::SetChain;
use node::api::proof::{VerifyError, verify_account};
use node::api::{self, ApiCommand, ApiLimits, ApiState, CommittedEvent, Metrics, NodeStatus};
use node::mempool::{Limits, Mempool};
use node::store::RedbStore;
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

const FUNDS: u64 = 1_000_000;
const COMMIT_WAIT: Duration = Duration::from_millis(300);
const T0_MS: u64 = 1_700_000_000_000;

fn chain() -> ChainBinding {
    ChainBinding {
        chain_id: "api-test".into(),
        genesis_hash: crypto::hash(b"api-test genesis"),
    }
}
fn alice() -> SecretKey {
    SecretKey::from_seed([1; 32])
}
fn alice_addr() -> Address {
    Address::of(&alice().public())
}
fn bob() -> Address {
    Address::of(&SecretKey::from_seed([2; 32]).public())
}
/// The validators whose header signatures the API serves.
fn attesters() -> Vec<SecretKey> {
    (20..24u8).map(|i| SecretKey::from_seed([i; 32])).collect()
}
fn attester_committee() -> consensus::Committee {
    consensus::Committee::bft(attesters().iter().map(SecretKey::public).collect()).unwrap()
}
fn proposer() -> SecretKey {
    SecretKey::from_seed([9; 32])
}
fn transfer(chain: &ChainBinding, nonce: u64, amount: u64) -> Transaction {
    Transaction::sign(
        &alice(),
        chain,
        nonce,
        Payload::Transfer { to: bob(), amount },
    )
}
fn body(tx: &Transaction) -> Value {
    json!({ "tx": hex::encode(tx.encode()) })
}
fn committed(tx: &Transaction, height: &str, index: u32, receipt: Value) -> Value {
    json!({"status": "committed", "hash": tx.hash().to_string(), "height": height,
           "index": index, "receipt": receipt})
}
/// A submission's answer: the status plus `known` (the node had the transaction before).
fn submitted(mut status: Value, known: bool) -> Value {
    status["known"] = json!(known);
    status
}

fn pending(tx: &Transaction) -> Value {
    json!({"status": "pending", "hash": tx.hash().to_string()})
}

/// Block h: view 2h, timestamp T0 + h s, certificate [0xce, h].
fn commit(ledger: &mut Ledger<RedbStore>, txs: Vec<Transaction>) -> Block {
    let h = ledger.height() + 1;
    let input = BlockInput {
        proposer: proposer().public(),
        view: 2 * h,
        timestamp_ms: T0_MS + h * 1000,
        txs,
        certificate: vec![0xce, h as u8],
        batch_sizes: vec![],
    };
    ledger.commit(input).unwrap().0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Loop {
    /// Answers commands; commits nothing.
    NeverCommits,
    /// Answers commands and commits the pool every 20 ms.
    Commits,
    /// No loop at all (its channel is closed).
    Gone,
}

/// The validator loop stand-in: real admission against the ledger's state.
async fn fake_loop(
    mut ledger: Ledger<RedbStore>,
    mut commands: mpsc::Receiver<ApiCommand>,
    events: broadcast::Sender<CommittedEvent>,
    metrics: Arc<Metrics>,
    mode: Loop,
) {
    let mut pool = Mempool::new(Limits::default());
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => return,
                Some(ApiCommand::Submit { tx, reply }) => {
                    let account = ledger.account_hint(&tx.tx.sender_address());
                    let _ = reply.send(pool.admit_checked(*tx, ledger.chain(), account));
                }
                Some(ApiCommand::SubmitBatch { txs, reply }) => {
                    let verdicts = txs
                        .into_iter()
                        .map(|tx| {
                            let account = ledger.account_hint(&tx.tx.sender_address());
                            pool.admit_checked(tx, ledger.chain(), account)
                        })
                        .collect();
                    let _ = reply.send(verdicts);
                }
                Some(ApiCommand::PoolStatus { hash, reply }) => {
                    let _ = reply.send(pool.status(&hash));
                }
                Some(ApiCommand::NextNonce { address, committed, reply }) => {
                    let _ = reply.send(pool.next_nonce(&address, committed));
                }
                // A single-replica leader: everything committed is applied here.
                Some(ApiCommand::ReadIndex { reply }) => {
                    let _ = reply.send(Some(ledger.height()));
                }
                // Hands over to validator 1 only; anything else is refused as a core would.
                Some(ApiCommand::TransferLeader { to, reply }) => {
                    let _ = reply.send(match to {
                        Some(1) => Ok(1),
                        _ => Err("validator 9 is not a voter of the current configuration".into()),
                    });
                }
            },
            _ = tick.tick(), if mode == Loop::Commits => {
                let txs = pool.next_batch(usize::MAX, usize::MAX);
                if !txs.is_empty() {
                    let block = commit(&mut ledger, txs);
                    pool.committed(&block.txs, |a| ledger.account_hint(a));
                    metrics.height.set(block.header.height);
                    let _ = events.send(CommittedEvent::of(&block));
                }
            }
        }
    }
}

struct Node {
    base: String,
    http: reqwest::Client,
    /// Block 1: [t0]; block 2: [t1, ahead (skipped: nonce 5)]; block 3: empty.
    blocks: Vec<Block>,
    t0: Transaction,
    ahead: Transaction,
    events: broadcast::Sender<CommittedEvent>,
    metrics: Arc<Metrics>,
    /// What `GET /v1/status` shows (a test may switch the protocol).
    status: Arc<RwLock<NodeStatus>>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start(mode: Loop) -> Node {
    start_with(mode, 64).await
}

async fn start_with(mode: Loop, event_capacity: usize) -> Node {
    start_limited(mode, event_capacity, None).await
}

/// `limits: None` serves with `api::serve` (the default limits).
async fn start_limited(mode: Loop, event_capacity: usize, limits: Option<ApiLimits>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
    let reader = store.clone();
    let chain = chain();
    let mut ledger = Ledger::open(store, chain.clone(), &[(alice_addr(), FUNDS)]).unwrap();
    let (t0, t1, ahead) = (
        transfer(&chain, 0, 100),
        transfer(&chain, 1, 200),
        transfer(&chain, 5, 1),
    );
    let blocks: Vec<Block> = [vec![t0.clone()], vec![t1, ahead.clone()], vec![]]
        .into_iter()
        .map(|txs| commit(&mut ledger, txs))
        .collect();
    // A header certificate for height 3 (none for 1 and 2), signed by 3 of the 4 attesters.
    let signers = attesters();
    let signers: Vec<&SecretKey> = signers[..3].iter().collect();
    let cert = HeaderCert::signed_by(&signers, &chain.genesis_hash, 3, blocks[2].hash());
    reader
        .commit_with_certs(&[], &[(3, crypto::codec::encode(&cert))])
        .unwrap();

    let metrics = Arc::new(Metrics::new());
    metrics.height.set(3);
    metrics.committed_txs.inc_by(3);
    let status = NodeStatus {
        chain_id: chain.chain_id.clone(),
        protocol: "hotstuff".into(),
        height: 3,
        latest_hash: blocks[2].hash(),
        view: 7,
        leader: Some(2),
        peers: vec!["peer-a".into(), "peer-b".into()],
        catching_up: false,
        mempool_size: 0,
        raft: None,
    };
    let (commands, rx) = mpsc::channel(16);
    let (events, _) = broadcast::channel(event_capacity);
    if mode == Loop::Gone {
        drop(rx);
    } else {
        let (ev, m) = (events.clone(), metrics.clone());
        tokio::spawn(fake_loop(ledger, rx, ev, m, mode));
    }
    let status = Arc::new(RwLock::new(status));
    let state = ApiState {
        store: reader,
        commands,
        events: events.clone(),
        status: status.clone(),
        metrics: metrics.clone(),
        chain,
        commit_wait: COMMIT_WAIT,
        busy: Default::default(),
        admission: node::validator::admission::Admission::for_clients(2).unwrap(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let server = match limits {
        None => tokio::spawn(api::serve(listener, state, stopped)),
        Some(limits) => tokio::spawn(api::serve_with(listener, state, limits, stopped)),
    };
    Node {
        base,
        http: reqwest::Client::new(),
        blocks,
        t0,
        ahead,
        events,
        metrics,
        status,
        stop,
        server,
        _dir: dir,
    }
}

impl Node {
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, value)
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().into_bytes()).await
    }
    async fn post_raw(&self, path: &str, bytes: Vec<u8>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(url).body(bytes)).await
    }
    async fn events(&self) -> Sse {
        let resp = self.http.get(format!("{}/v1/events", self.base));
        let resp = resp.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = &resp.headers()["content-type"];
        assert_eq!(ct, "text/event-stream");
        Sse {
            resp,
            buf: String::new(),
        }
    }
}

struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next SSE message (lines up to a blank line); None when the stream ends.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let msg = self.buf[..i].to_string();
                self.buf.drain(..i + 2);
                return Some(msg);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.resp.chunk());
            let chunk = chunk.await.expect("an event within 5 s").unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn field<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no {name:?} in {msg:?}"))
}

#[tokio::test]
async fn submit_sync_admits_and_resubmission_answers_the_same() {
    let node = start(Loop::NeverCommits).await;
    let tx = transfer(&chain(), 2, 50);
    assert_eq!(
        node.post("/v1/transactions?mode=sync", body(&tx)).await,
        (200, submitted(pending(&tx), false))
    );
    // The hash is the idempotency key: the same body again is the same answer, not an error,
    // and says the node already had it (a second sender made no new payment).
    assert_eq!(
        node.post("/v1/transactions", body(&tx)).await,
        (200, submitted(pending(&tx), true))
    );
    assert_eq!(
        node.post("/v1/transactions?mode=async", body(&tx)).await,
        (202, submitted(pending(&tx), true))
    );
    let path = format!("/v1/transactions/{}", tx.hash());
    assert_eq!(node.get(&path).await, (200, pending(&tx)));
}

#[tokio::test]
async fn refused_transactions_are_422_with_the_reason() {
    let node = start(Loop::NeverCommits).await;
    let other = ChainBinding {
        chain_id: "other-chain".into(),
        ..chain()
    };
    let tx = transfer(&other, 2, 50);
    let (status, v) = node.post("/v1/transactions", body(&tx)).await;
    assert_eq!(status, 422);
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["hash"], tx.hash().to_string());
    assert_eq!(v["retryable"], false);
    assert_eq!(v["code"], "wrong_chain_id");
    assert_eq!(v["known"], false);
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "wrong chain id: signed for \"other-chain\", but this chain is \"api-test\""
        ),
        "{reason}"
    );

    // A different transaction reusing a committed nonce is refused (not a replay of one).
    let (status, v) = node
        .post("/v1/transactions", body(&transfer(&chain(), 0, 7)))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["code"], "nonce_used");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("nonce 0 already used (next nonce is 2)"),
        "{reason}"
    );
}

#[tokio::test]
async fn replay_of_a_committed_transaction_answers_committed_in_every_mode() {
    let node = start(Loop::NeverCommits).await;
    let want = committed(&node.t0, "1", 0, json!({"ok": true}));
    for mode in ["sync", "async", "commit"] {
        let path = format!("/v1/transactions?mode={mode}");
        assert_eq!(
            node.post(&path, body(&node.t0)).await,
            (200, submitted(want.clone(), true)),
            "{mode}"
        );
    }
    let path = format!("/v1/transactions/{}", node.t0.hash());
    assert_eq!(node.get(&path).await, (200, want));
    // Ordered but skipped: committed, with the reason in the receipt.
    let path = format!("/v1/transactions/{}", node.ahead.hash());
    let receipt = json!({
        "ok": false,
        "reason": "nonce 5 is ahead of the next nonce 2",
        "code": "nonce_too_high",
    });
    assert_eq!(
        node.get(&path).await,
        (200, committed(&node.ahead, "2", 1, receipt))
    );
}

#[tokio::test]
async fn malformed_submissions_are_400_and_oversized_413() {
    let node = start(Loop::NeverCommits).await;
    let big = vec![b'a'; api::MAX_BODY_BYTES + 1];
    let (status, v) = node.post_raw("/v1/transactions", big).await;
    assert_eq!(status, 413);
    assert!(v["error"].as_str().unwrap().contains("length limit"), "{v}");

    let cases: [(&[u8], &str); 6] = [
        (b"garbage", "invalid JSON body (expected value"),
        (
            b"{\"tx\": 5}",
            "invalid JSON body (invalid type: integer `5`",
        ),
        (b"{\"tx\": \"zz\"}", "field \"tx\" is not hex"),
        (
            b"{\"tx\": \"abcd\"}",
            "field \"tx\": cannot decode transaction",
        ),
        (
            b"{\"tx\": \"00\", \"fee\": 1}",
            "invalid JSON body (unknown field `fee`",
        ),
        (b"{}", "invalid JSON body (missing field `tx`"),
    ];
    for (bytes, want) in cases {
        let (status, v) = node.post_raw("/v1/transactions", bytes.to_vec()).await;
        assert_eq!(status, 400, "{v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.starts_with(want), "{error}");
    }
    // A decode error names the field and the byte, for a short input and for a length
    // prefix of 2^63 (the chain id's).
    let (_, v) = node
        .post_raw("/v1/transactions", b"{\"tx\": \"abcd\"}".to_vec())
        .await;
    assert_eq!(
        v["error"],
        "field \"tx\": cannot decode transaction: field body.chain_id (from byte 0): the input \
         ends inside its 8-byte length prefix at byte 0 (only 2 bytes remain)"
    );
    let mut huge = node.t0.encode();
    huge[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let (status, v) = node
        .post("/v1/transactions", json!({"tx": hex::encode(&huge)}))
        .await;
    assert_eq!(status, 400);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "field \"tx\": cannot decode transaction: field body.chain_id (from byte 0): its \
             length prefix at byte 0 says 9223372036854775808 bytes, but only"
        ),
        "{error}"
    );
    let cut = &node.t0.encode()[..100];
    let (_, v) = node
        .post("/v1/transactions", json!({"tx": hex::encode(cut)}))
        .await;
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("cannot decode transaction: field "),
        "{error}"
    );
    assert!(error.contains("but the input ends there"), "{error}");
    let mut trailing = node.t0.encode();
    trailing.push(0);
    let (status, v) = node
        .post("/v1/transactions", json!({"tx": hex::encode(trailing)}))
        .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot decode transaction")
    );

    let (status, v) = node
        .post("/v1/transactions?mode=fast", body(&node.t0))
        .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown variant `fast`")
    );
}

#[tokio::test]
async fn transaction_lookup_bad_hash_is_400_and_unknown_404() {
    let node = start(Loop::NeverCommits).await;
    let (status, v) = node.get("/v1/transactions/xyz").await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "expected a transaction hash of 64 hex characters, got \"xyz\" (3 characters)"
    );
    let nothing = crypto::hash(b"nothing");
    let (status, v) = node.get(&format!("/v1/transactions/0x{nothing}")).await;
    assert_eq!(status, 404);
    assert_eq!(v["status"], "unknown");
    assert_eq!(v["hash"], nothing.to_string());
    assert!(
        v["hint"]
            .as_str()
            .unwrap()
            .starts_with("not committed and not in")
    );
}

#[tokio::test]
async fn mode_commit_waits_for_the_block() {
    let node = start(Loop::Commits).await;
    let tx = transfer(&chain(), 2, 50);
    assert_eq!(
        node.post("/v1/transactions?mode=commit", body(&tx)).await,
        (
            200,
            submitted(committed(&tx, "4", 0, json!({"ok": true})), false)
        )
    );
    let (status, v) = node.get("/v1/blocks/latest").await;
    assert_eq!((status, &v["height"]), (200, &json!("4")));
    assert_eq!(v["tx_hashes"], json!([tx.hash().to_string()]));
    let (_, v) = node.get(&format!("/v1/accounts/{}", alice_addr())).await;
    assert_eq!(
        (&v["balance"], &v["nonce"]),
        (&json!("999650"), &json!("3"))
    );
}

#[tokio::test]
async fn mode_commit_answers_the_status_it_has_after_the_wait() {
    let node = start(Loop::NeverCommits).await;
    let tx = transfer(&chain(), 2, 50);
    let started = Instant::now();
    let (status, v) = node.post("/v1/transactions?mode=commit", body(&tx)).await;
    assert!(started.elapsed() >= COMMIT_WAIT);
    // Not committed in time, but pooled: it says `pending` (what GET says), not `unknown`.
    assert_eq!(status, 202);
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["hash"], tx.hash().to_string());
    assert_eq!(v["known"], false);
    let note = format!(
        "still pending in this validator's pool after 300 ms; check GET /v1/transactions/{} \
         later",
        tx.hash()
    );
    assert!(v["note"].as_str().unwrap().starts_with(&note), "{v}");
    let path = format!("/v1/transactions/{}", tx.hash());
    assert_eq!(node.get(&path).await, (200, pending(&tx)));

    // A nonce gap: nonce 4 while the account's next is 2 and only 2 is pooled, so 3 is
    // missing. The note names the missing nonce.
    let gap = transfer(&chain(), 4, 5);
    let (status, v) = node.post("/v1/transactions?mode=commit", body(&gap)).await;
    assert_eq!(status, 202);
    assert_eq!(v["status"], "pending", "{v}");
    let note = v["note"].as_str().unwrap();
    assert!(
        note.starts_with(&format!(
            "pending: its nonce 4 waits for nonce 3 of {} (the account's next nonce is 2)",
            alice_addr()
        )),
        "{note}"
    );
}

/// `pending_nonce` counts the sender's consecutive pooled transactions, so a wallet can send
/// back-to-back; a gap (nonce 5 while 3 and 4 are missing) does not count.
#[tokio::test]
async fn pending_nonce_counts_pooled_transactions() {
    let node = start(Loop::NeverCommits).await;
    let a = alice_addr().to_string();
    let path = format!("/v1/accounts/{a}");
    for nonce in [2, 3, 5] {
        let (status, _) = node
            .post(
                "/v1/transactions?mode=sync",
                body(&transfer(&chain(), nonce, 1)),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, v) = node.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&v["nonce"], &v["pending_nonce"]),
        (&json!("2"), &json!("4")),
        "{v}"
    );
}

#[tokio::test]
async fn accounts_show_balances_and_nonces_as_strings() {
    let node = start(Loop::NeverCommits).await;
    let a = alice_addr().to_string();
    let want = json!({"address": a, "height": "3", "balance": "999700", "nonce": "2",
                      "pending_nonce": "2"});
    assert_eq!(
        node.get(&format!("/v1/accounts/{a}")).await,
        (200, want.clone())
    );
    assert_eq!(node.get(&format!("/v1/accounts/0x{a}")).await, (200, want));
    let b = bob().to_string();
    let want = json!({"address": b, "height": "3", "balance": "300", "nonce": "0",
                      "pending_nonce": "0"});
    assert_eq!(node.get(&format!("/v1/accounts/{b}")).await, (200, want));
    let nobody = "00".repeat(20);
    let want = json!({"address": nobody, "height": "3", "balance": "0", "nonce": "0",
                      "pending_nonce": "0"});
    assert_eq!(
        node.get(&format!("/v1/accounts/{nobody}")).await,
        (200, want)
    );
    let (status, v) = node.get("/v1/accounts/alice").await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "expected an address of 40 hex characters, got \"alice\" (5 characters)"
    );
}

#[tokio::test]
async fn blocks_latest_and_by_height() {
    let node = start(Loop::NeverCommits).await;
    let b = &node.blocks;
    let want = json!({
        "height": "3", "hash": b[2].hash().to_string(), "parent": b[1].hash().to_string(),
        "tx_root": b[2].header.tx_root.to_string(),
        "state_root": b[2].header.state_root.to_string(),
        "validators": b[2].header.validators.to_string(),
        "proposer": proposer().public().to_string(), "view": "6",
        "timestamp_ms": (T0_MS + 3000).to_string(), "tx_hashes": [], "certificate": "ce03",
    });
    assert_eq!(node.get("/v1/blocks/latest").await, (200, want.clone()));
    assert_eq!(node.get("/v1/blocks/3").await, (200, want));
    let (status, v) = node.get("/v1/blocks/2").await;
    assert_eq!(status, 200);
    let hashes: Vec<String> = b[1].txs.iter().map(|t| t.hash().to_string()).collect();
    assert_eq!(v["tx_hashes"], json!(hashes));
    assert_eq!(v["parent"], b[0].hash().to_string());
    let (status, v) = node.get("/v1/blocks/1").await;
    assert_eq!(
        (status, &v["parent"]),
        (200, &json!(chain().genesis_hash.to_string()))
    );

    let (status, v) = node.get("/v1/blocks/4").await;
    assert_eq!(status, 404);
    assert_eq!(
        v["error"],
        "no block at height 4: heights run from 1 to the latest, 3"
    );
    assert_eq!(node.get("/v1/blocks/0").await.0, 404);
    // Exactly what the message promises: no sign, no leading zeros.
    for bad in ["-1", "+1", "00001", "01", "1.0", "18446744073709551616"] {
        let (status, v) = node.get(&format!("/v1/blocks/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(
            v["error"],
            format!(
                "expected a block height (decimal digits without sign or leading zeros, at \
                 most 18446744073709551615) or \"latest\", got \"{bad}\""
            )
        );
    }
}

#[tokio::test]
async fn status_health_and_metrics() {
    let node = start(Loop::NeverCommits).await;
    let want = json!({
        "chain_id": "api-test", "protocol": "hotstuff", "height": "3",
        "latest_hash": node.blocks[2].hash().to_string(), "view": "7", "leader": 2,
        "peers": ["peer-a", "peer-b"], "catching_up": false, "mempool_size": "0",
        "genesis_hash": chain().genesis_hash.to_string(),
    });
    assert_eq!(node.get("/v1/status").await, (200, want));
    assert_eq!(node.get("/v1/health").await, (200, json!({"ok": true})));

    let resp = node.http.get(format!("{}/metrics", node.base));
    let resp = resp.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().await.unwrap();
    for line in [
        "cairn_height 3\n",
        "cairn_view 0\n",
        "cairn_committed_txs_total 3\n",
        "cairn_view_changes_total 0\n",
        "cairn_leader_changes_total 0\n",
        "cairn_mempool_size 0\n",
        "cairn_peers 0\n",
        "# TYPE cairn_block_interval_seconds histogram\n",
        "cairn_block_interval_seconds_count 0\n",
        "# TYPE cairn_fsync_seconds histogram\n",
        "# EOF\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let node = start(Loop::NeverCommits).await;
    let (status, v) = node.get("/v2/blocks/1").await;
    assert_eq!(status, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("no such endpoint: GET /v2/blocks/1")
    );
    let (status, v) = node
        .send(node.http.delete(format!("{}/v1/status", node.base)))
        .await;
    assert_eq!(status, 405);
    assert_eq!(v["error"], "/v1/status does not accept DELETE");
}

#[tokio::test]
async fn a_stopped_loop_answers_503_not_500() {
    let node = start(Loop::Gone).await;
    let (status, v) = node
        .post("/v1/transactions", body(&transfer(&chain(), 2, 5)))
        .await;
    assert_eq!(
        (status, v),
        (503, json!({"error": "the validator loop has stopped"}))
    );
    let (status, v) = node.get("/v1/health").await;
    assert_eq!((status, &v["ok"]), (503, &json!(false)));
    // Committed data is still served from the store.
    let path = format!("/v1/transactions/{}", node.t0.hash());
    assert_eq!(node.get(&path).await.0, 200);
}

#[tokio::test]
async fn events_stream_one_committed_event_per_block() {
    let node = start(Loop::Commits).await;
    let mut sse = node.events().await;
    let tx = transfer(&chain(), 2, 50);
    assert_eq!(node.post("/v1/transactions", body(&tx)).await.0, 200);
    let msg = sse.next().await.unwrap();
    assert_eq!(field(&msg, "event"), "committed");
    assert_eq!(field(&msg, "id"), "4");
    let data: Value = serde_json::from_str(field(&msg, "data")).unwrap();
    let (_, block) = node.get("/v1/blocks/4").await;
    let want = json!({"height": "4", "hash": block["hash"], "txs": "1",
                      "tx_hashes": [tx.hash().to_string()],
                      "timestamp_ms": (T0_MS + 4000).to_string()});
    assert_eq!(data, want);
}

/// The compact stream carries the same block as the SSE stream: height, timestamp and the
/// transaction hashes as raw 32-byte values; a lagging reader gets an `L` frame.
#[tokio::test]
async fn compact_event_stream_carries_each_block_s_hashes() {
    let node = start(Loop::Commits).await;
    let mut resp = node
        .http
        .get(format!("{}/v1/events/hashes", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let tx = transfer(&chain(), 2, 50);
    assert_eq!(node.post("/v1/transactions", body(&tx)).await.0, 200);
    let mut frames = node::api::compact::Decoder::default();
    let frame = loop {
        if let Some(f) = frames.next_frame().unwrap() {
            break f;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk());
        frames.push(&chunk.await.expect("a frame within 5 s").unwrap().unwrap());
    };
    assert_eq!(
        frame,
        node::api::compact::Frame::Committed {
            height: 4,
            timestamp_ms: T0_MS + 4000,
            hashes: vec![tx.hash()],
        }
    );
}

#[tokio::test]
async fn a_lagging_event_reader_skips_ahead() {
    let node = start_with(Loop::NeverCommits, 2).await;
    let mut sse = node.events().await;
    // Five events while the server cannot run (one-thread test runtime): capacity 2 keeps two.
    for h in 10..15 {
        let ev = CommittedEvent {
            height: h,
            hash: Digest([h as u8; 32]),
            txs: 0,
            tx_hashes: vec![],
            timestamp_ms: 0,
        };
        node.events.send(ev).unwrap();
    }
    let msg = sse.next().await.unwrap();
    assert!(
        msg.starts_with(": lagged, skipped 3 committed events"),
        "{msg}"
    );
    assert_eq!(field(&sse.next().await.unwrap(), "id"), "13");
    assert_eq!(field(&sse.next().await.unwrap(), "id"), "14");
}

#[tokio::test]
async fn shutdown_ends_event_streams_and_returns() {
    let node = start(Loop::NeverCommits).await;
    let mut sse = node.events().await;
    node.stop.send(()).unwrap();
    assert_eq!(sse.next().await, None);
    let done = tokio::time::timeout(Duration::from_secs(5), node.server).await;
    done.expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn batch_submission_admits_many_and_names_each_refusal() {
    let node = start(Loop::NeverCommits).await;
    let chain = chain();
    let good: Vec<Transaction> = (2..5).map(|n| transfer(&chain, n, 1)).collect();
    let mut forged = transfer(&chain, 5, 1);
    forged.signature.0[0] ^= 1;
    let raw = Transaction::raw(&chain, 1, vec![7; 100]);
    let mut txs = good.clone();
    txs.push(forged.clone());
    txs.push(raw.clone());
    let encoded: Vec<Vec<u8>> = txs.iter().map(Transaction::encode).collect();
    let body = api::encode_batch(encoded.iter().map(Vec::as_slice));
    let (status, v) = node.post_raw("/v1/transactions/batch", body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 3, "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{v}");
    // The forged signature, found by the batch check, named by the single check.
    assert_eq!(rejected[0]["index"], 3);
    assert_eq!(rejected[0]["hash"], forged.hash().to_string());
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("bad signature"),
        "{v}"
    );
    // Raw transactions are off unless genesis enables them.
    assert_eq!(rejected[1]["index"], 4);
    assert!(
        rejected[1]["reason"]
            .as_str()
            .unwrap()
            .contains("raw transactions are disabled")
    );
    for tx in &good {
        let path = format!("/v1/transactions/{}", tx.hash());
        assert_eq!(node.get(&path).await, (200, pending(tx)));
    }
    // The same batch again: the admitted ones are already pending, not refused.
    let (status, v) = node.post_raw("/v1/transactions/batch", body).await;
    assert_eq!((status, v["accepted"].clone()), (200, json!(3)), "{v}");
}

#[tokio::test]
async fn malformed_batches_are_400_naming_the_transaction_and_none_is_admitted() {
    let node = start(Loop::NeverCommits).await;
    let tx = transfer(&chain(), 2, 1);
    let one = tx.encode();
    let mut cut = api::encode_batch([one.as_slice(), one.as_slice()]);
    cut.truncate(cut.len() - 1);
    let mut garbage = api::encode_batch([one.as_slice()]);
    garbage.extend_from_slice(&3u32.to_le_bytes());
    garbage.extend_from_slice(b"abc");
    let cases: [(Vec<u8>, &str); 3] = [
        (cut, "transaction 1: length prefix says"),
        (
            vec![1, 2],
            "transaction 0: 2 bytes left, too few for its 4-byte length prefix",
        ),
        (garbage, "transaction 1: cannot decode transaction"),
    ];
    for (bytes, want) in cases {
        let (status, v) = node.post_raw("/v1/transactions/batch", bytes).await;
        assert_eq!(status, 400, "{v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.starts_with(want), "{error}");
    }
    let path = format!("/v1/transactions/{}", tx.hash());
    assert_eq!(
        node.get(&path).await.0,
        404,
        "nothing of a malformed batch is admitted"
    );
    let too_many = api::encode_batch(std::iter::repeat_n(one.as_slice(), api::MAX_BATCH_TXS + 1));
    let (status, v) = node.post_raw("/v1/transactions/batch", too_many).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("split it"), "{v}");
    let huge = vec![0u8; api::MAX_BATCH_BODY_BYTES + 1];
    let (status, _) = node.post_raw("/v1/transactions/batch", huge).await;
    assert_eq!(status, 413);
    // An empty batch is a valid, empty answer.
    let (status, v) = node.post_raw("/v1/transactions/batch", Vec::new()).await;
    assert_eq!((status, v), (200, json!({"accepted": 0, "rejected": []})));
}

/// A client whose requests come from `ip` (any 127.0.0.0/8 address reaches the server).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `name value` from the metrics text.
fn metric(metrics: &Metrics, name: &str) -> String {
    let text = metrics.encode().unwrap();
    let line = text
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"));
    line[name.len() + 1..].to_string()
}

/// With 1 request/s and bursts of 10 per client address, 40 requests in a row from one
/// address: the first 10 pass, at most one more per elapsed second does, the rest are 429 with
/// a `Retry-After` of 1 s and a JSON error naming the limit. Another address is not limited;
/// the first one is served again after the wait it was told.
#[tokio::test]
async fn over_the_per_ip_rate_requests_get_429_with_retry_after() {
    let limits = ApiLimits {
        rate_per_ip: 1,
        burst: 10,
        ..ApiLimits::OFF
    };
    let node = start_limited(Loop::NeverCommits, 64, Some(limits)).await;
    let url = format!("{}/v1/health", node.base);
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut refusal = None;
    for _ in 0..40 {
        let resp = node.http.get(&url).send().await.unwrap();
        let status = resp.status().as_u16();
        if status == 429 && refusal.is_none() {
            let retry = resp.headers()["retry-after"].to_str().unwrap().to_string();
            let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
            let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            refusal = Some((retry, ct, body));
        }
        statuses.push(status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        statuses[..10].iter().all(|&s| s == 200),
        "the burst passes: {statuses:?}"
    );
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok + limited, 40, "{statuses:?}");
    assert!(
        ok as f64 <= 10.0 + elapsed + 1.0,
        "{ok} passed within {elapsed:.2} s at 1/s after a burst of 10: {statuses:?}"
    );
    let (retry, ct, body) = refusal.expect("some requests were refused");
    assert_eq!(retry, "1");
    assert_eq!(ct, "application/json");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.starts_with("too many requests from 127.0.0.1: this API allows 1 per second per client address (bursts of 10); retry after 1 s"),
        "{msg}"
    );
    assert_eq!(
        metric(&node.metrics, "cairn_api_rate_limited_total"),
        limited.to_string()
    );

    // Another client address has its own bucket.
    let other = client_from("127.0.0.2");
    assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
    // After the wait it was told, the first address is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(node.get("/v1/health").await, (200, json!({"ok": true})));
}

/// The default limits (`api::serve`): 2,400 requests from one address, paced at about
/// 1,000/s and 16 at a time, all succeed — beyond the burst of 2,000, so the refill counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_default_rate_every_request_succeeds() {
    const N: usize = 2400;
    let node = start(Loop::NeverCommits).await;
    let url = format!("{}/v1/health", node.base);
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..N {
        // At most one request per 1 ms tick so far: never more than 1,000 × t + 1 by time t.
        tick.tick().await;
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (http, url) = (node.http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let status = http.get(&url).send().await.unwrap().status().as_u16();
            drop(permit);
            status
        }));
    }
    let mut refused = 0;
    for t in tasks {
        if t.await.unwrap() != 200 {
            refused += 1;
        }
    }
    println!("{N} requests in {:?}", started.elapsed());
    assert_eq!(refused, 0);
    assert_eq!(metric(&node.metrics, "cairn_api_rate_limited_total"), "0");
}

/// Opens a raw TCP connection from `ip`.
async fn connect_from(ip: &str, base: &str) -> tokio::net::TcpStream {
    let server: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads what is there (waiting until something is); Ok(0) when the server closed.
async fn read_some(conn: &tokio::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        conn.readable().await?;
        match conn.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Sends `GET /v1/health` on `conn` and returns the start of the answer (empty if the server
/// closed the connection), or None if nothing came within `within`.
async fn health(conn: &tokio::net::TcpStream, within: Duration) -> Option<String> {
    let request = b"GET /v1/health HTTP/1.1\r\nHost: cairn\r\n\r\n";
    // A fresh socket's send buffer takes these few bytes at once.
    let sent = match conn.writable().await {
        Ok(()) => conn.try_write(request).ok(),
        Err(_) => None,
    };
    if sent != Some(request.len()) {
        return Some(String::new());
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(within, read_some(conn, &mut buf)).await {
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(_)) => Some(String::new()),
        Err(_) => None,
    }
}

/// At most 2 open connections per client address and 4 in all: a third connection from one
/// address is closed at once (and counted); a fifth connection in all is not served until one
/// of the four closes, and then it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped_per_address_and_in_all() {
    let limits = ApiLimits {
        max_connections: 4,
        max_connections_per_ip: 2,
        ..ApiLimits::OFF
    };
    let node = start_limited(Loop::NeverCommits, 64, Some(limits)).await;
    let wait = Duration::from_secs(20);
    let ok = |answer: Option<String>| {
        let a = answer.expect("an answer");
        assert!(a.starts_with("HTTP/1.1 200"), "{a:?}");
    };
    let a1 = connect_from("127.0.0.1", &node.base).await;
    let a2 = connect_from("127.0.0.1", &node.base).await;
    ok(health(&a1, wait).await);
    ok(health(&a2, wait).await);
    let a3 = connect_from("127.0.0.1", &node.base).await;
    assert_eq!(
        health(&a3, wait).await,
        Some(String::new()),
        "a third connection from one address must be closed"
    );
    assert_eq!(
        metric(&node.metrics, "cairn_api_refused_connections_total"),
        "1"
    );

    let b1 = connect_from("127.0.0.2", &node.base).await;
    let b2 = connect_from("127.0.0.2", &node.base).await;
    ok(health(&b1, wait).await);
    assert_eq!(metric(&node.metrics, "cairn_api_connections"), "4");
    // Four open: a fifth (from a third address) waits to be accepted.
    let c1 = connect_from("127.0.0.3", &node.base).await;
    assert_eq!(
        health(&c1, Duration::from_millis(500)).await,
        None,
        "a fifth connection was served while four were open"
    );
    drop(b2);
    let answer = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 512];
        let n = read_some(&c1, &mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    ok(health(&a1, wait).await);
}

/// What the loop copies in from the transport (`Metrics::set_net`) is exported by name.
#[test]
fn metrics_export_the_transport_counters() {
    let m = Metrics::new();
    let stats = node::net::NetStats {
        throttled_frames: 7,
        throttled_micros: 2_500_000,
        dropped: 3,
        queue_full: 2,
        queued_bytes: 1024,
        ..Default::default()
    };
    m.set_net(&stats);
    assert_eq!(metric(&m, "cairn_net_throttled_frames_total"), "7");
    assert_eq!(metric(&m, "cairn_net_throttled_seconds_total"), "2.5");
    assert_eq!(metric(&m, "cairn_net_dropped_frames_total"), "3");
    assert_eq!(metric(&m, "cairn_net_queued_bytes"), "1024");
    assert_eq!(metric(&m, "cairn_api_rate_limited_total"), "0");
    assert_eq!(metric(&m, "cairn_api_connections"), "0");
}

/// `?prove=true`: the answer verifies against the attesters alone, for an account and an
/// absent one; each way of tampering with it fails with its own reason; heights without a
/// certificate, bad parameters and a `min_height` above the store answer clearly.
#[tokio::test]
async fn proven_accounts_verify_and_each_tampering_fails_with_its_own_reason() {
    let node = start(Loop::NeverCommits).await;
    let trust = |committee, genesis| SetChain::new(ValidatorState::default(), committee, genesis);
    let trusted = trust(attester_committee(), chain().genesis_hash);
    let proven = |addr: Address| {
        let node = &node;
        async move {
            let (status, v) = node.get(&format!("/v1/accounts/{addr}?prove=true")).await;
            assert_eq!(status, 200, "{v}");
            serde_json::from_value::<AccountView>(v).unwrap()
        }
    };
    let view = proven(alice_addr()).await;
    assert_eq!(view.height, 3);
    let a = verify_account(&view, &trusted).unwrap();
    assert_eq!((a.balance, a.nonce), (999_700, 2));
    let nobody = Address([0xab; 20]);
    let absent = proven(nobody).await;
    assert!(absent.proof.as_ref().unwrap().value.is_none());
    assert_eq!(
        verify_account(&absent, &trusted).unwrap(),
        ledger::Account::default()
    );

    // A balance the proof does not prove.
    let mut t = view.clone();
    t.balance += 1;
    assert!(matches!(
        verify_account(&t, &trusted),
        Err(VerifyError::Mismatch { .. })
    ));
    // A consistent lie: the leaf value changed too, so the path no longer reaches the root.
    let mut t = view.clone();
    let p = t.proof.as_mut().unwrap();
    let mut value = hex::decode(p.value.as_ref().unwrap()).unwrap();
    value[20] ^= 1;
    p.value = Some(hex::encode(value));
    t.balance ^= 1;
    assert!(matches!(
        verify_account(&t, &trusted),
        Err(VerifyError::Proof(ledger::tree::ProofError::Mismatch(_)))
    ));
    // Another account's proof offered for this address.
    let mut t = proven(bob()).await;
    t.address = alice_addr();
    assert!(matches!(
        verify_account(&t, &trusted),
        Err(VerifyError::Proof(
            ledger::tree::ProofError::OtherAddress { .. }
        ))
    ));
    // The header (state root) of another height under this height's certificate.
    let mut t = view.clone();
    t.height = 2;
    t.proof.as_mut().unwrap().header = hex::encode(crypto::codec::encode(&node.blocks[1].header));
    assert!(matches!(
        verify_account(&t, &trusted),
        Err(VerifyError::Cert(CertError::WrongHeight { .. }))
    ));
    // Signed by keys that are not the genesis validators; for another chain.
    let strangers = consensus::Committee::bft(
        (30..34u8)
            .map(|i| SecretKey::from_seed([i; 32]).public())
            .collect(),
    )
    .unwrap();
    assert!(matches!(
        verify_account(&view, &trust(strangers, chain().genesis_hash)),
        Err(VerifyError::Cert(CertError::UnknownSigner(_)))
    ));
    assert!(matches!(
        verify_account(&view, &trust(attester_committee(), Digest([7; 32]))),
        Err(VerifyError::Cert(CertError::BadSignature(_)))
    ));
    // Heights without a certificate, and bad parameters.
    let a = alice_addr();
    let (status, v) = node
        .get(&format!("/v1/accounts/{a}?prove=true&height=2"))
        .await;
    assert_eq!(status, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no header certificate at height 2"),
        "{v}"
    );
    let (status, v) = node
        .get(&format!("/v1/accounts/{a}?prove=true&height=9"))
        .await;
    assert_eq!(status, 404);
    assert!(v["error"].as_str().unwrap().contains("above"), "{v}");
    let (status, _) = node.get(&format!("/v1/accounts/{a}?height=3")).await;
    assert_eq!(status, 400);
    let (status, _) = node.get(&format!("/v1/accounts/{a}?provee=true")).await;
    assert_eq!(status, 400);
    // A transaction's inclusion proof (block 1 holds t0; it has no certificate: 404).
    let (status, v) = node
        .get(&format!("/v1/transactions/{}?prove=true", node.t0.hash()))
        .await;
    assert_eq!(status, 404, "{v}");
    // min_height above the store: 503 naming the height, after the wait.
    let (status, v) = node.get(&format!("/v1/accounts/{a}?min_height=4")).await;
    assert_eq!(status, 503);
    assert!(v["error"].as_str().unwrap().contains("at height 3"), "{v}");
    let (status, _) = node.get(&format!("/v1/accounts/{a}?min_height=3")).await;
    assert_eq!(status, 200);
    let (status, v) = node
        .get(&format!("/v1/accounts/{a}?prove=true&min_height=3"))
        .await;
    assert_eq!((status, &v["height"]), (200, &json!("3")), "{v}");
}

/// `consistency=linearizable`: on a BFT chain 409 (its reads are verified with proofs
/// instead); on Raft the loop's ReadIndex answer is waited for (the fake loop answers its
/// own height, as a one-replica leader would) and the read says its height; with a proof
/// 400; an unknown consistency 400 naming the choices.
#[tokio::test]
async fn linearizable_reads_are_raft_only_and_wait_for_the_read_index() {
    let node = start(Loop::NeverCommits).await;
    let a = alice_addr();
    for path in [
        format!("/v1/accounts/{a}?consistency=linearizable"),
        "/v1/blocks/latest?consistency=linearizable".to_string(),
        format!(
            "/v1/transactions/{}?consistency=linearizable",
            node.t0.hash()
        ),
    ] {
        let (status, v) = node.get(&path).await;
        assert_eq!(status, 409, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("prove=true"), "{v}");
    }
    node.status.write().unwrap().protocol = "raft".into();
    let (status, v) = node
        .get(&format!("/v1/accounts/{a}?consistency=linearizable"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["height"], "3");
    assert_eq!(v["nonce"], "2");
    let (status, v) = node.get("/v1/blocks/latest?consistency=linearizable").await;
    assert_eq!((status, v["height"].clone()), (200, json!("3")), "{v}");
    let (status, v) = node
        .get(&format!(
            "/v1/transactions/{}?consistency=linearizable",
            node.t0.hash()
        ))
        .await;
    assert_eq!(
        (status, v["status"].clone()),
        (200, json!("committed")),
        "{v}"
    );
    let (status, v) = node
        .get(&format!(
            "/v1/accounts/{a}?consistency=linearizable&prove=true"
        ))
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("do not combine"),
        "{v}"
    );
    let (status, v) = node
        .get(&format!("/v1/accounts/{a}?consistency=strong"))
        .await;
    assert_eq!(status, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("latest") && e.contains("linearizable"), "{e}");
}

/// `POST /v1/leader/transfer`: the loop's answer as 200 `{"to"}` or 409 with its reason; a
/// malformed target is the client's error (400) and never reaches the loop.
#[tokio::test]
async fn leader_transfer_answers_the_loop_s_verdict() {
    let node = start(Loop::Commits).await;
    let (status, v) = node.post_raw("/v1/leader/transfer?to=1", Vec::new()).await;
    assert_eq!((status, v["to"].as_u64()), (200, Some(1)), "{v}");
    let (status, v) = node.post_raw("/v1/leader/transfer?to=9", Vec::new()).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not a voter"), "{v}");
    let (status, v) = node.post_raw("/v1/leader/transfer?to=x", Vec::new()).await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = node.get("/v1/leader/transfer").await;
    assert_eq!(status, 405, "only POST");
}
