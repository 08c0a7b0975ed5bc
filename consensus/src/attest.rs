//! Header attestation: what makes a ledger header — and so its state root — provable to a
//! wallet that trusts only the genesis file.
//!
//! A consensus certificate signs the *ordering* (a HotStuff block id, PBFT commits), not the
//! ledger header each validator builds when it executes that block; the state root is not in
//! anything consensus signs, because execution trails consensus. So after a validator has
//! executed and stored height h it signs [`vote_bytes`] = (genesis hash, h, header hash)
//! under [`Domain::Header`] and sends the [`HeaderVote`] to every validator. Votes of a
//! quorum (2f+1 distinct genesis validators) on the same header form a [`HeaderCert`]. It
//! proves the header because at least f+1 honest validators executed the ordered block to
//! exactly that header, and honest validators that execute the same ordered blocks build the
//! same headers.
//!
//! [`Attestor`] is the pure state machine a validator runs: it signs its own header, checks
//! and collects peers' votes, and returns a certificate when one forms. It does no I/O and
//! holds a bounded window of heights.
//!
//! Raft has no Byzantine quorum: its chains carry no header certificates, and a wallet must
//! not pretend to verify them.

use crate::types::{Committee, ReplicaId};
use crypto::{Digest, Domain, PublicKey, SecretKey, Signature, codec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Heights around the last stored one whose votes are kept: a peer may run this far ahead of
/// (or behind) this validator before its votes are dropped.
pub const WINDOW: u64 = 256;

/// The bytes a validator signs (under [`Domain::Header`]) to attest a header.
pub fn vote_bytes(genesis: &Digest, height: u64, header: &Digest) -> Vec<u8> {
    codec::encode(&(b"cairn/header/v1", genesis, height, header))
}

/// One validator's signature on the header it stored at `height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderVote {
    pub height: u64,
    pub header: Digest,
    pub signer: PublicKey,
    pub signature: Signature,
}

impl HeaderVote {
    pub fn sign(key: &SecretKey, genesis: &Digest, height: u64, header: Digest) -> HeaderVote {
        HeaderVote {
            height,
            header,
            signer: key.public(),
            signature: key.sign(Domain::Header, &vote_bytes(genesis, height, &header)),
        }
    }

    /// Whether the signature is `signer`'s on this vote's bytes for the chain `genesis`.
    pub fn verify(&self, genesis: &Digest) -> bool {
        crypto::verify(
            Domain::Header,
            &vote_bytes(genesis, self.height, &self.header),
            &self.signer,
            &self.signature,
        )
        .is_ok()
    }
}

/// Signatures of a quorum of validators on one header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderCert {
    pub height: u64,
    pub header: Digest,
    pub signatures: Vec<(PublicKey, Signature)>,
}

/// Why a header certificate proves nothing. Each names what failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("the certificate is for height {got}, not {expected}")]
    WrongHeight { got: u64, expected: u64 },
    #[error("the certificate signs header {got}, not the header given ({expected})")]
    WrongHeader { got: Digest, expected: Digest },
    #[error("signer {0} is not a validator of the set that rules this height")]
    UnknownSigner(PublicKey),
    #[error("validator {0} signed the certificate twice")]
    DuplicateSigner(PublicKey),
    #[error("validator {0}'s signature does not verify for this header")]
    BadSignature(PublicKey),
    #[error(
        "{got} distinct validators signed, a quorum of the set that rules this height is {need} \
         (2f+1 of {n})"
    )]
    TooFew { got: usize, need: usize, n: usize },
}

impl HeaderCert {
    /// The certificate the votes of `keys` on `header` at `height` make (for tools and tests
    /// that stand in for a quorum; validators collect votes with [`Attestor`]).
    pub fn signed_by(keys: &[&SecretKey], genesis: &Digest, height: u64, header: Digest) -> Self {
        HeaderCert {
            height,
            header,
            signatures: keys
                .iter()
                .map(|k| {
                    let v = HeaderVote::sign(k, genesis, height, header);
                    (v.signer, v.signature)
                })
                .collect(),
        }
    }

    /// Checks that the certificate signs `header` at `height` for the chain `genesis`, with
    /// valid signatures of a quorum of distinct validators of `committee`.
    pub fn verify(
        &self,
        committee: &Committee,
        genesis: &Digest,
        height: u64,
        header: &Digest,
    ) -> Result<(), CertError> {
        if self.height != height {
            return Err(CertError::WrongHeight {
                got: self.height,
                expected: height,
            });
        }
        if self.header != *header {
            return Err(CertError::WrongHeader {
                got: self.header,
                expected: *header,
            });
        }
        let members: Vec<PublicKey> = committee
            .ids()
            .filter_map(|id| committee.key(id).copied())
            .collect();
        let msg = vote_bytes(genesis, height, header);
        let mut seen: Vec<PublicKey> = Vec::new();
        for (signer, sig) in &self.signatures {
            if !members.contains(signer) {
                return Err(CertError::UnknownSigner(*signer));
            }
            if seen.contains(signer) {
                return Err(CertError::DuplicateSigner(*signer));
            }
            crypto::verify(Domain::Header, &msg, signer, sig)
                .map_err(|_| CertError::BadSignature(*signer))?;
            seen.push(*signer);
        }
        if seen.len() < committee.quorum() {
            return Err(CertError::TooFew {
                got: seen.len(),
                need: committee.quorum(),
                n: committee.n(),
            });
        }
        Ok(())
    }
}

/// A validator's attestation state. See the module comment.
pub struct Attestor {
    key: SecretKey,
    committee: Committee,
    genesis: Digest,
    /// The last height this validator stored.
    stored: u64,
    /// Valid votes by height, then by header, then by signer.
    votes: BTreeMap<u64, BTreeMap<Digest, BTreeMap<PublicKey, Signature>>>,
    /// Heights a certificate formed for (only the window).
    certified: BTreeMap<u64, Digest>,
}

impl Attestor {
    /// An attestor for a validator that has stored blocks up to `stored` (its window starts
    /// there, so peers' votes around a restart are kept).
    pub fn new(key: SecretKey, committee: Committee, genesis: Digest, stored: u64) -> Attestor {
        Attestor {
            key,
            committee,
            genesis,
            stored,
            votes: BTreeMap::new(),
            certified: BTreeMap::new(),
        }
    }

    /// This validator stored `header` at `height`: its own vote (to send to every peer), and
    /// the certificate if the vote completes one.
    pub fn on_stored(&mut self, height: u64, header: Digest) -> (HeaderVote, Option<HeaderCert>) {
        self.stored = self.stored.max(height);
        let low = self.stored.saturating_sub(WINDOW);
        self.votes.retain(|h, _| *h >= low);
        self.certified.retain(|h, _| *h >= low);
        let vote = HeaderVote::sign(&self.key, &self.genesis, height, header);
        let cert = self.add(vote.clone());
        (vote, cert)
    }

    /// A peer's vote from replica `from`: the certificate if it completes one. Votes that do
    /// not verify, are not signed by `from`'s genesis key, or lie outside the window are
    /// dropped (the return says so: `Err` with the reason, for the caller's counters).
    pub fn on_vote(
        &mut self,
        from: ReplicaId,
        vote: HeaderVote,
    ) -> Result<Option<HeaderCert>, &'static str> {
        if self.committee.key(from) != Some(&vote.signer) {
            return Err("not signed by the sender's genesis key");
        }
        let low = self.stored.saturating_sub(WINDOW);
        if vote.height < low || vote.height > self.stored + WINDOW {
            return Err("outside the attestation window");
        }
        // Already certified, or this signer already counted at this height: nothing to gain,
        // so no signature check (a replayed vote costs a lookup, not a verification).
        if self.certified.contains_key(&vote.height)
            || self
                .votes
                .get(&vote.height)
                .is_some_and(|b| b.values().any(|s| s.contains_key(&vote.signer)))
        {
            return Ok(None);
        }
        if !vote.verify(&self.genesis) {
            return Err("bad signature");
        }
        Ok(self.add(vote))
    }

    fn add(&mut self, vote: HeaderVote) -> Option<HeaderCert> {
        if self.certified.contains_key(&vote.height) {
            return None;
        }
        let by_header = self.votes.entry(vote.height).or_default();
        // One vote per signer per height: a second header from the same signer is ignored
        // (an honest validator builds one header per height).
        if by_header.values().any(|s| s.contains_key(&vote.signer)) {
            return None;
        }
        let sigs = by_header.entry(vote.header).or_default();
        sigs.insert(vote.signer, vote.signature);
        if sigs.len() < self.committee.quorum() {
            return None;
        }
        let cert = HeaderCert {
            height: vote.height,
            header: vote.header,
            signatures: sigs.iter().map(|(k, s)| (*k, *s)).collect(),
        };
        self.certified.insert(vote.height, vote.header);
        self.votes.remove(&vote.height);
        Some(cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Vec<SecretKey>, Committee, Digest) {
        let keys: Vec<SecretKey> = (0..4u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let committee = Committee::bft(keys.iter().map(|k| k.public()).collect()).unwrap();
        (keys, committee, Digest([7; 32]))
    }

    fn cert_of(keys: &[SecretKey], genesis: &Digest, height: u64, header: Digest) -> HeaderCert {
        HeaderCert::signed_by(&keys.iter().collect::<Vec<_>>(), genesis, height, header)
    }

    #[test]
    fn a_quorum_of_votes_forms_a_certificate_that_verifies() {
        let (keys, committee, genesis) = setup();
        let header = Digest([1; 32]);
        let mut a = Attestor::new(keys[0].clone(), committee.clone(), genesis, 0);
        let (_, none) = a.on_stored(5, header);
        assert!(none.is_none());
        let v1 = HeaderVote::sign(&keys[1], &genesis, 5, header);
        assert_eq!(a.on_vote(ReplicaId(1), v1), Ok(None));
        let v2 = HeaderVote::sign(&keys[2], &genesis, 5, header);
        let cert = a.on_vote(ReplicaId(2), v2).unwrap().expect("3 of 4");
        assert_eq!(cert.signatures.len(), 3);
        cert.verify(&committee, &genesis, 5, &header).unwrap();
        // Later votes for a certified height form nothing more.
        let v3 = HeaderVote::sign(&keys[3], &genesis, 5, header);
        assert_eq!(a.on_vote(ReplicaId(3), v3), Ok(None));
    }

    #[test]
    fn votes_on_different_headers_do_not_add_up() {
        let (keys, committee, genesis) = setup();
        let mut a = Attestor::new(keys[0].clone(), committee, genesis, 0);
        a.on_stored(5, Digest([1; 32]));
        let v1 = HeaderVote::sign(&keys[1], &genesis, 5, Digest([2; 32]));
        let v2 = HeaderVote::sign(&keys[2], &genesis, 5, Digest([2; 32]));
        assert_eq!(a.on_vote(ReplicaId(1), v1), Ok(None));
        assert_eq!(a.on_vote(ReplicaId(2), v2), Ok(None));
        // The same signer cannot vote twice at a height.
        let again = HeaderVote::sign(&keys[1], &genesis, 5, Digest([1; 32]));
        assert_eq!(a.on_vote(ReplicaId(1), again), Ok(None));
    }

    #[test]
    fn forged_and_misattributed_votes_are_refused() {
        let (keys, committee, genesis) = setup();
        let mut a = Attestor::new(keys[0].clone(), committee, genesis, 0);
        a.on_stored(5, Digest([1; 32]));
        let mut forged = HeaderVote::sign(&keys[1], &genesis, 5, Digest([1; 32]));
        forged.signature.0[0] ^= 1;
        assert_eq!(a.on_vote(ReplicaId(1), forged), Err("bad signature"));
        let theirs = HeaderVote::sign(&keys[2], &genesis, 5, Digest([1; 32]));
        assert!(a.on_vote(ReplicaId(1), theirs).is_err());
        let far = HeaderVote::sign(&keys[1], &genesis, 5 + 2 * WINDOW, Digest([1; 32]));
        assert!(a.on_vote(ReplicaId(1), far).is_err());
    }

    /// Negative controls: every way a certificate can be wrong fails with its own message.
    #[test]
    fn certificate_checks_fail_each_with_its_own_reason() {
        let (keys, committee, genesis) = setup();
        let header = Digest([1; 32]);
        let good = cert_of(&keys[..3], &genesis, 9, header);
        good.verify(&committee, &genesis, 9, &header).unwrap();

        let two = cert_of(&keys[..2], &genesis, 9, header);
        assert_eq!(
            two.verify(&committee, &genesis, 9, &header),
            Err(CertError::TooFew {
                got: 2,
                need: 3,
                n: 4
            })
        );
        let outsider = SecretKey::from_seed([99; 32]);
        let mut with_outsider = cert_of(&keys[..2], &genesis, 9, header);
        with_outsider
            .signatures
            .extend(cert_of(std::slice::from_ref(&outsider), &genesis, 9, header).signatures);
        assert_eq!(
            with_outsider.verify(&committee, &genesis, 9, &header),
            Err(CertError::UnknownSigner(outsider.public()))
        );
        let mut dup = cert_of(&keys[..2], &genesis, 9, header);
        dup.signatures.push(dup.signatures[0]);
        assert_eq!(
            dup.verify(&committee, &genesis, 9, &header),
            Err(CertError::DuplicateSigner(keys[0].public()))
        );
        let mut bad = good.clone();
        bad.signatures[1].1.0[5] ^= 1;
        assert_eq!(
            bad.verify(&committee, &genesis, 9, &header),
            Err(CertError::BadSignature(keys[1].public()))
        );
        assert!(matches!(
            good.verify(&committee, &genesis, 10, &header),
            Err(CertError::WrongHeight { .. })
        ));
        assert!(matches!(
            good.verify(&committee, &genesis, 9, &Digest([2; 32])),
            Err(CertError::WrongHeader { .. })
        ));
        // Signed for another chain: every signature fails.
        let other = cert_of(&keys[..3], &Digest([8; 32]), 9, header);
        assert!(matches!(
            other.verify(&committee, &genesis, 9, &header),
            Err(CertError::BadSignature(_))
        ));
    }
}
