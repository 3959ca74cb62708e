//! `writ policy validate` and `writ policy test` on a policy directory.

#![allow(clippy::unwrap_used, reason = "test code")]

mod common;

use common::writ;

fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.cedar"),
        writ_policy::DEFAULT_POLICIES,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("default.tests.json"),
        include_str!("../../writ-policy/policies/default.tests.json"),
    )
    .unwrap();
    dir
}

#[test]
fn a_valid_directory_validates_and_its_cases_pass() {
    let dir = policy_dir();
    let path = dir.path().to_str().unwrap();
    let (result, out) = writ(&["policy", "validate", path]);
    result.unwrap();
    assert!(out.contains("7 policies valid"), "{out}");
    assert!(out.contains("invoke-needs-data-clearance"), "{out}");
    let (result, out) = writ(&["policy", "test", path]);
    result.unwrap();
    assert!(out.contains("15 passed, 0 failed"), "{out}");
}

#[test]
fn a_failing_case_fails_the_command_and_names_the_case() {
    let dir = policy_dir();
    let cases = dir.path().join("strict.tests.json");
    std::fs::write(
        &cases,
        r#"[{"name": "members may grant to any agent", "action": "GrantMandate",
             "human": {"id": "bob"}, "agent": {"id": "a", "owner": "alice", "tools": []},
             "expect": "allow"}]"#,
    )
    .unwrap();
    let (result, out) = writ(&[
        "policy",
        "test",
        dir.path().to_str().unwrap(),
        "--cases",
        cases.to_str().unwrap(),
    ]);
    assert!(
        result
            .unwrap_err()
            .to_string()
            .contains("1 policy test case(s) failed")
    );
    assert!(
        out.contains("FAIL  members may grant to any agent: expected allow, got deny"),
        "{out}"
    );
}

#[test]
fn an_invalid_policy_is_refused_with_the_reason() {
    let dir = policy_dir();
    std::fs::write(
        dir.path().join("bad.cedar"),
        r#"@id("typo") permit (principal, action == Writ::Action::"Invoke", resource) when { principal.nonexistent };"#,
    )
    .unwrap();
    let (result, _) = writ(&["policy", "validate", dir.path().to_str().unwrap()]);
    let error = format!("{:#}", result.unwrap_err());
    assert!(error.contains("is refused"), "{error}");
    assert!(error.contains("do not validate"), "{error}");
}
