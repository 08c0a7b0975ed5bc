//! The admission stage's workers (threads `cairn-verify-N`, one per core): ed25519 checks
//! in batches, off the validator loop, for two kinds of [`Job`]:
//!
//! - client submissions from the HTTP API ([`Admission::check`]): each transaction is
//!   encoded once here, hashed and verified from those bytes; the API then hands the loop
//!   [`Checked`] transactions, whose admission is a pool insert (no hashing, no signature);
//! - batches received from peers in a Byzantine protocol ([`Admission::check_peer_batch`]):
//!   the verdict comes back to the loop as a [`Verified`], and execution skips the check of
//!   a batch found all valid (it waits for a pending verdict rather than checking again).
//!
//! Channels: [`Job`]s in on one bounded multi-consumer queue of [`JOB_QUEUE`] (a full
//! queue refuses: the API answers 503 `busy`, a peer batch stays unchecked and execution
//! checks it); answers out through a oneshot per client job and one unbounded channel of
//! [`Verified`] to the loop (bounded in practice by the job queue).
//! The verdicts are those of [`crypto::verify`], the one rule (batch and single agree on
//! every input, see `crypto::sig`).

use super::batches::Batch;
pub use crate::mempool::Checked;
use crypto::Digest;
use ledger::Transaction;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for a worker, at most.
pub const JOB_QUEUE: usize = 4096;
/// Transactions per client job: a large submission is split so that every worker helps.
const CLIENT_CHUNK: usize = 256;

/// Work for the verification workers.
pub enum Job {
    Client {
        txs: Vec<Transaction>,
        reply: oneshot::Sender<Vec<Checked>>,
    },
    PeerBatch {
        digest: Digest,
        batch: Arc<Batch>,
    },
}

/// The workers' verdict on a peer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub digest: Digest,
    pub all_valid: bool,
}

/// Why [`Admission::check`] gave no verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the signature workers are busy")]
    Busy,
    #[error("the signature workers stopped")]
    Stopped,
}

/// A handle on the workers; cloning it is cheap. The workers end when every handle is gone.
/// Peers' batches have their own queue, served first: commits wait for their verdicts,
/// while a client's answer only waits for its own chunks.
#[derive(Clone)]
pub struct Admission {
    jobs: crossbeam_channel::Sender<Job>,
    peer_jobs: crossbeam_channel::Sender<Job>,
}

impl Admission {
    /// Starts `workers` threads (at least one). Peer batch verdicts go to `verified`.
    pub fn start(
        workers: usize,
        verified: mpsc::UnboundedSender<Verified>,
    ) -> std::io::Result<(Admission, Vec<std::thread::JoinHandle<()>>)> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(JOB_QUEUE);
        let (peer_jobs, peer_rx) = crossbeam_channel::bounded::<Job>(JOB_QUEUE);
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let (rx, peer_rx) = (rx.clone(), peer_rx.clone());
            let verified = verified.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("cairn-verify-{i}"))
                    .spawn(move || {
                        while let Some(job) = next_job(&peer_rx, &rx) {
                            run(job, &verified);
                        }
                    })?,
            );
        }
        Ok((Admission { jobs, peer_jobs }, threads))
    }

    /// Workers for client submissions only (peer batch verdicts are dropped), detached:
    /// for an API served without a validator loop (tests, tools).
    pub fn for_clients(workers: usize) -> std::io::Result<Admission> {
        let (verified, _) = mpsc::unbounded_channel();
        Ok(Admission::start(workers, verified)?.0)
    }

    /// One worker per core the process may use.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Whether the queue has room for the jobs of `n` client transactions now.
    pub fn has_room(&self, n: usize) -> bool {
        self.jobs.len() + n.div_ceil(CLIENT_CHUNK) <= JOB_QUEUE
    }

    /// Hashes and verifies `txs` on the workers; the verdicts come back in order.
    pub async fn check(&self, txs: Vec<Transaction>) -> Result<Vec<Checked>, AdmissionError> {
        let mut replies = Vec::new();
        let mut rest = txs;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(CLIENT_CHUNK));
            let (reply, answer) = oneshot::channel();
            self.jobs
                .try_send(Job::Client { txs: rest, reply })
                .map_err(|e| match e {
                    crossbeam_channel::TrySendError::Full(_) => AdmissionError::Busy,
                    crossbeam_channel::TrySendError::Disconnected(_) => AdmissionError::Stopped,
                })?;
            replies.push(answer);
            rest = tail;
        }
        let mut out = Vec::new();
        for answer in replies {
            out.extend(answer.await.map_err(|_| AdmissionError::Stopped)?);
        }
        Ok(out)
    }

    /// Queues the signatures of a peer's batch; false if the queue is full (the batch stays
    /// unchecked, and execution checks it).
    pub fn check_peer_batch(&self, digest: Digest, batch: Arc<Batch>) -> bool {
        self.peer_jobs
            .try_send(Job::PeerBatch { digest, batch })
            .is_ok()
    }
}

/// The next job, a peer's batch first if one waits; `None` once both queues are closed
/// and empty.
fn next_job(
    peer: &crossbeam_channel::Receiver<Job>,
    client: &crossbeam_channel::Receiver<Job>,
) -> Option<Job> {
    if let Ok(job) = peer.try_recv() {
        return Some(job);
    }
    let (mut peer_open, mut client_open) = (true, true);
    while peer_open || client_open {
        crossbeam_channel::select! {
            recv(peer) -> job => match job {
                Ok(job) => return Some(job),
                Err(_) => peer_open = false,
            },
            recv(client) -> job => match job {
                Ok(job) => return Some(job),
                Err(_) => client_open = false,
            },
        }
        if !peer_open {
            return client.recv().ok();
        }
        if !client_open {
            return peer.recv().ok();
        }
    }
    None
}

fn run(job: Job, verified: &mpsc::UnboundedSender<Verified>) {
    match job {
        Job::Client { txs, reply } => {
            let _ = reply.send(check_client(txs));
        }
        Job::PeerBatch { digest, batch } => {
            let all_valid = check_signed(&batch.txs).iter().all(|ok| *ok);
            let _ = verified.send(Verified { digest, all_valid });
        }
    }
}

/// Verdicts for the signed transactions of `txs` (raw ones are skipped), as one batch.
fn check_signed(txs: &[Transaction]) -> Vec<bool> {
    let bodies: Vec<(usize, Vec<u8>)> = txs
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_raw())
        .map(|(i, t)| (i, t.body.signing_bytes()))
        .collect();
    ledger::verify_bodies(txs, &bodies)
}

/// Hashes every transaction from one encoding of its body, and verifies the signed ones
/// from the same bytes.
fn check_client(txs: Vec<Transaction>) -> Vec<Checked> {
    let mut bodies = Vec::new();
    let mut hashed = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        let (body, hash, size) = tx.signing_bytes_hash_size();
        hashed.push((hash, size));
        if !tx.is_raw() {
            bodies.push((i, body));
        }
    }
    let mut verdicts = vec![true; txs.len()];
    for ((i, _), ok) in bodies.iter().zip(ledger::verify_bodies(&txs, &bodies)) {
        verdicts[*i] = ok;
    }
    txs.into_iter()
        .zip(hashed)
        .zip(verdicts)
        .map(|((tx, (hash, size)), ok)| {
            // A failed batch entry is checked alone, which names the reason (same rule, same
            // verdict).
            let signature = if ok { Ok(()) } else { tx.verify_signature() };
            Checked {
                tx,
                hash,
                size,
                signature,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> ledger::ChainBinding {
        ledger::ChainBinding {
            chain_id: "admission".into(),
            genesis_hash: crypto::hash(b"g"),
        }
    }

    fn transfers(n: u64, forge: &[u64]) -> Vec<Transaction> {
        let key = crypto::SecretKey::from_seed([9; 32]);
        let to = ledger::Address::of(&key.public());
        (0..n)
            .map(|i| {
                let mut tx = Transaction::sign(
                    &key,
                    &chain(),
                    i,
                    ledger::Payload::Transfer { to, amount: 1 },
                );
                if forge.contains(&i) {
                    tx.signature.0[5] ^= 0x40;
                }
                tx
            })
            .collect()
    }

    /// Verdicts, hashes and sizes are those of the single, unbatched checks, in order,
    /// across chunk boundaries; a forged signature is named, its neighbours pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_checks_match_single_checks_across_chunks() {
        let (verified, _rx) = mpsc::unbounded_channel();
        let (pool, _threads) = Admission::start(3, verified).unwrap();
        let mut txs = transfers(CLIENT_CHUNK as u64 + 7, &[0, 255, 256, 262]);
        txs.insert(100, Transaction::raw(&chain(), 1, vec![1; 64]));
        let checked = pool.check(txs.clone()).await.unwrap();
        assert_eq!(checked.len(), txs.len());
        let mut forged = 0;
        for (c, tx) in checked.iter().zip(&txs) {
            assert_eq!(&c.tx, tx);
            assert_eq!((c.hash, c.size), (tx.hash(), tx.encode().len()));
            let single = if tx.is_raw() {
                Ok(())
            } else {
                tx.verify_signature()
            };
            assert_eq!(c.signature.is_ok(), single.is_ok());
            forged += usize::from(c.signature.is_err());
        }
        assert_eq!(forged, 4);
    }

    /// A peer batch with one bad signature among valid ones is reported not all valid; a
    /// clean one is; raw transactions need no signature.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peer_batch_verdicts() {
        let (verified, mut rx) = mpsc::unbounded_channel();
        let (pool, _threads) = Admission::start(2, verified).unwrap();
        let good = Batch::new(transfers(40, &[]));
        let bad = Batch::new(transfers(40, &[17]));
        let raw = Batch::new(vec![Transaction::raw(&chain(), 5, vec![0; 10])]);
        for b in [&good, &bad, &raw] {
            assert!(pool.check_peer_batch(b.digest(), Arc::new(b.clone())));
        }
        let mut got = std::collections::BTreeMap::new();
        for _ in 0..3 {
            let v = rx.recv().await.unwrap();
            got.insert(v.digest, v.all_valid);
        }
        assert!(got[&good.digest()]);
        assert!(!got[&bad.digest()]);
        assert!(got[&raw.digest()]);
    }
}
