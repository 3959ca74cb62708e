//! Revocation to enforcement with 1, 5 and 10 gateways: the benchmark in bench/README.md.
//!
//! Ignored by default; run with
//! `cargo test --release -p writ-gateway --test revocation_enforcement -- --ignored --nocapture`.
//! Everything listens on 127.0.0.1 and stops by itself.
//!
//! Each round grants a mandate, has a writ issued under it for every gateway and uses it
//! once, then revokes the mandate with `POST /v1/revocations?wait=10`. Enforcement is the
//! answer: it comes once every live gateway has acknowledged the revocation's feed position.
//! Right after the answer, every gateway is asked again with its writ and must refuse it
//! as revoked (`mandate_revoked`); the benchmark fails otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use writ_gateway::{Config, Gateway};
use writ_jose::{Algorithm, SigningKey};
use writ_testkit::World;
use writ_token::Clock;

const ROUNDS: usize = 100;
const DETAIL_PATH: &str = "/customers/42";

/// Starts gateway `index` with its own key and audience, routed to the world's HTTP API,
/// and registers it. Returns its public URL.
async fn start_gateway(world: &World, index: usize) -> (Arc<Gateway>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    world
        .admin
        .post(
            "/v1/gateways",
            Some(&json!({"name": format!("bench-{index}"), "jwk": key.public_key().to_jwk(), "audience": url})),
        )
        .await
        .unwrap();
    let dir = world.dir.path();
    let secret = dir.join(format!("bench-{index}.secret"));
    std::fs::write(&secret, "bench:secret\n").unwrap();
    let config = Config::parse(&format!(
        r#"
listen = "127.0.0.1:0"
public_url = "{url}"
issuer = "{issuer}"
key_file = "{key_file}"
spool_dir = "{spool}"

[limits]
max_feed_staleness_secs = 30

[[routes]]
name = "crm"
path = "/api/crm"
kind = "http"
upstream = "{api}/v2"
credential = {{ type = "basic", file = "{secret}" }}
"#,
        issuer = world.issuer_url,
        key_file = dir.join(format!("bench-{index}.key")).display(),
        spool = dir.join(format!("bench-spool-{index}")).display(),
        api = world.api_url,
        secret = secret.display(),
    ))
    .unwrap();
    let gateway = Gateway::start(config, key, Arc::clone(&world.clock) as Arc<dyn Clock>)
        .await
        .unwrap();
    let served = Arc::clone(&gateway);
    tokio::spawn(
        async move { writ_gateway::serve(listener, served, std::future::pending()).await },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway.ready() {
        assert!(
            Instant::now() < deadline,
            "gateway {index} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (gateway, url)
}

/// Calls `GET /api/crm/customers/42` at `url` with `writ` and a fresh proof: the status
/// and the refusal's reason code, if any.
async fn call(world: &World, url: &str, writ: &str) -> (u16, String) {
    let target = format!("{url}/api/crm{DETAIL_PATH}");
    let proof = world.proof("GET", &target, writ);
    let response = world
        .http
        .get(&target)
        .header("authorization", format!("DPoP {writ}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    if status == 200 {
        return (status, String::new());
    }
    (status, writ_testkit::reason(&body))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(gateways: usize) {
    let world = World::new().await;
    // The world's own gateway (`gw`) follows the feed too; it counts as one.
    let mut urls = vec![world.gateway_url.clone()];
    let mut running = Vec::new();
    for index in 1..gateways {
        let (gateway, url) = start_gateway(&world, index).await;
        running.push(gateway);
        urls.push(url);
    }
    let detail =
        json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": DETAIL_PATH});
    let mut latencies = Vec::with_capacity(ROUNDS);
    // The part of each answer spent waiting for the gateways' acknowledgments, after the
    // commit.
    let mut waited = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (mandate, id) = world.grant().await;
        let mut writs = Vec::new();
        for url in &urls {
            let resource = format!("{url}/api/crm");
            let (status, body) = world
                .try_writ_for(&mandate, &resource, detail.clone())
                .await;
            assert_eq!(status, 200, "{body}");
            let writ = body["access_token"].as_str().unwrap().to_owned();
            // Used once, as an agent would.
            assert_eq!(call(&world, url, &writ).await.0, 200);
            writs.push(writ);
        }
        let started = Instant::now();
        let answer = world
            .admin
            .post(
                "/v1/revocations?wait=10",
                Some(&json!({"kind": "mandate", "subject": id, "reason": "bench"})),
            )
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(
            answer["enforcement"]["status"], "enforced",
            "round {round}: {answer}"
        );
        assert_eq!(
            answer["enforcement"]["acknowledged"]
                .as_array()
                .unwrap()
                .len(),
            gateways,
            "{answer}"
        );
        // Right after the answer, every gateway refuses the writ as revoked.
        for (url, writ) in urls.iter().zip(&writs) {
            let (status, reason) = call(&world, url, writ).await;
            assert_eq!(
                (status, reason.as_str()),
                (401, "mandate_revoked"),
                "round {round}: {url} after the answer"
            );
        }
        latencies.push(elapsed.as_secs_f64() * 1000.0);
        waited.push(answer["enforcement"]["waited_ms"].as_f64().unwrap());
    }
    latencies.sort_by(f64::total_cmp);
    waited.sort_by(f64::total_cmp);
    println!(
        "gateways={gateways} revocations={ROUNDS} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} waiting_p50_ms={} waiting_p99_ms={} (every gateway refused every revoked writ right after the answer)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default(),
        percentile(&waited, 50.0),
        percentile(&waited, 99.0),
    );
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it with --ignored --nocapture (see bench/README.md)"]
async fn revocation_to_enforcement_at_1_5_and_10_gateways() {
    for gateways in [1, 5, 10] {
        run(gateways).await;
    }
}
