//! The inventory verbs, key rotation and remote audit verification against a real issuer
//! listening on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};

mod common;

use common::writ;

fn ok(args: &[&str]) -> String {
    let (result, out) = writ(args);
    if let Err(error) = result {
        panic!("writ {args:?}: {error:#}\n{out}");
    }
    out
}

fn key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.key"));
    ok(&["keys", "generate", "--out", path.to_str().unwrap()]);
    path
}

/// Starts an issuer on an ephemeral port; returns its URL, the admin key and the log key.
fn start(dir: &Path, settings: writ_issuer::Settings) -> (String, PathBuf, String) {
    let (ready, wait) = std::sync::mpsc::channel();
    let data = dir.join("data");
    let admin = dir.join("admin.key");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let done = writ_issuer::init(&data, &url, "root", &admin)
                .await
                .unwrap();
            let issuer = writ_issuer::Issuer::open(&data, settings).await.unwrap();
            ready.send((url, admin, done.log_verifier_key)).unwrap();
            writ_issuer::serve(listener, issuer).await.unwrap();
        });
    });
    wait.recv_timeout(std::time::Duration::from_secs(30))
        .unwrap()
}

#[test]
fn inventory_verbs_rotation_and_remote_audit_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (url, admin, log_key) = start(dir.path(), writ_issuer::Settings::default());
    let alice = key(dir.path(), "alice");
    let agent = key(dir.path(), "agent");
    let gateway = key(dir.path(), "gateway");
    let as_admin = ["--issuer", url.as_str(), "--key", admin.to_str().unwrap()];
    let as_alice = ["--issuer", url.as_str(), "--key", alice.to_str().unwrap()];
    let with = |verb: &[&str], caller: &[&str]| -> Vec<String> {
        verb.iter().chain(caller).map(|s| (*s).to_owned()).collect()
    };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let fail = |args: Vec<String>| {
        let (result, _) = writ(&args.iter().map(String::as_str).collect::<Vec<_>>());
        format!("{:#}", result.unwrap_err())
    };

    let out = run(with(
        &[
            "human",
            "add",
            "alice",
            "--key-file",
            alice.to_str().unwrap(),
        ],
        &as_admin,
    ));
    assert!(out.contains("\"id\": \"alice\""), "{out}");
    run(with(
        &[
            "tool",
            "add",
            "files",
            "--kind",
            "mcp",
            "--tool",
            "read_file=internal",
            "--tool",
            "drop_table",
        ],
        &as_admin,
    ));
    run(with(
        &[
            "gateway",
            "add",
            "gw",
            "--audience",
            "https://gw.example/mcp/files",
            "--key-file",
            gateway.to_str().unwrap(),
        ],
        &as_admin,
    ));
    run(with(
        &[
            "entitlement",
            "grant",
            "--subject",
            "alice",
            "--tools",
            "files/read_file",
            "--labels",
            "internal",
        ],
        &as_admin,
    ));
    let out = run(with(
        &[
            "agent",
            "add",
            "report-bot",
            "--tools",
            "files/read_file",
            "--key-file",
            agent.to_str().unwrap(),
        ],
        &as_alice,
    ));
    assert!(out.contains("\"owner\": \"alice\""), "{out}");

    let out = run(with(&["agent", "list"], &as_alice));
    assert!(out.contains("report-bot"), "{out}");
    let out = run(with(&["tool", "list"], &as_alice));
    assert!(out.contains("\"internal\""), "{out}");
    let out = run(with(&["gateway", "list"], &as_admin));
    assert!(out.contains("https://gw.example/mcp/files"), "{out}");
    let error = fail(with(&["human", "list"], &as_alice));
    assert!(error.contains("admin_required"), "{error}");
    let error = fail(with(
        &[
            "agent",
            "add",
            "dup",
            "--tools",
            "files/read_file",
            "--key-file",
            gateway.to_str().unwrap(),
        ],
        &as_alice,
    ));
    assert!(error.contains("key_in_use"), "{error}");

    let out = run(with(&["keys", "rotate"], &as_admin));
    assert!(out.contains("\"previous\""), "{out}");

    // The whole log, fetched and rehashed here, rebuilds the signed checkpoint.
    let out = run(with(&["audit", "verify", "--log-key", &log_key], &as_admin));
    assert!(out.contains("audit log verified"), "{out}");
    let since = out
        .lines()
        .find_map(|line| line.strip_prefix("checkpoint: "))
        .unwrap()
        .to_owned();
    run(with(&["human", "add", "bob"], &as_admin));
    let out = run(with(
        &["audit", "verify", "--log-key", &log_key, "--since", &since],
        &as_admin,
    ));
    assert!(out.contains("consistent with the checkpoint"), "{out}");

    // A checkpoint that is not signed by the log key the operator holds is refused, and so
    // is a claimed earlier checkpoint the log does not extend.
    let other = writ_log::NoteSigner::new(
        "elsewhere/audit",
        writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap(),
    )
    .unwrap()
    .verifier()
    .to_vkey();
    let error = fail(with(&["audit", "verify", "--log-key", &other], &as_admin));
    assert!(error.contains("not signed by the log key"), "{error}");
    let (size, _) = since.split_once(':').unwrap();
    let forged = format!("{size}:{}", base64_of_zeros());
    let error = fail(with(
        &["audit", "verify", "--log-key", &log_key, "--since", &forged],
        &as_admin,
    ));
    assert!(error.contains("history was rewritten"), "{error}");

    // An agent is revoked by its name as by its thumbprint; a name that names no agent is
    // refused, where it used to be recorded and revoke nothing.
    let error = fail(with(&["revoke", "agent", "third-bot"], &as_alice));
    assert!(error.contains("unknown_subject"), "{error}");
    let out = run(with(&["revoke", "agent", "report-bot"], &as_alice));
    let thumbprint = writ_keystore::load(&agent)
        .unwrap()
        .public_key()
        .thumbprint()
        .to_string();
    assert!(out.contains(&thumbprint), "{out}");
}

fn base64_of_zeros() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([0u8; 32])
}

#[test]
fn the_client_answers_a_nonce_challenge_by_retrying_with_the_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let settings = writ_issuer::Settings {
        require_dpop_nonce: true,
        ..writ_issuer::Settings::default()
    };
    let (url, admin, _) = start(dir.path(), settings);
    // The first proof carries no nonce and is refused with `use_dpop_nonce`; the client
    // retries once with the nonce the refusal carried.
    let out = ok(&[
        "human",
        "list",
        "--issuer",
        &url,
        "--key",
        admin.to_str().unwrap(),
    ]);
    assert!(out.contains("\"root\""), "{out}");
}

/// A data directory with a signed checkpoint; the log verifier key `init` printed. With
/// `forge`, the log key in the data directory is replaced before the checkpoint is signed,
/// as someone who can write the directory could do.
fn data_dir(dir: &Path, forge: bool) -> (String, String) {
    let data = dir.join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log_key = runtime.block_on(async {
        let done = writ_issuer::init(&data, "https://issuer.test", "root", &dir.join("admin.key"))
            .await
            .unwrap();
        if forge {
            let path = data.join("keys").join("log.key");
            std::fs::remove_file(&path).unwrap();
            let forged = writ_jose::SigningKey::generate(writ_jose::Algorithm::EdDSA).unwrap();
            writ_keystore::create(&path, &forged).unwrap();
        }
        let issuer = writ_issuer::Issuer::open(&data, writ_issuer::Settings::default())
            .await
            .unwrap();
        issuer.checkpoint_now().await.unwrap();
        done.log_verifier_key
    });
    (data.to_str().unwrap().to_owned(), log_key)
}

/// Offline verification trusts only the log key it is given: without `--log-key` the
/// command refuses, and checkpoints signed by a key put in the data directory do not
/// verify.
#[test]
fn offline_audit_verification_trusts_only_the_given_log_key() {
    let honest = tempfile::tempdir().unwrap();
    let (data, log_key) = data_dir(honest.path(), false);
    let out = ok(&["audit", "verify", "--data", &data, "--log-key", &log_key]);
    assert!(out.contains("audit log verified"), "{out}");
    let since = out
        .lines()
        .find_map(|line| line.strip_prefix("checkpoint: "))
        .unwrap()
        .to_owned();
    let out = ok(&[
        "audit",
        "verify",
        "--data",
        &data,
        "--log-key",
        &log_key,
        "--since",
        &since,
    ]);
    assert!(out.contains("consistent with the checkpoint"), "{out}");

    let forged = tempfile::tempdir().unwrap();
    let (data, log_key) = data_dir(forged.path(), true);
    let (result, out) = writ(&["audit", "verify", "--data", &data]);
    assert!(
        result.is_err(),
        "verified with the data directory's own key: {out}"
    );
    let (result, out) = writ(&["audit", "verify", "--data", &data, "--log-key", &log_key]);
    let error = format!(
        "{:#}",
        result.err().unwrap_or_else(|| panic!("verified: {out}"))
    );
    assert!(error.contains("not signed by the given log key"), "{error}");
}

/// `writ keys proof` makes the DPoP proof a request made by hand needs: for the URL and
/// method given, with the key's public JWK, and bound to the writ it carries.
#[test]
fn a_proof_for_a_request_made_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let agent = key(dir.path(), "agent");
    let url = "http://127.0.0.1:7500/mcp/files";
    let out = ok(&[
        "keys",
        "proof",
        agent.to_str().unwrap(),
        "--url",
        url,
        "--access-token",
        "a.writ.token",
    ]);
    let proof = out.trim();
    let part = |n: usize| -> serde_json::Value {
        serde_json::from_slice(
            &writ_jose::base64url_decode(proof.split('.').nth(n).unwrap()).unwrap(),
        )
        .unwrap()
    };
    let (header, claims) = (part(0), part(1));
    let key = writ_keystore::load(&agent).unwrap();
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(
        header["jwk"],
        serde_json::to_value(key.public_key().to_jwk()).unwrap()
    );
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], url);
    assert_eq!(
        claims["ath"],
        writ_token::access_token_hash("a.writ.token").as_str()
    );
    let again = ok(&["keys", "proof", agent.to_str().unwrap(), "--url", url]);
    assert_ne!(again.trim(), proof, "a fresh proof each time");
}
