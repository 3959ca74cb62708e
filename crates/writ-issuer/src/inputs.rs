//! The issuer's readers of untrusted bytes, callable without a running issuer.
//!
//! Each function reads its input exactly as the handler or start-up step named does, with
//! the same code, and touches no store, clock or network. They exist for the fuzz targets
//! in `fuzz/` (which must exercise the real parsers, not copies of them) and for tests; they
//! are not a stable interface.

use std::sync::LazyLock;

use axum::body::Bytes;
use writ_scope::AuthorizationDetail;
use writ_store::LeafRecord;
use writ_token::SingleDetail;

use crate::behaviour::Behaviour;
use crate::error::ApiError;

/// `POST /token`: the form (RFC 6749 §3.2: no parameter twice) and, when present, its
/// `authorization_details` (RFC 9396: strict JSON, exactly one detail). The checks that
/// follow need an authenticated caller and the store.
pub fn token_request(body: &[u8]) -> Result<(), ApiError> {
    let form = crate::token::form(&Bytes::copy_from_slice(body))?;
    if let Some(details) = form.get("authorization_details") {
        let details: Vec<AuthorizationDetail> = writ_jose::from_slice_strict(details.as_bytes())
            .map_err(|e| {
                ApiError::invalid_request("invalid_authorization_details", e.to_string())
            })?;
        SingleDetail::try_from(details).map_err(|e| {
            ApiError::invalid_request("invalid_authorization_details", e.to_string())
        })?;
    }
    Ok(())
}

/// `PATCH /scim/v2/Users/{id}`: the body read as a SCIM PatchOp (RFC 7644 §3.5.2), and what
/// it asks for `active`. `None` when the body is refused.
pub fn scim_patch(body: &[u8]) -> Option<Option<bool>> {
    let request: crate::scim::PatchRequest = writ_jose::from_slice_strict(body).ok()?;
    crate::scim::requested_active(&request).ok()
}

/// Start-up: audit log leaves replayed, in order, into fresh behaviour state (default
/// settings), as the issuer rebuilds baselines, approvals and holds. Each leaf is
/// `(kind, created_at, bytes)`; returns how many leaves carried behaviour.
pub fn replay_leaves(leaves: &[(&str, i64, &[u8])]) -> u64 {
    // Checking the settings compiles their patterns: once, not per call.
    static DEFAULT: LazyLock<Option<Behaviour>> =
        LazyLock::new(|| Behaviour::new(crate::BehaviourConfig::default()).ok());
    let Some(behaviour) = DEFAULT.as_ref().map(Behaviour::fresh) else {
        return 0;
    };
    let mut replayed = 0;
    for (index, (kind, created_at, data)) in (0_u64..).zip(leaves) {
        let leaf = LeafRecord {
            index,
            kind: (*kind).to_owned(),
            data: data.to_vec(),
            created_at: *created_at,
        };
        if crate::behaviour::replay_one(&behaviour, &leaf) {
            replayed += 1;
        }
    }
    replayed
}
