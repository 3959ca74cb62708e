//! The Merkle log behind Writ's audit trail: RFC 6962/9162 hashing, inclusion and
//! consistency proofs, and checkpoints in the C2SP signed-note format.
//!
//! Every registration, grant, issuance, decision and revocation is a leaf. A leaf's hash is
//! `SHA-256(0x00 || data)` and an interior node's `SHA-256(0x01 || left || right)` (RFC 9162
//! §2.1.1), so a tree agrees with every other RFC 6962 implementation and an external witness
//! can check it.
//!
//! The crate is pure: it reads node hashes through the [`Nodes`] trait, so the store decides
//! where they live. A log keeps the hash of every complete (perfect, aligned) subtree; then
//! the root of any size and every proof need only O(log n) reads. [`append`] says which new
//! complete nodes an appended leaf creates. [`MemoryTree`] is an in-memory [`Nodes`] for
//! offline verification and tests.
//!
//! ```
//! use writ_log::{MemoryTree, leaf_hash, verify_inclusion, verify_consistency};
//!
//! let mut tree = MemoryTree::new();
//! for event in ["registered agent", "granted mandate", "issued writ"] {
//!     tree.push(leaf_hash(event.as_bytes()));
//! }
//! let root = tree.root(3)?;
//! let proof = tree.inclusion_proof(2, 3)?;
//! verify_inclusion(&leaf_hash(b"issued writ"), 2, 3, &proof, &root)?;
//!
//! let old_root = tree.root(2)?;
//! let proof = tree.consistency_proof(2, 3)?;
//! verify_consistency(2, 3, &old_root, &root, &proof)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpoint;
mod tree;

pub use checkpoint::{
    Checkpoint, CheckpointError, NoteError, NoteSigner, NoteVerifier, sign_note, verify_note,
};
pub use tree::{
    EMPTY_ROOT, Hash, MemoryTree, Nodes, ProofError, TreeError, append, consistency_proof,
    inclusion_proof, leaf_hash, node_hash, root, verify_consistency, verify_inclusion,
};
