//! Public JWKs (RFC 7517, RFC 8037), RFC 7638 thumbprints and key sets.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::key::{Algorithm, KeyError, PublicKey, sha256};

/// The most keys a [`KeySet`] holds; a JWKS with more is refused.
pub const MAX_KEYS: usize = 64;
/// The longest `kid` accepted.
pub const MAX_KID_LEN: usize = 128;

/// A public JSON Web Key of a kind Writ supports: `OKP`/`Ed25519` or `EC`/`P-256`.
///
/// A JWK carrying private key material (`d`) is read only to be refused.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    kty: String,
    crv: String,
    x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    key_use: Option<String>,
    /// Whether the member `d` (a private key) was present. Its value is never kept.
    #[serde(rename = "d", default, skip_serializing, deserialize_with = "present")]
    has_private: bool,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// A JWK could not be turned into a public key.
///
/// The JWK's author is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The JWK includes a private key; public keys must be shared without it.
    #[error("JWK contains private key material (`d`)")]
    PrivateKey,
    /// The key type or curve is not one Writ supports.
    #[error(
        "unsupported JWK `kty` `{kty}` with `crv` `{crv}`: expected `OKP`/`Ed25519` or `EC`/`P-256`"
    )]
    Unsupported {
        /// The JWK's `kty`.
        kty: String,
        /// The JWK's `crv`.
        crv: String,
    },
    /// A coordinate is not base64url of the right length, or not a point on the curve.
    #[error("invalid JWK key material: {0}")]
    Invalid(#[from] KeyError),
    /// The JWK names an `alg` other than the one its key type implies.
    #[error("JWK `alg` `{found}` does not match its key type, which implies `{expected}`")]
    AlgorithmMismatch {
        /// What the key type implies.
        expected: Algorithm,
        /// What the JWK says.
        found: String,
    },
}

impl Jwk {
    pub(crate) fn okp_ed25519(x: String) -> Self {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x,
            y: None,
            kid: None,
            alg: None,
            key_use: None,
            has_private: false,
        }
    }

    pub(crate) fn ec_p256(x: String, y: String) -> Self {
        Jwk {
            kty: "EC".to_owned(),
            crv: "P-256".to_owned(),
            x,
            y: Some(y),
            kid: None,
            alg: None,
            key_use: None,
            has_private: false,
        }
    }

    /// This JWK with `kid`, `alg` and `use: sig` set, as published in a JWKS.
    pub fn for_key_set(mut self, kid: &str, algorithm: Algorithm) -> Self {
        self.kid = Some(kid.to_owned());
        self.alg = Some(algorithm.as_str().to_owned());
        self.key_use = Some("sig".to_owned());
        self
    }

    /// Validates the JWK and returns the public key it describes.
    pub fn to_public_key(&self) -> Result<PublicKey, JwkError> {
        if self.has_private {
            return Err(JwkError::PrivateKey);
        }
        let key = match (self.kty.as_str(), self.crv.as_str(), &self.y) {
            ("OKP", "Ed25519", None) => PublicKey::ed25519(&decode_coordinate(&self.x)?)?,
            ("EC", "P-256", Some(y)) => {
                PublicKey::p256(&decode_coordinate(&self.x)?, &decode_coordinate(y)?)?
            }
            _ => {
                return Err(JwkError::Unsupported {
                    kty: self.kty.clone(),
                    crv: self.crv.clone(),
                });
            }
        };
        match &self.alg {
            Some(alg) if alg != key.algorithm().as_str() => Err(JwkError::AlgorithmMismatch {
                expected: key.algorithm(),
                found: alg.clone(),
            }),
            _ => Ok(key),
        }
    }
}

fn decode_coordinate(text: &str) -> Result<Vec<u8>, KeyError> {
    crate::b64::decode(text).map_err(|_| KeyError::Invalid {
        kind: "JWK",
        reason: "a coordinate is not canonical base64url",
    })
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("crv", &self.crv)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// An RFC 7638 JWK SHA-256 thumbprint: 43 characters of base64url.
///
/// Writ identifies agents by the thumbprint of their public key, and binds tokens to keys
/// with it (`cnf.jkt`, RFC 9449 §6.1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Thumbprint(String);

/// A string is not a SHA-256 JWK thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JWK thumbprint `{0}`: expected 43 characters of base64url (SHA-256)")]
pub struct ThumbprintError(String);

impl Thumbprint {
    /// The thumbprint of a validated public key's JWK (RFC 7638 §3).
    pub(crate) fn of(jwk: &Jwk) -> Self {
        // §3.2: only the required members, lexicographic order, no whitespace. The values
        // are base64url and fixed names, so serde's string escaping never changes them.
        #[derive(Serialize)]
        struct Required<'a> {
            crv: &'a str,
            kty: &'a str,
            x: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            y: Option<&'a str>,
        }
        let canonical = serde_json::to_vec(&Required {
            crv: &jwk.crv,
            kty: &jwk.kty,
            x: &jwk.x,
            y: jwk.y.as_deref(),
        })
        .unwrap_or_default();
        Thumbprint(crate::b64::encode(sha256(&canonical)))
    }

    /// Parses a thumbprint, checking its form.
    pub fn parse(text: &str) -> Result<Self, ThumbprintError> {
        match crate::b64::decode(text) {
            Ok(bytes) if bytes.len() == 32 => Ok(Thumbprint(text.to_owned())),
            _ => Err(ThumbprintError(truncate(text))),
        }
    }

    /// The base64url text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

impl TryFrom<String> for Thumbprint {
    type Error = ThumbprintError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Thumbprint::parse(&text)
    }
}

impl From<Thumbprint> for String {
    fn from(thumbprint: Thumbprint) -> String {
        thumbprint.0
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({})", self.0)
    }
}

/// A set of trusted verification keys by `kid`: the only place a token's `kid` is looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: BTreeMap<String, PublicKey>,
}

/// A key set could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// The JWKS document is not valid JSON of the expected shape.
    #[error("invalid JWKS: {0}")]
    Json(#[from] crate::json::JsonError),
    /// A key has no `kid`, or one that is empty or too long.
    #[error("every key in a key set needs a `kid` of 1 to {MAX_KID_LEN} characters")]
    BadKid,
    /// Two keys share a `kid`.
    #[error("duplicate `kid` `{0}` in key set")]
    DuplicateKid(String),
    /// More keys than [`MAX_KEYS`].
    #[error("key set has more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// An identity provider's JWKS holds no key Writ can verify signatures with.
    #[error("the key set has no usable signature key (RSA, P-256 or Ed25519, with a `kid`)")]
    NoUsableKey,
    /// A key is not a valid supported public key.
    #[error("key `{kid}`: {source}")]
    Key {
        /// The key's `kid`.
        kid: String,
        /// What is wrong with it.
        source: JwkError,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwksDocument {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// An empty key set.
    pub fn new() -> Self {
        KeySet::default()
    }

    /// Adds a key under `kid`, refusing duplicates and oversized sets.
    pub fn insert(&mut self, kid: &str, key: PublicKey) -> Result<(), KeySetError> {
        if kid.is_empty() || kid.len() > MAX_KID_LEN {
            return Err(KeySetError::BadKid);
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeySetError::TooManyKeys);
        }
        if self.keys.contains_key(kid) {
            return Err(KeySetError::DuplicateKid(kid.to_owned()));
        }
        self.keys.insert(kid.to_owned(), key);
        Ok(())
    }

    /// The key with this `kid`, if the set holds one.
    pub fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    /// The keys with their `kid`s, in `kid` order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.keys.iter().map(|(kid, key)| (kid.as_str(), key))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads a JWKS document (RFC 7517 §5) strictly: every key valid, with a unique `kid`.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<Self, KeySetError> {
        let document: JwksDocument = crate::json::from_slice_strict(bytes)?;
        if document.keys.len() > MAX_KEYS {
            return Err(KeySetError::TooManyKeys);
        }
        let mut set = KeySet::new();
        for jwk in document.keys {
            let kid = jwk.kid.clone().ok_or(KeySetError::BadKid)?;
            let key = jwk.to_public_key().map_err(|source| KeySetError::Key {
                kid: kid.clone(),
                source,
            })?;
            set.insert(&kid, key)?;
        }
        Ok(set)
    }

    /// The JWKS document for this set, each key with `kid`, `alg` and `use`.
    pub fn to_jwks_json(&self) -> String {
        let document = JwksDocument {
            keys: self
                .keys
                .iter()
                .map(|(kid, key)| key.to_jwk().for_key_set(kid, key.algorithm()))
                .collect(),
        };
        serde_json::to_string(&document).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SigningKey;

    #[test]
    fn jwk_round_trips_for_both_algorithms() {
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let json = serde_json::to_string(&key.public_key().to_jwk()).unwrap();
            let jwk: Jwk = crate::json::from_slice_strict(json.as_bytes()).unwrap();
            assert_eq!(&jwk.to_public_key().unwrap(), key.public_key());
        }
    }

    #[test]
    fn refuses_private_and_unsupported_jwks() {
        let private = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
        let jwk: Jwk = serde_json::from_str(private).unwrap();
        assert_eq!(jwk.to_public_key(), Err(JwkError::PrivateKey));
        assert!(
            !format!("{jwk:?}").contains("nWGx"),
            "Debug hides key material"
        );

        for text in [
            r#"{"kty":"RSA","crv":"","x":"AQAB"}"#,
            r#"{"kty":"OKP","crv":"X25519","x":"AAAA"}"#,
            r#"{"kty":"EC","crv":"P-256","x":"AAAA"}"#,
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"ES256"}"#,
        ] {
            let jwk: Jwk = serde_json::from_str(text).unwrap();
            assert!(jwk.to_public_key().is_err(), "{text}");
        }
    }

    #[test]
    fn key_set_round_trips_and_refuses_duplicates() {
        let a = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let b = SigningKey::generate(Algorithm::ES256).unwrap();
        let mut set = KeySet::new();
        set.insert("a", a.public_key().clone()).unwrap();
        set.insert("b", b.public_key().clone()).unwrap();
        assert!(matches!(
            set.insert("a", b.public_key().clone()),
            Err(KeySetError::DuplicateKid(_))
        ));
        let again = KeySet::from_jwks_json(set.to_jwks_json().as_bytes()).unwrap();
        assert_eq!(again, set);
        assert_eq!(again.find("b").unwrap().algorithm(), Algorithm::ES256);
        assert!(again.find("c").is_none());
    }

    #[test]
    fn thumbprint_parse_checks_form() {
        assert!(Thumbprint::parse("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k").is_ok());
        assert!(Thumbprint::parse("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4").is_err());
        assert!(Thumbprint::parse("not a thumbprint").is_err());
    }
}
