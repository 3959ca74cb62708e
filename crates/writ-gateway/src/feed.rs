//! The issuer's revocation feed, followed by long polling.
//!
//! The issuer answers a feed request as soon as something is revoked, so a revocation
//! reaches the gateway within one round trip. When nothing happens it answers after the
//! wait, which keeps the gateway's copy provably fresh: the copy is as new as the last
//! request that came back empty (nothing left to read), counted from when it was sent. A
//! page with news is followed at once by another request, until one comes back empty.
//! Older than the configured limit, the gateway refuses every request until the feed
//! answers again (fail closed).
//!
//! Each request's `after` tells the issuer that everything up to it is applied: a page is
//! applied before the next request is sent, never after. The issuer counts the request as
//! this gateway's acknowledgment (a revocation asked to wait is answered once every live
//! gateway has acknowledged it). Every request also carries this process's instance id;
//! when the issuer refuses the gateway (disabled, revoked, another process with the same
//! key, another gateway on the same audience), the copy counts as stale at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use writ_client::IssuerClient;

/// How long past its wait a feed request may go unanswered before it is asked again.
const ANSWER_MARGIN: Duration = Duration::from_secs(10);

/// Revoked subjects, and how fresh that knowledge is.
#[derive(Debug)]
pub(crate) struct Revocations {
    /// Kind (`writ`, `mandate`, ...) → revoked ids; looked up without allocating.
    revoked: RwLock<HashMap<String, HashSet<String>>>,
    /// When the last answered feed request was sent.
    synced: RwLock<Option<Instant>>,
    max_staleness: Duration,
    /// This process's id for the issuer, drawn at start.
    instance: String,
}

#[derive(Deserialize)]
struct Page {
    revocations: Vec<Entry>,
    next: i64,
}

#[derive(Deserialize)]
struct Entry {
    kind: String,
    subject: String,
}

impl Revocations {
    pub(crate) fn new(max_staleness: Duration) -> Self {
        Revocations {
            revoked: RwLock::new(HashMap::new()),
            synced: RwLock::new(None),
            max_staleness,
            instance: instance_id(),
        }
    }

    /// Whether the copy is fresh enough to decide on.
    pub(crate) fn is_fresh(&self) -> bool {
        self.synced
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() <= self.max_staleness)
    }

    /// The first of `subjects` (kind, id) that is revoked.
    pub(crate) fn first_revoked<'a>(
        &self,
        subjects: impl IntoIterator<Item = (&'static str, &'a str)>,
    ) -> Option<(&'static str, &'a str)> {
        let revoked = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        if revoked.is_empty() {
            return None;
        }
        subjects.into_iter().find(|(kind, id)| {
            revoked
                .get(*kind)
                .is_some_and(|revoked| revoked.contains(*id))
        })
    }

    /// Reads one page of the feed after `after`, waiting up to `wait` seconds for news.
    /// Returns where to resume, and whether the page was empty (the copy caught up).
    pub(crate) async fn poll(
        &self,
        client: &IssuerClient,
        after: i64,
        wait: u64,
    ) -> Result<(i64, bool), String> {
        let sent = Instant::now();
        let instance = &self.instance;
        // An issuer that takes the request and never answers (stopped, or cut off without
        // a reset) is given up on after the wait plus a margin, and asked again.
        let answer = tokio::time::timeout(
            Duration::from_secs(wait).saturating_add(ANSWER_MARGIN),
            client.get(&format!(
                "/v1/revocations?after={after}&wait={wait}&instance={instance}"
            )),
        )
        .await
        .map_err(|_| "the issuer did not answer the feed request in time".to_owned())?;
        let body = match answer {
            Ok(body) => body,
            Err(error) => {
                // The issuer refuses this gateway: stop deciding on the copy now rather
                // than when it ages out.
                if let writ_client::ClientError::Refused { status, .. } = &error
                    && matches!(status.as_u16(), 401 | 403 | 409)
                {
                    *self.synced.write().unwrap_or_else(PoisonError::into_inner) = None;
                }
                return Err(error.to_string());
            }
        };
        let page: Page = serde_json::from_value(body)
            .map_err(|e| format!("the revocation feed is malformed: {e}"))?;
        let caught_up = page.revocations.is_empty();
        // Applied here, before `poll` returns and the next request acknowledges `next`.
        if caught_up {
            *self.synced.write().unwrap_or_else(PoisonError::into_inner) = Some(sent);
        } else {
            let mut revoked = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
            for entry in page.revocations {
                revoked.entry(entry.kind).or_default().insert(entry.subject);
            }
        }
        Ok((page.next, caught_up))
    }

    /// Follows the feed until the gateway stops.
    pub(crate) fn spawn_follower(self: &Arc<Self>, client: Arc<IssuerClient>) {
        let feed = Arc::downgrade(self);
        // An empty answer comes at least every `wait` plus two round trips; a third of the
        // limit leaves room for slow ones.
        let wait = (self.max_staleness.as_secs().saturating_sub(1) / 3).clamp(1, 30);
        tokio::spawn(async move {
            let mut after = 0;
            // Until caught up, pages are read at once: a new gateway is ready without
            // waiting, and news is followed by a check that nothing more is queued.
            let mut caught_up = false;
            loop {
                let Some(feed) = feed.upgrade() else { return };
                match feed
                    .poll(&client, after, if caught_up { wait } else { 0 })
                    .await
                {
                    Ok((next, empty)) => {
                        after = next;
                        caught_up = empty;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "revocation feed unavailable");
                        drop(feed);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
    }
}

/// A random id for this process, sent with every feed request.
fn instance_id() -> String {
    match writ_jose::random_bytes::<16>() {
        Ok(bytes) => bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        // No randomness: the process id and start time still tell processes apart.
        Err(_) => format!(
            "p{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos())
        ),
    }
}
