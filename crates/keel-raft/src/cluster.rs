//! Membership: joining, removing, moving leadership, promoting caught-up learners, and the
//! cluster view and readiness a node reports.
//!
//! Every change of membership is made by the leader, one at a time (under the node's
//! membership lock): a node that is asked and does not lead passes a join on to the leader
//! once, and answers other changes with [`ClusterError::NotLeader`]-style errors that the
//! caller's node resolves by asking the leader itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Instant as _, ServerState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::network::Peers;
use crate::node::not_leader;
use crate::peer::{ClusterView, JoinRequest, MemberView, PeerCall, PeerError, Role, SelfStatus};
use crate::{Node, ProposeError, Raft};

/// A learner whose log is at most this many entries behind the leader's counts as caught
/// up: it is promoted, and a learner's `/readyz` turns ready.
pub const CAUGHT_UP: u64 = 16;
/// How often the leader looks for learners to promote.
const PROMOTE_EVERY: Duration = Duration::from_millis(250);
/// How long a status probe of one member may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a membership change or a cluster query failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ClusterError {
    /// No member with this id.
    #[error("node {0} is not a member of the cluster")]
    NotFound(u64),
    /// The change is not allowed as asked.
    #[error("{0}")]
    Refused(String),
    /// No leader could be reached, or the change's fate is unknown.
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

impl From<PeerError> for ClusterError {
    fn from(e: PeerError) -> Self {
        ClusterError::Propose(ProposeError::Unavailable(e.to_string()))
    }
}

/// Whether a node is ready to serve writes and linearizable reads, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Ready or not.
    pub ready: bool,
    /// What was checked, in a sentence.
    pub reason: String,
}

fn change_failed(
    e: RaftError<crate::TypeConfig, ClientWriteError<crate::TypeConfig>>,
) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f).into(),
        RaftError::APIError(other) => ClusterError::Refused(other.to_string()),
        RaftError::Fatal(f) => ProposeError::Unavailable(f.to_string()).into(),
    }
}

/// Asks the members at `seeds` (advertised URLs), one after another, to add a node: the
/// first that answers passes the request to its leader. Returns the node's id.
pub async fn ask_to_join(
    peers: &Peers,
    seeds: &[String],
    request: &JoinRequest,
    timeout: Duration,
) -> Result<u64, String> {
    let mut errors = Vec::new();
    for seed in seeds {
        let answer: Result<Result<u64, ClusterError>, PeerError> =
            peers.call(seed, PeerCall::Join, request, timeout).await;
        match answer {
            Ok(Ok(id)) => return Ok(id),
            Ok(Err(e)) => errors.push(format!("{seed}: {e}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("; "))
}

impl Node {
    /// Asks the leader (this node or the one it knows) to run `call` with `request`.
    async fn on_leader<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        call: PeerCall,
        request: &Req,
    ) -> Result<Resp, ClusterError> {
        let addr = self.status.borrow().leader_addr.clone();
        let Some(addr) = addr else {
            return Err(self.no_quorum("no membership change can be made").into());
        };
        let answer: Result<Resp, ClusterError> = self
            .peers
            .call(&addr, call, request, self.settings.request_timeout)
            .await?;
        answer
    }

    /// Adds the node `request` names as a learner (it is promoted once caught up) and
    /// returns its id, choosing one when it has none. Idempotent: a member asking again with
    /// its address gets its id back; one asking with a new address has it updated.
    pub async fn join(&self, request: JoinRequest) -> Result<u64, ClusterError> {
        if self.status.borrow().is_leader {
            join_here(&self.raft, &self.membership_lock, request).await
        } else if request.relayed {
            Err(ProposeError::NotLeader { leader: None }.into())
        } else {
            let relayed = JoinRequest {
                relayed: true,
                ..request
            };
            self.on_leader(PeerCall::Join, &relayed).await
        }
    }

    /// Removes member `id` from the cluster (a voter is first demoted, so the cluster never
    /// waits on it again) and tells it so; it stops serving. The last voter cannot be removed.
    pub async fn remove(&self, id: u64) -> Result<(), ClusterError> {
        if !self.status.borrow().is_leader {
            return self.on_leader(PeerCall::Remove, &id).await;
        }
        let addr = {
            let _serial = self.membership_lock.lock().await;
            let m = self.raft.metrics().borrow_watched().clone();
            let membership = m.membership_config.membership();
            let Some(node) = membership.get_node(&id).cloned() else {
                return Err(ClusterError::NotFound(id));
            };
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            if voters.contains(&id) {
                if voters.len() == 1 {
                    return Err(ClusterError::Refused(format!(
                        "node {id} is the only voter; removing it would leave no cluster"
                    )));
                }
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
                    .map_err(change_failed)?;
            } else {
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
                    .map_err(change_failed)?;
            }
            node.addr
        };
        let why = format!(
            "removed from the cluster by node {} (the leader)",
            self.id()
        );
        tracing::info!(node_id = id, "removed a member");
        if id == self.id() {
            self.mark_removed(&why);
        } else {
            // Best effort: a node that does not hear it learns nothing more from the leader
            // anyway, and its peers refuse it.
            let told: Result<(), PeerError> = self
                .peers
                .call(&addr, PeerCall::Removed, &why, PROBE_TIMEOUT * 4)
                .await;
            if let Err(e) = told {
                tracing::warn!(node_id = id, error = %e, "could not tell a removed node");
            }
        }
        Ok(())
    }

    /// Hands leadership to voter `to` and waits (at most the request timeout) until it leads.
    pub async fn move_leader(&self, to: u64) -> Result<(), ClusterError> {
        if !self.status.borrow().is_leader {
            return self.on_leader(PeerCall::MoveLeader, &to).await;
        }
        if to == self.id() {
            return Ok(());
        }
        let voter = {
            let m = self.raft.metrics().borrow_watched().clone();
            let membership = m.membership_config.membership();
            if membership.get_node(&to).is_none() {
                return Err(ClusterError::NotFound(to));
            }
            let voter = membership.voter_ids().any(|v| v == to);
            voter
        };
        if !voter {
            return Err(ClusterError::Refused(format!(
                "node {to} is a learner; only a voter can lead"
            )));
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| ProposeError::Unavailable(e.to_string()))?;
        let mut status = self.status.clone();
        let moved = tokio::time::timeout(
            self.settings.request_timeout,
            status.wait_for(|s| s.leader == Some(to)),
        )
        .await;
        match moved {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClusterError::Refused(format!(
                "node {to} did not take over within {} ms",
                self.settings.request_timeout.as_millis()
            ))),
        }
    }

    /// The address the membership records for member `id`, if it is one.
    pub fn member_addr(&self, id: u64) -> Option<String> {
        let m = self.raft.metrics().borrow_watched().clone();
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        addr
    }

    /// Makes the membership record `addr` as this node's address, if it records another
    /// (the node was restarted with a new `--advertise` or port): asks the leader, once one
    /// is known, for up to `patience`.
    pub async fn keep_address(&self, addr: &str, patience: Duration) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.member_addr(self.id()) {
                Some(known) if known != addr => {}
                _ => return Ok(()),
            }
            let request = JoinRequest {
                id: Some(self.id()),
                addr: addr.to_owned(),
                relayed: false,
            };
            // The leader may not know where this node is, so this node may not know the
            // leader: any other member passes the request on.
            let others: Vec<String> = {
                let m = self.raft.metrics().borrow_watched().clone();
                let others = m
                    .membership_config
                    .membership()
                    .nodes()
                    .filter(|(id, _)| **id != self.id())
                    .map(|(_, n)| n.addr.clone())
                    .collect();
                others
            };
            match ask_to_join(
                &self.peers,
                &others,
                &request,
                self.settings.request_timeout,
            )
            .await
            {
                Ok(_) => {
                    tracing::info!(addr, "the cluster now records this node's new address");
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "recording the new address; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(ClusterError::Refused(e)),
            }
        }
    }

    /// This node's own view of itself.
    pub fn self_status(&self) -> SelfStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id());
        SelfStatus {
            id: self.id(),
            role: match (m.state, voter) {
                (ServerState::Leader, _) => Role::Leader,
                (_, true) => Role::Voter,
                (_, false) => Role::Learner,
            },
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: m.local_committed.map_or(0, |l| l.index),
            applied_index: self.applied_index(),
        }
    }

    /// The cluster: the leader's view (asked of it when this node does not lead), or this
    /// node's own when no leader answers. Members are probed for their applied index.
    pub async fn cluster(&self) -> ClusterView {
        if !self.status.borrow().is_leader {
            if let Ok(view) = self
                .on_leader::<_, ClusterView>(PeerCall::Cluster, &())
                .await
            {
                return view;
            }
        }
        self.cluster_here().await
    }

    /// This node's view of the cluster; with replication progress when it leads.
    pub(crate) async fn cluster_here(&self) -> ClusterView {
        let m = self.raft.metrics().borrow_watched().clone();
        let leads = m.state == ServerState::Leader;
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let nodes: BTreeMap<u64, String> = membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let last = m.last_log_index.unwrap_or(0);
        let probes = nodes.iter().map(|(id, addr)| async move {
            if *id == self.id() {
                return Some(self.self_status());
            }
            let status: Result<SelfStatus, PeerError> = self
                .peers
                .call(addr, PeerCall::Status, &(), PROBE_TIMEOUT)
                .await;
            status.ok()
        });
        let probed = futures_util::future::join_all(probes).await;
        let mut members: Vec<MemberView> = nodes
            .iter()
            .zip(probed)
            .map(|((id, addr), probe)| {
                let role = if leads && *id == self.id() || m.current_leader == Some(*id) {
                    Role::Leader
                } else if voters.contains(id) {
                    Role::Voter
                } else {
                    Role::Learner
                };
                let match_index = if !leads {
                    None
                } else if *id == self.id() {
                    Some(last)
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                        .or(Some(0))
                };
                let last_contact_ms = if !leads {
                    None
                } else if *id == self.id() {
                    Some(0)
                } else {
                    m.heartbeat
                        .as_ref()
                        .and_then(|h| h.get(id).cloned().flatten())
                        .map(|at| at.elapsed().as_millis() as u64)
                };
                let lag = match_index.map(|i| last.saturating_sub(i));
                MemberView {
                    id: *id,
                    addr: addr.clone(),
                    role,
                    match_index,
                    applied_index: probe.as_ref().map(|p| p.applied_index),
                    lag,
                    last_contact_ms,
                    healthy: probe.is_some() && lag.is_none_or(|l| l <= CAUGHT_UP * 64),
                }
            })
            .collect();
        members.sort_by_key(|v| (v.role == Role::Learner, v.id));
        ClusterView {
            node_id: self.id(),
            leader: m.current_leader,
            term: m.current_term,
            commit_index: m.local_committed.map_or(0, |l| l.index),
            members,
        }
    }

    /// How long since this node last heard from a leader (on the leader: since a quorum last
    /// acknowledged it; zero for a sole voter). None if never.
    pub fn last_contact(&self) -> Option<Duration> {
        let s = self.status.borrow().clone();
        if s.is_leader {
            if s.sole_voter {
                return Some(Duration::ZERO);
            }
            let m = self.raft.metrics().borrow_watched().clone();
            return m.last_quorum_acked.map(|at| at.elapsed());
        }
        self.contact.last().map(|(ago, _)| ago)
    }

    /// Whether this node can serve writes and linearizable reads now: a leader a quorum
    /// acknowledged within the election timeout, or a member that heard from its leader as
    /// recently and has applied within [`CAUGHT_UP`] entries of the leader's commit.
    pub fn readiness(&self) -> Readiness {
        let s = self.status.borrow().clone();
        let limit = self.settings.election_timeout;
        let not = |reason: String| Readiness {
            ready: false,
            reason,
        };
        if let Some(why) = s.fatal {
            return not(why);
        }
        if s.is_leader {
            if s.sole_voter {
                return Readiness {
                    ready: true,
                    reason: "this node is the only voter and leads".into(),
                };
            }
            return match self.last_contact() {
                Some(ago) if ago <= limit => Readiness {
                    ready: true,
                    reason: format!("leads; a quorum acknowledged it {} ms ago", ago.as_millis()),
                },
                Some(ago) => not(format!(
                    "leads, but no quorum has acknowledged it for {} ms",
                    ago.as_millis()
                )),
                None => not("leads, but no quorum has acknowledged it yet".into()),
            };
        }
        let Some(leader) = s.leader else {
            return not("no leader is known".into());
        };
        match self.contact.last() {
            None => not(format!("has not heard from the leader (node {leader}) yet")),
            Some((ago, _)) if ago > limit => not(format!(
                "last heard from the leader (node {leader}) {} ms ago",
                ago.as_millis()
            )),
            Some((_, commit)) if self.applied_index() + CAUGHT_UP < commit => not(format!(
                "catching up: applied {} of the leader's {commit} entries",
                self.applied_index()
            )),
            Some((ago, _)) => Readiness {
                ready: true,
                reason: format!(
                    "follows node {leader}, heard from {} ms ago",
                    ago.as_millis()
                ),
            },
        }
    }
}

/// Adds or updates a member on this node, which leads.
async fn join_here(
    raft: &Raft,
    lock: &tokio::sync::Mutex<()>,
    request: JoinRequest,
) -> Result<u64, ClusterError> {
    let _serial = lock.lock().await;
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return Err(ProposeError::NotLeader { leader: None }.into());
    }
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let holder = membership
        .nodes()
        .find(|(_, n)| n.addr == request.addr)
        .map(|(id, _)| *id);
    let node = BasicNode {
        addr: request.addr.clone(),
    };
    let id = match (request.id, holder) {
        (Some(id), Some(h)) if id == h => return Ok(id),
        (Some(id), Some(h)) => {
            return Err(ClusterError::Refused(format!(
                "{} is already the address of node {h}, not of node {id}",
                request.addr
            )))
        }
        (Some(id), None) if membership.get_node(&id).is_some() => {
            raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), true)
                .await
                .map_err(change_failed)?;
            tracing::info!(node_id = id, addr = %request.addr, "updated a member's address");
            return Ok(id);
        }
        (Some(id), None) => id,
        // A node without an id whose address is a learner's lost its id before it kept it:
        // it has no data, so it is that learner.
        (None, Some(h)) if !voters.contains(&h) => return Ok(h),
        (None, Some(h)) => {
            return Err(ClusterError::Refused(format!(
                "{} is the address of voter {h}; a voter cannot rejoin without its data \
                 directory (remove node {h} first)",
                request.addr
            )))
        }
        (None, None) => membership.nodes().map(|(id, _)| *id).max().unwrap_or(0) + 1,
    };
    raft.add_learner(id, node, false)
        .await
        .map_err(change_failed)?;
    tracing::info!(node_id = id, addr = %request.addr, "added a learner");
    Ok(id)
}

/// Spawns the leader's promoter: every [`PROMOTE_EVERY`] it promotes one caught-up learner
/// to voter while there are fewer than the configured most voters.
pub(crate) fn spawn_promoter(node: &Node) -> tokio::task::JoinHandle<()> {
    let raft = node.raft.clone();
    let lock = node.membership_lock.clone();
    let max_voters = node.settings.max_voters;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROMOTE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(id) = promotable(&raft, max_voters) {
                let _serial = lock.lock().await;
                // Checked again under the lock: a removal may have run meanwhile.
                if promotable(&raft, max_voters) != Some(id) {
                    continue;
                }
                match raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                    .await
                {
                    Ok(_) => tracing::info!(node_id = id, "promoted a caught-up learner to voter"),
                    Err(e) => tracing::debug!(node_id = id, error = %e, "promotion deferred"),
                }
            }
        }
    })
}

/// The learner to promote now, if this node leads, no membership change is in progress,
/// voters are fewer than `max_voters` and a learner is caught up.
fn promotable(raft: &Raft, max_voters: usize) -> Option<u64> {
    let m = raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader
        || m.membership_config.log_id() != m.committed_membership_config.log_id()
    {
        return None;
    }
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 || membership.voter_ids().count() >= max_voters {
        return None;
    }
    let last = m.last_log_index.unwrap_or(0);
    let replication = m.replication.as_ref()?;
    let found = membership.learner_ids().find(|id| {
        replication
            .get(id)
            .cloned()
            .flatten()
            .is_some_and(|l| l.index + CAUGHT_UP >= last)
    });
    found
}
