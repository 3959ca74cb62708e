//! Recording events in the audit log, signing checkpoints, and serving proofs.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_log::Checkpoint;
use writ_store::{Appended, Event, StoreError, Write};
use writ_token::UnixTime;

use crate::Issuer;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;

/// An audit event: the leaf is `{"event", "kind", "time"}` as canonical JSON (members
/// sorted at every depth, whatever the build's `serde_json` features), with lookup keys.
pub(crate) fn event(
    kind: &str,
    time: UnixTime,
    event: Value,
    keys: Vec<String>,
) -> Result<Event, StoreError> {
    let time = crate::seconds(time);
    let mut leaf = json!({"kind": kind, "time": time, "event": event});
    writ_jose::sort_members(&mut leaf);
    Ok(Event {
        kind: kind.to_owned(),
        data: serde_json::to_vec(&leaf).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        keys,
        time,
    })
}

/// Appends an event now, applying `write` in the same transaction.
pub(crate) async fn record(
    issuer: &Issuer,
    kind: &str,
    body: Value,
    keys: Vec<String>,
    write: Write,
) -> Result<Appended, StoreError> {
    issuer
        .store
        .append(event(kind, issuer.now(), body, keys)?, write)
        .await
}

/// Records a refusal. A refusal stands even when it cannot be recorded; the failure is
/// logged.
pub(crate) async fn record_denial(
    issuer: &Issuer,
    kind: &str,
    error: &ApiError,
    mut event: Value,
    keys: Vec<String>,
) {
    if let Value::Object(members) = &mut event {
        members.insert("reason".into(), json!(error.reason()));
        members.insert("message".into(), json!(error.message()));
    }
    if let Err(cause) = record(issuer, kind, event, keys, Write::Nothing).await {
        tracing::error!(error = %cause, reason = error.reason(), "could not record a denial");
    }
}

/// Signs a checkpoint whenever the log has grown, every `checkpoint_interval`.
pub(crate) fn spawn_checkpointer(issuer: &Arc<Issuer>) {
    let weak = Arc::downgrade(issuer);
    let interval = issuer.settings.checkpoint_interval;
    tokio::spawn(async move {
        let mut signed = 0;
        loop {
            tokio::time::sleep(interval).await;
            let Some(issuer) = weak.upgrade() else { break };
            let head = issuer.store.tree_head();
            if head.size == signed {
                continue;
            }
            match sign_checkpoint(&issuer).await {
                Ok(size) => signed = size,
                Err(error) => tracing::error!(%error, "could not store a checkpoint"),
            }
        }
    });
}

/// Signs and stores a checkpoint of the current tree head; returns its size.
pub(crate) async fn sign_checkpoint(issuer: &Issuer) -> Result<u64, StoreError> {
    let head = issuer.store.tree_head();
    let checkpoint = Checkpoint {
        origin: issuer.note_signer.verifier().name().to_owned(),
        size: head.size,
        root: head.root,
        extensions: Vec::new(),
    };
    let note = writ_log::sign_note(&checkpoint.to_text(), &issuer.note_signer)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    issuer
        .store
        .put_checkpoint(head.size, note, crate::seconds(issuer.now()))
        .await?;
    Ok(head.size)
}

#[derive(Serialize)]
pub(crate) struct Health {
    status: &'static str,
    log_size: u64,
    policy_set: String,
}

pub(crate) async fn healthz(State(issuer): State<Arc<Issuer>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        log_size: issuer.store.tree_head().size,
        policy_set: issuer.policy_version(),
    })
}

#[derive(Serialize)]
pub(crate) struct CheckpointBody {
    pub(crate) size: u64,
    note: String,
    verifier_key: String,
}

pub(crate) async fn checkpoint(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<CheckpointBody>, ApiError> {
    authenticate(&issuer, &method, "/v1/audit/checkpoint", &headers).await?;
    Ok(Json(current_checkpoint(&issuer).await?))
}

/// A signed checkpoint of the whole log as it stands: the newest stored one when the log
/// has not grown since, a new one otherwise.
pub(crate) async fn current_checkpoint(issuer: &Issuer) -> Result<CheckpointBody, ApiError> {
    let (size, note) = match issuer.store.latest_checkpoint().await? {
        Some((size, note)) if size == issuer.store.tree_head().size => (size, note),
        _ => {
            let size = sign_checkpoint(issuer).await?;
            issuer
                .store
                .latest_checkpoint()
                .await?
                .filter(|(stored, _)| *stored == size)
                .ok_or_else(|| ApiError::not_found("no_checkpoint", "no checkpoint yet"))?
        }
    };
    Ok(CheckpointBody {
        size,
        note,
        verifier_key: issuer.log_verifier_key(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SizeQuery {
    size: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct LeafBody {
    index: u64,
    size: u64,
    kind: String,
    /// The leaf's bytes, base64.
    data: String,
    /// The event, parsed, for people.
    event: Value,
    /// The inclusion proof, base64 hashes.
    proof: Vec<String>,
}

pub(crate) async fn leaf(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(index): Path<u64>,
    Query(query): Query<SizeQuery>,
) -> Result<Json<LeafBody>, ApiError> {
    // Leaves carry task texts and who asked for what: administrators only.
    authenticate(
        &issuer,
        &method,
        &format!("/v1/audit/leaves/{index}"),
        &headers,
    )
    .await?
    .admin()?;
    let size = query.size.unwrap_or_else(|| issuer.store.tree_head().size);
    let leaf = issuer
        .store
        .leaf(index)
        .await?
        .filter(|_| index < size)
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_leaf",
                format!("no leaf {index} in a log of size {size}"),
            )
        })?;
    let proof = issuer.store.inclusion_proof(index, size).await?;
    Ok(Json(LeafBody {
        index,
        size,
        kind: leaf.kind,
        event: serde_json::from_slice(&leaf.data).unwrap_or(Value::Null),
        data: STANDARD.encode(&leaf.data),
        proof: proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    old: u64,
    new: u64,
}

#[derive(Serialize)]
pub(crate) struct ConsistencyBody {
    old: u64,
    new: u64,
    proof: Vec<String>,
}

pub(crate) async fn consistency(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyBody>, ApiError> {
    authenticate(&issuer, &method, "/v1/audit/consistency", &headers).await?;
    if query.old > query.new {
        return Err(ApiError::invalid_request(
            "bad_range",
            "`old` must not exceed `new`",
        ));
    }
    let proof = issuer.store.consistency_proof(query.old, query.new).await?;
    Ok(Json(ConsistencyBody {
        old: query.old,
        new: query.new,
        proof: proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
    }))
}

/// The most decisions one report may carry.
pub const MAX_DECISIONS: usize = 500;

/// A gateway's decision on one request, as the gateway reports it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewayDecision {
    /// The gateway's id for the request; a decision is recorded once per gateway and id.
    request_id: String,
    /// When the gateway decided, Unix seconds.
    time: u64,
    /// `allow` or `deny`.
    decision: Verdict,
    /// A stable reason code (`allowed` for an allow).
    reason: String,
    /// The sentence the caller was shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// The gateway route (its inventory server name).
    route: String,
    /// The HTTP method, or the MCP JSON-RPC method.
    method: String,
    /// The request path, or the MCP tool name.
    target: String,
    /// The writ presented, when one was parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writ: Option<String>,
    /// The writ's mandate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mandate: Option<String>,
    /// The acting agent's key thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    /// The human the writ names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    human: Option<String>,
    /// For a denial without a valid writ, the key the caller's proof showed it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller: Option<String>,
    /// For a response: the call it answered, named as the detectors name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool: Option<String>,
    /// For a response: its size in bytes, as far as the gateway read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    /// Set by the issuer for a denial naming a writ or mandate that was not issued for the
    /// reporting gateway (an agent showed it a writ for another audience): recorded, but
    /// not found under that writ or mandate.
    #[serde(skip_deserializing, skip_serializing_if = "std::ops::Not::not")]
    issued_elsewhere: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Allow,
    Deny,
    /// The end of an allowed call's response, with its size: what behavioural baselines
    /// learn response volumes from, and where a gateway reports a response it cut.
    Response,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionReport {
    decisions: Vec<GatewayDecision>,
}

#[derive(Serialize)]
pub(crate) struct Recorded {
    request_id: String,
    log_index: u64,
    /// Recorded by an earlier report (a retry after a lost answer).
    duplicate: bool,
}

#[derive(Serialize)]
pub(crate) struct RecordedReport {
    recorded: Vec<Recorded>,
}

impl GatewayDecision {
    /// The limits on what a gateway may write into the log.
    fn validate(&self) -> Result<(), ApiError> {
        let id_ok = (1..=64).contains(&self.request_id.len())
            && self
                .request_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let short = |text: &str, max: usize| !text.is_empty() && text.len() <= max;
        let optional = |text: &Option<String>| text.as_deref().is_none_or(|text| short(text, 256));
        if !id_ok {
            return Err(ApiError::invalid_request(
                "invalid_request_id",
                "request_id must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        if !(short(&self.reason, 64)
            && short(&self.route, 128)
            && short(&self.method, 64)
            && self.target.len() <= 2048
            && self.message.as_deref().is_none_or(|m| m.len() <= 1024)
            && optional(&self.writ)
            && optional(&self.mandate)
            && optional(&self.agent)
            && optional(&self.human)
            && optional(&self.caller)
            && optional(&self.tool))
        {
            return Err(ApiError::invalid_request(
                "invalid_decision",
                format!(
                    "decision `{}` has an empty or oversized field",
                    self.request_id
                ),
            ));
        }
        if self.decision != Verdict::Deny && self.writ.is_none() {
            return Err(ApiError::invalid_request(
                "invalid_decision",
                format!(
                    "{} `{}` needs the writ it was decided on",
                    if self.decision == Verdict::Allow {
                        "allow"
                    } else {
                        "response"
                    },
                    self.request_id
                ),
            ));
        }
        if self.decision == Verdict::Response
            && (self.agent.is_none()
                || self.mandate.is_none()
                || self.tool.is_none()
                || self.bytes.is_none())
        {
            return Err(ApiError::invalid_request(
                "invalid_decision",
                format!(
                    "response `{}` needs its agent, mandate, tool and bytes",
                    self.request_id
                ),
            ));
        }
        Ok(())
    }
}

/// `POST /v1/audit/decisions`: a gateway reports its decisions, each recorded as one leaf
/// (`gateway_decision`) found by its request id, writ, mandate and gateway, and the end of
/// each allowed call's response (`gateway_response`, judged and learned by `behaviour`). A decision
/// the same gateway already recorded under its request id is not recorded again, so a
/// gateway may resend a report whose answer it never saw.
pub(crate) async fn decisions(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<RecordedReport>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/audit/decisions", &headers).await?;
    let Caller::Gateway(gateway) = caller else {
        return Err(ApiError::denied(
            "gateway_required",
            "only gateways report decisions",
        ));
    };
    let report: DecisionReport = crate::inventory::parse_json(&body)?;
    if report.decisions.is_empty() || report.decisions.len() > MAX_DECISIONS {
        return Err(ApiError::invalid_request(
            "invalid_report",
            format!("a report carries 1 to {MAX_DECISIONS} decisions"),
        ));
    }
    for decision in &report.decisions {
        decision.validate()?;
    }
    let mut report = report;
    for decision in &mut report.decisions {
        issued_for(&issuer, &gateway, decision).await?;
    }
    // Appended concurrently, so the whole report shares the store's group commits; the
    // ends of answers after the decisions, so that each follows its decision in the log.
    let (responses, decisions): (Vec<_>, Vec<_>) = report
        .decisions
        .into_iter()
        .enumerate()
        .partition(|(_, decision)| decision.decision == Verdict::Response);
    let mut recorded = Vec::new();
    for phase in [decisions, responses] {
        record_phase(&issuer, &gateway, phase, &mut recorded).await?;
    }
    recorded.sort_by_key(|(position, _)| *position);
    metrics::counter!("writ_gateway_decisions_total").increment(recorded.len() as u64);
    Ok(Json(RecordedReport {
        recorded: recorded.into_iter().map(|(_, r)| r).collect(),
    }))
}

/// Checks that what `decision` names was issued for `gateway`. A gateway reports allows
/// and answers only for its own writs, so it cannot hold, nor teach the baseline of,
/// another gateway's mandates; and an allow or answer is bound to its writ: the mandate,
/// agent, human and tool recorded are the writ's own (as the issuer recorded it), and a
/// report naming others is refused, so a gateway shown one owner's writ cannot teach
/// another agent's baseline nor hold one owner's mandate for another. A denial may name
/// another audience's writ (an agent showed it one); it is recorded apart from that writ
/// and mandate.
async fn issued_for(
    issuer: &Issuer,
    gateway: &writ_store::GatewayRecord,
    decision: &mut GatewayDecision,
) -> Result<(), ApiError> {
    let not_this_gateway = |decision: &GatewayDecision, id: &str| {
        ApiError::invalid_request(
            "not_this_gateway",
            format!(
                "decision `{}` names `{id}`, which was not issued for gateway `{}`",
                decision.request_id, gateway.name
            ),
        )
    };
    if decision.decision == Verdict::Deny {
        for id in [decision.writ.as_deref(), decision.mandate.as_deref()]
            .into_iter()
            .flatten()
        {
            if !crate::gateways::shown(issuer, &gateway.jkt, id).await? {
                decision.issued_elsewhere = true;
                return Ok(());
            }
        }
        return Ok(());
    }
    // `validate` refused an allow or answer without its writ.
    let Some(writ) = decision.writ.clone() else {
        return Err(ApiError::invalid_request(
            "invalid_decision",
            format!("decision `{}` names no writ", decision.request_id),
        ));
    };
    if !crate::gateways::shown(issuer, &gateway.jkt, &writ).await? {
        return Err(not_this_gateway(decision, &writ));
    }
    let Some(issued) = crate::gateways::issued(issuer, &writ).await? else {
        return Err(not_this_gateway(decision, &writ));
    };
    let request_id = decision.request_id.clone();
    let mismatch = |field: &str| {
        ApiError::invalid_request(
            "decision_mismatch",
            format!("decision `{request_id}` names a {field} that is not writ `{writ}`'s"),
        )
    };
    for (field, reported, recorded) in [
        ("mandate", &mut decision.mandate, issued.mandate),
        ("agent", &mut decision.agent, issued.agent),
        ("human", &mut decision.human, issued.human),
    ] {
        if reported
            .as_deref()
            .is_some_and(|reported| !same(reported, &recorded))
        {
            return Err(mismatch(field));
        }
        *reported = Some(recorded);
    }
    if let Some(reported) = &decision.tool {
        match issued.tool {
            Some(tool) if same(reported, &tool) => decision.tool = Some(tool),
            _ => return Err(mismatch("tool")),
        }
    }
    Ok(())
}

/// Whether a gateway's `reported` value is `recorded`, or the start of it a gateway keeps
/// (it cuts each field to 256 bytes at a character boundary).
fn same(reported: &str, recorded: &str) -> bool {
    const KEPT: usize = 256;
    if reported == recorded {
        return true;
    }
    let mut end = KEPT;
    while end > 0 && !recorded.is_char_boundary(end) {
        end -= 1;
    }
    recorded.len() > KEPT && recorded.get(..end) == Some(reported)
}

/// A gateway decision being recorded by one task; another with the same key waits until
/// it is dropped.
struct Recording {
    issuer: Arc<Issuer>,
    key: String,
}

impl Recording {
    async fn claim(issuer: &Arc<Issuer>, key: &str) -> Recording {
        loop {
            let claimed = issuer
                .recording
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key.to_owned());
            if claimed {
                return Recording {
                    issuer: Arc::clone(issuer),
                    key: key.to_owned(),
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.issuer
            .recording
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// Appends `decisions` concurrently, adding each one's `(position, Recorded)`. Each runs
/// as a task of its own that finishes even when the report is abandoned (a `JoinSet`
/// would abort them), so what an append commits is also applied in memory.
async fn record_phase(
    issuer: &Arc<Issuer>,
    gateway: &writ_store::GatewayRecord,
    decisions: Vec<(usize, GatewayDecision)>,
    recorded: &mut Vec<(usize, Recorded)>,
) -> Result<(), ApiError> {
    let mut pending = Vec::with_capacity(decisions.len());
    for (position, decision) in decisions {
        let issuer = Arc::clone(issuer);
        let gateway = (gateway.name.clone(), gateway.jkt.clone());
        pending.push(tokio::spawn(async move {
            let response = decision.decision == Verdict::Response;
            // Once per gateway: request ids are each gateway's own, so another gateway
            // reporting the same id first (a colluder who learned it) takes nothing away.
            let key = format!(
                "{}:{}:{}",
                if response { "response" } else { "request" },
                gateway.1,
                decision.request_id
            );
            // The check and the append are one step per decision: the same decision in
            // another report (resent while this one was late) waits for this one.
            let _recording = Recording::claim(&issuer, &key).await;
            if let Some(&index) = issuer.store.lookup(&key).await?.first() {
                return Ok::<_, StoreError>((position, decision.request_id, index, true));
            }
            let mut keys = vec![key, format!("gateway:{}", gateway.1)];
            // Found by its id alone, whichever gateway reported it (`GET /v1/trace/{id}`).
            if !response {
                keys.push(format!("request:{}", decision.request_id));
            }
            if !decision.issued_elsewhere {
                keys.extend(decision.writ.as_ref().map(|id| format!("writ:{id}")));
                keys.extend(decision.mandate.as_ref().map(|id| format!("mandate:{id}")));
            }
            // A caller whose key is registered in no role is someone to find: listed by
            // `GET /v1/inventory`.
            if let Some(caller) = &decision.caller
                && !crate::discovery::registered(&issuer, caller)
            {
                keys.push(crate::discovery::TURNED_AWAY.to_owned());
            }
            let mut body =
                serde_json::to_value(&decision).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Value::Object(members) = &mut body {
                members.insert("gateway".into(), json!(gateway.0));
            }
            if response {
                let index =
                    crate::behaviour::gateway_response(&issuer, body, keys, decision.time).await?;
                return Ok((position, decision.request_id, index, false));
            }
            let event = event(
                "gateway_decision",
                UnixTime::from_secs(decision.time),
                body,
                keys,
            )?;
            let appended = issuer.store.append(event, Write::Nothing).await?;
            Ok((position, decision.request_id, appended.index, false))
        }));
    }
    for joined in pending {
        let joined = joined.await;
        let (position, request_id, log_index, duplicate) = joined
            .map_err(|e| ApiError::unavailable(&StoreError::Unavailable(e.to_string())))??;
        recorded.push((
            position,
            Recorded {
                request_id,
                log_index,
                duplicate,
            },
        ));
    }
    Ok(())
}
