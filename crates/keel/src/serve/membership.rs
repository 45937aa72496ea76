//! Who this node is in its cluster, decided before Raft starts: its id (kept in the data
//! directory), whether an empty directory forms a new group or joins one, and the join
//! itself.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keel_raft::peer::JoinRequest;
use keel_raft::Peers;

/// The file in the data directory that holds this node's id.
const NODE_ID_FILE: &str = "node-id";
/// The file that marks a data directory whose node asked to join a cluster: it never forms
/// a group of its own, even when restarted without `--join` before it heard from the leader.
const JOINED_FILE: &str = "joined";
/// How long a new node keeps asking to be let in (members may be starting too).
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// What was decided.
pub struct Identity {
    /// This node's id.
    pub node_id: u64,
    /// Whether an empty data directory forms a new one-member group.
    pub bootstrap: bool,
    /// Whether this start added the node to a cluster (it then waits for the leader).
    pub joined: bool,
}

fn read_id(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(NODE_ID_FILE);
    let Some(bytes) = keel_storage_meta(&path)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} is damaged", path.display()))?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

fn keel_storage_meta(path: &Path) -> Result<Option<Vec<u8>>> {
    keel_storage::read_meta(path).with_context(|| format!("reading {}", path.display()))
}

/// Whether the data directory already holds Raft state: the node has started before, as a
/// group's founder or after it was let into one.
pub fn has_raft_state(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("raft")).is_ok_and(|mut d| d.next().is_some())
}

/// Decides this node's id and how it starts. `initialized`: the data directory already
/// holds Raft state (a vote or log), so the node belongs to a group and `--join` is
/// ignored.
pub async fn resolve(
    dir: &Path,
    flag: Option<u64>,
    initialized: bool,
    join: &[String],
    advertise: &str,
    peers: &Peers,
) -> Result<Identity> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stored = read_id(dir)?;
    let joined_before = keel_storage_meta(&dir.join(JOINED_FILE))?.is_some();
    if let (Some(flag), Some(stored)) = (flag, stored) {
        if flag != stored {
            bail!(
                "this data directory belongs to node {stored}, not {flag} (drop --node-id or \
                 give {stored})"
            );
        }
    }
    let keep = |id: u64| -> Result<()> {
        keel_storage::write_meta(&dir.join(NODE_ID_FILE), &id.to_le_bytes())
            .with_context(|| format!("writing {}", dir.join(NODE_ID_FILE).display()))
    };
    if initialized || join.is_empty() {
        if initialized && !join.is_empty() {
            tracing::info!("this node already belongs to a cluster: --join is ignored");
        }
        let node_id = stored.or(flag).unwrap_or(1);
        if stored.is_none() {
            keep(node_id)?;
        }
        return Ok(Identity {
            node_id,
            bootstrap: !joined_before,
            joined: false,
        });
    }
    let request = JoinRequest {
        id: stored.or(flag),
        addr: advertise.to_owned(),
        relayed: false,
    };
    let started = Instant::now();
    let node_id = loop {
        match keel_raft::ask_to_join(peers, join, &request, Duration::from_secs(10)).await {
            Ok(id) => break id,
            Err(e) if started.elapsed() < JOIN_PATIENCE => {
                tracing::warn!(error = %e, "asking to join; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => bail!("could not join the cluster at {}: {e}", join.join(",")),
        }
    };
    if stored.is_none() {
        keep(node_id)?;
    }
    // Marked before Raft starts: a node the cluster knows as a member never bootstraps a
    // group of its own, even restarted without --join before it heard from the leader.
    // (A join that failed leaves no mark: the directory may still start a group.)
    keel_storage::write_meta(&dir.join(JOINED_FILE), b"joined")
        .with_context(|| format!("writing {}", dir.join(JOINED_FILE).display()))?;
    tracing::info!(node_id, "joined the cluster as a learner");
    Ok(Identity {
        node_id,
        bootstrap: false,
        joined: true,
    })
}
