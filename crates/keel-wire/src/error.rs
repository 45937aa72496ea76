//! Errors: the stable codes every API error carries, each with its one HTTP status.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code, serialised as its snake_case name
/// (`"lease_not_found"`). Each code has exactly one HTTP status ([`Code::status`]); a new error
/// joins this list. A code this build does not know (from a newer server) reads as
/// [`Code::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// 400: A key is empty, too long or has control characters.
    InvalidKey,
    /// 400: A query parameter is malformed or unknown.
    InvalidQuery,
    /// 400: A JSON body does not parse or has wrong fields.
    InvalidJson,
    /// 400: An argument is out of range or contradictory.
    InvalidArgument,
    /// 400: A duration does not parse or is out of range.
    InvalidTtl,
    /// 400: A transaction branch writes a key twice.
    DuplicateKey,
    /// 400: A read at a revision the store has not reached.
    FutureRevision,
    /// 400: (WebSocket) A watch id is already in use on this socket.
    DuplicateWatch,
    /// 401: A call under `/raft/` without the cluster secret.
    Unauthorized,
    /// 404: The key does not exist.
    KeyNotFound,
    /// 404: The lease does not exist.
    LeaseNotFound,
    /// 404: (WebSocket) No watch with this id on this socket.
    WatchNotFound,
    /// 404: No such route.
    NotFound,
    /// 404: No cluster member with this id.
    MemberNotFound,
    /// 405: The route exists but not with this method.
    MethodNotAllowed,
    /// 409: The value is not an integer.
    NotANumber,
    /// 409: An increment overflows 64 bits.
    Overflow,
    /// 409: A membership change that is not allowed as asked (removing the last voter,
    /// making a learner lead, an address already taken).
    MembershipRefused,
    /// 410: The revision is older than the kept history.
    Compacted,
    /// 412: `if_revision` did not match.
    RevisionMismatch,
    /// 413: A value is larger than the limit.
    ValueTooLarge,
    /// 413: A transaction has too many operations.
    TxnTooLarge,
    /// 413: A request body is larger than the limit.
    BodyTooLarge,
    /// 429: A WebSocket already holds as many watches as it may.
    TooManyWatches,
    /// 500: A bug; the message says more.
    Internal,
    /// 501: The feature is not available in this build.
    NotImplemented,
    /// 503: This node is not the leader.
    NotLeader,
    /// 503: The node cannot serve right now (starting, stopping, storage failure).
    Unavailable,
    /// 503: No quorum answered within the request timeout (a minority side of a partition,
    /// or most members down). A write may or may not take effect.
    NoQuorum,
    /// 400: A queue (or other) name breaks its naming rules.
    InvalidName,
    /// 400: A transaction branch completes one task twice.
    DuplicateTask,
    /// 404: The queue has never had a task.
    QueueNotFound,
    /// 404: The task does not exist (never did, or was deleted).
    TaskNotFound,
    /// 409: The claim token is not the task's current claim: its lease ran out and the task was put back or given to another worker, or it is finished.
    ClaimLost,
    /// 409: The task is running, so it cannot be deleted.
    TaskRunning,
    /// 409: Only a done or dead task can be retried.
    TaskNotFinished,
    /// 429: The queue holds as many tasks as `--max-queue-tasks` allows.
    QueueFull,
    /// A code this build does not know.
    Unknown,
}

impl Code {
    /// Every known code.
    pub const ALL: &'static [Code] = &[
        Code::InvalidKey,
        Code::InvalidQuery,
        Code::InvalidJson,
        Code::InvalidArgument,
        Code::InvalidTtl,
        Code::DuplicateKey,
        Code::FutureRevision,
        Code::DuplicateWatch,
        Code::KeyNotFound,
        Code::LeaseNotFound,
        Code::WatchNotFound,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::NotANumber,
        Code::Overflow,
        Code::Compacted,
        Code::RevisionMismatch,
        Code::ValueTooLarge,
        Code::TxnTooLarge,
        Code::BodyTooLarge,
        Code::TooManyWatches,
        Code::Internal,
        Code::NotImplemented,
        Code::NotLeader,
        Code::Unavailable,
        Code::MemberNotFound,
        Code::MembershipRefused,
        Code::NoQuorum,
        Code::Unauthorized,
        Code::InvalidName,
        Code::DuplicateTask,
        Code::QueueNotFound,
        Code::TaskNotFound,
        Code::ClaimLost,
        Code::TaskRunning,
        Code::TaskNotFinished,
        Code::QueueFull,
    ];

    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidKey => "invalid_key",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidJson => "invalid_json",
            Code::InvalidArgument => "invalid_argument",
            Code::InvalidTtl => "invalid_ttl",
            Code::DuplicateKey => "duplicate_key",
            Code::FutureRevision => "future_revision",
            Code::DuplicateWatch => "duplicate_watch",
            Code::KeyNotFound => "key_not_found",
            Code::LeaseNotFound => "lease_not_found",
            Code::WatchNotFound => "watch_not_found",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::NotANumber => "not_a_number",
            Code::Overflow => "overflow",
            Code::Compacted => "compacted",
            Code::RevisionMismatch => "revision_mismatch",
            Code::ValueTooLarge => "value_too_large",
            Code::TxnTooLarge => "txn_too_large",
            Code::BodyTooLarge => "body_too_large",
            Code::TooManyWatches => "too_many_watches",
            Code::Internal => "internal",
            Code::NotImplemented => "not_implemented",
            Code::NotLeader => "not_leader",
            Code::Unavailable => "unavailable",
            Code::MemberNotFound => "member_not_found",
            Code::MembershipRefused => "membership_refused",
            Code::NoQuorum => "no_quorum",
            Code::Unauthorized => "unauthorized",
            Code::InvalidName => "invalid_name",
            Code::DuplicateTask => "duplicate_task",
            Code::QueueNotFound => "queue_not_found",
            Code::TaskNotFound => "task_not_found",
            Code::ClaimLost => "claim_lost",
            Code::TaskRunning => "task_running",
            Code::TaskNotFinished => "task_not_finished",
            Code::QueueFull => "queue_full",
            Code::Unknown => "unknown",
        }
    }

    /// The code with this wire name; [`Code::Unknown`] for any other.
    pub fn parse(name: &str) -> Code {
        match name {
            "invalid_key" => Code::InvalidKey,
            "invalid_query" => Code::InvalidQuery,
            "invalid_json" => Code::InvalidJson,
            "invalid_argument" => Code::InvalidArgument,
            "invalid_ttl" => Code::InvalidTtl,
            "duplicate_key" => Code::DuplicateKey,
            "future_revision" => Code::FutureRevision,
            "duplicate_watch" => Code::DuplicateWatch,
            "key_not_found" => Code::KeyNotFound,
            "lease_not_found" => Code::LeaseNotFound,
            "watch_not_found" => Code::WatchNotFound,
            "not_found" => Code::NotFound,
            "method_not_allowed" => Code::MethodNotAllowed,
            "not_a_number" => Code::NotANumber,
            "overflow" => Code::Overflow,
            "compacted" => Code::Compacted,
            "revision_mismatch" => Code::RevisionMismatch,
            "value_too_large" => Code::ValueTooLarge,
            "txn_too_large" => Code::TxnTooLarge,
            "body_too_large" => Code::BodyTooLarge,
            "too_many_watches" => Code::TooManyWatches,
            "internal" => Code::Internal,
            "not_implemented" => Code::NotImplemented,
            "not_leader" => Code::NotLeader,
            "unavailable" => Code::Unavailable,
            "member_not_found" => Code::MemberNotFound,
            "membership_refused" => Code::MembershipRefused,
            "no_quorum" => Code::NoQuorum,
            "unauthorized" => Code::Unauthorized,
            "invalid_name" => Code::InvalidName,
            "duplicate_task" => Code::DuplicateTask,
            "queue_not_found" => Code::QueueNotFound,
            "task_not_found" => Code::TaskNotFound,
            "claim_lost" => Code::ClaimLost,
            "task_running" => Code::TaskRunning,
            "task_not_finished" => Code::TaskNotFinished,
            "queue_full" => Code::QueueFull,
            _ => Code::Unknown,
        }
    }

    /// The HTTP status every answer with this code has.
    pub fn status(self) -> u16 {
        match self {
            Code::InvalidKey
            | Code::InvalidQuery
            | Code::InvalidJson
            | Code::InvalidArgument
            | Code::InvalidTtl
            | Code::DuplicateKey
            | Code::FutureRevision
            | Code::DuplicateWatch
            | Code::InvalidName
            | Code::DuplicateTask => 400,
            Code::Unauthorized => 401,
            Code::KeyNotFound
            | Code::LeaseNotFound
            | Code::WatchNotFound
            | Code::NotFound
            | Code::MemberNotFound
            | Code::QueueNotFound
            | Code::TaskNotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::NotANumber
            | Code::Overflow
            | Code::MembershipRefused
            | Code::ClaimLost
            | Code::TaskRunning
            | Code::TaskNotFinished => 409,
            Code::Compacted => 410,
            Code::RevisionMismatch => 412,
            Code::ValueTooLarge | Code::TxnTooLarge | Code::BodyTooLarge => 413,
            Code::TooManyWatches | Code::QueueFull => 429,
            Code::Internal => 500,
            Code::NotImplemented => 501,
            Code::NotLeader | Code::Unavailable | Code::NoQuorum => 503,
            Code::Unknown => 500,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Code::parse(&name))
    }
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
    /// A stable machine-readable code.
    pub code: Code,
    /// A human-readable sentence.
    pub message: String,
    /// Extra fields, flattened into the object.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_by_name_and_has_an_error_status() {
        for &code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), code);
            let json = serde_json::to_string(&code).expect("serialise");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<Code>(&json).expect("parse"), code);
            assert!((400..600).contains(&code.status()), "{code}");
        }
        assert_eq!(Code::parse("from_the_future"), Code::Unknown);
        assert_eq!(Code::LeaseNotFound.status(), 404);
    }
}
