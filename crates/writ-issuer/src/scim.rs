//! SCIM 2.0 (RFC 7643, RFC 7644), as far as offboarding needs it: an identity provider
//! deactivates a user (`PATCH` with `active: false`) or deletes it (`DELETE`), and Writ
//! offboards that human: their mandates are revoked and their agents suspended until
//! transferred. `GET` shows whether a user is active.
//!
//! The SCIM resource id is the Writ human id. Requests are authenticated like every other
//! issuer call, with a DPoP proof by an administrator's key: there is no bearer token, so a
//! provisioning connector signs its requests (or a relay beside it does). Offboarding cannot
//! be undone through SCIM: `active: true` for an offboarded human is refused.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Issuer;
use crate::auth::{Caller, authenticate};
use crate::error::ApiError;
use crate::lifecycle::offboard;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCIM_JSON: &str = "application/scim+json";

/// A SCIM error (RFC 7644 §3.12): SCIM's `status`, `scimType` and `detail`, and Writ's
/// stable reason code in `reason`, named as in every other refusal of the issuer (and
/// repeated in brackets at the end of `detail`, for clients that show only that).
pub(crate) struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    reason: &'static str,
    detail: String,
}

impl From<ApiError> for ScimError {
    fn from(error: ApiError) -> Self {
        ScimError {
            status: error.status(),
            scim_type: None,
            reason: error.reason(),
            detail: error.message().to_owned(),
        }
    }
}

impl ScimError {
    /// 400 with SCIM's `scimType` and Writ's reason code.
    fn invalid(scim_type: &'static str, reason: &'static str, detail: impl Into<String>) -> Self {
        ScimError {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            reason,
            detail: detail.into(),
        }
    }

    /// 404: no user `id`.
    fn unknown_user(id: &str) -> Self {
        ScimError {
            status: StatusCode::NOT_FOUND,
            scim_type: None,
            reason: "unknown_user",
            detail: format!("no user `{id}`"),
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": format!("{} [{}]", self.detail, self.reason),
            "reason": self.reason,
        });
        if let (Some(scim_type), Value::Object(members)) = (self.scim_type, &mut body) {
            members.insert("scimType".into(), json!(scim_type));
        }
        scim(self.status, &body)
    }
}

/// A refusal that no SCIM handler wrote (see [`crate::error::name_every_refusal`]), in
/// SCIM's error form.
pub(crate) fn refusal(status: StatusCode, reason: &'static str, detail: &str) -> Response {
    ScimError {
        status,
        scim_type: None,
        reason,
        detail: detail.to_owned(),
    }
    .into_response()
}

fn scim(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// The user resource of a human.
fn user(issuer: &Issuer, id: &str) -> Result<Value, ScimError> {
    let human = issuer
        .store
        .human(id)
        .ok_or_else(|| ScimError::unknown_user(id))?;
    Ok(json!({
        "schemas": [USER_SCHEMA],
        "id": human.id,
        "userName": human.id,
        "displayName": human.display_name,
        "active": human.status == "active",
        "meta": {"resourceType": "User", "location": issuer.url(&format!("/scim/v2/Users/{id}"))},
    }))
}

async fn admin(
    issuer: &Issuer,
    method: &Method,
    id: &str,
    headers: &HeaderMap,
) -> Result<Caller, ScimError> {
    let path = format!("/scim/v2/Users/{id}");
    let caller = authenticate(issuer, method, &path, headers).await?;
    caller.admin()?;
    Ok(caller)
}

/// Offboards `id`; a user offboarded already stays so, and the request succeeds (SCIM
/// clients repeat themselves). An administrator cannot offboard themselves this way either.
async fn deactivate(issuer: &Issuer, id: &str, by: &Caller) -> Result<(), ScimError> {
    let human = issuer
        .store
        .human(id)
        .ok_or_else(|| ScimError::unknown_user(id))?;
    if human.status == "offboarded" {
        return Ok(());
    }
    offboard(
        issuer,
        &human,
        "deactivated by the identity provider (SCIM)",
        by,
    )
    .await
    .map_err(|error| match error.reason() {
        "cannot_offboard_self" => {
            ScimError::invalid("mutability", "cannot_offboard_self", error.message())
        }
        _ => error.into(),
    })?;
    Ok(())
}

/// `GET /scim/v2/Users/{id}`.
pub(crate) async fn get_user(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match admin(&issuer, &method, &id, &headers).await {
        Ok(_) => match user(&issuer, &id) {
            Ok(body) => scim(StatusCode::OK, &body),
            Err(error) => error.into_response(),
        },
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct PatchRequest {
    schemas: Vec<String>,
    #[serde(rename = "Operations")]
    operations: Vec<Operation>,
}

#[derive(Deserialize)]
struct Operation {
    op: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    value: Value,
}

/// What a patch asks for `active`: `Some(false)` to deactivate. Only `active` may change.
pub(crate) fn requested_active(request: &PatchRequest) -> Result<Option<bool>, ScimError> {
    if !request.schemas.iter().any(|schema| schema == PATCH_SCHEMA) {
        return Err(ScimError::invalid(
            "invalidSyntax",
            "patch_schema_missing",
            format!("a PATCH body names the schema `{PATCH_SCHEMA}`"),
        ));
    }
    let mut active = None;
    for operation in &request.operations {
        // RFC 7644 §3.5.2: operation names are case-insensitive.
        if !matches!(
            operation.op.to_ascii_lowercase().as_str(),
            "replace" | "add"
        ) {
            return Err(ScimError::invalid(
                "invalidValue",
                "unsupported_operation",
                format!(
                    "operation `{}` is not supported; only `active` can be replaced",
                    operation.op
                ),
            ));
        }
        let value = match operation.path.as_deref() {
            Some(path) if path.eq_ignore_ascii_case("active") => &operation.value,
            Some(path) => {
                return Err(ScimError::invalid(
                    "mutability",
                    "attribute_immutable",
                    format!("`{path}` cannot be changed here; only `active`"),
                ));
            }
            None => match &operation.value {
                Value::Object(members) if members.len() == 1 => members
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("active"))
                    .map(|(_, value)| value)
                    .ok_or_else(|| {
                        ScimError::invalid(
                            "mutability",
                            "attribute_immutable",
                            "only `active` can be changed",
                        )
                    })?,
                _ => {
                    return Err(ScimError::invalid(
                        "invalidValue",
                        "invalid_patch_value",
                        "expected `{\"active\": false}`",
                    ));
                }
            },
        };
        active = Some(value.as_bool().ok_or_else(|| {
            ScimError::invalid(
                "invalidValue",
                "invalid_patch_value",
                "`active` must be true or false",
            )
        })?);
    }
    Ok(active)
}

/// `PATCH /scim/v2/Users/{id}`: `active: false` offboards.
pub(crate) async fn patch_user(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let by = admin(&issuer, &method, &id, &headers).await?;
        let request: PatchRequest = writ_jose::from_slice_strict(&body).map_err(|error| {
            ScimError::invalid(
                "invalidSyntax",
                "invalid_body",
                format!("PATCH body: {error}"),
            )
        })?;
        match requested_active(&request)? {
            Some(false) => deactivate(&issuer, &id, &by).await?,
            Some(true) => {
                let offboarded = issuer
                    .store
                    .human(&id)
                    .is_some_and(|human| human.status == "offboarded");
                if offboarded {
                    return Err(ScimError::invalid(
                        "mutability",
                        "offboarding_irreversible",
                        "an offboarded human stays offboarded; register them anew",
                    ));
                }
            }
            None => {}
        }
        user(&issuer, &id)
    }
    .await;
    match result {
        Ok(body) => scim(StatusCode::OK, &body),
        Err(error) => error.into_response(),
    }
}

/// `DELETE /scim/v2/Users/{id}`: offboards; the record stays, for the audit trail.
pub(crate) async fn delete_user(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let by = admin(&issuer, &method, &id, &headers).await?;
        deactivate(&issuer, &id, &by).await
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}
