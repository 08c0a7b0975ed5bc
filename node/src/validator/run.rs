//! `cairnd run`: the validator process. Loads and checks its home (config, genesis, keys),
//! opens its store, starts the libp2p transport and drives a [`Driver`] from one tokio task.

use super::{Driver, DriverConfig, Out};
use crate::mempool::Limits;
use crate::net::{self, NetConfig, NetHandle, PeerInfo};
use crate::store::RedbStore;
use anyhow::{Context, anyhow, bail};
use consensus::{Committee, ReplicaId};
use genesis::keyfile::load_key_file;
use genesis::{Genesis, NodeConfig, Protocol};
use ledger::ChainBinding;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How often pending transactions are cut into a batch.
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// Everything `run` needs, loaded and checked from a home folder.
pub struct Loaded {
    pub config: NodeConfig,
    pub genesis: Genesis,
    pub driver: DriverConfig,
    pub net: NetConfig,
}

/// Loads config, genesis and keys from `home` and checks that they belong together. Every
/// failure names the file and what to do.
pub fn load(home: &Path) -> anyhow::Result<Loaded> {
    let config = NodeConfig::load(home)?;
    let genesis = Genesis::load(&config.genesis_path(home))?;
    if genesis.protocol != Protocol::HotStuff {
        bail!(
            "{}: protocol {} is not supported by this build yet (only hotstuff)",
            config.genesis_path(home).display(),
            genesis.protocol
        );
    }
    let key = load_key_file(&config.consensus_key_path(home))?;
    let net_key = load_key_file(&config.network_key_path(home))?;
    let me = genesis
        .validators
        .iter()
        .position(|v| v.consensus_key == key.public())
        .ok_or_else(|| {
            anyhow!(
                "{}: this node's consensus key {} is not in the genesis validator set; use the \
                 key file that was created with this genesis",
                config.consensus_key_path(home).display(),
                key.public()
            )
        })?;
    let listed = genesis.validators[me].network_key;
    if listed != net_key.public() {
        bail!(
            "{}: network key {} does not match validators[{me}].network_key {listed} in genesis",
            config.network_key_path(home).display(),
            net_key.public()
        );
    }
    let committee = Committee::new_bft(
        genesis.validators.iter().map(|v| v.consensus_key).collect(),
        genesis.f(),
        genesis.quorum(),
    )
    .map_err(|e| anyhow!("genesis validator set: {e}"))?;
    let chain = ChainBinding {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
    };
    let p = &genesis.params;
    let driver = DriverConfig {
        me: ReplicaId(me as u16),
        key,
        committee,
        chain,
        genesis_accounts: genesis
            .accounts
            .iter()
            .map(|a| (a.address, a.balance))
            .collect(),
        base_timeout_ms: p.round_timeout_ms,
        max_timeout_ms: p.max_round_timeout_ms,
        max_block_batches: 64,
        batch_max_txs: p.max_block_txs as usize,
        batch_max_bytes: p.max_block_bytes as usize,
        mempool: Limits::default(),
    };
    let peers = genesis
        .validators
        .iter()
        .enumerate()
        .map(|(i, v)| PeerInfo {
            index: i as u16,
            network_key: v.network_key,
            address: v.p2p_address.clone(),
        })
        .collect();
    let net = NetConfig::new(config.p2p_listen.clone(), net_key.seed(), peers);
    Ok(Loaded {
        config,
        genesis,
        driver,
        net,
    })
}

/// Runs the validator in `home` until `shutdown` resolves.
pub async fn run(
    home: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let loaded = load(home)?;
    let data = loaded.config.data_dir_path(home);
    let store = RedbStore::open(&data.join("store.redb"))
        .with_context(|| format!("opening the store in {}", data.display()))?;
    let mut driver = Driver::open(loaded.driver, store)?;
    let (net, mut incoming) = net::start(loaded.net).await?;
    tracing::info!(
        chain_id = %loaded.genesis.chain_id,
        height = driver.ledger().height(),
        peer_id = %net.local_peer_id(),
        "validator started"
    );
    // Block timestamps are milliseconds since the Unix epoch (informational; no rule depends
    // on them). Timers use the monotonic clock.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let mut timers: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
    let mut batch_tick = tokio::time::interval(BATCH_INTERVAL);
    tokio::pin!(shutdown);

    let out = driver.start(now_ms())?;
    dispatch(&net, &mut timers, out);
    loop {
        let next_timer = timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(id, at)| (*id, *at));
        let sleep = async {
            match next_timer {
                Some((_, at)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let out = tokio::select! {
            _ = &mut shutdown => break,
            frame = incoming.recv() => match frame {
                Some((from, bytes)) => driver.on_frame(now_ms(), ReplicaId(from), &bytes)?,
                None => bail!("the network stopped"),
            },
            _ = sleep => {
                let (id, _) = next_timer.expect("a timer was armed");
                timers.remove(&id);
                driver.on_timer(now_ms(), id)?
            }
            _ = batch_tick.tick() => driver.make_batch(now_ms())?,
        };
        dispatch(&net, &mut timers, out);
    }
    tracing::info!(height = driver.ledger().height(), "validator stopping");
    net.shutdown().await;
    Ok(())
}

fn dispatch(net: &NetHandle, timers: &mut BTreeMap<u64, tokio::time::Instant>, out: Vec<Out>) {
    for o in out {
        match o {
            Out::Send(to, bytes) => net.send(to.0, bytes),
            Out::Broadcast(bytes) => net.broadcast(bytes),
            Out::Timer { id, after_ms } => {
                let at = tokio::time::Instant::now() + Duration::from_millis(after_ms);
                timers.insert(id, at);
            }
            Out::Committed { block, receipts } => {
                let valid = receipts.iter().filter(|r| r.outcome.is_ok()).count();
                tracing::info!(
                    height = block.header.height,
                    txs = block.txs.len(),
                    valid,
                    invalid = block.txs.len() - valid,
                    hash = %block.hash().short(),
                    view = block.header.view,
                    "committed block"
                );
            }
        }
    }
}
