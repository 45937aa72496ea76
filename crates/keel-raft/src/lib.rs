//! The Raft layer: openraft's type config and storage adapters, and [`Node`], the one handle
//! the rest of keel uses to propose commands and read the applied state.
//!
//! openraft is pinned to the 0.9 line and stays behind this crate: nothing outside it names
//! an openraft type, so an upgrade is contained here.

// openraft's StorageError is large and is what its traits return; boxing it here would only
// add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

mod codec;
mod log_store;
mod network;
mod node;
mod state_machine;

pub use log_store::LogStore;
mod proposer;
pub use node::{Node, NodeConfig, NodeError, NodeStatus, ProposeError, ReadBarrierError};
pub use state_machine::{StateMachine, StateReader};

use std::io::Cursor;

/// The payload of one Raft log entry: the requests that arrived while the previous entry was
/// being made durable, applied in order, each at its own revision. Batching here is keel's
/// group commit: openraft 0.9 waits for each append's flush before the next, so one entry
/// per fsync must carry every waiting proposal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Batch(pub Vec<keel_state::Request>);

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} requests)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// keel's Raft type configuration.
    pub TypeConfig:
        D = Batch,
        R = Vec<keel_state::Outcome>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Raft's storage error for our node id type.
pub(crate) type StorageError = openraft::StorageError<u64>;
