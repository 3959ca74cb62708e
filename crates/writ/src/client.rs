//! A client for the issuer's `/v1` API: every request carries a fresh DPoP proof made with
//! the caller's key (RFC 9449), never a bearer secret. When the issuer requires nonces, the
//! client keeps the newest `DPoP-Nonce` it was given and retries once on `use_dpop_nonce`.

use std::sync::Mutex;

use anyhow::{Context as _, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use writ_jose::SigningKey;
use writ_token::ProofClaims;

use crate::quickstart::random_jti;

/// The largest response body read, in bytes.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A DPoP-authenticated connection to one issuer.
pub(crate) struct IssuerClient {
    base: String,
    key: SigningKey,
    http: reqwest::Client,
    nonce: Mutex<Option<String>>,
}

impl IssuerClient {
    /// A client for the issuer at `base` (its public URL, the `iss` of its tokens).
    pub(crate) fn new(base: &str, key: SigningKey) -> anyhow::Result<IssuerClient> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            // A redirect would carry the single-use proof to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(IssuerClient {
            base: base.trim_end_matches('/').to_owned(),
            key,
            http,
            nonce: Mutex::new(None),
        })
    }

    fn proof(&self, method: &Method, path: &str) -> anyhow::Result<String> {
        let target = format!("{}{}", self.base, path.split('?').next().unwrap_or(path));
        let now = writ_issuer::Clock::now(&writ_issuer::SystemClock);
        let mut claims = ProofClaims::new(method.as_str(), &target, now, random_jti()?);
        if let Some(nonce) = self.nonce.lock().ok().and_then(|nonce| nonce.clone()) {
            claims = claims.with_nonce(&nonce);
        }
        Ok(claims.sign(&self.key)?)
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body (or none).
    pub(crate) async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.send(Method::POST, path, body).await
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut retried = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("dpop", self.proof(&method, path)?);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("{method} {}{path}", self.base))?;
            let status = response.status();
            if let Some(nonce) = response
                .headers()
                .get("dpop-nonce")
                .and_then(|value| value.to_str().ok())
                && let Ok(mut slot) = self.nonce.lock()
            {
                *slot = Some(nonce.to_owned());
            }
            let mut response = response;
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.context("reading the response")? {
                anyhow::ensure!(
                    bytes.len() + chunk.len() <= MAX_RESPONSE,
                    "the response is larger than {MAX_RESPONSE} bytes"
                );
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
            return Err(refusal(status, &value));
        }
    }
}

fn refusal(status: StatusCode, body: &Value) -> anyhow::Error {
    let text = |name| body.get(name).and_then(Value::as_str);
    match (text("reason"), text("error_description")) {
        (Some(reason), Some(description)) => {
            anyhow::anyhow!("the issuer refused ({status}, {reason}): {description}")
        }
        _ => anyhow::anyhow!("the issuer answered {status}: {body}"),
    }
}

/// Reads a public JWK to register: from a keystore file (its public half) or JSON text.
pub(crate) fn public_jwk(
    key_file: Option<&std::path::Path>,
    jwk: Option<&str>,
) -> anyhow::Result<Value> {
    match (key_file, jwk) {
        (Some(path), None) => {
            let key = writ_keystore::load(path)?;
            Ok(serde_json::to_value(key.public_key().to_jwk())?)
        }
        (None, Some(text)) => {
            // Checked here, so a private JWK pasted by mistake never leaves this machine.
            let jwk: writ_jose::Jwk =
                writ_jose::from_slice_strict(text.as_bytes()).context("--jwk is not a JWK")?;
            let key = jwk
                .to_public_key()
                .context("--jwk is not a usable public key")?;
            Ok(serde_json::to_value(key.to_jwk())?)
        }
        (None, None) => bail!("give the key: --key-file PATH (a keystore file) or --jwk JSON"),
        (Some(_), Some(_)) => bail!("give either --key-file or --jwk, not both"),
    }
}
