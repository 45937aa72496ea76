//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// keel: the backbone for a system of services — a durable key-value store with revisions,
/// transactions and leases.
#[derive(Parser, Debug)]
#[command(name = "keel", version, about, propagate_version = true)]
pub struct Cli {
    /// Address of the keel server for client commands.
    #[arg(
        long,
        global = true,
        env = "KEEL_ADDR",
        default_value = "http://127.0.0.1:7400"
    )]
    pub addr: String,
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a keel node.
    Serve(ServeArgs),
    /// Print a key's value.
    Get {
        /// The key.
        key: String,
        /// Read as of this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Write a key. VALUE `-` or no VALUE reads the value from stdin.
    Put {
        /// The key.
        key: String,
        /// The value, or `-` for stdin.
        value: Option<String>,
        /// Attach the key to this lease.
        #[arg(long)]
        lease: Option<u64>,
        /// Only if the key's mod_revision is N (0: only if absent).
        #[arg(long)]
        if_revision: Option<u64>,
    },
    /// Delete a key, or every key under a prefix.
    Del {
        /// The key.
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        key: Option<String>,
        /// Delete every key under this (non-empty) prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Only if the key's mod_revision is N.
        #[arg(long, conflicts_with = "prefix")]
        if_revision: Option<u64>,
    },
    /// List keys under a prefix (all pages).
    Ls {
        /// The prefix (default: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
        /// Read as of this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Add to a counter (default 1; may be negative).
    Incr {
        /// The key.
        key: String,
        /// The amount.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Run a transaction read from a JSON file, or `-` for stdin.
    Txn {
        /// The file.
        file: String,
    },
    /// Manage leases.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Print every change to a key, or to every key under a prefix, as it happens. After a
    /// lost connection it reconnects and resumes where it stopped, without gaps.
    Watch {
        /// The key.
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        key: Option<String>,
        /// Watch every key under this prefix ("" for all keys).
        #[arg(long)]
        prefix: Option<String>,
        /// Start with the change at this revision (replaying the history since).
        #[arg(long, conflicts_with = "initial")]
        from_revision: Option<u64>,
        /// First print the current state; if the history is ever compacted past where the
        /// watch must resume, print the state again and continue (instead of exiting 1).
        #[arg(long)]
        initial: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Grant a lease with a time to live such as 10s or 1m30s.
    Grant {
        /// Time to live.
        ttl: String,
    },
    /// Restart a lease's time to live.
    Keepalive {
        /// The lease id.
        id: u64,
        /// Keep it alive until interrupted.
        #[arg(long)]
        forever: bool,
    },
    /// Revoke a lease and delete its keys.
    Revoke {
        /// The lease id.
        id: u64,
    },
    /// Describe a lease.
    Get {
        /// The lease id.
        id: u64,
    },
    /// List leases.
    Ls,
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
    /// Address to listen on [default: 127.0.0.1:7400].
    #[arg(long, env = "KEEL_LISTEN")]
    pub listen: Option<String>,
    /// Data directory [default: ./keel-data].
    #[arg(long, env = "KEEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This node's id [default: 1].
    #[arg(long, env = "KEEL_NODE_ID")]
    pub node_id: Option<u64>,
    /// Largest value in bytes [default: 1048576].
    #[arg(long, env = "KEEL_MAX_VALUE_SIZE")]
    pub max_value_size: Option<usize>,
    /// Largest JSON request body in bytes (transactions, leases) [default: 4194304].
    #[arg(long, env = "KEEL_MAX_REQUEST_SIZE")]
    pub max_request_size: Option<usize>,
    /// Take a snapshot every N log entries [default: 10000].
    #[arg(long, env = "KEEL_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Revisions of history kept for past reads [default: 10000].
    #[arg(long, env = "KEEL_HISTORY")]
    pub history: Option<u64>,
    /// Size of each preallocated log segment in bytes [default: 67108864].
    #[arg(long, env = "KEEL_SEGMENT_SIZE")]
    pub segment_size: Option<u64>,
    /// Log format [default: human].
    #[arg(long, env = "KEEL_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Most watches one WebSocket may hold [default: 1000].
    #[arg(long, env = "KEEL_MAX_WATCHES_PER_CONNECTION")]
    pub max_watches_per_connection: Option<usize>,
    /// Web origins allowed to call the API from a browser (CORS), comma-separated, e.g.
    /// https://app.example.com [default: none].
    #[arg(long, env = "KEEL_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
}
