//! Transactions: compare keys and tasks, then one branch of operations (key writes, enqueues,
//! task completions), all at one revision.
//!
//! [`Txn`] and its parts are persisted inside [`crate::Command::Txn`]: add variants only at
//! the end. (Log formats 1 and 2 had a list of key [`Compare`]s where format 3 has
//! [`Condition`]s; `format_v2` reads them.)

mod apply;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub(crate) use apply::{apply, TxnState};

use crate::queue::{Enqueue, TaskId, TaskState};
use crate::{KeyValueWire, LeaseId, Revision};

/// A transaction: if every condition holds, run `success`, else run `failure`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compare: Vec<Condition>,
    /// Operations run when every comparison holds.
    pub success: Vec<TxnOp>,
    /// Operations run otherwise.
    pub failure: Vec<TxnOp>,
}

/// One condition of a transaction, by what it looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// A key's metadata or value.
    Key(Compare),
    /// A task's state.
    Task(TaskCompare),
}

impl From<Compare> for Condition {
    fn from(c: Compare) -> Self {
        Condition::Key(c)
    }
}

impl From<TaskCompare> for Condition {
    fn from(c: TaskCompare) -> Self {
        Condition::Task(c)
    }
}

/// A task's state compared with `state` (`None`: the task does not exist); only
/// [`CompareOp::Equal`] and [`CompareOp::NotEqual`] are allowed (states have no order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCompare {
    /// The queue.
    pub queue: String,
    /// The task.
    pub id: TaskId,
    /// Equal or not equal.
    pub op: CompareOp,
    /// The state compared with.
    pub state: Option<TaskState>,
}

/// A key's field compared with a value.
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
    /// Enqueue a task.
    Enqueue(Enqueue),
    /// Complete a running task held under `claim`.
    Complete {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
        /// The claim it is held under.
        claim: Revision,
        /// What the worker returns: JSON text.
        result: Option<Bytes>,
    },
}

impl TxnOp {
    /// The key this operation writes, if it writes exactly one key.
    pub(crate) fn written_key(&self) -> Option<&str> {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Incr { key, .. } => Some(key),
            TxnOp::DeletePrefix { .. }
            | TxnOp::Get { .. }
            | TxnOp::Enqueue(_)
            | TxnOp::Complete { .. } => None,
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

    /// Checks that neither branch writes one key twice, writes a key that the same branch
    /// also deletes by prefix, or completes one task twice: the writes of a branch happen at
    /// one revision, so their order must not matter. And that task states are compared only
    /// for (in)equality.
    pub fn validate(&self) -> Result<(), TxnError> {
        for c in &self.compare {
            if let Condition::Task(t) = c {
                if !matches!(t.op, CompareOp::Equal | CompareOp::NotEqual) {
                    return Err(TxnError::OrderedTaskCompare {
                        queue: t.queue.clone(),
                        id: t.id,
                    });
                }
            }
        }
        for branch in [&self.success, &self.failure] {
            let mut completed = std::collections::BTreeSet::new();
            for op in branch {
                if let TxnOp::Complete { queue, id, .. } = op {
                    if !completed.insert((queue.as_str(), *id)) {
                        return Err(TxnError::DuplicateTask {
                            queue: queue.clone(),
                            id: *id,
                        });
                    }
                }
            }
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
            TxnOp::Enqueue(e) => e.size_hint(),
            TxnOp::Complete { queue, result, .. } => {
                queue.len() + result.as_ref().map_or(0, Bytes::len) + 24
            }
        };
        let compares: usize = self
            .compare
            .iter()
            .map(|c| match c {
                Condition::Key(c) => match &c.target {
                    CompareTarget::Value(v) => c.key.len() + 16 + v.len(),
                    _ => c.key.len() + 16,
                },
                Condition::Task(t) => t.queue.len() + 16,
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
    /// A branch completes one task twice.
    #[error("a transaction branch completes task {id} of queue {queue:?} more than once")]
    DuplicateTask {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
    /// A task's state compared with `<` or `>`.
    #[error("task {id} of queue {queue:?}: a task's state can only be compared with == or !=")]
    OrderedTaskCompare {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
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
    /// A task was enqueued (or, `created` false, found by its dedupe key).
    Enqueue {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
        /// Whether a new task was created.
        created: bool,
    },
    /// A task was completed.
    Complete {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
}
