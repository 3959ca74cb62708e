//! The sidecar in process, in front of a whole deployment on 127.0.0.1: an rmcp client (the
//! official Rust MCP SDK) connects to it over streamable HTTP and reaches the demo rmcp
//! server through the issuer and the gateway.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::{Value, json};
use writ_jose::SigningKey;
use writ_sidecar::{MandateSource, Sidecar};
use writ_testkit::{MCP_SECRET, World, raw_get};

fn agent_key(world: &World) -> SigningKey {
    SigningKey::from_pkcs8_any(world.agent.expose_secret_pkcs8().unwrap()).unwrap()
}

/// Serves `router` on a loopback port and returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

async fn sidecar(world: &World, route: &str, mandate: MandateSource) -> Arc<Sidecar> {
    let route = format!("{}{route}", world.gateway_url);
    Arc::new(
        Sidecar::connect(&route, agent_key(world), mandate)
            .await
            .unwrap(),
    )
}

async fn client(url: &str) -> RunningService<RoleClient, ()> {
    ().serve(StreamableHttpClientTransport::from_uri(url))
        .await
        .unwrap()
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &'static str,
    arguments: Value,
) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(arguments))
        .await
        .unwrap()
}

fn text(result: &CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_lists_calls_is_denied_and_stops_at_revocation() {
    let world = World::new().await;
    let (mandate, mandate_id) = world.grant().await;
    let sidecar = sidecar(&world, "/mcp/files", MandateSource::Token(mandate)).await;
    assert_eq!(sidecar.server(), "files");
    let url = serve(writ_sidecar::mcp_router(sidecar)).await;
    let client = client(&format!("{url}/mcp")).await;
    let server = client.peer_info().and_then(|info| info.server_info.clone());
    assert_eq!(server.unwrap().name, "writ-demo-files");

    // The gateway filters the list down to the mandate's tools.
    let tools = client.list_tools(None).await.unwrap();
    let names: Vec<_> = tools.tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(names, ["read_file"]);

    // An allowed call reaches the server, which got the gateway's credential.
    let allowed = call(&client, "read_file", json!({"path": "/data/reports/q3.md"})).await;
    assert_ne!(allowed.is_error, Some(true), "{allowed:?}");
    assert!(text(&allowed).contains("Revenue grew 12%"));
    let seen = world.upstream_headers.lock().unwrap().clone();
    assert!(seen.iter().any(|headers| {
        headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {MCP_SECRET}"))
    }));

    // Outside the data scope and outside the granted tools: readable tool errors.
    let scope = call(
        &client,
        "read_file",
        json!({"path": "/data/hr/salaries.csv"}),
    )
    .await;
    assert_eq!(scope.is_error, Some(true));
    let digest = writ_token::TaskDigest::of("Summarize the Q3 reports in /data");
    assert_eq!(
        text(&scope),
        format!(
            "denied: tool `read_file` is outside mandate {mandate_id} granted by alice for the task with SHA-256 digest {} [outside_mandate]",
            digest.as_str()
        )
    );
    let drop = call(&client, "drop_table", json!({"table": "customers"})).await;
    assert_eq!(drop.is_error, Some(true));
    assert!(
        text(&drop).starts_with(&format!(
            "denied: tool `drop_table` is outside mandate {mandate_id} granted by alice"
        )),
        "{}",
        text(&drop)
    );

    // Revocation: the next call is refused, and well within a second.
    world.revoke("mandate", &mandate_id).await;
    let revoked_at = Instant::now();
    let after = call(&client, "read_file", json!({"path": "/data/reports/q3.md"})).await;
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    assert_eq!(after.is_error, Some(true));
    assert!(
        text(&after).contains("[mandate_revoked]"),
        "{}",
        text(&after)
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_mode_earns_a_writ_per_http_request() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mandate_file = dir.path().join("mandate.jwt");
    let (mandate, _) = world.grant().await;
    std::fs::write(&mandate_file, format!("{mandate}\n")).unwrap();
    let sidecar = sidecar(&world, "/api/crm", MandateSource::File(mandate_file)).await;
    let url = serve(writ_sidecar::http_router(sidecar)).await;
    let http = reqwest::Client::new();

    let answer = http
        .get(format!("{url}/customers/42"))
        .header("authorization", "Bearer agent-made-this-up")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"id": "42", "name": "ACME"})
    );
    // The agent's own `Authorization` header stayed in the sidecar; the API saw the
    // gateway's credential.
    let seen = world.upstream_headers.lock().unwrap().clone();
    let sent = seen.last().unwrap()["authorization"].to_str().unwrap();
    assert!(sent.starts_with("Basic "), "{sent}");

    let denied = http
        .delete(format!("{url}/customers/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["reason"], "outside_mandate");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("denied: DELETE /customers/42 is outside mandate")
    );

    // A web page cannot reach the sidecar through the user's browser.
    let foreign = http
        .get(format!("{url}/customers/42"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_mode_refuses_paths_and_queries_a_server_could_read_as_another_request() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mandate_file = dir.path().join("mandate.jwt");
    let (mandate, _) = world.grant().await;
    std::fs::write(&mandate_file, format!("{mandate}\n")).unwrap();
    let sidecar = sidecar(&world, "/api/crm", MandateSource::File(mandate_file)).await;
    let url = serve(writ_sidecar::http_router(sidecar)).await;
    // Each of these reaches `/admin` on some server; none is in the grant `/customers/*`.
    for (target, expected) in [
        ("/customers/..;/admin", "path_dot_segment"),
        ("/customers/../admin", "path_dot_segment"),
        ("/customers/%252e%252e/admin", "path_encoded_delimiter"),
        ("/customers/%2E%2E/admin", "path_encoded_unreserved"),
        ("/customers/%2e%2e/admin", "path_malformed_escape"),
        ("/customers/..%2Fadmin", "path_encoded_delimiter"),
        ("/customers/42?fields=a&fields=b", "query_repeated_name"),
        ("/customers/42?admin=true", "outside_mandate"),
    ] {
        let (status, reason) = raw_get(&url, target, &[]).await;
        assert!(
            (status == 400 || status == 403) && reason == expected,
            "{target}: {status} {reason}"
        );
    }
    let (status, reason) = raw_get(&url, "/customers/42?fields=name", &[]).await;
    assert_eq!(status, 200, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mandate_for_another_key_or_an_untrusted_issuer_is_refused_at_start() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let route = format!("{}/mcp/files", world.gateway_url);
    let stranger = SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    let error = Sidecar::connect(&route, stranger, MandateSource::Token(mandate.clone()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("is bound to agent key"),
        "{error}"
    );

    let error = Sidecar::connect(
        &format!("{}/mcp/nowhere", world.gateway_url),
        agent_key(&world),
        MandateSource::Token(mandate),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().starts_with("discovery:"), "{error}");

    let error = Sidecar::connect(
        &route,
        agent_key(&world),
        MandateSource::Token("not.a.mandate".to_owned()),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().starts_with("mandate: not a mandate"),
        "{error}"
    );
}

/// Regression: the sidecar sent the protocol version an earlier client had agreed on as the
/// header of a later client's `initialize`, whose body named another, and the server refused
/// the mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_client_initializing_with_another_protocol_version_is_not_refused() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let sidecar = sidecar(&world, "/mcp/files", MandateSource::Token(mandate)).await;
    let url = format!("{}/mcp", serve(writ_sidecar::mcp_router(sidecar)).await);
    let http = reqwest::Client::new();
    for version in ["2025-06-18", "2025-03-26"] {
        let answer: Value = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "agent", "version": "1"}}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["result"]["protocolVersion"], version,
            "{version}: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_asks_its_sidecar_for_a_child_mandate_for_a_sub_agent() {
    let world = World::new().await;
    let helper = world.add_agent("helper-bot").await;
    let (mandate, mandate_id) = world.grant().await;
    let sidecar = sidecar(&world, "/mcp/files", MandateSource::Token(mandate)).await;
    let url = format!(
        "{}/delegate",
        serve(writ_sidecar::mcp_router(sidecar)).await
    );
    let http = reqwest::Client::new();
    let narrow = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
        "arguments": {"object": {"required": {"path": {"exact": "/data/reports/q3.md"}}}},
        "datatypes": ["internal"]}]);

    let answer = http
        .post(&url)
        .json(&json!({"to": "helper-bot", "grants": narrow, "expires_in": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    let child = body["access_token"].as_str().unwrap();
    let claims = writ_token::UnverifiedMandate::parse(child)
        .unwrap()
        .unverified_claims()
        .unwrap();
    assert_eq!(claims.parent.unwrap().as_str(), mandate_id);
    assert_eq!(claims.cnf.jkt, *helper.public_key().thumbprint());
    // The sub-agent, with its own key, earns writs under it.
    let (status, _) = world
        .try_writ_as(
            &helper,
            child,
            &format!("{}/mcp/files", world.gateway_url),
            writ_testkit::read_file_detail("/data/reports/q3.md"),
        )
        .await;
    assert_eq!(status, 200);

    // Wider than the mandate: refused by the issuer, with its reason.
    let wider = json!([{"type": "mcp_tool_call", "server": "files", "tool": "drop_table",
        "arguments": "any"}]);
    let answer = http
        .post(&url)
        .json(&json!({"to": "helper-bot", "grants": wider}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        (body["reason"].as_str(), body["denied_by"].as_str()),
        (Some("wider_than_parent"), Some("issuer"))
    );
    // Malformed requests are refused before anything is asked.
    let answer = http
        .post(&url)
        .json(&json!({"to": "helper-bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_for_the_owner_completes_once_she_approves() {
    let world = World::with(writ_testkit::Options {
        behaviour: writ_issuer::BehaviourConfig {
            detectors: writ_behaviour::SettingsSpec {
                learning_calls: 5,
                learning_seconds: 0,
                mode: Some(writ_behaviour::Mode::StepUp),
                ..writ_behaviour::SettingsSpec::default()
            },
            ..writ_issuer::BehaviourConfig::default()
        },
        ..writ_testkit::Options::default()
    })
    .await;
    let granted = world
        .alice
        .post(
            "/v1/mandates",
            Some(&json!({
                "agent": "report-bot",
                "task": "Tidy the scratch tables",
                "grants": [
                    {"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                     "datatypes": ["internal"]},
                    {"type": "mcp_tool_call", "server": "files", "tool": "drop_table"},
                    {"type": "mcp_request", "server": "files",
                     "methods": ["initialize", "notifications/initialized", "tools/list"]}
                ]
            })),
        )
        .await
        .unwrap();
    let mandate = granted["mandate"].as_str().unwrap().to_owned();
    let sidecar = sidecar(&world, "/mcp/files", MandateSource::Token(mandate)).await;
    let url = serve(writ_sidecar::mcp_router(sidecar)).await;
    let client = client(&format!("{url}/mcp")).await;
    // The agent's baseline: five reads.
    for _ in 0..5 {
        let read = call(&client, "read_file", json!({"path": "/data/reports/q3.md"})).await;
        assert_ne!(read.is_error, Some(true), "{read:?}");
    }

    // A tool it never used waits for alice; the agent's call simply takes longer.
    let held = tokio::spawn(async move {
        let result = call(&client, "drop_table", json!({"table": "scratch"})).await;
        (client, result)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let approval = loop {
        let pending = world.alice.get("/v1/approvals").await.unwrap();
        if let Some(id) = pending["approvals"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no approval was asked for");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!held.is_finished());
    world
        .alice
        .post(
            &format!("/v1/approvals/{approval}"),
            Some(&json!({"decision": "approve"})),
        )
        .await
        .unwrap();
    let (_client, result) = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held call never completed")
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(text(&result), "dropped table scratch");
}

#[test]
fn a_held_call_is_asked_for_again_at_the_issuers_interval_within_bounds() {
    use writ_sidecar::{APPROVAL_POLL, poll_interval};
    assert_eq!(poll_interval(Some(5)), Duration::from_secs(5));
    assert_eq!(poll_interval(None), APPROVAL_POLL);
    // An issuer cannot make the sidecar spin, nor wait for an hour between asks.
    assert_eq!(poll_interval(Some(0)), Duration::from_secs(1));
    assert_eq!(poll_interval(Some(3_600)), Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_right_after_a_gateway_restart_is_made_again_until_it_passes() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let sidecar = sidecar(&world, "/api/crm", MandateSource::Token(mandate)).await;
    let url = serve(writ_sidecar::http_router(sidecar)).await;
    let http = reqwest::Client::new();
    let answer = http
        .get(format!("{url}/customers/42"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // The gateway restarts. For its clock skew (5 s) it refuses writs and proofs made
    // before then, which an earlier process could have taken; the sidecar makes the call
    // again with fresh ones until it passes.
    world.restart_gateway().await;
    let started = Instant::now();
    let answer = http
        .get(format!("{url}/customers/42"))
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_call_right_after_a_gateway_restart_is_made_again_until_it_passes() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let sidecar = sidecar(&world, "/mcp/files", MandateSource::Token(mandate)).await;
    let url = serve(writ_sidecar::mcp_router(sidecar)).await;
    let client = client(&format!("{url}/mcp")).await;
    world.restart_gateway().await;
    let allowed = call(&client, "read_file", json!({"path": "/data/reports/q3.md"})).await;
    assert_ne!(allowed.is_error, Some(true), "{allowed:?}");
    assert!(text(&allowed).contains("Revenue grew 12%"));
}
