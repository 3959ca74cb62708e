//! Interoperability driver for independent JOSE implementations (see `interop/`).
//!
//! - `emit`: prints, as JSON, a mandate and a writ signed by the fixture issuer, the issuer's
//!   JWKS, and DPoP proofs bound to the writ made with an Ed25519 and an ES256 agent key,
//!   with the thumbprints Writ computes for each key.
//! - `verify-proof`: reads `{"proof", "method", "uri", "access_token", "now"}` on standard
//!   input, verifies the proof with Writ, and prints `{"jkt": ...}` or exits 1 with the
//!   refusal's code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test driver"
)]

#[path = "../fixtures/mod.rs"]
mod fixtures;

use std::io::Read as _;

use fixtures::*;
use serde_json::{Value, json};
use writ_jose::{Algorithm, SigningKey};
use writ_token::*;

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("emit") => emit(),
        Some("verify-proof") => verify(),
        _ => {
            eprintln!("usage: interop emit | interop verify-proof < request.json");
            std::process::exit(2);
        }
    }
}

fn emit() {
    let issuer_key = issuer_key();
    let writ = sign(&writ_claims(), &issuer_key, ISSUER_KID).unwrap();
    let mandate = sign(&mandate_claims(), &issuer_key, ISSUER_KID).unwrap();
    let es256 = SigningKey::generate(Algorithm::ES256).unwrap();
    let proof = |key: &SigningKey, jti: &str| {
        json!({
            "proof": ProofClaims::new("POST", GATEWAY, NOW, jti.into())
                .with_access_token(&writ)
                .sign(key)
                .unwrap(),
            "jkt": key.public_key().thumbprint().as_str(),
            "jwk": key.public_key().to_jwk(),
        })
    };
    let output = json!({
        "issuer_jwks": serde_json::from_str::<Value>(&key_set().to_jwks_json()).unwrap(),
        "issuer_kid": ISSUER_KID,
        "writ": writ,
        "mandate": mandate,
        "agent_jkt": agent_key().public_key().thumbprint().as_str(),
        "method": "POST",
        "uri": GATEWAY,
        "now": NOW.as_secs(),
        "proofs": {
            "EdDSA": proof(&agent_key(), "interop-eddsa"),
            "ES256": proof(&es256, "interop-es256"),
        },
    });
    println!("{output}");
}

fn verify() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let request: Value = serde_json::from_str(&input).unwrap();
    let text = |name: &str| request[name].as_str().unwrap_or_default().to_owned();
    let (method, uri, token) = (text("method"), text("uri"), text("access_token"));
    let check = ProofCheck {
        method: &method,
        uri: &uri,
        now: UnixTime::from_secs(request["now"].as_u64().unwrap()),
        max_age: 60,
        max_skew: 5,
        access_token: Some(&token),
        nonce: None,
    };
    match verify_proof(&text("proof"), &check, &MemoryReplayCache::new(8)) {
        Ok(proof) => println!("{}", json!({"jkt": proof.jkt().as_str()})),
        Err(error) => {
            println!("{}", json!({"error": error.code()}));
            std::process::exit(1);
        }
    }
}
