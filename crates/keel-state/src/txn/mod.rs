//! Transactions: compare, then one branch of key operations, all at one revision.
//!
//! [`Txn`] and its parts are persisted inside [`crate::Command::Txn`] (in log formats 1 and
//! 2 alike): add variants only at the end.

mod apply;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub(crate) use apply::apply;

use crate::{KeyValueWire, LeaseId, Revision};

/// A transaction: if every comparison holds, run `success`, else run `failure`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compare: Vec<Compare>,
    /// Operations run when every comparison holds.
    pub success: Vec<TxnOp>,
    /// Operations run otherwise.
    pub failure: Vec<TxnOp>,
}

/// One condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key whose metadata or value is compared.
    pub key: String,
    /// The comparison.
    pub op: CompareOp,
    /// What is compared, and with which value.
    pub target: CompareTarget,
}

/// How a field is compared with the given value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// field == value
    Equal,
    /// field != value
    NotEqual,
    /// field < value
    Less,
    /// field > value
    Greater,
}

/// The field of a key to compare, with the value to compare it with. For an absent key the
/// revisions and version are 0, `Exists` is false and a `Value` comparison is false.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's `mod_revision`.
    ModRevision(Revision),
    /// The key's `create_revision`.
    CreateRevision(Revision),
    /// The key's `version`.
    Version(u64),
    /// The key's value, compared bytewise.
    Value(Bytes),
    /// Whether the key exists (only `Equal` and `NotEqual` make sense).
    Exists(bool),
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Attach to this lease.
        lease: Option<LeaseId>,
    },
    /// Delete a key (no error if absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Delete every key under a prefix.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Read a key, seeing the writes of earlier operations in the same branch.
    Get {
        /// The key.
        key: String,
    },
    /// Add to a counter.
    Incr {
        /// The key.
        key: String,
        /// The amount.
        by: i64,
    },
}

impl TxnOp {
    /// The key this operation writes, if it writes exactly one key.
    pub(crate) fn written_key(&self) -> Option<&str> {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Incr { key, .. } => Some(key),
            TxnOp::DeletePrefix { .. } | TxnOp::Get { .. } => None,
        }
    }
}

impl Txn {
    /// Number of comparisons and operations in both branches.
    pub fn len(&self) -> usize {
        self.compare.len() + self.success.len() + self.failure.len()
    }

    /// True if the transaction has nothing in it.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that neither branch writes one key twice or writes a key that the same branch
    /// also deletes by prefix: the writes of a branch happen at one revision, so their order
    /// must not matter.
    pub fn validate(&self) -> Result<(), TxnError> {
        for branch in [&self.success, &self.failure] {
            let mut written = std::collections::BTreeSet::new();
            let prefixes: Vec<&str> = branch
                .iter()
                .filter_map(|op| match op {
                    TxnOp::DeletePrefix { prefix } => Some(prefix.as_str()),
                    _ => None,
                })
                .collect();
            for op in branch {
                if let Some(key) = op.written_key() {
                    if !written.insert(key) {
                        return Err(TxnError::DuplicateKey(key.to_owned()));
                    }
                    if prefixes.iter().any(|p| key.starts_with(p)) {
                        return Err(TxnError::DuplicateKey(key.to_owned()));
                    }
                }
            }
            for (i, a) in prefixes.iter().enumerate() {
                if prefixes[i + 1..]
                    .iter()
                    .any(|b| a.starts_with(b) || b.starts_with(a))
                {
                    return Err(TxnError::DuplicateKey((*a).to_owned()));
                }
            }
        }
        Ok(())
    }
}

impl Txn {
    pub(crate) fn size_hint(&self) -> usize {
        let op_size = |op: &TxnOp| match op {
            TxnOp::Put { key, value, .. } => key.len() + value.len() + 16,
            TxnOp::Delete { key } | TxnOp::Get { key } | TxnOp::Incr { key, .. } => key.len() + 16,
            TxnOp::DeletePrefix { prefix } => prefix.len() + 16,
        };
        let compares: usize = self
            .compare
            .iter()
            .map(|c| match &c.target {
                CompareTarget::Value(v) => c.key.len() + 16 + v.len(),
                _ => c.key.len() + 16,
            })
            .sum();
        compares
            + self
                .success
                .iter()
                .chain(&self.failure)
                .map(op_size)
                .sum::<usize>()
    }
}

/// Why a transaction was refused for its own rules (a key or lease rule refuses it with that
/// family's error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TxnError {
    /// A branch writes one key twice, or writes a key it also deletes by prefix.
    #[error("a transaction branch writes key {0:?} more than once")]
    DuplicateKey(String),
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
