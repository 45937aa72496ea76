//! A typed async client for keel's HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), keel_client::Error> {
//! let keel = keel_client::Client::new("http://127.0.0.1:7400")?;
//! let revision = keel.put("config/color", "blue", &Default::default()).await?;
//! let kv = keel.get("config/color", &Default::default()).await?;
//! assert_eq!(kv.map(|kv| kv.mod_revision), Some(revision));
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use keel_wire::{
    DeleteResponse, ErrorBody, IncrResponse, KeyValue, LeaseGrantRequest, LeaseInfo, LeaseList,
    LeaseResponse, LeaseRevokeResponse, ListResponse, RevisionResponse, TxnRequest, TxnResponse,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use keel_wire as wire;
pub use queue::{
    ClaimOptions, EnqueueOptions, Enqueued, TaskListOptions, Worker, WorkerStats, WorkerTask,
};
pub use watch::{WatchItem, WatchOptions, WatchStream};

mod queue;
mod watch;

/// A client error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable code, e.g. `key_not_found`.
        code: wire::Code,
        /// The server's message.
        message: String,
        /// Code-specific fields, e.g. `current_revision`.
        extra: serde_json::Map<String, serde_json::Value>,
    },
    /// The server could not be reached or the connection failed.
    #[error("cannot reach keel at {addr}: {message}")]
    Transport {
        /// The server address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The server's answer could not be understood.
    #[error("unexpected response from keel: {0}")]
    Decode(String),
    /// The client was given something unusable (an invalid address).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// The stable error code, for server errors.
    pub fn code(&self) -> Option<wire::Code> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Result of client calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Options of [`Client::get`].
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    /// Read as of this revision.
    pub revision: Option<u64>,
    /// Accept a possibly stale read from this node.
    pub stale: bool,
    /// A blocking read: wait up to this long (at most 10 minutes) for the key to change
    /// after `after_revision`, then answer with its state. Excludes `revision`.
    pub wait: Option<Duration>,
    /// With `wait`: the revision the caller has seen (default: the store's revision now).
    pub after_revision: Option<u64>,
}

/// Options of [`Client::put`].
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Attach the key to this lease.
    pub lease: Option<u64>,
    /// Only if the key's `mod_revision` is this (0: only if absent).
    pub if_revision: Option<u64>,
}

/// Options of [`Client::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys under this prefix.
    pub prefix: String,
    /// Page size (server default 1,000).
    pub limit: Option<usize>,
    /// Only keys after this one.
    pub after: Option<String>,
    /// Leave values out.
    pub keys_only: bool,
    /// Read as of this revision.
    pub revision: Option<u64>,
    /// Accept a possibly stale read from this node.
    pub stale: bool,
    /// A blocking read: wait up to this long (at most 10 minutes) for a key under the
    /// prefix to change after `after_revision`, then answer with the page. Excludes
    /// `revision`.
    pub wait: Option<Duration>,
    /// With `wait`: the revision the caller has seen (default: the store's revision now).
    pub after_revision: Option<u64>,
}

/// The query parameters of a blocking read.
fn blocking(q: &mut Vec<(&str, String)>, wait: Option<Duration>, after_revision: Option<u64>) {
    if let Some(w) = wait {
        q.push(("wait", format!("{}ms", w.as_millis())));
    }
    if let Some(r) = after_revision {
        q.push(("after_revision", r.to_string()));
    }
}

/// A keel HTTP client. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
}

impl Client {
    /// A client for the server at `addr`, e.g. `http://127.0.0.1:7400`.
    pub fn new(addr: &str) -> Result<Client> {
        // reqwest is built without a bundled TLS provider; use ring's (no C toolchain needed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base =
            Url::parse(addr).map_err(|e| Error::Usage(format!("invalid address {addr:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Usage(format!(
                "address {addr:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Usage(format!("cannot build HTTP client: {e}")))?;
        Ok(Client { http, base })
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, segments: &[&str], key: Option<&str>, query: &[(&str, String)]) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| Error::Usage("address cannot be a base URL".into()))?;
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
            if let Some(key) = key {
                for part in key.split('/') {
                    path.push(part);
                }
            }
        }
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        json: bool,
    ) -> Result<reqwest::Response> {
        let mut req = self.http.request(method, url);
        if json {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        self.execute(req).await
    }

    /// Sends a request; an error answer becomes [`Error::Api`].
    async fn execute(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| Error::Transport {
            addr: self.base.to_string(),
            message: error_chain(&e),
        })?;
        self.check(resp).await
    }

    /// Reads a successful answer's JSON body.
    async fn decode<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T> {
        let bytes = resp.bytes().await.map_err(|e| Error::Transport {
            addr: self.base.to_string(),
            message: error_chain(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    /// A success passes; an error answer becomes [`Error::Api`].
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(Error::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                extra: e.error.extra,
            }),
            Err(_) => Err(Error::Decode(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        json: bool,
    ) -> Result<T> {
        let resp = self.send(method, url, body, json).await?;
        self.decode(resp).await
    }

    /// Reads a key; `None` if it does not exist.
    pub async fn get(&self, key: &str, opts: &GetOptions) -> Result<Option<KeyValue>> {
        let mut q = vec![("format", "json".to_owned())];
        if let Some(r) = opts.revision {
            q.push(("revision", r.to_string()));
        }
        if opts.stale {
            q.push(("stale", "true".into()));
        }
        blocking(&mut q, opts.wait, opts.after_revision);
        let url = self.url(&["v1", "kv"], Some(key), &q)?;
        match self.call(Method::GET, url, None, false).await {
            Ok(kv) => Ok(Some(kv)),
            Err(e) if e.code() == Some(wire::Code::KeyNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a key; returns the new store revision.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>, opts: &PutOptions) -> Result<u64> {
        let mut q = Vec::new();
        if let Some(l) = opts.lease {
            q.push(("lease", l.to_string()));
        }
        if let Some(r) = opts.if_revision {
            q.push(("if_revision", r.to_string()));
        }
        let url = self.url(&["v1", "kv"], Some(key), &q)?;
        let r: RevisionResponse = self
            .call(Method::PUT, url, Some(value.into()), false)
            .await?;
        Ok(r.revision)
    }

    /// Deletes a key (error `key_not_found` if absent).
    pub async fn delete(&self, key: &str, if_revision: Option<u64>) -> Result<DeleteResponse> {
        let q: Vec<(&str, String)> = if_revision
            .map(|r| ("if_revision", r.to_string()))
            .into_iter()
            .collect();
        let url = self.url(&["v1", "kv"], Some(key), &q)?;
        self.call(Method::DELETE, url, None, false).await
    }

    /// Deletes every key under a non-empty prefix.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<DeleteResponse> {
        let url = self.url(&["v1", "kv"], None, &[("prefix", prefix.to_owned())])?;
        self.call(Method::DELETE, url, None, false).await
    }

    /// Deletes every key.
    pub async fn delete_all(&self) -> Result<DeleteResponse> {
        let url = self.url(&["v1", "kv"], None, &[("all", "true".into())])?;
        self.call(Method::DELETE, url, None, false).await
    }

    /// Reads one page of keys.
    pub async fn list(&self, opts: &ListOptions) -> Result<ListResponse> {
        let mut q = vec![("prefix", opts.prefix.clone())];
        if let Some(l) = opts.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(a) = &opts.after {
            q.push(("after", a.clone()));
        }
        if opts.keys_only {
            q.push(("keys_only", "true".into()));
        }
        if let Some(r) = opts.revision {
            q.push(("revision", r.to_string()));
        }
        if opts.stale {
            q.push(("stale", "true".into()));
        }
        blocking(&mut q, opts.wait, opts.after_revision);
        let url = self.url(&["v1", "kv"], None, &q)?;
        self.call(Method::GET, url, None, false).await
    }

    /// Adds `by` to a counter.
    pub async fn incr(&self, key: &str, by: i64) -> Result<IncrResponse> {
        let url = self.url(&["v1", "incr"], Some(key), &[("by", by.to_string())])?;
        self.call(Method::POST, url, None, false).await
    }

    /// Runs a transaction.
    pub async fn txn(&self, txn: &TxnRequest) -> Result<TxnResponse> {
        let body = serde_json::to_vec(txn).map_err(|e| Error::Usage(e.to_string()))?;
        let url = self.url(&["v1", "txn"], None, &[])?;
        self.call(Method::POST, url, Some(body.into()), true).await
    }

    /// Grants a lease.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<LeaseResponse> {
        let req = LeaseGrantRequest {
            ttl: None,
            ttl_ms: Some(ttl.as_millis() as u64),
        };
        let body = serde_json::to_vec(&req).map_err(|e| Error::Usage(e.to_string()))?;
        let url = self.url(&["v1", "leases"], None, &[])?;
        self.call(Method::POST, url, Some(body.into()), true).await
    }

    /// Restarts a lease's time to live.
    pub async fn lease_keepalive(&self, id: u64) -> Result<LeaseResponse> {
        let url = self.url(&["v1", "leases", &id.to_string(), "keepalive"], None, &[])?;
        self.call(Method::POST, url, None, false).await
    }

    /// Revokes a lease, deleting its keys.
    pub async fn lease_revoke(&self, id: u64) -> Result<LeaseRevokeResponse> {
        let url = self.url(&["v1", "leases", &id.to_string()], None, &[])?;
        self.call(Method::DELETE, url, None, false).await
    }

    /// Describes a lease.
    pub async fn lease_get(&self, id: u64) -> Result<LeaseInfo> {
        let url = self.url(&["v1", "leases", &id.to_string()], None, &[])?;
        self.call(Method::GET, url, None, false).await
    }

    /// Lists leases.
    pub async fn lease_list(&self) -> Result<LeaseList> {
        let url = self.url(&["v1", "leases"], None, &[])?;
        self.call(Method::GET, url, None, false).await
    }

    /// The cluster's members and their state, as the leader sees them.
    pub async fn cluster(&self) -> Result<wire::ClusterStatus> {
        let url = self.url(&["v1", "cluster"], None, &[])?;
        self.call(Method::GET, url, None, false).await
    }

    /// Removes member `id` from the cluster; it stops serving.
    pub async fn remove_member(&self, id: u64) -> Result<wire::RemoveResponse> {
        let url = self.url(&["v1", "cluster", "members", &id.to_string()], None, &[])?;
        self.call(Method::DELETE, url, None, false).await
    }

    /// Hands leadership to voter `id` and waits until it leads.
    pub async fn transfer_leader(&self, id: u64) -> Result<wire::LeaderResponse> {
        let body = serde_json::to_vec(&wire::TransferLeaderRequest { id })
            .map_err(|e| Error::Usage(e.to_string()))?;
        let url = self.url(&["v1", "cluster", "leader"], None, &[])?;
        self.call(Method::POST, url, Some(body.into()), true).await
    }

    /// A digest of the state this node has applied (equal on nodes that applied the same log).
    pub async fn state_hash(&self) -> Result<wire::StateHash> {
        let url = self.url(&["v1", "cluster", "state-hash"], None, &[])?;
        self.call(Method::GET, url, None, false).await
    }

    /// True if the process answers `/healthz` (it is up, whatever its Raft state).
    pub async fn healthy(&self) -> Result<bool> {
        let url = self.url(&["healthz"], None, &[])?;
        self.send(Method::GET, url, None, false).await.map(|_| true)
    }

    /// True if the server answers `/readyz` with 200.
    pub async fn ready(&self) -> Result<bool> {
        let url = self.url(&["readyz"], None, &[])?;
        match self.send(Method::GET, url, None, false).await {
            Ok(_) => Ok(true),
            Err(Error::Api { status, .. })
                if status == StatusCode::SERVICE_UNAVAILABLE.as_u16() =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The Prometheus metrics text.
    pub async fn metrics(&self) -> Result<String> {
        let url = self.url(&["metrics"], None, &[])?;
        let resp = self.send(Method::GET, url, None, false).await?;
        resp.text().await.map_err(|e| Error::Decode(e.to_string()))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
