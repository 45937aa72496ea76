//! The peer transport over HTTP: each call is a `POST /raft/{call}` with a postcard body,
//! the cluster secret as a bearer token, and the protocol version in a header; a snapshot is
//! one streamed body (the head's length, the head, then the file read in chunks).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use keel_raft::peer::{PeerCall, PeerError, PeerFuture, Transport, PEER_PROTOCOL};
use tokio::io::AsyncReadExt;

/// The header naming the peer protocol version of a call.
pub(crate) const PROTOCOL_HEADER: &str = "keel-peer-protocol";
/// The header naming the calling node's advertised URL (for the callee's logs).
pub(crate) const FROM_HEADER: &str = "keel-peer-from";
/// How much of a snapshot file is read and sent at a time.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// How long a snapshot transfer may go without progress before it is abandoned.
const SNAPSHOT_IDLE: Duration = Duration::from_secs(30);

/// Calls other nodes over HTTP/1.1 with keep-alive connections.
pub struct HttpTransport {
    client: reqwest::Client,
    secret: Option<String>,
    from: String,
}

impl HttpTransport {
    /// A transport that presents `secret` (if any), names itself `from` (its advertised
    /// URL), and connects from `local` (the node's listen address, when it is a specific
    /// one), so that peers and firewalls see peer traffic come from the address the node
    /// serves on.
    pub fn new(
        secret: Option<String>,
        from: String,
        local: Option<std::net::IpAddr>,
    ) -> std::io::Result<HttpTransport> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .local_address(local)
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .read_timeout(SNAPSHOT_IDLE)
            .build()
            .map_err(|e| std::io::Error::other(format!("cannot build the peer client: {e}")))?;
        Ok(HttpTransport {
            client,
            secret,
            from,
        })
    }

    fn request(&self, addr: &str, call: PeerCall) -> reqwest::RequestBuilder {
        // Members bootstrapped before clustering recorded a bare host:port.
        let base = addr.trim_end_matches('/');
        let url = if base.contains("://") {
            format!("{base}/raft/{}", call.name())
        } else {
            format!("http://{base}/raft/{}", call.name())
        };
        let mut req = self
            .client
            .post(url)
            .header(PROTOCOL_HEADER, PEER_PROTOCOL.to_string())
            .header(FROM_HEADER, &self.from)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(secret) = &self.secret {
            req = req.bearer_auth(secret);
        }
        req
    }

    async fn send(
        &self,
        addr: &str,
        req: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, PeerError> {
        let failed = |e: reqwest::Error| {
            if e.is_connect() {
                PeerError::Unreachable {
                    addr: addr.to_owned(),
                    why: error_chain(&e),
                }
            } else if e.is_timeout() {
                PeerError::Timeout {
                    addr: addr.to_owned(),
                    ms: timeout.map_or(0, |t| t.as_millis() as u64),
                }
            } else {
                PeerError::Refused {
                    addr: addr.to_owned(),
                    why: format!("the connection failed mid-call: {}", error_chain(&e)),
                }
            }
        };
        let req = match timeout {
            Some(t) => req.timeout(t),
            None => req,
        };
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(failed)?;
        if !status.is_success() {
            return Err(PeerError::Refused {
                addr: addr.to_owned(),
                why: format!("{status}: {}", String::from_utf8_lossy(&body).trim()),
            });
        }
        Ok(body.to_vec())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Transport for HttpTransport {
    fn call<'a>(
        &'a self,
        addr: &'a str,
        call: PeerCall,
        body: Vec<u8>,
        timeout: Duration,
    ) -> PeerFuture<'a, Result<Vec<u8>, PeerError>> {
        Box::pin(async move {
            let req = self.request(addr, call).body(body);
            self.send(addr, req, Some(timeout)).await
        })
    }

    fn send_snapshot<'a>(
        &'a self,
        addr: &'a str,
        head: Vec<u8>,
        file: &'a Path,
    ) -> PeerFuture<'a, Result<Vec<u8>, PeerError>> {
        Box::pin(async move {
            let opened = tokio::fs::File::open(file).await.map_err(|e| {
                PeerError::Failed(format!("cannot open snapshot {}: {e}", file.display()))
            })?;
            let length = u32::try_from(head.len())
                .map_err(|_| PeerError::Failed("snapshot head too large".into()))?;
            let mut first = length.to_le_bytes().to_vec();
            first.extend_from_slice(&head);
            // The head, then the file one chunk at a time: never whole in memory.
            let chunks = futures_util::stream::unfold(
                (Some(Bytes::from(first)), opened),
                |(first, mut f)| async move {
                    if let Some(first) = first {
                        return Some((Ok::<_, std::io::Error>(first), (None, f)));
                    }
                    let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                    match f.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            Some((Ok(Bytes::from(buf)), (None, f)))
                        }
                        Err(e) => Some((Err(e), (None, f))),
                    }
                },
            );
            let req = self
                .request(addr, PeerCall::Snapshot)
                .body(reqwest::Body::wrap_stream(chunks));
            self.send(addr, req, None).await
        })
    }
}
