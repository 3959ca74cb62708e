//! Caller authentication: every `/v1` request carries a DPoP proof (RFC 9449) for its exact
//! method and URL, made with a registered key. The key says who is calling. There is no
//! bearer secret to steal, and each proof is single use.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use writ_store::{AgentRecord, GatewayRecord, HumanRecord};
use writ_token::{CheckedProof, MAX_PROOF_LEN, ProofCheck, check_proof};

use crate::Issuer;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// A human (or administrator) by a key bound to them.
    Human(HumanRecord),
    /// A registered agent by its own key.
    Agent(AgentRecord),
    /// A registered gateway by its key.
    Gateway(GatewayRecord),
}

impl Caller {
    pub(crate) fn is_admin(&self) -> bool {
        matches!(self, Caller::Human(human) if human.role == "admin")
    }

    /// The human, or a 403 naming what the route needs.
    pub(crate) fn human(&self) -> Result<&HumanRecord, ApiError> {
        match self {
            Caller::Human(human) => Ok(human),
            _ => Err(ApiError::denied(
                "human_required",
                "only a human may do this",
            )),
        }
    }

    /// The administrator, or a 403.
    pub(crate) fn admin(&self) -> Result<&HumanRecord, ApiError> {
        match self {
            Caller::Human(human) if human.role == "admin" => Ok(human),
            _ => Err(ApiError::denied(
                "admin_required",
                "only an administrator may do this",
            )),
        }
    }

    /// A name for the audit log.
    pub(crate) fn describe(&self) -> String {
        match self {
            Caller::Human(human) => format!("human:{}", human.id),
            Caller::Agent(agent) => format!("agent:{}", agent.jkt),
            Caller::Gateway(gateway) => format!("gateway:{}", gateway.jkt),
        }
    }
}

/// The single `DPoP` header, bounded in size.
pub(crate) fn dpop_header(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all("dpop").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::from(writ_token::DpopError::Malformed(
            "exactly one DPoP header is required (RFC 9449 §4.3)".to_owned(),
        )));
    };
    if value.len() > MAX_PROOF_LEN {
        return Err(ApiError::from(writ_token::DpopError::Malformed(
            "DPoP header is too large".to_owned(),
        )));
    }
    value.to_str().map_err(|_| {
        ApiError::from(writ_token::DpopError::Malformed(
            "DPoP header is not ASCII".to_owned(),
        ))
    })
}

/// Checks the request's proof for `method` and the issuer URL of `path`. The caller records
/// it (single use) once the key is one it accepts, with [`record`].
pub(crate) fn proof(
    issuer: &Issuer,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    access_token: Option<&str>,
) -> Result<CheckedProof, ApiError> {
    let uri = issuer.url(path);
    let check = ProofCheck {
        method: method.as_str(),
        uri: &uri,
        now: issuer.now(),
        max_age: issuer.settings.proof_max_age,
        max_skew: issuer.settings.skew,
        access_token,
        nonce: issuer.settings.require_dpop_nonce.then_some(&issuer.nonces),
    };
    Ok(check_proof(dpop_header(headers)?, &check)?)
}

/// Records a checked proof as used (RFC 9449 §11.1).
///
/// Just after a restart, a proof made before it (plus the skew) may have been accepted by
/// the earlier process, and is refused (`dpop_predates_start`) unless it carries a nonce
/// of this process's: the refusal is `use_dpop_nonce` and carries one, so the client's
/// retry passes at once (§8).
pub(crate) fn record(issuer: &Issuer, proof: CheckedProof) -> Result<(), ApiError> {
    match proof.record_fresh(&*issuer.replay, issuer.now(), &issuer.nonces) {
        Ok(_) => Ok(()),
        Err(error @ writ_token::DpopError::PredatesStart { .. }) => Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "use_dpop_nonce",
            error.code(),
            format!("{error}, or with the nonce this answer carries"),
        )),
        Err(error) => Err(error.into()),
    }
}

/// With nonces required, every response carries the current one (RFC 9449 §8.2, §9), so
/// a client refused with `use_dpop_nonce` can retry at once and others stay current. Every
/// refusal (400, 401) carries one in any case: a client whose proof predates a restart
/// retries with it.
pub(crate) async fn offer_nonce(
    State(issuer): State<Arc<Issuer>>,
    mut response: Response,
) -> Response {
    let refused = matches!(response.status().as_u16(), 400 | 401);
    if (issuer.settings.require_dpop_nonce || refused)
        && let Ok(nonce) = HeaderValue::from_str(&issuer.nonces.current(issuer.now()))
    {
        response.headers_mut().insert("dpop-nonce", nonce);
    }
    response
}

/// Authenticates a `/v1` request.
pub(crate) async fn authenticate(
    issuer: &Issuer,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let proof = proof(issuer, method, path, headers, None)?;
    let jkt = proof.jkt().as_str().to_owned();
    let jkt = jkt.as_str();
    // Only a registered key's proofs are recorded: strangers cannot fill the replay cache.
    let caller = identify(issuer, jkt)?;
    record(issuer, proof)?;
    Ok(caller)
}

/// The registered caller a key belongs to.
fn identify(issuer: &Issuer, jkt: &str) -> Result<Caller, ApiError> {
    if let Some(human) = issuer.store.human_by_key(jkt) {
        // A revoked human keeps no access, whatever their recorded status.
        if issuer.store.is_revoked("human", &human.id) {
            return Err(ApiError::denied(
                "human_revoked",
                format!("human `{}` was revoked", human.id),
            ));
        }
        if human.status != "active" {
            return Err(ApiError::denied(
                "human_inactive",
                format!("human `{}` is {}", human.id, human.status),
            ));
        }
        return Ok(Caller::Human(human));
    }
    if let Some(gateway) = issuer.store.gateway(jkt) {
        // A disabled or revoked gateway keeps no access: no mandate, no report, no feed.
        crate::gateways::usable(issuer, &gateway)?;
        return Ok(Caller::Gateway(gateway));
    }
    if let Some(agent) = issuer.store.agent(jkt) {
        // The same rule as for issuance: not revoked, active, within its lifetime.
        crate::mandates::agent_usable(&issuer.store, &agent, issuer.now().as_secs())?;
        return Ok(Caller::Agent(agent));
    }
    Err(ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "invalid_token",
        "unknown_key",
        format!("key {jkt} is not registered with this issuer"),
    ))
}
