//! The command line of the client verbs. `keel serve` is parsed on its own
//! ([`crate::serve::ServeCli`]); it is listed here so that `keel --help` shows it.

use clap::{Parser, Subcommand};

use crate::commands::cluster::ClusterVerb;
use crate::commands::kv::KvVerb;
use crate::commands::lease::LeaseVerb;
use crate::commands::queue::QueueVerb;
use crate::commands::watch::WatchArgs;
use crate::serve::ServeArgs;

/// keel: the backbone for a system of services — a durable key-value store with revisions,
/// transactions and leases, and task queues.
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

/// Every verb: `serve`, then the client verbs by capability.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a keel node (`keel serve --help` lists its settings).
    Serve(Box<ServeArgs>),
    /// Key verbs.
    #[command(flatten)]
    Kv(KvVerb),
    /// Manage leases.
    #[command(subcommand)]
    Lease(LeaseVerb),
    /// Print every change to a key, or to every key under a prefix, as it happens. After a
    /// lost connection it reconnects and resumes where it stopped, without gaps.
    Watch(WatchArgs),
    /// Cluster membership: status, remove a member, move leadership.
    #[command(subcommand)]
    Cluster(ClusterVerb),
    /// Task queues: push, claim, finish, inspect, and `work` to run a command per task.
    #[command(subcommand)]
    Queue(QueueVerb),
}
