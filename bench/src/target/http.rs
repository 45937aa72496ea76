//! keel over HTTP/1.1 keep-alive, and the bare hyper ceiling server.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub use super::sse::KeelWatch;
use super::{counter, Client, NoWatch, Swap};
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
    /// (id, claim token)
    type Task = (u64, String);

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
        KeelWatch::open(&self.0.host, prefix).await
    }

    async fn enqueue(&mut self, queue: &str, payload: Bytes) -> Result<()> {
        let path = format!("/v1/queues/{queue}/tasks");
        let a = self.0.send(Method::POST, &path, payload).await?;
        expect_success("enqueue", &a)
    }

    async fn claim(&mut self, queue: &str) -> Result<Option<(u64, String)>> {
        let wait = super::CLAIM_WAIT.as_millis();
        let path = format!("/v1/queues/{queue}/claim?wait={wait}ms&lease=60s");
        let a = self.0.send(Method::POST, &path, Bytes::new()).await?;
        if a.status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        expect_success("claim", &a)?;
        let body: serde_json::Value = serde_json::from_slice(&a.body)?;
        let task = &body["tasks"][0];
        let id = task["id"].as_u64().context("claim: no task id")?;
        let claim = task["claim"].as_str().context("claim: no claim token")?;
        Ok(Some((id, claim.to_owned())))
    }

    async fn complete(&mut self, queue: &str, (id, claim): (u64, String)) -> Result<()> {
        let path = format!("/v1/queues/{queue}/tasks/{id}/complete");
        let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "claim": claim }))?);
        let a = self.0.send(Method::POST, &path, body).await?;
        expect_success("complete", &a)
    }
}

/// The bare hyper server (`ceiling`): every request is a GET of its fixed body.
pub struct Ceiling(HttpConn);

impl Client for Ceiling {
    type Watch = NoWatch;
    type Task = ();

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
