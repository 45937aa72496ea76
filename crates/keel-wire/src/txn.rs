//! Transactions: compare, then one branch of operations.

use serde::{Deserialize, Serialize};

use crate::KeyValue;

/// `POST /v1/txn` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// Conditions that must all hold for `success` to run.
    #[serde(default)]
    pub compare: Vec<Compare>,
    /// Operations if every comparison holds.
    #[serde(default)]
    pub success: Vec<TxnOp>,
    /// Operations otherwise.
    #[serde(default)]
    pub failure: Vec<TxnOp>,
}

/// One comparison: `{"key","field","op","value"}` on a key, e.g.
/// `{"key":"a","field":"mod_revision","op":"==","value":4}`, or `{"queue","task","field":
/// "state","op","value"}` on a task, e.g.
/// `{"queue":"thumbs","task":7,"field":"state","op":"==","value":"running"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    /// The key (for a key's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The queue (for a task's state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The task's id (for a task's state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u64>,
    /// How the field is compared with the value.
    pub op: CompareOp,
    /// The field compared, with the value it is compared with.
    #[serde(flatten)]
    pub target: CompareTarget,
}

/// `"op"`: `==`, `!=`, `<` or `>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `==`
    #[serde(rename = "==")]
    Equal,
    /// `!=`
    #[serde(rename = "!=")]
    NotEqual,
    /// `<`
    #[serde(rename = "<")]
    Less,
    /// `>`
    #[serde(rename = ">")]
    Greater,
}

/// `"field"` and `"value"`: a number for the revisions and the version, a string (or
/// `value_base64`) for the value, a boolean for existence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case", deny_unknown_fields)]
pub enum CompareTarget {
    /// The key's `mod_revision` (0 when absent).
    ModRevision {
        /// The revision compared with.
        value: u64,
    },
    /// The key's `create_revision` (0 when absent).
    CreateRevision {
        /// The revision compared with.
        value: u64,
    },
    /// The key's `version` (0 when absent).
    Version {
        /// The version compared with.
        value: u64,
    },
    /// The key's value, bytewise (false when the key is absent).
    Value {
        /// The value as text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// The value as base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_base64: Option<String>,
    },
    /// Whether the key exists (`==` or `!=` only).
    Exists {
        /// true or false.
        value: bool,
    },
    /// A task's state (`==` or `!=` only).
    State {
        /// A state, or `absent` for a task that does not exist.
        value: CompareState,
    },
}

/// What a task's state is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareState {
    /// Pending.
    Pending,
    /// Running.
    Running,
    /// Done.
    Done,
    /// Dead.
    Dead,
    /// The task does not exist.
    Absent,
}

/// One transaction operation, e.g. `{"put":{"key":"a","value":"1"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOp {
    /// Write a key.
    Put(PutOp),
    /// Delete a key.
    Delete(KeyOp),
    /// Delete keys under a prefix.
    DeletePrefix(PrefixOp),
    /// Read a key.
    Get(KeyOp),
    /// Add to a counter.
    Incr(IncrOp),
    /// Enqueue a task.
    Enqueue(EnqueueOp),
    /// Complete a running task.
    Complete(CompleteOp),
}

/// `{"queue","payload"|"payload_base64","content_type"?,"delay"?|"delay_ms"?,
/// "max_attempts"?,"priority"?,"dedupe_key"?}`: the options of `POST
/// /v1/queues/{queue}/tasks`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueOp {
    /// The queue.
    pub queue: String,
    /// The payload as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The payload's content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Not claimable until this long from now (e.g. `"10s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// The same in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Attempts allowed (default 10; 0: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Higher is claimed first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// While an unfinished task has this key, enqueueing again returns that task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
}

/// `{"queue","id","claim","result"?}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteOp {
    /// The queue.
    pub queue: String,
    /// The task.
    pub id: u64,
    /// The claim token.
    pub claim: String,
    /// What the work produced (any JSON value, at most 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// `{"key","value"|"value_base64","lease"?}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutOp {
    /// The key.
    pub key: String,
    /// The value as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Attach to this lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
}

/// `{"key"}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOp {
    /// The key.
    pub key: String,
}

/// `{"prefix"}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixOp {
    /// The prefix (non-empty).
    pub prefix: String,
}

/// `{"key","by"}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrOp {
    /// The key.
    pub key: String,
    /// The amount (default 1).
    #[serde(default = "one")]
    pub by: i64,
}

fn one() -> i64 {
    1
}

/// `POST /v1/txn` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every comparison held.
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: u64,
    /// One per operation of the branch that ran.
    pub results: Vec<TxnResult>,
}

/// The result of one operation, tagged like the operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnResult {
    /// `{"put":{"key"}}`
    Put {
        /// The key.
        key: String,
    },
    /// `{"delete":{"key","deleted"}}`
    Delete {
        /// The key.
        key: String,
        /// 1 or 0.
        deleted: u64,
    },
    /// `{"delete_prefix":{"prefix","deleted"}}`
    DeletePrefix {
        /// The prefix.
        prefix: String,
        /// How many.
        deleted: u64,
    },
    /// `{"get":{"key","item"}}`, `item` null when absent.
    Get {
        /// The key.
        key: String,
        /// The key's envelope, or null.
        item: Option<KeyValue>,
    },
    /// `{"incr":{"key","value"}}`
    Incr {
        /// The key.
        key: String,
        /// The new value.
        value: i64,
    },
    /// `{"enqueue":{"queue","id","created"}}`; `created` is false for a dedupe hit.
    Enqueue {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
        /// Whether a new task was created.
        created: bool,
    },
    /// `{"complete":{"queue","id"}}`
    Complete {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compares_read_and_write_the_documented_json() {
        let cases = [
            (
                json!({"key": "a", "field": "mod_revision", "op": "==", "value": 4}),
                CompareOp::Equal,
                CompareTarget::ModRevision { value: 4 },
            ),
            (
                json!({"key": "a", "field": "value", "op": "!=", "value": "blue"}),
                CompareOp::NotEqual,
                CompareTarget::Value {
                    value: Some("blue".into()),
                    value_base64: None,
                },
            ),
            (
                json!({"key": "a", "field": "exists", "op": "==", "value": false}),
                CompareOp::Equal,
                CompareTarget::Exists { value: false },
            ),
            (
                json!({"queue": "q", "task": 7, "field": "state", "op": "!=", "value": "absent"}),
                CompareOp::NotEqual,
                CompareTarget::State {
                    value: CompareState::Absent,
                },
            ),
        ];
        for (text, op, target) in cases {
            let c: Compare = serde_json::from_value(text.clone()).expect("parses");
            assert_eq!((c.op, &c.target), (op, &target));
            assert_eq!(serde_json::to_value(&c).expect("writes"), text);
        }
        for bad in [
            json!({"key": "a", "field": "colour", "op": "==", "value": 1}),
            json!({"key": "a", "field": "version", "op": "~", "value": 1}),
            json!({"key": "a", "field": "version", "op": "==", "value": "one"}),
            json!({"key": "a", "field": "version", "op": "==", "value": 1, "extra": 2}),
            json!({"queue": "q", "task": 1, "field": "state", "op": "==", "value": "asleep"}),
        ] {
            assert!(
                serde_json::from_value::<Compare>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
