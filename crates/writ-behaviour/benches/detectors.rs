//! The detectors' cost per call: `assess` then `record`, as the issuer runs them for every
//! writ and the gateway for every response.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark"
)]

use divan::{Bencher, black_box};
use serde_json::{Value, json};
use writ_behaviour::{Call, Profile, Settings, SettingsSpec};

fn main() {
    divan::main();
}

const TOOLS: [&str; 8] = [
    "files/list_dir",
    "files/read_file",
    "files/search",
    "crm/GET /customers/*",
    "crm/GET /orders/*",
    "mail/draft",
    "docs/summarize",
    "docs/write_report",
];

fn arguments(step: u64) -> Value {
    json!({
        "path": format!("/data/reports/q{}-{}.txt", step % 4 + 1, step % 97),
        "limit": step % 50 + 1,
        "recursive": step.is_multiple_of(2),
    })
}

/// An agent with a week of history: eight tools, three calls a minute, working hours.
fn trained() -> (Settings, Profile, i64) {
    let settings = Settings::new(SettingsSpec {
        learning_seconds: 86_400,
        ..SettingsSpec::default()
    })
    .unwrap();
    let mut profile = Profile::new();
    let mut at = 1_700_000_000_i64;
    for step in 0..5_000_u64 {
        let arguments = arguments(step);
        let tool = TOOLS[(step % 8) as usize];
        let mandate = format!("mandate-{}", step / 20);
        let call = Call {
            tool,
            mandate: &mandate,
            arguments: Some(&arguments),
            pinned: true,
            at,
        };
        let recorded = profile.record(&settings, &call);
        profile.learn(&settings, &call, recorded);
        profile.record_response(&settings, tool, 2_000 + step % 3_000, at);
        at += 20 + (step % 7) as i64 * 30;
    }
    assert!(profile.learning(&settings, at).is_none(), "still learning");
    (settings, profile, at)
}

#[divan::bench]
fn baseline_json_parse(bencher: Bencher) {
    // A floor to compare with: parsing a small argument object, which every caller does
    // before it can assess anything.
    let text = arguments(3).to_string();
    bencher.bench(|| serde_json::from_str::<Value>(black_box(&text)).unwrap());
}

#[divan::bench]
fn assess_and_record_call(bencher: Bencher) {
    let (settings, mut profile, mut at) = trained();
    let arguments = arguments(7);
    let mut step = 0;
    bencher.bench_local(|| {
        at += 15;
        step += 1;
        let call = Call {
            tool: TOOLS[step % TOOLS.len()],
            mandate: "mandate-live",
            arguments: Some(&arguments),
            pinned: true,
            at,
        };
        let assessment = profile.assess(&settings, black_box(&call));
        let learn = assessment.findings.is_empty();
        assert!(learn, "{assessment:?}");
        let recorded = profile.record(&settings, &call);
        profile.learn(&settings, &call, recorded);
        assessment
    });
}

#[divan::bench]
fn assess_drifting_call(bencher: Bencher) {
    // The slow path: several detectors find something and write their sentences (a
    // destructive argument, a shape never seen, a limit far beyond any before).
    let (settings, profile, at) = trained();
    let arguments = json!({"table": "customers; DROP TABLE customers", "limit": 1_000_000});
    bencher.bench_local(|| {
        let call = Call {
            tool: "files/search",
            mandate: "mandate-live",
            arguments: Some(&arguments),
            pinned: true,
            at: at + 3 * 3_600,
        };
        let assessment = profile.assess(&settings, black_box(&call));
        assert!(assessment.findings.len() >= 3, "{assessment:?}");
        assessment
    });
}

#[divan::bench]
fn assess_response(bencher: Bencher) {
    let (settings, profile, at) = trained();
    bencher.bench_local(|| {
        profile.assess_response(
            &settings,
            black_box("files/read_file"),
            black_box(4_096),
            at,
        )
    });
}
