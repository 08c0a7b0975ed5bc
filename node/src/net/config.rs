//! How the transport is configured ([`NetConfig`], with its defaults), the genesis
//! validators it connects to ([`PeerInfo`]), and why it can refuse to start ([`NetError`]).

use super::InboundLimit;
use std::fmt;

/// Default cap on one frame's payload: 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// Default length, in frames, of each peer's outgoing queue and of its inbound queue.
pub const DEFAULT_QUEUE_LEN: usize = 4096;
/// Default payload bytes each peer's outgoing queue, and its inbound queue, may hold: 64 MiB
/// (four frames of the default maximum size; far more than honest traffic queues while a peer
/// is reachable).
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;

/// How to run the transport.
#[derive(Clone)]
pub struct NetConfig {
    /// Multiaddr to listen on, e.g. `/ip4/0.0.0.0/tcp/26600` (port 0 asks the OS for one; see
    /// [`NetHandle::listen_addrs`](super::NetHandle::listen_addrs)).
    pub listen: String,
    /// This node's network key: the 32-byte ed25519 seed (`crypto::SecretKey::seed()`).
    pub key_seed: [u8; 32],
    /// The validators to connect to: genesis, or the set the chain changed to (later changes
    /// go through `NetHandle::set_peers`). This node's own entry (recognised by its network key) may be
    /// included; it is skipped.
    pub peers: Vec<PeerInfo>,
    /// Largest payload accepted or sent in one frame.
    pub max_frame_bytes: usize,
    /// Capacity, in frames, of each peer's outgoing queue and of its inbound queue.
    pub queue_len: usize,
    /// Capacity, in payload bytes, of each peer's outgoing queue and of its inbound queue; at
    /// least `max_frame_bytes`.
    pub queue_bytes: usize,
    /// How fast each peer may make this node read frames.
    pub inbound_limit: InboundLimit,
}

impl NetConfig {
    /// A config with the default frame cap, queue bounds and inbound rate limit.
    pub fn new(listen: impl Into<String>, key_seed: [u8; 32], peers: Vec<PeerInfo>) -> Self {
        NetConfig {
            listen: listen.into(),
            key_seed,
            peers,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            queue_len: DEFAULT_QUEUE_LEN,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            inbound_limit: InboundLimit::DEFAULT,
        }
    }
}

impl fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("listen", &self.listen)
            .field("key_seed", &"<secret>")
            .field("peers", &self.peers)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("queue_len", &self.queue_len)
            .field("queue_bytes", &self.queue_bytes)
            .field("inbound_limit", &self.inbound_limit)
            .finish()
    }
}

/// One validator of the set as the network sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Position in the current validator list; frames are addressed and reported by it (it
    /// may change when a validator before it leaves the set).
    pub index: u16,
    /// The validator's genesis `network_key`.
    pub network_key: crypto::PublicKey,
    /// The genesis `p2p_address`, e.g. `/ip4/127.0.0.1/tcp/26601`.
    pub address: String,
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network key {key}: not a valid ed25519 public key: {reason}")]
    BadNetworkKey { key: String, reason: String },
    #[error("the network key seed is not a valid ed25519 secret key: {0}")]
    BadSeed(String),
    #[error("validators[{index}].p2p_address {address:?}: {reason}")]
    BadPeerAddress {
        index: u16,
        address: String,
        reason: String,
    },
    #[error("validators[{index}] is listed twice (same index or same network key)")]
    DuplicatePeer { index: u16 },
    #[error("listen address {address:?}: {reason}")]
    Listen { address: String, reason: String },
    #[error("cannot build the libp2p transport: {0}")]
    Transport(String),
    #[error("max_frame_bytes ({0}) must be between 1 and {max}", max = u32::MAX)]
    BadFrameCap(usize),
    #[error("queue_len must be at least 1")]
    BadQueueLen,
    #[error(
        "queue_bytes ({queue_bytes}) must be at least max_frame_bytes ({max_frame_bytes}), or \
         frames of the maximum size could never be queued (and at most 2^61)"
    )]
    BadQueueBytes {
        queue_bytes: usize,
        max_frame_bytes: usize,
    },
}
