//! Applying a transaction: compare, check every write of the chosen branch, then write.

use super::{Compare, CompareOp, CompareTarget, Txn, TxnOp, TxnOpResult, TxnOutcome};
use crate::kv::Kv;
use crate::lease::Leases;
use crate::writes::Writes;
use crate::CommandError;

fn compare_holds(kv: &Kv, c: &Compare) -> bool {
    let current = kv.get(&c.key);
    let ord = match &c.target {
        CompareTarget::ModRevision(v) => current.map_or(0, |k| k.mod_revision).cmp(v),
        CompareTarget::CreateRevision(v) => current.map_or(0, |k| k.create_revision).cmp(v),
        CompareTarget::Version(v) => current.map_or(0, |k| k.version).cmp(v),
        CompareTarget::Value(v) => match current {
            Some(k) => k.value.as_ref().cmp(v.as_ref()),
            None => return false,
        },
        CompareTarget::Exists(v) => current.is_some().cmp(v),
    };
    match c.op {
        CompareOp::Equal => ord.is_eq(),
        CompareOp::NotEqual => ord.is_ne(),
        CompareOp::Less => ord.is_lt(),
        CompareOp::Greater => ord.is_gt(),
    }
}

/// Checks that every write of `ops` can be done, before any is, and computes the new value
/// of each counter (by position). Keys are written at most once per branch
/// ([`Txn::validate`]), so each check sees the state before the branch.
fn check_branch(kv: &Kv, leases: &Leases, ops: &[TxnOp]) -> Result<Vec<Option<i64>>, CommandError> {
    ops.iter()
        .map(|op| match op {
            TxnOp::Put { lease, .. } => Ok(leases.check(*lease).map(|()| None)?),
            TxnOp::Incr { key, by } => Ok(kv.incremented(key, *by).map(Some)?),
            TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } | TxnOp::Get { .. } => Ok(None),
        })
        .collect()
}

/// Applies a transaction: validate, compare, check the branch, then run it.
pub(crate) fn apply(
    txn: &Txn,
    kv: &mut Kv,
    leases: &mut Leases,
    w: &mut Writes,
) -> Result<TxnOutcome, CommandError> {
    txn.validate()?;
    let succeeded = txn.compare.iter().all(|c| compare_holds(kv, c));
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let counters = check_branch(kv, leases, ops)?;
    let mut results = Vec::with_capacity(ops.len());
    for (op, counter) in ops.iter().zip(counters) {
        let result = match op {
            TxnOp::Put { key, value, lease } => {
                kv.put(w, leases, key, value.clone(), *lease);
                TxnOpResult::Put { key: key.clone() }
            }
            TxnOp::Delete { key } => TxnOpResult::Delete {
                key: key.clone(),
                deleted: u64::from(kv.remove(w, leases, key)),
            },
            TxnOp::DeletePrefix { prefix } => TxnOpResult::DeletePrefix {
                prefix: prefix.clone(),
                deleted: kv.remove_prefix(w, leases, prefix),
            },
            TxnOp::Get { key } => TxnOpResult::Get {
                key: key.clone(),
                kv: kv.get(key).map(Into::into),
            },
            TxnOp::Incr { key, .. } => {
                let value = counter.unwrap_or_default();
                kv.put_counter(w, leases, key, value);
                TxnOpResult::Incr {
                    key: key.clone(),
                    value,
                }
            }
        };
        results.push(result);
    }
    Ok(TxnOutcome {
        succeeded,
        revision: w.revision_after(),
        results,
    })
}
