//! Single use across a restart: a gateway that follows an earlier one on the same spool
//! directory has not seen the writs and proofs that one accepted, so it refuses every writ
//! and proof issued before it started (plus the skew), and accepts fresh ones.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use serde_json::json;
use writ_testkit::*;
use writ_token::Clock as _;

/// Sends a captured MCP request (writ, proof and body, as they were) to the gateway
/// listening at `url`.
async fn replay(world: &World, url: &str, writ: &str, proof: &str, body: &[u8]) -> (u16, String) {
    let response = world
        .http
        .post(format!("{url}/mcp/files"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("content-type", "application/json")
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", proof)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A deployment and a request it served: what an attacker on the wire captured.
struct Captured {
    world: World,
    mandate: String,
    files: String,
    body: Vec<u8>,
    writ: String,
    proof: String,
}

async fn captured() -> Captured {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let files = format!("{}/mcp/files", world.gateway_url);
    let body = tools_call("read_file", json!({"path": "/data/reports/q3.md"}))
        .to_string()
        .into_bytes();
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    let proof = world.proof("POST", &files, &writ);
    let (status, text) = replay(&world, &world.gateway_url, &writ, &proof, &body).await;
    assert_eq!(status, 200, "{text}");
    Captured {
        world,
        mandate,
        files,
        body,
        writ,
        proof,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_request_is_refused_after_a_gateway_restart() {
    let Captured {
        world,
        mandate,
        files,
        body,
        writ,
        proof,
    } = captured().await;

    // The gateway restarts at its address, on the same spool directory; the captured
    // request comes again.
    world.restart_gateway().await;
    let url = world.gateway_url.clone();
    let (status, text) = replay(&world, &url, &writ, &proof, &body).await;
    assert_eq!(
        (status, reason(&text).as_str()),
        (401, "dpop_predates_start"),
        "{text}"
    );
    // Still refused later in the proof's lifetime.
    world.clock.advance(20);
    let (status, text) = replay(&world, &url, &writ, &proof, &body).await;
    assert_eq!(
        (status, reason(&text).as_str()),
        (401, "dpop_predates_start"),
        "{text}"
    );
    // The same writ with a fresh proof: the writ may have been used before the restart.
    let fresh = world.proof("POST", &files, &writ);
    let (status, text) = replay(&world, &url, &writ, &fresh, &body).await;
    assert_eq!(
        (status, reason(&text).as_str()),
        (401, "writ_predates_start"),
        "{text}"
    );

    // A writ and proof made after the restart (plus the skew) pass, once.
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    let proof = world.proof("POST", &files, &writ);
    let (status, text) = replay(&world, &url, &writ, &proof, &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Revenue grew 12%"), "{text}");
    let (status, text) = replay(&world, &url, &writ, &proof, &body).await;
    assert_eq!(
        (status, reason(&text).as_str()),
        (401, "dpop_replayed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_within_the_skew_of_a_restart_is_refused_then_a_fresh_one_passes() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    world.restart_gateway().await;
    let restarted = world.clock.now();
    let url = world.gateway_url.clone();
    let files = format!("{}/mcp/files", world.gateway_url);
    let body = tools_call("read_file", json!({"path": "/data/reports/q3.md"}))
        .to_string()
        .into_bytes();
    // Made just after the restart: the earlier gateway would have taken a proof dated up to
    // the skew into its future, so this one could have been used there.
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    // Dated at the restart, however slow this machine is.
    let proof = writ_token::ProofClaims::new("POST", &files, restarted, "at-restart".into())
        .with_access_token(&writ)
        .sign(&world.agent)
        .unwrap();
    let (status, text) = replay(&world, &url, &writ, &proof, &body).await;
    assert_eq!(
        (status, reason(&text).as_str()),
        (401, "dpop_predates_start"),
        "{text}"
    );
    // Once the skew (5 s) has passed, a fresh writ and proof are accepted.
    world.clock.advance(6);
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    let proof = world.proof("POST", &files, &writ);
    let (status, text) = replay(&world, &url, &writ, &proof, &body).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_left_without_the_mark_still_counts_as_an_earlier_gateway() {
    // A gateway from before the mark existed left only its spool: the next one must still
    // treat the directory as served from, or it would accept what the earlier one did.
    let Captured {
        world,
        body,
        writ,
        proof,
        ..
    } = captured().await;
    std::fs::remove_file(world.dir.path().join("spool").join("replay-horizon")).unwrap();
    world.restart_gateway().await;
    let url = world.gateway_url.clone();
    let (status, text) = replay(&world, &url, &writ, &proof, &body).await;
    assert_eq!(
        (status, reason(&text).as_str()),
        (401, "dpop_predates_start"),
        "{text}"
    );
}
