//! Commands: the only way state changes, and the payload of every Raft log entry.
//!
//! These types are a persisted format: they are written to the log and replayed after a
//! restart, possibly by a newer binary. Change them only by adding variants at the end, and
//! bump [`Request::FORMAT`] for anything else.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{LeaseId, Revision};

/// A command together with the time at which the leader proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's wall-clock time, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// What to do.
    pub command: Command,
}

/// Error decoding a log payload.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload was written by a format this build does not know.
    #[error("unknown command format version {0}")]
    UnknownFormat(u8),
    /// The payload is empty.
    #[error("empty command payload")]
    Empty,
    /// The bytes do not decode.
    #[error("malformed command: {0}")]
    Malformed(#[from] postcard::Error),
}

impl Request {
    /// Version byte written in front of every encoded request.
    pub const FORMAT: u8 = 1;

    /// Encodes the request as a versioned byte string.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_into(Vec::with_capacity(self.command.size_hint()))
    }

    /// Appends the encoding of [`Request::encode`] to `out` and returns it.
    pub fn encode_into(&self, mut out: Vec<u8>) -> Vec<u8> {
        out.push(Self::FORMAT);
        postcard::to_extend(self, out).expect("serialising plain data into a Vec cannot fail")
    }

    /// Decodes bytes produced by [`Request::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&Self::FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&v, _)) => Err(DecodeError::UnknownFormat(v)),
        }
    }
}

/// A change to the store. Each variant is applied atomically at (at most) one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Write `value` to `key`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
        /// Attach the key to this lease (a put without a lease detaches it).
        lease: Option<LeaseId>,
        /// Only if the key's `mod_revision` is this (0: only if the key is absent).
        if_revision: Option<Revision>,
    },
    /// Delete one key.
    Delete {
        /// The key.
        key: String,
        /// Only if the key's `mod_revision` is this.
        if_revision: Option<Revision>,
    },
    /// Delete every key starting with `prefix` (the empty prefix deletes every key).
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Add `by` to the decimal integer stored at `key` (absent counts as 0).
    Incr {
        /// The key.
        key: String,
        /// The amount, possibly negative.
        by: i64,
    },
    /// Compare, then run one of two lists of operations at one revision.
    Txn(Txn),
    /// Create a lease.
    LeaseGrant {
        /// Time to live in milliseconds.
        ttl_ms: u64,
    },
    /// Restart a lease's time to live from the request's time.
    LeaseKeepAlive {
        /// The lease.
        id: LeaseId,
    },
    /// Delete a lease and every key attached to it.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// Revoke those of `ids` whose deadline has passed at the request's time. Proposed by the
    /// leader when it sees deadlines pass; a lease kept alive in the meantime survives.
    LeaseExpire {
        /// Candidates for expiry.
        ids: Vec<LeaseId>,
    },
    /// Give every lease its full time to live again, from the request's time. Proposed by a new
    /// leader so that downtime or a leader change never mass-expires leases.
    LeaseRefreshAll,
}

impl Command {
    /// Roughly how many bytes the command takes in the log (keys and values dominate).
    pub fn size_hint(&self) -> usize {
        let op_size = |op: &TxnOp| match op {
            TxnOp::Put { key, value, .. } => key.len() + value.len() + 16,
            TxnOp::Delete { key } | TxnOp::Get { key } | TxnOp::Incr { key, .. } => key.len() + 16,
            TxnOp::DeletePrefix { prefix } => prefix.len() + 16,
        };
        32 + match self {
            Command::Put { key, value, .. } => key.len() + value.len(),
            Command::Delete { key, .. } | Command::Incr { key, .. } => key.len(),
            Command::DeletePrefix { prefix } => prefix.len(),
            Command::Txn(t) => {
                let cmp: usize = t
                    .compare
                    .iter()
                    .map(|c| {
                        c.key.len()
                            + 16
                            + if let CompareTarget::Value(v) = &c.target {
                                v.len()
                            } else {
                                0
                            }
                    })
                    .sum();
                cmp + t
                    .success
                    .iter()
                    .chain(&t.failure)
                    .map(op_size)
                    .sum::<usize>()
            }
            Command::LeaseExpire { ids } => ids.len() * 8,
            Command::LeaseGrant { .. }
            | Command::LeaseKeepAlive { .. }
            | Command::LeaseRevoke { .. }
            | Command::LeaseRefreshAll => 0,
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Put { .. } => "put",
            Command::Delete { .. } => "delete",
            Command::DeletePrefix { .. } => "delete_prefix",
            Command::Incr { .. } => "incr",
            Command::Txn(_) => "txn",
            Command::LeaseGrant { .. } => "lease_grant",
            Command::LeaseKeepAlive { .. } => "lease_keepalive",
            Command::LeaseRevoke { .. } => "lease_revoke",
            Command::LeaseExpire { .. } => "lease_expire",
            Command::LeaseRefreshAll => "lease_refresh_all",
        }
    }
}

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
    pub fn validate(&self) -> Result<(), crate::CommandError> {
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
                        return Err(crate::CommandError::DuplicateKey(key.to_owned()));
                    }
                    if prefixes.iter().any(|p| key.starts_with(p)) {
                        return Err(crate::CommandError::DuplicateKey(key.to_owned()));
                    }
                }
            }
            for (i, a) in prefixes.iter().enumerate() {
                if prefixes[i + 1..]
                    .iter()
                    .any(|b| a.starts_with(b) || b.starts_with(a))
                {
                    return Err(crate::CommandError::DuplicateKey((*a).to_owned()));
                }
            }
        }
        Ok(())
    }
}
