//! Recording events in the audit log, signing checkpoints, and serving proofs.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_log::Checkpoint;
use writ_store::{Appended, Event, StoreError, Write};
use writ_token::UnixTime;

use crate::Issuer;
use crate::auth::authenticate;
use crate::error::ApiError;

/// An audit event: the leaf is `{"event", "kind", "time"}` as canonical JSON (members
/// sorted at every depth, whatever the build's `serde_json` features), with lookup keys.
pub(crate) fn event(
    kind: &str,
    time: UnixTime,
    event: Value,
    keys: Vec<String>,
) -> Result<Event, StoreError> {
    let time = crate::seconds(time);
    let mut leaf = json!({"kind": kind, "time": time, "event": event});
    writ_jose::sort_members(&mut leaf);
    Ok(Event {
        kind: kind.to_owned(),
        data: serde_json::to_vec(&leaf).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        keys,
        time,
    })
}

/// Appends an event now, applying `write` in the same transaction.
pub(crate) async fn record(
    issuer: &Issuer,
    kind: &str,
    body: Value,
    keys: Vec<String>,
    write: Write,
) -> Result<Appended, StoreError> {
    issuer
        .store
        .append(event(kind, issuer.now(), body, keys)?, write)
        .await
}

/// Records a refusal. A refusal stands even when it cannot be recorded; the failure is
/// logged.
pub(crate) async fn record_denial(
    issuer: &Issuer,
    kind: &str,
    error: &ApiError,
    mut event: Value,
    keys: Vec<String>,
) {
    if let Value::Object(members) = &mut event {
        members.insert("reason".into(), json!(error.reason()));
        members.insert("message".into(), json!(error.message()));
    }
    if let Err(cause) = record(issuer, kind, event, keys, Write::Nothing).await {
        tracing::error!(error = %cause, reason = error.reason(), "could not record a denial");
    }
}

/// Signs a checkpoint whenever the log has grown, every `checkpoint_interval`.
pub(crate) fn spawn_checkpointer(issuer: &Arc<Issuer>) {
    let weak = Arc::downgrade(issuer);
    let interval = issuer.settings.checkpoint_interval;
    tokio::spawn(async move {
        let mut signed = 0;
        loop {
            tokio::time::sleep(interval).await;
            let Some(issuer) = weak.upgrade() else { break };
            let head = issuer.store.tree_head();
            if head.size == signed {
                continue;
            }
            match sign_checkpoint(&issuer).await {
                Ok(size) => signed = size,
                Err(error) => tracing::error!(%error, "could not store a checkpoint"),
            }
        }
    });
}

/// Signs and stores a checkpoint of the current tree head; returns its size.
pub(crate) async fn sign_checkpoint(issuer: &Issuer) -> Result<u64, StoreError> {
    let head = issuer.store.tree_head();
    let checkpoint = Checkpoint {
        origin: issuer.note_signer.verifier().name().to_owned(),
        size: head.size,
        root: head.root,
        extensions: Vec::new(),
    };
    let note = writ_log::sign_note(&checkpoint.to_text(), &issuer.note_signer)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    issuer
        .store
        .put_checkpoint(head.size, note, crate::seconds(issuer.now()))
        .await?;
    Ok(head.size)
}

#[derive(Serialize)]
pub(crate) struct Health {
    status: &'static str,
    log_size: u64,
    policy_set: String,
}

pub(crate) async fn healthz(State(issuer): State<Arc<Issuer>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        log_size: issuer.store.tree_head().size,
        policy_set: issuer.policy_version(),
    })
}

#[derive(Serialize)]
pub(crate) struct CheckpointBody {
    size: u64,
    note: String,
    verifier_key: String,
}

pub(crate) async fn checkpoint(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<CheckpointBody>, ApiError> {
    authenticate(&issuer, &method, "/v1/audit/checkpoint", &headers).await?;
    let (size, note) = match issuer.store.latest_checkpoint().await? {
        Some((size, note)) if size == issuer.store.tree_head().size => (size, note),
        _ => {
            let size = sign_checkpoint(&issuer).await?;
            issuer
                .store
                .latest_checkpoint()
                .await?
                .filter(|(stored, _)| *stored == size)
                .ok_or_else(|| ApiError::not_found("no_checkpoint", "no checkpoint yet"))?
        }
    };
    Ok(Json(CheckpointBody {
        size,
        note,
        verifier_key: issuer.log_verifier_key(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SizeQuery {
    size: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct LeafBody {
    index: u64,
    size: u64,
    kind: String,
    /// The leaf's bytes, base64.
    data: String,
    /// The event, parsed, for people.
    event: Value,
    /// The inclusion proof, base64 hashes.
    proof: Vec<String>,
}

pub(crate) async fn leaf(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(index): Path<u64>,
    Query(query): Query<SizeQuery>,
) -> Result<Json<LeafBody>, ApiError> {
    // Leaves carry task texts and who asked for what: administrators only.
    authenticate(
        &issuer,
        &method,
        &format!("/v1/audit/leaves/{index}"),
        &headers,
    )
    .await?
    .admin()?;
    let size = query.size.unwrap_or_else(|| issuer.store.tree_head().size);
    let leaf = issuer
        .store
        .leaf(index)
        .await?
        .filter(|_| index < size)
        .ok_or_else(|| {
            ApiError::not_found(
                "no_such_leaf",
                format!("no leaf {index} in a log of size {size}"),
            )
        })?;
    let proof = issuer.store.inclusion_proof(index, size).await?;
    Ok(Json(LeafBody {
        index,
        size,
        kind: leaf.kind,
        event: serde_json::from_slice(&leaf.data).unwrap_or(Value::Null),
        data: STANDARD.encode(&leaf.data),
        proof: proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    old: u64,
    new: u64,
}

#[derive(Serialize)]
pub(crate) struct ConsistencyBody {
    old: u64,
    new: u64,
    proof: Vec<String>,
}

pub(crate) async fn consistency(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyBody>, ApiError> {
    authenticate(&issuer, &method, "/v1/audit/consistency", &headers).await?;
    if query.old > query.new {
        return Err(ApiError::invalid_request(
            "bad_range",
            "`old` must not exceed `new`",
        ));
    }
    let proof = issuer.store.consistency_proof(query.old, query.new).await?;
    Ok(Json(ConsistencyBody {
        old: query.old,
        new: query.new,
        proof: proof.iter().map(|hash| STANDARD.encode(hash)).collect(),
    }))
}
