//! Linearizable read points, one Raft read-index round for many reads.
//!
//! A read that must see every write acknowledged before it arrived needs the leader to
//! confirm, after the read arrived, that it still leads (a heartbeat round to a quorum), and
//! then the state applied up to the commit index it had at that moment. Reads that arrive
//! while a round is in flight join the next one: one task runs rounds back to back, each for
//! every read that was waiting when it started, and every read of a round then waits on its
//! own for the state machine to reach the round's index. A follower's round asks the leader
//! for its read point (one call for every read waiting) and then waits to apply that far.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use tokio::sync::{mpsc, oneshot};

use crate::forward::call_failed;
use crate::network::Peers;
use crate::node::not_leader;
use crate::peer::{PeerCall, PeerError};
use crate::state_machine::StateReader;
use crate::{ProposeError, Raft};

/// The log index a read must wait for, or why there is none.
pub(crate) type ReadPoint = Result<u64, ProposeError>;

/// A read waiting for a round: whether it may ask the leader when this node does not lead
/// (a read from a client here), or must be answered here (a follower's request).
struct Waiting {
    forward: bool,
    done: oneshot::Sender<ReadPoint>,
}

/// The handle reads wait through.
pub(crate) struct ReadIndex {
    tx: mpsc::UnboundedSender<Waiting>,
    reader: StateReader,
    #[cfg(test)]
    rounds: Arc<AtomicU64>,
}

fn stopped() -> ProposeError {
    ProposeError::Unavailable("the node is shutting down".into())
}

impl ReadIndex {
    pub(crate) fn spawn(
        raft: Raft,
        reader: StateReader,
        peers: Peers,
        timeout: Duration,
    ) -> ReadIndex {
        let (tx, rx) = mpsc::unbounded_channel();
        let rounds = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(raft, peers, timeout, rx, rounds.clone()));
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

    async fn point(&self, forward: bool) -> ReadPoint {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Waiting { forward, done })
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The read point for a follower that asked this node, which must lead: the commit
    /// index once a quorum has confirmed this node's leadership after the call.
    pub(crate) async fn point_here(&self) -> ReadPoint {
        self.point(false).await
    }

    /// Waits until this node has confirmed its leadership after the call (or the leader
    /// has, for a follower) and applied everything committed when it did.
    pub(crate) async fn barrier(&self) -> Result<(), ProposeError> {
        let index = self.point(true).await?;
        if self.reader.wait_applied(index).await {
            Ok(())
        } else {
            Err(stopped())
        }
    }
}

/// One read-index round on this node; a follower learns where the leader is.
async fn round(raft: &Raft) -> Result<u64, (ProposeError, Option<String>)> {
    metrics::counter!("keel_read_index_rounds_total").increment(1);
    match raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
        Ok(linearizer) => Ok(linearizer.read_log_id().index()),
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
            let addr = f.leader_node.as_ref().map(|n| n.addr.clone());
            Err((not_leader(f), addr))
        }
        Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q))) => {
            Err((ProposeError::NoQuorum(q.to_string()), None))
        }
        Err(e) => Err((ProposeError::Unavailable(e.to_string()), None)),
    }
}

async fn run(
    raft: Raft,
    peers: Peers,
    timeout: Duration,
    mut rx: mpsc::UnboundedReceiver<Waiting>,
    rounds: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        metrics::histogram!("keel_read_index_batch_records").record(waiting.len() as f64);
        rounds.fetch_add(1, Ordering::Relaxed);
        let (here, leader) = match round(&raft).await {
            Ok(index) => (Ok(index), None),
            Err((e, addr)) => (Err(e), addr),
        };
        // A follower asks the leader once for every read of the round that may be forwarded.
        let forwarded = match (&here, leader) {
            (Err(_), Some(addr)) if waiting.iter().any(|w| w.forward) => {
                let answer: Result<ReadPoint, PeerError> =
                    peers.call(&addr, PeerCall::ReadIndex, &(), timeout).await;
                Some(answer.map_err(|e| call_failed(e, &addr)).and_then(|p| p))
            }
            _ => None,
        };
        for w in waiting {
            let point = match (&forwarded, w.forward) {
                (Some(p), true) => p.clone(),
                _ => here.clone(),
            };
            let _ = w.done.send(point);
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
