//! Delegation: an agent holding a mandate obtains a child mandate for another registered
//! agent, by token exchange (RFC 8693) at the token endpoint.
//!
//! ```text
//! POST /token
//! DPoP: <proof by the delegating agent's key>
//!
//! grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//! &subject_token=<the parent mandate>
//! &subject_token_type=urn:writ:params:oauth:token-type:mandate
//! &requested_token_type=urn:writ:params:oauth:token-type:mandate
//! &delegate=<the receiving agent's name or key thumbprint>
//! &authorization_details=[<the child's grants>]
//! &expires_in=<seconds, optional>
//! ```
//!
//! The child may only narrow. Every grant must fall within a grant of the parent (tools,
//! argument constraints and data labels, by `is_subset_of`); it expires no later than the
//! parent (by default with it); its depth is one more, within the parent's `max_depth`; the
//! delegate is active and not already in the chain (no cycles); the delegate belongs to the
//! human who granted the root, unless both that human and the delegate's owner consented
//! (see [`crate::consent`]); and policy (`Delegate`) permits. The chain goes in `act`, nested (RFC 8693 §4.1), and always ends at the human who
//! granted the root. Revoking any mandate revokes every mandate delegated from it.

use std::collections::HashMap;

use axum::http::{HeaderMap, Method};
use serde_json::{Value, json};
use writ_jose::Thumbprint;
use writ_policy::PolicyRequest;
use writ_scope::{AuthorizationDetail, Grants};
use writ_token::{Actor, Confirmation, MandateClaims, MandateId, UnixTime};

use crate::Issuer;
use crate::error::ApiError;
use crate::mandates::{agent_usable, granted_tools, permitted, random_id, record_and_sign};
use crate::token::{Holder, MANDATE_TOKEN_TYPE, TokenResponse, holder, required};

/// RFC 8693 §2.2.1: the issued token is not an access token.
const NOT_APPLICABLE: &str = "N_A";

pub(crate) async fn delegate(
    issuer: &Issuer,
    method: &Method,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    context: &mut Value,
    now: UnixTime,
) -> Result<TokenResponse, ApiError> {
    let delegate_name = required(form, "delegate")?;
    context["delegate"] = json!(delegate_name);
    let details: Vec<AuthorizationDetail> =
        writ_jose::from_slice_strict(required(form, "authorization_details")?.as_bytes())
            .map_err(|e| ApiError::invalid_request("invalid_grants", e.to_string()))?;
    let grants = Grants::new(details)
        .map_err(|e| ApiError::invalid_request("invalid_grants", e.to_string()))?;
    let lifetime = form
        .get("expires_in")
        .map(|text| {
            text.parse::<u64>()
                .ok()
                .filter(|seconds| *seconds > 0)
                .ok_or_else(|| {
                    ApiError::invalid_request(
                        "invalid_expires_in",
                        "expires_in must be a positive number of seconds",
                    )
                })
        })
        .transpose()?;

    let Holder {
        mandate,
        agent,
        human,
        owners,
    } = holder(issuer, method, headers, form, context, now)?;
    let parent = mandate.claims();
    // A mandate a gateway stopped hands nothing on.
    crate::behaviour::held(issuer, parent.jti.as_str(), crate::seconds(now))?;

    // One answer for a delegate that does not exist and one that cannot receive, so a
    // mandate holder learns nothing about the state of other owners' agents. The delegate
    // is named exactly, by its unique name or its thumbprint.
    let delegate = crate::consent::agent_named(issuer, delegate_name)?
        .filter(|delegate| agent_usable(&issuer.store, delegate, now.as_secs()).is_ok())
        .ok_or_else(|| {
            ApiError::invalid_request(
                "invalid_delegate",
                format!("`{delegate_name}` is not an agent that can receive a mandate"),
            )
        })?;
    // No cycles: an agent appears in a chain once.
    if parent
        .act
        .chain()
        .any(|actor| actor.as_str() == delegate.jkt)
    {
        return Err(ApiError::denied(
            "delegation_cycle",
            format!(
                "agent `{}` is already in the chain of mandate {}",
                delegate.name, parent.jti
            ),
        ));
    }
    // A mandate stays with the agents of the human who granted its root, unless both that
    // human and the delegate's owner consented to this crossing.
    let mut consents = Vec::new();
    if delegate.owner != parent.sub.as_str() {
        let lineage = lineage(issuer, parent.jti.as_str(), parent.depth);
        match crate::consent::consents(
            issuer,
            &delegate,
            parent.sub.as_str(),
            &lineage,
            crate::seconds(now),
        )
        .await?
        {
            Ok(given) => consents.extend(given),
            Err(missing) => {
                return Err(ApiError::denied(
                    "delegate_other_owner",
                    format!(
                        "agent `{}` belongs to `{}`, not to `{}`, whose mandate {} this is: {missing} (POST /v1/delegation-consents)",
                        delegate.name, delegate.owner, parent.sub, parent.jti
                    ),
                ));
            }
        }
    }
    let depth = parent.depth.saturating_add(1);
    if depth > parent.max_depth {
        return Err(ApiError::denied(
            "delegation_too_deep",
            format!(
                "mandate {} is at depth {} of at most {}: it cannot be delegated further",
                parent.jti, parent.depth, parent.max_depth
            ),
        ));
    }
    // Only narrowing: each grant inside one of the parent's.
    if let Some(wider) = grants
        .as_slice()
        .iter()
        .find(|grant| parent.grants.covering(grant).is_none())
    {
        let (server, tool) = crate::mandates::tool_of(wider);
        return Err(ApiError::denied(
            "wider_than_parent",
            format!(
                "the grant for `{server}/{tool}` is not within any grant of mandate {} (tools, arguments and data labels may only narrow)",
                parent.jti
            ),
        ));
    }
    let exp = match lifetime {
        Some(seconds) => now.plus(seconds),
        None => parent.exp,
    };
    if exp > parent.exp {
        return Err(ApiError::denied(
            "expiry_beyond_parent",
            format!(
                "the child would expire {} s after its parent mandate {}",
                exp.as_secs().saturating_sub(parent.exp.as_secs()),
                parent.jti
            ),
        ));
    }

    let tools = granted_tools(issuer, &grants)?;
    let tool_refs: Vec<&str> = tools.iter().map(String::as_str).collect();
    let agent_tools: Vec<&str> = agent.tools.iter().map(String::as_str).collect();
    let delegate_tools: Vec<&str> = delegate.tools.iter().map(String::as_str).collect();
    let decision = issuer.engine().decide(&PolicyRequest::Delegate {
        agent: &writ_policy::Agent {
            id: &agent.jkt,
            owner: &agent.owner,
            active: true,
            tools: &agent_tools,
        },
        delegate: &writ_policy::Agent {
            id: &delegate.jkt,
            owner: &delegate.owner,
            active: true,
            tools: &delegate_tools,
        },
        human: &crate::entitlements::Entitled::of_chain(&issuer.store, &human, &owners)
            .facts(&human)
            .policy(),
        tools: &tool_refs,
        depth: i64::from(depth),
    });
    let permit = permitted(
        decision,
        &format!("`{}` delegating to `{}`", agent.name, delegate.name),
    )?;

    let delegate_key = Thumbprint::parse(&delegate.jkt)
        .map_err(|e| ApiError::unavailable(&writ_store::StoreError::Corrupt(e.to_string())))?;
    let claims = MandateClaims {
        iss: issuer.id.clone(),
        sub: parent.sub.clone(),
        act: Actor::delegated(delegate_key.clone(), parent.act.clone()),
        aud: issuer.id.clone(),
        iat: now,
        exp,
        jti: MandateId::from_random(random_id()?),
        cnf: Confirmation { jkt: delegate_key },
        grants,
        task: parent.task.clone(),
        depth,
        max_depth: parent.max_depth,
        parent: Some(parent.jti.clone()),
    };
    let policy = writ_token::PolicyRef {
        set: permit.policy_set,
        ids: permit.policy_ids,
    };
    // The child's task is the parent's: its text, where kept, comes from the parent's record.
    let task_text = issuer
        .store
        .mandate(parent.jti.as_str())
        .await?
        .and_then(|record| record.task_text);
    let (token, log_index) = record_and_sign(
        issuer,
        "mandate_delegated",
        &claims,
        &delegate,
        task_text.as_deref(),
        &policy,
        &consents,
    )
    .await?;
    metrics::counter!("writ_mandates_delegated_total").increment(1);
    Ok(TokenResponse {
        access_token: token,
        issued_token_type: MANDATE_TOKEN_TYPE,
        token_type: NOT_APPLICABLE,
        expires_in: exp.as_secs().saturating_sub(now.as_secs()),
        log_index,
    })
}

/// The mandate `id` and its ancestors, at most `depth` above it.
fn lineage(issuer: &Issuer, id: &str, depth: u8) -> Vec<String> {
    let mut lineage = vec![id.to_owned()];
    let mut at = id.to_owned();
    for _ in 0..depth {
        match issuer.store.mandate_parent(&at) {
            Some(parent) => {
                lineage.push(parent.clone());
                at = parent;
            }
            None => break,
        }
    }
    lineage
}
