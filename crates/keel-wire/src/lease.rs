//! Leases: grant, keep alive, list, revoke.

use serde::{Deserialize, Serialize};

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
