//! Equivocation evidence: two messages, both validly signed by one validator, of which an
//! honest validator signs at most one — two proposals for one view, two votes for one slot
//! (see [`Protocol::statement`]). Each is proof on its own: anyone holding the genesis can
//! decode both messages and check both signatures.
//!
//! The [`Watcher`] remembers the digest of the last [`WATCH_SLOTS`] statements it saw (one per
//! signer, kind and slot). Signatures are checked only when two statements conflict, so
//! watching costs a map lookup per consensus message. Found evidence is stored durably (redb
//! table `evidence`, at most [`crate::store::MAX_EVIDENCE`] records), counted in
//! `cairn_evidence_total` and served at `GET /v1/evidence`.

use super::Protocol;
use super::driver::DriverError;
use consensus::attest::HeaderVote;
use consensus::{Committee, ReplicaId};
use crypto::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Statements remembered, at most (the oldest are forgotten first).
pub const WATCH_SLOTS: usize = 16_384;

/// A signed claim an honest validator makes at most once per `(kind, slot)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub signer: ReplicaId,
    /// What was signed, e.g. `hotstuff-vote`, `pbft-pre-prepare`.
    pub kind: &'static str,
    /// Where, e.g. the view (HotStuff) or `view/seq` (PBFT).
    pub slot: String,
    /// What for: the block id or digest.
    pub digest: Digest,
}

/// One of the two conflicting messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The digest the message signs (hex).
    pub digest: String,
    /// The whole consensus message in Cairn's canonical encoding (hex), as received.
    pub message: String,
}

/// Proof that `signer` signed two different digests for one `(kind, slot)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The consensus protocol the messages belong to (decode them as its messages).
    pub protocol: String,
    pub kind: String,
    /// The signer's index in the validator set of `epoch` (the genesis list in epoch 0).
    pub signer: u16,
    /// The validator-set epoch the messages belong to: verify them against that epoch's set
    /// and anchor (`EpochSet`). Absent in records from before epochs: 0.
    #[serde(default)]
    pub epoch: u64,
    pub slot: String,
    pub first: SignedMessage,
    pub second: SignedMessage,
    /// The detecting validator's ledger height when it found the conflict.
    pub detected_at_height: u64,
}

impl Evidence {
    /// The store key: one record per epoch, signer, kind and slot.
    pub fn key(&self) -> String {
        match self.epoch {
            0 => format!("{}/{}/{}", self.signer, self.kind, self.slot),
            e => format!("e{e}/{}/{}/{}", self.signer, self.kind, self.slot),
        }
    }
}

type Key = (ReplicaId, &'static str, String);

/// Remembers recent statements and reports conflicting ones (see the module documentation).
#[derive(Default)]
pub struct Watcher {
    seen: HashMap<Key, (Digest, Vec<u8>)>,
    order: VecDeque<Key>,
}

impl Watcher {
    /// Looks at a consensus message as received. Returns evidence when `msg` and an earlier
    /// message sign different digests for one signer, kind and slot, and both signatures
    /// verify. A message whose signature does not verify never displaces a valid one.
    pub fn observe<P: Protocol>(
        &mut self,
        msg: &P::Message,
        committee: &Committee,
        genesis: &Digest,
        height: u64,
    ) -> Option<Evidence> {
        let st = P::statement(msg, committee)?;
        let key = (st.signer, st.kind, st.slot.clone());
        let Some((digest, first)) = self.seen.get(&key) else {
            if self.order.len() >= WATCH_SLOTS
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
            self.order.push_back(key.clone());
            self.seen
                .insert(key, (st.digest, crypto::codec::encode(msg)));
            return None;
        };
        if *digest == st.digest || !P::verify_statement(msg, committee, genesis) {
            return None;
        }
        let first_ok = crypto::codec::decode::<P::Message>(
            first,
            super::MAX_WIRE_BYTES,
            "remembered consensus message",
        )
        .is_ok_and(|m| P::verify_statement(&m, committee, genesis));
        let second = crypto::codec::encode(msg);
        if !first_ok {
            // The remembered one was forged (the core dropped it); remember the valid one.
            self.seen.insert(key, (st.digest, second));
            return None;
        }
        Some(Evidence {
            protocol: P::NAME.to_string(),
            kind: st.kind.to_string(),
            signer: st.signer.0,
            epoch: 0,
            slot: st.slot,
            first: SignedMessage {
                digest: digest.to_string(),
                message: hex::encode(first),
            },
            second: SignedMessage {
                digest: st.digest.to_string(),
                message: hex::encode(&second),
            },
            detected_at_height: height,
        })
    }
}

/// Checks `e` on its own: both messages decode as `P`'s, name the evidence's signer, kind and
/// slot with different digests, and carry valid signatures. What a third party does with
/// evidence it was handed.
pub fn verify<P: Protocol>(e: &Evidence, committee: &Committee, genesis: &Digest) -> bool {
    let decode = |hex_msg: &str| {
        let bytes = hex::decode(hex_msg).ok()?;
        crypto::codec::decode::<P::Message>(&bytes, super::MAX_WIRE_BYTES, "evidence message").ok()
    };
    let (Some(a), Some(b)) = (decode(&e.first.message), decode(&e.second.message)) else {
        return false;
    };
    let (Some(sa), Some(sb)) = (P::statement(&a, committee), P::statement(&b, committee)) else {
        return false;
    };
    e.protocol == P::NAME
        && sa.signer == sb.signer
        && sa.signer.0 == e.signer
        && sa.kind == sb.kind
        && sa.kind == e.kind
        && sa.slot == sb.slot
        && sa.slot == e.slot
        && sa.digest != sb.digest
        && P::verify_statement(&a, committee, genesis)
        && P::verify_statement(&b, committee, genesis)
}

impl<P: Protocol> super::driver::Driver<P> {
    /// Looks for equivocation in a consensus message as received (see [`super::evidence`]);
    /// stores what it finds. Never fails: evidence is a by-product, not a reason to stop.
    pub(super) fn watch(&mut self, msg: &P::Message) {
        let height = self.ledger.height();
        let Some(mut e) =
            self.watcher
                .observe::<P>(msg, &self.committee, &self.params.genesis, height)
        else {
            return;
        };
        e.epoch = self.epoch();
        self.stats.evidence += 1;
        tracing::warn!(
            signer = e.signer,
            kind = %e.kind,
            slot = %e.slot,
            first = %e.first.digest,
            second = %e.second.digest,
            "equivocation: validator {} signed two conflicting messages; evidence recorded",
            e.signer
        );
        let record = serde_json::to_vec(&e).unwrap_or_default();
        match self.ledger.store().put_evidence(&e.key(), &record) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(key = %e.key(), "evidence already stored or table full"),
            Err(err) => tracing::warn!(error = %err, "cannot store evidence"),
        }
    }
}

/// The evidence kind of a header vote signed, for a height, with a key that the validator set
/// ruling that height no longer holds but an earlier one did (a removed or rotated-out key).
/// Honest code never signs one: a validator attests only blocks it stored, with the key of
/// the stored block's epoch, and a removed validator stops at its last epoch's end. Such
/// votes are what a light client's forger would collect, so they are recorded.
pub const REMOVED_KEY_HEADER_VOTE: &str = "header-vote-after-removal";

/// Checks a [`REMOVED_KEY_HEADER_VOTE`] record on its own, against the sets `chain` trusts
/// (walked from genesis through the epoch links, far enough to cover the vote's height): the
/// vote decodes and its signature verifies, its height is the record's slot, the set the
/// record names is the one `chain` trusts at that height and does not hold the key, and an
/// earlier trusted set did.
pub fn verify_removed_key_vote(e: &Evidence, chain: &crate::api::epochs::SetChain) -> bool {
    let decode = |s: &str| hex::decode(s).ok();
    let Some(vote) = decode(&e.first.message)
        .and_then(|b| crypto::codec::decode::<HeaderVote>(&b, MAX_VOTE_BYTES, "header vote").ok())
    else {
        return false;
    };
    let Some(set) = decode(&e.second.message).and_then(|b| {
        crypto::codec::decode::<ledger::validators::ValidatorState>(
            &b,
            crate::store::MAX_LINK_BYTES,
            "set",
        )
        .ok()
    }) else {
        return false;
    };
    let ruling = chain.at(vote.height);
    let earlier = chain
        .sets()
        .iter()
        .take_while(|s| s.state.epoch < ruling.state.epoch)
        .any(|s| s.committee.index_of(&vote.signer).is_some());
    e.kind == REMOVED_KEY_HEADER_VOTE
        && e.slot == vote.height.to_string()
        && e.epoch == ruling.state.epoch
        && set.hash() == ruling.state.hash()
        && ruling.committee.index_of(&vote.signer).is_none()
        && earlier
        && vote.verify(chain.genesis_hash())
}

/// Largest encoded header vote accepted in a record.
const MAX_VOTE_BYTES: u64 = 4 << 10;

/// Every consensus key that was ever in a set, with the (epoch, index) of each set that held
/// it, oldest first: built from the genesis set and the stored epoch links once per epoch
/// (a vote from a non-member must not cost a store read each).
#[derive(Debug, Default)]
pub(super) struct FormerKeys {
    /// The ledger epoch the index was built in (it covers every set up to it).
    built_in: Option<u64>,
    held: std::collections::HashMap<crypto::PublicKey, Vec<(u64, usize)>>,
}

impl<P: Protocol> super::driver::Driver<P> {
    /// The (epoch, index) of the last set before `epoch` that held `key`, if any did.
    fn former_member(
        &mut self,
        key: &crypto::PublicKey,
        epoch: u64,
    ) -> Result<Option<(u64, usize)>, DriverError> {
        let current = self.ledger.validators().epoch;
        if self.epochs.former.built_in != Some(current) {
            let mut held: std::collections::HashMap<_, Vec<(u64, usize)>> = Default::default();
            let genesis = &self.epochs.genesis_committee;
            for id in genesis.ids() {
                if let Some(k) = genesis.key(id) {
                    held.entry(*k).or_default().push((0, id.0 as usize));
                }
            }
            let mut after = 0;
            loop {
                let links = self.ledger.store().epoch_links(after)?;
                for l in &links {
                    for (i, m) in l.next.members.iter().enumerate() {
                        held.entry(m.consensus_key)
                            .or_default()
                            .push((l.next.epoch, i));
                    }
                    after = l.next.epoch;
                }
                if links.len() < crate::store::MAX_LINKS_PER_READ {
                    break;
                }
            }
            self.epochs.former = FormerKeys {
                built_in: Some(current),
                held,
            };
        }
        Ok(self
            .epochs
            .former
            .held
            .get(key)
            .and_then(|sets| sets.iter().rev().find(|(e, _)| *e < epoch).copied()))
    }

    /// A peer's header vote whose signer the set ruling its height does not hold: if an
    /// earlier set held it and the signature verifies, a [`REMOVED_KEY_HEADER_VOTE`] record
    /// is stored (once per signer and height). Returns whether it was such a vote.
    pub(super) fn watch_removed_key(&mut self, vote: &HeaderVote) -> Result<bool, DriverError> {
        let Some(set) = self.set_for_height(vote.height)? else {
            return Ok(false);
        };
        if set.committee.index_of(&vote.signer).is_some() || set.epoch == 0 {
            return Ok(false);
        }
        // A former member: its index in the last earlier set that held it.
        let Some((last_epoch, index)) = self.former_member(&vote.signer, set.epoch)? else {
            return Ok(false);
        };
        if !vote.verify(&self.ledger.chain().genesis_hash) {
            return Ok(true);
        }
        let Some(ruling) = self.ledger.validators_at(set.start_height - 1)? else {
            return Ok(true);
        };
        let e = Evidence {
            protocol: P::NAME.to_string(),
            kind: REMOVED_KEY_HEADER_VOTE.to_string(),
            signer: index as u16,
            epoch: set.epoch,
            slot: vote.height.to_string(),
            first: SignedMessage {
                digest: vote.header.to_string(),
                message: hex::encode(crypto::codec::encode(vote)),
            },
            second: SignedMessage {
                digest: ruling.hash().to_string(),
                message: hex::encode(crypto::codec::encode(&ruling)),
            },
            detected_at_height: self.ledger.height(),
        };
        let key = format!("removed/{}/{}", vote.signer, vote.height);
        let record = serde_json::to_vec(&e).unwrap_or_default();
        if self.ledger.store().put_evidence(&key, &record)? {
            self.stats.evidence += 1;
            tracing::warn!(
                signer = %vote.signer,
                height = vote.height,
                last_epoch,
                epoch = set.epoch,
                "a key removed from the validator set signed a header after its removal; \
                 evidence recorded"
            );
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::{HotStuffProtocol, PbftProtocol};
    use consensus::View;
    use consensus::hotstuff::{Message, Vote};
    use crypto::{Domain, SecretKey};

    fn keys() -> Vec<SecretKey> {
        (0..4u8)
            .map(|i| SecretKey::from_seed([i + 1; 32]))
            .collect()
    }

    fn committee(keys: &[SecretKey]) -> Committee {
        Committee::new_bft(keys.iter().map(SecretKey::public).collect(), 1, 3).unwrap()
    }

    fn vote(keys: &[SecretKey], voter: u16, view: u64, block: &[u8]) -> Message {
        Message::Vote(Vote::new(
            &G,
            crypto::hash(block),
            View(view),
            ReplicaId(voter),
            &keys[voter as usize],
        ))
    }

    const G: Digest = Digest([7; 32]);

    #[test]
    fn two_signed_votes_for_one_view_are_evidence_that_verifies_on_its_own() {
        let ks = keys();
        let c = committee(&ks);
        let mut w = Watcher::default();
        let a = vote(&ks, 2, 5, b"a");
        assert!(w.observe::<HotStuffProtocol>(&a, &c, &G, 1).is_none());
        // The same vote again, or a vote in another view, is not a conflict.
        assert!(w.observe::<HotStuffProtocol>(&a, &c, &G, 1).is_none());
        assert!(
            w.observe::<HotStuffProtocol>(&vote(&ks, 2, 6, b"b"), &c, &G, 1)
                .is_none()
        );
        let e = w
            .observe::<HotStuffProtocol>(&vote(&ks, 2, 5, b"b"), &c, &G, 9)
            .expect("a double vote");
        assert_eq!(
            (e.signer, e.kind.as_str(), e.slot.as_str()),
            (2, "hotstuff-vote", "5")
        );
        assert_eq!(e.detected_at_height, 9);
        assert!(verify::<HotStuffProtocol>(&e, &c, &G));
        // Through JSON, as stored and served.
        let back: Evidence = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert!(verify::<HotStuffProtocol>(&back, &c, &G));
        // Negative controls: each broken property makes it fail.
        let mut same = e.clone();
        same.second = same.first.clone();
        assert!(!verify::<HotStuffProtocol>(&same, &c, &G), "same digest");
        let mut other = e.clone();
        other.signer = 1;
        assert!(!verify::<HotStuffProtocol>(&other, &c, &G), "wrong signer");
        let mut slot = e.clone();
        slot.second.message = hex::encode(crypto::codec::encode(&vote(&ks, 2, 6, b"b")));
        assert!(!verify::<HotStuffProtocol>(&slot, &c, &G), "another view");
        assert!(!verify::<PbftProtocol>(&e, &c, &G), "another protocol");
    }

    #[test]
    fn a_forged_signature_frames_no_one() {
        let ks = keys();
        let c = committee(&ks);
        let mut w = Watcher::default();
        // Validator 3 forges a vote "from" validator 2 (signed with its own key).
        let forged = Message::Vote(Vote::new(
            &G,
            crypto::hash(b"x"),
            View(5),
            ReplicaId(2),
            &ks[3],
        ));
        let honest = vote(&ks, 2, 5, b"a");
        assert!(w.observe::<HotStuffProtocol>(&forged, &c, &G, 1).is_none());
        // The honest vote conflicts with the remembered forgery: no evidence, and the honest
        // vote replaces it, so the forgery cannot shadow a real double vote either.
        assert!(w.observe::<HotStuffProtocol>(&honest, &c, &G, 1).is_none());
        assert!(w.observe::<HotStuffProtocol>(&forged, &c, &G, 1).is_none());
        assert!(
            w.observe::<HotStuffProtocol>(&vote(&ks, 2, 5, b"b"), &c, &G, 1)
                .is_some()
        );
        // A signature made for another purpose does not count either.
        let Message::Vote(mut v) = vote(&ks, 1, 8, b"a") else {
            unreachable!()
        };
        v.signature = ks[1].sign(Domain::Proposal, &v.block.0);
        let mut w = Watcher::default();
        assert!(
            w.observe::<HotStuffProtocol>(&vote(&ks, 1, 8, b"b"), &c, &G, 1)
                .is_none()
        );
        assert!(
            w.observe::<HotStuffProtocol>(&Message::Vote(v), &c, &G, 1)
                .is_none()
        );
    }

    #[test]
    fn the_watcher_forgets_the_oldest_slots_and_stays_bounded() {
        let ks = keys();
        let c = committee(&ks);
        let mut w = Watcher::default();
        for view in 0..(WATCH_SLOTS as u64 + 10) {
            w.observe::<HotStuffProtocol>(&vote(&ks, 0, view, b"a"), &c, &G, 1);
        }
        assert_eq!(w.seen.len(), WATCH_SLOTS);
        assert_eq!(w.order.len(), WATCH_SLOTS);
        // View 0 is forgotten (no evidence), the newest is remembered.
        assert!(
            w.observe::<HotStuffProtocol>(&vote(&ks, 0, 0, b"b"), &c, &G, 1)
                .is_none()
        );
        let newest = WATCH_SLOTS as u64 + 9;
        assert!(
            w.observe::<HotStuffProtocol>(&vote(&ks, 0, newest, b"b"), &c, &G, 1)
                .is_some()
        );
    }
}
