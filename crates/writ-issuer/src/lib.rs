//! The Writ issuer: the certificate authority for intent.
//!
//! It keeps the inventory (humans, agents, tool providers, gateways), grants mandates,
//! exchanges a mandate and a DPoP proof for a writ that allows exactly one call (RFC 8693
//! token exchange), revokes, and records every one of those steps in the Merkle audit log
//! before answering. No audit record, no writ.
//!
//! Every caller proves possession of a registered key with a DPoP proof (RFC 9449) on every
//! request: there are no bearer secrets. Humans and administrators use keys bound to them,
//! agents their own key, gateways theirs.
//!
//! [`router`] builds the HTTP service from an [`Issuer`], so tests run the real thing
//! in-process; [`init`] creates a data directory and [`Issuer::open`] opens one.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | liveness and the audit log's size |
//! | `GET /v1/openapi.json` | anyone | the OpenAPI 3.1 description of these routes |
//! | `GET /metrics` | anyone | Prometheus metrics: counts by route, status and reason code |
//! | `GET /.well-known/jwks.json` | anyone | the issuer's public keys |
//! | `GET /.well-known/oauth-authorization-server` | anyone | RFC 8414 metadata |
//! | `POST /token` | agents | RFC 8693 token exchange: mandate + DPoP → writ |
//! | `POST /v1/humans` | admins | register a human, optionally with a key or an OIDC identity |
//! | `GET /v1/humans` | admins | every human |
//! | `POST /v1/humans/bind` | a human's new key | bind the key by an OIDC ID token whose `nonce` is its thumbprint |
//! | `POST /v1/agents` | humans | register an agent they own |
//! | `GET /v1/agents` | humans | their agents; every agent for admins |
//! | `GET /scim/v2/Users/{id}` | admins | SCIM 2.0: a human as a SCIM user, `active` or not |
//! | `PATCH /scim/v2/Users/{id}` | admins | SCIM 2.0: `active: false` offboards the human |
//! | `DELETE /scim/v2/Users/{id}` | admins | SCIM 2.0: offboards the human (the record stays, for the audit trail) |
//! | `GET /v1/inventory` | admins | every agent (owner, status, last seen, end of life, tools used, outstanding mandates), every tool provider, and the tools gateways saw servers offer |
//! | `POST /v1/entitlements` | admins | entitle a human or a group (`group:NAME`) to tools and data labels |
//! | `GET /v1/entitlements` | admins | every entitlement |
//! | `DELETE /v1/entitlements/{id}` | admins | remove an entitlement; calls it allowed stop at their next writ |
//! | `PUT /v1/humans/{id}/groups` | admins | set the groups a human belongs to |
//! | `GET /v1/humans/{id}/entitlements` | admins, the human | a human's groups and effective entitlements |
//! | `POST /v1/humans/{id}/offboard` | admins | offboard a human: revoke them and every mandate they granted, suspend their agents |
//! | `POST /v1/agents/{name}/renew` | its owner, admins | extend an agent's lifetime |
//! | `POST /v1/agents/{name}/retire` | its owner, admins | retire an agent: revoke its key and its mandates |
//! | `POST /v1/agents/{name}/transfer` | admins | give an agent a new owner (lifting an offboarding suspension) |
//! | `GET /v1/agents/{name}/baseline` | its owner, admins | the agent's behavioural baseline, learning progress and each detector's mode |
//! | `GET /v1/approvals?state=pending\|all` | humans | approvals of calls held for the caller's agents (every agent's for admins) |
//! | `GET /v1/behaviour/limits/{agent}` | gateways, admins | the largest response each of an agent's tools may return before it is a bulk export |
//! | `POST /v1/approvals/{id}` | the agent's owner | approve or deny a held call, or a mandate a gateway stopped |
//! | `POST /v1/providers` | admins | register a tool provider and its tools |
//! | `GET /v1/providers` | anyone registered | the tool providers and their tools |
//! | `POST /v1/gateways` | admins | register a gateway and the resource it serves |
//! | `GET /v1/gateways` | admins | every gateway |
//! | `POST /v1/gateways/{name}/disable` | admins | refuse a gateway's calls until enabled again |
//! | `POST /v1/gateways/{name}/enable` | admins | accept a disabled gateway's calls again |
//! | `POST /v1/gateways/{name}/revoke` | admins | refuse a gateway for good |
//! | `POST /v1/mandates` | humans | grant a mandate to an agent |
//! | `POST /v1/delegation-consents` | humans | consent to a delegation across owners, as the receiving agent's owner or as the human whose mandates are handed on |
//! | `POST /v1/delegation-consents/{id}/withdraw` | the human who gave it, admins | withdraw a consent |
//! | `GET /v1/delegation-consents` | humans | the consents the caller is party to, with their status |
//! | `GET /v1/mandates/{id}` | gateways, admins, its human and agent | a mandate: its grants, chain position, task digest, revocation |
//! | `GET /v1/policy` | anyone registered | the policy set in force: version, policy ids, last reload error |
//! | `POST /v1/policy/reload` | admins | reload the policy directory now |
//! | `POST /v1/keys/rotate` | admins | rotate the issuer's signing key, keeping the old one published until its tokens expire |
//! | `POST /v1/revocations?wait=S` | humans, admins | revoke an agent, mandate (and subtree), human, writ or key; with `wait`, answered once every live gateway has acknowledged it, or after `S` seconds naming those that lag |
//! | `GET /v1/revocations?after=N&wait=S` | gateways, admins | the revocation feed, long-polled; a gateway's request acknowledges everything up to `N` |
//! | `GET /v1/audit/checkpoint` | anyone registered | the newest signed checkpoint |
//! | `GET /v1/audit/leaves/{index}?size=N` | admins | a leaf and its inclusion proof |
//! | `GET /v1/audit/consistency?old=M&new=N` | anyone registered | a consistency proof |
//! | `POST /v1/audit/decisions` | gateways | record gateway decisions, once per request id |
//! | `POST /v1/audit/discoveries` | gateways | record the tools a route's server offered in `tools/list` |
//! | `GET /v1/trace/{id}` | admins, the human it ends at | from a writ, mandate, gateway request or log index back to the human, every record with its inclusion proof |

mod audit;
mod auth;
mod behaviour;
mod consent;
mod delegation;
mod discovery;
mod entitlements;
mod error;
mod gateways;
pub mod inputs;
mod inventory;
mod keys;
mod lifecycle;
mod mandates;
mod metrics;
mod oidc;
mod policy;
mod revocation;
mod scim;
mod token;
mod trace;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use writ_jose::{Algorithm, KeySet, SigningKey};

use keys::{KeyRing, kid_for};
use writ_log::NoteSigner;
use writ_store::{Store, StoreOptions};
use writ_token::{Audience, MemoryReplayCache, NonceKey, ReplayCache, UnixTime};

pub use behaviour::{AgentModes, BehaviourConfig};
pub use error::ApiError;
pub use keys::PreviousKey;
pub use lifecycle::Swept;
pub use oidc::OidcProvider;
pub use policy::{ReloadError, Reloaded, load_policy};
pub use verify::{AuditError, AuditReport, verify_data_dir, verify_store};
pub use writ_token::{Clock, SystemClock};

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// The issuer's configuration file inside the data directory.
pub const CONFIG_FILE: &str = "issuer.json";

/// What a data directory records about its issuer (`issuer.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The issuer's public URL: `iss` of every token and the base of every route.
    pub issuer: String,
    /// The `kid` of the key new tokens are signed with.
    pub active_kid: String,
    /// The audit log's checkpoint origin and note key name.
    pub log_origin: String,
    /// Keys rotated out but still published until their tokens have expired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<PreviousKey>,
}

/// Tunables, with conservative defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Writ lifetime in seconds (at most 300).
    pub writ_lifetime: u64,
    /// Default mandate lifetime in seconds.
    pub mandate_lifetime: u64,
    /// The longest mandate lifetime a human may ask for.
    pub max_mandate_lifetime: u64,
    /// The deepest delegation allowed.
    pub max_depth: u8,
    /// Default agent lifetime in days.
    pub agent_lifetime_days: u64,
    /// Keep task texts, or only their digests.
    pub store_task_text: bool,
    /// Clock skew allowed on tokens and proofs, in seconds.
    pub skew: u64,
    /// How old a DPoP proof may be, in seconds.
    pub proof_max_age: u64,
    /// Require a server-provided nonce in every DPoP proof (RFC 9449 §8, §9). Each
    /// response carries the current nonce in `DPoP-Nonce`; a proof without a recent one is
    /// refused with `use_dpop_nonce` and the nonce to retry with.
    pub require_dpop_nonce: bool,
    /// How long one nonce window lasts, in seconds; a nonce is good for its window and
    /// the next.
    pub dpop_nonce_window: u64,
    /// How often a checkpoint is signed when the log has grown.
    pub checkpoint_interval: Duration,
    /// The policy directory; Writ's default policies when `None`.
    pub policy_dir: Option<PathBuf>,
    /// How often the policy directory is checked for changes.
    pub policy_poll_interval: Duration,
    /// Days without a writ after which an agent is suspended.
    pub idle_suspend_days: u64,
    /// How often agents are checked for the end of their lifetime and for idleness.
    pub lifecycle_interval: Duration,
    /// The store's options.
    pub store: StoreOptions,
    /// Identity providers whose ID tokens may bind a key to a human once.
    pub oidc: Vec<OidcProvider>,
    /// Behavioural baselines: detectors, their modes, approvals.
    pub behaviour: BehaviourConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            writ_lifetime: writ_token::DEFAULT_WRIT_LIFETIME,
            mandate_lifetime: 15 * 60,
            max_mandate_lifetime: 60 * 60,
            max_depth: 4,
            agent_lifetime_days: 90,
            store_task_text: true,
            skew: 5,
            proof_max_age: 60,
            require_dpop_nonce: false,
            dpop_nonce_window: 60,
            checkpoint_interval: Duration::from_secs(1),
            policy_dir: None,
            policy_poll_interval: Duration::from_secs(2),
            idle_suspend_days: 30,
            lifecycle_interval: Duration::from_secs(60),
            store: StoreOptions::default(),
            oidc: Vec::new(),
            behaviour: BehaviourConfig::default(),
        }
    }
}

/// The running issuer's state, shared by every request.
pub struct Issuer {
    id: Audience,
    /// The issuer URL without a trailing slash, the base of every route.
    base_url: String,
    token_endpoint: String,
    data_dir: PathBuf,
    keys: RwLock<Arc<KeyRing>>,
    /// Held while a key rotation is in progress.
    rotation: tokio::sync::Mutex<()>,
    settings: Settings,
    store: Store,
    note_signer: NoteSigner,
    policy: RwLock<policy::PolicyState>,
    /// Held while a policy reload is in progress.
    policy_reload: tokio::sync::Mutex<()>,
    /// Proof and ID token ids already used. Kept in memory: after a restart, those issued
    /// before it (plus the skew) are refused (see [`writ_token::use_once`]).
    replay: Box<dyn ReplayCache>,
    nonces: NonceKey,
    oidc: Vec<oidc::Provider>,
    clock: Arc<dyn Clock>,
    revoked: Notify,
    /// The gateway decisions (`request:{gateway}:…`, `response:{gateway}:…`) being
    /// recorded now: a report that carries one of them again waits, then finds it recorded.
    recording: std::sync::Mutex<std::collections::HashSet<String>>,
    behaviour: behaviour::Behaviour,
    /// Which writs and mandates each gateway was issued writs for.
    shown: gateways::Shown,
    /// Each gateway's acknowledged feed position and liveness.
    presence: gateways::Presence,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.base_url)
            .field("active_kid", &self.key_ring().kid)
            .finish_non_exhaustive()
    }
}

/// Setting up or opening a data directory failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The directory or a file in it could not be created or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory is already initialized.
    #[error("`{0}` already holds an issuer; refusing to overwrite it")]
    Exists(PathBuf),
    /// `issuer.json` is not valid.
    #[error("`{path}` is not a valid issuer configuration: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key file could not be used.
    #[error(transparent)]
    Keystore(#[from] writ_keystore::KeystoreError),
    /// The store could not be opened or written.
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    /// The policy set is invalid.
    #[error(transparent)]
    Policy(#[from] writ_policy::LoadError),
    /// A key could not be generated or used.
    #[error(transparent)]
    Key(#[from] writ_jose::KeyError),
    /// An argument is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// The file in the data directory that says an issuer has served from it before, and when
/// the latest one started.
const REPLAY_HORIZON_FILE: &str = "replay-horizon";
/// How many proof and ID token ids the replay cache holds.
const REPLAY_CACHE_ENTRIES: usize = 1 << 20;

/// The replay cache of an issuer starting at `started` over `data_dir`.
///
/// Used ids are kept in memory only, so an issuer that follows an earlier one on the same
/// directory has not seen what that one accepted: its cache refuses every proof and ID
/// token issued before it started, plus the skew. The mark is written, and flushed, before
/// any id is accepted; an issuer that finds none is the first to serve from `data_dir`.
fn replay_cache(data_dir: &Path, started: UnixTime) -> Result<MemoryReplayCache, SetupError> {
    let path = data_dir.join(REPLAY_HORIZON_FILE);
    let served_before = path.try_exists().map_err(io(&path))?;
    let mut file = std::fs::File::create(&path).map_err(io(&path))?;
    std::io::Write::write_all(&mut file, format!("{started}\n").as_bytes()).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    // The mark's directory entry must survive a power loss as well as its bytes.
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(data_dir))?;
    Ok(if served_before {
        MemoryReplayCache::after_restart(REPLAY_CACHE_ENTRIES, started)
    } else {
        MemoryReplayCache::new(REPLAY_CACHE_ENTRIES)
    })
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`init`] created.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// The issuer's identity.
    pub identity: Identity,
    /// Where the first administrator's key was written.
    pub admin_key: PathBuf,
    /// The administrator's human id.
    pub admin: String,
    /// The audit log's verifier key, for witnesses and `writ audit verify`.
    pub log_verifier_key: String,
}

fn log_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join("log.key")
}

/// Creates a data directory: the issuer's signing key and the audit log's note key (in
/// `keys/`, mode 0600), `issuer.json`, the database, and the first administrator with a
/// new key written to `admin_key` (mode 0600). The registration is the log's first leaf.
pub async fn init(
    data_dir: &Path,
    issuer_url: &str,
    admin: &str,
    admin_key: &Path,
) -> Result<Initialized, SetupError> {
    let issuer = Audience::new(issuer_url).map_err(|e| SetupError::Invalid(e.to_string()))?;
    let admin_id =
        writ_token::HumanId::new(admin).map_err(|e| SetupError::Invalid(e.to_string()))?;
    let config_path = data_dir.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(SetupError::Exists(data_dir.to_owned()));
    }
    let keys_dir = data_dir.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(io(&keys_dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for dir in [data_dir, keys_dir.as_path()] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
    }
    let signing_key = SigningKey::generate(Algorithm::EdDSA)?;
    let kid = kid_for(&signing_key);
    writ_keystore::create(&keys::key_path(data_dir, &kid), &signing_key)?;
    let log_key = SigningKey::generate(Algorithm::EdDSA)?;
    writ_keystore::create(&log_key_path(data_dir), &log_key)?;
    let host = issuer_url
        .split("://")
        .nth(1)
        .unwrap_or(issuer_url)
        .trim_end_matches('/')
        .to_owned();
    let identity = Identity {
        issuer: issuer.as_str().trim_end_matches('/').to_owned(),
        active_kid: kid,
        log_origin: format!("{host}/audit"),
        previous_keys: Vec::new(),
    };
    let note_signer = NoteSigner::new(&identity.log_origin, log_key)
        .map_err(|e| SetupError::Invalid(format!("log origin: {e}")))?;
    keys::write_identity(data_dir, &identity)?;

    let admin_signing = SigningKey::generate(Algorithm::EdDSA)?;
    writ_keystore::create(admin_key, &admin_signing)?;
    let store = Store::open(data_dir).await?;
    inventory::register_first_admin(&store, admin_id.as_str(), &admin_signing, SystemClock.now())
        .await?;
    Ok(Initialized {
        identity,
        admin_key: admin_key.to_owned(),
        admin: admin_id.as_str().to_owned(),
        log_verifier_key: note_signer.verifier().to_vkey(),
    })
}

impl Issuer {
    /// Opens an initialized data directory with the system clock.
    pub async fn open(data_dir: &Path, settings: Settings) -> Result<Arc<Issuer>, SetupError> {
        Issuer::open_with_clock(data_dir, settings, Arc::new(SystemClock)).await
    }

    /// Opens an initialized data directory with the given clock.
    pub async fn open_with_clock(
        data_dir: &Path,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Issuer>, SetupError> {
        let config_path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read(&config_path).map_err(io(&config_path))?;
        let identity: Identity =
            writ_jose::from_slice_strict(&text).map_err(|e| SetupError::Config {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let id = Audience::new(identity.issuer.clone()).map_err(|e| SetupError::Config {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        if settings.writ_lifetime == 0 || settings.writ_lifetime > writ_token::MAX_WRIT_LIFETIME {
            return Err(SetupError::Invalid(format!(
                "writ lifetime must be 1 to {} seconds",
                writ_token::MAX_WRIT_LIFETIME
            )));
        }
        let ring = KeyRing::load(data_dir, &identity, clock.now().as_secs())?;
        let note_signer = NoteSigner::new(
            &identity.log_origin,
            writ_keystore::load(&log_key_path(data_dir))?,
        )
        .map_err(|e| SetupError::Invalid(format!("log origin: {e}")))?;
        let policy = policy::PolicyState::new(
            load_policy(settings.policy_dir.as_deref())?,
            clock.now().as_secs(),
            settings.policy_dir.as_deref(),
        );
        let behaviour =
            behaviour::Behaviour::new(settings.behaviour.clone()).map_err(SetupError::Invalid)?;
        let store = Store::open_with(data_dir, settings.store).await?;
        let replay = replay_cache(data_dir, clock.now())?;
        let nonce_secret = writ_jose::random_bytes::<32>()
            .map_err(|_| SetupError::Invalid("the random generator failed".into()))?;
        let nonces = NonceKey::new(&nonce_secret, settings.dpop_nonce_window);
        let oidc = settings
            .oidc
            .iter()
            .cloned()
            .map(oidc::Provider::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(SetupError::Invalid)?;
        let issuer = Arc::new(Issuer {
            base_url: identity.issuer.trim_end_matches('/').to_owned(),
            token_endpoint: format!("{}/token", identity.issuer),
            id,
            data_dir: data_dir.to_owned(),
            keys: RwLock::new(Arc::new(ring)),
            rotation: tokio::sync::Mutex::new(()),
            settings,
            store,
            note_signer,
            policy: RwLock::new(policy),
            policy_reload: tokio::sync::Mutex::new(()),
            replay: Box::new(replay),
            nonces,
            oidc,
            clock,
            revoked: Notify::new(),
            recording: std::sync::Mutex::new(std::collections::HashSet::new()),
            behaviour,
            shown: gateways::Shown::default(),
            presence: gateways::Presence::default(),
        });
        // Baselines, approvals and holds are derived from the log.
        let replayed = behaviour::replay(&issuer).await?;
        tracing::debug!(replayed, "behaviour rebuilt from the audit log");
        writ_metrics::handle();
        audit::spawn_checkpointer(&issuer);
        policy::spawn_watcher(&issuer);
        lifecycle::spawn_sweeper(&issuer);
        Ok(issuer)
    }

    /// The issuer's identifier (`iss`).
    pub fn id(&self) -> &Audience {
        &self.id
    }

    /// The issuer's public keys that verify tokens now.
    pub fn key_set(&self) -> KeySet {
        self.key_ring().verifiers.clone()
    }

    /// What `issuer.json` says now: derived from the keys in force.
    pub fn identity(&self) -> Identity {
        let ring = self.key_ring();
        Identity {
            issuer: self.base_url.clone(),
            active_kid: ring.kid.clone(),
            log_origin: self.note_signer.verifier().name().to_owned(),
            previous_keys: ring.previous.clone(),
        }
    }

    /// The keys in force.
    pub(crate) fn key_ring(&self) -> Arc<KeyRing> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Signs a mandate or a writ with the active key.
    pub(crate) fn sign<C: writ_token::TokenClaims>(
        &self,
        claims: &C,
    ) -> Result<String, error::ApiError> {
        let keys = self.key_ring();
        writ_token::sign(claims, &keys.signer, &keys.kid).map_err(|e| {
            error::ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "signing_failed",
                e.to_string(),
            )
        })
    }

    /// Switches to a rotated key ring, once its rotation is durable.
    fn install(&self, ring: KeyRing) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Signs and stores a checkpoint of the log as it is now; returns its size.
    pub async fn checkpoint_now(&self) -> Result<u64, writ_store::StoreError> {
        audit::sign_checkpoint(self).await
    }

    /// The audit log's verifier key.
    pub fn log_verifier_key(&self) -> String {
        self.note_signer.verifier().to_vkey()
    }

    /// The version of the policy set in force.
    pub fn policy_version(&self) -> String {
        self.engine().version().to_owned()
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// A time as the store keeps it: Unix seconds in an `i64`.
pub(crate) fn seconds(time: UnixTime) -> i64 {
    i64::try_from(time.as_secs()).unwrap_or(i64::MAX)
}

/// The issuer's HTTP service.
pub fn router(issuer: Arc<Issuer>) -> Router {
    Router::new()
        .route("/healthz", get(audit::healthz))
        .route("/metrics", get(metrics::render))
        .route("/v1/openapi.json", get(openapi))
        .route("/.well-known/jwks.json", get(keys::jwks))
        .route(
            "/.well-known/oauth-authorization-server",
            get(token::metadata),
        )
        .route("/token", post(token::exchange))
        .route(
            "/v1/humans",
            post(inventory::register_human).get(inventory::list_humans),
        )
        .route(
            "/v1/agents",
            post(inventory::register_agent).get(inventory::list_agents),
        )
        .route(
            "/v1/providers",
            post(inventory::register_provider).get(inventory::list_providers),
        )
        .route(
            "/v1/gateways",
            post(inventory::register_gateway).get(inventory::list_gateways),
        )
        .route("/v1/gateways/{name}/disable", post(gateways::disable))
        .route("/v1/gateways/{name}/enable", post(gateways::enable))
        .route("/v1/gateways/{name}/revoke", post(gateways::revoke))
        .route("/v1/humans/bind", post(oidc::bind))
        .route("/v1/humans/{id}/offboard", post(lifecycle::offboard_route))
        .route(
            "/v1/entitlements",
            post(entitlements::create).get(entitlements::list),
        )
        .route("/v1/entitlements/{id}", delete(entitlements::remove))
        .route("/v1/humans/{id}/groups", put(entitlements::set_groups))
        .route("/v1/humans/{id}/entitlements", get(entitlements::of_human))
        .route("/v1/inventory", get(discovery::inventory))
        .route(
            "/scim/v2/Users/{id}",
            get(scim::get_user)
                .patch(scim::patch_user)
                .delete(scim::delete_user),
        )
        .route("/v1/agents/{name}/renew", post(lifecycle::renew))
        .route("/v1/agents/{name}/retire", post(lifecycle::retire_route))
        .route("/v1/agents/{name}/transfer", post(lifecycle::transfer))
        .route("/v1/agents/{name}/baseline", get(behaviour::baseline))
        .route("/v1/approvals", get(behaviour::list))
        .route("/v1/behaviour/limits/{agent}", get(behaviour::limits))
        .route("/v1/approvals/{id}", post(behaviour::decide))
        .route(
            "/v1/delegation-consents",
            post(consent::give).get(consent::list),
        )
        .route(
            "/v1/delegation-consents/{id}/withdraw",
            post(consent::withdraw),
        )
        .route("/v1/mandates", post(mandates::grant))
        .route("/v1/mandates/{id}", get(mandates::show))
        .route("/v1/keys/rotate", post(keys::rotate))
        .route("/v1/policy", get(policy::show))
        .route("/v1/policy/reload", post(policy::reload))
        .route(
            "/v1/revocations",
            post(revocation::revoke).get(revocation::feed),
        )
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/leaves/{index}", get(audit::leaf))
        .route("/v1/audit/consistency", get(audit::consistency))
        .route("/v1/audit/decisions", post(audit::decisions))
        .route("/v1/audit/discoveries", post(discovery::report))
        .route("/v1/trace/{id}", get(trace::trace))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(error::name_every_refusal))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&issuer),
            auth::offer_nonce,
        ))
        .with_state(issuer)
}

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// Serves the issuer on `listener` until the process stops.
pub async fn serve(listener: tokio::net::TcpListener, issuer: Arc<Issuer>) -> std::io::Result<()> {
    axum::serve(listener, router(issuer)).await
}
