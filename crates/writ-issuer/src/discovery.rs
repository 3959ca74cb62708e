//! Discovery. `GET /v1/inventory`: every agent with its owner, status, last writ, end of
//! life, the tools it has used and its outstanding mandates; every tool provider with its
//! registered tools; and every server with the tools the gateways saw it offer in
//! `tools/list`, flagging those no one registered. For administrators: the answer to "which
//! agents and tools exist, who answers for them, and what can they still do?".
//!
//! `POST /v1/audit/discoveries`: a gateway reports the tools a route's server offered, the
//! first time it sees each; the report is an audit leaf.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_scope::{ServerName, ToolName};
use writ_store::Write;

use crate::Issuer;
use crate::audit::record;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;

/// How many of an agent's most recent audit records are read for the tools it used.
pub const RECENT_RECORDS: usize = 1000;

#[derive(Serialize)]
pub(crate) struct Inventory {
    agents: Vec<AgentEntry>,
    providers: Vec<ProviderEntry>,
    /// Per server, the tools gateways saw it offer.
    discovered: Vec<DiscoveredEntry>,
    /// Keys registered in no role that gateways turned away.
    turned_away: Vec<CallerEntry>,
}

#[derive(Serialize)]
struct CallerEntry {
    /// The key's RFC 7638 thumbprint.
    jkt: String,
    requests: u64,
    last_seen: i64,
    last_reason: String,
    /// `gateway:route` pairs it called.
    routes: BTreeSet<String>,
}

#[derive(Serialize)]
struct DiscoveredEntry {
    server: String,
    tools: Vec<String>,
    /// Offered but not in the inventory: no grant can name them, and no writ reaches them.
    unregistered: Vec<String>,
}

#[derive(Serialize)]
struct AgentEntry {
    name: String,
    jkt: String,
    owner: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
    last_seen: Option<i64>,
    expires_at: i64,
    /// `server/tool` it may be granted.
    tools: Vec<String>,
    /// `server/tool` it earned writs for, among its recent records.
    tools_used: Vec<String>,
    /// Mandates it holds that are neither expired nor revoked.
    outstanding_mandates: Vec<String>,
}

#[derive(Serialize)]
struct ProviderEntry {
    name: String,
    kind: String,
    url: Option<String>,
    tools: Vec<ToolEntry>,
}

#[derive(Serialize)]
struct ToolEntry {
    name: String,
    labels: Vec<String>,
}

/// The newest `limit` leaves under the lookup `key`, oldest first, each with its bytes
/// parsed.
async fn recent(
    issuer: &Issuer,
    key: &str,
    limit: usize,
) -> Result<Vec<(writ_store::LeafRecord, Value)>, ApiError> {
    let indexes = issuer.store.lookup(key).await?;
    let start = indexes.len().saturating_sub(limit);
    let mut leaves = Vec::new();
    for index in indexes.into_iter().skip(start) {
        if let Some(leaf) = issuer.store.leaf(index).await? {
            let parsed = serde_json::from_slice(&leaf.data).unwrap_or(Value::Null);
            leaves.push((leaf, parsed));
        }
    }
    Ok(leaves)
}

/// Whether `jkt` is registered in any role: agent, human or gateway.
pub(crate) fn registered(issuer: &Issuer, jkt: &str) -> bool {
    issuer.store.agent(jkt).is_some()
        || issuer.store.human_by_key(jkt).is_some()
        || issuer.store.gateway(jkt).is_some()
}

/// The most tools one discovery report may name.
pub const MAX_DISCOVERED: usize = 1000;
/// How many of the newest discovery reports the inventory reads.
const RECENT_DISCOVERIES: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoveryReport {
    /// The route's server (its tool provider's name).
    route: ServerName,
    tools: Vec<ToolName>,
}

#[derive(Serialize)]
pub(crate) struct DiscoveryRecorded {
    log_index: u64,
}

/// `POST /v1/audit/discoveries`, for gateways.
pub(crate) async fn report(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DiscoveryRecorded>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/audit/discoveries", &headers).await?;
    let Caller::Gateway(gateway) = caller else {
        return Err(ApiError::denied(
            "gateway_required",
            "only gateways report the tools they discover",
        ));
    };
    let report: DiscoveryReport = crate::inventory::parse_json(&body)?;
    if report.tools.is_empty() || report.tools.len() > MAX_DISCOVERED {
        return Err(ApiError::invalid_request(
            "invalid_report",
            format!("a report names 1 to {MAX_DISCOVERED} tools"),
        ));
    }
    let server = report.route.as_str();
    // A gateway reports what its own routes' servers offer: servers it was issued writs for.
    if !crate::gateways::shown(&issuer, &gateway.jkt, &format!("server:{server}")).await? {
        return Err(ApiError::invalid_request(
            "not_this_gateway",
            format!(
                "gateway `{}` was issued no writ for server `{server}`",
                gateway.name
            ),
        ));
    }
    let unregistered: Vec<&str> = report
        .tools
        .iter()
        .map(ToolName::as_str)
        .filter(|tool| issuer.store.tool(server, tool).is_none())
        .collect();
    let appended = record(
        &issuer,
        "tools_discovered",
        json!({"gateway": gateway.name, "server": server, "tools": report.tools, "unregistered": unregistered}),
        vec![DISCOVERIES.to_owned(), format!("gateway:{}", gateway.jkt)],
        Write::Nothing,
    )
    .await?;
    Ok(Json(DiscoveryRecorded {
        log_index: appended.index,
    }))
}

/// The lookup key of every discovery report.
const DISCOVERIES: &str = "discoveries";
/// The lookup key of gateway decisions that turned away a caller with an unregistered key.
pub(crate) const TURNED_AWAY: &str = "turned_away";
/// How many of the newest of those the inventory reads.
const RECENT_TURNED_AWAY: usize = 10_000;

pub(crate) async fn inventory(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Inventory>, ApiError> {
    authenticate(&issuer, &method, "/v1/inventory", &headers)
        .await?
        .admin()?;
    let now = crate::seconds(issuer.now());
    let mut agents = Vec::new();
    for agent in issuer.store.agents() {
        let mut outstanding = Vec::new();
        for id in issuer.store.mandates_of(None, Some(&agent.jkt)).await? {
            let live = issuer
                .store
                .mandate(&id)
                .await?
                .is_some_and(|mandate| mandate.expires_at > now)
                && !issuer.store.is_revoked("mandate", &id);
            if live {
                outstanding.push(id);
            }
        }
        let mut used = BTreeSet::new();
        for (leaf, parsed) in
            recent(&issuer, &format!("agent:{}", agent.jkt), RECENT_RECORDS).await?
        {
            if leaf.kind != "writ_issued" {
                continue;
            }
            let call = parsed.pointer("/event/call");
            let text = |name: &str| {
                call.and_then(|call| call.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            if let Some(server) = text("server") {
                used.insert(format!(
                    "{server}/{}",
                    text("tool").unwrap_or_else(|| "*".to_owned())
                ));
            }
        }
        agents.push(AgentEntry {
            name: agent.name,
            jkt: agent.jkt,
            owner: agent.owner,
            status: agent.status,
            status_reason: agent.status_reason,
            last_seen: agent.last_seen,
            expires_at: agent.expires_at,
            tools: agent.tools,
            tools_used: used.into_iter().collect(),
            outstanding_mandates: outstanding,
        });
    }
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    let providers = issuer
        .store
        .providers()
        .await?
        .into_iter()
        .map(|(provider, tools)| ProviderEntry {
            name: provider.name,
            kind: provider.kind,
            url: provider.url,
            tools: tools
                .into_iter()
                .map(|tool| ToolEntry {
                    name: tool.name,
                    labels: tool.labels,
                })
                .collect(),
        })
        .collect();
    // What the gateways saw each server offer, newest reports last.
    let mut discovered: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, parsed) in recent(&issuer, DISCOVERIES, RECENT_DISCOVERIES).await? {
        let (Some(server), Some(tools)) = (
            parsed.pointer("/event/server").and_then(Value::as_str),
            parsed.pointer("/event/tools").and_then(Value::as_array),
        ) else {
            continue;
        };
        discovered
            .entry(server.to_owned())
            .or_default()
            .extend(tools.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    let discovered = discovered
        .into_iter()
        .map(|(server, tools)| {
            let unregistered = tools
                .iter()
                .filter(|tool| issuer.store.tool(&server, tool).is_none())
                .cloned()
                .collect();
            DiscoveredEntry {
                server,
                tools: tools.into_iter().collect(),
                unregistered,
            }
        })
        .collect();
    // Unregistered keys the gateways turned away, most recent first.
    let mut callers: BTreeMap<String, CallerEntry> = BTreeMap::new();
    for (leaf, parsed) in recent(&issuer, TURNED_AWAY, RECENT_TURNED_AWAY).await? {
        let text = |name: &str| {
            parsed
                .pointer(&format!("/event/{name}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let key = text("caller");
        // Registered since: no longer a stranger.
        if key.is_empty() || registered(&issuer, &key) {
            continue;
        }
        let entry = callers.entry(key.clone()).or_insert_with(|| CallerEntry {
            jkt: key,
            requests: 0,
            last_seen: 0,
            last_reason: String::new(),
            routes: BTreeSet::new(),
        });
        entry.requests += 1;
        entry.last_seen = leaf.created_at;
        entry.last_reason = text("reason");
        entry
            .routes
            .insert(format!("{}:{}", text("gateway"), text("route")));
    }
    let mut turned_away: Vec<CallerEntry> = callers.into_values().collect();
    turned_away.sort_by_key(|caller| std::cmp::Reverse(caller.last_seen));
    Ok(Json(Inventory {
        agents,
        providers,
        discovered,
        turned_away,
    }))
}
