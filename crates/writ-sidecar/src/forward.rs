//! Forward mode: the agent calls a plain HTTP API through the sidecar. Each request earns
//! a writ for its method, path and query, then goes to the gateway route with the same path
//! and query, byte for byte. Paths not in normal form and ambiguous queries are refused
//! (see `writ_scope::check_path` and `writ_scope::parse_query`), never rewritten.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use writ_scope::{AuthorizationDetail, Constraint, HttpMethod, Parameters, PathPattern};

use crate::{Refusal, Sidecar, read_capped, with_granted_datatypes};

/// Request headers that stay between the agent and the sidecar: hop-by-hop headers (RFC
/// 9110 §7.6.1), the sidecar's own host, and any credential or proof the agent might send.
const LOCAL_HEADERS: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "authorization",
    "proxy-authorization",
    "dpop",
    "cookie",
];

impl Sidecar {
    /// Forwards one HTTP request to the gateway route with a writ for exactly its method
    /// and path.
    pub(crate) async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = uri.path();
        match self.forward_checked(&method, uri, headers, body).await {
            Ok(response) => {
                tracing::info!(%method, path, status = response.status().as_u16(), "allowed");
                response
            }
            Err(refusal) => {
                tracing::info!(%method, path, by = refusal.by, reason = %refusal.reason, "refused: {}", refusal.message);
                let status =
                    StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let body = json!({
                    "error": "request_refused",
                    "reason": refusal.reason,
                    "error_description": refusal.explain(&format!("{method} {path}")),
                    "denied_by": refusal.by,
                });
                (status, axum::Json(body)).into_response()
            }
        }
    }

    async fn forward_checked(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, Refusal> {
        let invalid = |message: String| Refusal::new("sidecar", 400, "invalid_request", message);
        let (mandate, claims) = self.mandate()?;
        let http_method =
            HttpMethod::new(method.as_str()).map_err(|error| invalid(error.to_string()))?;
        // The writ names exactly this path and query, read the one way the gateway reads
        // them; what it refuses is refused here first, with its reason.
        let form =
            |code: &'static str, message: String| Refusal::new("sidecar", 400, code, message);
        writ_scope::check_path(uri.path(), Parameters::Allowed)
            .map_err(|error| form(error.code(), error.to_string()))?;
        if uri.path().contains('*') {
            return Err(form(
                "path_wildcard",
                "a `*` in a forwarded path would be a wildcard in the writ: encode it as `%2A`"
                    .into(),
            ));
        }
        let path = PathPattern::new(uri.path()).map_err(|error| invalid(error.to_string()))?;
        let query = uri
            .query()
            .filter(|query| !query.is_empty())
            .map(writ_scope::parse_query)
            .transpose()
            .map_err(|error| form(error.code(), error.to_string()))?
            .map(|pairs| Constraint::Exact(Value::Object(pairs)));
        let detail =
            with_granted_datatypes(&claims, |datatypes| AuthorizationDetail::HttpRequest {
                server: self.server.clone(),
                methods: BTreeSet::from([http_method.clone()]),
                path: path.clone(),
                query: query.clone(),
                datatypes,
            });
        let mut retries = 0;
        loop {
            let writ = self
                .writ(&mandate, &detail)
                .await
                .map_err(|refusal| refusal.about(&claims))?;
            let target = uri.path_and_query().map_or(uri.path(), |all| all.as_str());
            let mut request =
                self.gateway_request(method, &format!("{}{target}", self.route), &writ)?;
            for (name, value) in headers {
                if !LOCAL_HEADERS.contains(&name.as_str()) {
                    request = request.header(name, value);
                }
            }
            let response = self.send_to_gateway(request.body(body.clone())).await?;
            let status = response.status();
            let mut answer = HeaderMap::new();
            for (name, value) in response.headers() {
                if !LOCAL_HEADERS.contains(&name.as_str()) && name != header::SET_COOKIE {
                    answer.append(name, value.clone());
                }
            }
            let answer_body = read_capped(response).await?;
            // The gateway restarted moments ago: a fresh writ and proof pass once its skew
            // has passed. The refused request changed nothing.
            if status == StatusCode::UNAUTHORIZED
                && retries < crate::RESTART_RETRIES
                && serde_json::from_slice::<Value>(&answer_body).is_ok_and(|answer| {
                    answer
                        .get("reason")
                        .and_then(Value::as_str)
                        .is_some_and(crate::predates_restart)
                })
            {
                retries += 1;
                tokio::time::sleep(crate::RESTART_RETRY).await;
                continue;
            }
            return Ok((status, answer, answer_body).into_response());
        }
    }
}
