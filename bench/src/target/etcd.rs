//! etcd over gRPC (the `etcd-client` crate). Every write is durable: etcd fsyncs its WAL
//! before it answers.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions, WatchStream};

use super::{counter, Client, Swap, Watch};
use crate::workload::Workload;

/// One gRPC channel (one HTTP/2 connection) to an etcd member.
pub struct Etcd(etcd_client::Client);

impl Client for Etcd {
    type Watch = EtcdWatch;
    type Task = ();

    /// `addr` may list several members, comma-separated (a cluster).
    async fn connect(addr: &str) -> Result<Self> {
        let endpoints: Vec<&str> = addr.split(',').collect();
        let client = etcd_client::Client::connect(endpoints, None)
            .await
            .with_context(|| format!("connect to etcd at {addr}"))?;
        Ok(Etcd(client))
    }

    fn supports(workload: Workload) -> bool {
        workload != Workload::Ceiling
    }

    async fn put(&mut self, key: &str, value: Bytes) -> Result<()> {
        self.0.put(key, value.to_vec(), None).await?;
        Ok(())
    }

    async fn get(&mut self, key: &str) -> Result<Option<Bytes>> {
        let resp = self.0.get(key, None).await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| Bytes::copy_from_slice(kv.value())))
    }

    async fn increment_if_unchanged(&mut self, key: &str) -> Result<Swap> {
        let resp = self.0.get(key, None).await?;
        let (current, compare) = match resp.kvs().first() {
            Some(kv) => (
                counter(Some(kv.value()))?,
                Compare::mod_revision(key, CompareOp::Equal, kv.mod_revision()),
            ),
            // Absent: etcd's idiom is "create_revision == 0".
            None => (0, Compare::create_revision(key, CompareOp::Equal, 0)),
        };
        let txn =
            Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key, (current + 1).to_string(), None)]);
        let resp = self.0.txn(txn).await?;
        Ok(if resp.succeeded() {
            Swap::Done
        } else {
            Swap::Conflict
        })
    }

    async fn watch(&mut self, prefix: &str) -> Result<EtcdWatch> {
        let stream = self
            .0
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await?;
        Ok(EtcdWatch(stream))
    }
}

/// One etcd watch stream (a gRPC bidi stream on the connection's channel).
pub struct EtcdWatch(WatchStream);

impl Watch for EtcdWatch {
    async fn next(&mut self) -> Result<Option<Vec<Bytes>>> {
        loop {
            let Some(resp) = self.0.message().await? else {
                return Ok(None);
            };
            if resp.canceled() {
                bail!("etcd cancelled the watch: {}", resp.cancel_reason());
            }
            let values: Vec<Bytes> = resp
                .events()
                .iter()
                .filter_map(|e| e.kv().map(|kv| Bytes::copy_from_slice(kv.value())))
                .collect();
            // The "created" confirmation and progress notifications carry no events.
            if !values.is_empty() {
                return Ok(Some(values));
            }
        }
    }
}
