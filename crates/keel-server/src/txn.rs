//! `POST /v1/txn`: parse and validate a JSON transaction, then propose it as one command.

use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use axum::Json;
use axum::Router;
use bytes::Bytes;
use keel_state::{
    validate_key, CompareOp, CompareTarget, Condition, Outcome, TaskCompare, TaskState, Txn, TxnOp,
    TxnOpResult,
};
use keel_wire::{Code, TxnRequest, TxnResponse, TxnResult};

use crate::extract::json_body;
use crate::respond::{envelope, unexpected};
use crate::{ApiError, AppState, ServerConfig};

/// The route of transactions.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/txn", post(txn))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

fn value_bytes(
    config: &ServerConfig,
    value: Option<&str>,
    value_base64: Option<&str>,
) -> Result<Bytes, ApiError> {
    let bytes = keel_wire::decode_value(value, value_base64).map_err(bad)?;
    if bytes.len() > config.max_value_size {
        return Err(ApiError::too_large(
            Code::ValueTooLarge,
            format!(
                "a value of {} bytes is over the limit of {}",
                bytes.len(),
                config.max_value_size
            ),
            config.max_value_size,
        ));
    }
    Ok(Bytes::from(bytes))
}

fn compare(config: &ServerConfig, c: keel_wire::Compare) -> Result<Condition, ApiError> {
    use keel_wire::CompareTarget as Wire;
    let op = match c.op {
        keel_wire::CompareOp::Equal => CompareOp::Equal,
        keel_wire::CompareOp::NotEqual => CompareOp::NotEqual,
        keel_wire::CompareOp::Less => CompareOp::Less,
        keel_wire::CompareOp::Greater => CompareOp::Greater,
    };
    let key = match (c.key, c.queue, c.task, &c.target) {
        (None, Some(queue), Some(id), Wire::State { value }) => {
            crate::queue::validate_name(&queue)?;
            if !matches!(op, CompareOp::Equal | CompareOp::NotEqual) {
                return Err(bad("compare on a task's state takes == or !="));
            }
            let state = match value {
                keel_wire::CompareState::Pending => Some(TaskState::Pending),
                keel_wire::CompareState::Running => Some(TaskState::Running),
                keel_wire::CompareState::Done => Some(TaskState::Done),
                keel_wire::CompareState::Dead => Some(TaskState::Dead),
                keel_wire::CompareState::Absent => None,
            };
            return Ok(TaskCompare {
                queue,
                id,
                op,
                state,
            }
            .into());
        }
        (Some(key), None, None, target) if !matches!(target, Wire::State { .. }) => key,
        _ => {
            return Err(bad(
                "a compare names a key (with field mod_revision, create_revision, version, \
                 value or exists) or a queue and task (with field state)",
            ))
        }
    };
    validate_key(&key)?;
    let target = match c.target {
        Wire::ModRevision { value } => CompareTarget::ModRevision(value),
        Wire::CreateRevision { value } => CompareTarget::CreateRevision(value),
        Wire::Version { value } => CompareTarget::Version(value),
        Wire::Value {
            value,
            value_base64,
        } => CompareTarget::Value(value_bytes(
            config,
            value.as_deref(),
            value_base64.as_deref(),
        )?),
        Wire::Exists { value } => {
            if !matches!(op, CompareOp::Equal | CompareOp::NotEqual) {
                return Err(bad("compare on exists takes == or !="));
            }
            CompareTarget::Exists(value)
        }
        Wire::State { .. } => return Err(bad("field state is a task's, not a key's")),
    };
    Ok(keel_state::Compare { key, op, target }.into())
}

fn op(config: &ServerConfig, op: keel_wire::TxnOp) -> Result<TxnOp, ApiError> {
    Ok(match op {
        keel_wire::TxnOp::Put(p) => {
            validate_key(&p.key)?;
            let value = value_bytes(config, p.value.as_deref(), p.value_base64.as_deref())?;
            TxnOp::Put {
                key: p.key,
                value,
                lease: p.lease,
            }
        }
        keel_wire::TxnOp::Delete(k) => {
            validate_key(&k.key)?;
            TxnOp::Delete { key: k.key }
        }
        keel_wire::TxnOp::DeletePrefix(p) => {
            if p.prefix.is_empty() {
                return Err(bad("delete_prefix needs a non-empty prefix"));
            }
            TxnOp::DeletePrefix { prefix: p.prefix }
        }
        keel_wire::TxnOp::Get(k) => {
            validate_key(&k.key)?;
            TxnOp::Get { key: k.key }
        }
        keel_wire::TxnOp::Incr(i) => {
            validate_key(&i.key)?;
            TxnOp::Incr {
                key: i.key,
                by: i.by,
            }
        }
        keel_wire::TxnOp::Enqueue(e) => {
            let payload = value_bytes(config, e.payload.as_deref(), e.payload_base64.as_deref())?;
            let options = crate::queue::EnqueueOptions {
                delay: e.delay,
                delay_ms: e.delay_ms,
                max_attempts: e.max_attempts,
                priority: e.priority,
                dedupe_key: e.dedupe_key,
            };
            TxnOp::Enqueue(crate::queue::enqueue_command(
                config,
                e.queue,
                payload,
                e.content_type,
                options,
            )?)
        }
        keel_wire::TxnOp::Complete(c) => {
            crate::queue::validate_name(&c.queue)?;
            let claim = crate::queue::claim_revision(&c.queue, c.id, &c.claim)?;
            TxnOp::Complete {
                result: crate::queue::result_bytes(c.result.as_ref())?,
                queue: c.queue,
                id: c.id,
                claim,
            }
        }
    })
}

/// Turns a JSON transaction into a validated command.
pub(crate) fn parse_txn(config: &ServerConfig, req: TxnRequest) -> Result<Txn, ApiError> {
    let n = req.compare.len() + req.success.len() + req.failure.len();
    if n > config.max_txn_ops {
        return Err(ApiError::too_large(
            Code::TxnTooLarge,
            format!(
                "a transaction of {n} comparisons and operations is over the limit of {}",
                config.max_txn_ops
            ),
            config.max_txn_ops,
        ));
    }
    let txn = Txn {
        compare: req
            .compare
            .into_iter()
            .map(|c| compare(config, c))
            .collect::<Result<_, _>>()?,
        success: req
            .success
            .into_iter()
            .map(|o| op(config, o))
            .collect::<Result<_, _>>()?,
        failure: req
            .failure
            .into_iter()
            .map(|o| op(config, o))
            .collect::<Result<_, _>>()?,
    };
    txn.validate()?;
    Ok(txn)
}

fn result(r: TxnOpResult) -> TxnResult {
    match r {
        TxnOpResult::Put { key } => TxnResult::Put { key },
        TxnOpResult::Delete { key, deleted } => TxnResult::Delete { key, deleted },
        TxnOpResult::DeletePrefix { prefix, deleted } => {
            TxnResult::DeletePrefix { prefix, deleted }
        }
        TxnOpResult::Get { key, kv } => {
            let item = kv.map(|w| envelope(&key, &w.into(), true));
            TxnResult::Get { key, item }
        }
        TxnOpResult::Incr { key, value } => TxnResult::Incr { key, value },
        TxnOpResult::Enqueue { queue, id, created } => TxnResult::Enqueue { queue, id, created },
        TxnOpResult::Complete { queue, id } => TxnResult::Complete { queue, id },
    }
}

pub(crate) async fn txn(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<TxnResponse>, ApiError> {
    let req: TxnRequest = json_body(&state.config, body).await?;
    let txn = parse_txn(&state.config, req)?;
    match state.propose(txn.into()).await? {
        Outcome::Txn(out) => Ok(Json(TxnResponse {
            succeeded: out.succeeded,
            revision: out.revision,
            results: out.results.into_iter().map(result).collect(),
        })),
        other => Err(unexpected(other)),
    }
}
