//! MCP over streamable HTTP: one JSON-RPC message per request, checked against the writ,
//! and `tools/list` answers cut down to what the writ's mandate grants.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::HeaderMap;
use serde_json::{Map, Value};
use writ_client::IssuerClient;
use writ_jose::JsonError;
use writ_scope::{AuthorizationDetail, Call};

use crate::deny::Denial;

/// A JSON-RPC request or notification from the client.
#[derive(Debug)]
pub(crate) struct Message {
    /// The request id; `null` for a notification.
    pub(crate) id: Value,
    pub(crate) method: String,
    /// For `tools/call`: the tool and its arguments (`{}` when absent).
    pub(crate) tool: Option<(String, Value)>,
    /// What `Mcp-Name` mirrors: `params.name` or, failing that, `params.uri`.
    name: Option<String>,
}

/// The header that mirrors the JSON-RPC method (SEP-2243).
const MCP_METHOD: &str = "mcp-method";
/// The header that mirrors `params.name` or `params.uri` (SEP-2243).
const MCP_NAME: &str = "mcp-name";

/// The refusal of a body that is not I-JSON, with the reason naming the ambiguity, or
/// `malformed` when it is not JSON at all.
pub(crate) fn json_denial(error: JsonError, malformed: &'static str) -> Denial {
    let reason = match &error {
        JsonError::DuplicateMember(_) => "duplicate_member",
        JsonError::Imprecise(_) => "number_imprecise",
        JsonError::LoneSurrogate => "lone_surrogate",
        JsonError::ByteOrderMark => "byte_order_mark",
        JsonError::Invalid(_) => malformed,
    };
    Denial::bad_request(reason, format!("the body is refused: {error}"))
}

/// A mirrored header's value (at most one, visible ASCII: `single_header`), decoded from
/// SEP-2243's `=?base64?…?=` form when it has it.
fn mirrored(headers: &HeaderMap, name: &str) -> Result<Option<String>, Denial> {
    let Some(text) = crate::single_header(headers, name)? else {
        return Ok(None);
    };
    let malformed = || {
        Denial::bad_request(
            "mcp_header_mismatch",
            format!("`{name}` must be visible ASCII or `=?base64?…?=` of UTF-8"),
        )
    };
    match text
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        None => Ok(Some(text.to_owned())),
        Some(encoded) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(Some)
                .ok_or_else(malformed)
        }
    }
}

fn header_mismatch(header: &str, value: &str, body: &str) -> Denial {
    Denial::bad_request(
        "mcp_header_mismatch",
        format!(
            "`{header}: {}` disagrees with the body's `{}`",
            value.escape_default(),
            body.escape_default()
        ),
    )
}

impl Message {
    /// Reads one JSON-RPC 2.0 request or notification. Batches and client responses are
    /// refused: a writ allows exactly one call.
    ///
    /// The body is forwarded as it came, so it is read the one way every parser reads it
    /// (I-JSON, RFC 7493: see `writ_jose::from_slice_strict`): a body that parsers could
    /// read as another call (a repeated member, where some keep the first and some the last;
    /// a lone surrogate; a number past a double's precision; a byte-order mark) is refused.
    pub(crate) fn parse(body: &[u8]) -> Result<Message, Denial> {
        let value: Value = writ_jose::from_slice_strict(body)
            .map_err(|error| json_denial(error, "jsonrpc_malformed"))?;
        let Value::Object(mut message) = value else {
            return Err(if value.is_array() {
                Denial::bad_request(
                    "jsonrpc_batch_refused",
                    "JSON-RPC batches are refused: send each message on its own, with its own writ",
                )
            } else {
                Denial::bad_request("jsonrpc_malformed", "a JSON-RPC message is a JSON object")
            });
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(Denial::bad_request(
                "jsonrpc_malformed",
                "the message lacks `\"jsonrpc\": \"2.0\"`",
            ));
        }
        // JSON-RPC 2.0 §4 names every member of a request; another one is read by nobody
        // the gateway knows of, and may be read by someone it does not.
        if let Some(other) = message
            .keys()
            .find(|name| !matches!(name.as_str(), "jsonrpc" | "id" | "method" | "params"))
        {
            return Err(Denial::bad_request(
                "jsonrpc_malformed",
                format!(
                    "a JSON-RPC request has no member `{}`",
                    other.escape_default()
                ),
            ));
        }
        let id = message.remove("id").unwrap_or(Value::Null);
        // JSON-RPC 2.0 §4: an id is a string, a number or null.
        if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
            return Err(Denial::bad_request(
                "jsonrpc_malformed",
                "a JSON-RPC id is a string, a number or null",
            ));
        }
        let Some(Value::String(method)) = message.remove("method") else {
            return Err(Denial::bad_request(
                "jsonrpc_response_refused",
                "only JSON-RPC requests and notifications pass the gateway, not responses",
            ));
        };
        let tool = if method == "tools/call" {
            let mut params = match message.remove("params") {
                Some(Value::Object(params)) => params,
                _ => {
                    return Err(Denial::bad_request(
                        "jsonrpc_malformed",
                        "`tools/call` needs `params` with the tool's `name`",
                    ));
                }
            };
            let Some(Value::String(name)) = params.remove("name") else {
                return Err(Denial::bad_request(
                    "jsonrpc_malformed",
                    "`tools/call` needs `params.name`, a string",
                ));
            };
            let arguments = params
                .remove("arguments")
                .unwrap_or_else(|| Value::Object(Map::new()));
            Some((name, arguments))
        } else {
            None
        };
        // SEP-2243: `Mcp-Name` mirrors `params.name` of `tools/call` and `prompts/get`, and
        // `params.uri` of `resources/read`, `resources/subscribe` and `resources/unsubscribe`.
        let mirrored = match method.as_str() {
            "prompts/get" => Some("name"),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
            _ => None,
        };
        let name = match (&tool, mirrored, message.get("params")) {
            (Some((tool, _)), _, _) => Some(tool.clone()),
            (None, Some(member), Some(Value::Object(params))) => params
                .get(member)
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        };
        Ok(Message {
            id,
            method,
            tool,
            name,
        })
    }

    /// Checks the MCP request headers that mirror the body (MCP's standard headers,
    /// SEP-2243): `Mcp-Method` must name the body's method, and `Mcp-Name` its `params.name`
    /// (or `params.uri`), or a server that routes on the header would run another call than
    /// the one checked.
    pub(crate) fn check_headers(&self, headers: &HeaderMap) -> Result<(), Denial> {
        if let Some(method) = mirrored(headers, MCP_METHOD)?
            && method != self.method
        {
            return Err(header_mismatch(MCP_METHOD, &method, &self.method));
        }
        if let Some(name) = mirrored(headers, MCP_NAME)? {
            match &self.name {
                Some(body) if *body == name => {}
                Some(body) => return Err(header_mismatch(MCP_NAME, &name, body)),
                None => {
                    return Err(Denial::bad_request(
                        "mcp_header_mismatch",
                        format!("`{MCP_NAME}` is set, but the message has no name or uri"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The call as the writ's authorization details describe calls.
    pub(crate) fn call<'a>(&'a self, server: &'a str) -> Call<'a> {
        match &self.tool {
            Some((tool, arguments)) => Call::McpToolCall {
                server,
                tool,
                arguments,
            },
            None => Call::McpRequest {
                server,
                method: &self.method,
            },
        }
    }

    /// What the decision record names: the tool for a tool call, else the method.
    pub(crate) fn target(&self) -> &str {
        self.tool.as_ref().map_or(&self.method, |(tool, _)| tool)
    }
}

/// The tools each mandate grants, read from the issuer once per mandate (mandates do not
/// change; revocation is checked separately).
#[derive(Debug)]
pub(crate) struct MandateTools {
    client: Arc<IssuerClient>,
    cache: Mutex<HashMap<String, Arc<Vec<AuthorizationDetail>>>>,
}

/// The most mandates whose grants are kept.
const CACHED_MANDATES: usize = 10_000;

impl MandateTools {
    pub(crate) fn new(client: Arc<IssuerClient>) -> Self {
        MandateTools {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tools `mandate` grants on `server`.
    pub(crate) async fn granted(
        &self,
        mandate: &str,
        server: &str,
    ) -> Result<HashSet<String>, Denial> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(mandate)
            .cloned();
        let grants = match cached {
            Some(grants) => grants,
            None => {
                let grants = Arc::new(self.fetch(mandate).await?);
                let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= CACHED_MANDATES {
                    cache.clear();
                }
                cache.insert(mandate.to_owned(), Arc::clone(&grants));
                grants
            }
        };
        Ok(grants
            .iter()
            .filter_map(|detail| match detail {
                AuthorizationDetail::McpToolCall {
                    server: granted,
                    tool,
                    ..
                } if granted.as_str() == server => Some(tool.as_str().to_owned()),
                _ => None,
            })
            .collect())
    }

    async fn fetch(&self, mandate: &str) -> Result<Vec<AuthorizationDetail>, Denial> {
        let unavailable = |message: String| {
            Denial::unavailable(
                "mandate_unavailable",
                format!("the mandate's grants cannot be read from the issuer: {message}"),
            )
        };
        let body = self
            .client
            .get(&format!("/v1/mandates/{mandate}"))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let grants = body
            .get("grants")
            .cloned()
            .ok_or_else(|| unavailable("no grants in the answer".into()))?;
        serde_json::from_value(grants).map_err(|e| unavailable(e.to_string()))
    }
}

/// Cuts the tools in a `tools/list` answer (JSON, or an SSE stream of JSON messages) down
/// to `allowed`. A message that is not a `tools/list` result passes unchanged. `None` when
/// the answer cannot be read, so nothing unfiltered slips through: every SSE `data:` line
/// must hold one whole JSON message (as MCP servers write them), lines end in LF or CRLF,
/// and a stream without any `data:` line is refused.
pub(crate) fn filter_tools_list(
    body: &[u8],
    sse: bool,
    allowed: &HashSet<String>,
    offered: &mut Vec<String>,
) -> Option<Vec<u8>> {
    if !sse {
        return filter_message(body, allowed, offered);
    }
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let mut messages = 0;
    for line in text.split_inclusive('\n') {
        let (content, ending) = match line.strip_suffix("\r\n") {
            Some(content) => (content, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(content) => (content, "\n"),
                None => (line, ""),
            },
        };
        // A bare CR also ends an SSE line; such framing is not read here, so refused.
        if content.contains('\r') {
            return None;
        }
        match content.strip_prefix("data:") {
            Some(data) => {
                let filtered = filter_message(data.trim_start().as_bytes(), allowed, offered)?;
                out.push_str("data: ");
                out.push_str(std::str::from_utf8(&filtered).ok()?);
                messages += 1;
            }
            None => out.push_str(content),
        }
        out.push_str(ending);
    }
    (messages > 0).then(|| out.into_bytes())
}

fn filter_message(
    json: &[u8],
    allowed: &HashSet<String>,
    offered: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(json).ok()?;
    retain_tools(&mut message, allowed, offered);
    serde_json::to_vec(&message).ok()
}

/// Cuts the tools of a `tools/list` result down to `allowed`, adding the names of every tool
/// the server offered to `offered`; other messages are left alone.
pub(crate) fn retain_tools(
    message: &mut Value,
    allowed: &HashSet<String>,
    offered: &mut Vec<String>,
) {
    if let Some(tools) = message
        .get_mut("result")
        .and_then(|result| result.get_mut("tools"))
        .and_then(Value::as_array_mut)
    {
        tools.retain(|tool| {
            let name = tool.get("name").and_then(Value::as_str);
            offered.extend(name.map(str::to_owned));
            name.is_some_and(|name| allowed.contains(name))
        });
    }
}

/// The most tool names remembered per route as reported.
const REMEMBERED_TOOLS: usize = 4096;

/// The tools each route's server offers in `tools/list`, reported to the issuer the first
/// time each is seen, so its inventory shows what the servers behind the gateway really
/// offer, registered or not.
#[derive(Debug)]
pub(crate) struct Discoveries {
    client: Arc<IssuerClient>,
    reported: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl Discoveries {
    pub(crate) fn new(client: Arc<IssuerClient>) -> Self {
        Discoveries {
            client,
            reported: Arc::default(),
        }
    }

    /// Reports the tools of `offered` not reported before for `route`, in the background;
    /// names that could not be reported are tried again the next time they are seen.
    pub(crate) fn note(&self, route: &str, offered: Vec<String>) {
        let new: Vec<String> = {
            let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
            let known = reported.entry(route.to_owned()).or_default();
            let mut new = Vec::new();
            for name in offered {
                if known.len() < REMEMBERED_TOOLS && !known.contains(&name) {
                    known.insert(name.clone());
                    new.push(name);
                }
            }
            new
        };
        if new.is_empty() {
            return;
        }
        let client = Arc::clone(&self.client);
        let reported = Arc::clone(&self.reported);
        let route = route.to_owned();
        tokio::spawn(async move {
            let body = serde_json::json!({"route": route, "tools": new});
            if let Err(error) = client.post("/v1/audit/discoveries", Some(&body)).await {
                tracing::warn!(%route, %error, "could not report the tools a server offers");
                let mut reported = reported.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(known) = reported.get_mut(&route) {
                    for name in &new {
                        known.remove(name);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn allowed() -> HashSet<String> {
        HashSet::from(["read_file".to_owned()])
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_file"},{"name":"drop_table"}]}}"#;

    #[test]
    fn json_and_sse_answers_are_filtered() {
        let mut offered = Vec::new();
        let json = filter_tools_list(LIST.as_bytes(), false, &allowed(), &mut offered).unwrap();
        assert_eq!(
            offered,
            ["read_file", "drop_table"],
            "every tool the server offered"
        );
        let text = String::from_utf8(json).unwrap();
        assert!(
            text.contains("read_file") && !text.contains("drop_table"),
            "{text}"
        );
        for framing in [
            format!("event: message\ndata: {LIST}\n\n"),
            format!("\u{feff}data: {LIST}\r\n\r\n"),
        ] {
            let sse =
                filter_tools_list(framing.as_bytes(), true, &allowed(), &mut Vec::new()).unwrap();
            let text = String::from_utf8(sse).unwrap();
            assert!(
                text.contains("read_file") && !text.contains("drop_table"),
                "{text}"
            );
        }
    }

    #[test]
    fn framing_that_cannot_be_read_is_refused_not_passed() {
        for body in [
            format!("data: {LIST}\r\r"),
            format!("data: {{\"jsonrpc\":\n{LIST}\n\n"),
            "event: message\n\n".to_owned(),
        ] {
            assert!(
                filter_tools_list(body.as_bytes(), true, &allowed(), &mut Vec::new()).is_none(),
                "{body:?}"
            );
        }
        assert!(filter_tools_list(b"\x1f\x8b gzip", false, &allowed(), &mut Vec::new()).is_none());
    }
}
