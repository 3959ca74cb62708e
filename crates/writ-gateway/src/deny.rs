//! Refusals: a stable reason code, a sentence a person understands, and the HTTP shape
//! (RFC 9449 §7.1 and RFC 6750 §3 challenges; a JSON-RPC error on MCP routes).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use writ_scope::Mismatch;
use writ_token::{DpopError, VerifyError};

/// The JSON-RPC error code for a call the gateway refused (implementation-defined range).
pub const JSONRPC_DENIED: i64 = -32001;

/// A request the gateway refuses.
#[derive(Debug, Clone)]
pub struct Denial {
    /// The HTTP status.
    pub status: StatusCode,
    /// The OAuth error for the challenge, when the status has one.
    pub error: Option<&'static str>,
    /// Writ's stable reason code.
    pub reason: &'static str,
    /// The sentence shown to the caller and recorded.
    pub message: String,
}

impl Denial {
    fn new(
        status: StatusCode,
        error: Option<&'static str>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Denial {
        Denial {
            status,
            error,
            reason,
            message: message.into(),
        }
    }

    /// No writ was presented (RFC 6750 §3.1: the challenge carries no error).
    pub fn missing(message: impl Into<String>) -> Denial {
        Denial::new(StatusCode::UNAUTHORIZED, None, "missing_writ", message)
    }

    /// The writ itself is unacceptable.
    pub fn token(reason: &'static str, message: impl Into<String>) -> Denial {
        Denial::new(
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            reason,
            message,
        )
    }

    /// The call is outside what the writ allows.
    pub fn scope(reason: &'static str, message: impl Into<String>) -> Denial {
        Denial::new(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            reason,
            message,
        )
    }

    /// The request is malformed.
    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Denial {
        Denial::new(
            StatusCode::BAD_REQUEST,
            Some("invalid_request"),
            reason,
            message,
        )
    }

    /// The gateway cannot decide safely right now, so it refuses (fail closed).
    pub fn unavailable(reason: &'static str, message: impl Into<String>) -> Denial {
        Denial::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable"),
            reason,
            message,
        )
    }

    /// A status with no OAuth meaning, such as 404, 413 or 502.
    pub fn status(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Denial {
        Denial::new(status, None, reason, message)
    }

    /// The whole answer: on MCP routes (`mcp_id` is the request's JSON-RPC id) a JSON-RPC
    /// error an MCP client can show, elsewhere a JSON body; with a challenge when the
    /// status calls for one.
    pub(crate) fn respond(
        &self,
        mcp_id: Option<&Value>,
        request_id: &str,
        resource_metadata: Option<&str>,
    ) -> Response {
        let body = match mcp_id {
            Some(id) => self.jsonrpc(id, request_id),
            None => self.body(request_id),
        };
        self.response(&body, resource_metadata)
    }

    fn jsonrpc(&self, id: &Value, request_id: &str) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": JSONRPC_DENIED,
                "message": format!("denied: {}", self.message),
                "data": {"reason": self.reason, "request_id": request_id},
            }
        })
    }

    fn response(&self, body: &Value, resource_metadata: Option<&str>) -> Response {
        let mut response = (self.status, axum::Json(body)).into_response();
        if matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            let mut challenge = String::from("DPoP algs=\"EdDSA ES256\"");
            if let Some(error) = self.error {
                challenge.push_str(&format!(", error=\"{error}\""));
                // The sentence is ours and plain; keep the header to safe characters.
                let description: String = self
                    .message
                    .chars()
                    .filter(|c| matches!(c, ' '..='~') && !matches!(c, '"' | '\\'))
                    .collect();
                challenge.push_str(&format!(", error_description=\"{description}\""));
            }
            if let Some(url) = resource_metadata {
                challenge.push_str(&format!(", resource_metadata=\"{url}\""));
            }
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }

    fn body(&self, request_id: &str) -> Value {
        json!({
            "error": self.error.unwrap_or("request_refused"),
            "reason": self.reason,
            "error_description": self.message,
            "request_id": request_id,
        })
    }
}

impl From<VerifyError> for Denial {
    fn from(error: VerifyError) -> Denial {
        Denial::token(error.code(), format!("the writ is not acceptable: {error}"))
    }
}

impl From<DpopError> for Denial {
    fn from(error: DpopError) -> Denial {
        if let DpopError::ReplayCacheUnavailable(_) = error {
            return Denial::unavailable(error.code(), error.to_string());
        }
        Denial::new(
            StatusCode::UNAUTHORIZED,
            Some(error.oauth_error()),
            error.code(),
            error.to_string(),
        )
    }
}

impl From<Mismatch> for Denial {
    fn from(mismatch: Mismatch) -> Denial {
        Denial::scope(
            mismatch.code(),
            format!("the writ does not allow this call: {mismatch}"),
        )
    }
}
