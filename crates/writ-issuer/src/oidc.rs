//! Binding a key to a human by an OIDC ID token from a configured identity provider.
//!
//! A human registered with their IdP identity (`oidc_issuer`, `oidc_subject`) but no key
//! makes a key, then `POST /v1/humans/bind` with a DPoP proof by that key and an ID token
//! whose `nonce` is the key's RFC 7638 thumbprint. The nonce ties the IdP's login to this
//! key: a token captured in transit cannot bind another. The token must come from a
//! configured provider (signature by its JWKS, from a file or URL, refreshed when an unknown
//! `kid` appears, at most every 30 s), name the configured client in `aud`, be unexpired,
//! and is accepted once. The binding is an audit leaf.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_jose::{IdpKeySet, UnverifiedJws};
use writ_store::{HumanKeyRecord, Write};
use writ_token::{MAX_TOKEN_LEN, UnixTime};

use crate::audit::record;
use crate::auth::proof;
use crate::error::ApiError;
use crate::inventory::{fresh_key, parse_json};
use crate::{Issuer, seconds};

/// How often a provider's keys may be fetched again for an unknown `kid`.
const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// How long fetched keys are trusted before they are fetched again, so a key the provider
/// withdrew stops verifying.
const KEY_MAX_AGE: Duration = Duration::from_secs(3600);

/// A trusted OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// Its issuer identifier, as in the ID token's `iss`.
    pub issuer: String,
    /// Writ's client id at that provider, which the ID token's `aud` must name.
    pub client_id: String,
    /// Its JWKS in a file.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Its JWKS at a URL.
    #[serde(default)]
    pub jwks_url: Option<String>,
}

/// The largest JWKS document read from a provider, in bytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A provider with the keys fetched for it.
pub(crate) struct Provider {
    config: OidcProvider,
    /// Held across a fetch, so concurrent binds fetch once.
    cache: tokio::sync::Mutex<KeyCache>,
    http: reqwest::Client,
}

#[derive(Default)]
struct KeyCache {
    keys: Option<Arc<IdpKeySet>>,
    /// When `keys` were fetched.
    fetched: Option<Instant>,
    /// The last fetch attempt, successful or not: no provider is asked more often than
    /// [`REFRESH_INTERVAL`], whatever callers send.
    attempted: Option<Instant>,
}

impl Provider {
    pub(crate) fn new(config: OidcProvider) -> Result<Provider, String> {
        if config.jwks_file.is_some() == config.jwks_url.is_some() {
            return Err(format!(
                "OIDC provider `{}`: give exactly one of jwks_file and jwks_url",
                config.issuer
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Provider {
            config,
            cache: tokio::sync::Mutex::new(KeyCache::default()),
            http,
        })
    }

    async fn fetch(&self) -> Result<IdpKeySet, String> {
        let too_large = || format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes");
        let bytes = match (&self.config.jwks_file, &self.config.jwks_url) {
            (Some(path), _) => {
                std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            (None, Some(url)) => {
                let mut response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("{url} answered {}", response.status()));
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                    if bytes.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                bytes
            }
            (None, None) => return Err("no JWKS source".to_owned()),
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        IdpKeySet::from_jwks_json(&bytes).map_err(|e| e.to_string())
    }

    /// The keys, fetched again when `kid` is unknown and the last attempt is old enough.
    async fn keys_for(&self, kid: &str) -> Result<Arc<IdpKeySet>, ApiError> {
        let mut cache = self.cache.lock().await;
        let due = cache
            .attempted
            .is_none_or(|attempted| attempted.elapsed() >= REFRESH_INTERVAL);
        let known = cache.keys.as_ref().is_some_and(|keys| keys.contains(kid));
        let stale = cache
            .fetched
            .is_none_or(|fetched| fetched.elapsed() >= KEY_MAX_AGE);
        if due && (!known || stale) {
            cache.attempted = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    cache.keys = Some(Arc::new(keys));
                    cache.fetched = cache.attempted;
                }
                Err(error) => {
                    tracing::error!(issuer = %self.config.issuer, %error, "identity provider keys unavailable");
                }
            }
        }
        cache.keys.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "idp_keys_unavailable",
                format!("the keys of `{}` could not be fetched", self.config.issuer),
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindRequest {
    id_token: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audiences {
    One(String),
    Many(Vec<String>),
}

/// The ID token claims Writ reads (OpenID Connect Core §2); others are ignored.
#[derive(Deserialize)]
struct IdClaims {
    iss: String,
    sub: String,
    aud: Audiences,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nonce: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Bound {
    human: String,
    jkt: String,
    log_index: u64,
}

fn refused(reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_grant", reason, message)
}

/// `POST /v1/humans/bind`.
pub(crate) async fn bind(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Bound>), ApiError> {
    // The proof is by the key to bind, which is not registered yet.
    let proof = proof(&issuer, &method, "/v1/humans/bind", &headers, None)?;
    let request: BindRequest = parse_json(&body)?;
    let now = issuer.now();
    let jws = UnverifiedJws::parse(&request.id_token, MAX_TOKEN_LEN)
        .map_err(|e| refused("invalid_id_token", format!("ID token: {e}")))?;
    #[derive(Deserialize)]
    struct Unverified {
        iss: String,
    }
    let claimed: Unverified = writ_jose::from_slice_strict(jws.unverified_payload())
        .map_err(|e| refused("invalid_id_token", format!("ID token claims: {e}")))?;
    let provider = issuer
        .oidc
        .iter()
        .find(|provider| provider.config.issuer == claimed.iss)
        .ok_or_else(|| {
            refused(
                "unknown_idp",
                format!(
                    "`{}` is not a configured identity provider",
                    claimed.iss.chars().take(256).collect::<String>()
                ),
            )
        })?;
    let kid = jws.header().kid().unwrap_or_default();
    let keys = provider.keys_for(kid).await?;
    let payload = keys
        .verify(&jws)
        .map_err(|e| refused("invalid_id_token", format!("ID token: {e}")))?;
    let claims: IdClaims = writ_jose::from_slice_strict(payload)
        .map_err(|e| refused("invalid_id_token", format!("ID token claims: {e}")))?;
    check_claims(
        &claims,
        &provider.config,
        proof.jkt().as_str(),
        now,
        issuer.settings.skew,
    )?;
    // The proof is recorded once the ID token vouches for its key.
    let key = proof.public_key().to_jwk();
    crate::auth::record(&issuer, proof)?;
    // OIDC Core §3.1.3.7 does not make ID tokens single use; Writ does, until they expire.
    // Keyed on what was signed, not on the signature: an ECDSA signature `(r, s)` has a
    // twin `(r, n - s)` that verifies too, and would make the token look new.
    let signed = request
        .id_token
        .rsplit_once('.')
        .map_or(request.id_token.as_str(), |(signed, _)| signed);
    let digest = writ_jose::base64url_encode(writ_jose::sha256(signed.as_bytes()));
    // An ID token without `iat` (OIDC Core §2 requires one) counts as issued at the epoch.
    writ_token::use_once(
        &*issuer.replay,
        &format!("id_token:{digest}"),
        UnixTime::from_secs(claims.iat.unwrap_or_default()),
        issuer.settings.skew,
        UnixTime::from_secs(claims.exp),
        now,
    )
    .map_err(|error| match error {
        writ_token::ReplayError::BeforeHorizon { .. } => refused(
            "id_token_predates_start",
            format!("this ID token cannot be used here: {error}"),
        ),
        _ => refused("id_token_replayed", "this ID token was used before"),
    })?;

    let human = issuer
        .store
        .human_by_oidc(&claims.iss, &claims.sub)
        .ok_or_else(|| {
            ApiError::denied(
                "unknown_human",
                format!(
                    "no human is registered for subject `{}` at `{}`",
                    claims.sub, claims.iss
                ),
            )
        })?;
    if human.status != "active" || issuer.store.is_revoked("human", &human.id) {
        return Err(ApiError::denied(
            "human_inactive",
            format!("human `{}` is not active", human.id),
        ));
    }
    let (jkt, jwk) = fresh_key(&issuer.store, &key)?;
    let appended = record(
        &issuer,
        "human_key_bound",
        json!({"human": human.id, "jkt": jkt, "by": format!("oidc:{}", claims.iss), "subject": claims.sub}),
        vec![format!("human:{}", human.id)],
        Write::AddHumanKey(HumanKeyRecord {
            jkt: jkt.clone(),
            human_id: human.id.clone(),
            jwk,
            created_at: seconds(now),
        }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Bound {
            human: human.id,
            jkt,
            log_index: appended.index,
        }),
    ))
}

/// OpenID Connect Core §3.1.3.7: issuer, audience, expiry, issue time; and Writ's binding of
/// the login to the key through `nonce`.
fn check_claims(
    claims: &IdClaims,
    provider: &OidcProvider,
    jkt: &str,
    now: UnixTime,
    skew: u64,
) -> Result<(), ApiError> {
    if claims.iss != provider.issuer {
        return Err(refused(
            "id_token_issuer",
            "the ID token's issuer does not match its keys",
        ));
    }
    let audiences = match &claims.aud {
        Audiences::One(one) => std::slice::from_ref(one),
        Audiences::Many(many) => many.as_slice(),
    };
    if !audiences.contains(&provider.client_id) {
        return Err(refused(
            "id_token_audience",
            format!("the ID token is not for client `{}`", provider.client_id),
        ));
    }
    if claims.exp.saturating_add(skew) <= now.as_secs() {
        return Err(refused("id_token_expired", "the ID token has expired"));
    }
    if claims
        .iat
        .is_some_and(|iat| iat > now.as_secs().saturating_add(skew))
    {
        return Err(refused(
            "id_token_not_yet_valid",
            "the ID token was issued in the future",
        ));
    }
    if claims.nonce.as_deref() != Some(jkt) {
        return Err(refused(
            "id_token_nonce_mismatch",
            "the ID token's nonce must be the thumbprint of the key being bound",
        ));
    }
    Ok(())
}
