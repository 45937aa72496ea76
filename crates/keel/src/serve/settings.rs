//! `keel serve` settings: the flags, the TOML file, and their defaults — written once, in
//! [`Settings::default`], which the `--help` text shows and [`resolve`] falls back to.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use keel_raft::NodeConfig;
use keel_server::ServerConfig;
use keel_state::StoreConfig;
use serde::Deserialize;

// Parsed on its own (not under the client's global `--addr` and `--json`), so that its help
// lists only what a server takes.
#[derive(Parser, Debug)]
#[command(
    name = "keel serve",
    bin_name = "keel serve",
    version,
    about = "Run a keel node.",
    long_about = "Run a keel node. Every setting may also come from a KEEL_* environment \
                  variable or from the TOML file named by --config; flags win over the \
                  environment, which wins over the file."
)]
pub struct ServeCli {
    /// The settings.
    #[command(flatten)]
    pub args: ServeArgs,
}

impl ServeCli {
    /// Parses `keel serve` arguments (`args` starts with the program name), showing every
    /// setting's default in the help from [`Settings::default`].
    pub fn parse_with_defaults(args: impl IntoIterator<Item = std::ffi::OsString>) -> ServeCli {
        let defaults = Settings::default().shown();
        let mut cmd = ServeCli::command();
        for (id, value) in defaults {
            cmd = cmd.mut_arg(id, |a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} [default: {value}]"))
            });
        }
        let matches = cmd.get_matches_from(args);
        ServeCli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `keel serve` options. Each may also come from a `KEEL_*` environment variable or the
/// TOML file named by `--config`; flags win over the environment, which wins over the file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case names).
    #[arg(long, env = "KEEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "KEEL_LISTEN")]
    pub listen: Option<String>,
    /// Data directory.
    #[arg(long, env = "KEEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This node's id.
    #[arg(long, env = "KEEL_NODE_ID")]
    pub node_id: Option<u64>,
    /// Largest value in bytes.
    #[arg(long, env = "KEEL_MAX_VALUE_SIZE")]
    pub max_value_size: Option<usize>,
    /// Largest JSON request body in bytes (transactions, leases).
    #[arg(long, env = "KEEL_MAX_REQUEST_SIZE")]
    pub max_request_size: Option<usize>,
    /// Take a snapshot every N log entries.
    #[arg(long, env = "KEEL_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Revisions of history kept for past reads.
    #[arg(long, env = "KEEL_HISTORY")]
    pub history: Option<u64>,
    /// Size of each preallocated log segment in bytes.
    #[arg(long, env = "KEEL_SEGMENT_SIZE")]
    pub segment_size: Option<u64>,
    /// Log format.
    #[arg(long, env = "KEEL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Most watches one WebSocket may hold.
    #[arg(long, env = "KEEL_MAX_WATCHES_PER_CONNECTION")]
    pub max_watches_per_connection: Option<usize>,
    /// Web origins allowed to call the API from a browser (CORS), comma-separated, e.g.
    /// https://app.example.com.
    #[arg(long, env = "KEEL_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    /// Shortest time between two rounds of watch fan-out: under a fast writer each round
    /// carries what was applied meanwhile, so each watcher writes several changes at once
    /// (0s: no minimum; the first change after a quiet spell is never held back).
    #[arg(long, env = "KEEL_WATCH_BATCH")]
    pub watch_batch: Option<String>,
    /// The URL other nodes and clients reach this node at (default: http:// and the listen
    /// address).
    #[arg(long, env = "KEEL_ADVERTISE")]
    pub advertise: Option<String>,
    /// Join the cluster of these members (their advertised URLs, comma-separated). Ignored
    /// once this node belongs to a cluster.
    #[arg(long, env = "KEEL_JOIN", value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// The secret every member presents to the others (required once a node has peers).
    #[arg(long, env = "KEEL_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret.
    #[arg(
        long,
        env = "KEEL_CLUSTER_SECRET_FILE",
        conflicts_with = "cluster_secret"
    )]
    pub cluster_secret_file: Option<PathBuf>,
    /// The most voters the leader promotes caught-up learners to; further nodes stay
    /// non-voting read replicas.
    #[arg(long, env = "KEEL_VOTERS")]
    pub voters: Option<usize>,
    /// How long a follower waits without hearing from the leader before it stands for
    /// election.
    #[arg(long, env = "KEEL_ELECTION_TIMEOUT")]
    pub election_timeout: Option<String>,
    /// How often the leader sends heartbeats.
    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,
    /// How long a write or linearizable read waits for a quorum before it fails with 503
    /// no_quorum.
    #[arg(long, env = "KEEL_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// A task claim's lease when the claim names none.
    #[arg(long, env = "KEEL_QUEUE_LEASE")]
    pub queue_lease: Option<String>,
    /// How long done tasks are kept before they are deleted.
    #[arg(long, env = "KEEL_QUEUE_RETENTION")]
    pub queue_retention: Option<String>,
    /// Most tasks one queue may hold, in any state (enqueues beyond it: 429 queue_full).
    #[arg(long, env = "KEEL_MAX_QUEUE_TASKS")]
    pub max_queue_tasks: Option<u64>,
}

/// The longest `--watch-batch`: a watcher never waits longer than this for a change.
const MAX_WATCH_BATCH: Duration = Duration::from_secs(1);

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
    watch_batch: Option<String>,
    advertise: Option<String>,
    join: Option<Vec<String>>,
    cluster_secret: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    voters: Option<usize>,
    election_timeout: Option<String>,
    heartbeat_interval: Option<String>,
    request_timeout: Option<String>,
    queue_lease: Option<String>,
    queue_retention: Option<String>,
    max_queue_tasks: Option<u64>,
}

/// Fully resolved settings.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    /// None: the data directory's, or one the cluster assigns, or 1.
    pub node_id: Option<u64>,
    pub max_value_size: usize,
    pub max_request_size: usize,
    pub snapshot_every: u64,
    pub history: u64,
    pub segment_size: u64,
    pub log_format: LogFormat,
    pub max_watches_per_connection: usize,
    pub cors_origins: Vec<String>,
    pub watch_batch: Duration,
    pub advertise: Option<String>,
    pub join: Vec<String>,
    pub cluster_secret: Option<String>,
    pub voters: usize,
    pub election_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub request_timeout: Duration,
    pub queue_lease: Duration,
    pub queue_retention: Duration,
    pub max_queue_tasks: u64,
}

impl Default for Settings {
    /// The defaults: the server's and the store's own, and the node's.
    fn default() -> Self {
        let server = ServerConfig::default();
        Settings {
            listen: "127.0.0.1:7400".into(),
            data_dir: PathBuf::from("keel-data"),
            node_id: None,
            max_value_size: server.max_value_size,
            max_request_size: server.max_request_size,
            snapshot_every: NodeConfig::DEFAULT_SNAPSHOT_EVERY,
            history: StoreConfig::DEFAULT_HISTORY,
            segment_size: NodeConfig::DEFAULT_SEGMENT_BYTES,
            log_format: LogFormat::Human,
            max_watches_per_connection: server.max_watches_per_socket,
            cors_origins: server.cors_origins,
            watch_batch: server.watch_batch,
            advertise: None,
            join: Vec::new(),
            cluster_secret: None,
            voters: NodeConfig::DEFAULT_MAX_VOTERS,
            election_timeout: NodeConfig::DEFAULT_ELECTION_TIMEOUT,
            heartbeat_interval: NodeConfig::DEFAULT_HEARTBEAT_INTERVAL,
            request_timeout: NodeConfig::DEFAULT_REQUEST_TIMEOUT,
            queue_lease: server.queue_lease,
            queue_retention: server.queue_retention,
            max_queue_tasks: server.max_queue_tasks,
        }
    }
}

impl Settings {
    /// Each flag's id with its default, as `--help` shows it.
    fn shown(&self) -> Vec<(&'static str, String)> {
        let log_format = match self.log_format {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        };
        let cors = if self.cors_origins.is_empty() {
            "none".to_owned()
        } else {
            self.cors_origins.join(",")
        };
        vec![
            ("listen", self.listen.clone()),
            ("data_dir", self.data_dir.display().to_string()),
            (
                "node_id",
                "the data directory's, or assigned on joining, or 1".to_owned(),
            ),
            ("max_value_size", self.max_value_size.to_string()),
            ("max_request_size", self.max_request_size.to_string()),
            ("snapshot_every", self.snapshot_every.to_string()),
            ("history", self.history.to_string()),
            ("segment_size", self.segment_size.to_string()),
            ("log_format", log_format.to_owned()),
            (
                "max_watches_per_connection",
                self.max_watches_per_connection.to_string(),
            ),
            ("cors_origins", cors),
            ("watch_batch", format!("{}ms", self.watch_batch.as_millis())),
            ("advertise", "http://LISTEN".to_owned()),
            ("voters", self.voters.to_string()),
            (
                "election_timeout",
                format!("{}ms", self.election_timeout.as_millis()),
            ),
            (
                "heartbeat_interval",
                format!("{}ms", self.heartbeat_interval.as_millis()),
            ),
            (
                "request_timeout",
                format!("{}ms", self.request_timeout.as_millis()),
            ),
            (
                "queue_lease",
                humantime::format_duration(self.queue_lease).to_string(),
            ),
            (
                "queue_retention",
                humantime::format_duration(self.queue_retention).to_string(),
            ),
            ("max_queue_tasks", self.max_queue_tasks.to_string()),
        ]
    }
}

/// Flags win over the environment (clap reads both), which wins over the file, which wins
/// over the defaults.
pub fn resolve(args: ServeArgs) -> Result<Settings> {
    let d = Settings::default();
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
        listen: args.listen.or(file.listen).unwrap_or(d.listen),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
        node_id: args.node_id.or(file.node_id),
        max_value_size: args
            .max_value_size
            .or(file.max_value_size)
            .unwrap_or(d.max_value_size),
        max_request_size: args
            .max_request_size
            .or(file.max_request_size)
            .unwrap_or(d.max_request_size),
        snapshot_every: args
            .snapshot_every
            .or(file.snapshot_every)
            .unwrap_or(d.snapshot_every),
        history: args.history.or(file.history).unwrap_or(d.history),
        segment_size: args
            .segment_size
            .or(file.segment_size)
            .unwrap_or(d.segment_size),
        log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
        max_watches_per_connection: args
            .max_watches_per_connection
            .or(file.max_watches_per_connection)
            .unwrap_or(d.max_watches_per_connection),
        cors_origins: args
            .cors_origins
            .or(file.cors_origins)
            .unwrap_or(d.cors_origins)
            .into_iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        watch_batch: match args.watch_batch.or(file.watch_batch) {
            Some(text) => keel_server::parse_duration(&text)
                .map_err(|e| anyhow::anyhow!("--watch-batch: {e}"))?,
            None => d.watch_batch,
        },
        advertise: args.advertise.or(file.advertise),
        join: args
            .join
            .or(file.join)
            .unwrap_or_default()
            .into_iter()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect(),
        cluster_secret: match (
            args.cluster_secret.or(file.cluster_secret),
            args.cluster_secret_file.or(file.cluster_secret_file),
        ) {
            (Some(_), Some(_)) => {
                bail!("give the cluster secret or a file holding it, not both")
            }
            (Some(secret), None) => Some(secret),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!("cannot read the cluster secret file {}", path.display())
                    })?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        },
        voters: args.voters.or(file.voters).unwrap_or(d.voters),
        election_timeout: duration(
            "--election-timeout",
            args.election_timeout.or(file.election_timeout),
            d.election_timeout,
        )?,
        heartbeat_interval: duration(
            "--heartbeat-interval",
            args.heartbeat_interval.or(file.heartbeat_interval),
            d.heartbeat_interval,
        )?,
        request_timeout: duration(
            "--request-timeout",
            args.request_timeout.or(file.request_timeout),
            d.request_timeout,
        )?,
        queue_lease: duration(
            "--queue-lease",
            args.queue_lease.or(file.queue_lease),
            d.queue_lease,
        )?,
        queue_retention: duration(
            "--queue-retention",
            args.queue_retention.or(file.queue_retention),
            d.queue_retention,
        )?,
        max_queue_tasks: args
            .max_queue_tasks
            .or(file.max_queue_tasks)
            .unwrap_or(d.max_queue_tasks),
    };
    if s.node_id == Some(0) {
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
    if s.watch_batch > MAX_WATCH_BATCH {
        bail!(
            "--watch-batch may hold changes back at most {} ms",
            MAX_WATCH_BATCH.as_millis()
        );
    }
    if s.segment_size < 4096 {
        bail!("--segment-size must be at least 4096 bytes");
    }
    if s.cluster_secret.as_deref() == Some("") {
        bail!("the cluster secret is empty");
    }
    if !s.join.is_empty() && s.cluster_secret.is_none() {
        bail!("--join needs the cluster secret (--cluster-secret or --cluster-secret-file)");
    }
    for url in s.join.iter().chain(&s.advertise) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("{url:?} is not a node URL (http://host:port)");
        }
    }
    if s.voters == 0 {
        bail!("--voters must be at least 1");
    }
    if s.heartbeat_interval.is_zero() || s.election_timeout < 3 * s.heartbeat_interval {
        bail!(
            "--election-timeout ({} ms) must be at least three --heartbeat-interval ({} ms)",
            s.election_timeout.as_millis(),
            s.heartbeat_interval.as_millis()
        );
    }
    if s.request_timeout < Duration::from_millis(100) {
        bail!("--request-timeout must be at least 100ms");
    }
    if s.queue_lease < Duration::from_millis(100) || s.queue_lease > Duration::from_secs(7 * 86_400)
    {
        bail!("--queue-lease must be between 100ms and 7 days");
    }
    if s.max_queue_tasks == 0 {
        bail!("--max-queue-tasks must be at least 1");
    }
    Ok(s)
}

fn duration(flag: &str, text: Option<String>, default: Duration) -> Result<Duration> {
    match text {
        Some(text) => {
            keel_server::parse_duration(&text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        }
        None => Ok(default),
    }
}
