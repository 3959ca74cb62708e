//! A gateway the issuer refuses (disabled, revoked, or a second process with the same key)
//! stops deciding at once instead of serving on a copy of the feed until it ages out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::time::{Duration, Instant};

use serde_json::json;
use writ_testkit::World;

/// How long `gateway` takes to stop being ready, at most `limit`.
async fn stops_within(gateway: &writ_gateway::Gateway, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if !gateway.ready() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn a_gateway_the_issuer_disables_stops_deciding_within_a_round_trip() {
    let world = World::new().await;
    assert!(world.gateway.ready());
    world
        .admin
        .post(
            "/v1/gateways/gw/disable",
            Some(&json!({"reason": "key found in a public repository"})),
        )
        .await
        .unwrap();
    // The feed's copy stays fresh for 3 s in this deployment; a refused gateway must not
    // wait for that.
    let stopped = stops_within(&world.gateway, Duration::from_millis(1500)).await;
    assert!(stopped.is_some(), "the disabled gateway kept deciding");
}

#[tokio::test]
async fn a_second_process_with_the_same_gateway_key_stops_the_first() {
    let world = World::new().await;
    // The first process keeps running: two processes with one key, one replay cache each.
    let (second, _) = world.start_gateway().await;
    let stopped = stops_within(&world.gateway, Duration::from_millis(2500)).await;
    assert!(
        stopped.is_some(),
        "two processes with one key both kept deciding"
    );
    assert!(second.ready(), "the newer process stopped instead");
}
