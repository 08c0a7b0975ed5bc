//! Raft across validator-set changes (issue 21; `docs/design/validator-sets.md` §5b): one
//! core for the life of the validator, its servers named by stable id
//! ([`ValidatorState::ids`]).
//!
//! HotStuff and PBFT build a fresh core per epoch (`super::epochs`). A Raft core cannot be
//! replaced at an epoch boundary: its log, term and configuration entries name servers by
//! id, and a follower applies the boundary later than its leader while it must still take
//! the leader's appends. So at each boundary the driver only tells the core what changed: the
//! committee grows by the new member's key, and the ledger's members are the target
//! (`Protocol::follow_members`: `Raft::set_committee`, `Raft::set_members`). The leader then
//! steers its configuration there one server at a time: a new member first as a learner,
//! promoted once caught up; a removed leader hands over first.
//!
//! # To ensure correctness
//! - Ids never change and are never reused (the ledger's rule), and a validator keeps the id
//!   it had: a removed server goes on answering as itself until the configuration without it
//!   is in its leader's log, and a removed leader can hand over instead of vanishing.
//! - The core is one instance in every epoch: `params.epoch` stays 0 (its safety record stays
//!   under one key, its frames carry epoch 0) and frames are never routed by epoch.
//! - A validator whose keys its ledger does not name yet (a joiner that has not reached the
//!   block that adds it) runs its core as [`OUTSIDER`]: no voter has that id, so it never
//!   campaigns and counts for nothing; it takes the leader's appends or snapshot as a
//!   learner. Once its ledger names it, its core is rebuilt from the store with its id.
//! - The transport numbers peers by stable id: the members, a pending joiner (as a learner it
//!   needs the log before it can be promoted), and servers the ledger removed that are still
//!   in the core's configuration (until the configuration without them is in its log).
//! - A joiner's ledger starts at genesis and may know none of the current members, the
//!   leader among them: until its ledger names it, it asks the validators it knows for
//!   their set (`Wire::SetRequest`, at most once a second) and connects to the members a
//!   later set names (its committee learns their keys, so its core takes their appends).
//!   Raft trusts its peers' word (crash faults only); a BFT joiner verifies the epoch links
//!   instead (`super::statesync`).
//! - Raft's configuration at the compaction point, and at an installed snapshot's height, is
//!   stored ([`super::protocol::RAFT_CONFIG_KEY`]) in the same write as the compaction or
//!   the rebase; recovery takes it, or a later one from the stored log up to the applied
//!   height.

use super::driver::{Driver, DriverError};
use super::epochs::EpochSet;
use super::protocol::Protocol;
use consensus::{Action, Committee, Core, ReplicaId};
use crypto::{PublicKey, SecretKey};
use ledger::validators::{Member, ValidatorState};
use std::collections::{BTreeMap, BTreeSet};

/// The id a Raft core runs with while its ledger names none of this validator's keys.
pub const OUTSIDER: ReplicaId = ReplicaId(u16::MAX);

/// How often a joiner asks a peer for the current set, ms.
const SET_ASK_MS: u64 = 1000;

/// A key nothing verifies under (the identity point, of small order: strict verification
/// refuses it), for an id this validator never learned the key of (a server removed before
/// its store began). Its messages are still taken from the transport, which authenticated
/// them; only the entries it signed cannot be checked here.
fn no_key() -> PublicKey {
    let mut b = [0u8; 32];
    b[0] = 1;
    PublicKey(b)
}

/// The Raft committee for `vs`: a key for every stable id below `vs.next_id` (and below the
/// genesis size, and every id in `known`): the member's, else one remembered in `known`, else the genesis one, else
/// [`no_key`]. It only grows as the ledger adds members. A ledger that does not track its
/// set runs `genesis` as given.
pub(super) fn raft_committee(
    vs: &ValidatorState,
    known: &BTreeMap<u16, Member>,
    genesis: &Committee,
) -> Result<Committee, DriverError> {
    if vs.members.is_empty() {
        return Ok(genesis.clone());
    }
    let current: BTreeMap<u16, &Member> = vs.by_id().collect();
    // Every id this validator has seen (a later set a peer named included): the committee
    // never shrinks.
    let seen = known
        .keys()
        .next_back()
        .map_or(0, |id| usize::from(*id) + 1);
    let n = usize::from(vs.next_id).max(genesis.n()).max(seen);
    let keys: Vec<PublicKey> = (0..n)
        .map(|i| {
            let id = i as u16;
            current
                .get(&id)
                .map(|m| m.consensus_key)
                .or_else(|| known.get(&id).map(|m| m.consensus_key))
                .or_else(|| genesis.key(ReplicaId(id)).copied())
                .unwrap_or_else(no_key)
        })
        .collect();
    let f = n.saturating_sub(1) / 2;
    Committee::new_cft(keys, f, n / 2 + 1)
        .map_err(|e| DriverError::Safety(format!("the raft committee of {n} ids: {e}")))
}

/// This validator's stable id and key: where one of `keys` is a member of `vs`, else where
/// `known` (members this validator saw earlier) names one — a removed server keeps its id.
pub(super) fn raft_place(
    vs: &ValidatorState,
    known: &BTreeMap<u16, Member>,
    keys: &[SecretKey],
) -> Option<(ReplicaId, SecretKey)> {
    keys.iter()
        .find_map(|k| vs.id_of(&k.public()).map(|id| (ReplicaId(id), k.clone())))
        .or_else(|| {
            keys.iter().find_map(|k| {
                known
                    .iter()
                    .find(|(_, m)| m.consensus_key == k.public())
                    .map(|(id, _)| (ReplicaId(*id), k.clone()))
            })
        })
}

/// The members of `vs` by stable id, and those of the set before it (`previous`): a
/// restarted validator must still reach a server removed at the last boundary while the
/// configuration without it is not yet in the log.
pub(super) fn known_members(
    vs: &ValidatorState,
    previous: Option<&ValidatorState>,
) -> BTreeMap<u16, Member> {
    let mut known = BTreeMap::new();
    for s in previous.into_iter().chain(std::iter::once(vs)) {
        for (id, m) in s.by_id() {
            known.insert(id, m.clone());
        }
    }
    known
}

/// The set the driver tracks for a Raft chain: the ledger's epoch (so that the driver sees
/// the next boundary), the stable-id committee, the genesis hash as anchor (one instance).
pub(super) fn raft_epoch_set(
    vs: &ValidatorState,
    known: &BTreeMap<u16, Member>,
    genesis_committee: &Committee,
    genesis: &crypto::Digest,
) -> Result<EpochSet, DriverError> {
    Ok(EpochSet {
        epoch: vs.epoch,
        start_height: vs.start_height,
        committee: raft_committee(vs, known, genesis_committee)?,
        anchor: *genesis,
    })
}

impl<P: Protocol> Driver<P> {
    /// Raft: the ledger's set moved (an epoch ended, or a snapshot replaced the ledger).
    /// Remembers the new members, grows the committee, and either tells the core (the
    /// members are its target) or, with `rebuild` or when this validator's id changed (a
    /// joiner its ledger now names), rebuilds the core from the store with its id.
    pub(super) fn raft_follow(
        &mut self,
        now: u64,
        rebuild: bool,
    ) -> Result<Vec<Action<P::Message>>, DriverError> {
        let vs = self.ledger.validators().clone();
        for (id, m) in vs.by_id() {
            self.epochs.known.insert(id, m.clone());
        }
        let genesis = self.ledger.chain().genesis_hash;
        let set = raft_epoch_set(
            &vs,
            &self.epochs.known,
            &self.epochs.genesis_committee,
            &genesis,
        )?;
        let place = if vs.members.is_empty() {
            Some((self.params.me, self.params.key.clone()))
        } else {
            raft_place(&vs, &self.epochs.known, &self.epochs.keys)
        };
        let (me, key) = place.unwrap_or((OUTSIDER, self.params.key.clone()));
        let rebuild = rebuild || me != self.params.me;
        if set.epoch != self.epochs.set.epoch {
            self.stats.epoch_switches += 1;
            tracing::info!(
                epoch = set.epoch,
                after = set.start_height.saturating_sub(1),
                members = vs.members.len(),
                id = (me != OUTSIDER).then_some(me.0),
                "validator set changed: raft steers its configuration to the new members"
            );
        }
        self.params.me = me;
        self.params.key = key;
        self.params.committee = set.committee.clone();
        self.committee = set.committee.clone();
        self.epochs.set = set;
        if rebuild {
            // The new core starts from the ledger's height: commits the old one made above
            // it come again from the durable log (executing them twice would fork), and the
            // batches it had not proposed are offered again once no persist is outstanding.
            self.commits.clear();
            let safety = P::safety_bytes(&self.core);
            let pending = P::pending_payload(&self.core);
            self.core = P::build(&self.params, &self.ledger, Some(safety))?;
            self.gate.reset();
            self.epochs.reoffer.extend(pending);
            return Ok(self.core.start(now));
        }
        let members: BTreeSet<ReplicaId> = vs.ids.iter().map(|id| ReplicaId(*id)).collect();
        Ok(P::follow_members(
            &mut self.core,
            self.committee.clone(),
            members,
        ))
    }

    /// Raft: a peer asks for this validator's set.
    pub(super) fn answer_set_request(&self, from: ReplicaId) -> Vec<super::driver::Out> {
        let vs = self.ledger.validators();
        if vs.members.is_empty() {
            return Vec::new();
        }
        let reply = super::wire::Wire::<P::Message>::SetReply(Box::new(vs.clone()));
        vec![super::driver::Out::Send(from, reply.encode())]
    }

    /// Raft: a peer's set. A joiner (its ledger does not name it) remembers a later set than
    /// its ledger's, learns its members' keys and connects to them (`raft_numbering`).
    pub(super) fn on_set_reply(&mut self, vs: Box<ValidatorState>) -> Vec<super::driver::Out> {
        let ours = self.ledger.validators().epoch;
        let newer = self.epochs.advertised.as_ref().map_or(ours, |a| a.epoch);
        if P::EPOCH_CORES
            || self.is_member()
            || vs.epoch <= newer
            || vs.ids.len() != vs.members.len()
            || vs.members.len() > ledger::validators::MAX_MEMBERS
            || usize::from(vs.next_id) > ledger::validators::MAX_MEMBERS
            || vs.ids.iter().any(|id| *id >= vs.next_id)
        {
            return Vec::new();
        }
        for (id, m) in vs.by_id() {
            self.epochs.known.insert(id, m.clone());
        }
        let grown = raft_committee(&vs, &self.epochs.known, &self.epochs.genesis_committee);
        if let Ok(c) = grown
            && c.n() >= self.committee.n()
        {
            tracing::info!(
                epoch = vs.epoch,
                members = vs.members.len(),
                "a peer names a later validator set: connecting to its members"
            );
            self.params.committee = c.clone();
            self.committee = c.clone();
            self.epochs.set.committee = c.clone();
            let target = self.ledger.validators().ids.iter().map(|id| ReplicaId(*id));
            // A follower's core keeps the target for later; only the committee matters now.
            let _ = P::follow_members(&mut self.core, c, target.collect());
            self.epochs.advertised = Some(*vs);
        }
        Vec::new()
    }

    /// Raft: a validator its ledger does not name asks a peer it knows for the current set,
    /// at most once a second, peers in turn.
    pub(super) fn ask_for_set(&mut self, now: u64) -> Option<super::driver::Out> {
        if P::EPOCH_CORES
            || self.is_member()
            || now.saturating_sub(self.epochs.asked_set_ms) < SET_ASK_MS
        {
            return None;
        }
        self.epochs.asked_set_ms = now;
        let peers: Vec<u16> = self
            .raft_numbering()
            .iter()
            .map(|p| p.index)
            .filter(|i| ReplicaId(*i) != self.params.me)
            .collect();
        let to = *peers.get((now / SET_ASK_MS) as usize % peers.len().max(1))?;
        Some(super::driver::Out::Send(
            ReplicaId(to),
            super::wire::Wire::<P::Message>::SetRequest.encode(),
        ))
    }

    /// The committee that checks a certificate from a peer's snapshot whose set is `vs`:
    /// Raft's stable-id committee with `vs`'s members added; the current one elsewhere.
    pub(super) fn committee_with(&self, vs: &ValidatorState) -> Committee {
        if P::EPOCH_CORES {
            return self.committee.clone();
        }
        let mut known = self.epochs.known.clone();
        for (id, m) in vs.by_id() {
            known.insert(id, m.clone());
        }
        raft_committee(vs, &known, &self.epochs.genesis_committee)
            .unwrap_or_else(|_| self.committee.clone())
    }

    /// Raft's numbering of peers: by stable id, the members, a pending joiner, and servers
    /// still in the core's configuration that this validator knows.
    pub(super) fn raft_numbering(&self) -> Vec<crate::net::PeerInfo> {
        let vs = self.ledger.validators();
        let mut peers: BTreeMap<u16, &Member> = vs.by_id().collect();
        // A later set a peer named, while the ledger has not reached it (a joiner).
        if let Some(a) = self
            .epochs
            .advertised
            .as_ref()
            .filter(|a| a.epoch > vs.epoch)
        {
            peers.extend(a.by_id());
        }
        if let Some(ledger::validators::SetChange::Add(m)) = vs.pending.as_ref().map(|p| &p.op) {
            peers.insert(vs.next_id, m);
        }
        if let Some(c) = P::raft_config(&self.core) {
            for id in c.voters.iter().chain(&c.learners) {
                if let Some(m) = self.epochs.known.get(id) {
                    peers.entry(*id).or_insert(m);
                }
            }
        }
        peers
            .into_iter()
            .map(|(id, m)| crate::net::PeerInfo {
                index: id,
                network_key: m.network_key,
                address: m.p2p_address.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: u8) -> Member {
        Member {
            name: format!("v{i}"),
            consensus_key: SecretKey::from_seed([i + 1; 32]).public(),
            network_key: SecretKey::from_seed([i + 101; 32]).public(),
            p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26600 + u16::from(i)),
        }
    }

    #[test]
    fn the_committee_keeps_a_removed_id_and_places_a_removed_server_where_it_was() {
        let genesis_set = ValidatorState::from_members((0..3).map(member).collect());
        let genesis = Committee::new_cft(
            genesis_set
                .members
                .iter()
                .map(|m| m.consensus_key)
                .collect(),
            1,
            2,
        )
        .unwrap();
        // Id 1 left, ids 3 and 4 joined: the committee has 5 keys, id 1's still its own.
        let vs = ValidatorState {
            epoch: 3,
            start_height: 30,
            members: vec![member(0), member(2), member(3), member(4)],
            ids: vec![0, 2, 3, 4],
            next_id: 5,
            pending: None,
        };
        let known = known_members(&vs, Some(&genesis_set));
        let c = raft_committee(&vs, &known, &genesis).unwrap();
        assert_eq!(c.n(), 5);
        assert_eq!(c.key(ReplicaId(1)), Some(&member(1).consensus_key));
        assert_eq!(c.key(ReplicaId(4)), Some(&member(4).consensus_key));
        // Without the earlier set, id 1's key is unknown: nothing verifies under it.
        let c = raft_committee(&vs, &known_members(&vs, None), &genesis).unwrap();
        assert_eq!(
            c.key(ReplicaId(1)),
            Some(&member(1).consensus_key),
            "genesis knows it"
        );
        let later = ValidatorState {
            next_id: 6,
            ..vs.clone()
        };
        let c = raft_committee(&later, &known_members(&vs, None), &genesis).unwrap();
        assert_eq!(c.key(ReplicaId(5)), Some(&no_key()));
        assert!(
            no_key().validate().is_err(),
            "the placeholder must be no usable key"
        );

        let keys = |i: u8| vec![SecretKey::from_seed([i + 1; 32])];
        assert_eq!(raft_place(&vs, &known, &keys(3)).unwrap().0, ReplicaId(3));
        // Removed: keeps the id it had, where this validator remembers it.
        assert_eq!(raft_place(&vs, &known, &keys(1)).unwrap().0, ReplicaId(1));
        assert!(raft_place(&vs, &known_members(&vs, None), &keys(1)).is_none());
        assert!(
            raft_place(&vs, &known, &keys(9)).is_none(),
            "a joiner not named yet"
        );
    }
}
