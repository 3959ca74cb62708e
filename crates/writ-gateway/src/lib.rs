//! The Writ gateway: the enforcement point in front of the tools.
//!
//! Every request to a route carries `Authorization: DPoP <writ>` and a `DPoP` proof. The
//! gateway forwards it to the route's upstream, with the upstream credential only the
//! gateway holds, when and only when:
//!
//! 1. the revocation feed is fresh (else `revocation_feed_stale`, 503) and the issuer's keys
//!    are known (else `jwks_unavailable`, 503);
//! 2. the writ verifies: its signature by a key from the issuer's JWKS (refetched, rate
//!    limited, on an unknown `kid`), `typ: writ+jwt`, `iss`, `aud` equal to this route's
//!    resource (the public URL and the route's path), `exp`/`nbf` with bounded skew;
//! 3. the proof verifies per RFC 9449 (`htm`, `htu`, `iat`, `ath` of this writ) with the key
//!    the writ is bound to (`cnf.jkt`);
//! 4. nothing it names is revoked: the writ, its mandate, its human, any agent in its chain,
//!    or the key that signed it;
//! 5. the real request is the call the writ allows: the HTTP method and the path below the
//!    route; or, for MCP, the JSON-RPC method, and for `tools/call` the tool name and the
//!    arguments against their constraints;
//! 6. neither the writ nor the proof was used before.
//!
//! Upstreams are HTTP servers (REST APIs and MCP streamable-HTTP endpoints) or MCP servers
//! over stdio that the gateway runs as child processes (see `stdio.rs`).
//!
//! Each decision, allow or deny, goes to the issuer's audit log with a request id (see
//! [`decisions`]). `tools/list` answers are cut down to the tools the writ's mandate grants.
//! Answers stream back unbuffered (SSE included), except `tools/list`, which is filtered.
//!
//! | path | what |
//! |---|---|
//! | `GET /healthz` | 200 when the feed is fresh and the issuer's keys are known, else 503 |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /.well-known/oauth-protected-resource/{route path}` | RFC 9728 metadata per route |
//! | any route path | checked, then forwarded |

pub mod config;
pub mod decisions;
mod deny;
mod feed;
pub mod inputs;
mod keys;
mod mcp;
mod stdio;
mod watch;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri, request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use writ_client::IssuerClient;
use writ_jose::SigningKey;
use writ_scope::{Call, Parameters};
use writ_token::{
    Clock, Expectations, MemoryReplayCache, ProofCheck, ReplayCache, ReplayError, UnverifiedWrit,
    VerifiedWrit, check_proof, use_once,
};

pub use config::{Config, ConfigError, CredentialKind, Limits, RouteKind};
pub use decisions::Decision;

use decisions::Reporter;
use deny::Denial;
use feed::Revocations;
use keys::IssuerKeys;
use mcp::{Discoveries, MandateTools, Message};
use stdio::StdioServer;

pub use writ_client::REQUEST_ID_HEADER;

/// The gateway could not start. Nothing is served.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A credential's secret could not be read.
    #[error("route `{route}`: credential: {message}")]
    Credential {
        /// The route.
        route: String,
        /// Why (never the secret).
        message: String,
    },
    /// The spool directory cannot be written.
    #[error("spool `{path}`: {message}")]
    Spool {
        /// The directory.
        path: String,
        /// Why.
        message: String,
    },
    /// Anything else at start-up.
    #[error("{0}")]
    Setup(String),
}

/// One route, ready to serve.
#[derive(Debug)]
struct Route {
    name: String,
    path: String,
    kind: RouteKind,
    upstream: Upstream,
    /// This route's resource: the `aud` its writs carry.
    resource: writ_token::Audience,
    /// The RFC 9728 metadata URL.
    metadata_url: String,
    /// `writ_gateway_check_duration_seconds` for this route.
    check_duration: metrics::Histogram,
    /// `writ_gateway_upstream_duration_seconds` for this route.
    upstream_duration: metrics::Histogram,
}

/// Where a route's checked requests go.
#[derive(Debug)]
enum Upstream {
    /// An HTTP server: an HTTP API or an MCP streamable-HTTP endpoint.
    Http(HttpUpstream),
    /// An MCP server over stdio, run by the gateway.
    Stdio(StdioServer),
}

#[derive(Debug)]
struct HttpUpstream {
    /// The upstream's scheme and authority.
    origin: String,
    /// The upstream's path, without a trailing `/`.
    path: String,
    /// The credential header, marked sensitive so it is never logged.
    credential: Option<(HeaderName, HeaderValue)>,
}

type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A running gateway's state; [`router`] serves it.
pub struct Gateway {
    public_url: String,
    issuer: writ_token::Audience,
    limits: Limits,
    routes: Vec<Route>,
    clock: Arc<dyn Clock>,
    keys: Arc<IssuerKeys>,
    feed: Arc<Revocations>,
    /// Writ and proof ids already used. Kept in memory: after a restart, ids issued before
    /// it (plus the skew) are refused (see [`writ_token::use_once`]).
    replay: Box<dyn ReplayCache>,
    reporter: Reporter,
    tools: MandateTools,
    discoveries: Discoveries,
    responses: watch::ResponseLimits,
    upstream: UpstreamClient,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("public_url", &self.public_url)
            .field("issuer", &self.issuer)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts a gateway that authenticates to the issuer with `key`: reads the routes'
    /// credentials and the issuer's keys, and starts following the revocation feed and
    /// reporting decisions.
    pub async fn start(
        config: Config,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Gateway>, StartError> {
        let issuer = writ_token::Audience::new(&config.issuer)
            .map_err(|e| StartError::Setup(format!("issuer: {e}")))?;
        let limits = config.limits;
        // Before the routes register their metrics with it.
        writ_metrics::handle();
        let routes = config
            .routes
            .iter()
            .map(|route| build_route(&config.public_url, route, &limits))
            .collect::<Result<Vec<_>, _>>()?;
        for route in &routes {
            if let Upstream::Stdio(server) = &route.upstream {
                server
                    .ensure_started()
                    .await
                    .map_err(|e| StartError::Setup(e.to_string()))?;
            }
        }
        let client = Arc::new(
            IssuerClient::new(&config.issuer, key)
                .map_err(|e| StartError::Setup(e.to_string()))?
                .with_clock(Arc::clone(&clock)),
        );
        let keys = Arc::new(IssuerKeys::new(
            Arc::clone(&client),
            Duration::from_secs(limits.max_jwks_age_secs),
            Duration::from_secs(limits.jwks_refetch_interval_secs),
        ));
        keys.refresh(true).await;
        keys.spawn_refresher();
        let feed = Arc::new(Revocations::new(Duration::from_secs(
            limits.max_feed_staleness_secs,
        )));
        feed.spawn_follower(Arc::clone(&client));
        let bounds = decisions::Bounds {
            spool_after: Duration::from_millis(limits.audit_spool_after_ms),
            max_unrecorded: limits.max_unrecorded_decisions,
        };
        // Read before the reporter opens its spool there.
        let spool_held = match std::fs::read_dir(&config.spool_dir) {
            Ok(mut entries) => entries.next().is_some(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(error) => {
                return Err(StartError::Spool {
                    path: config.spool_dir.display().to_string(),
                    message: error.to_string(),
                });
            }
        };
        let reporter =
            Reporter::start(Arc::clone(&client), &config.spool_dir, bounds).map_err(|e| {
                StartError::Spool {
                    path: config.spool_dir.display().to_string(),
                    message: e.to_string(),
                }
            })?;
        let replay = replay_cache(
            &config.spool_dir,
            spool_held,
            clock.now(),
            limits.replay_cache_entries,
        )
        .map_err(|e| StartError::Spool {
            path: config.spool_dir.display().to_string(),
            message: format!("replay horizon: {e}"),
        })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| StartError::Setup(format!("TLS trust roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let upstream = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let mut gateway = Gateway {
            public_url: config.public_url.clone(),
            issuer,
            limits,
            routes,
            clock,
            keys,
            feed,
            replay: Box::new(replay),
            reporter,
            tools: MandateTools::new(Arc::clone(&client)),
            responses: watch::ResponseLimits::new(
                Arc::clone(&client),
                Duration::from_secs(limits.behaviour_limits_ttl_secs),
            ),
            discoveries: Discoveries::new(client),
            upstream,
        };
        // Longest prefix first.
        gateway
            .routes
            .sort_by_key(|route| std::cmp::Reverse(route.path.len()));
        Ok(Arc::new(gateway))
    }

    /// Whether the revocation feed is fresh and the issuer's keys are known.
    pub fn ready(&self) -> bool {
        self.feed.is_fresh() && self.keys.get().is_ok()
    }

    /// Wakes the decision reporter to drain its spool now.
    pub fn drain_spool(&self) {
        self.reporter.drain_now();
    }

    /// Stops recording: every decision still queued is sent to the issuer or spooled.
    /// Requests that arrive afterwards are refused (`audit_unavailable`).
    pub async fn shutdown(&self) {
        self.reporter.shutdown().await;
        for route in &self.routes {
            if let Upstream::Stdio(server) = &route.upstream {
                server.stop(Duration::from_secs(2)).await;
            }
        }
    }

    /// The route serving `path`, and the rest of the path below it (`/` at least).
    fn route_for<'p>(&self, path: &'p str) -> Option<(&Route, &'p str)> {
        self.routes.iter().find_map(|route| {
            let rest = path.strip_prefix(route.path.as_str())?;
            if rest.is_empty() {
                Some((route, "/"))
            } else if rest.starts_with('/') {
                Some((route, rest))
            } else {
                None
            }
        })
    }
}

/// The file in the spool directory that says a gateway has served from it before, and
/// when the latest one started.
const REPLAY_HORIZON_FILE: &str = "replay-horizon";

/// The replay cache of a gateway starting at `started` over the spool directory `dir`.
///
/// Used ids are kept in memory only, so a gateway that follows an earlier one on the same
/// directory has not seen what that one accepted: its cache refuses every writ and proof
/// issued before it started, plus the skew. The mark is written, and flushed, before any
/// id is accepted. `served_before` says whether `dir` held anything when the gateway
/// started: the mark, or a spool left by a gateway from before the mark existed.
fn replay_cache(
    dir: &std::path::Path,
    served_before: bool,
    started: writ_token::UnixTime,
    capacity: usize,
) -> std::io::Result<MemoryReplayCache> {
    let path = dir.join(REPLAY_HORIZON_FILE);
    let mut file = std::fs::File::create(&path)?;
    std::io::Write::write_all(&mut file, format!("{started}\n").as_bytes())?;
    file.sync_all()?;
    // The mark's directory entry must survive a power loss as well as its bytes.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(if served_before {
        MemoryReplayCache::after_restart(capacity, started)
    } else {
        MemoryReplayCache::new(capacity)
    })
}

fn build_route(
    public_url: &str,
    route: &config::RouteConfig,
    limits: &Limits,
) -> Result<Route, StartError> {
    let setup = |message: String| StartError::Setup(format!("route `{}`: {message}", route.name));
    let resource = writ_token::Audience::new(format!("{public_url}{}", route.path))
        .map_err(|e| setup(format!("resource: {e}")))?;
    let secret = route
        .credential
        .as_ref()
        .map(|credential| read_secret(&route.name, credential).map(|secret| (credential, secret)))
        .transpose()?;
    let upstream = match (&route.upstream, &route.command) {
        (Some(upstream), _) => {
            let uri: Uri = upstream
                .parse()
                .map_err(|e| setup(format!("upstream: {e}")))?;
            let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
                return Err(setup("upstream needs a scheme and host".into()));
            };
            Upstream::Http(HttpUpstream {
                origin: format!("{scheme}://{authority}"),
                path: uri.path().trim_end_matches('/').to_owned(),
                credential: secret
                    .map(|(credential, secret)| credential_header(credential, secret))
                    .transpose()
                    .map_err(setup)?,
            })
        }
        (None, Some(command)) => {
            let (program, args) = command
                .split_first()
                .ok_or_else(|| setup("`command` is empty".into()))?;
            let mut env: Vec<(String, String)> = route
                .env
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            if let Some((credential, secret)) = secret
                && let Some(variable) = &credential.variable
            {
                env.push((variable.clone(), secret));
            }
            Upstream::Stdio(StdioServer::new(stdio::Launch {
                route: route.name.clone(),
                program: program.clone(),
                args: args.to_vec(),
                env,
                max_message_bytes: limits.max_stdio_message_bytes,
                timeout: Duration::from_secs(limits.upstream_timeout_secs),
            }))
        }
        (None, None) => return Err(setup("no `upstream` or `command`".into())),
    };
    Ok(Route {
        name: route.name.clone(),
        path: route.path.clone(),
        kind: route.kind,
        upstream,
        resource,
        metadata_url: format!(
            "{public_url}/.well-known/oauth-protected-resource{}",
            route.path
        ),
        check_duration: metrics::histogram!("writ_gateway_check_duration_seconds", "route" => route.name.clone()),
        upstream_duration: metrics::histogram!("writ_gateway_upstream_duration_seconds", "route" => route.name.clone()),
    })
}

/// A credential's secret, from its environment variable or file.
fn read_secret(route: &str, credential: &config::CredentialConfig) -> Result<String, StartError> {
    let failed = |message: String| StartError::Credential {
        route: route.to_owned(),
        message,
    };
    let secret = match (&credential.env, &credential.file) {
        (Some(variable), None) => std::env::var(variable)
            .map_err(|_| failed(format!("environment variable `{variable}` is not set")))?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| failed(format!("{}: {e}", file.display())))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        _ => return Err(failed("exactly one of `env` or `file` is needed".into())),
    };
    if secret.is_empty() {
        return Err(failed("the secret is empty".into()));
    }
    Ok(secret)
}

/// The header an HTTP upstream's credential travels in, marked sensitive.
fn credential_header(
    credential: &config::CredentialConfig,
    secret: String,
) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = match credential.kind {
        CredentialKind::Bearer => (header::AUTHORIZATION, format!("Bearer {secret}")),
        CredentialKind::Basic => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(secret.as_bytes());
            (header::AUTHORIZATION, format!("Basic {encoded}"))
        }
        CredentialKind::Header => {
            let name = credential
                .header
                .as_deref()
                .and_then(|name| HeaderName::try_from(name).ok())
                .ok_or("credential: a `header` credential needs a valid `header`")?;
            (name, secret)
        }
        CredentialKind::Env => {
            return Err(
                "credential: an `env` credential is for routes that run a `command`".into(),
            );
        }
    };
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| "credential: the secret is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Serves the gateway on `listener` until `stop` resolves, then finishes the requests in
/// flight and records their decisions.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(Arc::clone(&gateway)))
        .with_graceful_shutdown(stop)
        .await?;
    gateway.shutdown().await;
    Ok(())
}

/// The gateway's HTTP service.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/.well-known/oauth-protected-resource/{*path}",
            get(resource_metadata),
        )
        .fallback(handle)
        .with_state(gateway)
}

async fn healthz(State(gateway): State<Arc<Gateway>>) -> Response {
    let feed = gateway.feed.is_fresh();
    let keys = gateway.keys.get().is_ok();
    let status = if feed && keys {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ok" } else { "refusing" },
        "revocation_feed_fresh": feed,
        "issuer_keys": keys,
        "routes": gateway.routes.len(),
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics() -> Response {
    match writ_metrics::handle() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not recorded by this process\n",
        )
            .into_response(),
    }
}

/// RFC 9728 §3: what a client needs to know to call a route.
async fn resource_metadata(
    State(gateway): State<Arc<Gateway>>,
    Path(path): Path<String>,
) -> Response {
    let path = format!("/{path}");
    let Some(route) = gateway.routes.iter().find(|route| route.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not_found", "reason": "unknown_route", "error_description": format!("no route at `{path}`")})),
        )
            .into_response();
    };
    axum::Json(json!({
        "resource": route.resource.as_str(),
        "resource_name": route.name,
        "authorization_servers": [gateway.issuer.as_str()],
        "bearer_methods_supported": ["header"],
        "dpop_bound_access_tokens_required": true,
        "dpop_signing_alg_values_supported": ["EdDSA", "ES256"],
    }))
    .into_response()
}

/// What the checks learned about the request, for the decision record and the reply.
#[derive(Default)]
struct Seen {
    method: String,
    target: String,
    jsonrpc_id: Option<Value>,
    writ: Option<VerifiedWrit>,
}

impl Seen {
    /// On MCP routes, the id a JSON-RPC error answers (`null` before the message was read).
    fn mcp_id(&self, route: &Route) -> Option<&Value> {
        (route.kind == RouteKind::Mcp).then(|| self.jsonrpc_id.as_ref().unwrap_or(&Value::Null))
    }
}

/// An allowed request, ready to forward.
struct Allowed {
    body: Bytes,
    /// For `tools/list`: the tools the mandate grants on this route.
    tools_list: Option<HashSet<String>>,
    /// For a tool call or HTTP request: its name for the behaviour detectors.
    tool: Option<String>,
    /// Measures the answer, once the allow is recorded.
    watch: Option<watch::Watch>,
}

async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = match writ_client::random_jti() {
        Ok(id) => id,
        Err(_) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "random generator failed").into_response();
        }
    };
    let (parts, body) = request.into_parts();
    let Some((route, rest)) = gateway.route_for(parts.uri.path()) else {
        let denial = Denial::status(
            StatusCode::NOT_FOUND,
            "unknown_route",
            format!("no route serves `{}`", parts.uri.path()),
        );
        return with_request_id(denial.respond(None, &request_id, None), &request_id);
    };
    let mut seen = Seen::default();
    let decided = check(&gateway, route, rest, &parts, body, &mut seen).await;
    let now = gateway.clock.now().as_secs();
    let record = |denial: Option<&Denial>| Decision {
        request_id: request_id.clone(),
        time: now,
        decision: if denial.is_some() { "deny" } else { "allow" }.to_owned(),
        reason: denial.map_or("allowed", |d| d.reason).to_owned(),
        message: denial.map(|d| d.message.clone()),
        route: route.name.clone(),
        method: seen.method.clone(),
        target: seen.target.clone(),
        writ: seen.writ.as_ref().map(|w| w.claims().jti.to_string()),
        mandate: seen.writ.as_ref().map(|w| w.claims().mandate.to_string()),
        agent: seen
            .writ
            .as_ref()
            .map(|w| w.claims().cnf.jkt.as_str().to_owned()),
        human: seen.writ.as_ref().map(|w| w.claims().sub.to_string()),
        caller: None,
        tool: None,
        bytes: None,
    };
    // An allow stands only once it can be recorded; the answer to an allowed call is then
    // measured against the agent's baseline.
    let decided = match decided {
        Ok(mut allowed) => {
            let allow = record(None);
            match allowed.tool.take().zip(allow.agent.clone()) {
                None => gateway.reporter.record_allow(allow).map(|()| allowed),
                Some((tool, agent)) => match gateway.reporter.record_allow(allow.clone()) {
                    Err(denial) => Err(denial),
                    Ok(()) => {
                        let limit = gateway.responses.limit(&agent, &tool).await;
                        allowed.watch = Some(watch::Watch {
                            decision: allow,
                            tool,
                            limit,
                            queue: gateway.reporter.queue(),
                        });
                        Ok(allowed)
                    }
                },
            }
        }
        Err(denial) => Err(denial),
    };
    route.check_duration.record(started.elapsed().as_secs_f64());
    let response = match decided {
        Ok(allowed) => forward(&gateway, route, rest, &parts, allowed, &seen, &request_id).await,
        Err(denial) => {
            // A denial stands even when it cannot be recorded.
            let mut decision = record(Some(&denial));
            if seen.writ.is_none() {
                decision.caller = caller_key(&gateway, &parts, now);
            }
            if gateway.reporter.record(decision).is_err() {
                tracing::error!(
                    reason = denial.reason,
                    "could not queue a denial for the audit log"
                );
            }
            tracing::info!(route = %route.name, reason = denial.reason, request_id, "denied");
            denial.respond(seen.mcp_id(route), &request_id, Some(&route.metadata_url))
        }
    };
    metrics::counter!(
        "writ_gateway_requests_total",
        "route" => route.name.clone(),
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    with_request_id(response, &request_id)
}

/// The key a caller turned away without a valid writ proves it holds: its DPoP proof must
/// pass every RFC 9449 check on its own (for this method, URL and time, and the token it
/// came with), without being recorded as used.
fn caller_key(gateway: &Gateway, parts: &axum::http::request::Parts, now: u64) -> Option<String> {
    let proof = single_header(&parts.headers, "dpop").ok()??;
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("DPoP "));
    let uri = format!("{}{}", gateway.public_url, parts.uri.path());
    check_proof(
        proof,
        &ProofCheck {
            method: parts.method.as_str(),
            uri: &uri,
            now: writ_token::UnixTime::from_secs(now),
            max_age: gateway.limits.proof_max_age_secs,
            max_skew: gateway.limits.clock_skew_secs,
            access_token: token,
            nonce: None,
        },
    )
    .ok()
    .map(|checked| checked.jkt().as_str().to_owned())
}

fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The one header of `name`; a repeated header is refused.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Denial> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Denial::bad_request(
            "repeated_header",
            format!("the `{name}` header appears more than once"),
        ));
    }
    first.to_str().map(Some).map_err(|_| {
        Denial::bad_request(
            "malformed_header",
            format!("the `{name}` header is not visible ASCII"),
        )
    })
}

/// Every check, in order; on success the request may be forwarded.
async fn check(
    gateway: &Gateway,
    route: &Route,
    rest: &str,
    parts: &request::Parts,
    body: Body,
    seen: &mut Seen,
) -> Result<Allowed, Denial> {
    let limits = &gateway.limits;
    seen.method = parts.method.as_str().to_owned();
    seen.target = rest.to_owned();
    // One reading of the path, the one every server agrees on: refused, never rewritten.
    // Whether `;` parameters are allowed is the writ's to say, below.
    writ_scope::check_path(parts.uri.path(), Parameters::Allowed).map_err(|error| {
        Denial::bad_request(
            error.code(),
            format!("the request path is refused: {error}"),
        )
    })?;
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(Denial::status(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request headers are {header_bytes} bytes, more than the limit of {}",
                limits.max_header_bytes
            ),
        ));
    }
    let too_large = || {
        Denial::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is larger than the limit of {} bytes",
                limits.max_body_bytes
            ),
        )
    };
    let declared = single_header(&parts.headers, "content-length")?
        .map(|length| length.parse::<usize>())
        .transpose()
        .map_err(|_| Denial::bad_request("malformed_header", "`content-length` is not a number"))?;
    if declared.is_some_and(|length| length > limits.max_body_bytes) {
        return Err(too_large());
    }
    let body = Limited::new(body, limits.max_body_bytes)
        .collect()
        .await
        .map_err(|_| too_large())?
        .to_bytes();

    // What the request is, in the terms writs use.
    let message = match route.kind {
        RouteKind::Mcp => {
            if parts.method != Method::POST {
                return Err(Denial::status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "MCP routes take JSON-RPC messages by POST; this gateway offers no server-initiated stream",
                ));
            }
            // The writ covers the JSON-RPC message, not a path: only the endpoint itself.
            if rest != "/" || parts.uri.query().is_some() {
                return Err(Denial::status(
                    StatusCode::NOT_FOUND,
                    "unknown_route",
                    format!(
                        "an MCP route is one endpoint: `{}` has no paths or query below it",
                        route.path
                    ),
                ));
            }
            check_json_content(&parts.headers, true)?;
            let message = Message::parse(&body)?;
            seen.jsonrpc_id = Some(message.id.clone());
            message.check_headers(&parts.headers)?;
            seen.method.clone_from(&message.method);
            message.target().clone_into(&mut seen.target);
            Some(message)
        }
        RouteKind::Http => {
            check_http_body(&parts.headers, &body)?;
            None
        }
    };

    // Fail closed on stale knowledge.
    if !gateway.feed.is_fresh() {
        return Err(Denial::unavailable(
            "revocation_feed_stale",
            "the gateway has not heard from the issuer's revocation feed recently enough to trust its view",
        ));
    }

    // The writ and its proof.
    let authorization = single_header(&parts.headers, "authorization")?.ok_or_else(|| {
        Denial::missing("this route needs `Authorization: DPoP <writ>` and a `DPoP` proof")
    })?;
    let token = match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") => token.trim(),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => {
            return Err(Denial::token(
                "dpop_required",
                "bearer tokens are not accepted: present the writ as `Authorization: DPoP <writ>` with a proof",
            ));
        }
        _ => {
            return Err(Denial::missing(
                "this route needs `Authorization: DPoP <writ>` and a `DPoP` proof",
            ));
        }
    };
    let proof = single_header(&parts.headers, "dpop")?.ok_or_else(|| {
        Denial::from(writ_token::DpopError::Malformed(
            "the request has no `DPoP` header".into(),
        ))
    })?;
    let now = gateway.clock.now();
    let keys = match gateway.keys.get() {
        Ok(keys) => keys,
        Err(_) => {
            gateway.keys.refresh(false).await;
            gateway.keys.get()?
        }
    };
    let expect = Expectations {
        issuer: &gateway.issuer,
        audience: &route.resource,
        now,
        skew: limits.clock_skew_secs,
    };
    let unverified = UnverifiedWrit::parse(token)?;
    let writ = match unverified.verify(&keys, &expect) {
        Err(writ_token::VerifyError::UnknownKey(_)) if gateway.keys.refresh(false).await => {
            unverified.verify(&*gateway.keys.get()?, &expect)?
        }
        verified => verified?,
    };
    // Kept for the decision record, whatever the later checks say.
    let writ = &*seen.writ.insert(writ);
    let claims = writ.claims();
    let uri = format!("{}{}", gateway.public_url, parts.uri.path());
    let proof = check_proof(
        proof,
        &ProofCheck {
            method: parts.method.as_str(),
            uri: &uri,
            now,
            max_age: limits.proof_max_age_secs,
            max_skew: limits.clock_skew_secs,
            access_token: Some(token),
            nonce: None,
        },
    )?;
    proof.ensure_bound_to(&claims.cnf.jkt)?;

    // Revocation, by everything the writ names.
    let jti = claims.jti.as_str();
    // The cause first: a human offboarded or an agent retired revokes their mandates too,
    // and the refusal names the human or the agent, as the issuer's does.
    let subjects = [
        ("writ", jti),
        ("human", claims.sub.as_str()),
        ("key", writ.kid()),
    ]
    .into_iter()
    .chain(claims.act.chain().map(|agent| ("agent", agent.as_str())))
    .chain(std::iter::once(("mandate", claims.mandate.as_str())));
    if let Some((kind, subject)) = gateway.feed.first_revoked(subjects) {
        let reason = match kind {
            "writ" => "writ_revoked",
            "mandate" => "mandate_revoked",
            "human" => "human_revoked",
            "key" => "key_revoked",
            _ => "agent_revoked",
        };
        return Err(Denial::token(
            reason,
            format!("{kind} `{subject}` has been revoked"),
        ));
    }

    // The real request against the one call the writ allows.
    let call = match &message {
        Some(message) => message.call(&route.name),
        None => Call::HttpRequest {
            server: &route.name,
            method: parts.method.as_str(),
            path: rest,
            query: parts.uri.query(),
        },
    };
    claims.authorization_details.detail().check(&call)?;

    // Single use, once everything else holds.
    proof.record(&*gateway.replay, now)?;
    match use_once(
        &*gateway.replay,
        &format!("writ:{jti}"),
        claims.iat,
        limits.clock_skew_secs,
        claims.exp.plus(limits.clock_skew_secs),
        now,
    ) {
        Ok(()) => {}
        Err(ReplayError::Seen) => {
            return Err(Denial::token(
                "writ_replayed",
                format!("writ `{jti}` was already used: a writ allows one call"),
            ));
        }
        Err(error @ ReplayError::BeforeHorizon { .. }) => {
            return Err(Denial::token(
                "writ_predates_start",
                format!("writ `{jti}` cannot be used here: {error}"),
            ));
        }
        Err(ReplayError::Unavailable(why)) => {
            return Err(Denial::unavailable("replay_cache_unavailable", why));
        }
    }

    let tools_list = match &message {
        Some(message) if message.method == "tools/list" => Some(
            gateway
                .tools
                .granted(claims.mandate.as_str(), &route.name)
                .await?,
        ),
        _ => None,
    };
    let tool = writ_behaviour::tool_name(claims.authorization_details.detail());
    Ok(Allowed {
        body,
        tools_list,
        tool,
        watch: None,
    })
}

/// On HTTP routes the body is not part of the writ, but what frameworks read from a body to
/// change the request is checked: a method override (`_method`, in any letter case) in a
/// form, a multipart form or a JSON object (Rails, Laravel, Spring's
/// `HiddenHttpMethodFilter`, Express's `method-override`) is refused, and a JSON body,
/// whatever its declared type, is read one way only (I-JSON).
fn check_http_body(headers: &HeaderMap, body: &[u8]) -> Result<(), Denial> {
    if body.is_empty() {
        return Ok(());
    }
    // The checks below read the bytes as sent: a server that decompressed them would read
    // a body they never saw.
    if single_header(headers, "content-encoding")?
        .is_some_and(|encoding| !encoding.eq_ignore_ascii_case("identity"))
    {
        return Err(Denial::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type_unsupported",
            "a request body is sent without a `content-encoding`",
        ));
    }
    let overridden = || {
        Denial::bad_request(
            "method_override",
            "the body names `_method`, which frameworks take as the request's method",
        )
    };
    let typed_json = check_json_content(headers, false)?;
    // A server that parses whatever it is sent reads JSON under any type.
    if typed_json || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        let value: Value = writ_jose::from_slice_strict(body)
            .map_err(|error| mcp::json_denial(error, "json_malformed"))?;
        if value.as_object().is_some_and(|members| {
            members
                .keys()
                .any(|name| name.eq_ignore_ascii_case("_method"))
        }) {
            return Err(overridden());
        }
        return Ok(());
    }
    let content_type = single_header(headers, "content-type")?
        .unwrap_or_default()
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let names_method = match essence {
        "application/x-www-form-urlencoded" => body.split(|&b| b == b'&').any(|pair| {
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).replace('+', " ");
            writ_scope::percent_decode(&name)
                .is_some_and(|name| name.eq_ignore_ascii_case(b"_method"))
        }),
        "multipart/form-data" => {
            let text = String::from_utf8_lossy(body).to_ascii_lowercase();
            text.contains("name=\"_method\"") || text.contains("name=_method")
        }
        _ => false,
    };
    if names_method {
        return Err(overridden());
    }
    Ok(())
}

/// Whether the request's body is JSON by its `Content-Type` (`application/json` or a
/// `+json` type, with at most a UTF-8 `charset`). With `required` (MCP routes), a body that
/// is not JSON is refused, and so is a `Content-Encoding`: the gateway reads the bytes it
/// forwards, and a server that decoded them would read something else.
fn check_json_content(headers: &HeaderMap, required: bool) -> Result<bool, Denial> {
    let unsupported = |message: String| {
        Denial::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type_unsupported",
            message,
        )
    };
    let content_type = single_header(headers, "content-type")?.unwrap_or_default();
    let mut parts = content_type.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !json {
        return if required {
            Err(unsupported(format!(
                "an MCP message is sent as `application/json`, not `{}`",
                content_type.escape_default()
            )))
        } else {
            Ok(false)
        };
    }
    let utf8 = |parameter: &str| {
        parameter.split_once('=').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("charset")
                && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
    };
    if !parts.all(utf8) {
        return Err(unsupported(
            "a JSON body is UTF-8, and its content type has no other parameter".into(),
        ));
    }
    if required
        && single_header(headers, "content-encoding")?
            .is_some_and(|encoding| !encoding.eq_ignore_ascii_case("identity"))
    {
        return Err(unsupported(
            "an MCP message is sent without a `content-encoding`".into(),
        ));
    }
    Ok(true)
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), and the
/// agent's own credentials, which stop here.
const NOT_FORWARDED: [&str; 22] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "dpop",
    // A method other than the one checked, or a client address the agent made up.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    // A path other than the one checked: some frameworks route on these instead of the
    // request line (IIS URL Rewrite, Symfony).
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-envoy-original-path",
    // WebDAV's second path, for `MOVE` and `COPY`, which the writ does not name.
    "destination",
    "forwarded",
    "x-real-ip",
];

fn forwardable(name: &HeaderName, connection: &[String]) -> bool {
    let name = name.as_str();
    !NOT_FORWARDED.contains(&name)
        && !name.starts_with("x-forwarded-")
        // MCP's mirrors of tool arguments (SEP-2243 `x-mcp-header`): the gateway does not
        // read tool schemas, so it cannot check them against the body, and forwards only
        // what it checked.
        && !name.starts_with("mcp-param-")
        // CGI and WSGI servers read `X_Original_URL` as `X-Original-URL`: a name with `_`
        // would slip past every name above.
        && !name.contains('_')
        && name != "host"
        && !connection.iter().any(|listed| listed == name)
}

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect()
}

/// A failure past the checks, answered like a denial but not one.
fn upstream_failed(
    route: &Route,
    seen: &Seen,
    request_id: &str,
    status: StatusCode,
    reason: &'static str,
    message: String,
) -> Response {
    Denial::status(status, reason, message).respond(seen.mcp_id(route), request_id, None)
}

async fn forward(
    gateway: &Gateway,
    route: &Route,
    rest: &str,
    parts: &request::Parts,
    allowed: Allowed,
    seen: &Seen,
    request_id: &str,
) -> Response {
    let started = Instant::now();
    let response = match &route.upstream {
        Upstream::Http(upstream) => {
            forward_http(
                gateway, route, upstream, rest, parts, allowed, seen, request_id,
            )
            .await
        }
        Upstream::Stdio(server) => {
            relay_stdio(gateway, server, route, allowed, seen, request_id).await
        }
    };
    route
        .upstream_duration
        .record(started.elapsed().as_secs_f64());
    response
}

/// An allowed message to a stdio MCP server, and its answer as JSON.
async fn relay_stdio(
    gateway: &Gateway,
    server: &StdioServer,
    route: &Route,
    allowed: Allowed,
    seen: &Seen,
    request_id: &str,
) -> Response {
    let failed =
        |status, reason, message| upstream_failed(route, seen, request_id, status, reason, message);
    match server.relay(&allowed.body).await {
        Ok(stdio::Answer::Accepted) => StatusCode::ACCEPTED.into_response(),
        Ok(stdio::Answer::Response(mut answer)) => {
            if let Some(watch) = allowed.watch {
                let bytes = serde_json::to_vec(&answer).map_or(0, |bytes| bytes.len());
                if watch.settle(bytes as u64) {
                    return failed(
                        StatusCode::FORBIDDEN,
                        watch::RESPONSE_VOLUME,
                        format!(
                            "the answer of {bytes} bytes passed this agent's behaviour limit for the tool, and was withheld"
                        ),
                    );
                }
            }
            if let Some(tools) = &allowed.tools_list {
                let mut offered = Vec::new();
                mcp::retain_tools(&mut answer, tools, &mut offered);
                gateway.discoveries.note(&route.name, offered);
            }
            axum::Json(answer).into_response()
        }
        Err(stdio::StdioError::Timeout(seconds)) => failed(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!(
                "the `{}` server did not answer within {seconds} s",
                route.name
            ),
        ),
        Err(error) => {
            tracing::warn!(route = %route.name, %error, "stdio upstream unavailable");
            failed(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                format!("the `{}` server is unavailable: {error}", route.name),
            )
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one request's whole context")]
async fn forward_http(
    gateway: &Gateway,
    route: &Route,
    target: &HttpUpstream,
    rest: &str,
    parts: &request::Parts,
    allowed: Allowed,
    seen: &Seen,
    request_id: &str,
) -> Response {
    let failed =
        |status, reason, message| upstream_failed(route, seen, request_id, status, reason, message);
    let path = if rest == "/" && !target.path.is_empty() {
        target.path.clone()
    } else {
        format!("{}{rest}", target.path)
    };
    let query = parts
        .uri
        .query()
        .map_or_else(String::new, |query| format!("?{query}"));
    let uri = format!("{}{path}{query}", target.origin);
    let mut builder = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(uri);
    let connection = connection_listed(&parts.headers);
    if let Some(headers) = builder.headers_mut() {
        for (name, value) in &parts.headers {
            if forwardable(name, &connection) {
                headers.append(name.clone(), value.clone());
            }
        }
        if allowed.tools_list.is_some() {
            // The answer is read and filtered here: it must come uncompressed.
            headers.remove(header::ACCEPT_ENCODING);
        }
        if let Some((name, value)) = &target.credential {
            headers.insert(name.clone(), value.clone());
        }
    }
    let request = match builder.body(Full::new(allowed.body)) {
        Ok(request) => request,
        Err(error) => {
            return failed(
                StatusCode::BAD_GATEWAY,
                "upstream_request_invalid",
                format!("the upstream request could not be built: {error}"),
            );
        }
    };
    let timeout = Duration::from_secs(gateway.limits.upstream_timeout_secs);
    let response = match tokio::time::timeout(timeout, gateway.upstream.request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::warn!(route = %route.name, %error, "upstream unavailable");
            return failed(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                format!("the `{}` upstream could not be reached", route.name),
            );
        }
        Err(_) => {
            return failed(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "the `{}` upstream did not answer within {} s",
                    route.name,
                    timeout.as_secs()
                ),
            );
        }
    };
    let (mut head, body) = response.into_parts();
    let connection = connection_listed(&head.headers);
    let names: Vec<HeaderName> = head.headers.keys().cloned().collect();
    for name in names {
        if !forwardable(&name, &connection) {
            head.headers.remove(&name);
        }
    }
    let Some(allowed_tools) = allowed.tools_list else {
        return Response::from_parts(head, watch::metered(body, allowed.watch));
    };
    // `tools/list`: read the whole answer (bounded) and filter it.
    let limit = gateway.limits.max_tools_list_bytes;
    let Ok(collected) = Limited::new(body, limit).collect().await else {
        return failed(
            StatusCode::BAD_GATEWAY,
            "upstream_answer_unreadable",
            format!("the `tools/list` answer could not be read within {limit} bytes"),
        );
    };
    let sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    let mut offered = Vec::new();
    let Some(filtered) =
        mcp::filter_tools_list(&collected.to_bytes(), sse, &allowed_tools, &mut offered)
    else {
        return failed(
            StatusCode::BAD_GATEWAY,
            "upstream_answer_unreadable",
            "the `tools/list` answer is not JSON-RPC the gateway can filter".into(),
        );
    };
    gateway.discoveries.note(&route.name, offered);
    head.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(head, Body::from(filtered))
}
