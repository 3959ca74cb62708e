//! DPoP proofs (RFC 9449 §4.3), verified in full with a fixed clock.
//!
//! The first byte picks the mode. Bit 0 clear: the rest is a proof. Bit 0 set: the rest is
//! a claims payload that a fixed key signs with its `jwk` header, so fuzzed claims reach the
//! checks after the signature. Bit 1 set: an access token is presented with the proof (the
//! golden vectors' writ), so `ath` is checked.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use writ_jose::{Jwk, SigningKey, sha256};
use writ_token::{DPOP_TYP, MemoryReplayCache, ProofCheck, UnixTime, verify_proof};

const GOLDEN: &str = include_str!("../../crates/writ-token/tests/vectors/tokens.json");
const URI: &str = "https://gateway.writ.example/mcp/files";
const NOW: u64 = 1_767_225_600;

struct Fixture {
    key: SigningKey,
    jwk: Jwk,
    access_token: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = SigningKey::ed25519_from_seed(&sha256(b"writ golden agent")).unwrap();
    let jwk = key.public_key().to_jwk();
    let golden: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
    let access_token = golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["name"] == "dpop_proof")
        .and_then(|case| case["access_token"].as_str())
        .unwrap()
        .to_owned();
    Fixture {
        key,
        jwk,
        access_token,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = &*FIXTURE;
    let proof = if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(proof) => proof.to_owned(),
            Err(_) => return,
        }
    } else {
        match f.key.sign_compact(DPOP_TYP, None, Some(&f.jwk), rest) {
            Ok(proof) => proof,
            Err(_) => return,
        }
    };
    let check = ProofCheck {
        method: "POST",
        uri: URI,
        now: UnixTime::from_secs(NOW),
        max_age: 60,
        max_skew: 5,
        access_token: (mode & 2 != 0).then_some(f.access_token.as_str()),
        nonce: None,
    };
    let cache = MemoryReplayCache::new(8);
    if let Ok(verified) = verify_proof(&proof, &check, &cache) {
        // A proof verifies once: the same proof again is a replay.
        let _ = verified.jkt();
        assert!(verify_proof(&proof, &check, &cache).is_err());
    }
});
