//! Test vectors published in RFC 8037 (Ed25519 JOSE) and RFC 9449 (DPoP).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use writ_jose::{
    Algorithm, Jwk, JwsError, SigningKey, UnverifiedJws, base64url_decode, base64url_encode,
    from_slice_strict,
};

/// RFC 8037 §A.1: the Ed25519 private key `d` (the seed) and public key `x`.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// RFC 8037 §A.3: the RFC 7638 thumbprint of that key.
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
/// RFC 8037 §A.4: `{"alg":"EdDSA"}` over "Example of Ed25519 signing".
const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/// RFC 9449 §4.1 Figure 2: a DPoP proof made with an ES256 key.
const RFC9449_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
/// RFC 9449 §6.1: `cnf.jkt`, the thumbprint of the key in the proof above.
const RFC9449_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

#[test]
fn rfc8037_a1_public_key_derives_from_seed() {
    let key = SigningKey::ed25519_from_seed(&base64url_decode(RFC8037_D).unwrap()).unwrap();
    let jwk = serde_json::to_value(key.public_key().to_jwk()).unwrap();
    assert_eq!(jwk["x"], RFC8037_X);
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
}

#[test]
fn rfc8037_a3_thumbprint() {
    let jwk: Jwk = from_slice_strict(
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        jwk.to_public_key().unwrap().thumbprint().as_str(),
        RFC8037_THUMBPRINT
    );
}

#[test]
fn rfc8037_a4_signature_is_reproduced_byte_for_byte() {
    let key = SigningKey::ed25519_from_seed(&base64url_decode(RFC8037_D).unwrap()).unwrap();
    let (input, signature) = RFC8037_JWS.rsplit_once('.').unwrap();
    assert_eq!(
        base64url_encode(key.sign(input.as_bytes()).unwrap()),
        signature
    );
}

#[test]
fn rfc8037_a5_verifies_and_untyped_tokens_are_refused_where_a_type_is_expected() {
    let jwk: Jwk = from_slice_strict(
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#).as_bytes(),
    )
    .unwrap();
    let key = jwk.to_public_key().unwrap();
    let jws = UnverifiedJws::parse(RFC8037_JWS, 8192).unwrap();
    assert_eq!(jws.header().alg(), "EdDSA");
    let (input, signature) = RFC8037_JWS.rsplit_once('.').unwrap();
    key.verify(input.as_bytes(), &base64url_decode(signature).unwrap())
        .unwrap();
    assert_eq!(jws.unverified_payload(), b"Example of Ed25519 signing");
    // Writ always expects an explicit `typ` (RFC 8725 §3.11); the RFC example has none.
    assert!(matches!(
        jws.verify_with_key(&key, "writ+jwt"),
        Err(JwsError::WrongType { .. })
    ));
}

#[test]
fn rfc9449_figure2_proof_verifies_with_its_embedded_key() {
    let jws = UnverifiedJws::parse(RFC9449_PROOF, 8192).unwrap();
    let key = jws.embedded_jwk().unwrap().to_public_key().unwrap();
    assert_eq!(key.algorithm(), Algorithm::ES256);
    let payload = jws.verify_with_key(&key, "dpop+jwt").unwrap();
    assert_eq!(
        payload,
        br#"{"jti":"-BwC3ESc6acc2lTc","htm":"POST","htu":"https://server.example.com/token","iat":1562262616}"#
    );
}

#[test]
fn rfc9449_section_6_1_thumbprint_of_the_proof_key() {
    let jws = UnverifiedJws::parse(RFC9449_PROOF, 8192).unwrap();
    let key = jws.embedded_jwk().unwrap().to_public_key().unwrap();
    assert_eq!(key.thumbprint().as_str(), RFC9449_JKT);
}
