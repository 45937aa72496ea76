//! The task-lease duty: tasks whose worker went silent go back to their queue.
//!
//! On taking leadership it proposes `QueueCommand::RefreshLeases`, so every running task's
//! lease restarts in full (a failover never takes a task from a live worker). Then each step
//! proposes `QueueCommand::ExpireLeases` for the running tasks whose lease has run out, or
//! sleeps until the earliest deadline; a claim or an extension applied meanwhile wakes it
//! sooner. The state machine re-checks each deadline against the
//! command's own time, so an extension or a completion that lands first wins.

use std::time::Duration;

use keel_raft::ProposeError;
use keel_state::QueueCommand;

use super::{Duty, Host, Step};

/// Tasks put back per command.
const BATCH: usize = 1_000;

/// Puts back running tasks whose lease has run out.
pub(crate) struct TaskLeases;

impl Duty for TaskLeases {
    fn name(&self) -> &'static str {
        "task_leases"
    }

    async fn start<H: Host>(&mut self, host: &H) -> Result<(), ProposeError> {
        host.propose(QueueCommand::RefreshLeases.into()).await?;
        Ok(())
    }

    async fn step<H: Host>(&mut self, host: &H) -> Result<Step, ProposeError> {
        let now = host.now_ms();
        let (next, due) = host.read(|s| {
            (
                s.next_task_lease_deadline(),
                s.expired_task_leases(now, BATCH),
            )
        });
        if due.is_empty() {
            let wait = next.map(|deadline| Duration::from_millis(deadline.saturating_sub(now)));
            return Ok(Step::Idle(wait));
        }
        tracing::debug!(tasks = due.len(), "task leases ran out");
        host.propose(QueueCommand::ExpireLeases { tasks: due }.into())
            .await?;
        Ok(Step::Busy)
    }
}
