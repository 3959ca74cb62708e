//! The policy set in force, and hot reload.
//!
//! Policies load from a directory of `.cedar` files (or Writ's defaults). With a directory,
//! the issuer watches it (polling names, sizes and modification times) and reloads on a
//! change; an administrator can also ask for a reload (`POST /v1/policy/reload`, or
//! `SIGHUP` to `writ issuer run`). A set that does not parse or validate is refused whole:
//! the old set stays in force, the error is logged, recorded in the audit log and shown by
//! `GET /v1/policy`. A new set takes effect only once its `policy_loaded` leaf is durable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use serde::Serialize;
use serde_json::json;
use writ_policy::{Engine, PolicySource};
use writ_store::Write;

use crate::audit::record;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::{Issuer, SetupError, io};

/// What identifies a directory's contents cheaply: each `.cedar` file's name, size and
/// modification time.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The policy set in force and what the last reload attempt said.
pub(crate) struct PolicyState {
    engine: Arc<Engine>,
    loaded_at: u64,
    fingerprint: Option<Fingerprint>,
    last_error: Option<String>,
}

impl PolicyState {
    pub(crate) fn new(engine: Engine, loaded_at: u64, dir: Option<&Path>) -> PolicyState {
        PolicyState {
            engine: Arc::new(engine),
            loaded_at,
            fingerprint: dir.and_then(|dir| fingerprint(dir).ok()),
            last_error: None,
        }
    }
}

fn cedar_files(dir: &Path) -> Result<Vec<PathBuf>, SetupError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|ext| ext == "cedar") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn fingerprint(dir: &Path) -> Result<Fingerprint, SetupError> {
    cedar_files(dir)?
        .into_iter()
        .map(|path| {
            let metadata = std::fs::metadata(&path).map_err(io(&path))?;
            Ok((path, metadata.len(), metadata.modified().ok()))
        })
        .collect()
}

/// Reads every `*.cedar` file in `dir`, or Writ's defaults when `dir` is `None`, and
/// validates the set.
pub fn load_policy(dir: Option<&Path>) -> Result<Engine, SetupError> {
    let Some(dir) = dir else {
        return Ok(Engine::with_defaults()?);
    };
    let mut sources = Vec::new();
    for path in cedar_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        sources.push(PolicySource { name, text });
    }
    Ok(Engine::load(&sources)?)
}

/// The outcome of a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new set is in force.
    Changed {
        /// Its version.
        version: String,
    },
    /// The files hold the set already in force.
    Unchanged,
}

impl Issuer {
    /// The policy set in force.
    pub(crate) fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.policy_state().engine)
    }

    fn policy_state(&self) -> std::sync::RwLockReadGuard<'_, PolicyState> {
        self.policy.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads the policy directory. A set that does not load is refused, and the old one
    /// stays in force; either way the outcome is recorded in the audit log.
    pub async fn reload_policy(&self, by: &str) -> Result<Reloaded, ReloadError> {
        let _reloading = self.policy_reload.lock().await;
        let Some(dir) = self.settings.policy_dir.clone() else {
            return Err(ReloadError::NoDirectory);
        };
        let fingerprint = fingerprint(&dir).ok();
        let previous = self.engine();
        let engine = match load_policy(Some(&dir)) {
            Ok(engine) => engine,
            Err(error) => {
                let message = error.to_string();
                tracing::error!(error = %message, "policy reload refused; the previous set stays in force");
                {
                    let mut state = self.policy.write().unwrap_or_else(PoisonError::into_inner);
                    state.fingerprint = fingerprint;
                    state.last_error = Some(message.clone());
                }
                // Best effort: the refusal changes nothing, so it stands even unrecorded.
                if let Err(error) = record(
                    self,
                    "policy_rejected",
                    json!({"error": message, "in_force": previous.version(), "by": by}),
                    vec!["policy".to_owned()],
                    Write::Nothing,
                )
                .await
                {
                    tracing::error!(%error, "could not record the refused policy set");
                }
                metrics::counter!("writ_policy_reloads_total", "outcome" => "refused").increment(1);
                return Err(ReloadError::Invalid(message));
            }
        };
        if engine.version() == previous.version() {
            let mut state = self.policy.write().unwrap_or_else(PoisonError::into_inner);
            state.fingerprint = fingerprint;
            state.last_error = None;
            metrics::counter!("writ_policy_reloads_total", "outcome" => "unchanged").increment(1);
            return Ok(Reloaded::Unchanged);
        }
        let version = engine.version().to_owned();
        // A new set is in force only once its leaf is durable.
        record(
            self,
            "policy_loaded",
            json!({"version": version, "previous": previous.version(), "policies": engine.ids(), "by": by}),
            vec!["policy".to_owned(), format!("policy:{version}")],
            Write::Nothing,
        )
        .await
        .map_err(|error| ReloadError::Unrecorded(error.to_string()))?;
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = PolicyState {
            engine: Arc::new(engine),
            loaded_at: self.now().as_secs(),
            fingerprint,
            last_error: None,
        };
        metrics::counter!("writ_policy_reloads_total", "outcome" => "changed").increment(1);
        tracing::info!(%version, previous = previous.version(), "policy set reloaded");
        Ok(Reloaded::Changed { version })
    }
}

/// A reload did not put a new set in force.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The issuer runs Writ's default policies; there is nothing to reload.
    #[error("the issuer runs the default policies; start it with a policy directory to reload")]
    NoDirectory,
    /// The set on disk does not load. The operator's fault.
    #[error("the policy set on disk was refused, and the previous set stays in force: {0}")]
    Invalid(String),
    /// The new set could not be recorded in the audit log, so it is not in force.
    #[error(
        "the new policy set could not be recorded in the audit log, so it is not in force: {0}"
    )]
    Unrecorded(String),
}

/// Reloads whenever the directory changes.
pub(crate) fn spawn_watcher(issuer: &Arc<Issuer>) {
    let Some(dir) = issuer.settings.policy_dir.clone() else {
        return;
    };
    let weak = Arc::downgrade(issuer);
    let interval = issuer.settings.policy_poll_interval;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(issuer) = weak.upgrade() else { break };
            let now = fingerprint(&dir).ok();
            if now == issuer.policy_state().fingerprint {
                continue;
            }
            // Errors are logged and recorded by the reload itself.
            let _ = issuer.reload_policy("watch").await;
        }
    });
}

#[derive(Serialize)]
pub(crate) struct PolicyView {
    version: String,
    policies: Vec<String>,
    loaded_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

fn view(issuer: &Issuer) -> PolicyView {
    let state = issuer.policy_state();
    PolicyView {
        version: state.engine.version().to_owned(),
        policies: state.engine.ids().to_vec(),
        loaded_at: state.loaded_at,
        last_error: state.last_error.clone(),
    }
}

/// `GET /v1/policy`: the set in force, for any registered caller.
pub(crate) async fn show(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<PolicyView>, ApiError> {
    authenticate(&issuer, &method, "/v1/policy", &headers).await?;
    Ok(Json(view(&issuer)))
}

/// `POST /v1/policy/reload`: administrators only.
pub(crate) async fn reload(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<PolicyView>, ApiError> {
    let caller = authenticate(&issuer, &method, "/v1/policy/reload", &headers).await?;
    let admin = caller.admin()?;
    match issuer.reload_policy(&format!("human:{}", admin.id)).await {
        Ok(_) => Ok(Json(view(&issuer))),
        Err(error @ (ReloadError::NoDirectory | ReloadError::Invalid(_))) => Err(
            ApiError::invalid_request("policy_invalid", error.to_string()),
        ),
        Err(error @ ReloadError::Unrecorded(_)) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "audit_log_unavailable",
            error.to_string(),
        )),
    }
}
