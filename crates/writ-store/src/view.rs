//! The state every issuance reads, held in memory.
//!
//! The store has exactly one writer (its writer task, in one process: the data directory is
//! locked), so the committed state of the inventory (entitlements and groups included) and of revocations is known without
//! asking the database. The view is loaded once at open and updated by the writer after each
//! commit, before any change in that commit is acknowledged: a revocation is in force before
//! its caller hears that it was recorded.
//!
//! Mandates, the feed and the audit log stay in the database; the view keeps only what the
//! hot path needs of them: the revoked subjects and which mandate a delegated one came from.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::Write;
use crate::backend::Snapshot;
use crate::records::{AgentRecord, EntitlementRecord, GatewayRecord, HumanRecord, ToolRecord};

/// The inventory and revocation state as of the last commit.
#[derive(Debug, Default)]
pub(crate) struct View {
    humans: HashMap<String, HumanRecord>,
    /// Human key thumbprint → human id.
    human_keys: HashMap<String, String>,
    /// (OIDC issuer, subject) → human id.
    oidc: HashMap<(String, String), String>,
    agents: HashMap<String, AgentRecord>,
    /// Agent name → thumbprint.
    agent_names: HashMap<String, String>,
    gateways: HashMap<String, GatewayRecord>,
    /// Server → tool name → tool; looked up without allocating.
    tools: HashMap<String, HashMap<String, ToolRecord>>,
    /// Kind (`agent`, `mandate`, `human`, `writ`, `key`) → revoked ids.
    revoked: HashMap<String, HashSet<String>>,
    /// Delegated mandate → the mandate it came from. Root mandates have no entry.
    parents: HashMap<String, String>,
    /// Entitlement subject (a human id or `group:NAME`) → entitlement id → entitlement.
    entitlements: HashMap<String, BTreeMap<String, EntitlementRecord>>,
    /// Entitlement id → its subject.
    entitlement_subjects: HashMap<String, String>,
    /// Human id → the groups they belong to. Humans in no group have no entry.
    groups: HashMap<String, BTreeSet<String>>,
}

impl View {
    /// The view of a committed snapshot.
    pub(crate) fn new(snapshot: Snapshot) -> View {
        let mut view = View::default();
        for human in snapshot.humans {
            view.insert_human(human);
        }
        view.human_keys.extend(snapshot.human_keys);
        for agent in snapshot.agents {
            view.insert_agent(agent);
        }
        view.gateways.extend(
            snapshot
                .gateways
                .into_iter()
                .map(|gateway| (gateway.jkt.clone(), gateway)),
        );
        for tool in snapshot.tools {
            view.insert_tool(tool);
        }
        for (kind, subject) in snapshot.revoked {
            view.revoke(kind, subject);
        }
        view.parents.extend(snapshot.mandate_parents);
        for entitlement in snapshot.entitlements {
            view.insert_entitlement(entitlement);
        }
        for (human, group) in snapshot.human_groups {
            view.groups.entry(human).or_default().insert(group);
        }
        view
    }

    fn insert_entitlement(&mut self, entitlement: EntitlementRecord) {
        self.entitlement_subjects
            .insert(entitlement.id.clone(), entitlement.subject.clone());
        self.entitlements
            .entry(entitlement.subject.clone())
            .or_default()
            .insert(entitlement.id.clone(), entitlement);
    }

    fn delete_entitlement(&mut self, id: &str) {
        let Some(subject) = self.entitlement_subjects.remove(id) else {
            return;
        };
        if let Some(held) = self.entitlements.get_mut(&subject) {
            held.remove(id);
            if held.is_empty() {
                self.entitlements.remove(&subject);
            }
        }
    }

    fn insert_human(&mut self, human: HumanRecord) {
        if let (Some(issuer), Some(subject)) = (&human.oidc_issuer, &human.oidc_subject) {
            self.oidc
                .insert((issuer.clone(), subject.clone()), human.id.clone());
        }
        self.humans.insert(human.id.clone(), human);
    }

    fn insert_agent(&mut self, agent: AgentRecord) {
        self.agent_names
            .insert(agent.name.clone(), agent.jkt.clone());
        self.agents.insert(agent.jkt.clone(), agent);
    }

    fn insert_tool(&mut self, tool: ToolRecord) {
        self.tools
            .entry(tool.server.clone())
            .or_default()
            .insert(tool.name.clone(), tool);
    }

    fn revoke(&mut self, kind: String, subject: String) {
        self.revoked.entry(kind).or_default().insert(subject);
    }

    /// Applies a committed change. `time` is its event's time.
    pub(crate) fn apply(&mut self, write: &Write, time: i64) {
        match write {
            Write::Nothing => {}
            Write::AgentSeen { jkt } => {
                if let Some(agent) = self.agents.get_mut(jkt) {
                    agent.last_seen = agent.last_seen.max(Some(time));
                }
            }
            Write::InsertHuman(human) => self.insert_human(human.clone()),
            Write::SetHumanStatus { id, status } => {
                if let Some(human) = self.humans.get_mut(id) {
                    human.status.clone_from(status);
                }
            }
            Write::AddHumanKey(key) => {
                self.human_keys
                    .insert(key.jkt.clone(), key.human_id.clone());
            }
            Write::InsertAgent(agent) => self.insert_agent(agent.clone()),
            Write::SetAgentStatus {
                jkt,
                status,
                reason,
            } => {
                if let Some(agent) = self.agents.get_mut(jkt) {
                    agent.status.clone_from(status);
                    agent.status_reason.clone_from(reason);
                }
            }
            Write::SetAgentOwner { jkt, owner } => {
                if let Some(agent) = self.agents.get_mut(jkt) {
                    agent.owner.clone_from(owner);
                }
            }
            Write::SetAgentExpiry { jkt, expires_at } => {
                if let Some(agent) = self.agents.get_mut(jkt) {
                    agent.expires_at = *expires_at;
                }
            }
            Write::UpsertProvider(provider, tools) => {
                self.tools.remove(&provider.name);
                for tool in tools {
                    self.insert_tool(ToolRecord {
                        server: provider.name.clone(),
                        name: tool.name.clone(),
                        labels: tool.labels.clone(),
                    });
                }
            }
            Write::InsertGateway(gateway) => {
                self.gateways.insert(gateway.jkt.clone(), gateway.clone());
            }
            Write::SetGatewayStatus { jkt, status } => {
                if let Some(gateway) = self.gateways.get_mut(jkt) {
                    gateway.status.clone_from(status);
                }
            }
            Write::InsertMandate(mandate) => {
                if let Some(parent) = &mandate.parent {
                    self.parents.insert(mandate.id.clone(), parent.clone());
                }
            }
            Write::InsertEntitlement(entitlement) => self.insert_entitlement(entitlement.clone()),
            Write::DeleteEntitlement { id } => self.delete_entitlement(id),
            Write::SetHumanGroups { id, groups } => {
                if groups.is_empty() {
                    self.groups.remove(id);
                } else {
                    self.groups
                        .insert(id.clone(), groups.iter().cloned().collect());
                }
            }
            Write::Revoke(revocations) => {
                for revocation in revocations {
                    self.revoke(revocation.kind.clone(), revocation.subject.clone());
                }
            }
            Write::Many(writes) => {
                for write in writes {
                    self.apply(write, time);
                }
            }
        }
    }

    pub(crate) fn human(&self, id: &str) -> Option<&HumanRecord> {
        self.humans.get(id)
    }

    pub(crate) fn humans(&self) -> impl Iterator<Item = &HumanRecord> {
        self.humans.values()
    }

    pub(crate) fn human_by_oidc(&self, issuer: &str, subject: &str) -> Option<&HumanRecord> {
        self.oidc
            .get(&(issuer.to_owned(), subject.to_owned()))
            .and_then(|id| self.humans.get(id))
    }

    pub(crate) fn human_by_key(&self, jkt: &str) -> Option<&HumanRecord> {
        self.human_keys.get(jkt).and_then(|id| self.humans.get(id))
    }

    pub(crate) fn agent(&self, jkt: &str) -> Option<&AgentRecord> {
        self.agents.get(jkt)
    }

    pub(crate) fn agent_by_name(&self, name: &str) -> Option<&AgentRecord> {
        self.agent_names
            .get(name)
            .and_then(|jkt| self.agents.get(jkt))
    }

    pub(crate) fn agents(&self) -> impl Iterator<Item = &AgentRecord> {
        self.agents.values()
    }

    pub(crate) fn tool(&self, server: &str, name: &str) -> Option<&ToolRecord> {
        self.tools.get(server).and_then(|tools| tools.get(name))
    }

    pub(crate) fn gateway(&self, jkt: &str) -> Option<&GatewayRecord> {
        self.gateways.get(jkt)
    }

    pub(crate) fn gateways(&self) -> impl Iterator<Item = &GatewayRecord> {
        self.gateways.values()
    }

    pub(crate) fn audience_known(&self, audience: &str) -> bool {
        self.gateways
            .values()
            .any(|gateway| serves(&gateway.audience, audience))
    }

    pub(crate) fn gateways_serving<'a>(
        &'a self,
        audience: &'a str,
    ) -> impl Iterator<Item = &'a GatewayRecord> {
        self.gateways
            .values()
            .filter(move |gateway| serves(&gateway.audience, audience))
    }

    pub(crate) fn is_revoked(&self, kind: &str, subject: &str) -> bool {
        self.revoked
            .get(kind)
            .is_some_and(|revoked| revoked.contains(subject))
    }

    pub(crate) fn parent(&self, mandate: &str) -> Option<&str> {
        self.parents.get(mandate).map(String::as_str)
    }

    pub(crate) fn entitlement(&self, id: &str) -> Option<&EntitlementRecord> {
        let subject = self.entitlement_subjects.get(id)?;
        self.entitlements.get(subject)?.get(id)
    }

    pub(crate) fn entitlements(&self) -> impl Iterator<Item = &EntitlementRecord> {
        self.entitlements.values().flat_map(BTreeMap::values)
    }

    pub(crate) fn groups_of(&self, human: &str) -> impl Iterator<Item = &String> {
        self.groups.get(human).into_iter().flatten()
    }

    /// The entitlements of `subject` alone (a human id or `group:NAME`).
    pub(crate) fn entitlements_of_subject(
        &self,
        subject: &str,
    ) -> impl Iterator<Item = &EntitlementRecord> {
        self.entitlements
            .get(subject)
            .into_iter()
            .flat_map(BTreeMap::values)
    }
}

/// Whether a gateway registered for `base` serves `audience`: it is `base` or a route under
/// it (`base` followed by `/`).
pub fn serves(base: &str, audience: &str) -> bool {
    let base = base.trim_end_matches('/');
    audience
        .strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
