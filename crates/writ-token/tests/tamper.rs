//! Verification never accepts a token or proof with any single byte changed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

#[path = "../fixtures/mod.rs"]
mod fixtures;

use fixtures::*;
use proptest::prelude::*;
use writ_token::*;

fn tampered(token: &str, index: usize, byte: u8) -> Option<String> {
    let mut bytes = token.as_bytes().to_vec();
    let slot = bytes.get_mut(index % token.len())?;
    if *slot == byte {
        return None;
    }
    *slot = byte;
    String::from_utf8(bytes).ok()
}

/// Printable ASCII: every base64url character, `.`, and characters outside the alphabet.
fn replacement() -> impl Strategy<Value = u8> {
    0x21_u8..0x7f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn a_changed_writ_never_verifies(index in any::<usize>(), byte in replacement()) {
        let writ = sign(&writ_claims(), &issuer_key(), ISSUER_KID).unwrap();
        let (issuer, gateway) = (issuer(), gateway());
        let keys = key_set();
        let expect = expectations(&gateway, &issuer);
        prop_assert!(UnverifiedWrit::parse(&writ).unwrap().verify(&keys, &expect).is_ok());
        if let Some(changed) = tampered(&writ, index, byte) {
            let result = UnverifiedWrit::parse(&changed).and_then(|t| t.verify(&keys, &expect));
            prop_assert!(result.is_err(), "accepted with byte {} set to {:?}", index % writ.len(), byte as char);
        }
    }

    #[test]
    fn a_changed_mandate_never_verifies(index in any::<usize>(), byte in replacement()) {
        let mandate = sign(&mandate_claims(), &issuer_key(), ISSUER_KID).unwrap();
        let issuer = issuer();
        let keys = key_set();
        let expect = expectations(&issuer, &issuer);
        if let Some(changed) = tampered(&mandate, index, byte) {
            let result = UnverifiedMandate::parse(&changed).and_then(|t| t.verify(&keys, &expect));
            prop_assert!(result.is_err(), "accepted with byte {} changed", index % mandate.len());
        }
    }

    #[test]
    fn a_changed_proof_never_verifies(index in any::<usize>(), byte in replacement()) {
        let writ = "writ-token";
        let proof = ProofClaims::new("POST", GATEWAY, NOW, "p1".into())
            .with_access_token(writ)
            .sign(&agent_key())
            .unwrap();
        let check = proof_check(Some(writ));
        prop_assert!(verify_proof(&proof, &check, &NoReplay).is_ok());
        if let Some(changed) = tampered(&proof, index, byte) {
            let result = verify_proof(&changed, &check, &NoReplay);
            prop_assert!(result.is_err(), "accepted with byte {} changed", index % proof.len());
        }
    }
}
