//! The Raft layer: openraft's type config and storage adapters, and [`Node`], the one handle
//! the rest of keel uses to propose commands and read the applied state.
//!
//! openraft is pinned to `0.10.0-alpha.37` and stays behind this crate: nothing outside it
//! names an openraft type, so an upgrade is contained here. The upstream APIs relied on are
//! listed in the crate README.

mod answer;
mod clock;
mod cluster;
mod codec;
mod completion;
mod forward;
mod log_store;
mod network;
mod node;
pub mod peer;
mod proposer;
mod read_index;
mod state_machine;
mod status;

pub use clock::Clock;
pub use cluster::{ask_to_join, ClusterError, Readiness, CAUGHT_UP};
pub use log_store::LogStore;
pub use network::Peers;
pub use node::{Node, NodeConfig, NodeError, ProposeError, ReadBarrierError};
pub use state_machine::{StateMachine, StateReader};
pub use status::NodeStatus;

use completion::Completion;

/// The payload of one Raft log entry: requests that were waiting together, applied in order,
/// each at its own revision. Batching here is the first level of keel's group commit (one
/// entry per proposer turn); the log's flusher is the second (one `fdatasync` for every entry
/// written while the previous sync ran). Shared, so that the log store keeps the entries it
/// just wrote for the state machine to apply without copying or decoding them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Batch(pub std::sync::Arc<[keel_state::Request]>);

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} requests)", self.0.len())
    }
}

/// keel's Raft type configuration. Written out rather than declared with
/// `declare_raft_types!`, which cannot name a responder of our own: a write's outcomes go
/// straight from the state machine to the waiting requests through a [`Completion`].
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig {}

impl openraft::RaftTypeConfig for TypeConfig {
    type D = Batch;
    type R = Vec<keel_state::Outcome>;
    type NodeId = u64;
    type Node = openraft::BasicNode;
    type Term = u64;
    type LeaderId = LeaderId;
    type Vote = Vote;
    type Payload = Payload;
    type Entry = Entry;
    type AsyncRuntime = openraft_rt_tokio::TokioRuntime;
    type Responder<T>
        = Completion<T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// The Raft handle of this configuration and state machine.
pub(crate) type Raft = openraft::Raft<TypeConfig, StateMachine>;
/// Who led when an entry was written: term and node ("advanced" leader ids, several leaders
/// per term possible, as in openraft 0.9).
pub(crate) type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>;
/// A log id.
pub(crate) type LogId = openraft::LogId<LeaderId>;
/// A log entry.
pub(crate) type Entry = openraft::Entry<LeaderId, Payload>;
/// A log entry's payload.
pub(crate) type Payload = openraft::EntryPayload<Batch, u64, openraft::BasicNode>;
/// A vote.
pub(crate) type Vote = openraft::impls::Vote<LeaderId>;
/// A membership.
pub(crate) type Membership = openraft::Membership<u64, openraft::BasicNode>;
/// A membership with the log id that set it.
pub(crate) type StoredMembership = openraft::StoredMembership<LeaderId, u64, openraft::BasicNode>;
/// Snapshot metadata.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<LeaderId, u64, openraft::BasicNode>;
/// A snapshot's data: a verified snapshot file on disk, never its bytes in memory (a snapshot
/// of millions of keys is streamed to the file as it is encoded, and a peer would be sent
/// the file in pieces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotData {
    /// The snapshot file (`keel_storage::SnapshotStore`'s format).
    pub path: std::path::PathBuf,
}
/// A snapshot and its metadata.
pub(crate) type Snapshot = openraft::Snapshot<LeaderId, u64, openraft::BasicNode, SnapshotData>;
