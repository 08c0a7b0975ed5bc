//! A blocking HTTP client for the validator API ([`crate::api`]), used by the `cairn` wallet.
//!
//! It knows the routes and their JSON bodies (it deserializes the API's own types) and sorts
//! every failure into a [`ClientError`] that says whether the node could have acted on the
//! request, which is what the wallet's exit code depends on. It never panics on what a server
//! sends: bodies are read up to [`MAX_ANSWER_BYTES`] and anything that is not the expected JSON
//! becomes [`ClientError::BadAnswer`].

use crate::api::{AccountView, NodeStatus, Submitted, TxStatus};
use crypto::Digest;
use ledger::{Address, ChainBinding, Transaction};
use reqwest::blocking::{Client, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::time::Duration;

/// Default API address: validator-0 of `cairnd testnet` / `cairnd localnet` with the default
/// base port 26600 (API port = base + 1000 + i).
pub const DEFAULT_NODE: &str = "http://127.0.0.1:27600";
/// How long a query or a `sync` submission may take. The API answers within about 10 s
/// (it waits at most 5 s for room on the loop's queue and 5 s for the answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from the node; API answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// `GET /v1/status`: the node's status plus the genesis hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub node: NodeStatus,
    pub genesis_hash: Digest,
}

impl StatusView {
    /// What a transaction for this chain must be signed for.
    pub fn chain(&self) -> ChainBinding {
        ChainBinding {
            chain_id: self.node.chain_id.clone(),
            genesis_hash: self.genesis_hash,
        }
    }
}

/// How `POST /v1/transactions` should answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The admission verdict: `pending`, or `rejected` with the reason.
    Sync,
    /// Also wait (on the node, up to its commit wait) for the block: `committed` or `unknown`.
    Commit,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Commit => "commit",
        }
    }
}

/// Why a request gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// No connection: nothing was sent, the node did not see the request.
    Unreachable(String),
    /// The node answered 5xx (503: busy, or its loop stopped); the request may or may not
    /// have taken effect.
    Unavailable(String),
    /// The request went out but no (complete) answer came back in time; it may have taken
    /// effect.
    NoAnswer(String),
    /// An answer that is not what a Cairn API sends.
    BadAnswer(String),
    /// The node refused the request (4xx) with this message.
    Refused { status: u16, message: String },
    /// The server is a Cairn API but has no such route: the node URL's path is wrong (a
    /// usage error, nothing was done).
    WrongPath(String),
}

impl ClientError {
    pub fn message(&self) -> &str {
        match self {
            ClientError::Unreachable(m)
            | ClientError::Unavailable(m)
            | ClientError::NoAnswer(m)
            | ClientError::BadAnswer(m)
            | ClientError::WrongPath(m)
            | ClientError::Refused { message: m, .. } => m,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Checks and normalises a node address, `http://host:port[/prefix]`; a missing scheme means
/// `http://`. `source` names where it came from in errors (`--node`, `CAIRN_NODE`). Returns
/// the base URL without a trailing slash.
///
/// A path is accepted as the API's base (a validator behind a reverse proxy at
/// `http://host/cairn`), and a trailing `/v1` is the API root itself:
/// `http://127.0.0.1:27600/v1` is the same node as `http://127.0.0.1:27600` (requests go to
/// `/v1/...`, never `/v1/v1/...`).
pub fn parse_node_url(source: &str, raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "{source} is empty: pass the API address, e.g. http://127.0.0.1:27600"
        ));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| {
        format!("{source} {raw:?} is not a URL ({e}); expected e.g. http://127.0.0.1:27600")
    })?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{source} {raw:?}: this cairn has no TLS support; the validator API speaks plain \
                 HTTP, use http://"
            ));
        }
        other => {
            return Err(format!(
                "{source} {raw:?}: unsupported scheme {other:?}; use http://HOST:PORT"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{source} {raw:?} has no host; expected e.g. http://127.0.0.1:27600"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{source} {raw:?}: the API address takes no query or fragment"
        ));
    }
    let base = url.as_str().trim_end_matches('/');
    Ok(base.strip_suffix("/v1").unwrap_or(base).to_string())
}

/// A client of one node's API.
pub struct NodeClient {
    base: String,
    http: Client,
}

impl NodeClient {
    /// `base` as returned by [`parse_node_url`].
    pub fn new(base: String) -> Result<NodeClient, String> {
        let http = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(NodeClient { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/v1/status")
    }

    /// `GET /v1/validators`.
    pub fn validators(&self) -> Result<crate::api::ValidatorsView, ClientError> {
        self.get("/v1/validators")
    }

    /// `POST /v1/leader/transfer[?to=N]` (Raft; answered only on the validator's host).
    pub fn transfer_leader(
        &self,
        to: Option<u16>,
    ) -> Result<crate::api::TransferView, ClientError> {
        let path = match to {
            Some(n) => format!("/v1/leader/transfer?to={n}"),
            None => "/v1/leader/transfer".to_string(),
        };
        let what = format!("POST {path}");
        let resp = self.send(&what, self.http.post(self.url(&path)))?;
        let (status, body) = self.read(&what, resp)?;
        match status {
            200 => self.decode(&what, status, &body),
            _ => Err(self.error_status(&what, status, &body)),
        }
    }

    /// `GET /v1/epochs?from=K`: the epoch links after epoch `from`.
    pub fn epochs(&self, from: u64) -> Result<crate::api::epochs::EpochsView, ClientError> {
        self.get(&format!("/v1/epochs?from={from}"))
    }

    /// `GET path`, its 200 answer decoded as `T`; any other status is an error.
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let what = format!("GET {path}");
        let resp = self.send(&what, self.http.get(self.url(path)))?;
        let (status, body) = self.read(&what, resp)?;
        match status {
            200 => self.decode(&what, status, &body),
            _ => Err(self.error_status(&what, status, &body)),
        }
    }

    /// `GET /v1/accounts/{address}`.
    pub fn account(&self, address: &Address) -> Result<AccountView, ClientError> {
        self.account_with(address, false, None, false)
    }

    /// `GET /v1/accounts/{address}?prove=..&min_height=..&consistency=..`: with a proof,
    /// only once the node has stored `min_height`, and/or linearizable (Raft's ReadIndex).
    pub fn account_with(
        &self,
        address: &Address,
        prove: bool,
        min_height: Option<u64>,
        linearizable: bool,
    ) -> Result<AccountView, ClientError> {
        let mut query = Vec::new();
        if prove {
            query.push("prove=true".to_string());
        }
        if let Some(h) = min_height {
            query.push(format!("min_height={h}"));
        }
        if linearizable {
            query.push("consistency=linearizable".to_string());
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let what = format!("GET /v1/accounts/{address}{query}");
        let resp = self.send(
            &what,
            self.http
                .get(self.url(&format!("/v1/accounts/{address}{query}"))),
        )?;
        let (status, body) = self.read(&what, resp)?;
        let view: AccountView = match status {
            200 => self.decode(&what, status, &body)?,
            _ => return Err(self.error_status(&what, status, &body)),
        };
        if view.address != *address {
            return Err(ClientError::BadAnswer(format!(
                "node {} answered {what} with the account of {} instead",
                self.base, view.address
            )));
        }
        Ok(view)
    }

    /// `GET /v1/transactions/{hash}`: 200 with the pool or commit status, or 404 `unknown`.
    /// `timeout` bounds the whole request.
    pub fn tx(&self, hash: &Digest, timeout: Duration) -> Result<TxStatus, ClientError> {
        self.tx_with(hash, timeout, false)
    }

    /// [`NodeClient::tx`], with the inclusion proof of a committed transaction if `prove`.
    pub fn tx_with(
        &self,
        hash: &Digest,
        timeout: Duration,
        prove: bool,
    ) -> Result<TxStatus, ClientError> {
        let query = if prove { "?prove=true" } else { "" };
        let what = format!("GET /v1/transactions/{hash}{query}");
        let req = self
            .http
            .get(self.url(&format!("/v1/transactions/{hash}{query}")))
            .timeout(timeout);
        let resp = self.send(&what, req)?;
        let (status, body) = self.read(&what, resp)?;
        match status {
            200 | 404 => self.decode_status(&what, status, &body, hash),
            _ => Err(self.error_status(&what, status, &body)),
        }
    }

    /// `POST /v1/transactions?mode=...`: 200 (`pending`, `in_flight`, `committed`), 202
    /// (not committed within the node's wait: the status it has, with a note) or 422
    /// (`rejected`). `timeout` bounds the whole request.
    pub fn submit(
        &self,
        tx: &Transaction,
        mode: Mode,
        timeout: Duration,
    ) -> Result<TxStatus, ClientError> {
        self.submit_full(tx, mode, timeout).map(|s| s.status)
    }

    /// [`NodeClient::submit`] with the whole answer: also whether the node already had the
    /// transaction (`known`) and its note.
    pub fn submit_full(
        &self,
        tx: &Transaction,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Submitted, ClientError> {
        let what = format!("POST /v1/transactions?mode={}", mode.as_str());
        let body = serde_json::json!({ "tx": hex::encode(tx.encode()) });
        let req = self
            .http
            .post(self.url(&format!("/v1/transactions?mode={}", mode.as_str())))
            .json(&body)
            .timeout(timeout);
        let resp = self.send(&what, req)?;
        let (status, body) = self.read(&what, resp)?;
        match status {
            200 | 202 | 422 => {
                let answer: Submitted = self.decode(&what, status, &body)?;
                self.check_hash(&what, &answer.status, &tx.hash())?;
                Ok(answer)
            }
            _ => Err(self.error_status(&what, status, &body)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(
        &self,
        what: &str,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<Response, ClientError> {
        req.send().map_err(|e| self.transport_error(what, &e))
    }

    /// Reads the status and at most [`MAX_ANSWER_BYTES`] of the body.
    fn read(&self, what: &str, resp: Response) -> Result<(u16, Vec<u8>), ClientError> {
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let mut limited = resp.take(MAX_ANSWER_BYTES + 1);
        if let Err(e) = limited.read_to_end(&mut body) {
            return Err(self.read_error(what, &e));
        }
        if body.len() as u64 > MAX_ANSWER_BYTES {
            return Err(ClientError::BadAnswer(format!(
                "node {} answered {what} with more than {MAX_ANSWER_BYTES} bytes; is --node a \
                 Cairn API?",
                self.base
            )));
        }
        Ok((status, body))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        what: &str,
        status: u16,
        body: &[u8],
    ) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| {
            ClientError::BadAnswer(format!(
                "node {} answered {what} with HTTP {status} and a body that is not the \
                 expected JSON ({e}): {}; is --node a Cairn API of this version?",
                self.base,
                excerpt(body)
            ))
        })
    }

    /// A [`TxStatus`] body, which must be about `hash`.
    fn decode_status(
        &self,
        what: &str,
        status: u16,
        body: &[u8],
        hash: &Digest,
    ) -> Result<TxStatus, ClientError> {
        let s: TxStatus = self.decode(what, status, body)?;
        self.check_hash(what, &s, hash)?;
        Ok(s)
    }

    /// An answer must be about the transaction asked for.
    fn check_hash(&self, what: &str, s: &TxStatus, hash: &Digest) -> Result<(), ClientError> {
        let got = status_hash(s);
        if got != *hash {
            return Err(ClientError::BadAnswer(format!(
                "node {} answered {what} about transaction {got}, not {hash}",
                self.base
            )));
        }
        Ok(())
    }

    /// An answer with an unexpected status: 5xx is [`ClientError::Unavailable`], other codes
    /// are [`ClientError::Refused`], with the API's `{"error": ...}` message when there is one.
    fn error_status(&self, what: &str, status: u16, body: &[u8]) -> ClientError {
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| excerpt(body));
        if status == 404 && message.starts_with("no such endpoint") {
            return ClientError::WrongPath(format!(
                "node {} has no endpoint for {what} ({message}); check the path of --node: \
                 it is the API's base, e.g. http://127.0.0.1:27600",
                self.base
            ));
        }
        if status >= 500 {
            ClientError::Unavailable(format!(
                "node {} is unavailable: {what} answered HTTP {status}: {message}",
                self.base
            ))
        } else {
            ClientError::Refused {
                status,
                message: format!(
                    "node {} refused {what} with HTTP {status}: {message}",
                    self.base
                ),
            }
        }
    }

    fn transport_error(&self, what: &str, e: &reqwest::Error) -> ClientError {
        let cause = root_cause(e);
        if e.is_connect() {
            let cause = if e.is_timeout() {
                format!("no connection within {}s", CONNECT_TIMEOUT.as_secs())
            } else {
                cause
            };
            ClientError::Unreachable(format!(
                "cannot reach node {}: {cause}; is it running? pass --node URL (or set \
                 CAIRN_NODE)",
                self.base
            ))
        } else if e.is_timeout() {
            ClientError::NoAnswer(format!("node {} did not answer {what} in time", self.base))
        } else if e.is_builder() {
            ClientError::Unreachable(format!("cannot send {what} to node {}: {cause}", self.base))
        } else {
            ClientError::NoAnswer(format!(
                "no answer from node {} to {what}: {cause}",
                self.base
            ))
        }
    }

    fn read_error(&self, what: &str, e: &std::io::Error) -> ClientError {
        let timeout = e.kind() == std::io::ErrorKind::TimedOut
            || std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<reqwest::Error>())
                .is_some_and(reqwest::Error::is_timeout);
        let cause = if timeout {
            "timed out".to_string()
        } else {
            e.to_string()
        };
        ClientError::NoAnswer(format!(
            "the answer of node {} to {what} was cut off: {cause}",
            self.base
        ))
    }
}

/// The hash a [`TxStatus`] is about.
pub fn status_hash(s: &TxStatus) -> Digest {
    match s {
        TxStatus::Pending { hash }
        | TxStatus::InFlight { hash }
        | TxStatus::Committed { hash, .. }
        | TxStatus::Rejected { hash, .. }
        | TxStatus::Unknown { hash, .. }
        | TxStatus::Pruned { hash, .. } => *hash,
    }
}

/// The innermost error message, in plain words for the common socket errors.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        let plain = match io.kind() {
            ConnectionRefused => Some("connection refused"),
            ConnectionReset => Some("connection reset"),
            ConnectionAborted => Some("connection aborted"),
            TimedOut => Some("timed out"),
            AddrNotAvailable => Some("address not available"),
            HostUnreachable => Some("host unreachable"),
            NetworkUnreachable => Some("network unreachable"),
            _ => None,
        };
        if let Some(p) = plain {
            return p.to_string();
        }
    }
    cur.to_string()
}

/// At most 200 characters of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{:?}…", &text[..i]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls() {
        assert_eq!(
            parse_node_url("--node", "http://127.0.0.1:27600/").unwrap(),
            "http://127.0.0.1:27600"
        );
        assert_eq!(
            parse_node_url("--node", "127.0.0.1:27601").unwrap(),
            "http://127.0.0.1:27601"
        );
        assert_eq!(
            parse_node_url("--node", "http://h:1/cairn/").unwrap(),
            "http://h:1/cairn"
        );
        assert!(
            parse_node_url("--node", "https://h:1")
                .unwrap_err()
                .contains("TLS")
        );
        assert!(
            parse_node_url("--node", "ftp://h")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(parse_node_url("--node", "").is_err());
        assert!(parse_node_url("--node", "http://").is_err());
        assert!(parse_node_url("--node", "http://h:1/?x=1").is_err());
        assert!(parse_node_url("--node", "http://h:99999").is_err());
        // The API root itself is the same node: never /v1/v1/...
        for same in [
            "http://127.0.0.1:27600/v1",
            "http://127.0.0.1:27600/v1/",
            "127.0.0.1:27600/v1",
        ] {
            assert_eq!(
                parse_node_url("--node", same).unwrap(),
                "http://127.0.0.1:27600",
                "{same}"
            );
        }
        assert_eq!(
            parse_node_url("--node", "http://h:1/cairn/v1").unwrap(),
            "http://h:1/cairn"
        );
        // Only a whole last segment: /v10 and /xv1 are prefixes of their own.
        assert_eq!(
            parse_node_url("--node", "http://h:1/v10").unwrap(),
            "http://h:1/v10"
        );
        assert_eq!(
            parse_node_url("--node", "http://h:1/xv1").unwrap(),
            "http://h:1/xv1"
        );
    }

    #[test]
    fn status_view_parses_the_api_answer() {
        let json = r#"{"chain_id":"c","protocol":"hotstuff","height":"7","latest_hash":"0000000000000000000000000000000000000000000000000000000000000000","view":"9","leader":2,"peers":["a"],"catching_up":false,"mempool_size":"0","genesis_hash":"1111111111111111111111111111111111111111111111111111111111111111","extra":1}"#;
        let s: StatusView = serde_json::from_str(json).unwrap();
        assert_eq!(s.node.height, 7);
        assert_eq!(s.node.view, 9);
        assert_eq!(s.chain().chain_id, "c");
    }
}
