//! Signing and verification costs on the hot paths of the issuer and the gateway.
//!
//! Run with `cargo bench -p writ-token --bench tokens`; results and the machine they were
//! measured on are in `bench/README.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

#[path = "../fixtures/mod.rs"]
mod fixtures;

use std::sync::atomic::{AtomicU64, Ordering};

use divan::{Bencher, black_box};
use fixtures::*;
use writ_jose::{Algorithm, KeySet, SigningKey};
use writ_token::*;

fn main() {
    divan::main();
}

/// Baseline: one raw Ed25519 signature check, the floor under every verification below.
#[divan::bench]
fn baseline_ed25519_verify(bencher: Bencher) {
    let key = issuer_key();
    let message = vec![0x5a_u8; 600];
    let signature = key.sign(&message).unwrap();
    bencher.bench(|| {
        key.public_key()
            .verify(black_box(&message), &signature)
            .unwrap()
    });
}

/// The issuer's writ signature: claims to compact JWS.
#[divan::bench(args = [Algorithm::EdDSA, Algorithm::ES256])]
fn writ_sign(bencher: Bencher, algorithm: Algorithm) {
    let key = match algorithm {
        Algorithm::EdDSA => issuer_key(),
        Algorithm::ES256 => SigningKey::generate(Algorithm::ES256).unwrap(),
    };
    let claims = writ_claims();
    bencher.bench(|| sign(black_box(&claims), &key, ISSUER_KID).unwrap());
}

fn signed_writ(algorithm: Algorithm) -> (String, KeySet) {
    let key = match algorithm {
        Algorithm::EdDSA => issuer_key(),
        Algorithm::ES256 => SigningKey::generate(Algorithm::ES256).unwrap(),
    };
    let mut keys = KeySet::new();
    keys.insert(ISSUER_KID, key.public_key().clone()).unwrap();
    (sign(&writ_claims(), &key, ISSUER_KID).unwrap(), keys)
}

/// The gateway's writ check: parse, signature, claims, issuer, audience, time.
#[divan::bench(args = [Algorithm::EdDSA, Algorithm::ES256])]
fn writ_verify(bencher: Bencher, algorithm: Algorithm) {
    let (writ, keys) = signed_writ(algorithm);
    let (issuer, gateway) = (issuer(), gateway());
    let expect = expectations(&gateway, &issuer);
    bencher.bench(|| {
        UnverifiedWrit::parse(black_box(&writ))
            .unwrap()
            .verify(&keys, &expect)
            .unwrap()
    });
}

fn agent(algorithm: Algorithm) -> SigningKey {
    match algorithm {
        Algorithm::EdDSA => agent_key(),
        Algorithm::ES256 => SigningKey::generate(Algorithm::ES256).unwrap(),
    }
}

/// The agent side: one DPoP proof bound to a writ.
#[divan::bench(args = [Algorithm::EdDSA, Algorithm::ES256])]
fn dpop_sign(bencher: Bencher, algorithm: Algorithm) {
    let key = agent(algorithm);
    let (writ, _) = signed_writ(Algorithm::EdDSA);
    bencher.bench(|| {
        ProofClaims::new("POST", GATEWAY, NOW, "proof-1".into())
            .with_access_token(black_box(&writ))
            .sign(&key)
            .unwrap()
    });
}

/// Every RFC 9449 §4.3 check of a proof, with a replay cache that never refuses.
#[divan::bench(args = [Algorithm::EdDSA, Algorithm::ES256])]
fn dpop_verify(bencher: Bencher, algorithm: Algorithm) {
    let key = agent(algorithm);
    let (writ, _) = signed_writ(Algorithm::EdDSA);
    let proof = ProofClaims::new("POST", GATEWAY, NOW, "proof-1".into())
        .with_access_token(&writ)
        .sign(&key)
        .unwrap();
    let check = proof_check(Some(&writ));
    bencher.bench(|| verify_proof(black_box(&proof), &check, &NoReplay).unwrap());
}

/// The gateway's full token work per request (Ed25519): verify the writ, verify the proof
/// bound to it, check the binding, and record both ids in a real replay cache.
#[divan::bench]
fn gateway_writ_and_proof(bencher: Bencher) {
    let (writ, keys) = signed_writ(Algorithm::EdDSA);
    let key = agent_key();
    let proof = ProofClaims::new("POST", GATEWAY, NOW, "proof-1".into())
        .with_access_token(&writ)
        .sign(&key)
        .unwrap();
    let (issuer, gateway) = (issuer(), gateway());
    let expect = expectations(&gateway, &issuer);
    let check = proof_check(Some(&writ));
    let cache = MemoryReplayCache::new(1 << 20);
    let counter = AtomicU64::new(0);
    bencher.bench(|| {
        let verified = UnverifiedWrit::parse(black_box(&writ))
            .unwrap()
            .verify(&keys, &expect)
            .unwrap();
        let proof = verify_proof(black_box(&proof), &check, &NoReplay).unwrap();
        proof.ensure_bound_to(&verified.claims().cnf.jkt).unwrap();
        // Unique ids, as real traffic has, so the cache does its real work.
        let n = counter.fetch_add(1, Ordering::Relaxed);
        cache
            .first_use(&format!("writ:{n}"), NOW.plus(60), NOW)
            .unwrap();
        cache
            .first_use(&format!("dpop:{n}"), NOW.plus(60), NOW)
            .unwrap();
    });
}
