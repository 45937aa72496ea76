//! `keel serve`: resolve settings, start the node and the HTTP API, stop on a signal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_raft::{Node, NodeConfig};
use keel_server::ServerConfig;

mod membership;
mod settings;

use settings::resolve;
pub use settings::{LogFormat, ServeArgs, ServeCli};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        // openraft warns on every failed heartbeat while a peer is down (many lines a second);
        // keel-raft logs each peer's loss and return once instead.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    crate::signal::interrupted().await;
    tracing::info!("shutting down: no new requests; finishing those in flight");
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let settings = resolve(args)?;
    init_logging(settings.log_format);
    let started = Instant::now();
    let metrics = match keel_server::install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "metrics disabled");
            None
        }
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let advertise = match &settings.advertise {
        Some(url) => url.clone(),
        None if addr.ip().is_unspecified() && !settings.join.is_empty() => {
            bail!("listening on {addr}: give --advertise, the URL other nodes reach this one at")
        }
        None => format!("http://{addr}"),
    };
    let local = Some(addr.ip()).filter(|ip| !ip.is_unspecified());
    let transport =
        keel_server::HttpTransport::new(settings.cluster_secret.clone(), advertise.clone(), local)?;
    let peers = keel_raft::Peers::new(Arc::new(transport));
    let initialized = membership::has_raft_state(&settings.data_dir);
    let identity = membership::resolve(
        &settings.data_dir,
        settings.node_id,
        initialized,
        &settings.join,
        &advertise,
        &peers,
    )
    .await?;
    let node = Node::start(NodeConfig {
        node_id: identity.node_id,
        data_dir: settings.data_dir.clone(),
        advertise_addr: advertise.clone(),
        snapshot_every: settings.snapshot_every,
        history: settings.history,
        segment_bytes: settings.segment_size,
        clock: keel_raft::Clock::system(),
        heartbeat_interval: settings.heartbeat_interval,
        election_timeout: settings.election_timeout,
        request_timeout: settings.request_timeout,
        max_voters: settings.voters,
        bootstrap: identity.bootstrap,
        peers,
    })
    .await
    .with_context(|| {
        format!(
            "cannot start with data directory {}",
            settings.data_dir.display()
        )
    })?;
    let status = node.status().borrow().clone();
    if status.members > 1 && settings.cluster_secret.is_none() {
        bail!(
            "this node belongs to a cluster of {} members: give it the cluster secret \
             (--cluster-secret or --cluster-secret-file)",
            status.members
        );
    }
    // A one-member group leads at once; a member of a larger one serves as soon as it is
    // up, following whoever leads (its /readyz says when it can serve linearizably).
    if status.sole_voter && !identity.joined && !node.wait_ready(Duration::from_secs(60)).await {
        bail!("node did not become ready within 60 s");
    }
    let revision = node.state().read(|s| s.revision());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        advertise = %advertise,
        data_dir = %settings.data_dir.display(),
        node_id = identity.node_id,
        members = status.members,
        revision,
        startup_ms = started.elapsed().as_millis() as u64,
        "keel started"
    );
    let node = Arc::new(node);
    if status.members > 1 {
        // Restarted on another address: the others must learn it to reach this node.
        let node = node.clone();
        let advertise = advertise.clone();
        tokio::spawn(async move {
            if let Err(e) = node
                .keep_address(&advertise, Duration::from_secs(120))
                .await
            {
                tracing::error!(error = %e, addr = %advertise, "the cluster still records another address for this node");
            }
        });
    }
    let config = ServerConfig {
        max_value_size: settings.max_value_size,
        max_request_size: settings.max_request_size,
        max_watches_per_socket: settings.max_watches_per_connection,
        cors_origins: settings.cors_origins.clone(),
        watch_batch: settings.watch_batch,
        cluster_secret: settings.cluster_secret.clone(),
        queue_lease: settings.queue_lease,
        queue_retention: settings.queue_retention,
        max_queue_tasks: settings.max_queue_tasks,
        ..ServerConfig::default()
    };
    keel_server::serve(node.clone(), listener, config, metrics, shutdown_signal())
        .await
        .context("serving HTTP")?;
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await,
        Err(_) => {
            tracing::warn!("node still referenced at shutdown; exiting without raft shutdown")
        }
    }
    tracing::info!("keel stopped");
    Ok(())
}
