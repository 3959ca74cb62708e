//! A stdio MCP server behind the gateway: `writ demo-server --stdio`, run by the gateway as a
//! child process with the route's credential in its environment and nothing else of the
//! gateway's, serves checked calls; a child that dies fails its requests at once and is
//! started again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use writ_testkit::*;

const WRIT: &str = env!("CARGO_BIN_EXE_writ");

fn shell(script: String) -> Option<Vec<String>> {
    Some(vec!["sh".into(), "-c".into(), script])
}

async fn stdio_world(script: String) -> World {
    World::with(Options {
        files_command: shell(script),
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_serves_checked_calls_with_its_credential_and_a_clean_environment() {
    // The child starts only if the credential arrived and the gateway's own environment
    // (cargo sets CARGO_MANIFEST_DIR for this test) did not.
    let world = stdio_world(format!(
        "test \"$FILES_TOKEN\" = '{MCP_SECRET}' && test -z \"$CARGO_MANIFEST_DIR\" && exec {WRIT} demo-server --stdio"
    ))
    .await;
    let (mandate, _) = world.grant().await;

    // initialize: answered with the child's own result, under the agent's id.
    let (status, _, body) = world
        .mcp_method(
            &mandate,
            json!({"jsonrpc": "2.0", "id": "init-1", "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], "init-1");
    assert_eq!(answer["result"]["serverInfo"]["name"], "writ-demo-files");

    let (status, _, body) = world
        .mcp_method(
            &mandate,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // tools/list, filtered to the mandate.
    let (status, _, body) = world
        .mcp_method(
            &mandate,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tool_names(&body), ["read_file"]);

    // Calls in flight together, all with the agent's id 7, each get their own answer.
    let (q3, q2) = tokio::join!(
        world.read_file(&mandate, "/data/reports/q3.md"),
        world.read_file(&mandate, "/data/reports/q2.md"),
    );
    for ((status, _, body), expected) in [(q3, "Q3 report"), (q2, "Q2 report")] {
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["id"], 7);
        let text = answer["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(expected), "{text}");
        assert!(!body.contains(MCP_SECRET));
    }

    // The gateway's checks stand in front of a stdio server as of any other.
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    let (status, _, body) = world
        .mcp(
            &writ,
            tools_call("drop_table", json!({"table": "customers"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(reason(&body), "tool_mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_dies_fails_its_requests_at_once_and_is_started_again() {
    // The first child completes the handshake and exits (its stdin is cut after two
    // lines); the second one serves.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started-once");
    let world = stdio_world(format!(
        "if [ -e '{marker}' ]; then exec {WRIT} demo-server --stdio; else touch '{marker}'; sed -u 2q | {WRIT} demo-server --stdio; fi",
        marker = marker.display()
    ))
    .await;
    let (mandate, _) = world.grant().await;

    let started = Instant::now();
    let (status, _, body) = world.read_file(&mandate, "/data/reports/q3.md").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(reason(&body), "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead child's request waited for the upstream timeout"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = world.read_file(&mandate, "/data/reports/q3.md").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Q3 report"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_route_refuses_a_body_its_server_could_read_as_another_call() {
    let world = stdio_world(format!("exec {WRIT} demo-server --stdio")).await;
    let (mandate, _) = world.grant().await;
    let files = format!("{}/mcp/files", world.gateway_url);
    // The gateway relays the message it parsed: a reading that kept the first `name`
    // would run `drop_table` under a writ for `read_file`.
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_table","name":"read_file","arguments":{"path":"/data/reports/q3.md"}}}"#;
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    let proof = world.proof("POST", &files, &writ);
    let (status, _, text) = world.post_mcp(&writ, &proof, body.to_vec()).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(reason(&text), "duplicate_member");
}
