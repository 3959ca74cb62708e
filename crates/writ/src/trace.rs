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
    /// The checkpoint's size and origin, and whether its key was pinned by the caller.
    size: u64,
    origin: String,
    pinned: bool,
    /// `(index, leaf)` in log order, each leaf `{"event", "kind", "time"}`.
    records: Vec<(u64, Value)>,
    truncated: bool,
}

/// Fetches the trace of `id` and checks it. `log_key` is the log's verifier key, as
/// `writ issuer init` printed it; without it the key the issuer presents is used, which
/// shows the records are consistent with each other and with a signed checkpoint, but not
/// that the checkpoint is the log's.
pub(crate) async fn fetch(
    client: &IssuerClient,
    id: &str,
    log_key: Option<&str>,
) -> anyhow::Result<Verified> {
    let body = client.get(&format!("/v1/trace/{id}")).await?;
    verify(id, &body, log_key)
}

/// Checks a trace the issuer sent: its checkpoint's signature, then every record's
/// inclusion in it.
fn verify(id: &str, body: &Value, log_key: Option<&str>) -> anyhow::Result<Verified> {
    let checkpoint = body
        .get("checkpoint")
        .context("the trace has no checkpoint")?;
    let presented = checkpoint
        .get("verifier_key")
        .and_then(Value::as_str)
        .context("the checkpoint names no verifier key")?;
    let verifier = writ_log::NoteVerifier::parse(log_key.unwrap_or(presented))
        .context("the log's verifier key does not parse")?;
    let note = checkpoint
        .get("note")
        .and_then(Value::as_str)
        .context("the checkpoint has no note")?;
    let text = writ_log::verify_note(note, std::slice::from_ref(&verifier))
        .context("the trace's checkpoint is not signed by the log key")?;
    let signed = writ_log::Checkpoint::parse(text).context("the checkpoint does not parse")?;

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
    Ok(Verified {
        subject: id.to_owned(),
        size: signed.size,
        origin: signed.origin,
        pinned: log_key.is_some(),
        records,
        truncated: body.get("truncated").and_then(Value::as_bool) == Some(true),
    })
}

impl Verified {
    /// The records, one per step, for people.
    pub(crate) fn print(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "trace of {}: {} records, each proven to be in checkpoint {} of {}{}",
            self.subject,
            self.records.len(),
            self.size,
            self.origin,
            if self.pinned {
                ""
            } else {
                " (by the key the issuer presented; pass --log-key to pin it)"
            }
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
            "checkpoint": {"size": self.size, "origin": self.origin, "key_pinned": self.pinned},
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
        "writ_issued" => vec![
            format!("writ {} for {}", text("writ"), call(event.get("call"))),
            format!(
                "by agent {} for {} under mandate {}, at {}",
                agent(),
                text("human"),
                text("mandate"),
                text("aud")
            ),
            policy(),
        ],
        "writ_denied" => vec![format!(
            "writ refused [{}]: {}",
            text("reason"),
            text("message")
        )],
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

    /// A log of three leaves, its signer, and the trace body an issuer would send for
    /// leaves 0 and 2.
    fn signed_trace() -> (Value, String) {
        let leaves: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                serde_json::to_vec(
                    &json!({"event": {"human": format!("h{i}"), "role": "member", "by": "admin"},
                    "kind": "human_registered", "time": 1_767_225_600 + i}),
                )
                .unwrap()
            })
            .collect();
        let mut tree = writ_log::MemoryTree::new();
        for leaf in &leaves {
            tree.push(writ_log::leaf_hash(leaf));
        }
        let key = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
        let signer = writ_log::NoteSigner::new("test.example/log", key).unwrap();
        let checkpoint = writ_log::Checkpoint {
            origin: "test.example/log".to_owned(),
            size: 3,
            root: tree.root(3).unwrap(),
            extensions: Vec::new(),
        };
        let note = writ_log::sign_note(&checkpoint.to_text(), &signer).unwrap();
        let records: Vec<Value> = [0u64, 2]
            .iter()
            .map(|&index| {
                let proof = tree.inclusion_proof(index, 3).unwrap();
                json!({"index": index, "data": STANDARD.encode(&leaves[index as usize]),
                       "proof": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>()})
            })
            .collect();
        let vkey = signer.verifier().to_vkey();
        let body = json!({"checkpoint": {"size": 3, "note": note, "verifier_key": vkey},
                          "records": records, "truncated": false});
        (body, vkey)
    }

    #[test]
    fn a_trace_verifies_against_its_signed_checkpoint() {
        let (body, vkey) = signed_trace();
        let trace = verify("h0", &body, Some(&vkey)).unwrap();
        assert_eq!(trace.kinds(), ["human_registered", "human_registered"]);
        assert!(trace.pinned);
        assert!(!verify("h0", &body, None).unwrap().pinned);
    }

    #[test]
    fn a_changed_record_a_moved_record_or_another_log_key_is_refused() {
        let (body, _) = signed_trace();
        let mut changed = body.clone();
        let data = STANDARD
            .decode(changed["records"][0]["data"].as_str().unwrap())
            .unwrap();
        let altered = String::from_utf8(data).unwrap().replace("h0", "hX");
        changed["records"][0]["data"] = json!(STANDARD.encode(altered));
        let error = verify("h0", &changed, None).err().unwrap();
        assert!(
            format!("{error:#}").contains("record 0 is not in the log"),
            "{error:#}"
        );

        let mut moved = body.clone();
        moved["records"][1]["index"] = json!(1);
        assert!(verify("h0", &moved, None).is_err());

        let other = writ_log::NoteSigner::new(
            "test.example/log",
            writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap(),
        )
        .unwrap()
        .verifier()
        .to_vkey();
        let error = verify("h0", &body, Some(&other)).err().unwrap();
        assert!(
            format!("{error:#}").contains("not signed by the log key"),
            "{error:#}"
        );
    }
}
