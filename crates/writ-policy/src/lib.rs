//! Cedar policy for Writ: the schema, default policies, validation, sliced evaluation, and
//! decisions that name the policies behind them.
//!
//! The issuer asks three questions, each a Cedar action (see `schema.cedarschema`):
//!
//! - **GrantMandate**: may this human grant this agent a mandate for these tools?
//! - **Invoke**: may this agent, under a mandate from this human, call this tool?
//! - **Delegate**: may this agent pass part of its mandate to that agent?
//!
//! Entitlements, which administrators manage in the issuer, reach policy as facts: a
//! human's `clearance` (the data labels they are entitled to) and `groups`, the granted
//! tools the human is entitled to (`entitled_tools`, for GrantMandate), and whether they are
//! still entitled to the called tool (`entitled`, for Invoke). The issuer computes the tool
//! facts, so an entitlement's tool names match however the issuer defines it.
//!
//! Requests are built from typed facts ([`Human`], [`Agent`], [`Tool`]), never from JSON.
//! Every policy set is validated against the schema in strict mode when loaded; a set that
//! does not validate is refused whole. Each loaded set has a version hash, and each decision
//! carries it with the `@id`s of the policies that decided, which writs record.
//!
//! Policies are sliced when loaded, by action and by the tool or agent a policy names, so a
//! request evaluates only the policies that could apply to it: cost follows the size of the
//! slice, not of the whole set.
//!
//! Fail closed: if evaluating any policy in the slice errors, the decision is a denial, even
//! when another policy would permit.
//!
//! The crate is pure: policy texts come in as strings (the issuer reads the directory).
//!
//! ```
//! use writ_policy::{Agent, Engine, Human, PolicyRequest, Role, Tool};
//!
//! let engine = Engine::with_defaults()?;
//! // Entitled by an administrator to `files/read_file` and the label `internal`.
//! let alice = Human { id: "alice", role: Role::Member, active: true, clearance: &["internal"], groups: &[] };
//! let agent = Agent { id: "agent-key-thumbprint", owner: "alice", active: true, tools: &["files/read_file"] };
//! let decision = engine.decide(&PolicyRequest::GrantMandate {
//!     human: &alice,
//!     agent: &agent,
//!     tools: &["files/read_file"],
//!     labels: &["internal"],
//!     entitled_tools: &["files/read_file"],
//!     ttl_seconds: 900,
//!     max_depth: 2,
//! });
//! assert!(decision.is_allow());
//! # Ok::<(), writ_policy::LoadError>(())
//! ```

mod cases;

pub use cases::{CaseAgent, CaseHuman, CaseRequest, CaseTool, Expect, PolicyCase};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityUid,
    PolicyId, PolicySet, Request, ResourceConstraint, RestrictedExpression, Schema, ValidationMode,
    Validator,
};

/// The schema every policy set is validated against.
pub const SCHEMA: &str = include_str!("../schema.cedarschema");
/// The default policy set.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/default.cedar");
/// The most policies one set may hold.
pub const MAX_POLICIES: usize = 10_000;
/// The largest policy source accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 1024 * 1024;

const ACTIONS: [&str; 3] = ["GrantMandate", "Invoke", "Delegate"];

/// A policy set could not be loaded. Nothing changes: a running engine keeps its set.
///
/// The policy author is at fault, except [`LoadError::Schema`], which is a defect in Writ.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The built-in schema does not parse.
    #[error("the built-in Cedar schema is invalid: {0}")]
    Schema(String),
    /// A source does not parse as Cedar.
    #[error("`{source_name}` does not parse: {message}")]
    Parse {
        /// The file or source name.
        source_name: String,
        /// Cedar's message.
        message: String,
    },
    /// Two policies share an id.
    #[error("policy id `{0}` is used twice")]
    DuplicateId(String),
    /// More than [`MAX_POLICIES`] policies, or a source over [`MAX_SOURCE_LEN`].
    #[error("policy set too large: {0}")]
    TooLarge(String),
    /// The set does not validate against the schema.
    #[error("policies do not validate against the Writ schema:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// Templates are not supported.
    #[error("policy templates are not supported (`{0}`)")]
    Template(String),
}

/// One named policy source, such as a `.cedar` file.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// Its name in errors and default ids (the file name).
    pub name: String,
    /// The Cedar text.
    pub text: String,
}

/// A human's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May administer Writ and grant to any agent.
    Admin,
    /// An ordinary user.
    Member,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// What policy may know about a human.
#[derive(Debug, Clone, Copy)]
pub struct Human<'a> {
    /// The inventory id.
    pub id: &'a str,
    /// The role.
    pub role: Role,
    /// False once suspended or offboarded.
    pub active: bool,
    /// The data labels the human is entitled to: the union of their entitlements' labels
    /// and their groups'.
    pub clearance: &'a [&'a str],
    /// The groups the human belongs to.
    pub groups: &'a [&'a str],
}

/// What policy may know about an agent.
#[derive(Debug, Clone, Copy)]
pub struct Agent<'a> {
    /// The agent's key thumbprint.
    pub id: &'a str,
    /// The owner's human id.
    pub owner: &'a str,
    /// False once suspended, retired or expired.
    pub active: bool,
    /// The tools (`server/tool`) it is registered for.
    pub tools: &'a [&'a str],
}

/// What policy may know about a tool.
#[derive(Debug, Clone, Copy)]
pub struct Tool<'a> {
    /// The provider's inventory name.
    pub server: &'a str,
    /// The tool's name.
    pub name: &'a str,
    /// The data labels of the data it touches.
    pub labels: &'a [&'a str],
}

/// A question for policy.
#[derive(Debug, Clone, Copy)]
pub enum PolicyRequest<'a> {
    /// May `human` grant `agent` a mandate?
    GrantMandate {
        /// The granting human.
        human: &'a Human<'a>,
        /// The agent.
        agent: &'a Agent<'a>,
        /// The tools granted (`server/tool`).
        tools: &'a [&'a str],
        /// The data labels granted.
        labels: &'a [&'a str],
        /// Those of `tools` the human is entitled to (by an entitlement of theirs or of one
        /// of their groups).
        entitled_tools: &'a [&'a str],
        /// The mandate's lifetime.
        ttl_seconds: i64,
        /// Its maximum delegation depth.
        max_depth: i64,
    },
    /// May `agent`, under a mandate from `human`, call `tool`?
    Invoke {
        /// The acting agent.
        agent: &'a Agent<'a>,
        /// The human the chain starts at.
        human: &'a Human<'a>,
        /// The tool.
        tool: &'a Tool<'a>,
        /// The data labels the call's detail grants.
        labels: &'a [&'a str],
        /// The mandate's depth.
        depth: i64,
        /// Whether `human` is entitled to `tool` now.
        entitled: bool,
    },
    /// May `agent` delegate to `delegate`?
    Delegate {
        /// The delegating agent.
        agent: &'a Agent<'a>,
        /// The agent receiving the child mandate.
        delegate: &'a Agent<'a>,
        /// The human the chain starts at.
        human: &'a Human<'a>,
        /// The tools the child mandate grants.
        tools: &'a [&'a str],
        /// The child's depth.
        depth: i64,
    },
}

/// A policy decision. The default is deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by the listed policies.
    Allow(Permit),
    /// Denied, with the reason.
    Deny(Denial),
}

impl Decision {
    /// Whether the decision allows.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Why policy allowed: the set version and the permitting policies, for the writ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    /// The policy-set version hash.
    pub policy_set: String,
    /// The `@id`s of the policies that permitted, sorted.
    pub policy_ids: Vec<String>,
}

/// Why policy denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The policy-set version hash.
    pub policy_set: String,
    /// The reason.
    pub reason: DenyReason,
}

/// The reasons a policy decision denies. Each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// Forbid policies matched.
    Forbidden {
        /// Their `@id`s, sorted.
        policy_ids: Vec<String>,
    },
    /// No permit policy matched.
    NotPermitted,
    /// Evaluating a policy failed; the request is denied whatever else matched.
    EvaluationError(String),
}

impl DenyReason {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::Forbidden { .. } => "policy_forbid",
            DenyReason::NotPermitted => "policy_no_permit",
            DenyReason::EvaluationError(_) => "policy_error",
        }
    }

    /// A sentence a person understands.
    pub fn message(&self) -> String {
        match self {
            DenyReason::Forbidden { policy_ids } => {
                format!("forbidden by policy {}", policy_ids.join(", "))
            }
            DenyReason::NotPermitted => "no policy permits this request".to_owned(),
            DenyReason::EvaluationError(error) => {
                format!("policy evaluation failed, so the request is denied: {error}")
            }
        }
    }
}

/// Policies for one action, and further for the resources some of them name.
struct ActionSlice {
    generic: PolicySet,
    by_resource: HashMap<EntityUid, PolicySet>,
}

/// A validated, sliced policy set, ready to decide.
pub struct Engine {
    version: String,
    ids: Vec<String>,
    slices: HashMap<&'static str, ActionSlice>,
    actions: HashMap<&'static str, EntityUid>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("version", &self.version)
            .field("policies", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine for Writ's default policies.
    pub fn with_defaults() -> Result<Self, LoadError> {
        Engine::load(&[PolicySource {
            name: "default.cedar".to_owned(),
            text: DEFAULT_POLICIES.to_owned(),
        }])
    }

    /// Parses, names, validates and slices a policy set.
    pub fn load(sources: &[PolicySource]) -> Result<Self, LoadError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| LoadError::Schema(e.to_string()))?;
        // Sources in name order, so the version hash does not depend on directory order.
        let mut ordered: Vec<&PolicySource> = sources.iter().collect();
        ordered.sort_by(|a, b| a.name.cmp(&b.name));
        let mut named = BTreeMap::new();
        for source in ordered {
            if source.text.len() > MAX_SOURCE_LEN {
                return Err(LoadError::TooLarge(format!(
                    "`{}` is larger than {MAX_SOURCE_LEN} bytes",
                    source.name
                )));
            }
            let set = PolicySet::from_str(&source.text).map_err(|e| LoadError::Parse {
                source_name: source.name.clone(),
                message: e.to_string(),
            })?;
            if let Some(template) = set.templates().next() {
                return Err(LoadError::Template(template.id().to_string()));
            }
            for (index, policy) in set.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{}#{index}", source.name));
                let renamed = policy.new_id(PolicyId::new(&id));
                if named.insert(id.clone(), renamed).is_some() {
                    return Err(LoadError::DuplicateId(id));
                }
                if named.len() > MAX_POLICIES {
                    return Err(LoadError::TooLarge(format!(
                        "more than {MAX_POLICIES} policies"
                    )));
                }
            }
        }
        let all = PolicySet::from_policies(named.values().cloned())
            .map_err(|e| LoadError::Invalid(vec![e.to_string()]))?;
        let validation = Validator::new(schema).validate(&all, ValidationMode::Strict);
        if !validation.validation_passed() {
            return Err(LoadError::Invalid(
                validation
                    .validation_errors()
                    .map(|e| e.to_string())
                    .collect(),
            ));
        }
        let version = version_hash(&named);
        let actions: HashMap<&'static str, EntityUid> = ACTIONS
            .iter()
            .map(|name| Ok((*name, uid("Action", name)?)))
            .collect::<Result<_, LoadError>>()?;
        let mut slices = HashMap::new();
        for (name, action) in &actions {
            slices.insert(*name, slice(&named, action)?);
        }
        Ok(Engine {
            version,
            ids: named.keys().cloned().collect(),
            slices,
            actions,
        })
    }

    /// The version hash of the policy set: `ps_` and 16 hex digits of SHA-256 over the
    /// policies' ids and texts.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The `@id`s of the policies, sorted.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// The number of policies.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set has no policies (every request is then denied).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Decides a request against the slice of policies that can apply to it.
    pub fn decide(&self, request: &PolicyRequest<'_>) -> Decision {
        match self.try_decide(request) {
            Ok(decision) => decision,
            Err(error) => self.deny(DenyReason::EvaluationError(error)),
        }
    }

    fn deny(&self, reason: DenyReason) -> Decision {
        Decision::Deny(Denial {
            policy_set: self.version.clone(),
            reason,
        })
    }

    fn try_decide(&self, request: &PolicyRequest<'_>) -> Result<Decision, String> {
        let (action, principal, resource, context, entities) = build(request)?;
        let action_uid = self
            .actions
            .get(action)
            .ok_or_else(|| format!("unknown action `{action}`"))?;
        let slice = self
            .slices
            .get(action)
            .ok_or_else(|| format!("no policies for `{action}`"))?;
        let policies = slice.by_resource.get(&resource).unwrap_or(&slice.generic);
        let request = Request::new(principal, action_uid.clone(), resource, context, None)
            .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        let response = Authorizer::new().is_authorized(&request, policies, &entities);
        // Fail closed: any evaluation error denies, even if another policy permits.
        if let Some(error) = response.diagnostics().errors().next() {
            return Ok(self.deny(DenyReason::EvaluationError(error.to_string())));
        }
        let mut ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        ids.sort();
        Ok(match (response.decision(), ids.is_empty()) {
            // Permitted by at least one permit policy and no forbid.
            (CedarDecision::Allow, false) => Decision::Allow(Permit {
                policy_set: self.version.clone(),
                policy_ids: ids,
            }),
            // Cedar never allows without a reason; deny if it ever did.
            (CedarDecision::Allow, true) => self.deny(DenyReason::NotPermitted),
            // A forbid matched: the reasons are the forbid policies.
            (CedarDecision::Deny, false) => self.deny(DenyReason::Forbidden { policy_ids: ids }),
            // Nothing matched: the default deny.
            (CedarDecision::Deny, true) => self.deny(DenyReason::NotPermitted),
        })
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, LoadError> {
    let kind = cedar_policy::EntityTypeName::from_str(&format!("Writ::{kind}"))
        .map_err(|e| LoadError::Schema(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(
        kind,
        cedar_policy::EntityId::new(id),
    ))
}

fn entity_uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    uid(kind, id).map_err(|e| e.to_string())
}

/// The policies of `named` that can apply to `action`, split into those that name one
/// resource and the rest.
fn slice(
    named: &BTreeMap<String, cedar_policy::Policy>,
    action: &EntityUid,
) -> Result<ActionSlice, LoadError> {
    let applies = |constraint: ActionConstraint| match constraint {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => &uid == action,
        ActionConstraint::In(uids) => uids.contains(action),
    };
    let mut generic = Vec::new();
    let mut specific: HashMap<EntityUid, Vec<cedar_policy::Policy>> = HashMap::new();
    for policy in named.values().filter(|p| applies(p.action_constraint())) {
        match policy.resource_constraint() {
            ResourceConstraint::Eq(resource) => {
                specific.entry(resource).or_default().push(policy.clone());
            }
            _ => generic.push(policy.clone()),
        }
    }
    let set = |policies: Vec<cedar_policy::Policy>| {
        PolicySet::from_policies(policies).map_err(|e| LoadError::Invalid(vec![e.to_string()]))
    };
    let by_resource = specific
        .into_iter()
        .map(|(resource, mut policies)| {
            policies.extend(generic.iter().cloned());
            Ok((resource, set(policies)?))
        })
        .collect::<Result<_, LoadError>>()?;
    Ok(ActionSlice {
        generic: set(generic)?,
        by_resource,
    })
}

fn version_hash(named: &BTreeMap<String, cedar_policy::Policy>) -> String {
    let texts: Vec<String> = named
        .iter()
        .map(|(id, policy)| format!("{id}\n{policy}\n"))
        .collect();
    let parts: Vec<&[u8]> = texts.iter().map(|text| text.as_bytes()).collect();
    let digest = writ_jose::sha256_concat(&parts);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("ps_{hex}")
}

type Built = (&'static str, EntityUid, EntityUid, Context, Vec<Entity>);

fn strings(values: &[&str]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .iter()
            .map(|v| RestrictedExpression::new_string((*v).to_owned())),
    )
}

fn human_entity(human: &Human<'_>) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "role".to_owned(),
            RestrictedExpression::new_string(human.role.as_str().to_owned()),
        ),
        (
            "active".to_owned(),
            RestrictedExpression::new_bool(human.active),
        ),
        ("clearance".to_owned(), strings(human.clearance)),
        ("groups".to_owned(), strings(human.groups)),
    ]);
    Entity::new(entity_uid("Human", human.id)?, attrs, HashSet::new()).map_err(|e| e.to_string())
}

fn agent_entity(agent: &Agent<'_>) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "owner".to_owned(),
            RestrictedExpression::new_entity_uid(entity_uid("Human", agent.owner)?),
        ),
        (
            "active".to_owned(),
            RestrictedExpression::new_bool(agent.active),
        ),
        ("tools".to_owned(), strings(agent.tools)),
    ]);
    Entity::new(entity_uid("Agent", agent.id)?, attrs, HashSet::new()).map_err(|e| e.to_string())
}

fn context(pairs: Vec<(&str, RestrictedExpression)>) -> Result<Context, String> {
    Context::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .map_err(|e| e.to_string())
}

fn build(request: &PolicyRequest<'_>) -> Result<Built, String> {
    match request {
        PolicyRequest::GrantMandate {
            human,
            agent,
            tools,
            labels,
            entitled_tools,
            ttl_seconds,
            max_depth,
        } => Ok((
            "GrantMandate",
            entity_uid("Human", human.id)?,
            entity_uid("Agent", agent.id)?,
            context(vec![
                ("tools", strings(tools)),
                ("labels", strings(labels)),
                ("entitled_tools", strings(entitled_tools)),
                ("ttl_seconds", RestrictedExpression::new_long(*ttl_seconds)),
                ("max_depth", RestrictedExpression::new_long(*max_depth)),
            ])?,
            vec![human_entity(human)?, agent_entity(agent)?],
        )),
        PolicyRequest::Invoke {
            agent,
            human,
            tool,
            labels,
            depth,
            entitled,
        } => {
            let provider = entity_uid("ToolProvider", tool.server)?;
            let tool_uid = entity_uid("Tool", &format!("{}/{}", tool.server, tool.name))?;
            let tool_entity = Entity::new(
                tool_uid.clone(),
                HashMap::from([("labels".to_owned(), strings(tool.labels))]),
                HashSet::from([provider.clone()]),
            )
            .map_err(|e| e.to_string())?;
            Ok((
                "Invoke",
                entity_uid("Agent", agent.id)?,
                tool_uid,
                context(vec![
                    (
                        "human",
                        RestrictedExpression::new_entity_uid(entity_uid("Human", human.id)?),
                    ),
                    (
                        "tool",
                        RestrictedExpression::new_string(format!("{}/{}", tool.server, tool.name)),
                    ),
                    ("labels", strings(labels)),
                    ("depth", RestrictedExpression::new_long(*depth)),
                    ("entitled", RestrictedExpression::new_bool(*entitled)),
                ])?,
                vec![
                    agent_entity(agent)?,
                    human_entity(human)?,
                    tool_entity,
                    Entity::new_no_attrs(provider, HashSet::new()),
                ],
            ))
        }
        PolicyRequest::Delegate {
            agent,
            delegate,
            human,
            tools,
            depth,
        } => Ok((
            "Delegate",
            entity_uid("Agent", agent.id)?,
            entity_uid("Agent", delegate.id)?,
            context(vec![
                (
                    "human",
                    RestrictedExpression::new_entity_uid(entity_uid("Human", human.id)?),
                ),
                ("tools", strings(tools)),
                ("depth", RestrictedExpression::new_long(*depth)),
            ])?,
            vec![
                agent_entity(agent)?,
                agent_entity(delegate)?,
                human_entity(human)?,
            ],
        )),
    }
}
