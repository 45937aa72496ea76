//! `/v1/queues`: task queues. Enqueue and claim (a long poll) here; finishing, inspecting
//! and managing tasks in [`task`]; wake-ups in [`ready`].
//!
//! Every change is one [`QueueCommand`] (or a transaction's queue operation) proposed through
//! the log; the state machine picks the task a claim gets, so exactly one worker holds a
//! task at a time on every replica alike.

mod ready;
mod task;

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use keel_state::{Enqueue, Outcome, QueueCommand, QueueOutcome, TaskId};
use keel_wire::{ClaimResponse, ClaimedTask, Code, EnqueueResponse};
use serde::Deserialize;

pub(crate) use ready::ReadyBell;
pub(crate) use task::{claim_revision, result_bytes, wire_state};

use crate::extract::{read_body, PathText, Q};
use crate::respond::unexpected;
use crate::watch::{closed, MAX_WAIT};
use crate::{parse_duration, ApiError, AppState, ServerConfig};

/// Longest queue name, in bytes.
pub(crate) const MAX_NAME: usize = 255;
/// Most tasks one claim may take.
const MAX_CLAIM: u32 = 256;
/// Shortest and longest task lease.
const MIN_LEASE: Duration = Duration::from_millis(100);
const MAX_LEASE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest delay before a task may be claimed.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest dedupe key, worker name and content type, in bytes.
const MAX_LABEL: usize = 1024;
/// The default number of attempts a task gets.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// The routes of queues.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/queues", get(task::list_queues))
        .route(
            "/v1/queues/{queue}",
            get(task::queue_info).delete(task::purge),
        )
        .route(
            "/v1/queues/{queue}/tasks",
            post(enqueue).get(task::list_tasks),
        )
        .route("/v1/queues/{queue}/claim", post(claim))
        .route(
            "/v1/queues/{queue}/tasks/{id}",
            get(task::get).delete(task::delete),
        )
        .route("/v1/queues/{queue}/tasks/{id}/payload", get(task::payload))
        .route(
            "/v1/queues/{queue}/tasks/{id}/complete",
            post(task::complete),
        )
        .route("/v1/queues/{queue}/tasks/{id}/fail", post(task::fail))
        .route("/v1/queues/{queue}/tasks/{id}/extend", post(task::extend))
        .route("/v1/queues/{queue}/tasks/{id}/retry", post(task::retry))
}

/// Checks a queue name: 1 to 255 bytes of UTF-8, no `/`, no control characters (one path
/// segment under the key rules).
pub(crate) fn validate_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::new(Code::InvalidName, format!("queue name {name:?} {why}"));
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(bad(&format!("is longer than {MAX_NAME} bytes")));
    }
    if name.contains('/') {
        return Err(bad("contains '/'"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("contains a control character"));
    }
    Ok(())
}

/// A label (dedupe key, worker, content type): at most 1 KiB, no control characters.
fn validate_label(what: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_LABEL || text.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{what} must be at most {MAX_LABEL} bytes without control characters"
        )));
    }
    Ok(())
}

/// A queue name from the path, validated.
pub(crate) struct QueueName(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for QueueName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathText(name) = PathText::from_request_parts(parts, state).await?;
        validate_name(&name)?;
        Ok(QueueName(name))
    }
}

/// A (queue, task id) from the path, validated.
pub(crate) struct TaskPath {
    pub(crate) queue: String,
    pub(crate) id: TaskId,
}

impl<S: Send + Sync> FromRequestParts<S> for TaskPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((queue, id)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::new(Code::InvalidName, e.body_text()))?;
        validate_name(&queue)?;
        let id = id
            .parse::<TaskId>()
            .map_err(|_| ApiError::invalid(format!("task id {id:?} is not a number")))?;
        Ok(TaskPath { queue, id })
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 time in UTC, e.g.
/// `2026-12-07T19:00:00.123Z`.
pub(crate) fn timestamp(ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A duration given as text (`"10s"`) or milliseconds, at most one of them; `None` if
/// neither.
pub(crate) fn duration_arg(
    what: &str,
    text: Option<&str>,
    ms: Option<u64>,
) -> Result<Option<Duration>, ApiError> {
    match (text, ms) {
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "give {what} or {what}_ms, not both"
        ))),
        (Some(t), None) => parse_duration(t)
            .map(Some)
            .map_err(|e| ApiError::invalid(format!("{what}: {e}"))),
        (None, Some(ms)) => Ok(Some(Duration::from_millis(ms))),
        (None, None) => Ok(None),
    }
}

/// A task lease: the default when not given, within bounds.
pub(crate) fn lease_ms(
    config: &ServerConfig,
    text: Option<&str>,
    ms: Option<u64>,
) -> Result<u64, ApiError> {
    let lease = duration_arg("lease", text, ms)?.unwrap_or(config.queue_lease);
    if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
        return Err(ApiError::invalid(format!(
            "a task lease must be between {} ms and 7 days",
            MIN_LEASE.as_millis()
        )));
    }
    Ok(lease.as_millis() as u64)
}

/// The options of an enqueue, from the query string or a transaction's operation.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnqueueOptions {
    pub(crate) delay: Option<String>,
    pub(crate) delay_ms: Option<u64>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) priority: Option<i64>,
    pub(crate) dedupe_key: Option<String>,
}

/// Builds a validated enqueue command. The payload's size is the caller's to check.
pub(crate) fn enqueue_command(
    config: &ServerConfig,
    queue: String,
    payload: Bytes,
    content_type: Option<String>,
    options: EnqueueOptions,
) -> Result<Enqueue, ApiError> {
    validate_name(&queue)?;
    let delay = duration_arg("delay", options.delay.as_deref(), options.delay_ms)?
        .unwrap_or(Duration::ZERO);
    if delay > MAX_DELAY {
        return Err(ApiError::invalid("a delay must be at most 365 days"));
    }
    if let Some(k) = &options.dedupe_key {
        if k.is_empty() {
            return Err(ApiError::invalid("dedupe_key must not be empty"));
        }
        validate_label("dedupe_key", k)?;
    }
    if let Some(t) = &content_type {
        validate_label("the content type", t)?;
    }
    Ok(Enqueue {
        queue,
        payload,
        content_type,
        delay_ms: delay.as_millis() as u64,
        max_attempts: options.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
        priority: options.priority.unwrap_or(0),
        dedupe_key: options.dedupe_key,
        max_tasks: config.max_queue_tasks,
    })
}

pub(crate) async fn enqueue(
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    Q(options): Q<EnqueueOptions>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<EnqueueResponse>), ApiError> {
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("the Content-Type header is not text"))?
                .to_owned(),
        ),
    };
    let limit = state.config.max_value_size;
    let body = read_body(body, limit, Code::ValueTooLarge, "the payload").await?;
    // A copy of exactly the payload, not a slice that pins the connection's buffer.
    let payload = Bytes::copy_from_slice(&body);
    drop(body);
    let command = enqueue_command(&state.config, queue, payload, content_type, options)?;
    match state.propose(QueueCommand::Enqueue(command).into()).await? {
        Outcome::Queue(QueueOutcome::Enqueued {
            id,
            revision,
            created,
        }) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(EnqueueResponse { id, revision })))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimQuery {
    lease: Option<String>,
    lease_ms: Option<u64>,
    wait: Option<String>,
    wait_ms: Option<u64>,
    max: Option<u32>,
    worker: Option<String>,
}

fn claimed(t: keel_state::ClaimedTask) -> ClaimedTask {
    let (payload, payload_base64) = keel_wire::encode_value(&t.payload);
    ClaimedTask {
        id: t.id,
        payload,
        payload_base64,
        content_type: t.content_type,
        attempt: t.attempt,
        claim: keel_wire::claim_token(t.claim, t.id),
        lease_expires_at: timestamp(t.lease_expires_at_ms),
        enqueued_at: timestamp(t.enqueued_at_ms),
    }
}

/// Counts a claim in `keel_queue_claims_waiting` while it waits (also when its client goes
/// away and the handler is dropped).
struct Waiting(metrics::Gauge);

impl Waiting {
    fn start() -> Waiting {
        let g = metrics::gauge!("keel_queue_claims_waiting");
        g.increment(1.0);
        Waiting(g)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What a claim waiting for work learns from the local state.
enum Readiness {
    /// A task is ready now: propose the claim.
    Ready,
    /// Nothing is ready; the next delayed task becomes ready at this time, if any.
    NotUntil(Option<u64>),
}

fn readiness(state: &AppState, queue: &str) -> Readiness {
    let now = state.node.clock().now_ms();
    state.node.state().read(|s| match s.queue(queue) {
        Some(q) if q.has_ready(now) => Readiness::Ready,
        Some(q) => Readiness::NotUntil(q.next_ready_at()),
        None => Readiness::NotUntil(None),
    })
}

/// `POST /v1/queues/{queue}/claim?lease=&wait=&max=&worker=`: the best ready tasks under a
/// lease, `204` if none became ready within `wait`. Waits are woken by the applied change
/// that made a task pending, or timed to the next delayed task; never by polling.
pub(crate) async fn claim(
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Q(q): Q<ClaimQuery>,
) -> Result<Response, ApiError> {
    let lease_ms = lease_ms(&state.config, q.lease.as_deref(), q.lease_ms)?;
    let wait = duration_arg("wait", q.wait.as_deref(), q.wait_ms)?
        .unwrap_or(Duration::ZERO)
        .min(MAX_WAIT);
    let max = q.max.unwrap_or(1);
    if !(1..=MAX_CLAIM).contains(&max) {
        return Err(ApiError::query(format!("max must be 1 to {MAX_CLAIM}")));
    }
    let worker = q.worker.unwrap_or_else(|| remote.to_string());
    validate_label("worker", &worker)?;
    let deadline = tokio::time::Instant::now() + wait;
    let bell = state.ready.bell(&queue);
    let mut closing = state.closing.clone();
    // The local state may lag the leader: before saying "nothing", catch up to a
    // linearizable read point once. After a ring, the state has applied what rang.
    let mut caught_up = false;
    loop {
        let rung = bell.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let mut now = readiness(&state, &queue);
        if matches!(now, Readiness::NotUntil(_)) && !caught_up {
            state.node.read_barrier().await?;
            caught_up = true;
            now = readiness(&state, &queue);
        }
        let next_ready = match now {
            Readiness::Ready => {
                let command = QueueCommand::Claim {
                    queue: queue.clone(),
                    worker: worker.clone(),
                    lease_ms,
                    max,
                };
                match state.propose(command.into()).await? {
                    Outcome::Queue(QueueOutcome::Claimed { tasks, .. }) if !tasks.is_empty() => {
                        let tasks = tasks.into_iter().map(claimed).collect();
                        return Ok(Json(ClaimResponse { tasks }).into_response());
                    }
                    // Another worker took what was ready: wait for the next, once this node
                    // has applied what the claim saw (else a follower that lags would still
                    // show the taken task ready, and claim again and again).
                    Outcome::Queue(QueueOutcome::Claimed { revision, .. }) => {
                        let mut applied = state.node.state().revision();
                        let caught_up = applied.wait_for(|r| *r >= revision);
                        let _ = tokio::time::timeout_at(deadline, caught_up).await;
                        continue;
                    }
                    other => return Err(unexpected(other)),
                }
            }
            Readiness::NotUntil(next) => next,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Until the next delayed task is due (by the clock claims are stamped with), or the
        // deadline.
        let until_ready = next_ready
            .map(|at| Duration::from_millis(at.saturating_sub(state.node.clock().now_ms())));
        let until = tokio::time::Instant::now() + until_ready.map_or(left, |d| d.min(left));
        let _waiting = Waiting::start();
        tokio::select! {
            _ = &mut rung => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = closed(&mut closing) => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}
