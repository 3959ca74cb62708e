//! Weak public keys and malleable signatures are refused wherever a key is read.
//!
//! An Ed25519 public key of small order (the identity above all) makes a "signature" that
//! verifies without any private key: with `A` the identity, `R = B` and `S = 1` satisfy
//! `[S]B = R + [k]A` for every message. RFC 8032 §5.1.7 leaves such keys to the verifier.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use writ_jose::{Algorithm, Jwk, JwkError, PublicKey, SigningKey, UnverifiedJws};

fn hex32(text: &str) -> [u8; 32] {
    let mut out = [0_u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The eight points of the Ed25519 torsion subgroup, canonically encoded ("Taming the many
/// EdDSAs", Chalkias, Garillot and Nikolaenko, 2020, table 6).
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
];

/// The base point `B`, encoded.
const BASE_POINT: &str = "5866666666666666666666666666666666666666666666666666666666666666";

/// `p + k` for `k` below 19, the sign bit set or not: the non-canonical encodings of
/// `y = k` (RFC 8032 §5.1.3 step 1 refuses `y >= p`).
fn non_canonical() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for k in 0..19_u8 {
        for sign in [0, 0x80] {
            let mut bytes = [0xff_u8; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f | sign;
            out.push(bytes);
        }
    }
    // `x = 0` with the sign bit set (§5.1.3 step 4): the identity and `(0, -1)`.
    out.push(hex32(
        "0100000000000000000000000000000000000000000000000000000000000080",
    ));
    out.push(hex32(
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ));
    out
}

fn okp_jwk(bytes: &[u8]) -> Jwk {
    serde_json::from_value(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": writ_jose::base64url_encode(bytes),
    }))
    .unwrap()
}

#[test]
fn the_identity_key_is_refused_and_its_keyless_proof_never_verifies() {
    let identity = hex32(SMALL_ORDER[0]);
    // R = B, S = 1: the equation holds for every message under the identity key.
    let mut forged = hex32(BASE_POINT).to_vec();
    let mut one = [0_u8; 32];
    one[0] = 1;
    forged.extend_from_slice(&one);
    let key = PublicKey::ed25519(&identity);
    assert!(
        !key.as_ref()
            .is_ok_and(|key| key.verify(b"any message", &forged).is_ok()),
        "a signature made with no private key verified"
    );
    let error = okp_jwk(&identity).to_public_key().unwrap_err();
    assert!(matches!(error, JwkError::Invalid(_)), "{error}");
    assert!(error.to_string().contains("small order"), "{error}");
}

#[test]
fn every_small_order_key_is_refused_as_raw_bytes_and_as_a_jwk() {
    for text in SMALL_ORDER {
        let bytes = hex32(text);
        assert!(PublicKey::ed25519(&bytes).is_err(), "{text}");
        assert!(okp_jwk(&bytes).to_public_key().is_err(), "{text}");
    }
}

#[test]
fn non_canonical_point_encodings_are_refused() {
    for bytes in non_canonical() {
        assert!(PublicKey::ed25519(&bytes).is_err(), "{bytes:02x?}");
        assert!(okp_jwk(&bytes).to_public_key().is_err(), "{bytes:02x?}");
    }
}

#[test]
fn a_dpop_style_jws_with_a_small_order_embedded_key_does_not_verify() {
    let identity = hex32(SMALL_ORDER[0]);
    let header = serde_json::json!({
        "typ": "dpop+jwt", "alg": "EdDSA",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": writ_jose::base64url_encode(identity)},
    });
    let input = format!(
        "{}.{}",
        writ_jose::base64url_encode(header.to_string()),
        writ_jose::base64url_encode("{}")
    );
    let mut signature = hex32(BASE_POINT).to_vec();
    signature.push(1);
    signature.extend_from_slice(&[0; 31]);
    let token = format!("{input}.{}", writ_jose::base64url_encode(&signature));
    let jws = UnverifiedJws::parse(&token, 8192).unwrap();
    assert!(jws.embedded_jwk().unwrap().to_public_key().is_err());
}

#[test]
fn ed25519_signatures_with_a_non_canonical_s_or_a_small_order_r_are_refused() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let signature = key.sign(b"m").unwrap();
    key.public_key().verify(b"m", &signature).unwrap();
    // S + L: the same scalar, not reduced (RFC 8032 §5.1.7 step 1).
    let l = hex32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
    let mut malleated = signature.clone();
    let mut carry = 0_u16;
    for i in 0..32 {
        let sum = u16::from(malleated[32 + i]) + u16::from(l[i]) + carry;
        malleated[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert!(key.public_key().verify(b"m", &malleated).is_err());
    for r in SMALL_ORDER {
        let mut forged = hex32(r).to_vec();
        forged.extend_from_slice(&[0; 32]);
        assert!(key.public_key().verify(b"m", &forged).is_err(), "{r}");
    }
}

/// The P-256 group order `n` and field prime `p`, big-endian.
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const P256_P: &str = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff";

#[test]
fn p256_points_off_the_curve_at_infinity_or_out_of_range_are_refused() {
    assert!(PublicKey::p256(&[0; 32], &[0; 32]).is_err(), "infinity");
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let point = key.public_key().as_bytes();
    let (x, y) = (&point[1..33], &point[33..65]);
    assert!(PublicKey::p256(x, y).is_ok());
    let mut y_off = y.to_vec();
    y_off[31] ^= 1;
    assert!(PublicKey::p256(x, &y_off).is_err(), "off the curve");
    assert!(PublicKey::p256(&hex32(P256_P), y).is_err(), "x = p");
    assert!(
        PublicKey::p256(x, &[0xff; 32]).is_err(),
        "y beyond the field"
    );
}

#[test]
fn p256_signatures_with_r_or_s_zero_or_not_below_n_are_refused() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let signature = key.sign(b"m").unwrap();
    key.public_key().verify(b"m", &signature).unwrap();
    let n = hex32(P256_N);
    for (r, s) in [
        ([0; 32], signature[32..].to_vec()),
        (signature[..32].try_into().unwrap(), vec![0; 32]),
        (n, signature[32..].to_vec()),
        (signature[..32].try_into().unwrap(), n.to_vec()),
        ([0xff; 32], signature[32..].to_vec()),
    ] {
        let mut forged = r.to_vec();
        forged.extend_from_slice(&s);
        assert!(key.public_key().verify(b"m", &forged).is_err());
    }
}
