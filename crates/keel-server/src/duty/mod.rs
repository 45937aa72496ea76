//! Leader duties: work that only the leader does, by proposing commands: key lease expiry,
//! task lease expiry and done-task retention today; health checks next.
//!
//! One harness runs every duty the same way (after garage's background workers):
//! - it waits until this node leads, then until it has applied its predecessor's log (a read
//!   barrier succeeds), and only then calls [`Duty::start`] for the new term;
//! - it calls [`Duty::step`] again and again: [`Step::Busy`] means "more to do now",
//!   [`Step::Idle`] "nothing until this long has passed, or a deadline may have come
//!   sooner": an applied command that may set an earlier deadline (a lease granted, a task
//!   claimed or completed, [`keel_state::Command::sets_deadline`]) wakes idle duties, whichever node
//!   proposed it;
//! - it stops the duty when leadership is lost (a new term starts over), and when the server
//!   stops, giving a step in flight until [`STOP_DEADLINE`] to finish.
//!
//! A duty sees the node through [`Host`]: the applied state, proposals and the clock. Time
//! comes only from [`Host::now_ms`] and tokio's timers, so duties run under paused tokio time
//! in tests and their deadlines are asserted exactly.

pub(crate) mod lease_expiry;
pub(crate) mod task_leases;
pub(crate) mod task_retention;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_raft::{Node, NodeStatus, ProposeError};
use keel_state::{Command, Outcome, Store};
use tokio::sync::watch;

/// Pause after a failed step before trying again.
const RETRY: Duration = Duration::from_millis(200);
/// How long a step in flight may still run once the server stops.
pub(crate) const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// What one step of a duty did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Did some work; call again at once.
    Busy,
    /// Nothing to do until `Some(duration)` has passed, unless a deadline may have come
    /// sooner; `None`: nothing until then (or the next term).
    Idle(Option<Duration>),
}

/// What a duty may do: read the applied state, propose, and read the clock.
pub(crate) trait Host: Send + Sync + 'static {
    /// The node's Raft status: whether it leads, and in which term.
    fn status(&self) -> watch::Receiver<NodeStatus>;
    /// Changes when an applied command may have set an earlier deadline.
    fn deadlines(&self) -> watch::Receiver<u64>;
    /// Resolves once this node has applied every entry committed before it led.
    fn ready(&self) -> impl Future<Output = Result<(), ProposeError>> + Send;
    /// Proposes a command and waits for its outcome.
    fn propose(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Outcome, ProposeError>> + Send;
    /// Reads the applied state.
    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R;
    /// Now, in the clock requests are stamped with.
    fn now_ms(&self) -> u64;
}

impl Host for Arc<Node> {
    fn status(&self) -> watch::Receiver<NodeStatus> {
        Node::status(self)
    }

    fn deadlines(&self) -> watch::Receiver<u64> {
        self.state().deadlines()
    }

    fn ready(&self) -> impl Future<Output = Result<(), ProposeError>> + Send {
        self.read_barrier()
    }

    fn propose(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Outcome, ProposeError>> + Send {
        Node::propose(self, command)
    }

    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        self.state().read(f)
    }

    fn now_ms(&self) -> u64 {
        self.clock().now_ms()
    }
}

/// One kind of leader work.
pub(crate) trait Duty: Send + 'static {
    /// A name for logs.
    fn name(&self) -> &'static str;
    /// Called once per term of leadership, before the first step.
    fn start<H: Host>(&mut self, host: &H)
        -> impl Future<Output = Result<(), ProposeError>> + Send;
    /// Does some work, or says how long there is none.
    fn step<H: Host>(
        &mut self,
        host: &H,
    ) -> impl Future<Output = Result<Step, ProposeError>> + Send;
}

/// A running duty.
pub(crate) struct DutyHandle {
    task: tokio::task::JoinHandle<()>,
}

impl DutyHandle {
    /// Waits until the duty has stopped (after the stop signal).
    pub(crate) async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "a leader duty ended abnormally");
        }
    }
}

/// Runs `duty` on `host` until `stop` becomes true.
pub(crate) fn spawn<H: Host, D: Duty>(host: H, duty: D, stop: watch::Receiver<bool>) -> DutyHandle {
    DutyHandle {
        task: tokio::spawn(run(host, duty, stop)),
    }
}

/// Why a term's work ended.
enum Ended {
    /// Leadership was lost (or the term changed): wait to lead again.
    Lost,
    /// The server is stopping.
    Stopped,
}

async fn run<H: Host, D: Duty>(host: H, mut duty: D, mut stop: watch::Receiver<bool>) {
    let mut status = host.status();
    loop {
        tokio::select! {
            r = status.wait_for(|s| s.is_leader) => if r.is_err() { return },
            () = stopped(&mut stop) => return,
        }
        let term = status.borrow().term;
        tracing::debug!(duty = duty.name(), term, "leading: starting duty");
        match lead(&host, &mut duty, term, &mut stop).await {
            Ended::Lost => {
                tracing::debug!(duty = duty.name(), term, "leadership lost: duty paused")
            }
            Ended::Stopped => return,
        }
    }
}

/// Resolves when the server stops (or the stop signal's sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Resolves when this node no longer leads in `term`.
async fn lost(mut status: watch::Receiver<NodeStatus>, term: u64) {
    let _ = status.wait_for(|s| !s.is_leader || s.term != term).await;
}

/// Runs `fut` unless leadership is lost or the server stops first. On stop, a step already
/// running gets until [`STOP_DEADLINE`] to finish.
async fn guarded<H: Host, T>(
    host: &H,
    term: u64,
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Result<T, Ended> {
    tokio::pin!(fut);
    tokio::select! {
        out = &mut fut => Ok(out),
        _ = lost(host.status(), term) => Err(Ended::Lost),
        () = stopped(stop) => {
            let _ = tokio::time::timeout(STOP_DEADLINE, fut).await;
            Err(Ended::Stopped)
        }
    }
}

/// One term of leadership: wait until ready, start, then step until lost or stopped.
async fn lead<H: Host, D: Duty>(
    host: &H,
    duty: &mut D,
    term: u64,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut started = false;
    let mut deadlines = host.deadlines();
    loop {
        // What was applied before this step is seen by it.
        deadlines.mark_unchanged();
        let result = if started {
            guarded(host, term, stop, duty.step(host)).await
        } else {
            let begin = async {
                host.ready().await?;
                duty.start(host).await.map(|()| Step::Busy)
            };
            guarded(host, term, stop, begin).await
        };
        let wait = match result {
            Err(ended) => return ended,
            Ok(Ok(step)) => {
                started = true;
                match step {
                    Step::Busy => continue,
                    Step::Idle(wait) => wait,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(duty = duty.name(), error = %e, "leader duty failed; retrying");
                Some(RETRY)
            }
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = deadlines.changed() => {}
            _ = lost(host.status(), term) => return Ended::Lost,
            () = stopped(stop) => return Ended::Stopped,
        }
    }
}

#[cfg(test)]
mod tests;
