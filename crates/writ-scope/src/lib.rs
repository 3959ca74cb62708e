//! Argument constraints, attenuation and RFC 9396 authorization details for Writ.
//!
//! A mandate grants an agent a list of [`AuthorizationDetail`]s ([`Grants`]); a writ allows
//! exactly one; the gateway checks each real [`Call`] against it. This crate decides the two
//! questions those steps ask:
//!
//! - **admits**: does this call (server, tool, JSON arguments, HTTP method and path) fall
//!   inside this detail? ([`AuthorizationDetail::check`], [`Constraint::check`]) A refusal
//!   says where and why, as a JSON pointer and a rule.
//! - **is subset**: is this detail no wider than that one? ([`AuthorizationDetail::is_subset_of`],
//!   [`Constraint::is_subset_of`], [`Grants::is_subset_of`]) Delegation and writ issuance may
//!   only narrow. The test is sound but not complete: when it says yes, every call the child
//!   admits the parent admits too; when it cannot prove that, it says no.
//!
//! Everything here is a pure function over values: no IO, no clock, no randomness.
//!
//! ```
//! use serde_json::json;
//! use writ_scope::{AuthorizationDetail, Call};
//!
//! let grant: AuthorizationDetail = serde_json::from_value(json!({
//!     "type": "mcp_tool_call",
//!     "server": "files",
//!     "tool": "read_file",
//!     "arguments": {"object": {"required": {"path": {"prefix": "/data/"}}}}
//! }))?;
//! grant.validate()?;
//!
//! let args = json!({"path": "/data/q1.csv"});
//! let call = Call::McpToolCall { server: "files", tool: "read_file", arguments: &args };
//! assert!(grant.check(&call).is_ok());
//!
//! let args = json!({"path": "/etc/passwd"});
//! let call = Call::McpToolCall { server: "files", tool: "read_file", arguments: &args };
//! assert_eq!(grant.check(&call).unwrap_err().code(), "argument_outside_constraint");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod constraint;
mod detail;
mod glob;
mod names;
mod path;

pub use constraint::{
    ArrayConstraint, Constraint, ConstraintError, MAX_DEPTH, MAX_LITERAL_LEN, MAX_NODES,
    ObjectConstraint, Range, Violation,
};
pub use detail::{
    AuthorizationDetail, Call, DetailError, Grants, Labels, MAX_GRANTS, MAX_SET, Mismatch,
};
pub use names::{HttpMethod, Label, McpMethod, NameError, PathPattern, ServerName, ToolName};
pub use path::{
    MAX_PATH_LEN, Parameters, PathError, QueryError, check_path, parse_query, percent_decode,
};
