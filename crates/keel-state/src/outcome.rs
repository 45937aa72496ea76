//! What applying a command produced.

use serde::{Deserialize, Serialize};

use crate::{ChangeSet, KeyValue, LeaseId, Revision};

/// The result of [`crate::Store::apply`]: the outcome for the proposer, and the change set
/// (when the command changed keys) for watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// What the proposer is told.
    pub outcome: Outcome,
    /// The keys changed, at one new revision; `None` when no key changed.
    pub changes: Option<std::sync::Arc<ChangeSet>>,
}

/// What a command did. A command that was refused leaves the state untouched.
///
/// This travels from the state machine to the waiting request handler; it is also a
/// serialisable Raft response type, so it derives serde, but it is never persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A key was written.
    Put {
        /// The new store revision.
        revision: Revision,
    },
    /// Keys were deleted (`deleted` may be 0 for a prefix, then `revision` is unchanged).
    Deleted {
        /// The store revision after the delete.
        revision: Revision,
        /// How many keys were deleted.
        deleted: u64,
    },
    /// A counter was changed.
    Incr {
        /// The counter's new value.
        value: i64,
        /// The new store revision.
        revision: Revision,
    },
    /// A transaction ran.
    Txn(TxnOutcome),
    /// A lease was granted or kept alive.
    Lease(LeaseGranted),
    /// A lease was revoked (and its keys deleted).
    Revoked {
        /// The store revision after the revoke.
        revision: Revision,
        /// How many keys were deleted with it.
        deleted: u64,
    },
    /// Leases expired (possibly none of the candidates).
    Expired {
        /// The leases actually revoked.
        ids: Vec<LeaseId>,
        /// The store revision afterwards.
        revision: Revision,
    },
    /// Every lease was given its full time to live again.
    Refreshed {
        /// How many leases there are.
        leases: u64,
    },
    /// The command was refused; nothing changed.
    Rejected(CommandError),
}

/// A granted or renewed lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGranted {
    /// Its id.
    pub id: LeaseId,
    /// Its time to live, in milliseconds.
    pub ttl_ms: u64,
}

/// The outcome of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Whether every comparison held (and the success branch ran).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: Revision,
    /// One result per operation of the branch that ran.
    pub results: Vec<TxnOpResult>,
}

/// The result of one transaction operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    /// A key was written.
    Put {
        /// The key.
        key: String,
    },
    /// A key was deleted, or was absent.
    Delete {
        /// The key.
        key: String,
        /// 1 or 0.
        deleted: u64,
    },
    /// Keys under a prefix were deleted.
    DeletePrefix {
        /// The prefix.
        prefix: String,
        /// How many.
        deleted: u64,
    },
    /// A key was read.
    Get {
        /// The key.
        key: String,
        /// Its value, if present.
        kv: Option<KeyValueWire>,
    },
    /// A counter changed.
    Incr {
        /// The key.
        key: String,
        /// Its new value.
        value: i64,
    },
}

/// A key's value and metadata as carried in a [`TxnOpResult`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValueWire {
    /// The value.
    pub value: bytes::Bytes,
    /// See [`KeyValue::create_revision`].
    pub create_revision: Revision,
    /// See [`KeyValue::mod_revision`].
    pub mod_revision: Revision,
    /// See [`KeyValue::version`].
    pub version: u64,
    /// See [`KeyValue::lease`].
    pub lease: Option<LeaseId>,
}

impl From<KeyValueWire> for KeyValue {
    fn from(w: KeyValueWire) -> Self {
        KeyValue {
            value: w.value,
            create_revision: w.create_revision,
            mod_revision: w.mod_revision,
            version: w.version,
            lease: w.lease,
        }
    }
}

impl From<&KeyValue> for KeyValueWire {
    fn from(kv: &KeyValue) -> Self {
        KeyValueWire {
            value: kv.value.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// Why a command was refused. Deterministic: every replica refuses the same command alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// `if_revision` did not match.
    #[error("key {key:?} is at mod_revision {current}, not {expected}")]
    RevisionMismatch {
        /// The key.
        key: String,
        /// The revision asked for.
        expected: Revision,
        /// The key's actual `mod_revision` (0 when absent).
        current: Revision,
    },
    /// The key does not exist.
    #[error("key {0:?} not found")]
    KeyNotFound(String),
    /// The lease does not exist.
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    /// The value at the key is not a decimal 64-bit integer.
    #[error("the value of key {0:?} is not an integer")]
    NotANumber(String),
    /// The counter would leave the 64-bit range.
    #[error("incrementing key {0:?} overflows a 64-bit integer")]
    Overflow(String),
    /// A transaction writes one key twice in one branch.
    #[error("a transaction branch writes key {0:?} more than once")]
    DuplicateKey(String),
    /// A lease TTL of zero.
    #[error("a lease needs a positive time to live")]
    InvalidTtl,
}
