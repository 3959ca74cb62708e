//! The gateway's configuration file (TOML).
//!
//! ```toml
//! listen = "127.0.0.1:8443"
//! # How agents reach this gateway: DPoP proofs name it, and route resources sit under it.
//! public_url = "https://gateway.example"
//! issuer = "https://issuer.example"
//! # The gateway's own key; `writ gateway run` creates it (mode 0600) on first start.
//! # Register its public half with `writ gateway add`.
//! key_file = "gateway.key"
//! # Decisions the issuer could not take yet wait here, on disk, until it can.
//! spool_dir = "spool"
//!
//! [[routes]]
//! name = "files"                       # the tool provider's inventory name
//! path = "/mcp/files"                  # where the route lives on this gateway
//! kind = "mcp"                         # "mcp" (streamable HTTP) or "http"
//! upstream = "http://127.0.0.1:9000/mcp"
//! credential = { type = "bearer", env = "FILES_TOKEN" }
//!
//! [[routes]]
//! name = "notes"
//! path = "/mcp/notes"
//! kind = "mcp"
//! # A stdio MCP server, run by the gateway as a child process.
//! command = ["notes-mcp-server", "--stdio"]
//! env = { NOTES_DIR = "/srv/notes" }
//! credential = { type = "env", variable = "NOTES_TOKEN", file = "notes.token" }
//! ```
//!
//! Relative paths are relative to the configuration file's directory. Every limit has a
//! default; see [`Limits`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use writ_scope::ServerName;
use writ_token::Audience;

/// The configuration could not be used. Nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
    /// A value is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The gateway's public base URL, without a trailing slash.
    pub public_url: String,
    /// The issuer's base URL (the `iss` of its writs).
    pub issuer: String,
    /// The gateway's key file (read by the command that runs the gateway).
    pub key_file: PathBuf,
    /// The directory of the decision spool.
    pub spool_dir: PathBuf,
    /// Limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// The routes, matched by the longest path prefix.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// Limits and timeouts, each with a default.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// How old the revocation feed may be before every request is refused, in seconds.
    pub max_feed_staleness_secs: u64,
    /// How long the issuer's keys are trusted after their last successful fetch, in seconds.
    pub max_jwks_age_secs: u64,
    /// The least time between two key fetches caused by an unknown `kid`, in seconds.
    pub jwks_refetch_interval_secs: u64,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The most bytes of request headers (names and values).
    pub max_header_bytes: usize,
    /// The largest `tools/list` response the gateway filters, in bytes.
    pub max_tools_list_bytes: usize,
    /// How long an upstream may take to start answering, in seconds.
    pub upstream_timeout_secs: u64,
    /// The clock skew allowed on writ times and proof `iat`, in seconds.
    pub clock_skew_secs: u64,
    /// How old a DPoP proof may be, in seconds.
    pub proof_max_age_secs: u64,
    /// How many writ and proof ids the replay cache holds.
    pub replay_cache_entries: usize,
    /// The longest line a stdio MCP server may write, in bytes.
    pub max_stdio_message_bytes: usize,
    /// How long an agent's behaviour limits (the largest response each tool may return)
    /// are used before they are read from the issuer again, in seconds.
    pub behaviour_limits_ttl_secs: u64,
    /// How long the issuer has to acknowledge a batch of decisions before the gateway
    /// writes it to the spool (fsync), in milliseconds: 10 to 5000.
    pub audit_spool_after_ms: u64,
    /// The most decisions that may be neither acknowledged by the issuer nor on disk:
    /// past it, allowed calls are refused (`audit_backlog`), so a crash of the gateway
    /// never loses more. 1 to 65536.
    pub max_unrecorded_decisions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_feed_staleness_secs: 5,
            max_jwks_age_secs: 900,
            jwks_refetch_interval_secs: 5,
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_tools_list_bytes: 4 * 1024 * 1024,
            upstream_timeout_secs: 30,
            clock_skew_secs: 5,
            proof_max_age_secs: 60,
            replay_cache_entries: 1_000_000,
            max_stdio_message_bytes: 16 * 1024 * 1024,
            behaviour_limits_ttl_secs: 30,
            audit_spool_after_ms: 250,
            max_unrecorded_decisions: 1024,
        }
    }
}

/// One route as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The tool provider's inventory name: the `server` of the writs for this route.
    pub name: String,
    /// The route's path prefix on the gateway, such as `/mcp/files`.
    pub path: String,
    /// What the upstream speaks.
    pub kind: RouteKind,
    /// The upstream's URL (`http` or `https`); the rest of the request path is appended.
    #[serde(default)]
    pub upstream: Option<String>,
    /// For an MCP server over stdio, instead of `upstream`: the program and its arguments,
    /// run by the gateway (the program is looked up in `PATH`).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// For `command`: environment variables set in the child, besides `PATH`, `HOME`,
    /// `LANG` and `TMPDIR`, the only ones it inherits. Not for secrets: see `credential`.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// The credential injected into upstream requests, or into the child's environment.
    #[serde(default)]
    pub credential: Option<CredentialConfig>,
}

/// What an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// MCP over streamable HTTP: JSON-RPC messages are checked one by one.
    Mcp,
    /// A plain HTTP API: method and path are checked.
    Http,
}

/// An upstream credential and where its secret comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// How it is sent.
    #[serde(rename = "type")]
    pub kind: CredentialKind,
    /// For `header`: the header's name.
    #[serde(default)]
    pub header: Option<String>,
    /// For `env`: the variable the child reads the secret from.
    #[serde(default)]
    pub variable: Option<String>,
    /// The environment variable holding the secret (for `basic`, `user:password`).
    #[serde(default)]
    pub env: Option<String>,
    /// The file holding the secret (one line; a final newline is ignored).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// How a credential is sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic base64(<secret>)`, the secret being `user:password`.
    Basic,
    /// `<header>: <secret>`.
    Header,
    /// For a stdio server: the secret in the child's environment, as `<variable>`.
    Env,
}

impl Config {
    /// Reads and checks a configuration file; relative paths in it become relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        let mut config = Config::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |file: &mut PathBuf| {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        };
        anchor(&mut config.key_file);
        anchor(&mut config.spool_dir);
        for route in &mut config.routes {
            if let Some(file) = route.credential.as_mut().and_then(|c| c.file.as_mut()) {
                anchor(file);
            }
        }
        Ok(config)
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: error.to_string(),
        })?;
        config.public_url = config.public_url.trim_end_matches('/').to_owned();
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        Audience::new(&self.public_url)
            .map_err(|e| ConfigError::Invalid(format!("public_url: {e}")))?;
        Audience::new(&self.issuer).map_err(|e| ConfigError::Invalid(format!("issuer: {e}")))?;
        if self.limits.max_feed_staleness_secs < 3 {
            return invalid(
                "limits.max_feed_staleness_secs must be at least 3: the feed answers every second at best".into(),
            );
        }
        if !(10..=5000).contains(&self.limits.audit_spool_after_ms) {
            return invalid(
                "limits.audit_spool_after_ms must be 10 to 5000: decisions wait that long for the issuer before they are spooled".into(),
            );
        }
        if !(1..=65_536).contains(&self.limits.max_unrecorded_decisions) {
            return invalid("limits.max_unrecorded_decisions must be 1 to 65536".into());
        }
        if self.routes.is_empty() {
            return invalid("no [[routes]]: a gateway with nothing behind it serves nobody".into());
        }
        let mut paths = std::collections::HashSet::new();
        for route in &self.routes {
            let name = &route.name;
            ServerName::new(name)
                .map_err(|e| ConfigError::Invalid(format!("route `{name}`: name: {e}")))?;
            let path = &route.path;
            let segments_ok = path
                .strip_prefix('/')
                .is_some_and(|rest| !rest.is_empty() && rest.split('/').all(segment_ok));
            if !segments_ok {
                return invalid(format!(
                    "route `{name}`: path `{path}` must start with `/` and be segments of letters, digits, `-`, `_` and `.`, without a trailing `/`"
                ));
            }
            if !paths.insert(path.clone()) {
                return invalid(format!("route `{name}`: path `{path}` is used twice"));
            }
            if path.starts_with("/.well-known/") || path == "/healthz" || path == "/metrics" {
                return invalid(format!(
                    "route `{name}`: path `{path}` is the gateway's own"
                ));
            }
            match (&route.upstream, &route.command, route.kind) {
                (Some(upstream), None, _) => {
                    if !(upstream.starts_with("http://") || upstream.starts_with("https://"))
                        || upstream.contains(['?', '#'])
                        || upstream.parse::<hyper::Uri>().is_err()
                    {
                        return invalid(format!(
                            "route `{name}`: upstream `{upstream}` must be an http or https URL without query or fragment"
                        ));
                    }
                    if !route.env.is_empty() {
                        return invalid(format!(
                            "route `{name}`: `env` is for routes that run a `command`"
                        ));
                    }
                }
                (None, Some(command), RouteKind::Mcp) => {
                    if command.first().is_none_or(String::is_empty) {
                        return invalid(format!(
                            "route `{name}`: `command` names the program first"
                        ));
                    }
                    if let Some(variable) = route.env.keys().find(|v| !variable_ok(v)) {
                        return invalid(format!(
                            "route `{name}`: `{variable}` is not an environment variable name"
                        ));
                    }
                }
                (None, Some(_), RouteKind::Http) => {
                    return invalid(format!(
                        "route `{name}`: an `http` route needs an `upstream` URL; `command` is for MCP servers over stdio"
                    ));
                }
                _ => {
                    return invalid(format!(
                        "route `{name}`: exactly one of `upstream` (a URL) or `command` (a stdio MCP server) is needed"
                    ));
                }
            }
            if let Some(credential) = &route.credential {
                let sources =
                    usize::from(credential.env.is_some()) + usize::from(credential.file.is_some());
                if sources != 1 {
                    return invalid(format!(
                        "route `{name}`: a credential takes its secret from exactly one of `env` or `file`"
                    ));
                }
                match (credential.kind, &credential.header) {
                    (CredentialKind::Header, Some(header))
                        if hyper::header::HeaderName::try_from(header.as_str()).is_ok() => {}
                    (CredentialKind::Header, _) => {
                        return invalid(format!(
                            "route `{name}`: a `header` credential needs a valid `header` name"
                        ));
                    }
                    (_, Some(_)) => {
                        return invalid(format!(
                            "route `{name}`: only a `header` credential names a header"
                        ));
                    }
                    (_, None) => {}
                }
                let stdio = route.command.is_some();
                match (credential.kind, &credential.variable) {
                    (CredentialKind::Env, Some(variable)) if stdio && variable_ok(variable) => {}
                    (CredentialKind::Env, _) if stdio => {
                        return invalid(format!(
                            "route `{name}`: an `env` credential needs a valid `variable` name"
                        ));
                    }
                    (CredentialKind::Env, _) => {
                        return invalid(format!(
                            "route `{name}`: an `env` credential is for routes that run a `command`"
                        ));
                    }
                    (_, Some(_)) => {
                        return invalid(format!(
                            "route `{name}`: only an `env` credential names a `variable`"
                        ));
                    }
                    (_, None) if stdio => {
                        return invalid(format!(
                            "route `{name}`: a stdio server takes its credential as `type = \"env\"`"
                        ));
                    }
                    (_, None) => {}
                }
            }
        }
        Ok(())
    }
}

fn variable_ok(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn segment_ok(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

    use super::*;

    const BASE: &str = r#"
listen = "127.0.0.1:8443"
public_url = "https://gateway.example/"
issuer = "https://issuer.example"
key_file = "gateway.key"
spool_dir = "spool"
"#;

    fn with_route(route: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}\n[[routes]]\n{route}"))
    }

    fn refused(route: &str, needle: &str) {
        match with_route(route) {
            Err(error) => assert!(
                error.to_string().contains(needle),
                "`{error}` does not mention `{needle}`"
            ),
            Ok(_) => panic!("accepted: {route}"),
        }
    }

    #[test]
    fn a_good_file_reads_with_defaults() {
        let config = with_route(
            "name = \"files\"\npath = \"/mcp/files\"\nkind = \"mcp\"\nupstream = \"http://127.0.0.1:9000/mcp\"\ncredential = { type = \"header\", header = \"x-api-key\", env = \"FILES_KEY\" }",
        )
        .unwrap();
        assert_eq!(config.public_url, "https://gateway.example");
        assert_eq!(config.limits.max_feed_staleness_secs, 5);
        assert_eq!(config.routes.len(), 1);
    }

    #[test]
    fn bad_routes_are_refused_with_the_reason() {
        let route = |path: &str, upstream: &str| {
            format!(
                "name = \"files\"\npath = \"{path}\"\nkind = \"mcp\"\nupstream = \"{upstream}\""
            )
        };
        refused(&route("mcp/files", "http://u"), "must start with `/`");
        refused(&route("/mcp/../files", "http://u"), "segments");
        refused(&route("/mcp/files/", "http://u"), "trailing");
        refused(&route("/healthz", "http://u"), "the gateway's own");
        refused(&route("/mcp/files", "ftp://u"), "http or https");
        refused(&route("/mcp/files", "http://u/x?q=1"), "without query");
        refused(
            &(route("/a", "http://u") + "\ncredential = { type = \"bearer\" }"),
            "exactly one of `env` or `file`",
        );
        refused(
            &(route("/a", "http://u") + "\ncredential = { type = \"header\", env = \"X\" }"),
            "valid `header`",
        );
        refused(
            &(route("/a", "http://u") + "\nsecret = \"inline\""),
            "unknown field",
        );
        refused(
            &(route("/a", "http://u") + "\ncommand = [\"srv\"]"),
            "exactly one of `upstream`",
        );
        refused(
            &(route("/a", "http://u")
                + "\ncredential = { type = \"env\", variable = \"T\", env = \"X\" }"),
            "routes that run a `command`",
        );
    }

    #[test]
    fn stdio_routes_are_checked() {
        let route = |extra: &str| {
            format!("name = \"notes\"\npath = \"/mcp/notes\"\nkind = \"mcp\"\n{extra}")
        };
        let config = with_route(&route(
            "command = [\"notes\", \"--stdio\"]\nenv = { NOTES_DIR = \"/srv\" }\ncredential = { type = \"env\", variable = \"NOTES_TOKEN\", env = \"T\" }",
        ))
        .unwrap();
        assert_eq!(
            config.routes.first().and_then(|r| r.command.clone()),
            Some(vec!["notes".to_owned(), "--stdio".to_owned()])
        );
        refused(&route("command = []"), "names the program");
        refused(&route(""), "exactly one of `upstream`");
        refused(
            &route("command = [\"notes\"]\nenv = { \"BAD-NAME\" = \"x\" }"),
            "not an environment variable name",
        );
        refused(
            &route("command = [\"notes\"]\ncredential = { type = \"bearer\", env = \"T\" }"),
            "`type = \"env\"`",
        );
        refused(
            &route("command = [\"notes\"]\ncredential = { type = \"env\", env = \"T\" }"),
            "valid `variable`",
        );
        refused(
            "name = \"crm\"\npath = \"/api\"\nkind = \"http\"\ncommand = [\"x\"]",
            "needs an `upstream` URL",
        );
        assert!(matches!(
            Config::parse(BASE),
            Err(ConfigError::Invalid(message)) if message.contains("no [[routes]]")
        ));
    }
}
