//! `writ sidecar --stdio` run as its own process, the way an MCP client starts a server,
//! in front of a whole deployment on 127.0.0.1. The test plays the agent: it sees only what
//! crosses the sidecar's standard input and output, and checks that nothing in it (or in
//! the sidecar's logs) is a key, a token or the upstream's credential.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::process::Stdio;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use writ_testkit::*;

const WRIT: &str = env!("CARGO_BIN_EXE_writ");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sees_answers_and_refusals_but_no_key_token_or_credential() {
    let world = World::new().await;
    let (mandate, mandate_id) = world.grant().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("agent.key");
    writ_keystore::create(&key_file, &world.agent).unwrap();
    let mandate_file = dir.path().join("mandate.jwt");
    std::fs::write(&mandate_file, &mandate).unwrap();

    let mut child = tokio::process::Command::new(WRIT)
        .args(["sidecar", "--stdio", "--gateway"])
        .arg(format!("{}/mcp/files", world.gateway_url))
        .arg("--key")
        .arg(&key_file)
        .arg("--mandate-file")
        .arg(&mandate_file)
        .env_clear()
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Logs are read while the sidecar runs, so a full pipe never blocks it.
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).await.unwrap();
        logs
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut exchange = async |message: Value| -> Option<Value> {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
        message.get("id")?;
        let mut line = String::new();
        stdout.read_line(&mut line).await.unwrap();
        seen.push_str(&line);
        Some(serde_json::from_str(&line).unwrap())
    };

    let init = exchange(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "agent", "version": "0"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init["result"]["serverInfo"]["name"], "writ-demo-files");
    assert!(
        exchange(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .is_none()
    );
    let list = exchange(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await
        .unwrap();
    assert_eq!(tool_names(&list.to_string()), ["read_file"]);
    let read = exchange(tools_call(
        "read_file",
        json!({"path": "/data/reports/q2.md"}),
    ))
    .await
    .unwrap();
    assert!(
        read["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Q2 report"),
        "{read}"
    );
    let denied = exchange(tools_call("drop_table", json!({"table": "users"})))
        .await
        .unwrap();
    assert_eq!(denied["result"]["isError"], true);
    assert!(
        denied["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "denied: tool `drop_table` is outside mandate {mandate_id} granted by alice"
            ))
    );
    // A method the mandate does not grant is a JSON-RPC error with its reason.
    let ping = exchange(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
        .await
        .unwrap();
    assert_eq!(ping["error"]["code"], -32001);
    assert_eq!(ping["error"]["data"]["reason"], "outside_mandate");

    // Standard input closes: the sidecar finishes and exits cleanly.
    drop(stdin);
    let status = child.wait().await.unwrap();
    let logs = logs.await.unwrap();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("allowed"),
        "the sidecar logs its calls: {logs}"
    );

    // What crossed the boundary, and what the sidecar logged, holds no JWS (mandate, writ,
    // proof: all start with `eyJ`), no private key in any encoding, and no upstream secret.
    let pkcs8 = world.agent.expose_secret_pkcs8().unwrap();
    let seed = &pkcs8[pkcs8.len() - 32..];
    let secrets = [
        "eyJ".to_owned(),
        MCP_SECRET.to_owned(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seed),
        base64::engine::general_purpose::STANDARD.encode(pkcs8),
        std::fs::read_to_string(&key_file)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_owned(),
    ];
    for secret in &secrets {
        assert!(!seen.contains(secret.as_str()), "the agent saw {secret}");
        assert!(!logs.contains(secret.as_str()), "the logs hold {secret}");
    }
    assert!(seen.lines().count() >= 5);
}
