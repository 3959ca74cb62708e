//! `writ audit verify`: check a whole log offline, from a data directory.
//!
//! The tree is rebuilt from the stored leaves alone, and every stored checkpoint must then
//! verify: its signature under the log's key, its size within the leaves present, and its
//! root equal to the rebuilt root at that size. A changed leaf, a reordered pair or a
//! deleted tail each break that, and the report says which and, where the stored node
//! hashes allow, at which leaf.

use std::path::Path;

use writ_log::{Checkpoint, Nodes as _, NoteVerifier, verify_note};
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
    /// A checkpoint's signature does not verify under the log's key.
    #[error("checkpoint at size {size} is not signed by the log's key: {reason}")]
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
    /// The leaves no longer hash to a signed root.
    #[error("leaves were changed or reordered: the root at size {size} differs from the signed checkpoint{}", .first_changed.map(|i| format!("; leaf {i} no longer matches its recorded hash")).unwrap_or_default())]
    RootMismatch {
        /// The checkpoint's size.
        size: u64,
        /// The first leaf whose hash differs from the stored node, if the nodes show it.
        first_changed: Option<u64>,
    },
}

/// Verifies the log in `data_dir` against its own log key.
pub async fn verify_data_dir(data_dir: &Path) -> Result<AuditReport, AuditError> {
    let config_path = data_dir.join(crate::CONFIG_FILE);
    let text = std::fs::read(&config_path).map_err(crate::io(&config_path))?;
    let identity: crate::Identity =
        writ_jose::from_slice_strict(&text).map_err(|e| crate::SetupError::Config {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
    let log_key =
        writ_keystore::load(&crate::log_key_path(data_dir)).map_err(crate::SetupError::from)?;
    let verifier = writ_log::NoteSigner::new(&identity.log_origin, log_key)
        .map_err(|e| crate::SetupError::Invalid(e.to_string()))?
        .verifier();
    let store = Store::open(data_dir).await?;
    verify_store(&store, &verifier).await
}

/// Verifies the log in `store` against `verifier`.
pub async fn verify_store(
    store: &Store,
    verifier: &NoteVerifier,
) -> Result<AuditReport, AuditError> {
    let tree = writ_store::recompute_tree(store).await?;
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
        latest = Some(checkpoint.size);
    }
    Ok(AuditReport {
        leaves: tree.size(),
        checkpoints: checked,
        latest_checkpoint: latest,
    })
}
