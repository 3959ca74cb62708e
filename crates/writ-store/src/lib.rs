//! Writ's storage: inventory, mandates, revocations and the durable Merkle audit log.
//!
//! One data directory holds one SQLite database (WAL, `synchronous=FULL`). All changes go
//! through a single writer task, and every change is an audit-log leaf plus its effect,
//! committed in one transaction: there is no change without its audit record, and no record
//! without its change. Concurrent changes queue while a commit is in flight and then share
//! the next transaction and its one fsync (group commit); [`Store::append`] returns only
//! after the commit is durable.
//!
//! Fail closed: when a commit fails (disk full, read-only file system, corruption), every
//! change in it is refused with [`StoreError::Unavailable`] and nothing is applied.
//!
//! The inventory and the revoked subjects are also held in memory (updated by the writer
//! before a commit is acknowledged), so an issuance reads nothing from the database. That
//! is sound because one process owns a data directory at a time (`writ.lock`). Other reads
//! use a separate connection pool. The schema and SQL keep to what SQLite and
//! PostgreSQL share (`$n` placeholders, `ON CONFLICT`, `RETURNING`), with migrations in
//! `migrations/sqlite`.

macro_rules! agent_select {
    ($tail:literal) => {
        concat!(
            "SELECT jkt, name, owner, jwk, tools, status, status_reason, created_at, expires_at, last_seen FROM agents",
            $tail
        )
    };
}

mod records;
mod view;
mod writer;

use std::path::Path;
use std::str::FromStr as _;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot, watch};
use writ_log::{Hash, Nodes};

pub use records::{
    AgentRecord, GatewayRecord, HumanKeyRecord, HumanRecord, LeafRecord, MandateRecord,
    ProviderRecord, RevocationRecord, ToolRecord,
};
pub use writer::{Appended, Event, TreeHead, Write};

use view::View;
use writer::{Job, Writer, fetch_node, to_i64, to_u64};

/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "writ.db";

/// A store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes or answer reads (disk full, read-only, locked, closed).
    /// Writ refuses whatever needed it.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Something with that name or id already exists. The caller's fault.
    #[error("already exists: {0}")]
    Conflict(String),
    /// What the change refers to does not exist. The caller's fault.
    #[error("not found: {0}")]
    NotFound(String),
    /// The change refers to something missing (a foreign key). The caller's fault.
    #[error("invalid reference: {0}")]
    Invalid(String),
    /// The stored data is inconsistent; an operator must look.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Invalid(db.message().to_owned())
            }
            sqlx::Error::Database(db) if db.is_check_violation() => {
                StoreError::Invalid(db.message().to_owned())
            }
            _ => StoreError::Unavailable(error.to_string()),
        }
    }
}

/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "writ.lock";

/// How long opening a store waits for the data directory's lock: the writer of a store
/// just closed in this process releases it once its queue has drained.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the data directory's lock: one writer at a time owns a store, because it keeps
/// the log's frontier and the inventory in memory.
async fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, StoreError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| StoreError::Unavailable(format!("{}: {error}", path.display())))?;
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Unavailable(format!(
                    "`{}` is in use by another process (a running issuer?)",
                    data_dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(StoreError::Unavailable(format!(
                    "{}: {error}",
                    path.display()
                )));
            }
        }
    }
}

/// A handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    writer: mpsc::Sender<Job>,
    head: watch::Receiver<TreeHead>,
    view: Arc<RwLock<View>>,
}

/// How to open a store.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// A quota on the database size. Once reached, every change is refused (fail closed)
    /// until an operator frees space or raises the quota. Unlimited when `None`.
    pub max_database_bytes: Option<u64>,
}

/// SQLite's default page size; the quota is enforced in pages.
const PAGE_SIZE: u64 = 4096;

impl Store {
    /// Opens (creating if needed) the database in `data_dir`, runs migrations and starts
    /// the writer.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, StoreOptions::default()).await
    }

    /// [`Store::open`] with options.
    pub async fn open_with(
        data_dir: &Path,
        store_options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let lock = lock_data_dir(data_dir).await?;
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::from)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|error| StoreError::Unavailable(format!("migrations: {error}")))?;
        let writer_options = match store_options.max_database_bytes {
            Some(bytes) => options.pragma("max_page_count", (bytes / PAGE_SIZE).max(1).to_string()),
            None => options,
        };
        let mut conn = writer::open_writer_connection(&writer_options).await?;
        let view = Arc::new(RwLock::new(View::load(&mut conn).await?));
        let (writer, head) = Writer::start(conn, Arc::clone(&view), lock).await?;
        Ok(Store {
            pool,
            writer,
            head,
            view,
        })
    }

    /// Appends `event` and applies `write` in the same transaction; returns once durable.
    pub async fn append(&self, event: Event, write: Write) -> Result<Appended, StoreError> {
        let (reply, response) = oneshot::channel();
        self.writer
            .send(Job::Append {
                event,
                write: Box::new(write),
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        response
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    /// Stores a signed checkpoint note for tree size `size`.
    pub async fn put_checkpoint(
        &self,
        size: u64,
        note: String,
        time: i64,
    ) -> Result<(), StoreError> {
        let (reply, response) = oneshot::channel();
        self.writer
            .send(Job::Checkpoint {
                size,
                note,
                time,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        response
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    /// The log's size and root after the last commit.
    pub fn tree_head(&self) -> TreeHead {
        *self.head.borrow()
    }

    // ---- inventory, from memory ------------------------------------------------------

    fn view(&self) -> RwLockReadGuard<'_, View> {
        // The writer applies plain map updates that cannot panic halfway; a poisoned lock
        // still holds a whole view.
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A human by id.
    pub fn human(&self, id: &str) -> Option<HumanRecord> {
        self.view().human(id).cloned()
    }

    /// All humans, by id.
    pub fn humans(&self) -> Vec<HumanRecord> {
        let mut humans: Vec<HumanRecord> = self.view().humans().cloned().collect();
        humans.sort_by(|a, b| a.id.cmp(&b.id));
        humans
    }

    /// The human registered with this OIDC issuer and subject.
    pub fn human_by_oidc(&self, issuer: &str, subject: &str) -> Option<HumanRecord> {
        self.view().human_by_oidc(issuer, subject).cloned()
    }

    /// The human a key belongs to.
    pub fn human_by_key(&self, jkt: &str) -> Option<HumanRecord> {
        self.view().human_by_key(jkt).cloned()
    }

    /// An agent by key thumbprint.
    pub fn agent(&self, jkt: &str) -> Option<AgentRecord> {
        self.view().agent(jkt).cloned()
    }

    /// An agent by name.
    pub fn agent_by_name(&self, name: &str) -> Option<AgentRecord> {
        self.view().agent_by_name(name).cloned()
    }

    /// All agents, by name.
    pub fn agents(&self) -> Vec<AgentRecord> {
        let mut agents: Vec<AgentRecord> = self.view().agents().cloned().collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents
    }

    /// A tool by provider and name.
    pub fn tool(&self, server: &str, name: &str) -> Option<ToolRecord> {
        self.view().tool(server, name).cloned()
    }

    /// A gateway by key thumbprint.
    pub fn gateway(&self, jkt: &str) -> Option<GatewayRecord> {
        self.view().gateway(jkt).cloned()
    }

    /// All gateways, by name.
    pub fn gateways(&self) -> Vec<GatewayRecord> {
        let mut gateways: Vec<GatewayRecord> = self.view().gateways().cloned().collect();
        gateways.sort_by(|a, b| a.name.cmp(&b.name));
        gateways
    }

    /// Whether any gateway serves `audience`.
    pub fn audience_known(&self, audience: &str) -> bool {
        self.view().audience_known(audience)
    }

    /// Whether `subject` of `kind` is revoked.
    pub fn is_revoked(&self, kind: &str, subject: &str) -> bool {
        self.view().is_revoked(kind, subject)
    }

    /// The mandate a delegated mandate came from; `None` for a mandate a human granted.
    pub fn mandate_parent(&self, id: &str) -> Option<String> {
        self.view().parent(id).map(str::to_owned)
    }

    /// All tool providers with their tools, by name.
    pub async fn providers(&self) -> Result<Vec<(ProviderRecord, Vec<ToolRecord>)>, StoreError> {
        let providers: Vec<(String, String, Option<String>, i64)> =
            sqlx::query_as("SELECT name, kind, url, created_at FROM tool_providers ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        let tools: Vec<(String, String, String)> =
            sqlx::query_as("SELECT server, name, labels FROM tools ORDER BY server, name")
                .fetch_all(&self.pool)
                .await?;
        providers
            .into_iter()
            .map(|(name, kind, url, created_at)| {
                let tools = tools
                    .iter()
                    .filter(|(server, _, _)| *server == name)
                    .map(|(server, tool, labels)| {
                        Ok(ToolRecord {
                            server: server.clone(),
                            name: tool.clone(),
                            labels: parse_list(labels)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok((
                    ProviderRecord {
                        name,
                        kind,
                        url,
                        created_at,
                    },
                    tools,
                ))
            })
            .collect()
    }

    // ---- mandates and revocation --------------------------------------------------------

    /// A mandate by id.
    pub async fn mandate(&self, id: &str) -> Result<Option<MandateRecord>, StoreError> {
        let row: Option<MandateRow> = sqlx::query_as(MANDATE_SELECT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(MandateRow::into_record))
    }

    /// The ids of a mandate and every mandate delegated from it, transitively.
    pub async fn mandate_subtree(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "WITH RECURSIVE tree(id) AS (SELECT id FROM mandates WHERE id = $1 \
             UNION SELECT m.id FROM mandates m JOIN tree t ON m.parent = t.id) SELECT id FROM tree",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The ids of mandates a human granted, or that an agent holds.
    pub async fn mandates_of(
        &self,
        human: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM mandates WHERE ($1 IS NULL OR human_id = $1) AND ($2 IS NULL OR agent_jkt = $2) ORDER BY created_at",
        )
        .bind(human)
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Revocations after `seq`, in order, at most `limit`.
    pub async fn revocations_since(
        &self,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<RevocationRecord>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT seq, kind, subject, reason, created_at, log_index FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(seq, kind, subject, reason, created_at, log_index)| RevocationRecord {
                    seq,
                    kind,
                    subject,
                    reason,
                    created_at,
                    log_index,
                },
            )
            .collect())
    }

    // ---- audit log ----------------------------------------------------------------------

    /// The leaf at `index`.
    pub async fn leaf(&self, index: u64) -> Result<Option<LeafRecord>, StoreError> {
        let row: Option<(i64, String, Vec<u8>, i64)> =
            sqlx::query_as("SELECT idx, kind, data, created_at FROM audit_leaves WHERE idx = $1")
                .bind(to_i64(index)?)
                .fetch_optional(&self.pool)
                .await?;
        row.map(leaf_record).transpose()
    }

    /// Leaves from `start`, in order, at most `limit`.
    pub async fn leaves(&self, start: u64, limit: u32) -> Result<Vec<LeafRecord>, StoreError> {
        let rows: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT idx, kind, data, created_at FROM audit_leaves WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(to_i64(start)?)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(leaf_record).collect()
    }

    /// The indices of the leaves recorded under `key`, in order.
    pub async fn lookup(&self, key: &str) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT idx FROM audit_keys WHERE key = $1 ORDER BY idx")
                .bind(key)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(idx,)| to_u64(idx, "index"))
            .collect()
    }

    /// The leaf hash the writer recorded for leaf `index` (its level-0 Merkle node).
    pub async fn leaf_node(&self, index: u64) -> Result<Hash, StoreError> {
        fetch_node(&self.pool, 0, index).await
    }

    /// The root of the first `size` leaves.
    pub async fn root(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_size(size)?;
        self.with_nodes(|nodes| writ_log::root(nodes, size)).await
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(size)?;
        self.with_nodes(|nodes| writ_log::inclusion_proof(nodes, index, size))
            .await
    }

    /// The consistency proof from size `old` to size `new`.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_size(new)?;
        self.with_nodes(|nodes| writ_log::consistency_proof(nodes, old, new))
            .await
    }

    /// The newest checkpoint note, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(size, note)| Ok((to_u64(size, "checkpoint size")?, note)))
            .transpose()
    }

    /// Every stored checkpoint note, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(size, note)| Ok((to_u64(size, "checkpoint size")?, note)))
            .collect()
    }

    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        if size > self.tree_head().size {
            return Err(StoreError::NotFound(format!(
                "the log has {} leaves, not {size}",
                self.tree_head().size
            )));
        }
        Ok(())
    }

    /// Runs a tree computation in two passes: one to learn which nodes it reads (they do
    /// not depend on hash values), then one over those nodes fetched from the database.
    async fn with_nodes<T>(
        &self,
        compute: impl Fn(&dyn NodeMap) -> Result<T, writ_log::TreeError>,
    ) -> Result<T, StoreError> {
        let recorder = Recorder::default();
        compute(&recorder).map_err(|error| StoreError::NotFound(error.to_string()))?;
        let mut fetched = Fetched::default();
        for (level, index) in recorder.0.into_inner() {
            let hash = fetch_node(&self.pool, level, index).await?;
            fetched.0.insert((level, index), hash);
        }
        compute(&fetched).map_err(|error| StoreError::Corrupt(error.to_string()))
    }
}

/// Object-safe node access for the two passes of [`Store::with_nodes`].
trait NodeMap {
    fn get(&self, level: u32, index: u64) -> Option<Hash>;
}

impl Nodes for dyn NodeMap + '_ {
    type Error = MissingNode;
    fn node(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.get(level, index).ok_or(MissingNode)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("node missing")]
struct MissingNode;

#[derive(Default)]
struct Recorder(std::cell::RefCell<Vec<(u32, u64)>>);

impl NodeMap for Recorder {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        self.0.borrow_mut().push((level, index));
        Some([0; 32])
    }
}

#[derive(Default)]
struct Fetched(std::collections::HashMap<(u32, u64), Hash>);

impl NodeMap for Fetched {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        self.0.get(&(level, index)).copied()
    }
}

fn parse_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("stored list: {error}")))
}

fn leaf_record(
    (idx, kind, data, created_at): (i64, String, Vec<u8>, i64),
) -> Result<LeafRecord, StoreError> {
    Ok(LeafRecord {
        index: to_u64(idx, "index")?,
        kind,
        data,
        created_at,
    })
}

const HUMAN_SELECT: &str =
    "SELECT id, display_name, role, status, oidc_issuer, oidc_subject, created_at FROM humans";
const MANDATE_SELECT_BY_ID: &str = "SELECT id, human_id, agent_jkt, parent, depth, expires_at, task_digest, task_text, created_at, log_index FROM mandates WHERE id = $1";

#[derive(sqlx::FromRow)]
struct HumanRow {
    id: String,
    display_name: String,
    role: String,
    status: String,
    oidc_issuer: Option<String>,
    oidc_subject: Option<String>,
    created_at: i64,
}

impl HumanRow {
    fn into_record(self) -> HumanRecord {
        HumanRecord {
            id: self.id,
            display_name: self.display_name,
            role: self.role,
            status: self.status,
            oidc_issuer: self.oidc_issuer,
            oidc_subject: self.oidc_subject,
            created_at: self.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    jkt: String,
    name: String,
    owner: String,
    jwk: String,
    tools: String,
    status: String,
    status_reason: Option<String>,
    created_at: i64,
    expires_at: i64,
    last_seen: Option<i64>,
}

impl AgentRow {
    fn into_record(self) -> Result<AgentRecord, StoreError> {
        Ok(AgentRecord {
            tools: parse_list(&self.tools)?,
            jkt: self.jkt,
            name: self.name,
            owner: self.owner,
            jwk: self.jwk,
            status: self.status,
            status_reason: self.status_reason,
            created_at: self.created_at,
            expires_at: self.expires_at,
            last_seen: self.last_seen,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MandateRow {
    id: String,
    human_id: String,
    agent_jkt: String,
    parent: Option<String>,
    depth: i64,
    expires_at: i64,
    task_digest: String,
    task_text: Option<String>,
    created_at: i64,
    log_index: i64,
}

impl MandateRow {
    fn into_record(self) -> MandateRecord {
        MandateRecord {
            id: self.id,
            human_id: self.human_id,
            agent_jkt: self.agent_jkt,
            parent: self.parent,
            depth: self.depth,
            expires_at: self.expires_at,
            task_digest: self.task_digest,
            task_text: self.task_text,
            created_at: self.created_at,
            log_index: self.log_index,
        }
    }
}

/// The log rebuilt from its stored leaves alone, ignoring the stored Merkle nodes: for
/// `writ audit verify` on a data directory. A gap in the leaf indices is corruption.
pub async fn recompute_tree(store: &Store) -> Result<writ_log::MemoryTree, StoreError> {
    let mut tree = writ_log::MemoryTree::new();
    let mut start = 0;
    loop {
        let batch = store.leaves(start, 10_000).await?;
        let Some(last) = batch.last() else { break };
        start = last.index + 1;
        for leaf in batch {
            if leaf.index != tree.size() {
                return Err(StoreError::Corrupt(format!(
                    "leaf {} is missing: the log jumps to {}",
                    tree.size(),
                    leaf.index
                )));
            }
            tree.push(writ_log::leaf_hash(&leaf.data));
        }
    }
    Ok(tree)
}
