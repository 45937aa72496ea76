//! API errors: a [`Code`] from keel-wire (which fixes the HTTP status), a message, and any
//! code-specific fields. Every refusal in the state machine and every read error maps to a
//! code here, in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_raft::{ClusterError, ProposeError};
use keel_state::{CommandError, KeyError, KvError, LeaseError, QueueError, ReadError, TxnError};
use keel_wire::{Code, ErrorBody, ErrorDetail};
use serde_json::{Map, Value};

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    code: Code,
    message: String,
    extra: Map<String, Value>,
    /// The request body was refused before it was read to its end: the answer says
    /// `Connection: close`, because the connection closes after it.
    unread_body: bool,
}

impl ApiError {
    /// An error with `code` (and so its status) and a sentence saying what is wrong.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            extra: Map::new(),
            unread_body: false,
        }
    }

    /// Adds a code-specific field to the error object (e.g. `current_revision`, `limit`).
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(field.to_owned(), value.into());
        self
    }

    /// Marks the request body as left unread (see [`ApiError::unread_body`]).
    pub(crate) fn body_unread(mut self) -> Self {
        self.unread_body = true;
        self
    }

    /// The error's code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// 400 `invalid_argument`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(Code::InvalidArgument, message)
    }

    /// 400 `invalid_query`.
    pub(crate) fn query(message: impl Into<String>) -> Self {
        ApiError::new(Code::InvalidQuery, message)
    }

    /// 500 `internal`: a bug.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError::new(Code::Internal, message)
    }

    /// 413 with `limit`.
    pub(crate) fn too_large(code: Code, message: impl Into<String>, limit: usize) -> Self {
        ApiError::new(code, message).with("limit", limit as u64)
    }

    /// The status and the `{"code","message",…}` object, as every API error carries them.
    pub(crate) fn detail(&self) -> (StatusCode, ErrorDetail) {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = %self.code, error = %self.message, "request failed");
        }
        let detail = ErrorDetail {
            code: self.code,
            message: self.message.clone(),
            extra: self.extra.clone(),
        };
        (status, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.detail();
        let mut resp = (status, axum::Json(ErrorBody { error })).into_response();
        if self.unread_body {
            // The rest of the body is never read, so the server will not reuse this
            // connection; a client that knows it does not send its next request on it.
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let message = e.to_string();
        match e {
            CommandError::Kv(e) => match e {
                KvError::RevisionMismatch { current, .. } => {
                    ApiError::new(Code::RevisionMismatch, message).with("current_revision", current)
                }
                KvError::KeyNotFound(_) => ApiError::new(Code::KeyNotFound, message),
                KvError::NotANumber(_) => ApiError::new(Code::NotANumber, message),
                KvError::Overflow(_) => ApiError::new(Code::Overflow, message),
            },
            CommandError::Lease(e) => match e {
                LeaseError::NotFound(_) => ApiError::new(Code::LeaseNotFound, message),
                LeaseError::InvalidTtl => ApiError::new(Code::InvalidTtl, message),
            },
            CommandError::Txn(e) => match e {
                TxnError::DuplicateKey(_) => ApiError::new(Code::DuplicateKey, message),
                TxnError::DuplicateTask { .. } => ApiError::new(Code::DuplicateTask, message),
                TxnError::OrderedTaskCompare { .. } => ApiError::invalid(message),
            },
            CommandError::Queue(e) => match e {
                QueueError::TaskNotFound { .. } => ApiError::new(Code::TaskNotFound, message),
                QueueError::ClaimLost { .. } => ApiError::new(Code::ClaimLost, message),
                QueueError::TaskRunning { .. } => ApiError::new(Code::TaskRunning, message),
                QueueError::NotFinished { .. } => ApiError::new(Code::TaskNotFinished, message),
                QueueError::QueueFull { limit, .. } => {
                    ApiError::new(Code::QueueFull, message).with("limit", limit)
                }
                QueueError::Invalid(_) => ApiError::invalid(message),
            },
        }
    }
}

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        CommandError::from(e).into()
    }
}

impl From<TxnError> for ApiError {
    fn from(e: TxnError) -> Self {
        CommandError::from(e).into()
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let message = e.to_string();
        match e {
            ReadError::Compacted {
                compact_revision, ..
            } => ApiError::new(Code::Compacted, message).with("compact_revision", compact_revision),
            ReadError::FutureRevision { current, .. } => {
                ApiError::new(Code::FutureRevision, message).with("current_revision", current)
            }
        }
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { leader } => {
                let err = ApiError::new(Code::NotLeader, "this node is not the leader");
                match leader {
                    Some((id, addr)) => err.with("leader_id", id).with("leader_addr", addr),
                    None => err,
                }
            }
            ProposeError::Unavailable(m) => ApiError::new(Code::Unavailable, m),
            ProposeError::NoQuorum(m) => ApiError::new(Code::NoQuorum, m),
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NotFound(id) => {
                ApiError::new(Code::MemberNotFound, e.to_string()).with("id", id)
            }
            ClusterError::Refused(m) => ApiError::new(Code::MembershipRefused, m),
            ClusterError::Propose(e) => e.into(),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        ApiError::new(Code::InvalidKey, e.to_string())
    }
}
