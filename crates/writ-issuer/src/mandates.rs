//! Granting mandates: a human gives an agent a task, with grants, for minutes.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_jose::Thumbprint;
use writ_policy::{Decision, PolicyRequest};
use writ_scope::{AuthorizationDetail, Grants};
use writ_store::{AgentRecord, HumanRecord, MandateRecord, Write};
use writ_token::{Actor, Confirmation, HumanId, MandateClaims, MandateId, Task, TaskDigest};

use crate::Issuer;
use crate::audit::{record, record_denial};
use crate::auth::{Caller, authenticate};
use crate::entitlements::Entitled;
use crate::error::ApiError;
use crate::inventory::parse_json;

/// The longest task text, in characters.
pub const MAX_TASK_LEN: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantRequest {
    /// The agent's name.
    agent: String,
    /// What the agent is asked to do.
    task: String,
    /// A short summary to carry in the token.
    #[serde(default)]
    summary: Option<String>,
    grants: Grants,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    max_depth: Option<u8>,
}

#[derive(Serialize)]
pub(crate) struct Granted {
    mandate: String,
    id: String,
    expires_at: u64,
    log_index: u64,
    policy: writ_token::PolicyRef,
}

pub(crate) fn random_id() -> Result<[u8; 16], ApiError> {
    writ_jose::random_bytes().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "random_failed",
            "the random generator failed",
        )
    })
}

/// The server and tool a detail names, for policy: the tool for a tool call, and `*` (the
/// server as a whole) for its other MCP methods and for HTTP routes. Agents are registered
/// for `server/tool` or `server/*` accordingly.
pub(crate) fn tool_of(detail: &AuthorizationDetail) -> (&str, &str) {
    match detail {
        AuthorizationDetail::McpToolCall { server, tool, .. } => (server.as_str(), tool.as_str()),
        AuthorizationDetail::McpRequest { server, .. }
        | AuthorizationDetail::HttpRequest { server, .. } => (server.as_str(), "*"),
    }
}

/// The permit of an allowed decision; a denial as 403 with its reason code, naming the
/// policy set and what was `asked`.
pub(crate) fn permitted(decision: Decision, asked: &str) -> Result<writ_policy::Permit, ApiError> {
    match decision {
        Decision::Allow(permit) => Ok(permit),
        Decision::Deny(denial) => Err(ApiError::denied(
            denial.reason.code(),
            format!(
                "policy {} denies {asked}: {}",
                denial.policy_set,
                denial.reason.message()
            ),
        )),
    }
}

/// The `server/tool` names that `grants` grant, for policy; every granted tool must be in
/// the inventory.
pub(crate) fn granted_tools(issuer: &Issuer, grants: &Grants) -> Result<Vec<String>, ApiError> {
    grants
        .as_slice()
        .iter()
        .map(|detail| {
            if let AuthorizationDetail::McpToolCall { server, tool, .. } = detail
                && issuer.store.tool(server.as_str(), tool.as_str()).is_none()
            {
                return Err(ApiError::invalid_request(
                    "unknown_tool",
                    format!("no tool `{server}/{tool}` in the inventory"),
                ));
            }
            let (server, tool) = tool_of(detail);
            Ok(format!("{server}/{tool}"))
        })
        .collect()
}

/// Whether an agent is usable now: not revoked, active and within its lifetime.
pub(crate) fn agent_usable(
    store: &writ_store::Store,
    agent: &AgentRecord,
    now: u64,
) -> Result<(), ApiError> {
    if store.is_revoked("agent", &agent.jkt) {
        return Err(ApiError::denied(
            "agent_revoked",
            format!("agent `{}` was revoked", agent.name),
        ));
    }
    if agent.status != "active" {
        return Err(ApiError::denied(
            "agent_inactive",
            format!(
                "agent `{}` is {}{}",
                agent.name,
                agent.status,
                agent
                    .status_reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if u64::try_from(agent.expires_at).unwrap_or(0) <= now {
        return Err(ApiError::denied(
            "agent_expired",
            format!("agent `{}` reached the end of its lifetime", agent.name),
        ));
    }
    Ok(())
}

pub(crate) async fn grant(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Granted>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/mandates", &headers).await?;
    let human = caller.human()?.clone();
    let request: GrantRequest = parse_json(&body)?;
    let agent = request.agent.clone();
    match grant_checked(&issuer, &human, request).await {
        Ok(granted) => {
            metrics::counter!("writ_mandates_granted_total").increment(1);
            Ok((StatusCode::CREATED, Json(granted)))
        }
        Err(error) => {
            record_denial(
                &issuer,
                "mandate_denied",
                &error,
                json!({"human": human.id, "agent": agent}),
                vec![format!("human:{}", human.id)],
            )
            .await;
            Err(error)
        }
    }
}

async fn grant_checked(
    issuer: &Issuer,
    human: &HumanRecord,
    request: GrantRequest,
) -> Result<Granted, ApiError> {
    let now = issuer.now();
    if request.task.is_empty() || request.task.chars().count() > MAX_TASK_LEN {
        return Err(ApiError::invalid_request(
            "invalid_task",
            format!("task must be 1 to {MAX_TASK_LEN} characters"),
        ));
    }
    let agent = issuer.store.agent_by_name(&request.agent).ok_or_else(|| {
        ApiError::not_found(
            "unknown_agent",
            format!("no agent named `{}`", request.agent),
        )
    })?;
    agent_usable(&issuer.store, &agent, now.as_secs())?;
    let ttl = request
        .ttl_seconds
        .unwrap_or(issuer.settings.mandate_lifetime);
    if ttl == 0 || ttl > issuer.settings.max_mandate_lifetime {
        return Err(ApiError::invalid_request(
            "invalid_ttl",
            format!(
                "ttl_seconds must be 1 to {}",
                issuer.settings.max_mandate_lifetime
            ),
        ));
    }
    let max_depth = request
        .max_depth
        .unwrap_or(issuer.settings.max_depth.min(2));
    if max_depth > issuer.settings.max_depth {
        return Err(ApiError::invalid_request(
            "invalid_max_depth",
            format!("max_depth must be at most {}", issuer.settings.max_depth),
        ));
    }
    let tools = granted_tools(issuer, &request.grants)?;
    let tool_refs: Vec<&str> = tools.iter().map(String::as_str).collect();
    let labels: Vec<String> = request
        .grants
        .as_slice()
        .iter()
        .flat_map(|detail| detail.datatypes().iter().map(ToString::to_string))
        .collect();
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let entitled = Entitled::of(&issuer.store, &human.id);
    let entitled_tools: Vec<&str> = tool_refs
        .iter()
        .copied()
        .filter(|tool| entitled.allows_tool(tool))
        .collect();
    let agent_tools: Vec<&str> = agent.tools.iter().map(String::as_str).collect();
    let policy_agent = writ_policy::Agent {
        id: &agent.jkt,
        owner: &agent.owner,
        active: true,
        tools: &agent_tools,
    };
    let decision = issuer.engine().decide(&PolicyRequest::GrantMandate {
        human: &entitled.facts(human).policy(),
        agent: &policy_agent,
        tools: &tool_refs,
        labels: &label_refs,
        entitled_tools: &entitled_tools,
        ttl_seconds: i64::try_from(ttl).unwrap_or(i64::MAX),
        max_depth: i64::from(max_depth),
    });
    let permit = permitted(
        decision,
        &format!("`{}` granting to `{}`", human.id, agent.name),
    )?;
    let agent_key = Thumbprint::parse(&agent.jkt)
        .map_err(|e| ApiError::unavailable(&writ_store::StoreError::Corrupt(e.to_string())))?;
    let id = MandateId::from_random(random_id()?);
    let digest = TaskDigest::of(&request.task);
    let claims = MandateClaims {
        iss: issuer.id.clone(),
        sub: HumanId::new(human.id.clone())
            .map_err(|e| ApiError::invalid_request("invalid_human", e.to_string()))?,
        act: Actor::new(agent_key.clone()),
        aud: issuer.id.clone(),
        iat: now,
        exp: now.plus(ttl),
        jti: id.clone(),
        cnf: Confirmation { jkt: agent_key },
        grants: request.grants,
        task: Task {
            digest: digest.clone(),
            summary: request.summary,
        },
        depth: 0,
        max_depth,
        parent: None,
    };
    let policy = writ_token::PolicyRef {
        set: permit.policy_set,
        ids: permit.policy_ids,
    };
    let (mandate, log_index) = record_and_sign(
        issuer,
        "mandate_granted",
        &claims,
        &agent,
        Some(&request.task),
        &policy,
        &[],
    )
    .await?;
    Ok(Granted {
        mandate,
        id: id.to_string(),
        expires_at: claims.exp.as_secs(),
        log_index,
        policy,
    })
}

/// Records `claims` as a new mandate (its `kind` leaf and its row, in one commit), and only
/// then signs it. Returns the mandate and its leaf's index.
pub(crate) async fn record_and_sign(
    issuer: &Issuer,
    kind: &str,
    claims: &MandateClaims,
    agent: &AgentRecord,
    task_text: Option<&str>,
    policy: &writ_token::PolicyRef,
    consents: &[String],
) -> Result<(String, u64), ApiError> {
    // Check the claims before recording, so nothing is recorded that cannot be signed.
    writ_token::TokenClaims::check(claims)
        .map_err(|e| ApiError::invalid_request("invalid_mandate", e.to_string()))?;
    let id = claims.jti.to_string();
    let human = claims.sub.as_str();
    let task_text = task_text.filter(|_| issuer.settings.store_task_text);
    let mut event = json!({
        "mandate": id, "human": human, "agent": agent.jkt, "agent_name": agent.name,
        "task_digest": claims.task.digest, "task": task_text, "grants": claims.grants,
        "exp": claims.exp, "max_depth": claims.max_depth, "policy": policy,
    });
    if let (Some(parent), Some(delegator), serde_json::Value::Object(members)) =
        (&claims.parent, &claims.act.act, &mut event)
    {
        members.insert("parent".into(), json!(parent));
        members.insert("delegated_by".into(), json!(delegator.sub));
        members.insert("depth".into(), json!(claims.depth));
        members.insert("actors".into(), json!(claims.act));
        if !consents.is_empty() {
            // A delegation across owners names the two consents it relied on.
            members.insert("consents".into(), json!(consents));
        }
    }
    let grants = serde_json::to_string(&claims.grants).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "encoding_failed",
            e.to_string(),
        )
    })?;
    let appended = record(
        issuer,
        kind,
        event,
        [
            format!("mandate:{id}"),
            format!("human:{human}"),
            format!("agent:{}", agent.jkt),
        ]
        .into_iter()
        .chain(consents.iter().map(|consent| format!("consent:{consent}")))
        .collect(),
        Write::InsertMandate(MandateRecord {
            id,
            human_id: human.to_owned(),
            agent_jkt: agent.jkt.clone(),
            parent: claims.parent.as_ref().map(ToString::to_string),
            depth: i64::from(claims.depth),
            expires_at: crate::seconds(claims.exp),
            task_digest: claims.task.digest.as_str().to_owned(),
            task_text: task_text.map(str::to_owned),
            grants,
            created_at: crate::seconds(claims.iat),
            log_index: 0,
        }),
    )
    .await?;
    Ok((issuer.sign(claims)?, appended.index))
}

/// A mandate as stored, for the humans and agents it concerns, gateways and administrators.
#[derive(Serialize)]
pub(crate) struct MandateView {
    id: String,
    human: String,
    agent: String,
    parent: Option<String>,
    depth: i64,
    expires_at: i64,
    task_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<String>,
    grants: serde_json::Value,
    created_at: i64,
    log_index: i64,
    revoked: bool,
}

/// `GET /v1/mandates/{id}`: gateways read grants to filter `tools/list`, for mandates they
/// were issued a writ of, without the task text; the granting human, the holding agent and
/// administrators read their own.
pub(crate) async fn show(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<MandateView>, ApiError> {
    let caller = authenticate(&issuer, &method, &format!("/v1/mandates/{id}"), &headers).await?;
    let not_found = || ApiError::not_found("unknown_mandate", format!("no mandate `{id}`"));
    let mandate = issuer.store.mandate(&id).await?.ok_or_else(not_found)?;
    let allowed = match &caller {
        // A gateway reads only mandates behind writs issued for it.
        Caller::Gateway(gateway) => crate::gateways::shown(&issuer, &gateway.jkt, &id).await?,
        Caller::Agent(agent) => agent.jkt == mandate.agent_jkt,
        Caller::Human(human) => caller.is_admin() || human.id == mandate.human_id,
    };
    // Someone it does not concern learns nothing, not even that it exists.
    if !allowed {
        return Err(not_found());
    }
    let grants = serde_json::from_str(&mandate.grants).map_err(|e| {
        ApiError::unavailable(&writ_store::StoreError::Corrupt(format!(
            "mandate `{id}` grants: {e}"
        )))
    })?;
    Ok(Json(MandateView {
        revoked: issuer.store.is_revoked("mandate", &mandate.id),
        id: mandate.id,
        human: mandate.human_id,
        agent: mandate.agent_jkt,
        parent: mandate.parent,
        depth: mandate.depth,
        expires_at: mandate.expires_at,
        task_digest: mandate.task_digest,
        // A gateway filters by grants; the task is the human's, not the gateway's.
        task: if matches!(caller, Caller::Gateway(_)) {
            None
        } else {
            mandate.task_text
        },
        grants,
        created_at: mandate.created_at,
        log_index: mandate.log_index,
    }))
}
