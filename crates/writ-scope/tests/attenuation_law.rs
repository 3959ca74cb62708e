//! The attenuation law: `child.is_subset_of(parent)` and `child.admits(v)` imply
//! `parent.admits(v)`. Delegation and issuance rely on it: a narrower grant never lets
//! through a value the wider one would refuse.
//!
//! Constraints and values are drawn from a deliberately small universe (strings over
//! `a`, `b`, `/`; integers from -3 to 3; three member names) so that subsets and admitted
//! values are common and the implication is exercised, not vacuously true.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use writ_scope::{ArrayConstraint, Constraint, ObjectConstraint, Range};

fn small_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just('a'), Just('b'), Just('/')], 0..4)
        .prop_map(|chars| chars.into_iter().collect())
}

fn small_pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just('a'), Just('b'), Just('/'), Just('*'), Just('?')],
        0..5,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("k".to_owned()),
        Just("m".to_owned()),
        Just("n".to_owned())
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        small_string().prop_map(Value::from),
        (-3_i64..=3).prop_map(Value::from),
        Just(json!(0.5)),
        Just(json!(true)),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map(key(), inner, 0..3)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn bound() -> impl Strategy<Value = Option<serde_json::Number>> {
    proptest::option::of((-3_i64..=3).prop_map(serde_json::Number::from))
}

fn constraint() -> impl Strategy<Value = Constraint> {
    let leaf = prop_oneof![
        Just(Constraint::Any),
        value().prop_map(Constraint::Exact),
        proptest::collection::vec(value(), 0..3).prop_map(Constraint::OneOf),
        small_string().prop_map(Constraint::Prefix),
        small_pattern().prop_map(Constraint::Glob),
        (bound(), bound()).prop_map(|(min, max)| Constraint::Range(Range { min, max })),
        (0_usize..4).prop_map(Constraint::MaxLength),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (
                proptest::collection::btree_map(key(), inner.clone(), 0..2),
                proptest::collection::btree_map(key(), inner.clone(), 0..2),
                proptest::option::of(inner.clone()),
            )
                .prop_map(|(required, optional, other)| {
                    let optional: BTreeMap<_, _> = optional
                        .into_iter()
                        .filter(|(name, _)| !required.contains_key(name))
                        .collect();
                    Constraint::Object(ObjectConstraint {
                        required,
                        optional,
                        other: other.map(Box::new),
                    })
                }),
            (inner, proptest::option::of(0_usize..3)).prop_map(|(items, max_items)| {
                Constraint::Array(ArrayConstraint {
                    items: Box::new(items),
                    max_items,
                })
            }),
        ]
    })
}

/// Derives a constraint close to `parent`, steered by `bits`: keeps nodes, swaps in parts of
/// `other`, and makes the small edits attenuation makes (and some it must refuse).
fn mutate(parent: &Constraint, other: &Constraint, bits: u64) -> Constraint {
    let choice = bits & 0b111;
    let rest = bits >> 3;
    match (parent, choice) {
        (_, 0) => other.clone(),
        (Constraint::Object(object), _) => {
            let mut object = object.clone();
            match choice {
                1 => {
                    // Move a required member to optional (widens).
                    if let Some((name, member)) = object.required.pop_first() {
                        object.optional.insert(name, member);
                    }
                }
                2 => {
                    // Drop an optional member (narrows).
                    object.optional.pop_first();
                }
                3 => object.other = Some(Box::new(other.clone())),
                _ => {
                    for member in object
                        .required
                        .values_mut()
                        .chain(object.optional.values_mut())
                    {
                        *member = mutate(member, other, rest);
                    }
                }
            }
            Constraint::Object(object)
        }
        (Constraint::Array(array), _) => Constraint::Array(ArrayConstraint {
            items: Box::new(mutate(&array.items, other, rest)),
            max_items: match choice {
                1 => None,
                2 => array.max_items.map(|n| n.saturating_sub(1)),
                _ => array.max_items,
            },
        }),
        (Constraint::Prefix(prefix), 1) => Constraint::Prefix(format!("{prefix}a")),
        (Constraint::Prefix(prefix), 2) => Constraint::Glob(format!("{prefix}*")),
        (Constraint::Glob(pattern), 1) => Constraint::Glob(format!("{pattern}a")),
        (Constraint::Glob(pattern), 2) => Constraint::Prefix(pattern.replace(['*', '?'], "")),
        (Constraint::Range(range), 1) => Constraint::Range(Range {
            min: range.min.clone(),
            max: None,
        }),
        (Constraint::MaxLength(n), 1) => Constraint::MaxLength(n.saturating_sub(1)),
        (Constraint::OneOf(values), 1) => {
            Constraint::OneOf(values.iter().skip(1).cloned().collect())
        }
        _ => parent.clone(),
    }
}

fn check_law(child: &Constraint, parent: &Constraint, value: &Value) -> Result<(), TestCaseError> {
    if child.is_subset_of(parent) && child.admits(value) {
        prop_assert!(
            parent.admits(value),
            "child {child:?} ⊆ parent {parent:?} admits {value} but parent refuses it"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn attenuation_never_widens(
        parent in constraint(),
        other in constraint(),
        bits in any::<u64>(),
        values in proptest::collection::vec(value(), 1..8),
    ) {
        let child = mutate(&parent, &other, bits);
        for value in &values {
            check_law(&child, &parent, value)?;
            check_law(&other, &parent, value)?;
        }
    }

    #[test]
    fn subset_is_reflexive(constraint in constraint()) {
        prop_assert!(constraint.is_subset_of(&constraint), "{constraint:?}");
    }

    #[test]
    fn any_value_is_checked_without_panicking(constraint in constraint(), value in value()) {
        let _ = constraint.check(&value);
    }
}

/// An exhaustive sweep over leaf constraints and values, asserting the law and that the
/// premise held often enough for the law to have been tested.
#[test]
fn attenuation_law_over_all_small_leaves() {
    let strings = ["", "a", "b", "/", "ab", "a/", "/a", "aab", "ba"];
    let patterns = ["*", "a*", "a?", "*a", "a*b", "/*", "?", "ab", ""];
    let mut constraints = vec![Constraint::Any];
    for text in strings {
        constraints.push(Constraint::Prefix(text.to_owned()));
        constraints.push(Constraint::Exact(json!(text)));
    }
    for pattern in patterns {
        constraints.push(Constraint::Glob(pattern.to_owned()));
    }
    for n in 0..4 {
        constraints.push(Constraint::MaxLength(n));
    }
    for (min, max) in [
        (None, None),
        (Some(0), None),
        (None, Some(1)),
        (Some(-1), Some(1)),
    ] {
        constraints.push(Constraint::Range(Range {
            min: min.map(serde_json::Number::from),
            max: max.map(serde_json::Number::from),
        }));
    }
    constraints.push(Constraint::OneOf(vec![json!("a"), json!(1)]));
    let mut values: Vec<Value> = strings.iter().map(|s| json!(s)).collect();
    values.extend([
        json!(-2),
        json!(0),
        json!(1),
        json!(0.5),
        json!(null),
        json!([]),
    ]);

    let mut exercised = 0;
    for child in &constraints {
        for parent in &constraints {
            for value in &values {
                if child.is_subset_of(parent) && child.admits(value) {
                    exercised += 1;
                    assert!(
                        parent.admits(value),
                        "{child:?} ⊆ {parent:?}, value {value}"
                    );
                }
            }
        }
    }
    assert!(exercised > 300, "the premise held only {exercised} times");
}
