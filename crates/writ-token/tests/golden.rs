//! Golden vectors for mandates, writs and DPoP proofs, including `fail_*` negatives.
//!
//! The vectors in `tests/vectors/tokens.json` are made from fixed seeds (see
//! `fixtures/mod.rs`) and are byte-for-byte reproducible. This test checks that
//! the file is exactly what the current code generates, and that every case in the file
//! verifies to its expected outcome. After an intended change to the wire format,
//! regenerate with:
//!
//! ```sh
//! WRIT_UPDATE_GOLDEN=1 cargo test -p writ-token --test golden
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

#[path = "../fixtures/mod.rs"]
mod fixtures;

use fixtures::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use writ_jose::{KeySet, SigningKey, base64url_encode};
use writ_token::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/tokens.json");

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vectors {
    about: String,
    issuer: String,
    now: u64,
    jwks: Value,
    cases: Vec<Case>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    kind: Kind,
    /// The verifier's own identifier (for mandates, the issuer; for writs, the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    /// For DPoP: the request and the access token it came with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    /// The verifier's clock, when not the file's `now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    now: Option<u64>,
    token: String,
    /// `ok`, or the stable reason code of the refusal.
    expect: String,
    /// For accepted DPoP proofs: the thumbprint of the proving key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jkt: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Mandate,
    Writ,
    Dpop,
}

/// Signs arbitrary JSON, bypassing the structural checks `sign` applies. Members are sorted
/// so the bytes do not depend on `serde_json`'s features in this build.
fn raw(key: &SigningKey, typ: &str, kid: &str, claims: &Value) -> String {
    let mut claims = claims.clone();
    writ_jose::sort_members(&mut claims);
    key.sign_compact(typ, Some(kid), None, &serde_json::to_vec(&claims).unwrap())
        .unwrap()
}

fn writ_json() -> Value {
    let mut claims = serde_json::to_value(writ_claims()).unwrap();
    writ_jose::sort_members(&mut claims);
    claims
}

fn case(name: &str, kind: Kind, token: String, expect: &str) -> Case {
    Case {
        name: name.to_owned(),
        kind,
        audience: match kind {
            Kind::Mandate => Some(ISSUER.to_owned()),
            Kind::Writ => Some(GATEWAY.to_owned()),
            Kind::Dpop => None,
        },
        method: None,
        uri: None,
        access_token: None,
        now: None,
        token,
        expect: expect.to_owned(),
        jkt: None,
    }
}

fn dpop_case(name: &str, proof: String, access_token: &str, expect: &str) -> Case {
    Case {
        method: Some("POST".to_owned()),
        uri: Some(GATEWAY.to_owned()),
        access_token: Some(access_token.to_owned()),
        jkt: (expect == "ok").then(|| agent_key().public_key().thumbprint().to_string()),
        ..case(name, Kind::Dpop, proof, expect)
    }
}

fn generate() -> Vectors {
    let issuer_key = issuer_key();
    let agent = agent_key();
    let attacker = key("writ golden attacker");
    let mandate = sign(&mandate_claims(), &issuer_key, ISSUER_KID).unwrap();
    let writ = sign(&writ_claims(), &issuer_key, ISSUER_KID).unwrap();
    let proof = |claims: ProofClaims, key: &SigningKey| claims.sign(key).unwrap();
    let good_proof =
        || ProofClaims::new("POST", GATEWAY, NOW, "proof-1".into()).with_access_token(&writ);

    let mut cases = vec![
        case("mandate", Kind::Mandate, mandate.clone(), "ok"),
        case("writ", Kind::Writ, writ.clone(), "ok"),
        dpop_case("dpop_proof", proof(good_proof(), &agent), &writ, "ok"),
    ];

    // A delegated mandate, two levels from the human: nested `act`, depth, parent.
    let mut delegated = mandate_claims();
    let sub_agent = sub_agent_key().public_key().thumbprint().clone();
    delegated.act = Actor::delegated(sub_agent.clone(), delegated.act);
    delegated.cnf = Confirmation { jkt: sub_agent };
    delegated.depth = 1;
    delegated.parent = Some(delegated.jti.clone());
    delegated.jti = MandateId::from_random(id_bytes("delegated mandate"));
    cases.push(case(
        "mandate_delegated",
        Kind::Mandate,
        sign(&delegated, &issuer_key, ISSUER_KID).unwrap(),
        "ok",
    ));

    let mut writ_case = |name: &str, token: String, expect: &str| {
        cases.push(case(name, Kind::Writ, token, expect));
    };
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut claims = writ_json();
        edit(&mut claims);
        raw(&issuer_key, "writ+jwt", ISSUER_KID, &claims)
    };

    writ_case(
        "fail_writ_wrong_audience",
        edited(&|c| c["aud"] = json!("https://other.writ.example/api")),
        "token_wrong_audience",
    );
    writ_case(
        "fail_writ_wrong_issuer",
        edited(&|c| c["iss"] = json!("https://rogue.writ.example")),
        "token_wrong_issuer",
    );
    writ_case(
        "fail_writ_not_yet_valid",
        edited(&|c| {
            c["iat"] = json!(NOW.as_secs() + 60);
            c["nbf"] = json!(NOW.as_secs() + 60);
            c["exp"] = json!(NOW.as_secs() + 90);
        }),
        "token_not_yet_valid",
    );
    writ_case(
        "fail_writ_lifetime_over_300s",
        edited(&|c| c["exp"] = json!(NOW.as_secs() + 301)),
        "token_invalid_claims",
    );
    writ_case(
        "fail_writ_key_binding_mismatch",
        edited(&|c| c["cnf"]["jkt"] = json!(attacker.public_key().thumbprint().as_str())),
        "token_invalid_claims",
    );
    writ_case(
        "fail_writ_two_details",
        edited(&|c| {
            let detail = c["authorization_details"][0].clone();
            c["authorization_details"] = json!([detail.clone(), detail]);
        }),
        "token_malformed",
    );
    writ_case(
        "fail_writ_unknown_claim",
        edited(&|c| c["admin"] = json!(true)),
        "token_malformed",
    );
    writ_case(
        "fail_writ_missing_claim",
        edited(&|c| {
            c.as_object_mut().unwrap().remove("cnf");
        }),
        "token_malformed",
    );
    writ_case(
        "fail_writ_wrong_claim_type",
        edited(&|c| c["log_index"] = json!("42")),
        "token_malformed",
    );

    // Duplicate member: `sub` twice, the second naming someone else. Signed correctly.
    let text = serde_json::to_string(&writ_json()).unwrap().replacen(
        "\"sub\":\"alice\"",
        "\"sub\":\"alice\",\"sub\":\"mallory\"",
        1,
    );
    let duplicate = issuer_key
        .sign_compact("writ+jwt", Some(ISSUER_KID), None, text.as_bytes())
        .unwrap();
    writ_case("fail_writ_duplicate_claim", duplicate, "token_malformed");

    let (header, rest) = writ.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let header_json = |mut value: Value| {
        writ_jose::sort_members(&mut value);
        base64url_encode(serde_json::to_vec(&value).unwrap())
    };
    writ_case(
        "fail_writ_alg_none",
        format!(
            "{}.{payload}.",
            header_json(json!({"alg": "none", "typ": "writ+jwt", "kid": ISSUER_KID}))
        ),
        "token_bad_algorithm",
    );
    writ_case(
        "fail_writ_alg_mismatch",
        format!(
            "{}.{payload}.{signature}",
            header_json(json!({"alg": "ES256", "typ": "writ+jwt", "kid": ISSUER_KID}))
        ),
        "token_bad_algorithm",
    );
    writ_case(
        "fail_writ_unknown_kid",
        raw(&issuer_key, "writ+jwt", "issuer-unknown", &writ_json()),
        "token_unknown_key",
    );
    writ_case(
        "fail_writ_signed_by_other_key",
        raw(&attacker, "writ+jwt", ISSUER_KID, &writ_json()),
        "token_bad_signature",
    );
    let jwk = serde_json::to_value(attacker.public_key().to_jwk()).unwrap();
    let embedded = format!(
        "{}.{payload}",
        header_json(json!({"alg": "EdDSA", "typ": "writ+jwt", "kid": ISSUER_KID, "jwk": jwk}))
    );
    let embedded_signature = base64url_encode(attacker.sign(embedded.as_bytes()).unwrap());
    writ_case(
        "fail_writ_embedded_jwk",
        format!("{embedded}.{embedded_signature}"),
        "token_bad_signature",
    );
    let mut tampered = writ_json();
    tampered["authorization_details"][0]["tool"] = json!("delete_file");
    writ_jose::sort_members(&mut tampered);
    let tampered_payload = base64url_encode(serde_json::to_vec(&tampered).unwrap());
    writ_case(
        "fail_writ_tampered_payload",
        format!("{header}.{tampered_payload}.{signature}"),
        "token_bad_signature",
    );
    writ_case(
        "fail_writ_mandate_as_writ",
        mandate.clone(),
        "token_wrong_type",
    );
    writ_case(
        "fail_writ_oversized",
        format!("{writ}{}", "A".repeat(MAX_TOKEN_LEN)),
        "token_too_large",
    );
    writ_case(
        "fail_writ_garbage",
        "not.a.token".to_owned(),
        "token_malformed",
    );

    let mut expired = case(
        "fail_writ_expired",
        Kind::Writ,
        writ.clone(),
        "token_expired",
    );
    expired.now = Some(NOW.as_secs() + DEFAULT_WRIT_LIFETIME + 5);
    cases.push(expired);
    cases.push(case(
        "fail_mandate_writ_as_mandate",
        Kind::Mandate,
        writ.clone(),
        "token_wrong_type",
    ));
    let mut bad_depth = serde_json::to_value(mandate_claims()).unwrap();
    bad_depth["depth"] = json!(1);
    cases.push(case(
        "fail_mandate_depth_without_delegation",
        Kind::Mandate,
        raw(&issuer_key, "mandate+jwt", ISSUER_KID, &bad_depth),
        "token_invalid_claims",
    ));

    let other = |claims: ProofClaims| proof(claims, &agent);
    cases.push(dpop_case(
        "fail_dpop_other_uri",
        other(
            ProofClaims::new("POST", "https://gateway.writ.example/api", NOW, "p".into())
                .with_access_token(&writ),
        ),
        &writ,
        "dpop_uri_mismatch",
    ));
    cases.push(dpop_case(
        "fail_dpop_other_method",
        other(ProofClaims::new("GET", GATEWAY, NOW, "p".into()).with_access_token(&writ)),
        &writ,
        "dpop_method_mismatch",
    ));
    cases.push(dpop_case(
        "fail_dpop_other_token",
        other(ProofClaims::new("POST", GATEWAY, NOW, "p".into()).with_access_token(&mandate)),
        &writ,
        "dpop_ath_mismatch",
    ));
    cases.push(dpop_case(
        "fail_dpop_no_ath",
        other(ProofClaims::new("POST", GATEWAY, NOW, "p".into())),
        &writ,
        "dpop_missing_ath",
    ));
    cases.push(dpop_case(
        "fail_dpop_stale",
        other(
            ProofClaims::new("POST", GATEWAY, NOW.minus(120), "p".into()).with_access_token(&writ),
        ),
        &writ,
        "dpop_stale",
    ));
    let mut private_jwk = serde_json::to_value(agent.public_key().to_jwk()).unwrap();
    private_jwk["d"] = json!(base64url_encode([7; 32]));
    let proof_payload = serde_json::to_vec(&good_proof()).unwrap();
    let header = header_json(json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": private_jwk}));
    let input = format!("{header}.{}", base64url_encode(&proof_payload));
    let private_proof = format!(
        "{input}.{}",
        base64url_encode(agent.sign(input.as_bytes()).unwrap())
    );
    cases.push(dpop_case(
        "fail_dpop_private_key_in_jwk",
        private_proof,
        &writ,
        "dpop_bad_key",
    ));

    Vectors {
        about: "Writ token golden vectors. Ed25519 keys derived from fixed seeds; regenerate with \
                `WRIT_UPDATE_GOLDEN=1 cargo test -p writ-token --test golden`."
            .to_owned(),
        issuer: ISSUER.to_owned(),
        now: NOW.as_secs(),
        jwks: {
            let mut jwks: Value = serde_json::from_str(&key_set().to_jwks_json()).unwrap();
            writ_jose::sort_members(&mut jwks);
            jwks
        },
        cases,
    }
}

/// Verifies one case as a verifier that has only the file would, returning `ok` or a code.
fn outcome(vectors: &Vectors, case: &Case) -> String {
    let keys = KeySet::from_jwks_json(vectors.jwks.to_string().as_bytes()).unwrap();
    let issuer = Audience::new(vectors.issuer.clone()).unwrap();
    let now = UnixTime::from_secs(case.now.unwrap_or(vectors.now));
    let code = |result: Result<(), &'static str>| result.err().unwrap_or("ok").to_owned();
    match case.kind {
        Kind::Mandate | Kind::Writ => {
            let audience = Audience::new(case.audience.clone().unwrap()).unwrap();
            let expect = Expectations {
                issuer: &issuer,
                audience: &audience,
                now,
                skew: 5,
            };
            let result = match case.kind {
                Kind::Mandate => UnverifiedMandate::parse(&case.token)
                    .and_then(|t| t.verify(&keys, &expect))
                    .map(drop),
                _ => UnverifiedWrit::parse(&case.token)
                    .and_then(|t| t.verify(&keys, &expect))
                    .map(drop),
            };
            code(result.map_err(|error| error.code()))
        }
        Kind::Dpop => {
            let check = ProofCheck {
                method: case.method.as_deref().unwrap(),
                uri: case.uri.as_deref().unwrap(),
                now,
                max_age: 60,
                max_skew: 5,
                access_token: case.access_token.as_deref(),
                nonce: None,
            };
            let result = verify_proof(&case.token, &check, &MemoryReplayCache::new(8));
            if let (Ok(proof), Some(jkt)) = (&result, &case.jkt) {
                assert_eq!(proof.jkt().as_str(), jkt, "{}", case.name);
            }
            code(result.map(drop).map_err(|error| error.code()))
        }
    }
}

#[test]
fn golden_file_matches_generator() {
    let generated = generate();
    let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
    if std::env::var_os("WRIT_UPDATE_GOLDEN").is_some() {
        std::fs::write(PATH, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(PATH).expect("run with WRIT_UPDATE_GOLDEN=1 to create");
    assert!(
        on_disk == text,
        "tests/vectors/tokens.json differs from what the code generates; if the change is \
         intended, regenerate with WRIT_UPDATE_GOLDEN=1"
    );
}

#[test]
fn every_vector_has_its_expected_outcome() {
    let vectors: Vectors = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert!(vectors.cases.len() >= 30);
    assert!(
        vectors
            .cases
            .iter()
            .filter(|c| c.name.starts_with("fail_"))
            .count()
            >= 25
    );
    for case in &vectors.cases {
        assert_eq!(outcome(&vectors, case), case.expect, "case {}", case.name);
        assert_eq!(
            case.name.starts_with("fail_"),
            case.expect != "ok",
            "case {}",
            case.name
        );
    }
}
