//! The validator set as ledger state, and the rules for changing it (issue 21; the design is
//! `docs/design/validator-sets.md`, sections 1, 2 and 7).
//!
//! A change is an ordinary transaction's payload carrying approvals: signatures of a quorum
//! of the **current** set's consensus keys over `(chain, epoch, op)`. A change that passes
//! [`ValidatorState::check`] while no other is pending becomes [`Pending`]; it takes effect
//! after block `E = h + delay` (`h` the height that executed it), the last block of its
//! epoch: [`ValidatorState::after_block`] then starts the next epoch at `E + 1` with the new
//! members. Everything here is a function of committed history, so every honest replica
//! ends an epoch at the same height with the same next set.
//!
//! Pure: no I/O, no clock. Execution applies a change only where the ledger was opened with
//! [`Governance`] settings; a chain whose consensus cannot switch sets yet refuses every
//! change with a receipt saying so.

use crate::BlockHeader;
use crate::tx::ChainBinding;
use crypto::{Digest, Domain, KeyError, PublicKey, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};

/// Most members a set may have (the consensus committee's limit).
pub const MAX_MEMBERS: usize = 1024;
/// Fewest members of a BFT set: with fewer than 4, f = 0 and one fault stops or forks it.
pub const MIN_BFT_MEMBERS: usize = 4;
/// Longest member name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest peer address, in bytes.
pub const MAX_ADDRESS_BYTES: usize = 256;

/// One validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Signs proposals, votes and approvals of set changes.
    pub consensus_key: PublicKey,
    /// Authenticates its peer-to-peer connections.
    pub network_key: PublicKey,
    /// The multiaddr others dial (its syntax is the network layer's to check).
    pub p2p_address: String,
}

/// What a change does to the set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetChange {
    /// A new validator, appended at the end of the set.
    Add(Member),
    /// The validator with this consensus key leaves.
    Remove { consensus_key: PublicKey },
    /// The validator with `old_consensus_key` is replaced, at its index, by `new` (new keys,
    /// possibly a new address): the set's size and order stay.
    Rotate {
        old_consensus_key: PublicKey,
        new: Member,
    },
}

/// A proposed change with its approvals: `(index in the current set, signature)`, sorted by
/// index without repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The epoch the change was approved in: approvals count in that epoch only.
    pub epoch: u64,
    pub op: SetChange,
    pub approvals: Vec<(u16, Signature)>,
}

/// How many approvals a change needs, by the protocol's fault model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// HotStuff and PBFT: the consensus quorum of the current set (2f+1 of 3f+1), at least
    /// [`MIN_BFT_MEMBERS`] members after the change.
    Bft,
    /// Raft: a majority of the current voters, at least one member after the change.
    Majority,
}

impl Rule {
    /// Faults a set of `n` tolerates: ⌊(n−1)/3⌋ Byzantine, or ⌊(n−1)/2⌋ crashed.
    pub fn faults(self, n: usize) -> usize {
        match self {
            Rule::Bft => n.saturating_sub(1) / 3,
            Rule::Majority => n.saturating_sub(1) / 2,
        }
    }

    /// Votes (and approvals of a change) needed from a set of `n`. Genesis
    /// (`Genesis::quorum`) uses it; `consensus::Committee::bft` computes the same (its tests
    /// compare the two for every size up to 200).
    ///
    /// BFT: `⌈(n+f+1)/2⌉`, which is `2f+1` when `n = 3f+1` and stays safe for any other `n`:
    /// two quorums overlap in at least `(n+f+1) − n = f+1` validators, so an honest one is
    /// in both; and it is live, `⌈(n+f+1)/2⌉ ≤ n−f` since `n ≥ 3f+1`. (Plain `2f+1` is not
    /// safe for, say, `n = 6`, `f = 1`: two quorums of 3 can be disjoint.) Majority:
    /// `⌊n/2⌋+1`; any two majorities share a member.
    pub fn quorum(self, n: usize) -> usize {
        match self {
            Rule::Bft => (n + self.faults(n) + 1).div_ceil(2),
            Rule::Majority => n / 2 + 1,
        }
    }

    fn min_members(self) -> usize {
        match self {
            Rule::Bft => MIN_BFT_MEMBERS,
            Rule::Majority => 1,
        }
    }
}

/// A change that executed and waits for the end of its epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub op: SetChange,
    /// The height whose execution accepted it.
    pub accepted_at: u64,
    /// The last block of the current epoch: the new set rules from the next height.
    pub effective_after: u64,
}

/// How a chain changes its validator set: the approval rule and the delay between the block
/// that accepts a change and the end of its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Governance {
    pub rule: Rule,
    /// `E = h + epoch_delay` ([`ValidatorState::accept`]); 0 counts as 1.
    pub epoch_delay: u64,
}

/// The validator set after some block: its epoch, the first height of that epoch, the
/// members in order (a member's index is its BFT replica id), each member's stable id, and a
/// pending change.
///
/// Stable ids (`ids`, parallel to `members`) are what Raft names servers by: its core lives
/// across epochs, and its log, votes and configurations must never be renumbered. Genesis
/// members get `0..n`; an added member takes `next_id`, which then grows; a removed member's
/// id is never given out again; a rotation keeps it (a BFT chain only: Raft refuses
/// rotations). HotStuff and PBFT use the member's index instead: they build a fresh core
/// per epoch.
///
/// The default is an empty set in epoch 0 from height 1, for ledgers whose set is not
/// tracked (tools and tests that execute transfers only); every header still names its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorState {
    pub epoch: u64,
    pub start_height: u64,
    pub members: Vec<Member>,
    /// Each member's stable id, in the order of `members`.
    pub ids: Vec<u16>,
    /// The id the next added member gets.
    pub next_id: u16,
    pub pending: Option<Pending>,
}

impl Default for ValidatorState {
    fn default() -> Self {
        ValidatorState::from_members(Vec::new())
    }
}

/// Why a change or a set is refused. Every replica computes the same reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GovernanceError {
    #[error("the change was approved for epoch {got}, but the current epoch is {current}")]
    WrongEpoch { current: u64, got: u64 },
    #[error(
        "a change is already pending (it takes effect after height {effective_after}); \
         one change per epoch"
    )]
    ChangePending { effective_after: u64 },
    #[error("{got} approvals, {need} needed (a quorum of the current {n} validators)")]
    NotEnoughApprovals { got: usize, need: usize, n: usize },
    #[error("approval from index {index}, but the current set has {n} validators")]
    UnknownApprover { index: u16, n: usize },
    #[error("approvals must be sorted by validator index without repeats (index {index})")]
    UnsortedApprovals { index: u16 },
    #[error("the approval of validator {index} does not verify")]
    BadApproval { index: u16 },
    #[error("{which}: {reason}")]
    InvalidKey { which: String, reason: KeyError },
    #[error("validator {name:?} would share its {what} with {other:?}; keys must be unique")]
    DuplicateKey {
        name: String,
        other: String,
        what: &'static str,
    },
    #[error("validator {name:?} would share its name with another validator")]
    DuplicateName { name: String },
    #[error("no current validator has consensus key {key}")]
    NotMember { key: PublicKey },
    #[error("{n} validators after the change; this protocol needs at least {min}")]
    TooFew { n: usize, min: usize },
    #[error("{n} validators after the change; at most {max}")]
    TooMany { n: usize, max: usize },
    #[error("validator name {name:?}: must be 1 to {max} printable characters", max = MAX_NAME_BYTES)]
    BadName { name: String },
    #[error("validator {name:?}: p2p_address must be 1 to {max} printable ASCII characters", max = MAX_ADDRESS_BYTES)]
    BadAddress { name: String },
    #[error(
        "a Raft chain cannot rotate a key in place (its servers are named by id, and a new key \
         is a new server): remove the validator, then add it with its new keys"
    )]
    RotateUnsupported,
    #[error("every stable validator id has been given out; this chain can add no more validators")]
    IdsExhausted,
}

/// The bytes a validator signs to approve `op` in `epoch` on `chain`.
pub fn approval_bytes(chain: &ChainBinding, epoch: u64, op: &SetChange) -> Vec<u8> {
    codec::encode(&(&chain.chain_id, &chain.genesis_hash, epoch, op))
}

/// A validator's approval of `op` in `epoch` on `chain`.
pub fn approve(key: &SecretKey, chain: &ChainBinding, epoch: u64, op: &SetChange) -> Signature {
    key.sign(Domain::Governance, &approval_bytes(chain, epoch, op))
}

impl ValidatorState {
    /// Epoch 0: the genesis validators, checked as any set is ([`ValidatorState::check_set`]).
    pub fn genesis(members: Vec<Member>, rule: Rule) -> Result<Self, GovernanceError> {
        check_set(&members, rule)?;
        Ok(ValidatorState::from_members(members))
    }

    /// Epoch 0 from height 1 with `members` (ids `0..n`), unchecked: for sets already
    /// validated (a genesis file that passed validation) and for tests.
    pub fn from_members(members: Vec<Member>) -> Self {
        let n = members.len() as u16;
        ValidatorState {
            epoch: 0,
            start_height: 1,
            members,
            ids: (0..n).collect(),
            next_id: n,
            pending: None,
        }
    }

    /// The stable id of the member with consensus key `key`, if one has it.
    pub fn id_of(&self, key: &PublicKey) -> Option<u16> {
        self.member(key).and_then(|(i, _)| self.ids.get(i).copied())
    }

    /// `(stable id, member)` for every member, in order.
    pub fn by_id(&self) -> impl Iterator<Item = (u16, &Member)> + '_ {
        self.ids.iter().copied().zip(self.members.iter())
    }

    /// What headers carry (`validators`): sha256 over the canonical encoding, tagged.
    pub fn hash(&self) -> Digest {
        crypto::hash_parts(&[b"cairn/validators/v1", &codec::encode(self)])
    }

    /// The member with consensus key `key`, and its index.
    pub fn member(&self, key: &PublicKey) -> Option<(usize, &Member)> {
        self.members
            .iter()
            .enumerate()
            .find(|(_, m)| m.consensus_key == *key)
    }

    /// The set `change` would give, if it may be accepted now: right epoch, nothing pending,
    /// a quorum of distinct current members' approvals that verify, and a valid result.
    pub fn check(
        &self,
        chain: &ChainBinding,
        change: &Change,
        rule: Rule,
    ) -> Result<Vec<Member>, GovernanceError> {
        if change.epoch != self.epoch {
            return Err(GovernanceError::WrongEpoch {
                current: self.epoch,
                got: change.epoch,
            });
        }
        if let Some(p) = &self.pending {
            return Err(GovernanceError::ChangePending {
                effective_after: p.effective_after,
            });
        }
        let n = self.members.len();
        let need = rule.quorum(n);
        if change.approvals.len() < need {
            return Err(GovernanceError::NotEnoughApprovals {
                got: change.approvals.len(),
                need,
                n,
            });
        }
        // Cheap checks on every approval before any signature is verified.
        let mut prev: Option<u16> = None;
        for (index, _) in &change.approvals {
            if *index as usize >= n {
                return Err(GovernanceError::UnknownApprover { index: *index, n });
            }
            if prev.is_some_and(|p| p >= *index) {
                return Err(GovernanceError::UnsortedApprovals { index: *index });
            }
            prev = Some(*index);
        }
        if rule == Rule::Majority && matches!(change.op, SetChange::Rotate { .. }) {
            return Err(GovernanceError::RotateUnsupported);
        }
        if matches!(change.op, SetChange::Add(_)) && usize::from(self.next_id) >= MAX_MEMBERS {
            return Err(GovernanceError::IdsExhausted);
        }
        let members = self.apply(&change.op)?;
        check_set(&members, rule)?;
        let bytes = approval_bytes(chain, change.epoch, &change.op);
        let items: Vec<(Domain, &[u8], PublicKey, Signature)> = change
            .approvals
            .iter()
            .map(|(i, s)| {
                (
                    Domain::Governance,
                    bytes.as_slice(),
                    self.members[*i as usize].consensus_key,
                    *s,
                )
            })
            .collect();
        if let Some(k) = crypto::verify_batch(&items).iter().position(|ok| !ok) {
            return Err(GovernanceError::BadApproval {
                index: change.approvals[k].0,
            });
        }
        Ok(members)
    }

    /// Accepts `change` at `height` (see [`ValidatorState::check`]): it becomes pending and
    /// takes effect after block `height + delay` (a `delay` of 0 counts as 1: never in the
    /// block that accepted it).
    pub fn accept(
        &mut self,
        chain: &ChainBinding,
        change: &Change,
        rule: Rule,
        height: u64,
        delay: u64,
    ) -> Result<(), GovernanceError> {
        self.check(chain, change, rule)?;
        self.pending = Some(Pending {
            op: change.op.clone(),
            accepted_at: height,
            effective_after: height.saturating_add(delay.max(1)),
        });
        Ok(())
    }

    /// Block `height` has executed: if it is the last block of the epoch, the pending change
    /// takes effect and the next epoch starts at `height + 1`. Returns whether an epoch ended.
    pub fn after_block(&mut self, height: u64) -> bool {
        let Some(p) = &self.pending else {
            return false;
        };
        if p.effective_after != height {
            return false;
        }
        let members = self
            .apply(&p.op)
            .expect("a pending change was checked against this set when it was accepted");
        match &p.op {
            SetChange::Add(_) => {
                self.ids.push(self.next_id);
                self.next_id = self.next_id.saturating_add(1);
            }
            SetChange::Remove { consensus_key } => {
                if let Some((i, _)) = self.member(consensus_key)
                    && i < self.ids.len()
                {
                    self.ids.remove(i);
                }
            }
            SetChange::Rotate { .. } => {}
        }
        self.members = members;
        self.epoch += 1;
        self.start_height = height + 1;
        self.pending = None;
        true
    }

    /// The members after `op`, without the quorum or size rules.
    fn apply(&self, op: &SetChange) -> Result<Vec<Member>, GovernanceError> {
        let mut members = self.members.clone();
        match op {
            SetChange::Add(m) => members.push(m.clone()),
            SetChange::Remove { consensus_key } => {
                let (i, _) = self
                    .member(consensus_key)
                    .ok_or(GovernanceError::NotMember {
                        key: *consensus_key,
                    })?;
                members.remove(i);
            }
            SetChange::Rotate {
                old_consensus_key,
                new,
            } => {
                let (i, _) = self
                    .member(old_consensus_key)
                    .ok_or(GovernanceError::NotMember {
                        key: *old_consensus_key,
                    })?;
                members[i] = new.clone();
            }
        }
        Ok(members)
    }
}

/// A set is valid when its size suits the rule, names and addresses are well formed, every
/// key is a valid large-order point, and no two members share a name, a consensus key or a
/// network key.
pub fn check_set(members: &[Member], rule: Rule) -> Result<(), GovernanceError> {
    let n = members.len();
    if n < rule.min_members() {
        return Err(GovernanceError::TooFew {
            n,
            min: rule.min_members(),
        });
    }
    if n > MAX_MEMBERS {
        return Err(GovernanceError::TooMany {
            n,
            max: MAX_MEMBERS,
        });
    }
    let printable =
        |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.chars().all(|c| !c.is_control());
    for (i, m) in members.iter().enumerate() {
        if !printable(&m.name, MAX_NAME_BYTES) {
            return Err(GovernanceError::BadName {
                name: m.name.clone(),
            });
        }
        if !printable(&m.p2p_address, MAX_ADDRESS_BYTES) || !m.p2p_address.is_ascii() {
            return Err(GovernanceError::BadAddress {
                name: m.name.clone(),
            });
        }
        for (which, key) in [
            ("consensus_key", &m.consensus_key),
            ("network_key", &m.network_key),
        ] {
            key.validate()
                .map_err(|reason| GovernanceError::InvalidKey {
                    which: format!("validator {:?} {which}", m.name),
                    reason,
                })?;
        }
        for other in &members[..i] {
            let dup = |what| GovernanceError::DuplicateKey {
                name: m.name.clone(),
                other: other.name.clone(),
                what,
            };
            if other.name == m.name {
                return Err(GovernanceError::DuplicateName {
                    name: m.name.clone(),
                });
            }
            if other.consensus_key == m.consensus_key {
                return Err(dup("consensus key"));
            }
            if other.network_key == m.network_key {
                return Err(dup("network key"));
            }
        }
    }
    Ok(())
}

/// The proof that an epoch began (design note, section 4): the header of the previous
/// epoch's last block `E`, its header certificate (an encoded `consensus::attest::HeaderCert`,
/// signed by the previous set), and the set after `E`, which that header names. A light
/// client or a syncing validator that trusts the previous set checks the certificate with it
/// and [`EpochLink::follows`], and then trusts `next`. Stores keep one per epoch, never pruned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochLink {
    pub header: BlockHeader,
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    pub next: ValidatorState,
}

/// Why an epoch link does not follow the set trusted before it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is for epoch {got}, but the epoch after the trusted epoch {trusted} is {}", trusted + 1)]
    WrongEpoch { trusted: u64, got: u64 },
    #[error(
        "the set it carries does not hash to the `validators` the header at height {height} names"
    )]
    SetMismatch { height: u64 },
    #[error("its header is at height {height}, but its set says the epoch starts at {start}")]
    WrongStart { height: u64, start: u64 },
    #[error(
        "its header at height {height} is before the start ({start}) of the epoch it would end"
    )]
    BeforeStart { height: u64, start: u64 },
    #[error("the set it carries still has a pending change")]
    StillPending,
}

impl EpochLink {
    /// The link's own shape, against the set trusted before it (`prev`): it starts epoch
    /// `prev.epoch + 1` right after its header, its header lies in `prev`'s epoch, and its set
    /// is the one the header names. The certificate is the caller's to check (with `prev`'s
    /// keys, on `header.hash()` at `header.height`): the ledger knows no signatures of votes.
    pub fn follows(&self, prev: &ValidatorState) -> Result<(), LinkError> {
        let height = self.header.height;
        if self.next.epoch != prev.epoch.saturating_add(1) {
            return Err(LinkError::WrongEpoch {
                trusted: prev.epoch,
                got: self.next.epoch,
            });
        }
        if height < prev.start_height {
            return Err(LinkError::BeforeStart {
                height,
                start: prev.start_height,
            });
        }
        if self.next.start_height != height.saturating_add(1) {
            return Err(LinkError::WrongStart {
                height,
                start: self.next.start_height,
            });
        }
        if self.next.pending.is_some() {
            return Err(LinkError::StillPending);
        }
        if self.next.hash() != self.header.validators {
            return Err(LinkError::SetMismatch { height });
        }
        Ok(())
    }
}
