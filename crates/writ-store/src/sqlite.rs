//! The embedded backend: one SQLite database in the data directory (WAL,
//! `synchronous=FULL`), locked by `writ.lock` for as long as its writer runs.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use futures_core::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, QueryBuilder, Sqlite, SqliteConnection};
use writ_log::Hash;

use crate::backend::{Backend, LogRows, LogWriter, Snapshot, StoreFuture};
use crate::records::{
    AgentRecord, EntitlementRecord, GatewayRecord, HumanRecord, LeafRecord, MandateRecord,
    ProviderRecord, RevocationRecord, ToolRecord,
};
use crate::writer::Write;
use crate::{StoreError, StoreOptions, to_i64, to_u64};

/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "writ.db";

/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "writ.lock";

/// How long opening a store waits for the data directory's lock: the writer of a store
/// just closed in this process releases it once its queue has drained.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// SQLite's default page size; the quota is enforced in pages.
const PAGE_SIZE: u64 = 4096;

/// Rows per multi-row `INSERT`, well under SQLite's limit on bound parameters.
const ROWS_PER_STATEMENT: usize = 1000;

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

/// Reads from the SQLite database in a data directory, through a small connection pool.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
}

/// The writer's own connection to the SQLite database, holding the data directory's lock.
#[derive(Debug)]
pub struct SqliteWriter {
    conn: SqliteConnection,
    /// Held for as long as the writer runs.
    _lock: std::fs::File,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database in `data_dir`, takes its lock and runs the
    /// migrations. The lock passes to the writer.
    pub async fn open(
        data_dir: &Path,
        store_options: StoreOptions,
    ) -> Result<(SqliteBackend, SqliteWriter), StoreError> {
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
        let conn = SqliteConnection::connect_with(&writer_options).await?;
        Ok((SqliteBackend { pool }, SqliteWriter { conn, _lock: lock }))
    }
}

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

impl Backend for SqliteBackend {
    fn providers(&self) -> StoreFuture<'_, Vec<(ProviderRecord, Vec<ToolRecord>)>> {
        Box::pin(async move {
            let providers: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
                "SELECT name, kind, url, created_at FROM tool_providers ORDER BY name",
            )
            .fetch_all(&self.pool)
            .await?;
            let tools = tool_rows(&self.pool).await?;
            Ok(providers
                .into_iter()
                .map(|(name, kind, url, created_at)| {
                    let tools = tools
                        .iter()
                        .filter(|tool| tool.server == name)
                        .cloned()
                        .collect();
                    let provider = ProviderRecord {
                        name,
                        kind,
                        url,
                        created_at,
                    };
                    (provider, tools)
                })
                .collect())
        })
    }

    fn mandate<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<MandateRecord>> {
        Box::pin(async move {
            let row: Option<MandateRow> = sqlx::query_as(
                "SELECT id, human_id, agent_jkt, parent, depth, expires_at, task_digest, task_text, grants, created_at, log_index FROM mandates WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(MandateRow::into_record))
        })
    }

    fn mandate_subtree<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let rows: Vec<(String,)> = sqlx::query_as(
                "WITH RECURSIVE tree(id) AS (SELECT id FROM mandates WHERE id = $1 \
                 UNION SELECT m.id FROM mandates m JOIN tree t ON m.parent = t.id) SELECT id FROM tree",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
    }

    fn mandates_of<'a>(
        &'a self,
        human: Option<&'a str>,
        agent: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT id FROM mandates WHERE ($1 IS NULL OR human_id = $1) AND ($2 IS NULL OR agent_jkt = $2) ORDER BY created_at",
            )
            .bind(human)
            .bind(agent)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
    }

    fn revocations_since(&self, seq: i64, limit: u32) -> StoreFuture<'_, Vec<RevocationRecord>> {
        Box::pin(async move {
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
        })
    }

    fn revocation_head(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let (head,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM revocations")
                .fetch_one(&self.pool)
                .await?;
            Ok(head)
        })
    }

    fn leaves(&self, start: u64, limit: u32) -> StoreFuture<'_, Vec<LeafRecord>> {
        Box::pin(async move {
            let rows: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
                "SELECT idx, kind, data, created_at FROM audit_leaves WHERE idx >= $1 ORDER BY idx LIMIT $2",
            )
            .bind(to_i64(start)?)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(idx, kind, data, created_at)| {
                    Ok(LeafRecord {
                        index: to_u64(idx, "index")?,
                        kind,
                        data,
                        created_at,
                    })
                })
                .collect()
        })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<u64>> {
        Box::pin(async move {
            let rows: Vec<(i64,)> =
                sqlx::query_as("SELECT idx FROM audit_keys WHERE key = $1 ORDER BY idx")
                    .bind(key)
                    .fetch_all(&self.pool)
                    .await?;
            rows.into_iter()
                .map(|(idx,)| to_u64(idx, "index"))
                .collect()
        })
    }

    fn node(&self, level: u32, index: u64) -> StoreFuture<'_, Hash> {
        Box::pin(fetch_node(&self.pool, level, index))
    }

    fn checkpoints(&self, latest_only: bool) -> StoreFuture<'_, Vec<(u64, String)>> {
        Box::pin(async move {
            let query = if latest_only {
                "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            } else {
                "SELECT size, note FROM checkpoints ORDER BY size"
            };
            let rows: Vec<(i64, String)> = sqlx::query_as(query).fetch_all(&self.pool).await?;
            rows.into_iter()
                .map(|(size, note)| Ok((to_u64(size, "checkpoint size")?, note)))
                .collect()
        })
    }
}

impl LogWriter for SqliteWriter {
    fn snapshot(&mut self) -> StoreFuture<'_, Snapshot> {
        Box::pin(async move {
            let conn = &mut self.conn;
            let humans: Vec<HumanRow> = sqlx::query_as(
                "SELECT id, display_name, role, status, oidc_issuer, oidc_subject, created_at FROM humans",
            )
            .fetch_all(&mut *conn)
            .await?;
            let human_keys = sqlx::query_as("SELECT jkt, human_id FROM human_keys")
                .fetch_all(&mut *conn)
                .await?;
            let agents: Vec<AgentRow> = sqlx::query_as(
                "SELECT jkt, name, owner, jwk, tools, status, status_reason, created_at, expires_at, last_seen FROM agents",
            )
            .fetch_all(&mut *conn)
            .await?;
            let gateways: Vec<(String, String, String, String, String, i64)> =
                sqlx::query_as("SELECT jkt, name, audience, jwk, status, created_at FROM gateways")
                    .fetch_all(&mut *conn)
                    .await?;
            let tools = tool_rows(&mut *conn).await?;
            let revoked = sqlx::query_as("SELECT kind, subject FROM revocations")
                .fetch_all(&mut *conn)
                .await?;
            let mandate_parents =
                sqlx::query_as("SELECT id, parent FROM mandates WHERE parent IS NOT NULL")
                    .fetch_all(&mut *conn)
                    .await?;
            let entitlements: Vec<EntitlementRow> = sqlx::query_as(
                "SELECT id, subject, tools, labels, created_at, created_by FROM entitlements",
            )
            .fetch_all(&mut *conn)
            .await?;
            let human_groups = sqlx::query_as("SELECT human_id, group_name FROM human_groups")
                .fetch_all(&mut *conn)
                .await?;
            Ok(Snapshot {
                humans: humans.into_iter().map(HumanRow::into_record).collect(),
                human_keys,
                agents: agents
                    .into_iter()
                    .map(AgentRow::into_record)
                    .collect::<Result<_, _>>()?,
                gateways: gateways
                    .into_iter()
                    .map(
                        |(jkt, name, audience, jwk, status, created_at)| GatewayRecord {
                            jkt,
                            name,
                            audience,
                            jwk,
                            status,
                            created_at,
                        },
                    )
                    .collect(),
                tools,
                revoked,
                mandate_parents,
                entitlements: entitlements
                    .into_iter()
                    .map(EntitlementRow::into_record)
                    .collect::<Result<_, _>>()?,
                human_groups,
            })
        })
    }

    fn next_index(&mut self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            // By primary key rather than by counting the whole log; a gap below it is for
            // `recompute_tree` to report.
            let (size,): (i64,) =
                sqlx::query_as("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_leaves")
                    .fetch_one(&mut self.conn)
                    .await?;
            to_u64(size, "log size")
        })
    }

    fn node(&mut self, level: u32, index: u64) -> StoreFuture<'_, Hash> {
        Box::pin(fetch_node(&mut self.conn, level, index))
    }

    fn begin(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut self.conn)
                .await?;
            Ok(())
        })
    }

    fn apply<'a>(
        &'a mut self,
        write: &'a Write,
        log_index: u64,
    ) -> StoreFuture<'a, Vec<Option<i64>>> {
        Box::pin(async move {
            let log_index = to_i64(log_index)?;
            sqlx::query("SAVEPOINT change")
                .execute(&mut self.conn)
                .await?;
            match apply_write(&mut self.conn, write, log_index).await {
                Ok(revocations) => {
                    sqlx::query("RELEASE change")
                        .execute(&mut self.conn)
                        .await?;
                    Ok(revocations)
                }
                Err(error) => {
                    // Undo this change only. If even that fails, the transaction is lost:
                    // report the cause as a storage failure so the batch is refused.
                    let undone = sqlx::query("ROLLBACK TO change")
                        .execute(&mut self.conn)
                        .await;
                    let released = sqlx::query("RELEASE change").execute(&mut self.conn).await;
                    match (undone, released) {
                        (Ok(_), Ok(_)) => Err(error),
                        _ => Err(StoreError::Unavailable(error.to_string())),
                    }
                }
            }
        })
    }

    fn append_rows<'a>(&'a mut self, rows: &'a LogRows) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut leaves = Vec::with_capacity(rows.leaves.len());
            for leaf in &rows.leaves {
                leaves.push((to_i64(leaf.index)?, leaf));
            }
            for chunk in leaves.chunks(ROWS_PER_STATEMENT) {
                QueryBuilder::<Sqlite>::new(
                    "INSERT INTO audit_leaves (idx, kind, data, created_at) ",
                )
                .push_values(chunk, |mut row, (idx, leaf)| {
                    row.push_bind(*idx)
                        .push_bind(leaf.kind.as_str())
                        .push_bind(leaf.data.as_slice())
                        .push_bind(leaf.created_at);
                })
                .build()
                .persistent(false)
                .execute(&mut self.conn)
                .await?;
            }
            let mut keys = Vec::with_capacity(rows.keys.len());
            for (key, idx) in &rows.keys {
                keys.push((key.as_str(), to_i64(*idx)?));
            }
            for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                QueryBuilder::<Sqlite>::new("INSERT INTO audit_keys (key, idx) ")
                    .push_values(chunk, |mut row, (key, idx)| {
                        row.push_bind(*key).push_bind(*idx);
                    })
                    .push(" ON CONFLICT DO NOTHING")
                    .build()
                    .persistent(false)
                    .execute(&mut self.conn)
                    .await?;
            }
            let mut nodes = Vec::with_capacity(rows.nodes.len());
            for (level, idx, hash) in &rows.nodes {
                nodes.push((i64::from(*level), to_i64(*idx)?, hash));
            }
            for chunk in nodes.chunks(ROWS_PER_STATEMENT) {
                QueryBuilder::<Sqlite>::new("INSERT INTO merkle_nodes (level, idx, hash) ")
                    .push_values(chunk, |mut row, (level, idx, hash)| {
                        row.push_bind(*level)
                            .push_bind(*idx)
                            .push_bind(hash.as_slice());
                    })
                    .build()
                    .persistent(false)
                    .execute(&mut self.conn)
                    .await?;
            }
            for (jkt, time) in &rows.seen {
                sqlx::query("UPDATE agents SET last_seen = $1 WHERE jkt = $2 AND (last_seen IS NULL OR last_seen < $1)")
                    .bind(time)
                    .bind(jkt)
                    .execute(&mut self.conn)
                    .await?;
            }
            Ok(())
        })
    }

    fn checkpoint<'a>(&'a mut self, size: u64, note: &'a str, time: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("INSERT INTO checkpoints (size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(to_i64(size)?)
                .bind(note)
                .bind(time)
                .execute(&mut self.conn)
                .await?;
            Ok(())
        })
    }

    fn commit(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("COMMIT").execute(&mut self.conn).await?;
            Ok(())
        })
    }

    fn rollback(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // There may be no transaction to roll back; the error says only that.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        })
    }
}

async fn fetch_node<'c, E>(executor: E, level: u32, index: u64) -> Result<Hash, StoreError>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    let row: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2")
            .bind(i64::from(level))
            .bind(to_i64(index)?)
            .fetch_optional(executor)
            .await?;
    row.and_then(|(bytes,)| Hash::try_from(bytes).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("Merkle node ({level}, {index}) missing")))
}

/// Every tool, by provider and name.
async fn tool_rows<'c, E>(executor: E) -> Result<Vec<ToolRecord>, StoreError>
where
    E: sqlx::Executor<'c, Database = Sqlite>,
{
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT server, name, labels FROM tools ORDER BY server, name")
            .fetch_all(executor)
            .await?;
    rows.into_iter()
        .map(|(server, name, labels)| {
            Ok(ToolRecord {
                server,
                name,
                labels: parse_list(&labels)?,
            })
        })
        .collect()
}

fn parse_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("stored list: {error}")))
}

fn json_list(values: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(values).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// Applies one change; for revocations, returns each record's new sequence number.
async fn apply_write(
    conn: &mut SqliteConnection,
    write: &Write,
    log_index: i64,
) -> Result<Vec<Option<i64>>, StoreError> {
    let expect_one = |rows: u64, what: &str| {
        if rows == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(what.to_owned()))
        }
    };
    match write {
        // The batch writes these with its log rows.
        Write::Nothing | Write::AgentSeen { .. } => {}
        Write::InsertHuman(human) => {
            sqlx::query("INSERT INTO humans (id, display_name, role, status, oidc_issuer, oidc_subject, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&human.id)
                .bind(&human.display_name)
                .bind(&human.role)
                .bind(&human.status)
                .bind(&human.oidc_issuer)
                .bind(&human.oidc_subject)
                .bind(human.created_at)
                .execute(&mut *conn)
                .await?;
        }
        Write::SetHumanStatus { id, status } => {
            let rows = sqlx::query("UPDATE humans SET status = $1 WHERE id = $2")
                .bind(status)
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            expect_one(rows, &format!("human `{id}`"))?;
        }
        Write::AddHumanKey(key) => {
            sqlx::query(
                "INSERT INTO human_keys (jkt, human_id, jwk, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&key.jkt)
            .bind(&key.human_id)
            .bind(&key.jwk)
            .bind(key.created_at)
            .execute(&mut *conn)
            .await?;
        }
        Write::InsertAgent(agent) => {
            sqlx::query("INSERT INTO agents (jkt, name, owner, jwk, tools, status, status_reason, created_at, expires_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(&agent.jkt)
                .bind(&agent.name)
                .bind(&agent.owner)
                .bind(&agent.jwk)
                .bind(json_list(&agent.tools)?)
                .bind(&agent.status)
                .bind(&agent.status_reason)
                .bind(agent.created_at)
                .bind(agent.expires_at)
                .bind(agent.last_seen)
                .execute(&mut *conn)
                .await?;
        }
        Write::SetAgentStatus {
            jkt,
            status,
            reason,
        } => {
            let rows =
                sqlx::query("UPDATE agents SET status = $1, status_reason = $2 WHERE jkt = $3")
                    .bind(status)
                    .bind(reason)
                    .bind(jkt)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            expect_one(rows, &format!("agent `{jkt}`"))?;
        }
        Write::SetAgentOwner { jkt, owner } => {
            let rows = sqlx::query("UPDATE agents SET owner = $1 WHERE jkt = $2")
                .bind(owner)
                .bind(jkt)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            expect_one(rows, &format!("agent `{jkt}`"))?;
        }
        Write::SetAgentExpiry { jkt, expires_at } => {
            let rows = sqlx::query("UPDATE agents SET expires_at = $1 WHERE jkt = $2")
                .bind(expires_at)
                .bind(jkt)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            expect_one(rows, &format!("agent `{jkt}`"))?;
        }
        Write::UpsertProvider(provider, tools) => {
            sqlx::query("INSERT INTO tool_providers (name, kind, url, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, url = excluded.url")
                .bind(&provider.name)
                .bind(&provider.kind)
                .bind(&provider.url)
                .bind(provider.created_at)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM tools WHERE server = $1")
                .bind(&provider.name)
                .execute(&mut *conn)
                .await?;
            for tool in tools {
                sqlx::query("INSERT INTO tools (server, name, labels) VALUES ($1, $2, $3)")
                    .bind(&provider.name)
                    .bind(&tool.name)
                    .bind(json_list(&tool.labels)?)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Write::InsertGateway(gateway) => {
            sqlx::query("INSERT INTO gateways (jkt, name, audience, jwk, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&gateway.jkt)
                .bind(&gateway.name)
                .bind(&gateway.audience)
                .bind(&gateway.jwk)
                .bind(&gateway.status)
                .bind(gateway.created_at)
                .execute(&mut *conn)
                .await?;
        }
        Write::SetGatewayStatus { jkt, status } => {
            let rows = sqlx::query("UPDATE gateways SET status = $1 WHERE jkt = $2")
                .bind(status)
                .bind(jkt)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            expect_one(rows, &format!("gateway `{jkt}`"))?;
        }
        Write::InsertMandate(mandate) => {
            sqlx::query("INSERT INTO mandates (id, human_id, agent_jkt, parent, depth, expires_at, task_digest, task_text, grants, created_at, log_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                .bind(&mandate.id)
                .bind(&mandate.human_id)
                .bind(&mandate.agent_jkt)
                .bind(&mandate.parent)
                .bind(mandate.depth)
                .bind(mandate.expires_at)
                .bind(&mandate.task_digest)
                .bind(&mandate.task_text)
                .bind(&mandate.grants)
                .bind(mandate.created_at)
                .bind(log_index)
                .execute(&mut *conn)
                .await?;
        }
        Write::InsertEntitlement(entitlement) => {
            sqlx::query("INSERT INTO entitlements (id, subject, tools, labels, created_at, created_by, log_index) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(&entitlement.id)
                .bind(&entitlement.subject)
                .bind(json_list(&entitlement.tools)?)
                .bind(json_list(&entitlement.labels)?)
                .bind(entitlement.created_at)
                .bind(&entitlement.created_by)
                .bind(log_index)
                .execute(&mut *conn)
                .await?;
        }
        Write::DeleteEntitlement { id } => {
            let rows = sqlx::query("DELETE FROM entitlements WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            expect_one(rows, &format!("entitlement `{id}`"))?;
        }
        Write::SetHumanGroups { id, groups } => {
            let known: Option<(String,)> = sqlx::query_as("SELECT id FROM humans WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            if known.is_none() {
                return Err(StoreError::NotFound(format!("human `{id}`")));
            }
            sqlx::query("DELETE FROM human_groups WHERE human_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            for group in groups {
                sqlx::query("INSERT INTO human_groups (human_id, group_name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(id)
                    .bind(group)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Write::Many(writes) => {
            let mut seqs = Vec::new();
            for write in writes {
                seqs.extend(Box::pin(apply_write(conn, write, log_index)).await?);
            }
            return Ok(seqs);
        }
        Write::Revoke(revocations) => {
            let mut seqs = Vec::with_capacity(revocations.len());
            for revocation in revocations {
                let seq: Option<(i64,)> = sqlx::query_as("INSERT INTO revocations (kind, subject, reason, created_at, log_index) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, subject) DO NOTHING RETURNING seq")
                    .bind(&revocation.kind)
                    .bind(&revocation.subject)
                    .bind(&revocation.reason)
                    .bind(revocation.created_at)
                    .bind(log_index)
                    .fetch_optional(&mut *conn)
                    .await?;
                seqs.push(seq.map(|(seq,)| seq));
            }
            return Ok(seqs);
        }
    }
    Ok(Vec::new())
}

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
struct EntitlementRow {
    id: String,
    subject: String,
    tools: String,
    labels: String,
    created_at: i64,
    created_by: String,
}

impl EntitlementRow {
    fn into_record(self) -> Result<EntitlementRecord, StoreError> {
        Ok(EntitlementRecord {
            tools: parse_list(&self.tools)?,
            labels: parse_list(&self.labels)?,
            id: self.id,
            subject: self.subject,
            created_at: self.created_at,
            created_by: self.created_by,
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
    grants: String,
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
            grants: self.grants,
            created_at: self.created_at,
            log_index: self.log_index,
        }
    }
}
