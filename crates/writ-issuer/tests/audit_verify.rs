//! `writ audit verify` detects a changed leaf, a reordered pair and a deleted tail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};

use writ_issuer::{AuditError, Issuer, Settings};

/// A data directory with a dozen leaves and a signed checkpoint over all of them.
async fn log_with_checkpoint() -> (tempfile::TempDir, PathBuf, u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    writ_issuer::init(
        &data,
        "https://issuer.test",
        "root",
        &dir.path().join("admin.key"),
    )
    .await
    .unwrap();
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
    (dir, data, size)
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
    let (_dir, data, size) = log_with_checkpoint().await;
    let report = writ_issuer::verify_data_dir(&data).await.unwrap();
    assert_eq!(report.leaves, size);
    assert_eq!(report.latest_checkpoint, Some(size));
    assert!(report.checkpoints >= 1);
}

#[tokio::test]
async fn a_changed_leaf_is_found() {
    let (_dir, data, _) = log_with_checkpoint().await;
    tamper(
        &data,
        &["UPDATE audit_leaves SET data = CAST('{\"n\":99}' AS BLOB) WHERE idx = 5"],
    )
    .await;
    match writ_issuer::verify_data_dir(&data).await {
        Err(AuditError::RootMismatch { first_changed, .. }) => assert_eq!(first_changed, Some(5)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reordered_pair_is_found() {
    let (_dir, data, _) = log_with_checkpoint().await;
    tamper(
        &data,
        &[
            "UPDATE audit_leaves SET idx = -1 WHERE idx = 3",
            "UPDATE audit_leaves SET idx = 3 WHERE idx = 4",
            "UPDATE audit_leaves SET idx = 4 WHERE idx = -1",
        ],
    )
    .await;
    let error = writ_issuer::verify_data_dir(&data).await.unwrap_err();
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
    let (_dir, data, size) = log_with_checkpoint().await;
    tamper(
        &data,
        &[
            "DELETE FROM audit_keys WHERE idx >= 9",
            "DELETE FROM audit_leaves WHERE idx >= 9",
        ],
    )
    .await;
    match writ_issuer::verify_data_dir(&data).await {
        Err(AuditError::Truncated { checkpoint, leaves }) => {
            assert_eq!((checkpoint, leaves), (size, 9))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_forged_checkpoint_is_found() {
    let (_dir, data, _) = log_with_checkpoint().await;
    tamper(
        &data,
        &["UPDATE checkpoints SET note = replace(note, 'audit', 'audlt')"],
    )
    .await;
    let error = writ_issuer::verify_data_dir(&data).await.unwrap_err();
    assert!(matches!(error, AuditError::BadSignature { .. }), "{error}");
}
