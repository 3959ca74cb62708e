//! The rows Writ stores, as plain values. The issuer maps them to and from its domain types.

/// A human in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanRecord {
    /// Inventory id, the `sub` of their mandates.
    pub id: String,
    /// A name for people.
    pub display_name: String,
    /// `admin` or `member`.
    pub role: String,
    /// `active`, `suspended` or `offboarded`.
    pub status: String,
    /// The OIDC issuer of their identity provider, if bound.
    pub oidc_issuer: Option<String>,
    /// Their subject at that issuer.
    pub oidc_subject: Option<String>,
    /// When registered.
    pub created_at: i64,
}

/// A key a human authenticates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanKeyRecord {
    /// RFC 7638 thumbprint.
    pub jkt: String,
    /// Whose key.
    pub human_id: String,
    /// The public JWK, as JSON.
    pub jwk: String,
    /// When bound.
    pub created_at: i64,
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// RFC 7638 thumbprint of its key: its identity.
    pub jkt: String,
    /// A unique name for people.
    pub name: String,
    /// The owning human's id.
    pub owner: String,
    /// The public JWK, as JSON.
    pub jwk: String,
    /// Tools it may use, `server/tool`.
    pub tools: Vec<String>,
    /// `active`, `suspended` or `retired`.
    pub status: String,
    /// Why it is not active, if it is not.
    pub status_reason: Option<String>,
    /// When registered.
    pub created_at: i64,
    /// When its lifetime ends.
    pub expires_at: i64,
    /// When it last obtained a writ.
    pub last_seen: Option<i64>,
}

/// A tool provider: an MCP server or HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRecord {
    /// Inventory name.
    pub name: String,
    /// `mcp` or `http`.
    pub kind: String,
    /// Where it is, for operators.
    pub url: Option<String>,
    /// When registered.
    pub created_at: i64,
}

/// A tool of a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRecord {
    /// The provider's name.
    pub server: String,
    /// The tool's name.
    pub name: String,
    /// Data-classification labels.
    pub labels: Vec<String>,
}

/// A registered gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRecord {
    /// RFC 7638 thumbprint of its key.
    pub jkt: String,
    /// A unique name.
    pub name: String,
    /// The resource URL its writs are issued for.
    pub audience: String,
    /// The public JWK, as JSON.
    pub jwk: String,
    /// `active`, `disabled` (refused until enabled) or `revoked` (refused for good).
    pub status: String,
    /// When registered.
    pub created_at: i64,
}

/// An entitlement: tools and data labels a human, or every member of a group, may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementRecord {
    /// `ent_...`.
    pub id: String,
    /// A human id, or `group:NAME` for every member of a group.
    pub subject: String,
    /// Tools, `server/tool`, or `server/*` for a server's requests other than tool calls.
    pub tools: Vec<String>,
    /// Data-classification labels.
    pub labels: Vec<String>,
    /// When created.
    pub created_at: i64,
    /// The administrator who created it.
    pub created_by: String,
}

/// A granted mandate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateRecord {
    /// `mnd_...`.
    pub id: String,
    /// The originating human.
    pub human_id: String,
    /// The agent it was granted to.
    pub agent_jkt: String,
    /// The mandate it was delegated from.
    pub parent: Option<String>,
    /// Delegation depth.
    pub depth: i64,
    /// When it expires.
    pub expires_at: i64,
    /// SHA-256 of the task text, base64url.
    pub task_digest: String,
    /// The task text, when the issuer keeps it.
    pub task_text: Option<String>,
    /// What it grants: its authorization details as a JSON array.
    pub grants: String,
    /// When granted.
    pub created_at: i64,
    /// Its audit-log leaf (set by the store).
    pub log_index: i64,
}

/// A revocation, in feed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Feed sequence number (set by the store).
    pub seq: i64,
    /// `agent`, `mandate`, `human`, `writ` or `key`.
    pub kind: String,
    /// The id of what was revoked.
    pub subject: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: i64,
    /// Its audit-log leaf (set by the store).
    pub log_index: i64,
}

/// One audit-log leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRecord {
    /// Its index in the log.
    pub index: u64,
    /// The event kind, such as `writ_issued`.
    pub kind: String,
    /// The leaf's bytes (canonical JSON of the event).
    pub data: Vec<u8>,
    /// When appended.
    pub created_at: i64,
}
