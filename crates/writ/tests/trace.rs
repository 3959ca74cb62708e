//! `writ trace` against a whole deployment on 127.0.0.1: from a gateway request id, a writ
//! id, a mandate id or a log index back to the human, each record proven in a signed
//! checkpoint; and who may see a trace.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::time::Duration;

mod common;

use common::writ;
use serde_json::Value;
use writ_testkit::World;

/// `writ trace` with `args`, as the administrator, pinning `log_key`; its output or its
/// error.
fn trace(world: &World, log_key: &str, args: &[&str]) -> Result<String, String> {
    let admin_key = world.dir.path().join("admin.key");
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    all.extend([
        "--log-key",
        log_key,
        "--issuer",
        &world.issuer_url,
        "--key",
        admin_key.to_str().unwrap(),
    ]);
    match writ(&all) {
        (Ok(()), out) => Ok(out),
        (Err(error), _) => Err(format!("{error:#}")),
    }
}

/// The verifier key of a log that is not this one.
fn other_log_key() -> String {
    let key = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    writ_log::NoteSigner::new("elsewhere.example/log", key)
        .unwrap()
        .verifier()
        .to_vkey()
}

/// Calls until the gateway's decision on `request`, and the end of its answer, are in the
/// log.
async fn wait_for_decision(world: &World, request: &str) {
    for _ in 0..100 {
        if let Ok(trace) = world.admin.get(&format!("/v1/trace/{request}")).await
            && trace["records"]
                .as_array()
                .unwrap()
                .iter()
                .any(|record| record["kind"] == "gateway_response")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the decision on {request} never reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_walks_from_any_step_back_to_the_human() {
    let world = World::new().await;
    let (mandate, mandate_id) = world.grant().await;
    let (status, headers, _) = world.read_file(&mandate, "/data/reports/q3.md").await;
    assert_eq!(status, 200);
    let request = headers["writ-request-id"].to_str().unwrap().to_owned();
    wait_for_decision(&world, &request).await;
    let key = world.log_key.clone();

    let out = trace(&world, &key, &[&request, "--json"]).unwrap();
    let traced: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(traced["verified"], true);
    let kinds: Vec<&str> = traced["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "human_registered",
            "agent_registered",
            "mandate_granted",
            "writ_issued",
            "gateway_decision",
            "gateway_response"
        ]
    );
    let records = traced["records"].as_array().unwrap();
    assert_eq!(records[0]["event"]["human"], "alice");
    assert_eq!(records[2]["event"]["mandate"], mandate_id);
    assert_eq!(
        records[2]["event"]["task"],
        "Summarize the Q3 reports in /data"
    );
    assert!(
        records[3]["event"]["policy"]["set"]
            .as_str()
            .unwrap()
            .starts_with("ps_")
    );
    assert_eq!(records[4]["event"]["request_id"], request);
    let writ_id = records[3]["event"]["writ"].as_str().unwrap().to_owned();
    let writ_index = records[3]["index"].to_string();

    // From the writ: the same line, its decision included.
    let from_writ = trace(&world, &key, &[&writ_id, "--json"]).unwrap();
    let from_writ: Value = serde_json::from_str(&from_writ).unwrap();
    assert_eq!(from_writ["records"], traced["records"]);
    // From the writ's log index: the same line.
    let from_index: Value =
        serde_json::from_str(&trace(&world, &key, &[&writ_index, "--json"]).unwrap()).unwrap();
    assert_eq!(from_index["records"], traced["records"]);
    // From the mandate: the human, the agent, the grant and every writ issued under it.
    world.read_file(&mandate, "/data/reports/q2.md").await;
    let from_mandate: Value =
        serde_json::from_str(&trace(&world, &key, &[&mandate_id, "--json"]).unwrap()).unwrap();
    let writs = from_mandate["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["kind"] == "writ_issued")
        .count();
    assert_eq!(writs, 2);

    // For people: one line per record, the policy named at each step.
    let text = trace(&world, &key, &[&request]).unwrap();
    // A log key other than the log's: nothing is shown.
    let other = trace(&world, &other_log_key(), &[&request]).unwrap_err();
    assert!(other.contains("not signed by the log key"), "{other}");
    for expected in [
        &format!("trace of {request}: 6 records, each proven to be in checkpoint "),
        "human alice (member), registered by root",
        "agent report-bot owned by alice",
        &format!("mandate {mandate_id} granted by alice to report-bot"),
        "task “Summarize the Q3 reports in /data”",
        "policy set ps_",
        "by agent report-bot (",
        "allow tools/call read_file on route files at gateway gw",
        "bytes from files/read_file [completed] at gateway gw",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_for_administrators_and_the_human_it_ends_at() {
    let world = World::new().await;
    let (_, mandate_id) = world.grant().await;
    // alice traces what was done on her behalf.
    let mine = world
        .alice
        .get(&format!("/v1/trace/{mandate_id}"))
        .await
        .unwrap();
    assert!(!mine["records"].as_array().unwrap().is_empty());
    // bob, another human, may not.
    let bob = world.add_human("bob").await;
    let refused = bob
        .get(&format!("/v1/trace/{mandate_id}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("not_authorized_to_trace"), "{refused}");
    // bob learns nothing either about what does not exist: the same refusal.
    let unknown = bob
        .get("/v1/trace/mnd_doesnotexist")
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("not_authorized_to_trace"), "{unknown}");
    // An agent is no human.
    let agent = writ_client::IssuerClient::new(
        &world.issuer_url,
        writ_jose::SigningKey::from_pkcs8_any(world.agent.expose_secret_pkcs8().unwrap()).unwrap(),
    )
    .unwrap();
    let refused = agent
        .get(&format!("/v1/trace/{mandate_id}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("human_required"), "{refused}");

    // Nothing to trace, or not an id at all: clear errors.
    let key = world.log_key.clone();
    let unknown = trace(&world, &key, &["wrt_doesnotexist"]).unwrap_err();
    assert!(unknown.contains("nothing_to_trace"), "{unknown}");
    let malformed = trace(&world, &key, &["a.b"]).unwrap_err();
    assert!(malformed.contains("invalid_trace_id"), "{malformed}");
}
