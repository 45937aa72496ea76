//! Redis over RESP (the `redis` crate). How durable a write is depends on the server's
//! `appendfsync` setting, which `bench/peers.sh` sets per profile.

use anyhow::{Context, Result};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::Value;

use super::{counter, Client, NoWatch, Swap};
use crate::workload::Workload;

/// One connection. `WATCH` state is per connection, and each bench client owns its own and
/// sends one command at a time, so optimistic transactions behave as with a plain socket.
pub struct Redis(MultiplexedConnection);

impl Client for Redis {
    type Watch = NoWatch;

    async fn connect(addr: &str) -> Result<Self> {
        let client = redis::Client::open(format!("redis://{addr}/"))?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connect to Redis at {addr}"))?;
        Ok(Redis(conn))
    }

    fn supports(workload: Workload) -> bool {
        matches!(workload, Workload::Put | Workload::Get | Workload::Cas)
    }

    async fn put(&mut self, key: &str, value: Bytes) -> Result<()> {
        redis::cmd("SET")
            .arg(key)
            .arg(&value[..])
            .query_async::<()>(&mut self.0)
            .await?;
        Ok(())
    }

    async fn get(&mut self, key: &str) -> Result<Option<Bytes>> {
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut self.0).await?;
        Ok(v.map(Bytes::from))
    }

    async fn increment_if_unchanged(&mut self, key: &str) -> Result<Swap> {
        // The documented optimistic-locking idiom: WATCH, read, MULTI/SET/EXEC; EXEC answers
        // nil if the key changed after WATCH.
        redis::cmd("WATCH")
            .arg(key)
            .query_async::<()>(&mut self.0)
            .await?;
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut self.0).await?;
        let next = counter(v.as_deref())? + 1;
        let result: Value = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(next.to_string())
            .ignore()
            .query_async(&mut self.0)
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
}
