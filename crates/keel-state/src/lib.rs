//! keel's replicated state machine: the data model, the commands that change it and the
//! pure function that applies them.
//!
//! Everything here is deterministic. [`Store::apply`] takes a [`Request`] (a [`Command`] plus
//! the leader's wall-clock time) and returns an [`Applied`] outcome; it performs no I/O, reads
//! no clock and draws no random numbers, so every replica that applies the same log reaches
//! the same state. The Raft log carries `Request`s encoded with [`Request::encode`].

mod command;
mod history;
mod keys;
mod kv;
mod lease;
mod outcome;
mod snapshot;
mod store;
mod txn;

pub use command::{Command, Compare, CompareOp, CompareTarget, DecodeError, Request, Txn, TxnOp};
pub use history::{ChangeSet, Event, EventKind};
pub use keys::{validate_key, KeyError, MAX_KEY_LEN};
pub use lease::{Lease, LeaseSummary};
pub use outcome::{
    Applied, CommandError, KeyValueWire, LeaseGranted, Outcome, TxnOpResult, TxnOutcome,
};
pub use snapshot::SnapshotError;
pub use store::{ListPage, ListQuery, ReadError, Store, StoreConfig};

/// The store's global logical clock: +1 for every command that changes at least one key.
pub type Revision = u64;
/// Identifier of a lease, assigned by the state machine in grant order.
pub type LeaseId = u64;

/// One key's value and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The raw value bytes.
    pub value: bytes::Bytes,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since the key was created (1 after creation).
    pub version: u64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}
