//! Claim types shared by mandates and writs.

use std::fmt;

use serde::{Deserialize, Serialize};
use writ_jose::{Thumbprint, base64url_decode, base64url_encode, sha256};
use writ_scope::AuthorizationDetail;

/// The deepest delegation chain any mandate may have: the human's direct grant is depth 0.
/// Issuer policy usually sets a lower maximum (4 by default).
pub const MAX_DELEGATION_DEPTH: u8 = 8;
/// The longest a task summary may be, in characters.
pub const MAX_SUMMARY_LEN: usize = 256;
/// The most policy ids a token records.
pub const MAX_POLICY_IDS: usize = 32;

/// The actor chain (RFC 8693 §4.1 `act`): the agent acting now, and nested inside it the
/// agents that delegated to it, back to the one the human granted the first mandate to.
///
/// Agents are named by the RFC 7638 thumbprint of their key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The acting agent.
    pub sub: Thumbprint,
    /// The agent that delegated to it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// An agent acting on a human's direct grant.
    pub fn new(agent: Thumbprint) -> Self {
        Actor {
            sub: agent,
            act: None,
        }
    }

    /// `agent` acting on a grant delegated to it by `delegator`.
    pub fn delegated(agent: Thumbprint, delegator: Actor) -> Self {
        Actor {
            sub: agent,
            act: Some(Box::new(delegator)),
        }
    }

    /// The chain from the acting agent back to the first one.
    pub fn chain(&self) -> impl Iterator<Item = &Thumbprint> {
        std::iter::successors(Some(self), |actor| actor.act.as_deref()).map(|actor| &actor.sub)
    }

    /// How many agents the chain holds.
    pub fn len(&self) -> usize {
        self.chain().count()
    }

    /// Always false: a chain holds at least the acting agent.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// RFC 7800 confirmation: the key a token is bound to (RFC 9449 §6.1 `jkt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the agent's public key.
    pub jkt: Thumbprint,
}

/// The SHA-256 of a task's text, base64url: 43 characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskDigest(String);

impl TaskDigest {
    /// The digest of `text`.
    pub fn of(text: &str) -> Self {
        TaskDigest(base64url_encode(sha256(text.as_bytes())))
    }

    /// The base64url text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskDigest {
    type Error = ClaimsError;
    fn try_from(text: String) -> Result<Self, ClaimsError> {
        match base64url_decode(&text) {
            Ok(bytes) if bytes.len() == 32 => Ok(TaskDigest(text)),
            _ => Err(ClaimsError("task digest is not 43 characters of base64url")),
        }
    }
}

impl From<TaskDigest> for String {
    fn from(digest: TaskDigest) -> String {
        digest.0
    }
}

impl fmt::Debug for TaskDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskDigest({})", self.0)
    }
}

/// The task a mandate was granted for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// SHA-256 of the task text.
    pub digest: TaskDigest,
    /// A short human-readable summary, if the issuer is configured to include one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// The policy decision behind a token: the policy-set version and the policies that allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// The version hash of the policy set that decided.
    pub set: String,
    /// The ids of the policies that allowed.
    pub ids: Vec<String>,
}

/// The one call a writ allows: exactly one validated authorization detail, written as a
/// one-element `authorization_details` array (RFC 9396 §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "Vec<AuthorizationDetail>",
    into = "Vec<AuthorizationDetail>"
)]
pub struct SingleDetail(AuthorizationDetail);

impl SingleDetail {
    /// Wraps a detail after validating it.
    pub fn new(detail: AuthorizationDetail) -> Result<Self, ClaimsError> {
        detail
            .validate()
            .map_err(|_| ClaimsError("authorization detail exceeds its limits"))?;
        Ok(SingleDetail(detail))
    }

    /// The detail.
    pub fn detail(&self) -> &AuthorizationDetail {
        &self.0
    }
}

impl TryFrom<Vec<AuthorizationDetail>> for SingleDetail {
    type Error = ClaimsError;
    fn try_from(details: Vec<AuthorizationDetail>) -> Result<Self, ClaimsError> {
        let mut details = details.into_iter();
        match (details.next(), details.next()) {
            (Some(detail), None) => SingleDetail::new(detail),
            _ => Err(ClaimsError(
                "a writ carries exactly one authorization detail",
            )),
        }
    }
}

impl From<SingleDetail> for Vec<AuthorizationDetail> {
    fn from(single: SingleDetail) -> Self {
        vec![single.0]
    }
}

/// Claims break a structural rule (for example `cnf.jkt` differs from the acting agent).
///
/// Whoever built the claims is at fault: the issuer refuses to sign them, and a verifier
/// refuses a token carrying them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid claims: {0}")]
pub struct ClaimsError(pub &'static str);

/// Checks rules shared by both token kinds.
pub(crate) fn check_common(
    act: &Actor,
    cnf: &Confirmation,
    task: &Task,
    iat: crate::UnixTime,
    exp: crate::UnixTime,
    max_lifetime: u64,
) -> Result<(), ClaimsError> {
    if act.sub != cnf.jkt {
        return Err(ClaimsError(
            "`cnf.jkt` must be the acting agent's key (`act.sub`)",
        ));
    }
    if act.len() > usize::from(MAX_DELEGATION_DEPTH) + 1 {
        return Err(ClaimsError(
            "actor chain is longer than the delegation limit",
        ));
    }
    if exp <= iat {
        return Err(ClaimsError("`exp` must be after `iat`"));
    }
    if exp.seconds_since(iat) > max_lifetime {
        return Err(ClaimsError(
            "lifetime exceeds the maximum for this token type",
        ));
    }
    if task
        .summary
        .as_ref()
        .is_some_and(|summary| summary.chars().count() > MAX_SUMMARY_LEN)
    {
        return Err(ClaimsError("task summary is too long"));
    }
    Ok(())
}

/// Checks the bounds of a policy reference.
pub(crate) fn check_policy(policy: &PolicyRef) -> Result<(), ClaimsError> {
    if policy.set.is_empty() || policy.set.len() > 128 {
        return Err(ClaimsError(
            "policy set version must be 1 to 128 characters",
        ));
    }
    if policy.ids.len() > MAX_POLICY_IDS || policy.ids.iter().any(|id| id.len() > 128) {
        return Err(ClaimsError("too many or too long policy ids"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumbprint(byte: u8) -> Thumbprint {
        Thumbprint::parse(&base64url_encode([byte; 32])).unwrap()
    }

    #[test]
    fn actor_chain_nests_per_rfc8693() {
        let chain = Actor::delegated(
            thumbprint(3),
            Actor::delegated(thumbprint(2), Actor::new(thumbprint(1))),
        );
        let order: Vec<_> = chain.chain().cloned().collect();
        assert_eq!(order, vec![thumbprint(3), thumbprint(2), thumbprint(1)]);
        let json = serde_json::to_value(&chain).unwrap();
        assert_eq!(json["act"]["act"]["sub"], thumbprint(1).as_str());
        assert!(json["act"]["act"].get("act").is_none());
    }

    #[test]
    fn task_digest_is_sha256() {
        // SHA-256("abc"), RFC 6234 / FIPS 180-2 test vector, in base64url.
        assert_eq!(
            TaskDigest::of("abc").as_str(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert!(TaskDigest::try_from("short".to_owned()).is_err());
    }

    #[test]
    fn single_detail_means_exactly_one() {
        let one = serde_json::json!([{"type": "mcp_tool_call", "server": "s", "tool": "t"}]);
        assert!(serde_json::from_value::<SingleDetail>(one).is_ok());
        let two = serde_json::json!([
            {"type": "mcp_tool_call", "server": "s", "tool": "t"},
            {"type": "mcp_tool_call", "server": "s", "tool": "u"}
        ]);
        assert!(serde_json::from_value::<SingleDetail>(two).is_err());
        assert!(serde_json::from_value::<SingleDetail>(serde_json::json!([])).is_err());
    }
}
