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

/// Waits for a linearizable read point unless the client accepts a stale read.
pub(crate) async fn read_point(state: &AppState, stale: bool) -> Result<(), ApiError> {
    if stale {
        return Ok(());
    }
    Ok(state.node.read_barrier().await?)
}
