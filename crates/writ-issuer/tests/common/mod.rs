//! A small issuer world for the tests of this crate that need two humans and their agents:
//! alice with `report-bot`, bob with `bob-bot`, a gateway and the `files` tools.

// Each test binary uses the helpers it needs.
#![allow(dead_code, reason = "shared by several test binaries")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

pub mod clocked;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use writ_issuer::{Clock, Issuer, Settings};
use writ_jose::{Algorithm, SigningKey};
use writ_token::{ProofClaims, UnixTime};

pub const ISSUER: &str = "https://issuer.test";
pub const GATEWAY: &str = "https://gateway.test/mcp/files";
pub const START: u64 = 1_800_000_000;

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(START)
    }
}

pub struct World {
    pub _dir: tempfile::TempDir,
    pub issuer: Arc<Issuer>,
    pub admin: SigningKey,
    pub alice: SigningKey,
    pub bob: SigningKey,
    pub report_bot: SigningKey,
    pub jti: AtomicU64,
}

pub fn jwk(key: &SigningKey) -> Value {
    serde_json::to_value(key.public_key().to_jwk()).unwrap()
}

pub fn jkt(key: &SigningKey) -> String {
    key.public_key().thumbprint().to_string()
}

pub fn reason(body: &Value) -> &str {
    body["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {body}"))
}

/// The claims of a JWS, unverified.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&writ_jose::base64url_decode(payload).unwrap()).unwrap()
}

impl World {
    /// alice with `report-bot`, bob with `bob-bot`, a gateway and the `files` tools.
    pub async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        writ_issuer::init(&path, ISSUER, "root", &dir.path().join("admin.key"))
            .await
            .unwrap();
        let admin = writ_keystore::load(&dir.path().join("admin.key")).unwrap();
        let issuer = Issuer::open_with_clock(
            &path,
            Settings::default(),
            Arc::new(FixedClock) as Arc<dyn Clock>,
        )
        .await
        .unwrap();
        let new = || SigningKey::generate(Algorithm::EdDSA).unwrap();
        let world = World {
            _dir: dir,
            issuer,
            admin,
            alice: new(),
            bob: new(),
            report_bot: new(),
            jti: AtomicU64::new(0),
        };
        let gateway = new();
        for (key, path, body) in [
            (
                &world.admin,
                "/v1/humans",
                json!({"id": "alice", "jwk": jwk(&world.alice)}),
            ),
            (
                &world.admin,
                "/v1/humans",
                json!({"id": "bob", "jwk": jwk(&world.bob)}),
            ),
            (
                &world.admin,
                "/v1/providers",
                json!({"name": "files", "kind": "mcp", "tools": [{"name": "read_file"}]}),
            ),
            (
                &world.admin,
                "/v1/gateways",
                json!({"name": "gw", "jwk": jwk(&gateway), "audience": GATEWAY}),
            ),
            (
                &world.admin,
                "/v1/entitlements",
                json!({"subject": "alice", "tools": ["files/read_file"]}),
            ),
            (
                &world.admin,
                "/v1/entitlements",
                json!({"subject": "bob", "tools": ["files/read_file"]}),
            ),
            (
                &world.alice,
                "/v1/agents",
                json!({"name": "report-bot", "jwk": jwk(&world.report_bot), "tools": ["files/read_file"]}),
            ),
            (
                &world.bob,
                "/v1/agents",
                json!({"name": "bob-bot", "jwk": jwk(&new()), "tools": ["files/read_file"]}),
            ),
        ] {
            let (status, answer) = world.call(key, Method::POST, path, body).await;
            assert_eq!(status, StatusCode::CREATED, "{answer}");
        }
        world
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

    pub fn proof(&self, key: &SigningKey, method: &Method, path: &str) -> String {
        let jti = format!("p{}", self.jti.fetch_add(1, Ordering::SeqCst));
        ProofClaims::new(
            method.as_str(),
            &format!("{ISSUER}{path}"),
            UnixTime::from_secs(START),
            jti,
        )
        .sign(key)
        .unwrap()
    }

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
            .header("dpop", self.proof(key, &method, path))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    pub async fn revoke(&self, key: &SigningKey, kind: &str, subject: &str) -> (StatusCode, Value) {
        self.call(
            key,
            Method::POST,
            "/v1/revocations",
            json!({"kind": kind, "subject": subject, "reason": "incident"}),
        )
        .await
    }

    /// alice grants report-bot `files/read_file`; the mandate.
    pub async fn grant(&self) -> String {
        let (status, body) = self
            .call(
                &self.alice,
                Method::POST,
                "/v1/mandates",
                json!({"agent": "report-bot", "task": "read", "grants": [{"type": "mcp_tool_call", "server": "files", "tool": "read_file"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["mandate"].as_str().unwrap().to_owned()
    }

    /// A writ for report-bot under `mandate`; the token exchange's answer.
    pub async fn exchange(&self, mandate: &str) -> (StatusCode, Value) {
        let detail = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file"}]);
        let form = serde_urlencoded::to_string([
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", mandate),
            (
                "subject_token_type",
                "urn:writ:params:oauth:token-type:mandate",
            ),
            ("resource", GATEWAY),
            ("authorization_details", &detail.to_string()),
        ])
        .unwrap();
        let request = Request::builder()
            .method(Method::POST)
            .uri("/token")
            .header(
                "dpop",
                self.proof(&self.report_bot, &Method::POST, "/token"),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        self.send(request).await
    }

    /// How many revocations the store holds, and the audit log's size.
    pub async fn state(&self) -> (usize, u64) {
        let store = self.issuer.store();
        (
            store.revocations_since(0, 1000).await.unwrap().len(),
            store.tree_head().size,
        )
    }
}
