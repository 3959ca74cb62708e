//! Agent keys on a SoftHSM2 token: generated there, found again, signing DPoP proofs that
//! verify, and refused when they could have been outside the token.
//!
//! Needs SoftHSM2 (Debian `softhsm2`; `.ci/run` installs it). Without it the test says so and
//! passes, unless `WRIT_REQUIRE_PKCS11=1`, which CI sets, makes its absence a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::PathBuf;
use std::process::Command;

use writ_jose::{Algorithm, SigningKey};
use writ_keystore::pkcs11::{Pkcs11Error, Token, open_or_generate};
use writ_token::{ProofCheck, ProofClaims, UnixTime, check_proof};
use zeroize::Zeroizing;

const PIN: &str = "7351";
const SO_PIN: &str = "1234";

fn module() -> Option<PathBuf> {
    let module = std::env::var_os("WRIT_TEST_PKCS11_MODULE").map_or_else(
        || PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
        PathBuf::from,
    );
    if module.exists() {
        return Some(module);
    }
    assert!(
        std::env::var_os("WRIT_REQUIRE_PKCS11").is_none(),
        "WRIT_REQUIRE_PKCS11 is set but there is no PKCS#11 module at {}",
        module.display()
    );
    eprintln!("skipped: no SoftHSM2 at {}", module.display());
    None
}

fn softhsm(args: &[&str]) {
    let output = Command::new("softhsm2-util").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "softhsm2-util {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh token, deleted again when dropped.
struct FreshToken(String);

impl Drop for FreshToken {
    fn drop(&mut self) {
        drop(
            Command::new("softhsm2-util")
                .args(["--delete-token", "--token", &self.0])
                .output(),
        );
    }
}

#[test]
fn keys_are_generated_on_the_token_found_again_and_never_leave_it() {
    let Some(module) = module() else { return };
    let label = format!(
        "writ-test-{}",
        writ_jose::base64url_encode(writ_jose::random_bytes::<6>().unwrap())
    );
    softhsm(&[
        "--init-token",
        "--free",
        "--label",
        &label,
        "--so-pin",
        SO_PIN,
        "--pin",
        PIN,
    ]);
    let _cleanup = FreshToken(label.clone());
    let token = Token {
        module: module.clone(),
        label: label.clone(),
        pin: Zeroizing::new(PIN.to_owned()),
    };

    for (name, algorithm) in [
        ("agent-ed25519", Algorithm::EdDSA),
        ("agent-p256", Algorithm::ES256),
    ] {
        let (key, created) = open_or_generate(&token, name, algorithm).unwrap();
        assert!(created, "{name} is new");
        assert_eq!(key.algorithm(), algorithm);
        assert!(key.expose_secret_pkcs8().is_none(), "no private bytes here");
        // A DPoP proof signed on the token passes every RFC 9449 check for its key.
        let url = "https://issuer.example/token";
        let now = UnixTime::from_secs(1_767_225_600);
        let proof = ProofClaims::new("POST", url, now, "proof-1".to_owned())
            .sign(&key)
            .unwrap();
        let check = ProofCheck {
            method: "POST",
            uri: url,
            now,
            max_age: 60,
            max_skew: 5,
            access_token: None,
            nonce: None,
        };
        let checked = check_proof(&proof, &check).unwrap();
        assert_eq!(checked.jkt(), key.public_key().thumbprint());

        // Found again, not made anew: the same public key.
        let (again, created) = open_or_generate(&token, name, algorithm).unwrap();
        assert!(!created);
        assert_eq!(again.public_key(), key.public_key());

        // It cannot be written to a key file.
        let dir = tempfile::tempdir().unwrap();
        let error = writ_keystore::create(&dir.path().join("agent.key"), &key).unwrap_err();
        assert!(error.to_string().contains("hardware token"), "{error}");
    }

    // A key imported from a file was outside the token once: refused.
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.key");
    writ_keystore::create(&outside, &SigningKey::generate(Algorithm::ES256).unwrap()).unwrap();
    softhsm(&[
        "--import",
        outside.to_str().unwrap(),
        "--token",
        &label,
        "--label",
        "imported",
        "--id",
        "0a",
        "--pin",
        PIN,
    ]);
    let error = open_or_generate(&token, "imported", Algorithm::ES256).unwrap_err();
    assert!(
        matches!(&error, Pkcs11Error::Unusable { reason, .. } if reason.contains("was imported")),
        "{error}"
    );

    // A wrong PIN and a missing token are clear errors.
    let wrong = Token {
        pin: Zeroizing::new("0000".to_owned()),
        ..token
    };
    let error = open_or_generate(&wrong, "agent-ed25519", Algorithm::EdDSA).unwrap_err();
    assert!(matches!(error, Pkcs11Error::Pin(_)), "{error}");
    let missing = Token {
        module,
        label: "no-such-token".to_owned(),
        pin: Zeroizing::new(PIN.to_owned()),
    };
    let error = open_or_generate(&missing, "agent", Algorithm::EdDSA).unwrap_err();
    assert!(matches!(error, Pkcs11Error::NoToken { .. }), "{error}");
}
