//! The inventory: humans, agents, tool providers and gateways. Every change is audited.
//! No agent without an owner.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_jose::{Jwk, SigningKey};
use writ_scope::{Label, ServerName, ToolName};
use writ_store::{
    AgentRecord, GatewayRecord, HumanKeyRecord, HumanRecord, ProviderRecord, Store, StoreError,
    ToolRecord, Write,
};
use writ_token::{Audience, HumanId, UnixTime};

use crate::audit::{event, record};
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::{Issuer, seconds};

/// Parses a JSON body strictly: no unknown or duplicate members, right types.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    writ_jose::from_slice_strict(body).map_err(|error| {
        ApiError::invalid_request("invalid_body", format!("request body: {error}"))
    })
}

/// The public key in a JWK, and its thumbprint.
fn public_key(jwk: &Jwk) -> Result<(String, String), ApiError> {
    let key = jwk
        .to_public_key()
        .map_err(|error| ApiError::invalid_request("invalid_jwk", error.to_string()))?;
    let json = serde_json::to_string(&key.to_jwk())
        .map_err(|error| ApiError::invalid_request("invalid_jwk", error.to_string()))?;
    Ok((key.thumbprint().to_string(), json))
}

/// A key for a new registration: valid, and not yet registered in any role. A key names
/// exactly one caller, so it cannot be a human's and an agent's at once.
pub(crate) fn fresh_key(store: &Store, jwk: &Jwk) -> Result<(String, String), ApiError> {
    let (jkt, json) = public_key(jwk)?;
    let role = if store.human_by_key(&jkt).is_some() {
        Some("a human's key")
    } else if store.agent(&jkt).is_some() {
        Some("an agent")
    } else if store.gateway(&jkt).is_some() {
        Some("a gateway")
    } else {
        None
    };
    match role {
        Some(role) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            "key_in_use",
            format!("key {jkt} is already registered as {role}"),
        )),
        None => Ok((jkt, json)),
    }
}

/// Registers the first administrator in a new data directory.
pub(crate) async fn register_first_admin(
    store: &Store,
    id: &str,
    key: &SigningKey,
    now: UnixTime,
) -> Result<(), StoreError> {
    let time = seconds(now);
    let human = HumanRecord {
        id: id.to_owned(),
        display_name: id.to_owned(),
        role: "admin".to_owned(),
        status: "active".to_owned(),
        oidc_issuer: None,
        oidc_subject: None,
        created_at: time,
    };
    let keys = || vec![format!("human:{id}")];
    store
        .append(
            event(
                "human_registered",
                now,
                json!({"human": id, "role": "admin", "by": "init"}),
                keys(),
            )?,
            Write::InsertHuman(human),
        )
        .await?;
    let jkt = key.public_key().thumbprint().to_string();
    let jwk = serde_json::to_string(&key.public_key().to_jwk())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store
        .append(
            event(
                "human_key_bound",
                now,
                json!({"human": id, "jkt": jkt, "by": "init"}),
                keys(),
            )?,
            Write::AddHumanKey(HumanKeyRecord {
                jkt,
                human_id: id.to_owned(),
                jwk,
                created_at: time,
            }),
        )
        .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewHuman {
    id: HumanId,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    admin: bool,
    /// A public key the human will authenticate with.
    #[serde(default)]
    jwk: Option<Jwk>,
    /// Their identity at an OIDC provider, by which they can bind a key themselves.
    #[serde(default)]
    oidc: Option<OidcIdentity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OidcIdentity {
    issuer: String,
    subject: String,
}

#[derive(Serialize)]
pub(crate) struct Registered {
    id: String,
    log_index: u64,
}

pub(crate) async fn register_human(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/humans", &headers).await?;
    let admin = caller.admin()?;
    let new: NewHuman = parse_json(&body)?;
    // Entitlement subjects with this prefix name groups, so no human id may start with it.
    if new
        .id
        .as_str()
        .starts_with(crate::entitlements::GROUP_PREFIX)
    {
        return Err(ApiError::invalid_request(
            "reserved_human_id",
            format!(
                "human ids may not start with `{}`, which names groups",
                crate::entitlements::GROUP_PREFIX
            ),
        ));
    }
    let display_name = new.display_name.unwrap_or_else(|| new.id.to_string());
    if display_name.is_empty() || display_name.chars().count() > 128 {
        return Err(ApiError::invalid_request(
            "invalid_display_name",
            "display_name must be 1 to 128 characters",
        ));
    }
    let oidc = new.oidc;
    if oidc.as_ref().is_some_and(|o| {
        o.issuer.is_empty() || o.subject.is_empty() || o.issuer.len() > 512 || o.subject.len() > 512
    }) {
        return Err(ApiError::invalid_request(
            "invalid_oidc_identity",
            "oidc issuer and subject must be 1 to 512 characters",
        ));
    }
    let key = new
        .jwk
        .as_ref()
        .map(|jwk| fresh_key(&issuer.store, jwk))
        .transpose()?;
    let time = seconds(issuer.now());
    let id = new.id.to_string();
    let role = if new.admin { "admin" } else { "member" };
    let appended = record(
        &issuer,
        "human_registered",
        json!({"human": id, "role": role, "by": admin.id}),
        vec![format!("human:{id}")],
        Write::InsertHuman(HumanRecord {
            id: id.clone(),
            display_name,
            role: role.to_owned(),
            status: "active".to_owned(),
            oidc_issuer: oidc.as_ref().map(|o| o.issuer.clone()),
            oidc_subject: oidc.map(|o| o.subject),
            created_at: time,
        }),
    )
    .await?;
    if let Some((jkt, jwk)) = key {
        record(
            &issuer,
            "human_key_bound",
            json!({"human": id, "jkt": jkt, "by": admin.id}),
            vec![format!("human:{id}")],
            Write::AddHumanKey(HumanKeyRecord {
                jkt,
                human_id: id.clone(),
                jwk,
                created_at: time,
            }),
        )
        .await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            id,
            log_index: appended.index,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAgent {
    name: ServerName,
    jwk: Jwk,
    tools: Vec<String>,
    /// Defaults to the caller; only an administrator may name another owner.
    #[serde(default)]
    owner: Option<HumanId>,
    #[serde(default)]
    lifetime_days: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct AgentRegistered {
    name: String,
    jkt: String,
    owner: String,
    expires_at: i64,
    log_index: u64,
}

/// Checks an agent's registered tool: `server/tool`, or `server/*` for the server as a
/// whole (its other MCP methods, or an HTTP API).
pub(crate) fn check_tool_ref(text: &str) -> Result<(), ApiError> {
    let valid = text.split_once('/').is_some_and(|(server, tool)| {
        ServerName::new(server).is_ok() && (tool == "*" || ToolName::new(tool).is_ok())
    });
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_request(
            "invalid_tool",
            format!("`{text}` is not `server/tool` or `server/*`"),
        ))
    }
}

pub(crate) async fn register_agent(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<AgentRegistered>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/agents", &headers).await?;
    let human = caller.human()?;
    let new: NewAgent = parse_json(&body)?;
    let owner = match &new.owner {
        Some(owner) if owner.as_str() != human.id && !caller.is_admin() => {
            return Err(ApiError::denied(
                "owner_mismatch",
                "only an administrator may register an agent for someone else",
            ));
        }
        Some(owner) => issuer
            .store
            .human(owner.as_str())
            .filter(|owner| owner.status == "active")
            .ok_or_else(|| {
                ApiError::invalid_request("unknown_owner", format!("no active human `{owner}`"))
            })?,
        None => human.clone(),
    };
    if new.tools.len() > 256 {
        return Err(ApiError::invalid_request(
            "too_many_tools",
            "at most 256 tools",
        ));
    }
    for tool in &new.tools {
        check_tool_ref(tool)?;
    }
    // A member's agent may use only what an administrator entitled its owner to.
    crate::entitlements::check_agent_tools(&issuer.store, &owner, &new.tools)?;
    let days = new
        .lifetime_days
        .unwrap_or(issuer.settings.agent_lifetime_days);
    if days == 0 || days > 3650 {
        return Err(ApiError::invalid_request(
            "invalid_lifetime",
            "lifetime_days must be 1 to 3650",
        ));
    }
    let (jkt, jwk) = fresh_key(&issuer.store, &new.jwk)?;
    let now = issuer.now();
    let expires_at = seconds(now.plus(days * 86_400));
    let name = new.name.to_string();
    let appended = record(
        &issuer,
        "agent_registered",
        json!({"agent": jkt, "name": name, "owner": owner.id, "tools": new.tools, "expires_at": expires_at, "by": human.id}),
        vec![format!("agent:{jkt}"), format!("human:{}", owner.id)],
        Write::InsertAgent(AgentRecord {
            jkt: jkt.clone(),
            name: name.clone(),
            owner: owner.id.clone(),
            jwk,
            tools: new.tools,
            status: "active".to_owned(),
            status_reason: None,
            created_at: seconds(now),
            expires_at,
            last_seen: None,
        }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AgentRegistered {
            name,
            jkt,
            owner: owner.id,
            expires_at,
            log_index: appended.index,
        }),
    ))
}

#[derive(Serialize)]
pub(crate) struct AgentView {
    name: String,
    jkt: String,
    owner: String,
    status: String,
    status_reason: Option<String>,
    tools: Vec<String>,
    created_at: i64,
    expires_at: i64,
    last_seen: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct Agents {
    agents: Vec<AgentView>,
}

/// `GET /v1/agents`: a human's own agents; every agent for administrators.
pub(crate) async fn list_agents(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Agents>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/agents", &headers).await?;
    let human = caller.human()?;
    let agents = issuer.store.agents();
    Ok(Json(Agents {
        agents: agents
            .into_iter()
            .filter(|agent| caller.is_admin() || agent.owner == human.id)
            .map(|agent| AgentView {
                name: agent.name,
                jkt: agent.jkt,
                owner: agent.owner,
                status: agent.status,
                status_reason: agent.status_reason,
                tools: agent.tools,
                created_at: agent.created_at,
                expires_at: agent.expires_at,
                last_seen: agent.last_seen,
            })
            .collect(),
    }))
}

#[derive(Serialize)]
pub(crate) struct HumanView {
    id: String,
    display_name: String,
    role: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc_issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc_subject: Option<String>,
    created_at: i64,
}

#[derive(Serialize)]
pub(crate) struct Humans {
    humans: Vec<HumanView>,
}

/// `GET /v1/humans`: administrators only.
pub(crate) async fn list_humans(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Humans>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/humans", &headers).await?;
    caller.admin()?;
    let humans = issuer
        .store
        .humans()
        .into_iter()
        .map(|human| HumanView {
            id: human.id,
            display_name: human.display_name,
            role: human.role,
            status: human.status,
            oidc_issuer: human.oidc_issuer,
            oidc_subject: human.oidc_subject,
            created_at: human.created_at,
        })
        .collect();
    Ok(Json(Humans { humans }))
}

#[derive(Serialize)]
pub(crate) struct ToolView {
    name: String,
    labels: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct ProviderView {
    name: String,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    tools: Vec<ToolView>,
}

#[derive(Serialize)]
pub(crate) struct Providers {
    providers: Vec<ProviderView>,
}

/// `GET /v1/providers`: any registered caller (agents see what they may ask for).
pub(crate) async fn list_providers(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Providers>, ApiError> {
    authenticate(&issuer, &method, "/v1/providers", &headers).await?;
    let providers = issuer
        .store
        .providers()
        .await?
        .into_iter()
        .map(|(provider, tools)| ProviderView {
            name: provider.name,
            kind: provider.kind,
            url: provider.url,
            tools: tools
                .into_iter()
                .map(|tool| ToolView {
                    name: tool.name,
                    labels: tool.labels,
                })
                .collect(),
        })
        .collect();
    Ok(Json(Providers { providers }))
}

#[derive(Serialize)]
pub(crate) struct GatewayView {
    name: String,
    jkt: String,
    audience: String,
    /// `active`, `disabled` or `revoked`.
    status: String,
    created_at: i64,
}

#[derive(Serialize)]
pub(crate) struct Gateways {
    gateways: Vec<GatewayView>,
}

/// `GET /v1/gateways`: administrators only.
pub(crate) async fn list_gateways(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Gateways>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/gateways", &headers).await?;
    caller.admin()?;
    let gateways = issuer
        .store
        .gateways()
        .into_iter()
        .map(|gateway| GatewayView {
            status: crate::gateways::status(&issuer, &gateway).to_owned(),
            name: gateway.name,
            jkt: gateway.jkt,
            audience: gateway.audience,
            created_at: gateway.created_at,
        })
        .collect();
    Ok(Json(Gateways { gateways }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProvider {
    name: ServerName,
    kind: ProviderKind,
    #[serde(default)]
    url: Option<String>,
    tools: Vec<NewTool>,
}

#[derive(Deserialize, Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProviderKind {
    Mcp,
    Http,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NewTool {
    name: ToolName,
    #[serde(default)]
    labels: Vec<Label>,
}

pub(crate) async fn register_provider(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/providers", &headers).await?;
    let admin = caller.admin()?;
    let new: NewProvider = parse_json(&body)?;
    if new.tools.len() > 1024 || new.url.as_ref().is_some_and(|url| url.len() > 1024) {
        return Err(ApiError::invalid_request(
            "too_large",
            "at most 1024 tools and a URL of 1024 characters",
        ));
    }
    let name = new.name.to_string();
    let kind = match new.kind {
        ProviderKind::Mcp => "mcp",
        ProviderKind::Http => "http",
    };
    let tools: Vec<ToolRecord> = new
        .tools
        .iter()
        .map(|tool| ToolRecord {
            server: name.clone(),
            name: tool.name.to_string(),
            labels: tool.labels.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let appended = record(
        &issuer,
        "provider_registered",
        json!({"provider": name, "kind": kind, "tools": new.tools, "by": admin.id}),
        vec![format!("provider:{name}")],
        Write::UpsertProvider(
            ProviderRecord {
                name: name.clone(),
                kind: kind.to_owned(),
                url: new.url,
                created_at: seconds(issuer.now()),
            },
            tools,
        ),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            id: name,
            log_index: appended.index,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGateway {
    name: ServerName,
    jwk: Jwk,
    /// The resource URL writs for this gateway name as `aud`.
    audience: Audience,
}

/// Checks that a gateway's audience is spelled the one way it can be, so that the overlap
/// rule compares like with like: an `http` or `https` URL with a lower-case host, no
/// user, no default port, no trailing dot, no query or fragment, and a path in normal form
/// (`writ_scope::check_path`). `https://GW.example:443/` and `https://gw.example/` name one
/// gateway; only the second is taken.
fn normal_audience(audience: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        ApiError::invalid_request(
            "audience_not_normal",
            format!("audience `{}` {why}", audience.escape_default()),
        )
    };
    let (scheme, rest) = audience
        .split_once("://")
        .ok_or_else(|| refuse("is not an absolute URL"))?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return Err(refuse("must be an `http` or `https` URL, in lower case")),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host);
    if authority.is_empty()
        || authority.contains('@')
        || authority.ends_with(default_port)
        || host.ends_with('.')
        || authority.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(refuse(
            "must name its host in lower case, with no user, trailing dot or default port",
        ));
    }
    if path.contains(['?', '#']) {
        return Err(refuse("must have no query or fragment"));
    }
    if !path.is_empty() && path != "/" {
        writ_scope::check_path(path.trim_end_matches('/'), writ_scope::Parameters::Refused)
            .map_err(|error| refuse(&format!("has a path not in normal form: {error}")))?;
    }
    Ok(())
}

pub(crate) async fn register_gateway(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/gateways", &headers).await?;
    let admin = caller.admin()?;
    let new: NewGateway = parse_json(&body)?;
    let (jkt, jwk) = fresh_key(&issuer.store, &new.jwk)?;
    let name = new.name.to_string();
    // Replay caches are per gateway process: two gateways serving one audience (or one
    // inside the other's) would each accept a writ once, so single use would not hold.
    // A revoked gateway's audience is free again.
    let audience = new.audience.to_string();
    normal_audience(&audience)?;
    if let Some(other) = issuer.store.gateways().into_iter().find(|other| {
        crate::gateways::status(&issuer, other) != crate::gateways::REVOKED
            && (writ_store::serves(&other.audience, &audience)
                || writ_store::serves(&audience, &other.audience))
    }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            "audience_in_use",
            format!(
                "gateway `{}` already serves `{}`; one gateway per audience (revoke it first to replace it)",
                other.name, other.audience
            ),
        ));
    }
    let appended = record(
        &issuer,
        "gateway_registered",
        json!({"gateway": jkt, "name": name, "audience": new.audience, "by": admin.id}),
        vec![format!("gateway:{jkt}")],
        Write::InsertGateway(GatewayRecord {
            jkt,
            name: name.clone(),
            audience,
            jwk,
            status: crate::gateways::ACTIVE.to_owned(),
            created_at: seconds(issuer.now()),
        }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            id: name,
            log_index: appended.index,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::normal_audience;

    #[test]
    fn a_gateway_audience_is_spelled_one_way() {
        for normal in [
            "https://gw.example",
            "https://gw.example/",
            "http://127.0.0.1:7500",
            "https://gw.example:8443/tools",
        ] {
            assert!(normal_audience(normal).is_ok(), "{normal}");
        }
        // Each of these names a gateway another spelling may already serve.
        for other in [
            "https://GW.example/",
            "HTTPS://gw.example/",
            "https://gw.example:443/",
            "http://gw.example:80",
            "https://gw.example./",
            "https://user@gw.example/",
            "https://gw.example/mcp?x",
            "https://gw.example/%6Dcp",
            "https://gw.example/a/../b",
            "ftp://gw.example/",
            "gw.example",
        ] {
            let error = normal_audience(other).unwrap_err();
            assert_eq!(error.reason(), "audience_not_normal", "{other}");
        }
    }
}
