//! Delegation on a whole deployment on 127.0.0.1: an agent passes part of its mandate to
//! another, which passes part of that on; every step may only narrow; the chain reaches the
//! gateway and `writ trace`; revoking a mandate stops everything delegated from it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::time::Duration;

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};
use writ_testkit::*;

fn read_grant(path: Value) -> Value {
    json!({"type": "mcp_tool_call", "server": "files", "tool": "read_file",
           "arguments": {"object": {"required": {"path": path}}}, "datatypes": ["internal"]})
}

/// The claims of a JWS, unverified: for looking at what was issued.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&writ_jose::base64url_decode(payload).unwrap()).unwrap()
}

fn token(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_levels_down_the_chain_reaches_the_gateway_and_the_trace() {
    let world = World::new().await;
    let helper = world.add_agent("helper-bot").await;
    let sub = world.add_agent("sub-bot").await;
    let (root, root_id) = world.grant().await;

    // report-bot → helper-bot: q-reports only.
    let (status, child) = world
        .delegate_as(
            &world.agent,
            &root,
            "helper-bot",
            json!([read_grant(json!({"glob": "/data/reports/q*"}))]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{child}");
    assert_eq!(
        child["issued_token_type"],
        "urn:writ:params:oauth:token-type:mandate"
    );
    assert_eq!(child["token_type"], "N_A");
    let child = token(&child);
    let child_claims = claims(&child);
    let root_claims = claims(&root);
    assert_eq!(child_claims["sub"], "alice");
    assert_eq!(child_claims["depth"], 1);
    assert_eq!(child_claims["parent"], root_id);
    assert_eq!(
        child_claims["exp"], root_claims["exp"],
        "expires with its parent"
    );
    assert_eq!(
        child_claims["act"]["sub"],
        helper.public_key().thumbprint().as_str()
    );
    assert_eq!(child_claims["act"]["act"]["sub"], world.agent_jkt);
    assert_eq!(
        child_claims["cnf"]["jkt"],
        helper.public_key().thumbprint().as_str()
    );

    // helper-bot → sub-bot: one file, for a minute.
    let (status, grandchild) = world
        .delegate_as(
            &helper,
            &child,
            "sub-bot",
            json!([read_grant(json!({"exact": "/data/reports/q3.md"}))]),
            Some(60),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{grandchild}");
    let grandchild = token(&grandchild);
    assert_eq!(claims(&grandchild)["depth"], 2);

    // sub-bot earns a writ and calls: the writ carries the whole chain, back to alice.
    let resource = format!("{}/mcp/files", world.gateway_url);
    let (status, body) = world
        .try_writ_as(
            &sub,
            &grandchild,
            &resource,
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let writ = token(&body);
    let writ_claims = claims(&writ);
    assert_eq!(writ_claims["sub"], "alice");
    assert_eq!(
        writ_claims["act"]["act"]["act"]["sub"], world.agent_jkt,
        "three actors"
    );
    // sub-bot's key, not report-bot's, makes the proof the gateway checks.
    let url = format!("{}/mcp/files", world.gateway_url);
    let proof = writ_token::ProofClaims::new(
        "POST",
        &url,
        writ_token::Clock::now(world.clock.as_ref()),
        "sub-proof-1".to_owned(),
    )
    .with_access_token(&writ)
    .sign(&sub)
    .unwrap();
    let call = tools_call("read_file", json!({"path": "/data/reports/q3.md"}));
    let (status, headers, answer) = world
        .post_mcp(&writ, &proof, call.to_string().into_bytes())
        .await;
    assert_eq!(status, 200, "{answer}");
    let request = headers["writ-request-id"].to_str().unwrap().to_owned();

    // The trace of that call: alice, three agents, the grant, two delegations, the writ
    // and the gateway's decision, each proven.
    let admin_key = world.dir.path().join("admin.key");
    let mut traced = None;
    for _ in 0..100 {
        match world.admin.get(&format!("/v1/trace/{request}")).await {
            Ok(body) => {
                traced = Some(body);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(traced.is_some(), "the decision reached the log");
    let log_key = world.log_key.clone();
    let out = common::cli(
        &world,
        &admin_key,
        &["trace", &request, "--json", "--log-key", &log_key],
    )
    .unwrap();
    let traced: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(traced["verified"], true);
    let kinds: Vec<&str> = traced["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["kind"].as_str().unwrap())
        .collect();
    for (kind, count) in [
        ("human_registered", 1),
        ("agent_registered", 3),
        ("mandate_granted", 1),
        ("mandate_delegated", 2),
        ("writ_issued", 1),
        ("gateway_decision", 1),
    ] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            count,
            "{kind} in {kinds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_agent_can_only_narrow() {
    let world = World::new().await;
    let helper = world.add_agent("helper-bot").await;
    world.add_agent("sub-bot").await;
    world.add_agent("third-bot").await;
    let (root, _) = world.grant().await;
    let narrow = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    let refused = async |key, mandate: &str, to: &str, grants: Value, expires_in| {
        let (status, body) = world
            .delegate_as(key, mandate, to, grants, expires_in)
            .await;
        assert_ne!(status, StatusCode::OK, "{body}");
        body["reason"].as_str().unwrap().to_owned()
    };

    // A wider tool, a wider argument, a longer life.
    let drop_table = json!([{"type": "mcp_tool_call", "server": "files", "tool": "drop_table",
                             "arguments": "any"}]);
    assert_eq!(
        refused(&world.agent, &root, "helper-bot", drop_table, None).await,
        "wider_than_parent"
    );
    let everything = json!([read_grant(json!({"glob": "/data/*"}))]);
    assert_eq!(
        refused(&world.agent, &root, "helper-bot", everything, None).await,
        "wider_than_parent"
    );
    let unlabelled = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
        "arguments": {"object": {"required": {"path": {"glob": "/data/reports/*"}}}},
        "datatypes": ["internal", "secret"]}]);
    assert_eq!(
        refused(&world.agent, &root, "helper-bot", unlabelled, None).await,
        "wider_than_parent"
    );
    assert_eq!(
        refused(
            &world.agent,
            &root,
            "helper-bot",
            narrow.clone(),
            Some(86_400)
        )
        .await,
        "expiry_beyond_parent"
    );
    // Another agent's mandate, presented with one's own key.
    assert_eq!(
        refused(&helper, &root, "sub-bot", narrow.clone(), None).await,
        "dpop_key_mismatch"
    );
    // No such agent.
    assert_eq!(
        refused(&world.agent, &root, "nobody", narrow.clone(), None).await,
        "invalid_delegate"
    );

    // A cycle: helper-bot hands back to report-bot, already in the chain.
    let (status, child) = world
        .delegate_as(&world.agent, &root, "helper-bot", narrow.clone(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{child}");
    let child = token(&child);
    assert_eq!(
        refused(&helper, &child, "report-bot", narrow.clone(), None).await,
        "delegation_cycle"
    );
    // Deeper than the root's max_depth (2): the third hop is refused.
    let sub_key = world.add_agent("sub-bot-2").await;
    let (status, grandchild) = world
        .delegate_as(&helper, &child, "sub-bot-2", narrow.clone(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{grandchild}");
    assert_eq!(
        refused(&sub_key, &token(&grandchild), "third-bot", narrow, None).await,
        "delegation_too_deep"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_mandate_stops_everything_delegated_from_it() {
    let world = World::new().await;
    let helper = world.add_agent("helper-bot").await;
    let sub = world.add_agent("sub-bot").await;
    let (root, _) = world.grant().await;
    let grants = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    let (_, child) = world
        .delegate_as(&world.agent, &root, "helper-bot", grants.clone(), None)
        .await;
    let child = token(&child);
    let (_, grandchild) = world
        .delegate_as(&helper, &child, "sub-bot", grants, None)
        .await;
    let grandchild = token(&grandchild);
    let resource = format!("{}/mcp/files", world.gateway_url);
    let detail = read_file_detail("/data/reports/q2.md");

    world
        .revoke("mandate", claims(&child)["jti"].as_str().unwrap())
        .await;
    let (status, body) = world
        .try_writ_as(&sub, &grandchild, &resource, detail.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["reason"], "mandate_revoked");
    let (status, body) = world
        .try_writ_as(&helper, &child, &resource, detail.clone())
        .await;
    assert_eq!(body["reason"], "mandate_revoked", "{status} {body}");
    // The root, above the revoked mandate, still works.
    let (status, body) = world
        .try_writ_as(&world.agent, &root, &resource, detail)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_delegates_as_the_agent_holding_the_mandate() {
    let world = World::new().await;
    world.add_agent("helper-bot").await;
    let (root, root_id) = world.grant().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("report-bot.key");
    writ_keystore::create(&key, &world.agent).unwrap();
    let parent = dir.path().join("mandate.jwt");
    std::fs::write(&parent, &root).unwrap();
    let child = dir.path().join("child.jwt");
    let grant = read_grant(json!({"glob": "/data/reports/q*"})).to_string();
    let out = common::cli(
        &world,
        &key,
        &[
            "mandate",
            "delegate",
            "helper-bot",
            "--mandate-file",
            parent.to_str().unwrap(),
            "--grant",
            &grant,
            "--expires-in",
            "120",
            "--out",
            child.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert!(
        out.contains("wrote the child mandate for `helper-bot`"),
        "{out}"
    );
    assert!(
        !out.contains("eyJ"),
        "the mandate goes to the file, not the terminal: {out}"
    );
    let written = claims(std::fs::read_to_string(&child).unwrap().trim());
    assert_eq!(written["parent"], root_id);
    assert_eq!(written["depth"], 1);
}

/// Regression: only the holding agent's state was checked, so a sub-agent kept acting under
/// a chain through a delegator that had been suspended since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_delegator_stops_the_agents_below_it() {
    let world = World::new().await;
    let (bob, bob_bot) = bob_and_his_agent(&world).await;
    world.entitle("bob", &[], &["internal"]).await;
    let sub = world.add_agent("sub-bot").await;
    let (root, _) = world.grant().await;
    let grants = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    // alice's report-bot → bob's bob-bot (both consented) → alice's sub-bot.
    let consent = json!({"agent": "bob-bot", "from": "alice"});
    bob.post("/v1/delegation-consents", Some(&consent))
        .await
        .unwrap();
    world
        .alice
        .post("/v1/delegation-consents", Some(&consent))
        .await
        .unwrap();
    let (_, child) = world
        .delegate_as(&world.agent, &root, "bob-bot", grants.clone(), None)
        .await;
    let (status, grandchild) = world
        .delegate_as(&bob_bot, &token(&child), "sub-bot", grants, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{grandchild}");
    let grandchild = token(&grandchild);
    let resource = format!("{}/mcp/files", world.gateway_url);
    let detail = read_file_detail("/data/reports/q3.md");
    let (status, _) = world
        .try_writ_as(&sub, &grandchild, &resource, detail.clone())
        .await;
    assert_eq!(status, StatusCode::OK);

    // bob leaves: bob-bot is suspended; alice's mandates stand, but not through bob-bot.
    world
        .admin
        .post("/v1/humans/bob/offboard", Some(&json!({"reason": "left"})))
        .await
        .unwrap();
    let (status, body) = world
        .try_writ_as(&sub, &grandchild, &resource, detail)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "agent_inactive", "{body}");
}

/// bob and his agent `bob-bot`, with the `files` tools.
async fn bob_and_his_agent(world: &World) -> (writ_client::IssuerClient, writ_jose::SigningKey) {
    let bob = world.add_human("bob").await;
    world
        .admin
        .post(
            "/v1/entitlements",
            Some(&json!({"subject": "bob", "tools": ["files/read_file", "files/*"]})),
        )
        .await
        .unwrap();
    let bob_bot = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    bob.post(
        "/v1/agents",
        Some(
            &json!({"name": "bob-bot", "tools": ["files/read_file", "files/*"],
                     "jwk": serde_json::to_value(bob_bot.public_key().to_jwk()).unwrap()}),
        ),
    )
    .await
    .unwrap();
    (bob, bob_bot)
}

/// Regression: an agent holding alice's mandate handed part of it to an agent of bob's,
/// found by its name, with neither human's consent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mandate_reaches_another_owners_agent_only_with_both_owners_consent() {
    let world = World::new().await;
    let (bob, bob_bot) = bob_and_his_agent(&world).await;
    let bob_jkt = bob_bot.public_key().thumbprint().to_string();
    let (root, root_id) = world.grant().await;
    let grants = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    let delegate = async |to: &str| {
        world
            .delegate_as(&world.agent, &root, to, grants.clone(), None)
            .await
    };
    let refused = async |to: &str| {
        let (status, body) = delegate(to).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (StatusCode::FORBIDDEN, Some("delegate_other_owner")),
            "{body}"
        );
        body["error_description"].as_str().unwrap().to_owned()
    };

    // By name or by thumbprint: refused, and nothing is delegated.
    let message = refused("bob-bot").await;
    assert!(
        message.contains("`bob`") && message.contains("`alice`"),
        "{message}"
    );
    refused(&bob_jkt).await;
    let mandates = world
        .issuer
        .store()
        .mandates_of(None, Some(&bob_jkt))
        .await
        .unwrap();
    assert!(mandates.is_empty(), "{mandates:?}");

    // One side's consent is not enough: bob's agent may receive, alice has not sent.
    let consent = json!({"agent": "bob-bot", "from": "alice"});
    let bobs = bob
        .post("/v1/delegation-consents", Some(&consent))
        .await
        .unwrap();
    assert_eq!(bobs["side"], "receive");
    assert!(bobs["log_index"].is_u64(), "{bobs}");
    assert!(refused("bob-bot").await.contains("mandate's human has not"));

    // alice's consent for another mandate only does not cover this one.
    let (_, other_id) = world.grant().await;
    let narrow = world
        .alice
        .post(
            "/v1/delegation-consents",
            Some(&json!({"agent": "bob-bot", "from": "alice", "mandate": other_id})),
        )
        .await
        .unwrap();
    assert_eq!(narrow["side"], "send");
    refused("bob-bot").await;

    // For this mandate: delegated.
    let alices = world
        .alice
        .post(
            "/v1/delegation-consents",
            Some(&json!({"agent": "bob-bot", "from": "alice", "mandate": root_id})),
        )
        .await
        .unwrap();
    let (status, child) = delegate("bob-bot").await;
    assert_eq!(status, StatusCode::OK, "{child}");
    assert_eq!(claims(&token(&child))["act"]["sub"], bob_jkt.as_str());
    // Its leaf names the two consents it relied on.
    let leaf = world
        .issuer
        .store()
        .leaf(child["log_index"].as_u64().unwrap())
        .await
        .unwrap()
        .unwrap();
    let leaf: Value = serde_json::from_slice(&leaf.data).unwrap();
    assert_eq!(
        leaf["event"]["consents"],
        json!([bobs["consent"], alices["consent"]]),
        "{leaf}"
    );

    // Withdrawn: no further delegation. Withdrawing again records nothing.
    let id = alices["consent"].as_str().unwrap();
    let path = format!("/v1/delegation-consents/{id}/withdraw");
    let error = bob.post(&path, None).await.unwrap_err().to_string();
    assert!(
        error.contains("unknown_consent"),
        "only its giver withdraws it: {error}"
    );
    let withdrawn = world.alice.post(&path, None).await.unwrap();
    assert_eq!(withdrawn["withdrawn"], true, "{withdrawn}");
    // The mandate delegated under it is revoked with it: bob-bot earns no writ under it.
    let child_id = claims(&token(&child))["jti"].as_str().unwrap().to_owned();
    assert_eq!(
        withdrawn["revoked"],
        json!([{"kind": "mandate", "subject": child_id}]),
        "{withdrawn}"
    );
    let resource = format!("{}/mcp/files", world.gateway_url);
    let (status, body) = world
        .try_writ_as(
            &bob_bot,
            &token(&child),
            &resource,
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mandate_revoked")),
        "{body}"
    );
    let again = world.alice.post(&path, None).await.unwrap();
    assert_eq!(again["withdrawn"], false, "{again}");
    refused("bob-bot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_two_owners_consent_and_only_across_owners() {
    let world = World::new().await;
    bob_and_his_agent(&world).await;
    let carol = world.add_human("carol").await;
    world.add_agent("helper-bot").await;
    let reason = |result: Result<Value, writ_client::ClientError>| {
        let error = result.unwrap_err().to_string();
        [
            "not_authorized_to_consent",
            "consent_not_needed",
            "unknown_agent",
            "unknown_human",
            "unknown_mandate",
        ]
        .into_iter()
        .find(|reason| error.contains(reason))
        .unwrap_or_else(|| panic!("{error}"))
    };
    let consent = |agent: &str, from: &str| json!({"agent": agent, "from": from});
    assert_eq!(
        reason(
            carol
                .post(
                    "/v1/delegation-consents",
                    Some(&consent("bob-bot", "alice"))
                )
                .await
        ),
        "not_authorized_to_consent"
    );
    assert_eq!(
        reason(
            world
                .alice
                .post(
                    "/v1/delegation-consents",
                    Some(&consent("helper-bot", "alice"))
                )
                .await
        ),
        "consent_not_needed"
    );
    assert_eq!(
        reason(
            world
                .alice
                .post("/v1/delegation-consents", Some(&consent("no-bot", "alice")))
                .await
        ),
        "unknown_agent"
    );
    assert_eq!(
        reason(
            world
                .alice
                .post(
                    "/v1/delegation-consents",
                    Some(&consent("bob-bot", "nobody"))
                )
                .await
        ),
        "unknown_human"
    );
    assert_eq!(
        reason(
            world
                .alice
                .post(
                    "/v1/delegation-consents",
                    Some(&json!({"agent": "bob-bot", "from": "alice", "mandate": "mnd_nothing"})),
                )
                .await
        ),
        "unknown_mandate"
    );
}

/// The delegate is named exactly: by its unique name, or by its thumbprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_is_named_exactly_by_name_or_thumbprint() {
    let world = World::new().await;
    let helper = world.add_agent("helper-bot").await;
    let (root, _) = world.grant().await;
    let grants = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    for near in ["Helper-bot", "helper-bot ", "helper", "helper-bot2"] {
        let (status, body) = world
            .delegate_as(&world.agent, &root, near, grants.clone(), None)
            .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_delegate")),
            "`{near}`: {body}"
        );
    }
    let thumbprint = helper.public_key().thumbprint().to_string();
    let (status, body) = world
        .delegate_as(&world.agent, &root, &thumbprint, grants, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(claims(&token(&body))["act"]["sub"], thumbprint.as_str());
}

/// `writ mandate consent` and `writ mandate withdraw-consent`, as the human themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_gives_and_withdraws_consents() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    // bob and carol hold their keys in files.
    let mut keys = Vec::new();
    for human in ["bob", "carol"] {
        let path = dir.path().join(format!("{human}.key"));
        let key = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
        writ_keystore::create(&path, &key).unwrap();
        let jwk = serde_json::to_value(key.public_key().to_jwk()).unwrap();
        world
            .admin
            .post("/v1/humans", Some(&json!({"id": human, "jwk": jwk})))
            .await
            .unwrap();
        keys.push(path);
    }
    let (bob_key, carol_key) = (&keys[0], &keys[1]);
    world
        .admin
        .post(
            "/v1/entitlements",
            Some(&json!({"subject": "bob", "tools": ["files/read_file"]})),
        )
        .await
        .unwrap();
    let agent_key = dir.path().join("bob-bot.key");
    writ_keystore::create(
        &agent_key,
        &writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap(),
    )
    .unwrap();
    let agent_key_arg = agent_key.to_str().unwrap().to_owned();
    common::cli(
        &world,
        bob_key,
        &[
            "agent",
            "add",
            "bob-bot",
            "--tools",
            "files/read_file",
            "--key-file",
            &agent_key_arg,
        ],
    )
    .unwrap();

    let error = common::cli(
        &world,
        carol_key,
        &["mandate", "consent", "bob-bot", "--from", "alice"],
    )
    .unwrap_err();
    assert!(error.contains("not_authorized_to_consent"), "{error}");
    let out = common::cli(
        &world,
        bob_key,
        &[
            "mandate",
            "consent",
            "bob-bot",
            "--from",
            "alice",
            "--expires-in",
            "600",
        ],
    )
    .unwrap();
    let given: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(given["side"], "receive", "{out}");
    let id = given["consent"].as_str().unwrap();
    let out = common::cli(
        &world,
        bob_key,
        &[
            "mandate",
            "withdraw-consent",
            id,
            "--reason",
            "project over",
        ],
    )
    .unwrap();
    assert!(out.contains("\"withdrawn\": true"), "{out}");
    let out = common::cli(&world, bob_key, &["mandate", "consents"]).unwrap();
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["consents"][0]["consent"], id, "{out}");
    assert_eq!(listed["consents"][0]["status"], "withdrawn", "{out}");
    let out = common::cli(&world, carol_key, &["mandate", "consents"]).unwrap();
    assert!(!out.contains(id), "carol is no party to it: {out}");
}

/// Both consents for alice's mandates to reach bob's `bob-bot`.
/// The answer of a token request the data-clearance policy refused.
fn refused_for_clearance(status: StatusCode, body: &Value) {
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::FORBIDDEN, Some("policy_forbid")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("invoke-needs-data-clearance"),
        "{body}"
    );
}

async fn both_consent(world: &World, bob: &writ_client::IssuerClient) {
    let consent = json!({"agent": "bob-bot", "from": "alice"});
    bob.post("/v1/delegation-consents", Some(&consent))
        .await
        .unwrap();
    world
        .alice
        .post("/v1/delegation-consents", Some(&consent))
        .await
        .unwrap();
}

/// Regression: only the human at the root of the chain was asked about data clearance and
/// entitlements, so bob's agent, delegated to by alice, read data bob is not cleared for,
/// and kept reading after bob's entitlement was removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_may_do_only_what_every_owner_in_it_is_entitled_to() {
    let world = World::new().await;
    // bob is entitled to the `files` tools, not to `internal` data.
    let (bob, bob_bot) = bob_and_his_agent(&world).await;
    both_consent(&world, &bob).await;
    let (root, _) = world.grant().await;
    let grants = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    let (status, child) = world
        .delegate_as(&world.agent, &root, "bob-bot", grants, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{child}");
    let child = token(&child);
    let resource = format!("{}/mcp/files", world.gateway_url);
    let detail = read_file_detail("/data/reports/q3.md");
    let (status, body) = world
        .try_writ_as(&bob_bot, &child, &resource, detail.clone())
        .await;
    refused_for_clearance(status, &body);

    // Cleared: it reads. Clearance removed: it stops.
    let cleared = world.entitle("bob", &[], &["internal"]).await;
    let (status, body) = world
        .try_writ_as(&bob_bot, &child, &resource, detail.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    world
        .admin
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/entitlements/{cleared}"),
            None,
        )
        .await
        .unwrap();
    let (status, body) = world.try_writ_as(&bob_bot, &child, &resource, detail).await;
    refused_for_clearance(status, &body);
}

/// Regression: revoking human bob revoked the mandates bob granted, but his agent went on
/// acting under mandates delegated to it by others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_owner_stops_their_agents_in_others_chains() {
    let world = World::new().await;
    let (bob, bob_bot) = bob_and_his_agent(&world).await;
    world.entitle("bob", &[], &["internal"]).await;
    both_consent(&world, &bob).await;
    let (root, _) = world.grant().await;
    let grants = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    let (_, child) = world
        .delegate_as(&world.agent, &root, "bob-bot", grants.clone(), None)
        .await;
    let child = token(&child);
    let resource = format!("{}/mcp/files", world.gateway_url);
    let detail = read_file_detail("/data/reports/q3.md");
    let (status, body) = world
        .try_writ_as(&bob_bot, &child, &resource, detail.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    world.revoke("human", "bob").await;
    let (status, body) = world.try_writ_as(&bob_bot, &child, &resource, detail).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("owner_revoked")),
        "{body}"
    );
    // Nor does it hand the mandate on.
    world.add_agent("sub-bot").await;
    let (status, body) = world
        .delegate_as(&bob_bot, &child, "sub-bot", grants, None)
        .await;
    assert_eq!(body["reason"], "owner_revoked", "{status} {body}");
}

/// Regression: an administrator's agent delegating to a member's agent passed the
/// administrator's exemption from entitlements on to the member's agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrators_exemption_does_not_pass_down_to_a_members_agent() {
    let world = World::new().await;
    let (bob, bob_bot) = bob_and_his_agent(&world).await;
    let root_bot = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    world
        .admin
        .post(
            "/v1/agents",
            Some(&json!({"name": "root-bot", "tools": ["files/read_file"],
                         "jwk": serde_json::to_value(root_bot.public_key().to_jwk()).unwrap()})),
        )
        .await
        .unwrap();
    let granted = world
        .admin
        .post(
            "/v1/mandates",
            Some(&json!({"agent": "root-bot", "task": "Read the reports",
                         "grants": [read_grant(json!({"glob": "/data/reports/*"}))]})),
        )
        .await
        .unwrap();
    let mandate = granted["mandate"].as_str().unwrap().to_owned();
    let consent = json!({"agent": "bob-bot", "from": "root"});
    bob.post("/v1/delegation-consents", Some(&consent))
        .await
        .unwrap();
    world
        .admin
        .post("/v1/delegation-consents", Some(&consent))
        .await
        .unwrap();
    let resource = format!("{}/mcp/files", world.gateway_url);
    let detail = read_file_detail("/data/reports/q3.md");
    // The administrator's own agent reads `internal` data.
    let (status, body) = world
        .try_writ_as(&root_bot, &mandate, &resource, detail.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, child) = world
        .delegate_as(
            &root_bot,
            &mandate,
            "bob-bot",
            json!([read_grant(json!({"glob": "/data/reports/*"}))]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{child}");
    // bob's agent does not: bob is not cleared for it.
    let (status, body) = world
        .try_writ_as(&bob_bot, &token(&child), &resource, detail)
        .await;
    refused_for_clearance(status, &body);
}

/// Regression: a transferred agent kept the mandates its former owner's humans had given
/// it, and a transfer away and back made consents its owner had given before valid again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_revokes_what_the_agent_held_for_others_and_lapses_consents_for_good() {
    let world = World::new().await;
    let (bob, bob_bot) = bob_and_his_agent(&world).await;
    world.entitle("bob", &[], &["internal"]).await;
    world.add_human("carol").await;
    world
        .entitle(
            "carol",
            &["files/read_file", "files/drop_table", "files/*", "crm/*"],
            &["internal"],
        )
        .await;
    both_consent(&world, &bob).await;
    let (root, _) = world.grant().await;
    let grants = json!([read_grant(json!({"glob": "/data/reports/*"}))]);
    let (status, child) = world
        .delegate_as(&world.agent, &root, "bob-bot", grants.clone(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{child}");
    let child = token(&child);
    let child_id = claims(&child)["jti"].as_str().unwrap().to_owned();
    let resource = format!("{}/mcp/files", world.gateway_url);
    let detail = read_file_detail("/data/reports/q3.md");

    // bob-bot goes to carol: alice's mandate it held is revoked in the transfer's leaf.
    let moved = world
        .admin
        .post(
            "/v1/agents/bob-bot/transfer",
            Some(&json!({"owner": "carol"})),
        )
        .await
        .unwrap();
    assert_eq!(moved["revoked"], 1, "{moved}");
    assert!(world.issuer.store().is_revoked("mandate", &child_id));
    let (status, body) = world
        .try_writ_as(&bob_bot, &child, &resource, detail.clone())
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mandate_revoked")),
        "{body}"
    );

    // Back to bob: the consent bob gave before stays lapsed.
    world
        .admin
        .post(
            "/v1/agents/bob-bot/transfer",
            Some(&json!({"owner": "bob"})),
        )
        .await
        .unwrap();
    let (status, body) = world
        .delegate_as(&world.agent, &root, "bob-bot", grants.clone(), None)
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::FORBIDDEN, Some("delegate_other_owner")),
        "{body}"
    );
    // Listed as lapsed, to both parties.
    for party in [&bob, &world.alice] {
        let listed = party.get("/v1/delegation-consents").await.unwrap();
        let statuses: Vec<&str> = listed["consents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|consent| consent["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["lapsed", "lapsed"], "{listed}");
    }
    // A transfer to the owner it has already changes nothing.
    let error = world
        .admin
        .post(
            "/v1/agents/bob-bot/transfer",
            Some(&json!({"owner": "bob"})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("already_owner"), "{error}");
    // Consented again, after the transfer: delegated.
    both_consent(&world, &bob).await;
    let (status, body) = world
        .delegate_as(&world.agent, &root, "bob-bot", grants, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Moving alice's own agent to carol revokes the mandates alice gave it.
    let (status, body) = world
        .try_writ_as(&world.agent, &root, &resource, detail.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    world
        .admin
        .post(
            "/v1/agents/report-bot/transfer",
            Some(&json!({"owner": "carol"})),
        )
        .await
        .unwrap();
    let (status, body) = world
        .try_writ_as(&world.agent, &root, &resource, detail)
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mandate_revoked")),
        "{body}"
    );
}
