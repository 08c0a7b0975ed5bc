//! HotStuff block sync: asking peers for missing blocks, answering them, and connecting the
//! certified blocks received (and the proposals that waited for them) to the tree.

use super::core::{HotStuff, MAX_ORPHANS, Out, SYNC_BATCH};
use super::messages::{Block, Message, Proposal, Verify};
use crate::core::Action;
use crate::types::{ReplicaId, View};
use crypto::Digest;

impl HotStuff {
    pub(super) fn request_sync(&mut self, from: ReplicaId, block: Digest, out: &mut Out) {
        if from == self.cfg.me {
            return;
        }
        self.stats.sync_requests += 1;
        if self.wanted.len() >= MAX_ORPHANS {
            self.wanted.pop_first();
        }
        self.wanted.insert(block);
        out.push(Action::Send {
            to: from,
            msg: Message::SyncRequest {
                block,
                above: self.tree.root().1,
            },
        });
    }

    pub(super) fn on_sync_request(
        &mut self,
        from: ReplicaId,
        block: Digest,
        above: View,
        out: &mut Out,
    ) {
        let blocks = self.tree.chain_for_sync(block, above, SYNC_BATCH);
        if !blocks.is_empty() {
            out.push(Action::Send {
                to: from,
                msg: Message::SyncResponse { blocks },
            });
        }
    }

    pub(super) fn on_sync_response(&mut self, from: ReplicaId, blocks: Vec<Block>, out: &mut Out) {
        if blocks.len() > SYNC_BATCH {
            return self.invalid();
        }
        // Accept a block only if we asked for its id, or it is the parent named by the
        // block before it (ids are hashes, so a matching block is the certified one).
        let mut expected: Option<Digest> = None;
        let mut oldest_parent = None;
        for b in blocks {
            let id = b.id();
            if !(self.wanted.contains(&id) || expected == Some(id)) {
                return self.invalid();
            }
            if b.justify
                .verify_with(&self.cfg.committee, &self.cfg.genesis, &mut self.qc_cache)
                .is_err()
            {
                return self.invalid();
            }
            self.wanted.remove(&id);
            expected = Some(b.parent());
            oldest_parent = Some(b.parent());
            if b.view > self.tree.root().1 && self.orphans.len() < MAX_ORPHANS {
                self.orphans.insert(id, b);
            }
        }
        self.connect_orphans(out);
        if let Some(parent) = oldest_parent
            && !self.tree.knows(&parent)
        {
            self.request_sync(from, parent, out);
        }
        self.retry_buffered(out);
    }

    /// Moves every orphan whose parent is now known into the tree, oldest first.
    fn connect_orphans(&mut self, out: &mut Out) {
        loop {
            let ready: Vec<Digest> = self
                .orphans
                .iter()
                .filter(|(_, b)| self.tree.knows(&b.parent()))
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                break;
            }
            for id in ready {
                let b = self.orphans.remove(&id).expect("listed");
                let justify = b.justify.clone();
                if self.tree.insert(b, true) {
                    self.process_qc(&justify, out);
                    if let Some(qc) = self.tree.qc_for(&id).cloned() {
                        self.process_qc(&qc, out);
                    }
                }
            }
        }
        let root = self.tree.root().1;
        self.orphans.retain(|_, b| b.view > root);
        self.try_propose(out);
    }

    fn retry_buffered(&mut self, out: &mut Out) {
        let waiting: Vec<Proposal> = self.buffered.drain(..).collect();
        for p in waiting {
            if self.tree.knows(&p.block.parent()) {
                self.accept_proposal(p, out);
            } else if p.block.view >= self.view {
                self.buffered.push_back(p);
            }
        }
    }
}
