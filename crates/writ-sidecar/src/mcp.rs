//! MCP: one JSON-RPC message from the agent, one writ, one gateway call.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use writ_scope::{AuthorizationDetail, Constraint, McpMethod, ServerName, ToolName};
use writ_token::MandateClaims;

use crate::{Refusal, Sidecar, read_capped, with_granted_datatypes};

/// The JSON-RPC error code for a refused call (the gateway uses the same one).
const JSONRPC_DENIED: i64 = -32001;
/// JSON-RPC's codes for unparseable input, a malformed message and bad parameters.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// What one message from the agent led to.
#[derive(Debug, Default)]
pub struct Relayed {
    /// The messages to hand back: none for a notification, the answer (after any
    /// notifications the server sent first) for a request.
    pub messages: Vec<Value>,
    /// The gateway's id for the request (`writ trace` starts from it), when the call
    /// reached the gateway.
    pub request_id: Option<String>,
}

impl Relayed {
    fn answer(message: Value) -> Relayed {
        Relayed {
            messages: vec![message],
            request_id: None,
        }
    }
}

impl Sidecar {
    /// Relays one message from the agent. A refused request is answered too: a
    /// `tools/call` with a tool error the model can read, any other method with a JSON-RPC
    /// error. `protocol` is the agent's `MCP-Protocol-Version` header, when it came over
    /// HTTP.
    pub async fn relay(&self, bytes: &[u8], protocol: Option<&str>) -> Relayed {
        // The bytes go on to the gateway as they came, so they are read the one way the
        // gateway reads them (I-JSON): what it would refuse is refused here, with the cause.
        let message: Value = match writ_jose::from_slice_strict(bytes) {
            Ok(message) => message,
            Err(error) => {
                return Relayed::answer(error_message(
                    &Value::Null,
                    PARSE_ERROR,
                    format!("not a message every JSON parser reads alike: {error}"),
                    None,
                ));
            }
        };
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            if message.is_object() {
                // A response to a request from the server: the gateway relays none, so
                // nothing awaits it.
                return Relayed::default();
            }
            return Relayed::answer(error_message(
                &Value::Null,
                INVALID_REQUEST,
                "expected one JSON-RPC message object (batches are not supported)".to_owned(),
                None,
            ));
        };
        let tool = (method == "tools/call")
            .then(|| message.pointer("/params/name").and_then(Value::as_str))
            .flatten();
        match self
            .call_across_restart(method, &message, bytes, protocol)
            .await
        {
            Ok(relayed) => {
                tracing::info!(method, tool, request_id = relayed.request_id, "allowed");
                relayed
            }
            Err(refusal) => {
                tracing::info!(
                    method,
                    tool,
                    by = refusal.by,
                    reason = %refusal.reason,
                    request_id = refusal.request_id,
                    "refused: {}",
                    refusal.message
                );
                Relayed {
                    messages: message
                        .get("id")
                        .map(|id| refused(id, method, tool, &refusal))
                        .into_iter()
                        .collect(),
                    request_id: refusal.request_id,
                }
            }
        }
    }

    /// [`Sidecar::call`], made again with a fresh writ and proof while the gateway refuses
    /// them as made before it restarted (for at most the largest clock skew). The refused
    /// requests changed nothing.
    async fn call_across_restart(
        &self,
        method: &str,
        message: &Value,
        bytes: &[u8],
        protocol: Option<&str>,
    ) -> Result<Relayed, Refusal> {
        let mut retries = 0;
        loop {
            match self.call(method, message, bytes, protocol).await {
                Err(refusal)
                    if refusal.by == "gateway"
                        && crate::predates_restart(&refusal.reason)
                        && retries < crate::RESTART_RETRIES =>
                {
                    retries += 1;
                    tokio::time::sleep(crate::RESTART_RETRY).await;
                }
                answer => return answer,
            }
        }
    }

    async fn call(
        &self,
        method: &str,
        message: &Value,
        bytes: &[u8],
        protocol: Option<&str>,
    ) -> Result<Relayed, Refusal> {
        let (mandate, claims) = self.mandate()?;
        let detail = describe(&claims, &self.server, method, message.get("params"))?;
        let writ = self
            .writ(&mandate, &detail)
            .await
            .map_err(|refusal| refusal.about(&claims))?;
        let mut request = self
            .gateway_request(&reqwest::Method::POST, &self.route, &writ)?
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(bytes.to_vec());
        // An `initialize` names its own version, which servers check the header against;
        // later messages carry the agent's header, or the version the server chose.
        let version = if method == "initialize" {
            message
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        } else {
            protocol.map(str::to_owned).or_else(|| {
                self.protocol
                    .lock()
                    .ok()
                    .and_then(|version| version.clone())
            })
        };
        if let Some(version) = version {
            request = request.header("mcp-protocol-version", version);
        }
        let session = self.session.lock().ok().and_then(|session| session.clone());
        if let Some(session) = session.filter(|_| method != "initialize") {
            request = request.header("mcp-session-id", session);
        }
        let response = self.send_to_gateway(request).await?;
        let status = response.status();
        let request_id = header(&response, crate::REQUEST_ID_HEADER);
        if let Some(session) = header(&response, "mcp-session-id")
            && let Ok(mut slot) = self.session.lock()
        {
            *slot = Some(session);
        }
        let event_stream = header(&response, "content-type")
            .is_some_and(|kind| kind.starts_with("text/event-stream"));
        let body = read_capped(response).await?;
        if !status.is_success() {
            let mut refusal = gateway_refusal(status.as_u16(), &body);
            refusal.request_id = request_id;
            return Err(refusal);
        }
        let messages = if body.is_empty() {
            Vec::new()
        } else if event_stream {
            sse_messages(&body)
        } else {
            match serde_json::from_slice(&body) {
                Ok(Value::Array(messages)) => messages,
                Ok(message) => vec![message],
                Err(error) => {
                    return Err(Refusal::sidecar(
                        "bad_answer",
                        format!("the gateway's answer is not JSON: {error}"),
                    ));
                }
            }
        };
        if method == "initialize"
            && let Some(version) = messages
                .iter()
                .find_map(|answer| answer.pointer("/result/protocolVersion"))
                .and_then(Value::as_str)
            && let Ok(mut slot) = self.protocol.lock()
        {
            *slot = Some(version.to_owned());
        }
        Ok(Relayed {
            messages,
            request_id,
        })
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The one call `method` makes, as an authorization detail: a `tools/call` with its
/// arguments pinned to exactly the values sent, any other method by name.
fn describe(
    claims: &MandateClaims,
    server: &ServerName,
    method: &str,
    params: Option<&Value>,
) -> Result<AuthorizationDetail, Refusal> {
    let invalid = |message: String| Refusal::new("sidecar", 400, "invalid_params", message);
    if method == "tools/call" {
        let name = params
            .and_then(|params| params.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("`tools/call` needs `params.name`".to_owned()))?;
        let tool = ToolName::new(name).map_err(|error| invalid(error.to_string()))?;
        let arguments = params
            .and_then(|params| params.get("arguments"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        return Ok(with_granted_datatypes(claims, |datatypes| {
            AuthorizationDetail::McpToolCall {
                server: server.clone(),
                tool: tool.clone(),
                arguments: Constraint::Exact(arguments.clone()),
                datatypes,
            }
        }));
    }
    let method = McpMethod::new(method).map_err(|error| invalid(error.to_string()))?;
    Ok(AuthorizationDetail::McpRequest {
        server: server.clone(),
        methods: BTreeSet::from([method]),
    })
}

/// The gateway's refusal, from its JSON-RPC error (or whatever else it answered).
fn gateway_refusal(status: u16, body: &[u8]) -> Refusal {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = answer.get("error").unwrap_or(&Value::Null);
    let reason = error
        .pointer("/data/reason")
        .or_else(|| answer.get("reason"))
        .and_then(Value::as_str);
    let message = error
        .get("message")
        .or_else(|| answer.get("error_description"))
        .and_then(Value::as_str);
    let message = match message {
        Some(message) => message.trim_start_matches("denied: ").to_owned(),
        None => format!(
            "status {status}: {}",
            String::from_utf8_lossy(body.get(..200).unwrap_or(body))
        ),
    };
    Refusal::new(
        "gateway",
        status,
        reason.unwrap_or("gateway_error"),
        message,
    )
}

/// The answer to a refused request: a tool error for `tools/call` (MCP's way to show the
/// model what went wrong), a JSON-RPC error otherwise.
fn refused(id: &Value, method: &str, tool: Option<&str>, refusal: &Refusal) -> Value {
    let data = match &refusal.request_id {
        Some(request_id) => {
            json!({"reason": refusal.reason, "by": refusal.by, "request_id": request_id})
        }
        None => json!({"reason": refusal.reason, "by": refusal.by}),
    };
    if refusal.reason == "invalid_params" {
        return error_message(id, INVALID_PARAMS, refusal.message.clone(), Some(data));
    }
    match tool {
        Some(tool) => json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": {
                "content": [{"type": "text", "text": refusal.explain(&format!("tool `{tool}`"))}],
                "isError": true,
                "_meta": {"writ": data},
            }
        }),
        None => error_message(
            id,
            JSONRPC_DENIED,
            refusal.explain(&format!("method `{method}`")),
            Some(data),
        ),
    }
}

fn error_message(id: &Value, code: i64, message: String, data: Option<Value>) -> Value {
    let error = match data {
        Some(data) => json!({"code": code, "message": message, "data": data}),
        None => json!({"code": code, "message": message}),
    };
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// The JSON-RPC messages in a `text/event-stream` body: each event's `data` lines joined
/// by newlines (events without data, such as priming events, carry none).
fn sse_messages(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body);
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in text.split('\n').map(|line| line.trim_end_matches('\r')) {
        if line.is_empty() {
            if let Ok(message) = serde_json::from_str(&data) {
                messages.push(message);
            }
            data.clear();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if let Ok(message) = serde_json::from_str(&data) {
        messages.push(message);
    }
    messages
}

impl Refusal {
    /// The refusal in the mandate's words when the call falls outside it.
    pub(crate) fn about(mut self, claims: &MandateClaims) -> Refusal {
        if self.reason == "outside_mandate" {
            self.by = "mandate";
            let task = match &claims.task.summary {
                Some(summary) => format!("task “{summary}”"),
                None => format!(
                    "the task with SHA-256 digest {}",
                    claims.task.digest.as_str()
                ),
            };
            self.message = format!(
                "is outside mandate {} granted by {} for {task}",
                claims.jti, claims.sub
            );
        }
        self
    }

    /// One sentence for the agent's model: `denied: <what> …`, with the reason code.
    pub(crate) fn explain(&self, what: &str) -> String {
        if self.by == "mandate" {
            format!("denied: {what} {} [{}]", self.message, self.reason)
        } else {
            format!(
                "denied: {what} was refused by the {}: {} [{}]",
                self.by, self.message, self.reason
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;

    #[test]
    fn event_streams_yield_every_message_in_order() {
        let body = b": comment\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\nid: 1\ndata:\n\ndata: {\"jsonrpc\":\"2.0\",\n";
        let mut body = body.to_vec();
        body.extend_from_slice(b"data: \"id\":1,\"result\":{}}\n\n");
        let messages = sse_messages(&body);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["method"], "notifications/progress");
        assert_eq!(messages[1]["id"], 1);
    }

    #[test]
    fn gateway_refusals_keep_the_reason_and_sentence() {
        let body = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32001,
            "message": "denied: the writ does not allow this call: argument `path`",
            "data": {"reason": "argument_mismatch"}}});
        let refusal = gateway_refusal(403, body.to_string().as_bytes());
        assert_eq!(refusal.reason, "argument_mismatch");
        assert_eq!(
            refusal.explain("tool `read_file`"),
            "denied: tool `read_file` was refused by the gateway: the writ does not allow this call: argument `path` [argument_mismatch]"
        );
        let refusal = gateway_refusal(502, b"bad gateway");
        assert_eq!(refusal.reason, "gateway_error");
        assert!(refusal.message.contains("502: bad gateway"));
    }

    #[test]
    fn refused_tool_calls_are_tool_errors_and_other_methods_errors() {
        let refusal = Refusal::sidecar("issuer_unreachable", "down");
        let tool = refused(&json!(3), "tools/call", Some("read_file"), &refusal);
        assert_eq!(tool["id"], 3);
        assert_eq!(tool["result"]["isError"], true);
        assert!(
            tool["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("denied: tool `read_file` was refused by the sidecar: down")
        );
        let list = refused(&json!("a"), "tools/list", None, &refusal);
        assert_eq!(list["error"]["code"], JSONRPC_DENIED);
        assert_eq!(list["error"]["data"]["reason"], "issuer_unreachable");
    }
}
