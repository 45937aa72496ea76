//! Linearizable read points, one Raft read-index round for many reads.
//!
//! A read that must see every write acknowledged before it arrived needs the leader to
//! confirm, after the read arrived, that it still leads (a heartbeat round to a quorum), and
//! then the state applied up to the commit index it had at that moment. Reads that arrive
//! while a round is in flight join the next one: one task runs rounds back to back, each for
//! every read that was waiting when it started, and every read of a round then waits on its
//! own for the state machine to reach the round's index.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::error::{LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use tokio::sync::{mpsc, oneshot};

use crate::node::not_leader;
use crate::state_machine::StateReader;
use crate::{ProposeError, Raft};

/// The log index a read must wait for, or why there is none.
type ReadPoint = Result<u64, ProposeError>;

/// The handle reads wait through.
pub(crate) struct ReadIndex {
    tx: mpsc::UnboundedSender<oneshot::Sender<ReadPoint>>,
    reader: StateReader,
    #[cfg(test)]
    rounds: Arc<AtomicU64>,
}

fn stopped() -> ProposeError {
    ProposeError::Unavailable("the node is shutting down".into())
}

impl ReadIndex {
    pub(crate) fn spawn(raft: Raft, reader: StateReader) -> ReadIndex {
        let (tx, rx) = mpsc::unbounded_channel();
        let rounds = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(raft, rx, rounds.clone()));
        ReadIndex {
            tx,
            reader,
            #[cfg(test)]
            rounds,
        }
    }

    /// Read-index rounds run so far.
    #[cfg(test)]
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Waits until this node has confirmed its leadership after the call and applied
    /// everything committed when it did.
    pub(crate) async fn barrier(&self) -> Result<(), ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| stopped())?;
        let index = rx.await.map_err(|_| stopped())??;
        if self.reader.wait_applied(index).await {
            Ok(())
        } else {
            Err(stopped())
        }
    }
}

async fn round(raft: &Raft) -> ReadPoint {
    metrics::counter!("keel_read_index_rounds_total").increment(1);
    match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
        Ok(linearizer) => Ok(linearizer.read_log_id().index()),
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => Err(not_leader(f)),
        Err(e) => Err(ProposeError::Unavailable(e.to_string())),
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<oneshot::Sender<ReadPoint>>,
    rounds: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        metrics::histogram!("keel_read_index_batch_records").record(waiting.len() as f64);
        rounds.fetch_add(1, Ordering::Relaxed);
        let point = round(&raft).await;
        for w in waiting {
            let _ = w.send(point.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use keel_state::{KvCommand, KvOutcome, Outcome};

    use crate::{Node, NodeConfig};

    /// The path a read takes on the leader of a cluster, exercised on a one-member group
    /// (whose reads normally skip it): reads that arrive together share rounds, and each
    /// sees every write acknowledged before it began.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_that_arrive_together_share_a_round() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let node = Node::start(NodeConfig {
            snapshot_every: 1_000_000,
            ..NodeConfig::new(1, tmp.path().to_owned(), "127.0.0.1:1".into())
        })
        .await
        .expect("start");
        assert!(node.wait_ready(Duration::from_secs(10)).await);
        let node = Arc::new(node);
        let put = |i: u64| KvCommand::Put {
            key: format!("k{i}"),
            value: format!("v{i}").into_bytes().into(),
            lease: None,
            if_revision: None,
        };
        let Ok(Outcome::Kv(KvOutcome::Put { revision })) = node.propose(put(0).into()).await else {
            panic!("put");
        };
        let before = node.read_index.rounds();
        let reads: Vec<_> = (0..200)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move {
                    node.read_index.barrier().await.expect("barrier");
                    node.state().read(|s| s.revision())
                })
            })
            .collect();
        for r in reads {
            assert!(r.await.expect("read task") >= revision);
        }
        let rounds = node.read_index.rounds() - before;
        assert!(
            (1..50).contains(&rounds),
            "200 concurrent reads took {rounds} read-index rounds"
        );
    }
}
