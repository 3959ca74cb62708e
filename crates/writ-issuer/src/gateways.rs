//! Gateways after registration: their status, what each has been shown, and which are live.
//!
//! - **Status.** A gateway is `active`, `disabled` (refused until enabled again) or
//!   `revoked` (refused for good). Every authenticated call a gateway makes checks it
//!   ([`usable`]), so a disabled or revoked gateway's key reads no mandate, reports no
//!   decision and follows no feed. A gateway's key revoked through `POST /v1/revocations`
//!   with kind `gateway` counts as revoked whatever its recorded status.
//! - **Shown.** The issuer knows which writs it issued for which audience. Each
//!   `writ_issued` leaf carries a lookup key `shown:{gateway}:{id}` for the writ and for its
//!   mandate, per gateway serving the writ's audience, and the same pairs are kept in
//!   memory, with the writ's server (`shown:{gateway}:server:{name}`). A gateway reads
//!   only mandates it was shown a writ of, reports allows and answers only for writs issued
//!   for it, and discoveries only for servers it was issued writs for.
//! - **Presence.** A gateway's feed request `GET /v1/revocations?after=N` is its
//!   acknowledgment that it applied everything up to `N` (the gateway applies a page before
//!   it asks again). [`Presence`] keeps, per gateway identity, the last position it
//!   acknowledged and when it was last seen; a revocation asked to wait
//!   (`POST /v1/revocations?wait=S`) is answered once every live gateway acknowledged it,
//!   or after `S` seconds naming those that lag. Presence also enforces the deployment rule
//!   that single use needs: one live gateway process per audience.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use writ_store::{GatewayRecord, RevocationRecord, Write};

use crate::Issuer;
use crate::audit::record;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::inventory::parse_json;

/// A gateway that may call the issuer.
pub(crate) const ACTIVE: &str = "active";
/// A gateway refused until an administrator enables it again.
pub(crate) const DISABLED: &str = "disabled";
/// A gateway refused for good.
pub(crate) const REVOKED: &str = "revoked";

/// The longest a revocation may be asked to wait for the gateways, in seconds.
pub const MAX_ENFORCEMENT_WAIT: u64 = 60;

/// A gateway's status as it is enforced: `revoked` when its key was revoked as kind
/// `gateway`, whatever the recorded status says.
pub(crate) fn status<'a>(issuer: &Issuer, gateway: &'a GatewayRecord) -> &'a str {
    if issuer.store.is_revoked("gateway", &gateway.jkt) {
        REVOKED
    } else {
        gateway.status.as_str()
    }
}

/// Refuses a gateway that is not active. Called wherever a caller is resolved to a
/// gateway, so it holds for every authenticated call.
pub(crate) fn usable(issuer: &Issuer, gateway: &GatewayRecord) -> Result<(), ApiError> {
    match status(issuer, gateway) {
        // The one status that may call.
        ACTIVE => Ok(()),
        // Refused until enabled again.
        DISABLED => Err(ApiError::denied(
            "gateway_disabled",
            format!("gateway `{}` is disabled", gateway.name),
        )),
        // Revoked, or a status this version does not know: refused (fail closed).
        _ => Err(ApiError::denied(
            "gateway_revoked",
            format!("gateway `{}` was revoked", gateway.name),
        )),
    }
}

/// Refuses to revoke a gateway's key as an `agent` or a `key`: neither would stop it
/// (agents are agents' keys, keys are the issuer's signing keys), and a revocation that
/// revokes nothing must not answer as if it did.
pub(crate) fn refuse_misdirected(
    issuer: &Issuer,
    kind: &str,
    subject: &str,
) -> Result<(), ApiError> {
    if !matches!(kind, "agent" | "key") {
        return Ok(());
    }
    let gateway = issuer.store.gateway(subject).or_else(|| {
        issuer
            .store
            .gateways()
            .into_iter()
            .find(|gateway| gateway.name == subject)
    });
    match gateway {
        Some(gateway) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            "subject_is_gateway",
            format!(
                "`{subject}` is gateway `{}`, not {}: revoke it with kind `gateway` and its key thumbprint `{}`, or `writ gateway revoke {}`",
                gateway.name,
                if kind == "agent" {
                    "an agent"
                } else {
                    "an issuer signing key"
                },
                gateway.jkt,
                gateway.name
            ),
        )),
        None => Ok(()),
    }
}

#[derive(Serialize)]
pub(crate) struct StatusChanged {
    gateway: String,
    status: String,
    log_index: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reason {
    reason: String,
}

/// `POST /v1/gateways/{name}/disable`: administrators only; the gateway is refused until
/// enabled again.
pub(crate) async fn disable(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<StatusChanged>, ApiError> {
    change(&issuer, &method, &headers, &name, &body, DISABLED).await
}

/// `POST /v1/gateways/{name}/enable`: administrators only; not for a revoked gateway.
pub(crate) async fn enable(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<StatusChanged>, ApiError> {
    change(&issuer, &method, &headers, &name, &body, ACTIVE).await
}

/// `POST /v1/gateways/{name}/revoke`: administrators only; permanent. The gateway's key
/// is also revoked as kind `gateway` in the feed.
pub(crate) async fn revoke(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<StatusChanged>, ApiError> {
    change(&issuer, &method, &headers, &name, &body, REVOKED).await
}

async fn change(
    issuer: &Issuer,
    method: &Method,
    headers: &HeaderMap,
    name: &str,
    body: &Bytes,
    to: &'static str,
) -> Result<Json<StatusChanged>, ApiError> {
    let action = match to {
        ACTIVE => "enable",
        DISABLED => "disable",
        _ => "revoke",
    };
    let path = format!("/v1/gateways/{name}/{action}");
    let caller = authenticate(issuer, method, &path, headers).await?;
    let admin = caller.admin()?;
    let request: Reason = parse_json(body)?;
    if request.reason.is_empty() || request.reason.chars().count() > 512 {
        return Err(ApiError::invalid_request(
            "invalid_reason",
            "reason must be 1 to 512 characters",
        ));
    }
    let gateway = issuer
        .store
        .gateways()
        .into_iter()
        .find(|gateway| gateway.name == name)
        .ok_or_else(|| ApiError::not_found("unknown_gateway", format!("no gateway `{name}`")))?;
    // Revocation is permanent: nothing changes a revoked gateway's status again.
    if status(issuer, &gateway) == REVOKED {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request",
            "gateway_revoked",
            format!("gateway `{name}` was revoked; register a new gateway with a new key"),
        ));
    }
    let set = Write::SetGatewayStatus {
        jkt: gateway.jkt.clone(),
        status: to.to_owned(),
    };
    let keys = vec![format!("gateway:{}", gateway.jkt)];
    let write = if to == REVOKED {
        let revocation = RevocationRecord {
            seq: 0,
            kind: "gateway".to_owned(),
            subject: gateway.jkt.clone(),
            reason: request.reason.clone(),
            created_at: crate::seconds(issuer.now()),
            log_index: 0,
        };
        Write::Many(vec![set, Write::Revoke(vec![revocation])])
    } else {
        set
    };
    let appended = record(
        issuer,
        &format!("gateway_{}", if to == ACTIVE { "enabled" } else { to }),
        json!({"gateway": gateway.jkt, "name": gateway.name, "status": to,
               "reason": request.reason, "by": admin.id}),
        keys,
        write,
    )
    .await?;
    // A feed request the gateway has waiting sees the change at once.
    issuer.revoked.notify_waiters();
    Ok(Json(StatusChanged {
        gateway: gateway.name,
        status: to.to_owned(),
        log_index: appended.index,
    }))
}

// ---- shown: which writs and mandates each gateway may speak of ----------------------------

/// The most `(gateway, id)` pairs kept in memory; past it the set starts again and misses
/// are answered from the store's lookup keys.
const MAX_SHOWN: usize = 1 << 18;

/// The most writs whose parties are kept in memory; past it the map starts again and
/// misses are read from the writs' `writ_issued` leaves.
const MAX_ISSUED: usize = 1 << 16;

/// `(gateway, writ or mandate)` pairs the issuer issued writs for, as lookup keys, and
/// recent writs' parties.
#[derive(Debug, Default)]
pub(crate) struct Shown {
    pairs: Mutex<HashSet<String>>,
    writs: Mutex<HashMap<String, Issued>>,
}

/// What the issuer recorded of a writ: what a gateway's report of a call under it names.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) mandate: String,
    pub(crate) agent: String,
    pub(crate) human: String,
    /// The call, as the behaviour detectors name it (and gateways report it).
    pub(crate) tool: Option<String>,
}

impl Issued {
    /// From a writ's `writ_issued` event.
    pub(crate) fn from_event(event: &serde_json::Value) -> Option<Issued> {
        let text = |key: &str| event.get(key)?.as_str().map(str::to_owned);
        let tool = event
            .get("call")
            .cloned()
            .and_then(|call| serde_json::from_value::<writ_scope::AuthorizationDetail>(call).ok())
            .and_then(|call| writ_behaviour::tool_name(&call));
        Some(Issued {
            mandate: text("mandate")?,
            agent: text("agent")?,
            human: text("human")?,
            tool,
        })
    }
}

fn shown_key(gateway: &str, id: &str) -> String {
    format!("shown:{gateway}:{id}")
}

impl Shown {
    /// The lookup keys that say `writ` and its `mandate` were issued for the gateways
    /// serving `audience`, for the `writ_issued` leaf.
    pub(crate) fn keys(
        issuer: &Issuer,
        audience: &str,
        writ: &str,
        mandate: &str,
        server: &str,
    ) -> Vec<String> {
        let mut keys = Vec::new();
        let pairs = issuer
            .shown
            .pairs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gateway in issuer.store.gateways_serving(audience) {
            keys.push(shown_key(&gateway.jkt, writ));
            keys.push(shown_key(&gateway.jkt, mandate));
            // The route's server, once: what the gateway may report discoveries for.
            let server = shown_key(&gateway.jkt, &format!("server:{server}"));
            if !pairs.contains(&server) {
                keys.push(server);
            }
        }
        keys
    }

    /// Remembers keys from [`Shown::keys`] once their leaf is durable.
    pub(crate) fn remember(&self, keys: &[String]) {
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        if pairs.len() + keys.len() > MAX_SHOWN {
            pairs.clear();
        }
        pairs.extend(keys.iter().filter(|key| key.starts_with("shown:")).cloned());
    }

    /// Remembers a writ's parties once its `writ_issued` leaf is durable.
    pub(crate) fn remember_writ(&self, writ: &str, issued: Issued) {
        let mut writs = self.writs.lock().unwrap_or_else(PoisonError::into_inner);
        if writs.len() >= MAX_ISSUED {
            writs.clear();
        }
        writs.insert(writ.to_owned(), issued);
    }
}

/// The parties of the writ `id` as the issuer recorded them, from memory or else from its
/// `writ_issued` leaf (the first leaf under `writ:{id}`); `None` for a writ never issued.
pub(crate) async fn issued(issuer: &Issuer, id: &str) -> Result<Option<Issued>, ApiError> {
    if let Some(issued) = issuer
        .shown
        .writs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(id)
    {
        return Ok(Some(issued.clone()));
    }
    // Nothing is keyed under a writ before its issuance; a few leaves suffice.
    for index in issuer
        .store
        .lookup(&format!("writ:{id}"))
        .await?
        .into_iter()
        .take(4)
    {
        let Some(leaf) = issuer.store.leaf(index).await? else {
            continue;
        };
        if leaf.kind != "writ_issued" {
            continue;
        }
        let found = serde_json::from_slice::<serde_json::Value>(&leaf.data)
            .ok()
            .and_then(|parsed| Issued::from_event(parsed.get("event")?));
        if let Some(issued) = &found {
            issuer.shown.remember_writ(id, issued.clone());
        }
        return Ok(found);
    }
    Ok(None)
}

/// Whether a writ for `gateway`'s audience was issued under `id` (a writ or mandate id).
pub(crate) async fn shown(issuer: &Issuer, gateway: &str, id: &str) -> Result<bool, ApiError> {
    let key = shown_key(gateway, id);
    if issuer
        .shown
        .pairs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&key)
    {
        return Ok(true);
    }
    let found = !issuer.store.lookup(&key).await?.is_empty();
    if found {
        issuer.shown.remember(std::slice::from_ref(&key));
    }
    Ok(found)
}

// ---- presence: acknowledged feed positions and liveness -----------------------------------

/// The fewest seconds a gateway counts as live after its last feed request ended.
const MIN_LIVE_GRACE: u64 = 5;
/// How many earlier process instances of one gateway are remembered (and refused).
const RETIRED_INSTANCES: usize = 16;

#[derive(Debug)]
struct Seen {
    name: String,
    audience: String,
    /// The last feed position it acknowledged (`after` of its latest request).
    acked: i64,
    /// Its feed requests in flight.
    polls: usize,
    /// When a request of its last started or ended.
    last: Instant,
    /// The wait its last request asked for, in seconds.
    wait: u64,
    /// The process instance that polls now.
    instance: Option<String>,
    /// Instances that a newer one replaced.
    retired: VecDeque<String>,
}

impl Seen {
    /// Polling now, or recently enough that it is between two requests: a few of the wait
    /// periods it asks for.
    fn live(&self, now: Instant) -> bool {
        let grace = Duration::from_secs(self.wait.saturating_mul(3).max(MIN_LIVE_GRACE));
        self.polls > 0 || now.saturating_duration_since(self.last) <= grace
    }
}

/// Per gateway identity: the feed position it acknowledged, and whether it is live.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    /// Woken whenever a gateway acknowledges a position.
    acknowledged: Arc<Notify>,
}

/// A feed request in flight; the gateway stays live while it is held.
#[derive(Debug)]
pub(crate) struct Poll {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    jkt: String,
}

impl Drop for Poll {
    fn drop(&mut self) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(seen) = seen.get_mut(&self.jkt) {
            seen.polls = seen.polls.saturating_sub(1);
            seen.last = Instant::now();
        }
    }
}

/// A process instance id a gateway sends with its feed requests: 1 to 64 letters,
/// digits, `-` or `_`.
fn valid_instance(instance: &str) -> bool {
    (1..=64).contains(&instance.len())
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Presence {
    /// Records `gateway`'s feed request for entries after `after`: an acknowledgment of
    /// everything up to `after`. Refuses a second live gateway identity on an audience
    /// another live one serves, and an earlier process instance of this gateway once a
    /// newer one polls: replay caches are per process, so two processes serving one
    /// audience would break single use.
    pub(crate) fn poll(
        &self,
        gateway: &GatewayRecord,
        after: i64,
        wait: u64,
        instance: Option<&str>,
    ) -> Result<Poll, ApiError> {
        if instance.is_some_and(|instance| !valid_instance(instance)) {
            return Err(ApiError::invalid_request(
                "invalid_instance",
                "instance must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let overlapping = seen.iter().find(|(jkt, other)| {
            **jkt != gateway.jkt
                && other.live(now)
                && (writ_store::serves(&other.audience, &gateway.audience)
                    || writ_store::serves(&gateway.audience, &other.audience))
        });
        if let Some((_, other)) = overlapping {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request",
                "audience_in_use",
                format!(
                    "gateway `{}` is live for `{}`; one gateway serves an audience at a time, so single use holds",
                    other.name, other.audience
                ),
            ));
        }
        let entry = seen.entry(gateway.jkt.clone()).or_insert_with(|| Seen {
            name: gateway.name.clone(),
            audience: gateway.audience.clone(),
            acked: after,
            polls: 0,
            last: now,
            wait,
            instance: None,
            retired: VecDeque::new(),
        });
        if let Some(instance) = instance {
            if entry.retired.iter().any(|retired| retired == instance) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "invalid_request",
                    "gateway_instance_superseded",
                    format!(
                        "another process of gateway `{}` polls the feed with the same key; one process per gateway key",
                        gateway.name
                    ),
                ));
            }
            match &entry.instance {
                Some(current) if current != instance => {
                    if entry.retired.len() >= RETIRED_INSTANCES {
                        entry.retired.pop_front();
                    }
                    entry.retired.push_back(current.clone());
                    tracing::warn!(
                        gateway = %gateway.name,
                        "a new process of this gateway follows the feed; the earlier one is refused from now on"
                    );
                    entry.instance = Some(instance.to_owned());
                }
                Some(_) => {}
                None => entry.instance = Some(instance.to_owned()),
            }
        }
        entry.acked = after;
        entry.polls += 1;
        entry.last = now;
        entry.wait = wait;
        drop(seen);
        self.acknowledged.notify_waiters();
        Ok(Poll {
            seen: Arc::clone(&self.seen),
            jkt: gateway.jkt.clone(),
        })
    }

    /// The live gateways, split into those that acknowledged `position` and those that
    /// have not, by name.
    fn split(&self, position: i64) -> (Vec<String>, Vec<String>) {
        let now = Instant::now();
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut done, mut lagging) = (Vec::new(), Vec::new());
        for seen in seen.values().filter(|seen| seen.live(now)) {
            if seen.acked >= position {
                done.push(seen.name.clone());
            } else {
                lagging.push(seen.name.clone());
            }
        }
        done.sort();
        lagging.sort();
        (done, lagging)
    }

    /// Waits until every live gateway has acknowledged feed `position`, at most `timeout`.
    pub(crate) async fn enforced(&self, position: i64, timeout: Duration) -> Enforcement {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Interest first, then the check, so an acknowledgment in between is not missed.
            let acknowledged = self.acknowledged.notified();
            let (done, lagging) = self.split(position);
            let timed_out = tokio::time::Instant::now() >= deadline;
            if lagging.is_empty() || timed_out {
                return Enforcement {
                    status: if lagging.is_empty() {
                        "enforced"
                    } else {
                        "lagging"
                    },
                    position,
                    acknowledged: done,
                    lagging,
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                };
            }
            let _ = tokio::time::timeout_at(deadline, acknowledged).await;
        }
    }
}

/// Whether the live gateways applied a revocation, for `POST /v1/revocations?wait=S`.
#[derive(Debug, Serialize)]
pub(crate) struct Enforcement {
    /// `enforced`: every live gateway acknowledged the position; `lagging`: the wait ran
    /// out first (the revocation is committed all the same).
    pub(crate) status: &'static str,
    /// The feed position that carries the revocation.
    position: i64,
    /// Live gateways that acknowledged it.
    acknowledged: Vec<String>,
    /// Live gateways that had not when the wait ran out.
    lagging: Vec<String>,
    /// How long the answer waited.
    waited_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AwaitQuery {
    /// Wait up to this many seconds for every live gateway to acknowledge the revocation.
    #[serde(default)]
    wait: Option<u64>,
}

/// For a revocation asked to wait: waits for the gateways to acknowledge the feed position
/// `position` (the highest this revocation took; when it took none, the feed's head).
pub(crate) async fn await_enforcement(
    issuer: &Issuer,
    query: &AwaitQuery,
    position: Option<i64>,
) -> Result<Option<Enforcement>, ApiError> {
    let Some(wait) = query.wait else {
        return Ok(None);
    };
    let position = match position {
        Some(position) => position,
        None => issuer.store.revocation_head().await?,
    };
    let timeout = Duration::from_secs(wait.min(MAX_ENFORCEMENT_WAIT));
    Ok(Some(issuer.presence.enforced(position, timeout).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(jkt: &str, audience: &str) -> GatewayRecord {
        GatewayRecord {
            jkt: jkt.to_owned(),
            name: format!("gw-{jkt}"),
            audience: audience.to_owned(),
            jwk: String::new(),
            status: ACTIVE.to_owned(),
            created_at: 0,
        }
    }

    #[tokio::test]
    async fn a_second_live_gateway_on_one_audience_is_refused() {
        let presence = Presence::default();
        let _a = presence
            .poll(&gateway("a", "https://gw.test/"), 0, 10, Some("one"))
            .unwrap();
        let refused = presence
            .poll(&gateway("b", "https://gw.test/mcp"), 0, 10, Some("two"))
            .unwrap_err();
        assert_eq!(refused.reason(), "audience_in_use");
        // Another audience is fine.
        presence
            .poll(&gateway("c", "https://other.test/"), 0, 10, None)
            .unwrap();
    }

    #[tokio::test]
    async fn an_earlier_process_of_one_gateway_is_refused_once_a_newer_one_polls() {
        let presence = Presence::default();
        let gw = gateway("a", "https://gw.test/");
        drop(presence.poll(&gw, 0, 10, Some("first")).unwrap());
        drop(presence.poll(&gw, 0, 10, Some("second")).unwrap());
        let refused = presence.poll(&gw, 0, 10, Some("first")).unwrap_err();
        assert_eq!(refused.reason(), "gateway_instance_superseded");
        presence.poll(&gw, 0, 10, Some("second")).unwrap();
    }

    #[tokio::test]
    async fn enforcement_waits_for_the_acknowledgment_and_names_who_lags() {
        let presence = Arc::new(Presence::default());
        let a = gateway("a", "https://a.test/");
        let b = gateway("b", "https://b.test/");
        drop(presence.poll(&a, 4, 1, None).unwrap());
        drop(presence.poll(&b, 4, 1, None).unwrap());
        let lagging = presence.enforced(5, Duration::from_millis(50)).await;
        assert_eq!(lagging.status, "lagging");
        assert_eq!(lagging.lagging, ["gw-a", "gw-b"]);
        let waiting = {
            let presence = Arc::clone(&presence);
            tokio::spawn(async move { presence.enforced(5, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(presence.poll(&a, 5, 1, None).unwrap());
        drop(presence.poll(&b, 7, 1, None).unwrap());
        let enforced = waiting.await.unwrap();
        assert_eq!(enforced.status, "enforced");
        assert_eq!(enforced.acknowledged, ["gw-a", "gw-b"]);
        assert!(enforced.waited_ms < 5000);
    }
}
