//! The issuer's signing keys, from its JWKS.
//!
//! Fetched at start, refreshed in the background, and refetched when a writ names a `kid`
//! the gateway does not know (a rotation), at most once per
//! `limits.jwks_refetch_interval_secs` so that made-up `kid`s cannot make the gateway hammer
//! the issuer. Keys older than `limits.max_jwks_age_secs` are not trusted: when the issuer's
//! JWKS cannot be fetched for that long, every writ is refused (fail closed).
//!
//! After a failed fetch (the issuer is down or slow to start), the next is tried after
//! 250 ms, then after twice as long each time, up to the normal refresh period: a gateway
//! started during an outage is ready within moments of the issuer's return. A fetch that
//! gets no answer is given up after [`FETCH_TIMEOUT`].

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use writ_client::IssuerClient;
use writ_jose::KeySet;

use crate::deny::Denial;

/// How often the keys are refreshed when nothing asks for it.
const REFRESH: Duration = Duration::from_secs(60);
/// The first wait after a failed fetch; each next one is twice as long, up to [`REFRESH`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// How long a fetch may wait for the issuer's answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct IssuerKeys {
    client: Arc<IssuerClient>,
    current: RwLock<Option<(Arc<KeySet>, Instant)>>,
    /// When the last fetch was tried; held while fetching (single flight).
    last_attempt: Mutex<Option<Instant>>,
    max_age: Duration,
    refetch_interval: Duration,
}

impl IssuerKeys {
    pub(crate) fn new(client: Arc<IssuerClient>, max_age: Duration, refetch: Duration) -> Self {
        IssuerKeys {
            client,
            current: RwLock::new(None),
            last_attempt: Mutex::new(None),
            max_age,
            refetch_interval: refetch,
        }
    }

    /// The trusted keys, or a refusal when there are none fresh enough.
    pub(crate) fn get(&self) -> Result<Arc<KeySet>, Denial> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        match &*current {
            Some((keys, fetched)) if fetched.elapsed() <= self.max_age => Ok(Arc::clone(keys)),
            _ => Err(Denial::unavailable(
                "jwks_unavailable",
                "the issuer's signing keys cannot be fetched, so no writ can be checked",
            )),
        }
    }

    /// Fetches the keys now, unless a fetch was tried within the refetch interval (or
    /// `force`). Returns whether new keys were fetched.
    pub(crate) async fn refresh(&self, force: bool) -> bool {
        let mut last = self.last_attempt.lock().await;
        if !force && last.is_some_and(|at| at.elapsed() < self.refetch_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some((Arc::new(keys), Instant::now()));
                true
            }
            Err(error) => {
                tracing::warn!(%error, "could not fetch the issuer's keys");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.client.get("/.well-known/jwks.json"))
            .await
            .map_err(|_| "the issuer did not answer in time".to_owned())?
            .map_err(|e| e.to_string())?;
        KeySet::from_jwks_json(body.to_string().as_bytes()).map_err(|e| e.to_string())
    }

    /// Keeps the keys fresh until the gateway stops: every [`REFRESH`], and after a failed
    /// fetch sooner, backing off from [`FIRST_RETRY`].
    pub(crate) fn spawn_refresher(self: &Arc<Self>) {
        // Failed fetches in a row; the one at start counts.
        let mut failures = u32::from(self.get().is_err());
        let keys = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(wait_after(failures)).await;
                let Some(keys) = keys.upgrade() else { return };
                failures = if keys.refresh(true).await {
                    0
                } else {
                    failures.saturating_add(1)
                };
            }
        });
    }
}

/// The wait before the next fetch after `failures` failed fetches in a row.
fn wait_after(failures: u32) -> Duration {
    match failures {
        0 => REFRESH,
        n => FIRST_RETRY
            .saturating_mul(2u32.saturating_pow(n - 1))
            .min(REFRESH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fetches_back_off_from_a_short_wait_to_the_refresh_period() {
        let waits: Vec<u128> = (0..12).map(|n| wait_after(n).as_millis()).collect();
        assert_eq!(
            waits,
            [
                60_000, 250, 500, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(wait_after(u32::MAX), REFRESH);
    }
}
