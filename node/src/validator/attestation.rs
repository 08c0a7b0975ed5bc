//! Header attestation in the validator (BFT modes): after a block is durable this validator
//! signs its header and sends the vote to every peer; 2f+1 votes on one header make a
//! certificate, which is stored beside the block (see `consensus::attest` for why the state
//! root needs it, and the API's `?prove=true` for who reads it). Raft does not attest.

use super::driver::{Driver, DriverError, Out, Res};
use super::protocol::Protocol;
use super::wire::Wire;
use consensus::ReplicaId;
use consensus::attest::{HeaderCert, HeaderVote};
use crypto::{Digest, codec};

impl<P: Protocol> Driver<P> {
    /// This validator stored `header` at `height`: its vote goes to every peer.
    pub(super) fn attest(
        &mut self,
        height: u64,
        header: Digest,
        out: &mut Vec<Out>,
    ) -> Result<(), DriverError> {
        let Some(a) = self.attestor_for(height) else {
            return Ok(());
        };
        let (vote, cert) = a.on_stored(height, header);
        out.push(Out::Broadcast(
            Wire::<P::Message>::HeaderVote(vote).encode(),
        ));
        if let Some(c) = cert {
            self.keep_cert(c)?;
        }
        Ok(())
    }

    /// A peer's header vote.
    pub(super) fn on_header_vote(&mut self, from: ReplicaId, vote: HeaderVote) -> Res {
        if self.watch_removed_key(&vote)? {
            self.stats.bad_header_votes += 1;
            return Ok(Vec::new());
        }
        let Some(a) = self.attestor_for(vote.height) else {
            return Ok(Vec::new());
        };
        match a.on_vote(from, vote) {
            Ok(Some(c)) => self.keep_cert(c)?,
            Ok(None) => {}
            Err(why) => {
                self.stats.bad_header_votes += 1;
                tracing::debug!(peer = from.0, why, "header vote dropped");
            }
        }
        Ok(Vec::new())
    }

    /// Stores a certificate: with the store stage's next write, or now without a stage.
    fn keep_cert(&mut self, c: HeaderCert) -> Result<(), DriverError> {
        self.stats.header_certs += 1;
        let bytes = codec::encode(&c);
        match &self.writer {
            Some(w) => w.send_cert(c.height, bytes),
            None => self
                .ledger
                .store()
                .commit_with_certs(&[], &[(c.height, bytes)])?,
        }
        Ok(())
    }
}
