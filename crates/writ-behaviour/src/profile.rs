//! One agent's baseline, its recent activity, and the detectors that compare a call with
//! them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::{Detector, Mode, Settings};

/// Most tools one baseline learns; calls of further tools stay new.
pub const MAX_TOOLS: usize = 1024;
/// Most argument shapes learned per tool.
pub const MAX_SHAPES: usize = 64;
/// Most arguments learned per tool.
pub const MAX_ARGUMENTS: usize = 64;
/// Most successors learned per tool.
pub const MAX_SUCCESSORS: usize = 64;
/// Most calls the rate window counts; a fuller window counts as this many.
pub const MAX_WINDOW: usize = 65_536;
/// Most mandates whose last call is remembered for sequences.
pub const MAX_MANDATES: usize = 256;
/// How deep argument values are searched for destructive patterns; deeper is a finding.
const MAX_SCAN_DEPTH: usize = 16;
/// How many strings of one call are searched for destructive patterns; more is a finding.
const MAX_SCAN_STRINGS: usize = 1024;
/// The longest argument name learned, in bytes; longer names are cut.
const MAX_KEY: usize = 64;
/// The longest shape learned, in bytes; longer shapes are cut.
const MAX_SHAPE: usize = 512;
/// The shape of arguments that are constrained rather than pinned.
const CONSTRAINED: &str = "constrained";

/// One call as the detectors see it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The tool, as `server/tool` for MCP or `server METHOD path` for HTTP.
    pub tool: &'a str,
    /// The mandate it is made under, for sequences.
    pub mandate: &'a str,
    /// Its arguments: the exact values when `pinned`, otherwise the constraint they must
    /// meet (searched for destructive patterns only).
    pub arguments: Option<&'a Value>,
    /// Whether the call is pinned to exact values: its arguments (`exact`) and its HTTP
    /// path (no wildcard). Only pinned arguments can be compared with the baseline.
    pub pinned: bool,
    /// When, Unix seconds.
    pub at: i64,
}

/// What an agent normally does, learned from its audited calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Calls learned.
    pub calls: u64,
    /// The first learned call, Unix seconds.
    pub first_call: Option<i64>,
    /// The last learned call, Unix seconds.
    pub last_call: Option<i64>,
    /// Per tool.
    pub tools: BTreeMap<String, ToolProfile>,
    /// Tool → the tools that followed it within one mandate, with counts.
    pub sequences: BTreeMap<String, BTreeMap<String, u64>>,
    /// Learned calls per hour of the day, UTC.
    pub hours: [u64; 24],
    /// The most calls in one rate window.
    pub busiest_window: u32,
    /// How `busiest_window` has risen since the learning period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_growth: Option<Growth<u32>>,
}

/// A learned extreme's current growth window after the learning period: when it opened
/// and the largest value learned since. When the window closes the extreme rises to the
/// peak, at most twofold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Growth<T> {
    /// When the window opened, Unix seconds.
    pub since: i64,
    /// The largest value learned in it.
    pub peak: T,
}

/// What one tool's calls look like.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolProfile {
    /// Calls learned.
    pub calls: u64,
    /// Argument shapes (keys and value kinds), with counts.
    pub shapes: BTreeMap<String, u64>,
    /// Per top-level argument.
    pub arguments: BTreeMap<String, ArgumentProfile>,
    /// Destructive patterns this tool's approved calls matched.
    pub destructive: BTreeSet<String>,
    /// Responses learned.
    pub responses: u64,
    /// The largest response, in bytes.
    pub largest_response: u64,
    /// How `largest_response` has risen since the learning period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_growth: Option<Growth<u64>>,
}

/// The extremes of one argument.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentProfile {
    /// The longest string, in characters.
    pub longest: usize,
    /// The largest absolute number.
    pub largest: f64,
    /// How `longest` has risen since the learning period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_growth: Option<Growth<usize>>,
    /// How `largest` has risen since the learning period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_growth: Option<Growth<f64>>,
}

/// One detector's finding, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Which detector.
    pub detector: Detector,
    /// What it leads to.
    pub mode: Mode,
    /// A sentence with the numbers.
    pub message: String,
    /// What this call showed.
    pub observed: f64,
    /// The baseline's figure it was compared with.
    pub baseline: f64,
    /// The limit it crossed.
    pub threshold: f64,
}

/// Where a baseline stands in its learning period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learning {
    /// Calls learned.
    pub calls: u64,
    /// Calls needed.
    pub calls_needed: u64,
    /// Seconds since the first learned call.
    pub seconds: i64,
    /// Seconds needed.
    pub seconds_needed: i64,
}

/// The detectors' answer for one call or response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Set while the baseline is still learning; no detector speaks then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<Learning>,
    /// Every finding, strongest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

impl Assessment {
    /// The strongest finding's mode; `None` when nothing was found.
    pub fn mode(&self) -> Option<Mode> {
        self.findings.iter().map(|finding| finding.mode).max()
    }

    /// The strongest finding.
    pub fn strongest(&self) -> Option<&Finding> {
        self.findings.first()
    }

    fn push(
        &mut self,
        settings: &Settings,
        detector: Detector,
        numbers: [f64; 3],
        message: String,
    ) {
        let [observed, baseline, threshold] = numbers;
        self.findings.push(Finding {
            detector,
            mode: settings.mode(detector),
            message,
            observed,
            baseline,
            threshold,
        });
    }

    fn sort(&mut self) {
        self.findings
            .sort_by(|a, b| b.mode.cmp(&a.mode).then(a.detector.cmp(&b.detector)));
    }
}

/// What [`Profile::record`] saw, for [`Profile::learn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    in_window: u32,
    previous: Option<String>,
}

/// One agent: its baseline and its recent activity (the rate window and, per mandate, the
/// last tool called). The activity is rebuilt by recording the same calls again.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    baseline: Baseline,
    window: VecDeque<i64>,
    last_tool: HashMap<String, String>,
    mandates: VecDeque<String>,
}

impl Profile {
    /// A profile that has learned nothing.
    pub fn new() -> Profile {
        Profile::default()
    }

    /// A profile over a stored baseline, with no recent activity.
    pub fn from_baseline(baseline: Baseline) -> Profile {
        Profile {
            baseline,
            ..Profile::default()
        }
    }

    /// The baseline.
    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// Where the learning period stands at `now`; `None` once it is over.
    pub fn learning(&self, settings: &Settings, now: i64) -> Option<Learning> {
        let spec = settings.spec();
        let seconds = self
            .baseline
            .first_call
            .map_or(0, |first| now.saturating_sub(first).max(0));
        if self.baseline.calls >= spec.learning_calls && seconds >= spec.learning_seconds {
            return None;
        }
        Some(Learning {
            calls: self.baseline.calls,
            calls_needed: spec.learning_calls,
            seconds,
            seconds_needed: spec.learning_seconds,
        })
    }

    /// Compares `call` with the baseline and the recent activity. Changes nothing.
    pub fn assess(&self, settings: &Settings, call: &Call<'_>) -> Assessment {
        let mut assessment = Assessment {
            learning: self.learning(settings, call.at),
            findings: Vec::new(),
        };
        if assessment.learning.is_some() {
            return assessment;
        }
        let spec = settings.spec();
        let baseline = &self.baseline;

        // A tool never called.
        let tool = baseline.tools.get(call.tool);
        if tool.is_none() {
            assessment.push(
                settings,
                Detector::NewTool,
                [0.0, baseline.tools.len() as f64, 1.0],
                format!(
                    "`{}` was never called by this agent, which called {} tools over {} calls",
                    call.tool,
                    baseline.tools.len(),
                    baseline.calls
                ),
            );
        }

        // A destructive pattern in the tool name or an argument, never approved for it; or
        // arguments too large to search.
        let learned = tool.map(|tool| &tool.destructive);
        let scanned = destructive(settings, call);
        if let Some((pattern, place)) = scanned
            .matches
            .iter()
            .find(|(pattern, _)| !learned.is_some_and(|learned| learned.contains(*pattern)))
        {
            assessment.push(
                settings,
                Detector::Destructive,
                [scanned.matches.len() as f64, 0.0, 1.0],
                format!(
                    "{place} matches the destructive pattern `{pattern}`, never seen for `{}`",
                    call.tool
                ),
            );
        } else if scanned.incomplete {
            assessment.push(
                settings,
                Detector::Destructive,
                [MAX_SCAN_STRINGS as f64, 0.0, MAX_SCAN_STRINGS as f64],
                format!(
                    "the arguments hold more than {MAX_SCAN_STRINGS} strings or nest deeper than {MAX_SCAN_DEPTH} levels, so they could not all be searched for destructive patterns"
                ),
            );
        }

        // More calls in the window than the busiest window of the baseline allows.
        let in_window = self.in_window(settings, call.at).saturating_add(1);
        let threshold =
            (f64::from(baseline.busiest_window) * spec.rate_factor).max(f64::from(spec.rate_floor));
        if f64::from(in_window) > threshold {
            assessment.push(
                settings,
                Detector::RateSpike,
                [f64::from(in_window), f64::from(baseline.busiest_window), threshold],
                format!(
                    "{in_window} calls in the last {window} s; the baseline's busiest {window} s held {busiest} (limit {threshold:.0}, {factor}x)",
                    window = spec.rate_window_seconds,
                    busiest = baseline.busiest_window,
                    factor = spec.rate_factor,
                ),
            );
        }

        // Arguments: pinned to exact values, their shape, then each value's size.
        if !call.pinned {
            assessment.push(
                settings,
                Detector::ArgumentShape,
                [0.0, 1.0, 1.0],
                format!(
                    "the call to `{}` is constrained rather than pinned to exact values, so it cannot be compared with the baseline",
                    call.tool
                ),
            );
        } else if let Some(tool) = tool.filter(|tool| tool.calls >= spec.min_tool_calls) {
            let shape = shape(call);
            if !tool.shapes.contains_key(&shape) {
                assessment.push(
                    settings,
                    Detector::ArgumentShape,
                    [0.0, tool.shapes.len() as f64, 1.0],
                    format!(
                        "arguments {shape} were never seen for `{}`, which had {} shapes over {} calls",
                        call.tool,
                        tool.shapes.len(),
                        tool.calls
                    ),
                );
            }
            if let Some(finding) = unusual_value(settings, tool, call.arguments) {
                assessment.push(settings, Detector::ArgumentValue, finding.0, finding.1);
            }
        }

        // An hour of the day the agent never worked in.
        let hour = hour_of(call.at);
        if baseline.hours.get(hour).is_some_and(|count| *count == 0) {
            assessment.push(
                settings,
                Detector::UnusualHour,
                [hour as f64, 0.0, 1.0],
                format!(
                    "no call of the baseline's {} fell between {hour:02}:00 and {hour:02}:59 UTC",
                    baseline.calls
                ),
            );
        }

        // A pair of consecutive calls never seen in that order (new tools are reported as
        // such, not again as a sequence).
        if let (Some(previous), Some(_)) = (self.last_tool.get(call.mandate), tool) {
            let followers = baseline.sequences.get(previous);
            if !followers.is_some_and(|followers| followers.contains_key(call.tool)) {
                let known = followers.map_or(0, BTreeMap::len);
                assessment.push(
                    settings,
                    Detector::UnusualSequence,
                    [0.0, known as f64, 1.0],
                    format!(
                        "`{}` never followed `{previous}` in the baseline, which saw {known} tools follow it",
                        call.tool
                    ),
                );
            }
        }

        assessment.sort();
        assessment
    }

    /// Records `call` in the recent activity: the rate window and its mandate's last tool.
    /// Done as soon as a call is let through, so concurrent calls count against each
    /// other; [`Profile::learn`] follows once the call is on record.
    pub fn record(&mut self, settings: &Settings, call: &Call<'_>) -> Recorded {
        let spec = settings.spec();
        let in_window = self.in_window(settings, call.at).saturating_add(1);
        let horizon = call.at.saturating_sub(spec.rate_window_seconds);
        while self.window.front().is_some_and(|at| *at <= horizon) {
            self.window.pop_front();
        }
        if self.window.len() >= MAX_WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(call.at);
        Recorded {
            in_window,
            previous: self.remember(call),
        }
    }

    /// Learns a recorded call into the baseline: one without findings, or one its owner
    /// approved.
    pub fn learn(&mut self, settings: &Settings, call: &Call<'_>, recorded: Recorded) {
        let spec = settings.spec();
        let Recorded {
            in_window,
            previous,
        } = recorded;
        let learning = self.learning(settings, call.at).is_some();
        let baseline = &mut self.baseline;
        baseline.calls = baseline.calls.saturating_add(1);
        baseline.first_call.get_or_insert(call.at);
        baseline.last_call = Some(baseline.last_call.map_or(call.at, |last| last.max(call.at)));
        if let Some(count) = baseline.hours.get_mut(hour_of(call.at)) {
            *count = count.saturating_add(1);
        }
        // While learning, the busiest window is whatever was seen; after, it grows like
        // every learned extreme, so a burst cannot teach the baseline to accept itself
        // while a steadily growing workload still can.
        baseline.busiest_window = raise(
            baseline.busiest_window,
            in_window,
            learning,
            &mut baseline.busiest_growth,
            (call.at, spec.growth_window_seconds),
        );
        if let Some(previous) = previous {
            learn_sequence(baseline, previous, call.tool);
        }
        if !baseline.tools.contains_key(call.tool) && baseline.tools.len() >= MAX_TOOLS {
            return;
        }
        let tool = baseline.tools.entry(call.tool.to_owned()).or_default();
        tool.calls = tool.calls.saturating_add(1);
        let shape = shape(call);
        if let Some(count) = tool.shapes.get_mut(&shape) {
            *count = count.saturating_add(1);
        } else if tool.shapes.len() < MAX_SHAPES {
            tool.shapes.insert(shape, 1);
        }
        if call.pinned
            && let Some(Value::Object(members)) = call.arguments
        {
            for (key, value) in members {
                let Some(size) = size_of(value) else { continue };
                let key = cut(key, MAX_KEY);
                if !tool.arguments.contains_key(key) && tool.arguments.len() >= MAX_ARGUMENTS {
                    continue;
                }
                let argument = tool.arguments.entry(key.to_owned()).or_default();
                let window = spec.growth_window_seconds;
                match size {
                    Size::Length(length) => {
                        argument.longest = raise(
                            argument.longest,
                            length,
                            learning,
                            &mut argument.longest_growth,
                            (call.at, window),
                        );
                    }
                    Size::Magnitude(magnitude) => {
                        argument.largest = raise(
                            argument.largest,
                            magnitude,
                            learning,
                            &mut argument.largest_growth,
                            (call.at, window),
                        );
                    }
                }
            }
        }
        for (pattern, _) in destructive(settings, call).matches {
            tool.destructive.insert(pattern.to_owned());
        }
    }

    /// The largest response `tool` may return at `at` before it is a bulk export: `None`
    /// while learning; `volume_floor` for a tool with fewer than `min_tool_calls`
    /// responses learned.
    pub fn response_limit(&self, settings: &Settings, tool: &str, at: i64) -> Option<u64> {
        if self.learning(settings, at).is_some() {
            return None;
        }
        let spec = settings.spec();
        // A tool with too few responses learned (or none at all) gets the floor.
        let Some(profile) = self
            .baseline
            .tools
            .get(tool)
            .filter(|profile| profile.responses >= spec.min_tool_calls)
        else {
            return Some(spec.volume_floor);
        };
        let limit = (profile.largest_response as f64 * spec.volume_factor)
            .max(spec.volume_floor as f64)
            .min(u64::MAX as f64);
        // In range by the clamp above; the fraction is dropped.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped"
        )]
        Some(limit as u64)
    }

    /// Every known tool's response limit at `at` (see [`Profile::response_limit`]); `None`
    /// while learning. Tools not listed get `volume_floor`.
    pub fn response_limits(&self, settings: &Settings, at: i64) -> Option<BTreeMap<String, u64>> {
        if self.learning(settings, at).is_some() {
            return None;
        }
        Some(
            self.baseline
                .tools
                .keys()
                .filter_map(|tool| Some((tool.clone(), self.response_limit(settings, tool, at)?)))
                .collect(),
        )
    }

    /// Compares a response of `bytes` from `tool` with the largest seen for it.
    pub fn assess_response(
        &self,
        settings: &Settings,
        tool: &str,
        bytes: u64,
        at: i64,
    ) -> Assessment {
        let mut assessment = Assessment {
            learning: self.learning(settings, at),
            findings: Vec::new(),
        };
        let Some(limit) = self.response_limit(settings, tool, at) else {
            return assessment;
        };
        if bytes > limit {
            let spec = settings.spec();
            let (largest, responses) = self.baseline.tools.get(tool).map_or((0, 0), |profile| {
                (profile.largest_response, profile.responses)
            });
            assessment.push(
                settings,
                Detector::ResponseVolume,
                [bytes as f64, largest as f64, limit as f64],
                format!(
                    "a response of {bytes} bytes from `{tool}`, whose largest was {largest} bytes over {responses} responses (limit {limit}, {}x)",
                    spec.volume_factor
                ),
            );
        }
        assessment
    }

    /// Learns a response of `bytes` from `tool` at `at`, a tool the baseline knows. After
    /// the learning period the largest response rises at most twofold per growth window,
    /// to the largest of the window before.
    pub fn record_response(&mut self, settings: &Settings, tool: &str, bytes: u64, at: i64) {
        let learning = self.learning(settings, at).is_some();
        let window = settings.spec().growth_window_seconds;
        if let Some(profile) = self.baseline.tools.get_mut(tool) {
            profile.responses = profile.responses.saturating_add(1);
            profile.largest_response = raise(
                profile.largest_response,
                bytes,
                learning,
                &mut profile.response_growth,
                (at, window),
            );
        }
    }

    /// Calls recorded within the rate window ending at `at`.
    fn in_window(&self, settings: &Settings, at: i64) -> u32 {
        let horizon = at.saturating_sub(settings.spec().rate_window_seconds);
        let count = self
            .window
            .iter()
            .rev()
            .take_while(|t| **t > horizon)
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Makes `call` its mandate's last call; returns the one before.
    fn remember(&mut self, call: &Call<'_>) -> Option<String> {
        if let Some(last) = self.last_tool.get_mut(call.mandate) {
            return Some(std::mem::replace(last, call.tool.to_owned()));
        }
        if self.mandates.len() >= MAX_MANDATES
            && let Some(oldest) = self.mandates.pop_front()
        {
            self.last_tool.remove(&oldest);
        }
        self.mandates.push_back(call.mandate.to_owned());
        self.last_tool
            .insert(call.mandate.to_owned(), call.tool.to_owned());
        None
    }
}

fn learn_sequence(baseline: &mut Baseline, previous: String, tool: &str) {
    if !baseline.sequences.contains_key(&previous) && baseline.sequences.len() >= MAX_TOOLS {
        return;
    }
    let followers = baseline.sequences.entry(previous).or_default();
    if let Some(count) = followers.get_mut(tool) {
        *count = count.saturating_add(1);
    } else if followers.len() < MAX_SUCCESSORS {
        followers.insert(tool.to_owned(), 1);
    }
}

/// The hour of the day, UTC, of a Unix time.
fn hour_of(at: i64) -> usize {
    usize::try_from(at.rem_euclid(86_400) / 3_600).unwrap_or(0)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The arguments' top-level keys and value kinds, as `{key:kind,...}` in key order
/// (cut at [`MAX_SHAPE`] bytes, names at [`MAX_KEY`]); `constrained` for arguments that
/// are not pinned.
fn shape(call: &Call<'_>) -> String {
    if !call.pinned {
        return CONSTRAINED.to_owned();
    }
    match call.arguments {
        None => "none".to_owned(),
        Some(Value::Object(members)) => {
            let mut pairs: Vec<(&str, &str)> = members
                .iter()
                .map(|(key, value)| (cut(key, MAX_KEY), kind(value)))
                .collect();
            pairs.sort_unstable();
            let mut shape = String::from("{");
            for (position, (key, kind)) in pairs.into_iter().enumerate() {
                if position > 0 {
                    shape.push(',');
                }
                shape.push_str(key);
                shape.push(':');
                shape.push_str(kind);
            }
            shape.push('}');
            cut(&shape, MAX_SHAPE).to_owned()
        }
        Some(other) => kind(other).to_owned(),
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or(text)
}

/// A quantity a learned extreme measures, which can be doubled.
trait Extreme: PartialOrd + Copy + Default {
    /// Twice `self`, and at least one.
    fn doubled(self) -> Self;
}

macro_rules! integer_extreme {
    ($($integer:ty),*) => {$(
        impl Extreme for $integer {
            fn doubled(self) -> Self {
                self.saturating_mul(2).max(1)
            }
        }
    )*};
}

integer_extreme!(u32, u64, usize);

impl Extreme for f64 {
    fn doubled(self) -> Self {
        (self * 2.0).max(1.0)
    }
}

/// A learned extreme after seeing `value`. While learning, and for a first observation
/// (nothing to grow from yet), whatever was seen. After, the extreme holds still for a
/// growth window of `window` seconds while the window's peak is noted; the next value
/// after the window closes raises the extreme to that peak, at most twofold. A burst
/// cannot raise its own limit, and a series of calls each just under its limit cannot
/// raise it without bound, while a workload that grows steadily is followed.
fn raise<T: Extreme>(
    old: T,
    value: T,
    learning: bool,
    growth: &mut Option<Growth<T>>,
    (at, window): (i64, i64),
) -> T {
    if learning || growth.is_none() && old == T::default() {
        return if value > old { value } else { old };
    }
    let open = growth.get_or_insert(Growth {
        since: at,
        peak: old,
    });
    let mut current = old;
    if at.saturating_sub(open.since) >= window {
        let cap = old.doubled();
        if open.peak > current {
            current = if open.peak < cap { open.peak } else { cap };
        }
        *open = Growth {
            since: at,
            peak: current,
        };
    }
    if value > open.peak {
        open.peak = value;
    }
    current
}

enum Size {
    Length(usize),
    Magnitude(f64),
}

fn size_of(value: &Value) -> Option<Size> {
    match value {
        Value::String(text) => Some(Size::Length(text.chars().count())),
        Value::Number(number) => number.as_f64().map(|n| Size::Magnitude(n.abs())),
        _ => None,
    }
}

/// The first top-level argument far beyond its baseline: its numbers and sentence.
fn unusual_value(
    settings: &Settings,
    tool: &ToolProfile,
    arguments: Option<&Value>,
) -> Option<([f64; 3], String)> {
    let spec = settings.spec();
    let Some(Value::Object(members)) = arguments else {
        return None;
    };
    for (key, value) in members {
        let (Some(profile), Some(size)) = (tool.arguments.get(cut(key, MAX_KEY)), size_of(value))
        else {
            continue;
        };
        match size {
            Size::Magnitude(magnitude) => {
                let threshold = profile.largest.max(1.0) * spec.number_factor;
                if magnitude > threshold {
                    return Some((
                        [magnitude, profile.largest, threshold],
                        format!(
                            "`{key}` is {magnitude}, and the largest seen was {} (limit {threshold}, {}x)",
                            profile.largest, spec.number_factor
                        ),
                    ));
                }
            }
            Size::Length(length) => {
                let threshold =
                    (profile.longest as f64 * spec.length_factor).max(spec.length_floor as f64);
                if length as f64 > threshold {
                    return Some((
                        [length as f64, profile.longest as f64, threshold],
                        format!(
                            "`{key}` is {length} characters long, and the longest seen was {} (limit {threshold:.0}, {}x)",
                            profile.longest, spec.length_factor
                        ),
                    ));
                }
            }
        }
    }
    None
}

/// What a search for destructive patterns found.
struct Scanned<'s> {
    /// Each pattern matched, with where (the first place for each).
    matches: Vec<(&'s str, String)>,
    /// Whether the search stopped short of every string.
    incomplete: bool,
}

/// Every destructive pattern the call's name (each word of its tool name, HTTP methods and
/// path) or its argument strings match.
fn destructive<'s>(settings: &'s Settings, call: &Call<'_>) -> Scanned<'s> {
    let mut scanned = Scanned {
        matches: Vec::new(),
        incomplete: false,
    };
    let add = |pattern: &'s str, place: String, matches: &mut Vec<(&'s str, String)>| {
        if !matches.iter().any(|(seen, _)| *seen == pattern) {
            matches.push((pattern, place));
        }
    };
    // `files/drop_table`, `crm DELETE /customers/{id}`: the name after the server, with
    // camelCase split into words (`deleteFile` is `delete File`).
    let name = call
        .tool
        .split_once(['/', ' '])
        .map_or(call.tool, |(_, rest)| rest);
    for pattern in settings.destructive_matches(&words(name)) {
        add(pattern, format!("the call `{name}`"), &mut scanned.matches);
    }
    let mut budget = MAX_SCAN_STRINGS;
    if let Some(arguments) = call.arguments {
        let mut path = Vec::new();
        scan(
            settings,
            arguments,
            &mut path,
            &mut budget,
            &mut |pattern, path| {
                let pointer: String = path.iter().map(|segment| format!("/{segment}")).collect();
                add(
                    pattern,
                    format!("argument `{}`", display_pointer(&pointer)),
                    &mut scanned.matches,
                );
            },
            &mut scanned.incomplete,
        );
    }
    scanned
}

/// `text` with a space before each capital that follows a lower-case letter or a digit
/// (`deleteFile` is `delete File`), applied to names and argument strings alike.
/// Borrowed when there is nothing to split, so plain strings cost no allocation.
fn words(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut previous_lower = false;
    for (at, c) in text.char_indices() {
        if c.is_uppercase() && previous_lower {
            out.get_or_insert_with(|| {
                let mut out = String::with_capacity(text.len() + 8);
                out.push_str(text.get(..at).unwrap_or_default());
                out
            })
            .push(' ');
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        if let Some(out) = &mut out {
            out.push(c);
        }
    }
    out.map_or(std::borrow::Cow::Borrowed(text), std::borrow::Cow::Owned)
}

/// Searches every string depth first, calling `found` with each pattern matched and the
/// path to it; sets `incomplete` when the budget or the depth runs out.
fn scan<'s, 'v>(
    settings: &'s Settings,
    value: &'v Value,
    path: &mut Vec<&'v str>,
    budget: &mut usize,
    found: &mut dyn FnMut(&'s str, &[&'v str]),
    incomplete: &mut bool,
) {
    if path.len() > MAX_SCAN_DEPTH || *budget == 0 {
        *incomplete = true;
        return;
    }
    match value {
        Value::String(text) => {
            *budget -= 1;
            for pattern in settings.destructive_matches(&words(text)) {
                found(pattern, path);
            }
        }
        Value::Array(items) => {
            for item in items {
                path.push("*");
                scan(settings, item, path, budget, found, incomplete);
                path.pop();
            }
        }
        Value::Object(members) => {
            for (key, item) in members {
                // A destructive word may be the key itself (`{"drop": "customers"}`).
                for pattern in settings.destructive_matches(&words(key)) {
                    found(pattern, path);
                }
                path.push(key);
                scan(settings, item, path, budget, found, incomplete);
                path.pop();
            }
        }
        _ => {}
    }
}

fn display_pointer(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}
