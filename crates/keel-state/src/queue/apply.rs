//! Applying queue commands: every check first, then the writes, each through `Queue::put`
//! and `Queue::remove` so that the indexes follow. The transaction's queue operations use
//! the same checks and writes ([`check_enqueue`], [`enqueue`], [`check_claim`], [`complete`]).

use bytes::Bytes;

use super::command::FIRST_BACKOFF_MS;
use super::{
    event, Claim, ClaimedTask, Enqueue, Queue, QueueCommand, QueueError, QueueOutcome, Queues,
    Task, TaskChanged, TaskEventKind, TaskId, TaskState, MAX_BACKOFF_MS,
};
use crate::writes::Writes;
use crate::{CommandError, Revision};

/// The default pause after the `attempt`-th failure: 1 s, doubling, at most 5 min.
pub(crate) fn backoff_ms(attempt: u32) -> u64 {
    let doublings = attempt.saturating_sub(1).min(20);
    (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
}

fn not_found(queue: &str, id: TaskId) -> QueueError {
    QueueError::TaskNotFound {
        queue: queue.to_owned(),
        id,
    }
}

/// The task, if it exists.
fn task<'a>(queues: &'a Queues, queue: &str, id: TaskId) -> Result<&'a Task, QueueError> {
    queues
        .get(queue)
        .and_then(|q| q.task(id))
        .ok_or_else(|| not_found(queue, id))
}

/// Checks that `claim` is the running task's current claim.
pub(crate) fn check_claim(
    queues: &Queues,
    queue: &str,
    id: TaskId,
    claim: Revision,
) -> Result<(), QueueError> {
    let t = task(queues, queue, id)?;
    match (&t.state, &t.claim) {
        (TaskState::Running, Some(c)) if c.token == claim => Ok(()),
        _ => Err(QueueError::ClaimLost {
            queue: queue.to_owned(),
            id,
        }),
    }
}

/// Checks that `e` can be enqueued when `before` more tasks are enqueued to its queue first
/// (earlier in the same transaction): the unfinished task holding its dedupe key, if any.
pub(crate) fn check_enqueue(
    queues: &Queues,
    e: &Enqueue,
    before: u64,
) -> Result<Option<TaskId>, QueueError> {
    let q = queues.get(&e.queue);
    if let Some(id) = e
        .dedupe_key
        .as_deref()
        .and_then(|k| q.and_then(|q| q.deduped(k)))
    {
        return Ok(Some(id));
    }
    let held = q.map_or(0, |q| q.len() as u64) + before;
    if held >= e.max_tasks {
        return Err(QueueError::QueueFull {
            queue: e.queue.clone(),
            limit: e.max_tasks,
        });
    }
    Ok(None)
}

/// Enqueues `e` (checked by [`check_enqueue`]): its id, and whether it is new.
pub(crate) fn enqueue(queues: &mut Queues, w: &mut Writes, e: &Enqueue) -> (TaskId, bool) {
    let q = queues.get_or_create(&e.queue);
    if let Some(id) = e.dedupe_key.as_deref().and_then(|k| q.deduped(k)) {
        return (id, false);
    }
    let now = w.now_ms;
    let id = q.next_id;
    q.next_id += 1;
    let task = Task {
        id,
        payload: e.payload.clone(),
        content_type: e.content_type.clone(),
        state: TaskState::Pending,
        priority: e.priority,
        max_attempts: e.max_attempts,
        attempt: 0,
        enqueued_at_ms: now,
        not_before_ms: now.saturating_add(e.delay_ms),
        claim: None,
        worker: None,
        last_error: None,
        result: None,
        finished_at_ms: None,
        dedupe_key: e.dedupe_key.clone(),
        revision: w.revision,
    };
    event(w, &e.queue, &task, TaskEventKind::Enqueued, false);
    q.put(task, now);
    (id, true)
}

/// Changes one task with `f` and records `kind` on the feed; the task must exist.
fn change(
    queues: &mut Queues,
    w: &mut Writes,
    queue: &str,
    id: TaskId,
    kind: TaskEventKind,
    f: impl FnOnce(&mut Task, u64),
) -> Result<TaskChanged, QueueError> {
    let now = w.now_ms;
    let q: &mut Queue = queues.get_mut(queue).ok_or_else(|| not_found(queue, id))?;
    let mut t = q.task(id).cloned().ok_or_else(|| not_found(queue, id))?;
    f(&mut t, now);
    t.revision = w.revision;
    event(w, queue, &t, kind, false);
    let changed = TaskChanged::of(&t, w.revision);
    q.put(t, now);
    Ok(changed)
}

/// Makes a task done with `result` (its claim checked by [`check_claim`]).
pub(crate) fn complete(
    queues: &mut Queues,
    w: &mut Writes,
    queue: &str,
    id: TaskId,
    result: Option<Bytes>,
) -> Result<TaskChanged, QueueError> {
    change(queues, w, queue, id, TaskEventKind::Completed, |t, now| {
        t.state = TaskState::Done;
        t.claim = None;
        t.result = result;
        t.finished_at_ms = Some(now);
    })
}

/// A running task's attempt ended without success: pending again `retry_in_ms` from `now`, or
/// dead if that was its last allowed attempt.
fn put_back(t: &mut Task, now: u64, error: String, retry_in_ms: u64) {
    t.claim = None;
    t.last_error = Some(error);
    if t.max_attempts != 0 && t.attempt >= t.max_attempts {
        t.state = TaskState::Dead;
        t.finished_at_ms = Some(now);
    } else {
        t.state = TaskState::Pending;
        t.not_before_ms = now.saturating_add(retry_in_ms);
    }
}

/// Applies a queue command: every check first, then the writes.
pub(crate) fn apply(
    cmd: &QueueCommand,
    queues: &mut Queues,
    w: &mut Writes,
) -> Result<QueueOutcome, CommandError> {
    let now = w.now_ms;
    match cmd {
        QueueCommand::Enqueue(e) => {
            check_enqueue(queues, e, 0)?;
            let (id, created) = enqueue(queues, w, e);
            Ok(QueueOutcome::Enqueued {
                id,
                revision: w.revision_after(),
                created,
            })
        }
        QueueCommand::Claim {
            queue,
            worker,
            lease_ms,
            max,
        } => {
            if *lease_ms == 0 || *max == 0 {
                return Err(QueueError::Invalid(
                    "a claim needs a lease and at least one task".into(),
                )
                .into());
            }
            let mut tasks = Vec::new();
            if let Some(q) = queues.get_mut(queue) {
                while tasks.len() < *max as usize {
                    let Some(id) = q.next_ready(now) else { break };
                    let Some(mut t) = q.task(id).cloned() else {
                        break;
                    };
                    t.state = TaskState::Running;
                    t.attempt = t.attempt.saturating_add(1);
                    t.claim = Some(Claim {
                        token: w.revision,
                        lease_ms: *lease_ms,
                        expires_at_ms: now.saturating_add(*lease_ms),
                    });
                    t.worker = Some(worker.clone());
                    t.revision = w.revision;
                    event(w, queue, &t, TaskEventKind::Claimed, false);
                    tasks.push(ClaimedTask {
                        id,
                        payload: t.payload.clone(),
                        content_type: t.content_type.clone(),
                        attempt: t.attempt,
                        claim: w.revision,
                        lease_expires_at_ms: now.saturating_add(*lease_ms),
                        enqueued_at_ms: t.enqueued_at_ms,
                    });
                    q.put(t, now);
                }
            }
            Ok(QueueOutcome::Claimed {
                tasks,
                revision: w.revision_after(),
            })
        }
        QueueCommand::Complete {
            queue,
            id,
            claim,
            result,
        } => {
            check_claim(queues, queue, *id, *claim)?;
            Ok(QueueOutcome::Changed(complete(
                queues,
                w,
                queue,
                *id,
                result.clone(),
            )?))
        }
        QueueCommand::Fail {
            queue,
            id,
            claim,
            error,
            retry_in_ms,
        } => {
            check_claim(queues, queue, *id, *claim)?;
            let changed = change(queues, w, queue, *id, TaskEventKind::Failed, |t, now| {
                let wait = retry_in_ms.unwrap_or_else(|| backoff_ms(t.attempt));
                put_back(t, now, error.clone(), wait);
            })?;
            Ok(QueueOutcome::Changed(changed))
        }
        QueueCommand::Extend {
            queue,
            id,
            claim,
            lease_ms,
        } => {
            if *lease_ms == 0 {
                return Err(QueueError::Invalid("a lease must be longer than zero".into()).into());
            }
            check_claim(queues, queue, *id, *claim)?;
            let changed = change(queues, w, queue, *id, TaskEventKind::Extended, |t, now| {
                if let Some(c) = &mut t.claim {
                    c.lease_ms = *lease_ms;
                    c.expires_at_ms = now.saturating_add(*lease_ms);
                }
            })?;
            Ok(QueueOutcome::Changed(changed))
        }
        QueueCommand::Retry { queue, id } => {
            let t = task(queues, queue, *id)?;
            if !matches!(t.state, TaskState::Done | TaskState::Dead) {
                return Err(QueueError::NotFinished {
                    queue: queue.clone(),
                    id: *id,
                    state: t.state,
                }
                .into());
            }
            // The dedupe key goes with it unless another unfinished task has taken it since.
            let key_taken = t.dedupe_key.as_deref().is_some_and(|k| {
                queues
                    .get(queue)
                    .is_some_and(|q| q.deduped(k).is_some_and(|other| other != *id))
            });
            let changed = change(queues, w, queue, *id, TaskEventKind::Retried, |t, now| {
                t.state = TaskState::Pending;
                t.attempt = 0;
                t.not_before_ms = now;
                t.result = None;
                t.finished_at_ms = None;
                if key_taken {
                    t.dedupe_key = None;
                }
            })?;
            Ok(QueueOutcome::Changed(changed))
        }
        QueueCommand::Delete { queue, id } => {
            let t = task(queues, queue, *id)?;
            if t.state == TaskState::Running {
                return Err(QueueError::TaskRunning {
                    queue: queue.clone(),
                    id: *id,
                }
                .into());
            }
            let deleted = remove(queues, w, queue, *id);
            Ok(QueueOutcome::Deleted {
                deleted,
                revision: w.revision_after(),
            })
        }
        QueueCommand::Purge { queue, state, max } => {
            if !matches!(state, TaskState::Done | TaskState::Dead) {
                return Err(
                    QueueError::Invalid("only done or dead tasks can be purged".into()).into(),
                );
            }
            let ids: Vec<TaskId> = queues.get(queue).map_or_else(Vec::new, |q| {
                q.by_state[state.index()]
                    .iter()
                    .take(*max as usize)
                    .copied()
                    .collect()
            });
            let deleted = ids.into_iter().map(|id| remove(queues, w, queue, id)).sum();
            Ok(QueueOutcome::Deleted {
                deleted,
                revision: w.revision_after(),
            })
        }
        QueueCommand::ExpireLeases { tasks } => {
            let mut expired = Vec::new();
            for (queue, id) in tasks {
                let due = queues
                    .get(queue)
                    .and_then(|q| q.task(*id))
                    .is_some_and(|t| {
                        t.state == TaskState::Running
                            && t.claim.as_ref().is_some_and(|c| c.expires_at_ms <= now)
                    });
                if due {
                    change(
                        queues,
                        w,
                        queue,
                        *id,
                        TaskEventKind::LeaseExpired,
                        |t, now| {
                            put_back(t, now, "lease expired".into(), 0);
                        },
                    )?;
                    expired.push((queue.clone(), *id));
                }
            }
            Ok(QueueOutcome::Expired {
                tasks: expired,
                revision: w.revision_after(),
            })
        }
        QueueCommand::RefreshLeases => {
            let mut count = 0;
            let names: Vec<String> = queues.iter().map(|(n, _)| n.clone()).collect();
            for name in names {
                let Some(q) = queues.get_mut(&name) else {
                    continue;
                };
                let running: Vec<TaskId> = q.running.iter().map(|&(_, id)| id).collect();
                for id in running {
                    let Some(mut t) = q.task(id).cloned() else {
                        continue;
                    };
                    if let Some(c) = &mut t.claim {
                        c.expires_at_ms = now.saturating_add(c.lease_ms);
                    }
                    q.put(t, now);
                    count += 1;
                }
            }
            Ok(QueueOutcome::Refreshed { tasks: count })
        }
        QueueCommand::DropDone { retention_ms, max } => {
            let cutoff = now.saturating_sub(*retention_ms);
            let mut due: Vec<(u64, String, TaskId)> = Vec::new();
            for (name, q) in queues.iter() {
                due.extend(
                    q.done
                        .iter()
                        .take_while(|&&(at, _)| at <= cutoff)
                        .take(*max as usize)
                        .map(|&(at, id)| (at, name.clone(), id)),
                );
            }
            due.sort();
            due.truncate(*max as usize);
            let deleted = due
                .into_iter()
                .map(|(_, queue, id)| remove(queues, w, &queue, id))
                .sum();
            Ok(QueueOutcome::Deleted {
                deleted,
                revision: w.revision_after(),
            })
        }
    }
}

/// Deletes a task and records it on the feed: 1, or 0 if it did not exist.
fn remove(queues: &mut Queues, w: &mut Writes, queue: &str, id: TaskId) -> u64 {
    let Some(t) = queues.get_mut(queue).and_then(|q| q.remove(id)) else {
        return 0;
    };
    event(w, queue, &t, TaskEventKind::Deleted, true);
    1
}
