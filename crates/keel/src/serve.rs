//! `keel serve`: resolve settings, start the node and the HTTP API, stop on a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_raft::{Node, NodeConfig};
use keel_server::ServerConfig;
use serde::Deserialize;

use crate::cli::{LogFormat, ServeArgs};

/// Settings as they may appear in the TOML file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    node_id: Option<u64>,
    max_value_size: Option<usize>,
    max_request_size: Option<usize>,
    snapshot_every: Option<u64>,
    history: Option<u64>,
    segment_size: Option<u64>,
    log_format: Option<LogFormat>,
    max_watches_per_connection: Option<usize>,
    cors_origins: Option<Vec<String>>,
}

/// Fully resolved settings.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub node_id: u64,
    pub max_value_size: usize,
    pub max_request_size: usize,
    pub snapshot_every: u64,
    pub history: u64,
    pub segment_size: u64,
    pub log_format: LogFormat,
    pub max_watches_per_connection: usize,
    pub cors_origins: Vec<String>,
}

fn resolve(args: ServeArgs) -> Result<Settings> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let s = Settings {
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7400".into()),
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("keel-data")),
        node_id: args.node_id.or(file.node_id).unwrap_or(1),
        max_value_size: args
            .max_value_size
            .or(file.max_value_size)
            .unwrap_or(1 << 20),
        max_request_size: args
            .max_request_size
            .or(file.max_request_size)
            .unwrap_or(4 << 20),
        snapshot_every: args
            .snapshot_every
            .or(file.snapshot_every)
            .unwrap_or(10_000),
        history: args.history.or(file.history).unwrap_or(10_000),
        segment_size: args.segment_size.or(file.segment_size).unwrap_or(64 << 20),
        log_format: args
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Human),
        max_watches_per_connection: args
            .max_watches_per_connection
            .or(file.max_watches_per_connection)
            .unwrap_or(1_000),
        cors_origins: args
            .cors_origins
            .or(file.cors_origins)
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
    };
    if s.node_id == 0 {
        bail!("--node-id must be at least 1");
    }
    if s.snapshot_every == 0 {
        bail!("--snapshot-every must be at least 1");
    }
    if s.max_value_size == 0 || s.max_request_size == 0 {
        bail!("size limits must be positive");
    }
    if s.max_watches_per_connection == 0 {
        bail!("--max-watches-per-connection must be at least 1");
    }
    for origin in &s.cors_origins {
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            bail!("--cors-origins: {origin:?} is not an origin (scheme://host[:port])");
        }
    }
    if s.segment_size < 4096 {
        bail!("--segment-size must be at least 4096 bytes");
    }
    Ok(s)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
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
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
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
    let node = Node::start(NodeConfig {
        node_id: settings.node_id,
        data_dir: settings.data_dir.clone(),
        advertise_addr: addr.to_string(),
        snapshot_every: settings.snapshot_every,
        history: settings.history,
        segment_bytes: settings.segment_size,
        clock: keel_raft::Clock::system(),
    })
    .await
    .with_context(|| {
        format!(
            "cannot start with data directory {}",
            settings.data_dir.display()
        )
    })?;
    if !node.wait_ready(Duration::from_secs(60)).await {
        bail!("node did not become ready within 60 s");
    }
    let revision = node.state().read(|s| s.revision());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        data_dir = %settings.data_dir.display(),
        node_id = settings.node_id,
        revision,
        startup_ms = started.elapsed().as_millis() as u64,
        "keel started"
    );
    let node = Arc::new(node);
    let config = ServerConfig {
        max_value_size: settings.max_value_size,
        max_request_size: settings.max_request_size,
        max_watches_per_socket: settings.max_watches_per_connection,
        cors_origins: settings.cors_origins.clone(),
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
