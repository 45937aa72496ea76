//! Forwarding writes from a follower to the leader, many per call.
//!
//! A write that reaches a follower is sent to the leader as a [`PeerCall::Propose`]; the
//! leader proposes it as its own (stamped with its clock, in its group commit) and answers
//! with the outcome, which the follower hands back to its client unchanged. Writes that wait
//! together travel together: one task takes every forward that is queued, sends one call per
//! leader address, and lets at most [`IN_FLIGHT`] calls be in flight at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_state::{Command, Outcome};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::network::Peers;
use crate::peer::{PeerCall, PeerError};
use crate::ProposeError;

/// Calls to the leader in flight at once; writes that arrive meanwhile wait and go together.
const IN_FLIGHT: usize = 8;
/// Most commands in one call.
const MAX_BATCH: usize = 1024;
/// Commands queued before callers wait to queue.
const QUEUE: usize = 8192;

/// The answer to a forwarded batch: one result per command, or why none was proposed.
pub(crate) type ForwardAnswer = Result<Vec<Result<Outcome, ProposeError>>, ProposeError>;

struct Forward {
    addr: String,
    command: Command,
    done: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// The handle writes are forwarded through.
pub(crate) struct Forwarder {
    tx: mpsc::Sender<Forward>,
}

fn stopped() -> ProposeError {
    ProposeError::Unavailable("the node is shutting down".into())
}

/// What a failed call to the leader means for the writes it carried.
pub(crate) fn call_failed(e: PeerError, leader: &str) -> ProposeError {
    match e {
        // Never delivered: the leader did not see the writes, so they may be tried again.
        PeerError::Unreachable { .. } => ProposeError::NotLeader { leader: None },
        other => ProposeError::Unavailable(format!(
            "forwarding to the leader at {leader} failed; the write may or may not take \
             effect: {other}"
        )),
    }
}

impl Forwarder {
    pub(crate) fn spawn(peers: Peers, timeout: Duration) -> Forwarder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(peers, timeout, rx));
        Forwarder { tx }
    }

    /// Forwards `command` to the leader at `addr` and waits for its outcome.
    pub(crate) async fn forward(
        &self,
        addr: String,
        command: Command,
    ) -> Result<Outcome, ProposeError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Forward {
                addr,
                command,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

async fn run(peers: Peers, timeout: Duration, mut rx: mpsc::Receiver<Forward>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let batch_size = metrics::histogram!("keel_forward_batch_records");
    while let Some(first) = rx.recv().await {
        let mut by_leader: BTreeMap<String, Vec<Forward>> = BTreeMap::new();
        by_leader.entry(first.addr.clone()).or_default().push(first);
        let mut n = 1;
        while n < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            by_leader.entry(next.addr.clone()).or_default().push(next);
            n += 1;
        }
        for (addr, batch) in by_leader {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            batch_size.record(batch.len() as f64);
            let peers = peers.clone();
            tokio::spawn(async move {
                let (commands, waiters): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|f| (f.command, f.done)).unzip();
                let answer: Result<ForwardAnswer, PeerError> = peers
                    .call(&addr, PeerCall::Propose, &commands, timeout)
                    .await;
                drop(slot);
                match answer.map_err(|e| call_failed(e, &addr)).and_then(|a| a) {
                    Ok(results) if results.len() == waiters.len() => {
                        for (done, r) in waiters.into_iter().zip(results) {
                            let _ = done.send(r);
                        }
                    }
                    Ok(results) => {
                        let e = ProposeError::Unavailable(format!(
                            "the leader at {addr} answered {} results for {} writes",
                            results.len(),
                            waiters.len()
                        ));
                        for done in waiters {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        for done in waiters {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                }
            });
        }
    }
}
