//! `writ quickstart` tells the whole story on real services and every decision comes out
//! as it should.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::time::Duration;

use writ::Outcome;

fn denied(reason: &str) -> Outcome {
    Outcome::Denied(reason.to_owned())
}

#[test]
fn quickstart_allows_the_granted_calls_denies_the_rest_and_traces_the_first() {
    let mut output = Vec::new();
    let summary = writ::quickstart(&mut output).unwrap();
    let output = String::from_utf8(output).unwrap();
    assert_eq!(
        summary.decisions,
        vec![
            ("initialize", Outcome::Allowed),
            ("tools/list", Outcome::Allowed),
            ("read_file /data/reports/q3.md", Outcome::Allowed),
            ("read_file /data/hr/salaries.csv", denied("outside_mandate")),
            ("drop_table customers", denied("outside_mandate")),
            ("the agent's own request", Outcome::Allowed),
            ("replay the captured request", denied("dpop_replayed")),
            (
                "present the writ with the attacker's key",
                denied("dpop_key_mismatch")
            ),
            ("read_file after the revocation", denied("mandate_revoked")),
        ],
        "{output}"
    );
    assert!(summary.revoked_within < Duration::from_secs(1));
    // The first call, back through its writ and mandate to the human and the agent.
    assert_eq!(
        summary.traced,
        [
            "human_registered",
            "agent_registered",
            "mandate_granted",
            "writ_issued",
            "gateway_decision",
            "gateway_response"
        ],
        "{output}"
    );
    for expected in [
        "tools/list   → read_file (",
        "ALLOW  # Q3 report / Revenue grew 12%",
        "DENY   denied: tool `drop_table` is outside mandate mnd_",
        "granted by alice for task “Summarize the Q3 reports for the board” [outside_mandate]",
        "[mandate_revoked]",
        "policy set ps_",
        "allow tools/call read_file on route files at gateway gw",
        "audit log verified: ",
        "$ writ entitlement grant --subject alice --tools 'files/read_file,files/*' --labels internal",
        "files/drop_table …  → refused [tool_not_entitled]",
        "Done: 4 allowed, 5 denied",
    ] {
        assert!(
            output.contains(expected),
            "missing `{expected}` in:\n{output}"
        );
    }
    // No key, token or upstream credential in the narration: every JWS starts with `eyJ`.
    for secret in ["PRIVATE KEY", "eyJ", "upstream-secret-"] {
        assert!(!output.contains(secret), "`{secret}` in:\n{output}");
    }
}
