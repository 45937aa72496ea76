//! The peer protocol: what one keel node asks another, independent of how the bytes travel.
//!
//! Every call is one request body and one answer body, both postcard: the Raft RPCs
//! (append, vote, pre-vote, leadership transfer), and keel's own calls between members — a
//! follower forwarding proposals or a read-index request to the leader, a new node asking to
//! join, status probes, membership changes. A snapshot is sent as a short head (vote and
//! metadata) followed by the snapshot file's bytes, which the transport streams from and to
//! disk. keel-server carries all of it over HTTP under `/raft/`; this crate only names the
//! calls and encodes their bodies.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version of the peer protocol. A node refuses calls made with another one, so a
/// mixed-version cluster fails loudly instead of misreading bodies.
pub const PEER_PROTOCOL: u32 = 1;

/// One kind of call between nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerCall {
    /// Raft append-entries (and heartbeats).
    Append,
    /// Raft vote request.
    Vote,
    /// Raft pre-vote request.
    PreVote,
    /// Raft's "start an election now" message, sent by a leader handing over.
    TransferLeader,
    /// Commands a follower forwards to the leader.
    Propose,
    /// A follower asks the leader for a linearizable read point.
    ReadIndex,
    /// A node asks to join the cluster.
    Join,
    /// Remove a member (handled by the leader).
    Remove,
    /// Move leadership to a member (handled by the leader).
    MoveLeader,
    /// A node's own view of itself: role, term, applied index.
    Status,
    /// The leader's view of the whole cluster.
    Cluster,
    /// The leader tells a node it has been removed.
    Removed,
    /// A snapshot install (the head only: the file follows in the same body).
    Snapshot,
}

impl PeerCall {
    /// Every call.
    pub const ALL: &'static [PeerCall] = &[
        PeerCall::Append,
        PeerCall::Vote,
        PeerCall::PreVote,
        PeerCall::TransferLeader,
        PeerCall::Propose,
        PeerCall::ReadIndex,
        PeerCall::Join,
        PeerCall::Remove,
        PeerCall::MoveLeader,
        PeerCall::Status,
        PeerCall::Cluster,
        PeerCall::Removed,
        PeerCall::Snapshot,
    ];

    /// The call's name: the last segment of its path under `/raft/`.
    pub fn name(self) -> &'static str {
        match self {
            PeerCall::Append => "append",
            PeerCall::Vote => "vote",
            PeerCall::PreVote => "pre-vote",
            PeerCall::TransferLeader => "transfer-leader",
            PeerCall::Propose => "propose",
            PeerCall::ReadIndex => "read-index",
            PeerCall::Join => "join",
            PeerCall::Remove => "remove",
            PeerCall::MoveLeader => "move-leader",
            PeerCall::Status => "status",
            PeerCall::Cluster => "cluster",
            PeerCall::Removed => "removed",
            PeerCall::Snapshot => "snapshot",
        }
    }

    /// The call named `name`.
    pub fn parse(name: &str) -> Option<PeerCall> {
        PeerCall::ALL.iter().copied().find(|c| c.name() == name)
    }
}

/// Why a call to a peer failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PeerError {
    /// No connection could be made, or it broke before an answer.
    #[error("{addr} is unreachable: {why}")]
    Unreachable {
        /// The peer's advertised URL.
        addr: String,
        /// What the transport saw.
        why: String,
    },
    /// No answer within the time allowed.
    #[error("{addr} did not answer within {ms} ms")]
    Timeout {
        /// The peer's advertised URL.
        addr: String,
        /// The time allowed.
        ms: u64,
    },
    /// The peer answered with a refusal (wrong secret, another protocol version, a body it
    /// could not read, a failure of its own).
    #[error("{addr} refused the call: {why}")]
    Refused {
        /// The peer's advertised URL.
        addr: String,
        /// The peer's message.
        why: String,
    },
    /// This node could not handle a call it received (its body does not decode, or Raft
    /// has stopped).
    #[error("{0}")]
    Failed(String),
}

/// A boxed future, as the transport returns them (the trait is used as a trait object).
pub type PeerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How calls reach other nodes: keel-server implements it over HTTP.
pub trait Transport: Send + Sync + 'static {
    /// Sends `body` as `call` to the node whose advertised URL is `addr`, and returns its
    /// answer body. Gives up after `timeout`.
    fn call<'a>(
        &'a self,
        addr: &'a str,
        call: PeerCall,
        body: Vec<u8>,
        timeout: Duration,
    ) -> PeerFuture<'a, Result<Vec<u8>, PeerError>>;

    /// Sends `head` and then the contents of the file at `file`, streamed, as a
    /// [`PeerCall::Snapshot`], and returns the answer body. Never holds the file in memory.
    fn send_snapshot<'a>(
        &'a self,
        addr: &'a str,
        head: Vec<u8>,
        file: &'a Path,
    ) -> PeerFuture<'a, Result<Vec<u8>, PeerError>>;
}

/// Encodes a call's body or answer.
pub(crate) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, PeerError> {
    postcard::to_stdvec(value)
        .map_err(|e| PeerError::Failed(format!("cannot encode a {what} body: {e}")))
}

/// Decodes a call's body or answer.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, PeerError> {
    postcard::from_bytes(bytes)
        .map_err(|e| PeerError::Failed(format!("cannot decode a {what} body: {e}")))
}

/// A node asking to join: its id (None: let the cluster choose one) and advertised URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The id it has, or None to be given one.
    pub id: Option<u64>,
    /// The URL other nodes reach it at.
    pub addr: String,
    /// Set by a member that passes the request on to its leader: the leader does not pass
    /// it on again.
    pub relayed: bool,
}

/// What a node reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfStatus {
    /// Its id.
    pub id: u64,
    /// Its role in its own view.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its last log index.
    pub last_log_index: u64,
    /// The highest index it knows committed.
    pub commit_index: u64,
    /// Its last applied index.
    pub applied_index: u64,
}

/// A member's role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// It leads.
    Leader,
    /// It votes.
    Voter,
    /// It replicates without voting.
    #[default]
    Learner,
}

impl Role {
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Voter => "voter",
            Role::Learner => "learner",
        }
    }
}

/// One member as the cluster view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Its id.
    pub id: u64,
    /// Its advertised URL.
    pub addr: String,
    /// Leader, voter or learner (from the membership, not from the member itself).
    pub role: Role,
    /// The highest log index the leader knows it holds (None: not known here).
    pub match_index: Option<u64>,
    /// Its applied index, as it answered a probe just now (None: it did not answer).
    pub applied_index: Option<u64>,
    /// How far its log is behind the leader's (None: not known here).
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it (None: not known here).
    pub last_contact_ms: Option<u64>,
    /// Whether it answered the probe and is not far behind.
    pub healthy: bool,
}

/// The cluster as one node sees it (the leader's view when there is a leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node that answered.
    pub node_id: u64,
    /// The leader, if one is known.
    pub leader: Option<u64>,
    /// The answering node's term.
    pub term: u64,
    /// The leader's commit index, as the answering node knows it.
    pub commit_index: u64,
    /// Every member, voters first.
    pub members: Vec<MemberView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_has_a_distinct_name_that_parses_back() {
        let mut names: Vec<_> = PeerCall::ALL.iter().map(|c| c.name()).collect();
        for c in PeerCall::ALL {
            assert_eq!(PeerCall::parse(c.name()), Some(*c));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PeerCall::ALL.len());
        assert_eq!(PeerCall::parse("nope"), None);
    }

    #[test]
    fn bodies_round_trip() {
        let join = JoinRequest {
            id: Some(3),
            addr: "http://127.0.0.3:7400".into(),
            relayed: false,
        };
        let back: JoinRequest =
            decode("join", &encode("join", &join).expect("encode")).expect("decode");
        assert_eq!(back, join);
        let err = decode::<JoinRequest>("join", &[0xff, 0xff]).expect_err("garbage");
        assert!(
            err.to_string().contains("cannot decode a join body"),
            "{err}"
        );
    }
}
