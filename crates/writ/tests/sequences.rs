//! Random sequences of grants, delegations, revocations, retirements, agents reaching the
//! end of their lifetime, offboarding and transfers against a whole deployment, checked
//! against a model of who may act: no writ is ever issued for a retired, suspended or
//! expired agent, under a mandate with a revoked ancestor, or for an offboarded human, and
//! every writ the model allows is issued.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use writ_jose::SigningKey;
use writ_testkit::*;

const DAY: i64 = 86_400;

/// xorshift64*: deterministic, so a failing sequence can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

struct Agent {
    name: String,
    key: SigningKey,
    owner: String,
    /// `active`, `suspended` (owner offboarded, until transferred) or `retired`.
    status: &'static str,
    /// Its lifetime, in days.
    lifetime: i64,
}

struct Mandate {
    token: String,
    holder: usize,
    parent: Option<String>,
    human: String,
    revoked: bool,
}

struct Model {
    agents: Vec<Agent>,
    mandates: BTreeMap<String, Mandate>,
    offboarded: Vec<String>,
}

impl Model {
    /// Whether a writ under mandate `id` must be issued.
    fn may_act(&self, id: &str) -> bool {
        let mut next = Some(id.to_owned());
        while let Some(id) = next {
            let mandate = &self.mandates[&id];
            if mandate.revoked
                || self.offboarded.contains(&mandate.human)
                || self.agents[mandate.holder].status != "active"
            {
                return false;
            }
            next = mandate.parent.clone();
        }
        true
    }

    /// Retires `agent`: every mandate it holds dies, with what was delegated from them.
    fn retire(&mut self, agent: usize) {
        self.agents[agent].status = "retired";
        let held: Vec<String> = self
            .mandates
            .iter()
            .filter(|(_, m)| m.holder == agent)
            .map(|(id, _)| id.clone())
            .collect();
        for id in held {
            self.revoke_subtree(&id);
        }
    }

    /// Marks `id` and everything delegated from it revoked.
    fn revoke_subtree(&mut self, id: &str) {
        let children: Vec<String> = self
            .mandates
            .iter()
            .filter(|(_, m)| m.parent.as_deref() == Some(id))
            .map(|(child, _)| child.clone())
            .collect();
        if let Some(mandate) = self.mandates.get_mut(id) {
            mandate.revoked = true;
        }
        for child in children {
            self.revoke_subtree(&child);
        }
    }
}

fn grants() -> Value {
    json!([{"type": "mcp_tool_call", "server": "files", "tool": "read_file",
            "arguments": {"object": {"required": {"path": {"glob": "/data/reports/*"}}}},
            "datatypes": ["internal"]}])
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&writ_jose::base64url_decode(payload).unwrap()).unwrap()
}

async fn run(seed: u64, steps: usize) {
    let world = World::new().await;
    let bob = world.add_human("bob").await;
    // bob may own alice's agents only once entitled to their tools.
    world
        .entitle(
            "bob",
            &["files/read_file", "files/drop_table", "files/*", "crm/*"],
            &["internal"],
        )
        .await;
    let mut model = Model {
        agents: vec![Agent {
            name: "report-bot".into(),
            key: SigningKey::from_pkcs8_any(world.agent.expose_secret_pkcs8().unwrap()).unwrap(),
            owner: "alice".into(),
            status: "active",
            lifetime: 90,
        }],
        mandates: BTreeMap::new(),
        offboarded: Vec::new(),
    };
    // Lifetimes of 1, 2 and 3 days, so that time passing retires them one by one.
    for (lifetime, name) in [(1, "a-bot"), (2, "b-bot"), (3, "c-bot")] {
        let key = SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
        world
            .alice
            .post(
                "/v1/agents",
                Some(&json!({"name": name, "lifetime_days": lifetime,
                             "tools": ["files/read_file", "files/*"],
                             "jwk": serde_json::to_value(key.public_key().to_jwk()).unwrap()})),
            )
            .await
            .unwrap();
        model.agents.push(Agent {
            name: name.into(),
            key,
            owner: "alice".into(),
            status: "active",
            lifetime,
        });
    }
    let mut days_passed = 0;
    let resource = format!("{}/mcp/files", world.gateway_url);
    let mut rng = Rng(seed);
    let (mut issued, mut refused) = (0, 0);
    for step in 0..steps {
        let ids: Vec<String> = model.mandates.keys().cloned().collect();
        let pick_mandate = |rng: &mut Rng| ids.get(rng.below(ids.len())).cloned();
        match rng.below(12) {
            // Days pass for the lifecycle sweep (and only for it: the callers' clocks stay),
            // and agents whose lifetime has ended are retired with their mandates.
            8 if days_passed < 3 && step > steps / 3 => {
                days_passed += 1;
                world.clock.advance(days_passed * DAY + 1);
                world.issuer.sweep_lifecycle().await.unwrap();
                world.clock.advance(-(days_passed * DAY + 1));
                for agent in 0..model.agents.len() {
                    if model.agents[agent].lifetime <= days_passed
                        && model.agents[agent].status != "retired"
                    {
                        model.retire(agent);
                    }
                }
            }
            // An owner grants one of their agents a mandate.
            0 | 1 => {
                let agent = rng.below(model.agents.len());
                let owner = model.agents[agent].owner.clone();
                let client = if owner == "alice" { &world.alice } else { &bob };
                let answer = client
                    .post(
                        "/v1/mandates",
                        Some(&json!({"agent": model.agents[agent].name, "task": "work", "grants": grants(), "max_depth": 3})),
                    )
                    .await;
                let allowed =
                    model.agents[agent].status == "active" && !model.offboarded.contains(&owner);
                assert_eq!(
                    answer.is_ok(),
                    allowed,
                    "seed {seed} step {step}: grant {answer:?}"
                );
                if let Ok(granted) = answer {
                    model.mandates.insert(
                        granted["id"].as_str().unwrap().to_owned(),
                        Mandate {
                            token: granted["mandate"].as_str().unwrap().to_owned(),
                            holder: agent,
                            parent: None,
                            human: owner,
                            revoked: false,
                        },
                    );
                }
            }
            // The holder delegates to another agent.
            2 | 3 => {
                let Some(id) = pick_mandate(&mut rng) else {
                    continue;
                };
                let to = rng.below(model.agents.len());
                let (token, holder, human) = {
                    let m = &model.mandates[&id];
                    (m.token.clone(), m.holder, m.human.clone())
                };
                let chain: Vec<usize> = {
                    let mut chain = Vec::new();
                    let mut next = Some(id.clone());
                    while let Some(at) = next {
                        chain.push(model.mandates[&at].holder);
                        next = model.mandates[&at].parent.clone();
                    }
                    chain
                };
                let (status, body) = world
                    .delegate_as(
                        &model.agents[holder].key,
                        &token,
                        &model.agents[to].name,
                        grants(),
                        None,
                    )
                    .await;
                let depth = claims(&token)["depth"].as_u64().unwrap();
                // Nobody consents to a delegation across owners here, so a delegation
                // stays with the agents of the mandate's human.
                let allowed = model.may_act(&id)
                    && model.agents[to].status == "active"
                    && model.agents[to].owner == human
                    && !chain.contains(&to)
                    && depth < 3;
                assert_eq!(
                    status == StatusCode::OK,
                    allowed,
                    "seed {seed} step {step}: delegate {body}"
                );
                if status == StatusCode::OK {
                    let child = body["access_token"].as_str().unwrap().to_owned();
                    model.mandates.insert(
                        claims(&child)["jti"].as_str().unwrap().to_owned(),
                        Mandate {
                            token: child,
                            holder: to,
                            parent: Some(id),
                            human,
                            revoked: false,
                        },
                    );
                }
            }
            // A mandate is revoked, with its subtree.
            4 => {
                let Some(id) = pick_mandate(&mut rng) else {
                    continue;
                };
                world.revoke("mandate", &id).await;
                model.revoke_subtree(&id);
            }
            // An agent is retired: its mandates die with it.
            5 => {
                let agent = rng.below(model.agents.len());
                if model.agents[agent].status == "retired" {
                    continue;
                }
                world
                    .admin
                    .post(
                        &format!("/v1/agents/{}/retire", model.agents[agent].name),
                        Some(&json!({"reason": "sequence"})),
                    )
                    .await
                    .unwrap();
                model.retire(agent);
            }
            // Late in a sequence, alice is offboarded once: her agents are suspended.
            6 if step > steps / 2 && model.offboarded.is_empty() => {
                world
                    .admin
                    .post(
                        "/v1/humans/alice/offboard",
                        Some(&json!({"reason": "left"})),
                    )
                    .await
                    .unwrap();
                model.offboarded.push("alice".into());
                for agent in &mut model.agents {
                    if agent.status == "active" {
                        agent.status = "suspended";
                    }
                }
            }
            // One suspended agent at a time goes to bob, so chains through agents still
            // suspended are tried too.
            7 => {
                let agent = rng.below(model.agents.len());
                if model.agents[agent].status != "suspended" {
                    continue;
                }
                world
                    .admin
                    .post(
                        &format!("/v1/agents/{}/transfer", model.agents[agent].name),
                        Some(&json!({"owner": "bob"})),
                    )
                    .await
                    .unwrap();
                model.agents[agent].status = "active";
                model.agents[agent].owner = "bob".into();
            }
            // Someone holding a mandate asks for a writ: issued exactly when the model says.
            _ => {
                let Some(id) = pick_mandate(&mut rng) else {
                    continue;
                };
                let mandate = &model.mandates[&id];
                let (status, body) = world
                    .try_writ_as(
                        &model.agents[mandate.holder].key,
                        &mandate.token,
                        &resource,
                        read_file_detail("/data/reports/q3.md"),
                    )
                    .await;
                let allowed = model.may_act(&id);
                assert_eq!(
                    status == StatusCode::OK,
                    allowed,
                    "seed {seed} step {step}: writ under {id}: {body}"
                );
                if allowed {
                    issued += 1;
                } else {
                    refused += 1;
                }
            }
        }
    }
    // The sequences exercise both sides of the rule.
    assert!(
        issued > 0 && refused > 0,
        "seed {seed}: {issued} issued, {refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writ_for_what_is_retired_suspended_revoked_or_offboarded() {
    for seed in [
        0x9e37_79b9_7f4a_7c15,
        0xdead_beef_cafe_f00d,
        0x0123_4567_89ab_cdef,
    ] {
        run(seed, 60).await;
    }
}
