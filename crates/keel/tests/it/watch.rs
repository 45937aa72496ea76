//! Watches over SSE and WebSocket, against the real binary. (Blocking reads: `blocking.rs`.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::blocking::pending_after;
use crate::support::{assert_error, call, eventually, http, Server, Sse};
use crate::watch_ws::{ws_connect, ws_next, ws_send};

pub(crate) async fn put(s: &Server, key: &str, value: &str) -> u64 {
    s.client()
        .put(key, value.to_owned(), &Default::default())
        .await
        .unwrap()
}

pub(crate) async fn delete(s: &Server, key: &str) -> u64 {
    s.client().delete(key, None).await.unwrap().revision
}

/// `(type, key, value)` of each event in a change message.
fn events(data: &Value) -> Vec<(String, String, String)> {
    data["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["key"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn ev(t: &str, k: &str, v: &str) -> (String, String, String) {
    (t.to_owned(), k.to_owned(), v.to_owned())
}

#[tokio::test]
async fn sse_prefix_and_key_watches_see_only_their_keys() {
    let s = Server::start(&[]);
    put(&s, "cfg/old", "before").await;
    let mut prefix = Sse::open(&s.url("/v1/watch?prefix=cfg/"), &[]).await;
    let mut key = Sse::open(&s.url("/v1/watch?key=cfg/b&prev_value=true"), &[]).await;
    // A watch from now first names the revision it starts after.
    let start = prefix.next().await.unwrap();
    assert_eq!((start.name.as_str(), start.id), ("progress", Some(1)));
    assert_eq!(start.data, json!({"revision": 1}));

    let r1 = put(&s, "cfg/a", "1").await;
    put(&s, "other/x", "no").await;
    let r3 = put(&s, "cfg/b", "2").await;
    let r4 = put(&s, "cfg/b", "3").await;
    let r5 = delete(&s, "cfg/a").await;

    let got: Vec<_> = [
        prefix.next_change().await,
        prefix.next_change().await,
        prefix.next_change().await,
        prefix.next_change().await,
    ]
    .into_iter()
    .map(|e| {
        assert_eq!(e.id, e.data["revision"].as_u64(), "id is the revision");
        (e.id.unwrap(), events(&e.data))
    })
    .collect();
    assert_eq!(
        got,
        vec![
            (r1, vec![ev("put", "cfg/a", "1")]),
            (r3, vec![ev("put", "cfg/b", "2")]),
            (r4, vec![ev("put", "cfg/b", "3")]),
            (r5, vec![ev("delete", "cfg/a", "")]),
        ]
    );

    let first = key.next_change().await;
    let e = &first.data["events"][0];
    assert_eq!(
        (
            &e["key"],
            &e["value"],
            &e["create_revision"],
            &e["mod_revision"],
            &e["version"]
        ),
        (
            &json!("cfg/b"),
            &json!("2"),
            &json!(r3),
            &json!(r3),
            &json!(1)
        )
    );
    assert!(e.get("prev_value").is_none(), "created: no previous value");
    let second = key.next_change().await;
    let e = &second.data["events"][0];
    assert_eq!((&e["value"], &e["version"]), (&json!("3"), &json!(2)));
    assert_eq!(e["prev_value"], "2");
}

#[tokio::test]
async fn watch_requests_are_validated() {
    let s = Server::start(&[]);
    let c = http();
    for (query, code) in [
        ("", "invalid_query"),
        ("?key=a&prefix=b", "invalid_query"),
        ("?key=", "invalid_key"),
        ("?prefix=x&from_revision=3&initial=true", "invalid_query"),
        ("?prefix=x&progress=1ms", "invalid_query"),
        ("?prefix=x&bogus=1", "invalid_query"),
    ] {
        let got = call(c.get(s.url(&format!("/v1/watch{query}")))).await;
        assert_error(&got, 400, code);
    }
}

#[tokio::test]
async fn from_revision_replays_then_follows_live() {
    let s = Server::start(&[]);
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(put(&s, &format!("k/{i}"), &i.to_string()).await);
    }
    let mut w = Sse::open(
        &s.url(&format!("/v1/watch?prefix=k/&from_revision={}", revs[1])),
        &[],
    )
    .await;
    for (i, r) in revs.iter().enumerate().skip(1) {
        let e = w.next_change().await;
        assert_eq!(e.id, Some(*r));
        assert_eq!(
            events(&e.data),
            vec![ev("put", &format!("k/{i}"), &i.to_string())]
        );
    }
    let live = put(&s, "k/live", "x").await;
    assert_eq!(w.next_change().await.id, Some(live));
}

#[tokio::test]
async fn initial_snapshot_then_changes_lose_and_double_nothing_under_writes() {
    let s = Server::start(&[]);
    for i in 0..50 {
        put(&s, &format!("cfg/{i:03}"), "0").await;
    }
    // Writers keep changing the prefix while the watch opens.
    let addr = s.addr.clone();
    let writer = tokio::spawn(async move {
        let c = keel_client::Client::new(&addr).unwrap();
        let mut last = 0;
        for n in 1..=300u32 {
            let key = format!("cfg/{:03}", n % 60);
            let deleted = if n % 7 == 0 {
                // Deleting an absent key changes nothing (key_not_found): write it instead.
                c.delete(&key, None).await.ok().map(|d| d.revision)
            } else {
                None
            };
            last = match deleted {
                Some(r) => r,
                None => c
                    .put(&key, n.to_string(), &Default::default())
                    .await
                    .unwrap(),
            };
        }
        last
    });
    // Open the watch while the writers are busy.
    let c = s.client();
    assert!(
        eventually(Duration::from_secs(10), async || {
            c.list(&Default::default()).await.unwrap().revision > 60
        })
        .await
    );
    let mut w = Sse::open(&s.url("/v1/watch?prefix=cfg/&initial=true"), &[]).await;
    let snap = w.next().await.unwrap();
    assert_eq!(snap.name, "snapshot");
    let base = snap.data["revision"].as_u64().unwrap();
    assert_eq!(snap.id, Some(base));
    let mut state: BTreeMap<String, String> = snap.data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap().to_owned(),
                kv["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let last = writer.await.unwrap();
    let mut expect = base + 1;
    while expect <= last {
        let e = w.next_change().await;
        // Every write touches the prefix and changes the revision: no gap, no repeat.
        assert_eq!(e.id, Some(expect), "revisions arrive in order, each once");
        for (t, k, v) in events(&e.data) {
            if t == "put" {
                state.insert(k, v);
            } else {
                state.remove(&k);
            }
        }
        expect += 1;
    }
    let now = s
        .client()
        .list(&keel_client::ListOptions {
            prefix: "cfg/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(now.revision, last);
    let listed: BTreeMap<String, String> = now
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.value.unwrap()))
        .collect();
    assert_eq!(state, listed, "snapshot + changes == the state");
}

#[tokio::test]
async fn last_event_id_resumes_after_a_restart_and_wins_over_the_url() {
    let s = Server::start(&[]);
    let mut w = Sse::open(&s.url("/v1/watch?prefix=cfg/"), &[]).await;
    put(&s, "cfg/a", "1").await;
    let b = put(&s, "cfg/b", "2").await;
    w.next_change().await;
    let seen = w.next_change().await;
    assert_eq!(seen.id, Some(b));
    let s = s.restart();
    // The stream ended with the old process; changes made meanwhile must not be lost.
    assert!(w.next().await.is_none());
    let c = put(&s, "cfg/c", "3").await;
    let d = put(&s, "cfg/d", "4").await;
    let last = b.to_string();
    let mut w = Sse::open(
        &s.url("/v1/watch?prefix=cfg/&from_revision=1"),
        &[("last-event-id", last.as_str())],
    )
    .await;
    let e = w.next_change().await;
    assert_eq!(
        (e.id, events(&e.data)),
        (Some(c), vec![ev("put", "cfg/c", "3")])
    );
    assert_eq!(w.next_change().await.id, Some(d));
}

#[tokio::test]
async fn compacted_history_ends_the_stream() {
    let s = Server::start(&["--history", "5"]);
    for i in 0..20 {
        put(&s, &format!("k/{i}"), "v").await;
    }
    let mut w = Sse::open(&s.url("/v1/watch?prefix=k/&from_revision=2"), &[]).await;
    let e = w.next().await.unwrap();
    assert_eq!(e.name, "compacted");
    assert_eq!(e.data, json!({"compact_revision": 15}));
    assert!(w.next().await.is_none(), "the stream ends after compacted");
}

#[tokio::test]
async fn progress_events_when_idle() {
    let s = Server::start(&[]);
    let mut w = Sse::open(&s.url("/v1/watch?prefix=cfg/&progress=200ms"), &[]).await;
    let first = w.next().await.unwrap();
    assert_eq!((first.name.as_str(), first.id), ("progress", Some(0)));
    let t = Instant::now();
    let idle = w.next().await.unwrap();
    assert_eq!((idle.name.as_str(), idle.id), ("progress", Some(0)));
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    // A write elsewhere is not a change for this watch, but progress moves past it.
    let r = put(&s, "elsewhere", "x").await;
    let mut moved = false;
    for _ in 0..10 {
        let e = w.next().await.unwrap();
        assert_eq!(e.name, "progress");
        if e.id == Some(r) {
            assert_eq!(e.data, json!({"revision": r}));
            moved = true;
            break;
        }
    }
    assert!(moved, "progress reached revision {r}");
}

#[tokio::test]
async fn a_transaction_arrives_as_one_message() {
    let s = Server::start(&[]);
    put(&s, "cfg/a", "1").await;
    let mut w = Sse::open(&s.url("/v1/watch?prefix=cfg/"), &[]).await;
    let txn = json!({"compare": [], "success": [
        {"put": {"key": "cfg/x", "value": "X"}},
        {"put": {"key": "other", "value": "skip"}},
        {"delete": {"key": "cfg/a"}},
        {"put": {"key": "cfg/y", "value": "Y"}}
    ]});
    let (status, body) = call(http().post(s.url("/v1/txn")).json(&txn)).await;
    assert_eq!(status, 200, "{body}");
    let e = w.next_change().await;
    assert_eq!(e.id, body["revision"].as_u64());
    assert_eq!(
        events(&e.data),
        vec![
            ev("put", "cfg/x", "X"),
            ev("delete", "cfg/a", ""),
            ev("put", "cfg/y", "Y")
        ]
    );
}

/// Opens a raw watch on every key and reads only until the stream has started.
async fn stuck_watcher(host: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncReadExt;
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    conn.write_all(format!("GET /v1/watch?prefix= HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.windows(15).any(|w| w == b"event: progress") {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
            .await
            .expect("the watch starts")
            .unwrap();
        assert_eq!(
            n,
            1,
            "stream closed early: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    conn
}

#[tokio::test]
async fn readers_that_never_read_stall_no_writer_and_hold_bounded_memory() {
    let s = Server::start(&["--history", "1000"]);
    let host = s.addr.trim_start_matches("http://").to_owned();
    // 16 connections that ask for every change, then never read another byte.
    let mut stuck = Vec::new();
    for _ in 0..16 {
        stuck.push(stuck_watcher(&host).await);
    }
    let rss_before = s.rss_kib();
    let started = Instant::now();
    let value = "v".repeat(2048);
    let mut writers = Vec::new();
    for w in 0..8 {
        let c = s.client();
        let value = value.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..2_500 {
                c.put(
                    &format!("big/{w}/{}", i % 100),
                    value.clone(),
                    &Default::default(),
                )
                .await
                .unwrap();
            }
        }));
    }
    for w in writers {
        tokio::time::timeout(Duration::from_secs(180), w)
            .await
            .expect("writers finish while watchers are stuck")
            .unwrap();
    }
    let elapsed = started.elapsed();
    let grown_mib = s.rss_kib().saturating_sub(rss_before) / 1024;
    // 20,000 writes carried ~40 MiB of events to each of 16 streams: buffering them per
    // stream would grow by ~640 MiB. What may grow is shared and bounded: the history
    // (1,000 change sets), the change feed (4,096), the log's entry cache.
    assert!(
        grown_mib < 200,
        "RSS grew by {grown_mib} MiB in {elapsed:?}"
    );
    // A stuck stream fell behind the history: once it reads, it is told so, and ends.
    let mut conn = stuck.pop().unwrap();
    let mut raw = Vec::new();
    let read_all = async {
        use tokio::io::AsyncReadExt;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    raw.extend_from_slice(&chunk[..n]);
                    if raw.windows(16).any(|w| w == b"event: compacted") {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("the stuck stream ends with compacted");
    assert!(raw.windows(16).any(|w| w == b"event: compacted"));
}

#[tokio::test]
async fn streams_end_cleanly_at_shutdown() {
    let mut s = Server::start(&[]);
    let mut sse = Sse::open(&s.url("/v1/watch?prefix="), &[]).await;
    sse.next().await.unwrap();
    let mut ws = ws_connect(&s).await;
    ws_send(&mut ws, json!({"op": "watch", "id": "w", "prefix": ""})).await;
    ws_next(&mut ws).await;
    let c = http();
    let blocked = tokio::spawn(call(c.get(s.url("/v1/kv/k?wait=5m"))));
    assert!(
        pending_after(&blocked, Duration::from_millis(200)).await,
        "the read blocks"
    );
    let t = Instant::now();
    let status = s.stop().expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(sse.next().await.is_none(), "SSE stream ended");
    let (code, _) = blocked.await.unwrap();
    assert_eq!(
        code, 404,
        "the blocking read answered with the current state"
    );
}

#[tokio::test]
async fn cors_for_configured_origins_only() {
    let s = Server::start(&["--cors-origins", "http://app.test:8080,http://other.test"]);
    let c = http();
    let resp = c
        .request(reqwest::Method::OPTIONS, s.url("/v1/watch?prefix=a"))
        .header("origin", "http://app.test:8080")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://app.test:8080"
    );
    put(&s, "k", "v").await;
    let resp = c
        .get(s.url("/v1/kv/k"))
        .header("origin", "http://other.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://other.test"
    );
    let resp = c
        .get(s.url("/v1/kv/k"))
        .header("origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // Without the flag, no CORS headers at all.
    let plain = Server::start(&[]);
    let resp = c
        .get(plain.url("/healthz"))
        .header("origin", "http://app.test:8080")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}
