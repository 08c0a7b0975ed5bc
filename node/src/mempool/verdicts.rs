//! What the pool answers and is configured with: [`Limits`], [`Admitted`], [`PoolStatus`],
//! [`Rejected`] (each refusal names the problem and the fix), and [`Checked`], a transaction
//! as the admission workers hand it over.

use crypto::{Digest, SignatureError};
use ledger::{MAX_TX_BYTES, Transaction};

/// Capacity limits of a [`Mempool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Transactions in the pool, pending and in flight.
    pub max_txs: usize,
    /// Encoded bytes in the pool, pending and in flight.
    pub max_bytes: usize,
    /// Admitted nonces lie in `next .. next + max_per_sender`, which also caps each sender.
    pub max_per_sender: usize,
    /// Largest encoded transaction admitted.
    pub max_tx_bytes: usize,
    /// Admit unsigned raw transactions ([`Payload::Raw`]); from genesis
    /// `params.raw_transactions`. Off by default.
    pub raw_transactions: bool,
    /// Admit validator-set changes (`ledger::Payload::Governance`); from genesis
    /// (`Genesis::governance`). Off until the chain's protocol can switch sets.
    pub governance: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_txs: 100_000,
            max_bytes: 256 << 20,
            max_per_sender: 1_024,
            max_tx_bytes: usize::try_from(MAX_TX_BYTES).unwrap_or(usize::MAX),
            raw_transactions: false,
            governance: false,
        }
    }
}

/// A successful [`Mempool::admit`]; each carries the transaction's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// New: now pending in the pool.
    Added(Digest),
    /// Already pending (a resubmission); nothing changed.
    AlreadyPending(Digest),
    /// Already taken into a batch that is not yet committed; nothing changed.
    InFlight(Digest),
}

impl Admitted {
    pub fn hash(&self) -> Digest {
        match self {
            Admitted::Added(h) | Admitted::AlreadyPending(h) | Admitted::InFlight(h) => *h,
        }
    }
}

/// Where a pooled transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolStatus {
    Pending,
    InFlight,
}

/// Why [`Mempool::admit`] refused a transaction, in the order the checks run. `Display` names
/// the problem and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error(
        "transaction is {size} bytes, over the {max}-byte limit: sign a smaller one (a \
         transfer's only variable field is the chain id, which must be this chain's)"
    )]
    TooLarge { size: usize, max: usize },
    /// `got` is shortened to at most 64 characters.
    #[error(
        "wrong chain id: signed for {got:?}, but this chain is {expected:?}; sign it again \
         with chain id {expected:?}"
    )]
    WrongChainId { got: String, expected: String },
    #[error(
        "wrong genesis hash: signed for genesis {got}, but chain {chain_id:?} has genesis \
         {expected} (it was restarted from a new genesis); sign it again with that hash"
    )]
    WrongGenesis {
        chain_id: String,
        got: Digest,
        expected: Digest,
    },
    #[error(
        "raw transactions are disabled on this chain (genesis params.raw_transactions enables \
         them, for benchmarks only): send signed transactions"
    )]
    RawDisabled,
    /// Also for a signed transaction whose sender is [`RAW_SENDER`], which no key owns.
    #[error("bad signature ({0}): sign the transaction body with the sender's key")]
    BadSignature(SignatureError),
    #[error(
        "nonce {nonce} already used (next nonce is {next}): if you sent this transaction \
         before, look up its hash, it may be committed; otherwise sign it again with nonce {next}"
    )]
    NonceUsed { nonce: u64, next: u64 },
    #[error(
        "nonce {nonce} is too far ahead (next nonce is {next}; the pool accepts nonces below \
         {}): send the missing nonces first or wait for pending ones to commit",
        .next.saturating_add(*.max_per_sender as u64)
    )]
    NonceTooFarAhead {
        nonce: u64,
        next: u64,
        max_per_sender: usize,
    },
    /// Another transaction with this sender and nonce is pooled (replacement is not supported).
    #[error(
        "nonce {nonce} is taken by pending transaction {pending}: wait for it to commit, then \
         use the next nonce (pending transactions cannot be replaced)"
    )]
    NonceConflict { nonce: u64, pending: Digest },
    #[error("transfer amount is 0: send a positive amount")]
    ZeroAmount,
    #[error("{}", ledger::GOVERNANCE_DISABLED)]
    GovernanceDisabled,
    /// `needed` is this amount plus the `pending` pooled transfers with lower nonces.
    #[error(
        "insufficient balance: have {balance}, need {needed} (this transfer plus {pending} \
         pending with lower nonces); lower the amount or wait for those to commit"
    )]
    InsufficientBalance {
        balance: u64,
        needed: u128,
        pending: usize,
    },
    #[error(
        "mempool full ({txs}/{max_txs} transactions, {bytes}/{max_bytes} bytes): retry later \
         (resubmitting the same transaction is safe)"
    )]
    PoolFull {
        txs: usize,
        bytes: usize,
        max_txs: usize,
        max_bytes: usize,
    },
    /// The validator's execution or store has fallen behind consensus (see
    /// `Driver::backlogged`): nothing new is admitted until it catches up.
    #[error(
        "the validator is busy: {0}; retry after the Retry-After delay (resubmitting the same \
         transaction is safe)"
    )]
    Busy(&'static str),
}

impl Rejected {
    /// A stable machine-readable name (the API's `code`), so clients need not parse the
    /// sentence: `nonce_used` and `nonce_conflict` tell a wallet to sign again with another
    /// nonce.
    pub fn code(&self) -> &'static str {
        match self {
            Rejected::TooLarge { .. } => "too_large",
            Rejected::WrongChainId { .. } => "wrong_chain_id",
            Rejected::WrongGenesis { .. } => "wrong_genesis",
            Rejected::RawDisabled => "raw_disabled",
            Rejected::BadSignature(_) => "bad_signature",
            Rejected::NonceUsed { .. } => "nonce_used",
            Rejected::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            Rejected::NonceConflict { .. } => "nonce_conflict",
            Rejected::ZeroAmount => "zero_amount",
            Rejected::GovernanceDisabled => "governance_disabled",
            Rejected::InsufficientBalance { .. } => "insufficient_balance",
            Rejected::PoolFull { .. } => "pool_full",
            Rejected::Busy(_) => "busy",
        }
    }

    /// Whether the same transaction may succeed later without change (the pool was full,
    /// the validator was behind).
    pub fn is_retryable(&self) -> bool {
        self.is_overload()
    }

    /// Whether the refusal is the validator's overload, not the transaction's fault: the API
    /// answers 503 with `Retry-After`.
    pub fn is_overload(&self) -> bool {
        matches!(self, Rejected::PoolFull { .. } | Rejected::Busy(_))
    }
}

/// A client transaction after the admission workers (`crate::validator::admission`): its
/// hash and encoded size, computed once from one encoding of its body, and its signature's
/// verdict under the one rule (raw transactions carry none: always `Ok`).
#[derive(Debug)]
pub struct Checked {
    pub tx: Transaction,
    pub hash: Digest,
    pub size: usize,
    pub signature: Result<(), crypto::SignatureError>,
}
