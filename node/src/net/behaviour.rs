//! The libp2p swarm: TCP + Noise + Yamux on tokio, an allow list of the current validators,
//! connection limits, and `libp2p-stream` for the consensus streams.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{PeerId, Swarm, SwarmBuilder, allow_block_list, connection_limits, identity};
use libp2p::{noise, tcp, yamux};

use super::NetError;

/// Validators stay connected: a connection is never closed for being idle (libp2p's default
/// closes a connection 10 s after its last stream ends; our consensus streams are long-lived,
/// but between a stream breaking and its replacement the connection must not go away).
const IDLE_TIMEOUT: Duration = Duration::from_secs(u64::MAX);
/// A Noise/Yamux handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress that anyone (validator or not) can hold open at once.
const MAX_PENDING_INCOMING: u32 = 64;
/// Two is normal (both sides dial at once); more means something is wrong.
const MAX_CONNECTIONS_PER_PEER: u32 = 4;

/// Order matters: the allow list is asked first and refuses every non-validator.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    pub limits: connection_limits::Behaviour,
    pub stream: libp2p_stream::Behaviour,
}

pub(crate) fn build_swarm(
    keypair: identity::Keypair,
    allowed: &[PeerId],
) -> Result<Swarm<Behaviour>, NetError> {
    let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for peer in allowed {
        allow.allow_peer(*peer);
    }
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER)),
    );
    let behaviour = Behaviour {
        allow,
        limits,
        stream: libp2p_stream::Behaviour::new(),
    };
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::new().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        // `/dns/NAME/tcp/PORT` peers (multi-host testnets, containers), through the
        // system's resolver configuration (/etc/resolv.conf), resolved at each dial.
        .with_dns()
        .map_err(|e| NetError::Transport(format!("cannot set up DNS resolution: {e}")))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE_TIMEOUT)
                .with_dial_concurrency_factor(1.try_into().expect("1 is not zero"))
        })
        .with_connection_timeout(HANDSHAKE_TIMEOUT)
        .build();
    Ok(swarm)
}
