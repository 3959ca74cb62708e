//! RFC 9396 authorization details: what a mandate grants and what a writ allows.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::constraint::{Constraint, ConstraintError, Violation};
use crate::glob;
use crate::names::{HttpMethod, Label, McpMethod, PathPattern, ServerName, ToolName};
use crate::path::{self, Parameters, PathError, QueryError};

/// The most authorization details one grant list may hold.
pub const MAX_GRANTS: usize = 64;
/// The most labels or methods one detail may list.
pub const MAX_SET: usize = 32;

/// A set of data-classification labels: RFC 9396 `datatypes`.
///
/// A detail grants access to data of the listed classes only; a tool whose data carries a
/// label outside the set is out of scope.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeSet<Label>);

impl Labels {
    /// Whether every label in `self` is in `other`.
    pub fn is_subset_of(&self, other: &Labels) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }
}

fn constraint_is_any(constraint: &Constraint) -> bool {
    *constraint == Constraint::Any
}

fn any() -> Constraint {
    Constraint::Any
}

/// One RFC 9396 authorization detail object.
///
/// In a mandate it is a grant; in a writ it describes the one call the writ allows; in a
/// token request it describes the call the agent wants to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthorizationDetail {
    /// MCP `tools/call` of one tool on one server, with constrained arguments.
    McpToolCall {
        /// The tool provider's inventory name.
        server: ServerName,
        /// The tool.
        tool: ToolName,
        /// The constraint the call's `arguments` must satisfy.
        #[serde(default = "any", skip_serializing_if = "constraint_is_any")]
        arguments: Constraint,
        /// The data classes in scope.
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        datatypes: Labels,
    },
    /// Other MCP JSON-RPC methods on one server, such as `initialize` or `tools/list`.
    McpRequest {
        /// The tool provider's inventory name.
        server: ServerName,
        /// The methods allowed.
        methods: BTreeSet<McpMethod>,
    },
    /// An HTTP request to one API.
    HttpRequest {
        /// The API's inventory name.
        server: ServerName,
        /// The HTTP methods allowed.
        methods: BTreeSet<HttpMethod>,
        /// The request paths allowed.
        path: PathPattern,
        /// The query strings allowed, read as an object of names and string values (see
        /// [`parse_query`](crate::parse_query)). When absent, a request with a query is
        /// refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<Constraint>,
        /// The data classes in scope.
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        datatypes: Labels,
    },
}

/// A real request, as the gateway sees it or as an agent describes it.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// MCP `tools/call`.
    McpToolCall {
        /// The server it goes to.
        server: &'a str,
        /// `params.name`.
        tool: &'a str,
        /// `params.arguments` (`{}` when absent).
        arguments: &'a Value,
    },
    /// Any other MCP JSON-RPC method.
    McpRequest {
        /// The server it goes to.
        server: &'a str,
        /// The JSON-RPC method.
        method: &'a str,
    },
    /// An HTTP request.
    HttpRequest {
        /// The API it goes to.
        server: &'a str,
        /// The HTTP method.
        method: &'a str,
        /// The request path, without query or fragment, exactly as it is sent.
        path: &'a str,
        /// The query string without its `?`, exactly as it is sent; `None` without one.
        query: Option<&'a str>,
    },
}

/// Why a call falls outside a detail. Each variant has a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The call is a different kind (tool call, other MCP method, HTTP request).
    Kind,
    /// The call goes to another server.
    Server,
    /// The call names another tool.
    Tool,
    /// The method is not allowed.
    Method,
    /// The path is not allowed.
    Path,
    /// The path is not in normal form: servers may read it as another path.
    PathForm(PathError),
    /// The query string is one that parsers read differently.
    QueryForm(QueryError),
    /// The request has a query and the detail grants none.
    QueryNotGranted,
    /// The query falls outside its constraint.
    Query(Violation),
    /// The arguments fall outside their constraint.
    Arguments(Violation),
}

impl Mismatch {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Mismatch::Kind => "call_kind_mismatch",
            Mismatch::Server => "server_mismatch",
            Mismatch::Tool => "tool_mismatch",
            Mismatch::Method => "method_mismatch",
            Mismatch::Path => "path_mismatch",
            Mismatch::PathForm(error) => error.code(),
            Mismatch::QueryForm(error) => error.code(),
            Mismatch::QueryNotGranted => "query_not_granted",
            Mismatch::Query(_) => "query_outside_constraint",
            Mismatch::Arguments(_) => "argument_outside_constraint",
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Kind => f.write_str("the request is a different kind of call"),
            Mismatch::Server => f.write_str("the request goes to another server"),
            Mismatch::Tool => f.write_str("the request calls another tool"),
            Mismatch::Method => f.write_str("the request method is not allowed"),
            Mismatch::Path => f.write_str("the request path is not allowed"),
            Mismatch::PathForm(error) => write!(f, "{error}"),
            Mismatch::QueryForm(error) => write!(f, "{error}"),
            Mismatch::QueryNotGranted => {
                f.write_str("the request has a query string, and the writ allows none")
            }
            Mismatch::Query(violation) => write!(f, "query {violation}"),
            Mismatch::Arguments(violation) => write!(f, "argument {violation}"),
        }
    }
}

/// A detail was refused when read.
///
/// The detail's author is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    /// The argument constraint is too large or inconsistent.
    #[error("invalid argument constraint: {0}")]
    Constraint(#[from] ConstraintError),
    /// A label or method list is longer than [`MAX_SET`], or a method list is empty.
    #[error("a detail must list between 1 and {MAX_SET} methods and at most {MAX_SET} labels")]
    SetSize,
    /// More than [`MAX_GRANTS`] details, or none.
    #[error("expected between 1 and {MAX_GRANTS} authorization details")]
    Count,
}

impl AuthorizationDetail {
    /// The server this detail is about.
    pub fn server(&self) -> &ServerName {
        match self {
            AuthorizationDetail::McpToolCall { server, .. }
            | AuthorizationDetail::McpRequest { server, .. }
            | AuthorizationDetail::HttpRequest { server, .. } => server,
        }
    }

    /// The data classes in scope (empty for MCP requests, which touch no tool data).
    pub fn datatypes(&self) -> &Labels {
        static NONE: Labels = Labels(BTreeSet::new());
        match self {
            AuthorizationDetail::McpToolCall { datatypes, .. }
            | AuthorizationDetail::HttpRequest { datatypes, .. } => datatypes,
            AuthorizationDetail::McpRequest { .. } => &NONE,
        }
    }

    /// Checks the limits of a detail read from outside.
    pub fn validate(&self) -> Result<(), DetailError> {
        match self {
            AuthorizationDetail::McpToolCall {
                arguments,
                datatypes,
                ..
            } => {
                arguments.validate()?;
                bounded(datatypes.0.len(), 0)
            }
            AuthorizationDetail::McpRequest { methods, .. } => bounded(methods.len(), 1),
            AuthorizationDetail::HttpRequest {
                methods,
                query,
                datatypes,
                ..
            } => {
                if let Some(query) = query {
                    query.validate()?;
                }
                bounded(methods.len(), 1).and(bounded(datatypes.0.len(), 0))
            }
        }
    }

    /// Checks that `call` falls inside this detail, saying why not when it does not.
    pub fn check(&self, call: &Call<'_>) -> Result<(), Mismatch> {
        match (self, call) {
            (
                AuthorizationDetail::McpToolCall {
                    server,
                    tool,
                    arguments,
                    ..
                },
                Call::McpToolCall {
                    server: call_server,
                    tool: call_tool,
                    arguments: call_arguments,
                },
            ) => {
                same(server.as_str(), call_server, Mismatch::Server)?;
                same(tool.as_str(), call_tool, Mismatch::Tool)?;
                arguments.check(call_arguments).map_err(Mismatch::Arguments)
            }
            (
                AuthorizationDetail::McpRequest { server, methods },
                Call::McpRequest {
                    server: call_server,
                    method,
                },
            ) => {
                same(server.as_str(), call_server, Mismatch::Server)?;
                if methods.iter().any(|allowed| allowed.as_str() == *method) {
                    Ok(())
                } else {
                    Err(Mismatch::Method)
                }
            }
            (
                AuthorizationDetail::HttpRequest {
                    server,
                    methods,
                    path,
                    query,
                    ..
                },
                Call::HttpRequest {
                    server: call_server,
                    method,
                    path: call_path,
                    query: call_query,
                },
            ) => {
                same(server.as_str(), call_server, Mismatch::Server)?;
                if !methods.iter().any(|allowed| allowed.as_str() == *method) {
                    return Err(Mismatch::Method);
                }
                // Refused, never rewritten: a path servers could read another way is not
                // the path that was granted, whatever the pattern says.
                path::check_path(call_path, Parameters::for_pattern(path.as_str()))
                    .map_err(Mismatch::PathForm)?;
                if !path_admitted(path.as_str(), call_path) {
                    return Err(Mismatch::Path);
                }
                check_query(query.as_ref(), *call_query)
            }
            // A detail of one kind never covers a call of another.
            _ => Err(Mismatch::Kind),
        }
    }

    /// Whether this detail is no wider than `parent` in any respect: same kind and server,
    /// same tool, arguments, methods and paths within the parent's, data classes a subset.
    pub fn is_subset_of(&self, parent: &AuthorizationDetail) -> bool {
        match (self, parent) {
            (
                AuthorizationDetail::McpToolCall {
                    server,
                    tool,
                    arguments,
                    datatypes,
                },
                AuthorizationDetail::McpToolCall {
                    server: parent_server,
                    tool: parent_tool,
                    arguments: parent_arguments,
                    datatypes: parent_datatypes,
                },
            ) => {
                server == parent_server
                    && tool == parent_tool
                    && arguments.is_subset_of(parent_arguments)
                    && datatypes.is_subset_of(parent_datatypes)
            }
            (
                AuthorizationDetail::McpRequest { server, methods },
                AuthorizationDetail::McpRequest {
                    server: parent_server,
                    methods: parent_methods,
                },
            ) => server == parent_server && methods.is_subset(parent_methods),
            (
                AuthorizationDetail::HttpRequest {
                    server,
                    methods,
                    path,
                    query,
                    datatypes,
                },
                AuthorizationDetail::HttpRequest {
                    server: parent_server,
                    methods: parent_methods,
                    path: parent_path,
                    query: parent_query,
                    datatypes: parent_datatypes,
                },
            ) => {
                let query_within = match (query, parent_query) {
                    // The child admits requests without a query only, which the parent
                    // reads as the empty object.
                    (None, None) => true,
                    (None, Some(parent)) => parent.admits(&Value::Object(Map::new())),
                    (Some(_), None) => false,
                    (Some(query), Some(parent)) => query.is_subset_of(parent),
                };
                server == parent_server
                    && methods.is_subset(parent_methods)
                    && path_within(path.as_str(), parent_path.as_str())
                    && query_within
                    && datatypes.is_subset_of(parent_datatypes)
            }
            // Different kinds never cover each other.
            _ => false,
        }
    }
}

/// Checks a request's query string against a detail's query constraint. Without a
/// constraint only a request without a query passes; with one, the query is read one way
/// ([`path::parse_query`]) and must satisfy it, and no query (or an empty one, `/path?`) is
/// the empty object, so a `required` member is required.
fn check_query(granted: Option<&Constraint>, query: Option<&str>) -> Result<(), Mismatch> {
    let query = query.unwrap_or_default();
    let Some(constraint) = granted else {
        return if query.is_empty() {
            Ok(())
        } else {
            // Read first, so an ambiguous query is named as such.
            path::parse_query(query).map_err(Mismatch::QueryForm)?;
            Err(Mismatch::QueryNotGranted)
        };
    };
    let pairs = path::parse_query(query).map_err(Mismatch::QueryForm)?;
    constraint
        .check(&Value::Object(pairs))
        .map_err(Mismatch::Query)
}

/// Whether a path in normal form falls under `pattern` as every server routes it, not only
/// as text: a servlet container strips `;` parameters first, so the path without them must
/// fall under the pattern without them; and many frameworks route `/a/` as `/a`, so a
/// trailing `/` is admitted only where the path without it is, or where the pattern itself
/// ends in `/` (`/customers/*` admits `/customers/42/` but not `/customers/`, the list).
fn path_admitted(pattern: &str, path: &str) -> bool {
    let stripped = !path.contains(';')
        || glob::matches(
            &path::without_parameters(pattern),
            &path::without_parameters(path),
        );
    let trailing = path == "/"
        || !path.ends_with('/')
        || pattern.ends_with('/')
        || glob::matches(pattern, path.trim_end_matches('/'));
    glob::matches(pattern, path) && stripped && trailing
}

/// Whether every path `child` admits, `parent` admits (sound, not complete). A `;` in a
/// pattern allows parameters, so only a parent that allows them covers a child that does.
fn path_within(child: &str, parent: &str) -> bool {
    if !glob::has_wildcard(child) {
        // One path: the parent must admit it as the check would.
        return (!child.contains(';') || parent.contains(';')) && path_admitted(parent, child);
    }
    let parameters = !child.contains(';')
        || (parent.contains(';')
            && glob::is_subset(
                &path::without_parameters(child),
                &path::without_parameters(parent),
            ));
    // A child ending in `/` admits paths ending in `/` that a parent not ending in `/`
    // admits only without it: leave that unproved.
    let trailing = !child.ends_with('/') || parent.ends_with('/');
    parameters && trailing && glob::is_subset(child, parent)
}

fn same(granted: &str, requested: &str, mismatch: Mismatch) -> Result<(), Mismatch> {
    if granted == requested {
        Ok(())
    } else {
        Err(mismatch)
    }
}

fn bounded(len: usize, min: usize) -> Result<(), DetailError> {
    if (min..=MAX_SET).contains(&len) {
        Ok(())
    } else {
        Err(DetailError::SetSize)
    }
}

/// A mandate's grants: 1 to [`MAX_GRANTS`] validated authorization details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "Vec<AuthorizationDetail>",
    into = "Vec<AuthorizationDetail>"
)]
pub struct Grants(Vec<AuthorizationDetail>);

impl Grants {
    /// Validates each detail and the count.
    pub fn new(details: Vec<AuthorizationDetail>) -> Result<Self, DetailError> {
        if details.is_empty() || details.len() > MAX_GRANTS {
            return Err(DetailError::Count);
        }
        details.iter().try_for_each(AuthorizationDetail::validate)?;
        Ok(Grants(details))
    }

    /// The details.
    pub fn as_slice(&self) -> &[AuthorizationDetail] {
        &self.0
    }

    /// The first grant that `requested` falls within, if any.
    pub fn covering(&self, requested: &AuthorizationDetail) -> Option<&AuthorizationDetail> {
        self.0.iter().find(|grant| requested.is_subset_of(grant))
    }

    /// Whether each of these grants falls within some grant of `parent` (attenuation).
    pub fn is_subset_of(&self, parent: &Grants) -> bool {
        self.0.iter().all(|grant| parent.covering(grant).is_some())
    }
}

impl TryFrom<Vec<AuthorizationDetail>> for Grants {
    type Error = DetailError;
    fn try_from(details: Vec<AuthorizationDetail>) -> Result<Self, DetailError> {
        Grants::new(details)
    }
}

impl From<Grants> for Vec<AuthorizationDetail> {
    fn from(grants: Grants) -> Self {
        grants.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detail(value: Value) -> AuthorizationDetail {
        let detail: AuthorizationDetail = serde_json::from_value(value).unwrap();
        detail.validate().unwrap();
        detail
    }

    #[test]
    fn json_form_is_rfc9396() {
        let value = json!({
            "type": "mcp_tool_call",
            "server": "files",
            "tool": "read_file",
            "arguments": {"object": {"required": {"path": {"prefix": "/data/"}}}},
            "datatypes": ["internal"]
        });
        let parsed = detail(value.clone());
        assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
        let bare = detail(json!({"type": "mcp_tool_call", "server": "files", "tool": "t"}));
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({"type": "mcp_tool_call", "server": "files", "tool": "t"})
        );
        for bad in [
            json!({"type": "mcp_tool_call", "server": "files"}),
            json!({"type": "mcp_tool_call", "server": "files", "tool": "t", "extra": 1}),
            json!({"type": "payment_initiation", "server": "files"}),
            json!({"server": "files", "tool": "t"}),
            json!({"type": "mcp_request", "server": "files", "methods": ["tools/call"]}),
            json!({"type": "http_request", "server": "api", "methods": ["get"], "path": "/"}),
        ] {
            assert!(
                serde_json::from_value::<AuthorizationDetail>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let empty: AuthorizationDetail = serde_json::from_value(
            json!({"type": "mcp_request", "server": "files", "methods": []}),
        )
        .unwrap();
        assert_eq!(empty.validate(), Err(DetailError::SetSize));
    }

    #[test]
    fn checks_calls() {
        let tool = detail(json!({
            "type": "mcp_tool_call", "server": "files", "tool": "read_file",
            "arguments": {"object": {"required": {"path": {"prefix": "/data/"}}}}
        }));
        let args = json!({"path": "/data/a"});
        let call = |server, tool, arguments| Call::McpToolCall {
            server,
            tool,
            arguments,
        };
        assert_eq!(tool.check(&call("files", "read_file", &args)), Ok(()));
        assert_eq!(
            tool.check(&call("db", "read_file", &args)),
            Err(Mismatch::Server)
        );
        assert_eq!(
            tool.check(&call("files", "drop_table", &args)),
            Err(Mismatch::Tool)
        );
        let outside = json!({"path": "/etc/passwd"});
        let error = tool
            .check(&call("files", "read_file", &outside))
            .unwrap_err();
        assert_eq!(error.code(), "argument_outside_constraint");
        assert_eq!(
            error.to_string(),
            "argument value at `/path` must be a string starting with `/data/`"
        );
        let list = Call::McpRequest {
            server: "files",
            method: "tools/list",
        };
        assert_eq!(tool.check(&list), Err(Mismatch::Kind));

        let methods = detail(json!({
            "type": "mcp_request", "server": "files", "methods": ["initialize", "tools/list"]
        }));
        assert_eq!(methods.check(&list), Ok(()));
        let ping = Call::McpRequest {
            server: "files",
            method: "ping",
        };
        assert_eq!(methods.check(&ping), Err(Mismatch::Method));

        let http = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/reports/*"
        }));
        let get = |method, path| Call::HttpRequest {
            server: "api",
            method,
            path,
            query: None,
        };
        assert_eq!(http.check(&get("GET", "/v1/reports/q1")), Ok(()));
        assert_eq!(
            http.check(&get("DELETE", "/v1/reports/q1")),
            Err(Mismatch::Method)
        );
        assert_eq!(http.check(&get("GET", "/v1/users")), Err(Mismatch::Path));
        // Regression: `*` matches `/`, so without the normal-form rule these paths, which
        // some server resolves to `/v1/admin`, matched `/v1/reports/*`.
        for (escaping, code) in [
            ("/v1/reports/../admin", "path_dot_segment"),
            ("/v1/reports/%2e%2e/admin", "path_malformed_escape"),
            ("/v1/reports/%2E%2E/admin", "path_encoded_unreserved"),
            ("/v1/reports/..;/admin", "path_dot_segment"),
            ("/v1/reports/%252e%252e/admin", "path_encoded_delimiter"),
            ("/v1/reports/x;a=b", "path_parameters"),
        ] {
            let error = http.check(&get("GET", escaping)).unwrap_err();
            assert_eq!(error.code(), code, "{escaping}");
        }
    }

    #[test]
    fn queries_are_refused_unless_granted_and_then_constrained() {
        let call = |query| Call::HttpRequest {
            server: "api",
            method: "GET",
            path: "/v1/reports/q1",
            query,
        };
        let bare = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/reports/*"
        }));
        assert_eq!(bare.check(&call(None)), Ok(()));
        assert_eq!(bare.check(&call(Some(""))), Ok(()));
        assert_eq!(
            bare.check(&call(Some("admin=1"))),
            Err(Mismatch::QueryNotGranted)
        );
        let paged = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/reports/*",
            "query": {"object": {"optional": {"page": {"glob": "?"}}}}
        }));
        assert_eq!(paged.check(&call(Some("page=2"))), Ok(()));
        assert_eq!(
            paged
                .check(&call(Some("page=2&admin=1")))
                .unwrap_err()
                .code(),
            "query_outside_constraint"
        );
        // Read one way only: a parser keeping the last `page` would see `10`.
        assert_eq!(
            paged
                .check(&call(Some("page=2&page=10")))
                .unwrap_err()
                .code(),
            "query_repeated_name"
        );
        // Attenuation: no query is narrower than any; a query grant is not narrower than none.
        assert!(bare.is_subset_of(&paged));
        assert!(!paged.is_subset_of(&bare));
        let exact = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/reports/q1",
            "query": {"exact": {"page": "3"}}
        }));
        assert!(exact.is_subset_of(&paged));
        assert_eq!(exact.check(&call(Some("page=3"))), Ok(()));
        assert!(exact.check(&call(Some("page=4"))).is_err());

        // A required member is required: no query is the empty object.
        let owned = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/reports/*",
            "query": {"object": {"required": {"owner": {"exact": "alice"}}}}
        }));
        for missing in [None, Some("")] {
            assert_eq!(
                owned.check(&call(missing)).unwrap_err().code(),
                "query_outside_constraint"
            );
        }
        assert_eq!(owned.check(&call(Some("owner=alice"))), Ok(()));
        // So a child that sends no query is not within a parent that requires one.
        assert!(!bare.is_subset_of(&owned));
        assert_eq!(
            bare.check(&call(Some("_method=DELETE")))
                .unwrap_err()
                .code(),
            "method_override"
        );
    }

    #[test]
    fn a_trailing_slash_does_not_reach_the_collection() {
        let items = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/customers/*"
        }));
        let get = |path| Call::HttpRequest {
            server: "api",
            method: "GET",
            path,
            query: None,
        };
        // Routed as `/customers`, the list, which `/customers/*` does not grant.
        assert_eq!(items.check(&get("/customers/")), Err(Mismatch::Path));
        assert_eq!(items.check(&get("/customers/42/")), Ok(()));
        let collection = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/customers/"
        }));
        assert_eq!(collection.check(&get("/customers/")), Ok(()));
        assert!(!collection.is_subset_of(&items));
        let slash_child = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/customers/*/"
        }));
        assert!(!slash_child.is_subset_of(&items));
    }

    #[test]
    fn parameters_are_covered_only_by_patterns_that_allow_them() {
        let plain = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/*"
        }));
        let with = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/*;*"
        }));
        let literal = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/x;v=1"
        }));
        assert!(!with.is_subset_of(&plain));
        assert!(!literal.is_subset_of(&plain));
        assert!(literal.is_subset_of(&with));
        // Parameters only where the pattern has them: a servlet container routes
        // `/api;v=2/users/secret;.json` as `/api/users/secret`.
        let versioned = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"],
            "path": "/api;v=2/users/*.json"
        }));
        let get = |path| Call::HttpRequest {
            server: "api",
            method: "GET",
            path,
            query: None,
        };
        assert_eq!(versioned.check(&get("/api;v=2/users/x.json")), Ok(()));
        assert_eq!(
            versioned.check(&get("/api;v=2/users/secret;.json")),
            Err(Mismatch::Path)
        );
        let sneaky = detail(json!({
            "type": "http_request", "server": "api", "methods": ["GET"],
            "path": "/api;v=2/users/secret;.json"
        }));
        assert!(!sneaky.is_subset_of(&versioned));
        // Regression: a literal child that a server resolves outside the parent.
        for escaping in ["/v1/../admin", "/v1/..;/admin", "/v1/%252e%252e/admin"] {
            assert!(
                serde_json::from_value::<AuthorizationDetail>(json!({
                    "type": "http_request", "server": "api", "methods": ["GET"], "path": escaping
                }))
                .is_err(),
                "{escaping}"
            );
        }
    }

    #[test]
    fn attenuation() {
        let parent = Grants::new(vec![
            detail(json!({
                "type": "mcp_tool_call", "server": "files", "tool": "read_file",
                "arguments": {"object": {"required": {"path": {"prefix": "/data/"}}}},
                "datatypes": ["internal", "pii"]
            })),
            detail(json!({
                "type": "http_request", "server": "api", "methods": ["GET", "HEAD"],
                "path": "/v1/*"
            })),
        ])
        .unwrap();
        let narrower = Grants::new(vec![
            detail(json!({
                "type": "mcp_tool_call", "server": "files", "tool": "read_file",
                "arguments": {"object": {"required": {"path": {"prefix": "/data/team/"}}}},
                "datatypes": ["internal"]
            })),
            detail(json!({
                "type": "http_request", "server": "api", "methods": ["GET"], "path": "/v1/reports/*"
            })),
        ])
        .unwrap();
        assert!(narrower.is_subset_of(&parent));
        assert!(!parent.is_subset_of(&narrower));

        let wider = [
            json!({"type": "mcp_tool_call", "server": "files", "tool": "write_file"}),
            json!({
                "type": "mcp_tool_call", "server": "files", "tool": "read_file",
                "arguments": {"object": {"required": {"path": {"prefix": "/"}}}}
            }),
            json!({
                "type": "mcp_tool_call", "server": "files", "tool": "read_file",
                "arguments": {"object": {"required": {"path": {"prefix": "/data/"}}}},
                "datatypes": ["secret"]
            }),
            json!({"type": "http_request", "server": "api", "methods": ["POST"], "path": "/v1/x"}),
            json!({"type": "http_request", "server": "api", "methods": ["GET"], "path": "/*"}),
            json!({"type": "http_request", "server": "other", "methods": ["GET"], "path": "/v1/x"}),
        ];
        for child in wider {
            let child = Grants::new(vec![detail(child.clone())]).unwrap();
            assert!(!child.is_subset_of(&parent), "{child:?}");
        }
    }

    #[test]
    fn grant_lists_are_bounded() {
        assert_eq!(Grants::new(vec![]), Err(DetailError::Count));
        let one = detail(json!({"type": "mcp_tool_call", "server": "files", "tool": "t"}));
        assert_eq!(
            Grants::new(vec![one; MAX_GRANTS + 1]),
            Err(DetailError::Count)
        );
        assert!(serde_json::from_value::<Grants>(json!([])).is_err());
    }
}
