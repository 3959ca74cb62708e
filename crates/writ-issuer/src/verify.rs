//! `writ audit verify`: check a whole log offline, from a data directory.
//!
//! The tree is rebuilt from the stored leaves alone, and every stored checkpoint must then
//! verify: its signature under the log key the caller gives (never one read from the data
//! directory, which whoever can change the log can change too), its origin that key's
//! log, its size within the leaves present, and its root equal to the rebuilt root at
//! that size. A changed leaf, a reordered pair or a deleted tail each break that, and the
//! report says which and, where the stored node hashes allow, at which leaf. At least one
//! checkpoint must verify, and an earlier checkpoint the caller kept (`--since`) must be a
//! prefix of the log: that also catches a log rewritten by someone holding the log key.

use std::path::Path;

use writ_log::{Checkpoint, Hash, Nodes as _, NoteVerifier, verify_note};
use writ_store::{Store, StoreError};

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Leaves in the log.
    pub leaves: u64,
    /// Checkpoints whose signature and root verified.
    pub checkpoints: usize,
    /// The size of the newest verified checkpoint.
    pub latest_checkpoint: Option<u64>,
    /// Its root, to keep and give as the earlier checkpoint next time.
    pub latest_root: Option<Hash>,
}

/// The log does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The data directory could not be read.
    #[error(transparent)]
    Setup(#[from] crate::SetupError),
    /// The store could not be read, or a leaf is missing from the sequence.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A checkpoint's signature does not verify under the given log key, or it is of
    /// another log.
    #[error("checkpoint at size {size} is not signed by the given log key: {reason}")]
    BadSignature {
        /// The checkpoint's size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// Leaves a signed checkpoint covered are gone.
    #[error(
        "the log was truncated: a signed checkpoint covers {checkpoint} leaves but only {leaves} remain"
    )]
    Truncated {
        /// The checkpoint's size.
        checkpoint: u64,
        /// The leaves present.
        leaves: u64,
    },
    /// No checkpoint is stored, so nothing signed vouches for the leaves.
    #[error(
        "no signed checkpoint covers the {leaves} leaves: nothing vouches for them (a running issuer signs one within its checkpoint interval)"
    )]
    Unsigned {
        /// The leaves present.
        leaves: u64,
    },
    /// The log is not an extension of the earlier checkpoint given.
    #[error(
        "the log is not an extension of the earlier checkpoint at size {size}: history was rewritten or cut"
    )]
    Rewritten {
        /// The earlier checkpoint's size.
        size: u64,
    },
    /// The leaves no longer hash to a signed root.
    #[error("leaves were changed or reordered: the root at size {size} differs from the signed checkpoint{}", .first_changed.map(|i| format!("; leaf {i} no longer matches its recorded hash")).unwrap_or_default())]
    RootMismatch {
        /// The checkpoint's size.
        size: u64,
        /// The first leaf whose hash differs from the stored node, if the nodes show it.
        first_changed: Option<u64>,
    },
}

/// Verifies the log in `data_dir` against `verifier`, the log key `writ issuer init`
/// printed (kept apart from the data directory), and, when given, an earlier checkpoint
/// `(size, root)` it must extend. The data directory's own keys are not read.
pub async fn verify_data_dir(
    data_dir: &Path,
    verifier: &NoteVerifier,
    since: Option<(u64, Hash)>,
) -> Result<AuditReport, AuditError> {
    let store = Store::open(data_dir).await?;
    verify_store(&store, verifier, since).await
}

/// Verifies the log in `store` against `verifier` and, when given, an earlier checkpoint
/// `(size, root)` it must extend.
pub async fn verify_store(
    store: &Store,
    verifier: &NoteVerifier,
    since: Option<(u64, Hash)>,
) -> Result<AuditReport, AuditError> {
    let tree = writ_store::recompute_tree(store).await?;
    if let Some((size, root)) = since {
        // Every leaf is rebuilt here, so the earlier root is checked directly.
        if size > tree.size() || tree.root(size).ok() != Some(root) {
            return Err(AuditError::Rewritten { size });
        }
    }
    let mut checked = 0;
    let mut latest = None;
    for (size, note) in store.checkpoints().await? {
        let text = verify_note(&note, std::slice::from_ref(verifier)).map_err(|e| {
            AuditError::BadSignature {
                size,
                reason: e.to_string(),
            }
        })?;
        let checkpoint = Checkpoint::parse(text).map_err(|e| AuditError::BadSignature {
            size,
            reason: e.to_string(),
        })?;
        if checkpoint.origin != verifier.name() {
            return Err(AuditError::BadSignature {
                size,
                reason: format!(
                    "it is of log `{}`, not of `{}`, whose key was given",
                    checkpoint.origin,
                    verifier.name()
                ),
            });
        }
        if checkpoint.size > tree.size() {
            return Err(AuditError::Truncated {
                checkpoint: checkpoint.size,
                leaves: tree.size(),
            });
        }
        let root = tree
            .root(checkpoint.size)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if root != checkpoint.root {
            // The writer recorded each leaf's hash as it appended; the first leaf whose data
            // no longer hashes to it is where the log was changed.
            let mut first_changed = None;
            for index in 0..checkpoint.size {
                let rebuilt = tree
                    .node(0, index)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if !matches!(store.leaf_node(index).await, Ok(recorded) if recorded == rebuilt) {
                    first_changed = Some(index);
                    break;
                }
            }
            return Err(AuditError::RootMismatch {
                size: checkpoint.size,
                first_changed,
            });
        }
        checked += 1;
        latest = Some((checkpoint.size, checkpoint.root));
    }
    if checked == 0 {
        return Err(AuditError::Unsigned {
            leaves: tree.size(),
        });
    }
    Ok(AuditReport {
        leaves: tree.size(),
        checkpoints: checked,
        latest_checkpoint: latest.map(|(size, _)| size),
        latest_root: latest.map(|(_, root)| root),
    })
}
