//! Task queues against the real binary: each scenario runs once on one node and once on a
//! three-node cluster, its clients spread over the nodes (so claims, completions and reads
//! go through followers too).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::wire::{Code, TaskState, TxnRequest};
use keel_client::{ClaimOptions, Client, EnqueueOptions, TaskListOptions};
use serde_json::json;

use crate::cluster::{Cluster, FAST};
use crate::support::{assert_error, call, eventually, http, Server};

/// Where a scenario runs: one node, or a cluster.
enum Nodes {
    One(Server),
    Three(Cluster),
}

impl Nodes {
    async fn start(n: usize, flags: &[&str]) -> Nodes {
        if n == 1 {
            Nodes::One(Server::start(flags))
        } else {
            let mut all = FAST.to_vec();
            all.extend(flags);
            Nodes::Three(Cluster::start(n, &all).await)
        }
    }

    /// The node clients number `i` talks to.
    fn server(&self, i: usize) -> &Server {
        match self {
            Nodes::One(s) => s,
            Nodes::Three(c) => {
                let live: Vec<&Server> = c.live().map(|(_, s)| s).collect();
                live[i % live.len()]
            }
        }
    }

    fn client(&self, i: usize) -> Client {
        self.server(i).client()
    }

    fn len(&self) -> usize {
        match self {
            Nodes::One(_) => 1,
            Nodes::Three(c) => c.live().count(),
        }
    }

    /// The queue's metric of waiting claims, summed over the nodes.
    async fn claims_waiting(&self) -> f64 {
        let mut total = 0.0;
        for i in 0..self.len() {
            let text = self.client(i).metrics().await.unwrap_or_default();
            total += text
                .lines()
                .find_map(|l| l.strip_prefix("keel_queue_claims_waiting "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
        }
        total
    }
}

/// Runs a scenario on one node and on three.
macro_rules! on_one_and_three {
    ($scenario:ident, $one:ident, $three:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $one() {
            $scenario(Nodes::start(1, &[]).await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $three() {
            $scenario(Nodes::start(3, &[]).await).await;
        }
    };
}

fn lease(ms: u64) -> ClaimOptions {
    ClaimOptions {
        lease: Some(Duration::from_millis(ms)),
        ..ClaimOptions::default()
    }
}

async fn push(c: &Client, queue: &str, payload: &str, opts: &EnqueueOptions) -> u64 {
    c.enqueue(queue, payload.to_owned(), opts).await.unwrap().id
}

async fn state_of(c: &Client, queue: &str, id: u64) -> TaskState {
    c.task(queue, id, false).await.unwrap().unwrap().state
}

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
