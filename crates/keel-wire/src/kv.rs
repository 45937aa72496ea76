//! Keys: values and their metadata, list pages, write answers.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

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
