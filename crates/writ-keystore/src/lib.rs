//! Private key files for Writ.
//!
//! A keystore file holds one private key as PKCS#8 in PEM (`-----BEGIN PRIVATE KEY-----`,
//! RFC 7468), the form OpenSSL and most JOSE libraries read. This crate is the only place in
//! Writ where private key bytes are written or read:
//!
//! - files are created new (never overwritten) with mode `0600`, written and synced to disk;
//! - a file that other users can read or write is refused on load, as OpenSSH does;
//! - every buffer that held key material is zeroized when dropped;
//! - errors name the file and the problem, never the contents.
//!
//! Keys held in hardware stay out of files entirely: [`pkcs11`] finds or creates a key on a
//! PKCS#11 token (an HSM, a smart card, SoftHSM2) that cannot be extracted from it, and
//! signs there.
//!
//! ```
//! use writ_jose::{Algorithm, SigningKey};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("agent.key");
//! let key = SigningKey::generate(Algorithm::EdDSA)?;
//! writ_keystore::create(&path, &key)?;
//! let loaded = writ_keystore::load(&path)?;
//! assert_eq!(loaded.public_key(), key.public_key());
//! assert!(writ_keystore::create(&path, &key).is_err(), "never overwrites");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use writ_jose::{KeyError, SigningKey};
use zeroize::Zeroizing;

pub mod pkcs11;

const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const END: &str = "-----END PRIVATE KEY-----";
/// The largest keystore file read, in bytes; PKCS#8 Ed25519 and P-256 keys are far smaller.
const MAX_FILE_LEN: u64 = 16 * 1024;

/// A keystore file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The file system refused: missing directory, permissions, disk full.
    #[error("keystore `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file already exists; keys are never overwritten.
    #[error("keystore `{0}` already exists; refusing to overwrite a key")]
    Exists(PathBuf),
    /// The file is readable or writable by users other than its owner.
    #[error(
        "keystore `{path}` has mode {mode:o}; it must not be accessible to group or others (chmod 600)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a PEM PKCS#8 private key of a supported algorithm (or a secret file
    /// is too large).
    #[error("keystore `{path}` does not hold a PKCS#8 Ed25519 or P-256 private key: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the contents).
        reason: &'static str,
    },
    /// The key could not be used.
    #[error("keystore `{path}`: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: KeyError,
    },
}

/// Writes `key` to a new file at `path` with mode `0600` and syncs it to disk. A key held on
/// a token has no private bytes to write and is refused.
pub fn create(path: &Path, key: &SigningKey) -> Result<(), KeystoreError> {
    let io = |source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    };
    let Some(pkcs8) = key.expose_secret_pkcs8() else {
        return Err(KeystoreError::Format {
            path: path.to_owned(),
            reason: "the key is held on a hardware token and cannot be written to a file",
        });
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            KeystoreError::Exists(path.to_owned())
        } else {
            io(error)
        }
    })?;
    let pem = to_pem(pkcs8);
    file.write_all(pem.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

/// Reads the key at `path`, refusing files that others can access.
pub fn load(path: &Path) -> Result<SigningKey, KeystoreError> {
    let text = read_secret(path)?;
    let der = from_pem(&text).ok_or_else(|| KeystoreError::Format {
        path: path.to_owned(),
        reason: "expected one PEM `PRIVATE KEY` block",
    })?;
    SigningKey::from_pkcs8_any(&der).map_err(|source| KeystoreError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads a small secret file (a key, a token PIN) that only its owner may access, into
/// memory that is zeroized when dropped.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>, KeystoreError> {
    let io = |source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if metadata.len() > MAX_FILE_LEN {
        return Err(KeystoreError::Format {
            path: path.to_owned(),
            reason: "file is too large",
        });
    }
    // Sized once, so the buffer never reallocates and leaves secret text in freed memory.
    let capacity = usize::try_from(metadata.len()).unwrap_or(0);
    let mut text = Zeroizing::new(String::with_capacity(capacity));
    file.take(MAX_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text)
}

fn to_pem(der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut pem = Zeroizing::new(String::with_capacity(body.len() + 80));
    pem.push_str(BEGIN);
    pem.push('\n');
    // RFC 7468 §2: lines of 64 characters. Base64 is ASCII, so byte chunks are whole chars.
    for line in body.as_bytes().chunks(64) {
        pem.extend(line.iter().map(|&b| char::from(b)));
        pem.push('\n');
    }
    pem.push_str(END);
    pem.push('\n');
    pem
}

fn from_pem(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body = text.trim().strip_prefix(BEGIN)?.strip_suffix(END)?;
    if body.contains("-----") {
        return None;
    }
    let mut joined = Zeroizing::new(String::with_capacity(body.len()));
    body.split_whitespace()
        .for_each(|part| joined.push_str(part));
    STANDARD.decode(joined.as_bytes()).ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_jose::Algorithm;

    #[test]
    fn round_trips_both_algorithms_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        for algorithm in [Algorithm::EdDSA, Algorithm::ES256] {
            let path = dir.path().join(algorithm.as_str());
            let key = SigningKey::generate(algorithm).unwrap();
            create(&path, &key).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with(BEGIN) && text.trim_end().ends_with(END));
            assert!(text.lines().all(|line| line.len() <= 64));
            let loaded = load(&path).unwrap();
            assert_eq!(loaded.public_key(), key.public_key());
        }
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        create(&path, &key).unwrap();
        let before = std::fs::read(&path).unwrap();
        let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
        assert!(matches!(
            create(&path, &other),
            Err(KeystoreError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before, "unchanged");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_files_others_can_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create(&path, &SigningKey::generate(Algorithm::EdDSA).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = load(&path).unwrap_err();
        assert!(matches!(
            error,
            KeystoreError::Permissions { mode: 0o644, .. }
        ));
        assert!(error.to_string().contains("chmod 600"));
    }

    #[test]
    fn refuses_garbage_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in [
            ("empty", String::new()),
            ("text", "secret-looking-garbage".to_owned()),
            (
                "bad-der",
                format!("{BEGIN}\nc2VjcmV0LWxvb2tpbmctZ2FyYmFnZQ==\n{END}\n"),
            ),
            (
                "two",
                format!("{BEGIN}\nAA==\n{END}\n{BEGIN}\nAA==\n{END}\n"),
            ),
        ] {
            let path = dir.path().join(name);
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(&path)
                .unwrap()
                .write_all(contents.as_bytes())
                .unwrap();
            let error = load(&path).unwrap_err().to_string();
            assert!(!error.contains("secret-looking"), "{name}: {error}");
            assert!(!error.contains("c2VjcmV0"), "{name}: {error}");
        }
    }
}
