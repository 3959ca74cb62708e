//! RFC 9162 §2.1 Merkle tree hashing and proofs over stored complete-subtree hashes.

use std::collections::HashMap;

use writ_jose::sha256_concat;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 || data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256_concat(&[&[0x00], data])
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256_concat(&[&[0x01], left, right])
}

/// Read access to the hashes of complete subtrees.
pub trait Nodes {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The hash of the complete subtree of `2^level` leaves whose first leaf is
    /// `index << level`. Level 0 holds the leaf hashes.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// A tree operation was asked for something the tree does not have.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// An index or size beyond the tree, or sizes in the wrong order.
    #[error("{0}")]
    OutOfRange(String),
    /// The node store failed.
    #[error("reading the log's nodes: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn store<E: std::error::Error + Send + Sync + 'static>(error: E) -> TreeError {
    TreeError::Store(Box::new(error))
}

/// A proof did not verify. Each variant says which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size, or the sizes are in the wrong order.
    #[error("index or size out of range")]
    OutOfRange,
    /// The proof has more hashes than the tree shape allows.
    #[error("proof has too many hashes")]
    TooLong,
    /// The proof has fewer hashes than the tree shape needs.
    #[error("proof has too few hashes")]
    TooShort,
    /// The recomputed root differs from the expected one.
    #[error("recomputed root does not match")]
    RootMismatch,
}

/// The largest power of two strictly below `n` (for `n >= 2`): RFC 9162's split point `k`.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of the `len` leaves starting at `start`, where the range is one the RFC 9162
/// recursion produces: every left part is a complete, aligned subtree read from the store.
fn subtree<N: Nodes + ?Sized>(nodes: &N, start: u64, len: u64) -> Result<Hash, TreeError> {
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        return nodes.node(level, start >> level).map_err(store);
    }
    let k = split(len);
    Ok(node_hash(
        &subtree(nodes, start, k)?,
        &subtree(nodes, start + k, len - k)?,
    ))
}

/// The root of the tree of the first `size` leaves.
pub fn root<N: Nodes + ?Sized>(nodes: &N, size: u64) -> Result<Hash, TreeError> {
    if size == 0 {
        Ok(EMPTY_ROOT)
    } else {
        subtree(nodes, 0, size)
    }
}

/// The inclusion proof (audit path, RFC 9162 §2.1.3.1) of leaf `index` in the tree of the
/// first `size` leaves.
pub fn inclusion_proof<N: Nodes + ?Sized>(
    nodes: &N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::OutOfRange(format!(
            "leaf {index} is not in a tree of size {size}"
        )));
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof)?;
    Ok(proof)
}

/// PATH(m, D[start:start+len]), appended to `proof` innermost first.
fn path<N: Nodes + ?Sized>(
    nodes: &N,
    m: u64,
    start: u64,
    len: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    if len <= 1 {
        return Ok(());
    }
    let k = split(len);
    if m < k {
        path(nodes, m, start, k, proof)?;
        proof.push(subtree(nodes, start + k, len - k)?);
    } else {
        path(nodes, m - k, start + k, len - k, proof)?;
        proof.push(subtree(nodes, start, k)?);
    }
    Ok(())
}

/// The consistency proof (RFC 9162 §2.1.4.1) that the tree of size `new` extends the tree
/// of size `old`.
pub fn consistency_proof<N: Nodes + ?Sized>(
    nodes: &N,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, TreeError> {
    if old > new {
        return Err(TreeError::OutOfRange(format!(
            "tree size {old} is larger than {new}"
        )));
    }
    let mut proof = Vec::new();
    if old > 0 && old < new {
        subproof(nodes, old, 0, new, true, &mut proof)?;
    }
    Ok(proof)
}

/// SUBPROOF(m, D[start:start+n], b).
fn subproof<N: Nodes + ?Sized>(
    nodes: &N,
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    if m == n {
        if !complete {
            proof.push(subtree(nodes, start, n)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, k, complete, proof)?;
        proof.push(subtree(nodes, start + k, n - k)?);
    } else {
        subproof(nodes, m - k, start + k, n - k, false, proof)?;
        proof.push(subtree(nodes, start, k)?);
    }
    Ok(())
}

/// The complete-subtree nodes created by appending `leaf` to a tree of `size` leaves, as
/// `(level, index, hash)`, starting with the leaf itself at level 0.
pub fn append<N: Nodes + ?Sized>(
    nodes: &N,
    size: u64,
    leaf: Hash,
) -> Result<Vec<(u32, u64, Hash)>, TreeError> {
    let mut created = vec![(0, size, leaf)];
    let (mut level, mut index, mut hash) = (0_u32, size, leaf);
    // Each time the new node is a right child, its parent is complete too.
    while index & 1 == 1 {
        let left = nodes.node(level, index - 1).map_err(store)?;
        hash = node_hash(&left, &hash);
        index >>= 1;
        level += 1;
        created.push((level, index, hash));
    }
    Ok(created)
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        if snode == 0 {
            return Err(ProofError::TooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::TooShort);
    }
    if hash != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of size `new` with `new_root` extends the tree of size `old` with
/// `old_root` (RFC 9162 §2.1.4.2). Every tree extends the empty tree.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange);
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::TooLong);
        }
        if old == new && old_root != new_root {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    // Step 2: when the old tree is a complete subtree, its root starts the path.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(old_root);
    }
    path.extend(proof);
    let Some((&first, rest)) = path.split_first() else {
        return Err(ProofError::TooShort);
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut old_hash, mut new_hash) = (*first, *first);
    for &hash in rest {
        if snode == 0 {
            return Err(ProofError::TooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            old_hash = node_hash(hash, &old_hash);
            new_hash = node_hash(hash, &new_hash);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, hash);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::TooShort);
    }
    if old_hash != *old_root || new_hash != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// A whole tree in memory: for verifying a log offline and for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    nodes: HashMap<(u32, u64), Hash>,
    size: u64,
}

/// A node the [`MemoryTree`] does not have.
#[derive(Debug, thiserror::Error)]
#[error("no node at level {0}, index {1}")]
pub struct MissingNode(u32, u64);

impl Nodes for MemoryTree {
    type Error = MissingNode;

    fn node(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(MissingNode(level, index))
    }
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        MemoryTree::default()
    }

    /// Appends a leaf hash and returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.size;
        // Every node `append` reads was stored by an earlier push, so it cannot fail.
        for (level, at, hash) in append(self, index, leaf).unwrap_or_default() {
            self.nodes.insert((level, at), hash);
        }
        self.size += 1;
        index
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        self.check_size(size)?;
        root(self, size)
    }

    /// The inclusion proof of leaf `index` in the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
        self.check_size(size)?;
        inclusion_proof(self, index, size)
    }

    /// The consistency proof from size `old` to size `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
        self.check_size(new)?;
        consistency_proof(self, old, new)
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError> {
        if size > self.size {
            return Err(TreeError::OutOfRange(format!(
                "tree has {} leaves, not {size}",
                self.size
            )));
        }
        Ok(())
    }
}
