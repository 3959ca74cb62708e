//! Every refusal the issuer gives names its reason with a stable code: those its handlers
//! write, SCIM's (in SCIM's error form), and those no handler writes (no such route, a
//! method a route does not serve, a body over the limit, a path or query string that
//! cannot be read).

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
use common::World;
use serde_json::{Value, json};
use writ_jose::SigningKey;

const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

impl World {
    /// `method path` with `body` as `content_type`, proven by `key`.
    async fn raw(
        &self,
        key: &SigningKey,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let proof = self.proof(key, &method, path.split('?').next().unwrap());
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("dpop", proof)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    async fn scim_patch(&self, user: &str, body: Value) -> (StatusCode, Value) {
        self.raw(
            &self.admin,
            Method::PATCH,
            &format!("/scim/v2/Users/{user}"),
            "application/scim+json",
            body.to_string().into_bytes(),
        )
        .await
    }
}

fn active(value: Value) -> Value {
    json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": value}]})
}

/// A SCIM error body with SCIM's members and Writ's reason code.
fn scim_reason(status: StatusCode, body: &Value) -> String {
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16().to_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    body["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {body}"))
        .to_owned()
}

#[tokio::test]
async fn scim_refusing_to_undo_an_offboarding_names_its_reason() {
    let world = World::new().await;
    let (status, body) = world.scim_patch("alice", active(json!(false))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = world.state().await;

    let (status, body) = world.scim_patch("alice", active(json!(true))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        scim_reason(status, &body),
        "offboarding_irreversible",
        "{body}"
    );
    assert_eq!(body["scimType"], "mutability", "{body}");
    assert_eq!(world.state().await, before, "nothing changed");
    assert_eq!(
        world.issuer.store().human("alice").unwrap().status,
        "offboarded"
    );
}

#[tokio::test]
async fn every_scim_refusal_names_its_reason() {
    let world = World::new().await;
    let before = world.state().await;
    let cases = [
        (
            "attribute_immutable",
            world
                .scim_patch(
                    "alice",
                    json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "A"}]}),
                )
                .await,
        ),
        (
            "unsupported_operation",
            world
                .scim_patch(
                    "alice",
                    json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "active"}]}),
                )
                .await,
        ),
        (
            "invalid_patch_value",
            world.scim_patch("alice", active(json!("no"))).await,
        ),
        (
            "patch_schema_missing",
            world.scim_patch("alice", json!({"schemas": [], "Operations": []})).await,
        ),
        (
            "invalid_body",
            world
                .raw(
                    &world.admin,
                    Method::PATCH,
                    "/scim/v2/Users/alice",
                    "application/scim+json",
                    b"{".to_vec(),
                )
                .await,
        ),
        (
            "unknown_user",
            world.scim_patch("nobody", active(json!(false))).await,
        ),
        (
            "admin_required",
            world
                .raw(
                    &world.alice,
                    Method::DELETE,
                    "/scim/v2/Users/bob",
                    "application/scim+json",
                    Vec::new(),
                )
                .await,
        ),
        (
            "method_not_allowed",
            world
                .raw(
                    &world.admin,
                    Method::PUT,
                    "/scim/v2/Users/alice",
                    "application/scim+json",
                    Vec::new(),
                )
                .await,
        ),
    ];
    for (expected, (status, body)) in cases {
        assert!(status.is_client_error(), "{expected}: {status} {body}");
        assert_eq!(scim_reason(status, &body), expected, "{body}");
    }
    assert_eq!(world.state().await, before, "nothing changed");
}

#[tokio::test]
async fn refusals_no_handler_writes_name_their_reason() {
    let world = World::new().await;
    let before = world.state().await;
    let admin = &world.admin;
    let json = "application/json";
    let cases = [
        (
            StatusCode::NOT_FOUND,
            "unknown_route",
            world
                .raw(admin, Method::GET, "/v1/nothing", json, Vec::new())
                .await,
        ),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            world
                .raw(admin, Method::DELETE, "/v1/humans", json, Vec::new())
                .await,
        ),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            world
                .raw(
                    admin,
                    Method::POST,
                    "/v1/humans",
                    json,
                    vec![b' '; writ_issuer::MAX_BODY + 1],
                )
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "malformed_request",
            world
                .raw(
                    admin,
                    Method::GET,
                    "/v1/revocations?after=abc",
                    json,
                    Vec::new(),
                )
                .await,
        ),
        (
            StatusCode::BAD_REQUEST,
            "malformed_request",
            world
                .raw(
                    admin,
                    Method::GET,
                    "/v1/audit/leaves/first",
                    json,
                    Vec::new(),
                )
                .await,
        ),
    ];
    for (status, expected, (answered, body)) in cases {
        assert_eq!(
            (answered, body["reason"].as_str()),
            (status, Some(expected)),
            "{body}"
        );
        assert!(body["error"].is_string(), "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
    assert_eq!(world.state().await, before, "nothing changed");
}
