//! The store: changes and their audit leaves commit together, survive restarts, group
//! under concurrency, and fail closed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use writ_log::{MemoryTree, leaf_hash, verify_consistency, verify_inclusion};
use writ_store::*;

fn event(n: u64) -> Event {
    Event {
        kind: "test".into(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
        keys: vec![format!("n:{n}")],
        time: 1_700_000_000 + n as i64,
    }
}

fn human(id: &str) -> HumanRecord {
    HumanRecord {
        id: id.into(),
        display_name: id.into(),
        role: "member".into(),
        status: "active".into(),
        oidc_issuer: None,
        oidc_subject: None,
        created_at: 1,
    }
}

fn agent(jkt: &str, name: &str, owner: &str) -> AgentRecord {
    AgentRecord {
        jkt: jkt.into(),
        name: name.into(),
        owner: owner.into(),
        jwk: "{}".into(),
        tools: vec!["files/read_file".into()],
        status: "active".into(),
        status_reason: None,
        created_at: 1,
        expires_at: 2,
        last_seen: None,
    }
}

async fn expected_tree(store: &Store) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in store.leaves(0, 1_000_000).await.unwrap() {
        tree.push(leaf_hash(&leaf.data));
    }
    tree
}

#[tokio::test]
async fn changes_commit_with_their_leaves_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).await.unwrap();
        let appended = store
            .append(event(0), Write::InsertHuman(human("alice")))
            .await
            .unwrap();
        assert_eq!(appended.index, 0);
        store
            .append(event(1), Write::InsertAgent(agent("jkt-1", "bot", "alice")))
            .await
            .unwrap();
        for n in 2..23 {
            store.append(event(n), Write::Nothing).await.unwrap();
        }
        assert_eq!(store.tree_head().size, 23);
        assert_eq!(store.agent("jkt-1").unwrap().owner, "alice");
    }
    let store = Store::open(dir.path()).await.unwrap();
    let head = store.tree_head();
    assert_eq!(head.size, 23);
    assert_eq!(store.human("alice").unwrap().status, "active");
    // Appends after the restart continue the same tree.
    for n in 23..40 {
        assert_eq!(
            store.append(event(n), Write::Nothing).await.unwrap().index,
            n
        );
    }
    let expected = expected_tree(&store).await;
    assert_eq!(store.tree_head().root, expected.root(40).unwrap());
    assert_eq!(store.root(23).await.unwrap(), head.root);
    for index in [0, 7, 22, 39] {
        let proof = store.inclusion_proof(index, 40).await.unwrap();
        let leaf = store.leaf(index).await.unwrap().unwrap();
        verify_inclusion(
            &leaf_hash(&leaf.data),
            index,
            40,
            &proof,
            &store.tree_head().root,
        )
        .unwrap();
    }
    let proof = store.consistency_proof(23, 40).await.unwrap();
    verify_consistency(23, 40, &head.root, &store.tree_head().root, &proof).unwrap();
    assert_eq!(store.lookup("n:7").await.unwrap(), vec![7]);
    assert!(store.inclusion_proof(0, 41).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_share_commits_and_a_refused_one_spoils_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store
        .append(event(0), Write::InsertHuman(human("alice")))
        .await
        .unwrap();
    store
        .append(event(1), Write::InsertAgent(agent("jkt-1", "bot", "alice")))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 2..202 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Every tenth change registers an agent under a name already taken; every
            // other one records that the agent obtained a writ.
            let write = if n % 10 == 0 {
                Write::InsertAgent(agent(&format!("jkt-{n}"), "bot", "alice"))
            } else if n % 2 == 1 {
                Write::AgentSeen {
                    jkt: "jkt-1".into(),
                }
            } else {
                Write::Nothing
            };
            store.append(event(n), write).await
        }));
    }
    let mut indices = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(appended) => indices.push(appended.index),
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(conflicts, 20);
    indices.sort_unstable();
    assert_eq!(
        indices,
        (2..182).collect::<Vec<u64>>(),
        "refused changes take no leaf"
    );
    let head = store.tree_head();
    assert_eq!(head.size, 182);
    assert_eq!(head.root, expected_tree(&store).await.root(182).unwrap());
    assert_eq!(
        store.agents().len(),
        1,
        "refused agents never enter the view"
    );
    // The latest sighting wins, in memory and on disk.
    let last_seen = event(201).time;
    assert_eq!(store.agent("jkt-1").unwrap().last_seen, Some(last_seen));
    drop(store);
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.agent("jkt-1").unwrap().last_seen, Some(last_seen));
    assert_eq!(store.agent_by_name("bot").unwrap().jkt, "jkt-1");
}

#[tokio::test]
async fn one_process_at_a_time_owns_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let error = Store::open(dir.path()).await.unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    drop(store);
    Store::open(dir.path()).await.unwrap();
}

#[tokio::test]
async fn revocations_feed_in_order_and_subjects_are_revoked_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let revoke = |kind: &str, subject: &str| RevocationRecord {
        seq: 0,
        kind: kind.into(),
        subject: subject.into(),
        reason: "test".into(),
        created_at: 5,
        log_index: 0,
    };
    let first = store
        .append(
            event(0),
            Write::Revoke(vec![revoke("mandate", "m1"), revoke("mandate", "m2")]),
        )
        .await
        .unwrap();
    assert_eq!(first.revocations, vec![Some(1), Some(2)]);
    let again = store
        .append(
            event(1),
            Write::Revoke(vec![revoke("mandate", "m2"), revoke("agent", "a1")]),
        )
        .await
        .unwrap();
    assert_eq!(
        again.revocations,
        vec![None, Some(3)],
        "m2 was already revoked"
    );
    assert!(store.is_revoked("mandate", "m1"));
    assert!(!store.is_revoked("mandate", "m3"));
    let feed = store.revocations_since(1, 10).await.unwrap();
    assert_eq!(feed.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(feed[1].log_index, 1);
    drop(store);
    let store = Store::open(dir.path()).await.unwrap();
    assert!(
        store.is_revoked("agent", "a1"),
        "revocations survive a restart"
    );
    assert!(!store.is_revoked("agent", "m1"), "kinds are kept apart");
}

#[tokio::test]
async fn a_full_store_refuses_changes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_database_bytes: Some(256 * 1024),
    };
    let store = Store::open_with(dir.path(), options).await.unwrap();
    let big = |n: u64| Event {
        data: vec![b'x'; 16 * 1024],
        ..event(n)
    };
    let mut failure = None;
    for n in 0..100 {
        match store.append(big(n), Write::Nothing).await {
            Ok(_) => {}
            Err(error) => {
                failure = Some((n, error));
                break;
            }
        }
    }
    let (n, error) = failure.expect("the quota stops appends");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains("full"), "{error}");
    let head = store.tree_head();
    assert_eq!(head.size, n, "the failed append left no leaf");
    assert!(store.leaf(n).await.unwrap().is_none());
    assert_eq!(head.root, expected_tree(&store).await.root(n).unwrap());
    // Still refusing, still consistent, and nothing refused is visible.
    assert!(store.append(big(n), Write::Nothing).await.is_err());
    let bob = Event {
        data: vec![b'x'; 16 * 1024],
        ..event(n)
    };
    assert!(
        store
            .append(bob, Write::InsertHuman(human("bob")))
            .await
            .is_err()
    );
    assert!(store.human("bob").is_none());
    assert_eq!(store.tree_head(), head);
}

/// A writer connection whose commits fail while `fail` is set, as a lost disk would.
struct FlakyWriter {
    inner: SqliteWriter,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LogWriter for FlakyWriter {
    fn snapshot(&mut self) -> StoreFuture<'_, Snapshot> {
        self.inner.snapshot()
    }
    fn next_index(&mut self) -> StoreFuture<'_, u64> {
        self.inner.next_index()
    }
    fn node(&mut self, level: u32, index: u64) -> StoreFuture<'_, writ_log::Hash> {
        self.inner.node(level, index)
    }
    fn begin(&mut self) -> StoreFuture<'_, ()> {
        self.inner.begin()
    }
    fn apply<'a>(&'a mut self, write: &'a Write, index: u64) -> StoreFuture<'a, Vec<Option<i64>>> {
        self.inner.apply(write, index)
    }
    fn append_rows<'a>(&'a mut self, rows: &'a LogRows) -> StoreFuture<'a, ()> {
        self.inner.append_rows(rows)
    }
    fn checkpoint<'a>(&'a mut self, size: u64, note: &'a str, time: i64) -> StoreFuture<'a, ()> {
        self.inner.checkpoint(size, note, time)
    }
    fn commit(&mut self) -> StoreFuture<'_, ()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("disk I/O error".into())) });
        }
        self.inner.commit()
    }
    fn rollback(&mut self) -> futures_core::future::BoxFuture<'_, ()> {
        self.inner.rollback()
    }
}

#[tokio::test]
async fn a_backend_that_cannot_commit_refuses_the_change_and_the_view_keeps_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, writer) = SqliteBackend::open(dir.path(), StoreOptions::default())
        .await
        .unwrap();
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = FlakyWriter {
        inner: writer,
        fail: fail.clone(),
    };
    let store = Store::start(backend, writer).await.unwrap();
    store
        .append(event(0), Write::InsertHuman(human("alice")))
        .await
        .unwrap();
    let head = store.tree_head();

    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = store
        .append(event(1), Write::InsertHuman(human("bob")))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Unavailable(cause) if cause.contains("disk I/O error")),
        "{refused:?}"
    );
    assert!(
        store.human("bob").is_none(),
        "the view took a change that was never committed"
    );
    assert_eq!(store.tree_head(), head, "the head moved without a commit");
    assert_eq!(store.leaves(0, 10).await.unwrap().len(), 1);

    // The writer carries on once the backend recovers, at the same index.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let appended = store
        .append(event(1), Write::InsertHuman(human("bob")))
        .await
        .unwrap();
    assert_eq!(appended.index, 1);
    assert!(store.human("bob").is_some());
    assert_eq!(
        store.root(2).await.unwrap(),
        expected_tree(&store).await.root(2).unwrap()
    );
}

#[tokio::test]
async fn several_changes_under_one_leaf_commit_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let revocation = |subject: &str| RevocationRecord {
        seq: 0,
        kind: "agent".into(),
        subject: subject.into(),
        reason: "retired".into(),
        created_at: 3,
        log_index: 0,
    };
    {
        let store = Store::open(dir.path()).await.unwrap();
        store
            .append(event(0), Write::InsertHuman(human("alice")))
            .await
            .unwrap();
        store
            .append(event(1), Write::InsertAgent(agent("jkt-1", "bot", "alice")))
            .await
            .unwrap();
        let retire = |jkt: &str| {
            Write::Many(vec![
                Write::SetAgentStatus {
                    jkt: jkt.into(),
                    status: "retired".into(),
                    reason: Some("done".into()),
                },
                Write::Revoke(vec![revocation(jkt)]),
            ])
        };
        let appended = store.append(event(2), retire("jkt-1")).await.unwrap();
        assert_eq!(
            appended.revocations.len(),
            1,
            "the inner revocation's sequence"
        );
        assert!(appended.revocations[0].is_some());
        // One failing part refuses the whole: no such agent, so no revocation either.
        assert!(store.append(event(3), retire("jkt-missing")).await.is_err());
        assert!(!store.is_revoked("agent", "jkt-missing"));
    }
    let store = Store::open(dir.path()).await.unwrap();
    let bot = store.agent("jkt-1").unwrap();
    assert_eq!(
        (bot.status.as_str(), bot.status_reason.as_deref()),
        ("retired", Some("done"))
    );
    assert!(store.is_revoked("agent", "jkt-1"));
    assert!(!store.is_revoked("agent", "jkt-missing"));
    assert_eq!(store.tree_head().size, 3);
}

#[tokio::test]
async fn entitlements_and_groups_commit_with_their_leaves_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let entitlement = |id: &str, subject: &str, tool: &str, label: &str| EntitlementRecord {
        id: id.into(),
        subject: subject.into(),
        tools: vec![tool.into()],
        labels: vec![label.into()],
        created_at: 5,
        created_by: "root".into(),
    };
    {
        let store = Store::open(dir.path()).await.unwrap();
        store
            .append(event(0), Write::InsertHuman(human("alice")))
            .await
            .unwrap();
        for (n, record) in [
            entitlement("ent_1", "alice", "files/read_file", "internal"),
            entitlement("ent_2", "group:finance", "crm/*", "pii"),
            entitlement("ent_3", "bob", "files/drop_table", "secret"),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .append(event(1 + n as u64), Write::InsertEntitlement(record))
                .await
                .unwrap();
        }
        let groups = |groups: &[&str]| Write::SetHumanGroups {
            id: "alice".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        store
            .append(event(4), groups(&["finance", "eng"]))
            .await
            .unwrap();
        assert_eq!(store.human_groups("alice"), ["eng", "finance"]);
        let ids: Vec<String> = store
            .entitlements_of("alice")
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(
            ids,
            ["ent_1", "ent_2"],
            "her own and her group's, not bob's"
        );
        // Refused changes change nothing.
        let unknown = Write::SetHumanGroups {
            id: "nobody".into(),
            groups: vec!["eng".into()],
        };
        assert!(matches!(
            store.append(event(5), unknown).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.human_groups("nobody").is_empty());
        let missing = Write::DeleteEntitlement { id: "ent_9".into() };
        assert!(matches!(
            store.append(event(5), missing).await,
            Err(StoreError::NotFound(_))
        ));
        store
            .append(event(5), Write::DeleteEntitlement { id: "ent_2".into() })
            .await
            .unwrap();
        store.append(event(6), groups(&["eng"])).await.unwrap();
    }
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.human_groups("alice"), ["eng"]);
    assert!(store.entitlement("ent_2").is_none());
    assert_eq!(
        store.entitlement("ent_1").unwrap(),
        entitlement("ent_1", "alice", "files/read_file", "internal")
    );
    let ids: Vec<String> = store.entitlements().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["ent_1", "ent_3"]);
    assert_eq!(store.tree_head().size, 7);
}
