//! `writ sidecar --stdio` with the agent key on a PKCS#11 token (SoftHSM2), in front of a
//! whole deployment on 127.0.0.1: the key is generated on the token, registered, and every
//! writ and proof of the session is signed there.
//!
//! Needs SoftHSM2 (`.ci/run` installs it). Without it the test says so and passes, unless
//! `WRIT_REQUIRE_PKCS11=1`, which CI sets, makes its absence a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code"
)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use writ_testkit::*;

const WRIT: &str = env!("CARGO_BIN_EXE_writ");
const PIN: &str = "4826";

fn module() -> Option<PathBuf> {
    let module = PathBuf::from("/usr/lib/softhsm/libsofthsm2.so");
    if module.exists() {
        return Some(module);
    }
    assert!(
        std::env::var_os("WRIT_REQUIRE_PKCS11").is_none(),
        "WRIT_REQUIRE_PKCS11 is set but SoftHSM2 is not installed"
    );
    eprintln!("skipped: no SoftHSM2 at {}", module.display());
    None
}

struct FreshToken(String);

impl Drop for FreshToken {
    fn drop(&mut self) {
        drop(
            Command::new("softhsm2-util")
                .args(["--delete-token", "--token", &self.0])
                .output(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_whose_key_lives_on_a_token_earns_and_spends_writs() {
    let Some(module) = module() else { return };
    let label = format!(
        "writ-sidecar-{}",
        writ_jose::base64url_encode(writ_jose::random_bytes::<6>().unwrap())
    );
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--so-pin",
            "1234",
            "--pin",
            PIN,
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let _cleanup = FreshToken(label.clone());
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let sidecar = |stdin: Stdio| {
        tokio::process::Command::new(WRIT)
            .args(["sidecar", "--stdio", "--gateway"])
            .arg(format!("{}/mcp/files", world.gateway_url))
            .arg("--pkcs11-module")
            .arg(&module)
            .args([
                "--pkcs11-token",
                &label,
                "--pkcs11-key",
                "hsm-bot",
                "--pkcs11-pin-file",
            ])
            .arg(&pin_file)
            .arg("--mandate-file")
            .arg(dir.path().join("mandate.jwt"))
            .env_clear()
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    // A PIN file others can read is refused, like a key file.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = sidecar(Stdio::null()).wait_with_output().await.unwrap();
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success());
        assert!(said.contains("chmod 600"), "{said}");
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // First start, with no mandate yet: the key is generated on the token and its public
    // JWK printed for the owner; then the sidecar stops for want of a mandate.
    std::fs::write(dir.path().join("mandate.jwt"), "").unwrap();
    let first = sidecar(Stdio::null()).wait_with_output().await.unwrap();
    let said = String::from_utf8(first.stderr).unwrap();
    assert!(!first.status.success());
    assert!(
        said.contains(&format!(
            "created the agent key `hsm-bot` on token `{label}`"
        )),
        "{said}"
    );
    let jwk: Value = serde_json::from_str(
        said.split("--jwk '")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(jwk.get("d").is_none(), "only the public half is printed");

    // alice registers the agent and grants it a mandate.
    world
        .alice
        .post(
            "/v1/agents",
            Some(&json!({"name": "hsm-bot", "jwk": jwk, "tools": ["files/read_file", "files/*"]})),
        )
        .await
        .unwrap();
    let granted = world
        .alice
        .post(
            "/v1/mandates",
            Some(&json!({"agent": "hsm-bot", "task": "Read the Q3 report", "grants": [
                {"type": "mcp_tool_call", "server": "files", "tool": "read_file",
                 "arguments": {"object": {"required": {"path": {"exact": "/data/reports/q3.md"}}}},
                 "datatypes": ["internal"]},
                {"type": "mcp_request", "server": "files", "methods": ["initialize", "tools/list"]}
            ]})),
        )
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("mandate.jwt"),
        granted["mandate"].as_str().unwrap(),
    )
    .unwrap();

    // Second start: the key is found on the token, and a call goes through.
    let mut child = sidecar(Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let call = tools_call("read_file", json!({"path": "/data/reports/q3.md"}));
    stdin
        .write_all(format!("{call}\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Revenue grew 12%"),
        "{answer}"
    );
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{logs}");
    assert!(
        !logs.contains("created the agent key"),
        "found, not created: {logs}"
    );
}
