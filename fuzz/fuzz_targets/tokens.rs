//! JWS compact serialization and JWT claims: mandates and writs, parsed and verified.
//!
//! The first byte picks the mode. Even: the rest is a token, verified against the golden
//! vectors' issuer key set. Odd: the rest is a claims payload that the golden issuer key
//! signs as a mandate and as a writ, so fuzzed claims get past the signature and reach the
//! claim checks.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use writ_jose::{KeySet, SigningKey, UnverifiedJws, sha256};
use writ_token::{
    Audience, Expectations, MandateClaims, TokenClaims, UnixTime, UnverifiedMandate,
    UnverifiedWrit, WritClaims,
};

const ISSUER: &str = "https://issuer.writ.example";
const GATEWAY: &str = "https://gateway.writ.example/mcp/files";
const KID: &str = "issuer-2026-01";
/// The golden vectors' clock: 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

struct Fixture {
    key: SigningKey,
    keys: KeySet,
    issuer: Audience,
    gateway: Audience,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = SigningKey::ed25519_from_seed(&sha256(b"writ golden issuer")).unwrap();
    let mut keys = KeySet::new();
    keys.insert(KID, key.public_key().clone()).unwrap();
    Fixture {
        key,
        keys,
        issuer: Audience::new(ISSUER).unwrap(),
        gateway: Audience::new(GATEWAY).unwrap(),
    }
});

fn verify_all(token: &str) {
    let f = &*FIXTURE;
    let as_mandate = Expectations {
        issuer: &f.issuer,
        audience: &f.issuer,
        now: UnixTime::from_secs(NOW),
        skew: 30,
    };
    let as_writ = Expectations {
        audience: &f.gateway,
        ..as_mandate
    };
    if let Ok(jws) = UnverifiedJws::parse(token, 16 * 1024) {
        let _ = jws.header().kid();
        let _ = jws.embedded_jwk().map(|jwk| jwk.to_public_key());
        let _ = jws.verify_with_key_set(&f.keys, MandateClaims::TYP);
    }
    if let Ok(mandate) = UnverifiedMandate::parse(token) {
        let _ = mandate.unverified_claims();
        if let Ok(verified) = mandate.verify(&f.keys, &as_mandate) {
            // Whatever verifies must still pass its own structural checks.
            assert!(verified.claims().check().is_ok());
        }
    }
    if let Ok(writ) = UnverifiedWrit::parse(token) {
        let _ = writ.unverified_claims();
        if let Ok(verified) = writ.verify(&f.keys, &as_writ) {
            assert!(verified.claims().check().is_ok());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            verify_all(token);
        }
        return;
    }
    let f = &*FIXTURE;
    for typ in [MandateClaims::TYP, WritClaims::TYP] {
        if let Ok(token) = f.key.sign_compact(typ, Some(KID), None, rest) {
            verify_all(&token);
        }
    }
});
