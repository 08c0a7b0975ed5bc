//! Leader transfer on an operator's request (`POST /v1/leader/transfer`, issue 21): Raft's
//! leader hands over to a caught-up voter (thesis §3.10) instead of the cluster waiting an
//! election timeout after the leader stops, so that an operator can drain a leader before
//! removing or restarting it. The BFT protocols rotate their leader every view and refuse.

use super::driver::{Driver, Res};
use super::protocol::Protocol;
use consensus::ReplicaId;
use tokio::sync::oneshot;

/// The answer: the validator that is to lead, or why not.
pub type TransferReply = oneshot::Sender<Result<u16, String>>;

impl<P: Protocol> Driver<P> {
    /// Starts a leader transfer to `to` (or to the voter the core picks); answers at once.
    pub fn transfer_leadership(&mut self, now: u64, to: Option<u16>, reply: TransferReply) -> Res {
        if !self.is_member() {
            let _ = reply.send(Err("this validator is not in the validator set".into()));
            return Ok(Vec::new());
        }
        match P::transfer_leadership(&mut self.core, to.map(ReplicaId)) {
            Ok((target, acts)) => {
                tracing::info!(to = target.0, "leader transfer to validator {}", target.0);
                self.stats.leader_transfers += 1;
                let _ = reply.send(Ok(target.0));
                self.run(now, acts)
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                Ok(Vec::new())
            }
        }
    }
}
