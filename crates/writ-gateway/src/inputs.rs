//! The gateway's readers of untrusted bytes, callable without a running gateway.
//!
//! Each function reads its input exactly as the gateway does, with the same code, and
//! touches no network or state. They exist for the fuzz targets in `fuzz/` (which must
//! exercise the real parsers, not copies of them) and for tests; they are not a stable
//! interface. The gateway's TOML is read by [`Config::parse`](crate::Config::parse).

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// An MCP JSON-RPC message as an MCP route reads it: the body (one request or
/// notification, I-JSON), the headers that mirror it (`Mcp-Method`, `Mcp-Name`), and the
/// call it is then checked as. Returns what the decision record names (the tool or the
/// method), or the refusal's reason code.
pub fn mcp_message(body: &[u8], headers: &[(&str, &[u8])]) -> Result<String, &'static str> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    let message = crate::mcp::Message::parse(body).map_err(|denial| denial.reason)?;
    message
        .check_headers(&map)
        .map_err(|denial| denial.reason)?;
    let _ = message.call("server");
    Ok(message.target().to_owned())
}
