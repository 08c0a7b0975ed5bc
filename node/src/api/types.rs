//! The API's JSON bodies. They deserialize too, so clients (the wallet) can share them.

use crypto::{Digest, PublicKey};
use ledger::{Address, Block, Receipt, TxRecord};
use serde::{Deserialize, Serialize};

/// Integers as JSON strings of decimal digits (`#[serde(with = "dec")]`).
pub(crate) mod dec {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a decimal integer: {e}")))
    }
}

/// The outcome of a committed transaction: `{"ok":true}` or
/// `{"ok":false,"reason":"...","code":"..."}` (the transaction was ordered in a block but
/// skipped, and changed nothing). `code` is [`ledger::RejectReason::code`]: `nonce_too_low`
/// (its nonce was used by another transaction, so it can never apply), `nonce_too_high`,
/// `insufficient_balance`, `bad_signature`, `wrong_chain`, `overflow`, `zero_amount`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxReceipt {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl From<&Receipt> for TxReceipt {
    fn from(r: &Receipt) -> TxReceipt {
        let err = r.outcome.as_ref().err();
        TxReceipt {
            ok: r.outcome.is_ok(),
            reason: err.map(ToString::to_string),
            code: err.map(|e| e.code().to_string()),
        }
    }
}

/// Where a transaction is, by hash. The JSON carries `"status"`: `pending`, `in_flight`,
/// `committed`, `rejected` or `unknown`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// In this validator's pool, waiting for a batch.
    Pending { hash: Digest },
    /// In a batch that consensus is ordering.
    InFlight { hash: Digest },
    /// In block `height` at position `index`, with its receipt.
    Committed {
        hash: Digest,
        #[serde(with = "dec")]
        height: u64,
        index: u32,
        receipt: TxReceipt,
        /// With `?prove=true`: the transaction's inclusion in the block at `height`
        /// ([`super::proof::verify_tx`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<super::proof::TxProofView>,
    },
    /// Refused by the mempool; `retryable` means the same transaction may succeed later.
    /// `code` is [`crate::mempool::Rejected::code`] (`nonce_used`, `nonce_conflict`, ...).
    Rejected {
        hash: Digest,
        reason: String,
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
    /// Not found on a validator that keeps no transaction records below `kept_from`
    /// (pruning, or a state snapshot): it may have committed below that height. Never
    /// reported as `unknown` there.
    Pruned {
        hash: Digest,
        #[serde(with = "dec")]
        kept_from: u64,
        hint: String,
    },
    /// Neither committed nor in this validator's pool (or not committed within the wait).
    Unknown {
        hash: Digest,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
}

impl TxStatus {
    pub fn committed(hash: Digest, rec: &TxRecord) -> TxStatus {
        TxStatus::Committed {
            hash,
            height: rec.height,
            index: rec.index,
            receipt: TxReceipt::from(&rec.receipt),
            proof: None,
        }
    }
}

/// The answer to `POST /v1/transactions`: where the transaction is, plus whether this
/// submission was news to the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    #[serde(flatten)]
    pub status: TxStatus,
    /// The node already had this exact transaction (same hash) before this request: pooled,
    /// in flight or committed. The submission added nothing: whoever sent it first (another
    /// process, another machine, or an earlier try) made the payment.
    #[serde(default)]
    pub known: bool,
    /// Why a `mode=commit` answer is not `committed` yet (e.g. a lower nonce is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /v1/accounts/{address}`: the committed account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub address: Address,
    /// The stored height the account was read at (with a proof: the proven height).
    #[serde(with = "dec", default)]
    pub height: u64,
    #[serde(with = "dec")]
    pub balance: u64,
    /// The nonce the account's next transaction must carry (pooled ones not counted).
    #[serde(with = "dec")]
    pub nonce: u64,
    /// The nonce to use for a new transaction sent to this validator: `nonce` plus the
    /// account's consecutive transactions waiting in this validator's pool.
    #[serde(with = "dec")]
    pub pending_nonce: u64,
    /// With `?prove=true`: what [`super::proof::verify_account`] checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<super::proof::AccountProofView>,
}

/// `GET /v1/blocks/{height}`: the header, the transaction hashes and the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    #[serde(with = "dec")]
    pub height: u64,
    pub hash: Digest,
    pub parent: Digest,
    pub tx_root: Digest,
    pub state_root: Digest,
    /// Hash of the validator set after this block (`ledger::validators::ValidatorState`).
    pub validators: Digest,
    pub proposer: PublicKey,
    #[serde(with = "dec")]
    pub view: u64,
    #[serde(with = "dec")]
    pub timestamp_ms: u64,
    pub tx_hashes: Vec<Digest>,
    /// The protocol's commit proof, hex.
    pub certificate: String,
}

impl From<&Block> for BlockView {
    fn from(b: &Block) -> BlockView {
        let h = &b.header;
        BlockView {
            height: h.height,
            hash: b.hash(),
            parent: h.parent,
            tx_root: h.tx_root,
            state_root: h.state_root,
            validators: h.validators,
            proposer: h.proposer,
            view: h.view,
            timestamp_ms: h.timestamp_ms,
            tx_hashes: b.txs.iter().map(ledger::Transaction::hash).collect(),
            certificate: hex::encode(&b.certificate),
        }
    }
}
