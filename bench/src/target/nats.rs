//! NATS JetStream key-value (the `async-nats` crate, pinned to 0.38: later releases cannot
//! create a bucket on Debian's nats-server 2.9). JetStream acknowledges a write before it
//! fsyncs (by default it syncs every two minutes), so its writes are not durable on ack.
//! Task queues are a work-queue stream (file storage) with a durable pull consumer whose
//! acks are explicit and confirmed by the server (`double_ack`).

use anyhow::{anyhow, Context, Result};
use async_nats::jetstream::{self, consumer::pull, kv};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{counter, Client, NoWatch, Swap};
use crate::workload::Workload;

/// The bucket every NATS run uses, created by `prepare` with file storage.
const BUCKET: &str = "bench";
/// The work-queue stream and its consumer, created by `prepare`.
const STREAM: &str = "TASKS";
const CONSUMER: &str = "workers";

/// One NATS connection with a handle on the bench bucket and the task stream's consumer.
pub struct Nats {
    kv: kv::Store,
    js: jetstream::Context,
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

async fn context(addr: &str) -> Result<jetstream::Context> {
    let client = async_nats::connect(addr)
        .await
        .with_context(|| format!("connect to NATS at {addr}"))?;
    Ok(jetstream::new(client))
}

impl Client for Nats {
    type Watch = NoWatch;
    type Task = jetstream::Message;

    async fn connect(addr: &str) -> Result<Self> {
        let js = context(addr).await?;
        let kv = js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| anyhow!("open KV bucket {BUCKET}: {e}"))?;
        let consumer = js
            .get_stream(STREAM)
            .await
            .map_err(|e| anyhow!("open stream {STREAM}: {e}"))?
            .get_consumer(CONSUMER)
            .await
            .map_err(|e| anyhow!("open consumer {CONSUMER}: {e}"))?;
        Ok(Nats { kv, js, consumer })
    }

    fn supports(workload: Workload) -> bool {
        matches!(
            workload,
            Workload::Put | Workload::Get | Workload::Cas | Workload::TaskCycle
        )
    }

    async fn prepare(addr: &str) -> Result<()> {
        let js = context(addr).await?;
        js.create_key_value(kv::Config {
            bucket: BUCKET.into(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("create KV bucket {BUCKET}: {e}"))?;
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: STREAM.into(),
                subjects: vec!["tasks.>".into()],
                retention: jetstream::stream::RetentionPolicy::WorkQueue,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("create stream {STREAM}: {e}"))?;
        stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: std::time::Duration::from_secs(60),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow!("create consumer {CONSUMER}: {e}"))?;
        Ok(())
    }

    async fn put(&mut self, key: &str, value: Bytes) -> Result<()> {
        self.kv
            .put(key, value)
            .await
            .map_err(|e| anyhow!("KV put: {e}"))?;
        Ok(())
    }

    async fn get(&mut self, key: &str) -> Result<Option<Bytes>> {
        self.kv.get(key).await.map_err(|e| anyhow!("KV get: {e}"))
    }

    async fn increment_if_unchanged(&mut self, key: &str) -> Result<Swap> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|e| anyhow!("KV entry: {e}"))?;
        let next = Bytes::from((counter(entry.as_ref().map(|e| &e.value[..]))? + 1).to_string());
        let written = match entry {
            Some(e) => self
                .kv
                .update(key, next, e.revision)
                .await
                .map_err(|e| e.kind()),
            None => self.kv.create(key, next).await.map_err(|e| match e.kind() {
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

    async fn enqueue(&mut self, queue: &str, payload: Bytes) -> Result<()> {
        self.js
            .publish(format!("tasks.{queue}"), payload)
            .await
            .map_err(|e| anyhow!("publish: {e}"))?
            .await
            .map_err(|e| anyhow!("publish ack: {e}"))?;
        Ok(())
    }

    async fn claim(&mut self, _queue: &str) -> Result<Option<jetstream::Message>> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(1)
            .expires(super::CLAIM_WAIT)
            .messages()
            .await
            .map_err(|e| anyhow!("fetch: {e}"))?;
        match batch.next().await {
            None => Ok(None),
            Some(m) => Ok(Some(m.map_err(|e| anyhow!("fetch: {e}"))?)),
        }
    }

    async fn complete(&mut self, _queue: &str, task: jetstream::Message) -> Result<()> {
        task.double_ack().await.map_err(|e| anyhow!("ack: {e}"))
    }
}
