//! Durable writ issuance: throughput and latency of the token endpoint.
//!
//! Runs the real issuer (SQLite in a temporary directory, `synchronous=FULL`, Cedar
//! policy, group commit) and drives its HTTP router in-process, so the figures include
//! form parsing, DPoP and mandate verification, revocation and inventory reads, policy,
//! the durable audit append and signing, but not TCP. DPoP proofs are made before the
//! clock starts. Run with:
//!
//! ```sh
//! cargo bench -p writ-issuer --bench issuance
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "benchmark"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use tower::ServiceExt as _;
use writ_issuer::{Issuer, Settings};
use writ_jose::{Algorithm, SigningKey};
use writ_token::ProofClaims;

const ISSUER: &str = "https://issuer.bench";
const GATEWAY: &str = "https://gateway.bench/mcp/files";

struct Bench {
    router: axum::Router,
    issuer: Arc<Issuer>,
    agent: SigningKey,
    form: String,
    _dir: tempfile::TempDir,
}

fn proof(key: &SigningKey, method: &str, path: &str, jti: String) -> String {
    let now = writ_issuer::Clock::now(&writ_issuer::SystemClock);
    ProofClaims::new(method, &format!("{ISSUER}{path}"), now, jti)
        .sign(key)
        .unwrap()
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

async fn admin_call(
    bench: &Bench,
    key: &SigningKey,
    path: &str,
    body: serde_json::Value,
    n: u64,
) -> serde_json::Value {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("dpop", proof(key, "POST", path, format!("setup-{n}")))
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, body) = call(&bench.router, request).await;
    assert!(status.is_success(), "{path}: {body}");
    body
}

async fn setup() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    writ_issuer::init(&data, ISSUER, "root", &dir.path().join("admin.key"))
        .await
        .unwrap();
    let admin = writ_keystore::load(&dir.path().join("admin.key")).unwrap();
    // Every detector assesses every call from the first (no learning period), in observe
    // mode: one agent at thousands of calls a second is the burst `rate_spike` exists to
    // stop, and here it is the load.
    let settings = Settings {
        behaviour: writ_issuer::BehaviourConfig {
            detectors: writ_behaviour::SettingsSpec {
                learning_calls: 0,
                learning_seconds: 0,
                mode: Some(writ_behaviour::Mode::Observe),
                ..writ_behaviour::SettingsSpec::default()
            },
            ..writ_issuer::BehaviourConfig::default()
        },
        ..Settings::default()
    };
    let issuer = Issuer::open(&data, settings).await.unwrap();
    let router = writ_issuer::router(Arc::clone(&issuer));
    let agent = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let mut bench = Bench {
        router,
        issuer,
        agent,
        form: String::new(),
        _dir: dir,
    };
    let jwk = |key: &SigningKey| serde_json::to_value(key.public_key().to_jwk()).unwrap();
    let gateway = SigningKey::generate(Algorithm::EdDSA).unwrap();
    admin_call(&bench, &admin, "/v1/providers", json!({"name": "files", "kind": "mcp", "tools": [{"name": "read_file", "labels": ["internal"]}]}), 1).await;
    admin_call(
        &bench,
        &admin,
        "/v1/gateways",
        json!({"name": "gw", "jwk": jwk(&gateway), "audience": GATEWAY}),
        2,
    )
    .await;
    admin_call(&bench, &admin, "/v1/agents", json!({"name": "bench-bot", "jwk": jwk(&bench.agent), "tools": ["files/read_file"], "owner": "root"}), 3).await;
    let granted = admin_call(&bench, &admin, "/v1/mandates", json!({
        "agent": "bench-bot", "task": "benchmark", "ttl_seconds": 3600,
        "grants": [{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                    "arguments": {"object": {"required": {"path": {"prefix": "/data/"}}}}, "datatypes": ["internal"]}]
    }), 4).await;
    let details = json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
        "arguments": {"object": {"required": {"path": {"exact": "/data/q3.csv"}}}}, "datatypes": ["internal"]}]);
    bench.form = serde_urlencoded::to_string([
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", granted["mandate"].as_str().unwrap()),
        (
            "subject_token_type",
            "urn:writ:params:oauth:token-type:mandate",
        ),
        ("resource", GATEWAY),
        ("authorization_details", &details.to_string()),
    ])
    .unwrap();
    bench
}

/// Every proof in a run needs its own `jti`: the issuer refuses replays.
static NEXT_JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn requests(bench: &Bench, count: usize, tag: &str) -> Vec<Request<Body>> {
    (0..count)
        .map(|_| {
            let i = NEXT_JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Request::builder()
                .method(Method::POST)
                .uri("/token")
                .header(
                    "dpop",
                    proof(&bench.agent, "POST", "/token", format!("{tag}-{i}")),
                )
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(bench.form.clone()))
                .unwrap()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Closed loop: `concurrency` clients, each sending its share back to back.
async fn closed_loop(bench: &Bench, concurrency: usize, total: usize) -> (f64, Duration, Duration) {
    let mut batches: Vec<Vec<Request<Body>>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, request) in requests(bench, total, &format!("c{concurrency}"))
        .into_iter()
        .enumerate()
    {
        batches[i % concurrency].push(request);
    }
    let start = Instant::now();
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let router = bench.router.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(batch.len());
                for request in batch {
                    let sent = Instant::now();
                    let (status, body) = call(&router, request).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    (
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// Open loop: requests started at a fixed `rate` for `seconds`, whatever the latency.
async fn paced(bench: &Bench, rate: u64, seconds: u64) -> (f64, Duration, Duration) {
    let total = (rate * seconds) as usize;
    let requests = requests(bench, total, &format!("r{rate}"));
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for (i, request) in requests.into_iter().enumerate() {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let router = bench.router.clone();
        tasks.push(tokio::spawn(async move {
            let (status, body) = call(&router, request).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            due.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    (
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// The floor, measured in the same run: durable appends of a small leaf straight to the
/// store, with `concurrency` appends in flight. No HTTP, no crypto, no policy.
async fn baseline_appends(
    bench: &Bench,
    concurrency: usize,
    total: usize,
) -> (f64, Duration, Duration) {
    let store = bench.issuer.store().clone();
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|client| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(total / concurrency);
                for n in 0..total / concurrency {
                    let event = writ_store::Event {
                        kind: "bench".into(),
                        data: format!("{{\"client\":{client},\"n\":{n}}}").into_bytes(),
                        keys: Vec::new(),
                        time: 0,
                    };
                    let sent = Instant::now();
                    store
                        .append(event, writ_store::Write::Nothing)
                        .await
                        .unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

fn row(name: &str, (rate, p50, p99): (f64, Duration, Duration)) {
    println!(
        "| {name} | {rate:.0} | {:.2} ms | {:.2} ms |",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bench = setup().await;
        // Warm up caches, the page cache and the allocator.
        closed_loop(&bench, 16, 500).await;
        println!("| run | writs/s | p50 | p99 |");
        println!("|---|---|---|---|");
        row(
            "baseline: bare durable append, concurrency 1 (500)",
            baseline_appends(&bench, 1, 500).await,
        );
        row(
            "baseline: bare durable append, concurrency 64 (4000)",
            baseline_appends(&bench, 64, 4000).await,
        );
        for concurrency in [1, 16, 64] {
            let total = if concurrency == 1 { 500 } else { 4000 };
            row(
                &format!("concurrency {concurrency} ({total} writs)"),
                closed_loop(&bench, concurrency, total).await,
            );
        }
        row("paced 1000/s for 3 s", paced(&bench, 1000, 3).await);
        println!(
            "audit log size after the run: {}",
            bench.issuer.store().tree_head().size
        );
    });
}
