//! What the detectors look for, how strict they are, and what each finding leads to.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// The patterns a destructive operation matches by default, in tool names and argument
/// values, case-insensitively.
pub const DEFAULT_DESTRUCTIVE: &[&str] = &[
    r"\bdrop\b",
    r"\btruncate\b",
    r"\bdelete\b",
    r"\bdestroy\b",
    r"\bwipe\b",
    r"\bpurge\b",
    r"\brm\s+-[a-z]*r",
    r"(^|_)drop(_|$)",
    r"(^|_)delete(_|$)",
];

/// The most destructive patterns a configuration may list.
pub const MAX_PATTERNS: usize = 64;

/// The longest growth window a configuration may set: a year.
const MAX_GROWTH_WINDOW: i64 = 365 * 86_400;

/// One detector: each explains its finding with numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    // In order of precedence among findings of one mode: what destroys or exports first.
    /// A tool name or argument value matching a destructive pattern never seen for this tool.
    Destructive,
    /// A response far larger than any seen for this tool (a bulk export).
    ResponseVolume,
    /// More calls in the rate window than the baseline's busiest window allows.
    RateSpike,
    /// A number or string length far beyond what was seen for this argument.
    ArgumentValue,
    /// Arguments with keys or value kinds never seen for this tool.
    ArgumentShape,
    /// A pair of consecutive calls within one mandate never seen in that order.
    UnusualSequence,
    /// A tool this agent never called.
    NewTool,
    /// A call in an hour of the day (UTC) the agent never worked in.
    UnusualHour,
}

impl Detector {
    /// Every detector, in order of precedence.
    pub const ALL: [Detector; 8] = [
        Detector::Destructive,
        Detector::ResponseVolume,
        Detector::RateSpike,
        Detector::ArgumentValue,
        Detector::ArgumentShape,
        Detector::UnusualSequence,
        Detector::NewTool,
        Detector::UnusualHour,
    ];

    /// The stable code, as in audit records and denials.
    pub fn code(self) -> &'static str {
        match self {
            Detector::NewTool => "new_tool",
            Detector::RateSpike => "rate_spike",
            Detector::ArgumentShape => "argument_shape",
            Detector::ArgumentValue => "argument_value",
            Detector::Destructive => "destructive",
            Detector::ResponseVolume => "response_volume",
            Detector::UnusualHour => "unusual_hour",
            Detector::UnusualSequence => "unusual_sequence",
        }
    }

    /// What the detector found, in words without its numbers: what an agent is told,
    /// while the numbers go to the audit log.
    pub fn summary(self) -> &'static str {
        match self {
            Detector::NewTool => "a tool this agent never called",
            Detector::RateSpike => "more calls in a window than its baseline allows",
            Detector::ArgumentShape => "arguments unlike any its baseline holds for this tool",
            Detector::ArgumentValue => "an argument far beyond any seen for this tool",
            Detector::Destructive => "a destructive operation never approved for this tool",
            Detector::ResponseVolume => "an answer far larger than any this tool gave",
            Detector::UnusualHour => "an hour of the day this agent never works in",
            Detector::UnusualSequence => "a sequence of calls its baseline never saw",
        }
    }

    /// The mode a finding of this detector leads to unless configured otherwise: block what
    /// destroys or floods, ask the owner about what is merely new, record the hour.
    fn default_mode(self) -> Mode {
        match self {
            Detector::Destructive | Detector::RateSpike | Detector::ResponseVolume => Mode::Block,
            Detector::NewTool
            | Detector::ArgumentShape
            | Detector::ArgumentValue
            | Detector::UnusualSequence => Mode::StepUp,
            Detector::UnusualHour => Mode::Observe,
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What a finding leads to. Ordered by strength: a call's mode is its strongest finding's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Record the finding; the call proceeds.
    Observe,
    /// Hold the call until the agent's owner approves it.
    StepUp,
    /// Refuse the call.
    Block,
}

impl Mode {
    /// The stable name, as in configuration and audit records.
    pub fn code(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::StepUp => "step_up",
            Mode::Block => "block",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The configuration as written (TOML or JSON); [`Settings::new`] checks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsSpec {
    /// Calls a baseline learns from before any detector speaks.
    pub learning_calls: u64,
    /// Seconds between a baseline's first call and enforcement.
    pub learning_seconds: i64,
    /// The rate window, in seconds.
    pub rate_window_seconds: i64,
    /// After the learning period, each learned extreme (the busiest rate window, the
    /// largest answer of a tool, the largest number and longest string of an argument)
    /// rises at most twofold per this many seconds; at least `rate_window_seconds`.
    pub growth_window_seconds: i64,
    /// A window holding more than this many times the baseline's busiest window is a spike.
    pub rate_factor: f64,
    /// A window holding no more calls than this is never a spike.
    pub rate_floor: u32,
    /// A number more than this many times the largest seen for its argument is unusual.
    pub number_factor: f64,
    /// A string more than this many times the longest seen for its argument is unusual.
    pub length_factor: f64,
    /// Strings no longer than this are never unusual for their length.
    pub length_floor: usize,
    /// Calls of a tool before its argument shapes and values are judged.
    pub min_tool_calls: u64,
    /// A response more than this many times the largest seen for its tool is a bulk export.
    pub volume_factor: f64,
    /// Responses no larger than this many bytes are never a bulk export.
    pub volume_floor: u64,
    /// Regular expressions (case-insensitive) a destructive tool name or argument matches.
    pub destructive: Vec<String>,
    /// The mode of every detector not listed in `modes`.
    pub mode: Option<Mode>,
    /// A mode per detector.
    pub modes: BTreeMap<Detector, Mode>,
}

impl Default for SettingsSpec {
    fn default() -> Self {
        SettingsSpec {
            learning_calls: 200,
            learning_seconds: 7 * 86_400,
            rate_window_seconds: 60,
            growth_window_seconds: 86_400,
            rate_factor: 3.0,
            rate_floor: 10,
            number_factor: 10.0,
            length_factor: 4.0,
            length_floor: 64,
            min_tool_calls: 5,
            volume_factor: 10.0,
            volume_floor: 64 * 1024,
            destructive: DEFAULT_DESTRUCTIVE
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            mode: None,
            modes: BTreeMap::new(),
        }
    }
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    spec: SettingsSpec,
    destructive: RegexSet,
}

/// The configuration cannot be used. The operator's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A number out of its range.
    #[error("`{field}` must be {rule}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// A destructive pattern is not a regular expression.
    #[error("destructive pattern `{pattern}` is invalid: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// Too many destructive patterns.
    #[error("at most {MAX_PATTERNS} destructive patterns")]
    TooManyPatterns,
}

impl Settings {
    /// Checks `spec`: factors above 1, a positive window, valid patterns.
    pub fn new(spec: SettingsSpec) -> Result<Settings, SettingsError> {
        let range = |ok: bool, field: &'static str, rule: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(SettingsError::OutOfRange { field, rule })
            }
        };
        range(
            (1..=86_400).contains(&spec.rate_window_seconds),
            "rate_window_seconds",
            "between 1 and 86400",
        )?;
        // A growth window shorter than the rate window would let a burst raise its own
        // limit while it lasts.
        range(
            (spec.rate_window_seconds..=MAX_GROWTH_WINDOW).contains(&spec.growth_window_seconds),
            "growth_window_seconds",
            "at least rate_window_seconds and at most 31536000",
        )?;
        range(
            spec.learning_seconds >= 0,
            "learning_seconds",
            "zero or more",
        )?;
        for (field, factor) in [
            ("rate_factor", spec.rate_factor),
            ("number_factor", spec.number_factor),
            ("length_factor", spec.length_factor),
            ("volume_factor", spec.volume_factor),
        ] {
            range(
                factor.is_finite() && factor >= 1.0,
                field,
                "a finite number of at least 1",
            )?;
        }
        if spec.destructive.len() > MAX_PATTERNS {
            return Err(SettingsError::TooManyPatterns);
        }
        for pattern in &spec.destructive {
            Regex::new(pattern).map_err(|e| SettingsError::Pattern {
                pattern: pattern.clone(),
                reason: e.to_string(),
            })?;
        }
        let destructive = RegexSetBuilder::new(&spec.destructive)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| SettingsError::Pattern {
                pattern: spec.destructive.join(" "),
                reason: e.to_string(),
            })?;
        Ok(Settings { spec, destructive })
    }

    /// The settings as configured.
    pub fn spec(&self) -> &SettingsSpec {
        &self.spec
    }

    /// The mode a finding of `detector` leads to.
    pub fn mode(&self, detector: Detector) -> Mode {
        self.spec
            .modes
            .get(&detector)
            .copied()
            .or(self.spec.mode)
            .unwrap_or_else(|| detector.default_mode())
    }

    /// Every destructive pattern `text` matches.
    pub(crate) fn destructive_matches(&self, text: &str) -> Vec<&str> {
        self.destructive
            .matches(text)
            .into_iter()
            .filter_map(|index| self.spec.destructive.get(index).map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn default_patterns_compile_and_match_destructive_operations() {
        let settings = Settings::new(SettingsSpec::default()).unwrap();
        for text in [
            "DROP TABLE customers",
            "drop_table",
            "rm -rf /",
            "delete_all",
        ] {
            assert!(!settings.destructive_matches(text).is_empty(), "{text}");
        }
        for text in ["read_file", "dropbox sync", "list_deleted_count"] {
            assert!(settings.destructive_matches(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn modes_fall_back_from_detector_to_default_to_built_in() {
        let mut spec = SettingsSpec::default();
        let settings = Settings::new(spec.clone()).unwrap();
        assert_eq!(settings.mode(Detector::Destructive), Mode::Block);
        assert_eq!(settings.mode(Detector::NewTool), Mode::StepUp);
        spec.mode = Some(Mode::Observe);
        spec.modes.insert(Detector::NewTool, Mode::Block);
        let settings = Settings::new(spec).unwrap();
        assert_eq!(settings.mode(Detector::Destructive), Mode::Observe);
        assert_eq!(settings.mode(Detector::NewTool), Mode::Block);
    }

    #[test]
    fn bad_settings_are_refused_with_the_field() {
        let spec = SettingsSpec {
            rate_factor: 0.5,
            ..SettingsSpec::default()
        };
        assert_eq!(
            Settings::new(spec).unwrap_err().to_string(),
            "`rate_factor` must be a finite number of at least 1"
        );
        for growth in [0, 59, 366 * 86_400] {
            let spec = SettingsSpec {
                growth_window_seconds: growth,
                ..SettingsSpec::default()
            };
            assert_eq!(
                Settings::new(spec).unwrap_err().to_string(),
                "`growth_window_seconds` must be at least rate_window_seconds and at most 31536000"
            );
        }
        let spec = SettingsSpec {
            growth_window_seconds: 60,
            ..SettingsSpec::default()
        };
        assert!(Settings::new(spec).is_ok());
        let spec = SettingsSpec {
            destructive: vec!["(unclosed".into()],
            ..SettingsSpec::default()
        };
        assert!(matches!(
            Settings::new(spec),
            Err(SettingsError::Pattern { .. })
        ));
    }
}
