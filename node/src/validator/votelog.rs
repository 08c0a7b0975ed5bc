//! The vote log: an audit record of every vote this validator signs, written before the
//! vote leaves (see [`Driver::log_votes_to`]).

use super::driver::Driver;
use super::protocol::Protocol;
use consensus::ReplicaId;

impl<P: Protocol> Driver<P> {
    /// Appends one line per vote this validator sends to `path`: `vote SLOT DIGEST` (see
    /// [`Protocol::vote_slot`]; for HotStuff `vote VIEW BLOCK_HASH`), written (one `write`, no
    /// fsync) before the vote is handed to the network, so a process killed at any point
    /// never sent a vote that is not in the file. An audit aid: the real-process tests read
    /// it to show that no validator signs two different votes in one slot, across crashes and
    /// restarts. Slots of epochs after the first are prefixed `eN/` (views and sequence
    /// numbers start again in each). It grows by about 80 bytes per vote; off by default.
    pub fn log_votes_to(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        self.vote_log = Some(file);
        Ok(())
    }

    pub(super) fn record_vote(&mut self, msg: &P::Message, to: Option<ReplicaId>) {
        use std::io::Write;
        let Some(file) = &mut self.vote_log else {
            return;
        };
        // One `write` per record, so that a process killed at any moment leaves whole lines.
        // Views and sequence numbers start again in each validator-set epoch.
        let epoch = match self.epochs.set.epoch {
            0 => String::new(),
            e => format!("e{e}/"),
        };
        if let Some((slot, digest)) = P::vote_slot(msg, to)
            && let Err(e) = file.write_all(format!("vote {epoch}{slot} {digest}\n").as_bytes())
        {
            tracing::warn!(error = %e, "cannot write the vote log; no longer recording votes");
            self.vote_log = None;
        }
    }
}
