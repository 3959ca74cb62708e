//! Writs: the per-call attestation (`typ: writ+jwt`).

use serde::{Deserialize, Serialize};

use crate::claims::{
    Actor, ClaimsError, Confirmation, PolicyRef, SingleDetail, Task, check_common, check_policy,
};
use crate::ids::{Audience, HumanId, Issuer, MandateId, WritId};
use crate::time::UnixTime;
use crate::token::{Sealed, TokenClaims, Unverified, Verified};
use crate::verify::Registered;

/// The longest any writ may live, in seconds.
pub const MAX_WRIT_LIFETIME: u64 = 300;
/// The default writ lifetime, in seconds.
pub const DEFAULT_WRIT_LIFETIME: u64 = 30;

/// The claims of a writ: one call, by one agent, for one human, for seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritClaims {
    /// The issuer.
    pub iss: Issuer,
    /// The originating human.
    pub sub: HumanId,
    /// The agent chain, acting agent outermost.
    pub act: Actor,
    /// The gateway route (resource) the writ is for.
    pub aud: Audience,
    /// Issued at.
    pub iat: UnixTime,
    /// Not valid before.
    pub nbf: UnixTime,
    /// Expires at, at most [`MAX_WRIT_LIFETIME`] after `iat`.
    pub exp: UnixTime,
    /// The writ id; single use.
    pub jti: WritId,
    /// The acting agent's key.
    pub cnf: Confirmation,
    /// The one call allowed.
    pub authorization_details: SingleDetail,
    /// The mandate it was issued under.
    pub mandate: MandateId,
    /// The task digest, copied from the mandate.
    pub task: Task,
    /// The policy decision that allowed it.
    pub policy: PolicyRef,
    /// The audit-log leaf recording its issuance.
    pub log_index: u64,
}

impl Sealed for WritClaims {
    fn registered(&self) -> Registered<'_> {
        Registered {
            iss: &self.iss,
            aud: &self.aud,
            iat: self.iat,
            nbf: Some(self.nbf),
            exp: self.exp,
        }
    }
}

impl TokenClaims for WritClaims {
    const TYP: &'static str = "writ+jwt";

    fn check(&self) -> Result<(), ClaimsError> {
        check_common(
            &self.act,
            &self.cnf,
            &self.task,
            self.iat,
            self.exp,
            MAX_WRIT_LIFETIME,
        )?;
        check_policy(&self.policy)?;
        if self.nbf < self.iat || self.nbf >= self.exp {
            return Err(ClaimsError("`nbf` must lie in [`iat`, `exp`)"));
        }
        if self.task.summary.is_some() {
            return Err(ClaimsError("a writ carries only the task digest"));
        }
        Ok(())
    }
}

/// A writ parsed but not verified.
pub type UnverifiedWrit<'a> = Unverified<'a, WritClaims>;
/// A verified writ.
pub type VerifiedWrit = Verified<WritClaims>;
