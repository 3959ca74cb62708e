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
//!   agent retries the same call. Once the owner approves (`POST /v1/approvals/{id}`), one
//!   retry of exactly that call, at the same resource under the same mandate, gets its writ;
//!   a denial stands for the approval's lifetime, and the timeout ends it;
//! - `block`: refused with `behaviour_blocked`.
//!
//! An agent is told which detector spoke, not its numbers (they would show a
//! prompt-injected agent how far it may go); the numbers are in the audit log, in approvals
//! and in `writ trace`.
//!
//! Gateways add what only they see: the size of each answer. An answer beyond its tool's
//! limit is cut at the gateway and reported; the issuer then holds the mandate and every
//! mandate delegated from it: a `block` verdict refuses every further writ and delegation
//! (and revokes the mandate when `revoke_on_drift`), a `step_up` verdict asks the owner
//! whether it may go on.
//!
//! Baselines are state derived from the audit log: each `writ_issued` leaf says whether its
//! call was learned and when it was assessed, each `gateway_response` leaf the size it
//! learned or the hold it caused, and approvals and their answers are leaves too. At start
//! the issuer replays the log to rebuild them, so a restart forgets nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_behaviour::{
    Described, Detector, Finding, Mode, Profile, Recorded, SettingsSpec, described,
};
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
/// Most approvals kept in memory. Closed and expired ones are forgotten first, oldest
/// first; pending ones are bounded by [`MAX_PENDING_PER_AGENT`].
const MAX_APPROVALS: usize = 10_000;
/// Most approvals one agent may have pending at once; more drifting calls are refused.
pub const MAX_PENDING_PER_AGENT: usize = 16;
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
    /// Modes for single agents, by name, over those of `detectors`.
    pub agents: BTreeMap<String, AgentModes>,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            approval_timeout_seconds: 600,
            revoke_on_drift: false,
            detectors: SettingsSpec::default(),
            agents: BTreeMap::new(),
        }
    }
}

/// One agent's modes. A detector's mode for the agent is its entry in `modes`, else
/// `mode`, else what the detectors' settings say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentModes {
    /// The mode of every detector not listed in `modes`, for this agent.
    pub mode: Option<Mode>,
    /// A mode per detector, for this agent.
    pub modes: BTreeMap<Detector, Mode>,
}

/// The most agents the configuration may give modes of their own.
const MAX_AGENT_MODES: usize = 10_000;

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
    /// The owner when it was asked for; the agent's owner now is the one who answers.
    owner: String,
    mandate: String,
    /// The call held, or `null` for a mandate a gateway stopped.
    call: Value,
    /// What matches a retry to it: the SHA-256 of the resource and the call (empty for a
    /// held mandate).
    digest: String,
    findings: Vec<Finding>,
    requested_at: i64,
    expires_at: i64,
    state: ApprovalState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decided_by: Option<String>,
    #[serde(default)]
    log_index: u64,
}

impl Approval {
    /// The state at `now`: a pending approval past its time has expired.
    fn state_at(&self, now: i64) -> ApprovalState {
        if self.state == ApprovalState::Pending && now >= self.expires_at {
            ApprovalState::Expired
        } else {
            self.state
        }
    }
}

/// Why a gateway stopped a mandate.
#[derive(Debug, Clone)]
struct Hold {
    mode: Mode,
    /// For a step-up hold: the approval that lifts it.
    approval: Option<String>,
    /// When the mandate expires (and everything delegated from it, which expires no
    /// later): once that and the most skew a token check allows have passed, the hold
    /// guards nothing and the next hold taken forgets it.
    until: Option<i64>,
}

#[derive(Debug, Default)]
struct Memory {
    profiles: HashMap<String, Profile>,
    approvals: HashMap<String, Approval>,
    /// (mandate, digest) → the approval for that call.
    open: HashMap<(String, String), String>,
    /// (mandate, digest) of approvals being recorded, so concurrent requests for one call
    /// make one approval.
    requesting: HashSet<(String, String)>,
    /// Approvals whose answer is being recorded, so two answers cannot both win.
    deciding: HashSet<String>,
    /// Mandates stopped by a gateway's verdict.
    held: HashMap<String, Hold>,
    /// Mandates with a gateway's verdict being recorded. They are held from the moment
    /// the verdict is known, so a token check that starts after it is refused, also while
    /// the verdict is being appended to the log.
    verdicts: HashMap<String, InFlight>,
}

/// A mandate's verdicts being recorded: how many, how many of them block, and how many
/// ask its owner for an approval.
#[derive(Debug, Default, Clone, Copy)]
struct InFlight {
    verdicts: u32,
    blocks: u32,
    asking: u32,
}

impl Memory {
    fn insert_approval(&mut self, approval: Approval, now: i64) {
        if self.approvals.len() >= MAX_APPROVALS {
            // Forget the oldest closed approvals: used, denied or expired. Approved ones
            // wait for their writ, pending ones for their owner.
            let mut closed: Vec<(u64, String)> = self
                .approvals
                .values()
                .filter(|a| {
                    matches!(
                        a.state_at(now),
                        ApprovalState::Used | ApprovalState::Denied | ApprovalState::Expired
                    )
                })
                .map(|a| (a.log_index, a.id.clone()))
                .collect();
            closed.sort_unstable();
            for (_, id) in closed.into_iter().take(MAX_APPROVALS / 10) {
                if let Some(gone) = self.approvals.remove(&id) {
                    let key = (gone.mandate, gone.digest);
                    if self.open.get(&key) == Some(&id) {
                        self.open.remove(&key);
                    }
                }
            }
        }
        if !approval.digest.is_empty() {
            // The newest approval for a call is the one a retry finds: a new one is asked
            // for only once the last is used, expired or its denial has run out, so this
            // is what live processing did, also when the log is replayed.
            self.open.insert(
                (approval.mandate.clone(), approval.digest.clone()),
                approval.id.clone(),
            );
        }
        self.approvals.insert(approval.id.clone(), approval);
    }

    /// Applies an owner's answer to a pending approval; the first answer wins.
    fn decide(&mut self, id: &str, approve: bool, by: Option<String>) -> Option<Approval> {
        let approval = self.approvals.get_mut(id)?;
        if approval.state == ApprovalState::Pending {
            approval.state = if approve {
                ApprovalState::Approved
            } else {
                ApprovalState::Denied
            };
            approval.decided_by = by;
        }
        let approval = approval.clone();
        // A mandate held by a gateway goes on once the approval of its current hold is
        // approved (not an older one).
        if approval.call.is_null()
            && approval.state == ApprovalState::Approved
            && self
                .held
                .get(&approval.mandate)
                .is_some_and(|hold| hold.approval.as_deref() == Some(id))
        {
            self.held.remove(&approval.mandate);
        }
        Some(approval)
    }

    /// Makes `id` used by the writ it was for.
    fn use_approval(&mut self, id: &str) {
        if let Some(approval) = self.approvals.get_mut(id) {
            approval.state = ApprovalState::Used;
            let key = (approval.mandate.clone(), approval.digest.clone());
            self.open.remove(&key);
        }
    }

    fn pending_of(&self, agent: &str, now: i64) -> usize {
        self.approvals
            .values()
            .filter(|a| a.agent == agent && a.state_at(now) == ApprovalState::Pending)
            .count()
    }
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
    described: Described,
    mandate: String,
    at: i64,
    recorded: Recorded,
    learn: bool,
    approval: Option<Claim>,
    findings: Vec<Finding>,
}

/// The approval a pass used. Unless its writ is recorded ([`Pass::recorded`]), it is given
/// back when the pass is dropped: on any refusal after the check, or when the request is
/// abandoned, the owner's approval still stands for the next try.
#[derive(Debug)]
struct Claim {
    issuer: Arc<Issuer>,
    id: String,
    kept: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.kept {
            self.issuer.behaviour.give_back(&self.id);
        }
    }
}

impl Pass {
    /// Its writ is on record: the approval it used is spent.
    pub(crate) fn recorded(&mut self) {
        if let Some(claim) = &mut self.approval {
            claim.kept = true;
        }
    }

    /// What the `writ_issued` leaf records.
    pub(crate) fn leaf(&self) -> Value {
        let mut leaf = json!({"learned": self.learn, "at": self.at});
        if !self.findings.is_empty() {
            insert(&mut leaf, "findings", json!(self.findings));
        }
        if let Some(claim) = &self.approval {
            insert(&mut leaf, "approval", json!(claim.id));
        }
        leaf
    }
}

/// The SHA-256 of the resource and the detail's canonical JSON, which matches a retry to
/// its approval; an error rather than a digest two calls could share.
fn digest(resource: &str, detail: &AuthorizationDetail) -> Result<String, ApiError> {
    let mut canonical = json!({"resource": resource, "call": detail});
    writ_jose::sort_members(&mut canonical);
    let bytes = serde_json::to_vec(&canonical).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "digest_failed",
            e.to_string(),
        )
    })?;
    Ok(writ_jose::base64url_encode(writ_jose::sha256(&bytes)))
}

/// Adds a member to a JSON object.
pub(crate) fn insert(object: &mut Value, key: &str, value: Value) {
    if let Value::Object(members) = object {
        members.insert(key.to_owned(), value);
    }
}

/// The strongest finding's detector and what it found, without numbers.
fn verdict(findings: &[Finding]) -> String {
    findings.first().map_or_else(String::new, |finding| {
        format!("{}: {}", finding.detector, finding.detector.summary())
    })
}

/// `authorization_pending`: retry after [`RETRY_INTERVAL`], with the approval to wait for
/// when there is one yet.
fn pending(message: String, approval: Option<&str>) -> ApiError {
    let error = ApiError::new(
        StatusCode::BAD_REQUEST,
        "authorization_pending",
        "approval_pending",
        message,
    )
    .with_field("interval", json!(RETRY_INTERVAL));
    match approval {
        Some(id) => error.with_field("approval", json!(id)),
        None => error,
    }
}

impl Behaviour {
    pub(crate) fn new(config: BehaviourConfig) -> Result<Behaviour, String> {
        let settings = writ_behaviour::Settings::new(config.detectors.clone())
            .map_err(|e| format!("behaviour: {e}"))?;
        if config.approval_timeout_seconds == 0 || config.approval_timeout_seconds > 86_400 {
            return Err("behaviour: approval_timeout_seconds must be 1 to 86400".to_owned());
        }
        if config.agents.len() > MAX_AGENT_MODES {
            return Err(format!(
                "behaviour: at most {MAX_AGENT_MODES} agents may have modes of their own"
            ));
        }
        for name in config.agents.keys() {
            writ_scope::ServerName::new(name.as_str())
                .map_err(|e| format!("behaviour: `agents.{name}` cannot name an agent ({e})"))?;
        }
        Ok(Behaviour {
            settings,
            config,
            state: Mutex::new(Memory::default()),
        })
    }

    /// The same settings with nothing learned yet: for replaying leaves into fresh state
    /// without checking the settings again.
    pub(crate) fn fresh(&self) -> Behaviour {
        Behaviour {
            settings: self.settings.clone(),
            config: self.config.clone(),
            state: Mutex::new(Memory::default()),
        }
    }

    /// `detector`'s mode for the agent named `agent`.
    fn mode(&self, agent: &str, detector: Detector) -> Mode {
        self.config
            .agents
            .get(agent)
            .and_then(|own| own.modes.get(&detector).copied().or(own.mode))
            .unwrap_or_else(|| self.settings.mode(detector))
    }

    /// Gives each finding the mode it has for the agent named `agent`.
    fn judge(&self, agent: &str, findings: &mut [Finding]) {
        if self.config.agents.contains_key(agent) {
            for finding in findings {
                finding.mode = self.mode(agent, finding.detector);
            }
        }
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
        let Pass {
            described,
            mandate,
            at,
            recorded,
            ..
        } = pass;
        let mut state = self.state();
        let profile = state.profiles.entry(agent.to_owned()).or_default();
        profile.learn(&self.settings, &described.call(&mandate, at), recorded);
    }

    /// Makes an approval a pass used, but whose writ was not recorded, usable again.
    fn give_back(&self, id: &str) {
        let mut state = self.state();
        let Some(approval) = state.approvals.get_mut(id) else {
            return;
        };
        approval.state = ApprovalState::Approved;
        let key = (approval.mandate.clone(), approval.digest.clone());
        state.open.insert(key, id.to_owned());
    }

    /// Replays one leaf of the audit log into the state, as live processing left it.
    fn replay_leaf(&self, kind: &str, time: i64, event: &Value, log_index: u64) {
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut state = self.state();
        match kind {
            "writ_issued" => {
                let (Some(agent), Some(mandate), Some(call)) =
                    (text("agent"), text("mandate"), event.get("call"))
                else {
                    return;
                };
                let Some(described) = serde_json::from_value::<AuthorizationDetail>(call.clone())
                    .ok()
                    .and_then(|detail| described(&detail))
                else {
                    return;
                };
                let behaviour = event.get("behaviour");
                // Leaves from before behaviour was recorded were clean calls.
                let learned = behaviour
                    .and_then(|b| b.get("learned"))
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                let at = behaviour
                    .and_then(|b| b.get("at"))
                    .and_then(Value::as_i64)
                    .unwrap_or(time);
                if let Some(id) = behaviour
                    .and_then(|b| b.get("approval"))
                    .and_then(Value::as_str)
                {
                    state.use_approval(id);
                }
                let call = described.call(&mandate, at);
                let profile = state.profiles.entry(agent).or_default();
                let recorded = profile.record(&self.settings, &call);
                if learned {
                    profile.learn(&self.settings, &call, recorded);
                }
            }
            "approval_requested" => {
                if let Ok(mut approval) = serde_json::from_value::<Approval>(event.clone()) {
                    approval.log_index = log_index;
                    approval.state = ApprovalState::Pending;
                    state.insert_approval(approval, time);
                }
            }
            "approval_decided" => {
                if let (Some(id), Some(decision)) = (text("approval"), text("decision")) {
                    state.decide(&id, decision == "approve", text("by"));
                }
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
                let approval = event
                    .get("approval")
                    .and_then(|approval| serde_json::from_value::<Approval>(approval.clone()).ok())
                    .map(|mut approval| {
                        approval.log_index = log_index;
                        approval
                    });
                let at = event.get("at").and_then(Value::as_i64).unwrap_or(time);
                self.apply_response(
                    &mut state,
                    Response {
                        agent: &agent,
                        mandate: &mandate,
                        tool: &tool,
                        bytes,
                        at,
                        until: event.get("held_until").and_then(Value::as_i64),
                    },
                    learned,
                    held,
                    approval,
                );
            }
            _ => {}
        }
    }

    /// Learns an answer's size, or holds its mandate after a drift verdict.
    fn apply_response(
        &self,
        state: &mut Memory,
        response: Response<'_>,
        learned: bool,
        held: Option<Mode>,
        approval: Option<Approval>,
    ) {
        if learned && let Some(profile) = state.profiles.get_mut(response.agent) {
            profile.record_response(&self.settings, response.tool, response.bytes, response.at);
        }
        if let Some(mode) = held {
            // Holds on mandates that have expired, allowing for the skew any token check
            // allows, guard nothing any more; the map grows only here.
            let skew = i64::try_from(writ_token::MAX_SKEW).unwrap_or(i64::MAX);
            state.held.retain(|_, hold| {
                hold.until
                    .is_none_or(|until| until.saturating_add(skew) > response.at)
            });
            let id = approval.as_ref().map(|approval| approval.id.clone());
            if let Some(approval) = approval {
                state.insert_approval(approval, response.at);
            }
            // A hold already in force stays when it is as strong and this answer brought
            // no approval of its own (its approval is still the one to answer).
            let stays = state
                .held
                .get(response.mandate)
                .is_some_and(|hold| hold.mode > mode || (hold.mode == mode && id.is_none()));
            if !stays {
                state.held.insert(
                    response.mandate.to_owned(),
                    Hold {
                        mode,
                        approval: id,
                        until: response.until,
                    },
                );
            }
        }
    }
}

/// One answer a gateway reported.
#[derive(Debug, Clone, Copy)]
struct Response<'a> {
    agent: &'a str,
    mandate: &'a str,
    tool: &'a str,
    bytes: u64,
    at: i64,
    /// For an answer that holds its mandate: when the mandate expires.
    until: Option<i64>,
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
            if replay_one(&issuer.behaviour, leaf) {
                replayed += 1;
            }
        }
    }
    Ok(replayed)
}

/// Replays one leaf of the audit log; `false` when it carries nothing behaviour keeps. The
/// leaf's bytes are read as untrusted: anything malformed is skipped.
pub(crate) fn replay_one(behaviour: &Behaviour, leaf: &writ_store::LeafRecord) -> bool {
    if !matches!(
        leaf.kind.as_str(),
        "writ_issued" | "approval_requested" | "approval_decided" | "gateway_response"
    ) {
        return false;
    }
    let Ok(data) = serde_json::from_slice::<Value>(&leaf.data) else {
        return false;
    };
    let time = data
        .get("time")
        .and_then(Value::as_i64)
        .unwrap_or(leaf.created_at);
    let Some(event) = data.get("event") else {
        return false;
    };
    behaviour.replay_leaf(&leaf.kind, time, event, leaf.index);
    true
}

/// What the state said about a drifting call, decided under one lock.
enum Outcome {
    Pass(Pass),
    Blocked,
    Pending(Option<String>),
    Expired(Approval),
    Denied(Approval),
    TooMany,
    Request(String),
}

/// The behaviour check at the token endpoint, after scope and policy allowed the call:
/// `Ok(Some(pass))` to issue (mark it [`Pass::recorded`] once the writ is on record, then
/// learn it), `Ok(None)` for a protocol method, or the refusal.
pub(crate) async fn check(
    issuer: &Arc<Issuer>,
    agent: &writ_store::AgentRecord,
    mandate: &str,
    resource: &str,
    requested: &AuthorizationDetail,
    context: &mut Value,
) -> Result<Option<Pass>, ApiError> {
    let behaviour = &issuer.behaviour;
    let at = crate::seconds(issuer.now());
    let lineage = lineage(issuer, mandate);
    let described = described(requested);
    let (assessment, outcome) = {
        let mut state = behaviour.state();
        let memory = &mut *state;
        // The holds (and the verdicts being recorded, which hold their mandates already)
        // and the assessment are read under one lock.
        held_in(memory, &lineage, at)?;
        let Some(described) = described else {
            return Ok(None);
        };
        let profile = memory.profiles.entry(agent.jkt.clone()).or_default();
        let call = described.call(mandate, at);
        let mut assessment = profile.assess(&behaviour.settings, &call);
        behaviour.judge(&agent.name, &mut assessment.findings);
        let outcome = match assessment.mode() {
            None | Some(Mode::Observe) => {
                let recorded = profile.record(&behaviour.settings, &call);
                let learn = assessment.findings.is_empty();
                return Ok(Some(Pass {
                    described,
                    mandate: mandate.to_owned(),
                    at,
                    recorded,
                    learn,
                    approval: None,
                    findings: assessment.findings,
                }));
            }
            Some(Mode::Block) => Outcome::Blocked,
            Some(Mode::StepUp) => {
                let digest = digest(resource, requested)?;
                let key = (mandate.to_owned(), digest.clone());
                let found = memory
                    .open
                    .get(&key)
                    .and_then(|id| memory.approvals.get(id))
                    .map(|approval| (approval.id.clone(), approval.state_at(at)));
                match found {
                    // The state is checked and changed under this one lock: one writ per
                    // approval, however many requests arrive at once.
                    Some((id, ApprovalState::Approved)) => {
                        memory.use_approval(&id);
                        let profile = memory.profiles.entry(agent.jkt.clone()).or_default();
                        let recorded = profile.record(&behaviour.settings, &call);
                        Outcome::Pass(Pass {
                            described,
                            mandate: mandate.to_owned(),
                            at,
                            recorded,
                            // Its owner vouched for it: it is learned.
                            learn: true,
                            approval: Some(Claim {
                                issuer: Arc::clone(issuer),
                                id,
                                kept: false,
                            }),
                            findings: Vec::new(),
                        })
                    }
                    Some((id, ApprovalState::Pending)) => Outcome::Pending(Some(id)),
                    Some((id, ApprovalState::Denied)) => {
                        let approval = memory.approvals.get(&id).cloned();
                        // A denial stands until the approval would have expired.
                        match approval.filter(|approval| at < approval.expires_at) {
                            Some(approval) => Outcome::Denied(approval),
                            None => {
                                memory.open.remove(&key);
                                request_slot(memory, &agent.jkt, key, digest, at)
                            }
                        }
                    }
                    // An answer being recorded as the time runs out: wait for it, so this
                    // agrees with what the log will say.
                    Some((id, ApprovalState::Expired)) if memory.deciding.contains(&id) => {
                        Outcome::Pending(Some(id))
                    }
                    Some((id, ApprovalState::Expired)) => {
                        memory.open.remove(&key);
                        match memory.approvals.get_mut(&id) {
                            Some(approval) => {
                                approval.state = ApprovalState::Expired;
                                Outcome::Expired(approval.clone())
                            }
                            None => Outcome::Pending(None),
                        }
                    }
                    Some((_, ApprovalState::Used)) | None => {
                        memory.open.remove(&key);
                        request_slot(memory, &agent.jkt, key, digest, at)
                    }
                }
            }
        };
        (assessment, outcome)
    };
    if let Outcome::Pass(mut pass) = outcome {
        pass.findings = assessment.findings;
        return Ok(Some(pass));
    }
    // The numbers go to the log with the refusal; the agent hears only the detector.
    insert(
        context,
        "behaviour",
        json!({"findings": assessment.findings}),
    );
    let drift = format!(
        "the call drifts from agent `{}`'s baseline ({})",
        agent.name,
        verdict(&assessment.findings)
    );
    metrics::counter!("writ_behaviour_verdicts_total", "mode" => assessment.mode().map_or("none", Mode::code))
        .increment(1);
    match outcome {
        Outcome::Pass(_) | Outcome::Blocked => Err(ApiError::denied("behaviour_blocked", drift)),
        Outcome::Pending(Some(id)) => Err(pending(
            format!("{drift}; approval {id} is still waiting for its owner"),
            Some(&id),
        )),
        Outcome::Pending(None) => Err(pending(
            format!("{drift}; an approval is being requested from its owner"),
            None,
        )),
        Outcome::Expired(approval) => Err(ApiError::denied(
            "approval_expired",
            format!(
                "{drift}; approval {} was not answered within {} s",
                approval.id, behaviour.config.approval_timeout_seconds
            ),
        )),
        Outcome::Denied(approval) => Err(ApiError::denied(
            "approval_denied",
            format!(
                "{drift}; `{}` denied approval {}",
                approval.decided_by.as_deref().unwrap_or(&approval.owner),
                approval.id
            ),
        )),
        Outcome::TooMany => Err(ApiError::denied(
            "too_many_approvals",
            format!(
                "{drift}; agent `{}` already has {MAX_PENDING_PER_AGENT} calls waiting for its owner",
                agent.name
            ),
        )),
        Outcome::Request(digest) => {
            // Recorded and then remembered in a task of its own, so an abandoned request
            // cannot leave the log and the memory apart.
            let key = (mandate.to_owned(), digest.clone());
            let (task_issuer, agent_record, mandate_id, call, findings) = (
                Arc::clone(issuer),
                agent.clone(),
                mandate.to_owned(),
                json!(requested),
                assessment.findings.clone(),
            );
            let approval = tokio::spawn(async move {
                let approval = request_approval(
                    &task_issuer,
                    &agent_record,
                    &mandate_id,
                    call,
                    digest,
                    &findings,
                    at,
                )
                .await;
                let mut state = task_issuer.behaviour.state();
                state.requesting.remove(&key);
                if let Ok(approval) = &approval {
                    state.insert_approval(approval.clone(), at);
                }
                approval
            })
            .await
            .map_err(|e| ApiError::unavailable(&StoreError::Unavailable(e.to_string())))??;
            insert(context, "approval", json!(approval.id));
            Err(pending(
                format!(
                    "{drift}; approval {} is waiting for its owner `{}`",
                    approval.id, agent.owner
                ),
                Some(&approval.id),
            ))
        }
    }
}

/// A new approval for `key`, unless one is already being requested or the agent has too
/// many pending.
fn request_slot(
    memory: &mut Memory,
    agent: &str,
    key: (String, String),
    digest: String,
    now: i64,
) -> Outcome {
    if memory.requesting.contains(&key) {
        return Outcome::Pending(None);
    }
    if memory.pending_of(agent, now) >= MAX_PENDING_PER_AGENT {
        return Outcome::TooMany;
    }
    memory.requesting.insert(key);
    Outcome::Request(digest)
}

/// A mandate and the mandates it was delegated from, nearest first, read from the
/// store's view before the behaviour lock is taken.
fn lineage(issuer: &Issuer, mandate: &str) -> Vec<String> {
    let mut lineage = vec![mandate.to_owned()];
    while lineage.len() <= usize::from(writ_token::MAX_DELEGATION_DEPTH) {
        let Some(parent) = lineage
            .last()
            .and_then(|id| issuer.store.mandate_parent(id))
        else {
            break;
        };
        lineage.push(parent);
    }
    lineage
}

/// A mandate a gateway stopped, or one delegated from it: refused, or pending its owner's
/// approval.
pub(crate) fn held(issuer: &Issuer, mandate: &str, now: i64) -> Result<(), ApiError> {
    let lineage = lineage(issuer, mandate);
    held_in(&issuer.behaviour.state(), &lineage, now)
}

/// [`held`] over a lineage already read, under the caller's lock. The strongest answer
/// over the whole lineage: stopped if any mandate in it is stopped or being stopped, else
/// waiting if any waits for its owner.
fn held_in(memory: &Memory, lineage: &[String], now: i64) -> Result<(), ApiError> {
    let stopped = |id: &str, how: &str| {
        ApiError::denied(
            "mandate_drifted",
            format!("mandate {id} {how} after a gateway saw drift"),
        )
    };
    let mut waiting = None;
    for id in lineage {
        if let Some(hold) = memory.held.get(id) {
            let approval = hold
                .approval
                .as_ref()
                .and_then(|approval| memory.approvals.get(approval))
                .filter(|approval| approval.state_at(now) == ApprovalState::Pending);
            match (hold.mode, approval) {
                (Mode::StepUp, Some(approval)) => {
                    waiting.get_or_insert_with(|| {
                        pending(
                            format!(
                                "mandate {id} is held after a gateway saw drift; approval {} is waiting for its owner",
                                approval.id
                            ),
                            Some(&approval.id),
                        )
                    });
                }
                _ => return Err(stopped(id, "was stopped")),
            }
        }
        if let Some(in_flight) = memory.verdicts.get(id) {
            if in_flight.blocks > 0 {
                return Err(stopped(id, "is being stopped"));
            }
            waiting.get_or_insert_with(|| {
                pending(
                    format!(
                        "mandate {id} is held after a gateway saw drift; an approval is being requested from its owner"
                    ),
                    None,
                )
            });
        }
    }
    waiting.map_or(Ok(()), Err)
}

/// Records an approval request; the approval, not yet in memory.
async fn request_approval(
    issuer: &Issuer,
    agent: &writ_store::AgentRecord,
    mandate: &str,
    call: Value,
    digest: String,
    findings: &[Finding],
    at: i64,
) -> Result<Approval, ApiError> {
    let mut approval = new_approval(issuer, agent, mandate, call, digest, findings, at)?;
    let appended = record(
        issuer,
        "approval_requested",
        json!(approval),
        vec![
            format!("approval:{}", approval.id),
            format!("agent:{}", agent.jkt),
            format!("mandate:{mandate}"),
            format!("human:{}", agent.owner),
        ],
        Write::Nothing,
    )
    .await
    .map_err(|e| ApiError::unavailable(&e))?;
    approval.log_index = appended.index;
    Ok(approval)
}

fn new_approval(
    issuer: &Issuer,
    agent: &writ_store::AgentRecord,
    mandate: &str,
    call: Value,
    digest: String,
    findings: &[Finding],
    at: i64,
) -> Result<Approval, ApiError> {
    Ok(Approval {
        id: ApprovalId::from_random(random_id()?).to_string(),
        agent: agent.jkt.clone(),
        agent_name: agent.name.clone(),
        owner: agent.owner.clone(),
        mandate: mandate.to_owned(),
        call,
        digest,
        findings: findings.to_vec(),
        requested_at: at,
        expires_at: at.saturating_add_unsigned(issuer.behaviour.config.approval_timeout_seconds),
        state: ApprovalState::Pending,
        decided_by: None,
        log_index: 0,
    })
}

// ---- the gateway's side -----------------------------------------------------------------

/// Records a gateway's report of an answer (`gateway_response`): judged, by the issuer's
/// clock, against the largest its tool returned before, and learned when clean. A `block`
/// or `step_up` verdict holds the mandate: refused further writs (and revoked with
/// `revoke_on_drift`), or waiting for its owner, whose approval is in the same leaf.
/// Returns the leaf's index.
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
    let at = crate::seconds(issuer.now());
    let mut findings = behaviour
        .state()
        .profiles
        .get(&agent)
        .map(|profile| {
            profile
                .assess_response(&behaviour.settings, &tool, bytes, at)
                .findings
        })
        .unwrap_or_default();
    // The agent's record (its name and owner) only for an answer with a finding.
    let record = if findings.is_empty() {
        None
    } else {
        issuer.store.agent(&agent)
    };
    if let Some(record) = &record {
        behaviour.judge(&record.name, &mut findings);
    }
    let finding = findings.into_iter().next();
    let held = finding
        .as_ref()
        .map(|finding| finding.mode)
        .filter(|mode| *mode != Mode::Observe);
    let learned = finding.is_none();
    insert(&mut body, "learned", json!(learned));
    insert(&mut body, "at", json!(at));
    let mut approval = None;
    if let Some(finding) = &finding {
        insert(&mut body, "finding", json!(finding));
    }
    // Held from here, before the verdict is on record. One approval per hold: a mandate
    // already stopped, holding an approval, or being asked about is not asked about again.
    let (mut verdict, asking) = match held {
        Some(mode) => {
            let mut state = behaviour.state();
            let asked = state
                .verdicts
                .get(&mandate)
                .is_some_and(|in_flight| in_flight.asking > 0)
                || state
                    .held
                    .get(&mandate)
                    .is_some_and(|hold| hold.mode == Mode::Block || hold.approval.is_some());
            let asking = mode == Mode::StepUp && !asked;
            let verdict = Verdict::begin(behaviour, &mut state, &mandate, mode, asking);
            (Some(verdict), asking)
        }
        None => (None, false),
    };
    let mut until = None;
    if let Some(mode) = held {
        insert(&mut body, "held", json!(mode));
        until = issuer
            .store
            .mandate(&mandate)
            .await?
            .map(|record| record.expires_at);
        if let Some(until) = until {
            insert(&mut body, "held_until", json!(until));
        }
        if asking && let (Some(record), Some(finding)) = (&record, &finding) {
            let held_approval = new_approval(
                issuer,
                record,
                &mandate,
                Value::Null,
                String::new(),
                std::slice::from_ref(finding),
                at,
            )
            .map_err(|e| StoreError::Unavailable(e.message().to_owned()))?;
            keys.push(format!("approval:{}", held_approval.id));
            insert(&mut body, "approval", json!(held_approval));
            approval = Some(held_approval);
        }
    }
    let mut write = Write::Nothing;
    let mut revoked = Vec::new();
    if held == Some(Mode::Block) && behaviour.config.revoke_on_drift {
        revoked = crate::revocation::revocations(
            issuer,
            crate::revocation::Kind::Mandate,
            &mandate,
            "a gateway saw this mandate's answers drift from its agent's baseline",
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
    if let Some(verdict) = &mut verdict {
        verdict.recorded = Some(until);
    }
    if !revoked.is_empty() {
        crate::revocation::newly_revoked(&revoked, &appended.revocations);
        issuer.revoked.notify_waiters();
    }
    if let Some(mode) = held {
        metrics::counter!("writ_behaviour_verdicts_total", "mode" => mode.code()).increment(1);
    }
    let approval = approval.map(|mut approval| {
        approval.log_index = appended.index;
        approval
    });
    let mut state = behaviour.state();
    behaviour.apply_response(
        &mut state,
        Response {
            agent: &agent,
            mandate: &mandate,
            tool: &tool,
            bytes,
            at,
            until,
        },
        learned,
        held,
        approval,
    );
    drop(state);
    drop(verdict);
    Ok(appended.index)
}

/// A gateway's drift verdict being recorded: its mandate is held until it ends, by the
/// hold the verdict leaves or, when it could not be recorded, by none.
struct Verdict<'a> {
    behaviour: &'a Behaviour,
    mandate: String,
    mode: Mode,
    asking: bool,
    /// Once its leaf is appended, the mandate's expiry: a hold is left, should the
    /// mandate have none when the verdict ends (a panic before the memory was updated).
    recorded: Option<Option<i64>>,
}

impl<'a> Verdict<'a> {
    fn begin(
        behaviour: &'a Behaviour,
        state: &mut Memory,
        mandate: &str,
        mode: Mode,
        asking: bool,
    ) -> Self {
        let in_flight = state.verdicts.entry(mandate.to_owned()).or_default();
        in_flight.verdicts = in_flight.verdicts.saturating_add(1);
        in_flight.blocks = in_flight
            .blocks
            .saturating_add(u32::from(mode == Mode::Block));
        in_flight.asking = in_flight.asking.saturating_add(u32::from(asking));
        Verdict {
            behaviour,
            mandate: mandate.to_owned(),
            mode,
            asking,
            recorded: None,
        }
    }
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        let mut state = self.behaviour.state();
        if let Some(until) = self.recorded
            && !state.held.contains_key(&self.mandate)
        {
            // The log says held: so does the memory, failing closed.
            state.held.insert(
                self.mandate.clone(),
                Hold {
                    mode: self.mode,
                    approval: None,
                    until,
                },
            );
        }
        if let Some(in_flight) = state.verdicts.get_mut(&self.mandate) {
            in_flight.verdicts = in_flight.verdicts.saturating_sub(1);
            in_flight.blocks = in_flight
                .blocks
                .saturating_sub(u32::from(self.mode == Mode::Block));
            in_flight.asking = in_flight.asking.saturating_sub(u32::from(self.asking));
            if in_flight.verdicts == 0 {
                state.verdicts.remove(&self.mandate);
            }
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Limits {
    agent: String,
    /// What an answer beyond its limit leads to.
    mode: Mode,
    /// Tool → the largest answer it may return, in bytes.
    responses: std::collections::BTreeMap<String, u64>,
    /// The limit of every tool not listed; `null` while the baseline is learning, when
    /// there is none.
    default: Option<u64>,
}

/// `GET /v1/behaviour/limits/{agent}`: what a gateway enforces on this agent's answers.
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
    let limits = behaviour
        .state()
        .profiles
        .get(&agent)
        .and_then(|profile| profile.response_limits(&behaviour.settings, now));
    let default = limits
        .as_ref()
        .map(|_| behaviour.settings.spec().volume_floor);
    let mode = match issuer.store.agent(&agent) {
        Some(record) => behaviour.mode(&record.name, Detector::ResponseVolume),
        None => behaviour.settings.mode(Detector::ResponseVolume),
    };
    Ok(Json(Limits {
        agent,
        mode,
        responses: limits.unwrap_or_default(),
        default,
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

/// The human who answers for `agent` now: its owner.
fn owner_of(issuer: &Issuer, agent: &str) -> Option<String> {
    issuer.store.agent(agent).map(|agent| agent.owner)
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
    let approvals: Vec<Approval> = issuer
        .behaviour
        .state()
        .approvals
        .values()
        .filter(|a| all || a.state_at(now) == ApprovalState::Pending)
        .cloned()
        .collect();
    let mut approvals: Vec<Approval> = approvals
        .into_iter()
        .filter(|a| caller.is_admin() || owner_of(&issuer, &a.agent).as_ref() == Some(&human.id))
        .map(|mut a| {
            a.state = a.state_at(now);
            a
        })
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
    let now = crate::seconds(issuer.now());
    // The agent's owner now, read from the store before the behaviour lock is taken.
    let agent = issuer
        .behaviour
        .state()
        .approvals
        .get(&id)
        .map(|approval| approval.agent.clone())
        .ok_or_else(not_found)?;
    let owner = owner_of(&issuer, &agent).unwrap_or_default();
    let approval = {
        let mut state = issuer.behaviour.state();
        let approval = state.approvals.get(&id).cloned().ok_or_else(not_found)?;
        if owner != human.id {
            // Someone else's approval does not exist for them; an administrator is told
            // whose it is.
            if !caller.is_admin() {
                return Err(not_found());
            }
            return Err(ApiError::denied(
                "owner_required",
                format!("only the agent's owner `{owner}` may answer"),
            ));
        }
        let closed = |state: ApprovalState| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "approval_closed",
                format!(
                    "approval {id} is {}",
                    json!(state).as_str().unwrap_or("closed")
                ),
            )
        };
        let current = approval.state_at(now);
        if current != ApprovalState::Pending {
            return Err(closed(current));
        }
        // Reserved while the answer is recorded: a second answer meanwhile is refused.
        if !state.deciding.insert(id.clone()) {
            return Err(closed(ApprovalState::Pending));
        }
        approval
    };
    // Recorded and then applied in a task of its own, so an abandoned request cannot leave
    // the answer in the log but not in memory, or the approval reserved for ever.
    let by = human.id.clone();
    let task_issuer = Arc::clone(&issuer);
    let answered = tokio::spawn(async move {
        let decision = if approve { "approve" } else { "deny" };
        let recorded = record_answer(&task_issuer, &approval, approve, &by, decision).await;
        let mut state = task_issuer.behaviour.state();
        state.deciding.remove(&approval.id);
        recorded?;
        Ok::<_, ApiError>(state.decide(&approval.id, approve, Some(by)))
    })
    .await
    .map_err(|e| ApiError::unavailable(&StoreError::Unavailable(e.to_string())))??;
    Ok(Json(answered.ok_or_else(not_found)?))
}

/// Records an owner's answer; denying a mandate a gateway stopped revokes it.
async fn record_answer(
    issuer: &Issuer,
    approval: &Approval,
    approve: bool,
    by: &str,
    decision: &str,
) -> Result<(), ApiError> {
    let mut keys = vec![
        format!("approval:{}", approval.id),
        format!("agent:{}", approval.agent),
        format!("mandate:{}", approval.mandate),
    ];
    let mut write = Write::Nothing;
    let mut revoked = Vec::new();
    if !approve && approval.call.is_null() {
        revoked = crate::revocation::revocations(
            issuer,
            crate::revocation::Kind::Mandate,
            &approval.mandate,
            "its owner denied it after a gateway saw drift",
        )
        .await?;
        keys.extend(crate::revocation::subject_keys(&revoked));
        write = Write::Revoke(revoked.clone());
    }
    let appended = record(
        issuer,
        "approval_decided",
        json!({"approval": approval.id, "decision": decision, "by": by}),
        keys,
        write,
    )
    .await?;
    if !revoked.is_empty() {
        crate::revocation::newly_revoked(&revoked, &appended.revocations);
        issuer.revoked.notify_waiters();
    }
    Ok(())
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
        match state.profiles.get(&agent.jkt) {
            Some(profile) => (
                profile.learning(&behaviour.settings, now),
                profile.baseline().clone(),
            ),
            None => (
                Profile::new().learning(&behaviour.settings, now),
                writ_behaviour::Baseline::default(),
            ),
        }
    };
    let modes = Detector::ALL
        .iter()
        .map(|detector| (detector.code(), behaviour.mode(&agent.name, *detector)))
        .collect();
    Ok(Json(BaselineView {
        agent: agent.name,
        jkt: agent.jkt,
        learning,
        modes,
        baseline,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn hold(behaviour: &Behaviour, mandate: &str, at: i64, until: Option<i64>) {
        let mut state = behaviour.state();
        behaviour.apply_response(
            &mut state,
            Response {
                agent: "agent",
                mandate,
                tool: "files/read_file",
                bytes: 1 << 20,
                at,
                until,
            },
            false,
            Some(Mode::Block),
            None,
        );
    }

    #[test]
    fn an_agents_own_modes_come_before_the_detectors_settings() {
        let config = BehaviourConfig {
            detectors: SettingsSpec {
                mode: Some(Mode::Block),
                modes: [(Detector::UnusualHour, Mode::Observe)].into(),
                ..SettingsSpec::default()
            },
            agents: [(
                "report-bot".to_owned(),
                AgentModes {
                    mode: Some(Mode::StepUp),
                    modes: [(Detector::RateSpike, Mode::Observe)].into(),
                },
            )]
            .into(),
            ..BehaviourConfig::default()
        };
        let behaviour = Behaviour::new(config.clone()).unwrap();
        for (agent, detector, mode) in [
            ("report-bot", Detector::RateSpike, Mode::Observe),
            ("report-bot", Detector::UnusualHour, Mode::StepUp),
            ("other-bot", Detector::RateSpike, Mode::Block),
            ("other-bot", Detector::UnusualHour, Mode::Observe),
        ] {
            assert_eq!(
                behaviour.mode(agent, detector),
                mode,
                "{agent} {detector:?}"
            );
        }

        let mut bad = config;
        bad.agents
            .insert("Report Bot".to_owned(), AgentModes::default());
        let error = Behaviour::new(bad).unwrap_err();
        assert!(
            error.contains("`agents.Report Bot` cannot name an agent"),
            "{error}"
        );
    }

    #[test]
    fn a_hold_is_forgotten_once_its_mandate_cannot_be_used_even_with_skew() {
        let behaviour = Behaviour::new(BehaviourConfig::default()).unwrap();
        let skew = i64::try_from(writ_token::MAX_SKEW).unwrap();
        hold(&behaviour, "mnd_a", 100, Some(200));
        hold(&behaviour, "mnd_b", 150, None);
        let held = |mandate: &str| behaviour.state().held.contains_key(mandate);
        assert!(held("mnd_a") && held("mnd_b"));
        // Until the mandate's expiry and the skew a token check allows have passed, its
        // hold stays; after, the next hold taken forgets it.
        hold(&behaviour, "mnd_c", 200 + skew - 1, Some(1_000));
        assert!(held("mnd_a"));
        hold(&behaviour, "mnd_d", 200 + skew, Some(1_000));
        assert!(!held("mnd_a"));
        // A hold whose mandate's expiry is unknown is kept.
        assert!(held("mnd_b") && held("mnd_c") && held("mnd_d"));
    }

    #[test]
    fn a_restart_rebuilds_a_hold_with_its_expiry() {
        let behaviour = Behaviour::new(BehaviourConfig::default()).unwrap();
        let event = json!({"agent": "agent", "mandate": "mnd_a", "tool": "files/read_file",
                           "bytes": 1 << 20, "learned": false, "at": 100, "held": "block",
                           "held_until": 500});
        behaviour.replay_leaf("gateway_response", 100, &event, 7);
        let state = behaviour.state();
        let hold = &state.held["mnd_a"];
        assert_eq!((hold.mode, hold.until), (Mode::Block, Some(500)));
    }

    fn begin<'a>(behaviour: &'a Behaviour, mandate: &str, mode: Mode, asking: bool) -> Verdict<'a> {
        Verdict::begin(behaviour, &mut behaviour.state(), mandate, mode, asking)
    }

    #[test]
    fn a_mandate_is_held_while_its_verdict_is_being_recorded() {
        let behaviour = Behaviour::new(BehaviourConfig::default()).unwrap();
        let lineage = ["mnd_child".to_owned(), "mnd_a".to_owned()];
        let check = || held_in(&behaviour.state(), &lineage, 100);
        let step_up = begin(&behaviour, "mnd_a", Mode::StepUp, true);
        assert_eq!(check().unwrap_err().reason(), "approval_pending");
        let block = begin(&behaviour, "mnd_a", Mode::Block, false);
        assert_eq!(check().unwrap_err().reason(), "mandate_drifted");
        drop(block);
        assert_eq!(check().unwrap_err().reason(), "approval_pending");
        // A verdict that could not be recorded leaves nothing held.
        drop(step_up);
        assert!(check().is_ok());
        assert!(behaviour.state().verdicts.is_empty());

        // The strongest answer over the lineage: a child waiting for its owner does not
        // hide a parent being stopped.
        let child = begin(&behaviour, "mnd_child", Mode::StepUp, true);
        assert_eq!(check().unwrap_err().reason(), "approval_pending");
        let parent = begin(&behaviour, "mnd_a", Mode::Block, false);
        let stopped = check().unwrap_err();
        assert_eq!(stopped.reason(), "mandate_drifted");
        assert!(stopped.message().contains("mnd_a"), "{}", stopped.message());
        drop((child, parent));
        assert!(check().is_ok());

        // A verdict on record whose hold never reached the memory leaves one anyway.
        let mut recorded = begin(&behaviour, "mnd_a", Mode::StepUp, false);
        recorded.recorded = Some(Some(500));
        drop(recorded);
        assert_eq!(check().unwrap_err().reason(), "mandate_drifted");
    }
}
