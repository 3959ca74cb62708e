//! Checkpoints (c2sp.org/tlog-checkpoint) signed as notes (c2sp.org/signed-note).
//!
//! A checkpoint commits to a log's size and root:
//!
//! ```text
//! writ.example/audit
//! 42
//! 3q2+7w...base64 root...=
//!
//! — writ.example/audit Az3grl...base64(key id || signature)...
//! ```
//!
//! Because the format is the one transparency-log witnesses speak, an external witness can
//! cosign Writ's checkpoints and so make a rewritten history detectable by anyone.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use writ_jose::{Algorithm, PublicKey, SigningKey, sha256_concat};

use crate::tree::Hash;

/// The signature type byte for Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// The most signature lines read from a note (the spec requires accepting at least 16).
const MAX_SIGNATURES: usize = 100;
/// The longest note accepted, in bytes.
const MAX_NOTE_LEN: usize = 64 * 1024;

/// A checkpoint: the origin (the log's name), the tree size and the root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line, conventionally a schema-less URL.
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The root hash of those leaves.
    pub root: Hash,
    /// Optional extension lines after the root.
    pub extensions: Vec<String>,
}

/// A checkpoint's text is not well formed.
///
/// The checkpoint's author is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid checkpoint: {0}")]
pub struct CheckpointError(&'static str);

impl Checkpoint {
    /// The note text: origin, size and base64 root, each on its own line, then any
    /// extension lines.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses checkpoint text strictly: a non-empty origin, a decimal size without leading
    /// zeros, a base64 root of 32 bytes, and non-empty extension lines.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError("text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|origin| !origin.is_empty())
            .ok_or(CheckpointError("missing origin line"))?;
        let size_line = lines.next().ok_or(CheckpointError("missing size line"))?;
        let canonical = size_line == "0" || (!size_line.starts_with('0') && !size_line.is_empty());
        let size = size_line
            .parse::<u64>()
            .ok()
            .filter(|_| canonical && size_line.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(CheckpointError("size is not a canonical decimal number"))?;
        let root_line = lines
            .next()
            .ok_or(CheckpointError("missing root hash line"))?;
        let root: Hash = STANDARD
            .decode(root_line)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(CheckpointError("root hash is not 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// A note could not be signed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text or note breaks the format rules.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A key name or verifier key string is not valid.
    #[error("invalid note key: {0}")]
    BadKey(&'static str),
    /// A signature from a known key did not verify.
    #[error("signature by `{0}` does not verify")]
    BadSignature(String),
    /// No signature from a known key was found.
    #[error("note has no signature from a trusted key")]
    Untrusted,
}

/// Signs notes with an Ed25519 key under a name.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex(&self.key_id))
            .finish_non_exhaustive()
    }
}

/// Verifies notes signed by one named Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    key: PublicKey,
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::BadKey(
            "key names are non-empty, without spaces or `+`",
        ));
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]` (c2sp.org/signed-note).
fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let hash = sha256_concat(&[name.as_bytes(), b"\n", &[ED25519_TYPE], key.as_bytes()]);
    [hash[0], hash[1], hash[2], hash[3]]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl NoteSigner {
    /// A signer named `name` (conventionally a schema-less URL) with an Ed25519 key.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_name(name)?;
        if key.algorithm() != Algorithm::EdDSA {
            return Err(NoteError::BadKey("signed notes use Ed25519 keys"));
        }
        let key_id = key_id(name, key.public_key());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.public_key().clone(),
        }
    }
}

impl NoteVerifier {
    /// Parses a verifier key: `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+keyid+key"));
        };
        check_name(name)?;
        let key = STANDARD
            .decode(key)
            .map_err(|_| NoteError::BadKey("key is not base64"))?;
        let (&kind, raw) = key.split_first().ok_or(NoteError::BadKey("key is empty"))?;
        if kind != ED25519_TYPE {
            return Err(NoteError::BadKey(
                "only Ed25519 (type 0x01) keys are supported",
            ));
        }
        let key = PublicKey::ed25519(raw).map_err(|_| NoteError::BadKey("invalid Ed25519 key"))?;
        let key_id = key_id(name, &key);
        if id != hex(&key_id) {
            return Err(NoteError::BadKey("key id does not match name and key"));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// The verifier key string, for witnesses and `writ audit verify`.
    pub fn to_vkey(&self) -> String {
        let mut key = vec![ED25519_TYPE];
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex(&self.key_id),
            STANDARD.encode(key)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("text has control characters"));
    }
    Ok(())
}

/// Signs `text` (which ends with a newline) and returns the note: the text, a blank line
/// and the signature line.
pub fn sign_note(text: &str, signer: &NoteSigner) -> Result<String, NoteError> {
    check_text(text)?;
    let signature = signer
        .key
        .sign(text.as_bytes())
        .map_err(|_| NoteError::BadKey("signing failed"))?;
    let mut blob = signer.key_id.to_vec();
    blob.extend_from_slice(&signature);
    Ok(format!(
        "{text}\n— {} {}\n",
        signer.name,
        STANDARD.encode(blob)
    ))
}

/// Verifies a note and returns its text.
///
/// Signatures from keys not in `verifiers` are ignored; a signature from a known key that
/// fails rejects the note; at least one known signature must verify.
pub fn verify_note<'a>(note: &'a str, verifiers: &[NoteVerifier]) -> Result<&'a str, NoteError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(NoteError::Malformed("note is too large"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, signatures) = (
        note.get(..=split).unwrap_or_default(),
        note.get(split + 2..).unwrap_or_default(),
    );
    check_text(text)?;
    let lines = signatures
        .strip_suffix('\n')
        .ok_or(NoteError::Malformed("signatures must end with a newline"))?;
    let mut verified = false;
    for (count, line) in lines.split('\n').enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let (name, blob) = line
            .strip_prefix("— ")
            .and_then(|rest| rest.split_once(' '))
            .ok_or(NoteError::Malformed(
                "signature line is not `— name signature`",
            ))?;
        let blob = STANDARD
            .decode(blob)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        let Some((id, signature)) = blob.split_first_chunk::<4>() else {
            return Err(NoteError::Malformed("signature is shorter than its key id"));
        };
        let Some(verifier) = verifiers.iter().find(|v| v.name == name && &v.key_id == id) else {
            continue;
        };
        verifier
            .key
            .verify(text.as_bytes(), signature)
            .map_err(|_| NoteError::BadSignature(name.to_owned()))?;
        verified = true;
    }
    if verified {
        Ok(text)
    } else {
        Err(NoteError::Untrusted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key and note of golang.org/x/mod/sumdb/note, the reference
    /// implementation of signed notes. Ed25519 is deterministic, so signing must reproduce
    /// the signature exactly.
    const GO_SIGNER_SEED: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const GO_SIGNATURE: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn go_signer() -> NoteSigner {
        let seed = STANDARD.decode(GO_SIGNER_SEED).unwrap();
        assert_eq!(seed[0], ED25519_TYPE);
        NoteSigner::new(
            "PeterNeumann",
            SigningKey::ed25519_from_seed(&seed[1..]).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn reproduces_the_reference_note() {
        let signer = go_signer();
        assert_eq!(signer.verifier().to_vkey(), GO_VKEY);
        let note = sign_note(GO_TEXT, &signer).unwrap();
        assert_eq!(note, format!("{GO_TEXT}\n{GO_SIGNATURE}"));
        let verifier = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(verify_note(&note, &[verifier]).unwrap(), GO_TEXT);
    }

    #[test]
    fn refuses_bad_notes() {
        let verifier = NoteVerifier::parse(GO_VKEY).unwrap();
        let note = format!("{GO_TEXT}\n{GO_SIGNATURE}");
        let tampered = note.replacen("cryptography", "cryptograpy", 1);
        assert_eq!(
            verify_note(&tampered, std::slice::from_ref(&verifier)),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
        let other = NoteSigner::new(
            "other.example/log",
            SigningKey::generate(Algorithm::EdDSA).unwrap(),
        )
        .unwrap();
        let unknown = sign_note(GO_TEXT, &other).unwrap();
        assert_eq!(
            verify_note(&unknown, std::slice::from_ref(&verifier)),
            Err(NoteError::Untrusted)
        );
        for bad in [
            GO_TEXT.to_owned(),
            format!("{GO_TEXT}\n— PeterNeumann"),
            format!("{GO_TEXT}\n— PeterNeumann AAAA\n"),
            format!("{GO_TEXT}\nPeterNeumann x08go\n"),
        ] {
            assert!(
                verify_note(&bad, std::slice::from_ref(&verifier)).is_err(),
                "{bad}"
            );
        }
        assert!(
            NoteVerifier::parse(
                "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            )
            .is_err()
        );
        assert!(
            NoteSigner::new("has space", SigningKey::generate(Algorithm::EdDSA).unwrap()).is_err()
        );
        assert!(NoteSigner::new("p256", SigningKey::generate(Algorithm::ES256).unwrap()).is_err());
    }

    #[test]
    fn checkpoints_round_trip_and_parse_strictly() {
        let checkpoint = Checkpoint {
            origin: "writ.example/audit".into(),
            size: 42,
            root: [7; 32],
            extensions: vec![],
        };
        let text = checkpoint.to_text();
        assert_eq!(
            text,
            format!("writ.example/audit\n42\n{}\n", STANDARD.encode([7; 32]))
        );
        assert_eq!(Checkpoint::parse(&text).unwrap(), checkpoint);
        let root = STANDARD.encode([7; 32]);
        for bad in [
            format!("writ.example/audit\n042\n{root}\n"),
            format!("writ.example/audit\n-1\n{root}\n"),
            format!("writ.example/audit\n42\n{root}"),
            format!("\n42\n{root}\n"),
            "writ.example/audit\n42\nAAAA\n".to_owned(),
            format!("writ.example/audit\n42\n{root}\n\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
