//! The demo tool server: an MCP server, built with rmcp (the official Rust MCP SDK), over a
//! small in-memory set of company documents. `writ quickstart` puts it behind the gateway,
//! and the tests use it as a real MCP server.
//!
//! | tool | arguments | what it does |
//! |---|---|---|
//! | `read_file` | `path` | the text of one of [`FILES`] |
//! | `drop_table` | `table` | pretends to drop a database table: the call no mandate should allow |
//!
//! [`serve_stdio`] speaks MCP on stdin and stdout (`writ demo-server --stdio`);
//! [`http_router`] serves streamable HTTP (JSON answers, no sessions) at `/mcp`.

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ServerHandler, ServiceExt as _, tool, tool_handler, tool_router};
use subtle::ConstantTimeEq as _;

/// The tool provider's name in the quickstart's inventory and routes.
pub const SERVER: &str = "files";

/// The documents `read_file` serves: path and text.
pub const FILES: [(&str, &str); 3] = [
    (
        "/data/reports/q3.md",
        "# Q3 report\nRevenue grew 12% to 4.1 M; churn fell to 2.3%.\n",
    ),
    (
        "/data/reports/q2.md",
        "# Q2 report\nRevenue grew 7% to 3.7 M; churn held at 2.9%.\n",
    ),
    (
        "/data/hr/salaries.csv",
        "name,salary\nalice,182000\nbob,171000\n",
    ),
];

/// The tools with their data-classification labels, as the issuer's inventory lists them.
pub const TOOLS: [(&str, &[&str]); 2] = [("read_file", &["internal"]), ("drop_table", &[])];

/// `read_file`'s arguments.
#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct PathArgs {
    /// An absolute path, such as `/data/reports/q3.md`.
    pub path: String,
}

/// `drop_table`'s arguments.
#[derive(Debug, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct TableArgs {
    /// The table's name.
    pub table: String,
}

/// The demo MCP server.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    tool_router: ToolRouter<Self>,
}

impl Default for DemoFiles {
    fn default() -> Self {
        DemoFiles {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl DemoFiles {
    #[tool(description = "Read a company document by its absolute path")]
    fn read_file(&self, Parameters(PathArgs { path }): Parameters<PathArgs>) -> CallToolResult {
        match FILES.iter().find(|(name, _)| *name == path) {
            Some((_, text)) => CallToolResult::success(vec![ContentBlock::text(*text)]),
            None => {
                CallToolResult::error(vec![ContentBlock::text(format!("no such file: {path}"))])
            }
        }
    }

    #[tool(description = "Drop a database table (irreversible)")]
    fn drop_table(&self, Parameters(TableArgs { table }): Parameters<TableArgs>) -> String {
        format!("dropped table {table}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoFiles {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("writ-demo-files", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// Serves MCP on stdin and stdout until the client closes stdin.
pub async fn serve_stdio() -> std::io::Result<()> {
    let running = DemoFiles::default()
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

/// The streamable-HTTP server at `/mcp`: JSON answers, no sessions. With `token`, every
/// request must carry `Authorization: Bearer <token>` (the credential a gateway injects),
/// compared in constant time; others get 401.
pub fn http_router(token: Option<String>) -> axum::Router {
    let router = mcp_router();
    match token {
        Some(token) => router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let expected = format!("Bearer {token}");
                async move {
                    let presented = request
                        .headers()
                        .get(axum::http::header::AUTHORIZATION)
                        .map(|value| value.as_bytes())
                        .unwrap_or_default();
                    if bool::from(presented.ct_eq(expected.as_bytes())) {
                        next.run(request).await
                    } else {
                        axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::UNAUTHORIZED,
                            "this tool server answers only its gateway\n",
                        ))
                    }
                }
            },
        )),
        None => router,
    }
}

fn mcp_router() -> axum::Router {
    let service: StreamableHttpService<DemoFiles, LocalSessionManager> = StreamableHttpService::new(
        || Ok(DemoFiles::default()),
        Default::default(),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    axum::Router::new().nest_service("/mcp", service)
}
