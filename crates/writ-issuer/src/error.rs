//! The one mapping from refusals to HTTP responses.
//!
//! Every refusal has an OAuth error (RFC 6749 §5.2, RFC 9449 §7, RFC 9396 §5, RFC 8707),
//! a stable Writ reason code, and a sentence a person understands:
//!
//! ```json
//! {"error": "invalid_grant", "reason": "mandate_revoked",
//!  "error_description": "mandate mnd_... was revoked: task finished"}
//! ```
//!
//! Internal causes (store failures) are logged, and the response says only what the client
//! needs: that the issuer could not record the request, so nothing was issued.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use writ_store::StoreError;
use writ_token::{DpopError, VerifyError};

/// A refusal.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    reason: &'static str,
    message: String,
    /// Members added to the body, such as the approval to wait for (boxed: most refusals
    /// have none, and errors stay small).
    fields: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    reason: &'a str,
    error_description: &'a str,
    #[serde(flatten)]
    fields: &'a serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// A refusal with an explicit status, OAuth error, reason code and sentence.
    pub fn new(
        status: StatusCode,
        error: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            error,
            reason,
            message: message.into(),
            fields: None,
        }
    }

    /// The same refusal with one more member in its body.
    pub fn with_field(mut self, name: &str, value: serde_json::Value) -> Self {
        self.fields
            .get_or_insert_default()
            .insert(name.to_owned(), value);
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", reason, message)
    }

    /// 400 `invalid_grant`: the mandate cannot be used.
    pub fn invalid_grant(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_grant", reason, message)
    }

    /// 403 `access_denied`.
    pub fn denied(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "access_denied", reason, message)
    }

    /// 404.
    pub fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", reason, message)
    }

    /// 503: the audit log or store cannot record, so nothing was done.
    pub fn unavailable(cause: &StoreError) -> Self {
        tracing::error!(error = %cause, "store unavailable; refusing the request");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "audit_log_unavailable",
            "the issuer could not record this request in its audit log, so it did nothing",
        )
    }

    /// The same refusal as a token endpoint gives it: RFC 9449 §5 and §8 answer a bad
    /// proof there with 400 (`invalid_dpop_proof`, `use_dpop_nonce`), not a 401 challenge.
    pub fn at_token_endpoint(mut self) -> Self {
        if self.status == StatusCode::UNAUTHORIZED {
            self.status = StatusCode::BAD_REQUEST;
        }
        self
    }

    /// The same refusal with another sentence.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// The sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Conflict(message) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "already_exists",
                message.clone(),
            ),
            StoreError::NotFound(message) => ApiError::not_found("not_found", message.clone()),
            StoreError::Invalid(message) => {
                ApiError::invalid_request("invalid_reference", message.clone())
            }
            StoreError::Unavailable(_) | StoreError::Corrupt(_) => ApiError::unavailable(&error),
        }
    }
}

impl From<DpopError> for ApiError {
    fn from(error: DpopError) -> Self {
        let status = match error {
            DpopError::ReplayCacheUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, error.oauth_error(), error.code(), error.to_string())
    }
}

/// A mandate that fails verification at the token endpoint is an `invalid_grant`.
pub fn mandate_error(error: VerifyError) -> ApiError {
    ApiError::invalid_grant(error.code(), format!("mandate refused: {error}"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let none = serde_json::Map::new();
        let body = Body {
            error: self.error,
            reason: self.reason,
            error_description: &self.message,
            fields: self.fields.as_deref().unwrap_or(&none),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9449 §7.1: challenge with the error and the algorithms accepted.
            let challenge = format!("DPoP error=\"{}\", algs=\"EdDSA ES256\"", self.error);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The most of a refusal's plain-text body kept as its sentence.
const MAX_PLAIN_REFUSAL: usize = 1024;

/// Names every refusal that no handler wrote: no such route, a method the route does not
/// serve, a body over the limit, a path or query string the route cannot read (axum's
/// extractors answer those in plain text). Each gets an OAuth error, a stable reason code
/// and a sentence like any other refusal, in SCIM's error form under `/scim/`.
pub(crate) async fn name_every_refusal(request: Request, next: Next) -> Response {
    let scim = request.uri().path().starts_with("/scim/");
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("application/scim+json")
        });
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_REFUSAL)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let refusal = match status {
        StatusCode::NOT_FOUND => ApiError::not_found("unknown_route", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "invalid_request",
            "method_not_allowed",
            "this route does not serve that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "invalid_request",
            "body_too_large",
            format!("the request body is over {} bytes", crate::MAX_BODY),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "invalid_request",
            "unsupported_media_type",
            non_empty(text, "the request's content type is not accepted here"),
        ),
        _ if status.is_server_error() => ApiError::new(
            status,
            "server_error",
            "internal_error",
            "the issuer failed to answer this request",
        ),
        _ => ApiError::new(
            status,
            "invalid_request",
            "malformed_request",
            non_empty(text, "the request's path or query string cannot be read"),
        ),
    };
    let mut named = if scim {
        crate::scim::refusal(refusal.status(), refusal.reason(), refusal.message())
    } else {
        refusal.into_response()
    };
    // Keep what the refusal said in its headers (`Allow` of a 405, for one).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            named.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    named
}

fn non_empty(text: String, otherwise: &str) -> String {
    if text.is_empty() {
        otherwise.to_owned()
    } else {
        text
    }
}
