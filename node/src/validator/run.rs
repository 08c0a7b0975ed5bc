//! `cairnd run`: the validator process. Loads and checks its home (config, genesis, keys),
//! opens its store, starts the libp2p transport and drives a [`Driver`] from one tokio task,
//! with the genesis protocol's core (see [`protocol_loop`]).

use super::notify::{Announcer, Reporter, SUMMARY_INTERVAL, Summary, report_stored};
use super::store_stage::{Announce, FromStore};
use super::transport::Transport;
use super::{Driver, DriverConfig, HotStuffProtocol, Out, PbftProtocol, Protocol, RaftProtocol};
use crate::api::{self, ApiCommand, ApiState, Metrics, NodeStatus};
use crate::mempool::Limits;
use crate::net::{NetConfig, NetHandle, PeerInfo};
use crate::store::RedbStore;
use anyhow::{Context, anyhow, bail};
use consensus::{Committee, ReplicaId};
use genesis::keyfile::load_key_file;
use genesis::{Genesis, NodeConfig};
use ledger::ChainBinding;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often status and gauges are refreshed.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// Batches per block, at most.
const BLOCK_BATCHES: usize = 64;
/// Environment variable naming a file to record every vote sent in
/// ([`Driver::log_votes_to`]).
pub const VOTE_LOG_ENV: &str = "CAIRN_VOTE_LOG";
/// How long `mode=commit` waits before answering `unknown`.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Everything `run` needs, loaded and checked from a home folder.
pub struct Loaded {
    pub config: NodeConfig,
    pub genesis: Genesis,
    pub driver: DriverConfig,
    pub net: NetConfig,
    /// A network key a validator-set change may rotate this validator to (the home's
    /// `network_key.next.json`, if it exists; `super::transport`).
    pub next_net_key: Option<crypto::SecretKey>,
    pub options: RunOptions,
}

/// Switches of `cairnd run` beyond its home. Only test builds have any.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Misbehave on purpose (the `byzantine` feature; see [`super::byzantine`]).
    #[cfg(feature = "byzantine")]
    pub byzantine: Option<super::byzantine::Behaviour>,
}

/// What a Byzantine test build does to the frames of an honest validator; nothing otherwise.
struct Misbehaviour<P: Protocol> {
    #[cfg(feature = "byzantine")]
    inner: Option<super::byzantine::Byzantine<P>>,
    _p: std::marker::PhantomData<P>,
}

impl<P: Protocol> Misbehaviour<P> {
    #[cfg_attr(not(feature = "byzantine"), allow(unused_variables))]
    fn new(options: &RunOptions, cfg: &DriverConfig) -> Self {
        Misbehaviour {
            #[cfg(feature = "byzantine")]
            inner: options.byzantine.map(|b| {
                super::byzantine::Byzantine::new(
                    b,
                    cfg.me,
                    cfg.key.clone(),
                    cfg.committee.clone(),
                    cfg.chain.genesis_hash,
                )
            }),
            _p: std::marker::PhantomData,
        }
    }

    fn filter(&mut self, out: Vec<Out>) -> Vec<Out> {
        #[cfg(feature = "byzantine")]
        if let Some(b) = &mut self.inner {
            return b.filter(out);
        }
        out
    }

    fn floods(&self) -> bool {
        #[cfg(feature = "byzantine")]
        if let Some(b) = &self.inner {
            return b.floods();
        }
        false
    }

    fn flood(&mut self) -> Vec<Out> {
        #[cfg(feature = "byzantine")]
        if let Some(b) = &mut self.inner {
            return b.flood();
        }
        Vec::new()
    }
}

/// How often a flooding Byzantine validator sends its garbage.
#[cfg(feature = "byzantine")]
const FLOOD_INTERVAL: Duration = Duration::from_millis(super::byzantine::FLOOD_INTERVAL_MS);
#[cfg(not(feature = "byzantine"))]
const FLOOD_INTERVAL: Duration = Duration::from_secs(3600);

/// Loads config, genesis and keys from `home` and checks that they belong together. Every
/// failure names the file and what to do.
pub fn load(home: &Path) -> anyhow::Result<Loaded> {
    let config = NodeConfig::load(home)?;
    let genesis = Genesis::load(&config.genesis_path(home))?;
    let key = load_key_file(&config.consensus_key_path(home))?;
    let net_key = load_key_file(&config.network_key_path(home))?;
    let me = match genesis
        .validators
        .iter()
        .position(|v| v.consensus_key == key.public())
    {
        Some(me) => {
            let listed = genesis.validators[me].network_key;
            if listed != net_key.public() {
                bail!(
                    "{}: network key {} does not match validators[{me}].network_key {listed} in \
                     genesis",
                    config.network_key_path(home).display(),
                    net_key.public()
                );
            }
            me
        }
        // A validator joining later (issue 21): it follows the chain and votes from the epoch
        // whose set names its key. Only where the chain can change its set.
        None if genesis.governance().is_some() => {
            tracing::info!(
                key = %key.public(),
                "this node's consensus key is not in the genesis validator set: it follows the \
                 chain, and votes once a validator-set change adds it"
            );
            genesis.n()
        }
        None => bail!(
            "{}: this node's consensus key {} is not in the genesis validator set; use the key \
             file that was created with this genesis",
            config.consensus_key_path(home).display(),
            key.public()
        ),
    };
    // A key a validator-set change may rotate this validator to, if the home holds one.
    let next_path = config.next_consensus_key_path(home);
    let next_keys = if next_path.exists() {
        vec![load_key_file(&next_path)?]
    } else {
        Vec::new()
    };
    let next_net_path = config.next_network_key_path(home);
    let next_net_key = if next_net_path.exists() {
        Some(load_key_file(&next_net_path)?)
    } else {
        None
    };
    let keys = genesis.validators.iter().map(|v| v.consensus_key).collect();
    let committee = if genesis.protocol.is_bft() {
        Committee::new_bft(keys, genesis.f(), genesis.quorum())
    } else {
        Committee::new_cft(keys, genesis.f(), genesis.quorum())
    }
    .map_err(|e| anyhow!("genesis validator set: {e}"))?;
    let chain = ChainBinding {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
    };
    let p = &genesis.params;
    let driver = DriverConfig {
        me: ReplicaId(me as u16),
        key,
        next_keys,
        committee,
        chain,
        genesis: genesis.ledger_genesis(),
        base_timeout_ms: p.round_timeout_ms,
        max_timeout_ms: p.max_round_timeout_ms,
        idle_block_ms: p.heartbeat_ms,
        checkpoint_interval: p.checkpoint_interval,
        snapshot_interval: p.snapshot_interval,
        max_block_batches: BLOCK_BATCHES,
        // A block carries up to BLOCK_BATCHES batches: size batches so that a block stays
        // within the genesis limits (a batch still fits the largest transaction).
        batch_max_txs: (p.max_block_txs as usize / BLOCK_BATCHES).max(1),
        batch_max_bytes: (p.max_block_bytes as usize / BLOCK_BATCHES)
            .max(ledger::MAX_TX_BYTES as usize),
        mempool: Limits {
            raw_transactions: p.raw_transactions,
            governance: genesis.governance().is_some(),
            ..Limits::default()
        },
        state_cache_bytes: config.state_cache_mb << 20,
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
        next_net_key,
        options: RunOptions::default(),
    })
}

/// A future that resolves when the validator should stop.
type Shutdown<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;
/// The validator loop for one protocol: `run_loop::<P>`.
type LoopFn = for<'a> fn(
    &'a Path,
    Loaded,
    Shutdown<'a>,
) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// The validator loop for each genesis protocol. Adding a protocol is one arm here.
fn protocol_loop(protocol: genesis::Protocol) -> LoopFn {
    match protocol {
        genesis::Protocol::HotStuff => run_loop::<HotStuffProtocol>,
        genesis::Protocol::Pbft => run_loop::<PbftProtocol>,
        genesis::Protocol::Raft => run_loop::<RaftProtocol>,
    }
}

fn run_loop<'a, P: Protocol>(
    home: &'a Path,
    loaded: Loaded,
    shutdown: Shutdown<'a>,
) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>> {
    Box::pin(run_with::<P>(home, loaded, shutdown))
}

/// Runs the validator in `home` until `shutdown` resolves.
pub async fn run(home: &Path, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_with_options(home, RunOptions::default(), shutdown).await
}

/// As [`run`], with test-only switches.
pub async fn run_with_options(
    home: &Path,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    #[cfg(feature = "failpoints")]
    let _failpoints = super::failpoints::setup();
    let mut loaded = load(home)?;
    loaded.options = options;
    let run_loop = protocol_loop(loaded.genesis.protocol);
    run_loop(home, loaded, Box::pin(shutdown)).await
}

async fn run_with<P: Protocol>(
    home: &Path,
    loaded: Loaded,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let data = loaded.config.data_dir_path(home);
    let store =
        RedbStore::open_with_cache(&data.join("store.redb"), loaded.config.db_cache_mb << 20)
            .with_context(|| format!("opening the store in {}", data.display()))?;
    let mut misbehaviour = Misbehaviour::<P>::new(&loaded.options, &loaded.driver);
    let mut driver = Driver::<P>::open(loaded.driver, store)?;
    if let Some(path) = std::env::var_os(VOTE_LOG_ENV) {
        let path = std::path::PathBuf::from(path);
        driver
            .log_votes_to(&path)
            .with_context(|| format!("{VOTE_LOG_ENV}: cannot open {}", path.display()))?;
        tracing::info!(path = %path.display(), "recording every vote sent");
    }
    // Peers: the ledger's current validator set (genesis, or what changes made of it), as of
    // this start; `follow_set` keeps the transport on it as it changes.
    let peers = driver
        .take_network_change()
        .unwrap_or_else(|| loaded.net.peers.clone());
    // The ingress stage (in the transport) decodes peers' frames and hashes their batches on
    // its own thread.
    let mut transport =
        Transport::<P::Message>::start(loaded.net.clone(), loaded.next_net_key.clone(), peers)
            .await?;
    // The admission stage: signature workers for client submissions and peers' batches.
    let (verified_tx, mut verified_rx) = tokio::sync::mpsc::unbounded_channel();
    let (admission, verify_threads) = super::admission::Admission::start(
        super::admission::Admission::default_workers(),
        verified_tx,
    )
    .context("starting the signature workers")?;
    driver.use_admission(admission.clone());

    // The HTTP API reads committed data from the store and asks this loop for the rest.
    let api_addr = loaded
        .config
        .api_socket_addr()
        .map_err(|e| anyhow!("config.toml: api_listen: {e}"))?;
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| {
            format!("cannot listen for the API on {api_addr} (config.toml: api_listen)")
        })?;
    let (commands, mut api_rx) = tokio::sync::mpsc::channel(1024);
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let status = Arc::new(RwLock::new(NodeStatus {
        chain_id: loaded.genesis.chain_id.clone(),
        protocol: loaded.genesis.protocol.to_string(),
        height: driver.ledger().height(),
        latest_hash: driver.ledger().tip(),
        view: 0,
        leader: None,
        peers: Vec::new(),
        catching_up: false,
        mempool_size: 0,
        raft: P::raft_config(driver.core()),
    }));
    let metrics = Arc::new(Metrics::new());
    let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = ApiState {
        store: driver.ledger().store().clone(),
        commands,
        events: events.clone(),
        status: status.clone(),
        metrics: metrics.clone(),
        chain: driver.ledger().chain().clone(),
        commit_wait: COMMIT_WAIT,
        busy: busy.clone(),
        admission,
    };
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_limits = api::ApiLimits::from(&loaded.config);
    let api_task = tokio::spawn(api::serve_with(listener, state, api_limits, async move {
        let _ = api_stopped.await;
    }));
    let announcer = Announcer {
        events,
        status: status.clone(),
        metrics: metrics.clone(),
        last_commit: None,
    };
    let (writer, store_thread, mut stored_rx) =
        super::store_stage::start(driver.ledger().store().clone(), announcer.clone());
    driver.use_store_stage(writer);
    driver.use_state_sync_distance(loaded.config.state_sync_distance);
    let index_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let indexer = driver
        .ledger()
        .store()
        .tx_index()
        .start_indexer(index_stop.clone());
    let floor_gauge = metrics.history_floor.clone();
    let pruner = (loaded.config.retain_blocks > 0).then(|| {
        driver.ledger().store().start_pruner(
            loaded.config.retain_blocks,
            index_stop.clone(),
            move |floor| {
                floor_gauge.set(floor);
            },
        )
    });
    let mut report = Reporter {
        announce: announcer,
        status,
        metrics,
        leader: None,
        fanout: loaded.genesis.validators.len().saturating_sub(1) as u64,
        view_changes: 0,
        summary: Summary::default(),
        summary_due: tokio::time::Instant::now() + SUMMARY_INTERVAL,
    };

    tracing::info!(
        chain_id = %loaded.genesis.chain_id,
        height = driver.ledger().height(),
        peer_id = %transport.net.local_peer_id(),
        api = %api_addr,
        "validator started"
    );
    let mut timers: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
    let mut batch_tick = tokio::time::interval(Duration::from_millis(loaded.config.batch_delay_ms));
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    let mut flood_tick = tokio::time::interval(FLOOD_INTERVAL);
    let floods = misbehaviour.floods();
    tokio::pin!(shutdown);

    let mut cut_off_check = false;
    let out = driver.start(now_ms())?;
    dispatch(
        &transport.net,
        &mut timers,
        &mut report,
        misbehaviour.filter(out),
    );
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
            frame = transport.inbound.recv() => match frame {
                Some((key, inbound)) => match transport.index_of(&key) {
                    Some(from) => driver.on_inbound(now_ms(), ReplicaId(from), inbound)?,
                    None => Vec::new(),
                },
                None => bail!("the network stopped"),
            },
            Some(v) = verified_rx.recv() => driver.on_verified(now_ms(), v)?,
            _ = sleep => {
                let (id, _) = next_timer.expect("a timer was armed");
                timers.remove(&id);
                driver.on_timer(now_ms(), id)?
            }
            _ = batch_tick.tick() => driver.make_batch(now_ms())?,
            Some(cmd) = api_rx.recv() => answer(&mut driver, now_ms(), cmd)?,
            _ = status_tick.tick() => {
                report.status(&mut driver, &transport.net);
                cut_off_check = true;
                Vec::new()
            }
            _ = flood_tick.tick(), if floods => misbehaviour.flood(),
            stored = stored_rx.recv() => match stored {
                Some(FromStore::Stored(blocks)) => {
                    report_stored(&mut report, &blocks);
                    driver.on_stored(now_ms(), blocks)?
                }
                Some(FromStore::Failed(e)) => bail!("the store stage failed: {e}"),
                None => bail!("the store stage stopped"),
            },
        };
        transport = follow_set(&mut driver, transport, &mut report).await?;
        if std::mem::take(&mut cut_off_check) {
            let pending = super::transport::pending_rotation(driver.ledger().validators());
            transport = transport.rotate_if_cut_off(pending).await?;
        }
        dispatch(
            &transport.net,
            &mut timers,
            &mut report,
            misbehaviour.filter(out),
        );
        busy.store(driver.backlogged(), std::sync::atomic::Ordering::Relaxed);
    }
    let _ = api_stop.send(());
    let _ = api_task.await;
    // The API's and the driver's handles were the workers' last: they end.
    drop(driver.take_admission());
    drop(verified_rx);
    for t in verify_threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    // The store stage writes what it holds, then ends.
    drop(driver.take_store_stage());
    let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
    index_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || indexer.join()).await;
    if let Some(p) = pruner {
        let _ = tokio::task::spawn_blocking(move || p.join()).await;
    }
    tracing::info!(height = driver.ledger().height(), "validator stopping");
    transport.shutdown().await;
    Ok(())
}

fn answer<P: Protocol>(
    driver: &mut Driver<P>,
    now: u64,
    cmd: ApiCommand,
) -> Result<Vec<Out>, super::DriverError> {
    match cmd {
        ApiCommand::ReadIndex { reply } => return driver.read_index(now, reply),
        ApiCommand::TransferLeader { to, reply } => {
            return driver.transfer_leadership(now, to, reply);
        }
        ApiCommand::Submit { tx, reply } => {
            let _ = reply.send(driver.submit_checked(*tx));
        }
        ApiCommand::SubmitBatch { txs, reply } => {
            let verdicts = txs
                .into_iter()
                .map(|tx| driver.submit_checked(tx))
                .collect();
            let _ = reply.send(verdicts);
        }
        ApiCommand::PoolStatus { hash, reply } => {
            let _ = reply.send(driver.mempool().status(&hash));
        }
        ApiCommand::NextNonce {
            address,
            committed,
            reply,
        } => {
            let _ = reply.send(driver.mempool().next_nonce(&address, committed));
        }
    }
    Ok(Vec::new())
}

/// After a step that changed the validator set (or accepted a change that adds one), the
/// transport follows it before the step's frames go out: they are addressed in the new
/// numbering.
async fn follow_set<P: Protocol>(
    driver: &mut Driver<P>,
    transport: Transport<P::Message>,
    report: &mut Reporter,
) -> anyhow::Result<Transport<P::Message>> {
    let Some(peers) = driver.take_network_change() else {
        return Ok(transport);
    };
    let transport = transport.follow(peers).await?;
    report.fanout = transport.net.peer_count() as u64;
    Ok(transport)
}

fn dispatch(
    net: &NetHandle,
    timers: &mut BTreeMap<u64, tokio::time::Instant>,
    report: &mut Reporter,
    out: Vec<Out>,
) {
    for o in out {
        match o {
            Out::Send(to, bytes) => {
                report.sent(1, bytes.len());
                net.send(to.0, bytes);
                super::failpoints::crash_point!("after-send", 100);
            }
            Out::Broadcast(bytes) => {
                report.sent(report.fanout, bytes.len());
                net.broadcast(bytes);
                super::failpoints::crash_point!("after-send", 100);
            }
            Out::Timer { id, after_ms } => {
                let at = tokio::time::Instant::now() + Duration::from_millis(after_ms);
                timers.insert(id, at);
            }
            // Blocks synced from peers (written on this thread); the store stage announces
            // the others.
            Out::Committed { block, receipts } => {
                report.summary.blocks += 1;
                report.summary.txs += block.txs.len() as u64;
                report.announce.committed(&block, &receipts);
            }
        }
    }
}

/// Milliseconds since the Unix epoch, for block timestamps (informational: no rule depends on
/// them). Timers use the monotonic clock.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
