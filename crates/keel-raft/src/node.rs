//! [`Node`]: one keel server's Raft member — start, propose, read barrier, status, shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_state::{Command, Outcome, Request, StoreConfig};
use keel_storage::DirLock;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::log_store::LogStore;
use crate::network::Network;
use crate::proposer::Proposer;
use crate::read_index::ReadIndex;
use crate::state_machine::{StateMachine, StateReader};
use crate::{Clock, Raft, TypeConfig};

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id in the group.
    pub node_id: u64,
    /// Where the log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// The address peers and clients reach this node at.
    pub advertise_addr: String,
    /// Take a snapshot after this many log entries.
    pub snapshot_every: u64,
    /// Revisions of change history to keep.
    pub history: u64,
    /// Size of each preallocated log segment.
    pub segment_bytes: u64,
    /// Where proposals get their time from.
    pub clock: Clock,
}

impl NodeConfig {
    /// The default of [`NodeConfig::snapshot_every`].
    pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
    /// The default of [`NodeConfig::segment_bytes`] (64 MiB).
    pub const DEFAULT_SEGMENT_BYTES: u64 = keel_storage::LogOptions::DEFAULT_SEGMENT_BYTES;

    /// Node `node_id` with its data in `data_dir`, reached at `advertise_addr`; every other
    /// setting at its default and the system clock.
    pub fn new(node_id: u64, data_dir: PathBuf, advertise_addr: String) -> Self {
        NodeConfig {
            node_id,
            data_dir,
            advertise_addr,
            snapshot_every: Self::DEFAULT_SNAPSHOT_EVERY,
            history: keel_state::StoreConfig::DEFAULT_HISTORY,
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            clock: Clock::system(),
        }
    }
}

/// Failure to start a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory could not be opened or is damaged.
    #[error(transparent)]
    Storage(#[from] keel_storage::Error),
    /// Raft refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// Another node leads (or none is known); retry there.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id and address, if known.
        leader: Option<(u64, String)>,
    },
    /// The node is shutting down or its storage failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Why a linearizable read point could not be obtained.
pub type ReadBarrierError = ProposeError;

/// A snapshot of the node's Raft status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's id.
    pub id: u64,
    /// Whether this node is the leader.
    pub is_leader: bool,
    /// The leader's id, if known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// Whether this node is the group's only voter.
    pub sole_voter: bool,
    /// Set when Raft has stopped for good (a storage failure, or the node shut down): the
    /// node will serve no more writes and the process should exit.
    pub fatal: Option<String>,
}

/// One member of a keel Raft group.
pub struct Node {
    raft: Raft,
    proposer: Proposer,
    pub(crate) read_index: ReadIndex,
    reader: StateReader,
    log: keel_storage::Log,
    status: watch::Receiver<NodeStatus>,
    propose_latency: PerCommand,
    clock: Clock,
    _lock: DirLock,
}

/// `keel_propose_seconds` by command, each handle registered once.
#[derive(Default)]
struct PerCommand(std::sync::RwLock<Vec<(&'static str, metrics::Histogram)>>);

impl PerCommand {
    fn get(&self, name: &'static str) -> metrics::Histogram {
        {
            let known = self.0.read().unwrap_or_else(|p| p.into_inner());
            if let Some((_, h)) = known.iter().find(|(n, _)| *n == name) {
                return h.clone();
            }
        }
        let h = metrics::histogram!("keel_propose_seconds", "command" => name);
        let mut known = self.0.write().unwrap_or_else(|p| p.into_inner());
        if !known.iter().any(|(n, _)| *n == name) {
            known.push((name, h.clone()));
        }
        h
    }
}

pub(crate) fn not_leader(f: openraft::error::ForwardToLeader<TypeConfig>) -> ProposeError {
    ProposeError::NotLeader {
        leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
    }
}

impl Node {
    /// Opens the data directory, recovers, and starts Raft. An empty directory bootstraps a
    /// one-member group led by this node.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Self::start_on(Arc::new(keel_storage::OsDisk), config).await
    }

    /// Like [`Node::start`], with the log's segment files on `disk` (a simulated disk in
    /// crash tests); everything else stays on the operating system's file system.
    pub async fn start_on(
        disk: Arc<dyn keel_storage::Disk>,
        config: NodeConfig,
    ) -> Result<Node, NodeError> {
        let lock = DirLock::acquire(&config.data_dir)?;
        let raft_dir = config.data_dir.join("raft");
        let opts = keel_storage::LogOptions {
            segment_bytes: config.segment_bytes,
            ..Default::default()
        };
        let (log_store, report) = LogStore::open_on(disk, &raft_dir, opts)?;
        if let Some((path, offset)) = &report.cut_torn_tail {
            tracing::warn!(file = %path.display(), offset, "recovered from a torn log tail");
        }
        let log = log_store.log().clone();
        let sm = StateMachine::open(
            &config.data_dir.join("snapshots"),
            StoreConfig {
                history: config.history,
            },
        )
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let reader = sm.reader();
        if let Some(purged) = log_store.last_purged_index() {
            let applied = reader.applied_index();
            if applied.is_none_or(|a| a < purged) {
                return Err(NodeError::Raft(format!(
                    "the log is purged up to entry {purged} but the newest readable snapshot \
                     covers only {applied:?}: a snapshot file under {} is missing or damaged",
                    config.data_dir.join("snapshots").display()
                )));
            }
        }
        let raft_config = Config {
            cluster_name: "keel".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            max_payload_entries: 512,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network,
            log_store,
            sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(
                config.node_id,
                BasicNode {
                    addr: config.advertise_addr.clone(),
                },
            )]);
            raft.initialize(members)
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
            tracing::info!(
                node_id = config.node_id,
                "bootstrapped a new one-member group"
            );
        }
        let status = spawn_status(&raft, config.node_id);
        let proposer = Proposer::spawn(raft.clone());
        let read_index = ReadIndex::spawn(raft.clone(), reader.clone());
        Ok(Node {
            raft,
            proposer,
            read_index,
            reader,
            log,
            status,
            propose_latency: PerCommand::default(),
            clock: config.clock,
            _lock: lock,
        })
    }

    /// Proposes a command, stamped with this node's clock, and waits until it is durable on a
    /// majority and applied. Returns the state machine's outcome. Concurrent proposals share
    /// log entries and fsyncs (group commit).
    pub async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let name = command.name();
        let request = Request {
            now_ms: self.clock.now_ms(),
            command,
        };
        let started = std::time::Instant::now();
        let result = self.proposer.propose(request).await;
        self.propose_latency
            .get(name)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// The clock this node stamps proposals with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Waits until this node has applied everything committed before the call, after checking
    /// with a quorum that it still leads: a read after this sees every acknowledged write.
    ///
    /// When this node leads and is the group's only voter, no other leader can exist and every
    /// acknowledged write was applied before it was acknowledged, so the local state is already
    /// linearizable and no round trip through the Raft core is needed. Otherwise reads that
    /// arrive together share one read-index round.
    pub async fn read_barrier(&self) -> Result<(), ReadBarrierError> {
        {
            let s = self.status.borrow();
            if s.is_leader && s.sole_voter {
                return Ok(());
            }
        }
        self.read_index.barrier().await
    }

    /// Read access to the applied state.
    pub fn state(&self) -> &StateReader {
        &self.reader
    }

    /// The node's Raft status, updated as it changes.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Index of the last applied log entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.reader.applied_index().unwrap_or(0)
    }

    /// Waits until this node leads and has applied everything in its log when it took over:
    /// it can then serve writes and linearizable reads.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let ready = async {
            let mut rx = self.status.clone();
            if rx.wait_for(|s| s.is_leader).await.is_err() {
                return false;
            }
            let last = self.raft.metrics().borrow_watched().last_log_index;
            self.reader.wait_applied(last.unwrap_or(0)).await
        };
        matches!(tokio::time::timeout(timeout, ready).await, Ok(true))
    }

    /// Stops Raft (finishing what is in flight) and the log's flusher.
    pub async fn shutdown(self) {
        drop(self.proposer);
        drop(self.read_index);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.log.close();
    }
}

/// Mirrors openraft's server metrics (role, leader, term, membership: they change on
/// elections, not on every write) into a [`NodeStatus`] channel and Prometheus gauges.
fn spawn_status(raft: &Raft, id: u64) -> watch::Receiver<NodeStatus> {
    let mut server = raft.server_metrics();
    let all = raft.metrics();
    let (tx, rx) = watch::channel(NodeStatus {
        id,
        ..Default::default()
    });
    tokio::spawn(async move {
        loop {
            let status = {
                let m = server.borrow_and_update();
                NodeStatus {
                    id,
                    is_leader: m.state == ServerState::Leader,
                    leader: m.current_leader,
                    term: m.vote.leader_id.term,
                    fatal: None,
                    sole_voter: {
                        let mut voters = m.membership_config.membership().voter_ids();
                        voters.next() == Some(id) && voters.next().is_none()
                    },
                }
            };
            metrics::gauge!("keel_raft_term").set(status.term as f64);
            metrics::gauge!("keel_raft_is_leader").set(if status.is_leader { 1.0 } else { 0.0 });
            tx.send_replace(status);
            if server.changed().await.is_err() {
                // Raft stopped: say why, if it stopped on an error.
                let why = all
                    .borrow_watched()
                    .running_state
                    .as_ref()
                    .err()
                    .map(|e| e.to_string());
                tx.send_modify(|s| {
                    s.is_leader = false;
                    s.fatal = Some(why.unwrap_or_else(|| "raft stopped".into()));
                });
                break;
            }
        }
    });
    rx
}
