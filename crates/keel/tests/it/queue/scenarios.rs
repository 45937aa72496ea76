//! Scenarios run on one node and on three (see [`super::on_one_and_three`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::wire::{Code, TaskState, TxnRequest};
use keel_client::{ClaimOptions, EnqueueOptions, TaskListOptions};
use serde_json::json;

use super::{lease, push, state_of, Nodes};
use crate::support::{assert_error, call, eventually, http};

on_one_and_three!(
    order_inspection_and_dedupe,
    order_inspection_and_dedupe_on_one_node,
    order_inspection_and_dedupe_on_three_nodes
);

/// FIFO within a priority, higher priorities first; ids consecutive from 1; a delayed task
/// waits; a dedupe key returns the unfinished task; every task is inspectable.
async fn order_inspection_and_dedupe(n: Nodes) {
    let h = http();
    let s = n.server(0);
    let (st, body) = call(
        h.post(s.url("/v1/queues/mail/tasks"))
            .header("content-type", "text/plain")
            .body("first"),
    )
    .await;
    assert_eq!((st, &body["id"]), (201, &json!(1)));
    let c = n.client(1);
    let plain = EnqueueOptions::default();
    assert_eq!(push(&c, "mail", "second", &plain).await, 2);
    let urgent = EnqueueOptions {
        priority: Some(5),
        ..EnqueueOptions::default()
    };
    assert_eq!(push(&c, "mail", "urgent", &urgent).await, 3);
    let later = EnqueueOptions {
        delay: Some(Duration::from_secs(3600)),
        priority: Some(9),
        ..EnqueueOptions::default()
    };
    assert_eq!(push(&c, "mail", "later", &later).await, 4);
    let deduped = EnqueueOptions {
        dedupe_key: Some("order-17".into()),
        ..EnqueueOptions::default()
    };
    let a = c.enqueue("mail", "receipt", &deduped).await.unwrap();
    let b = n
        .client(2)
        .enqueue("mail", "receipt again", &deduped)
        .await
        .unwrap();
    assert!(a.created && !b.created);
    assert_eq!((a.id, b.id), (5, 5));
    let (st, body) = call(
        h.post(s.url("/v1/queues/mail/tasks?dedupe_key=order-17"))
            .body("third time"),
    )
    .await;
    assert_eq!(
        (st, &body["id"]),
        (200, &json!(5)),
        "a dedupe hit answers 200"
    );

    // Claims: priority first, then the oldest; the delayed task is not ready.
    let mut order = Vec::new();
    for i in 0..4 {
        let t = n.client(i).claim("mail", &lease(60_000)).await.unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].attempt, 1);
        order.push((t[0].id, t[0].payload.clone().unwrap()));
    }
    assert_eq!(
        order,
        [
            (3, "urgent".to_owned()),
            (1, "first".to_owned()),
            (2, "second".to_owned()),
            (5, "receipt".to_owned())
        ]
    );
    assert!(c
        .claim("mail", &ClaimOptions::default())
        .await
        .unwrap()
        .is_empty());
    let (st, _) = call(h.post(s.url("/v1/queues/mail/claim"))).await;
    assert_eq!(st, 204);

    // Inspection: by id, by state, the payload raw, and the queue's counts.
    let t1 = c.task("mail", 1, true).await.unwrap().unwrap();
    assert_eq!(t1.state, TaskState::Running);
    assert_eq!(t1.payload.as_deref(), Some("first"));
    assert_eq!(t1.content_type.as_deref(), Some("text/plain"));
    assert!(t1.lease_expires_at.is_some());
    let raw = h
        .get(s.url("/v1/queues/mail/tasks/1/payload"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "text/plain");
    assert_eq!(raw.text().await.unwrap(), "first");
    let pending = TaskListOptions {
        state: Some(TaskState::Pending),
        ..TaskListOptions::default()
    };
    let page = c.tasks("mail", &pending).await.unwrap();
    assert_eq!(page.items.iter().map(|t| t.id).collect::<Vec<_>>(), [4]);
    let q = c.queue("mail").await.unwrap().unwrap();
    assert_eq!(
        (q.pending, q.running, q.done, q.dead, q.next_id),
        (1, 4, 0, 0, 6)
    );
    let paged = c
        .tasks(
            "mail",
            &TaskListOptions {
                limit: Some(2),
                after: Some(1),
                ..TaskListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(paged.items.iter().map(|t| t.id).collect::<Vec<_>>(), [2, 3]);
    assert!(paged.more);

    // Errors: unknown queue and task, bad names, a running task cannot be deleted.
    assert!(c.queue("nothing-yet").await.unwrap().is_none());
    assert!(c.task("mail", 99, false).await.unwrap().is_none());
    assert_error(
        &call(h.post(s.url("/v1/queues/a%2Fb/tasks")).body("x")).await,
        400,
        "invalid_name",
    );
    assert_error(
        &call(h.delete(s.url("/v1/queues/mail/tasks/1"))).await,
        409,
        "task_running",
    );
    let cancelled = c.cancel("mail", 4).await.unwrap();
    assert_eq!(cancelled.deleted, 1);
    assert!(c.task("mail", 4, false).await.unwrap().is_none());
}

on_one_and_three!(
    long_polls,
    long_polls_on_one_node,
    long_polls_on_three_nodes
);

/// A claim waiting on an empty queue (one that has never had a task) is woken by an enqueue
/// through another node, and one on a delayed task by its time coming.
async fn long_polls(n: Nodes) {
    let waiter = n.client(1);
    let wait = tokio::spawn(async move {
        let started = Instant::now();
        let opts = ClaimOptions {
            wait: Some(Duration::from_secs(30)),
            ..ClaimOptions::default()
        };
        let tasks = waiter.claim("jobs", &opts).await.unwrap();
        (tasks, started.elapsed())
    });
    assert!(
        eventually(Duration::from_secs(10), async || n.claims_waiting().await
            >= 1.0)
        .await,
        "the claim is waiting"
    );
    let enqueued_at = Instant::now();
    n.client(0)
        .enqueue("jobs", "wake up", &EnqueueOptions::default())
        .await
        .unwrap();
    let (tasks, _) = wait.await.unwrap();
    let woke_after = enqueued_at.elapsed();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].payload.as_deref(), Some("wake up"));
    assert!(
        woke_after < Duration::from_secs(3),
        "woke {woke_after:?} after the enqueue"
    );

    // A delayed task: a claim that starts before it is due gets it once it is.
    let c = n.client(2);
    let delayed = EnqueueOptions {
        delay: Some(Duration::from_millis(800)),
        ..EnqueueOptions::default()
    };
    push(&c, "later", "soon", &delayed).await;
    let started = Instant::now();
    assert!(c
        .claim("later", &ClaimOptions::default())
        .await
        .unwrap()
        .is_empty());
    let opts = ClaimOptions {
        wait: Some(Duration::from_secs(20)),
        ..ClaimOptions::default()
    };
    let tasks = c.claim("later", &opts).await.unwrap();
    let took = started.elapsed();
    assert_eq!(tasks.len(), 1, "the delayed task, once due");
    assert!(
        took >= Duration::from_millis(700),
        "not before its time: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "at its time: {took:?}");

    // A claim that finds nothing within its wait answers 204.
    let started = Instant::now();
    let opts = ClaimOptions {
        wait: Some(Duration::from_millis(300)),
        ..ClaimOptions::default()
    };
    assert!(c.claim("idle", &opts).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

on_one_and_three!(
    claims_are_exclusive,
    claims_are_exclusive_on_one_node,
    claims_are_exclusive_on_three_nodes
);

/// 2,000 tasks, 16 claimers on every node: each task is handed out once and completed once.
async fn claims_are_exclusive(n: Nodes) {
    const TASKS: u64 = 2_000;
    const CLAIMERS: usize = 16;
    let producer = n.client(0);
    let txn: TxnRequest = serde_json::from_value(json!({
        "success": (0..100).map(|i| json!({"enqueue": {"queue": "work", "payload": format!("t{i}")}}))
            .collect::<Vec<_>>()
    }))
    .unwrap();
    for _ in 0..TASKS / 100 {
        assert!(producer.txn(&txn).await.unwrap().succeeded);
    }
    let completed: Arc<Mutex<BTreeMap<u64, usize>>> = Arc::default();
    let mut claimers = Vec::new();
    for w in 0..CLAIMERS {
        let c = n.client(w);
        let completed = completed.clone();
        claimers.push(tokio::spawn(async move {
            let opts = ClaimOptions {
                max: Some(4),
                worker: Some(format!("w{w}")),
                lease: Some(Duration::from_secs(120)),
                ..ClaimOptions::default()
            };
            // Bounded: each round takes at least one task until the queue is empty.
            for _ in 0..TASKS {
                let tasks = c.claim("work", &opts).await.unwrap();
                if tasks.is_empty() {
                    break;
                }
                for t in tasks {
                    c.complete("work", t.id, &t.claim, Some(json!(w)))
                        .await
                        .unwrap();
                    *completed.lock().unwrap().entry(t.id).or_default() += 1;
                }
            }
        }));
    }
    for c in claimers {
        c.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed.len() as u64, TASKS, "every task was completed");
    assert!(completed.values().all(|&k| k == 1), "none twice");
    let q = producer.queue("work").await.unwrap().unwrap();
    assert_eq!((q.pending, q.running, q.done), (0, 0, TASKS));
}

on_one_and_three!(
    leases_failures_and_dead_tasks,
    leases_failures_and_dead_tasks_on_one_node,
    leases_failures_and_dead_tasks_on_three_nodes
);

/// A lease that runs out puts the task back (attempt + 1 at the next claim) and the old
/// token is refused; `fail` retries after `retry_in` or a backoff; the last allowed attempt
/// makes a task dead with its payload kept, and `retry` brings it back.
async fn leases_failures_and_dead_tasks(n: Nodes) {
    let c = n.client(0);
    let id = push(&c, "jobs", "slow", &EnqueueOptions::default()).await;
    let first = &c.claim("jobs", &lease(400)).await.unwrap()[0];
    assert_eq!((first.id, first.attempt), (id, 1));
    let other = n.client(1);
    assert!(
        eventually(Duration::from_secs(10), async || {
            state_of(&other, "jobs", id).await == TaskState::Pending
        })
        .await,
        "the lease ran out and the task went back"
    );
    let info = other.task("jobs", id, false).await.unwrap().unwrap();
    assert_eq!(info.last_error.as_deref(), Some("lease expired"));
    let second = &other.claim("jobs", &lease(60_000)).await.unwrap()[0];
    assert_eq!((second.id, second.attempt), (id, 2));
    assert_ne!(second.claim, first.claim);
    for stale in [
        c.complete("jobs", id, &first.claim, None).await,
        c.extend("jobs", id, &first.claim, None).await,
        c.fail("jobs", id, &first.claim, "late", None).await,
    ] {
        assert_eq!(stale.unwrap_err().code(), Some(Code::ClaimLost));
    }
    let h = http();
    let (st, body) = call(
        h.post(
            n.server(2)
                .url(&format!("/v1/queues/jobs/tasks/{id}/complete")),
        )
        .json(&json!({"claim": first.claim})),
    )
    .await;
    assert_error(&(st, body), 409, "claim_lost");

    // fail with retry_in: pending again, not claimable before its time.
    let failed = other
        .fail(
            "jobs",
            id,
            &second.claim,
            "disk full",
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    assert_eq!(failed.state, TaskState::Pending);
    assert!(c
        .claim("jobs", &ClaimOptions::default())
        .await
        .unwrap()
        .is_empty());
    let opts = ClaimOptions {
        wait: Some(Duration::from_secs(20)),
        ..ClaimOptions::default()
    };
    let third = &c.claim("jobs", &opts).await.unwrap()[0];
    assert_eq!(third.attempt, 3);
    // The default backoff after the third attempt: 4 s.
    let before = Instant::now();
    let failed = c
        .fail("jobs", id, &third.claim, "again", None)
        .await
        .unwrap();
    let t = c.task("jobs", id, false).await.unwrap().unwrap();
    assert_eq!(t.last_error.as_deref(), Some("again"));
    let not_before = humantime::parse_rfc3339(failed.not_before.as_deref().unwrap()).unwrap();
    let wait = not_before
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        + before.elapsed();
    assert!(
        wait > Duration::from_millis(3_000) && wait <= Duration::from_millis(4_100),
        "backoff {wait:?}"
    );

    // Dead after the last attempt, payload intact; retry brings it back.
    let one = EnqueueOptions {
        max_attempts: Some(2),
        ..EnqueueOptions::default()
    };
    let id = push(&c, "fragile", "\u{1F4A5} payload", &one).await;
    for attempt in 1..=2 {
        let t = &other.claim("fragile", &lease(60_000)).await.unwrap()[0];
        assert_eq!(t.attempt, attempt);
        let r = other
            .fail("fragile", id, &t.claim, "boom", Some(Duration::ZERO))
            .await
            .unwrap();
        let want = if attempt == 2 {
            TaskState::Dead
        } else {
            TaskState::Pending
        };
        assert_eq!(r.state, want);
    }
    let dead = c.task("fragile", id, true).await.unwrap().unwrap();
    assert_eq!(dead.state, TaskState::Dead);
    assert_eq!(dead.payload.as_deref(), Some("\u{1F4A5} payload"));
    assert_eq!(dead.last_error.as_deref(), Some("boom"));
    assert!(c
        .claim("fragile", &ClaimOptions::default())
        .await
        .unwrap()
        .is_empty());
    let dead_list = c
        .tasks(
            "fragile",
            &TaskListOptions {
                state: Some(TaskState::Dead),
                ..TaskListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead_list.items.len(), 1);
    let r = c.retry("fragile", id).await.unwrap();
    assert_eq!((r.state, r.attempt), (TaskState::Pending, 0));
    let t = &c.claim("fragile", &lease(60_000)).await.unwrap()[0];
    assert_eq!((t.id, t.attempt), (id, 1));
    assert_eq!(
        c.retry("fragile", id).await.unwrap_err().code(),
        Some(Code::TaskNotFinished)
    );
    c.complete("fragile", id, &t.claim, Some(json!({"ok": true})))
        .await
        .unwrap();
    let done = c.task("fragile", id, false).await.unwrap().unwrap();
    assert_eq!(done.result, Some(json!({"ok": true})));
    let purged = c.purge("fragile", TaskState::Done).await.unwrap();
    assert_eq!(purged.deleted, 1);
}

on_one_and_three!(
    transactions,
    transactions_on_one_node,
    transactions_on_three_nodes
);

/// An upload recorded and its task created in one step; a failed compare enqueues nothing;
/// a worker completes its task and writes its result key in one step.
async fn transactions(n: Nodes) {
    let c = n.client(0);
    let txn = |v: serde_json::Value| -> TxnRequest { serde_json::from_value(v).unwrap() };
    let upload = txn(json!({
        "compare": [{"key": "uploads/7", "field": "exists", "op": "==", "value": false}],
        "success": [
            {"put": {"key": "uploads/7", "value": "img-7.png"}},
            {"enqueue": {"queue": "thumbs", "payload": "uploads/7", "priority": 2}}
        ]
    }));
    let r = c.txn(&upload).await.unwrap();
    assert!(r.succeeded);
    let enqueued = serde_json::to_value(&r.results[1]).unwrap();
    assert_eq!(
        enqueued,
        json!({"enqueue": {"queue": "thumbs", "id": 1, "created": true}})
    );
    // The same again: the compare fails, nothing is enqueued.
    let r = n.client(1).txn(&upload).await.unwrap();
    assert!(!r.succeeded);
    let q = c.queue("thumbs").await.unwrap().unwrap();
    assert_eq!((q.pending, q.next_id), (1, 2));

    let worker = n.client(2);
    let t = &worker.claim("thumbs", &lease(60_000)).await.unwrap()[0];
    let finish = txn(json!({
        "compare": [{"queue": "thumbs", "task": t.id, "field": "state", "op": "==", "value": "running"}],
        "success": [
            {"complete": {"queue": "thumbs", "id": t.id, "claim": t.claim, "result": {"size": 7}}},
            {"put": {"key": "thumbs/7", "value": "thumb-7.png"}}
        ]
    }));
    let r = worker.txn(&finish).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(state_of(&c, "thumbs", t.id).await, TaskState::Done);
    let kv = c
        .get("thumbs/7", &Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kv.value.as_deref(), Some("thumb-7.png"));
    assert_eq!(
        kv.mod_revision, r.revision,
        "the key and the task at one revision"
    );
    // Completing again with the same claim refuses the whole transaction: no key written.
    let again = txn(json!({
        "success": [
            {"put": {"key": "thumbs/8", "value": "x"}},
            {"complete": {"queue": "thumbs", "id": t.id, "claim": t.claim}}
        ]
    }));
    let err = worker.txn(&again).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ClaimLost));
    assert!(c
        .get("thumbs/8", &Default::default())
        .await
        .unwrap()
        .is_none());
    // A compare on a task that does not exist.
    let absent = txn(json!({
        "compare": [{"queue": "thumbs", "task": 99, "field": "state", "op": "==", "value": "absent"}],
        "success": [{"put": {"key": "seen", "value": "1"}}]
    }));
    assert!(c.txn(&absent).await.unwrap().succeeded);
    let ordered = txn(json!({
        "compare": [{"queue": "thumbs", "task": 1, "field": "state", "op": "<", "value": "done"}]
    }));
    assert_eq!(
        c.txn(&ordered).await.unwrap_err().code(),
        Some(Code::InvalidArgument)
    );
}
