//! The argument constraint language and its attenuation order.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use std::cmp::Ordering;

use crate::glob;

/// The deepest a constraint may nest.
pub const MAX_DEPTH: usize = 16;
/// The most nodes a constraint may have, counting `one_of` members and object fields.
pub const MAX_NODES: usize = 512;
/// The longest string literal (in bytes) a constraint may hold.
pub const MAX_LITERAL_LEN: usize = 4096;

/// A constraint on a JSON value, such as a tool call's arguments.
///
/// Written in JSON as `"any"` or a one-member object naming the rule:
///
/// | JSON | admits |
/// |---|---|
/// | `"any"` | every value |
/// | `{"exact": v}` | exactly `v` |
/// | `{"one_of": [v, …]}` | any listed value |
/// | `{"prefix": "s"}` | strings starting with `s` |
/// | `{"glob": "p"}` | strings matching `p` (`*` any run, `?` one character) |
/// | `{"range": {"min": a, "max": b}}` | numbers with `a ≤ n ≤ b` (either bound optional) |
/// | `{"max_length": n}` | strings of at most `n` characters |
/// | `{"object": {"required": {…}, "optional": {…}, "other": c}}` | objects whose listed members satisfy their constraints, whose required members are present, and whose other members satisfy `other` (refused when `other` is absent) |
/// | `{"array": {"items": c, "max_items": n}}` | arrays of at most `n` items, each satisfying `c` |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Constraint {
    /// Every value.
    Any,
    /// Exactly this value.
    Exact(Value),
    /// Any of these values.
    OneOf(Vec<Value>),
    /// A string starting with this text.
    Prefix(String),
    /// A string matching this glob.
    Glob(String),
    /// A number within these inclusive bounds.
    Range(Range),
    /// A string of at most this many characters.
    MaxLength(usize),
    /// An object with constrained members.
    Object(ObjectConstraint),
    /// An array whose items are constrained.
    Array(ArrayConstraint),
}

/// Inclusive numeric bounds; a missing bound is unbounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The least admitted number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Number>,
    /// The greatest admitted number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Number>,
}

/// Constraints on an object's members.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectConstraint {
    /// Members that must be present, each with its constraint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub required: BTreeMap<String, Constraint>,
    /// Members that may be absent but, when present, must satisfy their constraint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub optional: BTreeMap<String, Constraint>,
    /// The constraint on any member not listed; when absent, unlisted members are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<Box<Constraint>>,
}

/// Constraints on an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayConstraint {
    /// The constraint every item satisfies.
    pub items: Box<Constraint>,
    /// The most items admitted; unbounded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
}

/// A constraint is too large or self-contradictory.
///
/// Whoever wrote the constraint is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("constraint nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_NODES`] nodes.
    #[error("constraint has more than {MAX_NODES} nodes")]
    TooLarge,
    /// A string literal longer than [`MAX_LITERAL_LEN`] bytes.
    #[error("constraint literal is longer than {MAX_LITERAL_LEN} bytes")]
    LiteralTooLong,
    /// A range whose `min` exceeds its `max`.
    #[error("range has `min` {min} greater than `max` {max}")]
    EmptyRange {
        /// The lower bound.
        min: Number,
        /// The upper bound.
        max: Number,
    },
    /// A member listed as both required and optional.
    #[error("object member `{0}` is both required and optional")]
    AmbiguousMember(String),
    /// A glob every match of which has a `.` or `..` segment or a percent-encoded
    /// separator: such values are always refused, so the glob admits nothing.
    #[error(
        "glob `{0}` matches nothing: every string it matches has a `.` or `..` segment or a percent-encoded separator, which are always refused"
    )]
    GlobMatchesNothing(String),
}

/// Where and why a value fell outside a constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// An RFC 6901 JSON pointer to the offending value (empty for the root).
    pub pointer: String,
    /// What the constraint required there.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "value at `{at}` {}", self.rule)
    }
}

impl Constraint {
    /// Checks the size limits and internal consistency of a constraint read from outside.
    pub fn validate(&self) -> Result<(), ConstraintError> {
        let mut nodes = 0;
        self.validate_at(1, &mut nodes)
    }

    fn validate_at(&self, depth: usize, nodes: &mut usize) -> Result<(), ConstraintError> {
        if depth > MAX_DEPTH {
            return Err(ConstraintError::TooDeep);
        }
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(ConstraintError::TooLarge);
        }
        match self {
            Constraint::Any | Constraint::MaxLength(_) => Ok(()),
            Constraint::Exact(value) => check_literal(value, nodes),
            Constraint::OneOf(values) => values
                .iter()
                .try_for_each(|value| check_literal(value, nodes)),
            Constraint::Prefix(text) => check_literal(&Value::String(text.clone()), nodes),
            // A match keeps every literal character of its glob, so when the glob's own text
            // escapes (its wildcards read as plain characters), so does every match: the
            // glob admits nothing, and would not even be a subset of itself.
            Constraint::Glob(text) if glob::escapes(text) => Err(
                ConstraintError::GlobMatchesNothing(text.chars().take(64).collect()),
            ),
            Constraint::Glob(text) => check_literal(&Value::String(text.clone()), nodes),
            Constraint::Range(Range {
                min: Some(min),
                max: Some(max),
            }) if compare(min, max) == Ordering::Greater => Err(ConstraintError::EmptyRange {
                min: min.clone(),
                max: max.clone(),
            }),
            Constraint::Range(_) => Ok(()),
            Constraint::Object(object) => {
                if let Some(name) = object
                    .required
                    .keys()
                    .find(|name| object.optional.contains_key(*name))
                {
                    return Err(ConstraintError::AmbiguousMember(name.clone()));
                }
                for (name, member) in object.required.iter().chain(&object.optional) {
                    if name.len() > MAX_LITERAL_LEN {
                        return Err(ConstraintError::LiteralTooLong);
                    }
                    member.validate_at(depth + 1, nodes)?;
                }
                match &object.other {
                    Some(other) => other.validate_at(depth + 1, nodes),
                    None => Ok(()),
                }
            }
            Constraint::Array(array) => array.items.validate_at(depth + 1, nodes),
        }
    }

    /// Whether `value` satisfies the constraint.
    pub fn admits(&self, value: &Value) -> bool {
        self.check(value).is_ok()
    }

    /// Checks `value`, saying where and why it falls outside when it does.
    pub fn check(&self, value: &Value) -> Result<(), Violation> {
        let mut pointer = String::new();
        self.check_at(value, &mut pointer)
    }

    fn check_at(&self, value: &Value, pointer: &mut String) -> Result<(), Violation> {
        let fail = |pointer: &str, rule: String| {
            Err(Violation {
                pointer: pointer.to_owned(),
                rule,
            })
        };
        match (self, value) {
            (Constraint::Any, _) => Ok(()),
            (Constraint::Exact(expected), _) if expected == value => Ok(()),
            (Constraint::Exact(expected), _) => {
                fail(pointer, format!("must equal {}", brief(expected)))
            }
            (Constraint::OneOf(values), _) if values.contains(value) => Ok(()),
            (Constraint::OneOf(values), _) => fail(
                pointer,
                format!("must be one of {} allowed values", values.len()),
            ),
            // Path-like rules: a value with a `.` or `..` segment or an encoded separator
            // could resolve outside the prefix or pattern, so it never matches.
            (Constraint::Prefix(_) | Constraint::Glob(_), Value::String(text))
                if glob::escapes(text) =>
            {
                fail(
                    pointer,
                    "must not contain `.` or `..` segments or percent-encoded separators"
                        .to_owned(),
                )
            }
            (Constraint::Prefix(prefix), Value::String(text)) if text.starts_with(prefix) => Ok(()),
            (Constraint::Prefix(prefix), _) => fail(
                pointer,
                format!("must be a string starting with `{prefix}`"),
            ),
            (Constraint::Glob(pattern), Value::String(text)) if glob::matches(pattern, text) => {
                Ok(())
            }
            (Constraint::Glob(pattern), _) => {
                fail(pointer, format!("must be a string matching `{pattern}`"))
            }
            (Constraint::Range(range), Value::Number(number)) if range.contains(number) => Ok(()),
            (Constraint::Range(range), _) => fail(pointer, format!("must be a number {range}")),
            (Constraint::MaxLength(max), Value::String(text)) if text.chars().count() <= *max => {
                Ok(())
            }
            (Constraint::MaxLength(max), _) => fail(
                pointer,
                format!("must be a string of at most {max} characters"),
            ),
            (Constraint::Object(object), Value::Object(members)) => {
                for name in object.required.keys() {
                    if !members.contains_key(name) {
                        return fail(pointer, format!("must have member `{name}`"));
                    }
                }
                for (name, member) in members {
                    let Some(constraint) = object.constraint_for(name) else {
                        return fail(pointer, format!("must not have member `{name}`"));
                    };
                    let len = pointer.len();
                    push_pointer_token(pointer, name);
                    constraint.check_at(member, pointer)?;
                    pointer.truncate(len);
                }
                Ok(())
            }
            (Constraint::Object(_), _) => fail(pointer, "must be an object".to_owned()),
            (Constraint::Array(array), Value::Array(items)) => {
                if let Some(max) = array.max_items
                    && items.len() > max
                {
                    return fail(pointer, format!("must have at most {max} items"));
                }
                for (index, item) in items.iter().enumerate() {
                    let len = pointer.len();
                    push_pointer_token(pointer, &index.to_string());
                    array.items.check_at(item, pointer)?;
                    pointer.truncate(len);
                }
                Ok(())
            }
            (Constraint::Array(_), _) => fail(pointer, "must be an array".to_owned()),
        }
    }

    /// Whether every value this constraint admits is admitted by `parent`.
    ///
    /// Sound but not complete: `true` is a proof that `self` is no wider than `parent`;
    /// `false` means the rules below could not prove it. Attenuation may only narrow.
    pub fn is_subset_of(&self, parent: &Constraint) -> bool {
        match (self, parent) {
            // Anything is narrower than `any`.
            (_, Constraint::Any) => true,
            // A finite set is narrower when the parent admits each member.
            (Constraint::Exact(value), _) => parent.admits(value),
            (Constraint::OneOf(values), _) => values.iter().all(|value| parent.admits(value)),
            // Only `any` admits everything.
            (Constraint::Any, _) => false,
            // A longer prefix is narrower; so is a prefix under a `literal*` glob.
            (Constraint::Prefix(child), Constraint::Prefix(prefix)) => child.starts_with(prefix),
            (Constraint::Prefix(child), Constraint::Glob(pattern)) => {
                glob::as_prefix(pattern).is_some_and(|prefix| child.starts_with(prefix))
            }
            // A glob without wildcards is one string; otherwise compare the globs.
            (Constraint::Glob(child), _) if !glob::has_wildcard(child) => {
                parent.admits(&Value::String(child.clone()))
            }
            (Constraint::Glob(child), Constraint::Glob(pattern)) => glob::is_subset(child, pattern),
            (Constraint::Glob(child), Constraint::Prefix(prefix)) => {
                glob::literal_prefix(child).starts_with(prefix.as_str())
            }
            (Constraint::Range(child), Constraint::Range(range)) => child.is_within(range),
            (Constraint::MaxLength(child), Constraint::MaxLength(max)) => child <= max,
            (Constraint::Object(child), Constraint::Object(object)) => child.is_subset_of(object),
            (Constraint::Array(child), Constraint::Array(array)) => {
                child.items.is_subset_of(&array.items)
                    && match (child.max_items, array.max_items) {
                        (_, None) => true,
                        (Some(child), Some(max)) => child <= max,
                        (None, Some(_)) => false,
                    }
            }
            // Different kinds of rule: not provably narrower. Deny.
            _ => false,
        }
    }
}

impl Range {
    fn contains(&self, n: &Number) -> bool {
        self.min
            .as_ref()
            .is_none_or(|min| compare(n, min) != Ordering::Less)
            && self
                .max
                .as_ref()
                .is_none_or(|max| compare(n, max) != Ordering::Greater)
    }

    fn is_within(&self, parent: &Range) -> bool {
        let lower = match (&self.min, &parent.min) {
            (_, None) => true,
            (Some(child), Some(parent)) => compare(child, parent) != Ordering::Less,
            (None, Some(_)) => false,
        };
        let upper = match (&self.max, &parent.max) {
            (_, None) => true,
            (Some(child), Some(parent)) => compare(child, parent) != Ordering::Greater,
            (None, Some(_)) => false,
        };
        lower && upper
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.min, &self.max) {
            (Some(min), Some(max)) => write!(f, "from {min} to {max}"),
            (Some(min), None) => write!(f, "of at least {min}"),
            (None, Some(max)) => write!(f, "of at most {max}"),
            (None, None) => Ok(()),
        }
    }
}

impl ObjectConstraint {
    /// The constraint a member called `name` must satisfy, if it may appear at all.
    fn constraint_for(&self, name: &str) -> Option<&Constraint> {
        self.required
            .get(name)
            .or_else(|| self.optional.get(name))
            .or(self.other.as_deref())
    }

    fn lists(&self, name: &str) -> bool {
        self.required.contains_key(name) || self.optional.contains_key(name)
    }

    fn is_subset_of(&self, parent: &ObjectConstraint) -> bool {
        // Every member the parent requires, the child requires, no wider.
        let keeps_required = parent.required.iter().all(|(name, constraint)| {
            self.required
                .get(name)
                .is_some_and(|child| child.is_subset_of(constraint))
        });
        // Every member the child lists, the parent accepts, no narrower.
        let lists_narrower = self
            .required
            .iter()
            .chain(&self.optional)
            .all(|(name, child)| {
                parent
                    .constraint_for(name)
                    .is_some_and(|constraint| child.is_subset_of(constraint))
            });
        // The child's catch-all applies to every member it does not list, including members
        // the parent lists, so it must fit each of those and the parent's own catch-all.
        let other_narrower = match (&self.other, &parent.other) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(child), Some(other)) => {
                child.is_subset_of(other)
                    && parent
                        .required
                        .iter()
                        .chain(&parent.optional)
                        .filter(|(name, _)| !self.lists(name))
                        .all(|(_, constraint)| child.is_subset_of(constraint))
            }
        };
        keeps_required && lists_narrower && other_narrower
    }
}

/// Orders two JSON numbers exactly when both are integers (no rounding above 2^53), and as
/// floating point otherwise. JSON numbers are never NaN, so the order is total.
fn compare(a: &Number, b: &Number) -> Ordering {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

fn check_literal(value: &Value, nodes: &mut usize) -> Result<(), ConstraintError> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(ConstraintError::TooLarge);
    }
    match value {
        Value::String(text) if text.len() > MAX_LITERAL_LEN => Err(ConstraintError::LiteralTooLong),
        Value::Array(items) => items.iter().try_for_each(|item| check_literal(item, nodes)),
        Value::Object(members) => members.iter().try_for_each(|(name, member)| {
            if name.len() > MAX_LITERAL_LEN {
                return Err(ConstraintError::LiteralTooLong);
            }
            check_literal(member, nodes)
        }),
        _ => Ok(()),
    }
}

/// RFC 6901 §3: `~` becomes `~0` and `/` becomes `~1`.
fn push_pointer_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// A short rendering of a literal for error messages.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 64 {
        format!("`{text}`")
    } else {
        format!("`{}…`", text.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(value: Value) -> Constraint {
        let constraint: Constraint = serde_json::from_value(value).unwrap();
        constraint.validate().unwrap();
        constraint
    }

    #[test]
    fn prefix_and_glob_refuse_values_that_climb_out() {
        for rule in [json!({"prefix": "/data/"}), json!({"glob": "/data/*"})] {
            let rule = c(rule);
            assert_eq!(rule.check(&json!("/data/q3.csv")), Ok(()));
            for escaping in [
                "/data/../etc/passwd",
                "/data/%2E%2E/etc/passwd",
                "/data/./x",
            ] {
                let violation = rule.check(&json!(escaping)).unwrap_err();
                assert!(
                    violation.to_string().contains("`..` segments"),
                    "{violation}"
                );
            }
        }
    }

    #[test]
    fn json_form() {
        assert_eq!(c(json!("any")), Constraint::Any);
        assert_eq!(
            c(json!({"prefix": "/data/"})),
            Constraint::Prefix("/data/".into())
        );
        assert_eq!(
            serde_json::to_value(Constraint::MaxLength(3)).unwrap(),
            json!({"max_length": 3})
        );
        assert!(serde_json::from_value::<Constraint>(json!({"prefix": "a", "glob": "b"})).is_err());
        assert!(serde_json::from_value::<Constraint>(json!({"regex": ".*"})).is_err());
        assert!(
            serde_json::from_value::<Constraint>(json!({"range": {"min": 1, "maxx": 2}})).is_err()
        );
    }

    #[test]
    fn admits_each_rule() {
        let args = c(json!({"object": {
            "required": {"path": {"glob": "/data/*.csv"}},
            "optional": {
                "limit": {"range": {"min": 1, "max": 100}},
                "mode": {"one_of": ["r", "rw"]},
                "tags": {"array": {"items": {"max_length": 8}, "max_items": 2}},
                "owner": {"prefix": "team-"},
                "format": {"exact": "csv"}
            }
        }}));
        assert!(args.admits(&json!({"path": "/data/q1.csv"})));
        assert!(args.admits(&json!({
            "path": "/data/x/q1.csv", "limit": 100, "mode": "rw", "tags": ["a", "b"],
            "owner": "team-red", "format": "csv"
        })));
        let refused = [
            (json!({}), "", "must have member `path`"),
            (json!({"path": "/etc/passwd"}), "/path", "matching"),
            (
                json!({"path": "/data/a.csv", "limit": 101}),
                "/limit",
                "from 1 to 100",
            ),
            (
                json!({"path": "/data/a.csv", "limit": "1"}),
                "/limit",
                "number",
            ),
            (
                json!({"path": "/data/a.csv", "mode": "w"}),
                "/mode",
                "one of",
            ),
            (
                json!({"path": "/data/a.csv", "tags": ["a", "b", "c"]}),
                "/tags",
                "at most 2 items",
            ),
            (
                json!({"path": "/data/a.csv", "tags": ["toolongtag"]}),
                "/tags/0",
                "at most 8",
            ),
            (
                json!({"path": "/data/a.csv", "owner": "ops"}),
                "/owner",
                "starting with",
            ),
            (
                json!({"path": "/data/a.csv", "format": "json"}),
                "/format",
                "must equal",
            ),
            (
                json!({"path": "/data/a.csv", "sudo": true}),
                "",
                "must not have member `sudo`",
            ),
            (json!("/data/a.csv"), "", "must be an object"),
        ];
        for (value, pointer, rule) in refused {
            let violation = args.check(&value).unwrap_err();
            assert_eq!(violation.pointer, pointer, "{value}");
            assert!(violation.rule.contains(rule), "{value}: {}", violation.rule);
        }
    }

    #[test]
    fn large_integers_compare_exactly() {
        let constraint = c(json!({"range": {"max": 9_007_199_254_740_992_u64}}));
        assert!(constraint.admits(&json!(9_007_199_254_740_992_u64)));
        assert!(!constraint.admits(&json!(9_007_199_254_740_993_u64)));
        let constraint = c(json!({"range": {"min": -1, "max": 0.5}}));
        assert!(constraint.admits(&json!(-1)));
        assert!(constraint.admits(&json!(0.25)));
        assert!(!constraint.admits(&json!(1)));
        assert!(!constraint.admits(&json!(u64::MAX)));
    }

    #[test]
    fn pointer_escapes_names() {
        let constraint = c(json!({"object": {"other": {"max_length": 1}}}));
        let violation = constraint.check(&json!({"a/b~c": "long"})).unwrap_err();
        assert_eq!(violation.pointer, "/a~1b~0c");
    }

    #[test]
    fn subset_rules() {
        let narrower = [
            (json!({"exact": "/data/a"}), json!({"prefix": "/data/"})),
            (
                json!({"one_of": [1, 2]}),
                json!({"range": {"min": 0, "max": 2}}),
            ),
            (json!({"prefix": "/data/x/"}), json!({"prefix": "/data/"})),
            (json!({"prefix": "/data/x/"}), json!({"glob": "/data/*"})),
            (
                json!({"glob": "/data/x/*.csv"}),
                json!({"prefix": "/data/"}),
            ),
            (json!({"glob": "/data/a"}), json!({"max_length": 8})),
            (
                json!({"range": {"min": 2, "max": 3}}),
                json!({"range": {"min": 1}}),
            ),
            (json!({"max_length": 3}), json!({"max_length": 4})),
            (
                json!({"object": {"required": {"a": {"exact": 1}}}}),
                json!({"object": {"required": {"a": "any"}, "optional": {"b": "any"}}}),
            ),
            (
                json!({"object": {"required": {"a": "any"}, "other": {"exact": 1}}}),
                json!({"object": {"required": {"a": "any"}, "optional": {"b": {"range": {"max": 5}}}, "other": "any"}}),
            ),
            (
                json!({"array": {"items": {"exact": 1}, "max_items": 2}}),
                json!({"array": {"items": "any", "max_items": 3}}),
            ),
        ];
        for (child, parent) in narrower {
            assert!(
                c(child.clone()).is_subset_of(&c(parent.clone())),
                "{child} ⊆ {parent}"
            );
        }
        let wider = [
            (json!("any"), json!({"prefix": ""})),
            (json!({"prefix": "/data/"}), json!({"prefix": "/data/x/"})),
            (json!({"prefix": "/data/"}), json!({"glob": "/data/*.csv"})),
            (
                json!({"range": {"min": 0}}),
                json!({"range": {"min": 0, "max": 9}}),
            ),
            (json!({"max_length": 5}), json!({"max_length": 4})),
            (json!({"max_length": 5}), json!({"prefix": ""})),
            (
                json!({"object": {"optional": {"a": "any"}}}),
                json!({"object": {"required": {"a": "any"}}}),
            ),
            (
                json!({"object": {"required": {"a": "any"}, "optional": {"b": "any"}}}),
                json!({"object": {"required": {"a": "any"}}}),
            ),
            (
                json!({"object": {"other": "any"}}),
                json!({"object": {"optional": {"b": {"exact": 1}}, "other": "any"}}),
            ),
            (
                json!({"array": {"items": "any"}}),
                json!({"array": {"items": "any", "max_items": 3}}),
            ),
        ];
        for (child, parent) in wider {
            assert!(
                !c(child.clone()).is_subset_of(&c(parent.clone())),
                "{child} ⊄ {parent}"
            );
        }
    }

    #[test]
    fn validation_limits() {
        let mut deep = json!("any");
        for _ in 0..MAX_DEPTH {
            deep = json!({"array": {"items": deep}});
        }
        let constraint: Constraint = serde_json::from_value(deep).unwrap();
        assert_eq!(constraint.validate(), Err(ConstraintError::TooDeep));

        let many: Vec<Value> = (0..MAX_NODES).map(Value::from).collect();
        let constraint: Constraint = serde_json::from_value(json!({ "one_of": many })).unwrap();
        assert_eq!(constraint.validate(), Err(ConstraintError::TooLarge));

        let constraint = c(json!({"range": {"min": 1}}));
        assert!(constraint.validate().is_ok());
        let constraint: Constraint =
            serde_json::from_value(json!({"range": {"min": 2, "max": 1}})).unwrap();
        assert!(matches!(
            constraint.validate(),
            Err(ConstraintError::EmptyRange { .. })
        ));

        let constraint: Constraint = serde_json::from_value(
            json!({"object": {"required": {"a": "any"}, "optional": {"a": "any"}}}),
        )
        .unwrap();
        assert_eq!(
            constraint.validate(),
            Err(ConstraintError::AmbiguousMember("a".into()))
        );

        let constraint: Constraint =
            serde_json::from_value(json!({ "prefix": "x".repeat(MAX_LITERAL_LEN + 1) })).unwrap();
        assert_eq!(constraint.validate(), Err(ConstraintError::LiteralTooLong));
    }
}

#[cfg(test)]
mod dead_globs {
    use serde_json::json;

    use super::*;

    /// Found by the `scope_details` fuzz target: a glob whose every match has a `.` or `..`
    /// segment or an encoded separator admits nothing (those values are always refused), so
    /// a grant holding one was not even a subset of itself and could be neither used nor
    /// passed on. It is refused when read, with a reason, instead of standing as a dead grant.
    #[test]
    fn a_glob_that_only_matches_refused_paths_is_refused_when_read() {
        for pattern in [
            "/data/sales/.",
            "/data/../*",
            "./*",
            "/data/*/..;x",
            "/a/%2e*",
            "/a/%2F*",
            "/a/%25*",
            "*\\..\\x",
        ] {
            let glob = Constraint::Glob(pattern.to_owned());
            let error = glob.validate().expect_err(pattern);
            assert!(error.to_string().contains("matches nothing"), "{error}");
        }
        for pattern in [
            "/data/sales/*",
            "/data/.*",
            "*.csv",
            "/a/..b",
            "/data/sales/q1.csv",
        ] {
            let glob = Constraint::Glob(pattern.to_owned());
            assert_eq!(glob.validate(), Ok(()), "{pattern}");
            assert!(glob.is_subset_of(&glob), "{pattern}");
        }
        let nested: Constraint = serde_json::from_value(json!({"object": {"required": {
            "path": {"glob": "/data/sales/."}}}}))
        .unwrap();
        assert!(nested.validate().is_err());
    }
}
