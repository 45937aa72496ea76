//! Key-value commands: put, delete, incr.

use bytes::Bytes;

use crate::store::Batch;
use crate::{CommandError, LeaseId, Outcome, Revision, Store};

impl Store {
    pub(crate) fn check_if_revision(
        &self,
        key: &str,
        if_revision: Option<Revision>,
    ) -> Result<(), CommandError> {
        let Some(expected) = if_revision else {
            return Ok(());
        };
        let current = self.keys.get(key).map_or(0, |kv| kv.mod_revision);
        if current == expected {
            Ok(())
        } else {
            Err(CommandError::RevisionMismatch {
                key: key.to_owned(),
                expected,
                current,
            })
        }
    }

    pub(crate) fn check_lease(&self, lease: Option<LeaseId>) -> Result<(), CommandError> {
        match lease {
            Some(id) if !self.leases.contains_key(&id) => Err(CommandError::LeaseNotFound(id)),
            _ => Ok(()),
        }
    }

    pub(crate) fn cmd_put(
        &mut self,
        batch: &mut Batch,
        key: &str,
        value: &Bytes,
        lease: Option<LeaseId>,
        if_revision: Option<Revision>,
    ) -> Outcome {
        if let Err(e) = self
            .check_if_revision(key, if_revision)
            .and(self.check_lease(lease))
        {
            return Outcome::Rejected(e);
        }
        self.write_key(batch, key, value.clone(), lease);
        Outcome::Put {
            revision: batch.revision,
        }
    }

    pub(crate) fn cmd_delete(
        &mut self,
        batch: &mut Batch,
        key: &str,
        if_revision: Option<Revision>,
    ) -> Outcome {
        if let Err(e) = self.check_if_revision(key, if_revision) {
            return Outcome::Rejected(e);
        }
        if self.remove_key(batch, key) {
            Outcome::Deleted {
                revision: batch.revision,
                deleted: 1,
            }
        } else {
            Outcome::Rejected(CommandError::KeyNotFound(key.to_owned()))
        }
    }

    /// The value `key` would hold after adding `by`, or why it cannot.
    pub(crate) fn incremented(&self, key: &str, by: i64) -> Result<i64, CommandError> {
        let current = match self.keys.get(key) {
            None => 0,
            Some(kv) => std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| CommandError::NotANumber(key.to_owned()))?,
        };
        current
            .checked_add(by)
            .ok_or_else(|| CommandError::Overflow(key.to_owned()))
    }

    /// Stores `value` at `key` as a decimal string, keeping the key's lease.
    pub(crate) fn write_counter(&mut self, batch: &mut Batch, key: &str, value: i64) {
        let lease = self.keys.get(key).and_then(|kv| kv.lease);
        self.write_key(batch, key, Bytes::from(value.to_string()), lease);
    }

    pub(crate) fn cmd_incr(&mut self, batch: &mut Batch, key: &str, by: i64) -> Outcome {
        match self.incremented(key, by) {
            Ok(value) => {
                self.write_counter(batch, key, value);
                Outcome::Incr {
                    value,
                    revision: batch.revision,
                }
            }
            Err(e) => Outcome::Rejected(e),
        }
    }
}
