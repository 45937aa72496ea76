//! [`Node`]: one keel server's Raft member — start, propose, read barrier, status, shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_state::{Command, Outcome, Request, StoreConfig};
use keel_storage::DirLock;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, Config, SnapshotPolicy};
use tokio::sync::watch;

use crate::forward::Forwarder;
use crate::log_store::LogStore;
use crate::network::{Addresses, Network, Peers};
use crate::proposer::Proposer;
use crate::read_index::ReadIndex;
use crate::state_machine::{StateMachine, StateReader};
use crate::status::{spawn_status, status_now, NodeStatus};
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
    /// How often the leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// How long a follower waits without hearing from a leader before it stands for
    /// election (randomised between this and 1.5 times this).
    pub election_timeout: Duration,
    /// How long a write or a linearizable read may wait for a quorum before it fails with
    /// [`ProposeError::NoQuorum`].
    pub request_timeout: Duration,
    /// The most voters the leader promotes learners to; further nodes stay learners.
    pub max_voters: usize,
    /// Whether an empty data directory forms a new one-member group. False for a node that
    /// joins an existing cluster: it waits to be added.
    pub bootstrap: bool,
    /// How this node reaches the others.
    pub peers: Peers,
}

impl NodeConfig {
    /// The default of [`NodeConfig::snapshot_every`].
    pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
    /// The default of [`NodeConfig::segment_bytes`] (64 MiB).
    pub const DEFAULT_SEGMENT_BYTES: u64 = keel_storage::LogOptions::DEFAULT_SEGMENT_BYTES;
    /// The default of [`NodeConfig::heartbeat_interval`].
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
    /// The default of [`NodeConfig::election_timeout`].
    pub const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(800);
    /// The default of [`NodeConfig::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default of [`NodeConfig::max_voters`].
    pub const DEFAULT_MAX_VOTERS: usize = 5;

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
            heartbeat_interval: Self::DEFAULT_HEARTBEAT_INTERVAL,
            election_timeout: Self::DEFAULT_ELECTION_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_voters: Self::DEFAULT_MAX_VOTERS,
            bootstrap: true,
            peers: Peers::none(),
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
    /// The node was removed from its cluster; its data directory is not to be used again.
    #[error("{0}")]
    Removed(String),
}

/// Why a proposal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    /// Another node leads (or none is known); retry there.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id and address, if known.
        leader: Option<(u64, String)>,
    },
    /// The node is shutting down or its storage failed, or the write's fate is unknown.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No quorum answered within the request timeout: the node is on the minority side of a
    /// partition, or most of the cluster is down. A write may or may not take effect.
    #[error("{0}")]
    NoQuorum(String),
}

/// Why a linearizable read point could not be obtained.
pub type ReadBarrierError = ProposeError;

/// One member of a keel Raft group.
pub struct Node {
    pub(crate) raft: Raft,
    proposer: Proposer,
    forwarder: Forwarder,
    pub(crate) read_index: ReadIndex,
    reader: StateReader,
    log: keel_storage::Log,
    pub(crate) status: watch::Receiver<NodeStatus>,
    pub(crate) status_tx: Arc<watch::Sender<NodeStatus>>,
    propose_latency: PerCommand,
    clock: Clock,
    pub(crate) peers: Peers,
    pub(crate) contact: Contact,
    pub(crate) settings: Settings,
    /// Serialises membership changes made by this node as leader (joins pick ids under it).
    pub(crate) membership_lock: Arc<tokio::sync::Mutex<()>>,
    _tasks: TaskGuard,
    _lock: DirLock,
}

/// What the node keeps of its configuration after start.
pub(crate) struct Settings {
    pub(crate) id: u64,
    pub(crate) data_dir: PathBuf,
    pub(crate) request_timeout: Duration,
    pub(crate) election_timeout: Duration,
    pub(crate) max_voters: usize,
}

/// Aborts the node's background tasks when it is dropped.
struct TaskGuard(Vec<tokio::task::JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// When this node last accepted an append from a leader, and that leader's commit index.
#[derive(Default)]
pub(crate) struct Contact(std::sync::Mutex<Option<(std::time::Instant, u64)>>);

impl Contact {
    pub(crate) fn heard(&self, leader_commit: u64) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *c = Some((std::time::Instant::now(), leader_commit));
    }

    /// How long ago, and the leader's commit index then.
    pub(crate) fn last(&self) -> Option<(Duration, u64)> {
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.map(|(at, commit)| (at.elapsed(), commit))
    }
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

/// Whether a failed attempt certainly did not take effect, so that trying again (on the
/// leader it names, or after an election) cannot apply a write twice.
pub(crate) fn safe_to_retry(e: &ProposeError) -> bool {
    matches!(e, ProposeError::NotLeader { .. })
}

/// Where a write goes.
enum Route {
    /// This node leads.
    Here,
    /// Forwarded to the leader at this address.
    Leader(String),
    /// No leader is known yet.
    Unknown,
}

/// Pause between attempts while no leader is known or it is changing.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The file that marks a data directory whose node was removed from its cluster.
const REMOVED_FILE: &str = "removed";

impl Node {
    /// Opens the data directory, recovers, and starts Raft. An empty directory bootstraps a
    /// one-member group led by this node, unless [`NodeConfig::bootstrap`] is false.
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
        if let Some(why) = keel_storage::read_meta(&config.data_dir.join(REMOVED_FILE))? {
            return Err(NodeError::Removed(format!(
                "{}; this data directory belongs to a removed member and is not used again \
                 (start with an empty one to join anew)",
                String::from_utf8_lossy(&why)
            )));
        }
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
        remove_incomplete_snapshots(&config.data_dir.join("snapshots"));
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
        let heartbeat = config.heartbeat_interval.as_millis().max(1) as u64;
        let election = config.election_timeout.as_millis() as u64;
        if election < 3 * heartbeat {
            return Err(NodeError::Raft(format!(
                "the election timeout ({election} ms) must be at least three heartbeat \
                 intervals ({heartbeat} ms)"
            )));
        }
        let raft_config = Config {
            cluster_name: "keel".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election + election / 2,
            // A snapshot is streamed from its file; the transfer ends when the leader cancels.
            install_snapshot_timeout: 600_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            // One snapshot interval of log is kept behind each snapshot, so that a follower a
            // little behind (restarted, or still installing the previous snapshot) catches up
            // from the log instead of being sent the next snapshot whole.
            max_in_snapshot_log_to_keep: config.snapshot_every.max(1),
            purge_batch_size: 1,
            max_payload_entries: 512,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let peers = config.peers.clone();
        let addresses = Addresses::default();
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network::new(peers.clone(), addresses.clone()),
            log_store,
            sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized && config.bootstrap {
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
        let first = status_now(&raft.server_metrics().borrow_watched(), config.node_id);
        let (status_tx, status) = watch::channel(first);
        let status_tx = Arc::new(status_tx);
        let mut tasks = vec![spawn_status(
            &raft,
            config.node_id,
            status_tx.clone(),
            addresses,
        )];
        let proposer = Proposer::spawn(raft.clone());
        let read_index = ReadIndex::spawn(
            raft.clone(),
            reader.clone(),
            peers.clone(),
            config.request_timeout,
        );
        let forwarder = Forwarder::spawn(peers.clone(), config.request_timeout);
        let node = Node {
            raft,
            proposer,
            forwarder,
            read_index,
            reader,
            log,
            status,
            status_tx,
            propose_latency: PerCommand::default(),
            clock: config.clock,
            peers,
            contact: Contact::default(),
            settings: Settings {
                id: config.node_id,
                data_dir: config.data_dir.clone(),
                request_timeout: config.request_timeout,
                election_timeout: config.election_timeout,
                max_voters: config.max_voters.max(1),
            },
            membership_lock: Arc::new(tokio::sync::Mutex::new(())),
            _tasks: TaskGuard(Vec::new()),
            _lock: lock,
        };
        tasks.push(crate::cluster::spawn_promoter(&node));
        Ok(Node {
            _tasks: TaskGuard(tasks),
            ..node
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.settings.id
    }

    /// Proposes a command and waits until it is durable on a majority and applied; returns
    /// the state machine's outcome. On the leader it is stamped with this node's clock and
    /// shares log entries and fsyncs with concurrent proposals (group commit); on any other
    /// node it is forwarded to the leader, which stamps it, and the leader's answer returned.
    /// Fails with [`ProposeError::NoQuorum`] when no quorum answers within the request
    /// timeout.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let name = command.name();
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(
            self.settings.request_timeout,
            self.propose_anywhere(command),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(self.no_quorum("the write may or may not take effect")),
        };
        self.propose_latency
            .get(name)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn propose_anywhere(&self, command: Command) -> Result<Outcome, ProposeError> {
        let mut status = self.status.clone();
        loop {
            // Read under the borrow, without copying the status on every write.
            let route = {
                let s = status.borrow_and_update();
                if let Some(why) = &s.fatal {
                    return Err(ProposeError::Unavailable(why.clone()));
                }
                match (&s.leader_addr, s.is_leader) {
                    (_, true) => Route::Here,
                    (Some(addr), false) => Route::Leader(addr.clone()),
                    (None, false) => Route::Unknown,
                }
            };
            // The command is copied for each attempt: one that a leader refused (it had just
            // stepped down) is tried again where the new leader is.
            let attempt = match route {
                Route::Here => Some(self.propose_here(command.clone()).await),
                Route::Leader(addr) => Some(self.forwarder.forward(addr, command.clone()).await),
                Route::Unknown => None,
            };
            match attempt {
                Some(Err(e)) if safe_to_retry(&e) => {}
                Some(result) => return result,
                None => {}
            }
            let _ = tokio::time::timeout(RETRY_PAUSE, status.changed()).await;
        }
    }

    /// Proposes on this node, which must lead: no forwarding.
    pub(crate) async fn propose_here(&self, command: Command) -> Result<Outcome, ProposeError> {
        let request = Request {
            now_ms: self.clock.now_ms(),
            command,
        };
        self.proposer.propose(request).await
    }

    pub(crate) fn no_quorum(&self, consequence: &str) -> ProposeError {
        let s = self.status.borrow();
        let leader = match (&s.leader, s.is_leader) {
            (_, true) => "this node leads but no quorum acknowledged it".to_owned(),
            (Some(id), false) => format!("the leader (node {id}) did not answer"),
            (None, false) => "no leader is known".to_owned(),
        };
        ProposeError::NoQuorum(format!(
            "no quorum within {} ms ({leader}); {consequence}",
            self.settings.request_timeout.as_millis()
        ))
    }

    /// The clock this node stamps proposals with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Waits until this node has applied everything committed before the call, as confirmed
    /// by the leader with a quorum after the call: a read after this sees every acknowledged
    /// write. On a follower the leader is asked for the read point; on the leader, reads that
    /// arrive together share one read-index round.
    ///
    /// When this node leads and is the group's only voter, no other leader can exist and every
    /// acknowledged write was applied before it was acknowledged, so the local state is already
    /// linearizable and no round is needed. With two or more voters every read pays its round.
    pub async fn read_barrier(&self) -> Result<(), ReadBarrierError> {
        {
            let s = self.status.borrow();
            if s.is_leader && s.sole_voter {
                return Ok(());
            }
        }
        let attempt = async {
            let mut status = self.status.clone();
            loop {
                match self.read_index.barrier().await {
                    // A read changes nothing: one that found no quorum may be tried again.
                    Err(e) if safe_to_retry(&e) || matches!(e, ProposeError::NoQuorum(_)) => {}
                    result => return result,
                }
                let _ = tokio::time::timeout(RETRY_PAUSE, status.changed()).await;
            }
        };
        match tokio::time::timeout(self.settings.request_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(self.no_quorum("a linearizable read cannot be served")),
        }
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
        drop(self._tasks);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.log.close();
    }

    /// Records that this node was removed from its cluster: it stops serving (its status
    /// turns fatal with `why`) and its data directory is marked so that it never starts again.
    pub(crate) fn mark_removed(&self, why: &str) {
        let path = self.settings.data_dir.join(REMOVED_FILE);
        if let Err(e) = keel_storage::write_meta(&path, why.as_bytes()) {
            tracing::error!(error = %e, "cannot mark the data directory as removed");
        }
        tracing::error!(reason = why, "this node was removed from the cluster");
        self.status_tx.send_modify(|s| {
            s.is_leader = false;
            s.fatal = Some(why.to_owned());
        });
    }
}

/// Deletes snapshot files whose transfer from a leader a crash cut short.
fn remove_incomplete_snapshots(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path
            .extension()
            .is_some_and(|e| e == crate::answer::INCOMING_EXT)
        {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "removed a partly received snapshot")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a partly received snapshot")
                }
            }
        }
    }
}
