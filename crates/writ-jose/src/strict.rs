//! Strict checks of public keys and signatures, made before aws-lc-rs does the arithmetic.
//!
//! aws-lc-rs verifies the signature equation; it does not refuse every key or signature that
//! satisfies it without anyone holding a private key. These checks close that gap, for
//! Ed25519 the way `verify_strict` does in ed25519-dalek:
//!
//! - **Small-order Ed25519 points.** RFC 8032 §5.1.7 checks `[S]B = R + [k]A`. When `A` has
//!   small order (the identity above all), `[k]A` is one of eight points whatever the message,
//!   so `R = B, S = 1` (and many others) "sign" every message under the identity key with no
//!   private key at all. Such keys are refused wherever a key is made, and a signature whose
//!   `R` has small order is refused too.
//! - **Non-canonical Ed25519 encodings.** RFC 8032 §5.1.3 step 1 refuses `y >= p`; step 4
//!   refuses `x = 0` with the sign bit set. Two encodings of one key would give one key two
//!   JWK thumbprints, and so two identities.
//! - **Non-canonical `S`.** RFC 8032 §5.1.7 step 1 requires `0 <= S < L`; `S + L` would be a
//!   second valid signature for the same message (malleability).
//! - **P-256.** Coordinates must be field elements (below `p`), `r` and `s` in `[1, n - 1]`
//!   (SEC 1 §4.1.4 step 1). aws-lc-rs checks the same, and that the point is on the curve and
//!   not at infinity; checking here as well keeps the rule in one readable place.
//!
//! Why a table and not curve25519-dalek: the points of small order are exactly the eight of
//! the torsion subgroup `E[8]`, which share five `y` coordinates (a point and its negation
//! differ only in the sign of `x`). Once `y < p` is checked, "small order" is "`y` is one of
//! five constants", a comparison that needs no curve arithmetic, where the crate would be a
//! second Ed25519 implementation in the build for a lookup.

/// `p = 2^255 - 19`, little-endian.
const ED25519_P: [u8; 32] = [
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
];

/// `L = 2^252 + 27742317777372353535851937790883648493`, the order of the base point,
/// little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// The `y` coordinates (sign bit clear, little-endian) of the eight points of order dividing
/// 8: the identity (`y = 1`), the point of order 2 (`y = -1`), the two of order 4 (`y = 0`)
/// and the four of order 8 (`y = ±y8`). See "Taming the many EdDSAs" (Chalkias, Garillot,
/// Nikolaenko, 2020), table 6, and ed25519-dalek's `EIGHT_TORSION`.
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 5] = [
    // 1: the identity.
    [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ],
    // p - 1 = -1: order 2.
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // 0: order 4.
    [0; 32],
    // y8: order 8.
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // p - y8 = -y8: order 8.
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// The P-256 field prime `p`, big-endian.
const P256_P: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

/// The P-256 group order `n`, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Why an Ed25519 point encoding is refused.
pub(crate) const NON_CANONICAL: &str =
    "a non-canonical point encoding (RFC 8032 §5.1.3: y must be below p)";
/// Why an Ed25519 point is refused.
pub(crate) const SMALL_ORDER: &str =
    "a point of small order, under which signatures can be made without any private key";

/// Checks a 32-byte Ed25519 point encoding: canonical (RFC 8032 §5.1.3) and not of small
/// order. Whether the point is on the curve at all is left to aws-lc-rs.
pub(crate) fn ed25519_point(encoded: &[u8; 32]) -> Result<(), &'static str> {
    let mut y = *encoded;
    if let Some(last) = y.last_mut() {
        *last &= 0x7f;
    }
    // §5.1.3 step 1: y < p.
    if !less_le(&y, &ED25519_P) {
        return Err(NON_CANONICAL);
    }
    // Either sign of x: a point and its negation have the same order. (The identity and
    // (0, -1) have x = 0, so with the sign bit set they are not even valid encodings,
    // §5.1.3 step 4; they are refused here all the same.)
    if ED25519_SMALL_ORDER_Y.contains(&y) {
        return Err(SMALL_ORDER);
    }
    Ok(())
}

/// Checks the form of a 64-byte Ed25519 signature `R || S`: `R` a canonical point not of
/// small order, `S` below `L` (RFC 8032 §5.1.7 step 1).
pub(crate) fn ed25519_signature(signature: &[u8]) -> bool {
    let (Some(r), Some(s)) = (
        signature
            .get(..32)
            .and_then(|r| <&[u8; 32]>::try_from(r).ok()),
        signature
            .get(32..)
            .and_then(|s| <&[u8; 32]>::try_from(s).ok()),
    ) else {
        return false;
    };
    ed25519_point(r).is_ok() && less_le(s, &ED25519_L)
}

/// Whether both P-256 coordinates are field elements (below `p`).
pub(crate) fn p256_coordinates(x: &[u8], y: &[u8]) -> bool {
    let field_element = |c: &[u8]| <&[u8; 32]>::try_from(c).is_ok_and(|c| c < &P256_P);
    field_element(x) && field_element(y)
}

/// Checks the form of a 64-byte ES256 signature `r || s` (RFC 7518 §3.4): both in
/// `[1, n - 1]` (SEC 1 §4.1.4 step 1).
pub(crate) fn p256_signature(signature: &[u8]) -> bool {
    let in_range =
        |half: &[u8]| <&[u8; 32]>::try_from(half).is_ok_and(|v| v < &P256_N && v != &[0; 32]);
    signature.len() == 64
        && signature.get(..32).is_some_and(in_range)
        && signature.get(32..).is_some_and(in_range)
}

/// `a < b` for 256-bit little-endian numbers.
fn less_le(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().rev().lt(b.iter().rev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_are_what_they_claim() {
        // -y8 + y8 = p.
        let [_, _, _, y8, minus_y8] = ED25519_SMALL_ORDER_Y;
        let mut carry = 0_u16;
        let mut sum = [0_u8; 32];
        for (i, out) in sum.iter_mut().enumerate() {
            let total = u16::from(y8[i]) + u16::from(minus_y8[i]) + carry;
            *out = total.to_le_bytes()[0];
            carry = total >> 8;
        }
        assert_eq!(sum, ED25519_P);
        assert!(less_le(&ED25519_L, &ED25519_P));
        assert!(!less_le(&ED25519_P, &ED25519_P));
        assert!(P256_N < P256_P);
    }

    #[test]
    fn comparisons_read_the_most_significant_byte_first() {
        let mut small = [0xff_u8; 32];
        small[31] = 0;
        let mut big = [0_u8; 32];
        big[31] = 1;
        assert!(less_le(&small, &big));
        assert!(!less_le(&big, &small));
    }
}
