//! Watch fan-out against the real binary: watchers far behind still get every change once
//! and in order, and a change wakes only the watches it concerns.

use std::time::Duration;

use serde_json::json;

use crate::support::{eventually, Server, Sse};
use crate::watch::put;
use crate::watch_ws::{ws_connect, ws_next, ws_send};

/// Writes `n` values of `size` bytes under `prefix` from 8 clients at once, and `n` small
/// ones under `other/` in between; returns the revisions of the writes under `prefix`.
async fn write_many(s: &Server, prefix: &str, n: usize, size: usize) -> Vec<u64> {
    let value = "v".repeat(size);
    let mut writers = Vec::new();
    for w in 0..8 {
        let (c, value, prefix) = (s.client(), value.clone(), prefix.to_owned());
        writers.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in (w..n).step_by(8) {
                let r = c
                    .put(
                        &format!("{prefix}{}", i % 10),
                        value.clone(),
                        &Default::default(),
                    )
                    .await
                    .unwrap();
                revisions.push(r);
                c.put(&format!("other/{i}"), "x".to_owned(), &Default::default())
                    .await
                    .unwrap();
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        let got = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .expect("writers finish")
            .unwrap();
        all.extend(got);
    }
    all.sort_unstable();
    all
}

#[tokio::test]
async fn a_watcher_far_behind_gets_every_change_once_in_order() {
    let s = Server::start(&[]);
    // An SSE stream and a WebSocket with two watches, none of them read while 600 writes of
    // 16 KiB (far more than a socket buffers, and than a watcher may queue) go by.
    let mut sse = Sse::open(&s.url("/v1/watch?prefix=far/"), &[]).await;
    assert_eq!(sse.next().await.unwrap().name, "progress");
    let mut ws = ws_connect(&s).await;
    ws_send(
        &mut ws,
        json!({"op": "watch", "id": "far", "prefix": "far/"}),
    )
    .await;
    ws_send(
        &mut ws,
        json!({"op": "watch", "id": "other", "prefix": "other/"}),
    )
    .await;
    for _ in 0..2 {
        assert!(ws_next(&mut ws).await.get("progress").is_some());
    }
    let written = write_many(&s, "far/", 600, 16 << 10).await;
    assert_eq!(written.len(), 600);
    // They fell so far behind that their queues overflowed: what follows comes partly from
    // the history, partly from the hub.
    assert!(counter(&s, "keel_watch_overflows_total").await > 0);

    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let e = sse.next_change().await;
        let revision = e.data["revision"].as_u64().unwrap();
        assert_eq!(e.id, Some(revision));
        let events = e.data["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "one key per revision: {}", e.data);
        assert!(events[0]["key"].as_str().unwrap().starts_with("far/"));
        seen.push(revision);
    }
    assert_eq!(seen, written, "SSE: every change once, in order");

    let (mut far, mut other) = (Vec::new(), 0usize);
    while far.len() < written.len() || other < written.len() {
        let m = ws_next(&mut ws).await;
        if m.get("progress").is_some() {
            continue;
        }
        let revision = m["revision"].as_u64().expect("a change message");
        match m["id"].as_str() {
            Some("far") => far.push(revision),
            Some("other") => {
                assert!(!written.contains(&revision), "other got a far/ write");
                other += 1;
            }
            id => panic!("unexpected message for {id:?}: {m}"),
        }
    }
    assert_eq!(far, written, "WebSocket: every change once, in order");
    // Nothing more is owed: the next message on either watch is the next write.
    let r = put(&s, "far/last", "z").await;
    let e = sse.next_change().await;
    assert_eq!(e.data["revision"].as_u64(), Some(r));
    let m = loop {
        let m = ws_next(&mut ws).await;
        if m.get("progress").is_none() {
            break m;
        }
    };
    assert_eq!(
        (m["id"].as_str(), m["revision"].as_u64()),
        (Some("far"), Some(r))
    );
}

/// A counter from `/metrics` (0 while it has no value).
async fn counter(s: &Server, name: &str) -> u64 {
    let text = s.client().metrics().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// `keel_watch_wakeups_total`: how many times the fan-out woke a stream or blocking read.
async fn wakeups(s: &Server) -> u64 {
    counter(s, "keel_watch_wakeups_total").await
}

#[tokio::test]
async fn a_change_wakes_only_the_watches_it_concerns() {
    let s = Server::start(&[]);
    let mut watchers = Vec::new();
    for i in 0..50 {
        let mut w = Sse::open(&s.url(&format!("/v1/watch?key=quiet/{i}")), &[]).await;
        assert_eq!(w.next().await.unwrap().name, "progress");
        watchers.push(w);
    }
    let mut under = Sse::open(&s.url("/v1/watch?prefix=quiet/"), &[]).await;
    assert_eq!(under.next().await.unwrap().name, "progress");
    let before = wakeups(&s).await;
    for i in 0..200 {
        put(&s, &format!("busy/{i}"), "x").await;
    }
    // The last write is applied: the hub has handed it out (to nobody) or soon will.
    let r = put(&s, "quiet/7", "now").await;
    let e = watchers[7].next_change().await;
    assert_eq!(e.data["revision"].as_u64(), Some(r));
    let e = under.next_change().await;
    assert_eq!(e.data["revision"].as_u64(), Some(r));
    // Exactly two wake-ups for 201 writes: the key's watch and the prefix's.
    assert!(
        eventually(Duration::from_secs(5), async || wakeups(&s).await
            >= before + 2)
        .await,
        "the two watches were woken"
    );
    assert_eq!(wakeups(&s).await, before + 2);
}
