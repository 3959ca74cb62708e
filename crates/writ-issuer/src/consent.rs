//! Delegation consents: the humans' say in a delegation that leaves the agents of the
//! mandate's human.
//!
//! By default a delegated mandate stays with the agents of the human who granted its root
//! (`sub`). An agent holding alice's mandate may hand part of it to bob's agent only when
//! both humans have said so: bob, that his agent may receive from alice ("receive"), and
//! alice, that her mandates may go to bob's agent ("send"). Either may narrow their consent
//! to one mandate and what is delegated from it, and either may withdraw it.
//!
//! ```text
//! POST /v1/delegation-consents              {"agent": "bob-bot", "from": "alice"}
//! POST /v1/delegation-consents/{id}/withdraw {"reason": "..."}
//! GET  /v1/delegation-consents              the consents the caller is party to
//! ```
//!
//! A consent is an audit leaf (`delegation_consented`, `delegation_consent_withdrawn`) and
//! nothing else: the log is its record, found through the lookup key
//! `consent-to:{agent thumbprint}:{human}`, so a consent is as durable and as verifiable as
//! every other change. Every consent for an agent lapses for good when the agent changes
//! owner, and the mandates it holds from humans other than its new owner are revoked then
//! (see [`crate::lifecycle`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_store::{AgentRecord, Write};

use crate::Issuer;
use crate::audit::record;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::inventory::parse_json;

/// How long a consent lasts unless the request says otherwise: 30 days.
pub const DEFAULT_CONSENT_SECONDS: u64 = 30 * 86_400;
/// The longest a consent may last: a year.
pub const MAX_CONSENT_SECONDS: u64 = 365 * 86_400;

const CONSENTED: &str = "delegation_consented";
const WITHDRAWN: &str = "delegation_consent_withdrawn";

/// The agent `named` by its thumbprint or its name (agent names are unique, and made of
/// `a-z0-9._-` only, so a name is never mistaken for another). A text that is one agent's
/// thumbprint and another's name is refused as ambiguous.
pub(crate) fn agent_named(issuer: &Issuer, named: &str) -> Result<Option<AgentRecord>, ApiError> {
    let by_key = issuer.store.agent(named);
    let by_name = issuer.store.agent_by_name(named);
    match (by_key, by_name) {
        (Some(by_key), Some(by_name)) if by_key.jkt != by_name.jkt => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            "ambiguous_agent",
            format!(
                "`{named}` is the thumbprint of agent `{}` and the name of agent `{}`: name it by its thumbprint, `{}` or `{}`",
                by_key.name, by_name.name, by_key.jkt, by_name.jkt
            ),
        )),
        (Some(agent), _) | (None, Some(agent)) => Ok(Some(agent)),
        (None, None) => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewConsent {
    /// The receiving agent, by name or thumbprint.
    agent: String,
    /// The human whose mandates may reach it.
    from: String,
    /// Only this mandate and what is delegated from it; any of `from`'s when absent.
    #[serde(default)]
    mandate: Option<String>,
    /// How long the consent lasts, in seconds.
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Which side of a delegation a consent speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Side {
    /// The receiving agent's owner.
    Receive,
    /// The human whose mandates are handed on.
    Send,
}

/// A consent as its leaf records it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct Consent {
    consent: String,
    side: Side,
    /// The human who gave it.
    by: String,
    agent: String,
    agent_name: String,
    /// The agent's owner when it was given.
    owner: String,
    from: String,
    #[serde(default)]
    mandate: Option<String>,
    expires_at: i64,
}

#[derive(Serialize)]
pub(crate) struct Consented {
    #[serde(flatten)]
    consent: Consent,
    log_index: u64,
}

/// `POST /v1/delegation-consents`: the receiving agent's owner, or the human whose
/// mandates are handed on, consents to a delegation across owners.
pub(crate) async fn give(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Consented>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/delegation-consents", &headers).await?;
    let human = caller.human()?;
    let new: NewConsent = parse_json(&body)?;
    let agent = agent_named(&issuer, &new.agent)?
        .ok_or_else(|| ApiError::not_found("unknown_agent", format!("no agent `{}`", new.agent)))?;
    let from = issuer
        .store
        .human(&new.from)
        .ok_or_else(|| ApiError::not_found("unknown_human", format!("no human `{}`", new.from)))?;
    if agent.owner == from.id {
        return Err(ApiError::invalid_request(
            "consent_not_needed",
            format!(
                "agent `{}` belongs to `{}`: their mandates reach it without consent",
                agent.name, from.id
            ),
        ));
    }
    let side = if human.id == agent.owner {
        Side::Receive
    } else if human.id == from.id {
        Side::Send
    } else {
        return Err(ApiError::denied(
            "not_authorized_to_consent",
            format!(
                "only `{}`, who owns agent `{}`, or `{}` may consent to this delegation",
                agent.owner, agent.name, from.id
            ),
        ));
    };
    if let Some(mandate) = &new.mandate {
        let known = issuer
            .store
            .mandate(mandate)
            .await?
            .is_some_and(|record| record.human_id == from.id);
        if !known {
            return Err(ApiError::not_found(
                "unknown_mandate",
                format!("no mandate `{mandate}` of `{}`", from.id),
            ));
        }
    }
    let seconds = new.expires_in.unwrap_or(DEFAULT_CONSENT_SECONDS);
    if seconds == 0 || seconds > MAX_CONSENT_SECONDS {
        return Err(ApiError::invalid_request(
            "invalid_expires_in",
            format!("expires_in must be 1 to {MAX_CONSENT_SECONDS} seconds"),
        ));
    }
    let consent = Consent {
        consent: format!(
            "cns_{}",
            writ_jose::base64url_encode(crate::mandates::random_id()?)
        ),
        side,
        by: human.id.clone(),
        agent: agent.jkt.clone(),
        agent_name: agent.name,
        owner: agent.owner,
        from: from.id,
        mandate: new.mandate,
        expires_at: crate::seconds(issuer.now().plus(seconds)),
    };
    let event = serde_json::to_value(&consent).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "encoding_failed",
            e.to_string(),
        )
    })?;
    let appended = record(&issuer, CONSENTED, event, keys(&consent), Write::Nothing).await?;
    Ok((
        StatusCode::CREATED,
        Json(Consented {
            consent,
            log_index: appended.index,
        }),
    ))
}

/// The lookup keys of a consent's leaves.
fn keys(consent: &Consent) -> Vec<String> {
    vec![
        format!("consent:{}", consent.consent),
        format!("consent-to:{}:{}", consent.agent, consent.from),
        format!("consent-party:{}", consent.owner),
        format!("consent-party:{}", consent.from),
        format!("agent:{}", consent.agent),
        format!("human:{}", consent.by),
    ]
}

#[derive(Serialize)]
pub(crate) struct ConsentView {
    #[serde(flatten)]
    consent: Consent,
    /// `active`, `withdrawn`, `expired`, or `lapsed` (the agent changed owner since).
    status: &'static str,
}

#[derive(Serialize)]
pub(crate) struct ConsentList {
    consents: Vec<ConsentView>,
}

/// `GET /v1/delegation-consents`: the consents the caller is party to, as the agent's owner
/// or as the human whose mandates they concern, whoever gave them; newest first.
pub(crate) async fn list(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<ConsentList>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/delegation-consents", &headers).await?;
    let human = caller.human()?;
    let now = crate::seconds(issuer.now());
    let mut given: Vec<(u64, Consent)> = Vec::new();
    let mut withdrawn: Vec<String> = Vec::new();
    for (index, kind, event) in
        indexed_leaves(&issuer, &format!("consent-party:{}", human.id)).await?
    {
        match kind.as_str() {
            CONSENTED => given.extend(
                serde_json::from_value::<Consent>(event)
                    .ok()
                    .map(|consent| (index, consent)),
            ),
            WITHDRAWN => withdrawn.extend(
                event
                    .get("consent")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    let mut consents = Vec::with_capacity(given.len());
    for (index, consent) in given.into_iter().rev() {
        let status = if withdrawn.contains(&consent.consent) {
            "withdrawn"
        } else if consent.expires_at <= now {
            "expired"
        } else if lapsed(&issuer, &consent, index).await? {
            "lapsed"
        } else {
            "active"
        };
        consents.push(ConsentView { consent, status });
    }
    Ok(Json(ConsentList { consents }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Withdrawal {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Withdrawn {
    consent: String,
    /// False when it had been withdrawn before; nothing is recorded then.
    withdrawn: bool,
    /// The mandates delegated under the consent, with their subtrees, newly revoked with it.
    revoked: Vec<RevokedMandate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_index: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct RevokedMandate {
    kind: String,
    subject: String,
}

/// `POST /v1/delegation-consents/{id}/withdraw`: by the human who gave it, or an
/// administrator. No delegation is made under it any more, and the mandates delegated under
/// it are revoked with it, with their subtrees, in the same audited step.
pub(crate) async fn withdraw(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Withdrawn>, ApiError> {
    let path = format!("/v1/delegation-consents/{id}/withdraw");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    let human = caller.human()?;
    let withdrawal: Withdrawal = if body.is_empty() {
        Withdrawal { reason: None }
    } else {
        parse_json(&body)?
    };
    if withdrawal
        .reason
        .as_ref()
        .is_some_and(|reason| reason.is_empty() || reason.chars().count() > 512)
    {
        return Err(ApiError::invalid_request(
            "invalid_reason",
            "reason must be 1 to 512 characters",
        ));
    }
    let mut given = None;
    let mut withdrawn = false;
    let mut delegated = Vec::new();
    for (kind, event) in leaves(&issuer, &format!("consent:{id}")).await? {
        match kind.as_str() {
            CONSENTED => given = serde_json::from_value::<Consent>(event).ok(),
            WITHDRAWN => withdrawn = true,
            // A delegation made under it (its leaf names its consents).
            "mandate_delegated" => {
                delegated.extend(
                    event
                        .get("mandate")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
            }
            _ => {}
        }
    }
    let consent = given
        .filter(|consent| caller.is_admin() || consent.by == human.id)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_consent",
                format!("no consent `{id}` that `{}` gave", human.id),
            )
        })?;
    if withdrawn {
        return Ok(Json(Withdrawn {
            consent: id,
            withdrawn: false,
            revoked: Vec::new(),
            log_index: None,
        }));
    }
    let reason = format!("delegation consent {} withdrawn", consent.consent);
    let mut records: Vec<writ_store::RevocationRecord> = Vec::new();
    for mandate in &delegated {
        for record in crate::revocation::revocations(
            &issuer,
            crate::revocation::Kind::Mandate,
            mandate,
            &reason,
        )
        .await?
        {
            if !records
                .iter()
                .any(|known| known.kind == record.kind && known.subject == record.subject)
            {
                records.push(record);
            }
        }
    }
    let subjects = crate::revocation::subject_keys(&records);
    let mut lookup = keys(&consent);
    lookup.extend(subjects.iter().cloned());
    let appended = record(
        &issuer,
        WITHDRAWN,
        json!({"consent": consent.consent, "by": caller.describe(), "reason": withdrawal.reason, "revoked": subjects}),
        lookup,
        if records.is_empty() {
            Write::Nothing
        } else {
            Write::Revoke(records.clone())
        },
    )
    .await?;
    if !records.is_empty() {
        issuer.revoked.notify_waiters();
        crate::revocation::newly_revoked(&records, &appended.revocations);
    }
    let revoked = records
        .into_iter()
        .zip(appended.revocations.iter())
        .filter(|(_, seq)| seq.is_some())
        .map(|(record, _)| RevokedMandate {
            kind: record.kind,
            subject: record.subject,
        })
        .collect();
    Ok(Json(Withdrawn {
        consent: id,
        withdrawn: true,
        revoked,
        log_index: Some(appended.index),
    }))
}

/// The index of the leaf that last transferred agent `jkt`, if it ever changed owner.
async fn last_transfer(issuer: &Issuer, jkt: &str) -> Result<Option<u64>, ApiError> {
    Ok(issuer
        .store
        .lookup(&crate::lifecycle::transferred_key(jkt))
        .await?
        .into_iter()
        .max())
}

/// Whether `consent`, recorded at leaf `index`, lapsed: its agent changed owner since.
async fn lapsed(issuer: &Issuer, consent: &Consent, index: u64) -> Result<bool, ApiError> {
    let owner = issuer.store.agent(&consent.agent).map(|agent| agent.owner);
    Ok(owner.as_deref() != Some(consent.owner.as_str())
        || last_transfer(issuer, &consent.agent)
            .await?
            .is_some_and(|transferred| transferred > index))
}

/// The leaves found under `key`, oldest first: each leaf's kind and event.
async fn leaves(issuer: &Issuer, key: &str) -> Result<Vec<(String, Value)>, ApiError> {
    Ok(indexed_leaves(issuer, key)
        .await?
        .into_iter()
        .map(|(_, kind, event)| (kind, event))
        .collect())
}

/// The leaves found under `key`, oldest first: each leaf's index, kind and event.
async fn indexed_leaves(issuer: &Issuer, key: &str) -> Result<Vec<(u64, String, Value)>, ApiError> {
    let mut indexes = issuer.store.lookup(key).await?;
    indexes.sort_unstable();
    let mut found = Vec::with_capacity(indexes.len());
    for index in indexes {
        if let Some(leaf) = issuer.store.leaf(index).await? {
            let mut data: Value = serde_json::from_slice(&leaf.data).map_err(|e| {
                ApiError::unavailable(&writ_store::StoreError::Corrupt(e.to_string()))
            })?;
            let event = data.get_mut("event").map_or(Value::Null, Value::take);
            found.push((index, leaf.kind, event));
        }
    }
    Ok(found)
}

/// The consents that allow a delegation of a mandate of `from` (whose lineage, the mandate
/// and its ancestors, is `lineage`) to `agent` at `now`: one by its owner (given while they
/// owned it) and one by `from`, neither withdrawn nor expired, each for any of `from`'s
/// mandates or for one in `lineage`, and both given after the agent's last transfer (a
/// transfer lapses every consent for good, even should the agent come back to the owner
/// who gave it). Their ids (the newest of each side), or what is missing.
pub(crate) async fn consents(
    issuer: &Issuer,
    agent: &AgentRecord,
    from: &str,
    lineage: &[String],
    now: i64,
) -> Result<Result<[String; 2], &'static str>, ApiError> {
    let mut consents: Vec<Consent> = Vec::new();
    let mut withdrawn: Vec<String> = Vec::new();
    let transferred = last_transfer(issuer, &agent.jkt).await?;
    for (index, kind, event) in
        indexed_leaves(issuer, &format!("consent-to:{}:{from}", agent.jkt)).await?
    {
        match kind.as_str() {
            CONSENTED if transferred.is_none_or(|transferred| index > transferred) => {
                consents.extend(serde_json::from_value::<Consent>(event).ok());
            }
            WITHDRAWN => withdrawn.extend(
                event
                    .get("consent")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            ),
            _ => {}
        }
    }
    let holding = |side: Side, by: &str| {
        consents
            .iter()
            .rev()
            .find(|consent| {
                consent.side == side
                    && consent.by == by
                    && consent.agent == agent.jkt
                    && consent.from == from
                    && consent.owner == agent.owner
                    && consent.expires_at > now
                    && !withdrawn.contains(&consent.consent)
                    && consent
                        .mandate
                        .as_ref()
                        .is_none_or(|mandate| lineage.contains(mandate))
            })
            .map(|consent| consent.consent.clone())
    };
    Ok(
        match (
            holding(Side::Receive, &agent.owner),
            holding(Side::Send, from),
        ) {
            (Some(receive), Some(send)) => Ok([receive, send]),
            (None, Some(_)) => Err("the agent's owner has not consented"),
            (Some(_), None) => Err("the mandate's human has not consented"),
            (None, None) => Err("neither the agent's owner nor the mandate's human has consented"),
        },
    )
}
