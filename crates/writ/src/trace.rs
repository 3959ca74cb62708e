//! `writ trace ID`: from one action back to the human who asked for it, every step proven
//! to be in the audit log.
//!
//! The issuer sends the records and one signed checkpoint; this side trusts none of it
//! until it has checked the checkpoint's signature with the log's verifier key and each
//! record's inclusion proof against the checkpoint's root. What it prints comes from the
//! leaf bytes it checked, not from anything else in the answer.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use writ_client::IssuerClient;

/// A trace whose every record was checked against a signed checkpoint.
pub(crate) struct Verified {
    subject: String,
    /// The checkpoint's size and origin.
    size: u64,
    origin: String,
    /// `(index, leaf)` in log order, each leaf `{"event", "kind", "time"}`.
    records: Vec<(u64, Value)>,
    truncated: bool,
}

/// Fetches the trace of `id` and checks it against `log_key`, the log's verifier key as
/// `writ issuer init` printed it (never the key the issuer presents).
pub(crate) async fn fetch(
    client: &IssuerClient,
    id: &str,
    log_key: &str,
) -> anyhow::Result<Verified> {
    let body = client.get(&format!("/v1/trace/{id}")).await?;
    verify(id, &body, log_key)
}

/// Checks a trace the issuer sent: its checkpoint's signature, every record's inclusion in
/// it, and that the records form one line through `id`.
fn verify(id: &str, body: &Value, log_key: &str) -> anyhow::Result<Verified> {
    let note = body
        .pointer("/checkpoint/note")
        .and_then(Value::as_str)
        .context("the trace has no checkpoint")?;
    let signed = crate::remote::signed_checkpoint(note, log_key)?;

    let mut records = Vec::new();
    for record in body
        .get("records")
        .and_then(Value::as_array)
        .context("the trace has no records")?
    {
        let index = record
            .get("index")
            .and_then(Value::as_u64)
            .context("a record has no index")?;
        let data = STANDARD
            .decode(
                record
                    .get("data")
                    .and_then(Value::as_str)
                    .context("a record has no data")?,
            )
            .context("a record's data is not base64")?;
        let proof = record
            .get("proof")
            .and_then(Value::as_array)
            .context("a record has no proof")?
            .iter()
            .map(crate::remote::hash)
            .collect::<anyhow::Result<Vec<_>>>()?;
        writ_log::verify_inclusion(
            &writ_log::leaf_hash(&data),
            index,
            signed.size,
            &proof,
            &signed.root,
        )
        .with_context(|| {
            format!(
                "record {index} is not in the log at the signed checkpoint of size {}",
                signed.size
            )
        })?;
        let leaf: Value =
            serde_json::from_slice(&data).with_context(|| format!("record {index} is not JSON"))?;
        records.push((index, leaf));
    }
    anyhow::ensure!(!records.is_empty(), "the issuer sent an empty trace");
    records.sort_by_key(|(index, _)| *index);
    check_line(id, &records)?;
    Ok(Verified {
        subject: id.to_owned(),
        size: signed.size,
        origin: signed.origin,
        records,
        truncated: body.get("truncated").and_then(Value::as_bool) == Some(true),
    })
}

impl Verified {
    /// The records, one per step, for people.
    pub(crate) fn print(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "trace of {}: {} records, each proven to be in checkpoint {} of {}",
            self.subject,
            self.records.len(),
            self.size,
            self.origin,
        )?;
        // Agents are named where their registration is in the trace.
        let names: BTreeMap<&str, &str> = self
            .records
            .iter()
            .filter_map(|(_, leaf)| {
                let event = leaf.get("event")?;
                Some((event.get("agent")?.as_str()?, event.get("name")?.as_str()?))
            })
            .collect();
        for (index, leaf) in &self.records {
            let kind = leaf.get("kind").and_then(Value::as_str).unwrap_or("?");
            let time = leaf.get("time").and_then(Value::as_u64).unwrap_or(0);
            let event = leaf.get("event").unwrap_or(&Value::Null);
            let mut lines = describe(kind, event, &names).into_iter();
            writeln!(
                out,
                "  #{index:<5} {:<20} {}",
                kind,
                lines.next().unwrap_or_default()
            )?;
            for line in lines {
                writeln!(out, "  {:<27} {line}", "")?;
            }
            writeln!(out, "  {:<27} at {}", "", date(time))?;
        }
        if self.truncated {
            writeln!(
                out,
                "  … more records were left out; trace a single writ or request to see them"
            )?;
        }
        Ok(())
    }

    /// The verified records as JSON, for machines.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "subject": self.subject,
            "checkpoint": {"size": self.size, "origin": self.origin},
            "verified": true,
            "truncated": self.truncated,
            "records": self.records.iter().map(|(index, leaf)| {
                json!({"index": index, "kind": leaf["kind"], "time": leaf["time"], "event": leaf["event"]})
            }).collect::<Vec<_>>(),
        })
    }

    /// The records' kinds, in log order.
    pub(crate) fn kinds(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|(_, leaf)| {
                leaf.get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect()
    }
}

/// Checks that the records are one line through `subject`: each decision's writ, each
/// writ's mandate, each mandate's parent, human and agent are among them, and every record
/// is linked to the one `subject` names. Inclusion proofs show each record is in the log;
/// this shows the issuer did not splice in records of another line.
fn check_line(subject: &str, records: &[(u64, Value)]) -> anyhow::Result<()> {
    // Each record is a node; it names itself and what it points to.
    let nodes: Vec<(u64, String, Vec<String>)> = records
        .iter()
        .map(|(index, leaf)| {
            let event = leaf.get("event").unwrap_or(&Value::Null);
            let name = |kind: &str, member: &str| {
                event
                    .get(member)
                    .and_then(Value::as_str)
                    .map(|id| format!("{kind}:{id}"))
            };
            let kind = leaf.get("kind").and_then(Value::as_str).unwrap_or("");
            let (own, links): (Option<String>, Vec<Option<String>>) = match kind {
                "human_registered" => (name("human", "human"), vec![]),
                "agent_registered" => (name("agent", "agent"), vec![]),
                "mandate_granted" | "mandate_delegated" => (
                    name("mandate", "mandate"),
                    vec![
                        name("human", "human"),
                        name("agent", "agent"),
                        name("mandate", "parent"),
                    ],
                ),
                "writ_issued" => (name("writ", "writ"), vec![name("mandate", "mandate")]),
                "gateway_decision" => (name("request", "request_id"), vec![name("writ", "writ")]),
                // An answer that held its mandate carries the approval that may lift it.
                "gateway_response" => (
                    event
                        .pointer("/approval/id")
                        .and_then(Value::as_str)
                        .map(|id| format!("approval:{id}")),
                    vec![name("writ", "writ")],
                ),
                "writ_denied" => (None, vec![name("mandate", "mandate")]),
                "approval_requested" => (name("approval", "id"), vec![name("mandate", "mandate")]),
                "approval_decided" => (None, vec![name("approval", "approval")]),
                _ => (None, vec![]),
            };
            (
                *index,
                own.unwrap_or_else(|| format!("leaf:{index}")),
                links.into_iter().flatten().collect(),
            )
        })
        .collect();
    let present: std::collections::BTreeSet<&str> =
        nodes.iter().map(|(_, own, _)| own.as_str()).collect();
    for (index, _, links) in &nodes {
        if let Some(missing) = links.iter().find(|link| !present.contains(link.as_str())) {
            anyhow::bail!("record {index} names {missing}, which the trace does not hold");
        }
    }
    // Everything must hang together with the subject's own record.
    let start = nodes
        .iter()
        .position(|(index, own, _)| {
            index.to_string() == subject || own.split_once(':').is_some_and(|(_, id)| id == subject)
        })
        .with_context(|| format!("no record in the trace is `{subject}`"))?;
    let mut reached = vec![false; nodes.len()];
    let mut queue = vec![start];
    while let Some(at) = queue.pop() {
        if std::mem::replace(reached.get_mut(at).context("index")?, true) {
            continue;
        }
        let Some((_, own, links)) = nodes.get(at) else {
            continue;
        };
        for (next, (_, other, other_links)) in nodes.iter().enumerate() {
            if links.contains(other) || other_links.contains(own) {
                queue.push(next);
            }
        }
    }
    if let Some(((index, _, _), _)) = nodes.iter().zip(&reached).find(|(_, reached)| !**reached) {
        anyhow::bail!("record {index} is not part of the line of `{subject}`");
    }
    Ok(())
}

/// What a record says, in a line or a few; `names` maps agent thumbprints to names.
fn describe(kind: &str, event: &Value, names: &BTreeMap<&str, &str>) -> Vec<String> {
    let text = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or("?");
    let agent = || match names.get(text("agent")) {
        Some(name) => format!("{name} ({})", text("agent")),
        None => text("agent").to_owned(),
    };
    let policy = || {
        let ids: Vec<&str> = event
            .pointer("/policy/ids")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        format!(
            "policy set {} allowed it: {}",
            event
                .pointer("/policy/set")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            ids.join(", ")
        )
    };
    match kind {
        "human_registered" => vec![format!(
            "human {} ({}), registered by {}",
            text("human"),
            text("role"),
            text("by")
        )],
        "agent_registered" => vec![
            format!(
                "agent {} owned by {}, key {}",
                text("name"),
                text("owner"),
                text("agent")
            ),
            format!("may be granted {}", compact(event.get("tools"))),
        ],
        "mandate_granted" | "mandate_delegated" => {
            let task = match event.get("task").and_then(Value::as_str) {
                Some(task) => format!("task “{task}” (SHA-256 {})", text("task_digest")),
                None => format!("task with SHA-256 {} (text not kept)", text("task_digest")),
            };
            let mut lines = vec![
                format!(
                    "mandate {} {} {} to {}",
                    text("mandate"),
                    if kind == "mandate_granted" {
                        "granted by"
                    } else {
                        "delegated on behalf of"
                    },
                    text("human"),
                    event
                        .get("agent_name")
                        .and_then(Value::as_str)
                        .unwrap_or(text("agent"))
                ),
                task,
            ];
            if let Some(parent) = event.get("parent").and_then(Value::as_str) {
                let by = event
                    .get("delegated_by")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                lines.push(format!(
                    "delegated by {} from mandate {parent}, depth {}",
                    names
                        .get(by)
                        .map_or_else(|| by.to_owned(), |name| format!("{name} ({by})")),
                    event.get("depth").and_then(Value::as_u64).unwrap_or(0)
                ));
            }
            lines.push(policy());
            lines
        }
        "writ_issued" => {
            let mut lines = vec![
                format!("writ {} for {}", text("writ"), call(event.get("call"))),
                format!(
                    "by agent {} for {} under mandate {}, at {}",
                    agent(),
                    text("human"),
                    text("mandate"),
                    text("aud")
                ),
                policy(),
            ];
            lines.extend(findings(event.pointer("/behaviour/findings")));
            if let Some(approval) = event.pointer("/behaviour/approval").and_then(Value::as_str) {
                lines.push(format!("issued once its owner approved {approval}"));
            }
            lines
        }
        "writ_denied" => {
            let mut lines = vec![format!(
                "writ refused [{}]: {}",
                text("reason"),
                text("message")
            )];
            lines.extend(findings(event.pointer("/behaviour/findings")));
            lines
        }
        "approval_requested" => {
            let mut lines = vec![format!(
                "approval {} asked of {} for {}",
                text("id"),
                text("owner"),
                match event.get("call") {
                    Some(Value::Null) | None => "the whole mandate".to_owned(),
                    detail => call(detail),
                }
            )];
            lines.extend(findings(event.get("findings")));
            lines
        }
        "approval_decided" => vec![format!(
            "approval {}: {} by {}",
            text("approval"),
            text("decision"),
            text("by")
        )],
        "gateway_response" => {
            let mut lines = vec![format!(
                "response of {} bytes from {} [{}] at gateway {}",
                event.get("bytes").and_then(Value::as_u64).unwrap_or(0),
                text("tool"),
                text("reason"),
                text("gateway")
            )];
            lines.extend(findings(
                event
                    .get("finding")
                    .map(|f| Value::Array(vec![f.clone()]))
                    .as_ref(),
            ));
            lines
        }
        "gateway_decision" => vec![
            format!(
                "{} {} {} on route {} at gateway {}",
                text("decision"),
                text("method"),
                text("target"),
                text("route"),
                text("gateway")
            ),
            format!("request {} [{}]", text("request_id"), text("reason")),
        ],
        _ => vec![compact(Some(event))],
    }
}

/// Behaviour findings, one line each: the detector, its mode and its sentence.
fn findings(findings: Option<&Value>) -> Vec<String> {
    findings
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|finding| {
            let text = |name: &str| finding.get(name).and_then(Value::as_str).unwrap_or("?");
            format!(
                "behaviour {} ({}): {}",
                text("detector"),
                text("mode"),
                text("message")
            )
        })
        .collect()
}

/// An authorization detail in a few words: `server/tool {arguments}` or methods and path.
fn call(detail: Option<&Value>) -> String {
    let Some(detail) = detail else {
        return "?".to_owned();
    };
    let text = |name: &str| detail.get(name).and_then(Value::as_str).unwrap_or("?");
    match text("type") {
        "mcp_tool_call" => format!(
            "{}/{} with arguments {}",
            text("server"),
            text("tool"),
            compact(detail.get("arguments"))
        ),
        "mcp_request" => format!("{} {}", text("server"), compact(detail.get("methods"))),
        "http_request" => format!(
            "{} {} {}",
            text("server"),
            compact(detail.get("methods")),
            text("path")
        ),
        _ => compact(Some(detail)),
    }
}

fn compact(value: Option<&Value>) -> String {
    value.map_or_else(|| "?".to_owned(), Value::to_string)
}

/// Unix seconds as an HTTP date, in UTC.
fn date(seconds: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;

    /// A small log: alice, her agent, her mandate, a writ under it; then bob and a
    /// mandate of his for the same agent.
    fn log() -> Vec<Vec<u8>> {
        let events = [
            json!({"kind": "human_registered", "event": {"human": "alice", "role": "member", "by": "admin"}}),
            json!({"kind": "agent_registered", "event": {"agent": "A", "name": "bot", "owner": "alice"}}),
            json!({"kind": "mandate_granted", "event": {"mandate": "m1", "human": "alice", "agent": "A"}}),
            json!({"kind": "writ_issued", "event": {"writ": "w1", "mandate": "m1", "human": "alice", "agent": "A"}}),
            json!({"kind": "human_registered", "event": {"human": "bob", "role": "member", "by": "admin"}}),
            json!({"kind": "mandate_granted", "event": {"mandate": "m2", "human": "bob", "agent": "A"}}),
        ];
        events
            .iter()
            .map(|event| serde_json::to_vec(event).unwrap())
            .collect()
    }

    /// What an issuer would send for the leaves at `indexes`, signed by a new log key.
    fn trace_of(indexes: &[u64]) -> (Value, String) {
        let leaves = log();
        let mut tree = writ_log::MemoryTree::new();
        for leaf in &leaves {
            tree.push(writ_log::leaf_hash(leaf));
        }
        let size = tree.size();
        let key = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
        let signer = writ_log::NoteSigner::new("test.example/log", key).unwrap();
        let checkpoint = writ_log::Checkpoint {
            origin: "test.example/log".to_owned(),
            size,
            root: tree.root(size).unwrap(),
            extensions: Vec::new(),
        };
        let note = writ_log::sign_note(&checkpoint.to_text(), &signer).unwrap();
        let records: Vec<Value> = indexes
            .iter()
            .map(|&index| {
                let proof = tree.inclusion_proof(index, size).unwrap();
                json!({"index": index, "data": STANDARD.encode(&leaves[index as usize]),
                       "proof": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>()})
            })
            .collect();
        let vkey = signer.verifier().to_vkey();
        let body = json!({"checkpoint": {"size": size, "note": note, "verifier_key": vkey},
                          "records": records, "truncated": false});
        (body, vkey)
    }

    fn refusal(id: &str, body: &Value, vkey: &str) -> String {
        format!("{:#}", verify(id, body, vkey).err().unwrap())
    }

    #[test]
    fn a_line_verifies_against_its_signed_checkpoint() {
        let (body, vkey) = trace_of(&[0, 1, 2, 3]);
        let trace = verify("w1", &body, &vkey).unwrap();
        assert_eq!(
            trace.kinds(),
            [
                "human_registered",
                "agent_registered",
                "mandate_granted",
                "writ_issued"
            ]
        );
        // From the mandate, or the writ's index, the same records hold together.
        assert!(verify("m1", &body, &vkey).is_ok());
        assert!(verify("3", &body, &vkey).is_ok());
    }

    #[test]
    fn a_changed_record_a_moved_record_or_another_log_key_is_refused() {
        let (body, vkey) = trace_of(&[0, 1, 2, 3]);
        let mut changed = body.clone();
        let data = STANDARD
            .decode(changed["records"][0]["data"].as_str().unwrap())
            .unwrap();
        let altered = String::from_utf8(data).unwrap().replace("member", "admin");
        changed["records"][0]["data"] = json!(STANDARD.encode(altered));
        assert!(refusal("w1", &changed, &vkey).contains("record 0 is not in the log"));

        let mut moved = body.clone();
        moved["records"][1]["index"] = json!(4);
        assert!(refusal("w1", &moved, &vkey).contains("is not in the log"));

        // The key the issuer presents is not trusted: only the one given.
        let other = writ_log::NoteSigner::new(
            "test.example/log",
            writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap(),
        )
        .unwrap()
        .verifier()
        .to_vkey();
        assert!(refusal("w1", &body, &other).contains("not signed by the log key"));
    }

    #[test]
    fn records_of_another_line_are_refused_though_each_is_in_the_log() {
        // bob's mandate in place of alice's: the writ names a mandate the trace lacks.
        let (spliced, vkey) = trace_of(&[0, 1, 5, 3]);
        assert!(refusal("w1", &spliced, &vkey).contains("names mandate:m1"));
        // bob's registration added to alice's line: linked to nothing in it.
        let (padded, vkey) = trace_of(&[0, 1, 2, 3, 4]);
        assert!(refusal("w1", &padded, &vkey).contains("record 4 is not part of the line"));
        // Another subject than the one asked for.
        let (body, vkey) = trace_of(&[0, 1, 2, 3]);
        assert!(refusal("w9", &body, &vkey).contains("no record in the trace is `w9`"));
    }
}
