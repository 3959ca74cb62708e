//! Regressions for parser differentials: the gateway forwards the bytes it checked, so it
//! refuses every request that the server behind it could read as another request (JSON
//! that parsers read differently, MCP headers that disagree with the body, paths that
//! servers resolve differently, ambiguous query strings).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use serde_json::{Value, json};
use writ_testkit::*;

/// The reason code in a refusal's body, or `""` when it has none (an answer).
fn reason_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|body| {
            body.pointer("/reason")
                .or_else(|| body.pointer("/error/data/reason"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Posts `body` to the files route with a fresh writ for `read_file` of `/data/reports/a`
/// and the given extra headers; returns (status, reason).
async fn post_read_file(
    world: &World,
    mandate: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, String) {
    let writ = world
        .writ(mandate, "/mcp/files", read_file_detail("/data/reports/a"))
        .await;
    let url = format!("{}/mcp/files", world.gateway_url);
    let mut request = world
        .http
        .post(&url)
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", world.proof("POST", &url, &writ))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_vec());
    let mut has_type = false;
    for (name, value) in headers {
        has_type |= name.eq_ignore_ascii_case("content-type");
        request = request.header(*name, *value);
    }
    if !has_type {
        request = request.header("content-type", "application/json");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, reason_of(&text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_bodies_that_parsers_read_differently_are_refused() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let reads = |tail: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":"/data/reports/a"}}{tail}}}}}"#
        )
    };
    let cases: Vec<(String, &str)> = vec![
        // A server keeping the first member would run `drop_table`.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_table","name":"read_file","arguments":{"path":"/data/reports/a"}}}"#.into(),
            "duplicate_member",
        ),
        // ... or read `/etc/passwd`.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd","path":"/data/reports/a"}}}"#.into(),
            "duplicate_member",
        ),
        // ... or take a `tools/list` message for a tool call.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/call","params":{"name":"read_file","arguments":{"path":"/data/reports/a"}}}"#.into(),
            "duplicate_member",
        ),
        // A server matching member names without regard to case (Go's encoding/json) would
        // read a tool call under a `tools/list` writ, or the second arguments.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"tools/list","params":{"name":"read_file","arguments":{"path":"/data/reports/a"}}}"#.into(),
            "duplicate_member",
        ),
        (reads(r#","Arguments":{"path":"/etc/shadow"}"#), "duplicate_member"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/data/reports/a"}},"extra":1}"#.into(),
            "jsonrpc_malformed",
        ),
        (format!("\u{feff}{}", reads("")), "byte_order_mark"),
        (reads(r#","note":"\ud800""#), "lone_surrogate"),
        (reads(r#","n":9007199254740993"#), "number_imprecise"),
        (reads(r#","n":1.00000000000000000001"#), "number_imprecise"),
        (
            r#"{"jsonrpc":"2.0","id":{"x":1},"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/data/reports/a"}}}"#.into(),
            "jsonrpc_malformed",
        ),
    ];
    for (body, expected) in cases {
        let (status, reason) = post_read_file(&world, &mandate, body.as_bytes(), &[]).await;
        assert_eq!((status, reason.as_str()), (400, expected), "{body}");
    }
    // Not UTF-8 inside a string.
    let mut invalid = reads("").into_bytes();
    let at = invalid.iter().position(|&b| b == b'/').unwrap();
    invalid[at] = 0xff;
    let (status, reason) = post_read_file(&world, &mandate, &invalid, &[]).await;
    assert_eq!((status, reason.as_str()), (400, "jsonrpc_malformed"));

    // The same call, read one way, passes.
    let (status, reason) = post_read_file(&world, &mandate, reads("").as_bytes(), &[]).await;
    assert_eq!(status, 200, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_headers_must_agree_with_the_body() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let body = tools_call("read_file", json!({"path": "/data/reports/a"})).to_string();
    for headers in [
        vec![("mcp-method", "tools/list")],
        vec![("mcp-name", "drop_table")],
        vec![
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZHJvcF90YWJsZQ==?="),
        ],
        vec![("mcp-name", "=?base64?not base64?=")],
    ] {
        let (status, reason) = post_read_file(&world, &mandate, body.as_bytes(), &headers).await;
        assert_eq!(
            (status, reason.as_str()),
            (400, "mcp_header_mismatch"),
            "{headers:?}"
        );
    }
    // Headers that mirror the body pass, in either form.
    for headers in [
        vec![("mcp-method", "tools/call"), ("mcp-name", "read_file")],
        vec![("mcp-name", "=?base64?cmVhZF9maWxl?=")],
    ] {
        let (status, reason) = post_read_file(&world, &mandate, body.as_bytes(), &headers).await;
        assert_eq!(status, 200, "{headers:?}: {reason}");
    }
    // Mirrors of arguments cannot be checked without the tool's schema, so they stop here.
    let (status, _) = post_read_file(
        &world,
        &mandate,
        body.as_bytes(),
        &[("mcp-param-path", "/etc/passwd")],
    )
    .await;
    assert_eq!(status, 200);
    let seen = world
        .upstream_headers
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert!(seen.get("mcp-param-path").is_none(), "{seen:?}");

    // A body the server might decode, or read as something other than JSON, is refused.
    for headers in [
        vec![("content-type", "text/plain")],
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![("content-type", "application/json; charset=utf-16")],
        vec![("content-encoding", "gzip")],
    ] {
        let (status, reason) = post_read_file(&world, &mandate, body.as_bytes(), &headers).await;
        assert_eq!(
            (status, reason.as_str()),
            (415, "content_type_unsupported"),
            "{headers:?}"
        );
    }
}

/// A GET on the CRM route under a writ for `/customers/*`, sent byte for byte; returns
/// (status, reason).
async fn get_customers(world: &World, mandate: &str, target: &str) -> (u16, String) {
    let detail = json!({
        "type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/*",
        "query": {"object": {"optional": {"fields": {"glob": "*"}}}}
    });
    let writ = world.writ(mandate, "/api/crm", detail).await;
    let path = target.split('?').next().unwrap();
    let proof = world.proof(
        "GET",
        &format!("{}/api/crm{path}", world.gateway_url),
        &writ,
    );
    let authorization = format!("DPoP {writ}");
    raw_get(
        &world.gateway_url,
        &format!("/api/crm{target}"),
        &[("authorization", &authorization), ("dpop", &proof)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_servers_resolve_differently_are_refused_at_issuer_and_gateway() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    // The gateway, under a writ whose pattern the path matches as text.
    for (target, expected) in [
        ("/customers/..;/admin", "path_dot_segment"),
        ("/customers/..;x=1/admin", "path_dot_segment"),
        ("/customers/%252e%252e/admin", "path_encoded_delimiter"),
        ("/customers/%2E%2E/admin", "path_encoded_unreserved"),
        ("/customers/%2e%2e/admin", "path_malformed_escape"),
        ("/customers/%2F..%2Fadmin", "path_encoded_delimiter"),
        ("/customers/x%5C..%5Cadmin", "path_encoded_delimiter"),
        ("/customers//admin", "path_empty_segment"),
        ("/customers/42;jsessionid=x", "path_parameters"),
        ("/customers/", "path_mismatch"),
        ("/customers/...", "path_dot_segment"),
        (
            "/customers/%EF%BC%8E%EF%BC%8E/admin",
            "path_confusable_character",
        ),
        ("/customers/42?_method=DELETE", "method_override"),
        ("/customers/42?Fields=a&fields=b", "query_repeated_name"),
        ("/customers/42?fields%5B%5D=a", "query_ambiguous_name"),
        ("/customers/42?admin=true", "query_outside_constraint"),
        ("/customers/42?fields=a&fields=b", "query_repeated_name"),
        ("/customers/42?fields=a+b", "query_ambiguous_separator"),
        (
            "/customers/42?fields=a;admin=1",
            "query_ambiguous_separator",
        ),
    ] {
        let (status, reason) = get_customers(&world, &mandate, target).await;
        assert!(
            (status == 400 || status == 403) && reason == expected,
            "{target}: {status} {reason}"
        );
    }
    let (status, reason) = get_customers(&world, &mandate, "/customers/42?fields=name").await;
    assert_eq!(status, 200, "{reason}");

    // The issuer refuses to issue a writ for such a path at all.
    for path in [
        "/customers/../admin",
        "/customers/..;/admin",
        "/customers/%252e%252e/admin",
        "/customers/%2E%2E/admin",
    ] {
        let detail =
            json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": path});
        let (status, body) = world.try_writ(&mandate, "/api/crm", detail).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "invalid_authorization_details", "{path}");
    }
    // Nor for a query the mandate does not grant.
    let detail = json!({
        "type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42",
        "query": {"exact": {"admin": "true"}}
    });
    let (status, body) = world.try_writ(&mandate, "/api/crm", detail).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_on_http_routes_are_read_one_way_too() {
    let world = World::new().await;
    let (mandate, _) = world.grant().await;
    let detail = json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42"});
    let writ = world.writ(&mandate, "/api/crm", detail).await;
    let url = format!("{}/api/crm/customers/42", world.gateway_url);
    let response = world
        .http
        .get(&url)
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", world.proof("GET", &url, &writ))
        .header("content-type", "application/json")
        .body(r#"{"role":"admin","role":"viewer"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        reason_of(&response.text().await.unwrap()),
        "duplicate_member"
    );

    // What frameworks read from a body to change the method is refused, whatever its type.
    for (content_type, body) in [
        ("application/x-www-form-urlencoded", "name=x&_method=DELETE"),
        ("application/x-www-form-urlencoded", "%5Fmethod=DELETE"),
        ("text/plain", r#"{"_METHOD":"DELETE"}"#),
        (
            "multipart/form-data; boundary=b",
            "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n",
        ),
    ] {
        let writ = world
            .writ(
                &mandate,
                "/api/crm",
                json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42"}),
            )
            .await;
        let response = world
            .http
            .get(&url)
            .header("authorization", format!("DPoP {writ}"))
            .header("dpop", world.proof("GET", &url, &writ))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            reason_of(&response.text().await.unwrap()),
            "method_override",
            "{body}"
        );
    }

    // A compressed body would hide its `_method` from the check: refused.
    let writ = world
        .writ(
            &mandate,
            "/api/crm",
            json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42"}),
        )
        .await;
    let response = world
        .http
        .get(&url)
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", world.proof("GET", &url, &writ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(
        reason_of(&response.text().await.unwrap()),
        "content_type_unsupported"
    );

    // Header names with `_` are read as `-` by CGI and WSGI servers: they stop here.
    let writ = world
        .writ(
            &mandate,
            "/api/crm",
            json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42"}),
        )
        .await;
    let response = world
        .http
        .get(&url)
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", world.proof("GET", &url, &writ))
        .header("x_original_url", "/admin")
        .header("destination", "/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = world
        .upstream_headers
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert!(seen.get("x_original_url").is_none(), "{seen:?}");
    assert!(seen.get("destination").is_none(), "{seen:?}");
}
