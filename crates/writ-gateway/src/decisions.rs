//! Every decision, allow and deny, goes to the issuer's audit log.
//!
//! Decisions queue in memory and leave in batches (`POST /v1/audit/decisions`). A batch
//! the issuer does not acknowledge (it is down, or answers with an error) is appended to
//! the spool file and flushed to disk; the spool is drained, oldest first, as soon as the
//! issuer answers again, and emptied only once every decision in it is acknowledged. The
//! issuer records a request id once, so a batch resent after a lost answer is harmless.
//!
//! When the queue is full (the issuer is down and the spool cannot be written), the
//! gateway refuses new requests rather than let them pass unrecorded.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use writ_client::IssuerClient;

use crate::deny::Denial;

/// The spool's file name inside the spool directory.
pub const SPOOL_FILE: &str = "decisions.jsonl";
/// The most decisions in one report (the issuer's limit).
const BATCH: usize = 500;
/// How many decisions may wait in memory.
const QUEUE: usize = 64 * 1024;
/// How long a batch waits to fill once it has its first decision.
const LINGER: Duration = Duration::from_millis(20);
/// How often a non-empty spool is retried while the issuer is away.
const RETRY: Duration = Duration::from_secs(1);

/// One decision, as the issuer records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The gateway's id for the request.
    pub request_id: String,
    /// When, Unix seconds.
    pub time: u64,
    /// `allow` or `deny`.
    pub decision: String,
    /// The reason code (`allowed` for an allow).
    pub reason: String,
    /// The sentence the caller was shown, for a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The route's name.
    pub route: String,
    /// The HTTP method, or the MCP method.
    pub method: String,
    /// The path, or the MCP tool.
    pub target: String,
    /// The writ id, once the writ verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writ: Option<String>,
    /// The writ's mandate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandate: Option<String>,
    /// The acting agent's thumbprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The human the writ names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human: Option<String>,
}

/// The sending half, and the way to stop the reporting task.
#[derive(Debug)]
pub(crate) struct Reporter {
    queue: mpsc::Sender<Decision>,
    stop: Arc<Notify>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Reporter {
    /// Starts the reporting task over the spool in `dir` (created if missing). Returns the
    /// reporter and a notifier that wakes the task to drain the spool now.
    pub(crate) fn start(
        client: Arc<IssuerClient>,
        dir: &Path,
    ) -> std::io::Result<(Reporter, Arc<Notify>)> {
        std::fs::create_dir_all(dir)?;
        let spool = Spool {
            path: dir.join(SPOOL_FILE),
        };
        // Fail at start, not at the first outage, if the spool cannot be written.
        spool.open_append()?;
        let (queue, receiver) = mpsc::channel(QUEUE);
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            client,
            spool,
            receiver,
            Arc::clone(&wake),
            Arc::clone(&stop),
        ));
        let reporter = Reporter {
            queue,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        };
        Ok((reporter, wake))
    }

    /// Stops taking decisions, sends or spools every queued one, and waits for that.
    pub(crate) async fn shutdown(&self) {
        self.stop.notify_one();
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the decision reporter failed");
        }
    }

    /// Queues a decision; refuses when it cannot be recorded (fail closed).
    pub(crate) fn record(&self, decision: Decision) -> Result<(), Denial> {
        self.queue.try_send(decision).map_err(|_| {
            Denial::unavailable(
                "audit_unavailable",
                "the gateway cannot record decisions right now, so it decides nothing",
            )
        })
    }
}

#[derive(Debug)]
struct Spool {
    path: PathBuf,
}

impl Spool {
    fn open_append(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
    }

    /// Appends decisions durably.
    fn append(&self, decisions: &[Decision]) -> std::io::Result<()> {
        let mut text = Vec::new();
        for decision in decisions {
            serde_json::to_writer(&mut text, decision)?;
            text.push(b'\n');
        }
        let mut file = self.open_append()?;
        file.write_all(&text)?;
        file.sync_data()
    }

    /// Every spooled decision, oldest first. A torn last line (a crash mid-append) is
    /// skipped: it was never acknowledged to anyone.
    fn read(&self) -> std::io::Result<Vec<Decision>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut decisions = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            match serde_json::from_str(&line?) {
                Ok(decision) => decisions.push(decision),
                Err(error) => tracing::warn!(%error, "skipping an unreadable spool line"),
            }
        }
        Ok(decisions)
    }

    fn clear(&self) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        file.set_len(0)?;
        file.sync_all()
    }
}

async fn send(client: &IssuerClient, batch: &[Decision]) -> bool {
    match client
        .post("/v1/audit/decisions", Some(&json!({"decisions": batch})))
        .await
    {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, decisions = batch.len(), "decisions not recorded yet; spooling");
            false
        }
    }
}

/// Sends the spool's contents; empties it once all are acknowledged.
async fn drain(client: &IssuerClient, spool: &Spool) -> bool {
    let spooled = match spool.read() {
        Ok(spooled) => spooled,
        Err(error) => {
            tracing::error!(%error, "cannot read the decision spool");
            return false;
        }
    };
    if spooled.is_empty() {
        return true;
    }
    for batch in spooled.chunks(BATCH) {
        if !send(client, batch).await {
            return false;
        }
    }
    match spool.clear() {
        Ok(()) => {
            tracing::info!(decisions = spooled.len(), "decision spool drained");
            true
        }
        Err(error) => {
            tracing::error!(%error, "cannot empty the decision spool");
            false
        }
    }
}

/// Gets `held` acknowledged or spooled, keeping order behind anything already spooled.
/// Returns whether `held` is settled (and now empty).
async fn settle(
    client: &IssuerClient,
    spool: &Spool,
    spool_empty: &mut bool,
    held: &mut Vec<Decision>,
) -> bool {
    if !*spool_empty {
        *spool_empty = drain(client, spool).await;
    }
    if *spool_empty && send(client, held).await {
        held.clear();
        return true;
    }
    match spool.append(held) {
        Ok(()) => {
            *spool_empty = false;
            held.clear();
            true
        }
        Err(error) => {
            // Held in memory and retried; meanwhile the queue fills and requests are
            // refused, so nothing passes unrecorded.
            tracing::error!(%error, decisions = held.len(), "cannot spool decisions; holding them");
            false
        }
    }
}

async fn run(
    client: Arc<IssuerClient>,
    spool: Spool,
    mut receiver: mpsc::Receiver<Decision>,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    // Whatever a previous run left behind goes first.
    let mut spool_empty = drain(&client, &spool).await;
    let mut held: Vec<Decision> = Vec::new();
    loop {
        if !held.is_empty() {
            if !settle(&client, &spool, &mut spool_empty, &mut held).await {
                tokio::time::sleep(RETRY).await;
            }
            continue;
        }
        let first = tokio::select! {
            decision = receiver.recv() => decision,
            () = tokio::time::sleep(RETRY), if !spool_empty => {
                spool_empty = drain(&client, &spool).await;
                continue;
            }
            () = wake.notified() => {
                spool_empty = drain(&client, &spool).await;
                continue;
            }
            () = stop.notified() => None,
        };
        let Some(first) = first else { break };
        held.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while held.len() < BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(decision)) => held.push(decision),
                _ => break,
            }
        }
        settle(&client, &spool, &mut spool_empty, &mut held).await;
    }
    // The gateway is stopping: take no more, and keep what is left.
    receiver.close();
    while let Some(decision) = receiver.recv().await {
        held.push(decision);
    }
    if !held.is_empty()
        && let Err(error) = spool.append(&held)
    {
        tracing::error!(%error, decisions = held.len(), "cannot spool decisions at shutdown");
    }
}
