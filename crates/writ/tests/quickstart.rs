//! `writ quickstart` tells the whole story and every decision comes out as it should.

#![allow(clippy::unwrap_used, reason = "test code")]

use writ::Outcome;

#[test]
fn quickstart_allows_the_granted_call_and_denies_the_rest_with_reasons() {
    let mut output = Vec::new();
    let summary = writ::quickstart(&mut output).unwrap();
    let output = String::from_utf8(output).unwrap();
    assert_eq!(
        summary.decisions,
        vec![
            ("issue writ for /data/sales/q3.csv", Outcome::Allowed),
            ("call read_file with the writ", Outcome::Allowed),
            ("replay the same request", Outcome::Denied("dpop_replayed")),
            (
                "stolen writ, attacker's key",
                Outcome::Denied("dpop_key_mismatch")
            ),
            (
                "issue writ for /etc/passwd",
                Outcome::Denied("argument_outside_constraint")
            ),
            ("expired writ", Outcome::Denied("token_expired")),
        ]
    );
    for expected in [
        "DENY   dpop_replayed",
        "DENY   argument_outside_constraint: argument value at `/path` must be a string matching `/data/sales/*`",
        "Done: 2 allowed, 4 denied",
    ] {
        assert!(
            output.contains(expected),
            "missing `{expected}` in:\n{output}"
        );
    }
    assert!(
        !output.contains("PRIVATE KEY"),
        "no key material in the narration"
    );
}
