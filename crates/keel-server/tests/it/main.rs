//! keel-server's own integration tests: the HTTP API over a real loopback socket, in front of
//! a node whose disk is simulated so that faults can be injected. (The API as users meet it,
//! through the real binary, is tested in `crates/keel/tests`.)

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

mod storage_failure;
