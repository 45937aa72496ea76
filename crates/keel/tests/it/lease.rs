//! Leases over HTTP: grant, keepalive, revoke, expiry, restart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{assert_error, call, eventually, http, Server};

#[tokio::test]
async fn grant_attach_inspect_revoke() {
    let s = Server::start(&[]);
    let h = http();
    let (st, lease) = call(h.post(s.url("/v1/leases")).json(&json!({"ttl": "1m30s"}))).await;
    assert_eq!(st, 201);
    assert_eq!(lease["ttl_ms"], 90_000);
    let id = lease["id"].as_u64().unwrap();
    let (st, other) = call(h.post(s.url("/v1/leases")).json(&json!({"ttl_ms": 20_000}))).await;
    assert_eq!((st, &other["ttl_ms"]), (201, &json!(20_000)));

    for k in ["svc/a", "svc/b"] {
        let (st, _) = call(h.put(s.url(&format!("/v1/kv/{k}?lease={id}"))).body("up")).await;
        assert_eq!(st, 200);
    }
    let resp = h.get(s.url("/v1/kv/svc/a")).send().await.unwrap();
    assert_eq!(resp.headers()["keel-lease"], id.to_string().as_str());
    let (_, info) = call(h.get(s.url(&format!("/v1/leases/{id}")))).await;
    assert_eq!(info["keys"], json!(["svc/a", "svc/b"]));
    assert_eq!(info["ttl_ms"], 90_000);
    let remaining = info["remaining_ms"].as_u64().unwrap();
    assert!(remaining > 80_000 && remaining <= 90_000, "{remaining}");

    // Re-putting a key without a lease detaches it.
    call(h.put(s.url("/v1/kv/svc/b")).body("pinned")).await;
    let (_, info) = call(h.get(s.url(&format!("/v1/leases/{id}")))).await;
    assert_eq!(info["keys"], json!(["svc/a"]));

    let (st, ka) = call(h.post(s.url(&format!("/v1/leases/{id}/keepalive")))).await;
    assert_eq!((st, ka), (200, json!({"id": id, "ttl_ms": 90_000})));
    let (_, list) = call(h.get(s.url("/v1/leases"))).await;
    assert_eq!(list["leases"].as_array().unwrap().len(), 2);
    assert_eq!(list["leases"][0]["key_count"], 1);

    let (st, body) = call(h.delete(s.url(&format!("/v1/leases/{id}")))).await;
    assert_eq!(st, 200);
    assert_eq!(body["deleted"], 1);
    assert_error(
        &call(h.get(s.url("/v1/kv/svc/a"))).await,
        404,
        "key_not_found",
    );
    let (st, _) = call(h.get(s.url("/v1/kv/svc/b"))).await;
    assert_eq!(st, 200);

    for path in [
        format!("/v1/leases/{id}"),
        format!("/v1/leases/{id}/keepalive"),
    ] {
        let req = if path.ends_with("keepalive") {
            h.post(s.url(&path))
        } else {
            h.get(s.url(&path))
        };
        assert_error(&call(req).await, 404, "lease_not_found");
    }
    assert_error(
        &call(h.delete(s.url(&format!("/v1/leases/{id}")))).await,
        404,
        "lease_not_found",
    );
    assert_error(
        &call(h.put(s.url(&format!("/v1/kv/x?lease={id}"))).body("v")).await,
        404,
        "lease_not_found",
    );
    assert_error(
        &call(h.get(s.url("/v1/leases/abc"))).await,
        400,
        "invalid_argument",
    );
    for bad in [
        json!({"ttl": "soon"}),
        json!({"ttl": "10"}),
        json!({}),
        json!({"ttl": "1s", "ttl_ms": 5}),
        json!({"ttl": "10ms"}),
    ] {
        assert_error(
            &call(h.post(s.url("/v1/leases")).json(&bad)).await,
            400,
            "invalid_ttl",
        );
    }
    assert_error(
        &call(h.post(s.url("/v1/leases")).body("nope")).await,
        400,
        "invalid_json",
    );
}

#[tokio::test]
/// Exact deadlines are asserted under paused time in keel-server's duty tests; here, against
/// the real binary and its wall clock, only what no machine's load can change: never before
/// the TTL, and soon after.
async fn expiry_deletes_a_leases_keys_not_before_its_ttl() {
    let s = Server::start(&[]);
    let h = http();
    // Before the request: the lease's deadline is stamped after this instant.
    let granted = Instant::now();
    let (_, lease) = call(h.post(s.url("/v1/leases")).json(&json!({"ttl": "1s"}))).await;
    let id = lease["id"].as_u64().unwrap();
    let (_, kept) = call(h.post(s.url("/v1/leases")).json(&json!({"ttl": "2s"}))).await;
    let kept = kept["id"].as_u64().unwrap();
    call(h.put(s.url(&format!("/v1/kv/eph/a?lease={id}"))).body("1")).await;
    call(h.put(s.url(&format!("/v1/kv/eph/b?lease={id}"))).body("2")).await;
    call(h.put(s.url(&format!("/v1/kv/kept?lease={kept}"))).body("3")).await;
    let gone = eventually(Duration::from_secs(15), async || {
        call(h.get(s.url("/v1/kv?prefix=eph/"))).await.1["items"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    })
    .await;
    let took = granted.elapsed();
    assert!(gone, "keys did not expire");
    assert!(
        took >= Duration::from_millis(1000),
        "expired before its TTL: {took:?}"
    );
    assert_error(
        &call(h.get(s.url(&format!("/v1/leases/{id}")))).await,
        404,
        "lease_not_found",
    );
    // Both keys went at one revision.
    let (_, body) = call(h.get(s.url("/v1/kv/kept?format=json"))).await;
    assert_eq!(body["value"], "3");

    // A lease kept alive outlives its TTL.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        let (st, _) = call(h.post(s.url(&format!("/v1/leases/{kept}/keepalive")))).await;
        assert_eq!(st, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (st, _) = call(h.get(s.url("/v1/kv/kept"))).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn restart_gives_every_lease_its_full_ttl_again() {
    let s = Server::start(&[]);
    let c = s.client();
    let lease = c.lease_grant(Duration::from_secs(3)).await.unwrap();
    c.put(
        "session",
        "x",
        &keel_client::PutOptions {
            lease: Some(lease.id),
            if_revision: None,
        },
    )
    .await
    .unwrap();
    let before = Instant::now();
    // Down for longer than the TTL.
    let s = s.restart_after(Duration::from_millis(3200));
    let c = s.client();
    // Not mass-expired by the downtime: the new term refreshed it (its exact new deadline is
    // asserted under paused time in keel-server's duty tests).
    let info = c.lease_get(lease.id).await.unwrap();
    assert!(
        info.remaining_ms > 0 && info.remaining_ms <= 3000,
        "lease got its TTL again: {info:?}"
    );
    assert!(c
        .get("session", &Default::default())
        .await
        .unwrap()
        .is_some());
    assert!(before.elapsed() > Duration::from_secs(3));
    // ...and then it does expire.
    let gone = eventually(Duration::from_secs(6), async || {
        c.get("session", &Default::default())
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert!(gone);
}
