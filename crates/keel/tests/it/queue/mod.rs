//! Task queues against the real binary. The scenarios in [`scenarios`] run once on one node
//! and once on a three-node cluster, their clients spread over the nodes (so claims,
//! completions and reads go through followers too); [`node`] holds what is about one node
//! (limits, a crash, retention, watches); [`work`] is `keel queue work` and the CLI verbs.

use std::time::Duration;

use keel_client::wire::TaskState;
use keel_client::{ClaimOptions, Client, EnqueueOptions};

use crate::cluster::{Cluster, FAST};
use crate::support::Server;

/// Where a scenario runs: one node, or a cluster.
enum Nodes {
    One(Server),
    Three(Cluster),
}

impl Nodes {
    async fn start(n: usize, flags: &[&str]) -> Nodes {
        if n == 1 {
            Nodes::One(Server::start(flags))
        } else {
            let mut all = FAST.to_vec();
            all.extend(flags);
            Nodes::Three(Cluster::start(n, &all).await)
        }
    }

    /// The node clients number `i` talks to.
    fn server(&self, i: usize) -> &Server {
        match self {
            Nodes::One(s) => s,
            Nodes::Three(c) => {
                let live: Vec<&Server> = c.live().map(|(_, s)| s).collect();
                live[i % live.len()]
            }
        }
    }

    fn client(&self, i: usize) -> Client {
        self.server(i).client()
    }

    fn len(&self) -> usize {
        match self {
            Nodes::One(_) => 1,
            Nodes::Three(c) => c.live().count(),
        }
    }

    /// The queue's metric of waiting claims, summed over the nodes.
    async fn claims_waiting(&self) -> f64 {
        let mut total = 0.0;
        for i in 0..self.len() {
            let text = self.client(i).metrics().await.unwrap_or_default();
            total += text
                .lines()
                .find_map(|l| l.strip_prefix("keel_queue_claims_waiting "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
        }
        total
    }
}

/// Runs a scenario on one node and on three.
macro_rules! on_one_and_three {
    ($scenario:ident, $one:ident, $three:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $one() {
            $scenario(Nodes::start(1, &[]).await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $three() {
            $scenario(Nodes::start(3, &[]).await).await;
        }
    };
}

fn lease(ms: u64) -> ClaimOptions {
    ClaimOptions {
        lease: Some(Duration::from_millis(ms)),
        ..ClaimOptions::default()
    }
}

async fn push(c: &Client, queue: &str, payload: &str, opts: &EnqueueOptions) -> u64 {
    c.enqueue(queue, payload.to_owned(), opts).await.unwrap().id
}

async fn state_of(c: &Client, queue: &str, id: u64) -> TaskState {
    c.task(queue, id, false).await.unwrap().unwrap().state
}

mod node;
mod scenarios;
mod work;
