//! Carrying out what a core asks ([`consensus::Action`]): sends through the simulated
//! network (rewritten first by a Byzantine replica), durable writes, timers, reads, and
//! commits, which execute on the replica's ledger and are checked.

use super::{Behaviour, Ev, Sim, SimProtocol, protocol};
use rand::Rng;

impl<P: SimProtocol> Sim<P> {
    pub(super) fn apply(&mut self, i: usize, actions: Vec<consensus::Action<P::Msg>>) {
        use consensus::Action;
        for a in actions {
            match a {
                Action::Send { to, msg } => self.route(i, protocol::Dest::To(to), msg),
                Action::Broadcast { msg } => self.route(i, protocol::Dest::All, msg),
                Action::Persist { seq, what } => {
                    if self.instances[i].persist(seq, what) {
                        let (lo, hi) = self.sc.fsync_ms;
                        let at = self.now + self.rng.gen_range(lo..=hi);
                        let epoch = self.instances[i].epoch;
                        self.schedule(at, Ev::Fsync { inst: i, epoch });
                    }
                }
                Action::Commit(c) => {
                    self.commit(i, c);
                    if self.switch_due(i) {
                        // The epoch ended: what the old core says after its last block is
                        // dropped with it.
                        self.switch_epoch(i);
                        return;
                    }
                }
                Action::ReadReady { id, index } => self.read_answered(i, id, Some(index)),
                Action::ReadFailed { id } => self.read_answered(i, id, None),
                Action::SetTimer { id, after_ms } => {
                    let generation = self.instances[i].set_timer(id);
                    self.schedule(
                        self.now + after_ms,
                        Ev::Timer {
                            inst: i,
                            id,
                            generation,
                        },
                    );
                }
            }
        }
        self.feed_executed(i);
    }

    /// Tells the core of every block its ledger executed, one at a time and in height order,
    /// once the actions that committed them are carried out. Blocks those inputs commit in
    /// turn are queued behind and told by the same loop (never out of order by recursion).
    fn feed_executed(&mut self, i: usize) {
        if std::mem::replace(&mut self.instances[i].feeding, true) {
            return;
        }
        while let Some((height, state_root)) = self.instances[i].executed.pop_front() {
            self.input(i, consensus::Input::Executed { height, state_root });
        }
        self.instances[i].feeding = false;
    }

    fn commit(&mut self, i: usize, c: consensus::Committed) {
        if self.instances[i].core_epoch != self.instances[i].ledger.validators().epoch
            && self.sc.sets.late_switch != Some(i)
        {
            // Past the epoch's last block: dropped with the old core (the negative control's
            // late switch executes it).
            return;
        }
        self.instances[i].batches_executed(&c.payload);
        let (committee, genesis) = (&self.instances[i].committee, &self.instances[i].anchor);
        let cert_ok = *self
            .certificates
            .entry(crypto::hash(&c.certificate))
            .or_insert_with(|| P::verify_certificate(&c.certificate, committee, genesis));
        let batches = &self.batches;
        let input = ::node::validator::block_input(c, &self.instances[i].committee, |d| {
            batches.get(d).cloned()
        });
        let block = self.instances[i].execute(input);
        self.instances[i]
            .executed
            .push_back((block.header.height, block.header.state_root));
        self.trace.part(&[0xc0, i as u8]).part(&block.hash().0);
        if self.instances[i].honest() {
            if !cert_ok {
                self.checker.violations.push(format!(
                    "t={}ms: instance {i} committed height {} with an invalid certificate",
                    self.now, block.header.height
                ));
            }
            let supply = self.instances[i]
                .ledger
                .total_supply()
                .expect("in-memory store cannot fail");
            self.checker.on_commit(self.now, i, &block, supply);
        }
    }

    fn read_answered(&mut self, i: usize, id: u64, index: Option<u64>) {
        if let Some(v) = self.reads.answered(self.now, i, id, index) {
            self.checker.violations.push(v);
        }
    }

    fn route(&mut self, from: usize, dest: protocol::Dest, msg: P::Msg) {
        let inst = &self.instances[from];
        let outgoing = match inst.byz {
            Some(behaviour) if behaviour != Behaviour::Twin => {
                let ctx = protocol::ByzCtx {
                    behaviour,
                    key: &inst.key,
                    committee: &inst.committee,
                    genesis: &inst.anchor,
                    seen: &inst.seen,
                };
                P::misbehave(&ctx, dest, msg, &mut self.rng)
            }
            _ => vec![(dest, msg)],
        };
        let sender = self.instances[from].id;
        let honest = self.instances[from].honest();
        for (dest, msg) in outgoing {
            if honest {
                for (slot, what) in P::votes_of(&msg) {
                    let epoch = self.instances[from].core_epoch;
                    self.checker.on_vote(self.now, epoch, sender, slot, what);
                }
            }
            let view = P::view_of(&msg);
            for to in 0..self.instances.len() {
                let id = self.instances[to].id;
                let wanted = id != sender
                    && id != super::node::OUTSIDER
                    && match &dest {
                        protocol::Dest::To(r) => *r == id,
                        protocol::Dest::All => true,
                        protocol::Dest::Some(set) => set.contains(&id),
                    };
                if !wanted || self.sc.network.cut(from, to, self.now, view) {
                    continue;
                }
                for d in self.sc.network.delays(self.now, &mut self.rng) {
                    self.schedule(
                        self.now + d,
                        Ev::Deliver {
                            to,
                            from: sender,
                            msg: msg.clone(),
                        },
                    );
                }
            }
        }
    }
}
