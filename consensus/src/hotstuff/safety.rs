//! The voting rules (2-chain HotStuff / Jolteon) and the safety record that must be durable
//! before any vote, timeout or proposal leaves the replica.
//!
//! After Aptos `safety_rules_2chain.rs` and the Jolteon paper (arXiv 2106.10362):
//!
//! - **Vote** for block B in view r only if r > last voted view, and either
//!   r == B.qc.view + 1, or r == tc.view + 1 and B.qc.view ≥ the highest high-QC view in tc.
//! - **Timeout** view r only if r ≥ last voted view, r follows the highest QC or TC we hold,
//!   and that QC is at least as high as any QC we voted on top of (`one_chain_view`).
//!   Signing a timeout for r also forbids voting in r afterwards.
//! - Asked again for the same view, return the same vote or timeout (never a second one).

use super::messages::{Block, Proposal, QuorumCert, Timeout, TimeoutCert, Vote};
use crate::durable::Unreleased;
use crate::types::{ReplicaId, View};
use crypto::{Digest, SecretKey, codec};
use serde::{Deserialize, Serialize};

/// What survives a crash. Written with [`crate::Durable::Safety`] before anything signed
/// under it leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyData {
    pub last_voted_view: View,
    pub last_vote: Option<Vote>,
    pub last_timeout: Option<Timeout>,
    /// Highest QC view among blocks this replica voted for.
    pub one_chain_view: View,
    pub last_proposed_view: View,
    /// Highest QC seen; not needed for safety, kept so a restarted replica rejoins quickly.
    pub high_qc: Option<QuorumCert>,
    /// Highest TC seen: a replica restarted in a view it entered by TC needs it to time out.
    pub high_tc: Option<TimeoutCert>,
    /// Uncommitted blocks under `high_qc` and the last vote, so that even a restart of the
    /// whole committee can extend the highest QC.
    pub blocks: Vec<Block>,
}

impl SafetyData {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<SafetyData, codec::DecodeError> {
        codec::decode(bytes, 1 << 20, "hotstuff safety data")
    }
}

/// Why the rules refused to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    AlreadyVoted,
    NotSafeToVote,
    NotSafeToTimeout,
    AlreadyProposed,
}

/// The only code that signs votes, timeouts and proposals.
pub struct SafetyRules {
    pub data: SafetyData,
    me: ReplicaId,
    key: SecretKey,
    /// The instance's anchor, which votes and timeouts sign ([`crate::epoch_anchor`]).
    anchor: Digest,
}

impl SafetyRules {
    pub fn new(data: SafetyData, me: ReplicaId, key: SecretKey, anchor: Digest) -> Self {
        SafetyRules {
            data,
            me,
            key,
            anchor,
        }
    }

    /// Signs a vote for `block`, updating the record; `true` if the vote is new. The caller
    /// must persist [`SafetyRules::data`] and release a new vote only after that persist (a
    /// repeated one only after the persist that recorded it).
    pub fn vote(
        &mut self,
        block: &Block,
        tc: Option<&TimeoutCert>,
    ) -> Result<(Unreleased<Vote>, bool), Refusal> {
        let id = block.id();
        if let Some(v) = &self.data.last_vote
            && v.view == block.view
            && v.block == id
        {
            return Ok((Unreleased::new(v.clone()), false));
        }
        if block.view <= self.data.last_voted_view {
            return Err(Refusal::AlreadyVoted);
        }
        let qc_view = block.justify.view;
        let follows_qc = block.view == qc_view.next();
        let follows_tc =
            tc.is_some_and(|tc| block.view == tc.view.next() && qc_view >= tc.max_high_qc_view());
        if !follows_qc && !follows_tc {
            return Err(Refusal::NotSafeToVote);
        }
        let vote = Vote::new(&self.anchor, id, block.view, self.me, &self.key);
        self.data.last_voted_view = block.view;
        self.data.last_vote = Some(vote.clone());
        self.data.one_chain_view = self.data.one_chain_view.max(qc_view);
        Ok((Unreleased::new(vote), true))
    }

    /// Signs a timeout for `view`, carrying `high_qc`; `true` if it is new.
    pub fn timeout(
        &mut self,
        view: View,
        high_qc: &QuorumCert,
        high_tc: Option<&TimeoutCert>,
    ) -> Result<(Unreleased<Timeout>, bool), Refusal> {
        if let Some(t) = &self.data.last_timeout
            && t.view == view
        {
            return Ok((Unreleased::new(t.clone()), false));
        }
        let follows =
            view == high_qc.view.next() || high_tc.is_some_and(|tc| view == tc.view.next());
        if view < self.data.last_voted_view || !follows || high_qc.view < self.data.one_chain_view {
            return Err(Refusal::NotSafeToTimeout);
        }
        let t = Timeout::new(&self.anchor, view, high_qc.clone(), self.me, &self.key);
        self.data.last_voted_view = view;
        self.data.last_timeout = Some(t.clone());
        Ok((Unreleased::new(t), true))
    }

    /// Signs a proposal for `block`, at most one per view.
    pub fn propose(
        &mut self,
        block: Block,
        tc: Option<TimeoutCert>,
    ) -> Result<Unreleased<Proposal>, Refusal> {
        if block.view <= self.data.last_proposed_view {
            return Err(Refusal::AlreadyProposed);
        }
        self.data.last_proposed_view = block.view;
        Ok(Unreleased::new(Proposal::new(block, tc, &self.key)))
    }

    pub fn observe_high_qc(&mut self, qc: &QuorumCert) {
        if self.data.high_qc.as_ref().is_none_or(|h| h.view < qc.view) {
            self.data.high_qc = Some(qc.clone());
        }
    }
}
