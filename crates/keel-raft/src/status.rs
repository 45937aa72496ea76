//! [`NodeStatus`]: the node's role, leader, term and membership, mirrored from openraft's
//! server metrics (they change on elections and membership changes, not on every write).

use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use tokio::sync::watch;

use crate::network::Addresses;
use crate::{Raft, TypeConfig};

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
    /// The leader's advertised URL, if known.
    pub leader_addr: Option<String>,
    /// Whether this node is the group's only voter.
    pub sole_voter: bool,
    /// Whether this node is a voter (not a learner, not outside the membership).
    pub voter: bool,
    /// How many members (voters and learners) the membership has.
    pub members: usize,
    /// Set when Raft has stopped for good (a storage failure, or the node shut down): the
    /// node will serve no more writes and the process should exit.
    pub fatal: Option<String>,
}

/// The status openraft's server metrics describe.
pub(crate) fn status_now(
    m: &openraft::metrics::RaftServerMetrics<TypeConfig>,
    id: u64,
) -> NodeStatus {
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    NodeStatus {
        id,
        is_leader: m.state == ServerState::Leader,
        leader: m.current_leader,
        leader_addr: m
            .current_leader
            .and_then(|l| membership.get_node(&l))
            .map(|n| n.addr.clone()),
        term: m.vote.leader_id.term,
        fatal: None,
        sole_voter: voters == [id],
        voter: voters.contains(&id),
        members: membership.nodes().count(),
    }
}

/// Mirrors openraft's server metrics (role, leader, term, membership: they change on
/// elections, not on every write) into a [`NodeStatus`] channel and Prometheus gauges, and
/// every member's address into the network's [`Addresses`].
pub(crate) fn spawn_status(
    raft: &Raft,
    id: u64,
    tx: Arc<watch::Sender<NodeStatus>>,
    addresses: Addresses,
) -> tokio::task::JoinHandle<()> {
    let mut server = raft.server_metrics();
    let all = raft.metrics();
    tokio::spawn(async move {
        loop {
            let status = {
                let m = server.borrow_and_update();
                let members = m.membership_config.membership().nodes();
                addresses.set(members.map(|(id, n)| (*id, n.addr.clone())));
                status_now(&m, id)
            };
            metrics::gauge!("keel_raft_term").set(status.term as f64);
            metrics::gauge!("keel_raft_is_leader").set(if status.is_leader { 1.0 } else { 0.0 });
            tx.send_modify(|s| {
                // A removal is final: it outlives later metrics.
                let fatal = s.fatal.take();
                *s = status;
                if fatal.is_some() {
                    s.is_leader = false;
                    s.fatal = fatal;
                }
            });
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
                    if s.fatal.is_none() {
                        s.fatal = Some(why.unwrap_or_else(|| "raft stopped".into()));
                    }
                });
                break;
            }
        }
    })
}
