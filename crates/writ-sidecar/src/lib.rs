//! The sidecar runs beside an agent and is the only process that holds the agent's private
//! key. The agent talks to it like any MCP server (over stdio, or streamable HTTP on a
//! loopback port) or, in forward mode, like a plain HTTP API. For every message it:
//!
//! 1. describes exactly that call as one RFC 9396 authorization detail: a `tools/call`
//!    becomes an `mcp_tool_call` whose arguments are pinned to the values the agent sent,
//!    any other method an `mcp_request`, an HTTP request an `http_request` for its method
//!    and path;
//! 2. exchanges the mandate for a writ for that call at the issuer's token endpoint
//!    (RFC 8693), proving possession of the agent key with DPoP (RFC 9449);
//! 3. sends the call to the gateway with `Authorization: DPoP <writ>` and a fresh proof
//!    bound to the writ (`ath`);
//! 4. hands the answer back. A refusal, by the issuer or the gateway, reaches the model as
//!    a tool error it can read and explain: `denied: tool `drop_table` is outside mandate
//!    mnd_… granted by alice for task “…”`.
//!
//! The agent never sees the key, the mandate's signature checks, a writ (each is single use,
//! for one call, and stays inside the sidecar) or the upstream's credential (which only the
//! gateway holds).
//!
//! At start the sidecar reads the route's RFC 9728 metadata from the gateway
//! (`/.well-known/oauth-protected-resource{path}`): the route's resource URL, its inventory
//! name and the issuers it trusts. The mandate's issuer must be one of them, and the
//! issuer's RFC 8414 metadata names its token endpoint.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use writ_client::{ClientError, IssuerClient};
use writ_jose::SigningKey;
use writ_scope::{AuthorizationDetail, Labels, ServerName};
use writ_token::{MandateClaims, UnverifiedMandate};

mod forward;
mod mcp;
mod serve;

pub use mcp::Relayed;
pub use serve::{http_router, mcp_router, serve_stdio};

pub use writ_client::REQUEST_ID_HEADER;

/// The largest answer read from the gateway or a discovery document, in bytes.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long one call through the gateway may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest mandate file read, in bytes.
const MAX_MANDATE_FILE: u64 = 64 * 1024;

/// Where the sidecar finds the agent's mandate.
#[derive(Debug, Clone)]
pub enum MandateSource {
    /// The mandate itself (from a flag or an environment variable).
    Token(String),
    /// A file holding the mandate, read again for every call, so a renewed mandate written
    /// over it takes effect without a restart.
    File(PathBuf),
}

/// The sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// The mandate could not be read or is not a mandate for this key.
    #[error("mandate: {0}")]
    Mandate(String),
    /// The gateway's or the issuer's metadata could not be fetched or is inconsistent.
    #[error("discovery: {0}")]
    Discovery(String),
    /// The HTTP client could not be built.
    #[error("setup: {0}")]
    Setup(String),
}

/// A delegation the issuer (or the sidecar) refused: who, the HTTP status, Writ's reason
/// code and a sentence.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} [{reason}]")]
pub struct DelegationError {
    /// `issuer` or `sidecar`.
    pub by: &'static str,
    /// The HTTP status to answer with.
    pub status: u16,
    /// The stable reason code.
    pub reason: String,
    /// What went wrong.
    pub message: String,
}

impl From<Refusal> for DelegationError {
    fn from(refusal: Refusal) -> Self {
        DelegationError {
            by: refusal.by,
            status: refusal.status,
            reason: refusal.reason,
            message: refusal.message,
        }
    }
}

/// A call the sidecar could not complete: who refused it, Writ's stable reason code and a
/// sentence.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// `issuer`, `gateway` or `sidecar`.
    by: &'static str,
    /// The HTTP status to answer with in forward mode.
    status: u16,
    reason: String,
    message: String,
    /// The gateway's id for the request, when it got that far.
    request_id: Option<String>,
}

impl Refusal {
    fn new(by: &'static str, status: u16, reason: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            by,
            status,
            reason: reason.to_owned(),
            message: message.into(),
            request_id: None,
        }
    }

    fn sidecar(reason: &str, message: impl Into<String>) -> Refusal {
        Refusal::new("sidecar", 502, reason, message)
    }
}

impl From<ClientError> for Refusal {
    fn from(error: ClientError) -> Refusal {
        match error {
            ClientError::Refused {
                status,
                reason,
                description,
                ..
            } => Refusal::new(
                "issuer",
                status.as_u16(),
                reason.as_deref().unwrap_or("issuer_error"),
                description,
            ),
            other => Refusal::sidecar(
                "issuer_unreachable",
                format!("no writ could be obtained: {other}"),
            ),
        }
    }
}

/// How often a call held for the agent's owner is asked for again when the issuer names
/// no `interval`.
pub const APPROVAL_POLL: Duration = Duration::from_secs(2);
/// The least and the most time between two asks, whatever the issuer's `interval`.
pub const APPROVAL_POLL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(60));
/// The longest a call waits for the agent's owner.
pub const APPROVAL_WAIT: Duration = Duration::from_secs(15 * 60);

/// How long to wait before asking again for a held call: the issuer's `interval`, within
/// [`APPROVAL_POLL_RANGE`], or [`APPROVAL_POLL`] when it names none.
pub fn poll_interval(interval: Option<u64>) -> Duration {
    let (least, most) = APPROVAL_POLL_RANGE;
    interval
        .map_or(APPROVAL_POLL, Duration::from_secs)
        .clamp(least, most)
}

/// One sidecar: an agent key, a mandate and one gateway route.
pub struct Sidecar {
    /// The route's URL, which is also its resource (the `aud` of its writs).
    route: String,
    /// The route's tool provider, as the inventory names it.
    server: ServerName,
    issuer: IssuerClient,
    token_path: String,
    mandate: MandateSource,
    http: reqwest::Client,
    /// The MCP protocol version the server chose at `initialize`.
    protocol: Mutex<Option<String>>,
    /// The gateway's `Mcp-Session-Id`, when it gave one.
    session: Mutex<Option<String>>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("route", &self.route)
            .field("server", &self.server)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// Reads the mandate, checks that it is bound to `key`, and discovers the route's
    /// server name and the issuer's token endpoint.
    pub async fn connect(
        route: &str,
        key: SigningKey,
        mandate: MandateSource,
    ) -> Result<Sidecar, SidecarError> {
        let route = route.trim_end_matches('/').to_owned();
        let (_, claims) = read_mandate(&mandate).map_err(SidecarError::Mandate)?;
        if claims.cnf.jkt != *key.public_key().thumbprint() {
            return Err(SidecarError::Mandate(format!(
                "mandate {} is bound to agent key {}, but this sidecar's key is {}",
                claims.jti,
                claims.cnf.jkt,
                key.public_key().thumbprint()
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| SidecarError::Setup(error.to_string()))?;

        // RFC 9728 §3: the route's metadata, at the well-known URI built from its path.
        let url = url::Url::parse(&route)
            .map_err(|error| SidecarError::Discovery(format!("`{route}`: {error}")))?;
        let metadata_url = format!(
            "{}/.well-known/oauth-protected-resource{}",
            url.origin().ascii_serialization(),
            url.path().trim_end_matches('/')
        );
        let metadata = fetch_json(&http, &metadata_url).await?;
        let text = |name: &str| metadata.get(name).and_then(Value::as_str);
        // §3.3: the resource must be the URL the metadata was derived from.
        if text("resource") != Some(route.as_str()) {
            return Err(SidecarError::Discovery(format!(
                "{metadata_url} describes resource {:?}, not {route}",
                text("resource").unwrap_or("")
            )));
        }
        let server = text("resource_name")
            .and_then(|name| ServerName::new(name).ok())
            .ok_or_else(|| {
                SidecarError::Discovery(format!(
                    "{metadata_url} has no valid `resource_name` (the route's tool provider)"
                ))
            })?;
        let issuer = claims.iss.as_str();
        let trusted = metadata
            .get("authorization_servers")
            .and_then(Value::as_array)
            .is_some_and(|servers| servers.iter().any(|s| s.as_str() == Some(issuer)));
        if !trusted {
            return Err(SidecarError::Discovery(format!(
                "the gateway at {route} does not accept writs from {issuer}, the mandate's issuer"
            )));
        }

        // RFC 8414 §3: the issuer's metadata, whose `issuer` must be the one asked for.
        let issuer_metadata = fetch_json(
            &http,
            &format!("{issuer}/.well-known/oauth-authorization-server"),
        )
        .await?;
        if issuer_metadata.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(SidecarError::Discovery(format!(
                "{issuer}'s metadata names another issuer"
            )));
        }
        let token_path = issuer_metadata
            .get("token_endpoint")
            .and_then(Value::as_str)
            .and_then(|endpoint| endpoint.strip_prefix(issuer))
            .filter(|path| path.starts_with('/'))
            .ok_or_else(|| {
                SidecarError::Discovery(format!("{issuer} names no token endpoint of its own"))
            })?
            .to_owned();
        let issuer = IssuerClient::new(issuer, key)
            .map_err(|error| SidecarError::Setup(error.to_string()))?;
        Ok(Sidecar {
            route,
            server,
            issuer,
            token_path,
            mandate,
            http,
            protocol: Mutex::new(None),
            session: Mutex::new(None),
        })
    }

    /// The route's tool provider name.
    pub fn server(&self) -> &str {
        self.server.as_str()
    }

    /// The gateway route this sidecar calls.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The mandate as it stands now, checked against this sidecar's issuer and key.
    fn mandate(&self) -> Result<(String, MandateClaims), Refusal> {
        let (token, claims) = read_mandate(&self.mandate)
            .map_err(|message| Refusal::sidecar("mandate_unreadable", message))?;
        if claims.iss.as_str() != self.issuer.base()
            || claims.cnf.jkt != *self.issuer.key().public_key().thumbprint()
        {
            return Err(Refusal::sidecar(
                "mandate_mismatch",
                format!(
                    "mandate {} is for another issuer or agent key than this sidecar's; restart it with the new mandate",
                    claims.jti
                ),
            ));
        }
        Ok((token, claims))
    }

    /// A writ for exactly `detail`, from the issuer. A call the issuer holds for the agent's
    /// owner (`authorization_pending`, because it drifts from the agent's baseline) is
    /// asked for again every `interval` the issuer names ([`poll_interval`]) until the
    /// owner answers, the issuer's approval expires, or [`APPROVAL_WAIT`] has passed.
    async fn writ(&self, mandate: &str, detail: &AuthorizationDetail) -> Result<String, Refusal> {
        let details = serde_json::to_string(&[detail])
            .map_err(|error| Refusal::sidecar("internal", error.to_string()))?;
        let deadline = tokio::time::Instant::now() + APPROVAL_WAIT;
        let answer = loop {
            match self
                .issuer
                .writ(&self.token_path, mandate, &self.route, &details)
                .await
            {
                Err(writ_client::ClientError::Refused {
                    reason: Some(reason),
                    description,
                    interval,
                    ..
                }) if reason == "approval_pending" && tokio::time::Instant::now() < deadline => {
                    tracing::info!(%description, "waiting for the agent's owner");
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    tokio::time::sleep(poll_interval(interval).min(left)).await;
                }
                answer => break answer?,
            }
        };
        answer
            .get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Refusal::sidecar("issuer_error", "the issuer's answer has no writ"))
    }

    /// A child mandate of this sidecar's mandate for the agent named `delegate`, with
    /// `grants` (each within the mandate's), expiring in `expires_in` seconds or with the
    /// mandate (RFC 8693 token exchange, proven with the agent key). For the sub-agents an
    /// agent starts: the child is bound to the sub-agent's key, so it is no use to anyone
    /// else, and the sub-agent's own sidecar presents it.
    pub async fn delegate(
        &self,
        delegate: &str,
        grants: &Value,
        expires_in: Option<u64>,
    ) -> Result<Value, DelegationError> {
        let (mandate, _) = self.mandate().map_err(DelegationError::from)?;
        self.issuer
            .delegate(&self.token_path, &mandate, delegate, grants, expires_in)
            .await
            .map_err(|error| DelegationError::from(Refusal::from(error)))
    }

    /// Sends a request to the gateway; a gateway that cannot be reached is a refusal.
    async fn send_to_gateway(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Refusal> {
        request.send().await.map_err(|error| {
            Refusal::sidecar(
                "gateway_unreachable",
                format!(
                    "the gateway at {} could not be reached: {error}",
                    self.route
                ),
            )
        })
    }

    /// A request to `url` (on the gateway) carrying `writ` and a fresh proof bound to it.
    fn gateway_request(
        &self,
        method: &reqwest::Method,
        url: &str,
        writ: &str,
    ) -> Result<reqwest::RequestBuilder, Refusal> {
        let target = url.split('?').next().unwrap_or(url);
        let jti = writ_client::random_jti()
            .map_err(|error| Refusal::sidecar("internal", error.to_string()))?;
        let now = writ_token::Clock::now(&writ_token::SystemClock);
        let proof = writ_token::ProofClaims::new(method.as_str(), target, now, jti)
            .with_access_token(writ)
            .sign(self.issuer.key())
            .map_err(|error| Refusal::sidecar("internal", error.to_string()))?;
        Ok(self
            .http
            .request(method.clone(), url)
            .header("authorization", format!("DPoP {writ}"))
            .header("dpop", proof))
    }
}

/// Reads the mandate and its claims, unverified: the issuer verifies it at every exchange;
/// the sidecar only needs its grants to describe calls and its names to explain refusals.
fn read_mandate(source: &MandateSource) -> Result<(String, MandateClaims), String> {
    let token = match source {
        MandateSource::Token(token) => token.trim().to_owned(),
        MandateSource::File(path) => {
            let describe = |error: std::io::Error| format!("{}: {error}", path.display());
            let size = std::fs::metadata(path).map_err(describe)?.len();
            if size > MAX_MANDATE_FILE {
                return Err(format!(
                    "{}: larger than {MAX_MANDATE_FILE} bytes",
                    path.display()
                ));
            }
            std::fs::read_to_string(path)
                .map_err(describe)?
                .trim()
                .to_owned()
        }
    };
    let claims = UnverifiedMandate::parse(&token)
        .and_then(|mandate| mandate.unverified_claims())
        .map_err(|error| format!("not a mandate: {error}"))?;
    Ok((token, claims))
}

/// `make` with the data classes of the first grant under which the result falls inside the
/// mandate, so the call asks for exactly what the human granted; without such a grant, with
/// none (the issuer will refuse it and record why).
fn with_granted_datatypes(
    claims: &MandateClaims,
    make: impl Fn(Labels) -> AuthorizationDetail,
) -> AuthorizationDetail {
    claims
        .grants
        .as_slice()
        .iter()
        .map(|grant| make(grant.datatypes().clone()))
        .find(|candidate| claims.grants.covering(candidate).is_some())
        .unwrap_or_else(|| make(Labels::default()))
}

async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, SidecarError> {
    let failed = |message: String| SidecarError::Discovery(format!("GET {url}: {message}"));
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|error| failed(error.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("status {}", response.status())));
    }
    let bytes = read_capped(response)
        .await
        .map_err(|refusal| failed(refusal.message))?;
    serde_json::from_slice(&bytes).map_err(|error| failed(format!("not JSON: {error}")))
}

/// A response body of at most [`MAX_BODY`] bytes.
/// How many times a call the gateway refused as made before it restarted is made again:
/// a writ and proof made more than the largest clock skew after the restart always pass.
const RESTART_RETRIES: u64 = writ_token::MAX_SKEW + 1;
/// The wait before each of those tries.
const RESTART_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a gateway's refusal `reason` says the writ or proof was made before the gateway
/// restarted (within its clock skew): a fresh one passes a moment later.
fn predates_restart(reason: &str) -> bool {
    matches!(reason, "dpop_predates_start" | "writ_predates_start")
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Refusal> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| {
        Refusal::sidecar(
            "gateway_unreachable",
            format!("reading the answer: {error}"),
        )
    })? {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(Refusal::sidecar(
                "answer_too_large",
                format!("the answer is larger than {MAX_BODY} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
