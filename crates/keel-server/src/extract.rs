//! Request extraction with keel's JSON errors and limits: query strings, bodies, JSON.

use axum::body::{Body, HttpBody};
use axum::extract::{FromRequestParts, Query};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use keel_wire::Code;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A query string parsed into `T`; unknown or malformed parameters are a 400
/// `invalid_query`, never silently ignored.
pub(crate) struct Q<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(Q(t)),
            Err(e) => Err(ApiError::query(e.body_text())),
        }
    }
}

/// The rest of the path after a route prefix (a key, a lease id), percent-decoded. A path
/// that does not decode to UTF-8 is a 400 `invalid_key`.
pub(crate) struct PathText(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(s)) => Ok(PathText(s)),
            Err(e) => Err(ApiError::new(Code::InvalidKey, e.body_text())),
        }
    }
}

/// Reads a body of at most `limit` bytes. A declared `Content-Length` over the limit is
/// refused before anything is read; a body that streams past it is cut off.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    code: Code,
    what: &str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(
            code,
            format!("{what} is larger than the limit of {limit} bytes"),
            limit,
        )
        .body_unread()
    };
    // The body knows its declared Content-Length (its size hint's lower bound).
    if body.size_hint().lower() > limit as u64 {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // to_bytes reports both a length overflow and a broken connection as errors.
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            ApiError::invalid(format!("could not read the request body: {e}"))
        }
    })
}

/// Reads a JSON request body within `--max-request-size` and parses it.
pub(crate) async fn json_body<T: DeserializeOwned>(
    config: &crate::ServerConfig,
    body: Body,
) -> Result<T, ApiError> {
    let limit = config.max_request_size;
    let bytes = read_body(body, limit, Code::BodyTooLarge, "the request body").await?;
    parse_json(&bytes)
}

/// Parses a JSON body, mapping errors to 400 `invalid_json`.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(Code::InvalidJson, e.to_string()))
}

/// Whether the client's `Accept` header asks for JSON (`?format=json` is handled by the
/// caller). Read from the request without copying its headers.
pub(crate) struct AcceptsJson(pub(crate) bool);

impl<S: Send + Sync> FromRequestParts<S> for AcceptsJson {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let json = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|p| p.trim().starts_with("application/json"))
            });
        Ok(AcceptsJson(json))
    }
}
