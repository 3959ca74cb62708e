//! `writ gateway disable|enable|revoke` and `writ revoke` waiting for the gateways, against
//! a whole deployment on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod common;

use common::cli;
use writ_testkit::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_waits_for_the_gateways_and_names_those_that_lag() {
    let world = World::new().await;
    let admin = world.dir.path().join("admin.key");
    let (_, first) = world.grant().await;
    let (_, second) = world.grant().await;
    let (_, third) = world.grant().await;

    // The running gateway acknowledges the revocation before the command returns.
    let out = cli(&world, &admin, &["revoke", "mandate", &first]).unwrap();
    assert!(out.contains("\"status\": \"enforced\""), "{out}");
    assert!(out.contains("\"gw\""), "{out}");

    // A disabled gateway is refused by the issuer and acknowledges nothing more; it was
    // live moments ago, so a revocation now names it.
    let out = cli(
        &world,
        &admin,
        &["gateway", "disable", "gw", "--reason", "drill"],
    )
    .unwrap();
    assert!(out.contains("\"status\": \"disabled\""), "{out}");
    let error = cli(
        &world,
        &admin,
        &["revoke", "mandate", &second, "--timeout", "1"],
    )
    .unwrap_err();
    assert!(
        error.contains("had not applied it") && error.contains("gw"),
        "{error}"
    );
    // Committed all the same, and --no-wait does not wait.
    let out = cli(&world, &admin, &["revoke", "mandate", &third, "--no-wait"]).unwrap();
    assert!(!out.contains("enforcement"), "{out}");

    // Revoked for good: it cannot be enabled again.
    let out = cli(
        &world,
        &admin,
        &["gateway", "revoke", "gw", "--reason", "drill"],
    )
    .unwrap();
    assert!(out.contains("\"status\": \"revoked\""), "{out}");
    let error = cli(&world, &admin, &["gateway", "enable", "gw"]).unwrap_err();
    assert!(error.contains("gateway_revoked"), "{error}");
    let out = cli(&world, &admin, &["gateway", "list"]).unwrap();
    assert!(out.contains("\"status\": \"revoked\""), "{out}");
}
