//! [`Mempool`]: the validator's pool of pending transactions. Pure: no I/O, no clock.
//!
//! Clients submit signed transactions through the API; [`Mempool::admit`] checks each one
//! against the sender's committed account and the transactions already pooled, and either
//! keeps it or says why not ([`Rejected`], whose `Display` names the problem and the fix).
//! Consensus takes work with [`Mempool::next_batch`]; what it takes is *in flight* until
//! [`Mempool::committed`] (its block committed) or [`Mempool::requeue_in_flight`] (its batch
//! was dropped) settles it.
//!
//! - **Nonce order.** Each sender's transactions are kept by nonce. Only a contiguous run from
//!   the sender's next nonce is *ready*; in-flight transactions count as present in that run.
//! - **Idempotency.** A transaction's hash covers its signed body and is the client's
//!   idempotency key: resubmitting a pooled transaction answers [`Admitted::AlreadyPending`] or
//!   [`Admitted::InFlight`] and never adds a second copy. A committed transaction has left the
//!   pool, so the API must answer resubmissions from the store (`Store::tx(hash)`) *before*
//!   calling `admit`, which would otherwise say its nonce is already used.
//! - **Bounds.** At most `max_txs` transactions and `max_bytes` encoded bytes in total, and
//!   only nonces less than `max_per_sender` above the sender's next nonce (so at most that many
//!   per sender). A full pool rejects ([`Rejected::is_retryable`]); nothing is evicted.
//! - **Raw lane.** Unsigned raw transactions ([`Payload::Raw`], benchmarks only) are admitted
//!   only when [`Limits::raw_transactions`] is on (genesis `params.raw_transactions`). They
//!   skip the signature, nonce and balance checks, never touch a sender's lane, and wait in
//!   one FIFO lane by arrival; batches take them after the account transactions. Idempotency
//!   and the bounds apply to them like to any other transaction.
//! - **Determinism.** Only `BTreeMap`s: the same calls give the same batches on every run.

use crypto::{Digest, KeyError};
use ledger::{Account, Address, ChainBinding, Payload, RAW_SENDER, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

mod lanes;
mod verdicts;

use lanes::{Entry, RawLane, Sender, Slot};
pub use verdicts::{Admitted, Checked, Limits, PoolStatus, Rejected};

/// Whether admission verifies a signature or was told the verdict.
enum Sig {
    Check,
    Known(Result<(), crypto::SignatureError>),
}

/// The pending-transaction pool. See the module docs.
#[derive(Clone, Debug)]
pub struct Mempool {
    limits: Limits,
    senders: BTreeMap<Address, Sender>,
    raw: RawLane,
    /// Every pooled transaction, in a sender's lane or the raw lane.
    by_hash: BTreeMap<Digest, Slot>,
    bytes: usize,
    /// The sender served last by `next_batch`; the next batch starts after it.
    last_served: Option<Address>,
    /// Seconds the transactions of the last batch waited in the pool, summed.
    batch_wait: f64,
}

impl Mempool {
    pub fn new(limits: Limits) -> Mempool {
        Mempool {
            limits,
            senders: BTreeMap::new(),
            raw: RawLane::default(),
            by_hash: BTreeMap::new(),
            bytes: 0,
            last_served: None,
            batch_wait: 0.0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks `tx` and pools it. `account` is the sender's committed account (unused for a raw
    /// transaction). Checks, in order: size, chain id, genesis hash, raw transactions enabled
    /// (raw only), sender not [`RAW_SENDER`] and signature (signed only), already pooled (not
    /// an error); then for signed transactions: nonce used, nonce too far ahead, nonce taken
    /// by another pooled transaction, zero amount, balance (this amount plus the sender's
    /// pooled transfers with lower nonces); last, pool capacity.
    pub fn admit(
        &mut self,
        tx: Transaction,
        chain: &ChainBinding,
        account: Account,
    ) -> Result<Admitted, Rejected> {
        let (hash, size) = tx.hash_and_size();
        self.admit_checking(tx, hash, size, chain, account, Sig::Check)
    }

    /// [`Mempool::admit`] without the signature check: the caller has already checked the
    /// signature with `crypto::verify` / `crypto::verify_batch` (e.g. the API verifies a batch
    /// of submissions off the event loop). Every other check runs, in the same order.
    pub fn admit_verified(
        &mut self,
        tx: Transaction,
        chain: &ChainBinding,
        account: Account,
    ) -> Result<Admitted, Rejected> {
        let (hash, size) = tx.hash_and_size();
        self.admit_checking(tx, hash, size, chain, account, Sig::Known(Ok(())))
    }

    /// Admits a [`Checked`] transaction (hash and encoded size computed once, where it
    /// entered the validator): refused if its signature failed, otherwise every other check
    /// of [`Mempool::admit`] runs, in the same order.
    pub fn admit_checked(
        &mut self,
        c: Checked,
        chain: &ChainBinding,
        account: Account,
    ) -> Result<Admitted, Rejected> {
        debug_assert_eq!((c.hash, c.size), c.tx.hash_and_size());
        let sig = Sig::Known(c.signature);
        self.admit_checking(c.tx, c.hash, c.size, chain, account, sig)
    }

    fn admit_checking(
        &mut self,
        tx: Transaction,
        hash: Digest,
        size: usize,
        chain: &ChainBinding,
        account: Account,
        sig: Sig,
    ) -> Result<Admitted, Rejected> {
        self.check_envelope(&tx, size, chain)?;
        if tx.is_raw() {
            return self.admit_raw(tx, hash, size);
        }
        // The raw lane's sender is a small-order key: no signed transaction can come from it
        // (checked here too, so `admit_verified` never opens a sender lane for it).
        if tx.body.sender == RAW_SENDER {
            return Err(Rejected::BadSignature(KeyError::SmallOrder.into()));
        }
        match sig {
            Sig::Check => tx.verify_signature(),
            Sig::Known(verdict) => verdict,
        }
        .map_err(Rejected::BadSignature)?;
        self.admit_signed(tx, hash, size, account)
    }

    /// Size (`size` is the encoded size), chain id, genesis hash and (for a raw transaction)
    /// whether raw ones are enabled.
    fn check_envelope(
        &self,
        tx: &Transaction,
        size: usize,
        chain: &ChainBinding,
    ) -> Result<(), Rejected> {
        if size > self.limits.max_tx_bytes {
            let max = self.limits.max_tx_bytes;
            return Err(Rejected::TooLarge { size, max });
        }
        let body = &tx.body;
        if body.chain_id != chain.chain_id {
            return Err(Rejected::WrongChainId {
                got: shorten(&body.chain_id),
                expected: chain.chain_id.clone(),
            });
        }
        if body.genesis_hash != chain.genesis_hash {
            return Err(Rejected::WrongGenesis {
                chain_id: chain.chain_id.clone(),
                got: body.genesis_hash,
                expected: chain.genesis_hash,
            });
        }
        if tx.is_raw() && !self.limits.raw_transactions {
            return Err(Rejected::RawDisabled);
        }
        if matches!(body.payload, Payload::Governance(_)) && !self.limits.governance {
            return Err(Rejected::GovernanceDisabled);
        }
        Ok(())
    }

    /// Pools a raw transaction at the back of the raw lane: no signature, nonce or balance.
    fn admit_raw(
        &mut self,
        tx: Transaction,
        hash: Digest,
        size: usize,
    ) -> Result<Admitted, Rejected> {
        if let Some(pooled) = self.pooled(hash) {
            return Ok(pooled);
        }
        self.check_room(size)?;
        let seq = self.raw.push(Entry {
            tx,
            hash,
            size,
            in_flight: false,
            since: std::time::Instant::now(),
        });
        self.by_hash.insert(hash, Slot::Raw(seq));
        self.bytes += size;
        Ok(Admitted::Added(hash))
    }

    /// Pools a signed transaction, whose signature is checked, in its sender's lane.
    fn admit_signed(
        &mut self,
        tx: Transaction,
        hash: Digest,
        size: usize,
        account: Account,
    ) -> Result<Admitted, Rejected> {
        let from = tx.sender_address();
        self.advance(from, account.nonce);
        if let Some(pooled) = self.pooled(hash) {
            return Ok(pooled);
        }

        let sender = self.senders.get(&from);
        let next = sender.map_or(account.nonce, |s| s.next);
        let nonce = tx.body.nonce;
        if nonce < next {
            return Err(Rejected::NonceUsed { nonce, next });
        }
        let max_per_sender = self.limits.max_per_sender;
        if nonce - next >= u64::try_from(max_per_sender).unwrap_or(u64::MAX) {
            return Err(Rejected::NonceTooFarAhead {
                nonce,
                next,
                max_per_sender,
            });
        }
        if let Some(e) = sender.and_then(|s| s.txs.get(&nonce)) {
            return Err(Rejected::NonceConflict {
                nonce,
                pending: e.hash,
            });
        }
        let amount = transfer_amount(&tx);
        if amount == 0 && !matches!(tx.body.payload, Payload::Governance(_)) {
            return Err(Rejected::ZeroAmount);
        }
        let mut needed = u128::from(amount);
        let mut pending = 0;
        for (_, e) in sender.into_iter().flat_map(|s| s.txs.range(next..nonce)) {
            // At most max_per_sender terms below 2^64 each: cannot reach u128::MAX.
            needed = needed.saturating_add(u128::from(transfer_amount(&e.tx)));
            pending += 1;
        }
        if needed > u128::from(account.balance) {
            return Err(Rejected::InsufficientBalance {
                balance: account.balance,
                needed,
                pending,
            });
        }
        self.check_room(size)?;

        let entry = Entry {
            tx,
            hash,
            size,
            in_flight: false,
            since: std::time::Instant::now(),
        };
        self.senders
            .entry(from)
            .or_insert_with(|| Sender {
                next,
                txs: BTreeMap::new(),
            })
            .txs
            .insert(nonce, entry);
        self.by_hash.insert(hash, Slot::Account(from, nonce));
        self.bytes += size;
        Ok(Admitted::Added(hash))
    }

    /// The answer to a resubmission of a pooled transaction.
    fn pooled(&self, hash: Digest) -> Option<Admitted> {
        Some(match self.status(&hash)? {
            PoolStatus::Pending => Admitted::AlreadyPending(hash),
            PoolStatus::InFlight => Admitted::InFlight(hash),
        })
    }

    /// Whether one more transaction of `size` bytes fits the pool.
    fn check_room(&self, size: usize) -> Result<(), Rejected> {
        let new_bytes = self.bytes.checked_add(size);
        if self.len() >= self.limits.max_txs || new_bytes.is_none_or(|b| b > self.limits.max_bytes)
        {
            return Err(Rejected::PoolFull {
                txs: self.len(),
                bytes: self.bytes,
                max_txs: self.limits.max_txs,
                max_bytes: self.limits.max_bytes,
            });
        }
        Ok(())
    }

    /// Takes up to `max_txs` ready transactions of at most `max_bytes` in total and marks them
    /// in flight. Account transactions come first: senders take turns (one transaction each
    /// per round, in address order starting after the sender served last), each sender's in
    /// nonce order. A sender whose next transaction does not fit the remaining bytes gives no
    /// more in this batch, so `max_bytes` should be at least `limits.max_tx_bytes`. Raw
    /// transactions fill the rest, in arrival order (a requeued one keeps its place ahead of
    /// later arrivals), stopping at the first that does not fit the remaining bytes.
    pub fn next_batch(&mut self, max_txs: usize, max_bytes: usize) -> Vec<Transaction> {
        self.next_batch_hashed(max_txs, max_bytes).0
    }

    /// [`Mempool::next_batch`] with the transactions' hashes (computed at admission).
    pub fn next_batch_hashed(
        &mut self,
        max_txs: usize,
        max_bytes: usize,
    ) -> (Vec<Transaction>, Vec<Digest>) {
        let mut batch = Vec::new();
        self.batch_wait = 0.0;
        let mut bytes = self.take_accounts(&mut batch, max_txs, max_bytes);
        while batch.len() < max_txs {
            let Some(entry) = self.raw.take_first(max_bytes.saturating_sub(bytes)) else {
                break;
            };
            bytes += entry.size;
            self.batch_wait += entry.since.elapsed().as_secs_f64();
            batch.push((entry.tx.clone(), entry.hash));
        }
        batch.into_iter().unzip()
    }

    /// The mean time the transactions of the last [`Mempool::next_batch`] waited in the pool
    /// (seconds; 0 for an empty batch): the batching stage's time.
    pub fn last_batch_wait(&self, batch_len: usize) -> f64 {
        if batch_len == 0 {
            0.0
        } else {
            self.batch_wait / batch_len as f64
        }
    }

    /// The account part of [`Mempool::next_batch`]: appends to `batch`, returns its bytes.
    fn take_accounts(
        &mut self,
        batch: &mut Vec<(Transaction, Digest)>,
        max_txs: usize,
        max_bytes: usize,
    ) -> usize {
        let mut bytes = 0usize;
        let mut wait = 0.0;
        let after = match self.last_served {
            Some(last) => (Bound::Excluded(last), Bound::Unbounded),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let before = match self.last_served {
            Some(last) => (Bound::Unbounded, Bound::Included(last)),
            None => (Bound::Unbounded, Bound::Excluded(Address([0; 20]))),
        };
        let mut turn: Vec<(Address, u64)> = self
            .senders
            .range(after)
            .chain(self.senders.range(before))
            .filter_map(|(a, s)| Some((*a, s.ready_from(s.next)?)))
            .collect();
        while !turn.is_empty() {
            let mut again = Vec::with_capacity(turn.len());
            for (addr, nonce) in turn {
                if batch.len() >= max_txs {
                    self.batch_wait += wait;
                    return bytes;
                }
                let Some(sender) = self.senders.get_mut(&addr) else {
                    continue;
                };
                let Some(entry) = sender.txs.get_mut(&nonce) else {
                    continue;
                };
                match bytes.checked_add(entry.size) {
                    Some(b) if b <= max_bytes => bytes = b,
                    _ => continue,
                }
                entry.in_flight = true;
                wait += entry.since.elapsed().as_secs_f64();
                batch.push((entry.tx.clone(), entry.hash));
                self.last_served = Some(addr);
                if let Some(n) = nonce.checked_add(1).and_then(|n| sender.ready_from(n)) {
                    again.push((addr, n));
                }
            }
            turn = again;
        }
        self.batch_wait += wait;
        bytes
    }

    /// After a block commits: drops its transactions (by hash, whether they applied or were
    /// skipped) and every pooled transaction whose nonce is below its sender's new committed
    /// nonce (`accounts` gives committed accounts; it is asked only about senders of signed
    /// transactions in `txs` that still have pooled transactions).
    pub fn committed(&mut self, txs: &[Transaction], accounts: impl Fn(&Address) -> Account) {
        let hashes: Vec<Digest> = txs.iter().map(Transaction::hash).collect();
        self.committed_hashed(txs, &hashes, accounts);
    }

    /// [`Mempool::committed`] with the transactions' hashes already known (`hashes[i]` is
    /// `txs[i]`'s, e.g. from the block's receipts), so nothing is hashed again.
    pub fn committed_hashed(
        &mut self,
        txs: &[Transaction],
        hashes: &[Digest],
        accounts: impl Fn(&Address) -> Account,
    ) {
        assert_eq!(
            txs.len(),
            hashes.len(),
            "one hash per committed transaction"
        );
        let mut senders = BTreeSet::new();
        for (tx, hash) in txs.iter().zip(hashes) {
            self.remove(hash);
            if !tx.is_raw() {
                senders.insert(tx.sender_address());
            }
        }
        for addr in senders {
            if self.senders.contains_key(&addr) {
                self.advance(addr, accounts(&addr).nonce);
            }
        }
    }

    /// After the committed state jumped (a state snapshot was installed): drops every pooled
    /// transaction whose nonce is below its sender's committed nonce in the new state. Raw
    /// transactions have no nonce and stay.
    pub fn resync(&mut self, accounts: impl Fn(&Address) -> Account) {
        let senders: Vec<Address> = self.senders.keys().copied().collect();
        for addr in senders {
            self.advance(addr, accounts(&addr).nonce);
        }
    }

    /// Makes in-flight transactions pending again (their batch will not commit). Unknown or
    /// already pending hashes are ignored.
    pub fn requeue_in_flight(&mut self, hashes: &[Digest]) {
        for hash in hashes {
            match self.by_hash.get(hash) {
                None => {}
                Some(&Slot::Raw(seq)) => self.raw.requeue(seq),
                Some(&Slot::Account(addr, nonce)) => {
                    let entry = self
                        .senders
                        .get_mut(&addr)
                        .and_then(|s| s.txs.get_mut(&nonce));
                    if let Some(e) = entry {
                        e.in_flight = false;
                    }
                }
            }
        }
    }

    /// The nonce `addr`'s next transaction should carry to follow its pooled ones:
    /// `committed` (the account's committed nonce) plus the run of consecutive nonces pooled
    /// from there. What a wallet needs to send back-to-back transfers without collisions.
    /// Raw transactions are not in any sender's run.
    pub fn next_nonce(&self, addr: &Address, committed: u64) -> u64 {
        let Some(sender) = self.senders.get(addr) else {
            return committed;
        };
        let mut next = committed.max(sender.next);
        for &n in sender.txs.range(next..).map(|(n, _)| n) {
            if n != next {
                break;
            }
            next = next.saturating_add(1);
        }
        next
    }

    pub fn status(&self, hash: &Digest) -> Option<PoolStatus> {
        let e = match *self.by_hash.get(hash)? {
            Slot::Account(addr, nonce) => self.senders.get(&addr)?.txs.get(&nonce)?,
            Slot::Raw(seq) => self.raw.get(seq),
        };
        Some(if e.in_flight {
            PoolStatus::InFlight
        } else {
            PoolStatus::Pending
        })
    }

    /// Pooled transactions, pending and in flight, raw ones included.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Encoded bytes of the pooled transactions, pending and in flight, raw ones included.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn remove(&mut self, hash: &Digest) {
        match self.by_hash.remove(hash) {
            None => {}
            Some(Slot::Raw(seq)) => self.bytes -= self.raw.remove(seq).size,
            Some(Slot::Account(addr, nonce)) => {
                if let Some(sender) = self.senders.get_mut(&addr) {
                    if let Some(e) = sender.txs.remove(&nonce) {
                        self.bytes -= e.size;
                    }
                    if sender.txs.is_empty() {
                        self.senders.remove(&addr);
                    }
                }
            }
        }
    }

    /// Records that `addr`'s committed nonce is `nonce` and drops its transactions below it.
    fn advance(&mut self, addr: Address, nonce: u64) {
        let Some(sender) = self.senders.get_mut(&addr) else {
            return;
        };
        if nonce <= sender.next {
            return;
        }
        sender.next = nonce;
        let keep = sender.txs.split_off(&nonce);
        let stale = std::mem::replace(&mut sender.txs, keep);
        if sender.txs.is_empty() {
            self.senders.remove(&addr);
        }
        for e in stale.into_values() {
            self.by_hash.remove(&e.hash);
            self.bytes -= e.size;
        }
    }
}

/// A transfer's amount; 0 for a raw transaction, which never reaches the balance check, and
/// for a validator-set change, which moves no balance.
fn transfer_amount(tx: &Transaction) -> u64 {
    match tx.body.payload {
        Payload::Transfer { amount, .. } => amount,
        Payload::Raw { .. } | Payload::Governance(_) => 0,
    }
}

/// At most 64 characters of `s`, marked when cut (chain ids in transactions are unchecked).
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
#[cfg(test)]
mod tests;
