//! `GET /v1/watch`: one watch as Server-Sent Events, or many watches on one WebSocket.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use keel_wire::{
    Code, WatchChange, WatchCompacted, WatchProgress, WatchSnapshot, WsMessage, WsRequest, WsWatch,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::extract::Q;
use crate::respond::read_point;
use crate::watch::{closed, Filter, Message, Start, WatchSpec, Watcher};
use crate::{ApiError, AppState};

/// How soon a browser's `EventSource` reconnects after losing the stream.
const SSE_RETRY: Duration = Duration::from_millis(1000);
/// Messages a WebSocket's watches may queue before they wait for the socket.
const WS_QUEUE: usize = 64;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    key: Option<String>,
    prefix: Option<String>,
    from_revision: Option<u64>,
    #[serde(default)]
    initial: bool,
    #[serde(default)]
    prev_value: bool,
    progress: Option<String>,
}

fn start_of(from_revision: Option<u64>, initial: bool) -> Result<Start, ApiError> {
    match (from_revision, initial) {
        (Some(_), true) => Err(ApiError::query("give from_revision or initial, not both")),
        (Some(r), false) => Ok(Start::From(r)),
        (None, true) => Ok(Start::Initial),
        (None, false) => Ok(Start::Now),
    }
}

/// The route of watches (SSE, or WebSocket on upgrade).
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/watch", get(watch))
}

/// `GET /v1/watch`: a WebSocket if the request asks to upgrade, else an SSE stream.
pub(crate) async fn watch(
    State(state): State<AppState>,
    Q(q): Q<WatchQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if let Ok(upgrade) = upgrade {
        let in_url = q.key.is_some()
            || q.prefix.is_some()
            || q.from_revision.is_some()
            || q.initial
            || q.prev_value
            || q.progress.is_some();
        if in_url {
            return Err(ApiError::query(
                "on a WebSocket, watches are asked for in messages, not in the URL",
            ));
        }
        return Ok(upgrade.on_upgrade(move |socket| session(socket, state)));
    }
    let filter = Filter::new(q.key, q.prefix)?;
    // A reconnecting EventSource sends the id of the last message it got; that wins.
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID is not a revision"))?,
        ),
    };
    let start = match last_event_id {
        Some(r) => Start::From(r.saturating_add(1)),
        None => start_of(q.from_revision, q.initial)?,
    };
    let spec = WatchSpec {
        filter,
        start,
        prev_value: q.prev_value,
        progress: WatchSpec::progress_interval(q.progress.as_deref())?,
    };
    if !matches!(start, Start::From(_)) {
        read_point(&state, false).await?;
    }
    let watcher = Watcher::open(state.node.state().clone(), spec, state.closing.clone());
    let frames = state.sse_frames.clone();
    let retry = futures_util::stream::once(async {
        Ok::<_, Infallible>(Bytes::from(format!("retry: {}\n\n", SSE_RETRY.as_millis())))
    });
    let events = futures_util::stream::unfold(watcher, move |mut w| {
        let frames = frames.clone();
        async move {
            let m = w.next().await?;
            Some((Ok(sse_frame(&w, m, &frames)), w))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(retry.chain(events)))
        .map_err(|e| ApiError::internal(format!("cannot build the event stream: {e}")))
}

/// One SSE message: `id:` (the revision it covers), `event:` and one `data:` line of compact
/// JSON (which never contains a newline).
fn frame(name: &str, id: Option<u64>, data: &impl serde::Serialize) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    if let Some(id) = id {
        buf.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    buf.extend_from_slice(format!("event: {name}\ndata: ").as_bytes());
    if let Err(e) = serde_json::to_writer(&mut buf, data) {
        // Our own wire types always encode; say so on the stream rather than drop it.
        buf.clear();
        buf.extend_from_slice(format!("event: error\ndata: cannot encode: {e}").as_bytes());
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

fn sse_frame(w: &Watcher, m: Message, frames: &FrameCache) -> Bytes {
    match m {
        Message::Snapshot { revision, items } => frame(
            "snapshot",
            Some(revision),
            &WatchSnapshot { revision, items },
        ),
        Message::Change { set, whole } => {
            let render = || {
                let events = w.events(&set);
                let revision = set.revision;
                frame("change", Some(revision), &WatchChange { revision, events })
            };
            if whole {
                frames.get_or_render(set.revision, w.prev_value(), render)
            } else {
                render()
            }
        }
        Message::Progress { revision } => {
            frame("progress", Some(revision), &WatchProgress { revision })
        }
        Message::Compacted { compact_revision } => {
            frame("compacted", None, &WatchCompacted { compact_revision })
        }
    }
}

/// The encoded SSE messages of the latest whole change sets, shared by every stream that
/// sends the same one: with a thousand watchers on a prefix, a write is encoded once, not a
/// thousand times.
#[derive(Default)]
pub(crate) struct FrameCache(Mutex<VecDeque<(u64, bool, Bytes)>>);

/// Encoded messages kept.
const FRAME_CACHE: usize = 64;

impl FrameCache {
    fn get_or_render(
        &self,
        revision: u64,
        prev_value: bool,
        render: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let hit = {
            let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .iter()
                .find(|(r, p, _)| *r == revision && *p == prev_value)
                .map(|(_, _, b)| b.clone())
        };
        if let Some(bytes) = hit {
            return bytes;
        }
        let bytes = render();
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= FRAME_CACHE {
            cache.pop_front();
        }
        cache.push_back((revision, prev_value, bytes.clone()));
        bytes
    }
}

fn ws_message(id: &str, w: &Watcher, m: Message) -> WsMessage {
    let mut out = WsMessage {
        id: id.to_owned(),
        ..Default::default()
    };
    match m {
        Message::Snapshot { revision, items } => {
            out.revision = Some(revision);
            out.items = Some(items);
        }
        Message::Change { set, .. } => {
            out.revision = Some(set.revision);
            out.events = Some(w.events(&set));
        }
        Message::Progress { revision } => out.progress = Some(revision),
        Message::Compacted { compact_revision } => out.compacted = Some(compact_revision),
    }
    out
}

fn ws_error(id: &str, e: ApiError) -> WsMessage {
    WsMessage {
        id: id.to_owned(),
        error: Some(e.detail().1),
        ..Default::default()
    }
}

async fn send(
    sink: &mut futures_util::stream::SplitSink<WebSocket, ws::Message>,
    m: &WsMessage,
) -> Result<(), ()> {
    let text = serde_json::to_string(m).map_err(|_| ())?;
    sink.send(ws::Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

/// One WebSocket: reads watch and cancel requests, and writes every watch's messages. Each
/// watch runs as its own task feeding one bounded queue, so a slow socket makes its watches
/// wait (and, if they fall behind the broadcast, catch up from history) without affecting
/// anyone else.
async fn session(socket: WebSocket, state: AppState) {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<WsMessage>(WS_QUEUE);
    let mut watches: HashMap<String, AbortHandle> = HashMap::new();
    let mut closing = state.closing.clone();
    loop {
        tokio::select! {
            frame = incoming.next() => {
                let reply = match frame {
                    Some(Ok(ws::Message::Text(text))) => {
                        request(&state, text.as_str(), &mut watches, &out_tx)
                    }
                    Some(Ok(ws::Message::Binary(_))) => Some(ws_error("", ApiError::new(Code::InvalidJson, "send watch requests as JSON text messages",
                    ))),
                    Some(Ok(ws::Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => None, // ping and pong are answered by the transport
                };
                if let Some(reply) = reply {
                    if send(&mut sink, &reply).await.is_err() {
                        break;
                    }
                }
            }
            Some(m) = out_rx.recv() => {
                if send(&mut sink, &m).await.is_err() {
                    break;
                }
            }
            _ = closed(&mut closing) => {
                let _ = sink.send(ws::Message::Close(None)).await;
                break;
            }
        }
    }
    for handle in watches.values() {
        handle.abort();
    }
}

/// Handles one request; returns the immediate reply, if any.
fn request(
    state: &AppState,
    text: &str,
    watches: &mut HashMap<String, AbortHandle>,
    out: &mpsc::Sender<WsMessage>,
) -> Option<WsMessage> {
    let req: WsRequest = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            // Echo the id if the message has one, so the client knows which request failed.
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Some(ws_error(
                &id,
                ApiError::new(Code::InvalidJson, format!("bad watch request: {e}")),
            ));
        }
    };
    match req {
        WsRequest::Cancel { id } => Some(match watches.remove(&id) {
            Some(handle) => {
                handle.abort();
                WsMessage {
                    id,
                    canceled: Some(true),
                    ..Default::default()
                }
            }
            None => ws_error(
                &id,
                ApiError::new(
                    Code::WatchNotFound,
                    format!("no watch {id:?} on this socket"),
                ),
            ),
        }),
        WsRequest::Watch(w) => {
            let id = w.id.clone();
            match start_watch(state, w, watches, out) {
                Ok(()) => None,
                Err(e) => Some(ws_error(&id, e)),
            }
        }
    }
}

fn start_watch(
    state: &AppState,
    w: WsWatch,
    watches: &mut HashMap<String, AbortHandle>,
    out: &mpsc::Sender<WsMessage>,
) -> Result<(), ApiError> {
    watches.retain(|_, h| !h.is_finished());
    if watches.contains_key(&w.id) {
        return Err(ApiError::new(
            Code::DuplicateWatch,
            format!("watch {:?} already exists on this socket", w.id),
        ));
    }
    let limit = state.config.max_watches_per_socket;
    if watches.len() >= limit {
        return Err(ApiError::new(
            Code::TooManyWatches,
            format!("this socket already holds {limit} watches"),
        )
        .with("limit", limit as u64));
    }
    let spec = WatchSpec {
        filter: Filter::new(w.key, w.prefix)?,
        start: start_of(w.from_revision, w.initial)?,
        prev_value: w.prev_value,
        progress: WatchSpec::progress_interval(w.progress.as_deref())?,
    };
    let mut watcher = Watcher::open(state.node.state().clone(), spec, state.closing.clone());
    let out = out.clone();
    let id = w.id;
    let task_id = id.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = watcher.next().await {
            if out.send(ws_message(&task_id, &watcher, m)).await.is_err() {
                break;
            }
        }
    });
    watches.insert(id, task.abort_handle());
    Ok(())
}
