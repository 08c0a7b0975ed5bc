//! Real `cairnd-test run` processes as a cluster the fault tests can hurt: a testnet written
//! by `cairnd-test testnet` into a temporary directory, one child process per validator
//! (killed, stopped, paused, resumed, restarted), optionally each in its own network
//! namespace so that its peer-to-peer links can be partitioned and healed ([`netns`]), HTTP
//! queries of the validators' APIs, a background transfer load ([`Load`]) and the safety
//! checker run on the stores and vote logs after the validators stopped ([`check`]).
//!
//! Every validator records the votes it sends (`CAIRN_VOTE_LOG=HOME/votes.log`) and appends
//! its stdout and stderr to `HOME/cairnd.log` across restarts. Every wait is bounded. When
//! a test panics while a [`Cluster`] is alive, its drop prints the tail of every validator's
//! log; with `CAIRN_TEST_KEEP=DIR` the whole testnet (stores, logs, vote logs) is copied to
//! `DIR` first.
//!
//! ```no_run
//! use tests::cluster::{Cluster, ClusterOpts, Load, check};
//! use std::time::Duration;
//! let mut c = Cluster::new("hotstuff", 4, ClusterOpts { netns: true, ..Default::default() });
//! c.start_all();
//! let load = Load::start(&c, &[0, 1, 2, 3]);
//! c.wait_progress(&[0, 1, 2, 3], 5, Duration::from_secs(30)).unwrap();
//! c.partition(&[&[0], &[1, 2, 3]]);
//! c.heal();
//! let acked = load.stop();
//! c.stop_all();
//! let verdict = check(&c, &[0, 1, 2, 3], &[0, 1, 2, 3], &acked);
//! ```

mod check;
mod load;
mod netns;

pub use check::{Verdict, check, try_check};
pub use load::{Acked, Load};
pub use node::audit::{VoteLog, double_votes};

use netns::Netns;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// How a [`Cluster`] is set up. `args` and `env` may be shorter than the cluster (missing
/// entries mean nothing extra).
#[derive(Clone, Debug, Default)]
pub struct ClusterOpts {
    /// Each validator in its own network namespace (needed for [`Cluster::partition`]; needs
    /// root and `ip`; `CAIRN_TEST_NO_NETNS=1` turns it off).
    pub netns: bool,
    /// Extra `cairnd-test run` arguments per validator index.
    pub args: Vec<Vec<String>>,
    /// Extra environment variables per validator index.
    pub env: Vec<Vec<(String, String)>>,
    /// Extra `cairnd-test testnet` arguments (e.g. `--accounts 8`, `--snapshot-interval 64`).
    pub testnet_args: Vec<String>,
    /// Turn on genesis `params.raw_transactions` (unsigned opaque transactions, the
    /// benchmark workload) in every genesis copy.
    pub raw_transactions: bool,
    /// With `netns`: configure the validators with `cairnd testnet --hosts` (their namespace
    /// addresses, peers listening on 0.0.0.0, APIs on 0.0.0.0) instead of rewriting a
    /// loopback testnet: the multi-host configuration, on real (namespace) addresses.
    pub hosts: bool,
}

/// A testnet on disk and its validator processes. See the module documentation.
pub struct Cluster {
    pub n: usize,
    pub protocol: String,
    out: PathBuf,
    bin: PathBuf,
    opts: ClusterOpts,
    apis: Vec<String>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    starts: Vec<usize>,
    netns: Option<Netns>,
    http: reqwest::blocking::Client,
    /// The last evidence count each validator reported (read by `evidence_count`, and by
    /// `stop` just before stopping it).
    evidence_seen: Mutex<Vec<Option<u64>>>,
    keep_name: String,
    _dir: tempfile::TempDir,
}

/// The `cairnd-test` binary: `$CAIRN_TEST_BIN`, else `$CARGO_BIN_EXE_cairnd-test` (set by
/// `cargo test` when it runs an integration test of this package), else the `cairnd-test`
/// next to the test executable's `deps/` directory.
pub fn cairnd_test_bin() -> PathBuf {
    for var in ["CAIRN_TEST_BIN", "CARGO_BIN_EXE_cairnd-test"] {
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("cairnd-test");
    assert!(
        bin.exists(),
        "cannot find the cairnd-test binary at {} (set CAIRN_TEST_BIN, or run through \
         `cargo test -p tests`, which builds it)",
        bin.display()
    );
    bin
}

/// A base port whose 2n ports (p2p base+i, API base+1000+i) are free on loopback now, below
/// the Linux ephemeral range, different for each call in this process.
fn free_base(n: usize) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let pid = std::process::id() as u16;
    for _ in 0..1000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 19_000 + (pid.wrapping_mul(89).wrapping_add(k.wrapping_mul(16))) % 8_000 / 8 * 8;
        let free = (0..n as u16).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + 1000 + i)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free port range found");
}

/// The TCP port at the end of a `/ip4/HOST/tcp/PORT` multiaddr.
fn multiaddr_port(addr: &str) -> u16 {
    addr.rsplit('/')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no TCP port in {addr:?}"))
}

impl Cluster {
    /// Writes a testnet of `n` validators for `protocol` into a temporary directory (nothing
    /// is started). With `opts.netns`, creates one network namespace per validator and
    /// rewrites the genesis p2p addresses (every copy, identically) and each `config.toml`
    /// to the namespace addresses; if namespaces are unavailable it says why and falls back
    /// to loopback ([`Cluster::netns_available`] is then false).
    pub fn new(protocol: &str, n: usize, opts: ClusterOpts) -> Cluster {
        let bin = cairnd_test_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("net");
        let base = free_base(n);
        let netns = if opts.netns {
            match Netns::create(n) {
                Ok(ns) => Some(ns),
                Err(why) => {
                    eprintln!("netns unavailable: {why}; partitions skipped");
                    None
                }
            }
        } else {
            None
        };
        let hosts = match &netns {
            Some(ns) if opts.hosts => Some(
                (0..n)
                    .map(|i| format!("{}:{}", ns.p2p_ip(i), base as usize + i))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        };
        let mut testnet = Command::new(&bin);
        testnet
            .args(["testnet", "--protocol", protocol])
            .arg("--out")
            .arg(&out)
            .args(&opts.testnet_args)
            .stdin(Stdio::null());
        match &hosts {
            Some(list) => testnet.args(["--hosts", list, "--api-bind", "0.0.0.0"]),
            None => testnet.args([
                "--validators",
                &n.to_string(),
                "--base-port",
                &base.to_string(),
            ]),
        };
        let output = testnet
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        assert!(
            output.status.success(),
            "cairnd-test testnet failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let homes: Vec<PathBuf> = (0..n).map(|i| out.join(format!("validator-{i}"))).collect();
        if opts.raw_transactions {
            rewrite_genesis(&out, &homes, |g| g.params.raw_transactions = true);
        }
        if let Some(ns) = &netns
            && hosts.is_none()
        {
            rewrite_addresses(&out, &homes, ns);
        }
        let apis = homes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let c = genesis::NodeConfig::load(h).expect("config.toml");
                let api = c.api_socket_addr().expect("api_listen");
                match &netns {
                    // Bound to every interface of its namespace: reached on the control link.
                    Some(ns) if api.ip().is_unspecified() => {
                        format!("http://{}:{}", ns.api_ip(i), api.port())
                    }
                    _ => format!("http://{}", c.api_listen),
                }
            })
            .collect();
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        Cluster {
            n,
            protocol: protocol.to_string(),
            keep_name: format!("{protocol}-{}-{base}", std::process::id()),
            out,
            bin,
            opts,
            apis,
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            starts: vec![0; n],
            netns,
            http,
            evidence_seen: Mutex::new(vec![None; n]),
            _dir: dir,
        }
    }

    /// True when every validator has its own network namespace (partitions work).
    pub fn netns_available(&self) -> bool {
        self.netns.is_some()
    }

    /// The testnet directory (`genesis.json`, `validator-{i}/`, `wallets/`).
    pub fn dir(&self) -> &Path {
        &self.out
    }

    pub fn home(&self, i: usize) -> PathBuf {
        self.out.join(format!("validator-{i}"))
    }

    /// Changes every validator's `config.toml` (before they start).
    pub fn edit_config(&self, edit: impl Fn(&mut genesis::NodeConfig)) {
        for i in 0..self.n {
            let home = self.home(i);
            let mut c = genesis::NodeConfig::load(&home).expect("config.toml");
            edit(&mut c);
            c.save(&home).expect("saving config.toml");
        }
    }

    /// Validator `i`'s store (open it only while the validator is stopped).
    pub fn store_path(&self, i: usize) -> PathBuf {
        self.home(i).join("data/store.redb")
    }

    /// Validator `i`'s vote log (`CAIRN_VOTE_LOG`).
    pub fn vote_log_path(&self, i: usize) -> PathBuf {
        self.home(i).join("votes.log")
    }

    /// The API base URL of validator `i`, reachable from the test process at all times.
    pub fn api(&self, i: usize) -> String {
        self.apis[i].clone()
    }

    /// Number of funded wallets in the testnet (`--accounts`, default 4).
    pub fn wallets(&self) -> usize {
        std::fs::read_dir(self.out.join("wallets"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn wallet_key(&self, k: usize) -> crypto::SecretKey {
        let path = self.out.join(format!("wallets/wallet-{k}.json"));
        genesis::keyfile::load_key_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn genesis(&self) -> genesis::Genesis {
        genesis::Genesis::load(&self.out.join("genesis.json")).expect("genesis.json")
    }

    pub fn chain(&self) -> ledger::ChainBinding {
        let g = self.genesis();
        ledger::ChainBinding {
            chain_id: g.chain_id.clone(),
            genesis_hash: g.hash(),
        }
    }

    /// Starts validator `i` (`cairnd-test run --home HOME`, then its extra args and env),
    /// inside its namespace when there are namespaces; stdout and stderr are appended to
    /// `HOME/cairnd.log`, after a marker line. Panics if it is already running.
    pub fn start(&mut self, i: usize) {
        assert!(
            !self.is_running(i),
            "validator {i} is already running (pid {:?})",
            self.pid(i)
        );
        let home = self.home(i);
        let log_path = home.join("cairnd.log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        self.starts[i] += 1;
        let _ = writeln!(
            log,
            "=== cluster: start #{} of validator {i} ===",
            self.starts[i]
        );
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` execs the command: the child's pid is the validator's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(i)]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["run", "--home"])
            .arg(&home)
            .args(self.opts.args.get(i).into_iter().flatten())
            .env("NO_COLOR", "1")
            .env("CAIRN_VOTE_LOG", self.vote_log_path(i))
            .envs(
                self.opts
                    .env
                    .get(i)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k, v)),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start validator {i}: {e}"));
        self.children[i] = Some(child);
        self.paused[i] = false;
    }

    /// Replaces validator `i`'s extra environment (`ClusterOpts::env[i]`) for its next
    /// starts, e.g. to restart it without the failpoint that crashed it.
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) {
        if self.opts.env.len() <= i {
            self.opts.env.resize(i + 1, Vec::new());
        }
        self.opts.env[i] = env;
    }

    /// Replaces validator `i`'s extra `run` arguments (`ClusterOpts::args[i]`) for its next
    /// starts.
    pub fn set_args(&mut self, i: usize, args: Vec<String>) {
        if self.opts.args.len() <= i {
            self.opts.args.resize(i + 1, Vec::new());
        }
        self.opts.args[i] = args;
    }

    pub fn start_all(&mut self) {
        for i in 0..self.n {
            self.start(i);
        }
    }

    /// The running validator's process id.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    fn signal(&self, i: usize, sig: rustix::process::Signal) {
        if let Some(child) = &self.children[i] {
            let _ = rustix::process::kill_process(rustix::process::Pid::from_child(child), sig);
        }
    }

    /// SIGKILL, and waits for the process to end. Nothing if it is not running.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused[i] = false;
    }

    /// Stops validator `i` cleanly: SIGTERM (and SIGCONT if paused), waits up to 10 s, then
    /// SIGKILL. Just before, reads its evidence count (see [`Cluster::evidence_count`]).
    pub fn stop(&mut self, i: usize) {
        if self.children[i].is_none() {
            return;
        }
        if !self.paused[i] {
            let _ = self.evidence_count(i);
        }
        self.terminate(i);
    }

    /// SIGTERM (and SIGCONT if paused), then [`Cluster::reap`].
    fn terminate(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::TERM);
        if self.paused[i] {
            self.signal(i, rustix::process::Signal::CONT);
        }
        self.reap(i);
    }

    /// Waits up to 10 s for a signalled validator to end, then SIGKILL.
    fn reap(&mut self, i: usize) {
        if self.children[i].is_none() {
            return;
        }
        let mut child = self.children[i].take().expect("child");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("cluster: validator {i} stopped with {status}");
                    }
                    break;
                }
                Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!("cluster: validator {i} ignored SIGTERM for 10 s; SIGKILL");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        self.paused[i] = false;
    }

    /// Stops every validator (SIGTERM to all first, so they stop in parallel).
    pub fn stop_all(&mut self) {
        for i in 0..self.n {
            if self.children[i].is_some() && !self.paused[i] {
                let _ = self.evidence_count(i);
            }
        }
        for i in 0..self.n {
            self.signal(i, rustix::process::Signal::TERM);
            if self.paused[i] {
                self.signal(i, rustix::process::Signal::CONT);
                self.paused[i] = false;
            }
        }
        for i in 0..self.n {
            self.reap(i);
        }
    }

    /// SIGSTOP: the process freezes (its sockets stay open, nothing is answered).
    pub fn pause(&mut self, i: usize) {
        assert!(
            self.children[i].is_some(),
            "pause: validator {i} not running"
        );
        self.signal(i, rustix::process::Signal::STOP);
        self.paused[i] = true;
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::CONT);
        self.paused[i] = false;
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.paused[i]
    }

    /// True while validator `i`'s process exists (paused counts as running). A process that
    /// ended by itself is reaped here.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.children[i].as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.children[i] = None;
                self.paused[i] = false;
                false
            }
            None => false,
        }
    }

    /// Waits up to `timeout` for validator `i` to end by itself (a failpoint crash, a fatal
    /// error) and returns its exit status; `None` if it is still running then (or was not
    /// running).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.children[i].as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.children[i] = None;
                self.paused[i] = false;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peer-to-peer links only between validators of the same group (a validator in no
    /// group is alone). The APIs stay reachable. Without namespaces it only says so.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        match &self.netns {
            Some(ns) => ns
                .partition(groups)
                .unwrap_or_else(|e| panic!("partition {groups:?}: {e}")),
            None => eprintln!("netns unavailable: partition {groups:?} skipped"),
        }
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        if let Some(ns) = &self.netns {
            ns.heal().unwrap_or_else(|e| panic!("heal: {e}"));
        }
    }

    /// Everything validator `i` has logged so far (all its runs).
    pub fn log(&self, i: usize) -> String {
        std::fs::read(self.home(i).join("cairnd.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of validator `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let log = self.log(i);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Prints the tail of every validator's log to stderr.
    pub fn dump_logs(&self, lines: usize) {
        for i in 0..self.n {
            eprintln!(
                "----- validator {i} ({}), last {lines} log lines -----\n{}",
                self.home(i).display(),
                self.log_tail(i, lines)
            );
        }
    }

    fn get_json(&self, i: usize, path: &str) -> Option<(u16, serde_json::Value)> {
        let resp = self
            .http
            .get(format!("{}{path}", self.apis[i]))
            .send()
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().unwrap_or(serde_json::Value::Null)))
    }

    /// `GET /v1/status` of validator `i`, `None` if it does not answer within 2 s.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        match self.get_json(i, "/v1/status") {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    /// The committed height validator `i` reports, `None` if it does not answer.
    pub fn height(&self, i: usize) -> Option<u64> {
        json_u64(&self.status(i)?["height"])
    }

    /// The leader validator `i` follows, if it answers and follows one.
    pub fn leader(&self, i: usize) -> Option<usize> {
        json_u64(&self.status(i)?["leader"]).map(|l| l as usize)
    }

    /// `count` from `GET /v1/evidence` of validator `i`; `None` if it does not answer or has
    /// no such endpoint (404).
    pub fn evidence_count(&self, i: usize) -> Option<u64> {
        let (status, v) = self.get_json(i, "/v1/evidence")?;
        if status != 200 {
            return None;
        }
        let count = json_u64(&v["count"])?;
        if let Ok(mut seen) = self.evidence_seen.lock() {
            seen[i] = Some(count);
        }
        Some(count)
    }

    /// The last evidence count validator `i` reported (through [`Cluster::evidence_count`],
    /// also called by `stop`/`stop_all` before stopping it).
    pub fn last_evidence_count(&self, i: usize) -> Option<u64> {
        self.evidence_seen.lock().ok()?[i]
    }

    /// Heights of `nodes` as `i=h` (or `i=down`), for messages.
    pub fn heights_text(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|&i| match self.height(i) {
                Some(h) => format!("{i}={h}"),
                None => format!("{i}=down"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Waits until every validator in `nodes` reports at least `height`.
    pub fn wait_height(
        &self,
        nodes: &[usize],
        height: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let targets: Vec<(usize, u64)> = nodes.iter().map(|&i| (i, height)).collect();
        self.wait_targets(&targets, timeout)
    }

    /// Waits until every validator in `nodes` reaches the highest height any of them reports
    /// now, and returns that height. Call it after stopping the load and before `stop_all`
    /// and [`check`](crate::cluster::check::check): an acknowledged transaction is then at or
    /// below every store's top, so a validator stopped one block behind is not taken for one
    /// that lost it.
    pub fn converge(&self, nodes: &[usize], timeout: Duration) -> Result<u64, String> {
        let top = nodes
            .iter()
            .filter_map(|&i| self.height(i))
            .max()
            .unwrap_or(0);
        self.wait_height(nodes, top, timeout)?;
        Ok(top)
    }

    /// Waits until each validator in `nodes` has committed `blocks` more blocks than it has
    /// now; one that does not answer now (starting, paused) must reach `blocks` above the
    /// highest height the others in `nodes` report now.
    pub fn wait_progress(
        &self,
        nodes: &[usize],
        blocks: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        let now: Vec<(usize, Option<u64>)> = nodes.iter().map(|&i| (i, self.height(i))).collect();
        let top = now.iter().filter_map(|(_, h)| *h).max().unwrap_or(0);
        let targets: Vec<(usize, u64)> = now
            .iter()
            .map(|&(i, h)| (i, h.unwrap_or(top) + blocks))
            .collect();
        self.wait_targets(&targets, timeout)
    }

    /// True when validator `i` was started and its process has ended without the harness
    /// stopping it (a crash, a failpoint, or a signal from outside the test). `is_running`
    /// and `wait_exit` reap it and give its status.
    pub fn exited(&self, i: usize) -> bool {
        let Some(pid) = self.pid(i) else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    fn wait_targets(&self, targets: &[(usize, u64)], timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(&(i, _)) = targets.iter().find(|&&(i, _)| self.exited(i)) {
                let log = self.log(i);
                let last = log.lines().last().unwrap_or_default().to_string();
                return Err(format!(
                    "{} cluster: validator {i}'s process ended, not stopped by the harness (a \
                     crash, or a signal from outside the test); its last log line: {last}",
                    self.protocol
                ));
            }
            let heights: Vec<Option<u64>> = targets.iter().map(|&(i, _)| self.height(i)).collect();
            if targets
                .iter()
                .zip(&heights)
                .all(|(&(_, t), h)| h.is_some_and(|h| h >= t))
            {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                let text: Vec<String> = targets
                    .iter()
                    .zip(&heights)
                    .map(|(&(i, t), h)| match h {
                        Some(h) => format!("validator {i} at {h} (wanted {t})"),
                        None => format!("validator {i} not answering (wanted {t})"),
                    })
                    .collect();
                return Err(format!(
                    "{} cluster: not there within {timeout:?}: {}",
                    self.protocol,
                    text.join(", ")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A JSON integer given as a string (the API's 64-bit integers) or a number.
fn json_u64(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        v => v.as_u64(),
    }
}

/// Changes every genesis copy the same way.
fn rewrite_genesis(out: &Path, homes: &[PathBuf], change: impl Fn(&mut genesis::Genesis)) {
    let path = out.join("genesis.json");
    let mut g = genesis::Genesis::load(&path).expect("genesis.json");
    change(&mut g);
    let text = g.to_json_pretty();
    genesis::Genesis::from_json(&text).expect("rewritten genesis is valid");
    std::fs::write(&path, &text).expect("write genesis.json");
    for home in homes {
        let c = genesis::NodeConfig::load(home).expect("config.toml");
        let gp = c.genesis_path(home);
        std::fs::write(&gp, &text).unwrap_or_else(|e| panic!("{}: {e}", gp.display()));
    }
}

/// Points every genesis copy and config at the namespace addresses (same ports).
fn rewrite_addresses(out: &Path, homes: &[PathBuf], ns: &Netns) {
    let path = out.join("genesis.json");
    let mut g = genesis::Genesis::load(&path).expect("genesis.json");
    let mut configs = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let mut c = genesis::NodeConfig::load(home).expect("config.toml");
        let p2p_port = multiaddr_port(&c.p2p_listen);
        let api_port = c.api_socket_addr().expect("api_listen").port();
        let p2p = format!("/ip4/{}/tcp/{p2p_port}", ns.p2p_ip(i));
        g.validators[i].p2p_address = p2p.clone();
        c.p2p_listen = p2p;
        c.api_listen = format!("{}:{api_port}", ns.api_ip(i));
        configs.push(c);
    }
    let text = g.to_json_pretty();
    genesis::Genesis::from_json(&text).expect("rewritten genesis is valid");
    std::fs::write(&path, &text).expect("write genesis.json");
    for (home, c) in homes.iter().zip(&configs) {
        let gp = c.genesis_path(home);
        std::fs::write(&gp, &text).unwrap_or_else(|e| panic!("{}: {e}", gp.display()));
        c.save(home).expect("write config.toml");
    }
}

impl Drop for Cluster {
    /// Kills every validator, prints the log tails if the test is panicking, keeps the
    /// testnet with `CAIRN_TEST_KEEP=DIR`, then removes the namespaces and bridges.
    fn drop(&mut self) {
        for i in 0..self.n {
            self.kill(i);
        }
        if std::thread::panicking() {
            self.dump_logs(40);
        }
        if let Some(keep) = std::env::var_os("CAIRN_TEST_KEEP") {
            let to = Path::new(&keep).join(&self.keep_name);
            let _ = std::fs::create_dir_all(&keep);
            let _ = Command::new("cp")
                .arg("-r")
                .arg(&self.out)
                .arg(&to)
                .status();
            eprintln!("testnet kept in {}", to.display());
        }
        self.netns = None;
    }
}
