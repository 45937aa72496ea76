//! Key commands (put, delete, delete by prefix, incr), their outcomes and refusals.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Kv;
use crate::lease::Leases;
use crate::writes::Writes;
use crate::{CommandError, LeaseId, Revision};

/// A change to keys. Persisted: add variants only at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
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
}

impl KvCommand {
    pub(crate) fn size_hint(&self) -> usize {
        match self {
            KvCommand::Put { key, value, .. } => key.len() + value.len(),
            KvCommand::Delete { key, .. } | KvCommand::Incr { key, .. } => key.len(),
            KvCommand::DeletePrefix { prefix } => prefix.len(),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            KvCommand::Put { .. } => "put",
            KvCommand::Delete { .. } => "delete",
            KvCommand::DeletePrefix { .. } => "delete_prefix",
            KvCommand::Incr { .. } => "incr",
        }
    }
}

/// What a key command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutcome {
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
}

/// Why a key command (or a key operation of a transaction) was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
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
    /// The value at the key is not a decimal 64-bit integer.
    #[error("the value of key {0:?} is not an integer")]
    NotANumber(String),
    /// The counter would leave the 64-bit range.
    #[error("incrementing key {0:?} overflows a 64-bit integer")]
    Overflow(String),
}

fn check_if_revision(kv: &Kv, key: &str, if_revision: Option<Revision>) -> Result<(), KvError> {
    let Some(expected) = if_revision else {
        return Ok(());
    };
    let current = kv.get(key).map_or(0, |v| v.mod_revision);
    if current == expected {
        Ok(())
    } else {
        Err(KvError::RevisionMismatch {
            key: key.to_owned(),
            expected,
            current,
        })
    }
}

/// Applies a key command: every check first, then the writes.
pub(crate) fn apply(
    cmd: &KvCommand,
    kv: &mut Kv,
    leases: &mut Leases,
    w: &mut Writes,
) -> Result<KvOutcome, CommandError> {
    match cmd {
        KvCommand::Put {
            key,
            value,
            lease,
            if_revision,
        } => {
            check_if_revision(kv, key, *if_revision)?;
            leases.check(*lease)?;
            kv.put(w, leases, key, value.clone(), *lease);
            Ok(KvOutcome::Put {
                revision: w.revision,
            })
        }
        KvCommand::Delete { key, if_revision } => {
            check_if_revision(kv, key, *if_revision)?;
            if !kv.remove(w, leases, key) {
                return Err(KvError::KeyNotFound(key.clone()).into());
            }
            Ok(KvOutcome::Deleted {
                revision: w.revision,
                deleted: 1,
            })
        }
        KvCommand::DeletePrefix { prefix } => {
            let deleted = kv.remove_prefix(w, leases, prefix);
            Ok(KvOutcome::Deleted {
                revision: w.revision_after(),
                deleted,
            })
        }
        KvCommand::Incr { key, by } => {
            let value = kv.incremented(key, *by)?;
            kv.put_counter(w, leases, key, value);
            Ok(KvOutcome::Incr {
                value,
                revision: w.revision,
            })
        }
    }
}
