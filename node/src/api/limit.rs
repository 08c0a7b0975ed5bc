//! What one HTTP client can make the validator do: a request rate per client address and a cap
//! on open connections, in all and per client address.
//!
//! * **Rate.** Each client address (an IPv4 address, or the /64 prefix of an IPv6 one, since a
//!   host usually holds a whole /64) has a token bucket of [`ApiLimits::burst`] requests,
//!   refilled at [`ApiLimits::rate_per_ip`] per second (governor's GCRA, keyed). A request
//!   that finds it empty is answered at once with 429, a `Retry-After` header (whole seconds,
//!   at least 1) and the API's JSON error body, and counted in
//!   `cairn_api_rate_limited_total`. The limit applies to request *starts*: an event stream or
//!   a `mode=commit` wait counts once however long it lasts. Addresses idle for longer than
//!   it takes to refill their bucket are forgotten every [`FORGET_EVERY`], so the table holds
//!   only recently active clients.
//! * **Connections.** At most [`ApiLimits::max_connections`] are open at once; past that the
//!   server stops accepting (new connections wait in the kernel's backlog) until one closes,
//!   so clients cannot use up the file descriptors that the validator's peer connections and
//!   store need. One client address may hold at most [`ApiLimits::max_connections_per_ip`];
//!   further connections from it are closed as soon as they are accepted (counted in
//!   `cairn_api_refused_connections_total`), so that one client cannot take every slot.
//!
//! * **hyper's own answers.** hyper answers a request whose URI is over its limit (414) or
//!   whose head is too large or has too many headers (431) itself, with an empty body, before
//!   the router sees it. [`Conn`] (`conn.rs`) sends those answers with the API's JSON error body instead
//!   ([`json_error_for`]).
//!
//! A limit of 0 is off. Behind a reverse proxy every request comes from the proxy's address:
//! turn the per-address limits off (or raise them) and limit at the proxy.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::conn::Conn;
use super::{ApiError, Metrics};

/// How often client addresses with a full bucket are dropped from the rate limiter's table.
pub const FORGET_EVERY: Duration = Duration::from_secs(10);

/// The HTTP API's limits (`config.toml`: `api_rate_limit_per_ip`, `api_rate_burst`,
/// `api_max_connections`, `api_max_connections_per_ip`). 0 turns a limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Requests per second one client address may start.
    pub rate_per_ip: u32,
    /// Requests one client address may start at once before the rate applies.
    pub burst: u32,
    /// Open connections in all.
    pub max_connections: u32,
    /// Open connections per client address.
    pub max_connections_per_ip: u32,
}

impl ApiLimits {
    /// The defaults of `config.toml` (see `genesis::NodeConfig`): 1,000 requests/s per client
    /// address with bursts of 2,000, 512 open connections, 128 per client address.
    pub const DEFAULT: ApiLimits = ApiLimits {
        rate_per_ip: genesis::NodeConfig::DEFAULT_API_RATE_LIMIT_PER_IP,
        burst: genesis::NodeConfig::DEFAULT_API_RATE_BURST,
        max_connections: genesis::NodeConfig::DEFAULT_API_MAX_CONNECTIONS,
        max_connections_per_ip: genesis::NodeConfig::DEFAULT_API_MAX_CONNECTIONS_PER_IP,
    };

    /// No limits.
    pub const OFF: ApiLimits = ApiLimits {
        rate_per_ip: 0,
        burst: 0,
        max_connections: 0,
        max_connections_per_ip: 0,
    };
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits::DEFAULT
    }
}

impl From<&genesis::NodeConfig> for ApiLimits {
    fn from(c: &genesis::NodeConfig) -> Self {
        ApiLimits {
            rate_per_ip: c.api_rate_limit_per_ip,
            burst: c.api_rate_burst,
            max_connections: c.api_max_connections,
            max_connections_per_ip: c.api_max_connections_per_ip,
        }
    }
}

/// What limits are kept per: an IPv4 address, or an IPv6 /64 (IPv4-mapped IPv6 addresses
/// count as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClientKey(IpAddr);

impl ClientKey {
    pub(super) fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                ClientKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The client's address, as the connection-info extension of every request served by
/// [`LimitedListener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, LimitedListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// The per-address request rate limit (the state of [`rate_limit`]).
pub(super) struct RateLimit {
    limiter: DefaultKeyedRateLimiter<ClientKey>,
    rate: u32,
    burst: u32,
    metrics: Arc<Metrics>,
}

impl RateLimit {
    /// `None` when the rate limit is off.
    pub(super) fn new(limits: ApiLimits, metrics: Arc<Metrics>) -> Option<RateLimit> {
        let rate = NonZeroU32::new(limits.rate_per_ip)?;
        // A burst of 0 with a rate is refused by the config check; be safe anyway.
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        Some(RateLimit {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            rate: rate.get(),
            burst: burst.get(),
            metrics,
        })
    }

    /// Forgets, every [`FORGET_EVERY`], the addresses whose bucket is full again. Runs until
    /// aborted.
    pub(super) async fn forget_idle(self: Arc<Self>) {
        let mut tick = tokio::time::interval(FORGET_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }

    /// Takes one request from `key`'s bucket, or says how long until there is one.
    fn check(&self, key: &ClientKey) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// `Retry-After` in whole seconds: rounded up, at least 1 (0 would invite an immediate retry).
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The middleware: 429 for a client address over its rate, otherwise the request goes on.
/// Requests without a client address (a router served without [`LimitedListener`]) pass.
pub(super) async fn rate_limit(
    State(limit): State<Arc<RateLimit>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(&ConnectInfo(ClientAddr(addr))) =
        request.extensions().get::<ConnectInfo<ClientAddr>>()
    else {
        return next.run(request).await;
    };
    let key = ClientKey::of(addr.ip());
    let Err(wait) = limit.check(&key) else {
        return next.run(request).await;
    };
    limit.metrics.api_rate_limited.inc();
    let secs = retry_after_secs(wait);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many requests from {key}: this API allows {} per second per client address \
             (bursts of {}); retry after {secs} s",
            limit.rate, limit.burst
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Open connections per client address (only addresses with at least one).
type PerIp = Arc<Mutex<HashMap<ClientKey, u32>>>;

/// A TCP listener that holds at most `max_connections` connections open and at most
/// `max_connections_per_ip` from one client address.
pub(super) struct LimitedListener {
    inner: TcpListener,
    total: Option<Arc<Semaphore>>,
    per_ip: Option<(u32, PerIp)>,
    metrics: Arc<Metrics>,
}

impl LimitedListener {
    pub(super) fn new(inner: TcpListener, limits: ApiLimits, metrics: Arc<Metrics>) -> Self {
        let total = (limits.max_connections > 0)
            .then(|| Arc::new(Semaphore::new(limits.max_connections as usize)));
        let per_ip = (limits.max_connections_per_ip > 0)
            .then(|| (limits.max_connections_per_ip, PerIp::default()));
        LimitedListener {
            inner,
            total,
            per_ip,
            metrics,
        }
    }
}

impl Listener for LimitedListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            // Wait for a free slot before accepting: past the cap, connections wait in the
            // backlog rather than hold a descriptor here.
            let permit = match &self.total {
                Some(total) => total.clone().acquire_owned().await.ok(),
                None => None,
            };
            let (io, addr) = Listener::accept(&mut self.inner).await;
            let key = ClientKey::of(addr.ip());
            let slot = match &self.per_ip {
                None => None,
                Some((max, counts)) => match IpSlot::take(counts, key, *max) {
                    Some(slot) => Some(slot),
                    None => {
                        self.metrics.api_refused_connections.inc();
                        tracing::debug!(client = %key, max, "API connection refused: too many open from this address");
                        drop(io);
                        continue;
                    }
                },
            };
            self.metrics.api_connections.inc();
            let conn = Conn {
                io,
                _permit: permit,
                _slot: slot,
                metrics: self.metrics.clone(),
                replacement: None,
            };
            return (conn, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One open connection counted against its client address.
pub(super) struct IpSlot {
    counts: PerIp,
    key: ClientKey,
}

impl IpSlot {
    fn take(counts: &PerIp, key: ClientKey, max: u32) -> Option<IpSlot> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let open = map.entry(key).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(IpSlot {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = map.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_config_defaults() {
        let config = genesis::NodeConfig::new("v", "/ip4/127.0.0.1/tcp/1", "127.0.0.1:2");
        assert_eq!(ApiLimits::from(&config), ApiLimits::DEFAULT);
        assert_eq!(
            ApiLimits::DEFAULT,
            ApiLimits {
                rate_per_ip: 1000,
                burst: 2000,
                max_connections: 512,
                max_connections_per_ip: 128,
            }
        );
    }

    #[test]
    fn client_keys_group_ipv6_by_64_and_unmap_ipv4() {
        let k = |s: &str| ClientKey::of(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
        assert_eq!(k("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(k("10.0.0.1").to_string(), "10.0.0.1");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_micros(300)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }

    #[test]
    fn per_ip_slots_are_counted_and_freed() {
        let counts = PerIp::default();
        let key = ClientKey::of("10.0.0.1".parse().unwrap());
        let other = ClientKey::of("10.0.0.2".parse().unwrap());
        let a = IpSlot::take(&counts, key, 2).unwrap();
        let b = IpSlot::take(&counts, key, 2).unwrap();
        assert!(IpSlot::take(&counts, key, 2).is_none());
        let c = IpSlot::take(&counts, other, 2).unwrap();
        drop(a);
        let d = IpSlot::take(&counts, key, 2).unwrap();
        drop((b, c, d));
        assert!(
            counts.lock().unwrap().is_empty(),
            "closed addresses are forgotten"
        );
    }

    #[test]
    fn the_rate_limit_allows_the_burst_then_refuses_with_a_wait() {
        let limits = ApiLimits {
            rate_per_ip: 1,
            burst: 5,
            ..ApiLimits::OFF
        };
        let rl = RateLimit::new(limits, Arc::new(Metrics::new())).unwrap();
        let key = ClientKey::of("10.0.0.1".parse().unwrap());
        for i in 0..5 {
            assert!(rl.check(&key).is_ok(), "request {i} is within the burst");
        }
        let wait = rl.check(&key).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        let other = ClientKey::of("10.0.0.2".parse().unwrap());
        assert!(
            rl.check(&other).is_ok(),
            "another address has its own bucket"
        );
        assert!(RateLimit::new(ApiLimits::OFF, Arc::new(Metrics::new())).is_none());
    }
}
