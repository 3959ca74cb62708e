//! A DPoP proof is only as good as the key in its `jwk` header: one of small order proves
//! possession of nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use writ_jose::base64url_encode;
use writ_token::{MemoryReplayCache, ProofCheck, UnixTime, verify_proof};

const NOW: u64 = 1_800_000_000;
const URI: &str = "https://issuer.test/v1/token";
/// The Ed25519 identity point, `y = 1`: a small-order key with no private key behind it.
const IDENTITY_X: &str = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A proof signed by nobody: under the identity key, `R = B` and `S = 1` satisfy the Ed25519
/// equation `[S]B = R + [k]A` for every message.
fn keyless_proof(x: &str) -> String {
    let header = serde_json::json!({
        "typ": "dpop+jwt", "alg": "EdDSA",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x},
    });
    let claims = serde_json::json!({"jti": "j1", "htm": "POST", "htu": URI, "iat": NOW});
    let mut signature = vec![0x58_u8];
    signature.extend_from_slice(&[0x66; 31]);
    signature.push(1);
    signature.extend_from_slice(&[0; 31]);
    format!(
        "{}.{}.{}",
        base64url_encode(header.to_string()),
        base64url_encode(claims.to_string()),
        base64url_encode(signature)
    )
}

#[test]
fn a_dpop_proof_with_the_identity_point_as_its_jwk_is_refused() {
    let check = ProofCheck {
        method: "POST",
        uri: URI,
        now: UnixTime::from_secs(NOW),
        max_age: 60,
        max_skew: 5,
        access_token: None,
        nonce: None,
    };
    let cache = MemoryReplayCache::new(8);
    let error = verify_proof(&keyless_proof(IDENTITY_X), &check, &cache)
        .expect_err("a proof made without a private key verified");
    assert_eq!(error.code(), "dpop_bad_key", "{error}");
    assert!(error.to_string().contains("small order"), "{error}");
}
