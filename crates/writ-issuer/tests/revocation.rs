//! `POST /v1/revocations` names what it revokes: an agent by its name or its thumbprint, a
//! human by id, a mandate, writ or key by id. A subject that names nothing is refused with
//! 404 and changes nothing, and the answer lists every subject the request revoked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use axum::http::StatusCode;
use common::{World, claims, jkt, reason};
use serde_json::Value;

/// The `(kind, subject)` pairs an answer lists as revoked.
fn revoked(body: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = body["revoked"]
        .as_array()
        .unwrap_or_else(|| panic!("no revoked list in {body}"))
        .iter()
        .map(|item| {
            (
                item["kind"].as_str().unwrap().to_owned(),
                item["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn an_agent_revoked_by_name_is_revoked_by_thumbprint_with_its_mandates() {
    let world = World::new().await;
    let mandate = world.grant().await;
    let mandate_id = claims(&mandate)["jti"].as_str().unwrap().to_owned();

    let (status, body) = world.revoke(&world.alice, "agent", "report-bot").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut expected = vec![
        ("agent".to_owned(), jkt(&world.report_bot)),
        ("mandate".to_owned(), mandate_id),
    ];
    expected.sort();
    assert_eq!(revoked(&body), expected, "{body}");
    assert_eq!(body["kind"], "agent", "{body}");
    assert_eq!(body["subject"], jkt(&world.report_bot), "{body}");
    assert!(
        world
            .issuer
            .store()
            .is_revoked("agent", &jkt(&world.report_bot)),
        "the agent's thumbprint is revoked"
    );
    let (status, body) = world.exchange(&mandate).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        ["agent_revoked", "mandate_revoked"].contains(&reason(&body)),
        "{body}"
    );

    // Revoking it again by thumbprint finds it, and revokes nothing new.
    let (status, body) = world
        .revoke(&world.admin, "agent", &jkt(&world.report_bot))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(revoked(&body), vec![], "{body}");
    assert_eq!(
        body["already_revoked"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
}

#[tokio::test]
async fn a_subject_that_names_nothing_is_refused_and_changes_nothing() {
    let world = World::new().await;
    world.grant().await;
    let before = world.state().await;
    for (key, kind, subject) in [
        (&world.admin, "agent", "third-bot"),
        (&world.alice, "agent", "third-bot"),
        (
            &world.admin,
            "agent",
            "0Nm3Yk8vT2nJQqz3rQ7hY1aF9sD4xE6cB5vW8uI2oPk",
        ),
        (&world.admin, "human", "carol"),
        (&world.admin, "human", "report-bot"),
        (&world.admin, "mandate", "mnd_nothing"),
        (&world.alice, "mandate", "mnd_nothing"),
        (&world.admin, "mandate", "report-bot"),
        (&world.admin, "writ", "wrt_nothing"),
        (&world.admin, "key", "no-such-kid"),
    ] {
        let (status, body) = world.revoke(key, kind, subject).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::NOT_FOUND, "unknown_subject"),
            "{kind} `{subject}`: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(subject),
            "{body}"
        );
        assert_eq!(
            world.state().await,
            before,
            "{kind} `{subject}` changed nothing"
        );
    }
}

#[tokio::test]
async fn names_resolve_only_within_what_the_caller_may_revoke() {
    let world = World::new().await;
    let before = world.state().await;
    // alice may not revoke bob's agent by its name, nor bob.
    for (kind, subject) in [("agent", "bob-bot"), ("human", "bob")] {
        let (status, body) = world.revoke(&world.alice, kind, subject).await;
        assert_eq!(
            (status, reason(&body)),
            (StatusCode::FORBIDDEN, "not_authorized_to_revoke"),
            "{body}"
        );
    }
    assert_eq!(world.state().await, before);
    // bob may revoke his own agent by name.
    let (status, body) = world.revoke(&world.bob, "agent", "bob-bot").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(revoked(&body).len(), 1, "{body}");
}

#[tokio::test]
async fn a_writ_and_a_key_are_revoked_by_their_ids() {
    let world = World::new().await;
    let mandate = world.grant().await;
    let (status, body) = world.exchange(&mandate).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let writ = claims(body["access_token"].as_str().unwrap())["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = world.revoke(&world.admin, "writ", &writ).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(revoked(&body), vec![("writ".to_owned(), writ)]);

    let kid = world.issuer.identity().active_kid;
    let (status, body) = world.revoke(&world.admin, "key", &kid).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(revoked(&body), vec![("key".to_owned(), kid)]);
}
