//! Canonical base64url without padding (RFC 7515 §2).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A base64url string could not be decoded.
///
/// The caller's input is at fault: it is not canonical unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64url: {0}")]
pub struct Base64Error(String);

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes canonical base64url without padding.
///
/// Padding, characters outside the URL-safe alphabet and non-zero trailing bits are refused,
/// so every byte string has exactly one accepted encoding.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, Base64Error> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|error| Base64Error(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(decode(encode(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn refuses_padding_and_non_canonical_trailing_bits() {
        assert_eq!(decode("QQ").unwrap(), b"A");
        assert!(decode("QQ==").is_err(), "padding");
        assert!(
            decode("QR").is_err(),
            "non-zero trailing bits decode to the same byte"
        );
        assert!(decode("Q+").is_err(), "standard alphabet");
        assert!(decode("Q").is_err(), "impossible length");
    }
}
