//! Gateways at the issuer: their status (active, disabled, revoked) checked on every call,
//! mandates and decisions limited to the writs issued for each, one gateway per audience,
//! and revocations that wait until every live gateway has acknowledged them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use common::clocked::{World, open};
use common::{GATEWAY, START, claims, reason};
use serde_json::{Value, json};
use writ_issuer::Settings;
use writ_jose::{Algorithm, SigningKey};

const OTHER: &str = "https://other.test/mcp/files";

impl World {
    /// The common world with a second gateway, `other-gw`, on `OTHER`.
    async fn new() -> World {
        World::with(Some(OTHER), &["files/read_file", "files/drop_table"]).await
    }
}

/// A mandate granted to the agent, and a writ issued under it for `gw` (`GATEWAY`): the
/// mandate id and the writ id.
async fn mandate_with_writ(world: &World) -> (String, String) {
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let (status, body) = world
        .exchange(granted["mandate"].as_str().unwrap(), "/data/q3.csv")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let writ = claims(body["access_token"].as_str().unwrap());
    (
        granted["id"].as_str().unwrap().to_owned(),
        writ["jti"].as_str().unwrap().to_owned(),
    )
}

/// The agent's key thumbprint, as a gateway reports it.
fn agent_jkt(world: &World) -> String {
    world.agent.public_key().thumbprint().to_string()
}

fn decision(id: &str, verdict: &str, writ: &str, mandate: &str, agent: &str) -> Value {
    let mut decision = json!({
        "request_id": id, "time": START, "decision": verdict,
        "reason": if verdict == "deny" { "writ_audience_mismatch" } else { "allowed" },
        "route": "files", "method": "tools/call", "target": "read_file",
        "writ": writ, "mandate": mandate, "agent": agent, "human": "alice"
    });
    if verdict == "response" {
        decision["tool"] = json!("files/read_file");
        decision["bytes"] = json!(100_000_000);
    }
    decision
}

async fn set_status(world: &World, gateway: &str, action: &str) -> (StatusCode, Value) {
    world
        .call(
            &world.admin,
            Method::POST,
            &format!("/v1/gateways/{gateway}/{action}"),
            json!({"reason": "key left with a contractor's laptop"}),
        )
        .await
}

/// What a gateway may ask the issuer: a mandate, a decision report, the feed, limits.
async fn gateway_calls(world: &World, mandate: &str, writ: &str) -> Vec<(StatusCode, Value)> {
    let mut answers = Vec::new();
    for (method, path, body) in [
        (Method::GET, format!("/v1/mandates/{mandate}"), Value::Null),
        (
            Method::POST,
            "/v1/audit/decisions".to_owned(),
            json!({"decisions": [decision("req-status", "allow", writ, mandate, &agent_jkt(world))]}),
        ),
        (
            Method::GET,
            "/v1/revocations?after=0".to_owned(),
            Value::Null,
        ),
        (
            Method::GET,
            "/v1/behaviour/limits/report-bot".to_owned(),
            Value::Null,
        ),
        (
            Method::POST,
            "/v1/audit/discoveries".to_owned(),
            json!({"route": "files", "tools": ["read_file"]}),
        ),
    ] {
        answers.push(world.call(&world.gateway, method, &path, body).await);
    }
    answers
}

#[tokio::test]
async fn a_disabled_gateway_is_refused_on_every_call_until_enabled() {
    let world = World::new().await;
    let (mandate, writ) = mandate_with_writ(&world).await;
    for (status, body) in gateway_calls(&world, &mandate, &writ).await {
        assert!(status.is_success(), "{status} {body}");
    }
    let (status, body) = set_status(&world, "gw", "disable").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "disabled");
    let size = world.issuer.store().tree_head().size;
    for (status, body) in gateway_calls(&world, &mandate, &writ).await {
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::FORBIDDEN, "gateway_disabled")
        );
    }
    // Refusals change nothing.
    assert_eq!(world.issuer.store().tree_head().size, size);
    let (_, listed) = world
        .call(&world.admin, Method::GET, "/v1/gateways", Value::Null)
        .await;
    assert_eq!(listed["gateways"][0]["status"], "disabled");

    let (status, body) = set_status(&world, "gw", "enable").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = world
        .call(
            &world.gateway,
            Method::GET,
            "/v1/revocations?after=0",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_revoked_gateway_is_refused_for_good() {
    let world = World::new().await;
    let (mandate, writ) = mandate_with_writ(&world).await;
    let (status, body) = set_status(&world, "gw", "revoke").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (status, body) in gateway_calls(&world, &mandate, &writ).await {
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::FORBIDDEN, "gateway_revoked")
        );
    }
    // Permanent: it cannot be enabled again.
    let (status, body) = set_status(&world, "gw", "enable").await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::CONFLICT, "gateway_revoked")
    );
    // The revocation is in the feed, and the audience is free for a new gateway.
    let (_, feed) = world
        .call(
            &world.admin,
            Method::GET,
            "/v1/revocations?after=0",
            Value::Null,
        )
        .await;
    assert_eq!(feed["revocations"][0]["kind"], "gateway");
    let replacement = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/gateways",
            json!({"name": "gw-2", "jwk": replacement.public_key().to_jwk(), "audience": GATEWAY}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Only administrators change a gateway's status.
    let (status, body) = world
        .call(
            &world.alice,
            Method::POST,
            "/v1/gateways/gw-2/disable",
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "admin_required")
    );
}

#[tokio::test]
async fn revoking_a_gateways_key_as_an_agent_or_a_key_does_not_answer_as_if_it_worked() {
    let world = World::new().await;
    let jkt = world.gateway.public_key().thumbprint().to_string();
    for kind in ["agent", "key"] {
        for subject in [jkt.as_str(), "gw"] {
            let (status, body) = world
                .call(
                    &world.admin,
                    Method::POST,
                    "/v1/revocations",
                    json!({"kind": kind, "subject": subject, "reason": "compromised"}),
                )
                .await;
            assert!(
                status == StatusCode::CONFLICT || status == StatusCode::NOT_FOUND,
                "{kind} {subject}: {status} {body}"
            );
            assert!(
                ["subject_is_gateway", "unknown_subject"].contains(&reason(&body)),
                "{body}"
            );
        }
    }
    // The gateway still works: nothing was revoked.
    let (status, body) = world
        .call(
            &world.gateway,
            Method::GET,
            "/v1/revocations?after=0",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revocations"], json!([]));
}

#[tokio::test]
async fn a_gateway_reads_only_mandates_it_was_issued_a_writ_of_and_never_their_task() {
    let world = World::new().await;
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let id = granted["id"].as_str().unwrap();
    let path = format!("/v1/mandates/{id}");
    // No writ yet: the gateway learns nothing, not even that it exists.
    let (status, body) = world
        .call(&world.gateway, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::NOT_FOUND, "unknown_mandate")
    );

    let (status, body) = world
        .exchange(granted["mandate"].as_str().unwrap(), "/data/q3.csv")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = world
        .call(&world.gateway, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grants"][0]["tool"], "read_file");
    assert!(body.get("task").is_none(), "{body}");
    // The granting human still reads the task.
    let (_, body) = world
        .call(&world.alice, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(body["task"], "Summarize the Q3 reports in /data");
    // Another gateway was issued nothing under it.
    let (status, body) = world
        .call(&world.other, Method::GET, &path, Value::Null)
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::NOT_FOUND, "unknown_mandate")
    );
}

#[tokio::test]
async fn a_gateway_cannot_report_allows_or_answers_for_another_gateways_writs() {
    let world = World::new().await;
    let (mandate, writ) = mandate_with_writ(&world).await;
    let size = world.issuer.store().tree_head().size;
    for verdict in ["allow", "response"] {
        let (status, body) = world
            .call(
                &world.other,
                Method::POST,
                "/v1/audit/decisions",
                json!({"decisions": [decision("req-x", verdict, &writ, &mandate, &agent_jkt(&world))]}),
            )
            .await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::BAD_REQUEST, "not_this_gateway"),
            "{verdict}"
        );
    }
    assert_eq!(world.issuer.store().tree_head().size, size);
    // Made-up ids are refused the same way.
    let (status, body) = world
        .call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [decision("req-y", "allow", "wrt_made_up", &mandate, &agent_jkt(&world))]}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "not_this_gateway")
    );

    // A denial of a writ for another audience (an agent showed it one) is recorded, but not
    // under that writ or mandate.
    let (status, body) = world
        .call(
            &world.other,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [decision("req-z", "deny", &writ, &mandate, &agent_jkt(&world))]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let index = body["recorded"][0]["log_index"].as_u64().unwrap();
    assert!(
        !world
            .issuer
            .store()
            .lookup(&format!("writ:{writ}"))
            .await
            .unwrap()
            .contains(&index)
    );
    // The gateway the writ was issued for reports it.
    let (status, body) = world
        .call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [decision("req-ok", "allow", &writ, &mandate, &agent_jkt(&world))]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A writ issued under `mandate` (its token) for `resource`: the writ's id.
async fn writ_for(world: &World, mandate: &str, resource: &str) -> String {
    let (status, body) = world
        .exchange_form(&world.agent, World::form(mandate, "/data/q3.csv", resource))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    claims(body["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_gateway_cannot_report_under_a_writ_another_mandate_agent_human_or_tool() {
    let mut world = World::new().await;
    // Two mandates, each with a writ for `gw`: both were shown to it.
    let (mandate, writ) = mandate_with_writ(&world).await;
    let (other_mandate, _) = mandate_with_writ(&world).await;
    let agent = agent_jkt(&world);
    // Another registered key's thumbprint: an agent whose baseline must not learn this.
    let stranger = world.other.public_key().thumbprint().to_string();
    let size = world.issuer.store().tree_head().size;
    let with = |verdict: &str, field: &str, value: Value| {
        let mut decision = decision("req-m", verdict, &writ, &mandate, &agent);
        decision[field] = value;
        decision
    };
    for (verdict, field, value) in [
        ("response", "mandate", json!(other_mandate)),
        ("allow", "mandate", json!(other_mandate)),
        ("response", "agent", json!(stranger)),
        ("allow", "agent", json!(stranger)),
        ("response", "human", json!("bob")),
        ("allow", "human", json!("bob")),
        ("response", "tool", json!("files/drop_table")),
    ] {
        let (status, body) = world
            .call(
                &world.gateway,
                Method::POST,
                "/v1/audit/decisions",
                json!({"decisions": [with(verdict, field, value)]}),
            )
            .await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::BAD_REQUEST, "decision_mismatch"),
            "{verdict} with another {field}: {body}"
        );
    }
    // An allow or a response must name its writ.
    for verdict in ["allow", "response"] {
        let mut decision = decision("req-n", verdict, &writ, &mandate, &agent);
        decision.as_object_mut().unwrap().remove("writ");
        let (status, body) = world
            .call(
                &world.gateway,
                Method::POST,
                "/v1/audit/decisions",
                json!({"decisions": [decision]}),
            )
            .await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::BAD_REQUEST, "invalid_decision"),
            "{verdict} without a writ: {body}"
        );
    }
    assert_eq!(world.issuer.store().tree_head().size, size);
    // After a restart the writ's parties are read from its issuance.
    let path = world._dir.path().join("data");
    drop(world.issuer);
    world.issuer = open(&path, &world.clock, Settings::default()).await;
    world.clock.0.fetch_add(10, Ordering::SeqCst);
    let (status, body) = world
        .call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [with("response", "agent", json!(stranger))]}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::BAD_REQUEST, "decision_mismatch"),
        "after a restart: {body}"
    );
    // The writ's own mandate, agent, human and tool are recorded.
    let (status, body) = world
        .call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [decision("req-m", "response", &writ, &mandate, &agent)]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let index = body["recorded"][0]["log_index"].as_u64().unwrap();
    let leaf = world.issuer.store().leaf(index).await.unwrap().unwrap();
    let event: Value = serde_json::from_slice(&leaf.data).unwrap();
    assert_eq!(event["event"]["agent"], agent.as_str());
    assert_eq!(event["event"]["mandate"], mandate.as_str());
}

#[tokio::test]
async fn a_gateway_cannot_spend_another_gateways_request_ids() {
    let world = World::new().await;
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let token = granted["mandate"].as_str().unwrap();
    let mandate = granted["id"].as_str().unwrap();
    let ours = writ_for(&world, token, GATEWAY).await;
    let theirs = writ_for(&world, token, OTHER).await;
    let agent = agent_jkt(&world);
    // `other-gw` learned `gw`'s request ids and reports them first, on its own writ.
    let (status, body) = world
        .call(
            &world.other,
            Method::POST,
            "/v1/audit/decisions",
            json!({"decisions": [
                decision("req-shared", "allow", &theirs, mandate, &agent),
                decision("req-shared", "response", &theirs, mandate, &agent),
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // `gw`'s own reports of those requests are still recorded.
    let report = json!({"decisions": [
        decision("req-shared", "allow", &ours, mandate, &agent),
        decision("req-shared", "response", &ours, mandate, &agent),
    ]});
    let (status, body) = world
        .call(
            &world.gateway,
            Method::POST,
            "/v1/audit/decisions",
            report.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for recorded in body["recorded"].as_array().unwrap() {
        assert_eq!(recorded["duplicate"], false, "{body}");
        let index = recorded["log_index"].as_u64().unwrap();
        let leaf = world.issuer.store().leaf(index).await.unwrap().unwrap();
        let event: Value = serde_json::from_slice(&leaf.data).unwrap();
        assert_eq!(event["event"]["gateway"], "gw");
        assert_eq!(event["event"]["writ"], ours.as_str());
    }
    // Resent by `gw`, they are duplicates of its own.
    let (status, again) = world
        .call(&world.gateway, Method::POST, "/v1/audit/decisions", report)
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    for (first, second) in body["recorded"]
        .as_array()
        .unwrap()
        .iter()
        .zip(again["recorded"].as_array().unwrap())
    {
        assert_eq!(second["duplicate"], true);
        assert_eq!(second["log_index"], first["log_index"]);
    }
}

#[tokio::test]
async fn a_second_gateway_on_a_served_audience_is_refused() {
    let world = World::new().await;
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    for audience in [
        GATEWAY,
        "https://gateway.test/mcp",
        "https://gateway.test/mcp/files/x",
    ] {
        let (status, body) = world
            .call(
                &world.admin,
                Method::POST,
                "/v1/gateways",
                json!({"name": "replica", "jwk": key.public_key().to_jwk(), "audience": audience}),
            )
            .await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::CONFLICT, "audience_in_use"),
            "{audience}"
        );
    }
}

#[tokio::test]
async fn one_gateway_key_polled_by_two_processes_refuses_the_earlier() {
    let world = World::new().await;
    let poll = |instance: &'static str| {
        world.call(
            &world.gateway,
            Method::GET,
            // Not a format string: the path carries the instance.
            match instance {
                "a" => "/v1/revocations?after=0&instance=a",
                _ => "/v1/revocations?after=0&instance=b",
            },
            Value::Null,
        )
    };
    assert_eq!(poll("a").await.0, StatusCode::OK);
    assert_eq!(poll("b").await.0, StatusCode::OK);
    let (status, body) = poll("a").await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::CONFLICT, "gateway_instance_superseded")
    );
}

#[tokio::test]
async fn a_revocation_asked_to_wait_answers_once_every_live_gateway_acknowledged_it() {
    let world = Arc::new(World::new().await);
    let granted = world.grant("/data/*", json!(["internal"])).await;
    let id = granted["id"].as_str().unwrap().to_owned();
    // The gateway follows the feed once (live, having applied nothing) and then stops.
    let (status, _) = world
        .call(
            &world.gateway,
            Method::GET,
            "/v1/revocations?after=0",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/revocations?wait=1",
            json!({"kind": "mandate", "subject": id, "reason": "done"}),
        )
        .await;
    // Committed, but not known to be enforced: the answer says so and names the laggard.
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["enforcement"]["status"], "lagging");
    assert_eq!(body["enforcement"]["lagging"], json!(["gw"]));
    assert!(!body["revoked"].as_array().unwrap().is_empty());

    // A gateway that applies each page before it asks again acknowledges what it applied.
    let second = world.grant("/data/*", json!(["internal"])).await;
    let second = second["id"].as_str().unwrap().to_owned();
    let follower = {
        let world = Arc::clone(&world);
        let second = second.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let (status, page) = world
                    .call(
                        &world.gateway,
                        Method::GET,
                        &format!("/v1/revocations?after={after}&wait=5"),
                        Value::Null,
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{page}");
                after = page["next"].as_i64().unwrap();
                let applied = page["revocations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|revocation| revocation["subject"] == second.as_str());
                if applied {
                    // The next request is the acknowledgment.
                    let path = format!("/v1/revocations?after={after}&wait=0");
                    world
                        .call(&world.gateway, Method::GET, &path, Value::Null)
                        .await;
                    return;
                }
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/revocations?wait=10",
            json!({"kind": "mandate", "subject": second, "reason": "done"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["enforcement"]["status"], "enforced", "{body}");
    assert_eq!(body["enforcement"]["acknowledged"], json!(["gw"]));
    assert!(
        body["enforcement"]["waited_ms"].as_u64().unwrap() < 5000,
        "{body}"
    );
    follower.await.unwrap();

    // Without `wait`, the answer does not wait and says nothing of enforcement.
    let third = world.grant("/data/*", json!(["internal"])).await;
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/revocations",
            json!({"kind": "mandate", "subject": third["id"], "reason": "done"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("enforcement").is_none(), "{body}");
}
