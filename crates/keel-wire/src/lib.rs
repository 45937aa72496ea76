//! keel's HTTP API bodies: the public protocol, kept apart from internal types.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Stable error codes carried in `{"error":{"code":…}}`.
pub mod codes {
    /// 400: a key is empty, too long or has control characters.
    pub const INVALID_KEY: &str = "invalid_key";
    /// 400: a query parameter is malformed or unknown.
    pub const INVALID_QUERY: &str = "invalid_query";
    /// 400: a JSON body does not parse or has wrong fields.
    pub const INVALID_JSON: &str = "invalid_json";
    /// 400: an argument is out of range or contradictory.
    pub const INVALID_ARGUMENT: &str = "invalid_argument";
    /// 400: a duration does not parse or is out of range.
    pub const INVALID_TTL: &str = "invalid_ttl";
    /// 400: a transaction branch writes a key twice.
    pub const DUPLICATE_KEY: &str = "duplicate_key";
    /// 400: a read at a revision the store has not reached.
    pub const FUTURE_REVISION: &str = "future_revision";
    /// 404: the key does not exist.
    pub const KEY_NOT_FOUND: &str = "key_not_found";
    /// 404: the lease does not exist.
    pub const LEASE_NOT_FOUND: &str = "lease_not_found";
    /// 404: no such route.
    pub const NOT_FOUND: &str = "not_found";
    /// 405: the route exists but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 409: the value is not an integer.
    pub const NOT_A_NUMBER: &str = "not_a_number";
    /// 409: an increment overflows 64 bits.
    pub const OVERFLOW: &str = "overflow";
    /// 410: the revision is older than the kept history.
    pub const COMPACTED: &str = "compacted";
    /// 412: `if_revision` did not match.
    pub const REVISION_MISMATCH: &str = "revision_mismatch";
    /// 413: a value is larger than the limit.
    pub const VALUE_TOO_LARGE: &str = "value_too_large";
    /// 413: a transaction has too many operations.
    pub const TXN_TOO_LARGE: &str = "txn_too_large";
    /// 413: a request body is larger than the limit.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// 429: a WebSocket already holds as many watches as it may.
    pub const TOO_MANY_WATCHES: &str = "too_many_watches";
    /// 400 (WebSocket): a watch id is already in use on this socket.
    pub const DUPLICATE_WATCH: &str = "duplicate_watch";
    /// 404 (WebSocket): no watch with this id on this socket.
    pub const WATCH_NOT_FOUND: &str = "watch_not_found";
    /// 503: this node is not the leader.
    pub const NOT_LEADER: &str = "not_leader";
    /// 503: the node cannot serve right now (starting, stopping, storage failure).
    pub const UNAVAILABLE: &str = "unavailable";
    /// 501: the feature is not available in this build.
    pub const NOT_IMPLEMENTED: &str = "not_implemented";
    /// 500: a bug; the message says more.
    pub const INTERNAL: &str = "internal";
}

/// `{"error": {...}}`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error's code, message and any code-specific fields (e.g. `current_revision`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable machine-readable code from [`codes`].
    pub code: String,
    /// A human-readable sentence.
    pub message: String,
    /// Extra fields, flattened into the object.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `{"revision": R}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionResponse {
    /// The store revision after the write.
    pub revision: u64,
}

/// `{"revision": R, "deleted": N}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    /// The store revision after the delete.
    pub revision: u64,
    /// How many keys were deleted.
    pub deleted: u64,
}

/// A key with its value and metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, when it is UTF-8 (absent with `keys_only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in standard base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Revision at which the key was created.
    pub create_revision: u64,
    /// Revision of the last write.
    pub mod_revision: u64,
    /// Writes since creation.
    pub version: u64,
    /// Attached lease.
    #[serde(default)]
    pub lease: Option<u64>,
}

/// Puts bytes in `value` when they are UTF-8, else in `value_base64`.
pub fn encode_value(bytes: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Some(s.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

/// Reads `value` or `value_base64` (exactly one may be given; neither means empty).
pub fn decode_value(value: Option<&str>, value_base64: Option<&str>) -> Result<Vec<u8>, String> {
    match (value, value_base64) {
        (Some(_), Some(_)) => Err("give either value or value_base64, not both".into()),
        (Some(v), None) => Ok(v.as_bytes().to_vec()),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("value_base64 is not valid base64: {e}")),
        (None, None) => Ok(Vec::new()),
    }
}

impl KeyValue {
    /// The value's bytes.
    pub fn value_bytes(&self) -> Result<Vec<u8>, String> {
        decode_value(self.value.as_deref(), self.value_base64.as_deref())
    }
}

/// `GET /v1/kv?prefix=…`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The revision the list was read at.
    pub revision: u64,
    /// Keys in order.
    pub items: Vec<KeyValue>,
    /// Whether more keys follow (ask again with `after` = the last key).
    pub more: bool,
}

/// `POST /v1/incr/{key}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrResponse {
    /// The counter's new value.
    pub value: i64,
    /// The store revision after the write.
    pub revision: u64,
}

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

/// One comparison: `{"key","field","op","value"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// `mod_revision`, `create_revision`, `version`, `value` or `exists`.
    pub field: String,
    /// `==`, `!=`, `<` or `>`.
    pub op: String,
    /// A number for revisions and version, a string for value, a boolean for exists.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// For `field: "value"`: the value in base64 instead of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
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
}

/// `POST /v1/leases` body: `{"ttl":"10s"}` or `{"ttl_ms":10000}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGrantRequest {
    /// Time to live as a human duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Time to live in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// `{"id","ttl_ms"}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// The lease id.
    pub id: u64,
    /// Its time to live.
    pub ttl_ms: u64,
}

/// `GET /v1/leases/{id}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease id.
    pub id: u64,
    /// Its time to live.
    pub ttl_ms: u64,
    /// Milliseconds until it expires unless kept alive.
    pub remaining_ms: u64,
    /// Keys attached to it.
    pub keys: Vec<String>,
}

/// One lease in `GET /v1/leases`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseSummary {
    /// The lease id.
    pub id: u64,
    /// Its time to live.
    pub ttl_ms: u64,
    /// Milliseconds until it expires unless kept alive.
    pub remaining_ms: u64,
    /// How many keys are attached.
    pub key_count: u64,
}

/// `GET /v1/leases`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseList {
    /// Every lease, by id.
    pub leases: Vec<LeaseSummary>,
}

/// `DELETE /v1/leases/{id}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRevokeResponse {
    /// The store revision afterwards.
    pub revision: u64,
    /// How many keys were deleted with the lease.
    pub deleted: u64,
}

/// Whether a watched key was written or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchEventType {
    /// Created or overwritten.
    Put,
    /// Deleted.
    Delete,
}

/// One key's change in a watch message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `put` or `delete`.
    #[serde(rename = "type")]
    pub kind: WatchEventType,
    /// The key.
    pub key: String,
    /// The new value, when it is UTF-8 (absent for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The new value in standard base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Revision at which the key was created (0 for a delete).
    pub create_revision: u64,
    /// The revision of this change.
    pub mod_revision: u64,
    /// Writes since creation (0 for a delete).
    pub version: u64,
    /// Attached lease.
    #[serde(default)]
    pub lease: Option<u64>,
    /// With `prev_value=true`: the value before the change, when it was UTF-8 (absent if the
    /// key did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_value: Option<String>,
    /// With `prev_value=true`: the value before the change in base64, when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_value_base64: Option<String>,
}

impl WatchEvent {
    /// The new value's bytes (empty for a delete).
    pub fn value_bytes(&self) -> Result<Vec<u8>, String> {
        decode_value(self.value.as_deref(), self.value_base64.as_deref())
    }
}

/// SSE `event: change`: every event of one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchChange {
    /// The revision.
    pub revision: u64,
    /// The watched keys it changed, in the order the command changed them.
    pub events: Vec<WatchEvent>,
}

/// SSE `event: snapshot` (`initial=true`): the watched keys as of `revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSnapshot {
    /// The revision the keys were read at; changes follow from `revision + 1`.
    pub revision: u64,
    /// The keys, in order.
    pub items: Vec<KeyValue>,
}

/// SSE `event: progress`: every change up to `revision` has been delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchProgress {
    /// The store revision as far as this stream has seen it.
    pub revision: u64,
}

/// SSE `event: compacted`: the history no longer reaches back to the asked revision; the
/// stream ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchCompacted {
    /// The oldest revision still in the history window.
    pub compact_revision: u64,
}

/// A WebSocket watch request, client to server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum WsRequest {
    /// Start a watch under a client-chosen id.
    Watch(WsWatch),
    /// Stop the watch with this id.
    Cancel {
        /// The watch's id.
        id: String,
    },
}

/// `{"op":"watch",…}`: exactly one of `key` and `prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsWatch {
    /// The client's name for this watch, echoed in every message about it.
    pub id: String,
    /// Watch one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Watch every key under a prefix (empty: all keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Deliver every change with a revision at or after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<u64>,
    /// First send the current state, then every later change.
    #[serde(default)]
    pub initial: bool,
    /// Include each key's value before the change.
    #[serde(default)]
    pub prev_value: bool,
    /// Idle interval between progress messages, as a duration string (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// A WebSocket message, server to client: `id` and one kind of content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    /// The watch this message is about.
    pub id: String,
    /// A change's (or a snapshot's) revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// A change's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<WatchEvent>>,
    /// A snapshot's keys (`initial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<KeyValue>>,
    /// Progress: every change up to this revision has been delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u64>,
    /// The history no longer reaches back; the watch has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted: Option<u64>,
    /// The watch was cancelled as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled: Option<bool>,
    /// The request about this id failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}
