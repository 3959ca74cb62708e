//! Policy test cases: requests written as JSON with the decision they must get, so a policy
//! directory can ship with tests and `writ policy test` can run them before a deployment.
//!
//! ```json
//! [{"name": "alice may not read secrets",
//!   "action": "Invoke",
//!   "agent": {"id": "agent-1", "owner": "alice", "tools": ["files/read_file"]},
//!   "human": {"id": "alice", "clearance": ["internal"]},
//!   "tool": {"server": "files", "name": "read_file", "labels": ["secret"]},
//!   "labels": ["internal"], "entitled": true,
//!   "expect": "deny", "reason": "policy_forbid", "policies": ["invoke-needs-data-clearance"]}]
//! ```
//!
//! `policies` lists the `@id`s that must decide (the permitting ones for `allow`, the
//! forbidding ones for `deny`); `reason` is a deny code. Both are optional.

use serde::Deserialize;

use crate::{Agent, Decision, DenyReason, Engine, Human, PolicyRequest, Role, Tool};

/// One test case. Unknown members are refused (by the flattened request).
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyCase {
    /// What the case checks, in a few words.
    pub name: String,
    /// The question.
    #[serde(flatten)]
    pub request: CaseRequest,
    /// The decision it must get.
    pub expect: Expect,
    /// For a denial: its code (`policy_forbid`, `policy_no_permit`, `policy_error`).
    #[serde(default)]
    pub reason: Option<String>,
    /// The `@id`s that must decide, sorted or not.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
}

/// The expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// A question, with owned facts.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", deny_unknown_fields)]
pub enum CaseRequest {
    /// See [`PolicyRequest::GrantMandate`].
    GrantMandate {
        /// The granting human.
        human: CaseHuman,
        /// The agent.
        agent: CaseAgent,
        /// The tools granted.
        #[serde(default)]
        tools: Vec<String>,
        /// The labels granted.
        #[serde(default)]
        labels: Vec<String>,
        /// Those of `tools` the human is entitled to (none by default).
        #[serde(default)]
        entitled_tools: Vec<String>,
        /// The lifetime.
        #[serde(default = "default_ttl")]
        ttl_seconds: i64,
        /// The maximum delegation depth.
        #[serde(default)]
        max_depth: i64,
    },
    /// See [`PolicyRequest::Invoke`].
    Invoke {
        /// The acting agent.
        agent: CaseAgent,
        /// The human behind the mandate.
        human: CaseHuman,
        /// The tool.
        tool: CaseTool,
        /// The labels the call's detail grants.
        #[serde(default)]
        labels: Vec<String>,
        /// The mandate's depth.
        #[serde(default)]
        depth: i64,
        /// Whether the human is entitled to the tool (false by default).
        #[serde(default)]
        entitled: bool,
    },
    /// See [`PolicyRequest::Delegate`].
    Delegate {
        /// The delegating agent.
        agent: CaseAgent,
        /// The receiving agent.
        delegate: CaseAgent,
        /// The human behind the chain.
        human: CaseHuman,
        /// The tools delegated.
        #[serde(default)]
        tools: Vec<String>,
        /// The child's depth.
        #[serde(default)]
        depth: i64,
    },
}

fn default_ttl() -> i64 {
    900
}

fn yes() -> bool {
    true
}

/// A human in a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseHuman {
    /// The id.
    pub id: String,
    /// `true` for an administrator.
    #[serde(default)]
    pub admin: bool,
    /// Whether active (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// The data labels the human is entitled to (none by default).
    #[serde(default)]
    pub clearance: Vec<String>,
    /// The groups the human belongs to (none by default).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// An agent in a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseAgent {
    /// The id (a key thumbprint in production).
    pub id: String,
    /// The owner's id.
    pub owner: String,
    /// Whether active (default true).
    #[serde(default = "yes")]
    pub active: bool,
    /// Its registered tools.
    #[serde(default)]
    pub tools: Vec<String>,
}

/// A tool in a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseTool {
    /// The provider.
    pub server: String,
    /// The tool, or `*` for the server as a whole.
    pub name: String,
    /// Its data labels.
    #[serde(default)]
    pub labels: Vec<String>,
}

fn refs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

impl CaseHuman {
    fn facts<'a>(&'a self, clearance: &'a [&'a str], groups: &'a [&'a str]) -> Human<'a> {
        Human {
            id: &self.id,
            role: if self.admin {
                Role::Admin
            } else {
                Role::Member
            },
            active: self.active,
            clearance,
            groups,
        }
    }
}

impl CaseAgent {
    fn facts<'a>(&'a self, tools: &'a [&'a str]) -> Agent<'a> {
        Agent {
            id: &self.id,
            owner: &self.owner,
            active: self.active,
            tools,
        }
    }
}

impl PolicyCase {
    /// Parses a JSON array of cases.
    pub fn parse_all(json: &str) -> Result<Vec<PolicyCase>, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Asks `engine` the case's question; `Err` says how the answer differs from the
    /// expected one.
    pub fn run(&self, engine: &Engine) -> Result<Decision, String> {
        let decision = self.decide(engine);
        let (outcome, reason, ids) = match &decision {
            Decision::Allow(permit) => (Expect::Allow, None, permit.policy_ids.clone()),
            Decision::Deny(denial) => {
                let ids = match &denial.reason {
                    DenyReason::Forbidden { policy_ids } => policy_ids.clone(),
                    _ => Vec::new(),
                };
                (Expect::Deny, Some(denial.reason.code()), ids)
            }
        };
        if outcome != self.expect {
            let detail = match &decision {
                Decision::Allow(permit) => format!("allowed by {}", permit.policy_ids.join(", ")),
                Decision::Deny(denial) => denial.reason.message(),
            };
            return Err(
                format!("expected {:?}, got {:?}: {detail}", self.expect, outcome).to_lowercase(),
            );
        }
        if let Some(expected) = &self.reason
            && reason != Some(expected.as_str())
        {
            return Err(format!(
                "expected reason `{expected}`, got `{}`",
                reason.unwrap_or("none")
            ));
        }
        if let Some(expected) = &self.policies {
            let mut expected = expected.clone();
            expected.sort();
            if expected != ids {
                return Err(format!(
                    "expected policies [{}], got [{}]",
                    expected.join(", "),
                    ids.join(", ")
                ));
            }
        }
        Ok(decision)
    }

    fn decide(&self, engine: &Engine) -> Decision {
        match &self.request {
            CaseRequest::GrantMandate {
                human,
                agent,
                tools,
                labels,
                entitled_tools,
                ttl_seconds,
                max_depth,
            } => {
                let agent_tools = refs(&agent.tools);
                let (clearance, groups) = (refs(&human.clearance), refs(&human.groups));
                engine.decide(&PolicyRequest::GrantMandate {
                    human: &human.facts(&clearance, &groups),
                    agent: &agent.facts(&agent_tools),
                    tools: &refs(tools),
                    labels: &refs(labels),
                    entitled_tools: &refs(entitled_tools),
                    ttl_seconds: *ttl_seconds,
                    max_depth: *max_depth,
                })
            }
            CaseRequest::Invoke {
                agent,
                human,
                tool,
                labels,
                depth,
                entitled,
            } => {
                let agent_tools = refs(&agent.tools);
                let tool_labels = refs(&tool.labels);
                let (clearance, groups) = (refs(&human.clearance), refs(&human.groups));
                engine.decide(&PolicyRequest::Invoke {
                    agent: &agent.facts(&agent_tools),
                    human: &human.facts(&clearance, &groups),
                    tool: &Tool {
                        server: &tool.server,
                        name: &tool.name,
                        labels: &tool_labels,
                    },
                    labels: &refs(labels),
                    depth: *depth,
                    entitled: *entitled,
                })
            }
            CaseRequest::Delegate {
                agent,
                delegate,
                human,
                tools,
                depth,
            } => {
                let agent_tools = refs(&agent.tools);
                let delegate_tools = refs(&delegate.tools);
                let (clearance, groups) = (refs(&human.clearance), refs(&human.groups));
                engine.decide(&PolicyRequest::Delegate {
                    agent: &agent.facts(&agent_tools),
                    delegate: &delegate.facts(&delegate_tools),
                    human: &human.facts(&clearance, &groups),
                    tools: &refs(tools),
                    depth: *depth,
                })
            }
        }
    }
}
