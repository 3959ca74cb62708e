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
//! with findings is recorded as activity ([`Profile::record`]) but not learned
//! ([`Profile::learn`]) unless its owner approves it, so drift never trains the
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
//!     let call = Call { tool: "files/read_file", mandate: "m1", arguments: Some(&arguments), pinned: true, at };
//!     assert!(profile.assess(&settings, &call).findings.is_empty());
//!     let recorded = profile.record(&settings, &call);
//!     profile.learn(&settings, &call, recorded);
//! }
//! let drop = json!({"table": "customers"});
//! let call = Call { tool: "db/drop_table", mandate: "m1", arguments: Some(&drop), pinned: true, at: 400 };
//! let assessment = profile.assess(&settings, &call);
//! assert_eq!(assessment.strongest().map(|f| f.detector), Some(Detector::Destructive));
//! # Ok::<(), writ_behaviour::SettingsError>(())
//! ```

mod profile;
mod settings;

use serde_json::Value;
use writ_scope::{AuthorizationDetail, Constraint};

pub use profile::{
    ArgumentProfile, Assessment, Baseline, Call, Finding, Growth, Learning, MAX_ARGUMENTS,
    MAX_MANDATES, MAX_SHAPES, MAX_SUCCESSORS, MAX_TOOLS, MAX_WINDOW, Profile, Recorded,
    ToolProfile,
};
pub use settings::{
    DEFAULT_DESTRUCTIVE, Detector, MAX_PATTERNS, Mode, Settings, SettingsError, SettingsSpec,
};

/// The longest path segment kept as it is in an HTTP call's name.
const MAX_NAMED_SEGMENT: usize = 32;

/// The name the detectors give a writ's call: `server/tool` for an MCP tool call,
/// `server METHODS path` for an HTTP request, with each path segment that holds a digit
/// or is longer than 32 characters written `{id}`, so `GET /customers/42` and
/// `GET /customers/43` are one route (`crm GET /customers/{id}`), while a wildcard stays
/// what it is (`crm GET /customers/*` is another name); `None` for protocol methods
/// (`initialize`, `tools/list`), which are not tool use. The issuer and the gateway both
/// name calls this way, so a response is judged against the calls it answers.
pub fn tool_name(detail: &AuthorizationDetail) -> Option<String> {
    match detail {
        AuthorizationDetail::McpToolCall { server, tool, .. } => Some(format!("{server}/{tool}")),
        AuthorizationDetail::HttpRequest {
            server,
            methods,
            path,
            ..
        } => {
            let methods: Vec<&str> = methods.iter().map(|method| method.as_str()).collect();
            let path: Vec<&str> = path
                .as_str()
                .split('/')
                .map(|segment| {
                    let wildcard = segment.contains(['*', '?']);
                    if !wildcard
                        && (segment.len() > MAX_NAMED_SEGMENT
                            || segment.bytes().any(|b| b.is_ascii_digit()))
                    {
                        "{id}"
                    } else {
                        segment
                    }
                })
                .collect();
            Some(format!("{server} {} {}", methods.join(","), path.join("/")))
        }
        AuthorizationDetail::McpRequest { .. } => None,
    }
}

/// A writ's call as the detectors see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// Its [`tool_name`].
    pub tool: String,
    /// For an MCP tool call: the exact arguments when pinned, otherwise the constraint
    /// they must meet (`None` for any arguments, and for HTTP requests).
    pub arguments: Option<Value>,
    /// Whether the call is pinned to exact values: arguments by `exact`, an HTTP path
    /// without wildcards.
    pub pinned: bool,
}

impl Described {
    /// The call at `at` under `mandate`.
    pub fn call<'a>(&'a self, mandate: &'a str, at: i64) -> Call<'a> {
        Call {
            tool: &self.tool,
            mandate,
            arguments: self.arguments.as_ref(),
            pinned: self.pinned,
            at,
        }
    }
}

/// [`tool_name`], the call's arguments and whether it is pinned; `None` for protocol
/// methods.
pub fn described(detail: &AuthorizationDetail) -> Option<Described> {
    let (arguments, pinned) = match detail {
        AuthorizationDetail::McpToolCall { arguments, .. } => match arguments {
            Constraint::Exact(value) => (Some(value.clone()), true),
            Constraint::Any => (None, false),
            constrained => (serde_json::to_value(constrained).ok(), false),
        },
        AuthorizationDetail::HttpRequest { path, .. } => {
            (None, !path.as_str().contains(['*', '?']))
        }
        AuthorizationDetail::McpRequest { .. } => return None,
    };
    Some(Described {
        tool: tool_name(detail)?,
        arguments,
        pinned,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn name(detail: serde_json::Value) -> Option<String> {
        tool_name(&serde_json::from_value(detail).unwrap())
    }

    #[test]
    fn calls_are_named_by_tool_and_by_route_template() {
        assert_eq!(
            name(
                serde_json::json!({"type": "mcp_tool_call", "server": "files", "tool": "read_file"})
            ),
            Some("files/read_file".into())
        );
        assert_eq!(
            name(
                serde_json::json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": "/customers/42/orders"})
            ),
            Some("crm GET /customers/{id}/orders".into())
        );
        let long = format!("/export/{}", "x".repeat(40));
        assert_eq!(
            name(
                serde_json::json!({"type": "http_request", "server": "crm", "methods": ["GET"], "path": long})
            ),
            Some("crm GET /export/{id}".into())
        );
        assert_eq!(
            name(
                serde_json::json!({"type": "mcp_request", "server": "files", "methods": ["tools/list"]})
            ),
            None
        );
    }
}
