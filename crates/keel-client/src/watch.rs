//! Watch streams over Server-Sent Events, resumed after a lost connection.
//!
//! Every message the server sends carries the revision it covers as its SSE `id`. The stream
//! remembers the last one; after a lost connection (or a server restart) it reconnects with
//! backoff and sends `Last-Event-ID`, so the server resumes right after it: nothing is lost
//! or repeated.

use std::time::Duration;

use keel_wire::{WatchChange, WatchCompacted, WatchProgress, WatchSnapshot};
use reqwest::{Method, Url};

use crate::{error_chain, Client, Error, Result};

/// Options of [`Client::watch`]: exactly one of `key`, `prefix` and `queue`.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// Watch one key.
    pub key: Option<String>,
    /// Watch every key under this prefix (empty: every key).
    pub prefix: Option<String>,
    /// Watch a queue's tasks (changes carry them in `tasks`).
    pub queue: Option<String>,
    /// Deliver every change from this revision on (default: only later changes).
    pub from_revision: Option<u64>,
    /// First deliver the current state, then every later change.
    pub initial: bool,
    /// Include each key's value before the change.
    pub prev_value: bool,
    /// Idle interval between progress messages (server default 10 s).
    pub progress: Option<Duration>,
}

/// What a watch stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// The watched keys as of a revision (`initial`).
    Snapshot(WatchSnapshot),
    /// Every watched change of one revision.
    Change(WatchChange),
    /// Everything up to this revision has been delivered.
    Progress(u64),
    /// The connection was lost; the stream is reconnecting (the error says why).
    Reconnecting {
        /// Why the connection was lost or could not be made.
        error: String,
        /// The stream will resume after this revision (`None`: nothing delivered yet).
        after: Option<u64>,
    },
    /// Connected again, resuming right after this revision.
    Resumed {
        /// The last revision delivered before the connection was lost.
        after: u64,
    },
    /// The history no longer reaches back to where the stream had to resume; it has ended.
    /// Re-list (for example with `initial`) and start a new watch.
    Compacted {
        /// The oldest revision still in the server's history window.
        compact_revision: u64,
    },
}

/// A watch stream; see [`Client::watch`].
#[derive(Debug)]
pub struct WatchStream {
    client: Client,
    url: Url,
    /// The id of the last message received: the stream resumes after it.
    last_id: Option<u64>,
    resp: Option<reqwest::Response>,
    buf: Vec<u8>,
    event: Event,
    /// No bytes for this long means the connection is dead (progress keeps a live one busy).
    idle_limit: Duration,
    backoff: Duration,
    ended: bool,
}

#[derive(Debug, Default)]
struct Event {
    name: String,
    data: String,
    id: Option<String>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Client {
    /// Opens a watch. The first connection is made here, so a bad request (no key or prefix,
    /// an invalid key) fails at once; later connection losses are retried by the stream.
    pub async fn watch(&self, opts: &WatchOptions) -> Result<WatchStream> {
        let mut query = Vec::new();
        match (&opts.key, &opts.prefix, &opts.queue) {
            (Some(k), None, None) => query.push(("key", k.clone())),
            (None, Some(p), None) => query.push(("prefix", p.clone())),
            (None, None, Some(q)) => query.push(("queue", q.clone())),
            _ => {
                return Err(Error::Usage(
                    "give exactly one of key, prefix and queue".into(),
                ))
            }
        }
        if let Some(r) = opts.from_revision {
            query.push(("from_revision", r.to_string()));
        }
        if opts.initial {
            query.push(("initial", "true".into()));
        }
        if opts.prev_value {
            query.push(("prev_value", "true".into()));
        }
        let progress = opts.progress.unwrap_or(Duration::from_secs(10));
        if let Some(p) = opts.progress {
            query.push(("progress", format!("{}ms", p.as_millis().max(1))));
        }
        let url = self.url(&["v1", "watch"], None, &query)?;
        let mut stream = WatchStream {
            client: self.clone(),
            url,
            last_id: None,
            resp: None,
            buf: Vec::new(),
            event: Event::default(),
            idle_limit: progress * 3 + Duration::from_secs(2),
            backoff: MIN_BACKOFF,
            ended: false,
        };
        stream.connect().await?;
        Ok(stream)
    }
}

impl WatchStream {
    /// The last revision delivered (the stream resumes after it).
    pub fn last_revision(&self) -> Option<u64> {
        self.last_id
    }

    async fn connect(&mut self) -> Result<()> {
        let mut req = self
            .client
            .http
            .request(Method::GET, self.url.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = self.last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.map_err(|e| Error::Transport {
            addr: self.client.base.to_string(),
            message: error_chain(&e),
        })?;
        let resp = self.client.check(resp).await?;
        self.resp = Some(resp);
        self.buf.clear();
        self.event = Event::default();
        Ok(())
    }

    /// The next item; `Ok(None)` once the stream has ended (after `Compacted`). Connection
    /// losses are retried for ever, reported as `Reconnecting` and `Resumed` items; an error
    /// is returned only for a request the server refuses (which retrying cannot fix).
    pub async fn next(&mut self) -> Result<Option<WatchItem>> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if self.resp.is_none() {
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                match self.connect().await {
                    Ok(()) => {
                        self.backoff = MIN_BACKOFF;
                        if let Some(after) = self.last_id {
                            return Ok(Some(WatchItem::Resumed { after }));
                        }
                    }
                    Err(e) if retryable(&e) => {
                        return Ok(Some(WatchItem::Reconnecting {
                            error: e.to_string(),
                            after: self.last_id,
                        }))
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            if let Some(item) = self.parse_buffered()? {
                return Ok(Some(item));
            }
            let Some(resp) = self.resp.as_mut() else {
                continue;
            };
            let lost = match tokio::time::timeout(self.idle_limit, resp.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    self.buf.extend_from_slice(&bytes);
                    continue;
                }
                Ok(Ok(None)) => "the server closed the stream".to_owned(),
                Ok(Err(e)) => error_chain(&e),
                Err(_) => format!("nothing received for {:?}", self.idle_limit),
            };
            self.resp = None;
            return Ok(Some(WatchItem::Reconnecting {
                error: lost,
                after: self.last_id,
            }));
        }
    }

    /// Takes complete lines from the buffer; returns the first whole event's item.
    fn parse_buffered(&mut self) -> Result<Option<WatchItem>> {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let event = std::mem::take(&mut self.event);
                if let Some(item) = self.dispatch(event)? {
                    return Ok(Some(item));
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event.name = value.to_owned(),
                "data" => {
                    if !self.event.data.is_empty() {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(value);
                }
                "id" => self.event.id = Some(value.to_owned()),
                _ => {} // retry, and fields this client does not know
            }
        }
        Ok(None)
    }

    fn dispatch(&mut self, event: Event) -> Result<Option<WatchItem>> {
        if let Some(id) = event.id.as_deref().and_then(|i| i.parse().ok()) {
            self.last_id = Some(id);
        }
        let decode = |e: serde_json::Error| Error::Decode(format!("watch {}: {e}", event.name));
        let item = match event.name.as_str() {
            "change" => WatchItem::Change(serde_json::from_str(&event.data).map_err(decode)?),
            "snapshot" => WatchItem::Snapshot(serde_json::from_str(&event.data).map_err(decode)?),
            "progress" => {
                let p: WatchProgress = serde_json::from_str(&event.data).map_err(decode)?;
                WatchItem::Progress(p.revision)
            }
            "compacted" => {
                let c: WatchCompacted = serde_json::from_str(&event.data).map_err(decode)?;
                self.ended = true;
                self.resp = None;
                WatchItem::Compacted {
                    compact_revision: c.compact_revision,
                }
            }
            _ => return Ok(None), // an event with only `retry:`, or one this client does not know
        };
        Ok(Some(item))
    }
}

/// Whether retrying can help: the server was unreachable or not ready.
fn retryable(e: &Error) -> bool {
    match e {
        Error::Transport { .. } => true,
        Error::Api { status, .. } => *status == 503,
        Error::Decode(_) | Error::Usage(_) => false,
    }
}
