//! Behavioural baselines on a whole deployment on 127.0.0.1: a scripted agent works
//! normally until its baseline is learned and is never stopped; then each injected drift
//! (a new destructive tool, a tenfold burst, a bulk export, a sequence never seen) is
//! stopped with its reason, in block mode and in step-up mode, where the owner approves or
//! denies with `writ approvals`. Every verdict is in the audit log and in `writ trace`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use writ_behaviour::{Detector, Mode, SettingsSpec};
use writ_client::ClientError;
use writ_issuer::BehaviourConfig;
use writ_testkit::*;

/// Calls learned before the detectors speak.
const LEARNING: u64 = 24;
/// Seconds between the scripted agent's calls: three calls in any minute.
const PACE: i64 = 20;

fn config(mode: Option<Mode>) -> BehaviourConfig {
    BehaviourConfig {
        approval_timeout_seconds: 60,
        revoke_on_drift: false,
        detectors: SettingsSpec {
            learning_calls: LEARNING,
            learning_seconds: 0,
            volume_floor: 200,
            min_tool_calls: 3,
            mode,
            // The test runs at whatever hour it runs; only record the hour.
            modes: [(Detector::UnusualHour, Mode::Observe)].into(),
            ..SettingsSpec::default()
        },
        ..BehaviourConfig::default()
    }
}

async fn world(mode: Option<Mode>) -> World {
    World::with(Options {
        behaviour: config(mode),
        ..Options::default()
    })
    .await
}

/// alice grants report-bot a mandate for reading files, dropping tables (the tool exists,
/// so scope alone would allow it) and reading customers.
async fn mandate(world: &World) -> (String, String) {
    let body = world
        .alice
        .post(
            "/v1/mandates",
            Some(&json!({
                "agent": "report-bot",
                "task": "Summarize the Q3 reports and the customers they name",
                "ttl_seconds": 3600,
                "grants": [
                    {"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                     "datatypes": ["internal"]},
                    {"type": "mcp_tool_call", "server": "files", "tool": "drop_table"},
                    {"type": "http_request", "server": "crm", "methods": ["GET"],
                     "path": "/customers/*"}
                ]
            })),
        )
        .await
        .unwrap();
    (
        body["mandate"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

/// A tool call described as the sidecar describes it: the arguments pinned exactly.
fn tool_detail(tool: &str, arguments: &Value) -> Value {
    let mut detail = json!({"type": "mcp_tool_call", "server": "files", "tool": tool,
                            "arguments": {"exact": arguments}});
    if tool == "read_file" {
        detail["datatypes"] = json!(["internal"]);
    }
    detail
}

/// A writ for one tool call; the issuer's status and answer.
async fn ask(world: &World, mandate: &str, tool: &str, arguments: &Value) -> (StatusCode, Value) {
    world
        .try_writ(mandate, "/mcp/files", tool_detail(tool, arguments))
        .await
}

/// One tool call, writ and all, which must pass; the gateway's answer.
async fn call(world: &World, mandate: &str, tool: &str, arguments: Value) -> String {
    let (status, body) = ask(world, mandate, tool, &arguments).await;
    assert_eq!(status, StatusCode::OK, "{tool} {arguments}: {body}");
    let writ = body["access_token"].as_str().unwrap();
    let (status, _, answer) = world.mcp(writ, tools_call(tool, arguments)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// A writ for reading customer `id`, then the request; the gateway's status and body, or
/// `None` when the answer was cut (before or after its head).
async fn customer(world: &World, mandate: &str, id: &str) -> Option<(StatusCode, String)> {
    let writ = customer_writ(world, mandate, id).await;
    fetch_customer(world, &writ, id).await
}

/// A writ for reading customer `id`.
async fn customer_writ(world: &World, mandate: &str, id: &str) -> String {
    world
        .writ(
            mandate,
            "/api/crm",
            json!({"type": "http_request", "server": "crm", "methods": ["GET"],
                   "path": format!("/customers/{id}")}),
        )
        .await
}

/// Reads customer `id` through the gateway with `writ`, as [`customer`] does.
async fn fetch_customer(world: &World, writ: &str, id: &str) -> Option<(StatusCode, String)> {
    let url = format!("{}/api/crm/customers/{id}", world.gateway_url);
    let response = world
        .http
        .get(&url)
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", world.proof("GET", &url, writ))
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.text().await.ok()?))
}

/// The scripted agent's task: read two reports, then look up a customer, a call every
/// [`PACE`] seconds.
async fn task(world: &World, mandate: &str, n: u32) {
    for path in ["/data/reports/q3.md", "/data/reports/q2.md"] {
        call(world, mandate, "read_file", json!({"path": path})).await;
        world.clock.advance(PACE);
    }
    let (status, body) = customer(world, mandate, &(n % 50 + 1).to_string())
        .await
        .expect("a normal answer was cut");
    assert_eq!(status, StatusCode::OK, "{body}");
    world.clock.advance(PACE);
}

/// Works until the baseline is learned, then some more: never stopped.
async fn train(world: &World, mandate: &str) {
    for n in 0..LEARNING.div_ceil(3) as u32 + 4 {
        task(world, mandate, n).await;
    }
    // The gateway reports each answer's size after it ends; wait for the last ones.
    wait_for(|| async {
        let baseline = world
            .admin
            .get("/v1/agents/report-bot/baseline")
            .await
            .unwrap();
        baseline["baseline"]["tools"]["crm GET /customers/{id}"]["responses"]
            .as_u64()
            .unwrap_or(0)
            >= 8
    })
    .await;
}

/// A bulk export, ten times larger than any answer before: the gateway cuts it, and the
/// issuer stops the mandate (in block mode).
async fn export_and_wait_for_the_hold(world: &World, mandate: &str) {
    let export = format!("9{}", "x".repeat(600));
    let answer = customer(world, mandate, &export).await;
    assert!(answer.is_none(), "the export was not cut: {answer:?}");
    wait_for(|| async {
        let (_, body) = ask(
            world,
            mandate,
            "read_file",
            &json!({"path": "/data/reports/q3.md"}),
        )
        .await;
        body["reason"] == "mandate_drifted"
    })
    .await;
}

/// The scripted agent reads a report, as it usually does before looking up a customer.
async fn read_report(world: &World, mandate: &str) {
    call(
        world,
        mandate,
        "read_file",
        json!({"path": "/data/reports/q2.md"}),
    )
    .await;
}

/// A step-up deployment whose trained agent asks to drop a table, a call held for alice:
/// the world, the mandate, the call's arguments and its approval.
async fn held_drop() -> (World, String, Value, String) {
    let world = world(Some(Mode::StepUp)).await;
    let (mandate, _) = mandate(&world).await;
    train(&world, &mandate).await;
    let drop = json!({"table": "scratch"});
    let (_, body) = ask(&world, &mandate, "drop_table", &drop).await;
    assert_eq!(body["reason"], "approval_pending", "{body}");
    let approval = body["approval"].as_str().unwrap().to_owned();
    (world, mandate, drop, approval)
}

async fn wait_for<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `writ ARGS` as the holder of `key`. The command dates its proofs by the system's clock,
/// so the deployment's clock is moved back to it meanwhile.
fn cli(world: &World, key: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let offset = world.clock.offset();
    world.clock.advance(-offset);
    let result = common::cli(world, key, args);
    world.clock.advance(offset);
    result
}

fn alice_key(world: &World) -> std::path::PathBuf {
    let path = world.dir.path().join("alice.key");
    if !path.exists() {
        writ_keystore::create(&path, world.alice.key()).unwrap();
    }
    path
}

fn admin_key(world: &World) -> std::path::PathBuf {
    world.dir.path().join("admin.key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_work_passes_and_each_drift_is_blocked_with_its_reason() {
    let world = world(Some(Mode::Block)).await;
    let (mandate, mandate_id) = mandate(&world).await;
    train(&world, &mandate).await;

    // `writ agent baseline` shows what was learned, to the owner.
    let shown = cli(
        &world,
        &alice_key(&world),
        &["agent", "baseline", "report-bot"],
    )
    .unwrap();
    assert!(shown.contains("enforcing"), "{shown}");
    assert!(shown.contains("files/read_file"), "{shown}");
    assert!(shown.contains("crm GET /customers/{id}"), "{shown}");
    assert!(
        shown.contains("files/read_file → crm GET /customers/{id}"),
        "{shown}"
    );

    // A sequence never seen: the scripted agent never looks up two customers in a row.
    let detail = json!({"type": "http_request", "server": "crm", "methods": ["GET"],
                        "path": "/customers/8"});
    let (status, body) = world.try_writ(&mandate, "/api/crm", detail).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "behaviour_blocked");
    let message = body["error_description"].as_str().unwrap();
    assert!(message.contains("(unusual_sequence: "), "{message}");

    // A new, destructive tool: blocked, with the pattern named.
    let (status, body) = ask(
        &world,
        &mandate,
        "drop_table",
        &json!({"table": "customers"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "behaviour_blocked");
    let message = body["error_description"].as_str().unwrap();
    assert!(message.contains("(destructive: "), "{message}");
    // The agent is told which detector spoke, not the patterns or numbers behind it.
    assert!(!message.contains("pattern `"), "{message}");

    // A tenfold burst. The baseline's busiest minute held 3 calls, and the burst cannot
    // raise that while it lasts: the call that finds more than three times that in the
    // last minute (and more than 10) is refused as a rate spike.
    let baseline = world
        .admin
        .get("/v1/agents/report-bot/baseline")
        .await
        .unwrap();
    let busiest = baseline["baseline"]["busiest_window"].as_u64().unwrap();
    assert_eq!(busiest, 3);
    world.clock.advance(120);
    let mut refused = None;
    for n in 1..=30 {
        let (status, body) = ask(
            &world,
            &mandate,
            "read_file",
            &json!({"path": "/data/reports/q3.md"}),
        )
        .await;
        if status != StatusCode::OK {
            refused = Some((n, body));
            break;
        }
    }
    let (n, body) = refused.expect("the burst was never stopped");
    assert_eq!(n, (3 * busiest).max(10) + 1, "refused at call {n}: {body}");
    assert_eq!(body["reason"], "behaviour_blocked");
    let message = body["error_description"].as_str().unwrap();
    assert!(message.contains("(rate_spike: "), "{message}");

    // A bulk export: the answer is ten times larger than any before. The gateway cuts it,
    // and the issuer stops the mandate.
    world.clock.advance(120);
    export_and_wait_for_the_hold(&world, &mandate).await;
    // Nor can the stopped mandate hand anything on.
    let helper = world.add_agent("helper-bot").await;
    let (status, body) = world
        .delegate_as(
            &world.agent,
            &mandate,
            "helper-bot",
            json!([tool_detail(
                "read_file",
                &json!({"path": "/data/reports/q3.md"})
            )]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "mandate_drifted");
    drop(helper);

    // The refusals and the response are in the log, and in the mandate's trace, with
    // their numbers.
    let trace = cli(
        &world,
        &admin_key(&world),
        &["trace", &mandate_id, "--log-key", &world.log_key],
    )
    .unwrap();
    assert!(trace.contains("behaviour destructive (block)"), "{trace}");
    assert!(
        trace.contains("behaviour unusual_sequence (block)"),
        "{trace}"
    );
    assert!(trace.contains("behaviour rate_spike (block)"), "{trace}");
    assert!(
        trace.contains(&format!("{n} calls in the last 60 s")),
        "{trace}"
    );
    assert!(
        trace.contains("behaviour response_volume (block)"),
        "{trace}"
    );
    assert!(trace.contains("[response_volume]"), "{trace}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_step_up_mode_the_owner_approves_or_denies_the_held_call() {
    let world = world(Some(Mode::StepUp)).await;
    let (mandate, _) = mandate(&world).await;
    train(&world, &mandate).await;
    let alice = alice_key(&world);

    // A sequence never seen: the scripted agent never looks up two customers in a row.
    // Held, and alice denies it.
    let detail = json!({"type": "http_request", "server": "crm", "methods": ["GET"],
                        "path": "/customers/8"});
    let (status, body) = world.try_writ(&mandate, "/api/crm", detail.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error_description"].as_str().unwrap();
    assert!(message.contains("(unusual_sequence: "), "{message}");
    let approval = body["approval"].as_str().unwrap().to_owned();
    let denied = cli(&world, &alice, &["approvals", "deny", &approval]).unwrap();
    assert!(denied.contains("denied"), "{denied}");
    let (status, body) = world.try_writ(&mandate, "/api/crm", detail).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "approval_denied");

    // A tenfold burst is held too; alice denies it.
    world.clock.advance(120);
    let burst = json!({"path": "/data/reports/q3.md"});
    let held = loop {
        let (status, body) = ask(&world, &mandate, "read_file", &burst).await;
        if status != StatusCode::OK {
            break body;
        }
    };
    assert_eq!(held["reason"], "approval_pending", "{held}");
    let message = held["error_description"].as_str().unwrap();
    assert!(message.contains("(rate_spike: "), "{message}");
    let approval = held["approval"].as_str().unwrap().to_owned();
    cli(&world, &alice, &["approvals", "deny", &approval]).unwrap();

    // A bulk export is cut at the gateway, and the mandate waits for alice; once she
    // approves, it goes on.
    world.clock.advance(120);
    let export = format!("9{}", "x".repeat(600));
    let answer = customer(&world, &mandate, &export).await;
    assert!(answer.is_none(), "the export was not cut: {answer:?}");
    let next = json!({"path": "/data/reports/q2.md"});
    let deadline = Instant::now() + Duration::from_secs(5);
    let hold = loop {
        let (_, body) = ask(&world, &mandate, "read_file", &next).await;
        // While the gateway's verdict is being recorded the mandate is already held, and
        // the answer names its approval once there is one.
        if body["reason"] == "approval_pending" && body["approval"].is_string() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the mandate was never held: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let message = hold["error_description"].as_str().unwrap();
    assert!(
        message.contains("is held after a gateway saw drift"),
        "{message}"
    );
    let approval = hold["approval"].as_str().unwrap().to_owned();
    let listed = cli(&world, &alice, &["approvals", "list"]).unwrap();
    assert!(listed.contains("(the whole mandate)"), "{listed}");
    cli(&world, &alice, &["approvals", "approve", &approval]).unwrap();
    let (status, body) = ask(&world, &mandate, "read_file", &next).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A new destructive tool is held for alice.
    let drop = json!({"table": "scratch"});
    let (status, body) = ask(&world, &mandate, "drop_table", &drop).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "authorization_pending");
    assert_eq!(body["reason"], "approval_pending");
    let approval = body["approval"].as_str().unwrap().to_owned();
    assert!(approval.starts_with("apr_"));
    // Asking again while it waits answers the same.
    let (_, again) = ask(&world, &mandate, "drop_table", &drop).await;
    assert_eq!(again["approval"], approval.as_str());

    let listed = cli(&world, &alice, &["approvals", "list"]).unwrap();
    assert!(listed.contains(&approval), "{listed}");
    assert!(listed.contains("files/drop_table"), "{listed}");
    // Only the owner answers: an administrator is told whose it is.
    let refused = cli(
        &world,
        &admin_key(&world),
        &["approvals", "approve", &approval],
    )
    .unwrap_err();
    assert!(refused.contains("owner_required"), "{refused}");

    let approved = cli(&world, &alice, &["approvals", "approve", &approval]).unwrap();
    assert!(approved.contains("approved"), "{approved}");
    // Two retries at once: one writ, however they interleave.
    let (first, second) = tokio::join!(
        ask(&world, &mandate, "drop_table", &drop),
        ask(&world, &mandate, "drop_table", &drop)
    );
    let granted: Vec<&Value> = [&first, &second]
        .into_iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(granted.len(), 1, "{first:?} {second:?}");
    // The other is a new drift, held again (the call is learned only once its writ is on
    // record); alice denies that one.
    let (_, loser) = [&first, &second]
        .into_iter()
        .find(|(status, _)| *status != StatusCode::OK)
        .unwrap();
    assert_eq!(loser["reason"], "approval_pending", "{loser}");
    let again = loser["approval"].as_str().unwrap();
    assert_ne!(again, approval);
    cli(&world, &alice, &["approvals", "deny", again]).unwrap();
    // The writ does its call, and the call is learned.
    let writ = granted[0]["access_token"].as_str().unwrap();
    let (status, _, answer) = world
        .mcp(writ, tools_call("drop_table", drop.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.contains("scratch"), "{answer}");
    let baseline = world
        .admin
        .get("/v1/agents/report-bot/baseline")
        .await
        .unwrap();
    assert_eq!(
        baseline["baseline"]["tools"]["files/drop_table"]["calls"],
        1
    );

    // Nothing is pending now; the history is there with `--all`.
    let listed = cli(&world, &alice, &["approvals", "list"]).unwrap();
    assert_eq!(listed.trim(), "no approvals");
    let all = cli(&world, &alice, &["approvals", "list", "--all", "--json"]).unwrap();
    let all: Value = serde_json::from_str(&all).unwrap();
    let states: Vec<&str> = all["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["denied", "denied", "approved", "used", "denied"],
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_expires() {
    let (world, mandate, drop, approval) = held_drop().await;
    world.clock.advance(61);
    let (status, body) = ask(&world, &mandate, "drop_table", &drop).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "approval_expired");
    // Too late to answer.
    let late = cli(
        &world,
        &alice_key(&world),
        &["approvals", "approve", &approval],
    )
    .unwrap_err();
    assert!(late.contains("approval_closed"), "{late}");
}

/// The reason code of a refusal by the issuer.
fn refusal(result: Result<Value, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, reason, .. }) => {
            (status.as_u16(), reason.unwrap_or_default())
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_answered_by_whoever_owns_the_agent_now() {
    let (world, mandate, drop, approval) = held_drop().await;
    let path = format!("/v1/approvals/{approval}");

    // report-bot moves to bob while the call waits.
    let bob = world.add_human("bob").await;
    // bob may own alice's agents only once entitled to their tools.
    world
        .entitle(
            "bob",
            &["files/read_file", "files/drop_table", "files/*", "crm/*"],
            &["internal"],
        )
        .await;
    world
        .admin
        .post(
            "/v1/agents/report-bot/transfer",
            Some(&json!({"owner": "bob"})),
        )
        .await
        .unwrap();
    // alice neither sees nor answers it any more; bob does both.
    let listed = world.alice.get("/v1/approvals").await.unwrap();
    assert_eq!(listed["approvals"], json!([]), "{listed}");
    let refused = world
        .alice
        .post(&path, Some(&json!({"decision": "approve"})))
        .await;
    assert_eq!(refusal(refused), (404, "unknown_approval".to_owned()));
    let listed = bob.get("/v1/approvals").await.unwrap();
    assert_eq!(listed["approvals"][0]["id"], approval.as_str(), "{listed}");
    assert_eq!(listed["approvals"][0]["owner"], "alice", "{listed}");
    let answered = bob
        .post(&path, Some(&json!({"decision": "approve"})))
        .await
        .unwrap();
    assert_eq!(answered["state"], "approved");
    assert_eq!(answered["decided_by"], "bob");
    // The transfer revoked alice's mandate, which bob never gave: the approval earns
    // nothing under it.
    let (status, body) = ask(&world, &mandate, "drop_table", &drop).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mandate_revoked")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_answers_at_once_one_wins_and_the_retry_and_the_log_agree() {
    let (world, mandate, drop, approval) = held_drop().await;
    let path = format!("/v1/approvals/{approval}");

    let (yes, no) = (json!({"decision": "approve"}), json!({"decision": "deny"}));
    let (approve, deny) = tokio::join!(
        world.alice.post(&path, Some(&yes)),
        world.alice.post(&path, Some(&no))
    );
    let (winner, loser) = match (approve, deny) {
        (Ok(answer), lost) | (lost, Ok(answer)) => (answer, lost),
        (Err(first), Err(second)) => panic!("no answer won: {first} / {second}"),
    };
    assert_eq!(refusal(loser), (409, "approval_closed".to_owned()));
    let approved = winner["state"] == "approved";
    assert!(approved || winner["state"] == "denied", "{winner}");

    // The retry gets what the winner said.
    let (status, body) = ask(&world, &mandate, "drop_table", &drop).await;
    if approved {
        assert_eq!(status, StatusCode::OK, "{body}");
    } else {
        assert_eq!(body["reason"], "approval_denied", "{body}");
    }
    // And the log holds that one answer.
    let store = world.issuer.store();
    let mut answers = Vec::new();
    for index in 0..store.tree_head().size {
        let leaf = store.leaf(index).await.unwrap().unwrap();
        let data: Value = serde_json::from_slice(&leaf.data).unwrap();
        if leaf.kind == "approval_decided" && data["event"]["approval"] == approval.as_str() {
            answers.push(data["event"]["decision"].clone());
        }
    }
    let said = if approved { "approve" } else { "deny" };
    assert_eq!(answers, [said], "answers recorded for {approval}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mandate_delegated_before_a_drift_is_stopped_with_its_parent() {
    let world = world(Some(Mode::Block)).await;
    let (mandate, mandate_id) = mandate(&world).await;
    train(&world, &mandate).await;
    let helper = world.add_agent("helper-bot").await;
    let read = tool_detail("read_file", &json!({"path": "/data/reports/q3.md"}));
    let (status, child) = world
        .delegate_as(
            &world.agent,
            &mandate,
            "helper-bot",
            json!([read.clone()]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{child}");
    let child = child["access_token"].as_str().unwrap().to_owned();
    let files = format!("{}/mcp/files", world.gateway_url);
    let (status, body) = world
        .try_writ_as(&helper, &child, &files, read.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The parent's bulk export, in its usual place after a report, is cut, and the
    // issuer stops the parent.
    world.clock.advance(120);
    read_report(&world, &mandate).await;
    world.clock.advance(PACE);
    export_and_wait_for_the_hold(&world, &mandate).await;
    // The child, delegated before, is stopped with it: the hold names the parent.
    let (status, body) = world.try_writ_as(&helper, &child, &files, read).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "mandate_drifted");
    let message = body["error_description"].as_str().unwrap();
    assert!(message.contains(&mandate_id), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_the_limits_it_knew_while_the_issuer_is_unreachable() {
    let world = world(Some(Mode::Block)).await;
    let (mandate, _) = mandate(&world).await;
    train(&world, &mandate).await;
    // Writs for a normal read and, after it, a bulk export, both earned before the issuer
    // goes away.
    let read = json!({"path": "/data/reports/q2.md"});
    let (status, body) = ask(&world, &mandate, "read_file", &read).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read_writ = body["access_token"].as_str().unwrap().to_owned();
    world.clock.advance(PACE);
    let export = format!("9{}", "x".repeat(600));
    let export_writ = customer_writ(&world, &mandate, &export).await;

    world
        .issuer_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // The read goes through; the gateway's background read of the agent's limits fails.
    let (status, _, answer) = world.mcp(&read_writ, tools_call("read_file", read)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let limits = format!("/v1/behaviour/limits/{}", world.agent_jkt);
    wait_for(|| async { world.issuer_refused.lock().unwrap().contains(&limits) }).await;
    // Give the refresh a moment to store what it concluded.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The export is still cut by the limits the gateway knew.
    let answer = fetch_customer(&world, &export_writ, &export).await;
    world
        .issuer_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(answer.is_none(), "the export was not cut: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_modes_of_its_own_is_judged_by_them() {
    let mut config = config(Some(Mode::Block));
    config.agents.insert(
        "report-bot".to_owned(),
        writ_issuer::AgentModes {
            mode: Some(Mode::StepUp),
            modes: [
                (Detector::UnusualSequence, Mode::Observe),
                (Detector::UnusualHour, Mode::Observe),
            ]
            .into(),
        },
    );
    let world = World::with(Options {
        behaviour: config,
        ..Options::default()
    })
    .await;
    let (mandate, _) = mandate(&world).await;
    train(&world, &mandate).await;

    // A sequence never seen is only recorded for report-bot, where others are blocked.
    let detail = json!({"type": "http_request", "server": "crm", "methods": ["GET"],
                        "path": "/customers/8"});
    let (status, body) = world.try_writ(&mandate, "/api/crm", detail).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A destructive call waits for alice, where others are blocked.
    world.clock.advance(PACE);
    read_report(&world, &mandate).await;
    let (_, body) = ask(&world, &mandate, "drop_table", &json!({"table": "t"})).await;
    assert_eq!(body["reason"], "approval_pending", "{body}");
    // What the owner and the gateway are shown says the same.
    let baseline = world
        .admin
        .get("/v1/agents/report-bot/baseline")
        .await
        .unwrap();
    assert_eq!(baseline["modes"]["destructive"], "step_up", "{baseline}");
    assert_eq!(baseline["modes"]["unusual_sequence"], "observe");
    let limits = world
        .admin
        .get(&format!("/v1/behaviour/limits/{}", world.agent_jkt))
        .await
        .unwrap();
    assert_eq!(limits["mode"], "step_up", "{limits}");
}

#[test]
fn the_readme_behaviour_settings_are_valid() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Behaviour")
        .nth(1)
        .expect("README has a behaviour section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a TOML example");
    let config: BehaviourConfig = toml::from_str(example).unwrap();
    assert!(config.revoke_on_drift);
    let settings = writ_behaviour::Settings::new(config.detectors).unwrap();
    assert_eq!(settings.mode(Detector::Destructive), Mode::Block);
    assert_eq!(settings.mode(Detector::NewTool), Mode::StepUp);
    assert_eq!(settings.mode(Detector::UnusualHour), Mode::Observe);
    let own = &config.agents["payments-bot"];
    assert_eq!(own.mode, Some(Mode::Block));
    assert_eq!(own.modes[&Detector::UnusualHour], Mode::StepUp);
    // Unknown settings are refused, not ignored.
    let typo = toml::from_str::<BehaviourConfig>("revoke_on_drfit = true");
    assert!(typo.is_err());
}
