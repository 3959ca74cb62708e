//! Revocation, and the resumable feed gateways follow.
//!
//! Revoking a mandate revokes its whole delegation subtree; revoking a human revokes the
//! human and every mandate they granted (with subtrees), in one audited, atomic step.
//! Issuance checks revocation too, so a revoked mandate earns no new writ.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_store::{RevocationRecord, Write};

use crate::Issuer;
use crate::audit::record;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::inventory::parse_json;

/// The longest a feed request waits for news, in seconds.
pub const MAX_WAIT: u64 = 30;
/// The most revocations one feed response carries.
pub const FEED_PAGE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Agent,
    Mandate,
    Human,
    Writ,
    Key,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::Mandate => "mandate",
            Kind::Human => "human",
            Kind::Writ => "writ",
            Kind::Key => "key",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    kind: Kind,
    subject: String,
    reason: String,
}

#[derive(Serialize)]
pub(crate) struct Revoked {
    /// What the request named, resolved: an agent's thumbprint even when it was named by
    /// its name.
    kind: Kind,
    subject: String,
    /// Every subject this request newly revoked (a mandate's subtree, a human's mandates).
    revoked: Vec<RevocationView>,
    /// The subjects the request covers that were revoked before; not repeated in `revoked`
    /// nor in the feed.
    already_revoked: Vec<SubjectView>,
    log_index: u64,
    /// With `?wait=S`: whether every live gateway has acknowledged the revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    enforcement: Option<crate::gateways::Enforcement>,
}

#[derive(Serialize)]
pub(crate) struct SubjectView {
    kind: String,
    subject: String,
}

#[derive(Serialize)]
pub(crate) struct RevocationView {
    seq: i64,
    kind: String,
    subject: String,
    reason: String,
    created_at: i64,
}

impl From<RevocationRecord> for RevocationView {
    fn from(record: RevocationRecord) -> Self {
        RevocationView {
            seq: record.seq,
            kind: record.kind,
            subject: record.subject,
            reason: record.reason,
            created_at: record.created_at,
        }
    }
}

fn not_authorized(human: &str, kind: Kind, subject: &str) -> ApiError {
    ApiError::denied(
        "not_authorized_to_revoke",
        format!("`{human}` may not revoke {} `{subject}`", kind.as_str()),
    )
}

fn unknown(kind: Kind, subject: &str) -> ApiError {
    ApiError::not_found(
        "unknown_subject",
        format!("no {} `{subject}`: nothing was revoked", kind.as_str()),
    )
}

/// The subject a revocation request names, resolved to the identifier revocations are
/// checked by, once `caller` is known to be allowed to revoke it: administrators may revoke
/// anything; other humans their own agents, the mandates they granted, and themselves.
///
/// An agent is named by its thumbprint or by its name (names are unique); a human by id; a
/// mandate, writ or key by its id. A subject that names nothing is refused
/// (`unknown_subject`), never recorded: a revocation that revokes nothing must not look
/// like one that worked.
async fn resolve(
    issuer: &Issuer,
    caller: &Caller,
    kind: Kind,
    subject: &str,
) -> Result<String, ApiError> {
    // Whom the caller acts for, when not an administrator; decided before any lookup so a
    // member learns nothing about subjects they may not revoke.
    let member = if caller.is_admin() {
        None
    } else {
        let human = caller.human()?;
        match kind {
            Kind::Human if subject != human.id => {
                return Err(not_authorized(&human.id, kind, subject));
            }
            Kind::Writ | Kind::Key => return Err(not_authorized(&human.id, kind, subject)),
            Kind::Agent | Kind::Mandate | Kind::Human => Some(human.id.clone()),
        }
    };
    let (resolved, owner) = match kind {
        Kind::Agent => {
            let agent = crate::consent::agent_named(issuer, subject)?
                .ok_or_else(|| unknown(kind, subject))?;
            (agent.jkt, Some(agent.owner))
        }
        Kind::Human => match issuer.store.human(subject) {
            Some(human) => (human.id.clone(), Some(human.id)),
            None => return Err(unknown(kind, subject)),
        },
        Kind::Mandate => match issuer.store.mandate(subject).await? {
            Some(mandate) => (mandate.id, Some(mandate.human_id)),
            None => return Err(unknown(kind, subject)),
        },
        Kind::Writ => {
            // A writ exists once its `writ_issued` leaf does; gateways' reports name writ
            // ids too, so only the issuance counts.
            if crate::gateways::issued(issuer, subject).await?.is_none() {
                return Err(unknown(kind, subject));
            }
            (subject.to_owned(), None)
        }
        Kind::Key => {
            if issuer.key_ring().verifiers.find(subject).is_none() {
                return Err(unknown(kind, subject));
            }
            (subject.to_owned(), None)
        }
    };
    match member {
        Some(member) if owner.as_deref() != Some(member.as_str()) => {
            Err(not_authorized(&member, kind, subject))
        }
        _ => Ok(resolved),
    }
}

pub(crate) async fn revoke(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Query(enforce): Query<crate::gateways::AwaitQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<Revoked>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/revocations", &headers).await?;
    let request: RevokeRequest = parse_json(&body)?;
    if caller.is_admin() {
        // A gateway's key named as an agent or a signing key: say what it is.
        crate::gateways::refuse_misdirected(&issuer, request.kind.as_str(), &request.subject)?;
    }
    if request.subject.is_empty() || request.subject.len() > 256 {
        return Err(ApiError::invalid_request(
            "invalid_subject",
            "subject must be 1 to 256 characters",
        ));
    }
    if request.reason.is_empty() || request.reason.chars().count() > 512 {
        return Err(ApiError::invalid_request(
            "invalid_reason",
            "reason must be 1 to 512 characters",
        ));
    }
    let subject = resolve(&issuer, &caller, request.kind, &request.subject).await?;
    let records = revocations(&issuer, request.kind, &subject, &request.reason).await?;
    let subjects = subject_keys(&records);
    let mut event = json!({"kind": request.kind, "subject": subject, "reason": request.reason, "by": caller.describe(), "subjects": subjects});
    if subject != request.subject {
        // An agent named by its name: the leaf keeps the name it was asked for by.
        if let serde_json::Value::Object(members) = &mut event {
            members.insert("named".into(), json!(request.subject));
        }
    }
    let appended = record(
        &issuer,
        "revoked",
        event,
        subjects.clone(),
        Write::Revoke(records.clone()),
    )
    .await?;
    issuer.revoked.notify_waiters();
    // With `?wait=S`, answered once every live gateway has applied the revocation (the
    // feed position it took), or after `S` seconds naming the gateways that lag.
    let position = appended.revocations.iter().flatten().max().copied();
    let enforcement = crate::gateways::await_enforcement(&issuer, &enforce, position).await?;
    // Committed either way; 202 says it is not yet known to be enforced everywhere.
    let status = if enforcement
        .as_ref()
        .is_some_and(|enforcement| enforcement.status != "enforced")
    {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    // Report what this request newly revoked, and apart what it covers that was revoked
    // earlier.
    let mut revoked = Vec::new();
    let mut already_revoked = Vec::new();
    for (mut record, seq) in records.into_iter().zip(appended.revocations) {
        match seq {
            Some(seq) => {
                record.seq = seq;
                revoked.push(RevocationView::from(record));
            }
            None => already_revoked.push(SubjectView {
                kind: record.kind,
                subject: record.subject,
            }),
        }
    }
    for revocation in &revoked {
        metrics::counter!("writ_revocations_total", "kind" => revocation.kind.clone()).increment(1);
    }
    Ok((
        status,
        Json(Revoked {
            kind: request.kind,
            subject,
            revoked,
            already_revoked,
            log_index: appended.index,
            enforcement,
        }),
    ))
}

/// The audit lookup keys of `records`, `kind:subject` each, so every revoked subject finds
/// the leaf that revoked it.
pub(crate) fn subject_keys(records: &[RevocationRecord]) -> Vec<String> {
    records
        .iter()
        .map(|record| format!("{}:{}", record.kind, record.subject))
        .collect()
}

/// How many of `records` the append newly revoked (the others were revoked before),
/// counted in `writ_revocations_total` by kind.
pub(crate) fn newly_revoked(records: &[RevocationRecord], seqs: &[Option<i64>]) -> usize {
    let mut count = 0;
    for (record, seq) in records.iter().zip(seqs) {
        if seq.is_some() {
            metrics::counter!("writ_revocations_total", "kind" => record.kind.clone()).increment(1);
            count += 1;
        }
    }
    count
}

/// The revocations that revoking `subject` of `kind` makes: the subject itself and every
/// mandate that dies with it (a mandate's subtree; every mandate a human granted or an agent
/// holds, with their subtrees).
pub(crate) async fn revocations(
    issuer: &Issuer,
    kind: Kind,
    subject: &str,
    reason: &str,
) -> Result<Vec<RevocationRecord>, ApiError> {
    let time = crate::seconds(issuer.now());
    let revocation = |kind: &str, subject: &str| RevocationRecord {
        seq: 0,
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        reason: reason.to_owned(),
        created_at: time,
        log_index: 0,
    };
    let roots = match kind {
        Kind::Mandate => vec![subject.to_owned()],
        Kind::Human => issuer.store.mandates_of(Some(subject), None).await?,
        Kind::Agent => issuer.store.mandates_of(None, Some(subject)).await?,
        Kind::Writ | Kind::Key => Vec::new(),
    };
    let mut records = vec![revocation(kind.as_str(), subject)];
    // Subtrees overlap (a human's mandates include those delegated from theirs).
    let mut seen = std::collections::HashSet::from([subject.to_owned()]);
    for root in roots {
        for id in issuer.store.mandate_subtree(&root).await? {
            if seen.insert(id.clone()) {
                records.push(revocation("mandate", &id));
            }
        }
    }
    Ok(records)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedQuery {
    #[serde(default)]
    after: i64,
    #[serde(default)]
    wait: u64,
    /// The gateway process's instance id, the same for all its requests: one process per
    /// gateway key is enforced with it.
    #[serde(default)]
    instance: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Feed {
    revocations: Vec<RevocationView>,
    /// Pass as `after` to resume.
    next: i64,
}

pub(crate) async fn feed(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Json<Feed>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/revocations", &headers).await?;
    if !matches!(caller, Caller::Gateway(_)) && !caller.is_admin() {
        return Err(ApiError::denied(
            "gateway_required",
            "only gateways and administrators read the revocation feed",
        ));
    }
    // A gateway's request acknowledges every entry up to `after` (it applies a page before
    // asking again), and keeps it live while it waits.
    let _poll = match &caller {
        Caller::Gateway(gateway) => Some(issuer.presence.poll(
            gateway,
            query.after,
            query.wait.min(MAX_WAIT),
            query.instance.as_deref(),
        )?),
        _ => None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(query.wait.min(MAX_WAIT));
    loop {
        // Register interest before reading, so a revocation between the read and the wait
        // is not missed.
        let notified = issuer.revoked.notified();
        let page = issuer
            .store
            .revocations_since(query.after, FEED_PAGE)
            .await?;
        if !page.is_empty() || tokio::time::Instant::now() >= deadline {
            let next = page.last().map_or(query.after, |record| record.seq);
            return Ok(Json(Feed {
                revocations: page.into_iter().map(Into::into).collect(),
                next,
            }));
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
        // A gateway disabled or revoked while it waits hears it now, not on its next request.
        if let Caller::Gateway(gateway) = &caller
            && let Some(current) = issuer.store.gateway(&gateway.jkt)
        {
            crate::gateways::usable(&issuer, &current)?;
        }
    }
}
