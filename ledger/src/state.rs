//! Account state and deterministic execution of ordered transactions.

use crate::Address;
use crate::tx::{ChainBinding, Payload, Transaction};
use crate::validators::{Change, Governance, ValidatorState};
use crypto::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One account. An address that was never credited has the default (zero) account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
    /// Number of transactions this account has had applied; the next must carry this nonce.
    pub nonce: u64,
}

/// Why a transaction in a block was skipped. Every replica computes the same reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Signed for another chain id or genesis.
    WrongChain {
        chain_id: String,
        genesis_hash: Digest,
    },
    /// Signature (or sender key) fails Cairn's verification rule.
    BadSignature,
    /// Nonce already used: a replay or a duplicate.
    NonceTooLow {
        expected: u64,
        got: u64,
    },
    /// Nonce skips ahead of the account's next nonce.
    NonceTooHigh {
        expected: u64,
        got: u64,
    },
    InsufficientBalance {
        balance: u64,
        needed: u64,
    },
    /// The recipient's balance would pass u64::MAX.
    Overflow,
    ZeroAmount,
    /// A validator-set change was refused (the sentence says why: wrong epoch, a change
    /// already pending, too few approvals, an invalid resulting set, or changes not enabled
    /// on this chain). Every replica computes the same sentence.
    Governance(String),
}

impl RejectReason {
    /// A stable machine-readable name for the reason (the API's receipt `code`), so clients
    /// need not parse the sentence. `nonce_too_low` means the nonce was used by another
    /// transaction: this one can never apply.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::WrongChain { .. } => "wrong_chain",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::NonceTooLow { .. } => "nonce_too_low",
            RejectReason::NonceTooHigh { .. } => "nonce_too_high",
            RejectReason::InsufficientBalance { .. } => "insufficient_balance",
            RejectReason::Overflow => "overflow",
            RejectReason::ZeroAmount => "zero_amount",
            RejectReason::Governance(_) => "governance_refused",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::WrongChain {
                chain_id,
                genesis_hash,
            } => write!(
                f,
                "signed for another chain (chain_id {chain_id:?}, genesis {})",
                genesis_hash.short()
            ),
            RejectReason::BadSignature => write!(f, "bad signature"),
            RejectReason::NonceTooLow { expected, got } => {
                write!(f, "nonce {got} already used (next nonce is {expected})")
            }
            RejectReason::NonceTooHigh { expected, got } => {
                write!(f, "nonce {got} is ahead of the next nonce {expected}")
            }
            RejectReason::InsufficientBalance { balance, needed } => {
                write!(f, "insufficient balance: have {balance}, need {needed}")
            }
            RejectReason::Overflow => write!(f, "recipient balance would overflow"),
            RejectReason::ZeroAmount => write!(f, "transfer amount must be positive"),
            RejectReason::Governance(why) => write!(f, "validator-set change refused: {why}"),
        }
    }
}

/// The outcome of one transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_hash: Digest,
    pub outcome: Result<(), RejectReason>,
}

/// Accounts by address: the working set a block executes over (the ledger loads the
/// accounts a block touches; tests hold whole states).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    accounts: BTreeMap<Address, Account>,
}

/// What a block's validator-set changes are judged against: the set before the block, the
/// chain's [`Governance`] settings (`None`: changes are not enabled), the block's height,
/// and, once one was accepted in this block, the state after it.
#[derive(Clone, Debug)]
pub struct GovernanceCtx<'a> {
    pub current: &'a ValidatorState,
    pub settings: Option<Governance>,
    pub height: u64,
    pub accepted: Option<ValidatorState>,
}

/// Why a change is refused on a chain that does not enable them.
pub const GOVERNANCE_DISABLED: &str = "validator-set changes are not enabled on this chain (genesis \
     params.epoch_delay_blocks is 0, or its protocol is raft, which cannot change its membership yet)";

/// The result of executing one block's transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execution {
    pub receipts: Vec<Receipt>,
    /// Every account the block touched, with its new value, ordered by address.
    pub changed: Vec<(Address, Account)>,
}

impl State {
    /// State holding `accounts`. Later duplicates of an address replace earlier ones; genesis
    /// validation rejects duplicates before this is called.
    pub fn new(accounts: impl IntoIterator<Item = (Address, Account)>) -> State {
        State {
            accounts: accounts.into_iter().collect(),
        }
    }

    pub fn account(&self, addr: &Address) -> Account {
        self.accounts.get(addr).copied().unwrap_or_default()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// Sum of all balances. Execution never changes it.
    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }

    /// Executes `txs` in order. Each transaction either applies entirely or is skipped with a
    /// receipt saying why; the result depends only on the state, the chain binding and the
    /// transactions, so every replica reaches the same state.
    ///
    /// Signatures are checked as one batch under the same rule as single verification
    /// ([`crypto::verify_batch`]), so batching cannot change a verdict. Raw transactions
    /// ([`Payload::Raw`]) have no signature and stay out of the batch: whatever their sender
    /// and signature fields hold cannot change the verdict on a signed neighbour.
    pub fn execute(&mut self, chain: &ChainBinding, txs: &[Transaction]) -> Execution {
        self.execute_checked(chain, txs, &[])
    }

    /// [`State::execute`], skipping the signature check of transaction i where `checked[i]`
    /// is true (missing entries are false). The caller must have verified those signatures
    /// under the same rule ([`crypto::verify`] and [`crypto::verify_batch`] agree on every
    /// signature), so the outcome is the one `execute` gives: replicas that skip different
    /// checks still reach the same state. The node skips its own admitted batches, and in
    /// Raft every batch.
    pub fn execute_checked(
        &mut self,
        chain: &ChainBinding,
        txs: &[Transaction],
        checked: &[bool],
    ) -> Execution {
        self.execute_hashed(chain, txs, checked, &[])
    }

    /// [`State::execute_checked`] with the transactions' hashes already known: `hashes[i]`
    /// must be `txs[i].hash()` (the validator computes it once, where the transaction enters);
    /// missing entries are computed here.
    pub fn execute_hashed(
        &mut self,
        chain: &ChainBinding,
        txs: &[Transaction],
        checked: &[bool],
        hashes: &[Digest],
    ) -> Execution {
        self.execute_governed(chain, txs, checked, hashes, None)
    }

    /// [`State::execute_hashed`] with validator-set changes judged against `gov` (without
    /// it, every change is refused with [`GOVERNANCE_DISABLED`]). An accepted change bumps
    /// its sender's nonce and lands in `gov.accepted`; a refused one changes nothing.
    pub fn execute_governed(
        &mut self,
        chain: &ChainBinding,
        txs: &[Transaction],
        checked: &[bool],
        hashes: &[Digest],
        mut gov: Option<&mut GovernanceCtx>,
    ) -> Execution {
        let signed: Vec<(usize, Vec<u8>)> = txs
            .iter()
            .enumerate()
            .filter(|(i, t)| !t.is_raw() && !checked.get(*i).copied().unwrap_or(false))
            .map(|(i, t)| (i, t.body.signing_bytes()))
            .collect();
        // Raw and already checked transactions keep `true` (`apply` never looks at it for
        // raw ones).
        let mut sig_ok = vec![true; txs.len()];
        for ((i, _), ok) in signed.iter().zip(crate::tx::verify_bodies(txs, &signed)) {
            sig_ok[*i] = ok;
        }

        let mut changed = BTreeMap::new();
        let receipts = txs
            .iter()
            .zip(sig_ok)
            .enumerate()
            .map(|(i, (tx, sig_ok))| {
                let outcome = self.apply(chain, tx, sig_ok, &mut changed, gov.as_deref_mut());
                Receipt {
                    tx_hash: hashes.get(i).copied().unwrap_or_else(|| tx.hash()),
                    outcome,
                }
            })
            .collect();
        Execution {
            receipts,
            changed: changed.into_iter().collect(),
        }
    }

    /// Applies one transaction, or says why not. A raw transaction on this chain applies
    /// with no effect: it reads and changes no account (see [`Payload::Raw`]).
    fn apply(
        &mut self,
        chain: &ChainBinding,
        tx: &Transaction,
        sig_ok: bool,
        changed: &mut BTreeMap<Address, Account>,
        gov: Option<&mut GovernanceCtx>,
    ) -> Result<(), RejectReason> {
        let body = &tx.body;
        if body.chain_id != chain.chain_id || body.genesis_hash != chain.genesis_hash {
            return Err(RejectReason::WrongChain {
                chain_id: body.chain_id.clone(),
                genesis_hash: body.genesis_hash,
            });
        }
        // Ordered and stored, never executed: no signature, nonce or account to check.
        if let Payload::Raw { .. } = &body.payload {
            return Ok(());
        }
        if !sig_ok {
            return Err(RejectReason::BadSignature);
        }
        let from = Address::of(&body.sender);
        let mut sender = self.account(&from);
        if body.nonce < sender.nonce {
            return Err(RejectReason::NonceTooLow {
                expected: sender.nonce,
                got: body.nonce,
            });
        }
        if body.nonce > sender.nonce {
            return Err(RejectReason::NonceTooHigh {
                expected: sender.nonce,
                got: body.nonce,
            });
        }
        let (to, amount) = match &body.payload {
            Payload::Transfer { to, amount } => (*to, *amount),
            Payload::Governance(change) => {
                govern(chain, change, gov)?;
                sender.nonce += 1;
                self.set(from, sender, changed);
                return Ok(());
            }
            // Raw transactions returned above, before any check.
            Payload::Raw { .. } => return Ok(()),
        };
        if amount == 0 {
            return Err(RejectReason::ZeroAmount);
        }
        if sender.balance < amount {
            return Err(RejectReason::InsufficientBalance {
                balance: sender.balance,
                needed: amount,
            });
        }
        sender.balance -= amount;
        sender.nonce += 1;
        // Read the recipient after debiting, so a self-transfer sees the debit.
        let mut recipient = if to == from {
            sender
        } else {
            self.account(&to)
        };
        recipient.balance = recipient
            .balance
            .checked_add(amount)
            .ok_or(RejectReason::Overflow)?;
        self.set(from, sender, changed);
        if to == from {
            self.set(from, recipient, changed);
        } else {
            self.set(to, recipient, changed);
        }
        Ok(())
    }

    fn set(&mut self, addr: Address, acc: Account, changed: &mut BTreeMap<Address, Account>) {
        self.accounts.insert(addr, acc);
        changed.insert(addr, acc);
    }
}

/// Accepts `change` into `gov` (see [`ValidatorState::accept`]), or says why not.
fn govern(
    chain: &ChainBinding,
    change: &Change,
    gov: Option<&mut GovernanceCtx>,
) -> Result<(), RejectReason> {
    let refused = |why: String| RejectReason::Governance(why);
    let Some(ctx) = gov else {
        return Err(refused(GOVERNANCE_DISABLED.into()));
    };
    let Some(settings) = ctx.settings else {
        return Err(refused(GOVERNANCE_DISABLED.into()));
    };
    let mut next = ctx.accepted.clone().unwrap_or_else(|| ctx.current.clone());
    next.accept(
        chain,
        change,
        settings.rule,
        ctx.height,
        settings.epoch_delay,
    )
    .map_err(|e| refused(e.to_string()))?;
    ctx.accepted = Some(next);
    Ok(())
}
