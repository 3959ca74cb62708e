//! `writ audit verify` detects a changed leaf, a reordered pair and a deleted tail, and
//! trusts only the log key it is given: checkpoints signed by any other key, such as one
//! put in the data directory after the fact, do not verify.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};

use writ_issuer::{AuditError, AuditReport, Issuer, Settings};
use writ_log::NoteVerifier;

/// A data directory with a dozen leaves and a signed checkpoint over all of them, and the
/// log's verifier key as `init` gave it.
async fn log_with_checkpoint() -> (tempfile::TempDir, PathBuf, u64, NoteVerifier) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = writ_issuer::init(
        &data,
        "https://issuer.test",
        "root",
        &dir.path().join("admin.key"),
    )
    .await
    .unwrap();
    let verifier = NoteVerifier::parse(&init.log_verifier_key).unwrap();
    let issuer = Issuer::open(&data, Settings::default()).await.unwrap();
    for n in 0..10 {
        let event = writ_store::Event {
            kind: "test".into(),
            data: format!("{{\"n\":{n}}}").into_bytes(),
            keys: vec![],
            time: n,
        };
        issuer
            .store()
            .append(event, writ_store::Write::Nothing)
            .await
            .unwrap();
    }
    let size = issuer.checkpoint_now().await.unwrap();
    assert_eq!(size, 12, "two leaves from init, ten here");
    drop(issuer);
    (dir, data, size, verifier)
}

async fn verify(data: &Path, verifier: &NoteVerifier) -> Result<AuditReport, AuditError> {
    writ_issuer::verify_data_dir(data, verifier, None).await
}

async fn tamper(data: &Path, statements: &[&str]) {
    let url = format!(
        "sqlite://{}",
        data.join(writ_store::DATABASE_FILE).display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(*statement))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let (_dir, data, size, key) = log_with_checkpoint().await;
    let report = verify(&data, &key).await.unwrap();
    assert_eq!(report.leaves, size);
    assert_eq!(report.latest_checkpoint, Some(size));
    assert!(report.checkpoints >= 1);
}

#[tokio::test]
async fn a_changed_leaf_is_found() {
    let (_dir, data, _, key) = log_with_checkpoint().await;
    tamper(
        &data,
        &["UPDATE audit_leaves SET data = CAST('{\"n\":99}' AS BLOB) WHERE idx = 5"],
    )
    .await;
    match verify(&data, &key).await {
        Err(AuditError::RootMismatch { first_changed, .. }) => assert_eq!(first_changed, Some(5)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reordered_pair_is_found() {
    let (_dir, data, _, key) = log_with_checkpoint().await;
    tamper(
        &data,
        &[
            "UPDATE audit_leaves SET idx = -1 WHERE idx = 3",
            "UPDATE audit_leaves SET idx = 3 WHERE idx = 4",
            "UPDATE audit_leaves SET idx = 4 WHERE idx = -1",
        ],
    )
    .await;
    let error = verify(&data, &key).await.unwrap_err();
    assert!(
        matches!(
            error,
            AuditError::RootMismatch {
                first_changed: Some(3),
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("changed or reordered"));
}

#[tokio::test]
async fn a_deleted_tail_is_found() {
    let (_dir, data, size, key) = log_with_checkpoint().await;
    tamper(
        &data,
        &[
            "DELETE FROM audit_keys WHERE idx >= 9",
            "DELETE FROM audit_leaves WHERE idx >= 9",
        ],
    )
    .await;
    match verify(&data, &key).await {
        Err(AuditError::Truncated { checkpoint, leaves }) => {
            assert_eq!((checkpoint, leaves), (size, 9))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_forged_checkpoint_is_found() {
    let (_dir, data, _, key) = log_with_checkpoint().await;
    tamper(
        &data,
        &["UPDATE checkpoints SET note = replace(note, 'audit', 'audlt')"],
    )
    .await;
    let error = verify(&data, &key).await.unwrap_err();
    assert!(matches!(error, AuditError::BadSignature { .. }), "{error}");
}

/// Someone who can write the data directory replaces the log's key there and signs new
/// checkpoints with it (over whatever log they left behind).
#[tokio::test]
async fn checkpoints_signed_by_a_key_put_in_the_data_directory_do_not_verify() {
    let (_dir, data, _, key) = log_with_checkpoint().await;
    tamper(&data, &["DELETE FROM checkpoints"]).await;
    let log_key = data.join("keys").join("log.key");
    std::fs::remove_file(&log_key).unwrap();
    let forged = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
    writ_keystore::create(&log_key, &forged).unwrap();
    let issuer = Issuer::open(&data, Settings::default()).await.unwrap();
    issuer.checkpoint_now().await.unwrap();
    drop(issuer);

    let error = verify(&data, &key).await.unwrap_err();
    assert!(matches!(error, AuditError::BadSignature { .. }), "{error}");
    assert!(error.to_string().contains("given log key"), "{error}");
}

#[tokio::test]
async fn another_logs_key_verifies_nothing() {
    let (_dir, data, _, _) = log_with_checkpoint().await;
    let other = writ_log::NoteSigner::new(
        "issuer.test/audit",
        writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap(),
    )
    .unwrap()
    .verifier();
    let error = verify(&data, &other).await.unwrap_err();
    assert!(matches!(error, AuditError::BadSignature { .. }), "{error}");
}

#[tokio::test]
async fn a_log_with_no_signed_checkpoint_does_not_verify() {
    let (_dir, data, _, key) = log_with_checkpoint().await;
    tamper(&data, &["DELETE FROM checkpoints"]).await;
    let error = verify(&data, &key).await.unwrap_err();
    assert!(matches!(error, AuditError::Unsigned { .. }), "{error}");
}

#[tokio::test]
async fn an_earlier_checkpoint_given_must_be_a_prefix_of_the_log() {
    let (_dir, data, size, key) = log_with_checkpoint().await;
    let report = verify(&data, &key).await.unwrap();
    let root = report.latest_root.unwrap();
    let consistent = writ_issuer::verify_data_dir(&data, &key, Some((size, root)))
        .await
        .unwrap();
    assert_eq!(consistent.latest_checkpoint, Some(size));
    let error = writ_issuer::verify_data_dir(&data, &key, Some((size, [7; 32])))
        .await
        .unwrap_err();
    assert!(matches!(error, AuditError::Rewritten { .. }), "{error}");
    let error = writ_issuer::verify_data_dir(&data, &key, Some((size + 1, root)))
        .await
        .unwrap_err();
    assert!(matches!(error, AuditError::Rewritten { .. }), "{error}");
}
