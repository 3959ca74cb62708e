//! The single writer: every change is an audit leaf plus its effect, committed together, and
//! concurrent changes share one transaction and one fsync (group commit).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sqlx::{Connection as _, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};
use writ_log::{Hash, Nodes, leaf_hash};

use crate::StoreError;
use crate::records::{
    AgentRecord, GatewayRecord, HumanKeyRecord, HumanRecord, MandateRecord, ProviderRecord,
    RevocationRecord, ToolRecord,
};
use crate::view::View;

/// The most changes committed in one transaction.
pub(crate) const MAX_BATCH: usize = 256;

/// An audit event: the leaf's bytes, its kind, and keys to find it by.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event kind, such as `writ_issued`.
    pub kind: String,
    /// The leaf's bytes: canonical JSON of the event.
    pub data: Vec<u8>,
    /// Lookup keys, such as `writ:wrt_...`, for trace.
    pub keys: Vec<String>,
    /// When it happened, Unix seconds.
    pub time: i64,
}

/// The change an audit event records, applied in the same transaction as its leaf.
#[derive(Debug, Clone)]
pub enum Write {
    /// Nothing beyond the leaf (issuances, denials, gateway decisions).
    Nothing,
    /// The agent obtained a writ: update `last_seen`.
    AgentSeen {
        /// The agent.
        jkt: String,
    },
    /// Register a human.
    InsertHuman(HumanRecord),
    /// Change a human's status.
    SetHumanStatus {
        /// The human.
        id: String,
        /// The new status.
        status: String,
    },
    /// Bind a key to a human.
    AddHumanKey(HumanKeyRecord),
    /// Register an agent.
    InsertAgent(AgentRecord),
    /// Change an agent's status.
    SetAgentStatus {
        /// The agent.
        jkt: String,
        /// The new status.
        status: String,
        /// Why, when not active.
        reason: Option<String>,
    },
    /// Give an agent a new owner.
    SetAgentOwner {
        /// The agent.
        jkt: String,
        /// The new owner.
        owner: String,
    },
    /// Extend an agent's lifetime.
    SetAgentExpiry {
        /// The agent.
        jkt: String,
        /// The new end of its lifetime.
        expires_at: i64,
    },
    /// Register or update a tool provider and replace its tools.
    UpsertProvider(ProviderRecord, Vec<ToolRecord>),
    /// Register a gateway.
    InsertGateway(GatewayRecord),
    /// Record a granted mandate (its `log_index` is set to the leaf's).
    InsertMandate(MandateRecord),
    /// Record revocations (each `seq` and `log_index` set by the store). Subjects already
    /// revoked are skipped; [`Appended::revocations`] says which.
    Revoke(Vec<RevocationRecord>),
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The leaf's index.
    pub index: u64,
    /// For [`Write::Revoke`], one entry per record in order: its feed sequence number, or
    /// `None` where the subject was already revoked. Empty for other writes.
    pub revocations: Vec<Option<i64>>,
}

/// The size and root of the log after the last commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// The number of leaves.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
}

pub(crate) enum Job {
    Append {
        event: Event,
        write: Box<Write>,
        reply: oneshot::Sender<Result<Appended, StoreError>>,
    },
    Checkpoint {
        size: u64,
        note: String,
        time: i64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The right edge of the tree: the complete subtrees future appends combine with.
#[derive(Debug, Clone, Default)]
struct Frontier(HashMap<(u32, u64), Hash>);

#[derive(Debug, thiserror::Error)]
#[error("frontier node ({0}, {1}) missing")]
struct MissingNode(u32, u64);

impl Nodes for Frontier {
    type Error = MissingNode;
    fn node(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or(MissingNode(level, index))
    }
}

/// The frontier coordinates of a tree of `size` leaves: one per set bit.
fn frontier_coordinates(size: u64) -> impl Iterator<Item = (u32, u64)> {
    (0..64_u32)
        .filter(move |level| size >> level & 1 == 1)
        .map(move |level| (level, (size >> level) - 1))
}

impl Frontier {
    fn prune(&mut self, size: u64) {
        let keep: Vec<(u32, u64)> = frontier_coordinates(size).collect();
        self.0.retain(|coordinate, _| keep.contains(coordinate));
    }
}

pub(crate) struct Writer {
    conn: SqliteConnection,
    size: u64,
    frontier: Frontier,
    head: watch::Sender<TreeHead>,
    view: Arc<RwLock<View>>,
    /// The data directory's lock, held for as long as this writer runs.
    _lock: std::fs::File,
}

/// The rows a batch appends to the log, written with one statement per table just before
/// the commit.
#[derive(Default)]
struct Pending {
    leaves: Vec<(i64, String, Vec<u8>, i64)>,
    keys: Vec<(String, i64)>,
    nodes: Vec<(u32, u64, Hash)>,
    /// Agent → the latest time it obtained a writ in this batch.
    seen: HashMap<String, i64>,
}

/// Rows per multi-row `INSERT`, well under SQLite's limit on bound parameters.
const ROWS_PER_STATEMENT: usize = 1000;

impl Writer {
    /// Starts the writer. It holds the data directory's `lock` until it stops, which is
    /// after every queued change has been committed or refused.
    pub(crate) async fn start(
        mut conn: SqliteConnection,
        view: Arc<RwLock<View>>,
        lock: std::fs::File,
    ) -> Result<(mpsc::Sender<Job>, watch::Receiver<TreeHead>), StoreError> {
        // The next index, by primary key rather than by counting the whole log; a gap
        // below it is for `recompute_tree` to report.
        let (size,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_leaves")
            .fetch_one(&mut conn)
            .await?;
        let size = to_u64(size, "log size")?;
        let mut frontier = Frontier::default();
        for (level, index) in frontier_coordinates(size) {
            let hash = fetch_node(&mut conn, level, index).await?;
            frontier.0.insert((level, index), hash);
        }
        let root = writ_log::root(&frontier, size)
            .map_err(|error| StoreError::Corrupt(format!("Merkle frontier: {error}")))?;
        let (head, head_rx) = watch::channel(TreeHead { size, root });
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let writer = Writer {
            conn,
            size,
            frontier,
            head,
            view,
            _lock: lock,
        };
        tokio::spawn(writer.run(rx));
        Ok((tx, head_rx))
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit(batch).await;
        }
    }

    async fn commit(&mut self, batch: Vec<Job>) {
        if let Err(error) = sqlx::query("BEGIN IMMEDIATE").execute(&mut self.conn).await {
            let error = StoreError::from(error);
            tracing::error!(%error, "audit log transaction could not start; refusing the batch");
            // A transaction left open by a failed rollback would block every later batch.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            batch.into_iter().for_each(|job| job.fail(&error));
            return;
        }
        let mut size = self.size;
        let mut frontier = self.frontier.clone();
        let mut pending = Pending::default();
        let mut done = Vec::with_capacity(batch.len());
        let mut jobs = batch.into_iter();
        while let Some(job) = jobs.next() {
            let finished = match job {
                Job::Append {
                    event,
                    write,
                    reply,
                } => {
                    let time = event.time;
                    let result = self
                        .append_one(event, &write, &mut size, &mut frontier, &mut pending)
                        .await;
                    Finished::Append(reply, result, write, time)
                }
                Job::Checkpoint {
                    size: at,
                    note,
                    time,
                    reply,
                } => Finished::Checkpoint(reply, self.checkpoint(at, &note, time).await),
            };
            // A storage failure (disk full, I/O error) ends the transaction for everyone:
            // SQLite may already have rolled it back. Refuse the whole batch with its cause.
            if let Some(error) = finished.storage_failure() {
                self.abandon(done, &error).await;
                jobs.for_each(|later| later.fail(&error));
                finished.fail(&error);
                return;
            }
            done.push(finished);
        }
        if let Err(error) = self.flush(pending).await {
            self.abandon(done, &error).await;
            return;
        }
        // The new root is known before the commit; a frontier that cannot give it is
        // corruption, and nothing is committed.
        let root = match writ_log::root(&frontier, size) {
            Ok(root) => root,
            Err(error) => {
                let error = StoreError::Corrupt(format!("Merkle frontier: {error}"));
                self.abandon(done, &error).await;
                return;
            }
        };
        match sqlx::query("COMMIT").execute(&mut self.conn).await {
            Ok(_) => {
                frontier.prune(size);
                self.size = size;
                self.frontier = frontier;
                // The view and the head change before anyone hears of the change.
                {
                    let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
                    for finished in &done {
                        if let Finished::Append(_, Ok(_), write, time) = finished {
                            view.apply(write, *time);
                        }
                    }
                }
                self.head.send_replace(TreeHead { size, root });
                done.into_iter().for_each(Finished::send);
            }
            Err(error) => {
                let error = StoreError::from(error);
                self.abandon(done, &error).await;
            }
        }
    }

    /// Rolls the transaction back and refuses every change in it.
    async fn abandon(&mut self, done: Vec<Finished>, error: &StoreError) {
        let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        tracing::error!(%error, "audit log write failed; refusing the whole batch");
        done.into_iter().for_each(|finished| finished.fail(error));
    }

    /// One change. A change that can be refused on its own (a name taken, a missing
    /// reference) runs inside a savepoint, so refusing it does not spoil the batch; its
    /// leaf is queued only once it is applied.
    async fn append_one(
        &mut self,
        event: Event,
        write: &Write,
        size: &mut u64,
        frontier: &mut Frontier,
        pending: &mut Pending,
    ) -> Result<Appended, StoreError> {
        let index = *size;
        let log_index = to_i64(index)?;
        let revocations = match write {
            // Nothing to refuse: the leaf is the change.
            Write::Nothing => Vec::new(),
            Write::AgentSeen { jkt } => {
                let seen = pending.seen.entry(jkt.clone()).or_insert(event.time);
                *seen = (*seen).max(event.time);
                Vec::new()
            }
            _ => self.apply_in_savepoint(write, log_index).await?,
        };
        let nodes = writ_log::append(&*frontier, index, leaf_hash(&event.data))
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        for &(level, at, hash) in &nodes {
            frontier.0.insert((level, at), hash);
        }
        pending.nodes.extend(nodes);
        pending
            .keys
            .extend(event.keys.into_iter().map(|key| (key, log_index)));
        pending
            .leaves
            .push((log_index, event.kind, event.data, event.time));
        *size += 1;
        Ok(Appended { index, revocations })
    }

    async fn apply_in_savepoint(
        &mut self,
        write: &Write,
        log_index: i64,
    ) -> Result<Vec<Option<i64>>, StoreError> {
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
                // Undo this change only. If even that fails, the transaction is lost: report
                // the original cause as a storage failure so the batch is refused.
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
    }

    /// Writes the batch's leaves, lookup keys, Merkle nodes and agent sightings. Any failure
    /// here is a storage failure: the rows are the writer's own.
    async fn flush(&mut self, pending: Pending) -> Result<(), StoreError> {
        let storage = |error: sqlx::Error| unavailable(&StoreError::from(error));
        for chunk in pending.leaves.chunks(ROWS_PER_STATEMENT) {
            QueryBuilder::<Sqlite>::new("INSERT INTO audit_leaves (idx, kind, data, created_at) ")
                .push_values(chunk, |mut row, (idx, kind, data, time)| {
                    row.push_bind(*idx)
                        .push_bind(kind.as_str())
                        .push_bind(data.as_slice())
                        .push_bind(*time);
                })
                .build()
                .persistent(false)
                .execute(&mut self.conn)
                .await
                .map_err(storage)?;
        }
        for chunk in pending.keys.chunks(ROWS_PER_STATEMENT) {
            QueryBuilder::<Sqlite>::new("INSERT INTO audit_keys (key, idx) ")
                .push_values(chunk, |mut row, (key, idx)| {
                    row.push_bind(key.as_str()).push_bind(*idx);
                })
                .push(" ON CONFLICT DO NOTHING")
                .build()
                .persistent(false)
                .execute(&mut self.conn)
                .await
                .map_err(storage)?;
        }
        let mut nodes = Vec::with_capacity(pending.nodes.len());
        for (level, at, hash) in pending.nodes {
            nodes.push((i64::from(level), to_i64(at)?, hash));
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
                .await
                .map_err(storage)?;
        }
        for (jkt, time) in pending.seen {
            // Never backwards, whatever order concurrent batches commit in.
            sqlx::query("UPDATE agents SET last_seen = $1 WHERE jkt = $2 AND (last_seen IS NULL OR last_seen < $1)")
                .bind(time)
                .bind(jkt)
                .execute(&mut self.conn)
                .await
                .map_err(storage)?;
        }
        Ok(())
    }

    async fn checkpoint(&mut self, size: u64, note: &str, time: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO checkpoints (size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(to_i64(size)?)
            .bind(note)
            .bind(time)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }
}

/// A job done inside the open transaction, with its reply held until the commit.
enum Finished {
    /// The reply, the result, and the change with its time, for the view.
    Append(
        oneshot::Sender<Result<Appended, StoreError>>,
        Result<Appended, StoreError>,
        Box<Write>,
        i64,
    ),
    Checkpoint(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

/// Whatever the cause, a refused batch is reported as the store being unavailable.
fn unavailable(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(_) => error.clone(),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl Finished {
    /// The error, if the job failed in a way that spoils the whole transaction.
    fn storage_failure(&self) -> Option<StoreError> {
        let error = match self {
            Finished::Append(_, Err(error), ..) | Finished::Checkpoint(_, Err(error)) => error,
            _ => return None,
        };
        matches!(error, StoreError::Unavailable(_) | StoreError::Corrupt(_)).then(|| error.clone())
    }

    /// Sends the result, now that it is durable.
    fn send(self) {
        match self {
            Finished::Append(reply, result, ..) => drop(reply.send(result)),
            Finished::Checkpoint(reply, result) => drop(reply.send(result)),
        }
    }

    /// Refuses the job: its transaction did not commit.
    fn fail(self, error: &StoreError) {
        match self {
            Finished::Append(reply, ..) => drop(reply.send(Err(unavailable(error)))),
            Finished::Checkpoint(reply, _) => drop(reply.send(Err(unavailable(error)))),
        }
    }
}

impl Job {
    /// Refuses a job that never ran.
    fn fail(self, error: &StoreError) {
        match self {
            Job::Append { reply, .. } => drop(reply.send(Err(unavailable(error)))),
            Job::Checkpoint { reply, .. } => drop(reply.send(Err(unavailable(error)))),
        }
    }
}

pub(crate) async fn fetch_node<'c, E>(
    executor: E,
    level: u32,
    index: u64,
) -> Result<Hash, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
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

/// A stored integer that must not be negative: a size or an index.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

pub(crate) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} does not fit the store")))
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
        // The batch writes these itself (see `Pending`).
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
            sqlx::query("INSERT INTO gateways (jkt, name, audience, jwk, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&gateway.jkt)
                .bind(&gateway.name)
                .bind(&gateway.audience)
                .bind(&gateway.jwk)
                .bind(gateway.created_at)
                .execute(&mut *conn)
                .await?;
        }
        Write::InsertMandate(mandate) => {
            sqlx::query("INSERT INTO mandates (id, human_id, agent_jkt, parent, depth, expires_at, task_digest, task_text, created_at, log_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(&mandate.id)
                .bind(&mandate.human_id)
                .bind(&mandate.agent_jkt)
                .bind(&mandate.parent)
                .bind(mandate.depth)
                .bind(mandate.expires_at)
                .bind(&mandate.task_digest)
                .bind(&mandate.task_text)
                .bind(mandate.created_at)
                .bind(log_index)
                .execute(&mut *conn)
                .await?;
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

/// Opens the writer's own connection.
pub(crate) async fn open_writer_connection(
    options: &sqlx::sqlite::SqliteConnectOptions,
) -> Result<SqliteConnection, StoreError> {
    Ok(SqliteConnection::connect_with(options).await?)
}
