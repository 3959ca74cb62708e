//! Names that appear in grants: servers, tools, MCP methods, HTTP methods, paths, labels.
//!
//! Each is a newtype whose constructor checks its form, so an invalid name cannot exist.

/// A name or pattern was refused.
///
/// The caller's input is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: {rule}")]
pub struct NameError {
    kind: &'static str,
    value: String,
    rule: &'static str,
}

fn bounded(text: &str, max: usize, allowed: impl Fn(u8) -> bool) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(allowed)
}

writ_jose::checked_string!(
    /// The inventory name of a tool provider: an MCP server or an HTTP API.
    ServerName,
    NameError,
    "server name",
    "expected 1 to 64 characters from a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit",
    |text| {
        bounded(text, 64, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
        }) && text.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
    }
);

writ_jose::checked_string!(
    /// An MCP tool name (MCP 2025-06-18: 1 to 128 characters of `A-Za-z0-9_-.`).
    ToolName,
    NameError,
    "tool name",
    "expected 1 to 128 characters from A-Z, a-z, 0-9, `_`, `-`, `.`",
    |text| bounded(text, 128, |b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
);

writ_jose::checked_string!(
    /// An MCP JSON-RPC method other than `tools/call`, such as `tools/list` or `ping`.
    McpMethod,
    NameError,
    "MCP method",
    "expected 1 to 64 characters from A-Z, a-z, 0-9, `/`, `_`, `-`, and not `tools/call` in any case (grant tool calls with `mcp_tool_call`)",
    |text| {
        // In any case: a server that reads methods without regard to case would run a
        // tool call without its argument constraints.
        !text.eq_ignore_ascii_case("tools/call")
            && bounded(text, 64, |b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    }
);

writ_jose::checked_string!(
    /// An HTTP method token in upper case, such as `GET`.
    HttpMethod,
    NameError,
    "HTTP method",
    "expected 1 to 16 upper-case letters",
    |text| bounded(text, 16, |b| b.is_ascii_uppercase())
);

writ_jose::checked_string!(
    /// A glob over request paths: starts with `/`; `*` matches any run of characters and `?`
    /// any one character. Apart from its wildcards it is a path in normal form (see
    /// [`check_path`](crate::check_path)), so it never names a dot segment, an empty segment
    /// or an encoded delimiter; a `;` in it allows `;` parameters in the paths it matches.
    PathPattern,
    NameError,
    "path pattern",
    "expected an absolute path of at most 1024 characters in normal form: RFC 3986 path characters, no `.`, `..` or empty segments, escapes in upper-case hex, none of `%`, `/`, `\\`, control or unreserved characters",
    |text| text.len() <= 1024 && crate::path::check_pattern(text).is_ok()
);

writ_jose::checked_string!(
    /// A data-classification label, such as `public`, `internal` or `pii`.
    Label,
    NameError,
    "data label",
    "expected 1 to 64 characters from a-z, 0-9, `.`, `_`, `:`, `-`",
    |text| {
        bounded(text, 64, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._:-".contains(&b)
        })
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_check_their_form() {
        assert!(ServerName::new("files-1.internal").is_ok());
        assert!(ServerName::new("Files").is_err());
        assert!(ServerName::new("-files").is_err());
        assert!(ToolName::new("read_file").is_ok());
        assert!(ToolName::new("read file").is_err());
        assert!(ToolName::new("x".repeat(129)).is_err());
        assert!(McpMethod::new("tools/list").is_ok());
        assert!(McpMethod::new("tools/call").is_err());
        assert!(McpMethod::new("Tools/Call").is_err());
        assert!(HttpMethod::new("GET").is_ok());
        assert!(HttpMethod::new("get").is_err());
        assert!(PathPattern::new("/v1/reports/*").is_ok());
        assert!(PathPattern::new("v1").is_err());
        assert!(PathPattern::new("/a b").is_err());
        for escaping in [
            "/a/../b",
            "/a/%2E%2E/b",
            "/a/%252e/b",
            "/a//b",
            "/a/..;/b",
            "/a\\b",
        ] {
            assert!(PathPattern::new(escaping).is_err(), "{escaping}");
        }
        assert!(Label::new("pii").is_ok());
        assert!(Label::new("").is_err());
    }

    #[test]
    fn deserialization_checks_too() {
        assert!(serde_json::from_str::<ToolName>(r#""ok_tool""#).is_ok());
        let error = serde_json::from_str::<ToolName>(r#""bad tool""#).unwrap_err();
        assert!(
            error.to_string().contains("invalid tool name `bad tool`"),
            "{error}"
        );
    }
}
