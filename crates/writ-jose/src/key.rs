//! Signing and verifying keys on aws-lc-rs.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, ParsedPublicKey,
};
use zeroize::Zeroizing;

use crate::jwk::{Jwk, Thumbprint};

/// A JWS signature algorithm Writ supports.
///
/// Only asymmetric algorithms exist here; there is no `none` and no HMAC, so neither can be
/// named by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// EdDSA over Ed25519 (RFC 8037). The default.
    EdDSA,
    /// ECDSA over P-256 with SHA-256, fixed-width `r || s` signatures (RFC 7518 §3.4).
    ES256,
}

impl Algorithm {
    /// The JWA name: `EdDSA` or `ES256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }

    /// Parses a JWA name; anything but `EdDSA` or `ES256` is refused.
    pub fn from_name(name: &str) -> Result<Self, KeyError> {
        match name {
            "EdDSA" => Ok(Algorithm::EdDSA),
            "ES256" => Ok(Algorithm::ES256),
            other => Err(KeyError::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The caller named an algorithm Writ does not support.
    #[error("unsupported algorithm `{0}`: expected `EdDSA` or `ES256`")]
    UnsupportedAlgorithm(String),
    /// The key material given is not a valid key of the expected kind.
    #[error("invalid {kind} key: {reason}")]
    Invalid {
        /// What kind of key was expected.
        kind: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The cryptographic library failed; nobody's input is at fault.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

/// `N` bytes from the system's cryptographic random generator: for ids, `jti`s and nonces.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Crypto("random generator failed"))?;
    Ok(bytes)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha256_concat(&[bytes])
}

/// SHA-256 of the concatenation of `parts`, without copying them together.
pub fn sha256_concat(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0_u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// A public key that verifies signatures of one algorithm.
///
/// The key is parsed and validated once (point on the curve, right length), so verifying is
/// only the signature arithmetic.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: Algorithm,
    parsed: ParsedPublicKey,
    thumbprint: Thumbprint,
}

impl PublicKey {
    /// An Ed25519 public key from its 32 raw bytes.
    ///
    /// Every Ed25519 key Writ reads (JWKs, DPoP `jwk` headers, keystores, log keys) is made
    /// here, so this is where weak keys are refused: a non-canonical encoding (RFC 8032
    /// §5.1.3) or a point of small order, under which signatures verify without any private
    /// key (see the `strict` module).
    pub fn ed25519(bytes: &[u8]) -> Result<Self, KeyError> {
        const KIND: &str = "Ed25519 public";
        const INVALID: KeyError = KeyError::Invalid {
            kind: KIND,
            reason: "expected 32 bytes encoding a valid point",
        };
        let encoded = <&[u8; 32]>::try_from(bytes).map_err(|_| INVALID)?;
        crate::strict::ed25519_point(encoded)
            .map_err(|reason| KeyError::Invalid { kind: KIND, reason })?;
        let parsed = ParsedPublicKey::new(&ED25519, bytes).map_err(|_| INVALID)?;
        Self::finish(Algorithm::EdDSA, parsed)
    }

    /// A P-256 public key from its affine coordinates, 32 big-endian bytes each.
    pub fn p256(x: &[u8], y: &[u8]) -> Result<Self, KeyError> {
        const INVALID: KeyError = KeyError::Invalid {
            kind: "P-256 public",
            reason: "expected 32-byte coordinates of a point on the curve",
        };
        // Both coordinates field elements; aws-lc-rs then checks the point is on the curve
        // (and an affine point is never the point at infinity).
        if x.len() != 32 || y.len() != 32 || !crate::strict::p256_coordinates(x, y) {
            return Err(INVALID);
        }
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).map_err(|_| INVALID)?;
        Self::finish(Algorithm::ES256, parsed)
    }

    fn finish(algorithm: Algorithm, parsed: ParsedPublicKey) -> Result<Self, KeyError> {
        let thumbprint = Thumbprint::of(&public_jwk(algorithm, parsed.as_ref()));
        Ok(PublicKey {
            algorithm,
            parsed,
            thumbprint,
        })
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw public key: 32 bytes for Ed25519 (RFC 8032), the 65-byte uncompressed SEC1
    /// point for P-256.
    pub fn as_bytes(&self) -> &[u8] {
        self.parsed.as_ref()
    }

    /// The RFC 7638 JWK SHA-256 thumbprint, computed once.
    pub fn thumbprint(&self) -> &Thumbprint {
        &self.thumbprint
    }

    /// The public JWK (no `kid`, `alg` or `use`).
    pub fn to_jwk(&self) -> Jwk {
        public_jwk(self.algorithm, self.parsed.as_ref())
    }

    /// Checks `signature` over `message`. Any failure is the same opaque refusal.
    ///
    /// Verification is strict: an Ed25519 signature needs `S < L` and an `R` that is a
    /// canonical point not of small order (as ed25519-dalek's `verify_strict`); an ES256
    /// signature needs `r` and `s` in `[1, n - 1]`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        let well_formed = match self.algorithm {
            Algorithm::EdDSA => crate::strict::ed25519_signature(signature),
            Algorithm::ES256 => crate::strict::p256_signature(signature),
        };
        if !well_formed {
            return Err(BadSignature);
        }
        self.parsed
            .verify_sig(message, signature)
            .map_err(|_| BadSignature)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.parsed.as_ref() == other.parsed.as_ref()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("thumbprint", &self.thumbprint.as_str())
            .finish()
    }
}

fn public_jwk(algorithm: Algorithm, bytes: &[u8]) -> Jwk {
    match algorithm {
        Algorithm::EdDSA => Jwk::okp_ed25519(crate::b64::encode(bytes)),
        Algorithm::ES256 => {
            // An uncompressed SEC1 point: 0x04 || x || y, validated by `ParsedPublicKey`.
            let x = bytes.get(1..33).unwrap_or_default();
            let y = bytes.get(33..65).unwrap_or_default();
            Jwk::ec_p256(crate::b64::encode(x), crate::b64::encode(y))
        }
    }
}

/// A signature did not verify. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct BadSignature;

/// A private key kept outside this process, such as on a PKCS#11 token, that signs where it
/// lives: the process only ever holds a handle to it.
pub trait ExternalSigner: Send + Sync {
    /// Signs `message` with the key's algorithm: 64 bytes for both (ES256 as fixed-width
    /// `r || s`).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// A private signing key.
///
/// Its `Debug` output is redacted, it is not `Serialize`, and the PKCS#8 encoding it keeps for
/// the keystore is zeroized on drop. The aws-lc-rs key pair frees its own memory with
/// `OPENSSL_cleanse`. A key held by an [`ExternalSigner`] has no private bytes here at all.
pub struct SigningKey {
    pair: KeyPair,
    public: PublicKey,
}

enum KeyPair {
    Ed25519(Ed25519KeyPair, Zeroizing<Vec<u8>>),
    P256(EcdsaKeyPair, Zeroizing<Vec<u8>>),
    External(Arc<dyn ExternalSigner>),
}

impl SigningKey {
    /// Generates a fresh key from the operating system's CSPRNG.
    pub fn generate(algorithm: Algorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match algorithm {
            // PKCS#8 v1 (no embedded public key) is the form most JOSE libraries accept.
            Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&rng),
            Algorithm::ES256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
        }
        .map_err(|_| KeyError::Crypto("key generation failed"))?;
        Self::from_pkcs8(algorithm, pkcs8.as_ref())
    }

    /// Reads a PKCS#8 private key of the given algorithm.
    pub fn from_pkcs8(algorithm: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let pkcs8 = Zeroizing::new(der.to_vec());
        match algorithm {
            Algorithm::EdDSA => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| {
                    KeyError::Invalid {
                        kind: "Ed25519 private",
                        reason: "not a valid PKCS#8 Ed25519 key",
                    }
                })?;
                let public = PublicKey::ed25519(pair.public_key().as_ref())?;
                Ok(SigningKey {
                    pair: KeyPair::Ed25519(pair, pkcs8),
                    public,
                })
            }
            Algorithm::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| KeyError::Invalid {
                        kind: "P-256 private",
                        reason: "not a valid PKCS#8 P-256 key",
                    })?;
                let point = pair.public_key().as_ref();
                let public = PublicKey::p256(
                    point.get(1..33).unwrap_or_default(),
                    point.get(33..65).unwrap_or_default(),
                )?;
                Ok(SigningKey {
                    pair: KeyPair::P256(pair, pkcs8),
                    public,
                })
            }
        }
    }

    /// Reads PKCS#8 bytes of either supported algorithm, trying Ed25519 first.
    pub fn from_pkcs8_any(der: &[u8]) -> Result<Self, KeyError> {
        Self::from_pkcs8(Algorithm::EdDSA, der)
            .or_else(|_| Self::from_pkcs8(Algorithm::ES256, der))
            .map_err(|_| KeyError::Invalid {
                kind: "private",
                reason: "not a PKCS#8 Ed25519 or P-256 key",
            })
    }

    /// An Ed25519 key from its 32-byte seed (RFC 8032 private key).
    ///
    /// For test vectors and deterministic fixtures; production keys come from
    /// [`SigningKey::generate`].
    pub fn ed25519_from_seed(seed: &[u8]) -> Result<Self, KeyError> {
        let invalid = || KeyError::Invalid {
            kind: "Ed25519 private",
            reason: "expected a 32-byte seed",
        };
        if seed.len() != 32 {
            return Err(invalid());
        }
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| invalid())?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| KeyError::Crypto("PKCS#8 encoding failed"))?;
        Self::from_pkcs8(Algorithm::EdDSA, pkcs8.as_ref())
    }

    /// A key that `signer` holds, whose public half is `public`. The pairing is checked: a
    /// test message signed by `signer` must verify under `public`.
    pub fn external(public: PublicKey, signer: Arc<dyn ExternalSigner>) -> Result<Self, KeyError> {
        let probe = b"writ: does this signer hold the key for this public key?";
        let signature = signer.sign(probe)?;
        public
            .verify(probe, &signature)
            .map_err(|_| KeyError::Invalid {
                kind: "external private",
                reason: "its signatures do not verify under the public key it was paired with",
            })?;
        Ok(SigningKey {
            pair: KeyPair::External(signer),
            public,
        })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message`: 64 bytes for both algorithms (ES256 as fixed-width `r || s`).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            KeyPair::Ed25519(pair, _) => pair
                .try_sign(message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto("Ed25519 signing failed")),
            KeyPair::P256(pair, _) => pair
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto("ES256 signing failed")),
            KeyPair::External(signer) => signer.sign(message),
        }
    }

    /// The PKCS#8 DER encoding of the private key; `None` for a key an [`ExternalSigner`]
    /// holds, whose private bytes never leave it.
    ///
    /// Only a keystore should call this, to write the key to storage only its owner can read.
    pub fn expose_secret_pkcs8(&self) -> Option<&[u8]> {
        match &self.pair {
            KeyPair::Ed25519(_, pkcs8) | KeyPair::P256(_, pkcs8) => Some(pkcs8),
            KeyPair::External(_) => None,
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .field("thumbprint", &self.public.thumbprint().as_str())
            .field(
                "private",
                match self.pair {
                    KeyPair::External(_) => &"<held externally>",
                    _ => &"<redacted>",
                },
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_sign_and_verify() {
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let signature = key.sign(b"message").unwrap();
            assert_eq!(signature.len(), 64);
            key.public_key().verify(b"message", &signature).unwrap();
            assert_eq!(
                key.public_key().verify(b"massage", &signature),
                Err(BadSignature)
            );
        }
    }

    struct Borrowed(SigningKey);

    impl ExternalSigner for Borrowed {
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
            self.0.sign(message)
        }
    }

    #[test]
    fn an_external_signer_must_hold_the_key_it_is_paired_with() {
        let held = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let public = held.public_key().clone();
        let key = SigningKey::external(public.clone(), Arc::new(Borrowed(held))).unwrap();
        assert!(key.expose_secret_pkcs8().is_none());
        public.verify(b"m", &key.sign(b"m").unwrap()).unwrap();
        assert!(format!("{key:?}").contains("<held externally>"));

        let other = Arc::new(Borrowed(SigningKey::generate(Algorithm::EdDSA).unwrap()));
        assert!(SigningKey::external(public, other).is_err());
    }

    #[test]
    fn pkcs8_round_trips() {
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let again = SigningKey::from_pkcs8_any(key.expose_secret_pkcs8().unwrap()).unwrap();
            assert_eq!(again.algorithm(), algorithm);
            assert_eq!(again.public_key(), key.public_key());
        }
    }

    #[test]
    fn debug_never_shows_private_material() {
        let key = SigningKey::ed25519_from_seed(&[7; 32]).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains("<redacted>"));
        let seed_b64 = crate::b64::encode([7_u8; 32]);
        assert!(!debug.contains(&seed_b64));
        assert!(!debug.contains("7, 7, 7"));
    }

    #[test]
    fn refuses_wrong_lengths_and_off_curve_points() {
        assert!(PublicKey::ed25519(&[1; 31]).is_err());
        assert!(
            PublicKey::p256(&[1; 32], &[2; 32]).is_err(),
            "not on the curve"
        );
        assert!(SigningKey::ed25519_from_seed(&[1; 31]).is_err());
        assert!(SigningKey::from_pkcs8_any(b"garbage").is_err());
        assert!(Algorithm::from_name("none").is_err());
        assert!(Algorithm::from_name("HS256").is_err());
    }
}
