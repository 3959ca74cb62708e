//! Mandates: a human's grant of a task to an agent (`typ: mandate+jwt`).

use serde::{Deserialize, Serialize};
use writ_scope::Grants;

use crate::claims::{Actor, ClaimsError, Confirmation, MAX_DELEGATION_DEPTH, Task, check_common};
use crate::ids::{Audience, HumanId, Issuer, MandateId};
use crate::time::UnixTime;
use crate::token::{Sealed, TokenClaims, Unverified, Verified};
use crate::verify::Registered;

/// The longest any mandate may live: one day. Issuers set a lower maximum (15 minutes by
/// default).
pub const MAX_MANDATE_LIFETIME: u64 = 24 * 60 * 60;

/// The claims of a mandate.
///
/// A mandate is only good for token exchange at its issuer (`aud` is the issuer itself), and
/// only for the agent holding the key `cnf.jkt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MandateClaims {
    /// The issuer.
    pub iss: Issuer,
    /// The originating human.
    pub sub: HumanId,
    /// The agent chain, acting agent outermost.
    pub act: Actor,
    /// The issuer's token endpoint audience: the issuer itself.
    pub aud: Audience,
    /// Issued at.
    pub iat: UnixTime,
    /// Expires at.
    pub exp: UnixTime,
    /// The mandate id.
    pub jti: MandateId,
    /// The acting agent's key.
    pub cnf: Confirmation,
    /// What the agent may do.
    pub grants: Grants,
    /// The task it was granted for.
    pub task: Task,
    /// 0 for a human's direct grant, one more per delegation.
    pub depth: u8,
    /// The deepest delegation this chain may reach.
    pub max_depth: u8,
    /// The mandate this one was delegated from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<MandateId>,
}

impl Sealed for MandateClaims {
    fn registered(&self) -> Registered<'_> {
        Registered {
            iss: &self.iss,
            aud: &self.aud,
            iat: self.iat,
            nbf: None,
            exp: self.exp,
        }
    }
}

impl TokenClaims for MandateClaims {
    const TYP: &'static str = "mandate+jwt";

    fn check(&self) -> Result<(), ClaimsError> {
        check_common(
            &self.act,
            &self.cnf,
            &self.task,
            self.iat,
            self.exp,
            MAX_MANDATE_LIFETIME,
        )?;
        if self.max_depth > MAX_DELEGATION_DEPTH || self.depth > self.max_depth {
            return Err(ClaimsError(
                "`depth` exceeds `max_depth` or the delegation limit",
            ));
        }
        if self.act.len() != usize::from(self.depth) + 1 {
            return Err(ClaimsError("the actor chain must hold `depth + 1` agents"));
        }
        if self.parent.is_some() != (self.depth > 0) {
            return Err(ClaimsError(
                "a delegated mandate, and only one, names its `parent`",
            ));
        }
        Ok(())
    }
}

/// A mandate parsed but not verified.
pub type UnverifiedMandate<'a> = Unverified<'a, MandateClaims>;
/// A verified mandate.
pub type VerifiedMandate = Verified<MandateClaims>;
