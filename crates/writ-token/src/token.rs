//! Signing and the `Unverified → Verified` flow shared by mandates and writs.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use writ_jose::{KeyError, KeySet, SigningKey, UnverifiedJws};

use crate::claims::ClaimsError;
use crate::verify::{self, Expectations, VerifyError};

mod sealed {
    /// Implemented only by this crate's claim types.
    pub trait Sealed {
        /// The registered claims for the common checks.
        fn registered(&self) -> crate::verify::Registered<'_>;
    }
}

/// The claims of a Writ token kind: [`MandateClaims`](crate::MandateClaims) or
/// [`WritClaims`](crate::WritClaims). Sealed: no other kinds exist.
pub trait TokenClaims: Serialize + DeserializeOwned + sealed::Sealed {
    /// The JOSE `typ` header this kind requires (RFC 8725 §3.11).
    const TYP: &'static str;

    /// Checks the structural rules of this kind.
    fn check(&self) -> Result<(), ClaimsError>;
}

pub(crate) use sealed::Sealed;

/// Signing a token failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The claims break a structural rule; nothing was signed.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// The key failed to sign.
    #[error("signing failed: {0}")]
    Key(#[from] KeyError),
}

/// Checks `claims` and signs them as a compact JWS with `typ` for their kind and `kid`.
pub fn sign<C: TokenClaims>(claims: &C, key: &SigningKey, kid: &str) -> Result<String, SignError> {
    claims.check()?;
    let payload =
        serde_json::to_vec(claims).map_err(|_| KeyError::Crypto("claims serialization failed"))?;
    Ok(key.sign_compact(C::TYP, Some(kid), None, &payload)?)
}

/// A token that has been parsed but not verified: nothing in it is trusted yet.
#[derive(Debug)]
pub struct Unverified<'a, C> {
    jws: UnverifiedJws<'a>,
    kind: PhantomData<C>,
}

/// A token whose signature, type, issuer, audience, lifetime and structure have been
/// checked. Only [`Unverified::verify`] makes one.
#[derive(Debug, Clone)]
pub struct Verified<C> {
    claims: C,
    kid: String,
}

impl<'a, C: TokenClaims> Unverified<'a, C> {
    /// Parses a compact JWS of at most [`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN) bytes.
    pub fn parse(token: &'a str) -> Result<Self, VerifyError> {
        Ok(Unverified {
            jws: verify::parse(token)?,
            kind: PhantomData,
        })
    }

    /// Verifies, in order: `typ`, `alg` against the key named by `kid` in `keys`, the
    /// signature, the claims' shape (no unknown or duplicate members), their structural
    /// rules, then `iss`, `aud` and the time window.
    pub fn verify(
        &self,
        keys: &KeySet,
        expect: &Expectations<'_>,
    ) -> Result<Verified<C>, VerifyError> {
        let claims: C = verify::verified_claims(&self.jws, keys, C::TYP)?;
        claims.check()?;
        verify::check_registered(&claims.registered(), expect)?;
        // The key set found the key by this `kid`, so it is present.
        let kid = self.jws.header().kid().unwrap_or_default().to_owned();
        Ok(Verified { claims, kid })
    }

    /// The claims read without verifying anything, for display and diagnostics only.
    pub fn unverified_claims(&self) -> Result<C, VerifyError> {
        writ_jose::from_slice_strict(self.jws.unverified_payload())
            .map_err(|error| VerifyError::Malformed(error.to_string()))
    }
}

impl<C> Verified<C> {
    /// The verified claims.
    pub fn claims(&self) -> &C {
        &self.claims
    }

    /// The `kid` of the issuer key that verified the signature, for key revocation.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}
