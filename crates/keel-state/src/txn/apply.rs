//! Applying a transaction: compare, check every write of the chosen branch, then write.

use std::collections::BTreeMap;

use super::{
    Compare, CompareOp, CompareTarget, Condition, TaskCompare, Txn, TxnOp, TxnOpResult, TxnOutcome,
};
use crate::kv::Kv;
use crate::lease::Leases;
use crate::queue::{self, Queues};
use crate::writes::Writes;
use crate::CommandError;

/// The state a transaction reads and writes: every capability it can touch.
pub(crate) struct TxnState<'a> {
    pub(crate) kv: &'a mut Kv,
    pub(crate) leases: &'a mut Leases,
    pub(crate) queues: &'a mut Queues,
}

fn holds(op: CompareOp, ord: std::cmp::Ordering) -> bool {
    match op {
        CompareOp::Equal => ord.is_eq(),
        CompareOp::NotEqual => ord.is_ne(),
        CompareOp::Less => ord.is_lt(),
        CompareOp::Greater => ord.is_gt(),
    }
}

fn key_compare_holds(kv: &Kv, c: &Compare) -> bool {
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
    holds(c.op, ord)
}

fn task_compare_holds(queues: &Queues, c: &TaskCompare) -> bool {
    let current = queues
        .get(&c.queue)
        .and_then(|q| q.task(c.id))
        .map(|t| t.state);
    holds(c.op, current.cmp(&c.state))
}

fn condition_holds(state: &TxnState<'_>, c: &Condition) -> bool {
    match c {
        Condition::Key(c) => key_compare_holds(state.kv, c),
        Condition::Task(c) => task_compare_holds(state.queues, c),
    }
}

/// Checks that every write of `ops` can be done, before any is, and computes the new value
/// of each counter (by position). Keys are written and tasks completed at most once per
/// branch ([`Txn::validate`]), so each check sees the state before the branch; enqueues to one
/// queue are counted against its limit together.
fn check_branch(state: &TxnState<'_>, ops: &[TxnOp]) -> Result<Vec<Option<i64>>, CommandError> {
    let mut enqueued: BTreeMap<&str, u64> = BTreeMap::new();
    ops.iter()
        .map(|op| match op {
            TxnOp::Put { lease, .. } => Ok(state.leases.check(*lease).map(|()| None)?),
            TxnOp::Incr { key, by } => Ok(state.kv.incremented(key, *by).map(Some)?),
            TxnOp::Enqueue(e) => {
                let before = enqueued.entry(e.queue.as_str()).or_default();
                if queue::check_enqueue(state.queues, e, *before)?.is_none() {
                    *before += 1;
                }
                Ok(None)
            }
            TxnOp::Complete {
                queue, id, claim, ..
            } => Ok(queue::check_claim(state.queues, queue, *id, *claim).map(|()| None)?),
            TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } | TxnOp::Get { .. } => Ok(None),
        })
        .collect()
}

/// Applies a transaction: validate, compare, check the branch, then run it.
pub(crate) fn apply(
    txn: &Txn,
    state: TxnState<'_>,
    w: &mut Writes,
) -> Result<TxnOutcome, CommandError> {
    txn.validate()?;
    let succeeded = txn.compare.iter().all(|c| condition_holds(&state, c));
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let counters = check_branch(&state, ops)?;
    let TxnState { kv, leases, queues } = state;
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
            TxnOp::Enqueue(e) => {
                let (id, created) = queue::enqueue(queues, w, e);
                TxnOpResult::Enqueue {
                    queue: e.queue.clone(),
                    id,
                    created,
                }
            }
            TxnOp::Complete {
                queue, id, result, ..
            } => {
                queue::complete(queues, w, queue, *id, result.clone())?;
                TxnOpResult::Complete {
                    queue: queue.clone(),
                    id: *id,
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
