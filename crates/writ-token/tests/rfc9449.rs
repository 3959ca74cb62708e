//! The RFC 9449 examples through Writ's full proof verification.

#![allow(clippy::unwrap_used, reason = "test code")]

use writ_token::{MemoryReplayCache, ProofCheck, UnixTime, access_token_hash, verify_proof};

/// §5 Figure 6: the access token the examples present.
const ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
/// §7.1 Figure 14: its `ath`.
const ATH: &str = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
/// §7.1 Figure 13: the proof for `GET https://resource.example.org/protectedresource`.
const RESOURCE_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
/// §6.1: the thumbprint of the key in every example proof.
const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn check(access_token: &str) -> ProofCheck<'_> {
    ProofCheck {
        method: "GET",
        uri: "https://resource.example.org/protectedresource",
        now: UnixTime::from_secs(1_562_262_618),
        max_age: 60,
        max_skew: 5,
        access_token: Some(access_token),
        nonce: None,
    }
}

#[test]
fn ath_is_the_hash_of_the_access_token() {
    assert_eq!(access_token_hash(ACCESS_TOKEN), ATH);
}

#[test]
fn the_resource_request_proof_verifies_and_proves_the_example_key() {
    let cache = MemoryReplayCache::new(8);
    let proof = verify_proof(RESOURCE_PROOF, &check(ACCESS_TOKEN), &cache).unwrap();
    assert_eq!(proof.jkt().as_str(), JKT);
    assert_eq!(proof.jti(), "e1j3V_bKic8-LAEB");
}

#[test]
fn the_same_proof_fails_for_another_token_another_uri_or_a_second_use() {
    let cache = MemoryReplayCache::new(8);
    let error = verify_proof(RESOURCE_PROOF, &check("another-token"), &cache).unwrap_err();
    assert_eq!(error.code(), "dpop_ath_mismatch");
    let other_uri = ProofCheck {
        uri: "https://resource.example.org/other",
        ..check(ACCESS_TOKEN)
    };
    let error = verify_proof(RESOURCE_PROOF, &other_uri, &cache).unwrap_err();
    assert_eq!(error.code(), "dpop_uri_mismatch");
    verify_proof(RESOURCE_PROOF, &check(ACCESS_TOKEN), &cache).unwrap();
    let error = verify_proof(RESOURCE_PROOF, &check(ACCESS_TOKEN), &cache).unwrap_err();
    assert_eq!(error.code(), "dpop_replayed");
}
