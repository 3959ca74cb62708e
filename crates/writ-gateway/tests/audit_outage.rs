//! An issuer that hangs or is away loses no decision of a call the gateway forwarded: a
//! batch the issuer does not acknowledge within a short bound is spooled to disk; while
//! too many decisions are neither acknowledged nor on disk, allowed calls are refused; a
//! gateway started during an outage is ready soon after the issuer returns.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use writ_testkit::*;

fn spool_text(world: &World) -> String {
    let spool = world
        .dir
        .path()
        .join("spool")
        .join(writ_gateway::decisions::SPOOL_FILE);
    std::fs::read_to_string(spool).unwrap_or_default()
}

/// Makes an allowed `read_file` call; returns its status, request id and body.
async fn read(world: &World, mandate: &str, n: usize) -> (u16, String, String) {
    let path = format!("/data/reports/{n}");
    let writ = world
        .writ(mandate, "/mcp/files", read_file_detail(&path))
        .await;
    let (status, headers, body) = world
        .mcp(&writ, tools_call("read_file", json!({"path": path})))
        .await;
    let id = headers
        .get(writ_gateway::REQUEST_ID_HEADER)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status.as_u16(), id, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_the_issuer_does_not_acknowledge_are_on_disk_within_the_bound() {
    let world = World::with(Options {
        max_feed_staleness_secs: 60,
        ..Options::default()
    })
    .await;
    let (mandate, _) = world.grant().await;
    // The issuer stops answering decision reports (SIGSTOP); calls go on.
    world.audit_hung.store(true, Ordering::SeqCst);
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, id, body) = read(&world, &mandate, n).await;
        assert_eq!(status, 200, "{body}");
        ids.push(id);
    }
    let forwarded = Instant::now();
    // Every forwarded call's decision is on disk soon after (the bound is 250 ms), where a
    // kill of the gateway cannot lose it.
    let deadline = forwarded + Duration::from_secs(5);
    loop {
        let text = spool_text(&world);
        if ids.iter().all(|id| text.contains(id.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "decisions of forwarded calls were not spooled while the issuer hung: {text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The issuer goes on: each decision is recorded once, and the spool empties.
    world.audit_hung.store(false, Ordering::SeqCst);
    world.gateway.drain_spool();
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &ids {
        loop {
            let found = world
                .issuer
                .store()
                .lookup(&format!("request:{id}"))
                .await
                .unwrap();
            if !found.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "decision {id} never reached the log"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !spool_text(&world).is_empty() {
        assert!(Instant::now() < deadline, "the spool was never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sent twice (the report the issuer took while stopped, then from the spool), each is
    // on record once.
    for id in &ids {
        let found = world
            .issuer
            .store()
            .lookup(&format!("request:{id}"))
            .await
            .unwrap();
        assert_eq!(
            found.len(),
            1,
            "decision {id} recorded {} times",
            found.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_calls_are_refused_while_too_many_decisions_are_unrecorded() {
    let world = World::with(Options {
        max_feed_staleness_secs: 60,
        // Decisions wait five seconds for the issuer before they are spooled, and at most
        // two may be neither acknowledged nor on disk.
        gateway_limits: "audit_spool_after_ms = 5000\nmax_unrecorded_decisions = 2".into(),
        ..Options::default()
    })
    .await;
    let (mandate, _) = world.grant().await;
    world.audit_hung.store(true, Ordering::SeqCst);
    let mut refused = None;
    for n in 0..6 {
        let (status, _, body) = read(&world, &mandate, n).await;
        match status {
            200 => {}
            503 => {
                refused = Some(body);
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    let body = refused.expect("calls were forwarded past the bound on unrecorded decisions");
    assert_eq!(reason(&body), "audit_backlog", "{body}");

    // Once the waiting decisions are on disk, calls pass again, the issuer still hung.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = read(&world, &mandate, 9).await;
        if status == 200 {
            break;
        }
        assert_eq!(reason(&body), "audit_backlog", "{body}");
        assert!(
            Instant::now() < deadline,
            "calls stayed refused after the decisions were spooled"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    world.audit_hung.store(false, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_during_an_issuer_outage_is_ready_soon_after_it_returns() {
    let world = World::new().await;
    world.issuer_down.store(true, Ordering::SeqCst);
    let (gateway, _) = world.start_gateway_unready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!gateway.ready(), "ready without the issuer's keys");
    world.issuer_down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    // Backing off from 250 ms, the next try is at most a few seconds away.
    while !gateway.ready() {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "the gateway was not ready 10 s after the issuer returned"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
