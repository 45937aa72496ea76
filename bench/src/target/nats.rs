//! NATS JetStream key-value (the `async-nats` crate, pinned to 0.38: later releases cannot
//! create a bucket on Debian's nats-server 2.9). JetStream acknowledges a write before it
//! fsyncs (by default it syncs every two minutes), so its writes are not durable on ack.

use anyhow::{anyhow, Context, Result};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use super::{counter, Client, NoWatch, Swap};
use crate::workload::Workload;

/// The bucket every NATS run uses, created by `prepare` with file storage.
const BUCKET: &str = "bench";

/// One NATS connection with a handle on the bench bucket.
pub struct Nats(kv::Store);

impl Client for Nats {
    type Watch = NoWatch;

    async fn connect(addr: &str) -> Result<Self> {
        let client = async_nats::connect(addr)
            .await
            .with_context(|| format!("connect to NATS at {addr}"))?;
        let js = jetstream::new(client);
        let store = js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| anyhow!("open KV bucket {BUCKET}: {e}"))?;
        Ok(Nats(store))
    }

    fn supports(workload: Workload) -> bool {
        matches!(workload, Workload::Put | Workload::Get | Workload::Cas)
    }

    async fn prepare(addr: &str) -> Result<()> {
        let client = async_nats::connect(addr)
            .await
            .with_context(|| format!("connect to NATS at {addr}"))?;
        let js = jetstream::new(client);
        js.create_key_value(kv::Config {
            bucket: BUCKET.into(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("create KV bucket {BUCKET}: {e}"))?;
        Ok(())
    }

    async fn put(&mut self, key: &str, value: Bytes) -> Result<()> {
        self.0
            .put(key, value)
            .await
            .map_err(|e| anyhow!("KV put: {e}"))?;
        Ok(())
    }

    async fn get(&mut self, key: &str) -> Result<Option<Bytes>> {
        self.0.get(key).await.map_err(|e| anyhow!("KV get: {e}"))
    }

    async fn increment_if_unchanged(&mut self, key: &str) -> Result<Swap> {
        let entry = self
            .0
            .entry(key)
            .await
            .map_err(|e| anyhow!("KV entry: {e}"))?;
        let next = Bytes::from((counter(entry.as_ref().map(|e| &e.value[..]))? + 1).to_string());
        let written = match entry {
            Some(e) => self
                .0
                .update(key, next, e.revision)
                .await
                .map_err(|e| e.kind()),
            None => self.0.create(key, next).await.map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => kv::UpdateErrorKind::WrongLastRevision,
                _ => kv::UpdateErrorKind::Other,
            }),
        };
        match written {
            Ok(_) => Ok(Swap::Done),
            Err(kv::UpdateErrorKind::WrongLastRevision) => Ok(Swap::Conflict),
            Err(kind) => Err(anyhow!("KV update: {kind}")),
        }
    }

    async fn watch(&mut self, _key: &str) -> Result<NoWatch> {
        anyhow::bail!("NATS KV watches are not measured yet")
    }
}
