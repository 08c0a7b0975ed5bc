//! PBFT checkpoints and garbage collection (a stable checkpoint moves the water marks), and
//! catch-up: fetching commit certificates from peers and answering their fetches.

use super::core::{CHECKPOINTS_KEPT, FETCH_BATCH, Out, Pbft};
use super::messages::{Checkpoint, CheckpointCert, CommitCertificate, Message};
use crate::core::Action;
use crate::types::ReplicaId;
use crypto::{Digest, Signature};

impl Pbft {
    pub(super) fn on_executed(&mut self, height: u64, root: Digest, out: &mut Out) {
        if height <= self.executed {
            return;
        }
        self.executed = height;
        let k = self.cfg.checkpoint_interval.max(1);
        if !height.is_multiple_of(k) || height <= self.stable.seq {
            return;
        }
        self.roots.insert(height, root);
        let cp = Checkpoint::new(height, root, self.cfg.me, &self.cfg.genesis, &self.cfg.key);
        out.push(Action::Broadcast {
            msg: Message::Checkpoint(cp.clone()),
        });
        self.add_checkpoint(cp, out);
    }

    pub(super) fn on_checkpoint(&mut self, cp: Checkpoint, out: &mut Out) {
        let k = self.cfg.checkpoint_interval.max(1);
        if cp.seq <= self.stable.seq {
            return;
        }
        if !cp.seq.is_multiple_of(k) || cp.verify(&self.cfg.committee, &self.cfg.genesis).is_err() {
            return self.invalid();
        }
        self.add_checkpoint(cp, out);
    }

    /// Records a verified checkpoint message (ours or a peer's) above the stable checkpoint.
    /// A quorum of matching ones is a stable checkpoint, whether inside the water marks or
    /// beyond them (then we lag, and fetch up to it). Beyond them, f+1 replicas claiming
    /// numbers we have not reached (so at least one honest one) also make us fetch; a
    /// single replica's claim moves nothing.
    fn add_checkpoint(&mut self, cp: Checkpoint, out: &mut Out) {
        let mine = self.checkpoints.entry(cp.replica).or_default();
        match mine.get(&cp.seq) {
            Some((root, _)) if *root == cp.state_root => return,
            // An honest replica signs one state root per number.
            Some(_) => return self.invalid(),
            None => {}
        }
        mine.insert(cp.seq, (cp.state_root, cp.signature));
        while mine.len() > CHECKPOINTS_KEPT {
            mine.pop_first();
        }
        let signatures: Vec<(ReplicaId, Signature)> = self
            .checkpoints
            .iter()
            .filter_map(|(id, m)| match m.get(&cp.seq) {
                Some((root, sig)) if *root == cp.state_root => Some((*id, *sig)),
                _ => None,
            })
            .collect();
        if signatures.len() >= self.cfg.committee.quorum() {
            let cert = CheckpointCert {
                seq: cp.seq,
                state_root: cp.state_root,
                signatures,
            };
            return self.install_stable(cert, out);
        }
        if cp.seq > self.high_water_mark() {
            let mut highest: Vec<u64> = self
                .checkpoints
                .values()
                .filter_map(|m| m.keys().next_back().copied())
                .collect();
            highest.sort_unstable_by(|a, b| b.cmp(a));
            if let Some(s) = highest.get(self.cfg.committee.f())
                && *s > self.fetch_target
            {
                self.fetch_target = *s;
                self.fetch(out);
            }
        }
    }

    /// A stable checkpoint: the log at and below it is discarded. If we have not executed
    /// that far, the blocks are fetched from peers (their certificates prove them).
    pub(super) fn install_stable(&mut self, cert: CheckpointCert, out: &mut Out) {
        if cert.seq <= self.stable.seq {
            return;
        }
        if let Some(mine) = self.roots.get(&cert.seq)
            && *mine != cert.state_root
        {
            self.stats.diverged += 1;
        }
        let h = cert.seq;
        self.stats.checkpoints += 1;
        self.stable = cert;
        self.slots = self.slots.split_off(&(h + 1));
        self.records = self.records.split_off(&(h + 1));
        for m in self.checkpoints.values_mut() {
            *m = m.split_off(&(h + 1));
        }
        self.checkpoints.retain(|_, m| !m.is_empty());
        self.roots = self.roots.split_off(&(h + 1));
        if self.next_seq <= h {
            self.next_seq = h + 1;
        }
        if self.committed < h {
            // A quorum is past us: ask (the next peer) now, even if an earlier request is
            // still unanswered (it may have been lost, or gone to a peer that does not
            // answer). New stable checkpoints are rare, so this cannot flood.
            self.fetch_target = self.fetch_target.max(h);
            self.fetch_asked = false;
            self.fetch(out);
        }
        self.try_propose(out);
    }

    // ---------------------------------------------------------------- catch-up

    pub(super) fn fetch(&mut self, out: &mut Out) {
        if self.fetch_asked || self.committed >= self.fetch_target {
            return;
        }
        let n = self.cfg.committee.n() as u64;
        if n < 2 {
            return;
        }
        self.fetch_asked = true;
        let me = u64::from(self.cfg.me.0);
        let peer = (me + 1 + self.fetch_peer % (n - 1)) % n;
        self.fetch_peer += 1;
        out.push(Action::Send {
            to: ReplicaId(peer as u16),
            msg: Message::Fetch {
                from: self.committed + 1,
            },
        });
    }

    /// Asks a peer (the next one each time) for blocks after ours, whether or not one was
    /// asked before: called on timeouts, so a lost request or answer is asked again.
    pub(super) fn probe(&mut self, out: &mut Out) {
        self.fetch_asked = false;
        self.fetch_target = self.fetch_target.max(self.committed + 1);
        self.fetch(out);
    }

    pub(super) fn on_fetch(&mut self, from: ReplicaId, start: u64, out: &mut Out) {
        let Some(first) = self.recent.front().map(|c| c.block.seq) else {
            return;
        };
        if start < first || start > self.committed {
            return;
        }
        let skip = (start - first) as usize;
        let certs: Vec<CommitCertificate> = self
            .recent
            .iter()
            .skip(skip)
            .take(FETCH_BATCH)
            .cloned()
            .collect();
        out.push(Action::Send {
            to: from,
            msg: Message::Committed(certs),
        });
    }

    pub(super) fn on_committed(
        &mut self,
        _from: ReplicaId,
        certs: Vec<CommitCertificate>,
        out: &mut Out,
    ) {
        self.fetch_asked = false;
        for cert in certs.into_iter().take(FETCH_BATCH) {
            let seq = cert.block.seq;
            if seq <= self.committed || self.ready.contains_key(&seq) {
                continue;
            }
            if seq > self.committed + FETCH_BATCH as u64 + self.window
                || cert.verify(&self.cfg.committee, &self.cfg.genesis).is_err()
            {
                self.invalid();
                break;
            }
            self.fetch_target = self.fetch_target.max(seq);
            self.stats.fetched += 1;
            self.ready.insert(seq, cert);
        }
        self.commit_ready(out);
    }
}
