//! Clusters of real `keel` processes on loopback: forming by `--join`, serving any request on
//! any node, losing the leader, losing the quorum.

mod continuity;
mod failover;
mod membership;
mod partition;
pub mod proxy;
mod tasks;

use std::time::Duration;

use crate::support::{eventually, Server};

/// The secret every test cluster shares.
pub const SECRET: &str = "test-cluster-secret";

/// Timeouts short enough for tests to lose a leader and a quorum quickly.
pub const FAST: &[&str] = &[
    "--heartbeat-interval",
    "50ms",
    "--election-timeout",
    "500ms",
    "--request-timeout",
    "2s",
];

/// A cluster's nodes, in the order they were started.
pub struct Cluster {
    pub nodes: Vec<Option<Server>>,
    /// Extra flags every node was started with.
    pub flags: Vec<String>,
    /// With [`Cluster::start_behind_proxies`]: each node's proxy, which it advertises.
    pub proxies: Vec<proxy::Proxy>,
}

impl Cluster {
    /// Starts `n` nodes: the first forms the group, the others join it, and waits until all
    /// are voters (or learners beyond `--voters`) that report healthy.
    pub async fn start(n: usize, flags: &[&str]) -> Cluster {
        Self::build(n, flags, false).await
    }

    /// Like [`Cluster::start`], with node `i` listening on 127.0.0.(10+i) and advertising a
    /// [`proxy::Proxy`] in front of it, so that tests can cut and delay peer traffic.
    pub async fn start_behind_proxies(n: usize, flags: &[&str]) -> Cluster {
        Self::build(n, flags, true).await
    }

    async fn build(n: usize, flags: &[&str], proxied: bool) -> Cluster {
        let mut c = Cluster {
            nodes: Vec::new(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            proxies: Vec::new(),
        };
        for _ in 0..n {
            if proxied {
                c.add_behind_proxy().await;
            } else {
                c.add().await;
            }
        }
        c
    }

    /// The loopback address node `i` listens on behind its proxy.
    pub fn ip_of(i: usize) -> std::net::IpAddr {
        std::net::IpAddr::from([127, 0, 0, 10 + i as u8])
    }

    /// Cuts node `i` off from every other node, in both directions.
    pub fn isolate(&self, i: usize) {
        self.proxies[i].isolate();
        for (j, p) in self.proxies.iter().enumerate() {
            if j != i {
                p.cut_from(Self::ip_of(i));
            }
        }
    }

    /// Lifts every cut and delay.
    pub fn heal(&self) {
        for p in &self.proxies {
            p.heal();
        }
    }

    async fn add_behind_proxy(&mut self) -> usize {
        let i = self.nodes.len();
        let proxy = proxy::Proxy::start().await;
        let mut extra = vec![
            "--listen".to_owned(),
            format!("{}:0", Self::ip_of(i)),
            "--advertise".to_owned(),
            proxy.url(),
        ];
        extra.extend(self.flags.iter().cloned());
        let at = self.start_node(extra);
        let listen = self.node(at).addr.trim_start_matches("http://").to_owned();
        proxy.forward_to(listen.parse().expect("listen address"));
        self.proxies.push(proxy);
        self.wait_all_healthy().await;
        at
    }

    /// Starts one more node that joins through the first live one, and waits until every
    /// member reports healthy.
    pub async fn add(&mut self) -> usize {
        let at = self.start_node(self.flags.clone());
        self.wait_all_healthy().await;
        at
    }

    /// Starts a node with `extra` flags, joining through the first live node if any.
    fn start_node(&mut self, extra: Vec<String>) -> usize {
        let seed = self.live().next().map(|(_, s)| s.addr.clone());
        let mut args: Vec<String> = vec!["--cluster-secret".into(), SECRET.into()];
        args.extend(extra);
        if let Some(seed) = seed {
            args.extend(["--join".into(), seed]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(&args);
        self.nodes.push(Some(server));
        self.nodes.len() - 1
    }

    async fn wait_all_healthy(&self) {
        let want = self.live().count();
        assert!(
            self.wait_healthy(want, Duration::from_secs(30)).await,
            "the cluster did not reach {want} healthy members: {}",
            self.logs()
        );
    }

    /// The running nodes and their positions.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Server)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// The most voters the cluster promotes to (its `--voters`, or the default 5).
    fn max_voters(&self) -> usize {
        self.flags
            .iter()
            .position(|f| f == "--voters")
            .and_then(|i| self.flags.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(5)
    }

    /// Waits until some live node reports `want` healthy members, a leader, and every
    /// learner it may promote promoted.
    pub async fn wait_healthy(&self, want: usize, limit: Duration) -> bool {
        let clients: Vec<_> = self.live().map(|(_, s)| s.client()).collect();
        let learners = want.saturating_sub(self.max_voters());
        eventually(limit, async || {
            for c in &clients {
                if let Ok(s) = c.cluster().await {
                    let healthy = s.members.iter().filter(|m| m.healthy).count();
                    let learning = s.members.iter().filter(|m| m.role == "learner").count();
                    if s.leader.is_some()
                        && healthy == want
                        && s.members.len() == want
                        && learning == learners
                    {
                        return true;
                    }
                }
            }
            false
        })
        .await
    }

    /// The position of the node that leads, as the live nodes agree.
    pub async fn leader(&self, limit: Duration) -> Option<usize> {
        let mut found = None;
        let ok = eventually(limit, async || {
            for (i, s) in self.live() {
                if let Ok(status) = s.client().cluster().await {
                    if status.leader == Some(status.node_id)
                        && status.node_id == self.id_of(i).await
                    {
                        found = Some(i);
                        return true;
                    }
                }
            }
            false
        })
        .await;
        found.filter(|_| ok)
    }

    /// The node id of the node at `i`.
    pub async fn id_of(&self, i: usize) -> u64 {
        let ready: serde_json::Value = crate::support::http()
            .get(self.node(i).url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz json");
        ready["node_id"].as_u64().expect("node_id")
    }

    /// Kills node `i` with SIGKILL, keeping its data directory.
    pub fn kill(&mut self, i: usize) -> Server {
        let mut s = self.nodes[i].take().expect("node is running");
        s.kill9();
        s
    }

    /// Starts a killed node again on its address and data directory.
    pub fn restart(&mut self, i: usize, mut old: Server) {
        let listen = old.addr.trim_start_matches("http://").to_owned();
        let mut args = old.args.clone();
        // The same address it had (a first start may have asked for port 0).
        if let Some(at) = args.iter().position(|a| a == "--listen") {
            args.drain(at..at + 2);
        }
        args.extend(["--listen".into(), listen]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut next = Server::start_in(&old.data_dir, &args).expect("restart");
        next.adopt_tmp(&mut old);
        self.nodes[i] = Some(next);
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.live()
            .map(|(i, s)| format!("--- node {i} ({}):\n{}", s.addr, s.stderr.lock().unwrap()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every live node has the same revision and state hash; returns it.
    pub async fn converged(&self, limit: Duration) -> Option<(u64, String)> {
        let mut seen = None;
        let ok = eventually(limit, async || {
            let mut hashes = Vec::new();
            for (_, s) in self.live() {
                match s.client().state_hash().await {
                    Ok(h) => hashes.push((h.revision, h.state_hash)),
                    Err(_) => return false,
                }
            }
            let same = hashes.windows(2).all(|w| w[0] == w[1]);
            seen = hashes.into_iter().next();
            same
        })
        .await;
        seen.filter(|_| ok)
    }
}
