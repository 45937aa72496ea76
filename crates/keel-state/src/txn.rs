//! Transactions: compare, then one branch of operations, all at one revision.

use crate::store::Batch;
use crate::{
    CommandError, Compare, CompareOp, CompareTarget, Outcome, Store, Txn, TxnOp, TxnOpResult,
    TxnOutcome,
};

impl Store {
    fn compare_holds(&self, c: &Compare) -> bool {
        let kv = self.keys.get(&c.key);
        let ord = match &c.target {
            CompareTarget::ModRevision(v) => kv.map_or(0, |k| k.mod_revision).cmp(v),
            CompareTarget::CreateRevision(v) => kv.map_or(0, |k| k.create_revision).cmp(v),
            CompareTarget::Version(v) => kv.map_or(0, |k| k.version).cmp(v),
            CompareTarget::Value(v) => match kv {
                Some(k) => k.value.as_ref().cmp(v.as_ref()),
                None => return false,
            },
            CompareTarget::Exists(v) => kv.is_some().cmp(v),
        };
        match c.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Less => ord.is_lt(),
            CompareOp::Greater => ord.is_gt(),
        }
    }

    /// Checks that every write of `ops` can be done, before any is, and computes the new
    /// value of each counter (by position). Keys are written at most once per branch
    /// ([`Txn::validate`]), so each check sees the state before the branch.
    fn check_branch(&self, ops: &[TxnOp]) -> Result<Vec<Option<i64>>, CommandError> {
        ops.iter()
            .map(|op| match op {
                TxnOp::Put { lease, .. } => self.check_lease(*lease).map(|()| None),
                TxnOp::Incr { key, by } => self.incremented(key, *by).map(Some),
                TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } | TxnOp::Get { .. } => Ok(None),
            })
            .collect()
    }

    pub(crate) fn cmd_txn(&mut self, batch: &mut Batch, txn: &Txn) -> Outcome {
        if let Err(e) = txn.validate() {
            return Outcome::Rejected(e);
        }
        let succeeded = txn.compare.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let counters = match self.check_branch(ops) {
            Ok(counters) => counters,
            Err(e) => return Outcome::Rejected(e),
        };
        let mut results = Vec::with_capacity(ops.len());
        for (op, counter) in ops.iter().zip(counters) {
            let result = match op {
                TxnOp::Put { key, value, lease } => {
                    self.write_key(batch, key, value.clone(), *lease);
                    TxnOpResult::Put { key: key.clone() }
                }
                TxnOp::Delete { key } => {
                    let deleted = u64::from(self.remove_key(batch, key));
                    TxnOpResult::Delete {
                        key: key.clone(),
                        deleted,
                    }
                }
                TxnOp::DeletePrefix { prefix } => {
                    let deleted = self.delete_prefix(batch, prefix);
                    TxnOpResult::DeletePrefix {
                        prefix: prefix.clone(),
                        deleted,
                    }
                }
                TxnOp::Get { key } => TxnOpResult::Get {
                    key: key.clone(),
                    kv: self.keys.get(key).map(Into::into),
                },
                TxnOp::Incr { key, .. } => {
                    let value = counter.unwrap_or_default();
                    self.write_counter(batch, key, value);
                    TxnOpResult::Incr {
                        key: key.clone(),
                        value,
                    }
                }
            };
            results.push(result);
        }
        Outcome::Txn(TxnOutcome {
            succeeded,
            revision: self.revision_after(batch),
            results,
        })
    }
}
