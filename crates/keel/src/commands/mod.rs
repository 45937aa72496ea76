//! Client verbs: each calls the HTTP API through keel-client and prints the result. One module
//! per capability, each holding its verbs' arguments and their implementation.

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod queue;
pub mod watch;

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use keel_client::wire::Code;
use keel_client::Client;
use serde::Serialize;

use crate::cli::Command;

/// How a successful run ends.
pub enum Exit {
    /// Exit 0.
    Ok,
    /// Exit 1: not found, or a condition not met.
    NotMet,
}

/// Error codes that mean "not found or condition not met" (exit 1).
pub fn is_not_met(code: Code) -> bool {
    matches!(
        code,
        Code::KeyNotFound
            | Code::LeaseNotFound
            | Code::RevisionMismatch
            | Code::MemberNotFound
            | Code::TaskNotFound
            | Code::QueueNotFound
            | Code::ClaimLost
    )
}

pub(crate) fn print_json(v: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

pub(crate) fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    Ok(buf)
}

/// Runs one client verb against the server at `addr`.
pub async fn run(addr: &str, json: bool, command: Command) -> Result<Exit> {
    let keel = Client::new(addr)?;
    match command {
        Command::Serve(_) => bail!(
            "--addr and --json are options of the client verbs; run `keel serve` without them \
             (see keel serve --help)"
        ),
        Command::Kv(verb) => kv::run(&keel, json, verb).await,
        Command::Lease(verb) => lease::run(&keel, json, verb).await,
        Command::Watch(args) => watch::run(&keel, json, args).await,
        Command::Cluster(verb) => cluster::run(&keel, json, verb).await,
        Command::Queue(verb) => queue::run(&keel, json, verb).await,
    }
}
