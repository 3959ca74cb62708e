//! An issuer world on a clock the test moves: alice with `report-bot` (`agent`), the `files`
//! tools (`read_file` labelled `internal`, and `drop_table`) and the gateway `gw` on
//! `GATEWAY`, for the tests of the issuer's API and of its gateways.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use writ_issuer::{Clock, Issuer, Settings};
use writ_jose::{Algorithm, KeySet, SigningKey};
use writ_token::{ProofClaims, UnixTime};

use super::{GATEWAY, ISSUER, START, jwk};

/// `START` plus the seconds a test has moved it on.
#[derive(Default)]
pub struct TestClock(pub AtomicU64);

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(START + self.0.load(Ordering::SeqCst))
    }
}

pub struct World {
    pub _dir: tempfile::TempDir,
    /// The issuer's data directory.
    pub dir: PathBuf,
    pub issuer: Arc<Issuer>,
    pub clock: Arc<TestClock>,
    pub admin: SigningKey,
    pub alice: SigningKey,
    pub agent: SigningKey,
    pub gateway: SigningKey,
    /// The key of a second gateway, registered only if [`World::with`] is given its audience.
    pub other: SigningKey,
    pub jti: AtomicU64,
}

/// The issuer over `path` on `clock`, checkpointing every 50 ms.
pub async fn open(path: &Path, clock: &Arc<TestClock>, settings: Settings) -> Arc<Issuer> {
    let settings = Settings {
        checkpoint_interval: std::time::Duration::from_millis(50),
        ..settings
    };
    Issuer::open_with_clock(path, settings, Arc::clone(clock) as Arc<dyn Clock>)
        .await
        .unwrap()
}

impl World {
    /// A new issuer with alice, the `files` tools, `gw` on `GATEWAY`, then `other-gw` (key
    /// `other`) on `other_audience` if given, alice entitled to `tools` (and the `internal`
    /// label), and her agent `report-bot` for `read_file` and `drop_table`.
    pub async fn with(other_audience: Option<&str>, tools: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        writ_issuer::init(&path, ISSUER, "root", &dir.path().join("admin.key"))
            .await
            .unwrap();
        let admin = writ_keystore::load(&dir.path().join("admin.key")).unwrap();
        let clock = Arc::new(TestClock::default());
        let issuer = open(&path, &clock, Settings::default()).await;
        let world = World {
            dir: path,
            _dir: dir,
            issuer,
            clock,
            admin,
            alice: SigningKey::generate(Algorithm::EdDSA).unwrap(),
            agent: SigningKey::generate(Algorithm::EdDSA).unwrap(),
            gateway: SigningKey::generate(Algorithm::EdDSA).unwrap(),
            other: SigningKey::generate(Algorithm::EdDSA).unwrap(),
            jti: AtomicU64::new(0),
        };
        let mut steps = vec![
            (
                &world.admin,
                "/v1/humans",
                json!({"id": "alice", "jwk": jwk(&world.alice)}),
            ),
            (
                &world.admin,
                "/v1/providers",
                json!({
                    "name": "files", "kind": "mcp",
                    "tools": [{"name": "read_file", "labels": ["internal"]}, {"name": "drop_table"}]
                }),
            ),
            (
                &world.admin,
                "/v1/gateways",
                json!({"name": "gw", "jwk": jwk(&world.gateway), "audience": GATEWAY}),
            ),
        ];
        if let Some(audience) = other_audience {
            steps.push((
                &world.admin,
                "/v1/gateways",
                json!({"name": "other-gw", "jwk": jwk(&world.other), "audience": audience}),
            ));
        }
        steps.push((
            &world.admin,
            "/v1/entitlements",
            json!({"subject": "alice", "labels": ["internal"], "tools": tools}),
        ));
        steps.push((
            &world.alice,
            "/v1/agents",
            json!({
                "name": "report-bot", "jwk": jwk(&world.agent), "tools": ["files/read_file", "files/drop_table"]
            }),
        ));
        for (key, path, body) in steps {
            let (status, body) = world.call(key, Method::POST, path, body).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        world
    }

    pub fn proof(&self, key: &SigningKey, method: &Method, path: &str) -> String {
        let jti = format!("p{}", self.jti.fetch_add(1, Ordering::SeqCst));
        ProofClaims::new(
            method.as_str(),
            &format!("{ISSUER}{path}"),
            self.clock.now(),
            jti,
        )
        .sign(key)
        .unwrap()
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = writ_issuer::router(Arc::clone(&self.issuer))
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A DPoP-authenticated request by `key`; a GET has no body.
    pub async fn call(
        &self,
        key: &SigningKey,
        method: Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(
                "dpop",
                self.proof(key, &method, path.split('?').next().unwrap()),
            )
            .header("content-type", "application/json")
            .body(if method == Method::GET {
                Body::empty()
            } else {
                Body::from(body.to_string())
            })
            .unwrap();
        self.send(request).await
    }

    /// alice grants report-bot `read_file` on paths matching `path_glob`; the answer.
    pub async fn grant(&self, path_glob: &str, datatypes: Value) -> Value {
        let (status, body) = self
            .call(
                &self.alice,
                Method::POST,
                "/v1/mandates",
                json!({
                    "agent": "report-bot",
                    "task": "Summarize the Q3 reports in /data",
                    "summary": "Q3 summary",
                    "grants": [{
                        "type": "mcp_tool_call", "server": "files", "tool": "read_file",
                        "arguments": {"object": {"required": {"path": {"glob": path_glob}}}},
                        "datatypes": datatypes
                    }]
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// A token exchange form asking for `read_file` on `path` under `mandate`, for `resource`.
    pub fn form(mandate: &str, path: &str, resource: &str) -> String {
        let details = json!([{
            "type": "mcp_tool_call", "server": "files", "tool": "read_file",
            "arguments": {"object": {"required": {"path": {"exact": path}}}},
            "datatypes": ["internal"]
        }]);
        serde_urlencoded::to_string([
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", mandate),
            (
                "subject_token_type",
                "urn:writ:params:oauth:token-type:mandate",
            ),
            ("resource", resource),
            ("authorization_details", &details.to_string()),
        ])
        .unwrap()
    }

    pub async fn exchange_form(&self, key: &SigningKey, form: String) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/token")
            .header("dpop", self.proof(key, &Method::POST, "/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        self.send(request).await
    }

    /// A writ for the agent, for `GATEWAY`, to read `path` under `mandate`; the answer.
    pub async fn exchange(&self, mandate: &str, path: &str) -> (StatusCode, Value) {
        self.exchange_form(&self.agent, World::form(mandate, path, GATEWAY))
            .await
    }

    /// The issuer's published keys.
    pub async fn key_set(&self) -> KeySet {
        let request = Request::builder()
            .uri("/.well-known/jwks.json")
            .body(Body::empty())
            .unwrap();
        let (status, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK);
        KeySet::from_jwks_json(body.to_string().as_bytes()).unwrap()
    }
}
