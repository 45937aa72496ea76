//! Queues on one node: limits, a crash, retention, watches.

use std::time::{Duration, Instant};

use keel_client::wire::{TaskState, TxnRequest};
use keel_client::EnqueueOptions;
use serde_json::json;

use super::{lease, push, state_of};
use crate::support::{assert_error, call, eventually, http, Server};

/// Limits: payload size, tasks per queue.
#[tokio::test]
async fn limits_are_enforced_with_clear_errors() {
    let s = Server::start(&["--max-queue-tasks", "3", "--max-value-size", "1024"]);
    let h = http();
    for _ in 0..3 {
        let (st, _) = call(h.post(s.url("/v1/queues/q/tasks")).body("x")).await;
        assert_eq!(st, 201);
    }
    let full = call(h.post(s.url("/v1/queues/q/tasks")).body("x")).await;
    assert_error(&full, 429, "queue_full");
    assert_eq!(full.1["error"]["limit"], 3);
    let big = call(
        h.post(s.url("/v1/queues/other/tasks"))
            .body(vec![b'x'; 2048]),
    )
    .await;
    assert_error(&big, 413, "value_too_large");
    let bad_lease = call(h.post(s.url("/v1/queues/q/claim?lease=1ms"))).await;
    assert_error(&bad_lease, 400, "invalid_argument");
    let bad_max = call(h.post(s.url("/v1/queues/q/claim?max=0"))).await;
    assert_error(&bad_max, 400, "invalid_query");
    let unknown = call(h.post(s.url("/v1/queues/q/claim?colour=red"))).await;
    assert_error(&unknown, 400, "invalid_query");
}

/// Tasks survive `kill -9`: none lost, none completed twice, and a running task's lease
/// restarts in full when the node comes back — here after a downtime longer than the lease,
/// so without the restart the task would be put back at once.
#[tokio::test]
async fn tasks_survive_kill_9_and_a_running_lease_restarts_in_full() {
    let s = Server::start(&[]);
    let c = s.client();
    for i in 0..50 {
        push(&c, "jobs", &format!("t{i}"), &EnqueueOptions::default()).await;
    }
    let mut done = Vec::new();
    for _ in 0..10 {
        let t = &c.claim("jobs", &lease(60_000)).await.unwrap()[0];
        c.complete("jobs", t.id, &t.claim, None).await.unwrap();
        done.push(t.id);
    }
    let running = c.claim("jobs", &lease(4_000)).await.unwrap().remove(0);
    let s = s.crash_and_restart_after(Duration::from_secs(5));
    let restarted = std::time::SystemTime::now();
    let c = s.client();
    let q = c.queue("jobs").await.unwrap().unwrap();
    assert_eq!((q.pending + q.running, q.done, q.next_id), (40, 10, 51));
    for id in done {
        assert_eq!(state_of(&c, "jobs", id).await, TaskState::Done);
    }
    assert!(
        eventually(Duration::from_secs(10), async || {
            let t = c.task("jobs", running.id, false).await.unwrap().unwrap();
            t.lease_expires_at.is_some_and(|at| {
                humantime::parse_rfc3339(&at).unwrap() >= restarted + Duration::from_secs(3)
            })
        })
        .await,
        "the lease restarted in full: {:?}",
        c.task("jobs", running.id, false).await
    );
    let t = c.task("jobs", running.id, false).await.unwrap().unwrap();
    assert_eq!((t.state, t.attempt), (TaskState::Running, 1));
    // The worker that held it can still finish it.
    c.complete("jobs", running.id, &running.claim, None)
        .await
        .unwrap();
    let q = c.queue("jobs").await.unwrap().unwrap();
    assert_eq!((q.pending, q.running, q.done), (39, 0, 11));
}

/// A queue watch (SSE and WebSocket) gets every change to the queue's tasks, in order, at
/// their revisions, and nothing else; a key watch never sees task changes. A transaction that
/// writes a key and enqueues reaches each at the same revision.
#[tokio::test]
async fn queue_changes_appear_in_watches() {
    use crate::support::Sse;
    use crate::watch_ws::{ws_connect, ws_next_content, ws_send};

    let s = Server::start(&[]);
    let c = s.client();
    let mut sse = Sse::open(&s.url("/v1/watch?queue=jobs"), &[]).await;
    let mut ws = ws_connect(&s).await;
    ws_send(&mut ws, json!({"op": "watch", "id": "q", "queue": "jobs"})).await;
    ws_send(&mut ws, json!({"op": "watch", "id": "k", "prefix": ""})).await;
    // Each watch first says where it starts; wait for both so no change comes before them.
    let mut started = Vec::new();
    for _ in 0..2 {
        let m = crate::watch_ws::ws_next(&mut ws).await;
        started.push(m["id"].as_str().unwrap().to_owned());
    }
    started.sort();
    assert_eq!(started, ["k", "q"]);

    let enqueued = c
        .enqueue("jobs", "p".to_owned(), &EnqueueOptions::default())
        .await
        .unwrap();
    c.enqueue("other", "x".to_owned(), &EnqueueOptions::default())
        .await
        .unwrap();
    c.put("plain", "v", &Default::default()).await.unwrap();
    let t = c.claim("jobs", &lease(60_000)).await.unwrap().remove(0);
    let done = c.complete("jobs", t.id, &t.claim, None).await.unwrap();
    let txn: TxnRequest = serde_json::from_value(json!({
        "success": [{"put": {"key": "both", "value": "1"}},
                    {"enqueue": {"queue": "jobs", "payload": "q"}}]
    }))
    .unwrap();
    let both = c.txn(&txn).await.unwrap().revision;

    let want = [
        (enqueued.revision, "enqueued", "pending", 1),
        (done.revision - 1, "claimed", "running", 1),
        (done.revision, "completed", "done", 1),
        (both, "enqueued", "pending", 2),
    ];
    for (revision, kind, state, id) in want {
        let e = sse.next_change().await;
        assert_eq!(e.id, Some(revision));
        assert_eq!(e.data["events"], json!([]), "{}", e.data);
        let task = &e.data["tasks"][0];
        assert_eq!(e.data["tasks"].as_array().unwrap().len(), 1);
        assert_eq!(
            (&task["queue"], &task["id"], &task["kind"], &task["state"]),
            (&json!("jobs"), &json!(id), &json!(kind), &json!(state)),
            "{}",
            e.data
        );
    }
    // On the socket: the queue watch sees the same four, the key watch only the two puts.
    let (mut tasks, mut keys) = (Vec::new(), Vec::new());
    for _ in 0..6 {
        let m = ws_next_content(&mut ws).await;
        match m["id"].as_str().unwrap() {
            "q" => {
                assert!(m.get("events").is_none_or(|e| e == &json!([])), "{m}");
                tasks.push((
                    m["revision"].as_u64().unwrap(),
                    m["tasks"][0]["kind"].clone(),
                ));
            }
            _ => {
                assert!(m.get("tasks").is_none(), "a key watch got tasks: {m}");
                keys.push((
                    m["revision"].as_u64().unwrap(),
                    m["events"][0]["key"].clone(),
                ));
            }
        }
    }
    assert_eq!(
        tasks,
        want.iter().map(|w| (w.0, json!(w.1))).collect::<Vec<_>>()
    );
    assert_eq!(
        keys,
        [
            (enqueued.revision + 2, json!("plain")),
            (both, json!("both"))
        ]
    );

    // Resuming a queue watch from a revision replays from the history.
    let mut again = Sse::open(
        &s.url(&format!(
            "/v1/watch?queue=jobs&from_revision={}",
            done.revision
        )),
        &[],
    )
    .await;
    assert_eq!(again.next_change().await.id, Some(done.revision));
    // A queue watch cannot start with `initial` (that lists keys), nor name a bad queue.
    let h = http();
    assert_error(
        &call(h.get(s.url("/v1/watch?queue=jobs&initial=true"))).await,
        400,
        "invalid_query",
    );
    assert_error(
        &call(h.get(s.url("/v1/watch?queue=a%2Fb"))).await,
        400,
        "invalid_name",
    );
}

/// Done tasks are deleted once `--queue-retention` has passed; dead ones stay.
#[tokio::test]
async fn done_tasks_go_after_their_retention_and_dead_ones_stay() {
    let s = Server::start(&["--queue-retention", "1s"]);
    let c = s.client();
    let once = EnqueueOptions {
        max_attempts: Some(1),
        ..EnqueueOptions::default()
    };
    push(&c, "jobs", "ok", &once).await;
    push(&c, "jobs", "bad", &once).await;
    let ok = c.claim("jobs", &lease(60_000)).await.unwrap().remove(0);
    let finished = Instant::now();
    c.complete("jobs", ok.id, &ok.claim, None).await.unwrap();
    let bad = c.claim("jobs", &lease(60_000)).await.unwrap().remove(0);
    c.fail("jobs", bad.id, &bad.claim, "no", None)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || {
            c.task("jobs", ok.id, false).await.unwrap().is_none()
        })
        .await,
        "the done task was deleted"
    );
    assert!(
        finished.elapsed() >= Duration::from_secs(1),
        "not before its retention"
    );
    let dead = c.task("jobs", bad.id, false).await.unwrap().unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    let q = c.queue("jobs").await.unwrap().unwrap();
    assert_eq!(
        (q.done, q.dead, q.next_id),
        (0, 1, 3),
        "ids are never reused"
    );
}
