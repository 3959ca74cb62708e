//! The process-wide Prometheus recorder behind every Writ service's `GET /metrics`.
//!
//! The `metrics` facade has one recorder per process, so an issuer and a gateway running
//! in one process (as in `writ quickstart`) share it and each `/metrics` shows both. A
//! process that installed another recorder first keeps it, and [`handle`] is `None`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Latency histogram buckets, in seconds: 25 µs to 2.5 s.
const BUCKETS: [f64; 14] = [
    0.000_025, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    1.0, 2.5,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .map_err(|error| tracing::warn!(%error, "metrics buckets refused"))
                .ok()?;
            builder
                .install_recorder()
                .map_err(|error| tracing::warn!(%error, "metrics recorder not installed"))
                .ok()
        })
        .as_ref()
}
