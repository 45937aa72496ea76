//! The lease expiry duty.
//!
//! On taking leadership it proposes `LeaseCommand::RefreshAll`, so every lease gets its full
//! time to live again (downtime or a leader change never mass-expires leases). Then each step
//! proposes `LeaseCommand::Expire` for the leases that are due, or sleeps until the earliest
//! deadline (a grant wakes it sooner). The state machine re-checks each deadline against the
//! command's own time, so a keepalive that lands first wins.

use std::time::Duration;

use keel_raft::ProposeError;
use keel_state::LeaseCommand;

use super::{Duty, Host, Step};

/// Expires leases whose deadline has passed.
pub(crate) struct LeaseExpiry;

impl Duty for LeaseExpiry {
    fn name(&self) -> &'static str {
        "lease_expiry"
    }

    async fn start<H: Host>(&mut self, host: &H) -> Result<(), ProposeError> {
        host.propose(LeaseCommand::RefreshAll.into()).await?;
        Ok(())
    }

    async fn step<H: Host>(&mut self, host: &H) -> Result<Step, ProposeError> {
        let now = host.now_ms();
        let (next, due) = host.read(|s| (s.next_lease_deadline(), s.expired_leases(now)));
        if due.is_empty() {
            let wait = next.map(|deadline| Duration::from_millis(deadline.saturating_sub(now)));
            return Ok(Step::Idle(wait));
        }
        tracing::debug!(leases = ?due, "expiring leases");
        host.propose(LeaseCommand::Expire { ids: due }.into())
            .await?;
        Ok(Step::Busy)
    }
}
