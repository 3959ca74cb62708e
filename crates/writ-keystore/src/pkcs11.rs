//! Agent keys on a PKCS#11 token (an HSM, a smart card, SoftHSM2): generated on the token as
//! sensitive and non-extractable, found again by label, and used only through the token's
//! own signing operation. The private key never enters this process's memory.
//!
//! Ed25519 keys sign with `CKM_EDDSA`; P-256 keys with `CKM_ECDSA` over a SHA-256 digest
//! computed here (so tokens without `CKM_ECDSA_SHA256`, such as SoftHSM2 2.6, work), whose
//! 64-byte `r || s` is already the JWS form. A key the token reports as extractable, or
//! whose signatures do not verify under its public key, is refused.
//!
//! ```no_run
//! use writ_keystore::pkcs11::{Token, open_or_generate};
//!
//! let token = Token {
//!     module: "/usr/lib/softhsm/libsofthsm2.so".into(),
//!     label: "agents".to_owned(),
//!     pin: zeroize::Zeroizing::new(std::env::var("WRIT_PKCS11_PIN")?),
//! };
//! let (key, created) = open_or_generate(&token, "report-bot", writ_jose::Algorithm::EdDSA)?;
//! println!("{} ({})", key.public_key().thumbprint(), if created { "new" } else { "found" });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use writ_jose::{Algorithm, ExternalSigner, KeyError, PublicKey, SigningKey};
use zeroize::Zeroizing;

/// DER of the Ed25519 curve's object identifier, 1.3.101.112 (RFC 8410), as `CKA_EC_PARAMS`.
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of P-256's object identifier, 1.2.840.10045.3.1.7 (RFC 5480).
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A token, and how to log in to it.
pub struct Token {
    /// The PKCS#11 module (shared library) that drives it.
    pub module: PathBuf,
    /// The token's label.
    pub label: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.module)
            .field("label", &self.label)
            .field("pin", &"<redacted>")
            .finish()
    }
}

/// The token could not give a usable key.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The module could not be loaded or initialized, or a token operation failed.
    #[error("PKCS#11 `{module}`: {operation}: {cause}")]
    Token {
        /// The module.
        module: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The module's answer.
        cause: String,
    },
    /// No token with the label is present.
    #[error("PKCS#11 `{module}`: no token labelled `{label}` (is it initialized?)")]
    NoToken {
        /// The module.
        module: PathBuf,
        /// The label asked for.
        label: String,
    },
    /// The user PIN was refused.
    #[error("PKCS#11 token `{0}`: the PIN is incorrect")]
    Pin(String),
    /// The key is there but cannot be used safely.
    #[error("PKCS#11 token `{token}`, key `{key}`: {reason}")]
    Unusable {
        /// The token's label.
        token: String,
        /// The key's label.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Finds the key labelled `key` on the token, or generates one of `algorithm` there when
/// there is none. Returns the key and whether it was generated. A key found keeps its own
/// algorithm, which the caller may compare with the one it asked for.
pub fn open_or_generate(
    token: &Token,
    key: &str,
    algorithm: Algorithm,
) -> Result<(SigningKey, bool), Pkcs11Error> {
    let failed = |operation| {
        let module = token.module.clone();
        move |cause: CryptokiError| Pkcs11Error::Token {
            module,
            operation,
            cause: cause.to_string(),
        }
    };
    let unusable = |reason: String| Pkcs11Error::Unusable {
        token: token.label.clone(),
        key: key.to_owned(),
        reason,
    };
    let context = context(token)?;
    let slot = context
        .get_slots_with_token()
        .map_err(failed("listing slots"))?
        .into_iter()
        .find(|slot| {
            context
                .get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == token.label)
        })
        .ok_or_else(|| Pkcs11Error::NoToken {
            module: token.module.clone(),
            label: token.label.clone(),
        })?;
    let session = context
        .open_rw_session(slot)
        .map_err(failed("opening a session"))?;
    match session.login(
        UserType::User,
        Some(&AuthPin::new(token.pin.as_str().into())),
    ) {
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(CryptokiError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _)) => {
            return Err(Pkcs11Error::Pin(token.label.clone()));
        }
        Err(error) => return Err(failed("logging in")(error)),
    }

    let label = Attribute::Label(key.as_bytes().to_vec());
    let find = |class| {
        session
            .find_objects(&[Attribute::Class(class), label.clone()])
            .map_err(failed("finding the key"))
    };
    let (private, public, created) = match (
        find(ObjectClass::PRIVATE_KEY)?.as_slice(),
        find(ObjectClass::PUBLIC_KEY)?.as_slice(),
    ) {
        ([], []) => {
            let (public, private) =
                generate(&session, &label, algorithm).map_err(failed("generating a key pair"))?;
            (private, public, true)
        }
        ([private], [public]) => (*private, *public, false),
        _ => {
            return Err(unusable(
                "expected exactly one private and one public key with this label".to_owned(),
            ));
        }
    };

    // Only signing keys that were made on the token and never could leave it: not imported
    // (`CKA_LOCAL`), not extractable and sensitive now, and never extractable or readable
    // before (a key flipped to non-extractable after being copied out fails these).
    let flags = session
        .get_attributes(
            private,
            &[
                AttributeType::Local,
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Sign,
            ],
        )
        .map_err(failed("reading the key's attributes"))?;
    let held = [
        Attribute::Local(true),
        Attribute::Extractable(false),
        Attribute::Sensitive(true),
        Attribute::NeverExtractable(true),
        Attribute::AlwaysSensitive(true),
        Attribute::Sign(true),
    ]
    .iter()
    .all(|wanted| flags.contains(wanted));
    if !held {
        return Err(unusable(
            "the private key was imported, can be (or once could be) extracted, or cannot sign; Writ uses only signing keys generated on the token as sensitive and non-extractable".to_owned(),
        ));
    }
    let (algorithm, public_key) = public_key(&session, public)
        .map_err(|reason| unusable(reason.to_owned()))?
        .ok_or_else(|| unusable("the token did not give its public key".to_owned()))?;
    let signer = TokenKey {
        session: Mutex::new(session),
        key: private,
        algorithm,
        token: token.label.clone(),
    };
    let key = SigningKey::external(public_key, Arc::new(signer))
        .map_err(|error| unusable(error.to_string()))?;
    Ok((key, created))
}

/// One context per module for the whole process: PKCS#11 modules are initialized once, and
/// finalizing one would close every session opened through it.
fn context(token: &Token) -> Result<Pkcs11, Pkcs11Error> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(context) = contexts.get(&token.module) {
        return Ok(context.clone());
    }
    let failed = |operation| {
        move |cause: CryptokiError| Pkcs11Error::Token {
            module: token.module.clone(),
            operation,
            cause: cause.to_string(),
        }
    };
    let context = Pkcs11::new(&token.module).map_err(failed("loading the module"))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CryptokiError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(error) => return Err(failed("initializing the module")(error)),
    }
    contexts.insert(token.module.clone(), context.clone());
    Ok(context)
}

/// A key pair generated on the token: the private half sensitive, never extractable, and
/// stored on the token (not only for this session).
fn generate(
    session: &Session,
    label: &Attribute,
    algorithm: Algorithm,
) -> Result<(ObjectHandle, ObjectHandle), CryptokiError> {
    let (mechanism, params) = match algorithm {
        Algorithm::EdDSA => (Mechanism::EccEdwardsKeyPairGen, ED25519_PARAMS.to_vec()),
        Algorithm::ES256 => (Mechanism::EccKeyPairGen, P256_PARAMS.to_vec()),
    };
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(params),
        label.clone(),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        label.clone(),
    ];
    session.generate_key_pair(&mechanism, &public, &private)
}

/// The public key object's algorithm and key, from its key type, curve and point.
fn public_key(
    session: &Session,
    object: ObjectHandle,
) -> Result<Option<(Algorithm, PublicKey)>, &'static str> {
    let attributes = session
        .get_attributes(
            object,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(|_| "its public key's attributes cannot be read")?;
    let (mut kind, mut params, mut point) = (None, None, None);
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(value) => kind = Some(value),
            Attribute::EcParams(value) => params = Some(value),
            Attribute::EcPoint(value) => point = Some(value),
            _ => {}
        }
    }
    let (Some(kind), Some(params), Some(point)) = (kind, params, point) else {
        return Ok(None);
    };
    // CKA_EC_POINT is the point as a DER OCTET STRING; some tokens give the bare point.
    let unwrap = |len: usize| match point.as_slice() {
        [0x04, n, rest @ ..] if usize::from(*n) == len && rest.len() == len => rest,
        bare => bare,
    };
    if kind == KeyType::EC_EDWARDS && params == ED25519_PARAMS {
        let key = PublicKey::ed25519(unwrap(32)).map_err(|_| "its Ed25519 point is invalid")?;
        return Ok(Some((Algorithm::EdDSA, key)));
    }
    if kind == KeyType::EC && params == P256_PARAMS {
        let (x, y) = match unwrap(65) {
            [0x04, coordinates @ ..] if coordinates.len() == 64 => coordinates.split_at(32),
            _ => return Err("its P-256 point is not uncompressed"),
        };
        let key = PublicKey::p256(x, y).map_err(|_| "its P-256 point is invalid")?;
        return Ok(Some((Algorithm::ES256, key)));
    }
    Err("it is neither an Ed25519 nor a P-256 key")
}

/// The signing half: a session on the token and the private key's handle.
///
/// A signature is made on the calling thread, under a lock: a token answers in
/// microseconds (SoftHSM2) to milliseconds (a USB device), once per writ and proof, which an
/// async caller's worker thread absorbs.
struct TokenKey {
    /// Sessions are not shared between threads by PKCS#11; one signature at a time.
    session: Mutex<Session>,
    key: ObjectHandle,
    algorithm: Algorithm,
    token: String,
}

impl ExternalSigner for TokenKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let signature = match self.algorithm {
            Algorithm::EdDSA => session.sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                self.key,
                message,
            ),
            Algorithm::ES256 => {
                session.sign(&Mechanism::Ecdsa, self.key, &writ_jose::sha256(message))
            }
        };
        signature.map_err(|error| {
            // `KeyError` carries only fixed text; the token's own answer goes to the log.
            tracing::warn!(token = %self.token, %error, "the PKCS#11 token refused to sign");
            KeyError::Crypto("the PKCS#11 token refused to sign")
        })
    }
}
