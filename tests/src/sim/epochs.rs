//! Validator-set changes in the simulator (issue 21, `docs/design/validator-sets.md` §3):
//!
//! - a change (`Scenario::sets`: a key rotation, a spare added, a member removed) is
//!   approved by a quorum of the set of its moment and carried by a transaction through
//!   every replica's mempool; the ledger accepts it and ends the epoch `epoch_delay` blocks
//!   later;
//! - a replica's id in an epoch is its index in that epoch's set, found by its stable id
//!   (`ValidatorState::ids`); one its set does not name (a spare not added yet, a removed
//!   member) runs no core and follows the chain by copying certified blocks from a peer
//!   ahead, as the node's block sync does, and still serves the blocks it has (a replica
//!   removed at a boundary may be the only one that committed the epoch's last blocks; the
//!   others, left with a Byzantine member and no quorum of the old set, copy them from it —
//!   without that, 4 of the first 300 HotStuff seeds stalled);
//! - a replica whose ledger executed the epoch's last block retires its core at once
//!   (dropping what it committed past the boundary), and starts the next epoch's core for the
//!   new committee, anchored at [`consensus::epoch_anchor`], with no safety record,
//!   and offers it every batch not executed yet;
//! - a replica that reaches the boundary late (partitioned, crashed) cannot finish the epoch
//!   through its core, since the others retired theirs: it copies the committed blocks up to
//!   the boundary from a peer that passed it, each certificate checked against its own
//!   epoch's committee and anchor, each batch against the digests the certificate names;
//! - the checker requires every honest replica to switch after the same block to the same
//!   set, and no honest running replica to be left in an old epoch at the end.
//!
//! Negative control (`sets.late_switch`): one replica's driver keeps its old core for one
//! block past the boundary; the checker must report it.

use super::node::OUTSIDER;
use super::{Ev, Sim, SimProtocol};
use super::{SetChangeAt, SetKind};
use consensus::Committee;
use crypto::{Digest, SecretKey};
use ledger::validators::{Change, Member, SetChange, ValidatorState, approve};
use ledger::{Address, BlockInput, Payload, Store, Transaction};

/// How often a replica looks for a peer that passed an epoch boundary it has not.
pub(super) const CATCH_UP_EVERY_MS: u64 = 100;

impl<P: SimProtocol> Sim<P> {
    /// The validator state whose epoch instance `i`'s driver runs a core for: its ledger's.
    /// The negative control's driver (`sets.late_switch`) still takes the previous epoch's
    /// right after the boundary block.
    fn driver_set(&self, i: usize) -> ValidatorState {
        let ledger = &self.instances[i].ledger;
        let vs = ledger.validators();
        let h = ledger.height();
        if self.sc.sets.late_switch == Some(i) && vs.epoch > 0 && h + 1 == vs.start_height {
            return ledger
                .validators_at(h - 1)
                .ok()
                .flatten()
                .expect("the in-memory store keeps every validator state");
        }
        vs.clone()
    }

    /// The epoch, committee and anchor of the core instance `i`'s driver runs.
    pub(super) fn epoch_context(&self, i: usize) -> (u64, Committee, Digest) {
        let vs = self.driver_set(i);
        if vs.epoch == 0 {
            return (0, self.committee.clone(), self.genesis);
        }
        let committee = P::committee(vs.members.iter().map(|m| m.consensus_key).collect());
        (vs.epoch, committee, anchor(&self.genesis, &vs))
    }

    /// After instance `i` executed a block: whether its running core is not the one of the
    /// epoch its driver is in.
    pub(super) fn switch_due(&self, i: usize) -> bool {
        let inst = &self.instances[i];
        inst.up && self.driver_set(i).epoch != inst.core_epoch
    }

    /// Places instance `i` in the set `vs`: its index there, found by its stable id (or, for
    /// a spare not named before, by its key), and the member's current key (a rotated member
    /// takes its new one); [`OUTSIDER`] when `vs` does not name it.
    fn place(&mut self, i: usize, vs: &ValidatorState) {
        let inst = &mut self.instances[i];
        let at = match inst.sid {
            Some(sid) => vs.ids.iter().position(|x| *x == sid),
            None => {
                let key = inst.key.public();
                vs.members.iter().position(|m| m.consensus_key == key)
            }
        };
        let Some(p) = at else {
            inst.id = OUTSIDER;
            return;
        };
        inst.sid = Some(vs.ids[p]);
        inst.id = consensus::ReplicaId(p as u16);
        if let Some(k) = self.keys.get(&vs.members[p].consensus_key) {
            inst.key = k.clone();
        }
    }

    /// Retires instance `i`'s core and starts the one of its ledger's epoch.
    pub(super) fn switch_epoch(&mut self, i: usize) {
        self.instances[i].end_core_epoch();
        let vs = self.instances[i].ledger.validators().clone();
        let height = self.instances[i].ledger.height();
        if self.instances[i].honest() {
            let set = ValidatorState {
                pending: None,
                ..vs.clone()
            };
            self.checker
                .on_switch(self.now, i, vs.epoch, height, set.hash());
            self.set_sizes.insert(vs.epoch, vs.members.len());
        }
        self.trace
            .part(&[0xe0, i as u8])
            .part(&vs.epoch.to_le_bytes());
        self.place(i, &vs);
        self.start_instance(i);
        for d in self.instances[i].unexecuted() {
            self.input(i, consensus::Input::Payload(d));
        }
    }

    /// Change `k` of the scenario ([`SetKind`]: a rotation of one member's keys, or a spare
    /// joining, or a member leaving), approved by the first quorum of the set the most
    /// advanced honest ledger holds, submitted to every replica.
    pub(super) fn set_change(&mut self, k: usize) {
        let Some(src) = (0..self.instances.len())
            .filter(|&j| self.instances[j].honest())
            .max_by_key(|&j| self.instances[j].ledger.height())
        else {
            return;
        };
        let vs = self.instances[src].ledger.validators().clone();
        let SetChangeAt { rotate, kind, .. } = self.sc.sets.changes[k];
        let index = rotate % vs.members.len();
        let seed = |what: &[u8]| {
            crypto::hash_parts(&[&self.sc.seed.to_le_bytes(), &(k as u64).to_le_bytes(), what]).0
        };
        let network_key = SecretKey::from_seed(seed(b"network")).public();
        let op = match (kind, self.spare_to_add(&vs)) {
            (SetKind::Resize, _) if vs.members.len() > self.sc.n => SetChange::Remove {
                consensus_key: vs.members[index].consensus_key,
            },
            (SetKind::Resize, Some(spare)) => SetChange::Add(Member {
                name: format!("replica-{spare}"),
                consensus_key: self.instances[spare].key.public(),
                network_key,
                p2p_address: format!("/memory/{spare}"),
            }),
            _ => {
                let key = SecretKey::from_seed(seed(b"consensus"));
                let mut new = vs.members[index].clone();
                new.consensus_key = key.public();
                new.network_key = network_key;
                self.keys.insert(key.public(), key);
                SetChange::Rotate {
                    old_consensus_key: vs.members[index].consensus_key,
                    new,
                }
            }
        };
        let quorum = P::governance().map_or(0, |r| r.quorum(vs.members.len()));
        let approvals = (0..quorum)
            .map(|j| {
                let signer = &self.keys[&vs.members[j].consensus_key];
                (j as u16, approve(signer, &self.chain, vs.epoch, &op))
            })
            .collect();
        let change = Change {
            epoch: vs.epoch,
            op,
            approvals,
        };
        let carrier = carrier_key(self.sc.seed);
        let nonce = self.instances[src]
            .ledger
            .account(&Address::of(&carrier.public()))
            .map_or(0, |a| a.nonce);
        let tx = Transaction::sign(&carrier, &self.chain, nonce, Payload::Governance(change));
        for inst in &mut self.instances {
            inst.submit(tx.clone());
        }
    }

    /// The first spare instance no set ever named (`sid` unset) and `vs` does not name.
    fn spare_to_add(&self, vs: &ValidatorState) -> Option<usize> {
        (self.sc.n..self.instances.len()).find(|&j| {
            let key = self.instances[j].key.public();
            self.instances[j].sid.is_none() && vs.members.iter().all(|m| m.consensus_key != key)
        })
    }

    /// Instance `to` copies committed blocks, up to the end of its epoch, from a reachable
    /// peer whose ledger is in a later epoch (see the module docs); then switches. An
    /// outsider (no core: a spare not added yet, a removed member) copies from any reachable
    /// peer that is ahead, as the node's block sync does.
    pub(super) fn catch_up(&mut self, to: usize) {
        self.schedule(self.now + CATCH_UP_EVERY_MS, Ev::CatchUp { inst: to });
        let outsider = self.instances[to].id == OUTSIDER;
        if !self.instances[to].up || (!outsider && self.instances[to].core.is_none()) {
            return;
        }
        let epoch = self.instances[to].ledger.validators().epoch;
        let height = self.instances[to].ledger.height();
        let Some(src) = (0..self.instances.len()).find(|&j| {
            let other = &self.instances[j].ledger;
            j != to
                && self.reachable(to, j)
                && (other.validators().epoch > epoch || (outsider && other.height() > height))
        }) else {
            return;
        };
        let mut applied = 0;
        while self.instances[to].ledger.validators().epoch == epoch {
            let h = self.instances[to].ledger.height() + 1;
            let Some(b) = self.instances[src].ledger.store().block(h).ok().flatten() else {
                break;
            };
            let Some(input) = self.checked_input(to, &b) else {
                self.checker.report(
                    self.now,
                    format!(
                        "instance {to} refused block {h} from instance {src} while catching up \
                         to an epoch boundary"
                    ),
                );
                return;
            };
            let payload = P::certified_payload(&b.certificate).map(|p| p.payload);
            let block = self.instances[to].execute(input);
            self.instances[to].batches_executed(&payload.unwrap_or_default());
            self.trace.part(&[0xc1, to as u8]).part(&block.hash().0);
            if self.instances[to].honest() {
                let supply = self.instances[to]
                    .ledger
                    .total_supply()
                    .expect("in-memory store cannot fail");
                self.checker.on_commit(self.now, to, &block, supply);
            }
            applied += 1;
        }
        if applied > 0 {
            if !outsider {
                self.catch_ups += 1;
            }
            if self.switch_due(to) {
                self.switch_epoch(to);
            } else if !outsider {
                // The core restarts from the ledger's committed point (it keeps its record).
                self.instances[to].retire_core();
                self.start_instance(to);
            }
        }
    }

    /// `b` as instance `to` would execute it, if its certificate verifies against `to`'s
    /// committee and anchor, links to `to`'s last block, and names `b`'s batches.
    fn checked_input(&self, to: usize, b: &ledger::Block) -> Option<BlockInput> {
        let inst = &self.instances[to];
        if !P::verify_certificate(&b.certificate, &inst.committee, &inst.anchor) {
            return None;
        }
        let named = P::certified_payload(&b.certificate)?;
        let h = inst.ledger.height();
        if named.height.is_some_and(|n| n != h + 1) || b.header.parent != inst.ledger.tip() {
            return None;
        }
        if let Some(parent) = named.parent {
            let previous = if h + 1 == inst.ledger.validators().start_height {
                inst.anchor
            } else {
                let last = inst.ledger.store().block(h).ok().flatten()?;
                P::certified_payload(&last.certificate)?.id
            };
            if parent != previous {
                return None;
            }
        }
        let payload = named.payload;
        let mut txs = b.txs.iter();
        if b.batch_sizes.len() != payload.len() {
            return None;
        }
        for (size, digest) in b.batch_sizes.iter().zip(&payload) {
            let batch: Vec<Transaction> = txs.by_ref().take(*size as usize).cloned().collect();
            if crypto::hash(&crypto::codec::encode(&batch)) != *digest {
                return None;
            }
        }
        Some(BlockInput::of(b))
    }

    /// At the end of a run: no honest running replica is left in an old epoch, and every
    /// one its set names runs a core (an added replica joined; an outsider runs none).
    pub(super) fn check_epochs_at_end(&mut self) {
        for i in 0..self.instances.len() {
            let inst = &self.instances[i];
            let ledger_epoch = inst.ledger.validators().epoch;
            if !inst.honest() || !inst.up {
                continue;
            }
            if inst.core.is_some() && inst.core_epoch != ledger_epoch {
                let core_epoch = inst.core_epoch;
                self.checker
                    .stale_core(self.now, i, core_epoch, ledger_epoch);
            }
            let named = inst
                .sid
                .is_some_and(|sid| inst.ledger.validators().ids.contains(&sid));
            if !self.sc.sets.changes.is_empty() && named != inst.core.is_some() {
                let (id, core) = (inst.id, inst.core.is_some());
                self.checker.violations.push(format!(
                    "t={}ms: instance {i} (id {id:?}) is {}named by its set in epoch \
                     {ledger_epoch} but {} a core",
                    self.now,
                    if named { "" } else { "not " },
                    if core { "runs" } else { "runs no" },
                ));
            }
        }
    }
}

/// How many epochs grew their set over the previous epoch's (`grew`), or shrank it.
pub(super) fn resizes(sizes: &std::collections::BTreeMap<u64, usize>, grew: bool) -> u64 {
    let v: Vec<usize> = sizes.values().copied().collect();
    v.windows(2)
        .filter(|w| (w[1] > w[0]) == grew && w[1] != w[0])
        .count() as u64
}

/// The anchor of the epoch `vs` is in: its set as the epoch started (no pending change).
fn anchor(genesis: &Digest, vs: &ValidatorState) -> Digest {
    let start = ValidatorState {
        pending: None,
        ..vs.clone()
    };
    consensus::epoch_anchor(genesis, vs.epoch, &start.hash())
}

/// The funded account that carries the scenario's set changes.
pub(super) fn carrier_key(seed: u64) -> SecretKey {
    SecretKey::from_seed(crypto::hash_parts(&[b"carrier", &seed.to_le_bytes()]).0)
}

/// The genesis members of a simulated set: the replicas' consensus keys, in order.
pub(super) fn members(keys: &[SecretKey], seed: u64) -> Vec<ledger::validators::Member> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| ledger::validators::Member {
            name: format!("replica-{i}"),
            consensus_key: k.public(),
            network_key: SecretKey::from_seed(
                crypto::hash_parts(&[b"network", &seed.to_le_bytes(), &[i as u8]]).0,
            )
            .public(),
            p2p_address: format!("/memory/{i}"),
        })
        .collect()
}
