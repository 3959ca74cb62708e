//! Secrets never reach the logs: not the upstream credential, not a writ, not a proof,
//! even with every module tracing at the most verbose level.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::json;
use writ_testkit::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let world = World::new().await;
    let (mandate, _) = world.grant().await;
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
            tools_call("read_file", json!({"path": "/data/reports/q3.md"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = world
        .mcp(
            &writ,
            tools_call("read_file", json!({"path": "/data/reports/q3.md"})),
        )
        .await;
    assert_eq!(status, 401);

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("denied"), "the denial was not logged at all");
    assert!(
        !logs.contains(MCP_SECRET),
        "the upstream credential was logged"
    );
    assert!(!logs.contains(HTTP_SECRET));
    let signature = writ.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "a writ was logged");
}
