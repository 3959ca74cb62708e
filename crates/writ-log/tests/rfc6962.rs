//! The Merkle log against the Certificate Transparency reference vectors and against a
//! direct transcription of the RFC 9162 definitions, for every tree up to 64 leaves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use writ_log::*;

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn h(text: &str) -> Hash {
    unhex(text).try_into().unwrap()
}

/// The eight leaves of the RFC 6962 reference tests (certificate-transparency, and
/// transparency-dev/merkle `testonly`).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// Their roots for sizes 0 to 8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn reference_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in LEAVES {
        tree.push(leaf_hash(&unhex(leaf)));
    }
    tree
}

#[test]
fn roots_match_the_reference_for_every_size() {
    let tree = reference_tree();
    assert_eq!(EMPTY_ROOT, h(ROOTS[0]));
    for (size, expected) in ROOTS.iter().enumerate() {
        assert_eq!(tree.root(size as u64).unwrap(), h(expected), "size {size}");
    }
}

#[test]
fn inclusion_proofs_match_the_reference() {
    let tree = reference_tree();
    let cases = [
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (index, size, expected) in cases {
        let proof = tree.inclusion_proof(index, size).unwrap();
        let expected: Vec<Hash> = expected.iter().map(|x| h(x)).collect();
        assert_eq!(proof, expected, "leaf {index} of {size}");
        let leaf = leaf_hash(&unhex(LEAVES[index as usize]));
        verify_inclusion(&leaf, index, size, &proof, &h(ROOTS[size as usize])).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_reference() {
    let tree = reference_tree();
    let cases = [
        (
            2,
            8,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old, new, expected) in cases {
        let proof = tree.consistency_proof(old, new).unwrap();
        let expected: Vec<Hash> = expected.iter().map(|x| h(x)).collect();
        assert_eq!(proof, expected, "{old} -> {new}");
        verify_consistency(
            old,
            new,
            &h(ROOTS[old as usize]),
            &h(ROOTS[new as usize]),
            &proof,
        )
        .unwrap();
    }
}

/// RFC 9162 §2.1.1 MTH, transcribed directly.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = largest_power_below(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1 PATH, transcribed directly.
fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return vec![];
    }
    let k = largest_power_below(n);
    if m < k {
        let mut path = reference_path(m, &leaves[..k]);
        path.push(mth(&leaves[k..]));
        path
    } else {
        let mut path = reference_path(m - k, &leaves[k..]);
        path.push(mth(&leaves[..k]));
        path
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF, transcribed directly.
fn reference_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete { vec![] } else { vec![mth(leaves)] };
    }
    let k = largest_power_below(n);
    if m <= k {
        let mut proof = reference_subproof(m, &leaves[..k], complete);
        proof.push(mth(&leaves[k..]));
        proof
    } else {
        let mut proof = reference_subproof(m - k, &leaves[k..], false);
        proof.push(mth(&leaves[..k]));
        proof
    }
}

fn largest_power_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

const N: u64 = 64;

fn big_tree() -> (MemoryTree, Vec<Hash>) {
    let mut tree = MemoryTree::new();
    let leaves: Vec<Hash> = (0..N)
        .map(|i| leaf_hash(format!("event {i}").as_bytes()))
        .collect();
    for leaf in &leaves {
        tree.push(*leaf);
    }
    (tree, leaves)
}

#[test]
fn every_root_and_proof_agrees_with_the_rfc_definitions() {
    let (tree, leaves) = big_tree();
    for size in 0..=N {
        let prefix = &leaves[..size as usize];
        let root = tree.root(size).unwrap();
        assert_eq!(root, mth(prefix), "root {size}");
        for index in 0..size {
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert_eq!(
                proof,
                reference_path(index as usize, prefix),
                "path {index}/{size}"
            );
            verify_inclusion(&leaves[index as usize], index, size, &proof, &root).unwrap();
        }
        for old in 1..size {
            let proof = tree.consistency_proof(old, size).unwrap();
            assert_eq!(
                proof,
                reference_subproof(old as usize, prefix, true),
                "proof {old}->{size}"
            );
            verify_consistency(old, size, &tree.root(old).unwrap(), &root, &proof).unwrap();
        }
    }
}

#[test]
fn mangled_proofs_are_refused() {
    let (tree, leaves) = big_tree();
    let mut refused = 0;
    for size in 2..=N {
        let root = tree.root(size).unwrap();
        for index in 0..size {
            let proof = tree.inclusion_proof(index, size).unwrap();
            let leaf = &leaves[index as usize];
            let mut flipped = proof.clone();
            flipped[0][7] ^= 1;
            assert!(verify_inclusion(leaf, index, size, &flipped, &root).is_err());
            assert!(verify_inclusion(leaf, index, size, &proof[..proof.len() - 1], &root).is_err());
            let mut longer = proof.clone();
            longer.push([0xab; 32]);
            assert!(verify_inclusion(leaf, index, size, &longer, &root).is_err());
            if index + 1 < size {
                assert!(verify_inclusion(leaf, index + 1, size, &proof, &root).is_err());
            }
            assert!(
                verify_inclusion(
                    &leaves[(index as usize + 1) % size as usize],
                    index,
                    size,
                    &proof,
                    &root
                )
                .is_err()
            );
            refused += 5;
        }
        for old in 1..size {
            let proof = tree.consistency_proof(old, size).unwrap();
            let old_root = tree.root(old).unwrap();
            if proof.is_empty() {
                continue;
            }
            let mut flipped = proof.clone();
            flipped[0][3] ^= 0x80;
            assert!(verify_consistency(old, size, &old_root, &root, &flipped).is_err());
            assert!(
                verify_consistency(old, size, &old_root, &root, &proof[..proof.len() - 1]).is_err()
            );
            let mut longer = proof.clone();
            longer.push([0xcd; 32]);
            assert!(verify_consistency(old, size, &old_root, &root, &longer).is_err());
            assert!(verify_consistency(old, size, &root, &old_root, &proof).is_err());
            refused += 4;
        }
    }
    assert!(refused > 10_000, "{refused}");
    // Degenerate cases.
    let root4 = tree.root(4).unwrap();
    verify_consistency(4, 4, &root4, &root4, &[]).unwrap();
    assert!(verify_consistency(4, 4, &root4, &tree.root(5).unwrap(), &[]).is_err());
    verify_consistency(0, 8, &EMPTY_ROOT, &tree.root(8).unwrap(), &[]).unwrap();
    assert!(verify_consistency(8, 6, &root4, &root4, &[]).is_err());
    assert!(verify_inclusion(&leaves[0], 8, 8, &[], &root4).is_err());
    assert!(tree.inclusion_proof(64, 64).is_err());
    assert!(tree.root(65).is_err());
}
