//! hyper answers some requests itself, before the router sees them: a URI over its limit
//! (65,534 bytes) with 414, a head with more than 100 headers (or over 417,792 bytes) with 431.
//! The API sends those answers with its JSON error body too, over a real socket.

use crypto::Digest;
use ledger::ChainBinding;
use node::api::{self, ApiLimits, ApiState, Metrics, NodeStatus};
use node::store::RedbStore;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

struct Server {
    addr: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
    /// Held so that the API sees a live validator loop (`/v1/health` answers ok).
    _commands: mpsc::Receiver<api::ApiCommand>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("store.redb")).unwrap();
    let chain = ChainBinding {
        chain_id: "http-errors".into(),
        genesis_hash: crypto::hash(b"http-errors genesis"),
    };
    let (commands, commands_rx) = mpsc::channel(1);
    let (events, _) = broadcast::channel(1);
    let state = ApiState {
        store,
        commands,
        events,
        status: Arc::new(RwLock::new(NodeStatus {
            chain_id: chain.chain_id.clone(),
            latest_hash: Digest::default(),
            ..NodeStatus::default()
        })),
        metrics: Arc::new(Metrics::new()),
        chain,
        commit_wait: Duration::from_millis(100),
        busy: Default::default(),
        admission: node::validator::admission::Admission::for_clients(2).unwrap(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(api::serve_with(
        listener,
        state,
        ApiLimits::DEFAULT,
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        _stop: stop,
        _commands: commands_rx,
        _dir: dir,
    }
}

/// Sends `request` on a new connection and reads the answer until the server closes it
/// (or, for a keep-alive answer, until its content-length is in).
async fn exchange(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(&request).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).unwrap();
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&answer) {
                return String::from_utf8(answer).unwrap();
            }
        }
    })
    .await
    .unwrap()
}

fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    header(head, "content-length").is_some_and(|l| l.parse::<usize>().unwrap() <= body.len())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status line, the head, and the body parsed as JSON (checking content-type and
/// content-length).
fn parse(answer: &str) -> (String, String, Value) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {answer:?}"));
    let status = head.lines().next().unwrap().to_string();
    assert_eq!(
        header(head, "content-type"),
        Some("application/json"),
        "{answer}"
    );
    assert_eq!(
        header(head, "content-length").map(|l| l.parse::<usize>().unwrap()),
        Some(body.len()),
        "{answer}"
    );
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
    (status, head.to_string(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uri_over_hypers_limit_is_414_with_a_json_error() {
    let server = start().await;
    let request = format!(
        "GET /v1/{} HTTP/1.1\r\nhost: cairn\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = exchange(server.addr, request.into_bytes()).await;
    let (status, head, json) = parse(&answer);
    assert_eq!(status, "HTTP/1.1 414 URI Too Long", "{answer}");
    assert_eq!(header(&head, "connection"), Some("close"), "{answer}");
    let error = json["error"].as_str().unwrap_or_else(|| panic!("{json}"));
    assert!(error.starts_with("request line too long"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_headers_is_431_with_a_json_error() {
    let server = start().await;
    let mut request = String::from("GET /v1/health HTTP/1.1\r\nhost: cairn\r\n");
    for i in 0..200 {
        request.push_str(&format!("x-header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let answer = exchange(server.addr, request.into_bytes()).await;
    let (status, head, json) = parse(&answer);
    assert_eq!(
        status, "HTTP/1.1 431 Request Header Fields Too Large",
        "{answer}"
    );
    assert_eq!(header(&head, "connection"), Some("close"), "{answer}");
    let error = json["error"].as_str().unwrap_or_else(|| panic!("{json}"));
    assert!(error.starts_with("request headers too large"), "{error}");
}

/// Just under the limits, requests reach the router as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_within_hypers_limits_reach_the_api() {
    let server = start().await;
    let mut request = String::from("GET /v1/health HTTP/1.1\r\nhost: cairn\r\n");
    for i in 0..99 {
        request.push_str(&format!("x-header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let answer = exchange(server.addr, request.into_bytes()).await;
    let (status, _, json) = parse(&answer);
    assert_eq!(status, "HTTP/1.1 200 OK", "{answer}");
    assert_eq!(json, serde_json::json!({ "ok": true }));

    let request = format!(
        "GET /v1/{} HTTP/1.1\r\nhost: cairn\r\n\r\n",
        "a".repeat(65_000)
    );
    let answer = exchange(server.addr, request.into_bytes()).await;
    let (status, _, json) = parse(&answer);
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{answer}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("no such endpoint")
    );
}
