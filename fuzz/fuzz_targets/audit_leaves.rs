//! Audit log leaves and checkpoints: leaves replayed into the issuer's behaviour state as at
//! start-up, and signed checkpoint notes with their verifier keys, as `writ audit verify`
//! and gateways read them.
//!
//! Input: records separated by NUL. The first is read as a checkpoint, a note, a verifier
//! key, and a text to sign as a note and verify; every record is also a leaf whose kind is picked by its first byte.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use writ_jose::{SigningKey, sha256};
use writ_log::{Checkpoint, NoteSigner, NoteVerifier, sign_note, verify_note};

static SIGNER: LazyLock<NoteSigner> = LazyLock::new(|| {
    let key = SigningKey::ed25519_from_seed(&sha256(b"writ fuzz log")).unwrap();
    NoteSigner::new("log.writ.example", key).unwrap()
});

const KINDS: [&str; 5] = [
    "writ_issued",
    "approval_requested",
    "approval_decided",
    "gateway_response",
    "revocation",
];

fuzz_target!(|data: &[u8]| {
    let records: Vec<&[u8]> = data.split(|&b| b == 0).take(64).collect();
    if let Some(first) = records.first()
        && let Ok(text) = std::str::from_utf8(first)
    {
        if let Ok(checkpoint) = Checkpoint::parse(text) {
            // What Writ writes, it reads back the same.
            assert_eq!(
                Checkpoint::parse(&checkpoint.to_text()).unwrap(),
                checkpoint
            );
        }
        if let Ok(verifier) = NoteVerifier::parse(text) {
            let _ = verify_note(text, &[verifier]);
        }
        let _ = verify_note(text, &[SIGNER.verifier()]);
        // A note Writ signs verifies, and gives back exactly the text signed.
        if let Ok(note) = sign_note(text, &SIGNER) {
            assert_eq!(verify_note(&note, &[SIGNER.verifier()]).unwrap(), text);
        }
    }
    let leaves: Vec<(&str, i64, &[u8])> = records
        .iter()
        .filter_map(|record| {
            let (&kind, bytes) = record.split_first()?;
            let kind = KINDS[usize::from(kind) % KINDS.len()];
            Some((kind, 1_767_225_600, bytes))
        })
        .collect();
    writ_issuer::inputs::replay_leaves(&leaves);
});
