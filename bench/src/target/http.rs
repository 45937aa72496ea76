//! keel over HTTP/1.1 keep-alive, and the bare hyper ceiling server.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{counter, Client, NoWatch, Swap, Watch};
use crate::workload::Workload;

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

/// An answer: status, headers and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpConn {
    pub async fn open(addr: &str) -> Result<HttpConn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(HttpConn {
            sender,
            host: addr.to_owned(),
        })
    }

    pub async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Result<Answer> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{key}")
}

fn expect_success(what: &str, a: &Answer) -> Result<()> {
    if !a.status.is_success() {
        bail!(
            "{what}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
        );
    }
    Ok(())
}

/// keel's HTTP API.
pub struct Keel(HttpConn);

impl Client for Keel {
    type Watch = KeelWatch;

    async fn connect(addr: &str) -> Result<Self> {
        Ok(Keel(HttpConn::open(addr).await?))
    }

    fn supports(workload: Workload) -> bool {
        workload != Workload::Ceiling
    }

    async fn put(&mut self, key: &str, value: Bytes) -> Result<()> {
        let a = self.0.send(Method::PUT, &kv_path(key), value).await?;
        expect_success("PUT", &a)
    }

    async fn get(&mut self, key: &str) -> Result<Option<Bytes>> {
        let a = self
            .0
            .send(Method::GET, &kv_path(key), Bytes::new())
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect_success("GET", &a)?;
        Ok(Some(a.body))
    }

    async fn increment_if_unchanged(&mut self, key: &str) -> Result<Swap> {
        let a = self
            .0
            .send(Method::GET, &kv_path(key), Bytes::new())
            .await?;
        let (current, revision) = if a.status == StatusCode::NOT_FOUND {
            (0, 0)
        } else {
            expect_success("GET", &a)?;
            let revision: u64 = a
                .headers
                .get("keel-mod-revision")
                .context("GET: no Keel-Mod-Revision header")?
                .to_str()?
                .parse()?;
            (counter(Some(&a.body))?, revision)
        };
        let path = format!("{}?if_revision={revision}", kv_path(key));
        let next = Bytes::from((current + 1).to_string());
        let a = self.0.send(Method::PUT, &path, next).await?;
        if a.status == StatusCode::PRECONDITION_FAILED {
            return Ok(Swap::Conflict);
        }
        expect_success("PUT if_revision", &a)?;
        Ok(Swap::Done)
    }

    /// An SSE stream on its own connection (HTTP/1.1 carries one stream per connection),
    /// as a browser's `EventSource` would hold it.
    async fn watch(&mut self, prefix: &str) -> Result<KeelWatch> {
        let stream = TcpStream::connect(&self.0.host)
            .await
            .with_context(|| format!("connect {}", self.0.host))?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("/v1/watch?prefix={prefix}"))
            .header(hyper::header::HOST, &self.0.host)
            .header(hyper::header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        if !resp.status().is_success() {
            bail!("watch: {}", resp.status());
        }
        let mut w = KeelWatch {
            body: resp.into_body(),
            buf: Vec::new(),
        };
        // The stream opens with a progress event naming the revision it starts after.
        w.next_event()
            .await?
            .context("watch stream ended at once")?;
        Ok(w)
    }
}

/// One SSE watch stream.
pub struct KeelWatch {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl KeelWatch {
    /// The next named event as (name, data), or `None` at the end of the stream.
    async fn next_event(&mut self) -> Result<Option<(String, String)>> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = std::str::from_utf8(&line)?.trim_end();
                if line.is_empty() {
                    if !name.is_empty() {
                        return Ok(Some((name, data)));
                    }
                    data.clear();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(bytes) = frame?.into_data() {
                        self.buf.extend_from_slice(&bytes);
                    }
                }
            }
        }
    }
}

/// The part of a change message the fan-out workload reads.
#[derive(serde::Deserialize)]
struct Change {
    events: Vec<ChangeEvent>,
}

#[derive(serde::Deserialize)]
struct ChangeEvent {
    value: Option<String>,
}

impl Watch for KeelWatch {
    async fn next(&mut self) -> Result<Option<Vec<Bytes>>> {
        loop {
            let Some((name, data)) = self.next_event().await? else {
                return Ok(None);
            };
            if name != "change" {
                continue;
            }
            let change: Change = serde_json::from_str(&data)?;
            let values = change
                .events
                .into_iter()
                .filter_map(|e| e.value.map(Bytes::from))
                .collect();
            return Ok(Some(values));
        }
    }

    async fn drain(&mut self) -> Result<bool> {
        Ok(match self.body.frame().await {
            None => false,
            Some(frame) => {
                frame?;
                true
            }
        })
    }
}

/// The bare hyper server (`ceiling`): every request is a GET of its fixed body.
pub struct Ceiling(HttpConn);

impl Client for Ceiling {
    type Watch = NoWatch;

    async fn connect(addr: &str) -> Result<Self> {
        Ok(Ceiling(HttpConn::open(addr).await?))
    }

    fn supports(workload: Workload) -> bool {
        workload == Workload::Ceiling
    }

    async fn put(&mut self, _key: &str, _value: Bytes) -> Result<()> {
        bail!("the ceiling server only answers GET /")
    }

    async fn get(&mut self, _key: &str) -> Result<Option<Bytes>> {
        let a = self.0.send(Method::GET, "/", Bytes::new()).await?;
        expect_success("GET /", &a)?;
        Ok(Some(a.body))
    }

    async fn increment_if_unchanged(&mut self, _key: &str) -> Result<Swap> {
        bail!("the ceiling server only answers GET /")
    }

    async fn watch(&mut self, _key: &str) -> Result<NoWatch> {
        bail!("the ceiling server has no watches")
    }
}
