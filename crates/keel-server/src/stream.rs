//! `GET /v1/watch`: one watch as Server-Sent Events, or many watches on one WebSocket.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use keel_wire::{
    Code, WatchChange, WatchCompacted, WatchProgress, WatchSnapshot, WsMessage, WsRequest, WsWatch,
};
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use crate::extract::Q;
use crate::respond::read_point;
use crate::watch::{closed, Doorbell, Encoding, Filter, Message, Start, WatchSpec, Watcher};
use crate::{ApiError, AppState};

/// How soon a browser's `EventSource` reconnects after losing the stream.
const SSE_RETRY: Duration = Duration::from_millis(1000);
/// Most messages one write of an SSE stream carries (a watcher that is behind sends what it
/// has in one write, in pieces of this size).
const SSE_BATCH: usize = 256;
/// Most messages one watch of a WebSocket sends before the socket's other watches have
/// their turn.
const WS_BATCH: usize = 64;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    key: Option<String>,
    prefix: Option<String>,
    queue: Option<String>,
    from_revision: Option<u64>,
    #[serde(default)]
    initial: bool,
    #[serde(default)]
    prev_value: bool,
    progress: Option<String>,
}

/// `initial` lists keys; a queue watch starts from a revision or from now (list the tasks
/// with `GET /v1/queues/{queue}/tasks` first).
fn refuse_initial_on_queue(filter: &Filter, initial: bool) -> Result<(), ApiError> {
    if initial && matches!(filter, Filter::Queue(_)) {
        return Err(ApiError::query(
            "initial is for key watches; list the queue's tasks, then watch from that revision",
        ));
    }
    Ok(())
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
            || q.queue.is_some()
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
    let filter = Filter::new(q.key, q.prefix, q.queue)?;
    refuse_initial_on_queue(&filter, q.initial)?;
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
    let watcher = Watcher::open(&state.hub, state.node.state().clone(), spec, Arc::default());
    let retry = futures_util::stream::once(async {
        Ok::<_, Infallible>(Bytes::from(format!("retry: {}\n\n", SSE_RETRY.as_millis())))
    });
    let stream = SseStream {
        watcher,
        closing: state.closing.clone(),
        progress_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        batch: Vec::new(),
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        s.watcher
            .next_batch(
                &mut s.batch,
                SSE_BATCH,
                &mut s.closing,
                &mut s.progress_timer,
            )
            .await;
        if s.batch.is_empty() {
            return None;
        }
        let bytes = sse_frames(&s.watcher, &mut s.batch);
        Some((Ok(bytes), s))
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

/// What an SSE stream carries between writes.
struct SseStream {
    watcher: Watcher,
    closing: tokio::sync::watch::Receiver<bool>,
    progress_timer: Pin<Box<Sleep>>,
    batch: Vec<Message>,
}

/// The messages of `batch` as one write (emptying it).
fn sse_frames(w: &Watcher, batch: &mut Vec<Message>) -> Bytes {
    if batch.len() == 1 {
        if let Some(m) = batch.pop() {
            return sse_frame(w, m);
        }
    }
    let mut buf = BytesMut::new();
    for m in batch.drain(..) {
        buf.extend_from_slice(&sse_frame(w, m));
    }
    buf.freeze()
}

fn sse_frame(w: &Watcher, m: Message) -> Bytes {
    match m {
        Message::Snapshot { revision, items } => frame(
            "snapshot",
            Some(revision),
            &WatchSnapshot { revision, items },
        ),
        Message::Change { set, whole } => {
            let render = || {
                let events = w.events(&set.set);
                let tasks = w.tasks(&set.set);
                let revision = set.set.revision;
                let change = WatchChange {
                    revision,
                    events,
                    tasks,
                };
                frame("change", Some(revision), &change)
            };
            if whole {
                // Every stream that sends this set whole sends the same bytes: encode once.
                let encoding = if w.prev_value() {
                    Encoding::SsePrev
                } else {
                    Encoding::Sse
                };
                set.encoded(encoding, render)
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

/// One watch message as WebSocket text. A whole change set's events are encoded once and
/// shared by every watch that sends them; the rest of the message is the watch's own.
fn ws_text(id: &str, w: &Watcher, m: Message) -> String {
    match m {
        Message::Change { set, whole: true } => {
            let encoding = if w.prev_value() {
                Encoding::WsEventsPrev
            } else {
                Encoding::WsEvents
            };
            let events = set.encoded(encoding, || {
                serde_json::to_vec(&w.events(&set.set))
                    .map(Bytes::from)
                    .unwrap_or_else(|_| Bytes::from_static(b"[]"))
            });
            // The same bytes serde writes for a `WsMessage` with id, revision and events.
            let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
            let mut text = String::with_capacity(id.len() + events.len() + 40);
            text.push_str("{\"id\":");
            text.push_str(&id);
            text.push_str(",\"revision\":");
            text.push_str(&set.set.revision.to_string());
            text.push_str(",\"events\":");
            text.push_str(&String::from_utf8_lossy(&events));
            text.push('}');
            text
        }
        m => serde_json::to_string(&ws_message(id, w, m)).unwrap_or_default(),
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
            out.revision = Some(set.set.revision);
            out.events = Some(w.events(&set.set));
            let tasks = w.tasks(&set.set);
            out.tasks = (!tasks.is_empty()).then_some(tasks);
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

type WsSink = SplitSink<WebSocket, ws::Message>;

async fn send(sink: &mut WsSink, m: &WsMessage) -> Result<(), ()> {
    let text = serde_json::to_string(m).map_err(|_| ())?;
    sink.send(ws::Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

/// One WebSocket: reads watch and cancel requests, and writes every watch's messages. All of
/// the socket's watches share one doorbell: when any of them has something, the session
/// takes what each has (a bounded number per watch, in turn) and writes it all with one
/// flush. A slow socket makes its watches wait (and, if they fall behind, catch up from
/// history) without affecting anyone else.
async fn session(socket: WebSocket, state: AppState) {
    let (mut sink, mut incoming) = socket.split();
    let doorbell = Arc::new(Doorbell::default());
    let mut watches: HashMap<String, Watcher> = HashMap::new();
    let mut closing = state.closing.clone();
    let mut progress_timer = Box::pin(tokio::time::sleep(Duration::ZERO));
    let mut batch = Vec::new();
    loop {
        let Ok((more, due)) = flush_ready(&mut sink, &mut watches, &mut batch).await else {
            break;
        };
        let idle_until = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        if progress_timer.deadline() != idle_until {
            progress_timer.as_mut().reset(idle_until);
        }
        tokio::select! {
            biased;
            frame = incoming.next() => {
                let reply = match frame {
                    Some(Ok(ws::Message::Text(text))) => {
                        request(&state, text.as_str(), &mut watches, &doorbell)
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
            _ = closed(&mut closing) => {
                let _ = sink.send(ws::Message::Close(None)).await;
                break;
            }
            _ = std::future::ready(()), if more => {}
            _ = doorbell.rung() => {}
            _ = progress_timer.as_mut() => {}
        }
    }
}

/// Writes what every watch of a socket has ready, with one flush; drops the watches that
/// ended. Returns whether some watch has more (it reached its share) and the earliest
/// progress deadline.
async fn flush_ready(
    sink: &mut WsSink,
    watches: &mut HashMap<String, Watcher>,
    batch: &mut Vec<Message>,
) -> Result<(bool, Option<Instant>), ()> {
    let now = Instant::now();
    let (mut sent, mut more, mut due) = (false, false, None::<Instant>);
    for (id, w) in watches.iter_mut() {
        if w.may_be_ready(now) {
            w.ready(batch, WS_BATCH);
            more |= batch.len() >= WS_BATCH;
            for m in batch.drain(..) {
                sink.feed(ws::Message::Text(ws_text(id, w, m).into()))
                    .await
                    .map_err(|_| ())?;
                sent = true;
            }
        }
        let d = w.progress_due();
        due = Some(due.map_or(d, |e| e.min(d)));
    }
    watches.retain(|_, w| !w.ended());
    if sent {
        sink.flush().await.map_err(|_| ())?;
    }
    Ok((more, due))
}

/// Handles one request; returns the immediate reply, if any.
fn request(
    state: &AppState,
    text: &str,
    watches: &mut HashMap<String, Watcher>,
    doorbell: &Arc<Doorbell>,
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
            Some(_) => WsMessage {
                id,
                canceled: Some(true),
                ..Default::default()
            },
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
            match start_watch(state, w, watches, doorbell) {
                Ok(()) => None,
                Err(e) => Some(ws_error(&id, e)),
            }
        }
    }
}

fn start_watch(
    state: &AppState,
    w: WsWatch,
    watches: &mut HashMap<String, Watcher>,
    doorbell: &Arc<Doorbell>,
) -> Result<(), ApiError> {
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
        filter: {
            let filter = Filter::new(w.key, w.prefix, w.queue)?;
            refuse_initial_on_queue(&filter, w.initial)?;
            filter
        },
        start: start_of(w.from_revision, w.initial)?,
        prev_value: w.prev_value,
        progress: WatchSpec::progress_interval(w.progress.as_deref())?,
    };
    let watcher = Watcher::open(
        &state.hub,
        state.node.state().clone(),
        spec,
        doorbell.clone(),
    );
    watches.insert(w.id, watcher);
    Ok(())
}
