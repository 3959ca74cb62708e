//! Every decision, allow and deny, goes to the issuer's audit log.
//!
//! Decisions queue in memory and leave in batches (`POST /v1/audit/decisions`). A batch
//! the issuer does not acknowledge within `limits.audit_spool_after_ms` (it is down, hangs,
//! or answers with an error) is appended to the spool file and flushed to disk (fsync); so
//! is every batch while the spool is not empty, keeping the order. The spool is drained,
//! oldest first, in the background while new decisions keep arriving, and the drained
//! lines are cut off the front only once the issuer acknowledged them. A report spooled
//! because its answer was late is left to finish before the spool is sent, so one report
//! at a time reaches the issuer, which records a request id once: a batch resent after a
//! lost or late answer is harmless.
//!
//! A decision is "unrecorded" from when it is queued until the issuer acknowledges it or
//! it is on disk: that is what a crash or a kill of the gateway can lose. While more than
//! `limits.max_unrecorded_decisions` are unrecorded (the spool cannot be written, or
//! cannot keep up), allowed calls are refused (`audit_backlog`) rather than forwarded, so
//! a kill never loses more than that bound. When the queue itself is full, every request
//! is refused (`audit_unavailable`).
//!
//! Fields are cut to the issuer's limits before they are queued, and reports are split to
//! stay under its body limit, so no decision can make a report the issuer refuses. Should
//! the issuer still refuse one as malformed (a 4xx other than an authentication failure),
//! the report goes to `decisions.rejected.jsonl` beside the spool, for an operator, rather
//! than block every later decision.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use writ_client::IssuerClient;

use crate::deny::Denial;

/// The spool's file name inside the spool directory.
pub const SPOOL_FILE: &str = "decisions.jsonl";
/// Where reports the issuer refused as malformed are kept.
pub const REJECTED_FILE: &str = "decisions.rejected.jsonl";
/// The most bytes of decisions in one report, well under the issuer's body limit.
const REPORT_BYTES: usize = 48 * 1024;
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
    /// For a denial without a valid writ: the key the caller's DPoP proof, checked on its
    /// own, proves it holds, so the issuer can list the unregistered callers turned away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// For a response: the call it answered, as the behaviour detectors name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// For a response: its size in bytes, as far as the upstream sent it (up to the cut,
    /// for an answer cut at its limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl Decision {
    /// The decision with every field within the issuer's limits.
    fn bounded(mut self) -> Decision {
        fn cut(text: &mut String, max: usize) {
            if text.len() > max {
                let mut end = max;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            if text.is_empty() {
                text.push('-');
            }
        }
        cut(&mut self.reason, 64);
        cut(&mut self.route, 128);
        cut(&mut self.method, 64);
        cut(&mut self.target, 2048);
        for field in [
            &mut self.writ,
            &mut self.mandate,
            &mut self.agent,
            &mut self.human,
            &mut self.caller,
            &mut self.tool,
        ] {
            if let Some(text) = field.as_mut() {
                cut(text, 256);
            }
        }
        if let Some(message) = self.message.as_mut() {
            cut(message, 1024);
        }
        self
    }
}

/// How long a batch may wait for the issuer's acknowledgment before it is spooled, and how
/// many decisions may be unrecorded (neither acknowledged nor on disk) before allowed
/// calls are refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// How long the issuer has to acknowledge a batch before it is spooled.
    pub(crate) spool_after: Duration,
    /// The most decisions that may be unrecorded while calls are still forwarded.
    pub(crate) max_unrecorded: usize,
}

/// Where decisions are queued for the reporting task; cheap to clone, so a response
/// body that outlives its handler can report its end.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    sender: mpsc::Sender<Decision>,
    /// Decisions queued and neither acknowledged nor spooled yet.
    unrecorded: Arc<AtomicUsize>,
    max_unrecorded: usize,
}

impl Queue {
    /// Queues a decision; refuses when it cannot be recorded (fail closed).
    pub(crate) fn record(&self, decision: Decision) -> Result<(), Denial> {
        self.unrecorded.fetch_add(1, Ordering::SeqCst);
        self.send(decision)
    }

    /// Queues the decision to allow a call, which is then forwarded: refused while too
    /// many decisions are unrecorded, since a crash would lose them.
    pub(crate) fn record_allow(&self, decision: Decision) -> Result<(), Denial> {
        let unrecorded = self.unrecorded.fetch_add(1, Ordering::SeqCst);
        if unrecorded >= self.max_unrecorded {
            self.unrecorded.fetch_sub(1, Ordering::SeqCst);
            return Err(Denial::unavailable(
                "audit_backlog",
                format!(
                    "{unrecorded} decisions are not yet recorded by the issuer or on disk, so the gateway forwards nothing until they are"
                ),
            ));
        }
        self.send(decision)
    }

    /// Hands a decision, already counted as unrecorded, to the reporting task.
    fn send(&self, decision: Decision) -> Result<(), Denial> {
        self.sender.try_send(decision.bounded()).map_err(|_| {
            self.unrecorded.fetch_sub(1, Ordering::SeqCst);
            Denial::unavailable(
                "audit_unavailable",
                "the gateway cannot record decisions right now, so it decides nothing",
            )
        })
    }

    /// Counts `count` decisions as recorded: acknowledged or on disk.
    fn recorded(&self, count: usize) {
        // Never below zero, whatever the order of updates.
        let _ = self
            .unrecorded
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_sub(count))
            });
    }
}

/// The sending half, and the way to stop the reporting task.
#[derive(Debug)]
pub(crate) struct Reporter {
    queue: Queue,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Reporter {
    /// Starts the reporting task over the spool in `dir` (created if missing).
    pub(crate) fn start(
        client: Arc<IssuerClient>,
        dir: &Path,
        bounds: Bounds,
    ) -> std::io::Result<Reporter> {
        // Decisions name humans, agents and what they touched: for the gateway's eyes only.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let spool = Spool {
            path: dir.join(SPOOL_FILE),
            rejected: dir.join(REJECTED_FILE),
        };
        // Fail at start, not at the first outage, if the spool cannot be written; and cut
        // off a line torn by a crash, so the next append starts on a line of its own.
        spool.open_append()?;
        spool.repair()?;
        let (sender, receiver) = mpsc::channel(QUEUE);
        let queue = Queue {
            sender,
            unrecorded: Arc::new(AtomicUsize::new(0)),
            max_unrecorded: bounds.max_unrecorded,
        };
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            Reporting {
                client,
                spool: Arc::new(spool),
                queue: queue.clone(),
                spool_after: bounds.spool_after,
                straggler: None,
            },
            receiver,
            Arc::clone(&wake),
            Arc::clone(&stop),
        ));
        Ok(Reporter {
            queue,
            wake,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Wakes the task to drain the spool now.
    pub(crate) fn drain_now(&self) {
        self.wake.notify_one();
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
        self.queue.record(decision)
    }

    /// Queues the decision to allow a call; refuses while too many are unrecorded.
    pub(crate) fn record_allow(&self, decision: Decision) -> Result<(), Denial> {
        self.queue.record_allow(decision)
    }

    /// A handle that queues decisions.
    pub(crate) fn queue(&self) -> Queue {
        self.queue.clone()
    }
}

#[derive(Debug)]
struct Spool {
    path: PathBuf,
    rejected: PathBuf,
}

impl Spool {
    /// Truncates the file after its last complete line.
    fn repair(&self) -> std::io::Result<()> {
        let bytes = std::fs::read(&self.path)?;
        let keep = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        if keep < bytes.len() {
            tracing::warn!(
                bytes = bytes.len() - keep,
                "cutting a torn line off the decision spool"
            );
            let file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
            file.set_len(keep as u64)?;
            file.sync_all()?;
        }
        Ok(())
    }

    /// Keeps a report the issuer refused as malformed, for an operator.
    fn reject(&self, decisions: &[&Decision]) {
        let kept = Spool {
            path: self.rejected.clone(),
            rejected: self.rejected.clone(),
        };
        if let Err(error) = kept.append(decisions.iter().copied()) {
            tracing::error!(%error, decisions = decisions.len(), "cannot keep refused decisions");
        }
    }

    fn open_append(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
    }

    /// Appends decisions durably.
    fn append<'a>(&self, decisions: impl IntoIterator<Item = &'a Decision>) -> std::io::Result<()> {
        let mut text = Vec::new();
        for decision in decisions {
            serde_json::to_writer(&mut text, decision)?;
            text.push(b'\n');
        }
        let mut file = self.open_append()?;
        file.write_all(&text)?;
        file.sync_data()
    }

    /// Every spooled decision, oldest first, and the bytes of the complete lines they were
    /// read from. A line still being appended, or torn by a crash, is left for later: it
    /// was never acknowledged to anyone.
    fn read(&self) -> std::io::Result<(Vec<Decision>, usize)> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), 0));
            }
            Err(error) => return Err(error),
        };
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let mut decisions = Vec::new();
        for line in bytes
            .get(..complete)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
        {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice(line) {
                Ok(decision) => decisions.push(decision),
                Err(error) => tracing::warn!(%error, "skipping an unreadable spool line"),
            }
        }
        Ok((decisions, complete))
    }

    /// Cuts the first `bytes` (acknowledged lines) off the spool, keeping what was appended
    /// after them; returns whether the spool is now empty. The rest is written to a new
    /// file that replaces the spool once it is on disk, so a crash leaves one or the other.
    fn consume(&self, bytes: usize) -> std::io::Result<bool> {
        let all = std::fs::read(&self.path)?;
        let rest = all.get(bytes..).unwrap_or_default();
        if rest.is_empty() {
            let file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
            file.set_len(0)?;
            file.sync_all()?;
            return Ok(true);
        }
        let mut name = self.path.clone().into_os_string();
        name.push(".next");
        let next = PathBuf::from(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&next)?;
        file.write_all(rest)?;
        file.sync_all()?;
        std::fs::rename(&next, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(false)
    }
}

/// Sends decisions in reports under [`REPORT_BYTES`]. Reports the issuer refuses as
/// malformed are set aside; returns false when the issuer did not take them (unreachable,
/// unavailable, or refusing the gateway itself), so they must be kept.
async fn send(client: &IssuerClient, spool: &Spool, decisions: &[Decision]) -> bool {
    let mut reports: Vec<Vec<&Decision>> = Vec::new();
    let mut report = Vec::new();
    let mut bytes = 0;
    for decision in decisions {
        let size = serde_json::to_vec(decision).map_or(0, |json| json.len()) + 1;
        if !report.is_empty() && (bytes + size > REPORT_BYTES || report.len() == BATCH) {
            reports.push(std::mem::take(&mut report));
            bytes = 0;
        }
        bytes += size;
        report.push(decision);
    }
    if !report.is_empty() {
        reports.push(report);
    }
    for report in reports {
        match client
            .post("/v1/audit/decisions", Some(&json!({"decisions": report})))
            .await
        {
            Ok(_) => {}
            Err(writ_client::ClientError::Refused { status, reason, .. })
                if status.is_client_error()
                    && status != axum::http::StatusCode::UNAUTHORIZED
                    && status != axum::http::StatusCode::FORBIDDEN =>
            {
                tracing::error!(%status, ?reason, decisions = report.len(), "the issuer refused a decision report; kept in {REJECTED_FILE}");
                spool.reject(&report);
            }
            Err(error) => {
                tracing::warn!(%error, decisions = report.len(), "decisions not recorded yet; spooling");
                // What was sent before stays sent; resending it is harmless.
                return false;
            }
        }
    }
    true
}

/// What the reporting task works with.
struct Reporting {
    client: Arc<IssuerClient>,
    spool: Arc<Spool>,
    queue: Queue,
    spool_after: Duration,
    /// A report that was spooled because the issuer did not answer it in time, still
    /// waiting for its answer. The spool is not drained meanwhile: one report at a time
    /// reaches the issuer, which records a request id once when reports come one by one.
    straggler: Option<tokio::task::JoinHandle<bool>>,
}

/// Sends what the spool holds now. Returns the bytes of spool lines the issuer
/// acknowledged (all of them, or none), to cut off the front of the spool.
async fn drain(client: Arc<IssuerClient>, spool: Arc<Spool>) -> Option<usize> {
    let (spooled, bytes) = match spool.read() {
        Ok(read) => read,
        Err(error) => {
            tracing::error!(%error, "cannot read the decision spool");
            return None;
        }
    };
    if spooled.is_empty() || send(&client, &spool, &spooled).await {
        if !spooled.is_empty() {
            tracing::info!(decisions = spooled.len(), "spooled decisions recorded");
        }
        Some(bytes)
    } else {
        None
    }
}

impl Reporting {
    /// Gets `held` acknowledged within the bound, or spooled; while the spool holds
    /// anything, straight to the spool, behind it. Returns whether `held` is settled (and
    /// now empty).
    async fn settle(&mut self, spool_empty: &mut bool, held: &mut Vec<Decision>) -> bool {
        if *spool_empty && !self.sending() {
            let batch = Arc::new(std::mem::take(held));
            let (client, spool, report) = (
                Arc::clone(&self.client),
                Arc::clone(&self.spool),
                Arc::clone(&batch),
            );
            let mut sending = tokio::spawn(async move { send(&client, &spool, &report).await });
            match tokio::time::timeout(self.spool_after, &mut sending).await {
                Ok(Ok(true)) => {
                    self.queue.recorded(batch.len());
                    return true;
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(
                        decisions = batch.len(),
                        "the issuer did not acknowledge decisions in time; spooling"
                    );
                    // Left to finish: its answer, or its failure, comes before the spool
                    // is sent.
                    self.straggler = Some(sending);
                }
            }
            *held = Arc::unwrap_or_clone(batch);
        }
        match self.spool.append(held.iter()) {
            Ok(()) => {
                *spool_empty = false;
                self.queue.recorded(held.len());
                held.clear();
                true
            }
            Err(error) => {
                // Held in memory and retried; meanwhile allowed calls are refused once
                // the unrecorded decisions pass their bound.
                tracing::error!(%error, decisions = held.len(), "cannot spool decisions; holding them");
                false
            }
        }
    }

    /// Whether a report spooled for want of an answer is still waiting for one.
    fn sending(&mut self) -> bool {
        if self
            .straggler
            .as_ref()
            .is_some_and(tokio::task::JoinHandle::is_finished)
        {
            self.straggler = None;
        }
        self.straggler.is_some()
    }

    /// Starts draining the spool in the background.
    fn start_drain(&self) -> tokio::task::JoinHandle<Option<usize>> {
        tokio::spawn(drain(Arc::clone(&self.client), Arc::clone(&self.spool)))
    }
}

async fn run(
    mut reporting: Reporting,
    mut receiver: mpsc::Receiver<Decision>,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
) {
    // Whatever a previous run left behind goes first.
    let mut spool_empty =
        matches!(reporting.spool.read(), Ok((ref spooled, _)) if spooled.is_empty());
    let mut draining: Option<tokio::task::JoinHandle<Option<usize>>> = None;
    let mut next_drain = tokio::time::Instant::now();
    let mut held: Vec<Decision> = Vec::new();
    loop {
        if !spool_empty
            && draining.is_none()
            && tokio::time::Instant::now() >= next_drain
            && !reporting.sending()
        {
            draining = Some(reporting.start_drain());
        }
        if !held.is_empty() {
            // A batch that could not even be spooled: try again shortly, also when asked
            // to stop (the decisions are not dropped).
            if !reporting.settle(&mut spool_empty, &mut held).await {
                tokio::time::sleep(RETRY).await;
            }
            continue;
        }
        tokio::select! {
            drained = async {
                match draining.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                draining = None;
                match drained {
                    Ok(Some(bytes)) => match reporting.spool.consume(bytes) {
                        Ok(empty) => {
                            spool_empty = empty;
                            next_drain = tokio::time::Instant::now();
                        }
                        Err(error) => {
                            tracing::error!(%error, "cannot cut recorded decisions off the spool");
                            next_drain = tokio::time::Instant::now() + RETRY;
                        }
                    },
                    _ => next_drain = tokio::time::Instant::now() + RETRY,
                }
            }
            decision = receiver.recv() => {
                let Some(first) = decision else { break };
                held.push(first);
                let deadline = tokio::time::Instant::now() + LINGER;
                while held.len() < BATCH {
                    match tokio::time::timeout_at(deadline, receiver.recv()).await {
                        Ok(Some(decision)) => held.push(decision),
                        _ => break,
                    }
                }
                // While the spool holds anything (being drained or not), new batches go
                // behind it.
                reporting.settle(&mut spool_empty, &mut held).await;
            }
            // Also looks again, each [`RETRY`], whether a report left waiting has its answer.
            () = tokio::time::sleep_until(next_drain.max(tokio::time::Instant::now() + if reporting.straggler.is_some() { RETRY } else { Duration::ZERO })), if !spool_empty && draining.is_none() => {}
            () = wake.notified() => next_drain = tokio::time::Instant::now(),
            () = stop.notified() => break,
        }
    }
    // The gateway is stopping: take no more, and keep what is left. A drain still under
    // way is left off; its lines stay in the spool and are sent again, harmlessly.
    if let Some(task) = draining {
        task.abort();
    }
    receiver.close();
    while let Some(decision) = receiver.recv().await {
        held.push(decision);
    }
    if !held.is_empty()
        && let Err(error) = reporting.spool.append(&held)
    {
        tracing::error!(%error, decisions = held.len(), "cannot spool decisions at shutdown");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn decisions_are_cut_to_what_the_issuer_accepts() {
        let decision = Decision {
            request_id: "r1".into(),
            time: 1,
            decision: "deny".into(),
            reason: "jsonrpc_malformed".into(),
            message: Some("é".repeat(2000)),
            route: "files".into(),
            method: String::new(),
            target: "/".repeat(5000),
            writ: None,
            mandate: None,
            agent: None,
            human: Some("x".repeat(300)),
            caller: None,
            tool: Some("t".repeat(300)),
            bytes: Some(7),
        }
        .bounded();
        assert_eq!(decision.method, "-");
        assert_eq!(decision.target.len(), 2048);
        assert_eq!(decision.message.as_ref().unwrap().len(), 1024);
        assert_eq!(decision.human.as_ref().unwrap().len(), 256);
        assert_eq!(decision.reason, "jsonrpc_malformed");
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool {
            path: dir.path().join(SPOOL_FILE),
            rejected: dir.path().join(REJECTED_FILE),
        };
        std::fs::write(&spool.path, "{\"a\":1}\n{\"torn").unwrap();
        spool.repair().unwrap();
        assert_eq!(std::fs::read_to_string(&spool.path).unwrap(), "{\"a\":1}\n");
    }
}
