//! Redis over RESP (the `redis` crate). How durable a write is depends on the server's
//! `appendfsync` setting, which `bench/peers.sh` sets per profile. Task queues are a stream
//! with a consumer group, the documented way: `XADD`, `XREADGROUP … BLOCK`, `XACK`.

use anyhow::{Context, Result};
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::Value;

use super::{counter, Client, NoWatch, Swap};
use crate::workload::Workload;

/// The consumer group every task-cycle run reads with.
const GROUP: &str = "workers";

/// One connection. `WATCH` state is per connection, and each bench client owns its own and
/// sends one command at a time, so optimistic transactions behave as with a plain socket.
/// Each connection is its own consumer of the group.
pub struct Redis {
    conn: MultiplexedConnection,
    consumer: String,
}

static CONSUMERS: AtomicUsize = AtomicUsize::new(0);

async fn open(addr: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    // No response timeout (the crate's default is 500 ms): a blocking XREADGROUP waits
    // longer, and an fsync-bound server may too.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .with_context(|| format!("connect to Redis at {addr}"))
}

impl Client for Redis {
    type Watch = NoWatch;
    /// The stream entry's id.
    type Task = String;

    async fn connect(addr: &str) -> Result<Self> {
        Ok(Redis {
            conn: open(addr).await?,
            consumer: format!("c{}", CONSUMERS.fetch_add(1, Ordering::Relaxed)),
        })
    }

    fn supports(workload: Workload) -> bool {
        matches!(
            workload,
            Workload::Put | Workload::Get | Workload::Cas | Workload::TaskCycle
        )
    }

    async fn prepare(addr: &str) -> Result<()> {
        let mut conn = open(addr).await?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream(crate::workload::QUEUE))
            .arg(GROUP)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn put(&mut self, key: &str, value: Bytes) -> Result<()> {
        redis::cmd("SET")
            .arg(key)
            .arg(&value[..])
            .query_async::<()>(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn get(&mut self, key: &str) -> Result<Option<Bytes>> {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn)
            .await?;
        Ok(v.map(Bytes::from))
    }

    async fn increment_if_unchanged(&mut self, key: &str) -> Result<Swap> {
        // The documented optimistic-locking idiom: WATCH, read, MULTI/SET/EXEC; EXEC answers
        // nil if the key changed after WATCH.
        redis::cmd("WATCH")
            .arg(key)
            .query_async::<()>(&mut self.conn)
            .await?;
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn)
            .await?;
        let next = counter(v.as_deref())? + 1;
        let result: Value = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(next.to_string())
            .ignore()
            .query_async(&mut self.conn)
            .await?;
        Ok(if matches!(result, Value::Nil) {
            Swap::Conflict
        } else {
            Swap::Done
        })
    }

    async fn watch(&mut self, _key: &str) -> Result<NoWatch> {
        anyhow::bail!("Redis keyspace notifications are not a durable watch; not measured")
    }

    async fn enqueue(&mut self, queue: &str, payload: Bytes) -> Result<()> {
        redis::cmd("XADD")
            .arg(stream(queue))
            .arg("*")
            .arg("p")
            .arg(&payload[..])
            .query_async::<String>(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn claim(&mut self, queue: &str) -> Result<Option<String>> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(super::CLAIM_WAIT.as_millis() as u64)
            .arg("STREAMS")
            .arg(stream(queue))
            .arg(">")
            .query_async(&mut self.conn)
            .await?;
        Ok(reply.and_then(|r| {
            r.keys
                .into_iter()
                .next()
                .and_then(|k| k.ids.into_iter().next())
                .map(|entry| entry.id)
        }))
    }

    async fn complete(&mut self, queue: &str, id: String) -> Result<()> {
        redis::cmd("XACK")
            .arg(stream(queue))
            .arg(GROUP)
            .arg(id)
            .query_async::<u64>(&mut self.conn)
            .await?;
        Ok(())
    }
}

/// The stream that holds a queue's tasks.
fn stream(queue: &str) -> String {
    format!("{queue}-tasks")
}
