//! Entitlements: which tools and data labels each human may use, managed by administrators.
//!
//! An entitlement gives a subject, a human or every member of a group (`group:NAME`), a
//! list of tools and a list of data labels. A human's entitlements are the union of their
//! own and their groups'. They bound what the human's agents may be registered for
//! (`tool_not_entitled`), what the human may grant (policy `grant-within-entitlements`),
//! and every call under the human's mandates (policies `invoke-needs-data-clearance` and
//! `invoke-within-entitlements`), checked again at each token request, so removing an
//! entitlement stops calls under mandates granted before it.
//!
//! Tools are named as agents are registered: `server/tool` for an MCP tool, `server/*` for
//! a server's other requests (an MCP server's `initialize` and `tools/list`, every route of
//! an HTTP API). Each names exactly that: `files/*` does not entitle `files/drop_table`, so
//! a tool added to a server later is entitled only when an administrator says so.
//!
//! Administrators are not bound by entitlements (they manage them): their agents may be
//! registered for any tool, and the default policies exempt them. Every change is an audit
//! leaf, and the store keeps entitlements in memory, so issuance reads no database.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/entitlements` | admins | entitle a human or a group to tools and labels |
//! | `GET /v1/entitlements` | admins | every entitlement |
//! | `DELETE /v1/entitlements/{id}` | admins | remove an entitlement |
//! | `PUT /v1/humans/{id}/groups` | admins | set the groups a human belongs to |
//! | `GET /v1/humans/{id}/entitlements` | admins, the human | a human's groups and effective entitlements |

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_scope::Label;
use writ_store::{EntitlementRecord, HumanRecord, Store, Write};
use writ_token::HumanId;

use crate::audit::record;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::inventory::{check_tool_ref, parse_json};
use crate::{Issuer, seconds};

/// The prefix of a subject that names a group.
pub(crate) const GROUP_PREFIX: &str = "group:";
/// The most tools one entitlement names.
const MAX_TOOLS: usize = 256;
/// The most labels one entitlement names.
const MAX_LABELS: usize = 64;
/// The most groups a human belongs to.
const MAX_GROUPS: usize = 64;

/// What a human is entitled to: the union of their entitlements and their groups'.
#[derive(Debug, Default)]
pub(crate) struct Entitled {
    groups: Vec<String>,
    tools: BTreeSet<String>,
    labels: BTreeSet<String>,
    /// The entitlements it is made of.
    from: Vec<EntitlementRecord>,
    /// Bound by entitlements even when the human administers: a member owns an agent in
    /// the chain the facts are for.
    bound: bool,
}

impl Entitled {
    /// The effective entitlements of `human`, from the store's memory.
    pub(crate) fn of(store: &Store, human: &str) -> Entitled {
        let from = store.entitlements_of(human);
        Entitled {
            groups: store.human_groups(human),
            tools: from.iter().flat_map(|e| e.tools.iter().cloned()).collect(),
            labels: from.iter().flat_map(|e| e.labels.iter().cloned()).collect(),
            from,
            bound: false,
        }
    }

    /// What a delegation chain may do together: `human` granted its root, and `owners`
    /// own the agents it passes through. Tools and data labels are those every member among
    /// them is entitled to (an administrator, not bound by entitlements, narrows nothing),
    /// and the chain is exempt as an administrator only when all of them administer. The
    /// groups are `human`'s.
    pub(crate) fn of_chain(store: &Store, human: &HumanRecord, owners: &[HumanRecord]) -> Entitled {
        let mut chain = Entitled::of(store, &human.id);
        let mut members = std::iter::once(human)
            .chain(owners)
            .filter(|party| party.role != "admin")
            .peekable();
        if members.peek().is_none() {
            return chain;
        }
        chain.bound = true;
        let mut tools: Option<BTreeSet<String>> = None;
        let mut labels: Option<BTreeSet<String>> = None;
        for member in members {
            let entitled = Entitled::of(store, &member.id);
            tools = Some(match tools {
                None => entitled.tools,
                Some(known) => known.intersection(&entitled.tools).cloned().collect(),
            });
            labels = Some(match labels {
                None => entitled.labels,
                Some(known) => known.intersection(&entitled.labels).cloned().collect(),
            });
        }
        chain.tools = tools.unwrap_or_default();
        chain.labels = labels.unwrap_or_default();
        chain
    }

    /// Whether the human is entitled to `tool` (`server/tool` or `server/*`).
    pub(crate) fn allows_tool(&self, tool: &str) -> bool {
        self.tools.contains(tool)
    }

    /// The facts policy knows about `human`, who these entitlements are of.
    pub(crate) fn facts<'a>(&'a self, human: &'a HumanRecord) -> HumanFacts<'a> {
        HumanFacts {
            human,
            clearance: self.labels.iter().map(String::as_str).collect(),
            groups: self.groups.iter().map(String::as_str).collect(),
            bound: self.bound,
        }
    }
}

/// A human with their clearance and groups, ready to be a policy fact.
pub(crate) struct HumanFacts<'a> {
    human: &'a HumanRecord,
    clearance: Vec<&'a str>,
    groups: Vec<&'a str>,
    /// Seen as a member whatever the human's role.
    bound: bool,
}

impl HumanFacts<'_> {
    /// The human as policy sees them.
    pub(crate) fn policy(&self) -> writ_policy::Human<'_> {
        writ_policy::Human {
            id: &self.human.id,
            role: if self.human.role == "admin" && !self.bound {
                writ_policy::Role::Admin
            } else {
                writ_policy::Role::Member
            },
            active: self.human.status == "active",
            clearance: &self.clearance,
            groups: &self.groups,
        }
    }
}

/// An agent owned by `owner` may be registered only for tools `owner` is entitled to.
/// Administrators are exempt.
pub(crate) fn check_agent_tools(
    store: &Store,
    owner: &HumanRecord,
    tools: &[String],
) -> Result<(), ApiError> {
    if owner.role == "admin" {
        return Ok(());
    }
    let entitled = Entitled::of(store, &owner.id);
    let missing: Vec<&str> = tools
        .iter()
        .map(String::as_str)
        .filter(|tool| !entitled.allows_tool(tool))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::denied(
        "tool_not_entitled",
        format!(
            "`{}` is not entitled to {}; an administrator entitles humans to tools (`writ entitlement grant`)",
            owner.id,
            missing
                .iter()
                .map(|tool| format!("`{tool}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// A group name: 1 to 64 characters from A-Z, a-z, 0-9, `.`, `_`, `-`.
fn check_group(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_request(
            "invalid_group",
            format!(
                "`{name}` is not a group name: 1 to 64 characters from A-Z, a-z, 0-9, `.`, `_`, `-`"
            ),
        ))
    }
}

/// A human by id, or 404.
fn known_human(issuer: &Issuer, id: &str) -> Result<HumanRecord, ApiError> {
    issuer
        .store
        .human(id)
        .ok_or_else(|| ApiError::not_found("unknown_human", format!("no human `{id}`")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEntitlement {
    /// A human id, or `group:NAME`.
    subject: String,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    labels: Vec<Label>,
}

#[derive(Serialize)]
pub(crate) struct EntitlementView {
    id: String,
    subject: String,
    tools: Vec<String>,
    labels: Vec<String>,
    created_at: i64,
    created_by: String,
}

impl From<EntitlementRecord> for EntitlementView {
    fn from(record: EntitlementRecord) -> Self {
        EntitlementView {
            id: record.id,
            subject: record.subject,
            tools: record.tools,
            labels: record.labels,
            created_at: record.created_at,
            created_by: record.created_by,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Created {
    #[serde(flatten)]
    entitlement: EntitlementView,
    log_index: u64,
}

/// `POST /v1/entitlements`: administrators entitle a human or a group.
pub(crate) async fn create(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/entitlements", &headers).await?;
    let admin = caller.admin()?;
    let new: NewEntitlement = parse_json(&body)?;
    let subject = match new.subject.strip_prefix(GROUP_PREFIX) {
        Some(group) => {
            check_group(group)?;
            new.subject.clone()
        }
        None => {
            let id = HumanId::new(new.subject.as_str())
                .map_err(|e| ApiError::invalid_request("invalid_subject", e.to_string()))?;
            known_human(&issuer, id.as_str())?.id
        }
    };
    if new.tools.is_empty() && new.labels.is_empty() {
        return Err(ApiError::invalid_request(
            "empty_entitlement",
            "an entitlement names at least one tool or label",
        ));
    }
    if new.tools.len() > MAX_TOOLS || new.labels.len() > MAX_LABELS {
        return Err(ApiError::invalid_request(
            "too_large",
            format!("at most {MAX_TOOLS} tools and {MAX_LABELS} labels"),
        ));
    }
    for tool in &new.tools {
        check_tool_ref(tool)?;
    }
    let tools: Vec<String> = new
        .tools
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let labels: Vec<String> = new
        .labels
        .iter()
        .map(ToString::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let id = format!(
        "ent_{}",
        writ_jose::base64url_encode(crate::mandates::random_id()?)
    );
    let entitlement = EntitlementRecord {
        id: id.clone(),
        subject: subject.clone(),
        tools: tools.clone(),
        labels: labels.clone(),
        created_at: seconds(issuer.now()),
        created_by: admin.id.clone(),
    };
    let mut keys = vec![format!("entitlement:{id}")];
    if !subject.starts_with(GROUP_PREFIX) {
        keys.push(format!("human:{subject}"));
    }
    let appended = record(
        &issuer,
        "entitlement_added",
        json!({"entitlement": id, "subject": subject, "tools": tools, "labels": labels, "by": admin.id}),
        keys,
        Write::InsertEntitlement(entitlement.clone()),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            entitlement: entitlement.into(),
            log_index: appended.index,
        }),
    ))
}

#[derive(Serialize)]
pub(crate) struct Entitlements {
    entitlements: Vec<EntitlementView>,
}

/// `GET /v1/entitlements`: every entitlement, for administrators.
pub(crate) async fn list(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Entitlements>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/entitlements", &headers).await?;
    caller.admin()?;
    Ok(Json(Entitlements {
        entitlements: issuer
            .store
            .entitlements()
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

#[derive(Serialize)]
pub(crate) struct Removed {
    id: String,
    subject: String,
    log_index: u64,
}

/// `DELETE /v1/entitlements/{id}`: administrators remove an entitlement. Calls under
/// mandates it allowed stop at their next token request.
pub(crate) async fn remove(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Removed>, ApiError> {
    let path = format!("/v1/entitlements/{id}");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    let admin = caller.admin()?;
    let entitlement = issuer.store.entitlement(&id).ok_or_else(|| {
        ApiError::not_found("unknown_entitlement", format!("no entitlement `{id}`"))
    })?;
    let mut keys = vec![format!("entitlement:{id}")];
    if !entitlement.subject.starts_with(GROUP_PREFIX) {
        keys.push(format!("human:{}", entitlement.subject));
    }
    let appended = record(
        &issuer,
        "entitlement_removed",
        json!({"entitlement": id, "subject": entitlement.subject, "by": admin.id}),
        keys,
        Write::DeleteEntitlement { id: id.clone() },
    )
    .await
    .map_err(|error| match error {
        // Removed by someone else in the meantime.
        writ_store::StoreError::NotFound(_) => {
            ApiError::not_found("unknown_entitlement", format!("no entitlement `{id}`"))
        }
        other => other.into(),
    })?;
    Ok(Json(Removed {
        id,
        subject: entitlement.subject,
        log_index: appended.index,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Groups {
    groups: Vec<String>,
}

#[derive(Serialize)]
pub(crate) struct GroupsSet {
    human: String,
    groups: Vec<String>,
    log_index: u64,
}

/// `PUT /v1/humans/{id}/groups`: administrators set every group a human belongs to.
pub(crate) async fn set_groups(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<GroupsSet>, ApiError> {
    let path = format!("/v1/humans/{id}/groups");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    let admin = caller.admin()?;
    let request: Groups = parse_json(&body)?;
    if request.groups.len() > MAX_GROUPS {
        return Err(ApiError::invalid_request(
            "too_large",
            format!("at most {MAX_GROUPS} groups"),
        ));
    }
    for group in &request.groups {
        check_group(group)?;
    }
    let human = known_human(&issuer, &id)?;
    let groups: Vec<String> = request
        .groups
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let appended = record(
        &issuer,
        "human_groups_set",
        json!({"human": human.id, "groups": groups, "before": issuer.store.human_groups(&human.id), "by": admin.id}),
        vec![format!("human:{}", human.id)],
        Write::SetHumanGroups {
            id: human.id.clone(),
            groups: groups.clone(),
        },
    )
    .await?;
    Ok(Json(GroupsSet {
        human: human.id,
        groups,
        log_index: appended.index,
    }))
}

#[derive(Serialize)]
pub(crate) struct Effective {
    human: String,
    role: String,
    groups: Vec<String>,
    /// The union of the tools of `entitlements`.
    tools: Vec<String>,
    /// The union of their labels: the human's clearance.
    labels: Vec<String>,
    entitlements: Vec<EntitlementView>,
}

/// `GET /v1/humans/{id}/entitlements`: a human's groups and effective entitlements, for
/// administrators and the human themselves.
pub(crate) async fn of_human(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Effective>, ApiError> {
    let path = format!("/v1/humans/{id}/entitlements");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    let asker = caller.human()?;
    // Another member learns nothing, not even whether the human exists.
    if !caller.is_admin() && asker.id != id {
        return Err(ApiError::not_found(
            "unknown_human",
            format!("no human `{id}`"),
        ));
    }
    let human = known_human(&issuer, &id)?;
    let entitled = Entitled::of(&issuer.store, &human.id);
    Ok(Json(Effective {
        human: human.id,
        role: human.role,
        groups: entitled.groups,
        tools: entitled.tools.into_iter().collect(),
        labels: entitled.labels.into_iter().collect(),
        entitlements: entitled.from.into_iter().map(Into::into).collect(),
    }))
}
