//! Keys of outside identity providers, for the one token Writ accepts from them: an OIDC
//! ID token presented once to bind a human's key.
//!
//! Writ's own tokens use only Ed25519 and P-256 ([`KeySet`](crate::KeySet)); enterprise IdPs
//! mostly sign with RS256. This key set is kept apart so that no Writ token can ever verify
//! under an RSA key: it reads a provider's JWKS leniently (members it does not know are
//! ignored, encryption keys and unsupported key types are skipped) and verifies RS256 (RSA
//! of 2048 to 8192 bits), ES256 and EdDSA signatures, with the algorithm fixed by the key.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;

use crate::{Algorithm, JwsError, KeySetError, PublicKey, UnverifiedJws};

/// The most keys read from a provider's JWKS.
const MAX_IDP_KEYS: usize = 64;

enum IdpKey {
    /// An RSA key: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An Ed25519 or P-256 key.
    Curve(PublicKey),
}

/// A provider's verification keys by `kid`.
#[derive(Default)]
pub struct IdpKeySet {
    keys: BTreeMap<String, IdpKey>,
}

impl std::fmt::Debug for IdpKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpKeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(rename = "use", default)]
    key_use: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    d: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

fn decode(text: Option<&String>) -> Option<Vec<u8>> {
    crate::b64::decode(text?).ok()
}

impl IdpKeySet {
    /// Reads a provider's JWKS document. Keys without a `kid`, for encryption, with private
    /// members, or of types Writ cannot verify are skipped; a document without one usable
    /// key is refused.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<IdpKeySet, KeySetError> {
        let document: RawJwks = crate::json::from_slice_strict(bytes)?;
        if document.keys.len() > MAX_IDP_KEYS {
            return Err(KeySetError::TooManyKeys);
        }
        let mut set = IdpKeySet::default();
        for jwk in document.keys {
            let usable = jwk.d.is_none() && jwk.key_use.as_deref().is_none_or(|u| u == "sig");
            let (Some(kid), true) = (jwk.kid.clone(), usable) else {
                continue;
            };
            if kid.is_empty() || kid.len() > crate::jwk::MAX_KID_LEN {
                continue;
            }
            // A key published for another algorithm (PS256, RS512, ...) is not used for
            // the one algorithm Writ would verify it with.
            let algorithm = match jwk.kty.as_str() {
                "RSA" => "RS256",
                "EC" => "ES256",
                _ => "EdDSA",
            };
            if jwk.alg.as_deref().is_some_and(|alg| alg != algorithm) {
                continue;
            }
            let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => match (decode(jwk.n.as_ref()), decode(jwk.e.as_ref())) {
                    (Some(n), Some(e)) if n.len() >= 256 && !e.is_empty() => {
                        Some(IdpKey::Rsa { n, e })
                    }
                    _ => None,
                },
                ("OKP", Some("Ed25519")) => decode(jwk.x.as_ref())
                    .and_then(|x| PublicKey::ed25519(&x).ok())
                    .map(IdpKey::Curve),
                ("EC", Some("P-256")) => match (decode(jwk.x.as_ref()), decode(jwk.y.as_ref())) {
                    (Some(x), Some(y)) => PublicKey::p256(&x, &y).ok().map(IdpKey::Curve),
                    _ => None,
                },
                _ => None,
            };
            if let Some(key) = key {
                if set.keys.contains_key(&kid) {
                    return Err(KeySetError::DuplicateKid(kid));
                }
                set.keys.insert(kid, key);
            }
        }
        if set.keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(set)
    }

    /// Whether the set has a key with this `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies a parsed JWS with the key its `kid` names, the algorithm being the key's
    /// (RS256, ES256 or EdDSA), and returns the payload.
    pub fn verify<'a>(&self, jws: &'a UnverifiedJws<'_>) -> Result<&'a [u8], JwsError> {
        let header = jws.header();
        let kid = header.kid().ok_or(JwsError::MissingKid)?;
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| JwsError::UnknownKey(kid.chars().take(128).collect()))?;
        let (input, signature) = jws.signed_parts();
        let verified = match (key, header.alg()) {
            (IdpKey::Rsa { n, e }, "RS256") => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, input, signature)
                .is_ok(),
            (IdpKey::Curve(key), alg)
                if Algorithm::from_name(alg).ok() == Some(key.algorithm()) =>
            {
                key.verify(input, signature).is_ok()
            }
            (_, alg) => {
                return Err(JwsError::UnsupportedAlgorithm(
                    alg.chars().take(32).collect(),
                ));
            }
        };
        if verified {
            Ok(jws.unverified_payload())
        } else {
            Err(JwsError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use crate::SigningKey;

    #[test]
    fn the_key_fixes_the_algorithm_and_unusable_keys_are_skipped() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let jwk = serde_json::to_value(key.public_key().to_jwk()).unwrap();
        let mut usable = jwk.clone();
        usable["kid"] = "k1".into();
        usable["x5t"] = "ignored".into();
        let mut encryption = jwk;
        encryption["kid"] = "k2".into();
        encryption["use"] = "enc".into();
        let document = serde_json::json!({"keys": [usable, encryption]}).to_string();
        let keys = IdpKeySet::from_jwks_json(document.as_bytes()).unwrap();
        assert!(keys.contains("k1") && !keys.contains("k2"));

        let token = key.sign_compact("JWT", Some("k1"), None, b"{}").unwrap();
        let jws = UnverifiedJws::parse(&token, 8192).unwrap();
        assert_eq!(keys.verify(&jws).unwrap(), b"{}");
        // The same signature under a header claiming another algorithm is refused.
        let (_, rest) = token.split_once('.').unwrap();
        let header = crate::b64::encode(br#"{"alg":"RS256","kid":"k1"}"#);
        let forged = format!("{header}.{rest}");
        let jws = UnverifiedJws::parse(&forged, 8192).unwrap();
        assert!(matches!(
            keys.verify(&jws),
            Err(JwsError::UnsupportedAlgorithm(_))
        ));

        let mut other_algorithm = usable.clone();
        other_algorithm["alg"] = "ES384".into();
        let document = serde_json::json!({"keys": [other_algorithm]}).to_string();
        assert!(matches!(
            IdpKeySet::from_jwks_json(document.as_bytes()),
            Err(KeySetError::NoUsableKey)
        ));
        let only_unusable = serde_json::json!({"keys": [encryption_only()]}).to_string();
        assert!(IdpKeySet::from_jwks_json(only_unusable.as_bytes()).is_err());
    }

    fn encryption_only() -> serde_json::Value {
        serde_json::json!({"kty": "RSA", "kid": "e", "use": "enc", "n": "AQAB", "e": "AQAB"})
    }
}
