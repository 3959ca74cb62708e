//! A gateway's status and a gateway's revocation: committed with their leaves, held in the
//! in-memory view, and the same after a restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use writ_store::*;

fn event(n: u64) -> Event {
    Event {
        kind: "test".into(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
        keys: vec![format!("n:{n}")],
        time: 1_700_000_000 + n as i64,
    }
}

fn gateway(jkt: &str, audience: &str) -> GatewayRecord {
    GatewayRecord {
        jkt: jkt.into(),
        name: format!("gw-{jkt}"),
        audience: audience.into(),
        jwk: "{}".into(),
        status: "active".into(),
        created_at: 1,
    }
}

#[tokio::test]
async fn a_gateways_status_and_revocation_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.revocation_head().await.unwrap(), 0);
        store
            .append(
                event(0),
                Write::InsertGateway(gateway("a", "https://gw.test/mcp")),
            )
            .await
            .unwrap();
        store
            .append(
                event(1),
                Write::SetGatewayStatus {
                    jkt: "a".into(),
                    status: "disabled".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(store.gateway("a").unwrap().status, "disabled");
        let revoked = store
            .append(
                event(2),
                Write::Many(vec![
                    Write::SetGatewayStatus {
                        jkt: "a".into(),
                        status: "revoked".into(),
                    },
                    Write::Revoke(vec![RevocationRecord {
                        seq: 0,
                        kind: "gateway".into(),
                        subject: "a".into(),
                        reason: "test".into(),
                        created_at: 3,
                        log_index: 0,
                    }]),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(revoked.revocations, vec![Some(1)]);
        // A missing gateway is refused and changes nothing.
        let missing = store
            .append(
                event(3),
                Write::SetGatewayStatus {
                    jkt: "nobody".into(),
                    status: "disabled".into(),
                },
            )
            .await;
        assert!(missing.is_err());
        assert_eq!(store.tree_head().size, 3);
    }
    let store = Store::open(dir.path()).await.unwrap();
    assert_eq!(store.gateway("a").unwrap().status, "revoked");
    assert!(store.is_revoked("gateway", "a"));
    assert_eq!(store.revocation_head().await.unwrap(), 1);
    let serving = store.gateways_serving("https://gw.test/mcp/files");
    assert_eq!(serving.len(), 1);
    assert!(store.gateways_serving("https://gw.test/mcpx").is_empty());
}
