//! Behavioural baselines: what each agent normally does, and detectors that tell, with
//! numbers, when a call drifts from it.
//!
//! A static scope says what an agent *may* do; a baseline says what it *does*. An agent
//! that reads context and invents requests no one anticipated can stay inside its mandate
//! and still act nothing like itself: a tool it never used, ten times its usual rate, an
//! export a hundred times larger than any before. A [`Profile`] learns, per agent:
//!
//! - which tools it calls and how often, and the shapes of their arguments (top-level keys
//!   and value kinds) with the longest string and largest number seen per argument;
//! - its busiest rate window (calls in `rate_window_seconds`);
//! - which tool follows which within one mandate (tool-call pairs);
//! - the hours of the day (UTC) it works in;
//! - the largest response each tool returned.
//!
//! [`Profile::assess`] compares a call with all of it and returns an [`Assessment`]: each
//! [`Finding`] names its [`Detector`], the [`Mode`] it leads to (observe, step up to the
//! owner, block), a sentence and the numbers behind it. During the learning period
//! (`learning_calls` and `learning_seconds`, both) no detector speaks. After it, a call
//! with findings is not learned unless its owner approves it, so drift never trains the
//! baseline to accept itself.
//!
//! This crate is pure: no clock, no IO. Callers pass the time in [`Call::at`], persist
//! [`Baseline`] (it serializes) and rebuild the recent activity by recording calls again.
//!
//! ```
//! use serde_json::json;
//! use writ_behaviour::{Call, Detector, Profile, Settings, SettingsSpec};
//!
//! let settings = Settings::new(SettingsSpec {
//!     learning_calls: 3,
//!     learning_seconds: 0,
//!     ..SettingsSpec::default()
//! })?;
//! let mut profile = Profile::new();
//! let arguments = json!({"path": "/data/q3.txt"});
//! for at in [100, 200, 300] {
//!     let call = Call { tool: "files/read_file", mandate: "m1", arguments: Some(&arguments), at };
//!     assert!(profile.assess(&settings, &call).findings.is_empty());
//!     profile.record(&settings, &call, true);
//! }
//! let drop = json!({"table": "customers"});
//! let call = Call { tool: "db/drop_table", mandate: "m1", arguments: Some(&drop), at: 400 };
//! let assessment = profile.assess(&settings, &call);
//! assert_eq!(assessment.strongest().map(|f| f.detector), Some(Detector::Destructive));
//! # Ok::<(), writ_behaviour::SettingsError>(())
//! ```

mod profile;
mod settings;

pub use profile::{
    ArgumentProfile, Assessment, Baseline, Call, Finding, Learning, MAX_ARGUMENTS, MAX_MANDATES,
    MAX_SHAPES, MAX_SUCCESSORS, MAX_TOOLS, MAX_WINDOW, Profile, ToolProfile,
};
pub use settings::{
    DEFAULT_DESTRUCTIVE, Detector, MAX_PATTERNS, Mode, Settings, SettingsError, SettingsSpec,
};
