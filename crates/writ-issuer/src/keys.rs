//! The issuer's signing keys and their rotation with overlap.
//!
//! One key signs new tokens (the active key). Rotation makes a new key active and keeps the
//! old one published in the JWKS, and trusted for verification, until every token it signed
//! has expired: its `retire_at` is the rotation time plus the longest token lifetime plus the
//! allowed clock skew. Keys live in `keys/<kid>.key` (mode 0600); `issuer.json` names the
//! active key and the previous ones still in their overlap.
//!
//! A rotation writes the new key file, then `issuer.json` (atomically, by rename), then the
//! audit leaf; only when all three are durable does the running issuer switch keys. If the
//! leaf cannot be written, the configuration is put back and the new key file removed.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use writ_jose::{Algorithm, KeySet, SigningKey};
use writ_store::Write;

use crate::audit::record;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::{CONFIG_FILE, Identity, Issuer, SetupError, io};

/// A key still published after rotation, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousKey {
    /// Its `kid`.
    pub kid: String,
    /// When it leaves the JWKS and stops verifying anything: Unix seconds.
    pub retire_at: u64,
}

/// The keys in force: the active signer and every key that still verifies.
#[derive(Debug)]
pub(crate) struct KeyRing {
    pub(crate) kid: String,
    pub(crate) signer: SigningKey,
    /// The active key and the previous keys not yet retired when the ring was made.
    pub(crate) verifiers: KeySet,
    pub(crate) previous: Vec<PreviousKey>,
}

impl KeyRing {
    /// Loads the keys `identity` names from `data_dir`, leaving out previous keys whose
    /// overlap ended before `now`.
    pub(crate) fn load(
        data_dir: &Path,
        identity: &Identity,
        now: u64,
    ) -> Result<KeyRing, SetupError> {
        let signer = writ_keystore::load(&key_path(data_dir, &identity.active_kid))?;
        let mut verifiers = KeySet::new();
        verifiers
            .insert(&identity.active_kid, signer.public_key().clone())
            .map_err(|e| SetupError::Invalid(e.to_string()))?;
        let mut previous = Vec::new();
        for old in &identity.previous_keys {
            if old.retire_at <= now {
                continue;
            }
            let key = writ_keystore::load(&key_path(data_dir, &old.kid))?;
            verifiers
                .insert(&old.kid, key.public_key().clone())
                .map_err(|e| SetupError::Invalid(e.to_string()))?;
            previous.push(old.clone());
        }
        Ok(KeyRing {
            kid: identity.active_kid.clone(),
            signer,
            verifiers,
            previous,
        })
    }

    /// The ring after a rotation: `signer` active under `kid`, and of the keys this ring
    /// verifies with, those still in `previous`. Nothing is read from disk.
    fn rotated(
        &self,
        kid: &str,
        signer: SigningKey,
        previous: Vec<PreviousKey>,
    ) -> Result<KeyRing, writ_jose::KeySetError> {
        let mut verifiers = KeySet::new();
        verifiers.insert(kid, signer.public_key().clone())?;
        for (old, key) in self.verifiers.iter() {
            if previous.iter().any(|kept| kept.kid == old) {
                verifiers.insert(old, key.clone())?;
            }
        }
        Ok(KeyRing {
            kid: kid.to_owned(),
            signer,
            verifiers,
            previous,
        })
    }

    /// Whether the key `kid` verifies tokens at `now`: the active key, or a previous one
    /// still in its overlap.
    pub(crate) fn trusts(&self, kid: &str, now: u64) -> bool {
        kid == self.kid
            || self
                .previous
                .iter()
                .any(|old| old.kid == kid && old.retire_at > now)
    }

    /// The JWKS at `now`: the active key and the previous keys not yet retired.
    pub(crate) fn jwks(&self, now: u64) -> String {
        let mut published = KeySet::new();
        for (kid, key) in self.verifiers.iter() {
            if self.trusts(kid, now) {
                // Cannot fail: the keys came from a valid set.
                let _ = published.insert(kid, key.clone());
            }
        }
        published.to_jwks_json()
    }
}

/// The `kid` of an issuer key: `iss-` and the start of its thumbprint.
pub(crate) fn kid_for(key: &SigningKey) -> String {
    format!(
        "iss-{}",
        key.public_key()
            .thumbprint()
            .as_str()
            .get(..12)
            .unwrap_or_default()
    )
}

pub(crate) fn key_path(data_dir: &Path, kid: &str) -> std::path::PathBuf {
    data_dir.join("keys").join(format!("{kid}.key"))
}

/// Writes `issuer.json` durably: a temporary file, fsync, rename.
pub(crate) fn write_identity(data_dir: &Path, identity: &Identity) -> Result<(), SetupError> {
    use std::io::Write as _;
    let path = data_dir.join(CONFIG_FILE);
    let temporary = data_dir.join(format!("{CONFIG_FILE}.new"));
    let text =
        serde_json::to_vec_pretty(identity).map_err(|e| SetupError::Invalid(e.to_string()))?;
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(&text).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(io(&path))?;
    Ok(())
}

#[derive(Serialize)]
pub(crate) struct Rotated {
    kid: String,
    previous: Vec<PreviousKey>,
    log_index: u64,
}

/// `POST /v1/keys/rotate`: administrators only.
pub(crate) async fn rotate(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Rotated>), ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/keys/rotate", &headers).await?;
    let admin = caller.admin()?;
    // One rotation at a time.
    let _rotating = issuer.rotation.lock().await;
    let now = issuer.now().as_secs();
    let old = issuer.key_ring();
    let failed = |message: String| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "rotation_failed",
            message,
        )
    };
    let signer = SigningKey::generate(Algorithm::EdDSA).map_err(|e| failed(e.to_string()))?;
    let kid = kid_for(&signer);
    let overlap = issuer
        .settings
        .max_mandate_lifetime
        .max(issuer.settings.writ_lifetime)
        + issuer.settings.skew;
    let mut previous: Vec<PreviousKey> = old
        .previous
        .iter()
        .filter(|key| key.retire_at > now)
        .cloned()
        .collect();
    previous.push(PreviousKey {
        kid: old.kid.clone(),
        retire_at: now + overlap,
    });
    let ring = old
        .rotated(&kid, signer, previous.clone())
        .map_err(|e| failed(e.to_string()))?;
    let data_dir = &issuer.data_dir;
    let path = key_path(data_dir, &kid);
    writ_keystore::create(&path, &ring.signer).map_err(|e| failed(e.to_string()))?;
    // From here on, a failure removes the key file again.
    let old_identity = issuer.identity();
    let identity = Identity {
        active_kid: kid.clone(),
        previous_keys: previous.clone(),
        ..old_identity.clone()
    };
    if let Err(error) = write_identity(data_dir, &identity) {
        let _ = std::fs::remove_file(&path);
        return Err(failed(error.to_string()));
    }
    let appended = record(
        &issuer,
        "key_rotated",
        json!({"kid": kid, "previous": previous, "by": admin.id}),
        vec![format!("key:{kid}"), format!("key:{}", old.kid)],
        Write::Nothing,
    )
    .await;
    let appended = match appended {
        Ok(appended) => appended,
        Err(error) => {
            // Put everything back: the rotation did not happen.
            let _ = write_identity(data_dir, &old_identity);
            let _ = std::fs::remove_file(&path);
            return Err(ApiError::unavailable(&error).with_message(
                "the rotation could not be recorded in the audit log, so the keys are unchanged",
            ));
        }
    };
    issuer.install(ring);
    metrics::counter!("writ_key_rotations_total").increment(1);
    tracing::info!(%kid, previous = %old.kid, "issuer key rotated");
    Ok((
        StatusCode::CREATED,
        Json(Rotated {
            kid,
            previous,
            log_index: appended.index,
        }),
    ))
}

/// `GET /.well-known/jwks.json`.
pub(crate) async fn jwks(State(issuer): State<Arc<Issuer>>) -> Response {
    let body = issuer.key_ring().jwks(issuer.now().as_secs());
    let mut response = ([(header::CONTENT_TYPE, "application/jwk-set+json")], body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    response
}
