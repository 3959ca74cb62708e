//! JWKs and JWK sets: Writ's own strict key sets, identity providers' lenient ones, single
//! JWKs as registration and DPoP carry them, raw public keys, and thumbprints.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_jose::{IdpKeySet, Jwk, KeySet, PublicKey, Thumbprint, from_slice_strict};

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::from_jwks_json(data) {
        // What Writ publishes, it reads back as the same set.
        let again = KeySet::from_jwks_json(set.to_jwks_json().as_bytes()).unwrap();
        assert_eq!(again, set);
    }
    let _ = IdpKeySet::from_jwks_json(data);
    if let Ok(jwk) = from_slice_strict::<Jwk>(data)
        && let Ok(key) = jwk.to_public_key()
    {
        // A key's JWK names the same key, with the same thumbprint.
        let again = key.to_jwk().to_public_key().unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
    }
    let _ = PublicKey::ed25519(data);
    if data.len() == 64 {
        let _ = PublicKey::p256(&data[..32], &data[32..]);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Thumbprint::parse(text);
    }
});
