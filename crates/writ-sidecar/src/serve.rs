//! What the agent connects to: MCP over stdio, MCP over streamable HTTP on a loopback port,
//! or a plain HTTP forwarder.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::{MAX_BODY, Sidecar};

/// Serves MCP on standard input and output (newline-delimited JSON-RPC, as MCP's stdio
/// transport defines it) until standard input closes. Messages are handled concurrently;
/// each answer is written as one line. Returns once every answer is written.
pub async fn serve_stdio(sidecar: Arc<Sidecar>) -> std::io::Result<()> {
    let (answers, mut to_write) = tokio::sync::mpsc::channel::<Value>(64);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(answer) = to_write.recv().await {
            let mut line = answer.to_string().into_bytes();
            line.push(b'\n');
            stdout.write_all(&line).await?;
            stdout.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut calls = tokio::task::JoinSet::new();
    let limit = u64::try_from(MAX_BODY).unwrap_or(u64::MAX);
    loop {
        let mut line = Vec::new();
        if (&mut stdin)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?
            == 0
        {
            break;
        }
        if line.last() != Some(&b'\n') && line.len() >= MAX_BODY {
            // A message this long is refused whole: the stream cannot be resynchronized.
            return Err(std::io::Error::other(format!(
                "a message on standard input is longer than {MAX_BODY} bytes"
            )));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let sidecar = Arc::clone(&sidecar);
        let answers = answers.clone();
        calls.spawn(async move {
            for answer in sidecar.relay(&line, None).await.messages {
                if answers.send(answer).await.is_err() {
                    break;
                }
            }
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    drop(answers);
    writer.await.map_err(std::io::Error::other)?
}

/// MCP over streamable HTTP at `/mcp`, for agents that connect by URL, and `POST /delegate`
/// for a child mandate for a sub-agent. The sidecar keeps
/// no session with the agent: every `POST` is answered on its own, with JSON (or an event
/// stream when the server sent notifications before the answer). Serve it on a loopback
/// address only; requests whose `Host` or `Origin` is not loopback are refused.
pub fn mcp_router(sidecar: Arc<Sidecar>) -> Router {
    Router::new()
        .route(
            "/mcp",
            axum::routing::post(mcp_post)
                .get(no_stream)
                .delete(no_stream),
        )
        .route("/delegate", axum::routing::post(delegate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(loopback_only))
        .with_state(sidecar)
}

/// A plain HTTP forwarder: every request, whatever its path, goes to the gateway route
/// under the same path with a writ for exactly that method and path. Loopback only, as
/// [`mcp_router`].
pub fn http_router(sidecar: Arc<Sidecar>) -> Router {
    Router::new()
        .fallback(forward)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(loopback_only))
        .with_state(sidecar)
}

async fn mcp_post(
    State(sidecar): State<Arc<Sidecar>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protocol = headers
        .get("mcp-protocol-version")
        .and_then(|value| value.to_str().ok());
    let relayed = sidecar.relay(&body, protocol).await;
    let mut answers = relayed.messages;
    let mut response = match answers.len() {
        0 => StatusCode::ACCEPTED.into_response(),
        1 => axum::Json(answers.remove(0)).into_response(),
        _ => {
            let stream: String = answers
                .iter()
                .map(|answer| format!("event: message\ndata: {answer}\n\n"))
                .collect();
            ([(header::CONTENT_TYPE, "text/event-stream")], stream).into_response()
        }
    };
    if let Some(id) = relayed.request_id
        && let Ok(value) = header::HeaderValue::from_str(&id)
    {
        response
            .headers_mut()
            .insert(crate::REQUEST_ID_HEADER, value);
    }
    response
}

/// What the agent asks for at `POST /delegate`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateRequest {
    /// The sub-agent's registered name.
    to: String,
    /// Its grants, each within the sidecar's mandate.
    grants: Value,
    /// Seconds until it expires; with the mandate when absent.
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `POST /delegate`: a child mandate for a sub-agent the agent starts, as the issuer
/// answers it (`access_token` is the child mandate, bound to the sub-agent's key), or the
/// refusal with its reason.
async fn delegate(State(sidecar): State<Arc<Sidecar>>, body: Bytes) -> Response {
    let request: DelegateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"error": "invalid_request", "reason": "invalid_body",
                    "error_description": format!("expected {{\"to\", \"grants\", \"expires_in\"?}}: {error}")})),
            )
                .into_response();
        }
    };
    match sidecar
        .delegate(&request.to, &request.grants, request.expires_in)
        .await
    {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => (
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY),
            axum::Json(
                serde_json::json!({"error": "delegation_refused", "reason": error.reason,
                "error_description": error.message, "denied_by": error.by}),
            ),
        )
            .into_response(),
    }
}

/// The sidecar opens no server-to-client stream and keeps no session to end.
async fn no_stream() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn forward(
    State(sidecar): State<Arc<Sidecar>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sidecar.forward(method, &uri, &headers, body).await
}

/// Refuses requests that do not come from this machine by name: a web page the user opens
/// can reach a loopback port, but its `Origin` (and, through DNS rebinding, its `Host`)
/// gives it away. MCP's transport rules ask servers to check both.
async fn loopback_only(request: Request, next: Next) -> Response {
    if !from_loopback(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "the sidecar answers only clients on this machine: Host and Origin must be localhost, 127.0.0.1 or [::1]\n",
        )
            .into_response();
    }
    next.run(request).await
}

fn from_loopback(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    let host = text(header::HOST).and_then(|host| url::Url::parse(&format!("http://{host}")).ok());
    let origin = match text(header::ORIGIN) {
        None => true,
        Some(origin) => url::Url::parse(origin).is_ok_and(|url| is_loopback(&url)),
    };
    host.is_some_and(|url| is_loopback(&url)) && origin
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
