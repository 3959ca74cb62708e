//! Authorization details and argument constraints, as mandates, token requests and writs
//! carry them, checked against a call.
//!
//! Input: the details' JSON, then NUL-separated fields of a call: its kind (`mcp_tool_call`,
//! `mcp_request` or `http_request`), server, then the tool and its arguments' JSON, the
//! MCP method, or the HTTP method, path and query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use writ_jose::from_slice_strict;
use writ_scope::{AuthorizationDetail, Call, Constraint, Grants};

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0);
    let details = fields.next().unwrap_or_default();
    let text: Vec<&str> = fields.filter_map(|f| std::str::from_utf8(f).ok()).collect();
    let field = |i: usize| text.get(i).copied().unwrap_or_default();
    let arguments: Value = serde_json::from_str(field(3)).unwrap_or(Value::Null);
    let query = (!field(4).is_empty()).then(|| field(4));
    let call = match field(0) {
        "mcp_tool_call" => Call::McpToolCall {
            server: field(1),
            tool: field(2),
            arguments: &arguments,
        },
        "mcp_request" => Call::McpRequest {
            server: field(1),
            method: field(2),
        },
        _ => Call::HttpRequest {
            server: field(1),
            method: field(2),
            path: field(3),
            query,
        },
    };

    if let Ok(grants) = from_slice_strict::<Grants>(details) {
        // What Writ writes, it reads back the same.
        let json = serde_json::to_vec(&grants).unwrap();
        let again: Grants = from_slice_strict(&json).unwrap();
        assert_eq!(again, grants);
        assert!(grants.is_subset_of(&grants), "attenuation is reflexive");
        for grant in grants.as_slice() {
            assert!(grant.is_subset_of(grant));
            let _ = grant.check(&call).map_err(|mismatch| mismatch.code());
        }
    }
    if let Ok(details) = from_slice_strict::<Vec<AuthorizationDetail>>(details) {
        let _ = writ_token::SingleDetail::try_from(details);
    }
    if let Ok(constraint) = from_slice_strict::<Constraint>(details)
        && constraint.validate().is_ok()
    {
        assert!(constraint.is_subset_of(&constraint));
        assert_eq!(
            constraint.admits(&arguments),
            constraint.check(&arguments).is_ok()
        );
    }
});
