//! Proposals: group commit, pipelined.
//!
//! One task takes every proposal that is waiting, packs them into one [`Batch`] entry and
//! hands it to openraft without waiting for it (`client_write_ff`). openraft appends the entry
//! to the log, whose flusher makes it durable while the next entry is formed and written, so
//! the fsync of one entry overlaps the commit, apply and answers of the one before.
//!
//! At most [`PIPELINE_DEPTH`] entries are in flight (handed over, not yet answered). With two,
//! the next entry is already written when a sync finishes, so the disk never waits for the
//! CPU, and every request that arrives meanwhile waits for the next entry instead of making
//! one of its own: under load an entry carries what arrived during one sync, and each sync
//! one entry, which keeps the per-entry cost (Raft bookkeeping, encoding, apply) per sync
//! rather than per request.
//!
//! Each request in a batch is still applied on its own, in order, at its own revision, and
//! answered from the state machine through a [`Completion`] when its entry has been applied,
//! never before it is durable.

use std::sync::Arc;

use keel_state::{Outcome, Request};
use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResult;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::node::not_leader;
use crate::{Batch, Completion, ProposeError, Raft, TypeConfig};

/// Most requests in one entry.
const MAX_BATCH_REQUESTS: usize = 4096;
/// Most bytes (approximately) in one entry; a larger single request still goes alone.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Proposals that may queue before callers wait to enqueue.
const QUEUE: usize = 65_536;
/// Most entries handed to openraft and not yet answered.
const PIPELINE_DEPTH: usize = 2;

type Done = oneshot::Sender<Result<Outcome, ProposeError>>;

struct Pending {
    request: Request,
    done: Done,
}

/// The handle callers propose through.
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
}

fn stopped() -> ProposeError {
    ProposeError::Unavailable("the node is shutting down".into())
}

impl Proposer {
    pub(crate) fn spawn(raft: Raft) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    pub(crate) async fn propose(&self, request: Request) -> Result<Outcome, ProposeError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending { request, done })
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

/// Answers every request of an entry from openraft's result for it.
fn answer(waiters: Vec<Done>, result: ClientWriteResult<TypeConfig>) {
    match result {
        Ok(resp) => {
            for (done, outcome) in waiters.into_iter().zip(resp.data) {
                // The caller may have given up (its connection closed); the write stands.
                let _ = done.send(Ok(outcome));
            }
        }
        Err(e) => {
            let err = match e {
                ClientWriteError::ForwardToLeader(f) => not_leader(f),
                ClientWriteError::LogEntryDiscarded(f) => ProposeError::Unavailable(format!(
                    "leadership changed before the write was applied; it may or may not take \
                     effect (leader now: {:?})",
                    f.leader_id
                )),
                other => ProposeError::Unavailable(other.to_string()),
            };
            for done in waiters {
                let _ = done.send(Err(err.clone()));
            }
        }
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(PIPELINE_DEPTH));
    let batch_size = metrics::histogram!("keel_propose_batch_records");
    let mut carry: Option<Pending> = None;
    loop {
        // A slot first: proposals that arrive while the pipeline is full wait in the queue
        // and go together into the next entry.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.request.command.size_hint();
        let mut requests = vec![first.request];
        let mut waiters = vec![first.done];
        while requests.len() < MAX_BATCH_REQUESTS {
            let Ok(next) = rx.try_recv() else { break };
            let size = next.request.command.size_hint();
            if bytes + size > MAX_BATCH_BYTES {
                carry = Some(next);
                break;
            }
            bytes += size;
            requests.push(next.request);
            waiters.push(next.done);
        }
        batch_size.record(requests.len() as f64);
        let responder = Completion::new(move |result| {
            answer(waiters, result);
            drop(slot);
        });
        // Hand the entry over and go on at once: its answers come from the state machine.
        // If Raft has stopped, the entry (with the responder and its waiters) is dropped and
        // every waiter hears that the node is shutting down.
        if raft
            .client_write_ff(Batch(requests.into()), Some(responder))
            .await
            .is_err()
        {
            return;
        }
    }
}
