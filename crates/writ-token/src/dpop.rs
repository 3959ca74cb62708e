//! DPoP proofs (RFC 9449): creation, verification per §4.3, and replay detection.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use writ_jose::{
    JwsError, KeyError, PublicKey, SigningKey, Thumbprint, UnverifiedJws, base64url_encode, sha256,
};

use crate::time::UnixTime;

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// The longest proof accepted, in bytes.
pub const MAX_PROOF_LEN: usize = 4096;
/// The longest `jti` or `nonce` accepted, in bytes.
pub const MAX_PROOF_STRING_LEN: usize = 256;

/// The claims of a DPoP proof (RFC 9449 §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    /// A unique id for this proof.
    pub jti: String,
    /// The HTTP method of the request.
    pub htm: String,
    /// The HTTP target URI of the request, without query and fragment.
    pub htu: String,
    /// When the proof was made.
    pub iat: UnixTime,
    /// The base64url SHA-256 of the access token presented with the proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ath: Option<String>,
    /// A nonce the server provided (§8, §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl ProofClaims {
    /// Claims for a request with `method` to `uri` at `iat`, with a fresh random `jti`.
    pub fn new(method: &str, uri: &str, iat: UnixTime, jti: String) -> Self {
        ProofClaims {
            jti,
            htm: method.to_owned(),
            htu: strip_query_and_fragment(uri).to_owned(),
            iat,
            ath: None,
            nonce: None,
        }
    }

    /// Binds the proof to `access_token` (§4.2 `ath`).
    pub fn with_access_token(mut self, access_token: &str) -> Self {
        self.ath = Some(access_token_hash(access_token));
        self
    }

    /// Echoes a server-provided nonce.
    pub fn with_nonce(mut self, nonce: &str) -> Self {
        self.nonce = Some(nonce.to_owned());
        self
    }

    /// Signs the proof with the agent's key; the header carries its public `jwk`.
    pub fn sign(&self, key: &SigningKey) -> Result<String, KeyError> {
        let payload =
            serde_json::to_vec(self).map_err(|_| KeyError::Crypto("proof serialization failed"))?;
        key.sign_compact(DPOP_TYP, None, Some(&key.public_key().to_jwk()), &payload)
    }
}

/// The `ath` value for an access token: base64url SHA-256 of its ASCII bytes (§4.2).
pub fn access_token_hash(access_token: &str) -> String {
    base64url_encode(sha256(access_token.as_bytes()))
}

/// What the server knows about the request a proof must match. Its `Debug` leaves out the
/// access token.
#[derive(Clone, Copy)]
pub struct ProofCheck<'a> {
    /// The request's HTTP method.
    pub method: &'a str,
    /// The request's target URI as the server is reached (scheme, authority, path).
    pub uri: &'a str,
    /// The current time.
    pub now: UnixTime,
    /// How old a proof may be, in seconds.
    pub max_age: u64,
    /// How far in the future `iat` may be (clock skew), in seconds.
    pub max_skew: u64,
    /// The access token presented with the proof, if any: `ath` must then match it.
    pub access_token: Option<&'a str>,
    /// When the server requires nonces: the key its nonces are checked with.
    pub nonce: Option<&'a crate::NonceKey>,
}

impl std::fmt::Debug for ProofCheck<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofCheck")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("now", &self.now)
            .field("max_age", &self.max_age)
            .field("max_skew", &self.max_skew)
            .field("access_token", &self.access_token.map(|_| "<redacted>"))
            .field("nonce", &self.nonce.is_some())
            .finish()
    }
}

/// A proof that passed every check: the key it proves possession of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    key: PublicKey,
    jti: String,
    iat: UnixTime,
}

impl VerifiedProof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub fn jkt(&self) -> &Thumbprint {
        self.key.thumbprint()
    }

    /// The proof's public key (from its `jwk` header, now verified).
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// The proof's id.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// When the proof was made.
    pub fn iat(&self) -> UnixTime {
        self.iat
    }

    /// Checks that the proof's key is the one a token is bound to (`cnf.jkt`, §6.1).
    pub fn ensure_bound_to(&self, jkt: &Thumbprint) -> Result<(), DpopError> {
        if self.jkt() == jkt {
            Ok(())
        } else {
            Err(DpopError::KeyMismatch)
        }
    }
}

/// A DPoP proof was refused. Each variant has a stable [`DpopError::code`]; all are the
/// client's fault except [`DpopError::ReplayCacheUnavailable`], which is the server's.
#[derive(Debug, thiserror::Error)]
pub enum DpopError {
    /// Not a well-formed proof JWT, or claims missing or of the wrong type.
    #[error("malformed DPoP proof: {0}")]
    Malformed(String),
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof `typ` must be `dpop+jwt`")]
    WrongType,
    /// The algorithm is unsupported or does not match the key.
    #[error("DPoP proof algorithm is not accepted: {0}")]
    Algorithm(String),
    /// No `jwk` header, a private key in it, or an unsupported key.
    #[error("DPoP proof key is not acceptable: {0}")]
    BadKey(String),
    /// The signature does not verify with the `jwk`.
    #[error("DPoP proof signature does not verify")]
    BadSignature,
    /// `htm` differs from the request method.
    #[error("DPoP proof is for method `{0}`, not this request's")]
    MethodMismatch(String),
    /// `htu` differs from the request URI.
    #[error("DPoP proof is for `{0}`, not this request's URI")]
    UriMismatch(String),
    /// `iat` is too old or too far in the future.
    #[error("DPoP proof `iat` {iat} is outside the accepted window around {now}")]
    Stale {
        /// The proof's `iat`.
        iat: UnixTime,
        /// The server's time.
        now: UnixTime,
    },
    /// An access token was presented but the proof has no `ath`.
    #[error("DPoP proof has no `ath` for the presented token")]
    MissingAth,
    /// `ath` is not the hash of the presented access token.
    #[error("DPoP proof `ath` does not match the presented token")]
    AthMismatch,
    /// The server requires a nonce and the proof's is missing or wrong (§8).
    #[error("DPoP proof must carry the server's current nonce")]
    NonceRequired,
    /// This proof was seen before.
    #[error("DPoP proof was already used")]
    Replayed,
    /// The proof was made when an earlier process of this server could have accepted it,
    /// before this one began recording proofs (a restart): it may have been used already,
    /// so it is refused. A fresh proof is accepted once its `iat` is after `after`.
    #[error(
        "DPoP proof `iat` {iat} is from before this server's restart: make a fresh proof (after {after})"
    )]
    PredatesStart {
        /// The proof's `iat`.
        iat: UnixTime,
        /// Proofs made after this time are accepted.
        after: UnixTime,
    },
    /// The replay cache could not answer; the proof is refused (fail closed).
    #[error("DPoP replay cache unavailable: {0}")]
    ReplayCacheUnavailable(String),
    /// The proof's key is not the key the token is bound to.
    #[error("DPoP proof key does not match the token's `cnf.jkt`")]
    KeyMismatch,
}

impl DpopError {
    /// A stable machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::Malformed(_) => "dpop_malformed",
            DpopError::WrongType => "dpop_wrong_type",
            DpopError::Algorithm(_) => "dpop_bad_algorithm",
            DpopError::BadKey(_) => "dpop_bad_key",
            DpopError::BadSignature => "dpop_bad_signature",
            DpopError::MethodMismatch(_) => "dpop_method_mismatch",
            DpopError::UriMismatch(_) => "dpop_uri_mismatch",
            DpopError::Stale { .. } => "dpop_stale",
            DpopError::MissingAth => "dpop_missing_ath",
            DpopError::AthMismatch => "dpop_ath_mismatch",
            DpopError::NonceRequired => "dpop_nonce_required",
            DpopError::Replayed => "dpop_replayed",
            DpopError::PredatesStart { .. } => "dpop_predates_start",
            DpopError::ReplayCacheUnavailable(_) => "dpop_replay_cache_unavailable",
            DpopError::KeyMismatch => "dpop_key_mismatch",
        }
    }

    /// The OAuth error code for the response (RFC 9449 §7.1, §8, §12.2).
    pub fn oauth_error(&self) -> &'static str {
        match self {
            DpopError::NonceRequired => "use_dpop_nonce",
            DpopError::ReplayCacheUnavailable(_) => "temporarily_unavailable",
            _ => "invalid_dpop_proof",
        }
    }
}

/// Records ids (proof or token `jti`s) as used, so each is accepted once.
///
/// Implementations must make "check and record" atomic. When they cannot answer they
/// return [`ReplayError::Unavailable`], and the verifier refuses the proof.
///
/// A cache also says since when it has seen every use ([`ReplayCache::horizon`]): a cache
/// that lives in one process has not seen what an earlier process of the same server
/// accepted, so ids that such a process may have accepted are refused by [`use_once`]
/// rather than accepted a second time. A store shared by every process serving an
/// audience, kept across restarts, has no horizon.
pub trait ReplayCache: Send + Sync {
    /// Records `id` until `expires`; [`ReplayError::Seen`] if it is already recorded.
    fn first_use(&self, id: &str, expires: UnixTime, now: UnixTime) -> Result<(), ReplayError>;

    /// The last moment at which an id may have been used without this cache recording it
    /// (for a cache kept in memory: when its process started, if an earlier process served
    /// before it), or `None` when it has recorded every use.
    fn horizon(&self) -> Option<UnixTime>;
}

/// Records the single use of `id`, issued at `issued` and accepted up to `skew` seconds
/// before that, until `expires`: the one place every single-use id goes through.
///
/// An id that a server could have accepted at or before the cache's
/// [`horizon`](ReplayCache::horizon) is refused with [`ReplayError::BeforeHorizon`]: a
/// verifier accepts an id issued up to `skew` seconds in its future, so that is every id
/// issued at or before the horizon plus `skew`. It may have been used already, and the
/// cache cannot tell.
pub fn use_once(
    replay: &dyn ReplayCache,
    id: &str,
    issued: UnixTime,
    skew: u64,
    expires: UnixTime,
    now: UnixTime,
) -> Result<(), ReplayError> {
    if let Some(horizon) = replay.horizon()
        && issued <= horizon.plus(skew)
    {
        return Err(ReplayError::BeforeHorizon {
            issued,
            after: horizon.plus(skew),
        });
    }
    replay.first_use(id, expires, now)
}

/// Why a replay cache refused an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The id was used before.
    #[error("already used")]
    Seen,
    /// The id was issued when an earlier process could have accepted it, before this cache
    /// began recording: whether it was used cannot be known, so it is refused. A fresh one
    /// is accepted.
    #[error(
        "issued at {issued}, when a use before this server's restart cannot be ruled out: \
         make a fresh one (issued after {after})"
    )]
    BeforeHorizon {
        /// When the id was issued.
        issued: UnixTime,
        /// The ids issued after this time are accepted.
        after: UnixTime,
    },
    /// The cache cannot answer (full, poisoned, or its store failed).
    #[error("{0}")]
    Unavailable(String),
}

/// A bounded in-process replay cache.
///
/// When full it first drops expired entries; if it is still full it refuses new ids
/// (fail closed) rather than forgetting live ones. It remembers nothing across restarts:
/// a process that follows an earlier one gives it the moment it started as its horizon
/// ([`MemoryReplayCache::after_restart`]).
#[derive(Debug)]
pub struct MemoryReplayCache {
    capacity: usize,
    horizon: Option<UnixTime>,
    seen: Mutex<HashMap<String, UnixTime>>,
}

impl MemoryReplayCache {
    /// A cache that holds at most `capacity` live ids, for a server that no earlier process
    /// served before: it has seen every use.
    pub fn new(capacity: usize) -> Self {
        MemoryReplayCache {
            capacity,
            horizon: None,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A cache for a process that started at `started`, when an earlier process of the same
    /// server may have accepted ids it has not seen: see [`use_once`].
    pub fn after_restart(capacity: usize, started: UnixTime) -> Self {
        MemoryReplayCache {
            horizon: Some(started),
            ..MemoryReplayCache::new(capacity)
        }
    }
}

impl ReplayCache for MemoryReplayCache {
    fn horizon(&self) -> Option<UnixTime> {
        self.horizon
    }

    fn first_use(&self, id: &str, expires: UnixTime, now: UnixTime) -> Result<(), ReplayError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| ReplayError::Unavailable("replay cache lock poisoned".to_owned()))?;
        if let Some(&until) = seen.get(id)
            && until > now
        {
            return Err(ReplayError::Seen);
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until > now);
            if seen.len() >= self.capacity {
                return Err(ReplayError::Unavailable(format!(
                    "replay cache full ({} live ids)",
                    self.capacity
                )));
            }
        }
        seen.insert(id.to_owned(), expires);
        Ok(())
    }
}

/// A proof that passed every RFC 9449 §4.3 check except single use. A server records it
/// ([`CheckedProof::record`]) once it knows the key is one it accepts (registered, or the
/// key a token is bound to): a valid proof by a throwaway key then never enters the replay
/// cache, so strangers cannot fill it.
#[derive(Debug)]
#[must_use = "a proof is not verified until it is recorded"]
pub struct CheckedProof {
    key: PublicKey,
    jti: String,
    iat: UnixTime,
    /// How far in the future `iat` was allowed to be.
    skew: u64,
    /// The server nonce the proof carries, if any (checked only when the server requires
    /// one, or by [`CheckedProof::record_fresh`]).
    nonce: Option<String>,
    /// Until when its id must be remembered.
    expires: UnixTime,
}

impl CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub fn jkt(&self) -> &Thumbprint {
        self.key.thumbprint()
    }

    /// The proof's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// Checks that the proof's key is the one a token is bound to (`cnf.jkt`, §6.1).
    pub fn ensure_bound_to(&self, jkt: &Thumbprint) -> Result<(), DpopError> {
        if self.jkt() == jkt {
            Ok(())
        } else {
            Err(DpopError::KeyMismatch)
        }
    }

    /// §11.1: each proof once. Ids are scoped to the key, so one client cannot collide with
    /// another's; they are kept until the proof could no longer be accepted anyway. A proof
    /// made before the cache's horizon (a restart) is refused: see [`use_once`].
    pub fn record(
        self,
        replay: &dyn ReplayCache,
        now: UnixTime,
    ) -> Result<VerifiedProof, DpopError> {
        self.record_once(replay, now, false)
    }

    /// [`CheckedProof::record`] for a server that hands out nonces (RFC 9449 §8): a proof
    /// that carries a nonce minted by `nonces` was made after this process started (its
    /// secret is drawn at start), so no earlier process can have accepted it, and the
    /// cache's horizon does not apply to it. A proof without one is held to the horizon;
    /// refused as [`DpopError::PredatesStart`], its client can retry with the server's
    /// current nonce.
    pub fn record_fresh(
        self,
        replay: &dyn ReplayCache,
        now: UnixTime,
        nonces: &crate::NonceKey,
    ) -> Result<VerifiedProof, DpopError> {
        let made_here = self
            .nonce
            .as_deref()
            .is_some_and(|nonce| nonces.accepts(nonce, now));
        self.record_once(replay, now, made_here)
    }

    fn record_once(
        self,
        replay: &dyn ReplayCache,
        now: UnixTime,
        made_here: bool,
    ) -> Result<VerifiedProof, DpopError> {
        let replay_id = format!("dpop:{}:{}", self.key.thumbprint(), self.jti);
        let used = if made_here {
            replay.first_use(&replay_id, self.expires, now)
        } else {
            use_once(replay, &replay_id, self.iat, self.skew, self.expires, now)
        };
        used.map_err(|error| match error {
            ReplayError::Seen => DpopError::Replayed,
            ReplayError::BeforeHorizon { issued, after } => {
                DpopError::PredatesStart { iat: issued, after }
            }
            ReplayError::Unavailable(why) => DpopError::ReplayCacheUnavailable(why),
        })?;
        Ok(VerifiedProof {
            key: self.key,
            jti: self.jti,
            iat: self.iat,
        })
    }
}

/// Verifies a DPoP proof against the request it came with, per RFC 9449 §4.3, including
/// single use, and returns the key it proves possession of: [`check_proof`], then
/// [`CheckedProof::record`].
pub fn verify_proof(
    proof: &str,
    check: &ProofCheck<'_>,
    replay: &dyn ReplayCache,
) -> Result<VerifiedProof, DpopError> {
    check_proof(proof, check)?.record(replay, check.now)
}

/// Every RFC 9449 §4.3 check of a proof except single use, which the caller records with
/// [`CheckedProof::record`].
pub fn check_proof(proof: &str, check: &ProofCheck<'_>) -> Result<CheckedProof, DpopError> {
    // Step 2: a well-formed JWS.
    let jws = UnverifiedJws::parse(proof, MAX_PROOF_LEN).map_err(jws_error)?;
    // Steps 4-7: `typ`, an allowed asymmetric `alg` matching a public `jwk`, and the
    // signature by that key. The `jwk` header is used here and nowhere else.
    let jwk = jws
        .embedded_jwk()
        .ok_or_else(|| DpopError::BadKey("no `jwk` header".to_owned()))?;
    let key = jwk
        .to_public_key()
        .map_err(|error| DpopError::BadKey(error.to_string()))?;
    let payload = jws.verify_with_key(&key, DPOP_TYP).map_err(jws_error)?;
    // Step 3: all required claims, of the right types, no duplicates.
    let claims: ProofClaims = writ_jose::from_slice_strict(payload)
        .map_err(|error| DpopError::Malformed(error.to_string()))?;
    if claims.jti.is_empty() || claims.jti.len() > MAX_PROOF_STRING_LEN {
        return Err(DpopError::Malformed(
            "`jti` must be 1 to 256 bytes".to_owned(),
        ));
    }
    // Step 8: `htm` matches the method (methods are case-sensitive, RFC 9110 §9.1).
    if claims.htm != check.method {
        return Err(DpopError::MethodMismatch(truncate(&claims.htm)));
    }
    // Step 9: `htu` matches the URI, ignoring query and fragment, after normalization.
    if !same_target_uri(&claims.htu, check.uri) {
        return Err(DpopError::UriMismatch(truncate(&claims.htu)));
    }
    // Step 10: a recent nonce of the server's, when it requires one.
    if let Some(nonces) = check.nonce
        && !claims
            .nonce
            .as_deref()
            .is_some_and(|nonce| nonces.accepts(nonce, check.now))
    {
        return Err(DpopError::NonceRequired);
    }
    // Step 11: `iat` within the acceptable window.
    if claims.iat < check.now.minus(check.max_age) || claims.iat > check.now.plus(check.max_skew) {
        return Err(DpopError::Stale {
            iat: claims.iat,
            now: check.now,
        });
    }
    // Step 12: `ath` binds the proof to the presented access token.
    if let Some(token) = check.access_token {
        match &claims.ath {
            None => return Err(DpopError::MissingAth),
            Some(ath) if *ath != access_token_hash(token) => return Err(DpopError::AthMismatch),
            Some(_) => {}
        }
    }
    Ok(CheckedProof {
        key,
        jti: claims.jti,
        iat: claims.iat,
        skew: check.max_skew,
        nonce: claims.nonce,
        expires: claims.iat.plus(check.max_age).plus(check.max_skew),
    })
}

fn jws_error(error: JwsError) -> DpopError {
    match error {
        JwsError::WrongType { .. } => DpopError::WrongType,
        JwsError::UnsupportedAlgorithm(_) | JwsError::AlgorithmMismatch { .. } => {
            DpopError::Algorithm(error.to_string())
        }
        JwsError::BadSignature => DpopError::BadSignature,
        other => DpopError::Malformed(other.to_string()),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(128).collect()
}

fn strip_query_and_fragment(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

/// RFC 9449 §4.3 step 9 with RFC 3986 §6.2.2 and §6.2.3 normalization: scheme and host
/// compared case-insensitively, default ports dropped, an empty path is `/`, dot segments
/// removed, percent-encoding hex compared case-insensitively; query and fragment ignored.
fn same_target_uri(htu: &str, request_uri: &str) -> bool {
    match (normalize_uri(htu), normalize_uri(request_uri)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn normalize_uri(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() {
        return None;
    }
    let host = url.host_str()?;
    let port = url
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let mut path = String::with_capacity(url.path().len());
    let mut chars = url.path().chars();
    while let Some(c) = chars.next() {
        path.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(hex) = chars.next() {
                    path.push(hex.to_ascii_uppercase());
                }
            }
        }
    }
    Some(format!("{}://{host}{port}{path}", url.scheme()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_jose::Algorithm;

    const NOW: UnixTime = UnixTime::from_secs(1_700_000_000);
    const URI: &str = "https://gw.example/mcp/files";

    fn check<'a>() -> ProofCheck<'a> {
        ProofCheck {
            method: "POST",
            uri: URI,
            now: NOW,
            max_age: 60,
            max_skew: 5,
            access_token: None,
            nonce: None,
        }
    }

    fn proof(key: &SigningKey, claims: ProofClaims) -> String {
        claims.sign(key).unwrap()
    }

    #[test]
    fn uri_normalization() {
        let same = [
            ("https://gw.example/a", "HTTPS://GW.EXAMPLE/a"),
            ("https://gw.example:443/a", "https://gw.example/a"),
            ("https://gw.example", "https://gw.example/"),
            ("https://gw.example/a/./b/../c", "https://gw.example/a/c"),
            ("https://gw.example/a%2fb", "https://gw.example/a%2Fb"),
            ("https://gw.example/a?x=1#f", "https://gw.example/a?y=2"),
        ];
        for (a, b) in same {
            assert!(same_target_uri(a, b), "{a} == {b}");
        }
        let different = [
            ("https://gw.example/a", "http://gw.example/a"),
            ("https://gw.example/a", "https://gw.example:8443/a"),
            ("https://gw.example/a", "https://gw.example/A"),
            ("https://gw.example/a", "https://other.example/a"),
            ("https://user@gw.example/a", "https://gw.example/a"),
            ("not a uri", "not a uri"),
        ];
        for (a, b) in different {
            assert!(!same_target_uri(a, b), "{a} != {b}");
        }
    }

    #[test]
    fn a_good_proof_verifies_once() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let cache = MemoryReplayCache::new(16);
        let token = "the-writ";
        let claims = ProofClaims::new("POST", URI, NOW, "j1".into()).with_access_token(token);
        let proof = proof(&key, claims);
        let check = ProofCheck {
            access_token: Some(token),
            ..check()
        };
        let verified = verify_proof(&proof, &check, &cache).unwrap();
        assert_eq!(verified.jkt(), key.public_key().thumbprint());
        verified
            .ensure_bound_to(key.public_key().thumbprint())
            .unwrap();
        let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
        assert!(matches!(
            verified.ensure_bound_to(other.public_key().thumbprint()),
            Err(DpopError::KeyMismatch)
        ));
        assert!(matches!(
            verify_proof(&proof, &check, &cache),
            Err(DpopError::Replayed)
        ));
    }

    #[test]
    fn each_check_refuses() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let base = || ProofClaims::new("POST", URI, NOW, "j".into());
        let nonces = crate::NonceKey::new(&[1; 32], 60);
        let stale_nonce = nonces.current(NOW.minus(120));
        let cases: Vec<(ProofClaims, ProofCheck<'_>, &str)> = vec![
            (
                ProofClaims {
                    htm: "GET".into(),
                    ..base()
                },
                check(),
                "dpop_method_mismatch",
            ),
            (
                ProofClaims {
                    htu: "https://gw.example/other".into(),
                    ..base()
                },
                check(),
                "dpop_uri_mismatch",
            ),
            (
                ProofClaims {
                    iat: NOW.minus(61),
                    ..base()
                },
                check(),
                "dpop_stale",
            ),
            (
                ProofClaims {
                    iat: NOW.plus(6),
                    ..base()
                },
                check(),
                "dpop_stale",
            ),
            (
                base(),
                ProofCheck {
                    access_token: Some("t"),
                    ..check()
                },
                "dpop_missing_ath",
            ),
            (
                base().with_access_token("other"),
                ProofCheck {
                    access_token: Some("t"),
                    ..check()
                },
                "dpop_ath_mismatch",
            ),
            (
                base(),
                ProofCheck {
                    nonce: Some(&nonces),
                    ..check()
                },
                "dpop_nonce_required",
            ),
            (
                base().with_nonce("n0"),
                ProofCheck {
                    nonce: Some(&nonces),
                    ..check()
                },
                "dpop_nonce_required",
            ),
            (
                base().with_nonce(&stale_nonce),
                ProofCheck {
                    nonce: Some(&nonces),
                    ..check()
                },
                "dpop_nonce_required",
            ),
            (
                ProofClaims {
                    jti: String::new(),
                    ..base()
                },
                check(),
                "dpop_malformed",
            ),
        ];
        for (claims, check, code) in cases {
            let cache = MemoryReplayCache::new(16);
            let error = verify_proof(&proof(&key, claims.clone()), &check, &cache).unwrap_err();
            assert_eq!(error.code(), code, "{claims:?}: {error}");
        }
        assert_eq!(DpopError::NonceRequired.oauth_error(), "use_dpop_nonce");
        // The current nonce passes.
        let fresh = base().with_nonce(&nonces.current(NOW));
        let check = ProofCheck {
            nonce: Some(&nonces),
            ..check()
        };
        verify_proof(&proof(&key, fresh), &check, &MemoryReplayCache::new(16)).unwrap();
    }

    #[test]
    fn header_rules() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let cache = MemoryReplayCache::new(16);
        let payload = serde_json::to_vec(&ProofClaims::new("POST", URI, NOW, "j".into())).unwrap();
        let jwk = key.public_key().to_jwk();
        let wrong_typ = key.sign_compact("jwt", None, Some(&jwk), &payload).unwrap();
        let no_jwk = key
            .sign_compact(DPOP_TYP, Some("k"), None, &payload)
            .unwrap();
        let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let wrong_key = key
            .sign_compact(DPOP_TYP, None, Some(&other.public_key().to_jwk()), &payload)
            .unwrap();
        for (proof, code) in [
            (wrong_typ, "dpop_wrong_type"),
            (no_jwk, "dpop_bad_key"),
            (wrong_key, "dpop_bad_signature"),
            ("a.b.c".to_owned(), "dpop_malformed"),
            ("x".repeat(MAX_PROOF_LEN + 1), "dpop_malformed"),
        ] {
            let error = verify_proof(&proof, &check(), &cache).unwrap_err();
            assert_eq!(error.code(), code, "{error}");
        }
    }

    #[test]
    fn replay_ids_are_scoped_to_the_key() {
        let cache = MemoryReplayCache::new(16);
        for _ in 0..2 {
            let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
            let claims = ProofClaims::new("POST", URI, NOW, "same-jti".into());
            verify_proof(&proof(&key, claims), &check(), &cache).unwrap();
        }
    }

    #[test]
    fn a_proof_from_before_a_restart_is_refused_after_it() {
        // The earlier process could have accepted, until it stopped, any proof made up to
        // the skew after that: the restarted cache has seen none of them.
        let restarted = NOW;
        let cache = MemoryReplayCache::after_restart(16, restarted);
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        for iat in [restarted.minus(30), restarted, restarted.plus(5)] {
            let check = ProofCheck {
                now: restarted.plus(6),
                ..check()
            };
            let claims = ProofClaims::new("POST", URI, iat, format!("j{iat}"));
            let error = verify_proof(&proof(&key, claims), &check, &cache).unwrap_err();
            assert_eq!(error.code(), "dpop_predates_start", "iat {iat}: {error}");
        }
        // A fresh proof, made once the skew has passed, is accepted, once.
        let later = ProofCheck {
            now: restarted.plus(6),
            ..check()
        };
        let fresh = proof(
            &key,
            ProofClaims::new("POST", URI, restarted.plus(6), "fresh".into()),
        );
        verify_proof(&fresh, &later, &cache).unwrap();
        assert_eq!(
            verify_proof(&fresh, &later, &cache).unwrap_err().code(),
            "dpop_replayed"
        );
        // A cache with no earlier process has no horizon.
        let first = MemoryReplayCache::new(16);
        let old = proof(&key, ProofClaims::new("POST", URI, NOW, "old".into()));
        verify_proof(&old, &check(), &first).unwrap();
    }

    #[test]
    fn a_proof_with_a_nonce_minted_since_the_restart_needs_no_wait() {
        let cache = MemoryReplayCache::after_restart(16, NOW);
        let nonces = crate::NonceKey::new(&[3; 32], 60);
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let made = |jti: &str, nonce: Option<&str>| {
            let claims = ProofClaims::new("POST", URI, NOW, jti.into());
            let claims = match nonce {
                Some(nonce) => claims.with_nonce(nonce),
                None => claims,
            };
            check_proof(&proof(&key, claims), &check()).unwrap()
        };
        // Without a nonce, or with another process's, it is held to the horizon.
        let error = made("a", None)
            .record_fresh(&cache, NOW, &nonces)
            .unwrap_err();
        assert_eq!(error.code(), "dpop_predates_start");
        let earlier = crate::NonceKey::new(&[4; 32], 60).current(NOW);
        let error = made("b", Some(&earlier))
            .record_fresh(&cache, NOW, &nonces)
            .unwrap_err();
        assert_eq!(error.code(), "dpop_predates_start");
        // With this process's nonce it was made since the restart: accepted, once.
        let current = nonces.current(NOW);
        made("c", Some(&current))
            .record_fresh(&cache, NOW, &nonces)
            .unwrap();
        let error = made("c", Some(&current))
            .record_fresh(&cache, NOW, &nonces)
            .unwrap_err();
        assert_eq!(error.code(), "dpop_replayed");
        // `record` never takes a nonce as a reason to skip the horizon.
        let error = made("d", Some(&current)).record(&cache, NOW).unwrap_err();
        assert_eq!(error.code(), "dpop_predates_start");
    }

    #[test]
    fn use_once_refuses_ids_issued_before_the_horizon_plus_skew() {
        let cache = MemoryReplayCache::after_restart(16, NOW);
        assert_eq!(
            use_once(&cache, "w", NOW.plus(5), 5, NOW.plus(60), NOW.plus(6)),
            Err(ReplayError::BeforeHorizon {
                issued: NOW.plus(5),
                after: NOW.plus(5)
            })
        );
        use_once(&cache, "w", NOW.plus(6), 5, NOW.plus(60), NOW.plus(6)).unwrap();
        assert_eq!(
            use_once(&cache, "w", NOW.plus(6), 5, NOW.plus(60), NOW.plus(6)),
            Err(ReplayError::Seen)
        );
        // A refused id was not recorded: nothing changed.
        assert!(cache.seen.lock().unwrap().len() == 1);
    }

    #[test]
    fn memory_cache_expires_and_fails_closed_when_full() {
        let cache = MemoryReplayCache::new(2);
        cache.first_use("a", NOW.plus(10), NOW).unwrap();
        assert_eq!(
            cache.first_use("a", NOW.plus(10), NOW),
            Err(ReplayError::Seen)
        );
        cache.first_use("b", NOW.plus(20), NOW).unwrap();
        assert!(matches!(
            cache.first_use("c", NOW.plus(10), NOW),
            Err(ReplayError::Unavailable(_))
        ));
        // After `a` expires there is room again, and `a` may be recorded anew.
        cache.first_use("c", NOW.plus(30), NOW.plus(11)).unwrap();
        assert_eq!(
            cache.first_use("b", NOW.plus(20), NOW.plus(11)),
            Err(ReplayError::Seen)
        );
    }
}
