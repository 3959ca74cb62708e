//! What the gateway costs: latency and CPU per request through `writ gateway run` on the
//! full DPoP path (Ed25519 writ and proof, revocation, the call check, single use, the
//! decision report), against calling the upstream directly and against nginx `proxy_pass`
//! with the same credential injection. Run with `bench/gateway/run.sh`, which installs
//! nginx, builds, and pins this harness to CPU 0 and the proxies to CPU 1.
//!
//! The harness runs the issuer, the upstream (a small JSON API) and the load generator in
//! one process; the gateway and nginx are separate processes, each confined to one core, so
//! their CPU time per request is read from `/proc`. Writs are minted and proofs signed
//! before each timed run. Each worker holds one keep-alive HTTP/1.1 connection and sends
//! its requests one after another.
//!
//! Environment: `WRIT_BIN` (the `writ` binary, required), `NGINX_BIN` (default `nginx`),
//! `PROXY_CPU` (default `1`), `BENCH_RUNS` (default 3), `BENCH_REQUESTS_C1` (default 4000),
//! `BENCH_REQUESTS_C16` (default 20000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    reason = "benchmark"
)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;
use writ_jose::{Algorithm, SigningKey};
use writ_testkit::World;

const PATH: &str = "/customers/42";
const SECRET: &str = "bench-upstream-token";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A proxy under test, stopped on drop.
struct Proxy {
    child: Child,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: nginx's master then stops its workers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn spawn(cpu: &str, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Proxy {
        let child = Command::new("taskset")
            .args(["-c", cpu, program])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("running {program} under taskset: {e}"));
        Proxy { child }
    }

    /// CPU time of the process and its children (nginx's workers), in microseconds.
    fn cpu_micros(&self) -> u64 {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        std::iter::once(pid)
            .chain(children.split_whitespace().map(|p| p.parse().unwrap()))
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
                // Fields after the command name, which ends with `)`: utime and stime are
                // the 12th and 13th, in clock ticks of 10 ms.
                let rest = &stat[stat.rfind(')').unwrap() + 2..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks: u64 =
                    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
                ticks * 10_000
            })
            .sum()
    }
}

/// One request: its path and headers.
type Prepared = (String, Vec<(&'static str, String)>);

struct Measured {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Sends every request over `concurrency` keep-alive connections to `port`.
async fn load(port: u16, requests: Vec<Prepared>, concurrency: usize) -> Measured {
    let mut queues: Vec<Vec<Prepared>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (n, request) in requests.into_iter().enumerate() {
        queues[n % concurrency].push(request);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let mut workers = Vec::new();
    for queue in queues {
        let barrier = Arc::clone(&barrier);
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            barrier.wait().await;
            let mut latencies = Vec::with_capacity(queue.len());
            for (path, headers) in queue {
                let mut request = hyper::Request::get(path).header("host", "127.0.0.1");
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                sender.ready().await.unwrap();
                let started = Instant::now();
                let response = sender
                    .send_request(request.body(Empty::<Bytes>::new()).unwrap())
                    .await
                    .unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                latencies.push(started.elapsed());
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            }
            latencies
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Measured { latencies, elapsed }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Fields drop in order: the proxies stop before the issuer and the directory they use.
struct Deployment {
    gateway: Proxy,
    nginx: Proxy,
    world: Arc<World>,
    mandate: String,
    gateway_port: u16,
    nginx_port: u16,
    upstream_port: u16,
}

async fn deploy() -> Deployment {
    let writ_bin = std::env::var("WRIT_BIN").expect("WRIT_BIN: the writ binary to measure");
    let nginx_bin = env_or("NGINX_BIN", "nginx");
    let cpu = env_or("PROXY_CPU", "1");
    let world = Arc::new(World::new().await);
    let (mandate, _) = world.grant().await;
    let upstream_port: u16 = world.api_url.rsplit(':').next().unwrap().parse().unwrap();
    let dir = world.dir.path();
    let secret = dir.join("bench.secret");
    std::fs::write(&secret, SECRET).unwrap();

    // The gateway, registered with the issuer under its own key.
    let gateway_port = free_port();
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let key_file = dir.join("bench-gateway.key");
    writ_keystore::create(&key_file, &key).unwrap();
    world
        .admin
        .post(
            "/v1/gateways",
            Some(&json!({"name": "bench", "audience": gateway_url,
                "jwk": serde_json::to_value(key.public_key().to_jwk()).unwrap()})),
        )
        .await
        .unwrap();
    let config = dir.join("bench-gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{gateway_port}\"\npublic_url = \"{gateway_url}\"\nissuer = \"{issuer}\"\nkey_file = \"{key}\"\nspool_dir = \"{spool}\"\n\n[[routes]]\nname = \"crm\"\npath = \"/api/crm\"\nkind = \"http\"\nupstream = \"{api}/v2\"\ncredential = {{ type = \"bearer\", file = \"{secret}\" }}\n",
            issuer = world.issuer_url,
            key = key_file.display(),
            spool = dir.join("bench-spool").display(),
            api = world.api_url,
            secret = secret.display(),
        ),
    )
    .unwrap();
    let gateway = Proxy::spawn(
        &cpu,
        &writ_bin,
        &["gateway", "run", "--config", config.to_str().unwrap()],
        &[("TOKIO_WORKER_THREADS", "1"), ("RUST_LOG", "warn")],
    );

    // nginx: one worker, keep-alive to the upstream, the same credential injected.
    let nginx_port = free_port();
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let nginx_config = prefix.join("nginx.conf");
    std::fs::write(
        &nginx_config,
        format!(
            "daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log stderr warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  keepalive_requests 1000000;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n  upstream api {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n  server {{\n    listen 127.0.0.1:{nginx_port};\n    location /api/crm/ {{\n      proxy_pass http://api/v2/;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Authorization \"Bearer {SECRET}\";\n    }}\n  }}\n}}\n",
            prefix = prefix.display(),
        ),
    )
    .unwrap();
    let nginx = Proxy::spawn(
        &cpu,
        &nginx_bin,
        &[
            "-p",
            prefix.to_str().unwrap(),
            "-c",
            nginx_config.to_str().unwrap(),
        ],
        &[],
    );

    // Both ready?
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let gateway_ready = http
            .get(format!("{gateway_url}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        let nginx_ready = tokio::net::TcpStream::connect(("127.0.0.1", nginx_port))
            .await
            .is_ok();
        if gateway_ready && nginx_ready {
            return Deployment {
                world,
                mandate,
                gateway_port,
                nginx_port,
                upstream_port,
                gateway,
                nginx,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway or nginx did not start");
}

impl Deployment {
    /// `count` requests for the gateway, each with its own writ and proof.
    async fn writ_requests(&self, count: usize) -> Vec<Prepared> {
        let resource = format!("http://127.0.0.1:{}/api/crm", self.gateway_port);
        let url = format!("{resource}{PATH}");
        let detail =
            json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": PATH});
        let minters = 32;
        let mut tasks = Vec::new();
        for worker in 0..minters {
            let world = Arc::clone(&self.world);
            let (mandate, resource, url, detail) = (
                self.mandate.clone(),
                resource.clone(),
                url.clone(),
                detail.clone(),
            );
            let share = count / minters + usize::from(worker < count % minters);
            tasks.push(tokio::spawn(async move {
                let mut prepared = Vec::with_capacity(share);
                for _ in 0..share {
                    let (status, body) = world
                        .try_writ_for(&mandate, &resource, detail.clone())
                        .await;
                    assert_eq!(status, 200, "{body}");
                    let writ = body["access_token"].as_str().unwrap().to_owned();
                    let proof = world.proof("GET", &url, &writ);
                    prepared.push((
                        format!("/api/crm{PATH}"),
                        vec![("authorization", format!("DPoP {writ}")), ("dpop", proof)],
                    ));
                }
                prepared
            }));
        }
        let mut requests = Vec::with_capacity(count);
        for task in tasks {
            requests.extend(task.await.unwrap());
        }
        requests
    }
}

#[derive(Default)]
struct Cell {
    p50: Vec<f64>,
    p99: Vec<f64>,
    rps: Vec<f64>,
    added_p50: Vec<f64>,
    cpu: Vec<f64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs: usize = env_or("BENCH_RUNS", "3").parse().unwrap();
    let counts = [
        (
            1,
            env_or("BENCH_REQUESTS_C1", "4000")
                .parse::<usize>()
                .unwrap(),
        ),
        (
            16,
            env_or("BENCH_REQUESTS_C16", "20000")
                .parse::<usize>()
                .unwrap(),
        ),
    ];
    let deployment = deploy().await;
    let proxies = [
        ("nginx proxy_pass", deployment.nginx_port, &deployment.nginx),
        ("writ gateway", deployment.gateway_port, &deployment.gateway),
    ];
    let mut cells: BTreeMap<(usize, &str), Cell> = BTreeMap::new();
    for run in 1..=runs {
        for (concurrency, count) in counts {
            // Warm the connections and caches, then the baseline: the upstream itself.
            let plain = |prefix: &str| -> Vec<Prepared> {
                (0..count)
                    .map(|_| (format!("{prefix}{PATH}"), Vec::new()))
                    .collect()
            };
            load(
                deployment.upstream_port,
                plain("/v2")[..count / 10].to_vec(),
                concurrency,
            )
            .await;
            let direct = load(deployment.upstream_port, plain("/v2"), concurrency).await;
            let direct_p50 = percentile(&direct.latencies, 0.5);
            let mut record = |name, measured: &Measured, cpu: Option<u64>| {
                let cell = cells.entry((concurrency, name)).or_default();
                let p50 = percentile(&measured.latencies, 0.5);
                cell.p50.push(p50);
                cell.p99.push(percentile(&measured.latencies, 0.99));
                cell.rps.push(count as f64 / measured.elapsed.as_secs_f64());
                cell.added_p50.push(p50 - direct_p50);
                if let Some(cpu) = cpu {
                    cell.cpu.push(cpu as f64 / count as f64);
                }
                println!(
                    "run {run} c{concurrency:<2} {name:<18} p50 {p50:>8.1} µs  p99 {:>8.1} µs  {:>8.0} req/s{}",
                    percentile(&measured.latencies, 0.99),
                    count as f64 / measured.elapsed.as_secs_f64(),
                    cpu.map_or(String::new(), |cpu| format!(
                        "  {:.1} CPU µs/req",
                        cpu as f64 / count as f64
                    )),
                );
            };
            record("direct", &direct, None);
            for (name, port, proxy) in proxies {
                let requests = if name == "writ gateway" {
                    // Warm-up with its own writs, then the measured ones.
                    load(
                        port,
                        deployment.writ_requests(count / 10).await,
                        concurrency,
                    )
                    .await;
                    deployment.writ_requests(count).await
                } else {
                    load(port, plain("/api/crm")[..count / 10].to_vec(), concurrency).await;
                    plain("/api/crm")
                };
                let before = proxy.cpu_micros();
                let measured = load(port, requests, concurrency).await;
                let cpu = proxy.cpu_micros() - before;
                record(name, &measured, Some(cpu));
            }
        }
    }

    println!(
        "\nmedian of {runs} runs; added p50 = p50 through the proxy minus p50 direct, in the same run\n"
    );
    println!("| concurrency | path | p50 µs | p99 µs | req/s | added p50 µs | proxy CPU µs/req |");
    println!("|---|---|---|---|---|---|---|");
    for ((concurrency, name), cell) in &mut cells {
        let cpu = if cell.cpu.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1}", median(&mut cell.cpu))
        };
        let added = if *name == "direct" {
            "-".to_owned()
        } else {
            format!("{:.1}", median(&mut cell.added_p50))
        };
        println!(
            "| {concurrency} | {name} | {:.1} | {:.1} | {:.0} | {added} | {cpu} |",
            median(&mut cell.p50),
            median(&mut cell.p99),
            median(&mut cell.rps),
        );
    }
}
