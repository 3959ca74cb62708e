//! MCP JSON-RPC messages as the gateway reads them on an MCP route: the body, the
//! `Mcp-Method` and `Mcp-Name` headers that mirror it, and the call it is checked as.
//!
//! Input: the body, then optionally a NUL and the `Mcp-Method` value, then a NUL and the
//! `Mcp-Name` value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let body = parts.next().unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(method) = parts.next() {
        headers.push(("mcp-method", method));
    }
    if let Some(name) = parts.next() {
        headers.push(("mcp-name", name));
    }
    match writ_gateway::inputs::mcp_message(body, &headers) {
        Ok(target) => {
            // What is checked is what is forwarded: the body is I-JSON, read one way.
            assert!(writ_jose::from_slice_strict::<serde_json::Value>(body).is_ok());
            let _ = target;
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});
