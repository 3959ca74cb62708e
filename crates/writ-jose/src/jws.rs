//! Strict JWS compact serialization (RFC 7515 §7.1).

use serde::{Deserialize, Deserializer, Serialize};

use crate::jwk::{Jwk, KeySet};
use crate::key::{Algorithm, KeyError, PublicKey, SigningKey};

/// A JWS could not be parsed or did not verify.
///
/// Every variant is the token's fault except [`JwsError::UnknownKey`], which may also mean the
/// verifier's key set is out of date.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    /// The token is longer than the verifier allows.
    #[error("token is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The token's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not three dot-separated base64url parts.
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    /// The protected header is not valid JSON of the expected shape.
    #[error("invalid JWS header: {0}")]
    Header(#[source] crate::json::JsonError),
    /// The header has `crit` or `b64`, extensions Writ does not implement.
    #[error("JWS header parameter `{0}` is not supported")]
    UnsupportedHeader(&'static str),
    /// The header's `alg` is not one Writ supports (this includes `none`).
    #[error("algorithm `{0}` is not accepted")]
    UnsupportedAlgorithm(String),
    /// The header's `alg` differs from the verifying key's algorithm.
    #[error("header algorithm `{header}` does not match the key's algorithm `{key}`")]
    AlgorithmMismatch {
        /// What the header says.
        header: String,
        /// What the key is.
        key: Algorithm,
    },
    /// The header's `typ` is missing or not the one expected.
    #[error("token type `{found}` is not the expected `{expected}`")]
    WrongType {
        /// The expected `typ`.
        expected: String,
        /// The `typ` found (empty when absent).
        found: String,
    },
    /// The header has no `kid` but the verifier resolves keys by `kid`.
    #[error("token header has no `kid`")]
    MissingKid,
    /// The `kid` names no key in the verifier's key set.
    #[error("no trusted key has `kid` `{0}`")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// The protected header of a JWS, as far as Writ reads it.
///
/// Other members are ignored as RFC 7515 §4 requires; in particular `jku`, `x5u` and `x5c`
/// are never used to find a key.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    jwk: Option<Jwk>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    b64: bool,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl Header {
    /// The `alg` member as written (not yet trusted).
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// The `typ` member, if present.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The `kid` member, if present.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// The header written when signing, in a fixed member order.
#[derive(Serialize)]
struct OutHeader<'a> {
    alg: &'static str,
    typ: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwk: Option<&'a Jwk>,
}

impl SigningKey {
    /// Signs `payload` as a JWS compact serialization with header `alg` (from this key),
    /// `typ`, and optionally `kid` and `jwk` (the public key, for DPoP proofs only).
    pub fn sign_compact(
        &self,
        typ: &str,
        kid: Option<&str>,
        jwk: Option<&Jwk>,
        payload: &[u8],
    ) -> Result<String, KeyError> {
        let header = serde_json::to_vec(&OutHeader {
            alg: self.algorithm().as_str(),
            typ,
            kid,
            jwk,
        })
        .map_err(|_| KeyError::Crypto("header serialization failed"))?;
        let mut token = crate::b64::encode(header);
        token.push('.');
        token.push_str(&crate::b64::encode(payload));
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&crate::b64::encode(signature));
        Ok(token)
    }
}

/// A parsed JWS whose signature has not been checked. Nothing in it is to be trusted.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    signing_input: &'a str,
    header: Header,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> UnverifiedJws<'a> {
    /// Parses a compact JWS of at most `max_len` bytes: three canonical base64url parts, a
    /// header without duplicate members, `crit` or `b64`.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, JwsError> {
        if token.len() > max_len {
            return Err(JwsError::TooLarge {
                len: token.len(),
                max: max_len,
            });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed("expected three dot-separated parts"));
        };
        let signing_input = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(JwsError::Malformed("expected three dot-separated parts"))?;
        let header_json = crate::b64::decode(header_b64)
            .map_err(|_| JwsError::Malformed("header is not base64url"))?;
        let header: Header =
            crate::json::from_slice_strict(&header_json).map_err(JwsError::Header)?;
        if header.crit {
            return Err(JwsError::UnsupportedHeader("crit"));
        }
        if header.b64 {
            return Err(JwsError::UnsupportedHeader("b64"));
        }
        let payload = crate::b64::decode(payload_b64)
            .map_err(|_| JwsError::Malformed("payload is not base64url"))?;
        let signature = crate::b64::decode(signature_b64)
            .map_err(|_| JwsError::Malformed("signature is not base64url"))?;
        Ok(UnverifiedJws {
            signing_input,
            header,
            payload,
            signature,
        })
    }

    /// The signing input and the signature, for verifiers of other key types.
    pub(crate) fn signed_parts(&self) -> (&[u8], &[u8]) {
        (self.signing_input.as_bytes(), &self.signature)
    }

    /// The untrusted header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload before any verification. Never base a decision on it.
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// The `jwk` header member. Only a DPoP proof (RFC 9449 §4.2) may be verified with it.
    pub fn embedded_jwk(&self) -> Option<&Jwk> {
        self.header.jwk.as_ref()
    }

    /// Verifies with the key named by the header's `kid` in `keys`, expecting `typ`.
    pub fn verify_with_key_set(&self, keys: &KeySet, typ: &str) -> Result<&[u8], JwsError> {
        // Type and algorithm first: a token that could never verify (`alg: none`) is
        // refused as such, and never sends a verifier looking for its `kid`.
        self.check_type(typ)?;
        if Algorithm::from_name(&self.header.alg).is_err() {
            return Err(JwsError::UnsupportedAlgorithm(
                self.header.alg.chars().take(32).collect(),
            ));
        }
        let kid = self.header.kid.as_deref().ok_or(JwsError::MissingKid)?;
        let key = keys
            .find(kid)
            .ok_or_else(|| JwsError::UnknownKey(kid.chars().take(128).collect()))?;
        self.verify_with_key(key, typ)
    }

    /// Verifies with `key`, expecting `typ`, and returns the payload.
    ///
    /// The algorithm is the key's: a header naming any other is refused (RFC 8725 §3.1).
    pub fn verify_with_key(&self, key: &PublicKey, typ: &str) -> Result<&[u8], JwsError> {
        self.check_type(typ)?;
        match Algorithm::from_name(&self.header.alg) {
            Err(_) => {
                return Err(JwsError::UnsupportedAlgorithm(
                    self.header.alg.chars().take(32).collect(),
                ));
            }
            Ok(algorithm) if algorithm != key.algorithm() => {
                return Err(JwsError::AlgorithmMismatch {
                    header: self.header.alg.clone(),
                    key: key.algorithm(),
                });
            }
            Ok(_) => {}
        }
        key.verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwsError::BadSignature)?;
        Ok(&self.payload)
    }

    /// RFC 7515 §4.1.9: `typ` compares case-insensitively, with `application/` optional.
    fn check_type(&self, expected: &str) -> Result<(), JwsError> {
        let found = self.header.typ.as_deref().unwrap_or_default();
        let bare = found
            .get(..12)
            .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
            .and_then(|_| found.get(12..))
            .unwrap_or(found);
        if bare.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(JwsError::WrongType {
                expected: expected.to_owned(),
                found: found.chars().take(64).collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64::encode;

    const MAX: usize = 8192;

    fn key_set(key: &SigningKey) -> KeySet {
        let mut keys = KeySet::new();
        keys.insert("k1", key.public_key().clone()).unwrap();
        keys
    }

    #[test]
    fn signs_and_verifies_with_both_algorithms() {
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let token = key
                .sign_compact("test+jwt", Some("k1"), None, b"{}")
                .unwrap();
            let jws = UnverifiedJws::parse(&token, MAX).unwrap();
            assert_eq!(
                jws.verify_with_key_set(&key_set(&key), "test+jwt").unwrap(),
                b"{}"
            );
            assert_eq!(jws.header().alg(), algorithm.as_str());
        }
    }

    #[test]
    fn typ_is_explicit_but_case_insensitive() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = key_set(&key);
        for typ in ["test+jwt", "TEST+JWT", "application/test+jwt"] {
            let token = key.sign_compact(typ, Some("k1"), None, b"{}").unwrap();
            let jws = UnverifiedJws::parse(&token, MAX).unwrap();
            jws.verify_with_key_set(&keys, "test+jwt").unwrap();
        }
        let token = key
            .sign_compact("other+jwt", Some("k1"), None, b"{}")
            .unwrap();
        let jws = UnverifiedJws::parse(&token, MAX).unwrap();
        assert!(matches!(
            jws.verify_with_key_set(&keys, "test+jwt"),
            Err(JwsError::WrongType { .. })
        ));
    }

    /// A token whose header is `header` and whose signature is made by `key` over it.
    fn forge(key: &SigningKey, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", encode(header), encode(payload));
        let signature = key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", encode(signature))
    }

    #[test]
    fn algorithm_comes_from_the_key() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = key_set(&key);
        let cases = [
            (r#"{"alg":"none","typ":"t","kid":"k1"}"#, "none"),
            (r#"{"alg":"HS256","typ":"t","kid":"k1"}"#, "HS256"),
            (r#"{"alg":"ES256","typ":"t","kid":"k1"}"#, "mismatch"),
            (r#"{"alg":"eddsa","typ":"t","kid":"k1"}"#, "case"),
        ];
        for (header, why) in cases {
            let token = forge(&key, header, "{}");
            let jws = UnverifiedJws::parse(&token, MAX).unwrap();
            let error = jws.verify_with_key_set(&keys, "t").unwrap_err();
            assert!(
                matches!(
                    error,
                    JwsError::UnsupportedAlgorithm(_) | JwsError::AlgorithmMismatch { .. }
                ),
                "{why}: {error}"
            );
        }
        // alg:none with an empty signature.
        let token = format!(
            "{}.{}.",
            encode(r#"{"alg":"none","typ":"t","kid":"k1"}"#),
            encode("{}")
        );
        let jws = UnverifiedJws::parse(&token, MAX).unwrap();
        assert!(jws.verify_with_key_set(&keys, "t").is_err());
    }

    #[test]
    fn embedded_keys_are_never_used_to_verify() {
        let trusted = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let attacker = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = key_set(&trusted);
        let jwk = serde_json::to_string(&attacker.public_key().to_jwk()).unwrap();
        for header in [
            format!(r#"{{"alg":"EdDSA","typ":"t","kid":"k1","jwk":{jwk}}}"#),
            r#"{"alg":"EdDSA","typ":"t","kid":"k1","jku":"https://evil.example/jwks"}"#.to_owned(),
            r#"{"alg":"EdDSA","typ":"t","kid":"k1","x5u":"https://evil.example/cert"}"#.to_owned(),
        ] {
            let token = forge(&attacker, &header, "{}");
            let jws = UnverifiedJws::parse(&token, MAX).unwrap();
            assert!(matches!(
                jws.verify_with_key_set(&keys, "t"),
                Err(JwsError::BadSignature)
            ));
        }
    }

    #[test]
    fn refuses_malformed_tokens() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let good = key.sign_compact("t", Some("k1"), None, b"{}").unwrap();
        assert!(matches!(
            UnverifiedJws::parse(&good, good.len() - 1),
            Err(JwsError::TooLarge { .. })
        ));
        for bad in [
            String::new(),
            "a.b".to_owned(),
            format!("{good}.x"),
            good.replacen('.', "=.", 1),
            format!("{}.{}.AA", encode("not json"), encode("{}")),
            format!(
                "{}.{}.AA",
                encode(r#"{"alg":"EdDSA","alg":"EdDSA"}"#),
                encode("{}")
            ),
            format!(
                "{}.{}.AA",
                encode(r#"{"alg":"EdDSA","crit":["exp"]}"#),
                encode("{}")
            ),
            format!(
                "{}.{}.AA",
                encode(r#"{"alg":"EdDSA","b64":false}"#),
                encode("{}")
            ),
            format!("{}.{}.AA", encode(r#"{"typ":"t"}"#), encode("{}")),
        ] {
            assert!(UnverifiedJws::parse(&bad, MAX).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_and_missing_kid() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = key_set(&key);
        let token = key.sign_compact("t", Some("k2"), None, b"{}").unwrap();
        let jws = UnverifiedJws::parse(&token, MAX).unwrap();
        assert!(
            matches!(jws.verify_with_key_set(&keys, "t"), Err(JwsError::UnknownKey(k)) if k == "k2")
        );
        let token = key.sign_compact("t", None, None, b"{}").unwrap();
        let jws = UnverifiedJws::parse(&token, MAX).unwrap();
        assert!(matches!(
            jws.verify_with_key_set(&keys, "t"),
            Err(JwsError::MissingKid)
        ));
    }
}
