//! `writ quickstart`: the protocol, end to end, in one process.
//!
//! Alice grants an agent a mandate for a task; the agent earns a writ for one call with a
//! DPoP proof from a key it never exports; a gateway checks the writ, the proof and the real
//! call. Then the ways it fails closed: a replayed proof, a stolen writ, a call outside the
//! data scope, an expired writ. Every decision prints its stable reason code.

use std::io::Write;

use anyhow::Context as _;
use serde_json::{Value, json};
use writ_jose::{Algorithm, KeySet, SigningKey};
use writ_scope::{AuthorizationDetail, Call, Grants};
use writ_token::{
    Actor, Audience, Confirmation, DEFAULT_WRIT_LIFETIME, Expectations, HumanId, MandateClaims,
    MandateId, MemoryReplayCache, PolicyRef, ProofCheck, ProofClaims, ReplayCache, SingleDetail,
    Task, TaskDigest, UnixTime, UnverifiedMandate, UnverifiedWrit, WritClaims, WritId,
    verify_proof,
};

const ISSUER: &str = "https://issuer.writ.localhost";
const TOKEN_ENDPOINT: &str = "https://issuer.writ.localhost/token";
const GATEWAY: &str = "https://gateway.writ.localhost/mcp/files";
const ISSUER_KID: &str = "issuer-1";
const TASK: &str = "Summarize the Q3 sales reports in /data/sales for the board meeting.";
const SKEW: u64 = 5;
const PROOF_MAX_AGE: u64 = 60;

/// How one step of the walk-through ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The request went through.
    Allowed,
    /// The request was refused with this stable reason code.
    Denied(&'static str),
}

/// Every decision the walk-through made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `(step, outcome)` pairs.
    pub decisions: Vec<(&'static str, Outcome)>,
}

/// A refusal: a stable code and a sentence.
struct Denial {
    code: &'static str,
    message: String,
}

impl Denial {
    fn new(code: &'static str, message: impl ToString) -> Self {
        Denial {
            code,
            message: message.to_string(),
        }
    }
}

/// The issuer's side of the exchange, as far as the quickstart needs it.
struct Issuer {
    key: SigningKey,
    keys: KeySet,
    id: Audience,
    replay: MemoryReplayCache,
}

/// The gateway's side: the issuer's public keys and its own replay cache.
struct Gateway {
    keys: KeySet,
    issuer: Audience,
    id: Audience,
    replay: MemoryReplayCache,
}

pub(crate) fn run(out: &mut dyn Write) -> anyhow::Result<Summary> {
    let mut decisions = Vec::new();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let now = writ_issuer::Clock::now(&writ_issuer::SystemClock);

    writeln!(
        out,
        "Writ quickstart: one agent, one task, one call at a time."
    )?;
    writeln!(out, "Working directory: {}", dir.path().display())?;

    step(
        out,
        1,
        "Keys: the issuer and the agent each get a key in a keystore file",
    )?;
    let issuer_key = keystore_key(&dir.path().join("issuer.key"))?;
    let agent_key = keystore_key(&dir.path().join("agent.key"))?;
    let agent = agent_key.public_key().thumbprint().clone();
    say(
        out,
        &format!("issuer.key  Ed25519, mode 0600, published as kid `{ISSUER_KID}`"),
    )?;
    say(
        out,
        &format!("agent.key   Ed25519, mode 0600, agent id (key thumbprint) {agent}"),
    )?;
    say(
        out,
        "The agent's private key stays in its keystore; it proves possession instead.",
    )?;

    let mut keys = KeySet::new();
    keys.insert(ISSUER_KID, issuer_key.public_key().clone())?;
    let issuer_id = Audience::new(ISSUER)?;
    let issuer = Issuer {
        key: issuer_key,
        keys: keys.clone(),
        id: issuer_id.clone(),
        replay: MemoryReplayCache::new(1024),
    };
    let gateway = Gateway {
        keys,
        issuer: issuer_id.clone(),
        id: Audience::new(GATEWAY)?,
        replay: MemoryReplayCache::new(1024),
    };

    step(out, 2, "alice grants the agent a mandate for a task")?;
    let grants: Grants = serde_json::from_value(json!([{
        "type": "mcp_tool_call",
        "server": "files",
        "tool": "read_file",
        "arguments": {"object": {"required": {"path": {"glob": "/data/sales/*"}}}},
        "datatypes": ["internal"]
    }]))?;
    let mandate_claims = MandateClaims {
        iss: issuer_id.clone(),
        sub: HumanId::new("alice")?,
        act: Actor::new(agent.clone()),
        aud: issuer_id.clone(),
        iat: now,
        exp: now.plus(15 * 60),
        jti: MandateId::from_random(random_id()?),
        cnf: Confirmation { jkt: agent.clone() },
        grants,
        task: Task {
            digest: TaskDigest::of(TASK),
            summary: Some("Summarize Q3 sales reports".to_owned()),
        },
        depth: 0,
        max_depth: 2,
        parent: None,
    };
    let mandate = writ_token::sign(&mandate_claims, &issuer.key, ISSUER_KID)?;
    say(out, &format!("task:    \"{TASK}\""))?;
    say(
        out,
        "grants:  files/read_file with `path` matching /data/sales/*  (data: internal)",
    )?;
    say(
        out,
        &format!(
            "mandate: {} (mandate+jwt, {} bytes)",
            mandate_claims.jti,
            mandate.len()
        ),
    )?;
    say(
        out,
        "         valid 15 minutes, bound to the agent key, good only at the issuer",
    )?;

    step(
        out,
        3,
        "The agent asks for a writ to read /data/sales/q3.csv",
    )?;
    let read_q3 = json!({"path": "/data/sales/q3.csv"});
    let writ = match issue_writ(&issuer, &mandate, &agent_key, &read_q3, now) {
        Ok(writ) => {
            let claims = UnverifiedWrit::parse(&writ)?.unverified_claims()?;
            say(
                out,
                "issuer checks: mandate signature and expiry, DPoP proof by the agent",
            )?;
            say(
                out,
                "               key, the call inside the mandate's grants",
            )?;
            say(
                out,
                &format!(
                    "writ:    {} (writ+jwt, {} bytes, expires in {} s)",
                    claims.jti,
                    writ.len(),
                    DEFAULT_WRIT_LIFETIME
                ),
            )?;
            decisions.push(("issue writ for /data/sales/q3.csv", Outcome::Allowed));
            writ
        }
        Err(denial) => anyhow::bail!("the quickstart's own writ was refused: {}", denial.message),
    };

    step(out, 4, "The agent calls the tool through the gateway")?;
    let proof = ProofClaims::new("POST", GATEWAY, now, random_jti()?)
        .with_access_token(&writ)
        .sign(&agent_key)?;
    let call = |arguments| Call::McpToolCall {
        server: "files",
        tool: "read_file",
        arguments,
    };
    let decision = gateway.check(&writ, &proof, &call(&read_q3), now);
    report(
        out,
        &mut decisions,
        "call read_file with the writ",
        decision,
    )?;

    step(out, 5, "Someone replays the same request")?;
    let decision = gateway.check(&writ, &proof, &call(&read_q3), now);
    report(out, &mut decisions, "replay the same request", decision)?;

    step(
        out,
        6,
        "An attacker steals the writ and signs a proof with their own key",
    )?;
    let attacker = SigningKey::generate(Algorithm::EdDSA)?;
    let stolen = ProofClaims::new("POST", GATEWAY, now, random_jti()?)
        .with_access_token(&writ)
        .sign(&attacker)?;
    let decision = gateway.check(&writ, &stolen, &call(&read_q3), now);
    report(out, &mut decisions, "stolen writ, attacker's key", decision)?;

    step(
        out,
        7,
        "The agent asks for a writ to read /etc/passwd, outside its data scope",
    )?;
    let passwd = json!({"path": "/etc/passwd"});
    let decision = issue_writ(&issuer, &mandate, &agent_key, &passwd, now).map(drop);
    report(out, &mut decisions, "issue writ for /etc/passwd", decision)?;

    step(
        out,
        8,
        "A minute later, the agent presents the first writ again",
    )?;
    let later = now.plus(60);
    let fresh = ProofClaims::new("POST", GATEWAY, later, random_jti()?)
        .with_access_token(&writ)
        .sign(&agent_key)?;
    let decision = gateway.check(&writ, &fresh, &call(&read_q3), later);
    report(out, &mut decisions, "expired writ", decision)?;

    let allowed = decisions
        .iter()
        .filter(|(_, o)| *o == Outcome::Allowed)
        .count();
    writeln!(out)?;
    writeln!(
        out,
        "Done: {allowed} allowed, {} denied, each with its reason. The agent never held a \
         reusable credential.",
        decisions.len() - allowed
    )?;
    Ok(Summary { decisions })
}

impl Issuer {
    /// Token exchange, reduced to its checks: the mandate, the proof at the token endpoint,
    /// the binding between them, and the requested call inside the grants.
    fn issue(
        &self,
        mandate: &str,
        proof: &str,
        requested: AuthorizationDetail,
        arguments: &Value,
        now: UnixTime,
    ) -> Result<String, Denial> {
        let expect = Expectations {
            issuer: &self.id,
            audience: &self.id,
            now,
            skew: SKEW,
        };
        let mandate = UnverifiedMandate::parse(mandate)
            .and_then(|token| token.verify(&self.keys, &expect))
            .map_err(|error| Denial::new(error.code(), &error))?;
        let check = ProofCheck {
            method: "POST",
            uri: TOKEN_ENDPOINT,
            now,
            max_age: PROOF_MAX_AGE,
            max_skew: SKEW,
            access_token: None,
            nonce: None,
        };
        let proof = verify_proof(proof, &check, &self.replay)
            .map_err(|error| Denial::new(error.code(), &error))?;
        let claims = mandate.claims();
        proof
            .ensure_bound_to(&claims.cnf.jkt)
            .map_err(|error| Denial::new(error.code(), &error))?;
        if claims.grants.covering(&requested).is_none() {
            // Explain with the closest grant: the one for the same tool, if any.
            let call = Call::McpToolCall {
                server: "files",
                tool: "read_file",
                arguments,
            };
            let reason = claims
                .grants
                .as_slice()
                .iter()
                .find_map(|grant| grant.check(&call).err())
                .map(|mismatch| Denial::new(mismatch.code(), &mismatch))
                .unwrap_or_else(|| Denial::new("outside_mandate", "no grant covers the call"));
            return Err(reason);
        }
        let writ = WritClaims {
            iss: self.id.clone(),
            sub: claims.sub.clone(),
            act: claims.act.clone(),
            aud: Audience::new(GATEWAY).map_err(|e| Denial::new("internal", e))?,
            iat: now,
            nbf: now,
            exp: now.plus(DEFAULT_WRIT_LIFETIME),
            jti: WritId::from_random(random_id().map_err(|e| Denial::new("internal", e))?),
            cnf: claims.cnf.clone(),
            authorization_details: SingleDetail::new(requested)
                .map_err(|e| Denial::new("invalid_request", e))?,
            mandate: claims.jti.clone(),
            task: Task {
                digest: claims.task.digest.clone(),
                summary: None,
            },
            policy: PolicyRef {
                set: "quickstart".to_owned(),
                ids: vec!["invoke-within-mandate".to_owned()],
            },
            log_index: 0,
        };
        writ_token::sign(&writ, &self.key, ISSUER_KID).map_err(|e| Denial::new("internal", e))
    }
}

impl Gateway {
    /// The gateway's checks, in order: the writ, the proof bound to it, the key binding,
    /// single use of the writ, and the real call against the writ's one detail.
    fn check(&self, writ: &str, proof: &str, call: &Call<'_>, now: UnixTime) -> Result<(), Denial> {
        let expect = Expectations {
            issuer: &self.issuer,
            audience: &self.id,
            now,
            skew: SKEW,
        };
        let writ_token = writ;
        let writ = UnverifiedWrit::parse(writ)
            .and_then(|token| token.verify(&self.keys, &expect))
            .map_err(|error| Denial::new(error.code(), &error))?;
        let check = ProofCheck {
            method: "POST",
            uri: GATEWAY,
            now,
            max_age: PROOF_MAX_AGE,
            max_skew: SKEW,
            access_token: Some(writ_token),
            nonce: None,
        };
        let proof = verify_proof(proof, &check, &self.replay)
            .map_err(|error| Denial::new(error.code(), &error))?;
        let claims = writ.claims();
        proof
            .ensure_bound_to(&claims.cnf.jkt)
            .map_err(|error| Denial::new(error.code(), &error))?;
        self.replay
            .first_use(&format!("writ:{}", claims.jti), claims.exp.plus(SKEW), now)
            .map_err(|_| Denial::new("writ_replayed", "the writ was already used"))?;
        claims
            .authorization_details
            .detail()
            .check(call)
            .map_err(|mismatch| Denial::new(mismatch.code(), &mismatch))
    }
}

/// The agent's side of token exchange: a proof for the token endpoint and the call it wants.
fn issue_writ(
    issuer: &Issuer,
    mandate: &str,
    agent_key: &SigningKey,
    arguments: &Value,
    now: UnixTime,
) -> Result<String, Denial> {
    let internal = |error: anyhow::Error| Denial::new("internal", error);
    let proof = ProofClaims::new("POST", TOKEN_ENDPOINT, now, random_jti().map_err(internal)?)
        .sign(agent_key)
        .map_err(|error| Denial::new("internal", error))?;
    let requested: AuthorizationDetail = serde_json::from_value(json!({
        "type": "mcp_tool_call",
        "server": "files",
        "tool": "read_file",
        "arguments": {"object": {"required": {"path": {
            "exact": arguments.get("path").cloned().unwrap_or(Value::Null)
        }}}},
        "datatypes": ["internal"]
    }))
    .map_err(|error| Denial::new("invalid_request", error))?;
    issuer.issue(mandate, &proof, requested, arguments, now)
}

fn keystore_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    writ_keystore::create(path, &SigningKey::generate(Algorithm::EdDSA)?)?;
    Ok(writ_keystore::load(path)?)
}

fn random_id() -> anyhow::Result<[u8; 16]> {
    Ok(writ_jose::random_bytes()?)
}

fn random_jti() -> anyhow::Result<String> {
    Ok(writ_client::random_jti()?)
}

fn step(out: &mut dyn Write, number: u32, title: &str) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "{number}. {title}")
}

fn say(out: &mut dyn Write, line: &str) -> std::io::Result<()> {
    writeln!(out, "   {line}")
}

fn report(
    out: &mut dyn Write,
    decisions: &mut Vec<(&'static str, Outcome)>,
    what: &'static str,
    decision: Result<(), Denial>,
) -> std::io::Result<()> {
    match decision {
        Ok(()) => {
            say(
                out,
                "ALLOW  writ, proof, key binding and call all check out",
            )?;
            decisions.push((what, Outcome::Allowed));
        }
        Err(denial) => {
            say(out, &format!("DENY   {}: {}", denial.code, denial.message))?;
            decisions.push((what, Outcome::Denied(denial.code)));
        }
    }
    Ok(())
}
