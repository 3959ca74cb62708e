//! The agent lifecycle: every agent has an owner and a death date.
//!
//! - **Renewal** (`POST /v1/agents/{name}/renew`): the owner or an administrator extends an
//!   agent's lifetime (default 90 days from now).
//! - **Expiry**: at the end of its lifetime an agent is retired by the sweep.
//! - **Idleness**: an agent that has earned no writ for `idle_suspend_days` (default 30;
//!   counted from registration when it never has) is suspended by the sweep, with the reason.
//! - **Retirement** (`POST /v1/agents/{name}/retire`, or the sweep): the agent's key is
//!   revoked, and every mandate it holds with everything delegated from them.
//! - **Offboarding** (`POST /v1/humans/{id}/offboard`, `writ human offboard`, or SCIM): the
//!   human and every mandate they granted are revoked, and the agents they own are
//!   suspended until `POST /v1/agents/{name}/transfer` gives them a new owner.
//! - **Transfer** (`POST /v1/agents/{name}/transfer`, for administrators): the mandates the
//!   agent holds from humans other than its new owner are revoked with their subtrees, and
//!   every consent given for it lapses for good.
//!
//! Each is one audit leaf whose effects commit with it (`Write::Many`), and each revocation
//! reaches the gateways through the revocation feed.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_store::{AgentRecord, HumanRecord, Write};

use crate::Issuer;
use crate::audit::record;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::inventory::parse_json;
use crate::revocation::{Kind, newly_revoked, revocations, subject_keys};

/// Why agents of an offboarded human are suspended; a transfer lifts exactly this.
const OWNER_OFFBOARDED: &str = "owner offboarded";
/// How an idleness suspension's reason begins; a renewal lifts exactly this.
const IDLE_PREFIX: &str = "idle for ";
/// The longest reason kept, in characters.
const MAX_REASON: usize = 512;

#[derive(Serialize)]
pub(crate) struct Changed {
    /// The agent's name or the human's id.
    subject: String,
    /// Its status now.
    status: String,
    /// The audit leaf that recorded the change.
    log_index: u64,
    /// How many subjects were newly revoked with it.
    revoked: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Renewal {
    /// Days from now; the issuer's default lifetime when absent.
    days: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reason {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Transfer {
    /// The new owner's human id.
    owner: String,
}

impl Changed {
    /// An agent changed by the leaf at `log_index`, active again when `reactivated`.
    fn agent(agent: AgentRecord, reactivated: bool, log_index: u64) -> Changed {
        Changed {
            subject: agent.name,
            status: if reactivated {
                "active".to_owned()
            } else {
                agent.status
            },
            log_index,
            revoked: 0,
        }
    }
}

/// Adds to `writes` making `agent` active again when it is suspended for a reason `lifted`
/// accepts; whether it did.
fn lift_suspension(
    agent: &AgentRecord,
    lifted: impl Fn(&str) -> bool,
    writes: &mut Vec<Write>,
) -> bool {
    let lift = agent.status == "suspended" && agent.status_reason.as_deref().is_some_and(lifted);
    if lift {
        writes.push(Write::SetAgentStatus {
            jkt: agent.jkt.clone(),
            status: "active".to_owned(),
            reason: None,
        });
    }
    lift
}

fn reason(text: &str) -> Result<&str, ApiError> {
    if text.is_empty() || text.chars().count() > MAX_REASON {
        return Err(ApiError::invalid_request(
            "invalid_reason",
            format!("reason must be 1 to {MAX_REASON} characters"),
        ));
    }
    Ok(text)
}

/// The agent named `name`, for a caller who owns it or administers.
pub(crate) fn owned_agent(
    issuer: &Issuer,
    caller: &Caller,
    name: &str,
) -> Result<AgentRecord, ApiError> {
    let not_found = || ApiError::not_found("unknown_agent", format!("no agent named `{name}`"));
    let human = caller.human()?;
    let agent = issuer.store.agent_by_name(name).ok_or_else(not_found)?;
    // Someone else's agent does not exist for them.
    if !caller.is_admin() && agent.owner != human.id {
        return Err(not_found());
    }
    Ok(agent)
}

/// `POST /v1/agents/{name}/renew`: a new end of life, counted from now.
pub(crate) async fn renew(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Changed>, ApiError> {
    let path = format!("/v1/agents/{name}/renew");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    let request: Renewal = parse_json(&body)?;
    let agent = owned_agent(&issuer, &caller, &name)?;
    if agent.status == "retired" {
        return Err(ApiError::denied(
            "agent_retired",
            format!("agent `{name}` is retired; register a new one"),
        ));
    }
    let days = request.days.unwrap_or(issuer.settings.agent_lifetime_days);
    if days == 0 || days > 3650 {
        return Err(ApiError::invalid_request(
            "invalid_lifetime",
            "days must be 1 to 3650",
        ));
    }
    let expires_at = crate::seconds(issuer.now().plus(days * 86_400));
    let mut writes = vec![Write::SetAgentExpiry {
        jkt: agent.jkt.clone(),
        expires_at,
    }];
    // An owner renewing an agent suspended for idleness vouches for it: it is active again,
    // and its idle time counts from now.
    let reactivated = lift_suspension(
        &agent,
        |reason| reason.starts_with(IDLE_PREFIX),
        &mut writes,
    );
    if reactivated {
        writes.push(Write::AgentSeen {
            jkt: agent.jkt.clone(),
        });
    }
    let appended = record(
        &issuer,
        "agent_renewed",
        json!({"agent": agent.jkt, "name": agent.name, "expires_at": expires_at,
               "reactivated": reactivated, "by": caller.describe()}),
        vec![format!("agent:{}", agent.jkt)],
        Write::Many(writes),
    )
    .await?;
    Ok(Json(Changed::agent(agent, reactivated, appended.index)))
}

/// `POST /v1/agents/{name}/retire`.
pub(crate) async fn retire_route(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Changed>, ApiError> {
    let path = format!("/v1/agents/{name}/retire");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    let request: Reason = parse_json(&body)?;
    let reason = reason(&request.reason)?;
    let agent = owned_agent(&issuer, &caller, &name)?;
    Ok(Json(
        retire(&issuer, &agent, "agent_retired", reason, &caller.describe()).await?,
    ))
}

/// Retires `agent`: status `retired`, its key and every mandate it holds revoked, with what
/// was delegated from them. `kind` is the leaf's (`agent_retired`, `agent_expired`).
async fn retire(
    issuer: &Issuer,
    agent: &AgentRecord,
    kind: &str,
    reason: &str,
    by: &str,
) -> Result<Changed, ApiError> {
    let revoked = revocations(issuer, Kind::Agent, &agent.jkt, reason).await?;
    let subjects = subject_keys(&revoked);
    let appended = record(
        issuer,
        kind,
        json!({"agent": agent.jkt, "name": agent.name, "owner": agent.owner, "reason": reason,
               "by": by, "revoked": subjects}),
        subjects.clone(),
        Write::Many(vec![
            Write::SetAgentStatus {
                jkt: agent.jkt.clone(),
                status: "retired".to_owned(),
                reason: Some(reason.to_owned()),
            },
            Write::Revoke(revoked.clone()),
        ]),
    )
    .await?;
    issuer.revoked.notify_waiters();
    Ok(Changed {
        subject: agent.name.clone(),
        status: "retired".to_owned(),
        log_index: appended.index,
        revoked: newly_revoked(&revoked, &appended.revocations),
    })
}

/// Suspends `agent` with `reason`; it earns nothing until it is active again.
async fn suspend(
    issuer: &Issuer,
    agent: &AgentRecord,
    reason: &str,
    by: &str,
) -> Result<Changed, ApiError> {
    let appended = record(
        issuer,
        "agent_suspended",
        json!({"agent": agent.jkt, "name": agent.name, "owner": agent.owner, "reason": reason, "by": by}),
        vec![format!("agent:{}", agent.jkt)],
        Write::SetAgentStatus {
            jkt: agent.jkt.clone(),
            status: "suspended".to_owned(),
            reason: Some(reason.to_owned()),
        },
    )
    .await?;
    Ok(Changed {
        subject: agent.name.clone(),
        status: "suspended".to_owned(),
        log_index: appended.index,
        revoked: 0,
    })
}

/// The lookup key of an agent's transfers: a consent its owner gave before the newest one
/// has lapsed for good (see [`crate::consent::consents`]).
pub(crate) fn transferred_key(jkt: &str) -> String {
    format!("agent-transferred:{jkt}")
}

/// `POST /v1/agents/{name}/transfer`: a new owner, for administrators. An agent suspended
/// because its owner was offboarded is active again; other suspensions stand. The mandates
/// the agent holds from humans other than the new owner are revoked with it, with
/// everything delegated from them: the new owner consented to none of them. The consents
/// given for the agent lapse, even should it come back to the owner who gave them.
pub(crate) async fn transfer(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Changed>, ApiError> {
    let path = format!("/v1/agents/{name}/transfer");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    caller.admin()?;
    let request: Transfer = parse_json(&body)?;
    let agent = owned_agent(&issuer, &caller, &name)?;
    if agent.status == "retired" {
        return Err(ApiError::denied(
            "agent_retired",
            format!("agent `{name}` is retired"),
        ));
    }
    let owner = issuer
        .store
        .human(&request.owner)
        .filter(|human| human.status == "active")
        .ok_or_else(|| {
            ApiError::invalid_request(
                "unknown_owner",
                format!("no active human `{}`", request.owner),
            )
        })?;
    if owner.id == agent.owner {
        return Err(ApiError::invalid_request(
            "already_owner",
            format!("agent `{name}` belongs to `{}` already", owner.id),
        ));
    }
    // The new owner must be entitled to the agent's tools, as at registration.
    crate::entitlements::check_agent_tools(&issuer.store, &owner, &agent.tools)?;
    let reason = format!("agent `{}` transferred to `{}`", agent.name, owner.id);
    let mut revoked: Vec<writ_store::RevocationRecord> = Vec::new();
    for id in issuer.store.mandates_of(None, Some(&agent.jkt)).await? {
        let Some(mandate) = issuer.store.mandate(&id).await? else {
            continue;
        };
        if mandate.human_id == owner.id {
            continue;
        }
        for record in revocations(&issuer, Kind::Mandate, &id, &reason).await? {
            if !revoked
                .iter()
                .any(|known| known.kind == record.kind && known.subject == record.subject)
            {
                revoked.push(record);
            }
        }
    }
    let subjects = subject_keys(&revoked);
    let mut writes = vec![Write::SetAgentOwner {
        jkt: agent.jkt.clone(),
        owner: owner.id.clone(),
    }];
    let reactivated = lift_suspension(&agent, |reason| reason == OWNER_OFFBOARDED, &mut writes);
    if !revoked.is_empty() {
        writes.push(Write::Revoke(revoked.clone()));
    }
    let mut keys = vec![
        format!("agent:{}", agent.jkt),
        format!("human:{}", owner.id),
        transferred_key(&agent.jkt),
    ];
    keys.extend(subjects.iter().cloned());
    let appended = record(
        &issuer,
        "agent_transferred",
        json!({"agent": agent.jkt, "name": agent.name, "from": agent.owner, "to": owner.id,
               "reactivated": reactivated, "by": caller.describe(), "revoked": subjects}),
        keys,
        Write::Many(writes),
    )
    .await?;
    let mut changed = Changed::agent(agent, reactivated, appended.index);
    if !revoked.is_empty() {
        issuer.revoked.notify_waiters();
        changed.revoked = newly_revoked(&revoked, &appended.revocations);
    }
    Ok(Json(changed))
}

/// `POST /v1/humans/{id}/offboard`, for administrators.
pub(crate) async fn offboard_route(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Changed>, ApiError> {
    let path = format!("/v1/humans/{id}/offboard");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    caller.admin()?;
    let request: Reason = parse_json(&body)?;
    let reason = reason(&request.reason)?;
    let human = issuer
        .store
        .human(&id)
        .ok_or_else(|| ApiError::not_found("unknown_human", format!("no human `{id}`")))?;
    Ok(Json(offboard(&issuer, &human, reason, &caller).await?))
}

/// Offboards `human` for administrator `by`: status `offboarded`, the human and every
/// mandate they granted revoked (with what was delegated from them), and their agents
/// suspended until transferred. A human offboarded already, or the caller themselves, is
/// refused.
pub(crate) async fn offboard(
    issuer: &Issuer,
    human: &HumanRecord,
    reason: &str,
    by: &Caller,
) -> Result<Changed, ApiError> {
    if by.admin()?.id == human.id {
        return Err(ApiError::invalid_request(
            "cannot_offboard_self",
            "an administrator cannot offboard themselves",
        ));
    }
    if human.status == "offboarded" {
        return Err(ApiError::invalid_request(
            "already_offboarded",
            format!("`{}` is offboarded already", human.id),
        ));
    }
    let revoked = revocations(issuer, Kind::Human, &human.id, reason).await?;
    let subjects = subject_keys(&revoked);
    let agents: Vec<AgentRecord> = issuer
        .store
        .agents()
        .into_iter()
        .filter(|agent| agent.owner == human.id && agent.status == "active")
        .collect();
    let mut writes = vec![
        Write::SetHumanStatus {
            id: human.id.clone(),
            status: "offboarded".to_owned(),
        },
        Write::Revoke(revoked.clone()),
    ];
    writes.extend(agents.iter().map(|agent| Write::SetAgentStatus {
        jkt: agent.jkt.clone(),
        status: "suspended".to_owned(),
        reason: Some(OWNER_OFFBOARDED.to_owned()),
    }));
    let appended = record(
        issuer,
        "human_offboarded",
        json!({"human": human.id, "reason": reason, "by": by.describe(), "revoked": subjects,
               "suspended_agents": agents.iter().map(|agent| &agent.name).collect::<Vec<_>>()}),
        subjects.clone(),
        Write::Many(writes),
    )
    .await?;
    issuer.revoked.notify_waiters();
    Ok(Changed {
        subject: human.id.clone(),
        status: "offboarded".to_owned(),
        log_index: appended.index,
        revoked: newly_revoked(&revoked, &appended.revocations),
    })
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Agents retired at the end of their lifetime.
    pub expired: Vec<String>,
    /// Agents suspended for idleness.
    pub suspended: Vec<String>,
    /// Changes that could not be recorded (logged; tried again at the next sweep).
    pub failed: usize,
}

impl Issuer {
    /// Retires the agents whose lifetime has ended and suspends the active ones idle for
    /// `idle_suspend_days` (never, when 0). Runs every `lifecycle_interval`; callable
    /// directly.
    pub async fn sweep_lifecycle(&self) -> Result<Swept, ApiError> {
        let now = crate::seconds(self.now());
        let idle_limit = i64::try_from(self.settings.idle_suspend_days.saturating_mul(86_400))
            .unwrap_or(i64::MAX);
        let mut swept = Swept::default();
        for listed in self.store.agents() {
            // Read again just before acting: a renewal may have landed since the list.
            let Some(agent) = self.store.agent(&listed.jkt) else {
                continue;
            };
            let outcome = if agent.status != "retired" && agent.expires_at <= now {
                // Suspended agents die at the end of their lifetime too.
                swept.expired.push(agent.name.clone());
                retire(self, &agent, "agent_expired", "lifetime ended", "lifecycle")
                    .await
                    .map(drop)
            } else if agent.status == "active"
                && idle_limit > 0
                && now.saturating_sub(agent.last_seen.unwrap_or(agent.created_at)) >= idle_limit
            {
                let idle = now.saturating_sub(agent.last_seen.unwrap_or(agent.created_at));
                swept.suspended.push(agent.name.clone());
                let reason = format!("{IDLE_PREFIX}{} days", idle / 86_400);
                suspend(self, &agent, &reason, "lifecycle").await.map(drop)
            } else {
                Ok(())
            };
            // One agent that cannot be changed does not stop the others.
            if let Err(error) = outcome {
                tracing::error!(agent = %agent.name, reason = error.reason(), message = error.message(), "lifecycle change failed");
                swept.failed += 1;
            }
        }
        Ok(swept)
    }
}

/// Sweeps every `lifecycle_interval` while the issuer lives.
pub(crate) fn spawn_sweeper(issuer: &Arc<Issuer>) {
    let weak = Arc::downgrade(issuer);
    let interval = issuer.settings.lifecycle_interval;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(issuer) = weak.upgrade() else { break };
            match issuer.sweep_lifecycle().await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(expired = ?swept.expired, suspended = ?swept.suspended, "lifecycle sweep");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(
                        reason = error.reason(),
                        message = error.message(),
                        "lifecycle sweep failed"
                    );
                }
            }
        }
    });
}
