//! The retention duty: done tasks are deleted once they have been done for
//! `--queue-retention`, oldest first, a thousand per command. Dead tasks stay until someone
//! retries or deletes them.
//!
//! With no done task it waits until one is completed (a completion is a deadline the state
//! machine signals, `Command::sets_deadline`).

use std::time::Duration;

use keel_raft::ProposeError;
use keel_state::QueueCommand;

use super::{Duty, Host, Step};

/// Tasks deleted per command.
const BATCH: u32 = 1_000;

/// Deletes done tasks past their retention.
pub(crate) struct TaskRetention {
    /// How long done tasks are kept.
    pub(crate) retention: Duration,
}

impl Duty for TaskRetention {
    fn name(&self) -> &'static str {
        "task_retention"
    }

    async fn start<H: Host>(&mut self, _host: &H) -> Result<(), ProposeError> {
        Ok(())
    }

    async fn step<H: Host>(&mut self, host: &H) -> Result<Step, ProposeError> {
        let now = host.now_ms();
        let retention_ms = self.retention.as_millis() as u64;
        let Some(oldest) = host.read(|s| s.oldest_done_task_at()) else {
            return Ok(Step::Idle(None));
        };
        let due_at = oldest.saturating_add(retention_ms);
        if due_at > now {
            return Ok(Step::Idle(Some(Duration::from_millis(due_at - now))));
        }
        let command = QueueCommand::DropDone {
            retention_ms,
            max: BATCH,
        };
        host.propose(command.into()).await?;
        Ok(Step::Busy)
    }
}
