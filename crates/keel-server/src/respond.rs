//! Helpers every capability's handlers share: the key envelope, the error for an outcome
//! that is not the expected success, and the linearizable read point.

use keel_state::{KeyValue, Outcome};

use crate::{ApiError, AppState};

/// Turns a stored key and value into its JSON envelope.
pub(crate) fn envelope(key: &str, kv: &KeyValue, with_value: bool) -> keel_wire::KeyValue {
    let (value, value_base64) = if with_value {
        keel_wire::encode_value(&kv.value)
    } else {
        (None, None)
    };
    keel_wire::KeyValue {
        key: key.to_owned(),
        value,
        value_base64,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// Maps an outcome that is not the expected success to its error.
pub(crate) fn unexpected(outcome: Outcome) -> ApiError {
    match outcome {
        Outcome::Rejected(e) => e.into(),
        other => ApiError::internal(format!("unexpected outcome {other:?}")),
    }
}

/// Adds what a stale read's client needs to judge it: the revision this node has applied
/// (`Keel-Applied-Revision`) and how long ago it last heard from the leader
/// (`Keel-Last-Contact`, milliseconds; absent if never).
pub(crate) fn stale_headers(state: &AppState, headers: &mut axum::http::HeaderMap) {
    use axum::http::{HeaderName, HeaderValue};
    let revision = state.node.state().read(|s| s.revision());
    headers.insert(
        HeaderName::from_static("keel-applied-revision"),
        HeaderValue::from(revision),
    );
    if let Some(ago) = state.node.last_contact() {
        headers.insert(
            HeaderName::from_static("keel-last-contact"),
            HeaderValue::from(ago.as_millis() as u64),
        );
    }
}

/// Waits for a linearizable read point unless the client accepts a stale read.
pub(crate) async fn read_point(state: &AppState, stale: bool) -> Result<(), ApiError> {
    if stale {
        return Ok(());
    }
    Ok(state.node.read_barrier().await?)
}
