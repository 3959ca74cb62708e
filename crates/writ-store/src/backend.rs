//! What a database must do to hold a Writ store.
//!
//! [`Store`](crate::Store) keeps everything that is not storage: the single writer task,
//! group commit, the Merkle frontier, the in-memory view of the inventory and the tree
//! head. A backend supplies two things:
//!
//! - a [`Backend`]: shared, concurrent reads (mandates, the revocation feed, leaves, Merkle
//!   nodes, checkpoints);
//! - a [`LogWriter`]: the one connection that owns the store while it is open (it holds the
//!   backend's exclusive lock, such as a lock file or an advisory lock) and runs the
//!   writer's transactions.
//!
//! [`SqliteBackend`](crate::SqliteBackend) is the embedded implementation. The schema and
//! most SQL are portable, so a PostgreSQL backend is a second implementation of these two
//! traits with its own migrations; nothing above the traits changes.
//!
//! The methods return boxed futures so that a store can choose its backend at run time
//! (`dyn Backend`). None of them is on the issuance hot path, which reads only the view.

use std::collections::HashMap;
use std::fmt;

use futures_core::future::BoxFuture;
use writ_log::Hash;

use crate::StoreError;
use crate::records::{
    AgentRecord, EntitlementRecord, GatewayRecord, HumanRecord, LeafRecord, MandateRecord,
    ProviderRecord, RevocationRecord, ToolRecord,
};
use crate::writer::Write;

/// The result of a backend operation.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Shared reads. Implementations are cheap to call concurrently (a connection pool).
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// All tool providers with their tools, by provider name, tools by name.
    fn providers(&self) -> StoreFuture<'_, Vec<(ProviderRecord, Vec<ToolRecord>)>>;

    /// A mandate by id.
    fn mandate<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<MandateRecord>>;

    /// The ids of a mandate and every mandate delegated from it, transitively.
    fn mandate_subtree<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Vec<String>>;

    /// The ids of mandates a human granted (when `human` is set) that an agent holds (when
    /// `agent` is set), oldest first.
    fn mandates_of<'a>(
        &'a self,
        human: Option<&'a str>,
        agent: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<String>>;

    /// Revocations with a sequence number above `seq`, in order, at most `limit`.
    fn revocations_since(&self, seq: i64, limit: u32) -> StoreFuture<'_, Vec<RevocationRecord>>;

    /// The highest revocation sequence number, 0 when nothing is revoked.
    fn revocation_head(&self) -> StoreFuture<'_, i64>;

    /// Leaves from index `start`, in order, at most `limit`.
    fn leaves(&self, start: u64, limit: u32) -> StoreFuture<'_, Vec<LeafRecord>>;

    /// The indices of the leaves recorded under a lookup key, in order.
    fn lookup<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<u64>>;

    /// The stored Merkle node at `level` and `index`; a missing node is corruption.
    fn node(&self, level: u32, index: u64) -> StoreFuture<'_, Hash>;

    /// Stored checkpoint notes with their tree sizes, oldest first; only the newest when
    /// `latest_only`.
    fn checkpoints(&self, latest_only: bool) -> StoreFuture<'_, Vec<(u64, String)>>;
}

/// The writer's connection: the store's one owner while it is open.
///
/// The writer calls [`LogWriter::begin`], then [`LogWriter::apply`] for each change in a
/// batch, then [`LogWriter::append_rows`] once with the batch's log rows, then
/// [`LogWriter::commit`]; on any storage failure, [`LogWriter::rollback`].
pub trait LogWriter: Send + 'static {
    /// Everything the in-memory view holds, as committed.
    fn snapshot(&mut self) -> StoreFuture<'_, Snapshot>;

    /// The index the next leaf takes: one past the highest stored index.
    fn next_index(&mut self) -> StoreFuture<'_, u64>;

    /// A stored Merkle node, read on this connection; a missing node is corruption.
    fn node(&mut self, level: u32, index: u64) -> StoreFuture<'_, Hash>;

    /// Starts a write transaction.
    fn begin(&mut self) -> StoreFuture<'_, ()>;

    /// Applies one change inside the open transaction, all or nothing. A change refused on
    /// its own merits ([`StoreError::Conflict`], [`StoreError::NotFound`],
    /// [`StoreError::Invalid`]) leaves the transaction as it was before the call; any
    /// other error means the transaction is lost. For [`Write::Revoke`] the result holds
    /// each record's new feed sequence number, or `None` where the subject was already
    /// revoked; it is empty for other changes.
    fn apply<'a>(
        &'a mut self,
        write: &'a Write,
        log_index: u64,
    ) -> StoreFuture<'a, Vec<Option<i64>>>;

    /// Writes a batch's leaves, lookup keys, Merkle nodes and agent sightings.
    fn append_rows<'a>(&'a mut self, rows: &'a LogRows) -> StoreFuture<'a, ()>;

    /// Stores a signed checkpoint note; a second note for the same size is ignored.
    fn checkpoint<'a>(&'a mut self, size: u64, note: &'a str, time: i64) -> StoreFuture<'a, ()>;

    /// Commits the open transaction durably.
    fn commit(&mut self) -> StoreFuture<'_, ()>;

    /// Abandons the open transaction, if any.
    fn rollback(&mut self) -> BoxFuture<'_, ()>;
}

/// The committed state the in-memory view is built from.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every human.
    pub humans: Vec<HumanRecord>,
    /// Every bound human key, as (thumbprint, human id).
    pub human_keys: Vec<(String, String)>,
    /// Every agent.
    pub agents: Vec<AgentRecord>,
    /// Every gateway.
    pub gateways: Vec<GatewayRecord>,
    /// Every tool.
    pub tools: Vec<ToolRecord>,
    /// Every revoked subject, as (kind, subject).
    pub revoked: Vec<(String, String)>,
    /// Every delegated mandate, as (id, parent id).
    pub mandate_parents: Vec<(String, String)>,
    /// Every entitlement.
    pub entitlements: Vec<EntitlementRecord>,
    /// Every group membership, as (human id, group name).
    pub human_groups: Vec<(String, String)>,
}

/// The rows a batch adds to the log, written together just before the commit.
#[derive(Debug, Default)]
pub struct LogRows {
    /// The new leaves, in index order.
    pub leaves: Vec<LeafRecord>,
    /// Lookup keys, as (key, leaf index).
    pub keys: Vec<(String, u64)>,
    /// New Merkle nodes, as (level, index, hash).
    pub nodes: Vec<(u32, u64, Hash)>,
    /// Agent thumbprint → the latest time it obtained a writ in the batch. A stored
    /// `last_seen` never moves backwards.
    pub seen: HashMap<String, i64>,
}
