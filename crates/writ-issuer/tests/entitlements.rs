//! Entitlements: members' agents, grants and calls stay within what administrators
//! entitled them (or their groups) to; only administrators manage entitlements; removing
//! one stops calls under mandates granted before.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{GATEWAY, World, jwk, reason};
use serde_json::{Value, json};
use writ_jose::{Algorithm, SigningKey};

/// The administrator entitles `subject`; the entitlement's id.
async fn entitle(world: &World, subject: &str, tools: &[&str], labels: &[&str]) -> String {
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/entitlements",
            json!({"subject": subject, "tools": tools, "labels": labels}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn remove(world: &World, id: &str) {
    let (status, body) = world
        .call(
            &world.admin,
            Method::DELETE,
            &format!("/v1/entitlements/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The administrator registers a human with a new key, with no entitlements.
async fn add_human(world: &World, id: &str) -> SigningKey {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/humans",
            json!({"id": id, "jwk": jwk(&key)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    key
}

async fn register(
    world: &World,
    owner: &SigningKey,
    name: &str,
    tools: &[&str],
) -> (StatusCode, Value, SigningKey) {
    let agent = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (status, body) = world
        .call(
            owner,
            Method::POST,
            "/v1/agents",
            json!({"name": name, "jwk": jwk(&agent), "tools": tools}),
        )
        .await;
    (status, body, agent)
}

/// `files` with `read_file` (labels `internal`, `pii`) and `write_file`.
async fn labelled_files(world: &World) {
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/providers",
            json!({"name": "files", "kind": "mcp", "tools": [
                {"name": "read_file", "labels": ["internal", "pii"]},
                {"name": "write_file"}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn grant(
    world: &World,
    human: &SigningKey,
    agent: &str,
    grants: Value,
) -> (StatusCode, Value) {
    world
        .call(
            human,
            Method::POST,
            "/v1/mandates",
            json!({"agent": agent, "task": "read the reports", "grants": grants}),
        )
        .await
}

/// A writ for `agent` under `mandate` for one `read_file` call with `datatypes`.
async fn exchange(
    world: &World,
    agent: &SigningKey,
    mandate: &str,
    datatypes: &[&str],
) -> (StatusCode, Value) {
    let detail = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file", "datatypes": datatypes}]);
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
        .header("dpop", world.proof(agent, &Method::POST, "/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    world.send(request).await
}

fn forbidden_by(body: &Value, policy: &str) {
    assert_eq!(reason(body), "policy_forbid", "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains(policy),
        "{body}"
    );
}

#[tokio::test]
async fn a_member_without_an_entitlement_cannot_register_an_agent_for_a_tool() {
    let world = World::new().await;
    let carol = add_human(&world, "carol").await;
    let before = world.state().await;
    let (status, body, _) = register(&world, &carol, "carol-bot", &["files/read_file"]).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "tool_not_entitled"),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("`files/read_file`")
    );
    // alice is entitled to `files/read_file` only: not to another tool, nor to the server's
    // other requests.
    for tools in [&["files/read_file", "files/drop_table"][..], &["files/*"]] {
        let (status, body, _) = register(&world, &world.alice, "greedy-bot", tools).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::FORBIDDEN, "tool_not_entitled"),
            "{body}"
        );
    }
    assert_eq!(world.state().await, before, "a refusal changes nothing");
    // Once entitled, carol may.
    entitle(&world, "carol", &["files/read_file"], &[]).await;
    let (status, body, _) = register(&world, &carol, "carol-bot", &["files/read_file"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // An administrator's own agents are not bound by entitlements.
    let (status, body, _) = register(&world, &world.admin, "root-bot", &["files/drop_table"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_member_cannot_grant_a_tool_or_label_outside_their_entitlements_even_to_their_own_agent()
{
    let world = World::new().await;
    labelled_files(&world).await;
    // alice's agent is registered while she is entitled to `write_file`; then that ends.
    let writing = entitle(&world, "alice", &["files/write_file"], &["internal"]).await;
    let (status, body, _) = register(
        &world,
        &world.alice,
        "writer-bot",
        &["files/read_file", "files/write_file"],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    remove(&world, &writing).await;
    let write = json!([{"type": "mcp_tool_call", "server": "files", "tool": "write_file"}]);
    let (status, body) = grant(&world, &world.alice, "writer-bot", write).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    forbidden_by(&body, "grant-within-entitlements");
    // A label she is not cleared for, on a tool she is entitled to.
    let secret = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                         "datatypes": ["internal", "pii"]}]);
    let (status, body) = grant(&world, &world.alice, "writer-bot", secret).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    forbidden_by(&body, "grant-within-entitlements");
    // Within both, the grant goes through.
    entitle(&world, "alice", &[], &["internal", "pii"]).await;
    let read = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                       "datatypes": ["internal", "pii"]}]);
    let (status, body) = grant(&world, &world.alice, "writer-bot", read).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_call_beyond_the_humans_clearance_is_refused_even_when_the_grant_lists_the_label() {
    let world = World::new().await;
    labelled_files(&world).await;
    entitle(&world, "alice", &[], &["internal"]).await;
    let personal = entitle(&world, "alice", &[], &["pii"]).await;
    let read = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                       "datatypes": ["internal", "pii"]}]);
    let (status, granted) = grant(&world, &world.alice, "report-bot", read).await;
    assert_eq!(status, StatusCode::CREATED, "{granted}");
    let mandate = granted["mandate"].as_str().unwrap();
    let (status, body) = exchange(&world, &world.report_bot, mandate, &["internal", "pii"]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Her clearance for `pii` ends; the grant still lists it, and no longer suffices.
    remove(&world, &personal).await;
    let (status, body) = exchange(&world, &world.report_bot, mandate, &["internal", "pii"]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    forbidden_by(&body, "invoke-needs-data-clearance");
}

#[tokio::test]
async fn removing_an_entitlement_stops_calls_under_an_existing_mandate() {
    let world = World::new().await;
    let mandate = world.grant().await;
    let (status, body) = world.exchange(&mandate).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, listed) = world
        .call(&world.admin, Method::GET, "/v1/entitlements", Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let alices: Vec<&str> = listed["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == "alice")
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(alices.len(), 1, "{listed}");
    let (status, removed) = world
        .call(
            &world.admin,
            Method::DELETE,
            &format!("/v1/entitlements/{}", alices[0]),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    // The change is an audit leaf.
    let index = removed["log_index"].as_u64().unwrap();
    let leaf = world.issuer.store().leaf(index).await.unwrap().unwrap();
    assert_eq!(leaf.kind, "entitlement_removed");
    let (status, body) = world.exchange(&mandate).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    forbidden_by(&body, "invoke-within-entitlements");
    // Removing it twice: 404, nothing changes.
    let before = world.state().await;
    let (status, body) = world
        .call(
            &world.admin,
            Method::DELETE,
            &format!("/v1/entitlements/{}", alices[0]),
            Value::Null,
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::NOT_FOUND, "unknown_entitlement")
    );
    assert_eq!(world.state().await, before);
}

#[tokio::test]
async fn a_groups_entitlement_applies_to_its_members_while_they_are_members() {
    let world = World::new().await;
    let carol = add_human(&world, "carol").await;
    entitle(&world, "group:eng", &["files/read_file"], &[]).await;
    let (status, body, _) = register(&world, &carol, "carol-bot", &["files/read_file"]).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "tool_not_entitled"),
        "not yet a member: {body}"
    );
    let (status, set) = world
        .call(
            &world.admin,
            Method::PUT,
            "/v1/humans/carol/groups",
            json!({"groups": ["eng", "finance"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["groups"], json!(["eng", "finance"]));
    let (status, body, agent) = register(&world, &carol, "carol-bot", &["files/read_file"]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let read = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file"}]);
    let (status, granted) = grant(&world, &carol, "carol-bot", read).await;
    assert_eq!(status, StatusCode::CREATED, "{granted}");
    let mandate = granted["mandate"].as_str().unwrap();
    let (status, body) = exchange(&world, &agent, mandate, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // carol reads her own effective entitlements.
    let (status, mine) = world
        .call(
            &carol,
            Method::GET,
            "/v1/humans/carol/entitlements",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["groups"], json!(["eng", "finance"]));
    assert_eq!(mine["tools"], json!(["files/read_file"]));
    assert_eq!(mine["entitlements"][0]["subject"], "group:eng");
    // Out of the group, out of its entitlements.
    let (status, set) = world
        .call(
            &world.admin,
            Method::PUT,
            "/v1/humans/carol/groups",
            json!({"groups": ["finance"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let (status, body) = exchange(&world, &agent, mandate, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    forbidden_by(&body, "invoke-within-entitlements");
}

#[tokio::test]
async fn only_administrators_manage_entitlements() {
    let world = World::new().await;
    let before = world.state().await;
    let id = "ent_AAAAAAAAAAAAAAAAAAAAAA";
    let attempts = [
        (
            Method::POST,
            "/v1/entitlements".to_owned(),
            json!({"subject": "alice", "tools": ["files/drop_table"], "labels": ["secret"]}),
        ),
        (Method::GET, "/v1/entitlements".to_owned(), Value::Null),
        (
            Method::DELETE,
            format!("/v1/entitlements/{id}"),
            Value::Null,
        ),
        (
            Method::PUT,
            "/v1/humans/alice/groups".to_owned(),
            json!({"groups": ["admins"]}),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = world.call(&world.alice, method.clone(), &path, body).await;
        assert_eq!(
            (status, reason(&answer)),
            (StatusCode::FORBIDDEN, "admin_required"),
            "{method} {path}: {answer}"
        );
    }
    // Agents cannot either.
    let (status, answer) = world
        .call(
            &world.report_bot,
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "alice", "tools": ["files/drop_table"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // A member reads their own entitlements, not another's (not even whether they exist).
    let (status, mine) = world
        .call(
            &world.alice,
            Method::GET,
            "/v1/humans/alice/entitlements",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["tools"], json!(["files/read_file"]));
    for other in ["bob", "nobody"] {
        let (status, answer) = world
            .call(
                &world.alice,
                Method::GET,
                &format!("/v1/humans/{other}/entitlements"),
                Value::Null,
            )
            .await;
        assert_eq!(
            (status, reason(&answer)),
            (StatusCode::NOT_FOUND, "unknown_human")
        );
    }
    assert_eq!(world.state().await, before, "refusals change nothing");
}

#[tokio::test]
async fn bad_entitlements_and_groups_are_refused_with_a_reason_and_change_nothing() {
    let world = World::new().await;
    let before = world.state().await;
    let cases = [
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "nobody", "tools": ["files/read_file"]}),
            StatusCode::NOT_FOUND,
            "unknown_human",
        ),
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "alice", "tools": ["files"]}),
            StatusCode::BAD_REQUEST,
            "invalid_tool",
        ),
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "alice", "tools": ["files/read file"]}),
            StatusCode::BAD_REQUEST,
            "invalid_tool",
        ),
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "alice", "labels": ["Not A Label"]}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "alice"}),
            StatusCode::BAD_REQUEST,
            "empty_entitlement",
        ),
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "group:", "tools": ["files/read_file"]}),
            StatusCode::BAD_REQUEST,
            "invalid_group",
        ),
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "al ice", "tools": ["files/read_file"]}),
            StatusCode::BAD_REQUEST,
            "invalid_subject",
        ),
        (
            Method::POST,
            "/v1/entitlements",
            json!({"subject": "alice", "tools": ["files/read_file"], "extra": true}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/v1/humans/nobody/groups",
            json!({"groups": ["eng"]}),
            StatusCode::NOT_FOUND,
            "unknown_human",
        ),
        (
            Method::PUT,
            "/v1/humans/alice/groups",
            json!({"groups": ["eng", "fin ance"]}),
            StatusCode::BAD_REQUEST,
            "invalid_group",
        ),
        // `group:` names groups, so no human may be called that.
        (
            Method::POST,
            "/v1/humans",
            json!({"id": "group:eng"}),
            StatusCode::BAD_REQUEST,
            "reserved_human_id",
        ),
    ];
    for (method, path, body, status, expected) in cases {
        let (got, answer) = world.call(&world.admin, method, path, body.clone()).await;
        assert_eq!(
            (got, reason(&answer)),
            (status, expected),
            "{body}: {answer}"
        );
    }
    assert_eq!(world.state().await, before, "refusals change nothing");
    let (_, listed) = world
        .call(&world.admin, Method::GET, "/v1/entitlements", Value::Null)
        .await;
    assert_eq!(listed["entitlements"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_agent_is_not_transferred_to_an_owner_not_entitled_to_its_tools() {
    let world = World::new().await;
    let carol = add_human(&world, "carol").await;
    drop(carol);
    let before = world.state().await;
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/agents/report-bot/transfer",
            json!({"owner": "carol"}),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "tool_not_entitled"),
        "{body}"
    );
    assert_eq!(world.state().await, before);
    entitle(&world, "carol", &["files/read_file"], &[]).await;
    let (status, body) = world
        .call(
            &world.admin,
            Method::POST,
            "/v1/agents/report-bot/transfer",
            json!({"owner": "carol"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
