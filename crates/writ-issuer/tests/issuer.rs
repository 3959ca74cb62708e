//! The issuer through its HTTP API, in-process: init, register, grant, exchange, verify the
//! writ against the JWKS, and every way it refuses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::clocked::{TestClock, World};
use common::{GATEWAY, ISSUER, START, reason};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use writ_issuer::{Clock, Issuer, Settings};
use writ_jose::{Algorithm, SigningKey};
use writ_token::{Audience, Expectations, ProofClaims, UnverifiedWrit};

impl World {
    /// The common world, alice also entitled to every `files` tool.
    async fn new() -> World {
        World::with(None, &["files/read_file", "files/drop_table", "files/*"]).await
    }
}

/// The issuer over `path` on `clock`. A restarted issuer refuses proofs made before it
/// started plus the skew: then the clock moves past them, as a client that retries with
/// fresh proofs would.
async fn open(path: &Path, clock: &Arc<TestClock>, settings: Settings) -> Arc<Issuer> {
    let skew = settings.skew;
    let restart = path.join("replay-horizon").exists();
    let issuer = common::clocked::open(path, clock, settings).await;
    if restart {
        clock.0.fetch_add(skew + 1, Ordering::SeqCst);
    }
    issuer
}

#[tokio::test]
async fn a_granted_call_earns_a_writ_that_verifies_against_the_jwks() {
    let world = World::new().await;
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let mandate = granted["mandate"].as_str().unwrap();
    let (status, body) = world.exchange(mandate, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["expires_in"], 30);
    let writ = body["access_token"].as_str().unwrap();

    let keys = world.key_set().await;
    let issuer = Audience::new(ISSUER).unwrap();
    let gateway = Audience::new(GATEWAY).unwrap();
    let expect = Expectations {
        issuer: &issuer,
        audience: &gateway,
        now: world.clock.now(),
        skew: 5,
    };
    let verified = UnverifiedWrit::parse(writ)
        .unwrap()
        .verify(&keys, &expect)
        .unwrap();
    let claims = verified.claims();
    assert_eq!(claims.sub.as_str(), "alice");
    assert_eq!(claims.cnf.jkt, *world.agent.public_key().thumbprint());
    assert_eq!(claims.mandate.as_str(), granted["id"].as_str().unwrap());
    assert_eq!(claims.log_index, body["log_index"].as_u64().unwrap());
    assert_eq!(claims.policy.ids, vec!["invoke-registered-tool".to_owned()]);
    assert_eq!(claims.exp.seconds_since(claims.iat), 30);

    // The issuance is a leaf of the audit log, provably in the signed checkpoint.
    let (status, leaf) = world
        .call(
            &world.admin,
            Method::GET,
            &format!("/v1/audit/leaves/{}", claims.log_index),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{leaf}");
    assert_eq!(leaf["kind"], "writ_issued");
    assert_eq!(leaf["event"]["event"]["writ"], claims.jti.as_str());
    let (status, checkpoint) = world
        .call(
            &world.admin,
            Method::GET,
            "/v1/audit/checkpoint",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checkpoint}");
    let verifier =
        writ_log::NoteVerifier::parse(checkpoint["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(verifier.to_vkey(), world.issuer.log_verifier_key());
    let text = writ_log::verify_note(checkpoint["note"].as_str().unwrap(), &[verifier]).unwrap();
    let signed = writ_log::Checkpoint::parse(text).unwrap();
    let size = signed.size;
    let (_, leaf) = world
        .call(
            &world.admin,
            Method::GET,
            &format!("/v1/audit/leaves/{}?size={size}", claims.log_index),
            Value::Null,
        )
        .await;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = b64.decode(leaf["data"].as_str().unwrap()).unwrap();
    let proof: Vec<writ_log::Hash> = leaf["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| b64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    writ_log::verify_inclusion(
        &writ_log::leaf_hash(&data),
        claims.log_index,
        size,
        &proof,
        &signed.root,
    )
    .unwrap();
}

#[tokio::test]
async fn every_refusal_names_its_reason_and_is_recorded() {
    let world = World::new().await;
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let size_before = world.issuer.store().tree_head().size;

    let cases: Vec<(&str, (StatusCode, Value))> = vec![
        (
            "outside_mandate",
            world.exchange(&mandate, "/etc/passwd").await,
        ),
        (
            "dpop_key_mismatch",
            world
                .exchange_form(&stranger, World::form(&mandate, "/data/a", GATEWAY))
                .await,
        ),
        (
            "unknown_resource",
            world
                .exchange_form(
                    &world.agent,
                    World::form(&mandate, "/data/a", "https://elsewhere.test/x"),
                )
                .await,
        ),
        (
            "token_malformed",
            world.exchange("garbage.garbage.garbage", "/data/a").await,
        ),
        (
            "unsupported_grant_type",
            world
                .exchange_form(
                    &world.agent,
                    World::form(&mandate, "/data/a", GATEWAY)
                        .replace("token-exchange", "client_credentials"),
                )
                .await,
        ),
        (
            "repeated_parameter",
            world
                .exchange_form(
                    &world.agent,
                    format!(
                        "{}&resource={GATEWAY}",
                        World::form(&mandate, "/data/a", GATEWAY)
                    ),
                )
                .await,
        ),
        (
            "invalid_authorization_details",
            world
                .exchange_form(
                    &world.agent,
                    World::form(&mandate, "/data/a", GATEWAY).replace(
                        "authorization_details=%5B",
                        "authorization_details=%5B%7B%7D%2C",
                    ),
                )
                .await,
        ),
    ];
    for (expected, (status, body)) in &cases {
        assert!(status.is_client_error(), "{expected}: {status} {body}");
        assert_eq!(reason(body), *expected, "{body}");
        assert!(!body["error_description"].as_str().unwrap().is_empty());
    }
    // Each refusal of an authenticated caller is an audit leaf; the three refused before
    // the proof was checked (grant type, repeated parameter, malformed details) are not.
    assert_eq!(
        world.issuer.store().tree_head().size,
        size_before + cases.len() as u64 - 3
    );

    // A replayed proof.
    let form = World::form(&mandate, "/data/a", GATEWAY);
    let proof = world.proof(&world.agent, &Method::POST, "/token");
    let request = |proof: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/token")
            .header("dpop", proof)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.clone()))
            .unwrap()
    };
    assert_eq!(world.send(request(&proof)).await.0, StatusCode::OK);
    let (status, body) = world.send(request(&proof)).await;
    // RFC 9449 §5: a token endpoint refuses a bad proof with 400 `invalid_dpop_proof`.
    assert_eq!(
        (status, body["error"].as_str(), reason(&body)),
        (
            StatusCode::BAD_REQUEST,
            Some("invalid_dpop_proof"),
            "dpop_replayed"
        )
    );

    // A call the policy forbids: the tool's data label is not granted.
    let unlabelled = world.grant("/data/*", json!([])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    let details = json!([{
        "type": "mcp_tool_call", "server": "files", "tool": "read_file",
        "arguments": {"object": {"required": {"path": {"exact": "/data/a"}}}}
    }]);
    let form = serde_urlencoded::to_string([
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", unlabelled.as_str()),
        (
            "subject_token_type",
            "urn:writ:params:oauth:token-type:mandate",
        ),
        ("resource", GATEWAY),
        ("authorization_details", &details.to_string()),
    ])
    .unwrap();
    let (status, body) = world.exchange_form(&world.agent, form).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "policy_forbid"),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("invoke-needs-data-clearance")
    );

    // Revoking the mandate stops the next exchange.
    let id = {
        let claims: Value = serde_json::from_slice(
            &writ_jose::base64url_decode(mandate.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/revocations",
            json!({"kind": "mandate", "subject": id, "reason": "task done"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = world.exchange(&mandate, "/data/a").await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "mandate_revoked")
    );

    // An expired mandate.
    let fresh = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    world.clock.0.store(16 * 60, Ordering::SeqCst);
    let (status, body) = world.exchange(&fresh, "/data/a").await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "token_expired")
    );
}

#[tokio::test]
async fn inventory_and_grants_refuse_bad_input_and_change_nothing() {
    let world = World::new().await;
    let size = world.issuer.store().tree_head().size;
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let cases = [
        (
            &world.alice,
            "/v1/humans",
            json!({"id": "mallory"}),
            "admin_required",
        ),
        (
            &world.admin,
            "/v1/humans",
            json!({"id": "bob", "extra": 1}),
            "invalid_body",
        ),
        (
            &world.admin,
            "/v1/humans",
            json!({"id": "b o b"}),
            "invalid_body",
        ),
        (
            &world.admin,
            "/v1/humans",
            json!({"id": "alice"}),
            "already_exists",
        ),
        (
            &world.alice,
            "/v1/agents",
            json!({"name": "x", "jwk": {"kty": "RSA", "crv": "", "x": ""}, "tools": []}),
            "invalid_jwk",
        ),
        (&stranger, "/v1/agents", json!({}), "unknown_key"),
    ];
    for (key, path, body, expected) in cases {
        let (status, body) = world.call(key, Method::POST, path, body).await;
        assert!(status.is_client_error(), "{expected}: {status}");
        assert_eq!(reason(&body), expected, "{body}");
    }
    assert_eq!(
        world.issuer.store().tree_head().size,
        size,
        "refused inventory changes leave no trace in the data"
    );
    // A grant for a tool the inventory does not have, or an agent someone else owns.
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/mandates",
            json!({
                "agent": "report-bot", "task": "t",
                "grants": [{"type": "mcp_tool_call", "server": "files", "tool": "format_disk"}]
            }),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "unknown_tool")
    );
    let (status, body) = world
        .call(&world.admin, Method::POST, "/v1/humans", json!({"id": "bob", "jwk": serde_json::to_value(SigningKey::generate(Algorithm::EdDSA).unwrap().public_key().to_jwk()).unwrap()}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Oversized bodies are refused before parsing.
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/humans")
        .header(
            "dpop",
            world.proof(&world.admin, &Method::POST, "/v1/humans"),
        )
        .body(Body::from(vec![b' '; writ_issuer::MAX_BODY + 1]))
        .unwrap();
    assert_eq!(world.send(request).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_small_order_key_is_never_registered() {
    // The Ed25519 identity point: a "signature" verifies under it without any private key.
    let identity =
        json!({"kty": "OKP", "crv": "Ed25519", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let world = World::new().await;
    let size = world.issuer.store().tree_head().size;
    for (key, path, body) in [
        (
            &world.alice,
            "/v1/agents",
            json!({"name": "ghost-bot", "jwk": identity, "tools": ["files/read_file"]}),
        ),
        (
            &world.admin,
            "/v1/humans",
            json!({"id": "ghost", "jwk": identity}),
        ),
        (
            &world.admin,
            "/v1/gateways",
            json!({"name": "ghost-gw", "jwk": identity, "audience": "https://ghost.test/mcp"}),
        ),
    ] {
        let (status, body) = world.call(key, Method::POST, path, body).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::BAD_REQUEST, "invalid_jwk"),
            "{path}: {body}"
        );
        assert!(body.to_string().contains("small order"), "{body}");
    }
    assert_eq!(
        world.issuer.store().tree_head().size,
        size,
        "nothing registered"
    );
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    let world = World::new().await;
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    let size = world.issuer.store().tree_head().size;
    let kid = world.key_set().await;
    drop(world.issuer);
    let issuer = open(&world.dir, &world.clock, Settings::default()).await;
    let world = World { issuer, ..world };
    assert_eq!(world.issuer.store().tree_head().size, size);
    assert_eq!(world.key_set().await, kid);
    let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["log_index"].as_u64().unwrap(), size);
}

#[tokio::test]
async fn no_audit_record_no_writ() {
    let world = World::new().await;
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(world.issuer);
    // Reopen with the smallest quota: SQLite holds the database at its current size, so
    // the log fills up after the free space left in its pages.
    let settings = Settings {
        store: writ_store::StoreOptions {
            max_database_bytes: Some(1),
        },
        ..Settings::default()
    };
    let issuer = open(&world.dir, &world.clock, settings).await;
    let world = World { issuer, ..world };
    let mut refusal = None;
    for _ in 0..500 {
        let size = world.issuer.store().tree_head().size;
        let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
        if status == StatusCode::OK {
            assert_eq!(
                body["log_index"].as_u64().unwrap(),
                size,
                "each writ issued is a leaf"
            );
            continue;
        }
        refusal = Some((size, status, body));
        break;
    }
    let (size, status, body) = refusal.expect("the full store refuses");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(reason(&body), "audit_log_unavailable");
    assert!(body.get("access_token").is_none());
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no writ was issued")
    );
    // No issuance was recorded; the refusal itself may have been, if it still fitted.
    let after = world.issuer.store().tree_head().size;
    assert!(after <= size + 1);
    for index in size..after {
        let leaf = world.issuer.store().leaf(index).await.unwrap().unwrap();
        assert_eq!(leaf.kind, "writ_denied");
        assert!(
            String::from_utf8(leaf.data)
                .unwrap()
                .contains("audit_log_unavailable")
        );
    }
}

#[tokio::test]
async fn the_revocation_feed_resumes_and_wakes_waiters() {
    let world = World::new().await;
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let id = granted["id"].as_str().unwrap().to_owned();
    let (status, feed) = world
        .call(
            &world.gateway,
            Method::GET,
            "/v1/revocations?after=0",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(feed["revocations"].as_array().unwrap().len(), 0);
    let waiter = {
        let world = &world;
        async move {
            world
                .call(
                    &world.gateway,
                    Method::GET,
                    "/v1/revocations?after=0&wait=10",
                    Value::Null,
                )
                .await
        }
    };
    let revoker = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        world
            .call(
                &world.alice,
                Method::POST,
                "/v1/revocations",
                json!({"kind": "human", "subject": "alice", "reason": "offboarded"}),
            )
            .await
    };
    let ((status, feed), (revoked_status, revoked)) = tokio::join!(waiter, revoker);
    assert_eq!(revoked_status, StatusCode::CREATED, "{revoked}");
    assert_eq!(status, StatusCode::OK);
    let items = feed["revocations"].as_array().unwrap();
    let subjects: Vec<(&str, &str)> = items
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        subjects,
        vec![("human", "alice"), ("mandate", id.as_str())],
        "the human and their mandates"
    );
    let next = feed["next"].as_i64().unwrap();
    let (_, rest) = world
        .call(
            &world.gateway,
            Method::GET,
            &format!("/v1/revocations?after={next}"),
            Value::Null,
        )
        .await;
    assert!(rest["revocations"].as_array().unwrap().is_empty());
    // Agents may not read the feed.
    let (status, body) = world
        .call(&world.agent, Method::GET, "/v1/revocations", Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "gateway_required")
    );
}

#[tokio::test]
async fn revocation_responses_report_new_subjects_with_their_feed_numbers() {
    let world = World::new().await;
    let first = world.grant("/data/*", json!(["internal"])).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/revocations",
            json!({"kind": "mandate", "subject": first, "reason": "done"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["revoked"][0]["seq"], 1);
    // Revoking alice covers her mandate again, which was already revoked: the response lists
    // only the human, with the sequence number the feed gives it.
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/revocations",
            json!({"kind": "human", "subject": "alice", "reason": "left"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let revoked = body["revoked"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{body}");
    assert_eq!(
        (revoked[0]["kind"].as_str(), revoked[0]["seq"].as_i64()),
        (Some("human"), Some(2))
    );
    let (_, feed) = world
        .call(
            &world.gateway,
            Method::GET,
            "/v1/revocations?after=1",
            Value::Null,
        )
        .await;
    assert_eq!(feed["revocations"][0]["subject"], "alice");
    assert_eq!(feed["revocations"][0]["seq"], 2);
}

#[tokio::test]
async fn leaf_contents_are_for_administrators_only() {
    let world = World::new().await;
    world.grant("/data/*", json!(["internal"])).await;
    for key in [&world.alice, &world.agent, &world.gateway] {
        let (status, body) = world
            .call(key, Method::GET, "/v1/audit/leaves/0", Value::Null)
            .await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::FORBIDDEN, "admin_required"),
            "{body}"
        );
    }
    // Checkpoints reveal nothing but size and root.
    let (status, _) = world
        .call(
            &world.agent,
            Method::GET,
            "/v1/audit/checkpoint",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn protocol_methods_need_the_server_as_a_whole() {
    let world = World::new().await;
    let grant = |agent: &str| {
        json!({
            "agent": agent, "task": "list the tools",
            "grants": [{"type": "mcp_request", "server": "files", "methods": ["tools/list"]}]
        })
    };
    // report-bot is registered for single tools only, not `files/*`.
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/mandates",
            grant("report-bot"),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "policy_no_permit"),
        "{body}"
    );
    // An agent registered for `files/*` may be granted and issued `tools/list`.
    let lister = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (status, body) = world
        .call(&world.alice, Method::POST, "/v1/agents", json!({
            "name": "lister", "jwk": serde_json::to_value(lister.public_key().to_jwk()).unwrap(), "tools": ["files/*"]
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, granted) = world
        .call(&world.alice, Method::POST, "/v1/mandates", grant("lister"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{granted}");
    let details = json!([{"type": "mcp_request", "server": "files", "methods": ["tools/list"]}]);
    let form = serde_urlencoded::to_string([
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", granted["mandate"].as_str().unwrap()),
        (
            "subject_token_type",
            "urn:writ:params:oauth:token-type:mandate",
        ),
        ("resource", GATEWAY),
        ("authorization_details", &details.to_string()),
    ])
    .unwrap();
    let (status, body) = world.exchange_form(&lister, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn every_leaf_is_canonical_json_including_those_init_writes() {
    let world = World::new().await;
    world.grant("/data/*", json!(["internal"])).await;
    let size = world.issuer.store().tree_head().size;
    for index in 0..size {
        let leaf = world.issuer.store().leaf(index).await.unwrap().unwrap();
        let mut value: Value = serde_json::from_slice(&leaf.data).unwrap();
        writ_jose::sort_members(&mut value);
        assert_eq!(
            serde_json::to_vec(&value).unwrap(),
            leaf.data,
            "leaf {index} ({})",
            leaf.kind
        );
    }
}

/// The `kid` in a compact JWS header.
fn kid_of(token: &str) -> String {
    writ_jose::UnverifiedJws::parse(token, 8192)
        .unwrap()
        .header()
        .kid()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_rotated_key_stays_published_until_its_tokens_expire_and_can_be_revoked() {
    let world = World::new().await;
    let old_kid = world.key_set().await.iter().next().unwrap().0.to_owned();
    let before = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(kid_of(&before), old_kid);

    let (status, body) = world
        .call(&world.alice, Method::POST, "/v1/keys/rotate", Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "admin_required")
    );
    let (status, rotated) = world
        .call(&world.admin, Method::POST, "/v1/keys/rotate", Value::Null)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let retire_at = START + 3600 + 5;
    assert_eq!(
        rotated["previous"],
        json!([{"kid": old_kid, "retire_at": retire_at}])
    );
    let leaf = world
        .issuer
        .store()
        .leaf(rotated["log_index"].as_u64().unwrap())
        .await;
    assert_eq!(leaf.unwrap().unwrap().kind, "key_rotated");

    // Both keys are published; the old mandate still works and the writ it earns is signed
    // by the new key; new mandates are signed by the new key.
    let published: Vec<String> = world
        .key_set()
        .await
        .iter()
        .map(|(kid, _)| kid.to_owned())
        .collect();
    assert!(
        published.contains(&old_kid) && published.contains(&new_kid),
        "{published:?}"
    );
    let (status, body) = world.exchange(&before, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kid_of(body["access_token"].as_str().unwrap()), new_kid);
    let after = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(kid_of(&after), new_kid);

    // The rotation survives a restart.
    drop(world.issuer);
    let issuer = open(&world.dir, &world.clock, Settings::default()).await;
    let world = World { issuer, ..world };
    assert_eq!(world.key_set().await.len(), 2);
    assert_eq!(world.issuer.identity().active_kid, new_kid);

    // Revoking the old key stops the mandates it signed, and only those.
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/revocations",
            json!({"kind": "key", "subject": old_kid, "reason": "rotated out early"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = world.exchange(&before, "/data/q3.csv").await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "key_revoked")
    );
    let (status, body) = world.exchange(&after, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Once the overlap ends, the old key leaves the JWKS.
    world.clock.0.store(retire_at - START, Ordering::SeqCst);
    let published = world.key_set().await;
    assert_eq!(
        published.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
        vec![new_kid.as_str()]
    );
}

#[tokio::test]
async fn revoked_callers_lose_access_and_a_key_names_one_caller() {
    let world = World::new().await;
    let jwk = |key: &SigningKey| serde_json::to_value(key.public_key().to_jwk()).unwrap();
    // The gateway's key cannot also be an agent's or a human's.
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/agents",
            json!({"name": "copycat", "jwk": jwk(&world.gateway), "tools": []}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::CONFLICT, "key_in_use")
    );
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/humans",
            json!({"id": "mallory", "jwk": jwk(&world.agent)}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::CONFLICT, "key_in_use")
    );
    assert!(
        world.issuer.store().human("mallory").is_none(),
        "a refused registration changes nothing"
    );

    // A revoked agent gets no new mandate.
    let agent = world.agent.public_key().thumbprint().to_string();
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/revocations",
            json!({"kind": "agent", "subject": agent, "reason": "compromised"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = world
        .call(&world.alice, Method::POST, "/v1/mandates", json!({"agent": "report-bot", "task": "t", "grants": [{"type": "mcp_tool_call", "server": "files", "tool": "read_file"}]}))
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "agent_revoked")
    );

    // A revoked human cannot act at all.
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/revocations",
            json!({"kind": "human", "subject": "alice", "reason": "left the company"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = world
        .call(&world.alice, Method::GET, "/v1/agents", Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "human_revoked")
    );
}

#[tokio::test]
async fn with_nonces_required_a_proof_needs_a_recent_one() {
    let world = World::new().await;
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(world.issuer);
    let settings = Settings {
        require_dpop_nonce: true,
        ..Settings::default()
    };
    let issuer = open(&world.dir, &world.clock, settings).await;
    let world = World { issuer, ..world };
    let send = |key: &SigningKey, method: Method, path: &str, nonce: Option<&str>, body: String| {
        let jti = format!("n{}", world.jti.fetch_add(1, Ordering::SeqCst));
        let mut claims = ProofClaims::new(
            method.as_str(),
            &format!("{ISSUER}{path}"),
            world.clock.now(),
            jti,
        );
        if let Some(nonce) = nonce {
            claims = claims.with_nonce(nonce);
        }
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("dpop", claims.sign(key).unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let router = writ_issuer::router(Arc::clone(&world.issuer));
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                headers,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };

    // RFC 9449 §9: a resource-style route challenges with 401 and hands out the nonce.
    let (status, headers, body) =
        send(&world.alice, Method::GET, "/v1/agents", None, String::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (body["error"].as_str(), reason(&body)),
        (Some("use_dpop_nonce"), "dpop_nonce_required")
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("use_dpop_nonce")
    );
    let nonce = headers["dpop-nonce"].to_str().unwrap().to_owned();
    let (status, headers, body) = send(
        &world.alice,
        Method::GET,
        "/v1/agents",
        Some(&nonce),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.contains_key("dpop-nonce"));

    // RFC 9449 §8: the token endpoint answers 400 `use_dpop_nonce`.
    let form = World::form(&mandate, "/data/q3.csv", GATEWAY);
    let (status, _, body) = send(&world.agent, Method::POST, "/token", None, form.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("use_dpop_nonce"))
    );
    let (status, _, body) = send(
        &world.agent,
        Method::POST,
        "/token",
        Some(&nonce),
        form.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = send(
        &world.agent,
        Method::POST,
        "/token",
        Some("made-up"),
        form.clone(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("use_dpop_nonce"))
    );

    // Two windows later the nonce is stale.
    world.clock.0.fetch_add(120, Ordering::SeqCst);
    let (status, _, body) = send(&world.agent, Method::POST, "/token", Some(&nonce), form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("use_dpop_nonce"))
    );
}

#[tokio::test]
async fn the_policy_directory_reloads_on_change_and_a_bad_set_changes_nothing() {
    let world = World::new().await;
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("default.cedar"),
        writ_policy::DEFAULT_POLICIES,
    )
    .unwrap();
    drop(world.issuer);
    let settings = Settings {
        policy_dir: Some(policies.path().to_owned()),
        policy_poll_interval: std::time::Duration::from_millis(20),
        ..Settings::default()
    };
    let issuer = open(&world.dir, &world.clock, settings).await;
    let world = World { issuer, ..world };
    let (status, shown) = world
        .call(&world.alice, Method::GET, "/v1/policy", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let original = shown["version"].as_str().unwrap().to_owned();
    assert_eq!(shown["policies"].as_array().unwrap().len(), 7);

    // A set that does not validate is refused whole; the old one stays in force.
    std::fs::write(
        policies.path().join("broken.cedar"),
        r#"@id("broken") forbid (principal, action == Writ::Action::"Invoke", resource) when { principal.no_such_attribute };"#,
    )
    .unwrap();
    let (status, body) = world
        .call(&world.admin, Method::POST, "/v1/policy/reload", Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "policy_invalid")
    );
    let (_, shown) = world
        .call(&world.alice, Method::GET, "/v1/policy", Value::Null)
        .await;
    assert_eq!(shown["version"], original.as_str());
    assert!(
        shown["last_error"]
            .as_str()
            .unwrap()
            .contains("do not validate"),
        "{shown}"
    );
    let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "the old set still decides: {body}");
    let (status, body) = world
        .call(&world.alice, Method::POST, "/v1/policy/reload", Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "admin_required")
    );

    // A valid change is picked up by the watcher, audited, and decides the next request.
    std::fs::remove_file(policies.path().join("broken.cedar")).unwrap();
    std::fs::write(
        policies.path().join("freeze.cedar"),
        r#"@id("freeze-files") forbid (principal, action == Writ::Action::"Invoke", resource == Writ::Tool::"files/read_file");"#,
    )
    .unwrap();
    let mut version = original.clone();
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        version = world.issuer.policy_version();
        if version != original {
            break;
        }
    }
    assert_ne!(version, original, "the watcher reloaded the directory");
    let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "policy_forbid"),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("freeze-files"),
        "{body}"
    );
    let loaded = world
        .issuer
        .store()
        .lookup(&format!("policy:{version}"))
        .await
        .unwrap();
    let leaf = world.issuer.store().leaf(loaded[0]).await.unwrap().unwrap();
    assert_eq!(leaf.kind, "policy_loaded");
}

#[tokio::test]
async fn the_inventory_lists_to_those_allowed_to_see_it() {
    let world = World::new().await;
    let (status, body) = world
        .call(&world.admin, Method::GET, "/v1/humans", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["humans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["alice", "root"]);
    let (status, body) = world
        .call(&world.alice, Method::GET, "/v1/humans", Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "admin_required")
    );
    let (status, body) = world
        .call(&world.agent, Method::GET, "/v1/providers", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["providers"][0]["tools"][1],
        json!({"name": "read_file", "labels": ["internal"]})
    );
    let (status, body) = world
        .call(&world.admin, Method::GET, "/v1/gateways", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["gateways"][0]["audience"], GATEWAY);
    let (status, body) = world
        .call(&world.alice, Method::GET, "/v1/agents", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["agents"][0]["name"], "report-bot");
}

#[tokio::test]
async fn metrics_count_issuances_and_refusals_by_reason() {
    let world = World::new().await;
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        world.exchange(&mandate, "/data/q3.csv").await.0,
        StatusCode::OK
    );
    assert_eq!(
        world.exchange(&mandate, "/etc/passwd").await.0,
        StatusCode::FORBIDDEN
    );
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let response = writ_issuer::router(Arc::clone(&world.issuer))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for expected in [
        "writ_writs_issued_total ",
        "writ_token_refusals_total{reason=\"outside_mandate\"} ",
        "writ_http_requests_total{route=\"/token\",status=\"200\"} ",
        "writ_mandates_granted_total ",
        "writ_audit_log_leaves ",
        "writ_http_request_duration_seconds_bucket{route=\"/token\",le=\"0.01\"} ",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains(&mandate), "no token in metrics");
}

/// `(method, path)` pairs of the crate docs' route table.
fn documented_routes() -> Vec<(String, String)> {
    include_str!("../src/lib.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .filter_map(|rest| rest.split_once('`').map(|(route, _)| route.to_owned()))
        .filter_map(|route| {
            let (method, path) = route.split_once(' ')?;
            Some((method.to_owned(), path.split('?').next()?.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_served() {
    let world = World::new().await;
    let request = Request::builder()
        .uri("/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let (status, document) = world.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    let mut described = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
        {
            described.push((method.to_uppercase(), path.clone()));
        }
    }
    described.sort();
    let mut documented = documented_routes();
    documented.sort();
    assert_eq!(
        described, documented,
        "openapi.json and the crate's route table disagree"
    );
    // Every described operation is routed: no 404 or 405, whatever else it says.
    for (method, path) in &described {
        let uri = path.replace("{index}", "0");
        let request = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let (status, _) = world.send(request).await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}"
        );
    }
}

/// `n` and `e` from a DER `RSAPublicKey` (RFC 8017 A.1.1): a SEQUENCE of two INTEGERs.
fn rsa_public_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(der: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(der[0], tag);
        let (len, start) = match der[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let bytes = (n & 0x7f) as usize;
                let len = der[2..2 + bytes]
                    .iter()
                    .fold(0, |acc, b| acc << 8 | *b as usize);
                (len, 2 + bytes)
            }
        };
        (&der[start..start + len], &der[start + len..])
    }
    let (body, _) = read(der, 0x30);
    let (n, rest) = read(body, 0x02);
    let (e, _) = read(rest, 0x02);
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

/// An identity provider with an RS256 key, as enterprise IdPs mostly use.
struct Idp {
    key: aws_lc_rs::rsa::KeyPair,
    jwks: String,
}

impl Idp {
    fn new() -> Idp {
        use aws_lc_rs::signature::KeyPair as _;
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let (n, e) = rsa_public_components(key.public_key().as_ref());
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "idp-1", "use": "sig", "alg": "RS256",
             "n": writ_jose::base64url_encode(n), "e": writ_jose::base64url_encode(e),
             "x5t": "ignored"},
            {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"}
        ]})
        .to_string();
        Idp { key, jwks }
    }

    fn id_token(&self, claims: Value) -> String {
        let header = writ_jose::base64url_encode(
            json!({"alg": "RS256", "kid": "idp-1", "typ": "JWT"}).to_string(),
        );
        let payload = writ_jose::base64url_encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        format!("{input}.{}", writ_jose::base64url_encode(signature))
    }
}

#[tokio::test]
async fn an_oidc_id_token_binds_a_new_key_to_its_human_once() {
    const IDP: &str = "https://login.example.com";
    let world = World::new().await;
    let idp = Idp::new();
    let jwks = world.dir.join("idp-jwks.json");
    std::fs::write(&jwks, &idp.jwks).unwrap();
    drop(world.issuer);
    let settings = Settings {
        oidc: vec![writ_issuer::OidcProvider {
            issuer: IDP.into(),
            client_id: "writ".into(),
            jwks_file: Some(jwks),
            jwks_url: None,
        }],
        ..Settings::default()
    };
    let issuer = open(&world.dir, &world.clock, settings).await;
    let world = World { issuer, ..world };
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/humans",
            json!({"id": "carol", "oidc": {"issuer": IDP, "subject": "00u-carol"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let carol = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let jkt = carol.public_key().thumbprint().to_string();
    // The identity provider issues its tokens after the issuer restarted.
    let now = world.clock.now().as_secs();
    let claims = |changes: Value| {
        let mut claims = json!({"iss": IDP, "sub": "00u-carol", "aud": ["writ", "other"], "exp": now + 300, "iat": now, "nonce": jkt, "email": "carol@example.com"});
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };
    let bind = |token: String| {
        world.call(
            &carol,
            Method::POST,
            "/v1/humans/bind",
            json!({"id_token": token}),
        )
    };

    // Each refusal, and nothing bound by any of them.
    let other_idp = Idp::new();
    let cases = [
        (
            idp.id_token(claims(json!({"nonce": "someone-elses-key"}))),
            "id_token_nonce_mismatch",
        ),
        (
            idp.id_token(claims(json!({"aud": "another-client"}))),
            "id_token_audience",
        ),
        (
            idp.id_token(claims(json!({"exp": now - 60}))),
            "id_token_expired",
        ),
        (
            idp.id_token(claims(json!({"iss": "https://evil.example"}))),
            "unknown_idp",
        ),
        (other_idp.id_token(claims(json!({}))), "invalid_id_token"),
        (
            idp.id_token(claims(json!({"sub": "00u-nobody"}))),
            "unknown_human",
        ),
    ];
    for (token, expected) in cases {
        let (status, body) = bind(token).await;
        assert!(status.is_client_error(), "{expected}: {status} {body}");
        assert_eq!(reason(&body), expected, "{body}");
    }
    let (status, body) = world
        .call(&carol, Method::GET, "/v1/agents", Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "unknown_key")
    );

    // The right token binds the key, once; carol can then act with it.
    let token = idp.id_token(claims(json!({})));
    let (status, body) = bind(token.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["human"].as_str(), body["jkt"].as_str()),
        (Some("carol"), Some(jkt.as_str()))
    );
    let (status, body) = world
        .call(&carol, Method::GET, "/v1/agents", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = bind(token).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "id_token_replayed")
    );
    let leaf = world.issuer.store().lookup("human:carol").await.unwrap();
    let leaf = world
        .issuer
        .store()
        .leaf(*leaf.last().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leaf.kind, "human_key_bound");
}

#[tokio::test]
async fn proofs_by_unregistered_keys_never_enter_the_replay_cache() {
    let world = World::new().await;
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let proof = world.proof(&stranger, &Method::GET, "/v1/agents");
    for _ in 0..2 {
        let request = Request::builder()
            .uri("/v1/agents")
            .header("dpop", proof.clone())
            .body(Body::empty())
            .unwrap();
        let (status, body) = world.send(request).await;
        // The same proof twice: refused as unknown both times, not as a replay, because
        // it was never recorded.
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::UNAUTHORIZED, "unknown_key")
        );
    }
}

#[tokio::test]
async fn gateways_read_a_mandates_grants_and_strangers_learn_nothing() {
    let world = World::new().await;
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let id = granted["id"].as_str().unwrap();
    let path = format!("/v1/mandates/{id}");
    // A gateway reads a mandate once it was issued a writ of it.
    let (status, body) = world
        .exchange(granted["mandate"].as_str().unwrap(), "/data/q3.csv")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = world
        .call(&world.gateway, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["human"], "alice");
    assert_eq!(body["revoked"], false);
    assert_eq!(body["grants"][0]["tool"], "read_file");
    assert_eq!(
        body["grants"][0]["arguments"]["object"]["required"]["path"]["glob"],
        "/data/*"
    );
    // The granting human and the holding agent see it too.
    for key in [&world.alice, &world.agent] {
        let (status, _) = world.call(key, Method::GET, &path, Value::Null).await;
        assert_eq!(status, StatusCode::OK);
    }

    // Another human does not learn that it exists.
    let bob = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/humans",
            json!({
                "id": "bob", "jwk": serde_json::to_value(bob.public_key().to_jwk()).unwrap()
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = world.call(&bob, Method::GET, &path, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reason(&body), "unknown_mandate");

    // Revocation shows.
    let (status, _) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/revocations",
            json!({
                "kind": "mandate", "subject": id, "reason": "done"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = world
        .call(&world.gateway, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(body["revoked"], true);
}

#[tokio::test]
async fn gateway_decisions_are_recorded_once_per_request_id() {
    let world = World::new().await;
    // A gateway reports decisions on the writs issued for it.
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let (status, body) = world
        .exchange(granted["mandate"].as_str().unwrap(), "/data/q3.csv")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let writ = body["access_token"].as_str().unwrap();
    let writ = UnverifiedWrit::parse(writ).unwrap();
    let writ = writ.unverified_claims().unwrap();
    let (writ, mandate, agent) = (
        writ.jti.to_string(),
        writ.mandate.to_string(),
        writ.cnf.jkt.to_string(),
    );
    let decision = |id: &str, verdict: &str| {
        json!({
            "request_id": id, "time": 1_700_000_000, "decision": verdict,
            "reason": if verdict == "allow" { "allowed" } else { "tool_mismatch" },
            "route": "files", "method": "tools/call", "target": "read_file",
            "writ": writ, "mandate": mandate, "agent": agent, "human": "alice"
        })
    };
    let report = json!({"decisions": [decision("req-1", "allow"), decision("req-2", "deny")]});
    let size = world.issuer.store().tree_head().size;
    let (status, body) = world
        .call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            report.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recorded = body["recorded"].as_array().unwrap();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0]["request_id"], "req-1");
    assert_eq!(recorded[1]["duplicate"], false);
    assert_eq!(world.issuer.store().tree_head().size, size + 2);
    let index = recorded[1]["log_index"].as_u64().unwrap();
    let leaf = world.issuer.store().leaf(index).await.unwrap().unwrap();
    let event: Value = serde_json::from_slice(&leaf.data).unwrap();
    assert_eq!(event["kind"], "gateway_decision");
    assert_eq!(event["event"]["gateway"], "gw");
    assert_eq!(event["event"]["reason"], "tool_mismatch");
    assert_eq!(
        world.issuer.store().lookup("request:req-2").await.unwrap(),
        vec![index]
    );

    // A resent report (its answer lost) records nothing new.
    let (status, body) = world
        .call(&world.gateway, Method::POST, "/v1/audit/decisions", report)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["recorded"][1]["duplicate"], true);
    assert_eq!(body["recorded"][1]["log_index"].as_u64(), Some(index));
    assert_eq!(world.issuer.store().tree_head().size, size + 2);

    // Only gateways report, and a bad decision spoils the whole report.
    let (status, body) = world
        .call(
            &world.agent,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [decision("req-3", "allow")]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(reason(&body), "gateway_required");
    let (status, body) = world
        .call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [decision("req-4", "allow"), decision("bad id!", "deny")]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reason(&body), "invalid_request_id");
    assert_eq!(world.issuer.store().tree_head().size, size + 2);
}

#[tokio::test]
async fn a_resource_under_a_gateways_audience_is_served_by_it() {
    let world = World::new().await;
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let mandate = granted["mandate"].as_str().unwrap();
    let route = format!("{GATEWAY}/files");
    let (status, body) = world
        .exchange_form(&world.agent, World::form(mandate, "/data/q3.txt", &route))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A look-alike prefix is not under it.
    let (status, body) = world
        .exchange_form(
            &world.agent,
            World::form(mandate, "/data/q3.txt", &format!("{GATEWAY}x/files")),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reason(&body), "unknown_resource");
}

#[tokio::test]
async fn a_restart_rebuilds_baselines_and_held_calls_from_the_log() {
    let world = World::new().await;
    let settings = || step_up(writ_store::StoreOptions::default());
    drop(world.issuer);
    let world = World {
        issuer: open(&world.dir, &world.clock, settings()).await,
        ..world
    };
    let (mandate, held) = learn_then_burst(&world).await;
    assert_eq!(reason(&held), "approval_pending", "{held}");
    let approval = held["approval"].as_str().unwrap().to_owned();
    let (_, before) = world
        .call(
            &world.alice,
            Method::GET,
            "/v1/agents/report-bot/baseline",
            Value::Null,
        )
        .await;

    drop(world.issuer);
    let world = World {
        issuer: open(&world.dir, &world.clock, settings()).await,
        ..world
    };
    // The baseline and the held call are as they were.
    let (status, after) = world
        .call(
            &world.alice,
            Method::GET,
            "/v1/agents/report-bot/baseline",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["baseline"], before["baseline"]);
    // Six while learning; the burst's calls carry a finding, so they are not learned.
    assert_eq!(after["baseline"]["busiest_window"], 6);
    let (_, pending) = world
        .call(&world.alice, Method::GET, "/v1/approvals", Value::Null)
        .await;
    assert_eq!(pending["approvals"][0]["id"], approval.as_str());
    assert_eq!(
        pending["approvals"][0]["findings"][0]["detector"],
        "rate_spike"
    );

    // Only alice answers; others do not learn it exists.
    let (status, body) = answer(&world, &world.agent, &approval, "approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(reason(&body), "human_required");
    let (status, body) = answer(&world, &world.alice, &approval, "maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(reason(&body), "invalid_decision");
    let (status, body) = answer(&world, &world.alice, &approval, "approve").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "approved");
    let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Gateways and administrators read the response limits; agents do not.
    let agent = world.agent.public_key().thumbprint().as_str().to_owned();
    let (status, body) = world
        .call(
            &world.agent,
            Method::GET,
            &format!("/v1/behaviour/limits/{agent}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = world
        .call(
            &world.gateway,
            Method::GET,
            &format!("/v1/behaviour/limits/{agent}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mode"], "step_up");
}

/// The holder of `key` answers approval `id` with `decision`.
async fn answer(world: &World, key: &SigningKey, id: &str, decision: &str) -> (StatusCode, Value) {
    world
        .call(
            key,
            Method::POST,
            &format!("/v1/approvals/{id}"),
            json!({"decision": decision}),
        )
        .await
}

/// Settings in which the detectors speak after six calls and every finding is held for
/// the agent's owner, with `store`.
fn step_up(store: writ_store::StoreOptions) -> Settings {
    Settings {
        behaviour: writ_issuer::BehaviourConfig {
            detectors: writ_behaviour::SettingsSpec {
                learning_calls: 6,
                learning_seconds: 0,
                mode: Some(writ_behaviour::Mode::StepUp),
                // This world's calls constrain their arguments rather than pin them; only
                // record that, so the burst is what is held.
                modes: [(
                    writ_behaviour::Detector::ArgumentShape,
                    writ_behaviour::Mode::Observe,
                )]
                .into(),
                ..writ_behaviour::SettingsSpec::default()
            },
            ..writ_issuer::BehaviourConfig::default()
        },
        store,
        // This world's clock stands still, so a restart moves it past the restarted
        // issuer's replay horizon (see `open`): with no skew, by one second only.
        skew: 0,
        ..Settings::default()
    }
}

/// A new mandate, six calls ten seconds apart to learn from (the busiest minute holds
/// six), then a burst past three times that: the mandate and the burst's refusal.
async fn learn_then_burst(world: &World) -> (String, Value) {
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..6 {
        let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        world.clock.0.fetch_add(10, Ordering::SeqCst);
    }
    let held = held_call(world, &mandate).await;
    (mandate, held)
}

/// Asks for `/data/q3.csv` until the issuer stops answering with a writ: the refusal.
async fn held_call(world: &World, mandate: &str) -> Value {
    for _ in 0..100 {
        let (status, body) = world.exchange(mandate, "/data/q3.csv").await;
        if status != StatusCode::OK {
            return body;
        }
    }
    panic!("a burst of 100 calls was never held");
}

/// The state of approval `id`, as its owner alice lists it.
async fn approval_state(world: &World, id: &str) -> Option<Value> {
    let (_, all) = world
        .call(
            &world.alice,
            Method::GET,
            "/v1/approvals?state=all",
            Value::Null,
        )
        .await;
    all["approvals"]
        .as_array()?
        .iter()
        .find(|approval| approval["id"] == id)
        .map(|approval| approval["state"].clone())
}

#[tokio::test]
async fn an_approval_whose_writ_cannot_be_recorded_stands_for_the_next_try() {
    let world = World::new().await;
    let settings = step_up;
    drop(world.issuer);
    let world = World {
        issuer: open(&world.dir, &world.clock, settings(Default::default())).await,
        ..world
    };
    let (mandate, held) = learn_then_burst(&world).await;
    let approval = held["approval"].as_str().unwrap().to_owned();
    let (status, body) = answer(&world, &world.alice, &approval, "approve").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The log fills up (other calls of the burst asking for approvals of their own) before
    // the agent retries.
    drop(world.issuer);
    let full = writ_store::StoreOptions {
        max_database_bytes: Some(1),
    };
    let world = World {
        issuer: open(&world.dir, &world.clock, settings(full)).await,
        ..world
    };
    let mut filled = false;
    for n in 0..500 {
        let (status, _) = world.exchange(&mandate, &format!("/data/f{n}.csv")).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            filled = true;
            break;
        }
    }
    assert!(filled, "the quota never stopped the log");
    let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(reason(&body), "audit_log_unavailable");
    // No writ, so the approval was not spent.
    assert_eq!(
        approval_state(&world, &approval).await,
        Some(json!("approved"))
    );

    // Space again: the retry gets its writ, once.
    drop(world.issuer);
    let world = World {
        issuer: open(&world.dir, &world.clock, settings(Default::default())).await,
        ..world
    };
    assert_eq!(
        approval_state(&world, &approval).await,
        Some(json!("approved"))
    );
    let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(approval_state(&world, &approval).await, Some(json!("used")));
}

#[tokio::test]
async fn bad_behaviour_settings_stop_the_issuer_at_start() {
    let world = World::new().await;
    drop(world.issuer);
    let settings = Settings {
        behaviour: writ_issuer::BehaviourConfig {
            detectors: writ_behaviour::SettingsSpec {
                destructive: vec!["(unclosed".into()],
                ..writ_behaviour::SettingsSpec::default()
            },
            ..writ_issuer::BehaviourConfig::default()
        },
        ..Settings::default()
    };
    let error = Issuer::open_with_clock(
        &world.dir,
        settings,
        Arc::clone(&world.clock) as Arc<dyn Clock>,
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("destructive pattern `(unclosed`"),
        "{error}"
    );
}

/// Builds a request with a captured proof, to send as it was.
fn captured(
    method: Method,
    path: &str,
    proof: &str,
    content_type: &str,
    body: &str,
) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("dpop", proof)
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn an_admin_request_and_a_token_request_replayed_after_an_issuer_restart_are_refused() {
    let world = World::new().await;
    let mandate = world.grant("/data/*", json!(["internal"])).await["mandate"]
        .as_str()
        .unwrap()
        .to_owned();
    // An administrator's key rotation, and a token exchange, as an attacker captures them.
    let rotate = world.proof(&world.admin, &Method::POST, "/v1/keys/rotate");
    let request = || {
        captured(
            Method::POST,
            "/v1/keys/rotate",
            &rotate,
            "application/json",
            "null",
        )
    };
    let (status, body) = world.send(request()).await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = world.send(request()).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "dpop_replayed")
    );
    let form = World::form(&mandate, "/data/q3.csv", GATEWAY);
    let token = world.proof(&world.agent, &Method::POST, "/token");
    let exchange = || {
        captured(
            Method::POST,
            "/token",
            &token,
            "application/x-www-form-urlencoded",
            &form,
        )
    };
    let (status, body) = world.send(exchange()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kids = world.key_set().await.len();

    // The issuer restarts; both come again, made before it, and change nothing.
    drop(world.issuer);
    let world = World {
        issuer: open(&world.dir, &world.clock, Settings::default()).await,
        ..world
    };
    let (status, body) = world.send(request()).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "dpop_predates_start"),
        "{body}"
    );
    let (status, body) = world.send(exchange()).await;
    assert_eq!(
        (status.is_client_error(), reason(&body)),
        (true, "dpop_predates_start"),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    assert_eq!(world.key_set().await.len(), kids);

    // Fresh proofs, made once the skew after the restart has passed (`open` moved the
    // clock there), are accepted.
    let (status, body) = world.exchange(&mandate, "/data/q3.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = world
        .call(&world.admin, Method::POST, "/v1/keys/rotate", Value::Null)
        .await;
    assert!(status.is_success(), "{status} {body}");
}

#[tokio::test]
async fn right_after_a_restart_a_proof_with_the_issuers_new_nonce_passes_at_once() {
    let world = World::new().await;
    drop(world.issuer);
    // Reopened with the clock where it stood: every proof made so far predates the start.
    let issuer = Issuer::open_with_clock(
        &world.dir,
        Settings::default(),
        Arc::clone(&world.clock) as Arc<dyn Clock>,
    )
    .await
    .unwrap();
    let world = World { issuer, ..world };
    let request = |proof: String| {
        Request::builder()
            .uri("/v1/agents")
            .header("dpop", proof)
            .body(Body::empty())
            .unwrap()
    };
    let response = writ_issuer::router(Arc::clone(&world.issuer))
        .oneshot(request(world.proof(
            &world.alice,
            &Method::GET,
            "/v1/agents",
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let nonce = response.headers()["dpop-nonce"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (body["error"].as_str(), reason(&body)),
        (Some("use_dpop_nonce"), "dpop_predates_start"),
        "{body}"
    );
    // The same moment, with the nonce: made since the restart, so it passes, once.
    let proof = ProofClaims::new(
        "GET",
        &format!("{ISSUER}/v1/agents"),
        world.clock.now(),
        "with-nonce".into(),
    )
    .with_nonce(&nonce)
    .sign(&world.alice)
    .unwrap();
    let (status, body) = world.send(request(proof.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = world.send(request(proof)).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "dpop_replayed")
    );
}

#[tokio::test]
async fn the_same_decisions_in_reports_arriving_together_are_recorded_once() {
    let world = World::new().await;
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let (status, body) = world
        .exchange(granted["mandate"].as_str().unwrap(), "/data/q3.csv")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let writ = UnverifiedWrit::parse(body["access_token"].as_str().unwrap()).unwrap();
    let writ = writ.unverified_claims().unwrap();
    let (writ, mandate, agent) = (
        writ.jti.to_string(),
        writ.mandate.to_string(),
        writ.cnf.jkt.to_string(),
    );
    let decision = |id: &str| {
        json!({
            "request_id": id, "time": 1_700_000_000, "decision": "allow",
            "reason": "allowed", "route": "files", "method": "tools/call",
            "target": "read_file", "writ": writ, "mandate": mandate, "agent": agent,
            "human": "alice"
        })
    };
    // A report the gateway stopped waiting for, and the same decisions resent from its
    // spool, reach the issuer at the same time.
    let report = json!({"decisions": [decision("together-1"), decision("together-2")]});
    let send = || {
        world.call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            report.clone(),
        )
    };
    let answers = tokio::join!(send(), send(), send(), send());
    for (status, body) in [answers.0, answers.1, answers.2, answers.3] {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for id in ["together-1", "together-2"] {
        let found = world
            .issuer
            .store()
            .lookup(&format!("request:{id}"))
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{id} recorded at {found:?}");
    }
}
