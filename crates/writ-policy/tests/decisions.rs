//! Policy decisions: the default policies, every deny reason, validation, slicing, and
//! fail-closed evaluation.

#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use writ_policy::*;

/// A member entitled to the `files` tools and the label `internal`.
const ALICE: Human<'static> = Human {
    id: "alice",
    role: Role::Member,
    active: true,
    clearance: &["internal"],
    groups: &[],
};
const BOB: Human<'static> = Human {
    id: "bob",
    role: Role::Member,
    active: true,
    clearance: &["internal"],
    groups: &[],
};
/// An administrator with no entitlements.
const ROOT: Human<'static> = Human {
    id: "root",
    role: Role::Admin,
    active: true,
    clearance: &[],
    groups: &[],
};
const TOOLS: &[&str] = &["files/read_file", "files/list_dir"];
const AGENT: Agent<'static> = Agent {
    id: "agent-1",
    owner: "alice",
    active: true,
    tools: TOOLS,
};
const READ: Tool<'static> = Tool {
    server: "files",
    name: "read_file",
    labels: &["internal"],
};

fn grant<'a>(
    human: &'a Human<'a>,
    agent: &'a Agent<'a>,
    tools: &'a [&'a str],
) -> PolicyRequest<'a> {
    PolicyRequest::GrantMandate {
        human,
        agent,
        tools,
        labels: &["internal"],
        // Every tool asked for is entitled here; the entitlement tests say otherwise.
        entitled_tools: tools,
        ttl_seconds: 900,
        max_depth: 2,
    }
}

fn invoke<'a>(
    agent: &'a Agent<'a>,
    human: &'a Human<'a>,
    tool: &'a Tool<'a>,
    labels: &'a [&'a str],
) -> PolicyRequest<'a> {
    PolicyRequest::Invoke {
        agent,
        human,
        tool,
        labels,
        depth: 0,
        entitled: true,
    }
}

fn allowed_by(decision: &Decision) -> Vec<String> {
    match decision {
        Decision::Allow(permit) => permit.policy_ids.clone(),
        Decision::Deny(denial) => panic!("denied: {}", denial.reason.message()),
    }
}

fn denied_with(decision: &Decision) -> &'static str {
    match decision {
        Decision::Deny(denial) => denial.reason.code(),
        Decision::Allow(permit) => panic!("allowed by {:?}", permit.policy_ids),
    }
}

fn source(name: &str, text: &str) -> PolicySource {
    PolicySource {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

#[test]
fn owners_and_admins_may_grant_within_registered_tools() {
    let engine = Engine::with_defaults().unwrap();
    assert_eq!(
        allowed_by(&engine.decide(&grant(&ALICE, &AGENT, &["files/read_file"]))),
        ["owner-grants-to-own-agent"]
    );
    assert_eq!(
        allowed_by(&engine.decide(&grant(&ROOT, &AGENT, &["files/read_file"]))),
        ["admin-grants-to-any-agent"]
    );
    assert_eq!(
        denied_with(&engine.decide(&grant(&BOB, &AGENT, &["files/read_file"]))),
        "policy_no_permit"
    );
    assert_eq!(
        denied_with(&engine.decide(&grant(&ALICE, &AGENT, &["db/drop_table"]))),
        "policy_no_permit"
    );
    let suspended = Human {
        active: false,
        ..ALICE
    };
    assert_eq!(
        denied_with(&engine.decide(&grant(&suspended, &AGENT, &["files/read_file"]))),
        "policy_no_permit"
    );
    let retired = Agent {
        active: false,
        ..AGENT
    };
    assert_eq!(
        denied_with(&engine.decide(&grant(&ALICE, &retired, &["files/read_file"]))),
        "policy_no_permit"
    );
}

#[test]
fn invoke_needs_registration_an_active_human_and_data_clearance() {
    let engine = Engine::with_defaults().unwrap();
    assert_eq!(
        allowed_by(&engine.decide(&invoke(&AGENT, &ALICE, &READ, &["internal"]))),
        ["invoke-registered-tool"]
    );
    let decision = engine.decide(&invoke(&AGENT, &ALICE, &READ, &[]));
    assert_eq!(denied_with(&decision), "policy_forbid");
    let Decision::Deny(denial) = decision else {
        unreachable!()
    };
    assert_eq!(
        denial.reason,
        DenyReason::Forbidden {
            policy_ids: vec!["invoke-needs-data-clearance".into()]
        }
    );
    assert_eq!(denial.policy_set, engine.version());
    let offboarded = Human {
        active: false,
        ..ALICE
    };
    assert_eq!(
        denied_with(&engine.decide(&invoke(&AGENT, &offboarded, &READ, &["internal"]))),
        "policy_no_permit"
    );
    let unregistered = Tool {
        name: "write_file",
        ..READ
    };
    assert_eq!(
        denied_with(&engine.decide(&invoke(&AGENT, &ALICE, &unregistered, &["internal"]))),
        "policy_no_permit"
    );
}

#[test]
fn delegation_is_bounded_in_depth() {
    let engine = Engine::with_defaults().unwrap();
    let helper = Agent {
        id: "agent-2",
        ..AGENT
    };
    let delegate = |depth| PolicyRequest::Delegate {
        agent: &AGENT,
        delegate: &helper,
        human: &ALICE,
        tools: &["files/read_file"],
        depth,
    };
    assert_eq!(
        allowed_by(&engine.decide(&delegate(4))),
        ["delegate-within-depth"]
    );
    assert_eq!(
        denied_with(&engine.decide(&delegate(5))),
        "policy_no_permit"
    );
}

#[test]
fn version_depends_on_content_not_order() {
    let a = source(
        "a.cedar",
        "@id(\"p1\") permit (principal, action == Writ::Action::\"Invoke\", resource);",
    );
    let b = source(
        "b.cedar",
        "@id(\"p2\") forbid (principal, action == Writ::Action::\"Delegate\", resource);",
    );
    let one = Engine::load(&[a.clone(), b.clone()]).unwrap();
    let two = Engine::load(&[b.clone(), a.clone()]).unwrap();
    assert_eq!(one.version(), two.version());
    assert!(one.version().starts_with("ps_") && one.version().len() == 19);
    let changed = source(
        "b.cedar",
        "@id(\"p2\") forbid (principal, action == Writ::Action::\"GrantMandate\", resource);",
    );
    assert_ne!(
        Engine::load(&[a, changed]).unwrap().version(),
        one.version()
    );
    assert_ne!(Engine::with_defaults().unwrap().version(), one.version());
}

#[test]
fn bad_policy_sets_are_refused_with_a_reason() {
    let cases = [
        (
            vec![source("x.cedar", "permit (principal, action, resource")],
            "does not parse",
        ),
        (
            vec![source(
                "x.cedar",
                "@id(\"p\") permit (principal, action == Writ::Action::\"Invoke\", resource) when { principal.nickname == \"x\" };",
            )],
            "validate",
        ),
        (
            vec![source(
                "x.cedar",
                "@id(\"p\") permit (principal, action == Writ::Action::\"Invoke\", resource) when { context.depth == \"deep\" };",
            )],
            "validate",
        ),
        (
            vec![
                source(
                    "x.cedar",
                    "@id(\"p\") permit (principal, action, resource);",
                ),
                source(
                    "y.cedar",
                    "@id(\"p\") permit (principal, action, resource);",
                ),
            ],
            "used twice",
        ),
        (
            vec![source(
                "x.cedar",
                "permit (principal == ?principal, action, resource);",
            )],
            "templates",
        ),
    ];
    for (sources, expected) in cases {
        let error = Engine::load(&sources).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
    }
    // Without @id, policies are named after their source and position.
    let engine = Engine::load(&[source(
        "mine.cedar",
        "permit (principal, action == Writ::Action::\"Invoke\", resource);",
    )])
    .unwrap();
    assert_eq!(
        allowed_by(&engine.decide(&invoke(&AGENT, &ALICE, &READ, &[]))),
        ["mine.cedar#0"]
    );
}

#[test]
fn an_evaluation_error_denies_even_when_a_permit_matches() {
    let engine = Engine::load(&[source(
        "x.cedar",
        r#"
        @id("allow-all") permit (principal, action == Writ::Action::"Invoke", resource);
        @id("overflows") forbid (principal, action == Writ::Action::"Invoke", resource)
          when { context.depth + 9223372036854775807 > 0 };
        "#,
    )])
    .unwrap();
    let at_depth = |depth| PolicyRequest::Invoke {
        agent: &AGENT,
        human: &ALICE,
        tool: &READ,
        labels: &[],
        depth,
        entitled: true,
    };
    // depth 0: no overflow; the forbid matches.
    assert_eq!(denied_with(&engine.decide(&at_depth(0))), "policy_forbid");
    // depth 1: the forbid overflows. Cedar alone would skip it and allow; Writ denies.
    assert_eq!(denied_with(&engine.decide(&at_depth(1))), "policy_error");
    // Negative depth makes the forbid false and the permit alone decides.
    assert_eq!(
        allowed_by(&engine.decide(&at_depth(-9223372036854775807))),
        ["allow-all"]
    );
}

#[test]
fn requests_see_only_their_slice() {
    // A thousand tool-specific forbids; each applies to its own tool only.
    let mut text = String::from(
        "@id(\"base\") permit (principal, action == Writ::Action::\"Invoke\", resource);\n",
    );
    for i in 0..1000 {
        text.push_str(&format!(
            "@id(\"forbid-{i}\") forbid (principal, action == Writ::Action::\"Invoke\", resource == Writ::Tool::\"files/tool_{i}\");\n"
        ));
    }
    let engine = Engine::load(&[source("many.cedar", &text)]).unwrap();
    assert_eq!(engine.len(), 1001);
    let tool = Tool {
        server: "files",
        name: "tool_7",
        labels: &[],
    };
    let decision = engine.decide(&invoke(&AGENT, &ALICE, &tool, &[]));
    let Decision::Deny(denial) = decision else {
        panic!("expected a deny")
    };
    assert_eq!(
        denial.reason,
        DenyReason::Forbidden {
            policy_ids: vec!["forbid-7".into()]
        }
    );
    let free = Tool {
        server: "files",
        name: "other",
        labels: &[],
    };
    assert_eq!(
        allowed_by(&engine.decide(&invoke(&AGENT, &ALICE, &free, &[]))),
        ["base"]
    );
}

#[test]
fn an_empty_set_denies_everything() {
    let engine = Engine::load(&[]).unwrap();
    assert!(engine.is_empty());
    assert_eq!(
        denied_with(&engine.decide(&grant(&ROOT, &AGENT, &[]))),
        "policy_no_permit"
    );
}

#[test]
fn the_default_policies_pass_their_shipped_cases() {
    let engine = Engine::with_defaults().unwrap();
    let cases = PolicyCase::parse_all(include_str!("../policies/default.tests.json")).unwrap();
    assert!(cases.len() >= 9);
    for case in &cases {
        if let Err(failure) = case.run(&engine) {
            panic!("{}: {failure}", case.name);
        }
    }
}

#[test]
fn a_case_with_the_wrong_expectation_fails_and_says_why() {
    let engine = Engine::with_defaults().unwrap();
    let mut cases = PolicyCase::parse_all(include_str!("../policies/default.tests.json")).unwrap();
    let case = &mut cases[0];
    case.expect = Expect::Deny;
    let failure = case.run(&engine).unwrap_err();
    assert!(failure.contains("expected deny, got allow"), "{failure}");
    let case = &mut cases[8];
    case.policies = Some(vec!["some-other-policy".into()]);
    let failure = case.run(&engine).unwrap_err();
    assert!(failure.contains("invoke-needs-data-clearance"), "{failure}");
    assert!(
        PolicyCase::parse_all(r#"[{"name": "x", "action": "Fly", "expect": "allow"}]"#).is_err()
    );
    assert!(PolicyCase::parse_all(r#"[{"name": "x", "action": "Invoke", "agent": {"id": "a", "owner": "b"}, "human": {"id": "b"}, "tool": {"server": "s", "name": "t"}, "expect": "allow", "surprise": 1}]"#).is_err());
}

#[test]
fn a_member_grants_only_within_their_entitlements_even_to_their_own_agent() {
    let engine = Engine::with_defaults().unwrap();
    let both = ["files/read_file", "files/list_dir"];
    let ask = |human, labels, entitled_tools| PolicyRequest::GrantMandate {
        human,
        agent: &AGENT,
        tools: &both,
        labels,
        entitled_tools,
        ttl_seconds: 900,
        max_depth: 2,
    };
    let forbidden = |decision: Decision| match decision {
        Decision::Deny(Denial {
            reason: DenyReason::Forbidden { policy_ids },
            ..
        }) => policy_ids,
        other => panic!("expected a forbid, got {other:?}"),
    };
    // One of the two tools is not entitled: the grant is forbidden.
    assert_eq!(
        forbidden(engine.decide(&ask(&ALICE, &["internal"], &["files/read_file"]))),
        ["grant-within-entitlements"]
    );
    // A label beyond the human's clearance, though the grant itself names it.
    assert_eq!(
        forbidden(engine.decide(&ask(&ALICE, &["internal", "secret"], &both))),
        ["grant-within-entitlements"]
    );
    // No entitlements at all.
    let nobody = Human {
        clearance: &[],
        ..ALICE
    };
    assert_eq!(
        forbidden(engine.decide(&ask(&nobody, &[], &[]))),
        ["grant-within-entitlements"]
    );
    // Within both.
    assert_eq!(
        allowed_by(&engine.decide(&ask(&ALICE, &["internal"], &both))),
        ["owner-grants-to-own-agent"]
    );
    // Administrators are exempt.
    assert_eq!(
        allowed_by(&engine.decide(&ask(&ROOT, &["secret"], &[]))),
        ["admin-grants-to-any-agent"]
    );
}

#[test]
fn a_call_needs_the_humans_clearance_not_only_the_grants_labels() {
    let engine = Engine::with_defaults().unwrap();
    let personal = Tool {
        labels: &["internal", "pii"],
        ..READ
    };
    // The detail grants `pii` (the same human wrote it into the grant); alice is not cleared.
    let decision = engine.decide(&invoke(&AGENT, &ALICE, &personal, &["internal", "pii"]));
    let Decision::Deny(denial) = decision else {
        panic!("expected a deny")
    };
    assert_eq!(
        denial.reason,
        DenyReason::Forbidden {
            policy_ids: vec!["invoke-needs-data-clearance".into()]
        }
    );
    let cleared = Human {
        clearance: &["internal", "pii"],
        ..ALICE
    };
    assert_eq!(
        allowed_by(&engine.decide(&invoke(&AGENT, &cleared, &personal, &["internal", "pii"]))),
        ["invoke-registered-tool"]
    );
    // An administrator's mandate is not bound by clearance.
    assert_eq!(
        allowed_by(&engine.decide(&invoke(&AGENT, &ROOT, &personal, &["internal", "pii"]))),
        ["invoke-registered-tool"]
    );
}

#[test]
fn a_call_by_a_human_no_longer_entitled_to_the_tool_is_forbidden() {
    let engine = Engine::with_defaults().unwrap();
    let call = |human, entitled| PolicyRequest::Invoke {
        agent: &AGENT,
        human,
        tool: &READ,
        labels: &["internal"],
        depth: 1,
        entitled,
    };
    let decision = engine.decide(&call(&ALICE, false));
    let Decision::Deny(denial) = decision else {
        panic!("expected a deny")
    };
    assert_eq!(
        denial.reason,
        DenyReason::Forbidden {
            policy_ids: vec!["invoke-within-entitlements".into()]
        }
    );
    assert!(engine.decide(&call(&ALICE, true)).is_allow());
    assert!(engine.decide(&call(&ROOT, false)).is_allow());
}

#[test]
fn policies_can_read_a_humans_groups() {
    let engine = Engine::load(&[source(
        "groups.cedar",
        r#"@id("finance-only") permit (principal, action == Writ::Action::"Invoke", resource)
           when { context.human.groups.contains("finance") };"#,
    )])
    .unwrap();
    let finance = Human {
        groups: &["finance"],
        ..ALICE
    };
    assert!(
        engine
            .decide(&invoke(&AGENT, &finance, &READ, &["internal"]))
            .is_allow()
    );
    assert!(
        !engine
            .decide(&invoke(&AGENT, &ALICE, &READ, &["internal"]))
            .is_allow()
    );
}
