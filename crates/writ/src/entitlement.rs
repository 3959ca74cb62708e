//! `writ entitlement` and `writ human groups`: which tools and data labels each human, or
//! each group of humans, may use (administrators manage them; a human reads their own).

use std::io::Write;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::remote::Remote;

#[derive(Debug, Subcommand)]
pub(crate) enum EntitlementCommand {
    /// Entitle a human, or every member of a group, to tools and data labels
    /// (administrators only). A member's agents, grants and calls stay within their
    /// entitlements and their groups'.
    Grant {
        /// A human's id, or `group:NAME` for every member of a group.
        #[arg(long)]
        subject: String,
        /// Tools, comma-separated: `server/tool`, or `server/*` for the server's requests
        /// other than tool calls (`initialize`, `tools/list`; every route of an HTTP API).
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
        /// Data labels, comma-separated: the clearance the subject gains.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List every entitlement (administrators only), or, with `--human`, a human's groups
    /// and effective entitlements (their own, or any human's for administrators).
    List {
        /// Show this human's effective entitlements.
        #[arg(long)]
        human: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove an entitlement (administrators only). Calls it allowed stop at their next
    /// writ, under mandates granted before as well.
    Revoke {
        /// The entitlement's id (`ent_…`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) async fn entitlement(
    command: EntitlementCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        EntitlementCommand::Grant {
            subject,
            tools,
            labels,
            remote,
        } => {
            let body = json!({"subject": subject, "tools": tools, "labels": labels});
            let created = remote
                .client()?
                .post("/v1/entitlements", Some(&body))
                .await?;
            writeln!(
                out,
                "entitlement {} for {}: tools [{}], labels [{}] (audit log index {})",
                text(field(&created, "id")),
                text(field(&created, "subject")),
                list(field(&created, "tools")),
                list(field(&created, "labels")),
                field(&created, "log_index")
            )?;
            Ok(())
        }
        EntitlementCommand::List {
            human: Some(human),
            json,
            remote,
        } => {
            let effective = remote
                .client()?
                .get(&format!("/v1/humans/{human}/entitlements"))
                .await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&effective)?)?;
                return Ok(());
            }
            writeln!(
                out,
                "{} ({}), groups [{}]",
                text(field(&effective, "human")),
                text(field(&effective, "role")),
                list(field(&effective, "groups"))
            )?;
            if field(&effective, "role") == "admin" {
                writeln!(out, "administrators are not bound by entitlements")?;
            }
            writeln!(out, "tools   [{}]", list(field(&effective, "tools")))?;
            writeln!(out, "labels  [{}]", list(field(&effective, "labels")))?;
            table(out, field(&effective, "entitlements"))
        }
        EntitlementCommand::List {
            human: None,
            json,
            remote,
        } => {
            let all = remote.client()?.get("/v1/entitlements").await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
                return Ok(());
            }
            table(out, field(&all, "entitlements"))
        }
        EntitlementCommand::Revoke { id, remote } => {
            let removed = remote
                .client()?
                .request(Method::DELETE, &format!("/v1/entitlements/{id}"), None)
                .await?;
            writeln!(
                out,
                "entitlement {} of {} removed (audit log index {})",
                text(field(&removed, "id")),
                text(field(&removed, "subject")),
                field(&removed, "log_index")
            )?;
            Ok(())
        }
    }
}

/// `writ human groups NAME [--set a,b]`: set a human's groups (administrators only), or
/// show them.
pub(crate) async fn groups(
    id: &str,
    set: Option<Vec<String>>,
    remote: &Remote,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = remote.client()?;
    let groups = match set {
        Some(groups) => {
            // `--set ''` leaves the human in no group.
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            let answer = client
                .request(
                    Method::PUT,
                    &format!("/v1/humans/{id}/groups"),
                    Some(&json!({ "groups": groups })),
                )
                .await?;
            field(&answer, "groups").clone()
        }
        None => {
            let effective = client.get(&format!("/v1/humans/{id}/entitlements")).await?;
            field(&effective, "groups").clone()
        }
    };
    writeln!(out, "{id}: groups [{}]", list(&groups))?;
    Ok(())
}

/// A member of a JSON answer; `null` when absent.
fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

fn list(value: &Value) -> String {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn table(out: &mut dyn Write, entitlements: &Value) -> anyhow::Result<()> {
    let rows = entitlements.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if rows.is_empty() {
        writeln!(out, "no entitlements")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<26}  {:<20}  {:<40}  LABELS",
        "ID", "SUBJECT", "TOOLS"
    )?;
    for row in rows {
        writeln!(
            out,
            "{:<26}  {:<20}  {:<40}  {}",
            text(field(row, "id")),
            text(field(row, "subject")),
            list(field(row, "tools")),
            list(field(row, "labels"))
        )?;
    }
    Ok(())
}
