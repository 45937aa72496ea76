//! keel's HTTP API: routes, limits, error mapping, background workers and metrics.
//!
//! Handlers parse and validate first (keys, sizes, limits), then either read the applied
//! state or propose one command through [`keel_raft::Node`] and wait for its outcome. No
//! handler changes state any other way.

mod cluster;
mod duration;
mod duty;
mod error;
mod extract;
mod kv;
mod lease;
mod metrics_http;
mod ops;
mod peer;
mod queue;
mod respond;
mod stream;
mod txn;
mod watch;

use std::future::Future;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, Method};
use axum::Router;
use keel_raft::Node;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use duration::parse_duration;
pub use error::ApiError;
pub use metrics_http::install_recorder;
pub use peer::HttpTransport;

/// Limits and settings of the HTTP API.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest value accepted, in bytes.
    pub max_value_size: usize,
    /// Largest request body accepted (transactions, lease requests), in bytes.
    pub max_request_size: usize,
    /// Most comparisons plus operations in one transaction.
    pub max_txn_ops: usize,
    /// Default page size of `GET /v1/kv`.
    pub default_list_limit: usize,
    /// Largest page size of `GET /v1/kv`.
    pub max_list_limit: usize,
    /// Most watches one WebSocket may hold.
    pub max_watches_per_socket: usize,
    /// Shortest time between two rounds of watch fan-out: under a fast writer each round
    /// carries what was applied meanwhile, so each watcher writes several changes at once
    /// (zero: no minimum; rounds still wait for the last one to be delivered). The first
    /// change after a quiet spell is never held back.
    pub watch_batch: std::time::Duration,
    /// Origins (`scheme://host[:port]`) whose web pages may call the API (CORS).
    pub cors_origins: Vec<String>,
    /// The secret other members present on every call under `/raft/`; None: this node
    /// accepts no peers (every such call is answered 401).
    pub cluster_secret: Option<String>,
    /// A task claim's lease when the claim names none.
    pub queue_lease: std::time::Duration,
    /// How long done tasks are kept before the leader deletes them.
    pub queue_retention: std::time::Duration,
    /// Most tasks one queue may hold (in any state).
    pub max_queue_tasks: u64,
}

impl ServerConfig {
    /// The default of [`ServerConfig::watch_batch`].
    pub const DEFAULT_WATCH_BATCH: std::time::Duration = std::time::Duration::from_millis(5);
    /// The default of [`ServerConfig::queue_lease`].
    pub const DEFAULT_QUEUE_LEASE: std::time::Duration = std::time::Duration::from_secs(60);
    /// The default of [`ServerConfig::queue_retention`].
    pub const DEFAULT_QUEUE_RETENTION: std::time::Duration =
        std::time::Duration::from_secs(24 * 3600);
    /// The default of [`ServerConfig::max_queue_tasks`].
    pub const DEFAULT_MAX_QUEUE_TASKS: u64 = 1_000_000;
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_value_size: 1 << 20,
            max_request_size: 4 << 20,
            max_txn_ops: 128,
            default_list_limit: 1_000,
            max_list_limit: 10_000,
            max_watches_per_socket: 1_000,
            watch_batch: Self::DEFAULT_WATCH_BATCH,
            cors_origins: Vec::new(),
            cluster_secret: None,
            queue_lease: Self::DEFAULT_QUEUE_LEASE,
            queue_retention: Self::DEFAULT_QUEUE_RETENTION,
            max_queue_tasks: Self::DEFAULT_MAX_QUEUE_TASKS,
        }
    }
}

/// What every handler shares: one reference-counted pointer, so that handing it to a
/// handler costs one atomic increment.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
pub(crate) struct Shared {
    pub(crate) node: Arc<Node>,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Becomes true when the server starts shutting down: long-lived streams end.
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
    /// Hands applied changes to the watches and blocking reads they concern.
    pub(crate) hub: Arc<watch::Hub>,
    /// Wakes claims waiting on a queue when a task there becomes pending.
    pub(crate) ready: Arc<queue::ReadyBell>,
}

impl Shared {
    /// Proposes a client's write, once the watch fan-out admits it (see
    /// [`watch::Hub::admit`]), and waits for its outcome.
    pub(crate) async fn propose(
        &self,
        command: keel_state::Command,
    ) -> Result<keel_state::Outcome, keel_raft::ProposeError> {
        self.hub.admit().await;
        self.node.propose(command).await
    }
}

/// Builds the router for `node`.
fn router(state: AppState, cors: Option<CorsLayer>) -> Router {
    let router = Router::new()
        .merge(kv::routes())
        .merge(txn::routes())
        .merge(lease::routes())
        .merge(queue::routes())
        .merge(stream::routes())
        .merge(cluster::routes())
        .merge(ops::routes())
        .merge(peer::routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(metrics_http::TrackLayer::default())
        .layer(axum::extract::DefaultBodyLimit::disable());
    match cors {
        Some(cors) => router.layer(cors).with_state(state),
        None => router.with_state(state),
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish and returns; an error if it stopped because Raft did (a storage
/// failure). Runs the leader duties (lease expiry, task leases, task retention) meanwhile.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    config: ServerConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cors = cors_layer(&config.cors_origins)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let lease_expiry = duty::spawn(
        node.clone(),
        duty::lease_expiry::LeaseExpiry,
        stop_rx.clone(),
    );
    let task_leases = duty::spawn(node.clone(), duty::task_leases::TaskLeases, stop_rx.clone());
    let task_retention = duty::spawn(
        node.clone(),
        duty::task_retention::TaskRetention {
            retention: config.queue_retention,
        },
        stop_rx.clone(),
    );
    if let Some(handle) = metrics.clone() {
        tokio::spawn(metrics_http::upkeep(handle, stop_rx));
    }
    // Stop serving when asked, or when Raft stops for good (a storage failure): a node that
    // can no longer write should exit so that its supervisor restarts it and it recovers
    // from disk, rather than answer 503 forever.
    let mut status = node.status();
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            r = status.wait_for(|s| s.fatal.is_some()) => {
                let why = r.ok().and_then(|s| s.fatal.clone()).unwrap_or_else(|| "raft stopped".into());
                tracing::error!(error = %why, "raft stopped; shutting down");
                let _ = fatal_tx.send(why);
            }
        }
        // Watches and blocking reads end now, so that graceful shutdown does not wait on them.
        closing_tx.send_replace(true);
    };
    let hub = watch::Hub::spawn(node.state(), config.watch_batch, closing.clone());
    let ready = queue::ReadyBell::spawn(node.state(), closing.clone());
    let state = AppState(Arc::new(Shared {
        node,
        config,
        metrics,
        closing,
        hub,
        ready,
    }));
    let app = router(state, cors).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await;
    stop_tx.send_replace(true);
    lease_expiry.join().await;
    task_leases.join().await;
    task_retention.join().await;
    result?;
    match fatal_rx.await {
        Ok(why) => Err(std::io::Error::other(format!("raft stopped: {why}"))),
        Err(_) => Ok(()),
    }
}

/// CORS for the configured origins: preflights are answered and every API response carries
/// `Access-Control-Allow-Origin` for them, so pages on those origins can read keys and hold
/// an `EventSource` on a watch. None when no origin is configured.
fn cors_layer(origins: &[String]) -> std::io::Result<Option<CorsLayer>> {
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o.trim_end_matches('/')).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("CORS origin {o:?}: {e}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let exposed = [
        "keel-mod-revision",
        "keel-create-revision",
        "keel-version",
        "keel-lease",
        "keel-store-revision",
        "keel-applied-revision",
        "keel-last-contact",
    ]
    .map(HeaderName::from_static);
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::PUT, Method::POST, Method::DELETE])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::ACCEPT,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers(exposed)
            .max_age(std::time::Duration::from_secs(3600)),
    ))
}
