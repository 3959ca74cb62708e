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

use axum::http::{HeaderValue, StatusCode, header};
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
