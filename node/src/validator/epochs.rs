//! Validator-set epochs in the driver (issue 21; `docs/design/validator-sets.md` §3): one
//! consensus instance per epoch, as the simulator's `sim/epochs.rs` does it.
//!
//! When the ledger executes the last block of the core's epoch (after it,
//! [`ledger::Ledger::validators`] names a later epoch), the driver executes nothing more that
//! the old core commits (those blocks lie above the boundary, and every honest validator
//! drops the same ones), retires the core and builds the next epoch's: the new committee, the
//! new anchor ([`consensus::epoch_anchor`]), this validator's index and key in the new set,
//! no safety record (or the one stored for that epoch, after a restart), heights going on
//! from the boundary. The batches of the dropped commits, and those the old core had not
//! proposed, are offered to the new core. Consensus frames carry their epoch: an older
//! epoch's are dropped, a later one's held (bounded) until this validator gets there.
//!
//! # To ensure correctness
//! - The boundary is a function of committed history (`ValidatorState::after_block`), so
//!   every honest validator switches after the same block to the same set.
//! - A safety record is stored per epoch ([`CoreParams::safety_key`]); a core never gets
//!   another epoch's, so views and sequence numbers may start again.
//! - A block's certificate is checked against the set of its height's epoch
//!   ([`Driver::set_for_height`]), never simply the current one.
//! - A validator none of whose keys is in the new set keeps executing blocks it syncs but
//!   feeds its core nothing and signs nothing ([`Driver::is_member`]).
//!
//! [`CoreParams::safety_key`]: super::protocol::CoreParams::safety_key

use super::driver::{Driver, DriverError, Res};
use super::protocol::Protocol;
use super::wire::MAX_WIRE_BYTES;
use consensus::attest::{Attestor, HeaderCert};
use consensus::{Action, Committee, Core, ReplicaId};
use crypto::codec;
use crypto::{Digest, SecretKey};
use ledger::Block;
use ledger::validators::ValidatorState;
use std::collections::VecDeque;

/// Consensus frames of a later epoch held until this validator gets there, at most (the
/// oldest go first).
pub(super) const MAX_FUTURE_FRAMES: usize = 1024;
/// Heights after the boundary during which the old set's header votes are still collected.
const OLD_ATTESTATION_HEIGHTS: u64 = 256;

/// The set that rules one epoch, as certificate checks need it.
#[derive(Clone, Debug)]
pub struct EpochSet {
    pub epoch: u64,
    /// The epoch's first ledger height.
    pub start_height: u64,
    pub committee: Committee,
    /// What the epoch's instance starts from and signs ([`consensus::epoch_anchor`]).
    pub anchor: Digest,
}

impl EpochSet {
    /// The epoch `vs` is in (a pending change in `vs` does not matter: its members rule until
    /// the epoch ends). Epoch 0 is `genesis_committee` (the genesis set with the protocol's
    /// fault model) anchored at the genesis hash.
    pub fn of(
        vs: &ValidatorState,
        genesis: &Digest,
        genesis_committee: &Committee,
    ) -> Result<EpochSet, DriverError> {
        if vs.epoch == 0 {
            return Ok(EpochSet {
                epoch: 0,
                start_height: 1,
                committee: genesis_committee.clone(),
                anchor: *genesis,
            });
        }
        let start = ValidatorState {
            pending: None,
            ..vs.clone()
        };
        let keys = vs.members.iter().map(|m| m.consensus_key).collect();
        let committee = Committee::bft(keys).map_err(|e| {
            DriverError::Safety(format!("the validator set of epoch {}: {e}", vs.epoch))
        })?;
        Ok(EpochSet {
            epoch: vs.epoch,
            start_height: vs.start_height,
            committee,
            anchor: consensus::epoch_anchor(genesis, vs.epoch, &start.hash()),
        })
    }
}

/// This validator's replica id in `vs` and the key that set names, if one of `keys` is a
/// member.
pub(super) fn place_in(vs: &ValidatorState, keys: &[SecretKey]) -> Option<(ReplicaId, SecretKey)> {
    keys.iter().find_map(|k| {
        vs.member(&k.public())
            .map(|(i, _)| (ReplicaId(i as u16), k.clone()))
    })
}

/// What a numbering was given out for: the epoch, the height that accepted the pending
/// change, and (Raft) the core's voters and learners.
pub(super) type PeersSeen = (u64, Option<u64>, Option<(Vec<u16>, Vec<u16>)>);

/// Per-epoch state of the driver beyond the core (`M`: the protocol's message).
pub(super) struct Epochs<M> {
    /// The set the core runs.
    pub(super) set: EpochSet,
    /// Epoch 0's committee (the genesis set under the protocol's fault model).
    pub(super) genesis_committee: Committee,
    /// Every consensus key this validator holds (the genesis one, and keys a rotation may
    /// name).
    pub(super) keys: Vec<SecretKey>,
    /// Whether one of `keys` is in `set`.
    pub(super) member: bool,
    /// Frames of later epochs: (sender's network key, epoch, message). Held by key, not by
    /// index: the sender's index may be another one in the epoch the frame belongs to.
    pub(super) future: VecDeque<(Option<crypto::PublicKey>, u64, M)>,
    /// The previous epoch's header attestor, for heights up to its last block.
    pub(super) old_attestor: Option<(u64, Attestor)>,
    /// Batches to offer to a new core once it has no persist outstanding.
    pub(super) reoffer: VecDeque<Digest>,
    /// What the last [`Driver::take_network_change`] looked at: (epoch, height that accepted
    /// the pending change).
    pub(super) peers_seen: Option<PeersSeen>,
    /// The network keys of the numbering the last [`Driver::take_network_change`] gave out:
    /// the one frames handed to the driver are numbered in.
    pub(super) numbered: Vec<crypto::PublicKey>,
    /// Batches offered while this validator was outside the set (no core heard them), in
    /// arrival order, at most [`MAX_UNOFFERED`] (the oldest go first). When an epoch makes
    /// it a member, its new core gets them first: as a leader it must not propose a sender's
    /// later batch without the earlier one it also received.
    pub(super) unoffered: VecDeque<Digest>,
    /// Keys of former members, for removed-key evidence (`evidence.rs`).
    pub(super) former: super::evidence::FormerKeys,
    /// Raft: every member this validator has seen, by stable id (`super::raft_set`).
    pub(super) known: std::collections::BTreeMap<u16, ledger::validators::Member>,
    /// Raft: a later set than its ledger's that a peer named, and when this validator last
    /// asked (`super::raft_set`).
    pub(super) advertised: Option<ledger::validators::ValidatorState>,
    pub(super) asked_set_ms: u64,
}

/// Batches a validator outside the set remembers for its first core, at most.
pub(super) const MAX_UNOFFERED: usize = 16_384;

impl<M> Epochs<M> {
    pub(super) fn hold_unoffered(&mut self, d: Digest) {
        if self.unoffered.len() >= MAX_UNOFFERED {
            self.unoffered.pop_front();
        }
        self.unoffered.push_back(d);
    }
}

impl<P: Protocol> Driver<P> {
    /// The epoch the core runs.
    pub fn epoch(&self) -> u64 {
        self.epochs.set.epoch
    }

    /// Whether this validator is in the current epoch's set (it votes and proposes). A Raft
    /// validator's core also runs outside the set (`super::raft_set`), so there the ledger
    /// says.
    pub fn is_member(&self) -> bool {
        if P::EPOCH_CORES {
            return self.epochs.member;
        }
        let vs = self.ledger.validators();
        vs.members.is_empty()
            || self
                .epochs
                .keys
                .iter()
                .any(|k| vs.member(&k.public()).is_some())
    }

    /// Whether a change accepted on the chain removes this validator at the end of the epoch:
    /// it is cut off then, so transactions it took now might never be ordered.
    pub fn leaving(&self) -> bool {
        let vs = self.ledger.validators();
        vs.pending.as_ref().is_some_and(|p| match &p.op {
            ledger::validators::SetChange::Remove { consensus_key } => {
                *consensus_key == self.params.key.public()
            }
            _ => false,
        })
    }

    /// The validators this one should be connected to, with their indices: the current set,
    /// and the validator a pending change adds (so that it can connect and sync before its
    /// epoch). `Some` when the set or the pending change moved since the last call (always
    /// on the first), `None` otherwise and on a ledger that does not track its set.
    ///
    /// The caller numbers peers' frames by this list from then on (the run loop gives it to
    /// the transport and maps senders' network keys through it) and addresses `Out::Send` by
    /// it: a validator's index in the current set, as the core uses it.
    pub fn take_network_change(&mut self) -> Option<Vec<crate::net::PeerInfo>> {
        let vs = self.ledger.validators();
        // Raft also follows its core's configuration: a removed server stays connected
        // until the configuration without it is in the log.
        let seen = (
            vs.epoch
                .max(self.epochs.advertised.as_ref().map_or(0, |a| a.epoch)),
            vs.pending.as_ref().map(|p| p.accepted_at),
            P::raft_config(&self.core).map(|c| (c.voters, c.learners)),
        );
        if vs.members.is_empty() || self.epochs.peers_seen.as_ref() == Some(&seen) {
            return None;
        }
        self.epochs.peers_seen = Some(seen);
        let peers = self.numbering();
        self.epochs.numbered = peers.iter().map(|p| p.network_key).collect();
        Some(peers)
    }

    /// The current numbering of validators: the set's members in order, then the one a
    /// pending change adds. Empty on a ledger that does not track its set.
    fn numbering(&self) -> Vec<crate::net::PeerInfo> {
        if !P::EPOCH_CORES {
            return self.raft_numbering();
        }
        let vs = self.ledger.validators();
        let joining = vs.pending.as_ref().and_then(|p| match &p.op {
            ledger::validators::SetChange::Add(m) => Some(m),
            _ => None,
        });
        vs.members
            .iter()
            .chain(joining)
            .enumerate()
            .map(|(i, m)| crate::net::PeerInfo {
                index: i as u16,
                network_key: m.network_key,
                address: m.p2p_address.clone(),
            })
            .collect()
    }

    /// Whether the ledger has executed the last block of the core's epoch.
    pub(super) fn epoch_ended(&self) -> bool {
        self.ledger.validators().epoch != self.epochs.set.epoch
    }

    /// The set whose certificates prove block `height`: the epoch containing it, read from
    /// the store's never-pruned validator states; `None` if this validator cannot know it yet
    /// (the block lies past the end of the ledger's current epoch) or no longer can (below a
    /// restored snapshot).
    pub(super) fn set_for_height(&self, height: u64) -> Result<Option<EpochSet>, DriverError> {
        let vs = self.ledger.validators();
        let genesis = &self.ledger.chain().genesis_hash;
        if height > self.ledger.height() {
            if vs
                .pending
                .as_ref()
                .is_some_and(|p| height > p.effective_after)
            {
                return Ok(None);
            }
            if vs.epoch == self.epochs.set.epoch {
                return Ok(Some(self.epochs.set.clone()));
            }
            return EpochSet::of(vs, genesis, &self.epochs.genesis_committee).map(Some);
        }
        if vs.epoch == self.epochs.set.epoch && height >= self.epochs.set.start_height {
            return Ok(Some(self.epochs.set.clone()));
        }
        match self.ledger.validators_at(height.saturating_sub(1))? {
            Some(at) => EpochSet::of(&at, genesis, &self.epochs.genesis_committee).map(Some),
            None => Ok(None),
        }
    }

    /// Retires the core after its epoch's last block and builds the next epoch's (see the
    /// module docs). Returns the new core's first actions, for [`Driver::run`] to carry out;
    /// the batches to offer it again wait in `reoffer` until no persist is outstanding.
    pub(super) fn switch_core(&mut self, now: u64) -> Result<Vec<Action<P::Message>>, DriverError> {
        let vs = self.ledger.validators().clone();
        let set = EpochSet::of(
            &vs,
            &self.ledger.chain().genesis_hash,
            &self.epochs.genesis_committee,
        )?;
        let last = set.start_height.saturating_sub(1);
        // In the order they were first ordered: the batches of the dropped commits (the old
        // core committed them above the boundary; no honest validator executes those
        // blocks), then what the old core still had pending. A sender's later batch must
        // never be offered before its earlier one: the later nonces would fail
        // (`nonce_too_high`) and the transfers they carry with them.
        let mut again = Vec::new();
        for c in self.commits.drain(..) {
            for d in c.payload {
                self.committed_batches.remove(&d);
                again.push(d);
            }
        }
        // A validator that was outside the set had no core: what it received meanwhile.
        let unoffered = std::mem::take(&mut self.epochs.unoffered);
        let mut seen: std::collections::HashSet<Digest> = again.iter().copied().collect();
        again.extend(
            P::pending_payload(&self.core)
                .into_iter()
                .chain(unoffered)
                .filter(|d| seen.insert(*d)),
        );
        let place = place_in(&vs, &self.epochs.keys);
        tracing::info!(
            epoch = set.epoch,
            after = last,
            validators = set.committee.n(),
            member = place.is_some(),
            index = place.as_ref().map(|(id, _)| id.0),
            "validator set changed: epoch {} starts after block {last}",
            set.epoch
        );
        if let Some(a) = self.attestor.take() {
            self.epochs.old_attestor = Some((last, a));
        }
        if let Some((me, key)) = &place {
            self.params.me = *me;
            self.params.key = key.clone();
            if P::ATTESTS_HEADERS {
                self.attestor = Some(Attestor::new(
                    key.clone(),
                    set.committee.clone(),
                    self.ledger.chain().genesis_hash,
                    last,
                ));
            }
        }
        self.params.committee = set.committee.clone();
        self.params.genesis = set.anchor;
        self.params.epoch = set.epoch;
        self.params.start_height = set.start_height;
        self.committee = set.committee.clone();
        self.epochs.set = set;
        self.epochs.member = place.is_some();
        self.stats.epoch_switches += 1;
        // Slots (views, sequence numbers) start again: old statements are not evidence
        // against new ones.
        self.watcher = Default::default();
        // Proposals held for batches belong to the old instance.
        self.held.clear();
        self.epochs.reoffer.extend(again);
        self.core = P::build(&self.params, &self.ledger, None)?;
        self.gate.reset();
        Ok(if self.epochs.member {
            self.core.start(now)
        } else {
            Vec::new()
        })
    }

    /// The next batch to offer a new core again, if any is still worth offering: `Some`
    /// actions, or `None` when the queue is empty.
    pub(super) fn reoffer_next(&mut self, now: u64) -> Option<Vec<Action<P::Message>>> {
        while let Some(d) = self.epochs.reoffer.pop_front() {
            if !self.epochs.member || self.committed_batches.contains(&d) {
                continue;
            }
            if let Some(acts) = self.offer_in_order(now, d) {
                return Some(acts);
            }
        }
        None
    }

    /// Sorts a consensus frame by its epoch: `Some(msg)` if it belongs to the core; a later
    /// epoch's is held, an older one's dropped.
    pub(super) fn route(
        &mut self,
        from: ReplicaId,
        epoch: u64,
        msg: P::Message,
    ) -> Option<P::Message> {
        if !P::EPOCH_CORES {
            // One Raft core for every epoch (`super::raft_set`).
            return Some(msg);
        }
        let current = self.epochs.set.epoch;
        if epoch == current {
            return self.epochs.member.then_some(msg);
        }
        if epoch < current {
            self.stats.stale_epoch_frames += 1;
            return None;
        }
        if self.epochs.future.len() >= MAX_FUTURE_FRAMES {
            self.epochs.future.pop_front();
            self.stats.stale_epoch_frames += 1;
        }
        let key = self.epochs.numbered.get(from.0 as usize).copied();
        self.epochs.future.push_back((key, epoch, msg));
        None
    }

    /// Frames held for the epoch the core has now reached, handled in arrival order.
    pub(super) fn replay_future(&mut self, now: u64) -> Res {
        let current = self.epochs.set.epoch;
        if !self.epochs.future.iter().any(|(_, e, _)| *e <= current) {
            return Ok(Vec::new());
        }
        let held = std::mem::take(&mut self.epochs.future);
        // The sender's index now (the run loop renumbers when this step is done).
        let numbering = self.numbering();
        let mut out = Vec::new();
        for (key, epoch, msg) in held {
            if epoch > current {
                self.epochs.future.push_back((key, epoch, msg));
                continue;
            }
            if epoch < current || !self.epochs.member {
                continue;
            }
            let Some(from) = key.and_then(|k| numbering.iter().find(|p| p.network_key == k)) else {
                self.stats.stale_epoch_frames += 1;
                continue;
            };
            out.extend(self.on_consensus(now, ReplicaId(from.index), msg)?);
        }
        Ok(out)
    }

    /// The attestor for header votes at `height`: the previous epoch's up to its last block
    /// (dropped once the chain is well past it), the current one's above.
    pub(super) fn attestor_for(&mut self, height: u64) -> Option<&mut Attestor> {
        if let Some((last, _)) = &self.epochs.old_attestor {
            let last = *last;
            if self.ledger.height() > last + OLD_ATTESTATION_HEIGHTS {
                self.epochs.old_attestor = None;
            } else if height <= last {
                return self.epochs.old_attestor.as_mut().map(|(_, a)| a);
            }
        }
        self.attestor.as_mut()
    }

    /// The header certificates this validator holds for the last of `blocks` and for each
    /// that ends a validator-set epoch (see `Wire::Blocks`).
    pub(super) fn proving_certs(
        &self,
        blocks: &[Block],
    ) -> Result<Vec<(u64, Vec<u8>)>, DriverError> {
        let mut certs = Vec::new();
        let store = self.ledger.store();
        let mut epoch = match blocks.first() {
            Some(b) => self
                .ledger
                .validators_at(b.header.height - 1)?
                .map(|v| v.epoch),
            None => return Ok(certs),
        };
        for (i, b) in blocks.iter().enumerate() {
            let h = b.header.height;
            let after = self.ledger.validators_at(h)?.map(|v| v.epoch);
            let ends_epoch = after != epoch;
            epoch = after;
            if (ends_epoch || i + 1 == blocks.len())
                && let Some(c) = store.header_cert(h)?
            {
                certs.push((h, c));
            }
        }
        Ok(certs)
    }

    /// Whether `certs` holds a certificate of `set` on block `b`'s header at its height (a
    /// quorum of the set stored it as committed; see `Driver::on_blocks`).
    pub(super) fn header_certified(
        &self,
        b: &Block,
        set: &EpochSet,
        certs: &[(u64, Vec<u8>)],
    ) -> bool {
        let h = b.header.height;
        certs.iter().any(|(at, bytes)| {
            *at == h
                && codec::decode::<HeaderCert>(bytes, MAX_WIRE_BYTES, "header certificate")
                    .is_ok_and(|c| {
                        c.verify(
                            &set.committee,
                            &self.ledger.chain().genesis_hash,
                            h,
                            &b.hash(),
                        )
                        .is_ok()
                    })
        })
    }
}
