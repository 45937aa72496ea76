//! Finishing tasks (complete, fail, extend), managing them (retry, delete, purge) and
//! inspecting them (a task, its payload, a listing, queue counts).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use keel_state::{Outcome, QueueCommand, QueueError, QueueOutcome, Task, TaskChanged, TaskState};
use keel_wire::{
    CompleteRequest, ExtendRequest, FailRequest, QueueInfo, QueueList, TaskChangedResponse,
    TaskInfo, TaskList, TasksDeletedResponse,
};
use serde::Deserialize;

use super::{duration_arg, lease_ms, timestamp, QueueName, TaskPath};
use crate::extract::{json_body, Q};
use crate::respond::{read_point, unexpected};
use crate::{ApiError, AppState};

/// Largest `result` of a completed task, in bytes of JSON.
pub(crate) const MAX_RESULT: usize = 64 << 10;
/// Longest `error` kept from a failure, in bytes (longer ones are cut, keeping the end).
const MAX_ERROR: usize = 4 << 10;
/// Default and largest page of a task listing.
const DEFAULT_LIST: usize = 100;
const MAX_LIST: usize = 1_000;
/// Tasks deleted per command by a purge.
const PURGE_BATCH: u32 = 1_000;

/// A task state's wire form.
pub(crate) fn wire_state(s: TaskState) -> keel_wire::TaskState {
    match s {
        TaskState::Pending => keel_wire::TaskState::Pending,
        TaskState::Running => keel_wire::TaskState::Running,
        TaskState::Done => keel_wire::TaskState::Done,
        TaskState::Dead => keel_wire::TaskState::Dead,
    }
}

/// The claim token's revision, if the token is well formed and names task `id`; a token for
/// another task is a lost claim, not a malformed one.
pub(crate) fn claim_revision(queue: &str, id: u64, token: &str) -> Result<u64, ApiError> {
    match keel_wire::parse_claim_token(token) {
        None => Err(ApiError::invalid(format!("{token:?} is not a claim token"))),
        Some((revision, for_id)) if for_id == id => Ok(revision),
        Some(_) => Err(keel_state::CommandError::from(QueueError::ClaimLost {
            queue: queue.to_owned(),
            id,
        })
        .into()),
    }
}

/// A completed task's result as stored: its JSON text, at most [`MAX_RESULT`] bytes.
pub(crate) fn result_bytes(result: Option<&serde_json::Value>) -> Result<Option<Bytes>, ApiError> {
    let Some(value) = result else { return Ok(None) };
    let text = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("writing the result: {e}")))?;
    if text.len() > MAX_RESULT {
        return Err(ApiError::too_large(
            keel_wire::Code::ValueTooLarge,
            format!(
                "a task result of {} bytes of JSON is over the limit",
                text.len()
            ),
            MAX_RESULT,
        ));
    }
    Ok(Some(Bytes::from(text)))
}

/// The last `MAX_ERROR` bytes of an error message, cut at a character boundary.
fn error_tail(error: &str) -> String {
    if error.len() <= MAX_ERROR {
        return error.to_owned();
    }
    let mut start = error.len() - MAX_ERROR;
    while !error.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &error[start..])
}

fn changed(id: u64, c: TaskChanged) -> TaskChangedResponse {
    TaskChangedResponse {
        id,
        state: wire_state(c.state),
        attempt: c.attempt,
        revision: c.revision,
        not_before: (c.state == TaskState::Pending).then(|| timestamp(c.not_before_ms)),
        lease_expires_at: c.lease_expires_at_ms.map(timestamp),
    }
}

async fn change(
    state: &AppState,
    id: u64,
    command: QueueCommand,
) -> Result<Json<TaskChangedResponse>, ApiError> {
    match state.propose(command.into()).await? {
        Outcome::Queue(QueueOutcome::Changed(c)) => Ok(Json(changed(id, c))),
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn complete(
    State(state): State<AppState>,
    TaskPath { queue, id }: TaskPath,
    body: Body,
) -> Result<Json<TaskChangedResponse>, ApiError> {
    let req: CompleteRequest = json_body(&state.config, body).await?;
    let claim = claim_revision(&queue, id, &req.claim)?;
    let result = result_bytes(req.result.as_ref())?;
    let command = QueueCommand::Complete {
        queue,
        id,
        claim,
        result,
    };
    change(&state, id, command).await
}

pub(crate) async fn fail(
    State(state): State<AppState>,
    TaskPath { queue, id }: TaskPath,
    body: Body,
) -> Result<Json<TaskChangedResponse>, ApiError> {
    let req: FailRequest = json_body(&state.config, body).await?;
    let claim = claim_revision(&queue, id, &req.claim)?;
    let retry_in = duration_arg("retry_in", req.retry_in.as_deref(), req.retry_in_ms)?;
    let command = QueueCommand::Fail {
        queue,
        id,
        claim,
        error: error_tail(&req.error),
        retry_in_ms: retry_in.map(|d| d.as_millis() as u64),
    };
    change(&state, id, command).await
}

pub(crate) async fn extend(
    State(state): State<AppState>,
    TaskPath { queue, id }: TaskPath,
    body: Body,
) -> Result<Json<TaskChangedResponse>, ApiError> {
    let req: ExtendRequest = json_body(&state.config, body).await?;
    let claim = claim_revision(&queue, id, &req.claim)?;
    let lease_ms = lease_ms(&state.config, req.lease.as_deref(), req.lease_ms)?;
    let command = QueueCommand::Extend {
        queue,
        id,
        claim,
        lease_ms,
    };
    change(&state, id, command).await
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    TaskPath { queue, id }: TaskPath,
) -> Result<Json<TaskChangedResponse>, ApiError> {
    change(&state, id, QueueCommand::Retry { queue, id }).await
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    TaskPath { queue, id }: TaskPath,
) -> Result<Json<TasksDeletedResponse>, ApiError> {
    match state
        .propose(QueueCommand::Delete { queue, id }.into())
        .await?
    {
        Outcome::Queue(QueueOutcome::Deleted { deleted, revision }) => {
            Ok(Json(TasksDeletedResponse { deleted, revision }))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeQuery {
    state: keel_wire::TaskState,
}

/// `DELETE /v1/queues/{queue}?state=done|dead`: deletes every such task, a thousand per
/// command (so a purge of many is several commands, each atomic).
pub(crate) async fn purge(
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    Q(q): Q<PurgeQuery>,
) -> Result<Json<TasksDeletedResponse>, ApiError> {
    let which = match q.state {
        keel_wire::TaskState::Done => TaskState::Done,
        keel_wire::TaskState::Dead => TaskState::Dead,
        other => {
            return Err(ApiError::query(format!(
                "only done or dead tasks can be purged, not {}",
                other.as_str()
            )))
        }
    };
    let mut total = 0;
    loop {
        let command = QueueCommand::Purge {
            queue: queue.clone(),
            state: which,
            max: PURGE_BATCH,
        };
        match state.propose(command.into()).await? {
            Outcome::Queue(QueueOutcome::Deleted { deleted, revision }) => {
                total += deleted;
                if deleted < u64::from(PURGE_BATCH) {
                    return Ok(Json(TasksDeletedResponse {
                        deleted: total,
                        revision,
                    }));
                }
            }
            other => return Err(unexpected(other)),
        }
    }
}

/// A task's JSON, with its payload if asked.
pub(crate) fn info(t: &Task, with_payload: bool) -> TaskInfo {
    let (payload, payload_base64) = if with_payload {
        keel_wire::encode_value(&t.payload)
    } else {
        (None, None)
    };
    TaskInfo {
        id: t.id,
        state: wire_state(t.state),
        attempt: t.attempt,
        max_attempts: t.max_attempts,
        priority: t.priority,
        enqueued_at: timestamp(t.enqueued_at_ms),
        not_before: timestamp(t.not_before_ms),
        lease_expires_at: t.claim.as_ref().map(|c| timestamp(c.expires_at_ms)),
        worker: t.worker.clone(),
        last_error: t.last_error.clone(),
        result: t
            .result
            .as_ref()
            .and_then(|r| serde_json::from_slice(r).ok()),
        finished_at: t.finished_at_ms.map(timestamp),
        content_type: t.content_type.clone(),
        dedupe_key: t.dedupe_key.clone(),
        payload_size: t.payload.len() as u64,
        payload,
        payload_base64,
        revision: t.revision,
    }
}

fn task_not_found(queue: &str, id: u64) -> ApiError {
    keel_state::CommandError::from(QueueError::TaskNotFound {
        queue: queue.to_owned(),
        id,
    })
    .into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    #[serde(default)]
    payload: bool,
    #[serde(default)]
    stale: bool,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    TaskPath { queue, id }: TaskPath,
    Q(q): Q<GetQuery>,
) -> Result<Json<TaskInfo>, ApiError> {
    read_point(&state, q.stale).await?;
    state
        .node
        .state()
        .read(|s| {
            s.queue(&queue)
                .and_then(|qu| qu.task(id))
                .map(|t| info(t, q.payload))
        })
        .map(Json)
        .ok_or_else(|| task_not_found(&queue, id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PayloadQuery {
    #[serde(default)]
    stale: bool,
}

/// `GET …/tasks/{id}/payload`: the raw payload bytes, with the content type they were
/// enqueued with.
pub(crate) async fn payload(
    State(state): State<AppState>,
    TaskPath { queue, id }: TaskPath,
    Q(q): Q<PayloadQuery>,
) -> Result<Response, ApiError> {
    read_point(&state, q.stale).await?;
    let found = state.node.state().read(|s| {
        s.queue(&queue)
            .and_then(|qu| qu.task(id))
            .map(|t| (t.payload.clone(), t.content_type.clone()))
    });
    let (bytes, content_type) = found.ok_or_else(|| task_not_found(&queue, id))?;
    let mut resp = Body::from(bytes).into_response();
    let content_type = content_type
        .and_then(|t| HeaderValue::from_str(&t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<keel_wire::TaskState>,
    limit: Option<usize>,
    #[serde(default)]
    after: u64,
    #[serde(default)]
    payload: bool,
    #[serde(default)]
    stale: bool,
}

/// `GET /v1/queues/{queue}/tasks?state=&limit=&after=`: tasks in id order.
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    Q(q): Q<ListQuery>,
) -> Result<Json<TaskList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::query(format!("limit must be 1 to {MAX_LIST}")));
    }
    let which = q.state.map(|s| match s {
        keel_wire::TaskState::Pending => TaskState::Pending,
        keel_wire::TaskState::Running => TaskState::Running,
        keel_wire::TaskState::Done => TaskState::Done,
        keel_wire::TaskState::Dead => TaskState::Dead,
    });
    read_point(&state, q.stale).await?;
    let list = state.node.state().read(|s| match s.queue(&queue) {
        None => TaskList {
            items: Vec::new(),
            more: false,
        },
        Some(qu) => {
            let (tasks, more) = qu.list(which, q.after, limit);
            TaskList {
                items: tasks.into_iter().map(|t| info(t, q.payload)).collect(),
                more,
            }
        }
    });
    Ok(Json(list))
}

fn counts_of(name: &str, q: &keel_state::queue::Queue, now: u64) -> QueueInfo {
    let c = q.counts();
    QueueInfo {
        name: name.to_owned(),
        pending: c.pending,
        running: c.running,
        done: c.done,
        dead: c.dead,
        oldest_pending_age_ms: q
            .oldest_pending()
            .map(|t| now.saturating_sub(t.enqueued_at_ms)),
        next_id: q.next_id(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaleQuery {
    #[serde(default)]
    stale: bool,
}

/// `GET /v1/queues`: every queue's counts.
pub(crate) async fn list_queues(
    State(state): State<AppState>,
    Q(q): Q<StaleQuery>,
) -> Result<Json<QueueList>, ApiError> {
    read_point(&state, q.stale).await?;
    let now = state.node.clock().now_ms();
    let queues = state.node.state().read(|s| {
        s.queues()
            .map(|(name, qu)| counts_of(name, qu, now))
            .collect()
    });
    Ok(Json(QueueList { queues }))
}

/// `GET /v1/queues/{queue}`: one queue's counts; `404 queue_not_found` before its first task.
pub(crate) async fn queue_info(
    State(state): State<AppState>,
    QueueName(queue): QueueName,
    Q(q): Q<StaleQuery>,
) -> Result<Json<QueueInfo>, ApiError> {
    read_point(&state, q.stale).await?;
    let now = state.node.clock().now_ms();
    state
        .node
        .state()
        .read(|s| s.queue(&queue).map(|qu| counts_of(&queue, qu, now)))
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                keel_wire::Code::QueueNotFound,
                format!("queue {queue:?} has never had a task"),
            )
        })
}
