//! `/raft/*`: the calls other nodes make on this one. Every path under `/raft/` needs the
//! cluster secret; without it (or on a node that has none) the answer is 401 and the attempt
//! is logged with the caller's address.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use futures_util::StreamExt;
use keel_raft::peer::{PeerCall, PeerError, PEER_PROTOCOL};
use keel_wire::Code;
use tokio::io::AsyncWriteExt;

use super::transport::{FROM_HEADER, PROTOCOL_HEADER};
use crate::{ApiError, AppState};

/// The largest body of one call (an append of many entries may be large; a snapshot is
/// streamed to disk and has no limit).
const MAX_CALL_BODY: usize = 1 << 30;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/raft/{*call}", any(raft))
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// Compares without stopping at the first difference.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), &'static str> {
    let Some(secret) = &state.config.cluster_secret else {
        return Err(
            "this node has no cluster secret configured, so it accepts no peers \
                    (start it with --cluster-secret or --cluster-secret-file)",
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.as_bytes(), secret.as_bytes()) => Ok(()),
        Some(_) => Err("wrong cluster secret"),
        None => Err("the cluster secret is missing"),
    }
}

async fn raft(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let from = headers
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    if let Err(why) = authorized(&state, &headers) {
        tracing::warn!(remote = %remote, claims = %from, path = %name, why, "refused a peer call");
        return ApiError::new(Code::Unauthorized, why).into_response();
    }
    let protocol = headers
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if protocol != Some(PEER_PROTOCOL) {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "peer protocol {protocol:?} is not this node's ({PEER_PROTOCOL}): \
                 every member must run a compatible keel"
            ),
        );
    }
    if method != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "peer calls are POSTs");
    }
    let Some(call) = PeerCall::parse(&name) else {
        return plain(StatusCode::NOT_FOUND, format!("no peer call {name:?}"));
    };
    let answer = if call == PeerCall::Snapshot {
        receive_snapshot(&state, body).await
    } else {
        match axum::body::to_bytes(body, MAX_CALL_BODY).await {
            Ok(bytes) => state.node.answer_peer(call, &bytes).await,
            Err(e) => Err(PeerError::Failed(format!("reading the call's body: {e}"))),
        }
    };
    match answer {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => {
            tracing::warn!(remote = %remote, call = call.name(), error = %e, "peer call failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// Streams a snapshot body to a file: its first four bytes are the head's length, then the
/// head, then the snapshot file's bytes. Then installs it.
async fn receive_snapshot(state: &AppState, body: Body) -> Result<Vec<u8>, PeerError> {
    let path = state.node.incoming_snapshot_path();
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        PeerError::Failed(format!("{what} {}: {e}", path.display()))
    };
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| failed("creating", &e))?;
    let mut stream = body.into_data_stream();
    let mut start = Vec::new();
    let mut head: Option<Vec<u8>> = None;
    let mut bytes = 0u64;
    let received = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed("receiving", &e))?;
            bytes += chunk.len() as u64;
            if head.is_some() {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| failed("writing", &e))?;
                continue;
            }
            start.extend_from_slice(&chunk);
            if start.len() < 4 {
                continue;
            }
            let len = u32::from_le_bytes([start[0], start[1], start[2], start[3]]) as usize;
            if start.len() < 4 + len {
                continue;
            }
            file.write_all(&start[4 + len..])
                .await
                .map_err(|e| failed("writing", &e))?;
            head = Some(start[4..4 + len].to_vec());
            start = Vec::new();
        }
        file.flush().await.map_err(|e| failed("writing", &e))?;
        head.ok_or_else(|| PeerError::Failed("the snapshot body ended inside its head".into()))
    }
    .await;
    drop(file);
    let head = match received {
        Ok(head) => head,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
    };
    metrics::counter!("keel_snapshot_received_bytes_total").increment(bytes);
    state.node.install_snapshot(&head, path).await
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
