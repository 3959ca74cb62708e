//! `GET /v1/trace/{id}`: from one action back to the human who asked for it.
//!
//! A trace starts at a writ id (`wrt_…`), a mandate id (`mnd_…`), a gateway request id or
//! an audit-log index, and follows what each record names: a gateway decision names its
//! writ, a writ its mandate, a mandate its parent (when delegated), its human and its
//! agent. From a writ it also goes forward to the gateway decisions made on it, and from a
//! mandate to the writs issued under it, the token requests refused under it (behaviour
//! verdicts among them), the approvals its calls waited for and the responses gateways
//! measured. Every record comes as the leaf's exact bytes with
//! an inclusion proof in one signed checkpoint, so a client that holds the log's verifier
//! key can check the whole line without trusting the issuer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::Value;
use writ_store::LeafRecord;

use crate::Issuer;
use crate::audit::{CheckpointBody, current_checkpoint};
use crate::auth::authenticate;
use crate::error::ApiError;

/// The most records one trace carries; a trace that would hold more is cut and says so.
pub const MAX_RECORDS: usize = 200;
/// How many leaves under one lookup key are read to find the one of a given kind (a
/// registration or grant is the first leaf under its key).
const SCAN: usize = 16;
/// The deepest delegation chain followed.
const MAX_CHAIN: usize = 32;

#[derive(Serialize)]
pub(crate) struct TraceBody {
    /// What the trace started from, as asked.
    subject: String,
    /// The signed checkpoint every proof below leads to.
    checkpoint: CheckpointBody,
    /// The records, in log order: registrations, grants, issuances, decisions.
    records: Vec<TraceRecord>,
    /// Whether records were left out to stay within [`MAX_RECORDS`].
    truncated: bool,
}

#[derive(Serialize)]
pub(crate) struct TraceRecord {
    index: u64,
    kind: String,
    /// The leaf's bytes, base64: what the proof is over.
    data: String,
    /// The leaf parsed, for people: `{"event": {...}, "kind": ..., "time": ...}`.
    event: Value,
    /// The inclusion proof in the checkpoint's tree, base64 hashes.
    proof: Vec<String>,
}

/// Where a trace starts.
#[derive(Debug)]
enum Start {
    Index(u64),
    Writ(String),
    Mandate(String),
    Request(String),
}

impl Start {
    fn parse(id: &str) -> Result<Start, ApiError> {
        let plain = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            return Err(ApiError::invalid_request(
                "invalid_trace_id",
                "a trace starts at a writ id, a mandate id, a gateway request id (1 to 64 letters, digits, `-` or `_`) or an audit-log index",
            ));
        }
        Ok(if id.bytes().all(|b| b.is_ascii_digit()) {
            Start::Index(id.parse().map_err(|_| {
                ApiError::invalid_request("invalid_trace_id", format!("`{id}` is too large"))
            })?)
        } else if id.starts_with("wrt_") {
            Start::Writ(id.to_owned())
        } else if id.starts_with("mnd_") {
            Start::Mandate(id.to_owned())
        } else {
            Start::Request(id.to_owned())
        })
    }
}

/// The records of a trace, gathered by following the names in each one.
struct Gathered<'a> {
    issuer: &'a Issuer,
    /// Each leaf and its bytes parsed.
    records: BTreeMap<u64, (LeafRecord, Value)>,
    truncated: bool,
}

impl<'a> Gathered<'a> {
    fn new(issuer: &'a Issuer) -> Self {
        Gathered {
            issuer,
            records: BTreeMap::new(),
            truncated: false,
        }
    }

    /// Adds a leaf read from the store; its event, or `None` past [`MAX_RECORDS`].
    fn insert(&mut self, leaf: LeafRecord) -> Option<Value> {
        let index = leaf.index;
        if !self.records.contains_key(&index) {
            if self.records.len() >= MAX_RECORDS {
                self.truncated = true;
                return None;
            }
            let parsed: Value = serde_json::from_slice(&leaf.data).unwrap_or(Value::Null);
            self.records.insert(index, (leaf, parsed));
        }
        self.records
            .get(&index)
            .map(|(_, leaf)| leaf.get("event").cloned().unwrap_or(Value::Null))
    }

    /// The first leaf of one of `kinds` under the lookup `key`, added; its event.
    async fn first(&mut self, key: &str, kinds: &[&str]) -> Result<Option<Value>, ApiError> {
        for index in self.issuer.store.lookup(key).await?.into_iter().take(SCAN) {
            match self.issuer.store.leaf(index).await? {
                Some(leaf) if kinds.contains(&leaf.kind.as_str()) => return Ok(self.insert(leaf)),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Every leaf of `kind` under `key`, added.
    async fn all(&mut self, key: &str, kind: &str) -> Result<(), ApiError> {
        for index in self.issuer.store.lookup(key).await? {
            if let Some(leaf) = self.issuer.store.leaf(index).await?
                && leaf.kind == kind
                && self.insert(leaf).is_none()
            {
                break;
            }
        }
        Ok(())
    }

    /// A writ's issuance, back along its mandate and forward to the gateway's decisions.
    async fn writ(&mut self, id: &str) -> Result<bool, ApiError> {
        let key = format!("writ:{id}");
        let Some(event) = self.first(&key, &["writ_issued"]).await? else {
            return Ok(false);
        };
        if let Some(mandate) = text(&event, "mandate") {
            self.mandate(&mandate).await?;
        }
        // A writ its agent's owner approved after a drift: the request and the answer.
        if let Some(approval) = event.pointer("/behaviour/approval").and_then(Value::as_str) {
            self.approval(approval).await?;
        }
        self.all(&key, "gateway_decision").await?;
        self.all(&key, "gateway_response").await?;
        Ok(true)
    }

    /// An approval's request and its answer.
    async fn approval(&mut self, id: &str) -> Result<(), ApiError> {
        let key = format!("approval:{id}");
        self.all(&key, "approval_requested").await?;
        self.all(&key, "approval_decided").await
    }

    /// A mandate's grant or delegation, then its parents, humans and agents, up to the
    /// origin.
    async fn mandate(&mut self, id: &str) -> Result<bool, ApiError> {
        let mut next = Some(id.to_owned());
        let mut seen = BTreeSet::new();
        let mut found = false;
        while let Some(id) = next.take() {
            if seen.len() >= MAX_CHAIN || !seen.insert(id.clone()) {
                break;
            }
            let Some(event) = self
                .first(
                    &format!("mandate:{id}"),
                    &["mandate_granted", "mandate_delegated"],
                )
                .await?
            else {
                break;
            };
            found = true;
            if let Some(human) = text(&event, "human") {
                self.first(&format!("human:{human}"), &["human_registered"])
                    .await?;
            }
            if let Some(agent) = text(&event, "agent") {
                self.first(&format!("agent:{agent}"), &["agent_registered"])
                    .await?;
            }
            next = text(&event, "parent");
        }
        Ok(found)
    }
}

fn text(event: &Value, name: &str) -> Option<String> {
    event.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// `GET /v1/trace/{id}`, for administrators and for the human the line ends at.
pub(crate) async fn trace(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TraceBody>, ApiError> {
    let start = Start::parse(&id)?;
    let caller = authenticate(&issuer, &method, &format!("/v1/trace/{id}"), &headers).await?;
    // A trace names who asked, the tasks and the calls: administrators see every trace, a
    // human the ones that end at them, and no one else any.
    let human = if caller.is_admin() {
        None
    } else {
        Some(caller.human()?.id.clone())
    };
    let mut gathered = Gathered::new(&issuer);
    let found = match &start {
        Start::Writ(writ) => gathered.writ(writ).await?,
        Start::Mandate(mandate) => {
            let found = gathered.mandate(mandate).await?;
            let key = format!("mandate:{mandate}");
            // Its writs, the calls refused under it (behaviour verdicts among them), the
            // calls held for its owner, and what gateways saw of its answers.
            for kind in [
                "writ_issued",
                "writ_denied",
                "approval_requested",
                "approval_decided",
                "gateway_response",
            ] {
                gathered.all(&key, kind).await?;
            }
            found
        }
        Start::Request(request) => {
            // Request ids are each gateway's own: every gateway's decision under this one.
            let mut found = false;
            for index in issuer
                .store
                .lookup(&format!("request:{request}"))
                .await?
                .into_iter()
                .take(SCAN)
            {
                let Some(leaf) = issuer.store.leaf(index).await? else {
                    continue;
                };
                if leaf.kind != "gateway_decision" {
                    continue;
                }
                let Some(decision) = gathered.insert(leaf) else {
                    break;
                };
                found = true;
                if let Some(writ) = text(&decision, "writ") {
                    gathered.writ(&writ).await?;
                }
            }
            found
        }
        Start::Index(index) => match issuer.store.leaf(*index).await? {
            // The same line as from the writ's id.
            Some(leaf) if leaf.kind == "writ_issued" => {
                let writ = serde_json::from_slice::<Value>(&leaf.data)
                    .ok()
                    .and_then(|parsed| parsed.pointer("/event/writ").cloned());
                match writ.as_ref().and_then(Value::as_str) {
                    Some(writ) => gathered.writ(writ).await?,
                    None => gathered.insert(leaf).is_some(),
                }
            }
            Some(leaf) => match gathered.insert(leaf) {
                Some(event) => {
                    if let Some(writ) = text(&event, "writ") {
                        gathered.writ(&writ).await?;
                    } else if let Some(mandate) = text(&event, "mandate") {
                        gathered.mandate(&mandate).await?;
                    }
                    true
                }
                None => false,
            },
            None => false,
        },
    };
    if let Some(human) = &human {
        // The same answer whether the records do not exist or are not theirs.
        let humans: BTreeSet<&str> = gathered
            .records
            .values()
            .filter(|(leaf, _)| leaf.kind == "human_registered")
            .filter_map(|(_, leaf)| leaf.pointer("/event/human").and_then(Value::as_str))
            .collect();
        if !found || humans != BTreeSet::from([human.as_str()]) {
            return Err(ApiError::denied(
                "not_authorized_to_trace",
                format!("`{human}` may trace only what was done on their behalf"),
            ));
        }
    }
    if !found {
        return Err(ApiError::not_found(
            "nothing_to_trace",
            format!("the audit log holds no record of `{id}`"),
        ));
    }

    let checkpoint = current_checkpoint(&issuer).await?;
    let mut records = Vec::with_capacity(gathered.records.len());
    for (index, (leaf, event)) in gathered.records {
        let proof = issuer.store.inclusion_proof(index, checkpoint.size).await?;
        records.push(TraceRecord {
            index,
            kind: leaf.kind,
            data: STANDARD.encode(&leaf.data),
            event,
            proof: proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
        });
    }
    Ok(Json(TraceBody {
        subject: id,
        checkpoint,
        records,
        truncated: gathered.truncated,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_told_apart_and_odd_ones_refused() {
        assert!(matches!(Start::parse("42"), Ok(Start::Index(42))));
        assert!(matches!(Start::parse("wrt_abc"), Ok(Start::Writ(_))));
        assert!(matches!(Start::parse("mnd_abc"), Ok(Start::Mandate(_))));
        assert!(matches!(Start::parse("req-7f"), Ok(Start::Request(_))));
        for bad in ["", "a/b", "x?y", "99999999999999999999999", &"a".repeat(65)] {
            assert!(Start::parse(bad).is_err(), "{bad}");
        }
    }
}
