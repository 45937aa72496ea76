//! keel's replicated state machine: the data model, the commands that change it and the
//! pure function that applies them.
//!
//! Everything here is deterministic. [`Store::apply`] takes a [`Request`] (a [`Command`] plus
//! the leader's wall-clock time) and returns an [`Applied`] outcome; it performs no I/O, reads
//! no clock and draws no random numbers, so every replica that applies the same log reaches
//! the same state. The Raft log carries `Request`s encoded with [`Request::encode`].
//!
//! The state is one field per capability, each in its own module with its commands, its
//! outcome, its errors and its snapshot section:
//!
//! | module | state | commands |
//! |---|---|---|
//! | [`kv`] | keys and their values | [`KvCommand`] |
//! | [`lease`] | leases and the keys attached to them | [`LeaseCommand`] |
//! | [`queue`] | task queues and their tasks | [`QueueCommand`] |
//! | [`txn`] | (none of its own) | [`Txn`]: compare keys and tasks, then one branch of key writes, enqueues and completions |
//!
//! Shared by all of them: [`Command`] (one variant per family), the write context of one
//! command ([`writes`]), the change feed ([`ChangeSet`], [`Event`]) and the snapshot framing.

mod command;
mod format_v1;
mod format_v2;
mod history;
mod keys;
pub mod kv;
pub mod lease;
pub mod queue;
mod request;
mod snapshot;
mod store;
pub mod txn;
mod writes;

pub use command::{Applied, Command, CommandError, Outcome};
pub use history::{ChangeSet, Event, KeyEvent, KeyEventKind};
pub use keys::{validate_key, KeyError, MAX_KEY_LEN};
pub use kv::{KeyValue, KeyValueWire, KvCommand, KvError, KvOutcome};
pub use lease::{Lease, LeaseCommand, LeaseError, LeaseGranted, LeaseOutcome, LeaseSummary};
pub use queue::{
    ClaimedTask, Enqueue, QueueCommand, QueueCounts, QueueError, QueueOutcome, Task, TaskChanged,
    TaskEvent, TaskEventKind, TaskId, TaskState,
};
pub use request::{DecodeError, Request};
pub use snapshot::SnapshotError;
pub use store::{ListPage, ListQuery, ReadError, Store, StoreConfig};
pub use txn::{
    Compare, CompareOp, CompareTarget, Condition, TaskCompare, Txn, TxnError, TxnOp, TxnOpResult,
    TxnOutcome,
};

/// The store's global logical clock: +1 for every command that changes state.
pub type Revision = u64;
/// Identifier of a lease, assigned by the state machine in grant order.
pub type LeaseId = u64;
