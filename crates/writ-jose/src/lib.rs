//! Keys, JWKs, RFC 7638 thumbprints and strict compact JWS for Writ.
//!
//! This crate is the cryptographic floor every other Writ crate stands on. It signs and
//! verifies JWS compact serializations (RFC 7515) with two algorithms, `EdDSA` over Ed25519
//! (RFC 8037, the default) and `ES256` over P-256 (for hardware keys), both on aws-lc-rs.
//!
//! It is deliberately strict, following RFC 8725 (JWT best current practices):
//!
//! - the algorithm comes from the verifying key, never from the token: a header `alg` that
//!   differs from the key's algorithm is refused, and `none` is never accepted;
//! - the caller names the one `typ` it expects (explicit typing, RFC 8725 §3.11);
//! - keys are never taken from `jku`, `x5u`, `x5c` or `jwk` headers: a `kid` is resolved only
//!   in a [`KeySet`] the caller trusts (a DPoP proof's own `jwk` is read with
//!   [`UnverifiedJws::embedded_jwk`], which only the DPoP verifier uses);
//! - tokens are bounded in size, base64url is decoded canonically (no padding, no stray
//!   bits), and JSON with duplicate member names is refused at every depth;
//! - `crit` and unencoded payloads (RFC 7797) are refused.
//! - weak keys are refused wherever a key is read (Ed25519 points of small order or not
//!   canonically encoded), and signatures are verified strictly (Ed25519 `S < L` and `R` not of
//!   small order; ES256 `r` and `s` in `[1, n - 1]`).
//!
//! It does no IO, reads no clock and keeps no state: time-dependent checks live in the token
//! layer (`writ-token`), which passes time in.
//!
//! Private keys ([`SigningKey`]) print as redacted `Debug`, are not `Serialize`, and their
//! PKCS#8 bytes are zeroized on drop.
//!
//! ```
//! use writ_jose::{Algorithm, KeySet, SigningKey, UnverifiedJws};
//!
//! let key = SigningKey::generate(Algorithm::EdDSA)?;
//! let token = key.sign_compact("example+jwt", Some("k1"), None, br#"{"hello":"world"}"#)?;
//!
//! let mut keys = KeySet::new();
//! keys.insert("k1", key.public_key().clone())?;
//! let jws = UnverifiedJws::parse(&token, 8192)?;
//! let payload = jws.verify_with_key_set(&keys, "example+jwt")?;
//! assert_eq!(payload, br#"{"hello":"world"}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod b64;
mod idp;
mod json;
mod jwk;
mod jws;
mod key;
mod newtype;
mod strict;

pub use b64::{Base64Error, decode as base64url_decode, encode as base64url_encode};
pub use idp::IdpKeySet;
pub use json::{JsonError, fold_case, from_slice_strict, sort_members};
pub use jwk::{Jwk, JwkError, KeySet, KeySetError, Thumbprint, ThumbprintError};
pub use jws::{Header, JwsError, UnverifiedJws};
pub use key::{
    Algorithm, ExternalSigner, KeyError, PublicKey, SigningKey, random_bytes, sha256, sha256_concat,
};
