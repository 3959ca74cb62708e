//! Behaviour: every call an agent asks a writ for is compared with what the agent normally
//! does before the writ exists.
//!
//! Each agent has a [`Profile`] (`writ-behaviour`) learned from its audited history. At the
//! token endpoint, after scope and policy allow the call, the detectors assess it, and the
//! strongest finding's mode decides:
//!
//! - none, or `observe`: the writ is issued; the findings are recorded in its leaf;
//! - `step_up`: no writ yet. The issuer records an approval request for the agent's owner
//!   and answers `authorization_pending` (RFC 8628 §3.5 style) with the approval's id; the
//!   agent retries the same call. Once the owner approves (`POST /v1/approvals/{id}`), the
//!   retry gets its writ, once; a denial or the timeout ends it with `access_denied`;
//! - `block`: refused with `behaviour_blocked` and the finding's sentence.
//!
//! Gateways add what only they see: the size of each response. A response beyond its
//! tool's limit stops the stream at the gateway and is reported as a drift verdict; the
//! issuer then holds the mandate: a `block` verdict refuses every further writ for it (and
//! revokes it when `revoke_on_drift`), a `step_up` verdict asks the owner whether it may go
//! on.
//!
//! Baselines are state derived from the audit log: each `writ_issued` leaf says whether the
//! call was learned, each `gateway_response` leaf the size it learned, and approvals and
//! holds are leaves too. At start the issuer replays the log to rebuild them, so a restart
//! forgets nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_behaviour::described;
use writ_behaviour::{Assessment, Call, Finding, Mode, Profile, Recorded, SettingsSpec};
use writ_scope::AuthorizationDetail;
use writ_store::{StoreError, Write};
use writ_token::ApprovalId;

use crate::Issuer;
use crate::audit::record;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::inventory::parse_json;
use crate::mandates::random_id;

/// How long an agent is told to wait before retrying a held call, in seconds.
pub const RETRY_INTERVAL: u64 = 2;
/// Most approvals kept in memory; the oldest decided ones are forgotten first.
const MAX_APPROVALS: usize = 10_000;
/// Leaves read per page when the log is replayed.
const REPLAY_PAGE: u32 = 1_000;

/// How the issuer treats behaviour: the detectors' settings and what their verdicts do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviourConfig {
    /// How long an owner has to answer a step-up, in seconds.
    pub approval_timeout_seconds: u64,
    /// Revoke a mandate when a gateway reports a `block` drift verdict for it (it is
    /// refused further writs either way).
    pub revoke_on_drift: bool,
    /// The detectors.
    pub detectors: SettingsSpec,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            approval_timeout_seconds: 600,
            revoke_on_drift: false,
            detectors: SettingsSpec::default(),
        }
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ApprovalState {
    /// Waiting for the owner.
    Pending,
    /// Approved; the next matching request gets its writ.
    Approved,
    /// Denied by the owner.
    Denied,
    /// Approved and used by the writ it was for.
    Used,
    /// Not answered in time.
    Expired,
}

/// A call held for its agent's owner, or a mandate a gateway stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Approval {
    id: String,
    agent: String,
    agent_name: String,
    owner: String,
    mandate: String,
    /// The call held, or `null` for a mandate a gateway stopped.
    call: Value,
    #[serde(skip)]
    digest: String,
    findings: Vec<Finding>,
    requested_at: i64,
    expires_at: i64,
    state: ApprovalState,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_by: Option<String>,
    log_index: u64,
}

/// Why a gateway stopped a mandate.
#[derive(Debug, Clone)]
struct Hold {
    mode: Mode,
    message: String,
    /// For a step-up hold: the approval that lifts it.
    approval: Option<String>,
}

#[derive(Debug, Default)]
struct Memory {
    profiles: HashMap<String, Profile>,
    approvals: HashMap<String, Approval>,
    /// (mandate, call digest) → the approval for that call.
    open: HashMap<(String, String), String>,
    /// Mandates stopped by a gateway's verdict.
    held: HashMap<String, Hold>,
}

/// The behaviour state of a running issuer.
#[derive(Debug)]
pub(crate) struct Behaviour {
    settings: writ_behaviour::Settings,
    config: BehaviourConfig,
    state: Mutex<Memory>,
}

/// A call let through, to learn once it is on record.
#[derive(Debug)]
pub(crate) struct Pass {
    tool: String,
    mandate: String,
    arguments: Option<Value>,
    at: i64,
    recorded: Recorded,
    learn: bool,
    approval: Option<String>,
    findings: Vec<Finding>,
}

impl Pass {
    /// What the `writ_issued` leaf records.
    pub(crate) fn leaf(&self) -> Value {
        let mut leaf = json!({"learned": self.learn});
        if !self.findings.is_empty() {
            insert(&mut leaf, "findings", json!(self.findings));
        }
        if let Some(approval) = &self.approval {
            insert(&mut leaf, "approval", json!(approval));
        }
        leaf
    }
}

/// The SHA-256 of a detail's canonical JSON, which matches a retry to its approval.
fn digest(detail: &Value) -> String {
    let mut canonical = detail.clone();
    writ_jose::sort_members(&mut canonical);
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    writ_jose::base64url_encode(writ_jose::sha256(&bytes))
}

/// Adds a member to a JSON object.
pub(crate) fn insert(object: &mut Value, key: &str, value: Value) {
    if let Value::Object(members) = object {
        members.insert(key.to_owned(), value);
    }
}

fn strongest(findings: &[Finding]) -> &str {
    findings
        .first()
        .map_or("", |finding| finding.message.as_str())
}

impl Behaviour {
    pub(crate) fn new(config: BehaviourConfig) -> Result<Behaviour, String> {
        let settings = writ_behaviour::Settings::new(config.detectors.clone())
            .map_err(|e| format!("behaviour: {e}"))?;
        if config.approval_timeout_seconds == 0 || config.approval_timeout_seconds > 86_400 {
            return Err("behaviour: approval_timeout_seconds must be 1 to 86400".to_owned());
        }
        Ok(Behaviour {
            settings,
            config,
            state: Mutex::new(Memory::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Memory> {
        // Every update is a plain map change that cannot panic halfway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Learns a call once its writ is on record.
    pub(crate) fn learn(&self, agent: &str, pass: Pass) {
        if !pass.learn {
            return;
        }
        let call = Call {
            tool: &pass.tool,
            mandate: &pass.mandate,
            arguments: pass.arguments.as_ref(),
            at: pass.at,
        };
        let mut state = self.state();
        let profile = state.profiles.entry(agent.to_owned()).or_default();
        profile.learn(&self.settings, &call, pass.recorded);
    }

    /// Replays one leaf of the audit log into the state.
    fn replay_leaf(&self, kind: &str, time: i64, event: &Value, log_index: u64) {
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        match kind {
            "writ_issued" => {
                let (Some(agent), Some(mandate), Some(call)) =
                    (text("agent"), text("mandate"), event.get("call"))
                else {
                    return;
                };
                let Ok(detail) = serde_json::from_value::<AuthorizationDetail>(call.clone()) else {
                    return;
                };
                let Some((tool, arguments)) = described(&detail) else {
                    return;
                };
                let behaviour = event.get("behaviour");
                // Leaves from before behaviour was recorded were clean calls.
                let learned = behaviour
                    .and_then(|b| b.get("learned"))
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let call = Call {
                    tool: &tool,
                    mandate: &mandate,
                    arguments: arguments.as_ref(),
                    at: time,
                };
                let mut state = self.state();
                if let Some(id) = behaviour
                    .and_then(|b| b.get("approval"))
                    .and_then(Value::as_str)
                    && let Some(approval) = state.approvals.get_mut(id)
                {
                    approval.state = ApprovalState::Used;
                    let key = (approval.mandate.clone(), approval.digest.clone());
                    state.open.remove(&key);
                }
                let profile = state.profiles.entry(agent).or_default();
                let recorded = profile.record(&self.settings, &call);
                if learned {
                    profile.learn(&self.settings, &call, recorded);
                }
            }
            "approval_requested" => {
                let Ok(mut approval) = serde_json::from_value::<Approval>(event.clone()) else {
                    return;
                };
                approval.digest = text("digest").unwrap_or_default();
                approval.log_index = log_index;
                approval.state = ApprovalState::Pending;
                if approval.call.is_null() {
                    self.attach_hold_approval(&approval.mandate, &approval.id);
                }
                self.insert_approval(approval);
            }
            "approval_decided" => {
                let (Some(id), Some(decision), by) =
                    (text("approval"), text("decision"), text("by"))
                else {
                    return;
                };
                self.decide_in_memory(&id, decision == "approve", by);
            }
            "gateway_response" => {
                let (Some(agent), Some(mandate), Some(tool), Some(bytes)) = (
                    text("agent"),
                    text("mandate"),
                    text("tool"),
                    event.get("bytes").and_then(Value::as_u64),
                ) else {
                    return;
                };
                let learned = event.get("learned").and_then(Value::as_bool) == Some(true);
                let held = event
                    .get("held")
                    .and_then(|mode| serde_json::from_value::<Mode>(mode.clone()).ok());
                let message = event
                    .get("finding")
                    .and_then(|finding| finding.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.apply_response(&agent, &mandate, &tool, bytes, learned, held, message);
            }
            _ => {}
        }
    }

    /// Learns a response, or holds its mandate after a drift verdict.
    #[expect(clippy::too_many_arguments, reason = "one response's whole record")]
    fn apply_response(
        &self,
        agent: &str,
        mandate: &str,
        tool: &str,
        bytes: u64,
        learned: bool,
        held: Option<Mode>,
        message: String,
    ) {
        let mut state = self.state();
        if learned && let Some(profile) = state.profiles.get_mut(agent) {
            profile.record_response(tool, bytes);
        }
        if let Some(mode) = held {
            state.held.insert(
                mandate.to_owned(),
                Hold {
                    mode,
                    message,
                    approval: None,
                },
            );
        }
    }

    fn attach_hold_approval(&self, mandate: &str, approval: &str) {
        if let Some(hold) = self.state().held.get_mut(mandate) {
            hold.approval = Some(approval.to_owned());
        }
    }

    fn insert_approval(&self, approval: Approval) {
        let mut state = self.state();
        if state.approvals.len() >= MAX_APPROVALS {
            // Forget the oldest decided approvals; pending ones stay until they expire.
            let mut decided: Vec<(i64, String)> = state
                .approvals
                .values()
                .filter(|a| a.state != ApprovalState::Pending)
                .map(|a| (a.requested_at, a.id.clone()))
                .collect();
            decided.sort_unstable();
            for (_, id) in decided.into_iter().take(MAX_APPROVALS / 10) {
                state.approvals.remove(&id);
            }
        }
        if !approval.digest.is_empty() {
            state.open.insert(
                (approval.mandate.clone(), approval.digest.clone()),
                approval.id.clone(),
            );
        }
        state.approvals.insert(approval.id.clone(), approval);
    }

    /// Applies an owner's answer; the approval as it is now.
    fn decide_in_memory(&self, id: &str, approve: bool, by: Option<String>) -> Option<Approval> {
        let mut state = self.state();
        let approval = state.approvals.get_mut(id)?;
        approval.state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Denied
        };
        approval.decided_by = by;
        let approval = approval.clone();
        // A mandate held by a gateway goes on once approved.
        if approval.call.is_null() && approve {
            state.held.remove(&approval.mandate);
        }
        Some(approval)
    }
}

/// Rebuilds baselines, approvals and holds from the audit log.
pub(crate) async fn replay(issuer: &Issuer) -> Result<u64, StoreError> {
    let mut start = 0;
    let mut replayed = 0;
    loop {
        let leaves = issuer.store.leaves(start, REPLAY_PAGE).await?;
        let Some(last) = leaves.last() else { break };
        start = last.index + 1;
        for leaf in &leaves {
            if !matches!(
                leaf.kind.as_str(),
                "writ_issued" | "approval_requested" | "approval_decided" | "gateway_response"
            ) {
                continue;
            }
            let Ok(data) = serde_json::from_slice::<Value>(&leaf.data) else {
                continue;
            };
            let time = data
                .get("time")
                .and_then(Value::as_i64)
                .unwrap_or(leaf.created_at);
            if let Some(event) = data.get("event") {
                issuer
                    .behaviour
                    .replay_leaf(&leaf.kind, time, event, leaf.index);
                replayed += 1;
            }
        }
    }
    Ok(replayed)
}

/// The behaviour check at the token endpoint, after scope and policy allowed the call:
/// `Ok(Some(pass))` to issue (learn the pass once the writ is on record), `Ok(None)` for a
/// protocol method, or the refusal.
pub(crate) async fn check(
    issuer: &Issuer,
    agent: &writ_store::AgentRecord,
    mandate: &str,
    requested: &AuthorizationDetail,
    context: &mut Value,
) -> Result<Option<Pass>, ApiError> {
    let behaviour = &issuer.behaviour;
    let at = crate::seconds(issuer.now());
    held(behaviour, mandate, at)?;
    let Some((tool, arguments)) = described(requested) else {
        return Ok(None);
    };
    let call = Call {
        tool: &tool,
        mandate,
        arguments: arguments.as_ref(),
        at,
    };
    let detail = json!(requested);
    let digest = digest(&detail);
    let (assessment, approval) = {
        let mut state = behaviour.state();
        let profile = state.profiles.entry(agent.jkt.clone()).or_default();
        let assessment = profile.assess(&behaviour.settings, &call);
        let approval = match assessment.mode() {
            None | Some(Mode::Observe) => {
                let recorded = profile.record(&behaviour.settings, &call);
                let learn = assessment.findings.is_empty();
                return Ok(Some(pass(call, recorded, learn, None, assessment)));
            }
            Some(Mode::Block) => None,
            Some(Mode::StepUp) => state
                .open
                .get(&(mandate.to_owned(), digest.clone()))
                .and_then(|id| state.approvals.get(id))
                .cloned(),
        };
        (assessment, approval)
    };
    insert(
        context,
        "behaviour",
        json!({"findings": assessment.findings}),
    );
    if assessment.mode() == Some(Mode::Block) {
        metrics::counter!("writ_behaviour_verdicts_total", "mode" => "block").increment(1);
        return Err(ApiError::denied(
            "behaviour_blocked",
            format!(
                "the call drifts from agent `{}`'s baseline: {}",
                agent.name,
                strongest(&assessment.findings)
            ),
        ));
    }
    metrics::counter!("writ_behaviour_verdicts_total", "mode" => "step_up").increment(1);
    match approval {
        Some(approval) => answer(issuer, approval, call, assessment, at),
        None => {
            let approval =
                request_approval(issuer, agent, mandate, detail, digest, &assessment, at).await?;
            insert(context, "approval", json!(approval.id));
            Err(pending(&approval, agent))
        }
    }
}

/// A step-up call whose approval exists: issue once approved, otherwise say why not.
fn answer(
    issuer: &Issuer,
    approval: Approval,
    call: Call<'_>,
    assessment: Assessment,
    at: i64,
) -> Result<Option<Pass>, ApiError> {
    let behaviour = &issuer.behaviour;
    let key = (approval.mandate.clone(), approval.digest.clone());
    let mut state = behaviour.state();
    match approval.state {
        ApprovalState::Approved => {
            if let Some(stored) = state.approvals.get_mut(&approval.id) {
                stored.state = ApprovalState::Used;
            }
            state.open.remove(&key);
            let profile = state.profiles.entry(approval.agent.clone()).or_default();
            let recorded = profile.record(&behaviour.settings, &call);
            // The owner vouched for it: it is learned.
            Ok(Some(pass(
                call,
                recorded,
                true,
                Some(approval.id),
                assessment,
            )))
        }
        ApprovalState::Pending if at < approval.expires_at => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            "approval_pending",
            format!(
                "approval {} by `{}` is still pending: {}",
                approval.id,
                approval.owner,
                strongest(&approval.findings)
            ),
        )
        .with_field("approval", json!(approval.id))
        .with_field("interval", json!(RETRY_INTERVAL))),
        ApprovalState::Pending | ApprovalState::Expired => {
            if let Some(stored) = state.approvals.get_mut(&approval.id) {
                stored.state = ApprovalState::Expired;
            }
            state.open.remove(&key);
            Err(ApiError::denied(
                "approval_expired",
                format!(
                    "`{}` did not answer approval {} within {} s",
                    approval.owner, approval.id, behaviour.config.approval_timeout_seconds
                ),
            ))
        }
        ApprovalState::Denied | ApprovalState::Used => {
            state.open.remove(&key);
            Err(ApiError::denied(
                "approval_denied",
                format!(
                    "`{}` denied approval {}: {}",
                    approval.decided_by.as_deref().unwrap_or(&approval.owner),
                    approval.id,
                    strongest(&approval.findings)
                ),
            ))
        }
    }
}

fn pass(
    call: Call<'_>,
    recorded: Recorded,
    learn: bool,
    approval: Option<String>,
    assessment: Assessment,
) -> Pass {
    Pass {
        tool: call.tool.to_owned(),
        mandate: call.mandate.to_owned(),
        arguments: call.arguments.cloned(),
        at: call.at,
        recorded,
        learn,
        approval,
        findings: assessment.findings,
    }
}

fn pending(approval: &Approval, agent: &writ_store::AgentRecord) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "authorization_pending",
        "approval_pending",
        format!(
            "the call drifts from agent `{}`'s baseline ({}); approval {} is waiting for its owner `{}`",
            agent.name,
            strongest(&approval.findings),
            approval.id,
            approval.owner
        ),
    )
    .with_field("approval", json!(approval.id))
    .with_field("interval", json!(RETRY_INTERVAL))
}

/// A mandate a gateway stopped: refused, or pending its owner's approval.
fn held(behaviour: &Behaviour, mandate: &str, at: i64) -> Result<(), ApiError> {
    let state = behaviour.state();
    let Some(hold) = state.held.get(mandate) else {
        return Ok(());
    };
    let approval = hold
        .approval
        .as_ref()
        .and_then(|id| state.approvals.get(id));
    match (hold.mode, approval) {
        (Mode::StepUp, Some(approval))
            if approval.state == ApprovalState::Pending && at < approval.expires_at =>
        {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                "approval_pending",
                format!(
                    "mandate {mandate} is held after a gateway saw drift ({}); approval {} is waiting for `{}`",
                    hold.message, approval.id, approval.owner
                ),
            )
            .with_field("approval", json!(approval.id))
            .with_field("interval", json!(RETRY_INTERVAL)))
        }
        _ => Err(ApiError::denied(
            "mandate_drifted",
            format!(
                "mandate {mandate} was stopped after a gateway saw drift: {}",
                hold.message
            ),
        )),
    }
}

async fn request_approval(
    issuer: &Issuer,
    agent: &writ_store::AgentRecord,
    mandate: &str,
    call: Value,
    digest: String,
    assessment: &Assessment,
    at: i64,
) -> Result<Approval, ApiError> {
    let id = ApprovalId::from_random(random_id()?).to_string();
    let expires_at = at.saturating_add_unsigned(issuer.behaviour.config.approval_timeout_seconds);
    let mut approval = Approval {
        id: id.clone(),
        agent: agent.jkt.clone(),
        agent_name: agent.name.clone(),
        owner: agent.owner.clone(),
        mandate: mandate.to_owned(),
        call,
        digest,
        findings: assessment.findings.clone(),
        requested_at: at,
        expires_at,
        state: ApprovalState::Pending,
        decided_by: None,
        log_index: 0,
    };
    let mut event = json!(approval);
    insert(&mut event, "digest", json!(approval.digest));
    let appended = record(
        issuer,
        "approval_requested",
        event,
        vec![
            format!("approval:{id}"),
            format!("agent:{}", agent.jkt),
            format!("mandate:{mandate}"),
            format!("human:{}", agent.owner),
        ],
        Write::Nothing,
    )
    .await
    .map_err(|e| ApiError::unavailable(&e))?;
    approval.log_index = appended.index;
    issuer.behaviour.insert_approval(approval.clone());
    Ok(approval)
}

// ---- the gateway's side -----------------------------------------------------------------

/// Records a gateway's report of a response (`gateway_response`): judged against the
/// largest its tool returned before, learned when clean. A `block` or `step_up` verdict
/// holds the mandate: refused further writs (and revoked with `revoke_on_drift`), or
/// waiting for its owner. Returns the leaf's index.
pub(crate) async fn gateway_response(
    issuer: &Issuer,
    mut body: Value,
    mut keys: Vec<String>,
    time: u64,
) -> Result<u64, StoreError> {
    let behaviour = &issuer.behaviour;
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let (agent, mandate, tool) = (text("agent"), text("mandate"), text("tool"));
    let bytes = body.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    let at = i64::try_from(time).unwrap_or(i64::MAX);
    let finding = behaviour.state().profiles.get(&agent).and_then(|profile| {
        profile
            .assess_response(&behaviour.settings, &tool, bytes, at)
            .findings
            .into_iter()
            .next()
    });
    let held = finding
        .as_ref()
        .map(|finding| finding.mode)
        .filter(|mode| *mode != Mode::Observe);
    let learned = finding.is_none();
    insert(&mut body, "learned", json!(learned));
    let message = finding
        .as_ref()
        .map(|finding| finding.message.clone())
        .unwrap_or_default();
    if let Some(finding) = &finding {
        insert(&mut body, "finding", json!(finding));
    }
    if let Some(mode) = held {
        insert(&mut body, "held", json!(mode));
    }
    let mut write = Write::Nothing;
    let mut revoked = Vec::new();
    if held == Some(Mode::Block) && behaviour.config.revoke_on_drift {
        revoked = crate::revocation::revocations(
            issuer,
            crate::revocation::Kind::Mandate,
            &mandate,
            &format!("a gateway saw drift: {message}"),
        )
        .await
        .map_err(|e| StoreError::Unavailable(e.message().to_owned()))?;
        keys.extend(crate::revocation::subject_keys(&revoked));
        write = Write::Revoke(revoked.clone());
    }
    let event = crate::audit::event(
        "gateway_response",
        writ_token::UnixTime::from_secs(time),
        body,
        keys,
    )?;
    let appended = issuer.store.append(event, write).await?;
    if !revoked.is_empty() {
        crate::revocation::newly_revoked(&revoked, &appended.revocations);
        issuer.revoked.notify_waiters();
    }
    if let Some(mode) = held {
        metrics::counter!("writ_behaviour_verdicts_total", "mode" => mode.code()).increment(1);
    }
    behaviour.apply_response(&agent, &mandate, &tool, bytes, learned, held, message);
    if held == Some(Mode::StepUp)
        && let (Some(agent), Some(finding)) = (issuer.store.agent(&agent), finding)
    {
        let assessment = Assessment {
            learning: None,
            findings: vec![finding],
        };
        let approval = request_approval(
            issuer,
            &agent,
            &mandate,
            Value::Null,
            String::new(),
            &assessment,
            at,
        )
        .await
        .map_err(|e| StoreError::Unavailable(e.message().to_owned()))?;
        behaviour.attach_hold_approval(&mandate, &approval.id);
    }
    Ok(appended.index)
}

#[derive(Serialize)]
pub(crate) struct Limits {
    agent: String,
    /// What a response beyond its limit leads to.
    mode: Mode,
    /// Tool → the largest response it may return, in bytes. Tools without one (too few
    /// responses learned, or the baseline still learning) are absent.
    responses: std::collections::BTreeMap<String, u64>,
}

/// `GET /v1/behaviour/limits/{agent}`: what a gateway enforces on this agent's responses.
pub(crate) async fn limits(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(agent): Path<String>,
) -> Result<Json<Limits>, ApiError> {
    let path = format!("/v1/behaviour/limits/{agent}");
    let caller = authenticate(&issuer, &method, &path, &headers).await?;
    if !matches!(caller, Caller::Gateway(_)) && !caller.is_admin() {
        return Err(ApiError::denied(
            "gateway_required",
            "only gateways and administrators read behaviour limits",
        ));
    }
    let behaviour = &issuer.behaviour;
    let now = crate::seconds(issuer.now());
    let responses = behaviour
        .state()
        .profiles
        .get(&agent)
        .map(|profile| profile.response_limits(&behaviour.settings, now))
        .unwrap_or_default();
    Ok(Json(Limits {
        agent,
        mode: behaviour
            .settings
            .mode(writ_behaviour::Detector::ResponseVolume),
        responses,
    }))
}

// ---- the owner's side -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `pending` (the default) or `all`.
    #[serde(default)]
    state: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Approvals {
    approvals: Vec<Approval>,
}

/// `GET /v1/approvals`: the approvals of the caller's agents (every agent's for an
/// administrator), pending ones unless `state=all`.
pub(crate) async fn list(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Approvals>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/approvals", &headers).await?;
    let human = caller.human()?;
    let all = match query.state.as_deref() {
        None | Some("pending") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::invalid_request(
                "invalid_state",
                format!("state must be `pending` or `all`, not `{other}`"),
            ));
        }
    };
    let now = crate::seconds(issuer.now());
    let mut approvals: Vec<Approval> = issuer
        .behaviour
        .state()
        .approvals
        .values()
        .filter(|a| caller.is_admin() || a.owner == human.id)
        .cloned()
        .map(|mut a| {
            if a.state == ApprovalState::Pending && now >= a.expires_at {
                a.state = ApprovalState::Expired;
            }
            a
        })
        .filter(|a| all || a.state == ApprovalState::Pending)
        .collect();
    approvals.sort_by_key(|approval| approval.log_index);
    Ok(Json(Approvals { approvals }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Answer {
    /// `approve` or `deny`.
    decision: String,
}

/// `POST /v1/approvals/{id}`: the agent's owner approves or denies a held call.
pub(crate) async fn decide(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Approval>, ApiError> {
    let caller = authenticate(&issuer, &method, &format!("/v1/approvals/{id}"), &headers).await?;
    let human = caller.human()?;
    let answer: Answer = parse_json(&body)?;
    let approve = match answer.decision.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(ApiError::invalid_request(
                "invalid_decision",
                format!("decision must be `approve` or `deny`, not `{other}`"),
            ));
        }
    };
    let not_found = || ApiError::not_found("unknown_approval", format!("no approval `{id}`"));
    ApprovalId::parse(&id).map_err(|_| not_found())?;
    let approval = issuer
        .behaviour
        .state()
        .approvals
        .get(&id)
        .cloned()
        .ok_or_else(not_found)?;
    if approval.owner != human.id {
        // Someone else's approval does not exist for them; an administrator is told whose
        // it is.
        if !caller.is_admin() {
            return Err(not_found());
        }
        return Err(ApiError::denied(
            "owner_required",
            format!("only the agent's owner `{}` may answer", approval.owner),
        ));
    }
    let now = crate::seconds(issuer.now());
    if approval.state != ApprovalState::Pending || now >= approval.expires_at {
        let state = if approval.state == ApprovalState::Pending {
            ApprovalState::Expired
        } else {
            approval.state
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "approval_closed",
            format!(
                "approval {id} is {}",
                json!(state).as_str().unwrap_or("closed")
            ),
        ));
    }
    let decision = if approve { "approve" } else { "deny" };
    let mut keys = vec![
        format!("approval:{id}"),
        format!("agent:{}", approval.agent),
        format!("mandate:{}", approval.mandate),
    ];
    let mut write = Write::Nothing;
    // Denying a held mandate ends it: it is revoked with its subtree.
    let mut revoked = Vec::new();
    if !approve && approval.call.is_null() {
        revoked = crate::revocation::revocations(
            &issuer,
            crate::revocation::Kind::Mandate,
            &approval.mandate,
            "its owner denied it after a gateway saw drift",
        )
        .await?;
        keys.extend(crate::revocation::subject_keys(&revoked));
        write = Write::Revoke(revoked.clone());
    }
    let appended = record(
        &issuer,
        "approval_decided",
        json!({"approval": id, "decision": decision, "by": human.id}),
        keys,
        write,
    )
    .await?;
    if !revoked.is_empty() {
        crate::revocation::newly_revoked(&revoked, &appended.revocations);
        issuer.revoked.notify_waiters();
    }
    let approval = issuer
        .behaviour
        .decide_in_memory(&id, approve, Some(human.id.clone()))
        .ok_or_else(not_found)?;
    Ok(Json(approval))
}

#[derive(Serialize)]
pub(crate) struct BaselineView {
    agent: String,
    jkt: String,
    /// While learning: how far along; `null` once the detectors speak.
    learning: Option<writ_behaviour::Learning>,
    /// The mode each detector's finding leads to.
    modes: HashMap<&'static str, Mode>,
    baseline: writ_behaviour::Baseline,
}

/// `GET /v1/agents/{name}/baseline`: what the agent normally does, for its owner and
/// administrators.
pub(crate) async fn baseline(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<BaselineView>, ApiError> {
    let path = format!("/v1/agents/{name}/baseline");
    let caller: Caller = authenticate(&issuer, &method, &path, &headers).await?;
    let agent = crate::lifecycle::owned_agent(&issuer, &caller, &name)?;
    let behaviour = &issuer.behaviour;
    let now = crate::seconds(issuer.now());
    let (learning, baseline) = {
        let state = behaviour.state();
        let profile = state.profiles.get(&agent.jkt).cloned().unwrap_or_default();
        (
            profile.learning(&behaviour.settings, now),
            profile.baseline().clone(),
        )
    };
    let modes = writ_behaviour::Detector::ALL
        .iter()
        .map(|detector| (detector.code(), behaviour.settings.mode(*detector)))
        .collect();
    Ok(Json(BaselineView {
        agent: agent.name,
        jkt: agent.jkt,
        learning,
        modes,
        baseline,
    }))
}
