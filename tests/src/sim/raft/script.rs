//! A scripted Raft cluster for hand-written schedules (the Raft paper's Figure 8, negative
//! controls): the test decides which message is delivered, which timer fires, when writes
//! become durable, and who crashes and restarts. It is made of the simulator's parts — the
//! replica instance with its disk model, the ledger checks and [`RaftInvariants`] — and
//! runs every check after every step.

use super::{RaftInvariants, RaftSim};
use crate::sim::check::Checker;
use crate::sim::cluster::{ClusterInvariants, NodeView};
use crate::sim::node::Instance;
use crate::sim::protocol::{Params, SimProtocol};
use crate::sim::reads::ReadChecker;
use crate::sim::scenario::Scenario;
use consensus::raft::{ELECTION_TIMER, Message, Raft, Role, TransferError};
use consensus::{Action, Committee, Core, Input, ReplicaId};
use crypto::{Digest, SecretKey};
use ledger::ChainBinding;
use std::collections::{BTreeSet, VecDeque};

/// Rounds of election timeouts [`Script::elect`] tries before giving up.
const ELECTION_ATTEMPTS_MAX: usize = 8;
/// Messages one [`Script::deliver`] call delivers at most (a schedule that never settles
/// is a bug in the script or the core).
const DELIVERIES_MAX: usize = 100_000;

pub struct Script {
    nodes: Vec<Instance<RaftSim>>,
    committee: Committee,
    genesis: Digest,
    params: Params,
    /// Messages in flight, in send order: (from, to, message).
    net: VecDeque<(usize, usize, Message)>,
    /// Timers each replica has armed.
    timers: Vec<BTreeSet<u64>>,
    /// Replicas whose writes become durable as soon as they are issued (all, unless a test
    /// holds one back).
    pub auto_sync: Vec<bool>,
    now: u64,
    checker: Checker,
    invariants: RaftInvariants,
    reads: ReadChecker,
    /// Every read answer, in order: (instance, read id, index or refused).
    pub read_answers: Vec<(usize, u64, Option<u64>)>,
    /// The members the ledger names, once a test set them (told to every replica, also
    /// after a restart).
    members: Option<BTreeSet<ReplicaId>>,
}

impl Script {
    /// `n` replicas, started; `configure` adjusts the parameters first.
    pub fn new(n: usize, configure: impl FnOnce(&mut Params)) -> Script {
        let mut params = Scenario::calm(0, n).params;
        params.raft.snapshot_interval = 1_000;
        params.raft.log_keep = 1_000;
        configure(&mut params);
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
            .collect();
        let committee = RaftSim::committee(keys.iter().map(|k| k.public()).collect());
        let genesis = crypto::hash(b"raft script");
        let chain = ChainBinding {
            chain_id: "script".into(),
            genesis_hash: genesis,
        };
        let nodes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let id = ReplicaId(i as u16);
                let genesis = ledger::LedgerGenesis::default();
                Instance::new(
                    id,
                    k.clone(),
                    None,
                    chain.clone(),
                    &genesis,
                    committee.clone(),
                )
            })
            .collect();
        let mut s = Script {
            nodes,
            committee,
            genesis,
            params: params.clone(),
            net: VecDeque::new(),
            timers: vec![BTreeSet::new(); n],
            auto_sync: vec![true; n],
            now: 0,
            checker: Checker::new(n, 0, genesis),
            invariants: RaftInvariants::new(genesis, &params),
            reads: ReadChecker::default(),
            read_answers: Vec::new(),
            members: None,
        };
        for i in 0..n {
            s.restart(i, false);
        }
        s
    }

    pub fn core(&self, i: usize) -> &Raft {
        self.nodes[i].core.as_ref().expect("replica is up")
    }

    pub fn is_leader(&self, i: usize) -> bool {
        self.nodes[i]
            .core
            .as_ref()
            .is_some_and(|c| c.role() == Role::Leader)
    }

    /// The ledger height of replica `i` (up or not).
    pub fn height(&self, i: usize) -> u64 {
        self.nodes[i].ledger.height()
    }

    /// The term of the entry the ledger of replica `i` holds at `height`.
    pub fn ledger_term(&self, i: usize, height: u64) -> Option<u64> {
        use ledger::Store;
        let b = self.nodes[i].ledger.store().block(height).ok()??;
        Some(b.header.view)
    }

    /// The term of the durable log entry of replica `i` at `index`.
    pub fn disk_term(&self, i: usize, index: u64) -> Option<u64> {
        let bytes = self.nodes[i].disk_log().get(&index)?;
        RaftSim::committed_ref(bytes).map(|(_, v)| v.0)
    }

    pub fn violations(&self) -> &[String] {
        &self.checker.violations
    }

    /// Crashes replica `i`: its core, unsynced writes and timers are lost. Messages in flight
    /// to or from it stay in flight (the network may delay them past a restart); the script
    /// drops what it wants lost.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].crash();
        self.reads.crashed(i);
        self.timers[i].clear();
        self.check();
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    /// Starts replica `i` from its disk (without its hard state if `amnesia`).
    pub fn restart(&mut self, i: usize, amnesia: bool) {
        let disk = self.nodes[i].disk(amnesia);
        let inst = &mut self.nodes[i];
        let core = RaftSim::build(
            inst.id,
            inst.key.clone(),
            self.committee.clone(),
            self.genesis,
            &self.params,
            &disk,
        );
        inst.core = Some(core);
        let (h, tip) = (inst.ledger.height(), inst.ledger.tip());
        self.checker.restarted(i, h, tip);
        self.now += 1;
        let actions = self.nodes[i]
            .core
            .as_mut()
            .expect("just built")
            .start(self.now);
        self.apply(i, actions);
        if let Some(m) = self.members.clone() {
            let core = self.nodes[i].core.as_mut().expect("just built");
            let actions = core.set_members(m);
            self.apply(i, actions);
        }
        self.check();
    }

    /// The ledger names `members` (instance indices): every live replica is told, as the
    /// node tells its core when the change takes effect.
    pub fn set_members(&mut self, members: &[usize]) {
        let set: BTreeSet<ReplicaId> = members.iter().map(|i| ReplicaId(*i as u16)).collect();
        self.members = Some(set.clone());
        for i in 0..self.nodes.len() {
            if let Some(core) = self.nodes[i].core.as_mut() {
                let actions = core.set_members(set.clone());
                self.apply(i, actions);
            }
        }
        self.check();
    }

    /// Asks leader `i` to hand leadership to `to` (or to whom it picks).
    pub fn transfer(&mut self, i: usize, to: Option<usize>) -> Result<(), TransferError> {
        let core = self.nodes[i].core.as_mut().expect("replica is up");
        let actions = core.transfer_leadership(to.map(|t| ReplicaId(t as u16)))?;
        self.apply(i, actions);
        self.check();
        Ok(())
    }

    /// Fires timer `id` of replica `i`, if armed.
    pub fn fire(&mut self, i: usize, id: u64) {
        if self.timers[i].remove(&id) {
            self.input(i, Input::Timer(id));
        }
    }

    /// A client asks replica `i` for a linearizable read; its id. The answer lands in
    /// [`Script::read_answers`], checked against the highest height committed anywhere now.
    pub fn read(&mut self, i: usize) -> u64 {
        let floor = (0..self.nodes.len())
            .map(|j| self.height(j))
            .max()
            .unwrap_or(0);
        let id = self.reads.ask(i, floor);
        self.input(i, Input::Read(id));
        id
    }

    /// Gives replica `i` a batch digest to propose.
    pub fn payload(&mut self, i: usize, digest: Digest) {
        self.input(i, Input::Payload(digest));
    }

    /// Makes replica `i`'s queued writes durable.
    pub fn sync(&mut self, i: usize) {
        let epoch = self.nodes[i].epoch;
        if let Some(seq) = self.nodes[i].fsync_done(epoch) {
            self.input(i, Input::Persisted(seq));
        }
    }

    /// Delivers the oldest in-flight message `pass` accepts; false if there is none.
    pub fn deliver_one(&mut self, pass: impl Fn(usize, usize, &Message) -> bool) -> bool {
        let Some(k) = self.net.iter().position(|(f, t, m)| pass(*f, *t, m)) else {
            return false;
        };
        let (from, to, msg) = self.net.remove(k).expect("position is in range");
        self.input(
            to,
            Input::Message {
                from: ReplicaId(from as u16),
                msg,
            },
        );
        true
    }

    /// Delivers messages `pass` accepts (also those they cause) until none is left;
    /// returns how many.
    pub fn deliver(&mut self, pass: impl Fn(usize, usize, &Message) -> bool) -> usize {
        let mut n = 0;
        while self.deliver_one(&pass) {
            n += 1;
            assert!(n < DELIVERIES_MAX, "the schedule does not settle");
        }
        n
    }

    /// Loses every in-flight message `lose` accepts.
    pub fn drop_where(&mut self, lose: impl Fn(usize, usize, &Message) -> bool) {
        self.net.retain(|(f, t, m)| !lose(*f, *t, m));
    }

    /// Makes `c` leader with the votes of `voters` only: its election timer fires and only
    /// messages between it and the voters are delivered (its messages to other live replicas
    /// are lost; those to crashed ones stay in flight), until it leads. Voters that still follow a leader refuse pre-votes, so their
    /// election timers are let expire too (what they send then is lost). Messages it sends
    /// as the new leader stay in flight for the script to deliver or drop.
    pub fn elect(&mut self, c: usize, voters: &[usize]) -> bool {
        let among =
            |f: usize, t: usize| (f == c && voters.contains(&t)) || (t == c && voters.contains(&f));
        for _ in 0..ELECTION_ATTEMPTS_MAX {
            self.fire(c, ELECTION_TIMER);
            while !self.is_leader(c) && self.deliver_one(|f, t, _| among(f, t)) {}
            let up: Vec<bool> = (0..self.nodes.len()).map(|i| self.is_up(i)).collect();
            self.drop_where(|f, t, _| f == c && !voters.contains(&t) && up[t]);
            if self.is_leader(c) {
                return true;
            }
            for &v in voters {
                self.fire(v, ELECTION_TIMER);
                self.drop_where(|f, _, _| f == v);
            }
        }
        false
    }

    fn input(&mut self, i: usize, input: Input<Message>) {
        self.now += 1;
        let now = self.now;
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let actions = core.handle(now, input);
        self.apply(i, actions);
        while let Some((height, state_root)) = self.nodes[i].executed.pop_front() {
            if let Some(core) = self.nodes[i].core.as_mut() {
                let actions = core.handle(now, Input::Executed { height, state_root });
                self.apply(i, actions);
            }
        }
        self.check();
    }

    fn apply(&mut self, i: usize, actions: Vec<Action<Message>>) {
        let n = self.nodes.len();
        for a in actions {
            match a {
                Action::Send { to, msg } => self.net.push_back((i, to.0 as usize, msg)),
                Action::Broadcast { msg } => {
                    for j in (0..n).filter(|j| *j != i) {
                        self.net.push_back((i, j, msg.clone()));
                    }
                }
                Action::Persist { seq, what } => {
                    self.nodes[i].persist(seq, what);
                }
                Action::Commit(c) => {
                    let input = ::node::validator::block_input(c, &self.committee, |_| None);
                    let block = self.nodes[i].execute(input);
                    self.nodes[i]
                        .executed
                        .push_back((block.header.height, block.header.state_root));
                    let supply = self.nodes[i]
                        .ledger
                        .total_supply()
                        .expect("in-memory store cannot fail");
                    self.checker.on_commit(self.now, i, &block, supply);
                }
                Action::SetTimer { id, .. } => {
                    self.timers[i].insert(id);
                }
                Action::ReadReady { id, index } => self.read_answered(i, id, Some(index)),
                Action::ReadFailed { id } => self.read_answered(i, id, None),
            }
        }
        if self.auto_sync[i] {
            self.sync(i);
        }
    }

    fn read_answered(&mut self, i: usize, id: u64, index: Option<u64>) {
        self.read_answers.push((i, id, index));
        if let Some(v) = self.reads.answered(self.now, i, id, index) {
            self.checker.violations.push(v);
        }
    }

    /// Every cluster invariant, after every step.
    fn check(&mut self) {
        let nodes: Vec<NodeView<'_, RaftSim>> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(inst, n)| NodeView {
                inst,
                id: n.id,
                life: n.epoch,
                core: n.core.as_ref(),
                ledger: &n.ledger,
                disk_log: n.disk_log(),
            })
            .collect();
        for v in self.invariants.after_event(self.now, &nodes) {
            self.checker.on_cluster(self.now, v);
        }
    }
}
