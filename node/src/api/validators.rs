//! `GET /v1/validators`: the validator set as of the last durable block — its epoch, the
//! height the epoch started at, the members in order (a member's index is its replica id),
//! the quorum and faults the set tolerates, and a pending change with the block after which
//! it takes effect (issue 21). `POST /v1/leader/transfer`: Raft's leader transfer, for
//! operators draining a leader.

use super::limit::ClientAddr;
use super::{ApiCommand, ApiError, Ctx, read_store, types::dec};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use ledger::Store;
use ledger::validators::{Member, Rule, SetChange, ValidatorState};
use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/validators` (heights and epochs as decimal strings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorsView {
    /// The block the set is read after.
    #[serde(with = "dec")]
    pub height: u64,
    #[serde(with = "dec")]
    pub epoch: u64,
    /// The first height of the epoch.
    #[serde(with = "dec")]
    pub start_height: u64,
    pub members: Vec<MemberView>,
    /// Votes (and approvals of a change) the set needs, and faults it tolerates.
    pub quorum: usize,
    pub f: usize,
    pub pending: Option<PendingView>,
    /// Raft chains: the configuration the answering validator's core uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftConfigView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member's replica id.
    pub index: usize,
    #[serde(flatten)]
    pub member: Member,
}

/// Raft's configuration as this validator's core holds it (the latest in its log): who
/// votes, who only learns, the log index that set it and whether that entry is committed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfigView {
    pub voters: Vec<u16>,
    pub learners: Vec<u16>,
    #[serde(with = "dec")]
    pub config_index: u64,
    pub committed: bool,
}

/// A change accepted by the chain and waiting for the end of its epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    pub op: SetChange,
    #[serde(with = "dec")]
    pub accepted_at: u64,
    /// The epoch's last block: the new set rules from the next.
    #[serde(with = "dec")]
    pub effective_after: u64,
    #[serde(with = "dec")]
    pub blocks_to_go: u64,
}

impl ValidatorsView {
    /// The view of the set `vs` after block `height`, under the chain's quorum `rule`.
    pub fn of(vs: &ValidatorState, height: u64, rule: Rule) -> ValidatorsView {
        let n = vs.members.len();
        ValidatorsView {
            height,
            epoch: vs.epoch,
            start_height: vs.start_height,
            members: vs
                .members
                .iter()
                .enumerate()
                .map(|(index, m)| MemberView {
                    index,
                    member: m.clone(),
                })
                .collect(),
            quorum: rule.quorum(n),
            f: rule.faults(n),
            pending: vs.pending.as_ref().map(|p| PendingView {
                op: p.op.clone(),
                accepted_at: p.accepted_at,
                effective_after: p.effective_after,
                blocks_to_go: p.effective_after.saturating_sub(height),
            }),
            raft: None,
        }
    }
}

pub(super) async fn validators(State(ctx): State<Ctx>) -> Result<Json<ValidatorsView>, ApiError> {
    let (height, vs) = read_store(&ctx.api.store, |s| {
        let h = s.height()?;
        Ok((h, s.validators_at(h)?))
    })
    .await?;
    let Some(vs) = vs else {
        return Err(ApiError::unavailable(
            "this store holds no validator set at its height (it restored a state snapshot \
             from before sets were recorded)",
        ));
    };
    let (protocol, raft) = match ctx.api.status.read() {
        Ok(s) => (s.protocol.clone(), s.raft.clone()),
        Err(poisoned) => {
            let s = poisoned.into_inner();
            (s.protocol.clone(), s.raft.clone())
        }
    };
    let rule = if protocol == "raft" {
        Rule::Majority
    } else {
        Rule::Bft
    };
    let mut view = ValidatorsView::of(&vs, height, rule);
    view.raft = raft;
    Ok(Json(view))
}

/// `?to=N` of `POST /v1/leader/transfer`.
#[derive(Debug, Deserialize)]
pub(super) struct TransferQuery {
    to: Option<u16>,
}

/// The answer of `POST /v1/leader/transfer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferView {
    /// The validator that is to lead once it wins its election.
    pub to: u16,
}

/// `POST /v1/leader/transfer[?to=N]` (Raft; issue 21): the leader hands over to validator
/// N (default: the most caught-up voter) and proposes nothing until it has, or until two
/// election timeouts pass. An operator action: it answers only a client on this host
/// (403 otherwise); 409 on a follower (naming the leader) or a BFT chain.
pub(super) async fn transfer_leader(
    State(ctx): State<Ctx>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    query: Result<Query<TransferQuery>, QueryRejection>,
) -> Result<Json<TransferView>, ApiError> {
    if !client.ip().is_loopback() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "leader transfer is an operator action: call it from the validator's own host",
        ));
    }
    let Query(q) = query?;
    let answer = super::ask(&ctx.api, |reply| ApiCommand::TransferLeader {
        to: q.to,
        reply,
    })
    .await?;
    match answer {
        Ok(to) => Ok(Json(TransferView { to })),
        Err(why) => Err(ApiError::new(StatusCode::CONFLICT, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::SecretKey;
    use ledger::validators::Pending;

    fn member(i: u8) -> Member {
        Member {
            name: format!("v{i}"),
            consensus_key: SecretKey::from_seed([i; 32]).public(),
            network_key: SecretKey::from_seed([100 + i; 32]).public(),
            p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26600 + i as u16),
        }
    }

    #[test]
    fn shows_the_set_its_quorum_and_a_pending_change_and_round_trips() {
        let mut vs = ValidatorState {
            epoch: 2,
            start_height: 41,
            ..ValidatorState::from_members((0..4).map(member).collect())
        };
        let v = serde_json::to_value(ValidatorsView::of(&vs, 50, Rule::Bft)).unwrap();
        assert_eq!(v["epoch"], "2");
        assert_eq!(v["start_height"], "41");
        assert_eq!(v["quorum"], 3);
        assert_eq!(v["f"], 1);
        assert_eq!(v["members"][3]["index"], 3);
        assert_eq!(v["members"][3]["name"], "v3");
        assert_eq!(
            v["members"][0]["consensus_key"],
            member(0).consensus_key.to_string()
        );
        assert!(v["pending"].is_null());

        vs.pending = Some(Pending {
            op: SetChange::Remove {
                consensus_key: member(1).consensus_key,
            },
            accepted_at: 48,
            effective_after: 148,
        });
        let view = ValidatorsView::of(&vs, 50, Rule::Bft);
        let v = serde_json::to_value(&view).unwrap();
        assert_eq!(v["pending"]["effective_after"], "148");
        assert_eq!(v["pending"]["blocks_to_go"], "98");
        let back: ValidatorsView = serde_json::from_value(v).unwrap();
        assert_eq!(back, view);
        // Raft counts a majority: 3 of 4, tolerating 1 crash.
        let raft = ValidatorsView::of(&vs, 50, Rule::Majority);
        assert_eq!((raft.quorum, raft.f), (3, 1));
    }
}
