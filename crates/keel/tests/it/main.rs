//! Black-box tests: the real `keel` binary on loopback ports, used only over HTTP and the CLI.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

mod blocking;
mod browser;
mod cli;
mod cluster;
mod crash;
mod fanout;
mod fixture;
mod kv;
mod lease;
mod linearizability;
mod ops;
mod queue;
mod recovery;
mod support;
mod txn;
mod watch;
mod watch_cli;
mod watch_ws;
