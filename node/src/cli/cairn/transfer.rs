//! `cairn transfer`: sign under the key's lock, submit, wait, and sign again only when the
//! earlier signature provably changed nothing (the rules are [`after_admission`] and
//! [`after_wait`]; the module docs of [`super`] say them in words).

use super::*;
use crate::api::Submitted;

/// A transaction as the user asked for it: a transfer, or a validator-set change
/// (`cairn validators submit`), which takes the same path (nonce, lock, wait, report).
pub(super) struct Order {
    pub(super) payload: Payload,
    pub(super) wait: Option<Duration>,
    /// `--nonce N`: this exact transaction, never re-signed.
    pub(super) pinned: Option<u64>,
}

/// One signed transaction, for output: who, what, which nonce and hash.
struct Sent {
    tx: Transaction,
    from: Address,
    nonce: u64,
}

/// What a payload does, as output fields: a transfer's recipient and amount; a change's
/// kind, epoch and approvals.
fn payload_fields(p: &Payload) -> Vec<(&'static str, String)> {
    match p {
        Payload::Transfer { to, amount } => {
            vec![("to", to.to_string()), ("amount", amount.to_string())]
        }
        Payload::Governance(c) => vec![
            ("change", super::validators::op_kind(&c.op).to_string()),
            ("epoch", c.epoch.to_string()),
            ("approvals", c.approvals.len().to_string()),
        ],
        Payload::Raw { .. } => Vec::new(),
    }
}

impl Sent {
    fn hash(&self) -> Digest {
        self.tx.hash()
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hash", self.hash().to_string()),
            ("from", self.from.to_string()),
        ]
        .into_iter()
        .chain(payload_fields(&self.tx.body.payload))
        .chain([("nonce", self.nonce.to_string())])
        .collect()
    }

    /// The status as JSON plus the transfer's fields.
    fn json(&self, s: Option<&TxStatus>) -> Value {
        let mut m = match s.map(status_json) {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        m.insert("hash".into(), json!(self.hash().to_string()));
        m.insert("from".into(), json!(self.from.to_string()));
        for (k, v) in payload_fields(&self.tx.body.payload) {
            m.insert(k.into(), json!(v));
        }
        m.insert("nonce".into(), json!(self.nonce.to_string()));
        Value::Object(m)
    }
}

pub(super) fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// What `transfer` does after an answer about its transaction.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Report this status (success or failure).
    Report,
    /// The node already had this exact transaction and the user did not pin the nonce:
    /// report a duplicate, not a new payment.
    Duplicate,
    /// The signature changed nothing and never will (its nonce is taken): sign again with
    /// the next nonce. The text says why, for the note.
    Resign(String),
}

/// The code of a refusal or of a failed receipt.
fn code_of(s: &TxStatus) -> Option<&str> {
    match s {
        TxStatus::Rejected { code, .. } => code.as_deref(),
        TxStatus::Committed { receipt, .. } if !receipt.ok => receipt.code.as_deref(),
        _ => None,
    }
}

/// After the first (`sync`) submission. A refusal at admission means the transaction was
/// not pooled: with `nonce_used` its nonce is behind the account's, with `nonce_conflict`
/// another transaction holds it, and ours was sent nowhere else, so it changed nothing.
fn after_admission(answer: &Submitted, pinned: bool) -> Next {
    if pinned {
        return Next::Report;
    }
    if answer.known {
        return Next::Duplicate;
    }
    match code_of(&answer.status) {
        Some("nonce_used") => Next::Resign("was already used by another transaction".into()),
        Some("nonce_conflict") => {
            Next::Resign("is held by another pending transaction in the node's pool".into())
        }
        _ => Next::Report,
    }
}

/// After waiting. Only outcomes that prove the transaction can never apply lead to a new
/// signature: committed with `nonce_too_low` (its nonce was used by another transaction),
/// or refused with `nonce_used` on a resubmission (the node checked its store first: the
/// nonce went to another transaction). `nonce_conflict` here is not proof (ours may still be
/// in a batch), and `nonce_too_high` leaves the nonce free, so neither is re-signed.
fn after_wait(status: &TxStatus, pinned: bool) -> Next {
    if pinned {
        return Next::Report;
    }
    match (status, code_of(status)) {
        (TxStatus::Committed { height, .. }, Some("nonce_too_low")) => Next::Resign(format!(
            "was used by another transaction first: it was committed in block {height} with a \
             failed receipt and changed nothing"
        )),
        (TxStatus::Rejected { .. }, Some("nonce_used")) => Next::Resign(
            "was used by another transaction while this one waited: the node dropped it from \
             its pool and refuses it now; it changed nothing"
                .into(),
        ),
        _ => Next::Report,
    }
}

pub(super) fn transfer(cli: &Cli, order: Order) -> Result<(), Fail> {
    let key = load_key(cli)?;
    let node = node(cli)?;
    let chain = node.status().map_err(query_fail)?.chain();
    // Nonces below `floor` are known to be taken (this process saw them refused or failed).
    let mut floor = 0u64;
    let mut attempt = 1;
    loop {
        let (sent, first) = sign_and_submit(cli, &node, &key, &chain, &order, floor)?;
        let pinned = order.pinned.is_some();
        let last = match after_admission(&first, pinned) {
            Next::Duplicate => return Err(duplicate(cli, &node, &sent, &first.status)),
            Next::Resign(why) if attempt < MAX_ATTEMPTS => {
                eprintln!(
                    "note: nonce {} {why}; signing again with the next nonce",
                    sent.nonce
                );
                std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                floor = sent.nonce + 1;
                attempt += 1;
                continue;
            }
            _ => match (order.wait, is_final(&first.status)) {
                (Some(timeout), false) => {
                    wait_for_commit(&node, &sent.tx, first.status.clone(), timeout)
                }
                _ => Waited {
                    status: first.status,
                    error: None,
                },
            },
        };
        match after_wait(&last.status, pinned) {
            Next::Resign(why) if attempt < MAX_ATTEMPTS => {
                eprintln!(
                    "note: transaction {} (nonce {}) {why}; signing again with the next nonce",
                    sent.hash(),
                    sent.nonce
                );
                floor = sent.nonce + 1;
                attempt += 1;
                continue;
            }
            _ => return report(cli, &node, &sent, &last, order.wait, attempt),
        }
    }
}

/// Under the key's signing lock: picks the nonce, signs, submits (`sync`) and records the
/// nonce as taken if the node took the transaction.
fn sign_and_submit(
    cli: &Cli,
    node: &NodeClient,
    key: &SecretKey,
    chain: &ledger::ChainBinding,
    order: &Order,
    floor: u64,
) -> Result<(Sent, Submitted), Fail> {
    let from = Address::of(&key.public());
    let lock = SigningLock::acquire(&cli.key, warn).map_err(|e| Fail::new(EXIT_REJECTED, e))?;
    let nonce = match order.pinned {
        Some(n) => n,
        None => {
            let pending = node.account(&from).map_err(query_fail)?.pending_nonce;
            let recorded = lock.recorded_next(chain, &from).unwrap_or(0);
            pending.max(recorded).max(floor)
        }
    };
    let sent = Sent {
        tx: Transaction::sign(key, chain, nonce, order.payload.clone()),
        from,
        nonce,
    };
    let answer = node.submit_full(&sent.tx, Mode::Sync, REQUEST_TIMEOUT);
    if let Ok(a) = &answer
        && !matches!(
            a.status,
            TxStatus::Rejected { .. } | TxStatus::Unknown { .. }
        )
    {
        lock.record(chain, &from, nonce.saturating_add(1), warn);
    }
    drop(lock);
    match answer {
        Ok(a) => Ok((sent, a)),
        Err(e) => Err(submit_fail(cli, &sent, e)),
    }
}

/// The node already had this exact transaction: not a new payment.
fn duplicate(cli: &Cli, node: &NodeClient, sent: &Sent, status: &TxStatus) -> Fail {
    let hash = sent.hash();
    if !cli.json {
        print_fields(&sent.fields());
        print_fields(&status_fields(status));
    }
    let mut json = sent.json(Some(status));
    json["known"] = json!(true);
    Fail::new(
        EXIT_DUPLICATE,
        format!(
            "node {} already had transaction {hash} (nonce {}, the same payload): \
             another process or machine using this key sent it first, so this command made no \
             new payment (its status: {}); to pay again, run the command again (it signs with \
             the next nonce), or use `cairn tx {hash}` to follow this one",
            node.base(),
            sent.nonce,
            status_fields(status)[0].1
        ),
    )
    .with_json(json)
}

/// Prints the final transfer and status and turns it into the exit code.
fn report(
    cli: &Cli,
    node: &NodeClient,
    sent: &Sent,
    last: &Waited,
    wait: Option<Duration>,
    attempts: u32,
) -> Result<(), Fail> {
    if !cli.json {
        print_fields(&sent.fields());
        print_fields(&status_fields(&last.status));
    }
    let mut json = sent.json(Some(&last.status));
    json["attempts"] = json!(attempts);
    if let TxStatus::Committed { height, .. } = &last.status
        && let Ok(lock) = SigningLock::acquire(&cli.key, warn)
    {
        // Reads after this one ask for at least this height (read-your-writes).
        lock.record_seen(&sent.tx.body.genesis_hash, *height, warn);
    }
    let fail = match (&last.status, wait) {
        // Without --wait, accepted into the pool is success.
        (TxStatus::Pending { .. } | TxStatus::InFlight { .. }, None) => None,
        (
            TxStatus::Pending { .. }
            | TxStatus::InFlight { .. }
            | TxStatus::Unknown { .. }
            | TxStatus::Pruned { .. },
            Some(t),
        ) => {
            let hash = sent.hash();
            let mut msg = format!(
                "transaction {hash} was accepted but is not committed after {}s (last status: \
                 {})",
                t.as_secs(),
                status_fields(&last.status)[0].1
            );
            if let Some(e) = &last.error {
                msg.push_str(&format!("; last error: {e}"));
            }
            msg.push_str(&format!(
                "; check later with `cairn tx {hash}` (do not send it again as a new transfer: \
                 it may still commit; `--nonce {}` resends this exact one)",
                sent.nonce
            ));
            Some(Fail::new(EXIT_UNKNOWN, msg))
        }
        (s, _) => outcome(s, node.base()).map(|mut f| {
            if attempts > 1 {
                f.error.message.push_str(&format!(
                    " (signature {attempts} of at most {MAX_ATTEMPTS}: the earlier ones lost \
                     their nonce to other transactions and changed nothing)"
                ));
            }
            f
        }),
    };
    match fail {
        None => {
            if cli.json {
                print_json(&json);
            }
            Ok(())
        }
        Some(f) => Err(f.with_json(json)),
    }
}

/// A submission that got no verdict.
fn submit_fail(cli: &Cli, sent: &Sent, e: ClientError) -> Fail {
    if !cli.json {
        print_fields(&sent.fields());
    }
    let hash = sent.hash();
    let (code, msg) = match &e {
        ClientError::Unreachable(m) => (
            EXIT_UNREACHABLE,
            format!("{m} (transaction {hash} was not sent)"),
        ),
        ClientError::Unavailable(m) => (
            EXIT_UNREACHABLE,
            format!(
                "{m}; transaction {hash} may or may not have been accepted: check with `cairn \
                 tx {hash}` (resubmitting it is safe)"
            ),
        ),
        ClientError::NoAnswer(m) | ClientError::BadAnswer(m) => (
            EXIT_UNKNOWN,
            format!(
                "{m}; transaction {hash} may or may not have been accepted: check with `cairn \
                 tx {hash}`"
            ),
        ),
        ClientError::WrongPath(m) => (
            EXIT_USAGE,
            format!("{m} (transaction {hash} was not accepted)"),
        ),
        ClientError::Refused { message, .. } => {
            (EXIT_REJECTED, format!("{message} (transaction {hash})"))
        }
    };
    Fail::new(code, msg).with_json(sent.json(None))
}

/// Where `transfer --wait` ended: the last status seen, and the last error on the way.
struct Waited {
    status: TxStatus,
    error: Option<ClientError>,
}

fn is_final(s: &TxStatus) -> bool {
    matches!(s, TxStatus::Committed { .. } | TxStatus::Rejected { .. })
}

/// Waits up to `timeout` for `tx` (admitted with status `status`) to commit: one `mode=commit`
/// submission (the node waits for the block), then polls of its status. Errors on the way
/// (the node restarting, say) do not end the wait; a node that forgot the transaction gets it
/// again.
fn wait_for_commit(
    node: &NodeClient,
    tx: &Transaction,
    mut status: TxStatus,
    timeout: Duration,
) -> Waited {
    let deadline = Instant::now() + timeout;
    let hash = tx.hash();
    let mut error = None;
    let mut first = true;
    loop {
        if is_final(&status) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let answer = if first {
            first = false;
            node.submit(tx, Mode::Commit, left)
        } else {
            std::thread::sleep(POLL.min(left));
            let within = || {
                deadline
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(100), REQUEST_TIMEOUT)
            };
            match node.tx(&hash, within()) {
                // Not in the pool and not committed: dropped, or the node restarted. Sending
                // it again is safe (it never applies twice).
                Ok(TxStatus::Unknown { .. }) => node.submit(tx, Mode::Sync, within()),
                other => other,
            }
        };
        match answer {
            // `mode=commit` answers `unknown` when the block did not come within its wait.
            Ok(TxStatus::Unknown { .. }) => {}
            Ok(s) => status = s,
            Err(e) => error = Some(e),
        }
    }
    Waited { status, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::Rejected;

    fn h() -> Digest {
        Digest([7; 32])
    }

    fn answer(status: TxStatus, known: bool) -> Submitted {
        Submitted {
            status,
            known,
            note: None,
        }
    }

    fn refused(r: &Rejected) -> TxStatus {
        TxStatus::Rejected {
            hash: h(),
            reason: r.to_string(),
            retryable: r.is_retryable(),
            code: Some(r.code().to_string()),
        }
    }

    fn committed_failed(reason: &ledger::RejectReason) -> TxStatus {
        TxStatus::Committed {
            hash: h(),
            height: 9,
            index: 0,
            receipt: TxReceipt {
                ok: false,
                reason: Some(reason.to_string()),
                code: Some(reason.code().to_string()),
            },
            proof: None,
        }
    }

    #[test]
    fn admission_refusals_of_a_taken_nonce_are_signed_again() {
        let used = refused(&Rejected::NonceUsed { nonce: 3, next: 4 });
        let taken = refused(&Rejected::NonceConflict {
            nonce: 3,
            pending: Digest([8; 32]),
        });
        for s in [&used, &taken] {
            assert!(matches!(
                after_admission(&answer(s.clone(), false), false),
                Next::Resign(_)
            ));
            // A pinned nonce is the user's exact transaction: never re-signed.
            assert_eq!(
                after_admission(&answer(s.clone(), false), true),
                Next::Report
            );
        }
        let ahead = refused(&Rejected::NonceTooFarAhead {
            nonce: 9,
            next: 1,
            max_per_sender: 4,
        });
        assert_eq!(after_admission(&answer(ahead, false), false), Next::Report);
        let zero = refused(&Rejected::ZeroAmount);
        assert_eq!(after_admission(&answer(zero, false), false), Next::Report);
        let pending = TxStatus::Pending { hash: h() };
        assert_eq!(
            after_admission(&answer(pending.clone(), false), false),
            Next::Report
        );
    }

    #[test]
    fn a_known_transaction_is_a_duplicate_unless_pinned() {
        for s in [
            TxStatus::Pending { hash: h() },
            TxStatus::InFlight { hash: h() },
            committed_failed(&ledger::RejectReason::ZeroAmount),
        ] {
            assert_eq!(
                after_admission(&answer(s.clone(), true), false),
                Next::Duplicate
            );
            assert_eq!(after_admission(&answer(s, true), true), Next::Report);
        }
    }

    #[test]
    fn only_proof_that_nothing_can_apply_leads_to_a_new_signature() {
        let low = committed_failed(&ledger::RejectReason::NonceTooLow {
            expected: 5,
            got: 4,
        });
        assert!(matches!(after_wait(&low, false), Next::Resign(_)));
        assert_eq!(after_wait(&low, true), Next::Report);
        let used = refused(&Rejected::NonceUsed { nonce: 3, next: 4 });
        assert!(matches!(after_wait(&used, false), Next::Resign(_)));
        // Not proof: ours may still be in a batch, or its nonce is still free.
        let conflict = refused(&Rejected::NonceConflict {
            nonce: 3,
            pending: Digest([8; 32]),
        });
        assert_eq!(after_wait(&conflict, false), Next::Report);
        let high = committed_failed(&ledger::RejectReason::NonceTooHigh {
            expected: 4,
            got: 5,
        });
        assert_eq!(after_wait(&high, false), Next::Report);
        let poor = committed_failed(&ledger::RejectReason::InsufficientBalance {
            balance: 1,
            needed: 2,
        });
        assert_eq!(after_wait(&poor, false), Next::Report);
        for open in [
            TxStatus::Pending { hash: h() },
            TxStatus::InFlight { hash: h() },
            TxStatus::Unknown {
                hash: h(),
                hint: None,
            },
        ] {
            assert_eq!(after_wait(&open, false), Next::Report, "{open:?}");
        }
    }
}
