//! `writ agent baseline` and `writ approvals`: what an agent normally does, and the calls
//! held for their owner because they drift from it.

use std::io::Write;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::remote::Remote;

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// Calls held for your agents (every agent's, for administrators), pending ones unless
    /// `--all`.
    List {
        /// Include approved, denied, used and expired approvals.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Approve a held call: the agent's retry gets its writ, once, and the call is learned.
    Approve {
        /// The approval id (`apr_…`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deny a held call (or end a mandate a gateway stopped).
    Deny {
        /// The approval id (`apr_…`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub(crate) async fn approvals(
    command: ApprovalsCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (id, decision, remote) = match command {
        ApprovalsCommand::List { all, json, remote } => {
            let path = if all {
                "/v1/approvals?state=all"
            } else {
                "/v1/approvals"
            };
            let list = remote.client()?.get(path).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                approvals_table(&list, out)?;
            }
            return Ok(());
        }
        ApprovalsCommand::Approve { id, remote } => (id, "approve", remote),
        ApprovalsCommand::Deny { id, remote } => (id, "deny", remote),
    };
    let answer = remote
        .client()?
        .post(
            &format!("/v1/approvals/{id}"),
            Some(&json!({"decision": decision})),
        )
        .await?;
    writeln!(
        out,
        "approval {id} is {} (agent {}, mandate {})",
        text(&answer, "state"),
        text(&answer, "agent_name"),
        text(&answer, "mandate")
    )?;
    Ok(())
}

fn text<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("-")
}

fn number(value: &Value, name: &str) -> u64 {
    value.get(name).and_then(Value::as_u64).unwrap_or(0)
}

fn approvals_table(list: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let approvals = list
        .get("approvals")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if approvals.is_empty() {
        writeln!(out, "no approvals")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<27} {:<16} {:<10} {:<8} {:<28} WHY",
        "APPROVAL", "AGENT", "OWNER", "STATE", "CALL"
    )?;
    for approval in approvals {
        let call = approval.get("call").unwrap_or(&Value::Null);
        let (name, arguments) = match call {
            Value::Null => ("(the whole mandate)".to_owned(), None),
            call => (call_name(call), call.get("arguments")),
        };
        let why = approval
            .get("findings")
            .and_then(Value::as_array)
            .and_then(|findings| findings.first())
            .map_or("-", |finding| text(finding, "message"));
        // What the issuer returns came from an agent's request: shown escaped, so no
        // control character can redraw the table.
        writeln!(
            out,
            "{:<27} {:<16} {:<10} {:<8} {:<28} {}",
            printable(text(approval, "id")),
            printable(text(approval, "agent_name")),
            printable(text(approval, "owner")),
            printable(text(approval, "state")),
            printable(&name),
            printable(why)
        )?;
        if let Some(arguments) = arguments {
            writeln!(out, "    arguments: {}", printable(&arguments.to_string()))?;
        }
    }
    Ok(())
}

/// `text` with control characters escaped.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A call as the detectors name it, from its authorization detail.
fn call_name(call: &Value) -> String {
    serde_json::from_value::<writ_scope::AuthorizationDetail>(call.clone())
        .ok()
        .and_then(|detail| writ_behaviour::tool_name(&detail))
        .unwrap_or_else(|| call.to_string())
}

/// `writ agent baseline NAME`.
pub(crate) async fn baseline(
    name: &str,
    json: bool,
    remote: &Remote,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let view = remote
        .client()?
        .get(&format!("/v1/agents/{name}/baseline"))
        .await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    let baseline = view.get("baseline").unwrap_or(&Value::Null);
    writeln!(out, "agent {name} ({})", text(&view, "jkt"))?;
    match view.get("learning").filter(|learning| !learning.is_null()) {
        Some(learning) => writeln!(
            out,
            "learning: {} of {} calls, {} of {} s; no detector speaks until both are reached",
            number(learning, "calls"),
            number(learning, "calls_needed"),
            number(learning, "seconds"),
            number(learning, "seconds_needed"),
        )?,
        None => writeln!(out, "enforcing: the detectors compare every call with this")?,
    }
    writeln!(
        out,
        "{} calls learned; the busiest window held {} calls",
        number(baseline, "calls"),
        number(baseline, "busiest_window")
    )?;
    writeln!(
        out,
        "\n{:<36} {:>7} {:>7} {:>10} {:>15}",
        "TOOL", "CALLS", "SHAPES", "RESPONSES", "LARGEST BYTES"
    )?;
    if let Some(tools) = baseline.get("tools").and_then(Value::as_object) {
        for (tool, profile) in tools {
            writeln!(
                out,
                "{tool:<36} {:>7} {:>7} {:>10} {:>15}",
                number(profile, "calls"),
                profile
                    .get("shapes")
                    .and_then(Value::as_object)
                    .map_or(0, |shapes| shapes.len()),
                number(profile, "responses"),
                number(profile, "largest_response"),
            )?;
        }
    }
    let hours: Vec<String> = baseline
        .get("hours")
        .and_then(Value::as_array)
        .map(|hours| {
            hours
                .iter()
                .enumerate()
                .filter(|(_, count)| count.as_u64().unwrap_or(0) > 0)
                .map(|(hour, count)| format!("{hour:02}h:{count}"))
                .collect()
        })
        .unwrap_or_default();
    writeln!(out, "\nhours (UTC): {}", hours.join(" "))?;
    if let Some(sequences) = baseline.get("sequences").and_then(Value::as_object) {
        writeln!(out, "sequences:")?;
        for (from, followers) in sequences {
            let followers: Vec<String> = followers
                .as_object()
                .into_iter()
                .flatten()
                .map(|(to, count)| format!("{to} ({count})"))
                .collect();
            writeln!(out, "  {from} → {}", followers.join(", "))?;
        }
    }
    if let Some(modes) = view.get("modes").and_then(Value::as_object) {
        let mut modes: Vec<String> = modes
            .iter()
            .map(|(detector, mode)| format!("{detector}={}", mode.as_str().unwrap_or("-")))
            .collect();
        modes.sort();
        writeln!(out, "modes: {}", modes.join(" "))?;
    }
    Ok(())
}
