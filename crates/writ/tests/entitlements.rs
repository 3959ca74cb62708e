//! `writ entitlement` and `writ human groups` against a running issuer: administrators
//! manage entitlements, a member reads their own, and a member's agent stays within them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use common::cli;
use serde_json::json;
use writ_jose::{Algorithm, SigningKey};
use writ_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_manage_entitlements_with_the_cli_and_members_stay_within_them() {
    let world = World::new().await;
    let admin = world.dir.path().join("admin.key");
    let carol_key = world.dir.path().join("carol.key");
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    writ_keystore::create(&carol_key, &key).unwrap();
    world
        .admin
        .post(
            "/v1/humans",
            Some(&json!({"id": "carol", "jwk": serde_json::to_value(key.public_key().to_jwk()).unwrap()})),
        )
        .await
        .unwrap();

    // A member may not entitle herself.
    let refused = cli(
        &world,
        &carol_key,
        &[
            "entitlement",
            "grant",
            "--subject",
            "carol",
            "--tools",
            "files/drop_table",
        ],
    )
    .unwrap_err();
    assert!(refused.contains("admin_required"), "{refused}");

    let granted = cli(
        &world,
        &admin,
        &[
            "entitlement",
            "grant",
            "--subject",
            "group:eng",
            "--tools",
            "files/read_file,files/*",
            "--labels",
            "internal",
        ],
    )
    .unwrap();
    assert!(
        granted.contains("for group:eng: tools [files/*, files/read_file], labels [internal]"),
        "{granted}"
    );
    let id = granted
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert!(id.starts_with("ent_"), "{granted}");
    let listed = cli(&world, &admin, &["entitlement", "list"]).unwrap();
    assert!(
        listed.contains(&id) && listed.contains("group:eng"),
        "{listed}"
    );

    // carol is not in the group yet: her agent may not use the tool.
    let agent_key = world.dir.path().join("carol-bot.key");
    writ_keystore::create(&agent_key, &SigningKey::generate(Algorithm::EdDSA).unwrap()).unwrap();
    let add_agent = || {
        cli(
            &world,
            &carol_key,
            &[
                "agent",
                "add",
                "carol-bot",
                "--tools",
                "files/read_file",
                "--key-file",
                agent_key.to_str().unwrap(),
            ],
        )
    };
    let refused = add_agent().unwrap_err();
    assert!(refused.contains("tool_not_entitled"), "{refused}");

    let set = cli(
        &world,
        &admin,
        &["human", "groups", "carol", "--set", "eng,finance"],
    )
    .unwrap();
    assert!(set.contains("carol: groups [eng, finance]"), "{set}");
    let refused = cli(
        &world,
        &carol_key,
        &["human", "groups", "carol", "--set", "admins"],
    )
    .unwrap_err();
    assert!(refused.contains("admin_required"), "{refused}");
    let mine = cli(
        &world,
        &carol_key,
        &["entitlement", "list", "--human", "carol"],
    )
    .unwrap();
    assert!(mine.contains("groups [eng, finance]"), "{mine}");
    assert!(
        mine.contains("tools   [files/*, files/read_file]"),
        "{mine}"
    );
    assert!(mine.contains("labels  [internal]"), "{mine}");
    add_agent().unwrap();

    let removed = cli(&world, &admin, &["entitlement", "revoke", &id]).unwrap();
    assert!(removed.contains("of group:eng removed"), "{removed}");
    let unknown = cli(&world, &admin, &["entitlement", "revoke", &id]).unwrap_err();
    assert!(unknown.contains("unknown_entitlement"), "{unknown}");
    let mine = cli(
        &world,
        &carol_key,
        &["entitlement", "list", "--human", "carol"],
    )
    .unwrap();
    assert!(mine.contains("tools   []"), "{mine}");
}
