//! The leader's lease expiry worker.
//!
//! On taking leadership it proposes `LeaseRefreshAll`, so every lease gets its full time to
//! live again (downtime or a leader change never mass-expires leases). Then it sleeps until
//! the earliest deadline (or until a new lease is granted) and proposes `LeaseExpire` for the
//! leases that are due. The state machine re-checks each deadline against the command's own
//! time, so a keepalive that lands first wins.

use std::sync::Arc;
use std::time::Duration;

use keel_raft::Node;
use keel_state::Command;
use tokio::sync::{watch, Notify};

use crate::lease::now_ms;

/// Pause after a failed proposal before trying again.
const RETRY: Duration = Duration::from_millis(200);
/// Longest sleep when no lease exists (a grant wakes the worker earlier).
const IDLE: Duration = Duration::from_secs(3600);

pub(crate) async fn run(node: Arc<Node>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut status = node.status();
    loop {
        tokio::select! {
            r = status.wait_for(|s| s.is_leader) => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let term = status.borrow().term;
        if !propose_until_done(&node, Command::LeaseRefreshAll, &mut stop).await {
            return;
        }
        tracing::debug!(term, "lease deadlines refreshed for new leadership");
        loop {
            let still_leading = {
                let st = status.borrow();
                st.is_leader && st.term == term
            };
            if !still_leading {
                break;
            }
            let now = now_ms();
            let (next, due) = node
                .state()
                .read(|s| (s.next_lease_deadline(), s.expired_leases(now)));
            if !due.is_empty() {
                tracing::debug!(leases = ?due, "expiring leases");
                if !propose_until_done(&node, Command::LeaseExpire { ids: due }, &mut stop).await {
                    return;
                }
                continue;
            }
            let sleep = next.map_or(IDLE, |d| Duration::from_millis(d.saturating_sub(now)));
            let mut lost = status.clone();
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = wake.notified() => {}
                _ = lost.wait_for(|s| !s.is_leader || s.term != term) => break,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Proposes `command` until it is applied; false if the server is stopping or this node
/// stopped leading.
async fn propose_until_done(
    node: &Node,
    command: Command,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        match node.propose(command.clone()).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(error = %e, command = command.name(), "lease worker proposal failed");
                if !node.status().borrow().is_leader {
                    return true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.wait_for(|s| *s) => return false,
        }
    }
}
