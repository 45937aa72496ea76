//! The answering side of the peer protocol: what a node does with a call from another.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_state::Command;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest,
};

use crate::cluster::ClusterError;
use crate::forward::ForwardAnswer;
use crate::network::{RpcAnswer, SnapshotHead};
use crate::peer::{decode, encode, ClusterView, JoinRequest, PeerCall, PeerError};
use crate::read_index::ReadPoint;
use crate::{Node, ProposeError, Snapshot, SnapshotData, TypeConfig};

/// Names the files incoming snapshots are written to.
static INCOMING: AtomicU64 = AtomicU64::new(0);

/// The extension of a snapshot file still being received.
pub(crate) const INCOMING_EXT: &str = "incoming";

impl Node {
    /// Answers a call from another node: decodes `body`, does what it asks, and encodes the
    /// answer. A snapshot comes through [`Node::install_snapshot`] instead.
    pub async fn answer_peer(&self, call: PeerCall, body: &[u8]) -> Result<Vec<u8>, PeerError> {
        let what = call.name();
        match call {
            PeerCall::Append => {
                let rpc: AppendEntriesRequest<TypeConfig> = decode(what, body)?;
                let commit = rpc.leader_commit.map_or(0, |l| l.index);
                let answer = self
                    .raft
                    .append_entries(rpc)
                    .await
                    .map_err(|e| e.to_string());
                if matches!(
                    answer,
                    Ok(AppendEntriesResponse::Success
                        | AppendEntriesResponse::PartialSuccess(_)
                        | AppendEntriesResponse::Conflict)
                ) {
                    self.contact.heard(commit);
                }
                encode(what, &answer)
            }
            PeerCall::Vote => {
                let rpc: VoteRequest<TypeConfig> = decode(what, body)?;
                let answer: RpcAnswer<_> = self.raft.vote(rpc).await.map_err(|e| e.to_string());
                encode(what, &answer)
            }
            PeerCall::PreVote => {
                let rpc: VoteRequest<TypeConfig> = decode(what, body)?;
                let answer: RpcAnswer<_> = self.raft.pre_vote(rpc).await.map_err(|e| e.to_string());
                encode(what, &answer)
            }
            PeerCall::TransferLeader => {
                let rpc: TransferLeaderRequest<TypeConfig> = decode(what, body)?;
                let answer: RpcAnswer<_> = self
                    .raft
                    .handle_transfer_leader(rpc)
                    .await
                    .map_err(|e| e.to_string());
                encode(what, &answer)
            }
            PeerCall::Propose => {
                let commands: Vec<Command> = decode(what, body)?;
                let answer: ForwardAnswer = if self.status.borrow().is_leader {
                    let each = commands.into_iter().map(|c| self.propose_here(c));
                    Ok(futures_util::future::join_all(each).await)
                } else {
                    Err(ProposeError::NotLeader { leader: None })
                };
                encode(what, &answer)
            }
            PeerCall::ReadIndex => {
                let answer: ReadPoint = self.read_index.point_here().await;
                encode(what, &answer)
            }
            PeerCall::Join => {
                let request: JoinRequest = decode(what, body)?;
                encode(what, &self.join(request).await)
            }
            PeerCall::Remove => {
                let id: u64 = decode(what, body)?;
                let answer = self.leader_only(self.remove(id)).await;
                encode(what, &answer)
            }
            PeerCall::MoveLeader => {
                let id: u64 = decode(what, body)?;
                let answer = self.leader_only(self.move_leader(id)).await;
                encode(what, &answer)
            }
            PeerCall::Status => encode(what, &self.self_status()),
            PeerCall::Cluster => {
                let answer: Result<ClusterView, ClusterError> = self
                    .leader_only(async { Ok(self.cluster_here().await) })
                    .await;
                encode(what, &answer)
            }
            PeerCall::Removed => {
                let why: String = decode(what, body)?;
                self.mark_removed(&why);
                encode(what, &())
            }
            PeerCall::Snapshot => Err(PeerError::Failed(
                "a snapshot comes with its file: it is answered by install_snapshot".into(),
            )),
        }
    }

    /// Runs `f` only if this node leads: a call passed on by another node is never passed on
    /// again.
    async fn leader_only<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        if self.status.borrow().is_leader {
            f.await
        } else {
            Err(ProposeError::NotLeader { leader: None }.into())
        }
    }

    /// A fresh path for a snapshot file being received, in the directory snapshots are kept
    /// in (so that installing it is a rename).
    pub fn incoming_snapshot_path(&self) -> PathBuf {
        let n = INCOMING.fetch_add(1, Ordering::Relaxed);
        self.settings
            .data_dir
            .join("snapshots")
            .join(format!("{}-{n}.{INCOMING_EXT}", std::process::id()))
    }

    /// Installs a snapshot the leader sent: `head` is its vote and the snapshot's metadata,
    /// `file` the snapshot file as received (at a path from
    /// [`Node::incoming_snapshot_path`]). The file becomes this node's snapshot, or is
    /// deleted.
    pub async fn install_snapshot(&self, head: &[u8], file: PathBuf) -> Result<Vec<u8>, PeerError> {
        let result = async {
            let (vote, meta): SnapshotHead = decode("snapshot head", head)?;
            tracing::info!(
                last_log = ?meta.last_log_id.map(|l| l.index),
                "installing a snapshot from the leader"
            );
            let snapshot = Snapshot {
                meta,
                snapshot: SnapshotData { path: file.clone() },
            };
            let answer: RpcAnswer<_> = self
                .raft
                .install_full_snapshot(vote, snapshot)
                .await
                .map_err(|e| e.to_string());
            if answer.is_ok() {
                self.contact.heard(0);
            }
            encode("snapshot answer", &answer)
        }
        .await;
        if file.exists() {
            // Not adopted (refused, or already covered by this node's state).
            let _ = std::fs::remove_file(&file);
        }
        result
    }
}
