//! Verified reads: what `GET /v1/accounts/{address}?prove=true` answers, and the check a
//! wallet runs on it with nothing but the genesis file ([`verify_account`]).
//!
//! The chain of trust: the genesis file names the validators → each epoch link
//! ([`super::epochs::SetChain`]) hands trust to the next set → a header certificate
//! (`consensus::attest::HeaderCert`) carries signatures of 2f+1 of the set ruling its height
//! on a header hash (and the header names the set after it, so a withheld epoch change
//! shows) →
//! the header (its canonical bytes, hashed by the wallet) holds the state root → the
//! account-tree proof leads from the account's leaf (or its absence) to that root. A
//! validator that lies about a balance would have to forge 2f+1 signatures or a sha256
//! path.

use super::AccountView;
use super::epochs::SetChain;
use consensus::attest::{CertError, HeaderCert};
use crypto::{Digest, codec};
use ledger::tree::{AccountProof, ProofError};
use ledger::validators::{LinkError, ValidatorState};
use ledger::{Account, Address, BlockHeader};
use serde::{Deserialize, Serialize};

/// The proof part of an account answer (all byte strings hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProofView {
    /// The tree leaf's value (address, balance, nonce; 36 bytes), or `null` when the
    /// address has no account.
    pub value: Option<String>,
    /// `borsh` bytes of the inclusion or exclusion proof.
    pub proof: String,
    /// Canonical bytes of the header at `height`; its hash is what the certificate signs.
    pub header: String,
    /// Canonical bytes of the header certificate.
    pub certificate: String,
    /// Canonical bytes of the validator set after `height` (its hash is the header's
    /// `validators`): the wallet checks it is in the epoch it walked to.
    pub validators: String,
}

/// The inclusion part of a committed transaction's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxProofView {
    /// Transactions in the block.
    pub count: u32,
    /// The audit path from the transaction's hash to the header's `tx_root`
    /// ([`ledger::merkle_proof`]).
    pub path: Vec<Digest>,
    /// Canonical bytes of the header at the transaction's height.
    pub header: String,
    /// Canonical bytes of the header certificate.
    pub certificate: String,
    /// Canonical bytes of the validator set after the block (see [`AccountProofView`]).
    pub validators: String,
}

/// Largest header or certificate accepted from a validator (a certificate holds at most
/// [`Committee::MAX`] signatures).
const MAX_PART_BYTES: u64 = 256 << 10;

/// Why a proven answer proves nothing. Each says what did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the validator sent no proof (is it running an older Cairn?)")]
    NoProof,
    #[error("the answer's {0} is not valid hex")]
    Hex(&'static str),
    #[error("the header does not decode: {0}")]
    Header(String),
    #[error("the header is for height {header}, the answer says {answer}")]
    HeaderHeight { header: u64, answer: u64 },
    #[error("the header certificate does not decode: {0}")]
    CertDecode(String),
    #[error("header certificate: {0}")]
    Cert(#[from] CertError),
    #[error("account proof against the certified state root: {0}")]
    Proof(#[from] ProofError),
    #[error("epoch link {epoch} does not decode: {why}")]
    LinkDecode { epoch: u64, why: String },
    #[error("epoch link {epoch}: {why}")]
    Link { epoch: u64, why: LinkError },
    #[error("epoch link {epoch}'s header certificate, checked with the set before it: {why}")]
    LinkCert { epoch: u64, why: CertError },
    #[error("the validator set sent with the header at height {height} is not the one it names")]
    SetAfter { height: u64 },
    #[error(
        "the header at height {height} is in epoch {epoch}, but the validator's epoch links \
         end at epoch {trusted}: it withheld an epoch change, so its certificate proves nothing"
    )]
    UnwalkedEpoch {
        height: u64,
        epoch: u64,
        trusted: u64,
    },
    #[error("the transaction is not committed in the answer, so there is nothing to verify")]
    NotCommitted,
    #[error("the inclusion path does not lead from the transaction to the certified tx_root")]
    NotIncluded,
    #[error(
        "the answer says balance {said_balance}, nonce {said_nonce}; the proof proves balance \
         {balance}, nonce {nonce}"
    )]
    Mismatch {
        said_balance: u64,
        said_nonce: u64,
        balance: u64,
        nonce: u64,
    },
}

pub(super) fn unhex(s: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(s).map_err(|_| VerifyError::Hex(what))
}

/// Checks a proven account answer against the sets `chain` trusts (walked from genesis to
/// at least the answer's epoch): the certificate's signatures on the header, the set after the header, the
/// header's height, and the proof of the account (or its absence) against the header's state
/// root, and that the balance and nonce the answer states are the proven ones. Returns the
/// proven account (all zero for an absent one).
pub fn verify_account(view: &AccountView, chain: &SetChain) -> Result<Account, VerifyError> {
    let p = view.proof.as_ref().ok_or(VerifyError::NoProof)?;
    let header = certified_header(
        [&p.header, &p.certificate, &p.validators],
        view.height,
        chain,
    )?;
    let proof = AccountProof {
        value: p.value.as_deref().map(|v| unhex(v, "value")).transpose()?,
        proof: unhex(&p.proof, "proof")?,
    };
    let account = proof
        .verify(header.state_root, &view.address)?
        .unwrap_or_default();
    if (account.balance, account.nonce) != (view.balance, view.nonce) {
        return Err(VerifyError::Mismatch {
            said_balance: view.balance,
            said_nonce: view.nonce,
            balance: account.balance,
            nonce: account.nonce,
        });
    }
    Ok(account)
}

/// Decodes a header, its certificate and the set after it (hex), checks the certificate
/// with the set `chain` trusts at `height`, and that the set after the header is that
/// epoch's (or the next, for an epoch's last block).
fn certified_header(
    [header, certificate, validators]: [&str; 3],
    height: u64,
    chain: &SetChain,
) -> Result<BlockHeader, VerifyError> {
    let header: BlockHeader = codec::decode(&unhex(header, "header")?, MAX_PART_BYTES, "header")
        .map_err(|e| VerifyError::Header(e.to_string()))?;
    if header.height != height {
        return Err(VerifyError::HeaderHeight {
            header: header.height,
            answer: height,
        });
    }
    let cert: HeaderCert = codec::decode(
        &unhex(certificate, "certificate")?,
        MAX_PART_BYTES,
        "certificate",
    )
    .map_err(|e| VerifyError::CertDecode(e.to_string()))?;
    let set = chain.at(height);
    cert.verify(&set.committee, chain.genesis_hash(), height, &header.hash())?;
    let after: ValidatorState = codec::decode(
        &unhex(validators, "validators")?,
        crate::store::MAX_LINK_BYTES,
        "validator set",
    )
    .map_err(|e| VerifyError::Header(format!("the set after it: {e}")))?;
    chain.check_set_after(&header, &after)?;
    Ok(header)
}

/// Checks a committed transaction's answer: the certificate on the header at its height and
/// the path from its hash to the header's `tx_root`. What this proves is that the
/// transaction is in that certified block; its outcome (the receipt) is not in the header.
pub fn verify_tx(status: &super::TxStatus, chain: &SetChain) -> Result<BlockHeader, VerifyError> {
    let super::TxStatus::Committed {
        hash,
        height,
        index,
        proof,
        ..
    } = status
    else {
        return Err(VerifyError::NotCommitted);
    };
    let p = proof.as_ref().ok_or(VerifyError::NoProof)?;
    let header = certified_header([&p.header, &p.certificate, &p.validators], *height, chain)?;
    if !ledger::verify_merkle_proof(
        &header.tx_root,
        hash,
        u64::from(*index),
        u64::from(p.count),
        &p.path,
    ) {
        return Err(VerifyError::NotIncluded);
    }
    Ok(header)
}

/// Builds the inclusion proof of the transaction at `index` of the block at `height`, if
/// that height has a header certificate (`None`: it has none yet).
pub(super) fn prove_tx(
    store: &crate::store::RedbStore,
    height: u64,
    index: u32,
) -> Result<Option<TxProofView>, ledger::StoreError> {
    use ledger::Store;
    let (Some(cert), Some(block)) = (store.header_cert(height)?, store.block(height)?) else {
        return Ok(None);
    };
    // A certificate for another header than this validator's: it has nothing provable here.
    let decoded: Result<HeaderCert, _> = codec::decode(&cert, MAX_PART_BYTES, "certificate");
    if !decoded.is_ok_and(|c| c.header == block.hash()) {
        return Ok(None);
    }
    let Some(set) = store.validators_at(height)? else {
        return Ok(None);
    };
    let hashes: Vec<Digest> = block.txs.iter().map(ledger::Transaction::hash).collect();
    let Some(path) = ledger::merkle_proof(&hashes, index as usize) else {
        return Ok(None);
    };
    Ok(Some(TxProofView {
        count: hashes.len() as u32,
        path,
        header: hex::encode(codec::encode(&block.header)),
        certificate: hex::encode(&cert),
        validators: hex::encode(codec::encode(&set)),
    }))
}

/// Builds the proof part for `address` at `height` from `store` (the caller checked that
/// `height` is stored and certified): `(account, proof view)`, or why not.
pub(super) fn prove(
    store: &crate::store::RedbStore,
    address: &Address,
    height: u64,
    cert: Vec<u8>,
) -> Result<Result<(Account, AccountProofView), String>, ledger::StoreError> {
    use ledger::Store;
    let Some(block) = store.block(height)? else {
        return Ok(Err(format!("block {height} is not stored here")));
    };
    let decoded: Result<HeaderCert, _> = codec::decode(&cert, MAX_PART_BYTES, "certificate");
    match decoded {
        Ok(c) if c.header == block.hash() => {}
        _ => {
            return Ok(Err(format!(
                "this validator's header at height {height} is not the one its stored \
                 certificate signs; ask another validator"
            )));
        }
    }
    let snapshot = store.tree_snapshot()?;
    if height < snapshot.floor {
        return Ok(Err(format!(
            "height {height} is pruned here: this validator keeps state from height {} on",
            snapshot.floor
        )));
    }
    let Some(set) = store.validators_at(height)? else {
        return Ok(Err(format!(
            "this validator holds no validator set at height {height} (it restored a later \
             snapshot); ask another validator"
        )));
    };
    let proof = ledger::tree::prove(&snapshot, address, height)
        .map_err(|e| ledger::StoreError::new("proving an account", e))?;
    let account = match &proof.value {
        Some(v) => {
            ledger::tree::decode_value(v)
                .map_err(|e| ledger::StoreError::new("a stored tree leaf", e))?
                .1
        }
        None => Account::default(),
    };
    Ok(Ok((
        account,
        AccountProofView {
            value: proof.value.as_ref().map(hex::encode),
            proof: hex::encode(&proof.proof),
            header: hex::encode(codec::encode(&block.header)),
            certificate: hex::encode(&cert),
            validators: hex::encode(codec::encode(&set)),
        },
    )))
}
