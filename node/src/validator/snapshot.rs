//! Raft's InstallSnapshot, moved outside the core, chunk by chunk, both ways: the snapshot
//! this validator serves and the one it pulls (block, validator set and Raft configuration
//! in the first chunk, accounts after), checked against the block's certificate and state
//! root before it is installed.

use super::Out;
use super::driver::{Driver, Res};
use super::protocol::Protocol;
use super::wire::Wire;
use crate::store::DurableOp;
use consensus::ReplicaId;
use ledger::{Account, Address, Block, LedgerError, Store};

/// Accounts per snapshot chunk (about 300 KiB encoded).
const SNAPSHOT_CHUNK_ACCOUNTS: usize = 8192;
/// Accounts a snapshot may hold, at most (about 600 MB while it is pulled): a peer claiming
/// more is refused rather than letting the pull grow without bound.
const MAX_SNAPSHOT_ACCOUNTS: u64 = 10_000_000;
/// A snapshot pull that heard nothing for this long asks again from where it stopped.
const SNAPSHOT_RETRY_MS: u64 = 1000;

/// Raft's state transfer, both ways: the snapshot this validator serves (taken once, so that
/// a follower pulling it chunk by chunk sees one consistent state) and the one it pulls.
#[derive(Default)]
pub(super) struct SnapshotState {
    serving: Option<Served>,
    pulling: Option<Pull>,
}

struct Served {
    block: Block,
    head: super::wire::SnapshotHead,
    accounts: std::sync::Arc<Vec<(Address, Account)>>,
}

/// A `Wire::SnapshotChunk`'s fields.
pub(super) struct Chunk {
    pub(super) height: u64,
    pub(super) block: Option<Box<Block>>,
    pub(super) head: Option<Box<super::wire::SnapshotHead>>,
    pub(super) total: u64,
    pub(super) offset: u64,
    pub(super) accounts: Vec<(Address, Account)>,
}

struct Pull {
    from: ReplicaId,
    /// The lowest height wanted (from the offer), until the first chunk names the snapshot's.
    height: u64,
    block: Option<Block>,
    head: Option<super::wire::SnapshotHead>,
    total: u64,
    accounts: Vec<(Address, Account)>,
    asked_ms: u64,
}

impl<P: Protocol> Driver<P> {
    /// Serves a chunk of this validator's state snapshot (Raft's InstallSnapshot, moved
    /// outside the core). A pull starts at offset 0 with the lowest height it needs and gets
    /// the snapshot's height and last block in the first chunk; later requests name that
    /// height and resume at their offset. The snapshot is taken at the ledger's height when
    /// a pull starts and kept while pulls start or resume from it, until a pull needs a
    /// higher one.
    pub(super) fn answer_snapshot_request(
        &mut self,
        from: ReplicaId,
        height: u64,
        offset: u64,
    ) -> Res {
        // One snapshot is served to every puller until one needs a higher one, so that
        // followers pulling at the same time do not reset each other.
        let fresh = match &self.snapshot.serving {
            None => true,
            Some(s) if offset == 0 => s.block.header.height < height,
            Some(s) => s.block.header.height != height,
        };
        if fresh {
            // At the stored height: read by version from the tree, so the store stage's
            // writes meanwhile do not change it.
            let stored = self.ledger.store().height()?;
            if stored == 0 || stored < height {
                return Ok(Vec::new());
            }
            let Some((block, accounts)) = self.ledger.snapshot()? else {
                return Ok(Vec::new());
            };
            let at = block.header.height;
            let head = super::wire::SnapshotHead {
                validators: match self.ledger.validators_at(at)? {
                    Some(vs) => vs,
                    None => self.ledger.validators().clone(),
                },
                config: P::config_record(&self.core, at).unwrap_or_default(),
            };
            self.snapshot.serving = Some(Served {
                block,
                head,
                accounts: std::sync::Arc::new(accounts),
            });
        }
        let s = self.snapshot.serving.as_ref().expect("set above");
        // A resumed pull of an older snapshot restarts from the beginning of this one.
        let offset = if fresh { 0 } else { offset };
        let start = (offset as usize).min(s.accounts.len());
        let end = (start + SNAPSHOT_CHUNK_ACCOUNTS).min(s.accounts.len());
        self.stats.snapshot_chunks_served += 1;
        let chunk = Wire::<P::Message>::SnapshotChunk {
            height: s.block.header.height,
            block: (start == 0).then(|| Box::new(s.block.clone())),
            head: (start == 0).then(|| Box::new(s.head.clone())),
            total: s.accounts.len() as u64,
            offset: start as u64,
            accounts: s.accounts[start..end].to_vec(),
        };
        Ok(vec![Out::Send(from, chunk.encode())])
    }

    /// A snapshot offer (Raft's InstallSnapshot) from `from`: starts pulling its state unless
    /// a pull is already under way and making progress.
    pub(super) fn on_snapshot_offer(
        &mut self,
        now: u64,
        from: ReplicaId,
        height: u64,
    ) -> Option<Out> {
        if height <= self.ledger.height() {
            return None;
        }
        // A pull from this peer resumes by itself (`retry_snapshot_pull`); an offer from
        // another peer (a new leader) replaces a pull that stalled.
        if let Some(p) = &self.snapshot.pulling
            && (p.from == from || now.saturating_sub(p.asked_ms) < SNAPSHOT_RETRY_MS)
        {
            return None;
        }
        tracing::info!(
            peer = from.0,
            height,
            ours = self.ledger.height(),
            "the leader compacted the entries we miss; fetching its state snapshot"
        );
        self.snapshot.pulling = Some(Pull {
            from,
            height,
            block: None,
            head: None,
            total: 0,
            accounts: Vec::new(),
            asked_ms: now,
        });
        Some(Out::Send(
            from,
            Wire::<P::Message>::SnapshotRequest { height, offset: 0 }.encode(),
        ))
    }

    /// Asks again, from where it stopped, for a snapshot pull that heard nothing lately.
    pub(super) fn retry_snapshot_pull(&mut self, now: u64) -> Option<Out> {
        let height = self.ledger.height();
        if self
            .snapshot
            .pulling
            .as_ref()
            .is_some_and(|p| p.block.as_ref().map_or(p.height, |b| b.header.height) <= height)
        {
            // Caught up some other way (the leader's log reached us after all).
            self.snapshot.pulling = None;
        }
        let p = self.snapshot.pulling.as_mut()?;
        if now.saturating_sub(p.asked_ms) < SNAPSHOT_RETRY_MS {
            return None;
        }
        p.asked_ms = now;
        let (height, offset) = match &p.block {
            Some(b) => (b.header.height, p.accounts.len() as u64),
            None => (p.height, 0),
        };
        Some(Out::Send(
            p.from,
            Wire::<P::Message>::SnapshotRequest { height, offset }.encode(),
        ))
    }

    /// One chunk of the snapshot being pulled. When the last one is in, checks the block's
    /// certificate and that the accounts hash to its state root, installs the state durably,
    /// drops the log below it (and all of it unless the log extends the snapshot), and
    /// restarts the core from it.
    pub(super) fn on_snapshot_chunk(&mut self, now: u64, from: ReplicaId, chunk: Chunk) -> Res {
        let Chunk {
            height,
            block,
            head,
            total,
            offset,
            accounts,
        } = chunk;
        let Some(p) = self.snapshot.pulling.as_mut() else {
            return Ok(Vec::new());
        };
        if self.unstored > 0 {
            // Installing replaces the store's state: not while blocks are still being
            // written. The pull asks for this chunk again (`retry_snapshot_pull`).
            return Ok(Vec::new());
        }
        if p.from != from {
            return Ok(Vec::new());
        }
        if offset == 0 {
            let Some(block) = block else {
                self.stats.bad_frames += 1;
                return Ok(Vec::new());
            };
            if height < p.height || block.header.height != height || total > MAX_SNAPSHOT_ACCOUNTS {
                self.stats.bad_frames += 1;
                return Ok(Vec::new());
            }
            p.block = Some(*block);
            p.head = head.map(|h| *h);
            p.total = total;
            p.accounts.clear();
        } else if p.block.as_ref().is_none_or(|b| b.header.height != height)
            || offset != p.accounts.len() as u64
        {
            return Ok(Vec::new());
        }
        if p.accounts.len() as u64 + accounts.len() as u64 > p.total {
            self.stats.bad_frames += 1;
            self.snapshot.pulling = None;
            return Ok(Vec::new());
        }
        p.accounts.extend(accounts);
        p.asked_ms = now;
        if (p.accounts.len() as u64) < p.total {
            let next = p.accounts.len() as u64;
            return Ok(vec![Out::Send(
                from,
                Wire::<P::Message>::SnapshotRequest {
                    height,
                    offset: next,
                }
                .encode(),
            )]);
        }
        let p = self.snapshot.pulling.take().expect("checked above");
        let block = p.block.expect("set by the first chunk");
        if height <= self.ledger.height() {
            return Ok(Vec::new());
        }
        // The set after the snapshot's block: the one it carries (the ledger checks it against
        // the header), else the one this validator knows (a sender without sets).
        let set = match &p.head {
            Some(h) if !h.validators.members.is_empty() => h.validators.clone(),
            _ => self.ledger.validators().clone(),
        };
        // Its leader may have joined after this validator's set: check the entry against
        // the committee that knows it (Raft's ids are stable, so one key per id).
        let committee = self.committee_with(&set);
        let Some(cert) = P::certified(&block.certificate, &committee, &self.params.genesis)
            .filter(|c| c.height.is_none_or(|h| h == height))
        else {
            tracing::warn!(
                peer = from.0,
                height,
                "snapshot refused: its block's certificate does not verify"
            );
            return Ok(Vec::new());
        };
        let n = p.accounts.len();
        let started = std::time::Instant::now();
        if let Err(e) = self.ledger.install_snapshot(block, p.accounts, set) {
            if matches!(e, LedgerError::Snapshot(_)) {
                tracing::warn!(peer = from.0, height, error = %e, "snapshot refused");
                return Ok(Vec::new());
            }
            return Err(e.into());
        }
        if p.head
            .as_ref()
            .is_some_and(|h| !h.config.is_empty() && !P::valid_config_record(&h.config))
        {
            self.stats.bad_frames += 1;
            tracing::warn!(
                peer = from.0,
                height,
                "snapshot refused: its configuration is garbage"
            );
            return Ok(Vec::new());
        }
        let mut ops = vec![DurableOp::Rebase {
            index: height,
            term: cert.view.0,
        }];
        if let Some(h) = p.head.filter(|h| !h.config.is_empty()) {
            ops.push(DurableOp::Meta(
                super::protocol::RAFT_CONFIG_KEY.into(),
                h.config,
            ));
        }
        self.ledger.store().write_durable(&ops)?;
        self.stats.fsync(started);
        self.stats.snapshots_installed += 1;
        let ledger = &self.ledger;
        self.mempool.resync(|a| ledger.account_hint(a));
        tracing::info!(
            peer = from.0,
            height,
            accounts = n,
            "installed the leader's state snapshot; continuing from it"
        );
        self.restart_core(now)
    }
}
