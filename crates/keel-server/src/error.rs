//! API errors and their one mapping to HTTP status and stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_raft::ProposeError;
use keel_state::{CommandError, KeyError, ReadError};
use keel_wire::{codes, ErrorBody, ErrorDetail};
use serde_json::{json, Map, Value};

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a code.
    #[error("{message}")]
    BadRequest {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 400: a read ahead of the store.
    #[error("{0}")]
    FutureRevision(ReadError),
    /// 404 with a code.
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// What is missing.
        message: String,
    },
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 with a code.
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// 410: history no longer reaches back.
    #[error("{message}")]
    Compacted {
        /// What was asked.
        message: String,
        /// The oldest readable revision.
        compact_revision: u64,
    },
    /// 412: `if_revision` did not match.
    #[error("{message}")]
    RevisionMismatch {
        /// What happened.
        message: String,
        /// The key's current `mod_revision` (0 when absent).
        current_revision: u64,
    },
    /// 429: over a count limit.
    #[error("{message}")]
    TooMany {
        /// Stable code.
        code: &'static str,
        /// What is over which limit.
        message: String,
        /// The limit.
        limit: u64,
    },
    /// 413 with a code.
    #[error("{message}")]
    TooLarge {
        /// Stable code.
        code: &'static str,
        /// What is too large.
        message: String,
        /// The limit.
        limit: u64,
        /// The request body was refused before it was read to its end: the answer says
        /// `Connection: close`, because the connection closes after it.
        unread_body: bool,
    },
    /// 503: not the leader.
    #[error("this node is not the leader")]
    NotLeader {
        /// The leader's id and address, if known.
        leader: Option<(u64, String)>,
    },
    /// 503: cannot serve now.
    #[error("{0}")]
    Unavailable(String),
    /// 501.
    #[error("{0}")]
    NotImplemented(String),
    /// 500: a bug.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Map<String, Value>) {
        let none = Map::new;
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, none()),
            ApiError::FutureRevision(ReadError::FutureRevision { current, .. }) => {
                let extra = json!({ "current_revision": current });
                (
                    StatusCode::BAD_REQUEST,
                    codes::FUTURE_REVISION,
                    as_map(extra),
                )
            }
            ApiError::FutureRevision(_) => {
                (StatusCode::BAD_REQUEST, codes::FUTURE_REVISION, none())
            }
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code, none()),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD_NOT_ALLOWED,
                none(),
            ),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code, none()),
            ApiError::Compacted {
                compact_revision, ..
            } => {
                let extra = json!({ "compact_revision": compact_revision });
                (StatusCode::GONE, codes::COMPACTED, as_map(extra))
            }
            ApiError::RevisionMismatch {
                current_revision, ..
            } => {
                let extra = json!({ "current_revision": current_revision });
                (
                    StatusCode::PRECONDITION_FAILED,
                    codes::REVISION_MISMATCH,
                    as_map(extra),
                )
            }
            ApiError::TooMany { code, limit, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                code,
                as_map(json!({ "limit": limit })),
            ),
            ApiError::TooLarge { code, limit, .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                code,
                as_map(json!({ "limit": limit })),
            ),
            ApiError::NotLeader { leader } => {
                let extra = match leader {
                    Some((id, addr)) => json!({ "leader_id": id, "leader_addr": addr }),
                    None => json!({}),
                };
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::NOT_LEADER,
                    as_map(extra),
                )
            }
            ApiError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, none())
            }
            ApiError::NotImplemented(_) => {
                (StatusCode::NOT_IMPLEMENTED, codes::NOT_IMPLEMENTED, none())
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, none()),
        }
    }
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl ApiError {
    /// The status and the `{"code","message",…}` object, as every API error carries them.
    pub(crate) fn detail(&self) -> (StatusCode, ErrorDetail) {
        let (status, code, extra) = self.parts();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        }
        let detail = ErrorDetail {
            code: code.to_owned(),
            message: self.to_string(),
            extra,
        };
        (status, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let close = matches!(
            self,
            ApiError::TooLarge {
                unread_body: true,
                ..
            }
        );
        let (status, error) = self.detail();
        let mut resp = (status, axum::Json(ErrorBody { error })).into_response();
        if close {
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
            CommandError::RevisionMismatch { current, .. } => ApiError::RevisionMismatch {
                message,
                current_revision: current,
            },
            CommandError::KeyNotFound(_) => ApiError::NotFound {
                code: codes::KEY_NOT_FOUND,
                message,
            },
            CommandError::LeaseNotFound(_) => ApiError::NotFound {
                code: codes::LEASE_NOT_FOUND,
                message,
            },
            CommandError::NotANumber(_) => ApiError::Conflict {
                code: codes::NOT_A_NUMBER,
                message,
            },
            CommandError::Overflow(_) => ApiError::Conflict {
                code: codes::OVERFLOW,
                message,
            },
            CommandError::DuplicateKey(_) => ApiError::bad(codes::DUPLICATE_KEY, message),
            CommandError::InvalidTtl => ApiError::bad(codes::INVALID_TTL, message),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Compacted {
                compact_revision, ..
            } => ApiError::Compacted {
                message: e.to_string(),
                compact_revision,
            },
            ReadError::FutureRevision { .. } => ApiError::FutureRevision(e),
        }
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { leader } => ApiError::NotLeader { leader },
            ProposeError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        ApiError::bad(codes::INVALID_KEY, e.to_string())
    }
}
