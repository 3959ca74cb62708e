//! MCP servers that speak JSON-RPC over stdio, run by the gateway as child processes.
//!
//! A stdio MCP server serves one session, so the gateway owns it: at start it runs the
//! command, performs the `initialize` handshake itself, and from then on relays each checked
//! request as one line on the child's stdin, under an id of its own so that agents' ids
//! never collide, and matches the answer on stdout back to the agent's id.
//!
//! - An agent's `initialize` is answered with the result the child gave the gateway;
//!   `notifications/initialized` and `notifications/cancelled` (whose ids the child never
//!   saw) stop here; other notifications are relayed.
//! - Requests from the child to a client (sampling, roots, elicitation) have no client to
//!   reach over a POST-only route: `ping` is answered, the rest get a JSON-RPC error.
//!   Notifications from the child are logged at debug level and dropped.
//! - The child's environment is cleared except for `PATH`, `HOME`, `LANG` and `TMPDIR`; it
//!   gets the route's `env` and, for an `env` credential, the secret under its variable.
//! - A child that exits, or writes a line longer than the limit, ends its session: requests
//!   in flight fail with 502 and the next request starts a new child (at most one attempt a
//!   second). Its stderr is logged line by line at debug level.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

/// The MCP protocol version the gateway asks the child for.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// Environment variables a child inherits from the gateway.
const INHERITED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TMPDIR"];
/// The least time between two attempts to start a child.
const RESTART_INTERVAL: Duration = Duration::from_secs(1);

/// Why a relayed request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StdioError {
    /// The child is not running and could not be started.
    #[error("{0}")]
    Unavailable(String),
    /// The child did not answer in time.
    #[error("no answer within {0} s")]
    Timeout(u64),
}

/// A command and its environment, as configured.
pub(crate) struct Launch {
    pub(crate) route: String,
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// Variables set in the child, secrets included: never logged.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) max_message_bytes: usize,
    pub(crate) timeout: Duration,
}

/// One stdio MCP server behind a route.
pub(crate) struct StdioServer {
    launch: Launch,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    session: Option<Arc<Session>>,
    last_start: Option<Instant>,
}

impl std::fmt::Debug for StdioServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioServer")
            .field("route", &self.launch.route)
            .field("program", &self.launch.program)
            .finish_non_exhaustive()
    }
}

/// What a relayed message gets back.
pub(crate) enum Answer {
    /// A JSON-RPC response, under the agent's id.
    Response(Value),
    /// Nothing: the message was a notification.
    Accepted,
}

impl StdioServer {
    pub(crate) fn new(launch: Launch) -> Self {
        StdioServer {
            launch,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// Starts the child and completes the handshake, unless it already runs.
    pub(crate) async fn ensure_started(&self) -> Result<Arc<Session>, StdioError> {
        let mut state = self.state.lock().await;
        if let Some(session) = &state.session
            && !session.shared.closed.load(Ordering::SeqCst)
        {
            return Ok(Arc::clone(session));
        }
        state.session = None;
        if state
            .last_start
            .is_some_and(|at| at.elapsed() < RESTART_INTERVAL)
        {
            return Err(StdioError::Unavailable(format!(
                "the `{}` server stopped and is restarted at most once a second",
                self.launch.route
            )));
        }
        state.last_start = Some(Instant::now());
        let session = Arc::new(Session::start(&self.launch).await?);
        tracing::info!(route = %self.launch.route, program = %self.launch.program, "stdio MCP server started");
        state.session = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Relays one checked JSON-RPC message (`body`, already parsed once by the checks).
    pub(crate) async fn relay(&self, body: &[u8]) -> Result<Answer, StdioError> {
        let malformed =
            || StdioError::Unavailable("the checked message is not a JSON object".into());
        let Ok(Value::Object(mut message)) = serde_json::from_slice::<Value>(body) else {
            return Err(malformed());
        };
        let method = message
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let session = self.ensure_started().await?;
        let Some(agent_id) = message.remove("id") else {
            if !matches!(
                method.as_str(),
                "notifications/initialized" | "notifications/cancelled"
            ) {
                session.send(&Value::Object(message)).await?;
            }
            return Ok(Answer::Accepted);
        };
        if method == "initialize" {
            return Ok(Answer::Response(json!({
                "jsonrpc": "2.0", "id": agent_id, "result": session.initialized.clone(),
            })));
        }
        let mut response = session.request(message, self.launch.timeout).await?;
        if let Some(object) = response.as_object_mut() {
            object.insert("id".into(), agent_id);
        }
        Ok(Answer::Response(response))
    }

    /// Closes the child's stdin, gives it `grace` to exit, then kills it.
    pub(crate) async fn stop(&self, grace: Duration) {
        let Some(session) = self.state.lock().await.session.take() else {
            return;
        };
        session.shared.stdin.lock().await.take();
        let mut child = session.child.lock().await;
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

/// A running child after its handshake.
pub(crate) struct Session {
    child: tokio::sync::Mutex<Child>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    /// The child's `initialize` result, given to every agent that initializes.
    initialized: Value,
}

/// What the session and its stdout reader share.
struct Shared {
    /// `None` once the session is being stopped.
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    closed: AtomicBool,
}

impl Shared {
    /// Writes one message as a line on the child's stdin.
    async fn send(&self, message: &Value) -> Result<(), StdioError> {
        let mut line = serde_json::to_vec(message)
            .map_err(|e| StdioError::Unavailable(format!("the message cannot be written: {e}")))?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(StdioError::Unavailable("the server is stopping".into()));
        };
        let written = async {
            pipe.write_all(&line).await?;
            pipe.flush().await
        };
        if let Err(error) = written.await {
            drop(stdin);
            self.close();
            return Err(StdioError::Unavailable(format!(
                "the server's stdin is closed: {error}"
            )));
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Dropping the senders fails every request in flight.
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Session {
    async fn start(launch: &Launch) -> Result<Session, StdioError> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|value| (name, value))),
            )
            .envs(launch.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            StdioError::Unavailable(format!(
                "route `{}`: could not run `{}`: {e}",
                launch.route, launch.program
            ))
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(StdioError::Unavailable(
                "the child's pipes are missing".into(),
            ));
        };
        let shared = Arc::new(Shared {
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        let mut session = Session {
            child: tokio::sync::Mutex::new(child),
            shared: Arc::clone(&shared),
            next_id: AtomicU64::new(1),
            initialized: Value::Null,
        };
        tokio::spawn(read_stdout(
            launch.route.clone(),
            BufReader::new(stdout),
            launch.max_message_bytes,
            shared,
        ));
        tokio::spawn(log_stderr(launch.route.clone(), stderr));

        let mut params = Map::new();
        params.insert("protocolVersion".into(), PROTOCOL_VERSION.into());
        params.insert("capabilities".into(), json!({}));
        params.insert(
            "clientInfo".into(),
            json!({"name": "writ-gateway", "version": env!("CARGO_PKG_VERSION")}),
        );
        let mut request = Map::new();
        request.insert("method".into(), "initialize".into());
        request.insert("params".into(), Value::Object(params));
        let answer = session
            .request(request, launch.timeout)
            .await
            .map_err(|e| {
                StdioError::Unavailable(format!(
                    "route `{}`: `{}` did not complete the MCP handshake: {e}",
                    launch.route, launch.program
                ))
            })?;
        let Some(result) = answer.get("result").cloned() else {
            return Err(StdioError::Unavailable(format!(
                "route `{}`: `{}` refused the MCP handshake: {}",
                launch.route,
                launch.program,
                answer.get("error").unwrap_or(&Value::Null)
            )));
        };
        session
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        session.initialized = result;
        Ok(session)
    }

    async fn send(&self, message: &Value) -> Result<(), StdioError> {
        self.shared.send(message).await
    }

    /// Sends `message` as a request under a fresh id and waits for its answer.
    async fn request(
        &self,
        mut message: Map<String, Value>,
        timeout: Duration,
    ) -> Result<Value, StdioError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(StdioError::Unavailable("the server has exited".into()));
            }
            pending.insert(id, sender);
        }
        message.insert("jsonrpc".into(), "2.0".into());
        message.insert("id".into(), id.into());
        if let Err(error) = self.send(&Value::Object(message)).await {
            self.forget(id);
            return Err(error);
        }
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(StdioError::Unavailable(
                "the server exited before it answered".into(),
            )),
            Err(_) => {
                self.forget(id);
                let _ = self
                    .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": id, "reason": "the gateway's upstream timeout passed"}}))
                    .await;
                Err(StdioError::Timeout(timeout.as_secs()))
            }
        }
    }

    fn forget(&self, id: u64) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// Reads the child's stdout: answers go to the requests waiting for them; requests from the
/// child get an answer of the gateway's; notifications are dropped. The session ends at
/// end of file, on a read error, or on a line longer than `max` bytes.
async fn read_stdout(
    route: String,
    mut stdout: BufReader<impl AsyncRead + Unpin>,
    max: usize,
    shared: Arc<Shared>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        match (&mut stdout).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) => {
                tracing::warn!(%route, "the stdio MCP server closed its stdout");
                break;
            }
            Ok(_) if line.len() > max => {
                tracing::error!(%route, max, "the stdio MCP server wrote a message over the limit; its session ends");
                break;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%route, %error, "reading the stdio MCP server failed");
                break;
            }
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(&line) else {
            tracing::warn!(%route, bytes = line.len(), "the stdio MCP server wrote a line that is not a JSON-RPC message");
            continue;
        };
        match (message.get("id"), message.get("method")) {
            // An answer to one of the gateway's requests.
            (Some(id), None) => {
                let waiting = id.as_u64().and_then(|id| {
                    shared
                        .pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id)
                });
                match waiting {
                    Some(sender) => {
                        let _ = sender.send(Value::Object(message));
                    }
                    None => tracing::debug!(%route, %id, "an answer nobody waits for"),
                }
            }
            // A request to the client: there is none to ask.
            (Some(id), Some(method)) => {
                let answer = if method == "ping" {
                    json!({"jsonrpc": "2.0", "id": id, "result": {}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32601,
                        "message": format!("`{method}` is not relayed: the Writ gateway has no client to ask"),
                    }})
                };
                if shared.send(&answer).await.is_err() {
                    break;
                }
            }
            (None, Some(method)) => {
                tracing::debug!(%route, %method, "notification from the stdio MCP server dropped")
            }
            (None, None) => {
                tracing::warn!(%route, "the stdio MCP server wrote a message with neither id nor method")
            }
        }
    }
    shared.close();
}

/// Logs the child's stderr at debug level, a line (of at most 1,000 bytes) at a time.
async fn log_stderr(route: String, stderr: impl AsyncRead + Unpin) {
    let mut stderr = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut stderr).take(1000).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::debug!(%route, line = %text.trim_end(), "stdio MCP server stderr");
            }
        }
    }
}
