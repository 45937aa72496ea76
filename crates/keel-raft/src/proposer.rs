//! Group commit at the proposal layer.
//!
//! openraft 0.9 appends one entry at a time and waits for its flush before taking the next
//! client write, so one fsync per proposal would cap a node at 1 / fsync latency. Instead, one
//! task takes every proposal that is waiting, packs them into one [`Batch`] entry and writes
//! it; proposals that arrive meanwhile wait for the next entry, and share its fsync. Each
//! request in a batch is still applied on its own, in order, at its own revision.

use keel_state::{Outcome, Request};
use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use crate::node::not_leader;
use crate::{Batch, ProposeError, TypeConfig};

/// Most requests in one entry.
const MAX_BATCH_REQUESTS: usize = 4096;
/// Most bytes (approximately) in one entry; a larger single request still goes alone.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Proposals that may queue before callers wait to enqueue.
const QUEUE: usize = 65_536;

struct Pending {
    request: Request,
    done: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// The handle callers propose through.
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    pub(crate) fn spawn(raft: Raft<TypeConfig>) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    pub(crate) async fn propose(&self, request: Request) -> Result<Outcome, ProposeError> {
        let (done, wait) = oneshot::channel();
        let stopped = || ProposeError::Unavailable("the node is shutting down".into());
        self.tx
            .send(Pending { request, done })
            .await
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<Pending>) {
    let mut carry: Option<Pending> = None;
    loop {
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
        metrics::histogram!("keel_propose_batch_records").record(requests.len() as f64);
        match raft.client_write(Batch(requests)).await {
            Ok(resp) => {
                for (done, outcome) in waiters.into_iter().zip(resp.data) {
                    // The caller may have given up (its connection closed); the write stands.
                    let _ = done.send(Ok(outcome));
                }
            }
            Err(e) => {
                let err = match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
                    RaftError::APIError(e) => ProposeError::Unavailable(e.to_string()),
                    RaftError::Fatal(e) => ProposeError::Unavailable(e.to_string()),
                };
                for done in waiters {
                    let _ = done.send(Err(err.clone()));
                }
            }
        }
    }
}
