//! The token endpoint (RFC 8693 token exchange), the JWKS and RFC 8414 metadata.
//!
//! ```text
//! POST /token
//! DPoP: <proof by the agent key for POST {issuer}/token>
//! Content-Type: application/x-www-form-urlencoded
//!
//! grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! &subject_token=<mandate>
//! &subject_token_type=urn:writ:params:oauth:token-type:mandate
//! &resource=<the gateway route's URL>
//! &authorization_details=[{"type":"mcp_tool_call",...}]
//! ```
//!
//! Checks, in order: the form, the DPoP proof, the mandate (signature, type, issuer,
//! audience, expiry), the proof's key is the mandate's `cnf.jkt`, nothing in the chain is
//! revoked, every agent in the chain is active and within its lifetime, the human and every
//! agent's owner are active and unrevoked, the resource is a registered gateway, the call is
//! one detail inside the mandate's grants, the tool is in the inventory, policy permits (with
//! the entitlements the human and every owner in the chain share), and the call does not drift from the agent's baseline
//! (`behaviour.rs`). Then the issuance is appended durably to the audit
//! log, and only then is the writ signed, carrying its `log_index`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use writ_policy::{Decision, PolicyRequest};
use writ_scope::AuthorizationDetail;
use writ_store::Write;
use writ_token::{
    Audience, PolicyRef, SingleDetail, Task, UnverifiedMandate, VerifiedMandate, WritClaims, WritId,
};

use crate::Issuer;
use crate::audit::{record, record_denial};
use crate::auth::proof;
use crate::entitlements::Entitled;
use crate::error::{ApiError, mandate_error};
use crate::mandates::{agent_usable, random_id, tool_of};

pub(crate) use writ_token::{MANDATE_TOKEN_TYPE, TOKEN_EXCHANGE, WRIT_TOKEN_TYPE};

pub(crate) async fn metadata(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    // RFC 8414 §2, with RFC 9449 §5.1 and RFC 9396 §10.
    Json(json!({
        "issuer": issuer.base_url,
        "token_endpoint": issuer.token_endpoint,
        "jwks_uri": issuer.url("/.well-known/jwks.json"),
        "grant_types_supported": [TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "dpop_signing_alg_values_supported": ["EdDSA", "ES256"],
        "authorization_details_types_supported": ["mcp_tool_call", "mcp_request", "http_request"],
        "response_types_supported": [],
        "revocation_feed_endpoint": issuer.url("/v1/revocations"),
        "audit_checkpoint_endpoint": issuer.url("/v1/audit/checkpoint"),
    }))
}

#[derive(Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) issued_token_type: &'static str,
    /// `DPoP` for a writ; RFC 8693 §2.2.1's `N_A` for a mandate, which is no access token.
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    pub(crate) log_index: u64,
}

/// The form, with RFC 6749 §3.2's rule that no parameter appears twice.
pub(crate) fn form(body: &Bytes) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
        ApiError::invalid_request("invalid_form", format!("request body is not a form: {e}"))
    })?;
    let mut form = HashMap::new();
    for (name, value) in pairs {
        if form.insert(name.clone(), value).is_some() {
            return Err(ApiError::invalid_request(
                "repeated_parameter",
                format!("parameter `{name}` appears more than once"),
            ));
        }
    }
    Ok(form)
}

pub(crate) fn required<'a>(
    form: &'a HashMap<String, String>,
    name: &str,
) -> Result<&'a str, ApiError> {
    form.get(name).map(String::as_str).ok_or_else(|| {
        ApiError::invalid_request(
            "missing_parameter",
            format!("parameter `{name}` is required"),
        )
    })
}

pub(crate) async fn exchange(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut context = json!({});
    let result = exchange_checked(&issuer, &method, &headers, &body, &mut context).await;
    if let Err(error) = &result {
        metrics::counter!("writ_token_refusals_total", "reason" => error.reason()).increment(1);
    }
    match result {
        Ok(response) => {
            if response.issued_token_type == WRIT_TOKEN_TYPE {
                metrics::counter!("writ_writs_issued_total").increment(1);
            }
            let mut response = Json(response).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        // Refusals are recorded once the caller has proven a key; before that, anyone could
        // fill the log, so they go to the structured log only. A call waiting for its
        // owner is recorded once, by its approval, not at every retry.
        Err(error) if context.get("caller").is_none() || error.reason() == "approval_pending" => {
            tracing::info!(
                reason = error.reason(),
                "token request refused before authentication"
            );
            error.into_response()
        }
        Err(error) => {
            let keys = ["mandate", "agent", "human"]
                .iter()
                .filter_map(|key| {
                    context
                        .get(*key)
                        .and_then(Value::as_str)
                        .map(|value| format!("{key}:{value}"))
                })
                .collect();
            let kind = if context.get("delegation").is_some() {
                "delegation_denied"
            } else {
                "writ_denied"
            };
            record_denial(&issuer, kind, &error, context, keys).await;
            error.into_response()
        }
    }
}

async fn exchange_checked(
    issuer: &Arc<Issuer>,
    method: &Method,
    headers: &HeaderMap,
    body: &Bytes,
    context: &mut Value,
) -> Result<TokenResponse, ApiError> {
    let now = issuer.now();
    let form = form(body)?;
    let grant_type = required(&form, "grant_type")?;
    if grant_type != TOKEN_EXCHANGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported_grant_type",
            format!("grant_type must be `{TOKEN_EXCHANGE}`"),
        ));
    }
    if required(&form, "subject_token_type")? != MANDATE_TOKEN_TYPE {
        return Err(ApiError::invalid_request(
            "unsupported_token_type",
            format!("subject_token_type must be `{MANDATE_TOKEN_TYPE}`"),
        ));
    }
    match form.get("requested_token_type").map(String::as_str) {
        None | Some(WRIT_TOKEN_TYPE) => {}
        // A child mandate for another agent: delegation.
        Some(MANDATE_TOKEN_TYPE) => {
            context["delegation"] = json!(true);
            return crate::delegation::delegate(issuer, method, headers, &form, context, now).await;
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "unsupported_token_type",
                format!(
                    "requested_token_type must be `{WRIT_TOKEN_TYPE}` (a writ) or `{MANDATE_TOKEN_TYPE}` (a delegated mandate)"
                ),
            ));
        }
    }
    let resource = Audience::new(required(&form, "resource")?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "invalid_resource",
            e.to_string(),
        )
    })?;
    // RFC 9396 §5: details that are malformed, or not exactly one call.
    let invalid_details = |message: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_authorization_details",
            "invalid_authorization_details",
            message,
        )
    };
    let details: Vec<AuthorizationDetail> =
        writ_jose::from_slice_strict(required(&form, "authorization_details")?.as_bytes())
            .map_err(|e| invalid_details(e.to_string()))?;
    let detail = SingleDetail::try_from(details).map_err(|e| invalid_details(e.to_string()))?;

    let Holder {
        mandate,
        agent,
        human,
        owners,
    } = holder(issuer, method, headers, &form, context, now)?;
    let claims = mandate.claims();
    if !issuer.store.audience_known(resource.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "unknown_resource",
            format!("no registered gateway serves `{resource}`"),
        ));
    }
    // The requested call must fall inside one grant of the mandate.
    let requested = detail.detail();
    context["call"] = json!(requested);
    if claims.grants.covering(requested).is_none() {
        return Err(ApiError::denied(
            "outside_mandate",
            format!(
                "the requested call is outside mandate {} granted by {} for task {}",
                claims.jti,
                claims.sub,
                claims
                    .task
                    .summary
                    .as_deref()
                    .unwrap_or(claims.task.digest.as_str())
            ),
        ));
    }
    let tool_labels = match requested {
        AuthorizationDetail::McpToolCall { server, tool, .. } => {
            issuer
                .store
                .tool(server.as_str(), tool.as_str())
                .ok_or_else(|| {
                    ApiError::denied(
                        "unknown_tool",
                        format!("no tool `{server}/{tool}` in the inventory"),
                    )
                })?
                .labels
        }
        _ => Vec::new(),
    };
    let permit = decide(
        issuer,
        &agent,
        &human,
        &owners,
        requested,
        &tool_labels,
        i64::from(claims.depth),
    )?;
    // Behaviour last: only a call scope and policy allow is compared with the baseline,
    // so a refused call never holds an owner's attention.
    let pass = crate::behaviour::check(
        issuer,
        &agent,
        claims.jti.as_str(),
        resource.as_str(),
        requested,
        context,
    )
    .await?;

    let jti = WritId::from_random(random_id()?);
    let mut writ = WritClaims {
        iss: issuer.id.clone(),
        sub: claims.sub.clone(),
        act: claims.act.clone(),
        aud: resource,
        iat: now,
        nbf: now,
        exp: now.plus(issuer.settings.writ_lifetime),
        jti: jti.clone(),
        cnf: claims.cnf.clone(),
        authorization_details: detail.clone(),
        mandate: claims.jti.clone(),
        task: Task {
            digest: claims.task.digest.clone(),
            summary: None,
        },
        policy: PolicyRef {
            set: permit.policy_set,
            ids: permit.policy_ids,
        },
        log_index: 0,
    };
    writ_token::TokenClaims::check(&writ)
        .map_err(|e| ApiError::invalid_request("invalid_writ", e.to_string()))?;
    // No audit record, no writ: the issuance is durable before the writ exists.
    let mut event = json!({
        "writ": jti, "mandate": claims.jti, "human": claims.sub, "agent": claims.cnf.jkt,
        "actors": claims.act, "aud": writ.aud, "call": requested, "exp": writ.exp, "policy": writ.policy,
    });
    if let Some(pass) = &pass {
        crate::behaviour::insert(&mut event, "behaviour", pass.leaf());
    }
    // The gateways serving the audience may speak of this writ and its mandate.
    let shown = crate::gateways::Shown::keys(
        issuer,
        writ.aud.as_str(),
        jti.as_str(),
        claims.jti.as_str(),
        requested.server().as_str(),
    );
    let mut keys = vec![
        format!("writ:{jti}"),
        format!("mandate:{}", claims.jti),
        format!("agent:{}", claims.cnf.jkt),
    ];
    keys.extend(shown.iter().cloned());
    let appended = match record(
        issuer,
        "writ_issued",
        event,
        keys,
        Write::AgentSeen {
            jkt: agent.jkt.clone(),
        },
    )
    .await
    {
        Ok(appended) => appended,
        // No writ: an approval it would have used stands for the next try (dropping the
        // pass gives it back).
        Err(e) => {
            return Err(ApiError::unavailable(&e).with_message(
                "the issuance could not be recorded in the audit log, so no writ was issued",
            ));
        }
    };
    writ.log_index = appended.index;
    issuer.shown.remember(&shown);
    issuer.shown.remember_writ(
        jti.as_str(),
        crate::gateways::Issued {
            mandate: claims.jti.to_string(),
            agent: claims.cnf.jkt.to_string(),
            human: claims.sub.to_string(),
            tool: writ_behaviour::tool_name(requested),
        },
    );
    if let Some(mut pass) = pass {
        pass.recorded();
        issuer.behaviour.learn(&agent.jkt, pass);
    }
    let token = issuer.sign(&writ)?;
    Ok(TokenResponse {
        access_token: token,
        issued_token_type: WRIT_TOKEN_TYPE,
        token_type: "DPoP",
        expires_in: issuer.settings.writ_lifetime,
        log_index: appended.index,
    })
}

/// The agent presenting a mandate, checked: its DPoP proof, the mandate, the proof's key
/// bound to it, nothing in the chain revoked, every agent in the chain usable, and the
/// human and every agent's owner active and unrevoked.
pub(crate) struct Holder {
    pub(crate) mandate: VerifiedMandate,
    pub(crate) agent: writ_store::AgentRecord,
    pub(crate) human: writ_store::HumanRecord,
    /// The owners of the agents in the chain other than `human`, each once: the chain may
    /// do only what each of them may (see [`crate::entitlements::Entitled::of_chain`]).
    pub(crate) owners: Vec<writ_store::HumanRecord>,
}

pub(crate) fn holder(
    issuer: &Issuer,
    method: &Method,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    context: &mut Value,
    now: writ_token::UnixTime,
) -> Result<Holder, ApiError> {
    // RFC 9449 §4.3 at the token endpoint.
    let proof =
        proof(issuer, method, "/token", headers, None).map_err(ApiError::at_token_endpoint)?;
    context["caller"] = json!(proof.jkt());
    let mandate = verify_mandate(issuer, required(form, "subject_token")?, now)?;
    let claims = mandate.claims();
    context["mandate"] = json!(claims.jti);
    context["agent"] = json!(claims.cnf.jkt);
    context["human"] = json!(claims.sub);
    // RFC 9449 §6: the proof's key is the key the mandate is bound to. Only then is the
    // proof recorded as used, so strangers' proofs never fill the replay cache.
    proof.ensure_bound_to(&claims.cnf.jkt)?;
    crate::auth::record(issuer, proof).map_err(ApiError::at_token_endpoint)?;
    check_not_revoked(issuer, &mandate)?;
    let agent = issuer.store.agent(claims.cnf.jkt.as_str()).ok_or_else(|| {
        ApiError::denied("unknown_agent", "the mandate's agent is not registered")
    })?;
    agent_usable(&issuer.store, &agent, now.as_secs())?;
    let mut owner_ids = vec![agent.owner.clone()];
    // Every agent the chain passes through must still be usable: a suspended or expired
    // delegator's sub-agents act for it no more than it does.
    for delegator in claims.act.chain().skip(1) {
        let delegator = issuer.store.agent(delegator.as_str()).ok_or_else(|| {
            ApiError::denied(
                "unknown_agent",
                "an agent in the mandate's chain is not registered",
            )
        })?;
        agent_usable(&issuer.store, &delegator, now.as_secs())?;
        owner_ids.push(delegator.owner);
    }
    let human = issuer.store.human(claims.sub.as_str()).ok_or_else(|| {
        ApiError::denied(
            "unknown_human",
            format!("human `{}` is not registered", claims.sub),
        )
    })?;
    if human.status != "active" {
        return Err(ApiError::denied(
            "human_inactive",
            format!("human `{}` is {}", human.id, human.status),
        ));
    }
    // An agent acts for its owner too: a revoked or departed owner's agents act in no
    // one's chain.
    let mut owners: Vec<writ_store::HumanRecord> = Vec::new();
    for id in owner_ids {
        if id == human.id || owners.iter().any(|owner| owner.id == id) {
            continue;
        }
        if issuer.store.is_revoked("human", &id) {
            return Err(ApiError::invalid_grant(
                "owner_revoked",
                format!("`{id}`, who owns an agent in the mandate's chain, was revoked"),
            ));
        }
        let owner = issuer.store.human(&id).ok_or_else(|| {
            ApiError::denied(
                "owner_inactive",
                format!("`{id}`, who owns an agent in the mandate's chain, is not registered"),
            )
        })?;
        if owner.status != "active" {
            return Err(ApiError::denied(
                "owner_inactive",
                format!(
                    "`{id}`, who owns an agent in the mandate's chain, is {}",
                    owner.status
                ),
            ));
        }
        owners.push(owner);
    }
    Ok(Holder {
        mandate,
        agent,
        human,
        owners,
    })
}

fn verify_mandate(
    issuer: &Issuer,
    token: &str,
    now: writ_token::UnixTime,
) -> Result<VerifiedMandate, ApiError> {
    let expect = writ_token::Expectations {
        issuer: &issuer.id,
        audience: &issuer.id,
        now,
        skew: issuer.settings.skew,
    };
    let keys = issuer.key_ring();
    let mandate = UnverifiedMandate::parse(token)
        .and_then(|mandate| mandate.verify(&keys.verifiers, &expect))
        .map_err(mandate_error)?;
    // A rotated-out key verifies only until its overlap ends.
    if !keys.trusts(mandate.kid(), now.as_secs()) {
        return Err(ApiError::invalid_grant(
            "key_retired",
            format!(
                "the issuer key `{}` that signed the mandate is retired",
                mandate.kid()
            ),
        ));
    }
    Ok(mandate)
}

/// The mandate, its ancestors, its human, its agent and the key that signed it must all be
/// unrevoked.
fn check_not_revoked(issuer: &Issuer, mandate: &VerifiedMandate) -> Result<(), ApiError> {
    let claims = mandate.claims();
    let store = &issuer.store;
    if store.is_revoked("human", claims.sub.as_str()) {
        return Err(ApiError::invalid_grant(
            "human_revoked",
            format!("human `{}` was offboarded or revoked", claims.sub),
        ));
    }
    for agent in claims.act.chain() {
        if store.is_revoked("agent", agent.as_str()) {
            return Err(ApiError::invalid_grant(
                "agent_revoked",
                format!("agent {agent} in the chain was revoked"),
            ));
        }
    }
    if store.is_revoked("key", mandate.kid()) {
        return Err(ApiError::invalid_grant(
            "key_revoked",
            "the issuer key that signed the mandate was revoked",
        ));
    }
    let mut next = Some(claims.jti.to_string());
    let mut hops = 0;
    while let Some(id) = next {
        if store.is_revoked("mandate", &id) {
            return Err(ApiError::invalid_grant(
                "mandate_revoked",
                format!("mandate {id} was revoked"),
            ));
        }
        hops += 1;
        if hops > usize::from(writ_token::MAX_DELEGATION_DEPTH) + 1 {
            return Err(ApiError::invalid_grant(
                "chain_too_long",
                "the mandate chain is longer than allowed",
            ));
        }
        next = store.mandate_parent(&id);
    }
    Ok(())
}

fn decide(
    issuer: &Issuer,
    agent: &writ_store::AgentRecord,
    human: &writ_store::HumanRecord,
    owners: &[writ_store::HumanRecord],
    requested: &AuthorizationDetail,
    tool_labels: &[String],
    depth: i64,
) -> Result<writ_policy::Permit, ApiError> {
    let agent_tools: Vec<&str> = agent.tools.iter().map(String::as_str).collect();
    let labels: Vec<&str> = requested
        .datatypes()
        .iter()
        .map(|label| label.as_str())
        .collect();
    let tool_label_refs: Vec<&str> = tool_labels.iter().map(String::as_str).collect();
    let (server, tool_name) = tool_of(requested);
    // Entitlements are read now, not when the mandate was granted: removing one stops calls.
    // Those of every owner in the chain count: the chain may do only what all of them may.
    let entitled = Entitled::of_chain(&issuer.store, human, owners);
    let decision = issuer.engine().decide(&PolicyRequest::Invoke {
        agent: &writ_policy::Agent {
            id: &agent.jkt,
            owner: &agent.owner,
            active: true,
            tools: &agent_tools,
        },
        human: &entitled.facts(human).policy(),
        tool: &writ_policy::Tool {
            server,
            name: tool_name,
            labels: &tool_label_refs,
        },
        labels: &labels,
        depth,
        entitled: entitled.allows_tool(&format!("{server}/{tool_name}")),
    });
    match decision {
        Decision::Allow(permit) => Ok(permit),
        Decision::Deny(denial) => Err(ApiError::denied(
            denial.reason.code(),
            format!("policy {}: {}", denial.policy_set, denial.reason.message()),
        )),
    }
}
