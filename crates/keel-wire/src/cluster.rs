//! The cluster: membership and status, leadership transfer, the state hash.

use serde::{Deserialize, Serialize};

/// `GET /v1/cluster`: the members as the leader sees them (or as the answering node does,
/// when no leader answers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node whose view this is.
    pub node_id: u64,
    /// The leader's id, or null when none is known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The highest log index known committed.
    pub commit_index: u64,
    /// Every member, voters first.
    pub members: Vec<Member>,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its node id.
    pub id: u64,
    /// The URL it advertises.
    pub address: String,
    /// `leader`, `voter` or `learner`.
    pub role: String,
    /// The highest log index the leader knows it has (null when not known by this view).
    pub match_index: Option<u64>,
    /// Its applied log index as it answered just now (null: it did not answer).
    pub applied_index: Option<u64>,
    /// Log entries it is behind the leader (null when not known by this view).
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it (null when not known).
    pub last_contact_ms: Option<u64>,
    /// It answered and is not far behind.
    pub healthy: bool,
}

/// `POST /v1/cluster/leader`: hand leadership to a voter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderRequest {
    /// The voter to lead.
    pub id: u64,
}

/// The answer to a transfer: who leads now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderResponse {
    /// The new leader.
    pub leader: u64,
}

/// `DELETE /v1/cluster/members/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveResponse {
    /// The member removed.
    pub removed: u64,
}

/// `GET /v1/cluster/state-hash`: a digest of this node's applied state (keys, leases,
/// tombstones, revision), equal on every node that has applied the same log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHash {
    /// The node that answered.
    pub node_id: u64,
    /// Its store revision.
    pub revision: u64,
    /// Its last applied log index.
    pub applied_index: u64,
    /// SHA-256 of the state, hex.
    pub state_hash: String,
}
