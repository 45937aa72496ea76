//! Cluster verbs: `keel cluster status | remove | transfer-leader`.

use anyhow::Result;
use clap::Subcommand;
use keel_client::wire::ClusterStatus;
use keel_client::Client;

use super::{print_json, Exit};

/// `keel cluster …`
#[derive(Subcommand, Debug)]
pub enum ClusterVerb {
    /// Show every member: id, address, role, replication progress, health.
    Status,
    /// Remove a member from the cluster; it stops serving.
    Remove {
        /// The member's node id.
        id: u64,
    },
    /// Hand leadership to a voter and wait until it leads.
    TransferLeader {
        /// The voter's node id.
        id: u64,
    },
}

pub(super) async fn run(keel: &Client, json: bool, cmd: ClusterVerb) -> Result<Exit> {
    match cmd {
        ClusterVerb::Status => {
            let status = keel.cluster().await?;
            if json {
                print_json(&status)?;
            } else {
                print!("{}", table(&status));
            }
        }
        ClusterVerb::Remove { id } => {
            let r = keel.remove_member(id).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("node {} removed", r.removed);
            }
        }
        ClusterVerb::TransferLeader { id } => {
            let r = keel.transfer_leader(id).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("node {} leads", r.leader);
            }
        }
    }
    Ok(Exit::Ok)
}

fn or_dash(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The status as a table, one member per line.
fn table(s: &ClusterStatus) -> String {
    let mut out = format!(
        "leader: {}  term: {}  commit: {}  (as seen by node {})\n",
        or_dash(s.leader),
        s.term,
        s.commit_index,
        s.node_id
    );
    let rows: Vec<[String; 8]> = s
        .members
        .iter()
        .map(|m| {
            [
                m.id.to_string(),
                m.address.clone(),
                m.role.clone(),
                or_dash(m.match_index),
                or_dash(m.applied_index),
                or_dash(m.lag),
                m.last_contact_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
                if m.healthy { "yes" } else { "NO" }.to_owned(),
            ]
        })
        .collect();
    let head = [
        "ID", "ADDRESS", "ROLE", "MATCH", "APPLIED", "LAG", "CONTACT", "HEALTHY",
    ];
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        l.push('\n');
        l
    };
    out.push_str(&line(head.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
