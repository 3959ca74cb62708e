//! Mandates, writs and DPoP proofs for Writ: typed claims, signing and verification.
//!
//! - A **mandate** (`typ: mandate+jwt`) is a human's grant of a task to an agent: who asked
//!   (`sub`), which agent acts (`act`, nested per RFC 8693 for delegation), what it may do
//!   (`grants`, RFC 9396 details), for how long (minutes), bound to the agent's key
//!   (`cnf.jkt`). Its audience is the issuer: it is only good for token exchange.
//! - A **writ** (`typ: writ+jwt`) allows exactly one call, for seconds (at most 300), bound
//!   to the same key, and records the mandate, task digest, policy decision and audit-log
//!   leaf behind it.
//! - A **DPoP proof** (RFC 9449) shows that the presenter holds the key a token is bound to.
//!
//! Tokens are parsed into [`Unverified`] values and become [`Verified`] only through
//! [`Unverified::verify`], which checks the signature with a key from a trusted
//! [`KeySet`](writ_jose::KeySet), the type, the claims' shape and structural rules, the
//! issuer, the audience and the time window. Later steps take the verified type.
//!
//! This crate does no IO and reads the clock only in [`SystemClock`]: `now` is an argument
//! (or a [`Clock`]), and replay detection is the [`ReplayCache`] trait, which the issuer and
//! gateway implement over their own stores.
//!
//! ```
//! use writ_jose::{Algorithm, KeySet, SigningKey};
//! use writ_token::*;
//!
//! let issuer_key = SigningKey::generate(Algorithm::EdDSA)?;
//! let agent_key = SigningKey::generate(Algorithm::EdDSA)?;
//! let mut keys = KeySet::new();
//! keys.insert("issuer-1", issuer_key.public_key().clone())?;
//!
//! let issuer = Audience::new("https://issuer.example")?;
//! let gateway = Audience::new("https://gateway.example/mcp/files")?;
//! let now = UnixTime::from_secs(1_700_000_000);
//! let agent = agent_key.public_key().thumbprint().clone();
//! let claims = WritClaims {
//!     iss: issuer.clone(),
//!     sub: HumanId::new("alice")?,
//!     act: Actor::new(agent.clone()),
//!     aud: gateway.clone(),
//!     iat: now,
//!     nbf: now,
//!     exp: now.plus(DEFAULT_WRIT_LIFETIME),
//!     jti: WritId::from_random([1; 16]),
//!     cnf: Confirmation { jkt: agent },
//!     authorization_details: SingleDetail::new(serde_json::from_value(serde_json::json!({
//!         "type": "mcp_tool_call", "server": "files", "tool": "read_file"
//!     }))?)?,
//!     mandate: MandateId::from_random([2; 16]),
//!     task: Task { digest: TaskDigest::of("summarize Q3"), summary: None },
//!     policy: PolicyRef { set: "v1".into(), ids: vec!["default-invoke".into()] },
//!     log_index: 7,
//! };
//! let writ = sign(&claims, &issuer_key, "issuer-1")?;
//!
//! // The gateway: verify the writ, then the proof that came with it.
//! let expect = Expectations { issuer: &issuer, audience: &gateway, now, skew: 5 };
//! let verified = UnverifiedWrit::parse(&writ)?.verify(&keys, &expect)?;
//!
//! let uri = "https://gateway.example/mcp/files";
//! let proof = ProofClaims::new("POST", uri, now, "proof-1".into())
//!     .with_access_token(&writ)
//!     .sign(&agent_key)?;
//! let check = ProofCheck {
//!     method: "POST", uri, now, max_age: 60, max_skew: 5,
//!     access_token: Some(&writ), nonce: None,
//! };
//! let proof = verify_proof(&proof, &check, &MemoryReplayCache::new(1024))?;
//! proof.ensure_bound_to(&verified.claims().cnf.jkt)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod claims;
mod dpop;
mod ids;
mod mandate;
mod nonce;
mod time;
mod token;
mod verify;
mod writ;

pub use claims::{
    Actor, ClaimsError, Confirmation, MAX_DELEGATION_DEPTH, MAX_POLICY_IDS, MAX_SUMMARY_LEN,
    PolicyRef, SingleDetail, Task, TaskDigest,
};
pub use dpop::{
    CheckedProof, DPOP_TYP, DpopError, MAX_PROOF_LEN, MemoryReplayCache, ProofCheck, ProofClaims,
    ReplayCache, ReplayError, VerifiedProof, access_token_hash, check_proof, use_once,
    verify_proof,
};
pub use ids::{ApprovalId, Audience, HumanId, IdError, Issuer, MandateId, WritId};
pub use mandate::{MAX_MANDATE_LIFETIME, MandateClaims, UnverifiedMandate, VerifiedMandate};
pub use nonce::NonceKey;
pub use time::{Clock, SystemClock, UnixTime};
pub use token::{SignError, TokenClaims, Unverified, Verified, sign};
pub use verify::{Expectations, MAX_SKEW, MAX_TOKEN_LEN, VerifyError};
/// RFC 8693 §2.1: the grant type of token exchange, by which a mandate earns a writ or a
/// delegated mandate.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of a mandate, as an RFC 8693 `subject_token_type` or
/// `requested_token_type`.
pub const MANDATE_TOKEN_TYPE: &str = "urn:writ:params:oauth:token-type:mandate";
/// The token type of a writ, as an RFC 8693 `requested_token_type` or `issued_token_type`.
pub const WRIT_TOKEN_TYPE: &str = "urn:writ:params:oauth:token-type:writ";

pub use writ::{
    DEFAULT_WRIT_LIFETIME, MAX_WRIT_LIFETIME, UnverifiedWrit, VerifiedWrit, WritClaims,
};
