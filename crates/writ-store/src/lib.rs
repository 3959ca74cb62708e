//! Writ's storage: inventory, mandates, revocations and the durable Merkle audit log.
//!
//! All changes go through a single writer task, and every change is an audit-log leaf plus
//! its effect, committed in one transaction: there is no change without its audit record,
//! and no record without its change. Concurrent changes queue while a commit is in flight
//! and then share the next transaction and its one fsync (group commit); [`Store::append`]
//! returns only after the commit is durable.
//!
//! Fail closed: when a commit fails (disk full, read-only file system, corruption), every
//! change in it is refused with [`StoreError::Unavailable`] and nothing is applied.
//!
//! The inventory (with entitlements and group memberships) and the revoked subjects are
//! also held in memory (updated by the writer before a commit is acknowledged), so an
//! issuance reads nothing from the database. That is sound because one writer owns a store
//! at a time: the backend's writer connection holds its lock.
//!
//! Storage sits behind two traits, [`Backend`] (shared reads) and [`LogWriter`] (the
//! writer's transactions). [`SqliteBackend`] is the embedded store: one SQLite database
//! in a data directory (WAL, `synchronous=FULL`, locked by `writ.lock`). Its schema and
//! SQL keep to what SQLite and PostgreSQL share (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`, `WITH RECURSIVE`), with migrations in `migrations/sqlite`, so a PostgreSQL
//! backend is a second implementation of the two traits.

mod backend;
mod records;
mod sqlite;
mod view;
mod writer;

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::{mpsc, oneshot, watch};
use writ_log::{Hash, Nodes};

pub use backend::{Backend, LogRows, LogWriter, Snapshot, StoreFuture};
pub use records::{
    AgentRecord, EntitlementRecord, GatewayRecord, HumanKeyRecord, HumanRecord, LeafRecord,
    MandateRecord, ProviderRecord, RevocationRecord, ToolRecord,
};
pub use sqlite::{DATABASE_FILE, LOCK_FILE, SqliteBackend, SqliteWriter};
pub use view::serves;
pub use writer::{Appended, Event, TreeHead, Write};

use view::View;
use writer::{Job, Writer};

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

/// A handle to the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
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

impl Store {
    /// Opens (creating if needed) the embedded SQLite store in `data_dir`.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, StoreOptions::default()).await
    }

    /// [`Store::open`] with options.
    pub async fn open_with(data_dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let (backend, writer) = SqliteBackend::open(data_dir, options).await?;
        Store::start(backend, writer).await
    }

    /// Starts a store over any backend: loads the view through `writer` and starts the
    /// writer task, which owns `writer` (and the backend's lock) until every handle to the
    /// store is dropped and its queue has drained.
    pub async fn start(
        backend: impl Backend,
        mut writer: impl LogWriter,
    ) -> Result<Store, StoreError> {
        let view = Arc::new(RwLock::new(View::new(writer.snapshot().await?)));
        let (writer, head) = Writer::start(Box::new(writer), Arc::clone(&view)).await?;
        Ok(Store {
            backend: Arc::new(backend),
            writer,
            head,
            view,
        })
    }

    /// Appends `event` and applies `write` in the same transaction; returns once durable.
    pub async fn append(&self, event: Event, write: Write) -> Result<Appended, StoreError> {
        self.ask(|reply| Job::Append {
            event,
            write: Box::new(write),
            reply,
        })
        .await
    }

    /// Stores a signed checkpoint note for tree size `size`.
    pub async fn put_checkpoint(
        &self,
        size: u64,
        note: String,
        time: i64,
    ) -> Result<(), StoreError> {
        self.ask(|reply| Job::Checkpoint {
            size,
            note,
            time,
            reply,
        })
        .await
    }

    /// Queues a job for the writer and waits for its answer.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("the writer has stopped".into());
        let (reply, response) = oneshot::channel();
        self.writer.send(job(reply)).await.map_err(|_| stopped())?;
        response.await.map_err(|_| stopped())?
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

    /// Whether any gateway serves `audience`: it is a gateway's registered audience or a
    /// route under it (the audience followed by `/`).
    pub fn audience_known(&self, audience: &str) -> bool {
        self.view().audience_known(audience)
    }

    /// The gateways whose registered audience serves `audience` (see
    /// [`Store::audience_known`]), in any order.
    pub fn gateways_serving(&self, audience: &str) -> Vec<GatewayRecord> {
        self.view().gateways_serving(audience).cloned().collect()
    }

    /// Whether `subject` of `kind` is revoked.
    pub fn is_revoked(&self, kind: &str, subject: &str) -> bool {
        self.view().is_revoked(kind, subject)
    }

    /// The mandate a delegated mandate came from; `None` for a mandate a human granted.
    pub fn mandate_parent(&self, id: &str) -> Option<String> {
        self.view().parent(id).map(str::to_owned)
    }

    /// An entitlement by id.
    pub fn entitlement(&self, id: &str) -> Option<EntitlementRecord> {
        self.view().entitlement(id).cloned()
    }

    /// Every entitlement, by id.
    pub fn entitlements(&self) -> Vec<EntitlementRecord> {
        let mut all: Vec<EntitlementRecord> = self.view().entitlements().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// The groups a human belongs to, by name.
    pub fn human_groups(&self, id: &str) -> Vec<String> {
        // A `BTreeSet`: already in order.
        self.view().groups_of(id).cloned().collect()
    }

    /// The entitlements that apply to a human: those whose subject is the human, or
    /// `group:NAME` for a group they belong to; by subject, then id.
    pub fn entitlements_of(&self, human: &str) -> Vec<EntitlementRecord> {
        let view = self.view();
        let mut subjects = vec![human.to_owned()];
        subjects.extend(view.groups_of(human).map(|group| format!("group:{group}")));
        subjects
            .iter()
            .flat_map(|subject| view.entitlements_of_subject(subject).cloned())
            .collect()
    }

    /// All tool providers with their tools, by name.
    pub async fn providers(&self) -> Result<Vec<(ProviderRecord, Vec<ToolRecord>)>, StoreError> {
        self.backend.providers().await
    }

    // ---- mandates and revocation --------------------------------------------------------

    /// A mandate by id.
    pub async fn mandate(&self, id: &str) -> Result<Option<MandateRecord>, StoreError> {
        self.backend.mandate(id).await
    }

    /// The ids of a mandate and every mandate delegated from it, transitively.
    pub async fn mandate_subtree(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.backend.mandate_subtree(id).await
    }

    /// The ids of mandates a human granted, or that an agent holds.
    pub async fn mandates_of(
        &self,
        human: Option<&str>,
        agent: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        self.backend.mandates_of(human, agent).await
    }

    /// Revocations after `seq`, in order, at most `limit`.
    pub async fn revocations_since(
        &self,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<RevocationRecord>, StoreError> {
        self.backend.revocations_since(seq, limit).await
    }

    /// The highest revocation sequence number (the feed's head), 0 when nothing is revoked.
    pub async fn revocation_head(&self) -> Result<i64, StoreError> {
        self.backend.revocation_head().await
    }

    // ---- audit log ----------------------------------------------------------------------

    /// The leaf at `index`.
    pub async fn leaf(&self, index: u64) -> Result<Option<LeafRecord>, StoreError> {
        let leaf = self.backend.leaves(index, 1).await?.into_iter().next();
        Ok(leaf.filter(|leaf| leaf.index == index))
    }

    /// Leaves from `start`, in order, at most `limit`.
    pub async fn leaves(&self, start: u64, limit: u32) -> Result<Vec<LeafRecord>, StoreError> {
        self.backend.leaves(start, limit).await
    }

    /// The indices of the leaves recorded under `key`, in order.
    pub async fn lookup(&self, key: &str) -> Result<Vec<u64>, StoreError> {
        self.backend.lookup(key).await
    }

    /// The leaf hash the writer recorded for leaf `index` (its level-0 Merkle node).
    pub async fn leaf_node(&self, index: u64) -> Result<Hash, StoreError> {
        self.backend.node(0, index).await
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
        Ok(self.backend.checkpoints(true).await?.into_iter().next())
    }

    /// Every stored checkpoint note, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.backend.checkpoints(false).await
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
            let hash = self.backend.node(level, index).await?;
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

/// A stored integer that must not be negative: a size or an index.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

/// An index or size as the database stores it.
pub(crate) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{value} does not fit the store")))
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
