//! The systems keel-bench can load, each over its own native protocol. Every target
//! implements [`Client`]: one connection, able to run the operations the workloads use.
//! A target that cannot run an operation says so before the run starts (`supports`).

use std::future::Future;

use anyhow::{bail, Result};
use bytes::Bytes;

use crate::workload::Workload;

pub mod etcd;
pub mod http;
pub mod keel_ws;
pub mod nats;
pub mod redis;
pub mod sse;

/// Result of one compare-and-swap attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The write went in.
    Done,
    /// Another client changed the key between the read and the write: try again.
    Conflict,
}

/// A watch opened on a prefix; yields the values written under it, in order.
pub trait Watch: Send + 'static {
    /// The next batch of values, or `None` once the stream has ended.
    fn next(&mut self) -> impl Future<Output = Result<Option<Vec<Bytes>>>> + Send;

    /// Reads whatever arrives next with as little decoding as the protocol allows (a
    /// watcher that only keeps up and counts): the number of change events in it, or `None`
    /// once the stream has ended.
    fn drain(&mut self) -> impl Future<Output = Result<Option<u64>>> + Send {
        async { Ok(self.next().await?.map(|values| values.len() as u64)) }
    }
}

/// A watch type for targets that have none (never constructed).
#[derive(Debug)]
pub enum NoWatch {}

impl Watch for NoWatch {
    async fn next(&mut self) -> Result<Option<Vec<Bytes>>> {
        match *self {}
    }
}

/// One connection to a target.
pub trait Client: Sized + Send + 'static {
    type Watch: Watch;
    /// A task a claim handed out, as the target needs it to complete it.
    type Task: Send + 'static;

    /// Opens one connection to `addr` (host:port).
    fn connect(addr: &str) -> impl Future<Output = Result<Self>> + Send;

    /// Whether this target can run `workload` at all.
    fn supports(workload: Workload) -> bool;

    /// Once per run, before any client connects: create buckets and the like.
    fn prepare(_addr: &str) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// A durable write of `value` to `key`.
    fn put(&mut self, key: &str, value: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// A read of `key`; `Ok(None)` when it is absent.
    fn get(&mut self, key: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Read `key` (a decimal counter, absent = 0), then write it +1 only if nobody wrote it
    /// in between.
    fn increment_if_unchanged(&mut self, key: &str) -> impl Future<Output = Result<Swap>> + Send;

    /// Starts watching every key under `prefix`; returns once the watch is established.
    fn watch(&mut self, prefix: &str) -> impl Future<Output = Result<Self::Watch>> + Send;

    /// A durable enqueue of a task with `payload` on `queue`.
    fn enqueue(
        &mut self,
        _queue: &str,
        _payload: Bytes,
    ) -> impl Future<Output = Result<()>> + Send {
        async { bail!("this target has no task queues") }
    }

    /// Claims the next task of `queue` for this connection (waiting a few seconds for one);
    /// `None` if none came.
    fn claim(&mut self, _queue: &str) -> impl Future<Output = Result<Option<Self::Task>>> + Send {
        async { bail!("this target has no task queues") }
    }

    /// Durably completes (acknowledges) a claimed task.
    fn complete(
        &mut self,
        _queue: &str,
        _task: Self::Task,
    ) -> impl Future<Output = Result<()>> + Send {
        async { bail!("this target has no task queues") }
    }
}

/// How long a claim waits for a task before it reports none.
pub const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Parses a decimal counter value (absent = 0).
pub fn counter(value: Option<&[u8]>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(v) => Ok(std::str::from_utf8(v)?.trim().parse()?),
    }
}
