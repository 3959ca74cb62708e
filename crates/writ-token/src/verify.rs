//! The verification steps every Writ token goes through, and their errors.

use serde::de::DeserializeOwned;
use writ_jose::{JwsError, KeySet, UnverifiedJws};

use crate::claims::ClaimsError;
use crate::ids::Audience;
use crate::time::UnixTime;

/// The longest token (mandate or writ) accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The largest clock skew a verifier may allow, in seconds.
pub const MAX_SKEW: u64 = 60;

/// What a verifier expects of a token, and when it is.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The issuer the verifier trusts (`iss`).
    pub issuer: &'a Audience,
    /// The verifier's own identifier (`aud`).
    pub audience: &'a Audience,
    /// The current time.
    pub now: UnixTime,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, at most [`MAX_SKEW`].
    pub skew: u64,
}

/// A token was refused. Each variant has a stable [`VerifyError::code`].
///
/// All are the presenter's fault except [`VerifyError::UnknownKey`], which can also mean the
/// verifier's key set is stale.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token is {0} bytes, more than the limit of {MAX_TOKEN_LEN}")]
    TooLarge(usize),
    /// Not a well-formed JWS, or claims that are not valid JSON of the expected shape.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The `typ` header is not the one this token kind requires.
    #[error("{0}")]
    WrongType(String),
    /// The `alg` header is unsupported (including `none`) or differs from the key's.
    #[error("{0}")]
    Algorithm(String),
    /// The `kid` is missing or names no trusted key.
    #[error("{0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The claims break a structural rule.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// `iss` is not the trusted issuer.
    #[error("token issuer `{0}` is not trusted here")]
    WrongIssuer(String),
    /// `aud` is not this verifier.
    #[error("token audience `{found}` is not `{expected}`")]
    WrongAudience {
        /// This verifier.
        expected: String,
        /// The token's `aud`.
        found: String,
    },
    /// `exp` has passed.
    #[error("token expired at {exp}, now is {now}")]
    Expired {
        /// The token's `exp`.
        exp: UnixTime,
        /// The verifier's time.
        now: UnixTime,
    },
    /// `nbf` or `iat` is in the future.
    #[error("token is not valid before {not_before}, now is {now}")]
    NotYetValid {
        /// The later of `nbf` and `iat`.
        not_before: UnixTime,
        /// The verifier's time.
        now: UnixTime,
    },
}

impl VerifyError {
    /// A stable machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::TooLarge(_) => "token_too_large",
            VerifyError::Malformed(_) => "token_malformed",
            VerifyError::WrongType(_) => "token_wrong_type",
            VerifyError::Algorithm(_) => "token_bad_algorithm",
            VerifyError::UnknownKey(_) => "token_unknown_key",
            VerifyError::BadSignature => "token_bad_signature",
            VerifyError::Claims(_) => "token_invalid_claims",
            VerifyError::WrongIssuer(_) => "token_wrong_issuer",
            VerifyError::WrongAudience { .. } => "token_wrong_audience",
            VerifyError::Expired { .. } => "token_expired",
            VerifyError::NotYetValid { .. } => "token_not_yet_valid",
        }
    }
}

impl From<JwsError> for VerifyError {
    fn from(error: JwsError) -> Self {
        match error {
            JwsError::TooLarge { len, .. } => VerifyError::TooLarge(len),
            JwsError::WrongType { .. } => VerifyError::WrongType(error.to_string()),
            JwsError::UnsupportedAlgorithm(_) | JwsError::AlgorithmMismatch { .. } => {
                VerifyError::Algorithm(error.to_string())
            }
            JwsError::MissingKid | JwsError::UnknownKey(_) => {
                VerifyError::UnknownKey(error.to_string())
            }
            JwsError::BadSignature => VerifyError::BadSignature,
            JwsError::Malformed(_) | JwsError::Header(_) | JwsError::UnsupportedHeader(_) => {
                VerifyError::Malformed(error.to_string())
            }
        }
    }
}

/// The registered claims every Writ token has, for the common checks.
pub struct Registered<'a> {
    /// `iss`.
    pub iss: &'a Audience,
    /// `aud`.
    pub aud: &'a Audience,
    /// `iat`.
    pub iat: UnixTime,
    /// `nbf`, when the kind has one.
    pub nbf: Option<UnixTime>,
    /// `exp`.
    pub exp: UnixTime,
}

/// Parses, checks the signature with a key from `keys`, then reads the claims strictly.
pub(crate) fn verified_claims<C: DeserializeOwned>(
    jws: &UnverifiedJws<'_>,
    keys: &KeySet,
    typ: &str,
) -> Result<C, VerifyError> {
    let payload = jws.verify_with_key_set(keys, typ)?;
    writ_jose::from_slice_strict(payload).map_err(|error| VerifyError::Malformed(error.to_string()))
}

/// RFC 7519 §4.1: issuer, audience and the time window, with bounded skew.
pub(crate) fn check_registered(
    claims: &Registered<'_>,
    expect: &Expectations<'_>,
) -> Result<(), VerifyError> {
    let skew = expect.skew.min(MAX_SKEW);
    if claims.iss != expect.issuer {
        return Err(VerifyError::WrongIssuer(claims.iss.to_string()));
    }
    if claims.aud != expect.audience {
        return Err(VerifyError::WrongAudience {
            expected: expect.audience.to_string(),
            found: claims.aud.to_string(),
        });
    }
    // §4.1.4: the token must not be accepted on or after `exp`.
    if expect.now >= claims.exp.plus(skew) {
        return Err(VerifyError::Expired {
            exp: claims.exp,
            now: expect.now,
        });
    }
    // §4.1.5 and §4.1.6: not before `nbf`, and never issued in the future.
    let not_before = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
    if expect.now.plus(skew) < not_before {
        return Err(VerifyError::NotYetValid {
            not_before,
            now: expect.now,
        });
    }
    Ok(())
}

pub(crate) fn parse(token: &str) -> Result<UnverifiedJws<'_>, VerifyError> {
    Ok(UnverifiedJws::parse(token, MAX_TOKEN_LEN)?)
}
