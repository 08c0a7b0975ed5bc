//! `cairn validators`: show the validator set, and change it (issue 21).
//!
//! A change travels as a JSON file ([`ChangeFile`]): `add`, `remove` or `rotate` write it for
//! the node's current epoch together with the consensus keys of the set that must approve
//! it; `sign` adds one validator's approval with its consensus key file, offline (the file
//! names the chain and the set, so no node is needed); `submit` checks that a quorum
//! approved it and sends it as an ordinary transaction from the wallet, with the transfer's
//! nonce, lock, wait and exit-code rules.

use super::transfer::{Order, transfer};
use super::*;
use crate::api::ValidatorsView;
use crypto::{PublicKey, Signature};
use ledger::ChainBinding;
use ledger::validators::{Change, Member, Rule, SetChange, approve};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A change and its approvals, as `cairn validators` reads and writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeFile {
    chain_id: String,
    genesis_hash: Digest,
    /// The epoch the change is for: approvals count in that epoch only.
    #[serde(with = "crate::api::dec")]
    epoch: u64,
    /// The consensus keys of that epoch's set, in order (an approval names an index).
    set: Vec<PublicKey>,
    /// Approvals the change needs, as the node reported for its protocol (a BFT quorum, or
    /// a Raft majority); a file without it is for a BFT chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quorum: Option<usize>,
    op: SetChange,
    approvals: Vec<Approval>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Approval {
    index: u16,
    signature: Signature,
}

impl ChangeFile {
    fn chain(&self) -> ChainBinding {
        ChainBinding {
            chain_id: self.chain_id.clone(),
            genesis_hash: self.genesis_hash,
        }
    }

    /// Approvals the change needs (the chain's rule; BFT when the file does not say).
    fn quorum(&self) -> usize {
        self.quorum
            .unwrap_or_else(|| Rule::Bft.quorum(self.set.len()))
    }

    fn change(&self) -> Change {
        let mut approvals: Vec<(u16, Signature)> = self
            .approvals
            .iter()
            .map(|a| (a.index, a.signature))
            .collect();
        approvals.sort_by_key(|(i, _)| *i);
        Change {
            epoch: self.epoch,
            op: self.op.clone(),
            approvals,
        }
    }

    fn read(path: &Path) -> Result<ChangeFile, Fail> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Fail::new(
                EXIT_USAGE,
                format!("cannot read the change file {}: {e}", path.display()),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Fail::new(
                EXIT_USAGE,
                format!(
                    "{} is not a change file written by `cairn validators add|remove|rotate`: {e}",
                    path.display()
                ),
            )
        })
    }

    /// Writes the file whole (a temporary file renamed over it); `fresh`: refuse to replace
    /// an existing file.
    fn write(&self, path: &Path, fresh: bool) -> Result<(), Fail> {
        if fresh && path.exists() {
            return Err(Fail::new(
                EXIT_USAGE,
                format!(
                    "{} exists; choose another --out or remove it",
                    path.display()
                ),
            ));
        }
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        let mut tmp = PathBuf::from(path);
        tmp.set_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Fail::new(EXIT_USAGE, format!("cannot write {}: {e}", path.display()))
            })
    }
}

/// `add`, `remove` or `rotate`.
pub(super) fn op_kind(op: &SetChange) -> &'static str {
    match op {
        SetChange::Add(_) => "add",
        SetChange::Remove { .. } => "remove",
        SetChange::Rotate { .. } => "rotate",
    }
}

pub(super) fn run(cli: &Cli, command: &ValidatorsCommand) -> Result<(), Fail> {
    match command {
        ValidatorsCommand::List => list(cli),
        ValidatorsCommand::TransferLeader { to } => {
            let answer = node(cli)?.transfer_leader(*to).map_err(|e| match e {
                ClientError::Refused { message, .. } => Fail::new(EXIT_REJECTED, message),
                e => query_fail(e),
            })?;
            if cli.json {
                print_json(&serde_json::to_value(answer).unwrap_or(Value::Null));
            } else {
                println!(
                    "leader transfer started: validator {} is to lead",
                    answer.to
                );
            }
            Ok(())
        }
        ValidatorsCommand::Add {
            name,
            consensus_key,
            network_key,
            address,
            out,
        } => write_change(cli, out, |_| {
            Ok(SetChange::Add(Member {
                name: name.clone(),
                consensus_key: *consensus_key,
                network_key: *network_key,
                p2p_address: address.clone(),
            }))
        }),
        ValidatorsCommand::Remove { consensus_key, out } => write_change(cli, out, |set| {
            member_of(set, consensus_key)?;
            Ok(SetChange::Remove {
                consensus_key: *consensus_key,
            })
        }),
        ValidatorsCommand::Rotate {
            old_key,
            new_key,
            network_key,
            address,
            name,
            out,
        } => write_change(cli, out, |set| {
            let old = member_of(set, old_key)?;
            Ok(SetChange::Rotate {
                old_consensus_key: *old_key,
                new: Member {
                    name: name.clone().unwrap_or_else(|| old.name.clone()),
                    consensus_key: *new_key,
                    network_key: network_key.unwrap_or(old.network_key),
                    p2p_address: address.clone().unwrap_or_else(|| old.p2p_address.clone()),
                },
            })
        }),
        ValidatorsCommand::Sign {
            file,
            consensus_key,
        } => sign(cli, file, consensus_key),
        ValidatorsCommand::Submit { file, wait } => submit(cli, file, wait.duration()),
    }
}

fn member_of<'a>(set: &'a ValidatorsView, key: &PublicKey) -> Result<&'a Member, Fail> {
    set.members
        .iter()
        .map(|m| &m.member)
        .find(|m| m.consensus_key == *key)
        .ok_or_else(|| {
            Fail::new(
                EXIT_USAGE,
                format!(
                    "{key} is not the consensus key of a validator of epoch {}; see `cairn \
                     validators list`",
                    set.epoch
                ),
            )
        })
}

fn list(cli: &Cli) -> Result<(), Fail> {
    let set = node(cli)?.validators().map_err(query_fail)?;
    if cli.json {
        print_json(&serde_json::to_value(&set).unwrap_or(Value::Null));
        return Ok(());
    }
    print_fields(&[
        ("epoch", set.epoch.to_string()),
        ("since height", set.start_height.to_string()),
        ("height", set.height.to_string()),
        (
            "quorum",
            format!("{} of {} (f = {})", set.quorum, set.members.len(), set.f),
        ),
    ]);
    for m in &set.members {
        println!(
            "  {:>3}  {:<16} {}  {}",
            m.index, m.member.name, m.member.consensus_key, m.member.p2p_address
        );
    }
    if let Some(r) = &set.raft {
        let state = if r.committed {
            "committed"
        } else {
            "not committed yet"
        };
        println!(
            "raft configuration (entry {}, {state}): voters {:?}, learners {:?}",
            r.config_index, r.voters, r.learners
        );
    }
    match &set.pending {
        None => println!("pending: none"),
        Some(p) => println!(
            "pending: {} accepted at {}, takes effect after block {} ({} blocks to go)",
            describe(&p.op),
            p.accepted_at,
            p.effective_after,
            p.blocks_to_go
        ),
    }
    Ok(())
}

fn describe(op: &SetChange) -> String {
    match op {
        SetChange::Add(m) => format!("add {} ({})", m.name, m.consensus_key),
        SetChange::Remove { consensus_key } => format!("remove {consensus_key}"),
        SetChange::Rotate {
            old_consensus_key,
            new,
        } => format!(
            "rotate {old_consensus_key} to {} ({})",
            new.consensus_key, new.name
        ),
    }
}

/// Writes a change for the node's current epoch, built by `op` from the current set.
fn write_change(
    cli: &Cli,
    out: &Path,
    op: impl FnOnce(&ValidatorsView) -> Result<SetChange, Fail>,
) -> Result<(), Fail> {
    let node = node(cli)?;
    let chain = node.status().map_err(query_fail)?.chain();
    let set = node.validators().map_err(query_fail)?;
    if let Some(p) = &set.pending {
        return Err(Fail::new(
            EXIT_REJECTED,
            format!(
                "a change is already pending in epoch {} ({}, after block {}); one change per \
                 epoch: write this one once the epoch ends",
                set.epoch,
                describe(&p.op),
                p.effective_after
            ),
        ));
    }
    let file = ChangeFile {
        chain_id: chain.chain_id,
        genesis_hash: chain.genesis_hash,
        epoch: set.epoch,
        set: set.members.iter().map(|m| m.member.consensus_key).collect(),
        quorum: Some(set.quorum),
        op: op(&set)?,
        approvals: Vec::new(),
    };
    file.write(out, true)?;
    if cli.json {
        print_json(&json!({
            "file": out.display().to_string(),
            "change": op_kind(&file.op),
            "epoch": file.epoch.to_string(),
            "quorum": file.quorum(),
        }));
    } else {
        println!("wrote {}: {}", out.display(), describe(&file.op));
        println!(
            "next: {} of the {} validators of epoch {} approve it with `cairn validators sign \
             {} --consensus-key KEY_FILE`, then `cairn validators submit {}`",
            file.quorum(),
            file.set.len(),
            file.epoch,
            out.display(),
            out.display()
        );
    }
    Ok(())
}

fn sign(cli: &Cli, path: &Path, key_file: &Path) -> Result<(), Fail> {
    let mut file = ChangeFile::read(path)?;
    let key = load_key_file(key_file)?;
    let index = file
        .set
        .iter()
        .position(|k| *k == key.public())
        .ok_or_else(|| {
            Fail::new(
                EXIT_USAGE,
                format!(
                    "{}: consensus key {} is not in the set that approves this change (epoch {})",
                    key_file.display(),
                    key.public(),
                    file.epoch
                ),
            )
        })? as u16;
    let signature = approve(&key, &file.chain(), file.epoch, &file.op);
    file.approvals.retain(|a| a.index != index);
    file.approvals.push(Approval { index, signature });
    file.approvals.sort_by_key(|a| a.index);
    file.write(path, false)?;
    let (have, need) = (file.approvals.len(), file.quorum());
    if cli.json {
        print_json(&json!({ "index": index, "approvals": have, "quorum": need }));
    } else {
        println!("approved as validator {index}: {have} of {need} approvals");
    }
    Ok(())
}

fn submit(cli: &Cli, path: &Path, wait: Option<Duration>) -> Result<(), Fail> {
    let file = ChangeFile::read(path)?;
    let (have, need) = (file.approvals.len(), file.quorum());
    if have < need {
        return Err(Fail::new(
            EXIT_USAGE,
            format!(
                "{} has {have} approval(s); the set of epoch {} needs {need}: run `cairn \
                 validators sign` with more validators' consensus keys",
                path.display(),
                file.epoch
            ),
        ));
    }
    let chain = node(cli)?.status().map_err(query_fail)?.chain();
    if chain != file.chain() {
        return Err(Fail::new(
            EXIT_USAGE,
            format!(
                "{} is for chain {} ({}), but the node serves {} ({})",
                path.display(),
                file.chain_id,
                file.genesis_hash,
                chain.chain_id,
                chain.genesis_hash
            ),
        ));
    }
    transfer(
        cli,
        Order {
            payload: Payload::Governance(file.change()),
            wait,
            pinned: None,
        },
    )
}
