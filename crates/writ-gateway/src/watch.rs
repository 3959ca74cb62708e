//! Behaviour at the gateway: what only the enforcement point sees is the answer.
//!
//! The issuer compares every call with its agent's baseline before it issues the writ; the
//! gateway measures the response. For each allowed tool call or HTTP request it reads the
//! agent's response limits from the issuer (`GET /v1/behaviour/limits/{agent}`, kept for
//! `behaviour_limits_ttl_secs`), counts the bytes of the answer as they stream, and reports the total
//! when the answer ends (a `response` decision), which the baseline learns from. An answer
//! that passes its tool's limit is a bulk export: unless the limit's mode is `observe`, the
//! stream is cut there and the report says so, and the issuer holds the mandate.
//!
//! Limits are advisory state, not credentials: they are read again in the background when
//! they are older than `behaviour_limits_ttl_secs`, and when the issuer cannot be asked the
//! last limits known are used, and none before the first answer (the writ and its
//! revocation are still checked, and fail closed).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use serde::Deserialize;
use writ_behaviour::Mode;
use writ_client::IssuerClient;

use crate::decisions::{Decision, Queue};

/// The most agents whose limits are kept.
const CACHED_AGENTS: usize = 10_000;
/// The reason code of a response cut for its volume.
pub const RESPONSE_VOLUME: &str = "response_volume";

#[derive(Debug, Clone, Deserialize)]
struct AgentLimits {
    mode: Mode,
    responses: HashMap<String, u64>,
    /// For tools not listed; none while the agent's baseline is learning.
    default: Option<u64>,
}

/// How long the first read of an agent's limits may hold its call.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

type Cache = Mutex<HashMap<String, (Instant, Arc<AgentLimits>)>>;

/// Agents' response limits, read from the issuer.
#[derive(Debug)]
pub(crate) struct ResponseLimits {
    client: Arc<IssuerClient>,
    ttl: Duration,
    cache: Arc<Cache>,
    /// Agents whose limits are being read again in the background.
    refreshing: Arc<Mutex<HashSet<String>>>,
}

impl ResponseLimits {
    pub(crate) fn new(client: Arc<IssuerClient>, ttl: Duration) -> Self {
        ResponseLimits {
            client,
            ttl,
            cache: Arc::new(Mutex::new(HashMap::new())),
            refreshing: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The limit on `agent`'s answers from `tool`, and what passing it leads to. Limits
    /// older than the TTL are used while they are read again in the background, so a slow
    /// issuer never holds a call; only an agent's first call waits, at most
    /// [`FETCH_TIMEOUT`], and a failed read is remembered for the TTL too.
    pub(crate) async fn limit(&self, agent: &str, tool: &str) -> Option<(u64, Mode)> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .cloned();
        let limits = match cached {
            Some((fetched, limits)) => {
                if fetched.elapsed() >= self.ttl {
                    self.refresh_later(agent);
                }
                limits
            }
            None => {
                let fetched =
                    tokio::time::timeout(FETCH_TIMEOUT, fetch(&self.client, &self.cache, agent))
                        .await;
                match fetched {
                    Ok(limits) => limits,
                    // Nothing was known before (this is the agent's first call): none.
                    Err(_) => {
                        tracing::warn!("the issuer's behaviour limits took too long to read");
                        remember(&self.cache, agent, Arc::new(AgentLimits::unknown()))
                    }
                }
            }
        };
        limits
            .responses
            .get(tool)
            .copied()
            .or(limits.default)
            .map(|limit| (limit, limits.mode))
    }

    fn refresh_later(&self, agent: &str) {
        let fresh = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.to_owned());
        if !fresh {
            return;
        }
        let (client, cache, refreshing) = (
            Arc::clone(&self.client),
            Arc::clone(&self.cache),
            Arc::clone(&self.refreshing),
        );
        let agent = agent.to_owned();
        tokio::spawn(async move {
            fetch(&client, &cache, &agent).await;
            refreshing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&agent);
        });
    }
}

impl AgentLimits {
    /// What a gateway knows when the issuer cannot be asked: nothing.
    fn unknown() -> AgentLimits {
        AgentLimits {
            mode: Mode::Observe,
            responses: HashMap::new(),
            default: None,
        }
    }
}

/// Reads `agent`'s limits into `cache`. When the read fails, the limits known before stay
/// (dated now, so they are not asked for again until the TTL passes), and only an agent
/// with none yet is remembered as having none.
async fn fetch(client: &IssuerClient, cache: &Cache, agent: &str) -> Arc<AgentLimits> {
    let answer = client.get(&format!("/v1/behaviour/limits/{agent}")).await;
    let failed = |why: String| {
        tracing::warn!(error = %why, "the issuer's behaviour limits are unavailable");
        let known = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(agent)
            .map(|(_, limits)| Arc::clone(limits));
        known.unwrap_or_else(|| Arc::new(AgentLimits::unknown()))
    };
    let limits = match answer.map(serde_json::from_value::<AgentLimits>) {
        Ok(Ok(limits)) => Arc::new(limits),
        Ok(Err(error)) => failed(error.to_string()),
        Err(error) => failed(error.to_string()),
    };
    remember(cache, agent, limits)
}

fn remember(cache: &Cache, agent: &str, limits: Arc<AgentLimits>) -> Arc<AgentLimits> {
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CACHED_AGENTS && !cache.contains_key(agent) {
        cache.clear();
    }
    cache.insert(agent.to_owned(), (Instant::now(), Arc::clone(&limits)));
    limits
}

/// One allowed call whose answer is measured.
#[derive(Debug)]
pub(crate) struct Watch {
    /// The allow decision this answer belongs to; its end is reported as a `response`.
    pub(crate) decision: Decision,
    pub(crate) tool: String,
    pub(crate) limit: Option<(u64, Mode)>,
    pub(crate) queue: Queue,
}

impl Watch {
    /// Whether `bytes` passes the limit in a mode that stops it.
    fn stops(&self, bytes: u64) -> bool {
        matches!(self.limit, Some((limit, mode)) if bytes > limit && mode != Mode::Observe)
    }

    /// Whether `bytes` passes the limit at all.
    fn exceeds(&self, bytes: u64) -> bool {
        matches!(self.limit, Some((limit, _)) if bytes > limit)
    }

    /// Reports the answer's end: `bytes` the upstream sent (up to the cut, when it was cut).
    fn report(self, bytes: u64, cut: bool) {
        let exceeds = self.exceeds(bytes);
        let mut decision = self.decision;
        decision.decision = "response".to_owned();
        decision.reason = if exceeds {
            RESPONSE_VOLUME
        } else {
            "completed"
        }
        .to_owned();
        decision.message = match self.limit {
            Some((limit, mode)) if bytes > limit => Some(format!(
                "the answer passed its limit of {limit} bytes for `{}` ({mode}){}",
                self.tool,
                if cut { "; cut there" } else { "" }
            )),
            _ => None,
        };
        decision.tool = Some(self.tool);
        decision.bytes = Some(bytes);
        if self.queue.record(decision).is_err() {
            tracing::error!("could not queue the end of a response for the audit log");
        }
    }

    /// Checks a whole answer (a stdio server's) of `bytes`: `true` when it must not pass.
    /// Reports it either way.
    pub(crate) fn settle(self, bytes: u64) -> bool {
        let stop = self.stops(bytes);
        self.report(bytes, stop);
        stop
    }
}

/// A response body that counts its bytes, ends with an error at its limit, and reports its
/// end (also when the client goes away first).
pub(crate) struct Metered<B> {
    inner: B,
    watch: Option<Watch>,
    bytes: u64,
    /// Set once the answer is cut: nothing more passes.
    cut: bool,
}

impl<B> Metered<B> {
    pub(crate) fn new(inner: B, watch: Watch) -> Self {
        Metered {
            inner,
            watch: Some(watch),
            bytes: 0,
            cut: false,
        }
    }

    fn finish(&mut self, cut: bool) {
        if let Some(watch) = self.watch.take() {
            watch.report(self.bytes, cut);
        }
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// Why an answer stopped short.
#[derive(Debug, thiserror::Error)]
#[error("the answer passed its behaviour limit of {limit} bytes and was cut")]
pub(crate) struct Cut {
    limit: u64,
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.cut {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = this.bytes.saturating_add(data.len() as u64);
                    if let Some(watch) = &this.watch
                        && watch.stops(bytes)
                    {
                        let limit = watch.limit.map_or(0, |(limit, _)| limit);
                        // The report counts what the upstream sent, up to the cut.
                        this.bytes = bytes;
                        this.cut = true;
                        this.finish(true);
                        return Poll::Ready(Some(Err(Box::new(Cut { limit }))));
                    }
                    this.bytes = bytes;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(false);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                this.finish(false);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer as one axum body.
pub(crate) fn metered<B>(body: B, watch: Option<Watch>) -> axum::body::Body
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    match watch {
        Some(watch) => axum::body::Body::new(Metered::new(body, watch)),
        None => axum::body::Body::new(body.map_err(Into::into)),
    }
}
