//! A scripted agent over a long run: its normal work never trips a detector, and each
//! injected drift is caught by the detector named for it, with its numbers.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use serde_json::{Value, json};
use writ_behaviour::{Assessment, Call, Detector, Mode, Profile, Settings, SettingsSpec};

/// A small deterministic generator (SplitMix64), so every run sees the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DAY: i64 = 86_400;
const START: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z, a Thursday

/// The report agent's day: each task lists a directory, searches, reads a few files, looks
/// up a customer, then drafts a summary; tasks start during working hours (08–18 UTC).
struct Agent {
    rng: Rng,
    task: u64,
}

struct Step {
    tool: &'static str,
    arguments: Value,
    response: u64,
}

impl Agent {
    fn task(&mut self) -> Vec<Step> {
        self.task += 1;
        let rng = &mut self.rng;
        let mut steps = vec![Step {
            tool: "files/list_dir",
            arguments: json!({"path": format!("/data/reports/{}", rng.below(12))}),
            response: 500 + rng.below(1_500),
        }];
        if rng.below(2) == 0 {
            steps.push(Step {
                tool: "files/search",
                arguments: json!({"query": format!("revenue q{}", rng.below(4) + 1), "limit": rng.below(20) + 1}),
                response: 1_000 + rng.below(4_000),
            });
        }
        for _ in 0..rng.below(4) + 1 {
            steps.push(Step {
                tool: "files/read_file",
                arguments: json!({"path": format!("/data/reports/{}/r{}.txt", rng.below(12), rng.below(300))}),
                response: 2_000 + rng.below(30_000),
            });
        }
        if rng.below(3) > 0 {
            steps.push(Step {
                tool: "crm/get_customer",
                arguments: json!({"id": rng.below(5_000) + 1}),
                response: 300 + rng.below(700),
            });
        }
        steps.push(Step {
            tool: "mail/draft",
            arguments: json!({"to": "alice@example.com", "subject": format!("Summary {}", self.task), "body": "x".repeat(200 + rng.below(1_500) as usize)}),
            response: 100,
        });
        steps
    }
}

struct Run {
    settings: Settings,
    profile: Profile,
    agent: Agent,
    at: i64,
    blocked: Vec<Assessment>,
    stepped_up: Vec<Assessment>,
}

impl Run {
    fn new() -> Run {
        let settings = Settings::new(SettingsSpec {
            learning_calls: 300,
            learning_seconds: 7 * DAY,
            ..SettingsSpec::default()
        })
        .unwrap();
        Run {
            settings,
            profile: Profile::new(),
            agent: Agent {
                rng: Rng(7),
                task: 0,
            },
            at: START,
            blocked: Vec::new(),
            stepped_up: Vec::new(),
        }
    }

    /// Moves the clock to the next task start: a few minutes later, or the next morning.
    fn advance(&mut self) {
        self.at += 60 + self.agent.rng.below(900) as i64;
        let hour = self.at.rem_euclid(DAY) / 3_600;
        if !(8..18).contains(&hour) {
            let day = self.at.div_euclid(DAY) + i64::from(hour >= 18);
            self.at = day * DAY + 8 * 3_600 + self.agent.rng.below(1_800) as i64;
        }
    }

    /// One call as the issuer and the gateway would handle it: assess the call, learn it
    /// when clean, then assess and learn its response.
    fn call(&mut self, tool: &str, mandate: &str, arguments: &Value, response: u64) -> Assessment {
        let call = Call {
            tool,
            mandate,
            arguments: Some(arguments),
            pinned: true,
            at: self.at,
        };
        let assessment = self.profile.assess(&self.settings, &call);
        match assessment.mode() {
            Some(Mode::Block) => self.blocked.push(assessment.clone()),
            Some(Mode::StepUp) => self.stepped_up.push(assessment.clone()),
            Some(Mode::Observe) | None => {}
        }
        let clean = assessment.findings.is_empty();
        if assessment.mode() != Some(Mode::Block) && assessment.mode() != Some(Mode::StepUp) {
            let recorded = self.profile.record(&self.settings, &call);
            if clean {
                self.profile.learn(&self.settings, &call, recorded);
            }
            let response_assessment =
                self.profile
                    .assess_response(&self.settings, tool, response, self.at);
            if response_assessment.findings.is_empty() {
                self.profile
                    .record_response(&self.settings, tool, response, self.at);
            }
        }
        self.at += 2 + self.agent.rng.below(20) as i64;
        assessment
    }

    /// Runs `days` of normal work.
    fn work(&mut self, days: i64) {
        let end = self.at + days * DAY;
        while self.at < end {
            self.advance();
            let mandate = format!("mandate-{}", self.agent.task);
            for step in self.agent.task() {
                self.call(step.tool, &mandate, &step.arguments, step.response);
            }
        }
    }
}

fn trained() -> Run {
    let mut run = Run::new();
    run.work(30);
    assert!(run.profile.learning(&run.settings, run.at).is_none());
    assert!(run.blocked.is_empty() && run.stepped_up.is_empty());
    run
}

#[test]
fn ninety_days_of_normal_work_are_never_blocked_or_held() {
    let mut run = Run::new();
    run.work(90);
    let baseline = run.profile.baseline();
    assert!(baseline.calls > 10_000, "{} calls", baseline.calls);
    assert_eq!(baseline.tools.len(), 5);
    assert!(run.blocked.is_empty(), "blocked: {:?}", run.blocked.first());
    assert!(
        run.stepped_up.is_empty(),
        "held: {:?}",
        run.stepped_up.first()
    );
}

#[test]
fn nothing_is_flagged_while_learning() {
    let mut run = Run::new();
    let arguments = json!({"table": "customers"});
    let assessment = run.call("db/drop_table", "m", &arguments, 10);
    assert!(assessment.findings.is_empty());
    let learning = assessment.learning.unwrap();
    assert_eq!((learning.calls, learning.calls_needed), (0, 300));
}

#[test]
fn a_new_destructive_tool_is_blocked_and_named() {
    let mut run = trained();
    run.advance();
    let arguments = json!({"table": "customers"});
    let assessment = run.call("db/drop_table", "mandate-x", &arguments, 10);
    assert_eq!(assessment.mode(), Some(Mode::Block));
    let strongest = assessment.strongest().unwrap();
    assert_eq!(strongest.detector, Detector::Destructive);
    assert!(
        strongest.message.contains("the call `drop_table`"),
        "{}",
        strongest.message
    );
    assert!(
        assessment
            .findings
            .iter()
            .any(|f| f.detector == Detector::NewTool)
    );
}

#[test]
fn a_destructive_argument_to_a_known_tool_is_blocked() {
    let mut run = trained();
    run.advance();
    let arguments = json!({"query": "revenue; DROP TABLE customers", "limit": 5});
    let assessment = run.call("files/search", "mandate-x", &arguments, 10);
    let strongest = assessment.strongest().unwrap();
    assert_eq!(strongest.detector, Detector::Destructive);
    assert!(
        strongest.message.contains("argument `/query`"),
        "{}",
        strongest.message
    );
}

#[test]
fn a_tenfold_burst_is_blocked_as_a_rate_spike() {
    let mut run = trained();
    run.advance();
    let busiest = run.profile.baseline().busiest_window;
    let mut first_spike = None;
    for n in 0..10 * busiest.max(10) {
        let arguments = json!({"path": format!("/data/reports/1/r{n}.txt")});
        let call = Call {
            tool: "files/read_file",
            mandate: "mandate-burst",
            arguments: Some(&arguments),
            pinned: true,
            at: run.at,
        };
        let assessment = run.profile.assess(&run.settings, &call);
        if assessment.mode() == Some(Mode::Block) {
            first_spike.get_or_insert((n, assessment));
        } else {
            let recorded = run.profile.record(&run.settings, &call);
            if assessment.findings.is_empty() {
                run.profile.learn(&run.settings, &call, recorded);
            }
        }
    }
    let (n, assessment) = first_spike.expect("the burst was never stopped");
    let spike = assessment.strongest().unwrap();
    assert_eq!(spike.detector, Detector::RateSpike);
    // The burst does not raise its own limit: the busiest window it is judged against
    // is the one learned before it (grown at most twofold if a growth window closed on
    // its first call), and it is stopped once the window holds more than three times
    // that, long before the burst reaches ten times.
    let limit = run.profile.baseline().busiest_window;
    assert_eq!(spike.baseline, f64::from(limit), "{spike:?}");
    assert!(
        limit >= busiest && limit <= 2 * busiest,
        "{limit} from {busiest}"
    );
    assert!(spike.observed > spike.threshold);
    assert_eq!(f64::from(n + 1), spike.observed);
    assert!(n < 3 * limit + 1, "stopped only at {n}");
    assert!(
        spike.message.contains("calls in the last 60 s"),
        "{}",
        spike.message
    );
}

#[test]
fn a_bulk_export_is_caught_by_its_argument_and_its_response() {
    let mut run = trained();
    run.advance();
    let arguments = json!({"query": "revenue q1", "limit": 100_000});
    let assessment = run.call("files/search", "mandate-x", &arguments, 10);
    let finding = assessment.strongest().unwrap();
    assert_eq!(finding.detector, Detector::ArgumentValue);
    assert_eq!(finding.observed, 100_000.0);
    assert_eq!(finding.baseline, 20.0);
    assert_eq!(assessment.mode(), Some(Mode::StepUp));

    let response =
        run.profile
            .assess_response(&run.settings, "files/read_file", 50 * 1024 * 1024, run.at);
    let finding = response.strongest().unwrap();
    assert_eq!(finding.detector, Detector::ResponseVolume);
    assert_eq!(finding.mode, Mode::Block);
    assert!(finding.baseline < 32_000.0 && finding.threshold < 320_001.0);
}

#[test]
fn a_sequence_never_seen_is_held_for_the_owner() {
    let mut run = trained();
    run.advance();
    // Normal work never drafts mail straight after looking up a customer and then lists a
    // directory under the same mandate; here it drafts and then reads the CRM again.
    let draft = json!({"to": "alice@example.com", "subject": "s", "body": "b"});
    run.call("mail/draft", "mandate-seq", &draft, 100);
    let customer = json!({"id": 7});
    let assessment = run.call("crm/get_customer", "mandate-seq", &customer, 400);
    let finding = assessment.strongest().unwrap();
    assert_eq!(finding.detector, Detector::UnusualSequence);
    assert_eq!(finding.mode, Mode::StepUp);
    assert!(
        finding
            .message
            .contains("`crm/get_customer` never followed `mail/draft`"),
        "{}",
        finding.message
    );
}

#[test]
fn an_unusual_shape_and_an_unusual_hour_are_reported() {
    let mut run = trained();
    run.advance();
    let day = run.at.div_euclid(DAY);
    run.at = (day + 1) * DAY + 3 * 3_600; // 03:00 UTC
    let arguments = json!({"path": "/data/reports/1/r1.txt", "follow_links": true});
    let assessment = run.call("files/read_file", "mandate-night", &arguments, 100);
    let detectors: Vec<Detector> = assessment.findings.iter().map(|f| f.detector).collect();
    assert_eq!(detectors, [Detector::ArgumentShape, Detector::UnusualHour]);
    assert_eq!(assessment.findings[1].mode, Mode::Observe);
}

#[test]
fn an_approved_drift_is_learned_and_an_unapproved_one_is_not() {
    let mut run = trained();
    run.advance();
    let arguments = json!({"table": "drafts"});
    let call = Call {
        tool: "db/drop_table",
        mandate: "m",
        arguments: Some(&arguments),
        pinned: true,
        at: run.at,
    };
    // Refused: recorded as activity only.
    run.profile.record(&run.settings, &call);
    assert!(!run.profile.assess(&run.settings, &call).findings.is_empty());
    // Approved by the owner: learned, pattern and all.
    let recorded = run.profile.record(&run.settings, &call);
    run.profile.learn(&run.settings, &call, recorded);
    let again = run.profile.assess(&run.settings, &call);
    assert!(
        !again
            .findings
            .iter()
            .any(|f| matches!(f.detector, Detector::NewTool | Detector::Destructive)),
        "{again:?}"
    );
}

#[test]
fn a_baseline_survives_serialization() {
    let run = trained();
    let text = serde_json::to_string(run.profile.baseline()).unwrap();
    let back: writ_behaviour::Baseline = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, run.profile.baseline());
}

fn assess(run: &Run, tool: &str, arguments: Option<&Value>, pinned: bool) -> Assessment {
    let call = Call {
        tool,
        mandate: "mandate-probe",
        arguments,
        pinned,
        at: run.at,
    };
    run.profile.assess(&run.settings, &call)
}

fn detectors(assessment: &Assessment) -> Vec<Detector> {
    assessment.findings.iter().map(|f| f.detector).collect()
}

#[test]
fn a_call_not_pinned_to_exact_values_cannot_pass_as_normal() {
    let mut run = trained();
    run.advance();
    // Any arguments within a glob: nothing to compare, so it is held.
    let constraint = json!({"object": {"required": {"path": {"glob": "/data/*"}}}});
    let assessment = assess(&run, "files/read_file", Some(&constraint), false);
    assert!(
        detectors(&assessment).contains(&Detector::ArgumentShape),
        "{assessment:?}"
    );
    // And a destructive word inside the constraint is still found.
    let constraint = json!({"object": {"required": {"sql": {"prefix": "DROP TABLE"}}}});
    let assessment = assess(&run, "files/search", Some(&constraint), false);
    assert_eq!(
        detectors(&assessment)[0],
        Detector::Destructive,
        "{assessment:?}"
    );
}

#[test]
fn destructive_names_are_found_in_http_methods_and_camel_case() {
    let mut run = trained();
    run.advance();
    for tool in [
        "crm DELETE /customers/{id}",
        "files/deleteFile",
        "db/dropTable",
    ] {
        let assessment = assess(&run, tool, None, true);
        assert_eq!(
            assessment.strongest().map(|f| f.detector),
            Some(Detector::Destructive),
            "{tool}: {assessment:?}"
        );
    }
}

#[test]
fn camel_case_destructive_words_are_found_in_argument_names_and_values() {
    let mut run = trained();
    run.advance();
    for arguments in [
        json!({"query": "revenue", "op": "deleteAll"}),
        json!({"dropTable": true}),
    ] {
        let assessment = assess(&run, "files/search", Some(&arguments), true);
        assert!(
            assessment
                .findings
                .iter()
                .any(|f| f.detector == Detector::Destructive),
            "{arguments}: {assessment:?}"
        );
    }
}

#[test]
fn every_destructive_pattern_is_checked_not_only_the_first() {
    let mut run = trained();
    run.advance();
    // The owner approved `delete_rows` (its name matches `delete`)...
    let arguments = json!({"table": "drafts"});
    let at = run.at;
    learn(&mut run, "db/delete_rows", &arguments, at);
    assert!(
        assess(&run, "db/delete_rows", Some(&arguments), true)
            .findings
            .iter()
            .all(|f| f.detector != Detector::Destructive)
    );
    // ...which does not make a `DROP TABLE` in its arguments pass.
    let arguments = json!({"table": "drafts; DROP TABLE customers"});
    let assessment = assess(&run, "db/delete_rows", Some(&arguments), true);
    let finding = assessment.strongest().unwrap();
    assert_eq!(finding.detector, Detector::Destructive);
    assert!(
        finding.message.contains("argument `/table`"),
        "{}",
        finding.message
    );
}

#[test]
fn arguments_too_large_to_search_are_a_finding() {
    let mut run = trained();
    run.advance();
    let padding: Vec<Value> = (0..2_000).map(|n| json!(format!("row {n}"))).collect();
    let arguments = json!({"query": "revenue", "limit": 5, "rows": padding});
    let assessment = assess(&run, "files/search", Some(&arguments), true);
    let finding = assessment
        .findings
        .iter()
        .find(|f| f.detector == Detector::Destructive)
        .expect("an unsearched argument passed");
    assert!(
        finding.message.contains("could not all be searched"),
        "{}",
        finding.message
    );
}

const READ: &str = "files/read_file";

/// The largest answer `files/read_file` has given.
fn largest_answer(run: &Run) -> u64 {
    run.profile.baseline().tools[READ].largest_response
}

/// A trained run whose growth window for `files/read_file`'s answers has just opened, at
/// `run.at`: the run, the window's length, and the largest answer.
fn fresh_answer_window() -> (Run, i64, u64) {
    let mut run = trained();
    run.advance();
    let window = run.settings.spec().growth_window_seconds;
    run.at += window;
    run.profile.record_response(&run.settings, READ, 1, run.at);
    let largest = largest_answer(&run);
    (run, window, largest)
}

#[test]
fn learned_extremes_rise_at_most_twofold_per_growth_window() {
    let (mut run, window, before) = fresh_answer_window();
    // Answers just under the limit, one after another: the limit holds still for the
    // rest of the window, not tenfold per answer.
    for _ in 0..5 {
        run.at += 1;
        run.profile
            .record_response(&run.settings, READ, before * 9, run.at);
        assert_eq!(largest_answer(&run), before);
    }
    // The window's peak is learned when it closes, at most twofold; then again.
    run.at += window;
    run.profile
        .record_response(&run.settings, READ, before * 9, run.at);
    assert_eq!(largest_answer(&run), before * 2);
    run.at += window;
    run.profile.record_response(&run.settings, READ, 1, run.at);
    assert_eq!(largest_answer(&run), before * 4);
}

#[test]
fn a_growth_window_closes_exactly_after_its_length() {
    let (mut run, window, before) = fresh_answer_window();
    let since = run.at;
    for (value, at) in [(before * 3, since + 1), (1, since + window - 1)] {
        run.profile.record_response(&run.settings, READ, value, at);
    }
    assert_eq!(largest_answer(&run), before);
    run.profile
        .record_response(&run.settings, READ, 1, since + window);
    assert_eq!(largest_answer(&run), before * 2);
}

#[test]
fn a_workload_that_grows_steadily_is_followed() {
    let (mut run, window, start) = fresh_answer_window();
    // Each day the answers are a tenth larger than the day before: within a day the limit
    // holds, and the next day it has learned the day before.
    let mut size = start;
    for _ in 0..10 {
        size += size / 10;
        let mut limits = Vec::new();
        for _ in 0..20 {
            run.at += window / 40;
            run.profile
                .record_response(&run.settings, READ, size, run.at);
            limits.push(largest_answer(&run));
        }
        limits.dedup();
        assert!(
            limits.len() <= 2,
            "the limit moved within a window: {limits:?}"
        );
        run.at += window / 2;
    }
    run.at += window;
    run.profile.record_response(&run.settings, READ, 1, run.at);
    assert_eq!(largest_answer(&run), size);
    assert!(size > start * 2, "{size} from {start}");
}

/// Records and learns a pinned call of `tool` with `arguments` at `at`, findings or not.
fn learn(run: &mut Run, tool: &str, arguments: &Value, at: i64) {
    let call = Call {
        tool,
        mandate: "m",
        arguments: Some(arguments),
        pinned: true,
        at,
    };
    let recorded = run.profile.record(&run.settings, &call);
    run.profile.learn(&run.settings, &call, recorded);
}

#[test]
fn an_arguments_extremes_and_the_busiest_window_grow_by_windows_too() {
    let mut run = trained();
    run.advance();
    let window = run.settings.spec().growth_window_seconds;
    let tool = "files/search";
    let search = |limit: u64, query: &str| json!({"query": query, "limit": limit});
    let extremes = |run: &Run| {
        let arguments = &run.profile.baseline().tools[tool].arguments;
        (arguments["limit"].largest, arguments["query"].longest)
    };
    let busiest = |run: &Run| run.profile.baseline().busiest_window;
    // A fresh growth window for each extreme.
    run.at += window;
    let at = run.at;
    learn(&mut run, tool, &search(1, "q"), at);
    let (largest, longest) = extremes(&run);
    let calls = busiest(&run);
    // Within the window: a number five times the largest, a string three times the
    // longest, and a burst of twice the busiest window are learned, and nothing rises.
    let long = "q".repeat(longest * 3);
    for n in 0..2 * calls {
        let at = run.at + 1 + i64::from(n % 30);
        learn(&mut run, tool, &search(largest as u64 * 5, &long), at);
    }
    assert_eq!(extremes(&run), (largest, longest));
    assert_eq!(busiest(&run), calls);
    // After it, each has doubled, no more.
    run.at += window + 60;
    let at = run.at;
    learn(&mut run, tool, &search(1, "q"), at);
    assert_eq!(extremes(&run), (largest * 2.0, longest * 2));
    assert_eq!(busiest(&run), 2 * calls);
}

#[test]
fn a_tool_with_no_answers_learned_gets_the_floor_as_its_limit() {
    let run = trained();
    let floor = run.settings.spec().volume_floor;
    assert_eq!(
        run.profile
            .response_limit(&run.settings, "db/export_all", run.at),
        Some(floor)
    );
}

#[test]
fn a_first_value_learned_after_the_learning_period_is_taken_as_seen() {
    let mut run = trained();
    run.advance();
    // An approved call of a new tool with a large number: learned as it was, so the same
    // call is not flagged again once the tool has history.
    let arguments = json!({"id": 4711});
    for _ in 0..5 {
        let at = run.at;
        learn(&mut run, "crm/get_invoice", &arguments, at);
        run.at += 120;
    }
    assert_eq!(
        run.profile.baseline().tools["crm/get_invoice"].arguments["id"].largest,
        4711.0
    );
    let assessment = assess(&run, "crm/get_invoice", Some(&arguments), true);
    assert!(
        assessment
            .findings
            .iter()
            .all(|f| f.detector != Detector::ArgumentValue),
        "{assessment:?}"
    );
}
