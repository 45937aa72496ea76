//! Black-box tests: the real `keel` binary on loopback ports, used only over HTTP and the CLI.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

mod cli;
mod crash;
mod kv;
mod lease;
mod ops;
mod recovery;
mod support;
mod txn;
