//! A client for the Writ issuer's API.
//!
//! Every request carries a fresh DPoP proof (RFC 9449) made with the caller's registered
//! key, never a bearer secret. When the issuer requires nonces, the client keeps the newest
//! `DPoP-Nonce` it was given and retries once on `use_dpop_nonce` (§8, §9). Just after a
//! restart the issuer refuses proofs made before it plus its clock skew
//! (`dpop_predates_start`) with `use_dpop_nonce` and a nonce of its own, so that retry
//! passes at once; a server that offers no nonce is asked again with a fresh proof once a
//! second, for at most [`writ_token::MAX_SKEW`] + 1 seconds. It follows no
//! redirects (a redirect would carry the single-use proof to another host) and reads at
//! most [`MAX_RESPONSE`] bytes of any answer.
//!
//! The `writ` command line, the gateway and the sidecar all talk to the issuer through it.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use writ_jose::{KeyError, SigningKey};
use writ_token::{Clock, ProofClaims, SystemClock};

/// The largest response body read, in bytes.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// The response header in which a gateway, and a sidecar after it, name a request for
/// `writ trace`.
pub const REQUEST_ID_HEADER: &str = "writ-request-id";

/// How long one request may take, including a long-polled revocation feed.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait before a fresh proof after `dpop_predates_start`.
const PREDATES_START_RETRY: Duration = Duration::from_secs(1);
/// How many times to retry after `dpop_predates_start`: a proof made more than the
/// largest skew after the issuer's restart is always accepted.
const PREDATES_START_RETRIES: u64 = writ_token::MAX_SKEW + 1;

/// A request to the issuer failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Setup(String),
    /// The proof could not be made.
    #[error("making the DPoP proof: {0}")]
    Key(#[from] KeyError),
    /// The issuer could not be reached, or the connection broke.
    #[error("{target}: {message}")]
    Transport {
        /// The method and URL.
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The answer is larger than [`MAX_RESPONSE`].
    #[error("the issuer's answer is larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    /// The issuer answered with an error.
    #[error("the issuer refused ({status}, {}): {description}", reason.as_deref().unwrap_or("no reason code"))]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// Writ's stable reason code, when the body has one.
        reason: Option<String>,
        /// The issuer's sentence, or the body.
        description: String,
        /// How long to wait before asking again, in seconds, when the refusal says
        /// (`interval`, as in RFC 8628 §3.5: a call held for its agent's owner).
        interval: Option<u64>,
    },
}

/// A DPoP-authenticated connection to one issuer.
pub struct IssuerClient {
    base: String,
    key: SigningKey,
    http: reqwest::Client,
    nonce: Mutex<Option<String>>,
    clock: std::sync::Arc<dyn Clock>,
}

impl std::fmt::Debug for IssuerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerClient")
            .field("base", &self.base)
            .field("key", &self.key.public_key().thumbprint())
            .finish_non_exhaustive()
    }
}

impl IssuerClient {
    /// A client for the issuer at `base` (its public URL, the `iss` of its tokens) that
    /// proves possession of `key`.
    pub fn new(base: &str, key: SigningKey) -> Result<IssuerClient, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| ClientError::Setup(error.to_string()))?;
        Ok(IssuerClient {
            base: base.trim_end_matches('/').to_owned(),
            key,
            http,
            nonce: Mutex::new(None),
            clock: std::sync::Arc::new(SystemClock),
        })
    }

    /// The same client dating its proofs by `clock` (a service's own clock, so that the
    /// times it checks and the times it proves agree).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> IssuerClient {
        self.clock = clock;
        self
    }

    /// The issuer's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The key this client proves possession of.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    fn proof(&self, method: &Method, path: &str) -> Result<String, ClientError> {
        let target = format!("{}{}", self.base, path.split('?').next().unwrap_or(path));
        let mut claims =
            ProofClaims::new(method.as_str(), &target, self.clock.now(), random_jti()?);
        if let Some(nonce) = self.nonce.lock().ok().and_then(|nonce| nonce.clone()) {
            claims = claims.with_nonce(&nonce);
        }
        Ok(claims.sign(&self.key)?)
    }

    /// `GET path` (a path under the base, with any query).
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, Body::None).await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let body = body.map_or(Body::None, Body::Json);
        self.send(Method::POST, path, body).await
    }

    /// `method path` with a JSON body (or none), for the methods `get` and `post` do not
    /// cover (SCIM's `PATCH` and `DELETE`). An empty answer is an empty string.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let body = body.map_or(Body::None, Body::Json);
        self.send(method, path, body).await
    }

    /// A writ for one call (RFC 8693 token exchange at `token_path`, proven with this
    /// client's key, which `mandate` must be bound to): `details` is the JSON array of the one
    /// authorization detail, for the route at `resource`. The issuer's answer; its
    /// `access_token` is the writ.
    pub async fn writ(
        &self,
        token_path: &str,
        mandate: &str,
        resource: &str,
        details: &str,
    ) -> Result<Value, ClientError> {
        self.post_form(
            token_path,
            &[
                ("grant_type", writ_token::TOKEN_EXCHANGE),
                ("subject_token", mandate.trim()),
                ("subject_token_type", writ_token::MANDATE_TOKEN_TYPE),
                ("resource", resource),
                ("authorization_details", details),
            ],
        )
        .await
    }

    /// Delegation (RFC 8693 token exchange at `token_path`, proven with this client's key,
    /// which `mandate` must be bound to): a child mandate for the agent named `delegate`
    /// with `grants`, expiring in `expires_in` seconds or with its parent. The issuer's
    /// answer; its `access_token` is the child mandate.
    pub async fn delegate(
        &self,
        token_path: &str,
        mandate: &str,
        delegate: &str,
        grants: &Value,
        expires_in: Option<u64>,
    ) -> Result<Value, ClientError> {
        let grants = grants.to_string();
        let expires_in = expires_in.map(|seconds| seconds.to_string());
        let mut form = vec![
            ("grant_type", writ_token::TOKEN_EXCHANGE),
            ("subject_token", mandate.trim()),
            ("subject_token_type", writ_token::MANDATE_TOKEN_TYPE),
            ("requested_token_type", writ_token::MANDATE_TOKEN_TYPE),
            ("delegate", delegate),
            ("authorization_details", &grants),
        ];
        form.extend(expires_in.as_deref().map(|seconds| ("expires_in", seconds)));
        self.post_form(token_path, &form).await
    }

    /// `POST path` with a form body (`application/x-www-form-urlencoded`), as the token
    /// endpoint takes it (RFC 8693 §2.1).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, ClientError> {
        self.send(Method::POST, path, Body::Form(form)).await
    }

    async fn send(&self, method: Method, path: &str, body: Body<'_>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut retried = false;
        let mut predates_start = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header("dpop", self.proof(&method, path)?);
            request = match body {
                Body::None => request,
                Body::Json(body) => request.json(body),
                Body::Form(form) => request.form(form),
            };
            let transport = |error: reqwest::Error| ClientError::Transport {
                target: format!("{method} {url}"),
                message: error.to_string(),
            };
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status();
            if let Some(nonce) = response
                .headers()
                .get("dpop-nonce")
                .and_then(|value| value.to_str().ok())
                && let Ok(mut slot) = self.nonce.lock()
            {
                *slot = Some(nonce.to_owned());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if bytes.len() + chunk.len() > MAX_RESPONSE {
                    return Err(ClientError::TooLarge);
                }
                bytes.extend_from_slice(&chunk);
            }
            let value: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            if status.is_success() {
                return Ok(value);
            }
            // RFC 9449 §8, §9: retry once with the nonce the refusal carried.
            if !retried && value.get("error").and_then(Value::as_str) == Some("use_dpop_nonce") {
                retried = true;
                continue;
            }
            // The issuer restarted less than its skew ago: a fresh proof made after that
            // is accepted. The refused request changed nothing.
            if predates_start < PREDATES_START_RETRIES
                && value.get("reason").and_then(Value::as_str) == Some("dpop_predates_start")
            {
                predates_start += 1;
                tokio::time::sleep(PREDATES_START_RETRY).await;
                continue;
            }
            return Err(refusal(status, value));
        }
    }
}

/// What a request carries.
#[derive(Clone, Copy)]
enum Body<'a> {
    None,
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

fn refusal(status: StatusCode, body: Value) -> ClientError {
    let text = |name| body.get(name).and_then(Value::as_str).map(str::to_owned);
    let reason = text("reason");
    let description = text("error_description").unwrap_or_else(|| body.to_string());
    ClientError::Refused {
        status,
        reason,
        description,
        interval: body.get("interval").and_then(Value::as_u64),
    }
}

/// A fresh random `jti` for a proof or token: 128 bits, base64url.
pub fn random_jti() -> Result<String, KeyError> {
    Ok(writ_jose::base64url_encode(writ_jose::random_bytes::<16>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An issuer that has just restarted: it refuses the first `refusals` requests with
    /// `dpop_predates_start`, then answers. Returns its URL and the proofs it was sent.
    async fn restarted_issuer(refusals: usize) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let proofs = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&proofs);
        tokio::spawn(async move {
            for n in 0..=refusals {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0; 16 * 1024];
                let read = stream.read(&mut request).await.unwrap();
                let text = String::from_utf8_lossy(&request[..read]).into_owned();
                let proof = text
                    .lines()
                    .find_map(|line| line.strip_prefix("dpop: "))
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(proof);
                let (status, body) = if n < refusals {
                    (
                        "401 Unauthorized",
                        r#"{"error":"invalid_dpop_proof","reason":"dpop_predates_start"}"#,
                    )
                } else {
                    ("200 OK", r#"{"ok":true}"#)
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.unwrap();
            }
        });
        (url, proofs)
    }

    #[tokio::test]
    async fn a_proof_refused_as_made_before_a_restart_is_retried_fresh() {
        let (url, proofs) = restarted_issuer(2).await;
        let key = SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
        let client = IssuerClient::new(&url, key).unwrap();
        let answer = client.get("/v1/agents").await.unwrap();
        assert_eq!(answer["ok"], true);
        let proofs = proofs.lock().unwrap().clone();
        assert_eq!(proofs.len(), 3);
        assert!(proofs.iter().all(|proof| !proof.is_empty()));
        assert!(
            proofs[0] != proofs[1] && proofs[1] != proofs[2],
            "each try has a fresh proof"
        );
    }

    #[test]
    fn a_refusal_keeps_its_reason_sentence_and_retry_interval() {
        let body = serde_json::json!({
            "error": "authorization_pending", "reason": "approval_pending",
            "error_description": "held for its owner", "interval": 5, "approval": "apr_x"
        });
        let ClientError::Refused {
            status,
            reason,
            description,
            interval,
        } = refusal(StatusCode::BAD_REQUEST, body)
        else {
            panic!("not a refusal");
        };
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reason.as_deref(), Some("approval_pending"));
        assert_eq!(description, "held for its owner");
        assert_eq!(interval, Some(5));
        // A body that is not Writ's own is its own description.
        let ClientError::Refused {
            reason,
            description,
            interval,
            ..
        } = refusal(StatusCode::BAD_GATEWAY, Value::String("upstream".into()))
        else {
            panic!("not a refusal");
        };
        assert_eq!((reason, interval), (None, None));
        assert_eq!(description, "\"upstream\"");
    }
}
