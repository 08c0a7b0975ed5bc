//! `--verify`: the wallet checks a validator's answer against the genesis file alone (see
//! [`crate::api::proof`] for the chain of trust), and reads at least as new as its own last
//! committed transaction (`KEY.seen`, [`super::nonces::read_seen`]).

use super::*;
use crate::api::epochs::SetChain;
use consensus::Committee;

/// A verification failure: the answer did not prove what it claims.
pub const EXIT_UNVERIFIED: u8 = 6;

/// What `--verify` trusts: the genesis validators and the genesis hash, and the sets the
/// epoch links after them hand trust to once [`Trust::walk`] has checked them.
pub(super) struct Trust {
    chain: SetChain,
}

/// Epoch-link answers a walk reads at most (each holds up to 64 links).
const MAX_EPOCH_PAGES: usize = 1_000;

impl Trust {
    /// Walks `node`'s epoch links from the newest trusted set on, each checked with the set
    /// before it (a validator that withholds links is caught by the proof's set check).
    fn walk(&mut self, node: &NodeClient) -> Result<(), Fail> {
        for _ in 0..MAX_EPOCH_PAGES {
            let from = self.chain.latest().state.epoch;
            let page = node.epochs(from).map_err(query_fail)?;
            self.chain.walk(&page).map_err(|e| {
                Fail::new(
                    EXIT_UNVERIFIED,
                    format!(
                        "the validator-set changes {} sent did NOT verify from genesis: {e}; \
                         do not trust it",
                        node.base()
                    ),
                )
            })?;
            if !page.more || self.chain.latest().state.epoch == from {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Loads `--genesis`; refuses a Raft chain, whose validators sign no headers.
pub(super) fn trust(cli: &Cli) -> Result<Trust, Fail> {
    let from_env = std::env::var_os("CAIRN_GENESIS")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    let path = cli.genesis.clone().or(from_env);
    let path = path.as_ref().ok_or_else(|| {
        Fail::new(
            EXIT_USAGE,
            "--verify needs the chain's genesis file (--genesis FILE or $CAIRN_GENESIS): its \
             validator set is the only thing the wallet trusts",
        )
    })?;
    let g = genesis::Genesis::load(path)
        .map_err(|e| Fail::new(EXIT_USAGE, format!("{}: {e}", path.display())))?;
    if !g.protocol.is_bft() {
        return Err(Fail::new(
            EXIT_USAGE,
            format!(
                "{} describes a Raft chain: Raft tolerates crashes, not lies, so its validators \
                 sign no header certificates and there is nothing to verify an answer against",
                path.display()
            ),
        ));
    }
    let keys = g.validators.iter().map(|v| v.consensus_key).collect();
    let committee = Committee::new_bft(keys, g.f(), g.quorum())
        .map_err(|e| Fail::new(EXIT_USAGE, format!("{}: validators: {e}", path.display())))?;
    Ok(Trust {
        chain: SetChain::new(g.validator_state(), committee, g.hash()),
    })
}

/// `balance`/`account`: read (with a proof if `verify`), at least at this wallet's last
/// committed height when reading through the wallet's own chain.
pub(super) fn balance(
    cli: &Cli,
    address: Option<&Address>,
    verify: bool,
    linearizable: bool,
) -> Result<(), Fail> {
    let mut trust = if verify { Some(trust(cli)?) } else { None };
    let address = match address {
        Some(a) => *a,
        None => Address::of(&load_key(cli)?.public()),
    };
    let node = node(cli)?;
    let genesis = match &trust {
        Some(t) => Some(*t.chain.genesis_hash()),
        None => node.status().ok().map(|s| s.genesis_hash),
    };
    let min_height = genesis.and_then(|g| nonces::read_seen(&cli.key, &g));
    let account = node
        .account_with(&address, verify, min_height, linearizable)
        .map_err(|e| {
            let mut f = query_fail(e);
            if let Some(h) = min_height {
                f.error.message.push_str(&format!(
                    " (this wallet asked for height {h} or later: its last committed transaction's \
                     height, recorded in {}; `cairn nonce --reset` forgets it)",
                    nonces::seen_path(&cli.key).display()
                ));
            }
            f
        })?;
    if let Some(h) = min_height
        && account.height < h
    {
        return Err(Fail::new(
            if verify {
                EXIT_UNVERIFIED
            } else {
                EXIT_UNREACHABLE
            },
            format!(
                "{} answered at height {}, below height {h} where this wallet's last \
                 transaction committed: the answer is stale; ask another validator",
                node.base(),
                account.height
            ),
        ));
    }
    let mut json = account_json(&account);
    let mut fields = vec![
        ("address", account.address.to_string()),
        ("balance", account.balance.to_string()),
        ("nonce", account.nonce.to_string()),
        ("height", account.height.to_string()),
    ];
    if let Some(t) = &mut trust {
        t.walk(&node).map_err(|f| f.with_json(json.clone()))?;
        if let Err(e) = crate::api::proof::verify_account(&account, &t.chain) {
            return Err(Fail::new(
                EXIT_UNVERIFIED,
                format!(
                    "the answer of {} did NOT verify: {e}; do not trust it",
                    node.base()
                ),
            )
            .with_json(json));
        }
        fields.push((
            "verified",
            format!(
                "yes (2f+1 of epoch {}'s validators, walked from genesis; state proof)",
                t.chain.at(account.height).state.epoch
            ),
        ));
        json["verified"] = json!(true);
    }
    if cli.json {
        print_json(&json);
    } else {
        print_fields(&fields);
    }
    Ok(())
}

/// `tx --verify`: the transaction's inclusion in a certified block.
pub(super) fn check_tx(cli: &Cli, node: &NodeClient, s: &TxStatus) -> Result<(), Fail> {
    let mut trust = trust(cli)?;
    trust.walk(node)?;
    crate::api::proof::verify_tx(s, &trust.chain)
        .map(|_| ())
        .map_err(|e| {
            Fail::new(
                EXIT_UNVERIFIED,
                format!(
                    "the answer of {} did NOT verify: {e}; do not trust it",
                    node.base()
                ),
            )
        })
}
