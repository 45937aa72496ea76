//! What clients hold across a leader change: watches (on a follower, and resumed on another
//! node), and leases (a full TTL again, and kept alive through the failover).

use std::time::{Duration, Instant};

use keel_client::{PutOptions, WatchItem, WatchOptions};

use super::{Cluster, FAST};
use crate::support::Sse;

/// Every revision `ids` holds, checked to rise strictly (each once, in order).
fn strictly_rising(ids: &[u64]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_follower_sees_every_revision_across_a_leader_kill() {
    let mut c = Cluster::start(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let writer_at = (0..3).find(|&i| i != leader && i != follower).unwrap();
    let mut watch = c
        .node(follower)
        .client()
        .watch(&WatchOptions {
            prefix: Some("w/".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let writer = c.node(writer_at).client();
    let mut acked = Vec::new();
    for n in 0..30 {
        if n == 10 {
            c.kill(leader);
        }
        // Through the failover the writer retries until its write is acknowledged (a write
        // whose answer was lost may land twice under two revisions: both are watched).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match writer
                .put(&format!("w/{n}"), "v", &PutOptions::default())
                .await
            {
                Ok(rev) => {
                    acked.push(rev);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("write {n}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("write {n} never succeeded: {e}: {}", c.logs()),
            }
        }
    }
    let last = *acked.last().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.last().is_none_or(|&r| r < last) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(Ok(Some(WatchItem::Change(ch)))) => seen.push(ch.revision),
            Ok(Ok(Some(WatchItem::Reconnecting { error, .. }))) => {
                panic!("the follower's watch broke: {error}")
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("watch ended: {other:?}"),
        }
    }
    assert!(strictly_rising(&seen), "{seen:?}");
    for rev in &acked {
        assert!(seen.contains(rev), "revision {rev} missing from {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_on_another_node_continues_without_gap_or_repeat() {
    let c = Cluster::start(3, FAST).await;
    let url = |i: usize| c.node(i).url("/v1/watch?prefix=r/");
    let mut first = Sse::open(&url(0), &[]).await;
    let writer = c.node(1).client();
    for n in 0..5 {
        writer
            .put(&format!("r/{n}"), "v", &PutOptions::default())
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let e = first
            .next_within(Duration::from_secs(10))
            .await
            .expect("event");
        if e.name == "change" {
            ids.push(e.id.expect("id"));
        }
    }
    drop(first);
    // Write more while no one watches, then resume on another node.
    for n in 5..10 {
        writer
            .put(&format!("r/{n}"), "v", &PutOptions::default())
            .await
            .unwrap();
    }
    let resume = ids.last().unwrap().to_string();
    let mut second = Sse::open(&url(2), &[("last-event-id", &resume)]).await;
    while ids.len() < 10 {
        let e = second
            .next_within(Duration::from_secs(10))
            .await
            .expect("event");
        if e.name == "change" {
            ids.push(e.id.expect("id"));
        }
    }
    assert!(strictly_rising(&ids), "{ids:?}");
    assert_eq!(ids.last().unwrap() - ids[0], 9, "a gap: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_outlive_a_leader_kill() {
    let mut c = Cluster::start(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let client = c.node(follower).client();
    let ttl = Duration::from_secs(3);
    // One lease is kept alive throughout; the other is left alone.
    let kept = client.lease_grant(ttl).await.unwrap().id;
    let idle = client.lease_grant(ttl).await.unwrap().id;
    for (key, lease) in [("l/kept", kept), ("l/idle", idle)] {
        let opts = PutOptions {
            lease: Some(lease),
            ..Default::default()
        };
        client.put(key, "v", &opts).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.kill(leader);
    let killed = Instant::now();
    let get = |k: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(k, &keel_client::GetOptions::default())
                .await
                .ok()
                .flatten()
                .is_some()
        }
    };
    // Keep `kept` alive every 500 ms for 6 s; watch `idle` expire no sooner than a full TTL
    // after the failover (the new leader restarts every lease's TTL).
    let mut idle_gone_at = None;
    for _ in 0..12 {
        let _ = client.lease_keepalive(kept).await;
        assert!(get("l/kept").await, "the kept-alive lease's key vanished");
        if idle_gone_at.is_none() && !get("l/idle").await {
            idle_gone_at = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let gone = idle_gone_at.expect("the idle lease never expired");
    // It was granted 1.5 s before the kill with a 3 s TTL: without the restart it would have
    // expired 1.5 s after the kill.
    assert!(
        gone >= ttl,
        "the idle lease expired {} ms after the kill",
        gone.as_millis()
    );
}

/// A lease granted through a follower, on a cluster with no other lease, expires on time:
/// the leader's expiry duty learns of the grant from applying it, not from the handler that
/// took the request (which ran on the follower).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_granted_through_a_follower_expires_on_time() {
    let c = Cluster::start(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let client = c.node(follower).client();
    let granted = Instant::now();
    let id = client.lease_grant(Duration::from_secs(1)).await.unwrap().id;
    let opts = PutOptions {
        lease: Some(id),
        ..Default::default()
    };
    client.put("short", "v", &opts).await.unwrap();
    let leader_client = c.node(leader).client();
    let expired = crate::support::eventually(Duration::from_secs(10), async || {
        leader_client.lease_get(id).await.is_err()
    })
    .await;
    let after = granted.elapsed();
    assert!(expired, "the lease never expired\n{}", c.logs());
    assert!(
        after >= Duration::from_secs(1) && after < Duration::from_secs(3),
        "expired {} ms after the grant",
        after.as_millis()
    );
    let key = client.get("short", &Default::default()).await.unwrap();
    assert!(key.is_none(), "its key went with it");
}
