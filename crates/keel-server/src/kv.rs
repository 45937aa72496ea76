//! `/v1/kv` and `/v1/incr`: keys, ranges and counters.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, any, post};
use axum::{Json, Router};
use keel_state::{validate_key, KvCommand, KvOutcome, ListQuery, Outcome};
use keel_wire::{Code, DeleteResponse, IncrResponse, ListResponse, RevisionResponse};
use serde::Deserialize;

use crate::extract::{read_body, AcceptsJson, PathText, Q};
use crate::respond::{envelope, read_point, stale_headers, unexpected};
use crate::watch::{wait_for_change, Filter};
use crate::{ApiError, AppState};

/// The routes of keys, ranges and counters.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/kv", routing::get(list).delete(delete_range))
        .route("/v1/kv/", any(empty_key))
        .route("/v1/kv/{*key}", routing::get(get).put(put).delete(delete))
        .route("/v1/incr/{*key}", post(incr))
}

/// `format=` of a key read.
#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    /// The JSON envelope.
    Json,
    /// The raw value, with metadata in headers.
    Raw,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetQuery {
    revision: Option<u64>,
    format: Option<Format>,
    #[serde(default)]
    stale: bool,
    wait: Option<String>,
    after_revision: Option<u64>,
}

/// Blocking reads: with `wait`, holds the request until a key under `filter` changes after
/// `after_revision` (default: now), the wait (at most 10 minutes) runs out, or the server
/// stops; then the caller answers with the current state (so `wait` and a past `revision`
/// exclude each other).
async fn block(
    state: &AppState,
    filter: Filter,
    wait: Option<&str>,
    after_revision: Option<u64>,
    revision: Option<u64>,
) -> Result<(), ApiError> {
    if wait.is_some() && revision.is_some() {
        return Err(ApiError::query(
            "wait reads the current state; it cannot be combined with revision",
        ));
    }
    let Some(wait) = wait else {
        if after_revision.is_some() {
            return Err(ApiError::query("after_revision is only used with wait"));
        }
        return Ok(());
    };
    let wait =
        crate::parse_duration(wait).map_err(|e| ApiError::query(format!("wait {wait:?}: {e}")))?;
    let reader = state.node.state();
    wait_for_change(
        &state.hub,
        reader,
        &filter,
        after_revision,
        wait,
        state.closing.clone(),
    )
    .await;
    Ok(())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    PathText(key): PathText,
    Q(q): Q<GetQuery>,
    AcceptsJson(accepts_json): AcceptsJson,
) -> Result<Response, ApiError> {
    validate_key(&key)?;
    let json = match q.format {
        None => accepts_json,
        Some(Format::Json) => true,
        Some(Format::Raw) => false,
    };
    block(
        &state,
        Filter::Key(key.clone()),
        q.wait.as_deref(),
        q.after_revision,
        q.revision,
    )
    .await?;
    read_point(&state, q.stale).await?;
    let (found, store_revision) = state
        .node
        .state()
        .read(|s| (s.get(&key, q.revision), s.revision()));
    let kv = found?.ok_or_else(|| ApiError::from(keel_state::KvError::KeyNotFound(key.clone())))?;
    if json {
        let mut resp = Json(envelope(&key, &kv, true)).into_response();
        if q.stale {
            stale_headers(&state, resp.headers_mut());
        }
        return Ok(resp);
    }
    let mut resp = Body::from(kv.value.clone()).into_response();
    if q.stale {
        stale_headers(&state, resp.headers_mut());
    }
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let mut put = |name: &'static str, v: u64| {
        h.insert(HeaderName::from_static(name), HeaderValue::from(v));
    };
    put("keel-mod-revision", kv.mod_revision);
    put("keel-create-revision", kv.create_revision);
    put("keel-version", kv.version);
    put("keel-store-revision", store_revision);
    if let Some(lease) = kv.lease {
        put("keel-lease", lease);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutQuery {
    lease: Option<u64>,
    if_revision: Option<u64>,
}

pub(crate) async fn put(
    State(state): State<AppState>,
    PathText(key): PathText,
    Q(q): Q<PutQuery>,
    body: Body,
) -> Result<Json<RevisionResponse>, ApiError> {
    validate_key(&key)?;
    let limit = state.config.max_value_size;
    let body = read_body(body, limit, Code::ValueTooLarge, "the value").await?;
    // The body is a slice of the connection's read buffer; stored as it is, it would keep that
    // whole buffer (kilobytes) alive for as long as the key exists. The store owns a copy of
    // exactly the value.
    let value = bytes::Bytes::copy_from_slice(&body);
    drop(body);
    let command = KvCommand::Put {
        key,
        value,
        lease: q.lease,
        if_revision: q.if_revision,
    };
    match state.propose(command.into()).await? {
        Outcome::Kv(KvOutcome::Put { revision }) => Ok(Json(RevisionResponse { revision })),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    if_revision: Option<u64>,
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    PathText(key): PathText,
    Q(q): Q<DeleteQuery>,
) -> Result<Json<DeleteResponse>, ApiError> {
    validate_key(&key)?;
    let command = KvCommand::Delete {
        key,
        if_revision: q.if_revision,
    };
    match state.propose(command.into()).await? {
        Outcome::Kv(KvOutcome::Deleted { revision, deleted }) => {
            Ok(Json(DeleteResponse { revision, deleted }))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteRangeQuery {
    prefix: Option<String>,
    #[serde(default)]
    all: bool,
}

pub(crate) async fn delete_range(
    State(state): State<AppState>,
    Q(q): Q<DeleteRangeQuery>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let prefix = match (q.prefix, q.all) {
        (Some(p), false) if !p.is_empty() => p,
        (None, true) => String::new(),
        (Some(p), true) if p.is_empty() => String::new(),
        _ => {
            return Err(ApiError::invalid(
                "give a non-empty prefix=P, or all=true to delete every key",
            ))
        }
    };
    match state
        .propose(KvCommand::DeletePrefix { prefix }.into())
        .await?
    {
        Outcome::Kv(KvOutcome::Deleted { revision, deleted }) => {
            Ok(Json(DeleteResponse { revision, deleted }))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
    after: Option<String>,
    #[serde(default)]
    keys_only: bool,
    revision: Option<u64>,
    #[serde(default)]
    stale: bool,
    wait: Option<String>,
    after_revision: Option<u64>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Q(q): Q<ListParams>,
) -> Result<Response, ApiError> {
    let max = state.config.max_list_limit;
    let limit = q.limit.unwrap_or(state.config.default_list_limit);
    if limit == 0 || limit > max {
        return Err(ApiError::query(format!(
            "limit must be between 1 and {max}"
        )));
    }
    block(
        &state,
        Filter::Prefix(q.prefix.clone()),
        q.wait.as_deref(),
        q.after_revision,
        q.revision,
    )
    .await?;
    read_point(&state, q.stale).await?;
    let query = ListQuery {
        prefix: q.prefix,
        after: q.after,
        limit,
        revision: q.revision,
    };
    let page = state.node.state().read(|s| s.list(&query))?;
    let items = page
        .items
        .iter()
        .map(|(k, kv)| envelope(k, kv, !q.keys_only))
        .collect();
    let mut resp = Json(ListResponse {
        revision: page.revision,
        items,
        more: page.more,
    })
    .into_response();
    if q.stale {
        stale_headers(&state, resp.headers_mut());
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncrQuery {
    by: Option<i64>,
}

pub(crate) async fn incr(
    State(state): State<AppState>,
    PathText(key): PathText,
    Q(q): Q<IncrQuery>,
) -> Result<Json<IncrResponse>, ApiError> {
    validate_key(&key)?;
    let command = KvCommand::Incr {
        key,
        by: q.by.unwrap_or(1),
    };
    match state.propose(command.into()).await? {
        Outcome::Kv(KvOutcome::Incr { value, revision }) => {
            Ok(Json(IncrResponse { value, revision }))
        }
        other => Err(unexpected(other)),
    }
}

/// `/v1/kv/` with nothing after it.
pub(crate) async fn empty_key() -> ApiError {
    ApiError::from(keel_state::KeyError::Empty)
}
