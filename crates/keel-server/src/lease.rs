//! `/v1/leases`: grant, keep alive, inspect, list, revoke.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use keel_state::{Command, Outcome};
use keel_wire::{
    codes, LeaseGrantRequest, LeaseInfo, LeaseList, LeaseResponse, LeaseRevokeResponse,
    LeaseSummary,
};
use serde::Deserialize;

use crate::extract::{json_body, PathText, Q};
use crate::kv::{read_point, unexpected};
use crate::{parse_duration, ApiError, AppState};

/// Shortest lease accepted.
const MIN_TTL_MS: u64 = 1_000;
/// Longest lease accepted (one year).
const MAX_TTL_MS: u64 = 365 * 24 * 3600 * 1000;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().map_err(|_| {
        ApiError::bad(
            codes::INVALID_ARGUMENT,
            format!("lease id {raw:?} is not a number"),
        )
    })
}

fn ttl_ms(req: &LeaseGrantRequest) -> Result<u64, ApiError> {
    let bad = |m: String| ApiError::bad(codes::INVALID_TTL, m);
    let ms = match (&req.ttl, req.ttl_ms) {
        (Some(s), None) => parse_duration(s).map_err(bad)?.as_millis() as u64,
        (None, Some(ms)) => ms,
        _ => {
            return Err(bad(
                "give exactly one of ttl (e.g. \"10s\") or ttl_ms".into()
            ))
        }
    };
    if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ms) {
        return Err(bad(format!(
            "ttl must be between 1s and 365 days, got {ms} ms"
        )));
    }
    Ok(ms)
}

pub(crate) async fn grant(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<LeaseResponse>), ApiError> {
    let req: LeaseGrantRequest = json_body(&state.config, body).await?;
    let ttl_ms = ttl_ms(&req)?;
    match state.node.propose(Command::LeaseGrant { ttl_ms }).await? {
        Outcome::Lease(l) => {
            // A new lease may be due sooner than anything the expiry worker waits for.
            state.lease_wake.notify_one();
            Ok((
                StatusCode::CREATED,
                Json(LeaseResponse {
                    id: l.id,
                    ttl_ms: l.ttl_ms,
                }),
            ))
        }
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn keepalive(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<Json<LeaseResponse>, ApiError> {
    let id = parse_id(&id)?;
    match state.node.propose(Command::LeaseKeepAlive { id }).await? {
        Outcome::Lease(l) => Ok(Json(LeaseResponse {
            id: l.id,
            ttl_ms: l.ttl_ms,
        })),
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    PathText(id): PathText,
) -> Result<Json<LeaseRevokeResponse>, ApiError> {
    let id = parse_id(&id)?;
    match state.node.propose(Command::LeaseRevoke { id }).await? {
        Outcome::Revoked { revision, deleted } => {
            Ok(Json(LeaseRevokeResponse { revision, deleted }))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    #[serde(default)]
    stale: bool,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    PathText(id): PathText,
    Q(q): Q<ReadQuery>,
) -> Result<Json<LeaseInfo>, ApiError> {
    let id = parse_id(&id)?;
    read_point(&state, q.stale).await?;
    let now = now_ms();
    state
        .node
        .state()
        .read(|s| {
            s.lease(id).map(|l| LeaseInfo {
                id,
                ttl_ms: l.ttl_ms,
                remaining_ms: l.expires_at_ms.saturating_sub(now),
                keys: l.keys.iter().cloned().collect(),
            })
        })
        .map(Json)
        .ok_or_else(|| ApiError::NotFound {
            code: codes::LEASE_NOT_FOUND,
            message: format!("lease {id} not found"),
        })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Q(q): Q<ReadQuery>,
) -> Result<Json<LeaseList>, ApiError> {
    read_point(&state, q.stale).await?;
    let now = now_ms();
    let leases = state.node.state().read(|s| {
        s.leases()
            .map(|l| LeaseSummary {
                id: l.id,
                ttl_ms: l.ttl_ms,
                remaining_ms: l.expires_at_ms.saturating_sub(now),
                key_count: l.keys.len() as u64,
            })
            .collect()
    });
    Ok(Json(LeaseList { leases }))
}
