//! The single writer: every change is an audit leaf plus its effect, committed together, and
//! concurrent changes share one transaction and one fsync (group commit).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{mpsc, oneshot, watch};
use writ_log::{Hash, Nodes, leaf_hash};

use crate::StoreError;
use crate::backend::{LogRows, LogWriter};
use crate::records::{
    AgentRecord, EntitlementRecord, GatewayRecord, HumanKeyRecord, HumanRecord, LeafRecord,
    MandateRecord, ProviderRecord, RevocationRecord, ToolRecord,
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
    /// Change a gateway's status.
    SetGatewayStatus {
        /// The gateway's key thumbprint.
        jkt: String,
        /// The new status.
        status: String,
    },
    /// Record a granted mandate (its `log_index` is set to the leaf's).
    InsertMandate(MandateRecord),
    /// Record an entitlement (the stored row notes its leaf's index).
    InsertEntitlement(EntitlementRecord),
    /// Delete an entitlement; refused with [`StoreError::NotFound`] when there is none.
    DeleteEntitlement {
        /// Its id.
        id: String,
    },
    /// Replace the groups a human belongs to; refused with [`StoreError::NotFound`] for an
    /// unknown human.
    SetHumanGroups {
        /// The human.
        id: String,
        /// Their groups, all of them.
        groups: Vec<String>,
    },
    /// Record revocations (each `seq` and `log_index` set by the store). Subjects already
    /// revoked are skipped; [`Appended::revocations`] says which.
    Revoke(Vec<RevocationRecord>),
    /// Several changes under one leaf, all or none (an agent retired and revoked, a human
    /// offboarded with their mandates revoked and agents suspended).
    Many(Vec<Write>),
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The leaf's index.
    pub index: u64,
    /// For [`Write::Revoke`] (also inside [`Write::Many`]), one entry per record in order:
    /// its feed sequence number, or `None` where the subject was already revoked. Empty for
    /// other writes.
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

/// Adds the agents `write` marks as seen (at top level or inside [`Write::Many`]) to the
/// batch's `last_seen` updates; the backend applies everything else.
fn note_seen(write: &Write, time: i64, rows: &mut LogRows) {
    match write {
        Write::AgentSeen { jkt } => {
            let seen = rows.seen.entry(jkt.clone()).or_insert(time);
            *seen = (*seen).max(time);
        }
        Write::Many(writes) => {
            for write in writes {
                note_seen(write, time, rows);
            }
        }
        _ => {}
    }
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
    /// The backend's writer connection, which holds the store's lock until dropped.
    log: Box<dyn LogWriter>,
    size: u64,
    frontier: Frontier,
    head: watch::Sender<TreeHead>,
    view: Arc<RwLock<View>>,
}

impl Writer {
    /// Starts the writer over `log`, the backend's writer connection. It holds the store
    /// until it stops, which is after every queued change has been committed or refused.
    pub(crate) async fn start(
        mut log: Box<dyn LogWriter>,
        view: Arc<RwLock<View>>,
    ) -> Result<(mpsc::Sender<Job>, watch::Receiver<TreeHead>), StoreError> {
        let size = log.next_index().await?;
        let mut frontier = Frontier::default();
        for (level, index) in frontier_coordinates(size) {
            let hash = log.node(level, index).await?;
            frontier.0.insert((level, index), hash);
        }
        let root = writ_log::root(&frontier, size)
            .map_err(|error| StoreError::Corrupt(format!("Merkle frontier: {error}")))?;
        let (head, head_rx) = watch::channel(TreeHead { size, root });
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let writer = Writer {
            log,
            size,
            frontier,
            head,
            view,
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
        if let Err(error) = self.log.begin().await {
            tracing::error!(%error, "audit log transaction could not start; refusing the batch");
            // A transaction left open by a failed start would block every later batch.
            self.log.rollback().await;
            batch.into_iter().for_each(|job| job.fail(&error));
            return;
        }
        let mut size = self.size;
        let mut frontier = self.frontier.clone();
        let mut rows = LogRows::default();
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
                        .append_one(event, &write, &mut size, &mut frontier, &mut rows)
                        .await;
                    Finished::Append(reply, result, write, time)
                }
                Job::Checkpoint {
                    size: at,
                    note,
                    time,
                    reply,
                } => Finished::Checkpoint(reply, self.log.checkpoint(at, &note, time).await),
            };
            // A storage failure (disk full, I/O error) ends the transaction for everyone:
            // the database may already have rolled it back. Refuse the whole batch.
            if let Some(error) = finished.storage_failure() {
                self.abandon(done, &error).await;
                jobs.for_each(|later| later.fail(&error));
                finished.fail(&error);
                return;
            }
            done.push(finished);
        }
        // The rows are the writer's own: any failure writing them is a storage failure.
        if let Err(error) = self.log.append_rows(&rows).await {
            self.abandon(done, &unavailable(&error)).await;
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
        match self.log.commit().await {
            Ok(()) => {
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
            Err(error) => self.abandon(done, &error).await,
        }
    }

    /// Rolls the transaction back and refuses every change in it.
    async fn abandon(&mut self, done: Vec<Finished>, error: &StoreError) {
        self.log.rollback().await;
        tracing::error!(%error, "audit log write failed; refusing the whole batch");
        done.into_iter().for_each(|finished| finished.fail(error));
    }

    /// One change. A change that can be refused on its own (a name taken, a missing
    /// reference) is applied all or nothing by the backend, so refusing it does not spoil
    /// the batch; its leaf is queued only once it is applied.
    async fn append_one(
        &mut self,
        event: Event,
        write: &Write,
        size: &mut u64,
        frontier: &mut Frontier,
        rows: &mut LogRows,
    ) -> Result<Appended, StoreError> {
        let index = *size;
        let revocations = match write {
            // Nothing to refuse: the leaf is the change.
            Write::Nothing | Write::AgentSeen { .. } => Vec::new(),
            _ => self.log.apply(write, index).await?,
        };
        // `last_seen` goes in with the batch's log rows, wherever it is asked for, once the
        // rest of the change has applied.
        note_seen(write, event.time, rows);
        let nodes = writ_log::append(&*frontier, index, leaf_hash(&event.data))
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        for &(level, at, hash) in &nodes {
            frontier.0.insert((level, at), hash);
        }
        rows.nodes.extend(nodes);
        rows.keys
            .extend(event.keys.into_iter().map(|key| (key, index)));
        rows.leaves.push(LeafRecord {
            index,
            kind: event.kind,
            data: event.data,
            created_at: event.time,
        });
        *size += 1;
        Ok(Appended { index, revocations })
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
