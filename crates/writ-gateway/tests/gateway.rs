//! The gateway in front of a real rmcp MCP server and a plain HTTP API, with a real issuer:
//! allowed calls pass with the injected credential; every deny reason is refused with its
//! code; revocation lands within a second; decisions survive an issuer outage.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use writ_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_mcp_call_reaches_the_server_with_the_credential_the_agent_never_sees() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;

    let (status, headers, body) = world.read_file(&mandate, "/data/reports/q3.md").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Revenue grew 12%"), "{body}");
    assert!(headers.contains_key(writ_gateway::REQUEST_ID_HEADER));

    // The call shows in the route's metrics.
    let metrics = world
        .http
        .get(format!("{}/metrics", world.gateway_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "writ_gateway_check_duration_seconds_count{route=\"files\"}",
        "writ_gateway_upstream_duration_seconds_count{route=\"files\"}",
        "writ_gateway_requests_total{route=\"files\",status=\"200\"}",
    ] {
        assert!(metrics.contains(series), "no {series} in:\n{metrics}");
    }

    // The server saw the gateway's credential and none of the agent's.
    let seen = world
        .upstream_headers
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        seen.get("authorization").unwrap(),
        &format!("Bearer {MCP_SECRET}")
    );
    assert!(seen.get("dpop").is_none(), "the proof went upstream");
    // The agent's answer carries no trace of it.
    assert!(!body.contains(MCP_SECRET));
    for (name, value) in &headers {
        assert!(
            !value.to_str().unwrap_or("").contains(MCP_SECRET),
            "{name} leaks the credential"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_only_what_the_mandate_grants() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let (status, _, body) = world
        .mcp_method(
            &mandate,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        tool_names(&body),
        ["read_file"],
        "drop_table is not granted: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_http_call_passes_with_basic_credentials_and_streams_back() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let detail = json!({
        "type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42",
        "query": {"exact": {"fields": "name"}}
    });
    let writ = world.writ(&mandate, "/api/crm", detail).await;
    let url = format!("{}/api/crm/customers/42", world.gateway_url);
    let proof = world.proof("GET", &url, &writ);
    let response = world
        .http
        .get(format!("{url}?fields=name"))
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", proof)
        .header("x-http-method-override", "DELETE")
        .header("x-original-url", "/admin")
        .header("x-rewrite-url", "/admin")
        .header("x-forwarded-for", "10.9.8.7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], "42");
    let seen = world
        .upstream_headers
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    let expected = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(HTTP_SECRET)
        )
    };
    assert_eq!(seen.get("authorization").unwrap(), &expected);
    // The method is the one checked, and the agent cannot claim another client address.
    assert!(seen.get("x-http-method-override").is_none());
    assert!(seen.get("x-original-url").is_none());
    assert!(seen.get("x-rewrite-url").is_none());
    assert!(seen.get("x-forwarded-for").is_none());

    // An event stream passes through as it is.
    let detail =
        json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/stream"});
    let writ = world.writ(&mandate, "/api/crm", detail).await;
    let url = format!("{}/api/crm/stream", world.gateway_url);
    let proof = world.proof("GET", &url, &writ);
    let (status, headers, body) = world
        .send(
            Method::GET,
            "/api/crm/stream",
            Some(&writ),
            Some(&proof),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(body, "data: one\n\ndata: two\n\n");

    // The path is checked too: another customer path is outside the writ.
    let detail = json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42"});
    let writ = world.writ(&mandate, "/api/crm", detail).await;
    let url = format!("{}/api/crm/customers/43", world.gateway_url);
    let proof = world.proof("GET", &url, &writ);
    let (status, _, body) = world
        .send(
            Method::GET,
            "/api/crm/customers/43",
            Some(&writ),
            Some(&proof),
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(reason(&body), "path_mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_bounds_are_enforced() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;

    // Expired: the writ lives 30 s, the skew allowed is 5 s.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/a"))
        .await;
    world.clock.advance(40);
    let (status, headers, body) = world
        .mcp(
            &writ,
            tools_call("read_file", json!({"path": "/data/reports/a"})),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(reason(&body), "token_expired");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    world.clock.advance(-40);

    // Not yet valid: issued by a clock 100 s ahead.
    world.clock.advance(100);
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/b"))
        .await;
    world.clock.advance(-100);
    let (status, _, body) = world
        .mcp(
            &writ,
            tools_call("read_file", json!({"path": "/data/reports/b"})),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(reason(&body), "token_not_yet_valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deny_reason_is_refused_with_its_code() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let files = format!("{}/mcp/files", world.gateway_url);
    let call = |path: &str| tools_call("read_file", json!({"path": path}));

    // No writ at all: a bare challenge.
    let (status, headers, body) = world
        .send(
            Method::POST,
            "/mcp/files",
            None,
            None,
            Some(call("/data/reports/a").to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(reason(&body), "missing_writ");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );

    // Wrong audience: a writ for the CRM route used on the files route.
    let detail = json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/1"});
    let writ = world.writ(&mandate, "/api/crm", detail).await;
    let (status, _, body) = world.mcp(&writ, call("/data/reports/a")).await;
    assert_eq!(
        (status.as_u16(), reason(&body).as_str()),
        (401, "token_wrong_audience")
    );

    // Replayed writ: the same writ with a fresh proof.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/a"))
        .await;
    let (status, _, body) = world.mcp(&writ, call("/data/reports/a")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = world.mcp(&writ, call("/data/reports/a")).await;
    assert_eq!(
        (status.as_u16(), reason(&body).as_str()),
        (401, "writ_replayed")
    );

    // Replayed proof: the same request twice.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/b"))
        .await;
    let proof = world.proof("POST", &files, &writ);
    let body = call("/data/reports/b").to_string().into_bytes();
    let (status, _, text) = world.post_mcp(&writ, &proof, body.clone()).await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = world.post_mcp(&writ, &proof, body).await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (401, "dpop_replayed")
    );

    // A proof for another URL, or another method.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/c"))
        .await;
    let body = call("/data/reports/c").to_string().into_bytes();
    let elsewhere = world.proof("POST", &format!("{}/api/crm", world.gateway_url), &writ);
    let (status, _, text) = world.post_mcp(&writ, &elsewhere, body.clone()).await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (401, "dpop_uri_mismatch")
    );
    let other_method = world.proof("PUT", &files, &writ);
    let (status, _, text) = world.post_mcp(&writ, &other_method, body).await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (401, "dpop_method_mismatch")
    );

    // The wrong tool, and an argument outside its constraint.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/d"))
        .await;
    let (status, _, text) = world
        .mcp(&writ, tools_call("drop_table", json!({"table": "users"})))
        .await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (403, "tool_mismatch")
    );
    let denied: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        denied["id"], 7,
        "the JSON-RPC error answers the request: {text}"
    );
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("denied: ")
    );
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/e"))
        .await;
    let (status, _, text) = world.mcp(&writ, call("/etc/passwd")).await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (403, "argument_outside_constraint")
    );

    // A tampered writ: one character of the claims changed.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/f"))
        .await;
    let mut parts: Vec<String> = writ.split('.').map(str::to_owned).collect();
    let flipped = if parts[1].as_bytes()[10] == b'A' {
        "B"
    } else {
        "A"
    };
    parts[1].replace_range(10..11, flipped);
    let tampered = parts.join(".");
    let (status, _, text) = world.mcp(&tampered, call("/data/reports/f")).await;
    assert_eq!(status, 401, "{text}");
    assert!(
        matches!(
            reason(&text).as_str(),
            "token_bad_signature" | "token_malformed"
        ),
        "{text}"
    );

    // `alg: none`.
    use base64::Engine as _;
    let b64 =
        |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(writ.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "writ+jwt", "kid": kid_of(&writ)})),
        b64(&claims)
    );
    let (status, _, text) = world.mcp(&unsigned, call("/data/reports/f")).await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (401, "token_bad_algorithm")
    );

    // An unknown `kid`: signed by a key the issuer never published.
    let rogue = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    let forged = rogue
        .sign_compact(
            "writ+jwt",
            Some("rogue-1"),
            None,
            claims.to_string().as_bytes(),
        )
        .unwrap();
    let (status, _, text) = world.mcp(&forged, call("/data/reports/f")).await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (401, "token_unknown_key")
    );

    // An MCP route is one endpoint: nothing below it is reachable.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/h"))
        .await;
    let below = format!("{files}/admin");
    let proof = world.proof("POST", &below, &writ);
    let (status, _, text) = world
        .send(
            Method::POST,
            "/mcp/files/admin",
            Some(&writ),
            Some(&proof),
            Some(call("/data/reports/h").to_string().into_bytes()),
        )
        .await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (404, "unknown_route")
    );

    // Batches are refused with a clear error.
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/g"))
        .await;
    let (status, _, text) = world.mcp(&writ, json!([call("/data/reports/g")])).await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (400, "jsonrpc_batch_refused")
    );

    // A bearer token is not a writ with its proof.
    let response = world
        .http
        .post(&files)
        .header("authorization", format!("Bearer {writ}"))
        .header("content-type", "application/json")
        .body(call("/data/reports/g").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(reason(&response.text().await.unwrap()), "dpop_required");
}

fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_before_anything_else() {
    let world = World::with(Options {
        max_body_bytes: 1024,
        ..Options::default()
    })
    .await;
    let (mandate, _) = world.grant().await;
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/a"))
        .await;
    let big = "x".repeat(4096);
    let (status, _, text) = world
        .mcp(&writ, tools_call("read_file", json!({"path": big})))
        .await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (413, "body_too_large")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_agent_or_a_mandate_stops_calls_within_a_second() {
    let world = World::new().await;
    for kind in ["mandate", "agent"] {
        let (mandate, id) = world.grant().await;
        // Writs obtained before the revocation...
        let mut writs = Vec::new();
        for n in 0..20 {
            let path = format!("/data/reports/{kind}-{n}");
            writs.push((
                world
                    .writ(&mandate, "/mcp/files", read_file_detail(&path))
                    .await,
                path,
            ));
        }
        let subject = if kind == "agent" {
            world.agent_jkt.clone()
        } else {
            id
        };
        let revoked = Instant::now();
        world.revoke(kind, &subject).await;
        // ...are refused at the gateway within a second.
        let mut refused = None;
        for (writ, path) in &writs {
            let (status, _, text) = world
                .mcp(writ, tools_call("read_file", json!({"path": path})))
                .await;
            if status == 401 {
                refused = Some((revoked.elapsed(), reason(&text)));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (after, why) = refused.unwrap_or_else(|| panic!("{kind} revocation never took effect"));
        assert_eq!(why, format!("{kind}_revoked"));
        assert!(
            after < Duration::from_secs(1),
            "{kind} revocation took {after:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_feed_or_missing_keys_fail_closed() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let writ = world
        .writ(&mandate, "/mcp/files", read_file_detail("/data/reports/a"))
        .await;
    world
        .issuer_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // The feed answers at least every second while the issuer is up; the limit is 3 s.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let (status, _, text) = world
        .mcp(
            &writ,
            tools_call("read_file", json!({"path": "/data/reports/a"})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), reason(&text).as_str()),
        (503, "revocation_feed_stale")
    );
    let health = world
        .http
        .get(format!("{}/healthz", world.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);

    // Back up: the same gateway decides again, without a restart.
    world
        .issuer_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    world.wait_ready().await;
    let (status, _, text) = world
        .mcp(
            &writ,
            tools_call("read_file", json!({"path": "/data/reports/a"})),
        )
        .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_made_during_an_issuer_outage_are_spooled_and_drain() {
    let world = World::with(Options {
        max_feed_staleness_secs: 60,
        ..Options::default()
    })
    .await;
    let (mandate, _) = world.grant().await;
    let mut writs = Vec::new();
    for n in 0..3 {
        let path = format!("/data/reports/{n}");
        writs.push((
            world
                .writ(&mandate, "/mcp/files", read_file_detail(&path))
                .await,
            path,
        ));
    }
    world
        .issuer_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut request_ids = Vec::new();
    for (writ, path) in &writs {
        let (status, headers, text) = world
            .mcp(writ, tools_call("read_file", json!({"path": path})))
            .await;
        assert_eq!(status, 200, "{text}");
        request_ids.push(
            headers[writ_gateway::REQUEST_ID_HEADER]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A denial during the outage is kept as well.
    let (status, headers, _) = world
        .mcp(
            &writs[0].0,
            tools_call("read_file", json!({"path": "/data/reports/0"})),
        )
        .await;
    assert_eq!(status, 401);
    request_ids.push(
        headers[writ_gateway::REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned(),
    );

    // On disk while the issuer is away.
    let spool = world
        .dir
        .path()
        .join("spool")
        .join(writ_gateway::decisions::SPOOL_FILE);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&spool).unwrap_or_default();
        if request_ids.iter().all(|id| text.contains(id.as_str())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the decisions never reached the spool: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(spool.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the spool directory is open to others");
    }

    // Back up: every decision reaches the log, and the spool empties.
    world
        .issuer_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    world.gateway.drain_spool();
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &request_ids {
        loop {
            let found = world
                .issuer
                .store()
                .lookup(&format!("request:{id}"))
                .await
                .unwrap();
            if found.len() == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "decision {id} never reached the log"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&spool).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the spool was never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_publishes_its_protected_resource_metadata() {
    let world = World::new().await;
    let metadata: Value = world
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/files",
            world.gateway_url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["resource"],
        format!("{}/mcp/files", world.gateway_url)
    );
    assert_eq!(metadata["authorization_servers"][0], world.issuer_url);
    assert_eq!(metadata["dpop_bound_access_tokens_required"], true);
}
