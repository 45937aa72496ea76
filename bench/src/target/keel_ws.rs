//! keel with its watches on WebSockets: every watch opened through one connection shares
//! one socket (`GET /v1/watch` upgraded), as a service holding many watches would do it.
//! Reads and writes go over HTTP/1.1 as for [`Keel`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Message as Frame, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::http::Keel;
use super::{Client, Swap, Watch};
use crate::workload::Workload;

type Sink = SplitSink<WebSocketStream<TcpStream>, Frame>;
/// Where the socket's reader sends each watch's messages (the raw text), by watch id.
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Utf8Bytes>>>>;

/// One HTTP connection for reads and writes, and (once a watch is opened) one WebSocket for
/// every watch opened through this client.
pub struct KeelWs {
    http: Keel,
    addr: String,
    socket: Option<(Sink, Routes)>,
    next_id: u64,
}

/// What the socket's reader decodes of each message: only whose it is.
#[derive(serde::Deserialize)]
struct Addressed<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// The part of a message `next` reads.
#[derive(serde::Deserialize)]
struct Incoming {
    #[serde(default)]
    events: Option<Vec<Event>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct Event {
    value: Option<String>,
}

/// The part of a message `drain` reads: how many events, without decoding them.
#[derive(serde::Deserialize)]
struct Counted {
    #[serde(default)]
    events: Option<Vec<serde::de::IgnoredAny>>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

impl KeelWs {
    async fn socket(&mut self) -> Result<&mut (Sink, Routes)> {
        if self.socket.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("connect {}", self.addr))?;
            stream.set_nodelay(true)?;
            let url = format!("ws://{}/v1/watch", self.addr);
            let (ws, _) = tokio_tungstenite::client_async(url, stream)
                .await
                .context("WebSocket handshake")?;
            let (sink, mut incoming) = ws.split();
            let routes: Routes = Arc::default();
            let by_id = routes.clone();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = incoming.next().await {
                    let Frame::Text(text) = frame else { continue };
                    let Ok(to) = serde_json::from_str::<Addressed>(text.as_str()) else {
                        continue;
                    };
                    let route = by_id
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(to.id.as_ref())
                        .cloned();
                    if let Some(tx) = route {
                        let _ = tx.send(text);
                    }
                }
                // The socket ended: dropping the senders ends every watch on it.
                by_id.lock().unwrap_or_else(|p| p.into_inner()).clear();
            });
            self.socket = Some((sink, routes));
        }
        self.socket.as_mut().context("no socket")
    }
}

impl Client for KeelWs {
    type Watch = KeelWsWatch;
    type Task = ();

    async fn connect(addr: &str) -> Result<Self> {
        Ok(KeelWs {
            http: Keel::connect(addr).await?,
            addr: addr.to_owned(),
            socket: None,
            next_id: 0,
        })
    }

    fn supports(workload: Workload) -> bool {
        Keel::supports(workload)
    }

    async fn put(&mut self, key: &str, value: Bytes) -> Result<()> {
        self.http.put(key, value).await
    }

    async fn get(&mut self, key: &str) -> Result<Option<Bytes>> {
        self.http.get(key).await
    }

    async fn increment_if_unchanged(&mut self, key: &str) -> Result<Swap> {
        self.http.increment_if_unchanged(key).await
    }

    /// One more watch on this client's socket; returns once the server has confirmed it
    /// (its first message, the progress naming where it starts).
    async fn watch(&mut self, prefix: &str) -> Result<KeelWsWatch> {
        self.next_id += 1;
        let id = format!("w{}", self.next_id);
        let (tx, rx) = mpsc::unbounded_channel();
        let (sink, routes) = self.socket().await?;
        routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), tx);
        let request = serde_json::json!({"op": "watch", "id": id, "prefix": prefix});
        sink.send(Frame::Text(request.to_string().into())).await?;
        let mut w = KeelWsWatch { id, rx };
        match w.rx.recv().await {
            Some(text) => match serde_json::from_str::<Incoming>(text.as_str())?.error {
                Some(e) => bail!("watch {}: {e}", w.id),
                None => Ok(w),
            },
            None => bail!("watch {}: the socket closed", w.id),
        }
    }
}

/// One watch on a shared socket.
pub struct KeelWsWatch {
    id: String,
    rx: mpsc::UnboundedReceiver<Utf8Bytes>,
}

impl Watch for KeelWsWatch {
    async fn next(&mut self) -> Result<Option<Vec<Bytes>>> {
        loop {
            let Some(text) = self.rx.recv().await else {
                return Ok(None);
            };
            let m: Incoming = serde_json::from_str(text.as_str())?;
            if let Some(e) = m.error {
                bail!("watch {}: {e}", self.id);
            }
            let Some(events) = m.events else {
                continue; // a progress message
            };
            return Ok(Some(
                events
                    .into_iter()
                    .filter_map(|e| e.value.map(Bytes::from))
                    .collect(),
            ));
        }
    }

    /// Counts the events of every message queued for this watch, decoding none of them.
    async fn drain(&mut self) -> Result<Option<u64>> {
        let Some(first) = self.rx.recv().await else {
            return Ok(None);
        };
        let mut events = 0;
        let mut text = Some(first);
        while let Some(t) = text {
            let m: Counted = serde_json::from_str(t.as_str())?;
            if m.error.is_some() {
                bail!("watch {}: {}", self.id, t.as_str());
            }
            events += m.events.map_or(0, |e| e.len() as u64);
            text = self.rx.try_recv().ok();
        }
        Ok(Some(events))
    }
}
