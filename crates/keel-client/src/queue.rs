//! Task queues: enqueue, claim, finish, inspect, manage; and [`Worker`], which does what
//! `keel queue work` does for a Rust closure.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keel_wire::{
    ClaimResponse, ClaimedTask, CompleteRequest, EnqueueResponse, ExtendRequest, FailRequest,
    QueueInfo, QueueList, TaskChangedResponse, TaskInfo, TaskList, TaskState, TasksDeletedResponse,
};
use reqwest::{Method, StatusCode};

use crate::{error_chain, Client, Error, Result};

/// Options of [`Client::enqueue`].
#[derive(Clone, Debug, Default)]
pub struct EnqueueOptions {
    /// The payload's content type.
    pub content_type: Option<String>,
    /// Not claimable until this long from now.
    pub delay: Option<Duration>,
    /// Attempts allowed (server default 10; 0: unlimited).
    pub max_attempts: Option<u32>,
    /// Higher is claimed first (default 0).
    pub priority: Option<i64>,
    /// While an unfinished task has this key, enqueueing again returns that task.
    pub dedupe_key: Option<String>,
}

/// What an enqueue did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    /// The task's id.
    pub id: u64,
    /// The store revision afterwards.
    pub revision: u64,
    /// False when an unfinished task with the same dedupe key was returned instead.
    pub created: bool,
}

/// Options of [`Client::claim`].
#[derive(Clone, Debug, Default)]
pub struct ClaimOptions {
    /// The lease (server default `--queue-lease`, 60 s).
    pub lease: Option<Duration>,
    /// Wait up to this long for a task to become ready (at most 10 minutes).
    pub wait: Option<Duration>,
    /// At most this many tasks (default 1).
    pub max: Option<u32>,
    /// The worker's name, shown on the task (default: its address).
    pub worker: Option<String>,
}

/// Options of [`Client::tasks`].
#[derive(Clone, Debug, Default)]
pub struct TaskListOptions {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Page size (server default 100, at most 1,000).
    pub limit: Option<usize>,
    /// Only tasks with a larger id.
    pub after: Option<u64>,
    /// With their payloads.
    pub payload: bool,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Client {
    /// Enqueues a task.
    pub async fn enqueue(
        &self,
        queue: &str,
        payload: impl Into<Bytes>,
        opts: &EnqueueOptions,
    ) -> Result<Enqueued> {
        let mut q = Vec::new();
        if let Some(d) = opts.delay {
            q.push(("delay", ms(d)));
        }
        if let Some(n) = opts.max_attempts {
            q.push(("max_attempts", n.to_string()));
        }
        if let Some(p) = opts.priority {
            q.push(("priority", p.to_string()));
        }
        if let Some(k) = &opts.dedupe_key {
            q.push(("dedupe_key", k.clone()));
        }
        let url = self.url(&["v1", "queues", queue, "tasks"], None, &q)?;
        let mut req = self.http.post(url).body(payload.into());
        if let Some(t) = &opts.content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, t);
        }
        let resp = self.execute(req).await?;
        let created = resp.status() == StatusCode::CREATED;
        let r: EnqueueResponse = self.decode(resp).await?;
        Ok(Enqueued {
            id: r.id,
            revision: r.revision,
            created,
        })
    }

    /// Claims the best ready tasks; an empty list when none became ready within the wait.
    pub async fn claim(&self, queue: &str, opts: &ClaimOptions) -> Result<Vec<ClaimedTask>> {
        let mut q = Vec::new();
        if let Some(d) = opts.lease {
            q.push(("lease", ms(d)));
        }
        if let Some(d) = opts.wait {
            q.push(("wait", ms(d)));
        }
        if let Some(n) = opts.max {
            q.push(("max", n.to_string()));
        }
        if let Some(w) = &opts.worker {
            q.push(("worker", w.clone()));
        }
        let url = self.url(&["v1", "queues", queue, "claim"], None, &q)?;
        let resp = self.execute(self.http.post(url)).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let r: ClaimResponse = self.decode(resp).await?;
        Ok(r.tasks)
    }

    fn task_url(&self, queue: &str, id: u64, action: Option<&str>) -> Result<reqwest::Url> {
        let id = id.to_string();
        let mut segments = vec!["v1", "queues", queue, "tasks", id.as_str()];
        segments.extend(action);
        self.url(&segments, None, &[])
    }

    async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        url: reqwest::Url,
        body: &B,
    ) -> Result<T> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Usage(e.to_string()))?;
        self.call(Method::POST, url, Some(body.into()), true).await
    }

    /// Completes a running task with an optional JSON result.
    pub async fn complete(
        &self,
        queue: &str,
        id: u64,
        claim: &str,
        result: Option<serde_json::Value>,
    ) -> Result<TaskChangedResponse> {
        let body = CompleteRequest {
            claim: claim.to_owned(),
            result,
        };
        self.post_json(self.task_url(queue, id, Some("complete"))?, &body)
            .await
    }

    /// Records a running task's failure: retried after `retry_in` (default: backoff), or dead
    /// when its attempts are used up.
    pub async fn fail(
        &self,
        queue: &str,
        id: u64,
        claim: &str,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<TaskChangedResponse> {
        let body = FailRequest {
            claim: claim.to_owned(),
            error: error.to_owned(),
            retry_in: None,
            retry_in_ms: retry_in.map(|d| d.as_millis() as u64),
        };
        self.post_json(self.task_url(queue, id, Some("fail"))?, &body)
            .await
    }

    /// Gives a running task's lease a new deadline, `lease` from now (default: the server's).
    pub async fn extend(
        &self,
        queue: &str,
        id: u64,
        claim: &str,
        lease: Option<Duration>,
    ) -> Result<TaskChangedResponse> {
        let body = ExtendRequest {
            claim: claim.to_owned(),
            lease: None,
            lease_ms: lease.map(|d| d.as_millis() as u64),
        };
        self.post_json(self.task_url(queue, id, Some("extend"))?, &body)
            .await
    }

    /// Makes a done or dead task pending again, its attempts reset.
    pub async fn retry(&self, queue: &str, id: u64) -> Result<TaskChangedResponse> {
        let url = self.task_url(queue, id, Some("retry"))?;
        self.call(Method::POST, url, None, false).await
    }

    /// Deletes a task that is not running.
    pub async fn cancel(&self, queue: &str, id: u64) -> Result<TasksDeletedResponse> {
        let url = self.task_url(queue, id, None)?;
        self.call(Method::DELETE, url, None, false).await
    }

    /// Deletes every done (or every dead) task of a queue.
    pub async fn purge(&self, queue: &str, state: TaskState) -> Result<TasksDeletedResponse> {
        let url = self.url(
            &["v1", "queues", queue],
            None,
            &[("state", state.as_str().to_owned())],
        )?;
        self.call(Method::DELETE, url, None, false).await
    }

    /// A task; `None` if it does not exist.
    pub async fn task(&self, queue: &str, id: u64, payload: bool) -> Result<Option<TaskInfo>> {
        let mut url = self.task_url(queue, id, None)?;
        if payload {
            url.query_pairs_mut().append_pair("payload", "true");
        }
        match self.call(Method::GET, url, None, false).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.code() == Some(keel_wire::Code::TaskNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A task's raw payload.
    pub async fn task_payload(&self, queue: &str, id: u64) -> Result<Bytes> {
        let url = self.task_url(queue, id, Some("payload"))?;
        let resp = self.execute(self.http.get(url)).await?;
        resp.bytes().await.map_err(|e| Error::Transport {
            addr: self.base.to_string(),
            message: error_chain(&e),
        })
    }

    /// One page of a queue's tasks, in id order.
    pub async fn tasks(&self, queue: &str, opts: &TaskListOptions) -> Result<TaskList> {
        let mut q = Vec::new();
        if let Some(s) = opts.state {
            q.push(("state", s.as_str().to_owned()));
        }
        if let Some(l) = opts.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(a) = opts.after {
            q.push(("after", a.to_string()));
        }
        if opts.payload {
            q.push(("payload", "true".to_owned()));
        }
        let url = self.url(&["v1", "queues", queue, "tasks"], None, &q)?;
        self.call(Method::GET, url, None, false).await
    }

    /// Every queue's counts.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>> {
        let url = self.url(&["v1", "queues"], None, &[])?;
        let list: QueueList = self.call(Method::GET, url, None, false).await?;
        Ok(list.queues)
    }

    /// One queue's counts; `None` before its first task.
    pub async fn queue(&self, queue: &str) -> Result<Option<QueueInfo>> {
        let url = self.url(&["v1", "queues", queue], None, &[])?;
        match self.call(Method::GET, url, None, false).await {
            Ok(q) => Ok(Some(q)),
            Err(e) if e.code() == Some(keel_wire::Code::QueueNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A claimed task, as a [`Worker`]'s handler gets it.
#[derive(Debug)]
pub struct WorkerTask {
    /// The task.
    pub task: ClaimedTask,
    /// The queue.
    pub queue: String,
    /// Becomes true if the claim is lost (its lease ran out before an extension landed, and
    /// the task was put back): the work will be redone elsewhere, so stop it.
    pub lost: tokio::sync::watch::Receiver<bool>,
}

/// What a worker did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks completed.
    pub completed: u64,
    /// Tasks failed.
    pub failed: u64,
    /// Tasks whose claim was lost while they ran.
    pub lost: u64,
}

/// Claims tasks from a queue and hands each to a handler, `concurrency` at a time; keeps each
/// claim's lease extended while its handler runs (every third of the lease); completes the
/// task with the handler's result, or fails it with its error. Stops claiming when asked and
/// lets running handlers finish.
#[derive(Clone, Debug)]
pub struct Worker {
    client: Client,
    queue: String,
    lease: Duration,
    concurrency: usize,
    wait: Duration,
    name: Option<String>,
}

impl Worker {
    /// A worker on `queue`: one task at a time, 60 s leases.
    pub fn new(client: Client, queue: &str) -> Worker {
        Worker {
            client,
            queue: queue.to_owned(),
            lease: Duration::from_secs(60),
            concurrency: 1,
            wait: Duration::from_secs(30),
            name: None,
        }
    }

    /// The lease each claim asks for (and each extension renews).
    pub fn lease(mut self, lease: Duration) -> Worker {
        self.lease = lease;
        self
    }

    /// How many tasks run at once.
    pub fn concurrency(mut self, n: usize) -> Worker {
        self.concurrency = n.max(1);
        self
    }

    /// How long each claim waits for a task (a long poll).
    pub fn wait(mut self, wait: Duration) -> Worker {
        self.wait = wait;
        self
    }

    /// The name tasks show as their worker.
    pub fn name(mut self, name: &str) -> Worker {
        self.name = Some(name.to_owned());
        self
    }

    /// Runs until `stop` resolves, then waits for running handlers. A handler returns the
    /// task's JSON result, or an error message to fail it with.
    pub async fn run<H, F>(self, handler: H, stop: impl Future<Output = ()>) -> WorkerStats
    where
        H: Fn(WorkerTask) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Option<serde_json::Value>, String>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut slots = Vec::new();
        for _ in 0..self.concurrency {
            let worker = self.clone();
            let handler = handler.clone();
            let counts = counts.clone();
            let mut stop = stop_rx.clone();
            slots.push(tokio::spawn(async move {
                while !*stop.borrow() {
                    let opts = ClaimOptions {
                        lease: Some(worker.lease),
                        wait: Some(worker.wait),
                        max: Some(1),
                        worker: worker.name.clone(),
                    };
                    let claimed = tokio::select! {
                        r = worker.client.claim(&worker.queue, &opts) => r,
                        _ = stop.wait_for(|s| *s) => break,
                    };
                    let tasks = match claimed {
                        Ok(tasks) => tasks,
                        Err(_) => {
                            // The server is unreachable or refused: try again shortly.
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = stop.wait_for(|s| *s) => break,
                            }
                            continue;
                        }
                    };
                    for task in tasks {
                        let outcome = worker.handle(task, handler.as_ref()).await;
                        counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        stop.await;
        stop_tx.send_replace(true);
        for slot in slots {
            let _ = slot.await;
        }
        WorkerStats {
            completed: counts[0].load(Ordering::Relaxed),
            failed: counts[1].load(Ordering::Relaxed),
            lost: counts[2].load(Ordering::Relaxed),
        }
    }

    /// Runs one task's handler with its lease kept extended, then finishes the task.
    async fn handle<H, F>(&self, task: ClaimedTask, handler: &H) -> Finish
    where
        H: Fn(WorkerTask) -> F,
        F: Future<Output = Result<Option<serde_json::Value>, String>>,
    {
        let (lost_tx, lost) = tokio::sync::watch::channel(false);
        let (id, claim) = (task.id, task.claim.clone());
        let work = handler(WorkerTask {
            task,
            queue: self.queue.clone(),
            lost,
        });
        tokio::pin!(work);
        let every = (self.lease / 3).max(Duration::from_millis(50));
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(every) => {
                    match self.client.extend(&self.queue, id, &claim, Some(self.lease)).await {
                        Err(e) if e.code() == Some(keel_wire::Code::ClaimLost)
                            || e.code() == Some(keel_wire::Code::TaskNotFound) => {
                            lost_tx.send_replace(true);
                        }
                        // A failed extension is tried again at the next tick.
                        _ => {}
                    }
                }
            }
        };
        if *lost_tx.borrow() {
            return Finish::Lost;
        }
        let finished = match &result {
            Ok(value) => self
                .client
                .complete(&self.queue, id, &claim, value.clone())
                .await
                .map(|_| Finish::Completed),
            Err(message) => self
                .client
                .fail(&self.queue, id, &claim, message, None)
                .await
                .map(|_| Finish::Failed),
        };
        finished.unwrap_or(Finish::Lost)
    }
}

/// How one task ended for its worker; the index of its counter.
#[derive(Clone, Copy)]
enum Finish {
    Completed = 0,
    Failed = 1,
    Lost = 2,
}
