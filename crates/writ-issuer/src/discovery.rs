//! `GET /v1/inventory`: every agent with its owner, status, last writ, end of life, the
//! tools it has used and its outstanding mandates; and every tool provider with its tools.
//! For administrators: the answer to "which agents exist, who answers for them, and what
//! can they still do?".

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use serde::Serialize;
use serde_json::Value;

use crate::Issuer;
use crate::auth::authenticate;
use crate::error::ApiError;

/// How many of an agent's most recent audit records are read for the tools it used.
pub const RECENT_RECORDS: usize = 1000;

#[derive(Serialize)]
pub(crate) struct Inventory {
    agents: Vec<AgentEntry>,
    providers: Vec<ProviderEntry>,
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
        let indexes = issuer.store.lookup(&format!("agent:{}", agent.jkt)).await?;
        let start = indexes.len().saturating_sub(RECENT_RECORDS);
        for index in indexes.into_iter().skip(start) {
            let Some(leaf) = issuer.store.leaf(index).await? else {
                continue;
            };
            if leaf.kind != "writ_issued" {
                continue;
            }
            let parsed: Value = serde_json::from_slice(&leaf.data).unwrap_or(Value::Null);
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
    Ok(Json(Inventory { agents, providers }))
}
