//! Prometheus metrics at `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `writ_http_requests_total` | counter | `route`, `status` |
//! | `writ_http_request_duration_seconds` | histogram | `route` |
//! | `writ_writs_issued_total` | counter | |
//! | `writ_token_refusals_total` | counter | `reason` |
//! | `writ_mandates_granted_total` | counter | |
//! | `writ_revocations_total` | counter | `kind` |
//! | `writ_policy_reloads_total` | counter | `outcome` (`changed`, `unchanged`, `refused`) |
//! | `writ_key_rotations_total` | counter | |
//! | `writ_audit_log_leaves` | gauge | |
//! | `writ_gateway_decisions_total` | counter | |
//!
//! The counts carry no identities or secrets: routes are templates (`/v1/audit/leaves/{index}`),
//! reasons are stable codes. The recorder is process-wide; a process that already installed
//! another `metrics` recorder gets 404 here and keeps its own.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Issuer;

/// Counts every request by route template and status, and times it.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("writ_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("writ_http_requests_total", "route" => route, "status" => status)
        .increment(1);
    response
}

/// `GET /metrics`: the Prometheus text exposition.
pub(crate) async fn render(State(issuer): State<Arc<Issuer>>) -> Response {
    let Some(handle) = writ_metrics::handle() else {
        return crate::error::ApiError::not_found(
            "metrics_not_recorded",
            "metrics are not recorded by this process",
        )
        .into_response();
    };
    #[expect(
        clippy::cast_precision_loss,
        reason = "a gauge is an f64; the log stays far below 2^53 leaves"
    )]
    let leaves = issuer.store.tree_head().size as f64;
    metrics::gauge!("writ_audit_log_leaves").set(leaves);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
