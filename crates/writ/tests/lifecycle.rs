//! The agent lifecycle on a whole deployment on 127.0.0.1: lifetimes that end unless
//! renewed, idle agents suspended, retirement, offboarding with transfer; each change
//! audited, and each revocation at the gateway within a second.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use common::cli;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use writ_testkit::*;

const DAY: i64 = 86_400;

fn admin_key(world: &World) -> std::path::PathBuf {
    world.dir.path().join("admin.key")
}

async fn agent(world: &World, name: &str) -> Value {
    let agents = world.admin.get("/v1/agents").await.unwrap();
    agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|agent| agent["name"] == name)
        .cloned()
        .unwrap()
}

async fn leaf_kind(world: &World, answer: &str) -> String {
    let index = serde_json::from_str::<Value>(answer).unwrap()["log_index"].clone();
    let leaf = world
        .admin
        .get(&format!("/v1/audit/leaves/{index}"))
        .await
        .unwrap();
    leaf["kind"].as_str().unwrap().to_owned()
}

/// Calls with `writ` until the gateway refuses it, for at most a second; the reason (the
/// cause: the human or agent revoked before the mandates that died with them).
async fn refused_within_a_second(world: &World, writ: &str) -> String {
    let started = Instant::now();
    loop {
        let (status, _, body) = world
            .mcp(
                writ,
                tools_call("read_file", json!({"path": "/data/reports/q3.md"})),
            )
            .await;
        if status != 200 {
            return reason(&body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still allowed after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_end_unless_renewed_and_idle_agents_are_suspended() {
    let world = World::new().await;
    world.add_agent("helper-bot").await;
    let (mandate, mandate_id) = world.grant().await;
    let (status, _, _) = world.read_file(&mandate, "/data/reports/q3.md").await;
    assert_eq!(status, 200);

    // alice renews helper-bot for 200 days; report-bot keeps its 90.
    let alice_key = world.dir.path().join("alice.key");
    writ_keystore::create(
        &alice_key,
        &writ_jose::SigningKey::from_pkcs8_any(world.alice.key().expose_secret_pkcs8().unwrap())
            .unwrap(),
    )
    .unwrap();
    let renewed = cli(
        &world,
        &alice_key,
        &["agent", "renew", "helper-bot", "--days", "200"],
    )
    .unwrap();
    assert_eq!(leaf_kind(&world, &renewed).await, "agent_renewed");
    let before = agent(&world, "helper-bot").await["expires_at"]
        .as_i64()
        .unwrap();

    // 91 days on: report-bot has reached the end of its life; helper-bot, renewed, has
    // not, but it has never earned a writ in 91 days.
    world.clock.advance(91 * DAY);
    let swept = world.issuer.sweep_lifecycle().await.unwrap();
    assert_eq!(swept.expired, ["report-bot"]);
    assert_eq!(swept.suspended, ["helper-bot"]);
    // A second sweep changes nothing.
    assert_eq!(
        world.issuer.sweep_lifecycle().await.unwrap(),
        writ_issuer::Swept::default()
    );
    // Back to the callers' time, whose proofs use the system clock.
    world.clock.advance(-91 * DAY);
    let report = agent(&world, "report-bot").await;
    assert_eq!(report["status"], "retired");
    assert_eq!(report["status_reason"], "lifetime ended");
    let helper = agent(&world, "helper-bot").await;
    assert_eq!(helper["status"], "suspended");
    assert_eq!(helper["status_reason"], "idle for 91 days");
    assert!(before > 190 * DAY, "renewed from now");
    // The retired agent's mandates died with it.
    let shown = world
        .admin
        .get(&format!("/v1/mandates/{mandate_id}"))
        .await
        .unwrap();
    assert_eq!(shown["revoked"], true);
    // Neither gets a mandate now: the retired agent is revoked, the idle one suspended.
    for (name, reason) in [
        ("report-bot", "agent_revoked"),
        ("helper-bot", "agent_inactive"),
    ] {
        let error = world
            .alice
            .post(
                "/v1/mandates",
                Some(&json!({"agent": name, "task": "t", "grants": [
                    {"type": "mcp_request", "server": "files", "methods": ["tools/list"]}]})),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(reason), "{name}: {error}");
    }
    // Its owner renewing the idle agent vouches for it: active again.
    let renewed = cli(&world, &alice_key, &["agent", "renew", "helper-bot"]).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&renewed).unwrap()["status"],
        "active"
    );
    assert_eq!(agent(&world, "helper-bot").await["status"], "active");
    // A retired agent is not renewed.
    let error = cli(&world, &alice_key, &["agent", "renew", "report-bot"]).unwrap_err();
    assert!(error.contains("agent_retired"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retiring_an_agent_stops_its_writs_at_the_gateway_within_a_second() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    let retired = cli(
        &world,
        &admin_key(&world),
        &["agent", "retire", "report-bot", "--reason", "project over"],
    )
    .unwrap();
    assert_eq!(leaf_kind(&world, &retired).await, "agent_retired");
    assert_eq!(
        serde_json::from_str::<Value>(&retired).unwrap()["revoked"],
        2,
        "the agent and its mandate"
    );
    assert_eq!(
        refused_within_a_second(&world, &writ).await,
        "agent_revoked"
    );
    let (status, body) = world
        .try_writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["reason"], "agent_revoked", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_revokes_what_a_human_granted_and_suspends_their_agents_until_transferred() {
    let world = World::new().await;
    let bob = world.add_human("bob").await;
    // bob may own alice's agents only once entitled to their tools.
    world
        .entitle(
            "bob",
            &["files/read_file", "files/drop_table", "files/*", "crm/*"],
            &["internal"],
        )
        .await;
    let (mandate, _) = world.grant().await;
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;

    // Bad input changes nothing.
    let admin = admin_key(&world);
    let error = cli(
        &world,
        &admin,
        &["human", "offboard", "nobody", "--reason", "left"],
    )
    .unwrap_err();
    assert!(error.contains("unknown_human"), "{error}");
    let error = cli(
        &world,
        &admin,
        &["human", "offboard", "alice", "--reason", ""],
    )
    .unwrap_err();
    assert!(error.contains("invalid_reason"), "{error}");
    assert_eq!(agent(&world, "report-bot").await["status"], "active");

    let offboarded = cli(
        &world,
        &admin,
        &["human", "offboard", "alice", "--reason", "left the company"],
    )
    .unwrap();
    assert_eq!(leaf_kind(&world, &offboarded).await, "human_offboarded");
    let again = cli(
        &world,
        &admin,
        &["human", "offboard", "alice", "--reason", "left again"],
    )
    .unwrap_err();
    assert!(again.contains("already_offboarded"), "{again}");
    assert_eq!(
        refused_within_a_second(&world, &writ).await,
        "human_revoked"
    );
    let report = agent(&world, "report-bot").await;
    assert_eq!(report["status"], "suspended");
    assert_eq!(report["status_reason"], "owner offboarded");
    // alice's key no longer works; her mandate earns nothing.
    assert!(world.alice.get("/v1/agents").await.is_err());
    let (_, body) = world
        .try_writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    assert_eq!(body["reason"], "human_revoked", "{body}");

    // Only an administrator transfers; then the agent works for bob.
    let bob_file = world.dir.path().join("bob.key");
    writ_keystore::create(&bob_file, bob.key()).unwrap();
    let error = cli(
        &world,
        &bob_file,
        &["agent", "transfer", "report-bot", "--to", "bob"],
    )
    .unwrap_err();
    assert!(error.contains("admin_required"), "{error}");
    let error = cli(
        &world,
        &admin,
        &["agent", "transfer", "report-bot", "--to", "alice"],
    )
    .unwrap_err();
    assert!(
        error.contains("unknown_owner"),
        "an offboarded human owns nothing: {error}"
    );
    let moved = cli(
        &world,
        &admin,
        &["agent", "transfer", "report-bot", "--to", "bob"],
    )
    .unwrap();
    assert_eq!(leaf_kind(&world, &moved).await, "agent_transferred");
    let report = agent(&world, "report-bot").await;
    assert_eq!(
        (report["owner"].as_str(), report["status"].as_str()),
        (Some("bob"), Some("active"))
    );
    let granted = bob
        .post(
            "/v1/mandates",
            Some(
                &json!({"agent": "report-bot", "task": "Carry on", "grants": [
                {"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                 "arguments": {"object": {"required": {"path": {"glob": "/data/reports/*"}}}},
                 "datatypes": ["internal"]}]}),
            ),
        )
        .await
        .unwrap();
    let (status, _, body) = world
        .read_file(granted["mandate"].as_str().unwrap(), "/data/reports/q2.md")
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_shows_each_agent_its_owner_use_and_what_it_can_still_do() {
    let world = World::new().await;
    world.add_agent("helper-bot").await;
    let (mandate, mandate_id) = world.grant().await;
    let (status, _, _) = world.read_file(&mandate, "/data/reports/q3.md").await;
    assert_eq!(status, 200);
    let admin = admin_key(&world);

    let inventory: Value =
        serde_json::from_str(&cli(&world, &admin, &["inventory", "--json"]).unwrap()).unwrap();
    let agents = inventory["agents"].as_array().unwrap();
    let report = agents.iter().find(|a| a["name"] == "report-bot").unwrap();
    assert_eq!(report["owner"], "alice");
    assert_eq!(report["status"], "active");
    assert!(report["last_seen"].as_i64().is_some());
    assert_eq!(report["tools_used"], json!(["files/read_file"]));
    assert_eq!(report["outstanding_mandates"], json!([mandate_id]));
    let helper = agents.iter().find(|a| a["name"] == "helper-bot").unwrap();
    assert_eq!(helper["last_seen"], Value::Null);
    assert_eq!(helper["tools_used"], json!([]));
    let files = inventory["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "files")
        .unwrap();
    assert!(
        files["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|tool| tool["name"] == "read_file" && tool["labels"] == json!(["internal"]))
    );

    // Revoked, the mandate is no longer outstanding; the table says so too.
    world.revoke("mandate", &mandate_id).await;
    let table = cli(&world, &admin, &["inventory"]).unwrap();
    let line = table
        .lines()
        .find(|line| line.starts_with("report-bot"))
        .unwrap();
    assert!(
        line.contains("alice") && line.contains("files/read_file"),
        "{table}"
    );
    assert!(line.trim_end().ends_with(" 0"), "{table}");
    assert!(table.contains("read_file[internal]"), "{table}");

    // Someone removes `drop_table` from the inventory, but the server still offers it: the
    // gateway's `tools/list` shows what is really there.
    world
        .admin
        .post(
            "/v1/providers",
            Some(&json!({"name": "files", "kind": "mcp",
                         "tools": [{"name": "read_file", "labels": ["internal"]}]})),
        )
        .await
        .unwrap();
    let (mandate, _) = world.grant().await;
    let (status, _, _) = world
        .mcp_method(
            &mandate,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 200);
    let mut discovered = Value::Null;
    for _ in 0..100 {
        let inventory = world.admin.get("/v1/inventory").await.unwrap();
        discovered = inventory["discovered"].clone();
        if discovered.as_array().is_some_and(|all| !all.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        discovered,
        json!([{"server": "files", "tools": ["drop_table", "read_file"], "unregistered": ["drop_table"]}])
    );
    let table = cli(&world, &admin, &["inventory"]).unwrap();
    assert!(table.contains("NOT IN THE INVENTORY"), "{table}");
    // A stranger with a key of its own and a made-up writ is turned away, and listed.
    let stranger = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    let url = format!("{}/mcp/files", world.gateway_url);
    let proof = writ_token::ProofClaims::new(
        "POST",
        &url,
        writ_token::Clock::now(world.clock.as_ref()),
        "stranger-1".to_owned(),
    )
    .with_access_token("made.up.writ")
    .sign(&stranger)
    .unwrap();
    let call = tools_call("read_file", json!({"path": "/data/hr/salaries.csv"}));
    let (status, _, _) = world
        .post_mcp("made.up.writ", &proof, call.to_string().into_bytes())
        .await;
    assert_eq!(status, 401);
    let mut turned_away = Value::Null;
    for _ in 0..100 {
        turned_away = world.admin.get("/v1/inventory").await.unwrap()["turned_away"].clone();
        if turned_away.as_array().is_some_and(|all| !all.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        turned_away[0]["jkt"],
        stranger.public_key().thumbprint().as_str()
    );
    assert_eq!(turned_away[0]["requests"], 1);
    assert_eq!(turned_away[0]["routes"], json!(["gw:files"]));
    assert!(
        cli(&world, &admin, &["inventory"])
            .unwrap()
            .contains(stranger.public_key().thumbprint().as_str())
    );

    // Only gateways report discoveries.
    let error = world
        .admin
        .post(
            "/v1/audit/discoveries",
            Some(&json!({"route": "files", "tools": ["x"]})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("gateway_required"), "{error}");

    // For administrators only.
    let error = world
        .alice
        .get("/v1/inventory")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("admin_required"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_offboards_through_scim() {
    let world = World::new().await;
    let dave_key = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    let dave_jwk = serde_json::to_value(dave_key.public_key().to_jwk()).unwrap();
    for (id, jwk) in [("carol", Value::Null), ("dave", dave_jwk)] {
        world
            .admin
            .post("/v1/humans", Some(&json!({"id": id, "jwk": jwk})))
            .await
            .unwrap();
    }
    let dave_client = writ_client::IssuerClient::new(&world.issuer_url, dave_key).unwrap();
    let (mandate, _) = world.grant().await;
    let writ = world
        .writ(
            &mandate,
            "/mcp/files",
            read_file_detail("/data/reports/q3.md"),
        )
        .await;
    let patch = |value: Value| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "Replace", "path": "active", "value": value}]})
    };
    let user = world.admin.get("/scim/v2/Users/alice").await.unwrap();
    assert_eq!(user["active"], true);
    assert_eq!(
        user["schemas"][0],
        "urn:ietf:params:scim:schemas:core:2.0:User"
    );

    // Anything but `active`, or not a PatchOp: refused, nothing changes.
    let refused = world
        .admin
        .request(
            reqwest::Method::PATCH,
            "/scim/v2/Users/alice",
            Some(
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                         "Operations": [{"op": "replace", "path": "displayName", "value": "A"}]}),
            ),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("mutability"), "{refused}");
    let refused = world
        .admin
        .request(
            reqwest::Method::PATCH,
            "/scim/v2/Users/alice",
            Some(&json!({"active": false})),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("invalidSyntax"), "{refused}");
    assert_eq!(agent(&world, "report-bot").await["status"], "active");

    // `active: false` offboards: the writ stops at the gateway, the agent is suspended.
    let user = world
        .admin
        .request(
            reqwest::Method::PATCH,
            "/scim/v2/Users/alice",
            Some(&patch(json!(false))),
        )
        .await
        .unwrap();
    assert_eq!(user["active"], false);
    assert_eq!(
        refused_within_a_second(&world, &writ).await,
        "human_revoked"
    );
    assert_eq!(
        agent(&world, "report-bot").await["status_reason"],
        "owner offboarded"
    );
    // Repeating it changes nothing; undoing it is refused.
    world
        .admin
        .request(
            reqwest::Method::PATCH,
            "/scim/v2/Users/alice",
            Some(&patch(json!(false))),
        )
        .await
        .unwrap();
    let refused = world
        .admin
        .request(
            reqwest::Method::PATCH,
            "/scim/v2/Users/alice",
            Some(&patch(json!(true))),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("stays offboarded"), "{refused}");

    // DELETE offboards too; the record stays. Unknown users are 404s.
    world
        .admin
        .request(reqwest::Method::DELETE, "/scim/v2/Users/carol", None)
        .await
        .unwrap();
    assert_eq!(
        world.admin.get("/scim/v2/Users/carol").await.unwrap()["active"],
        false
    );
    let missing = world
        .admin
        .request(reqwest::Method::DELETE, "/scim/v2/Users/nobody", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("404"), "{missing}");
    // Only administrators, by DPoP: a human's key is not enough.
    let dave = world.admin.get("/scim/v2/Users/dave").await.unwrap();
    assert_eq!(dave["active"], true);
    let refused = dave_client
        .request(reqwest::Method::DELETE, "/scim/v2/Users/dave", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("admin_required"), "{refused}");
    assert_eq!(
        world.admin.get("/scim/v2/Users/dave").await.unwrap()["active"],
        true
    );
}
