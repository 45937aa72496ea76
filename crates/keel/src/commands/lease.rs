//! Lease verbs: `keel lease grant | keepalive | revoke | get | ls`.

use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::Subcommand;
use keel_client::Client;

use super::{print_json, Exit};

/// `keel lease …`
#[derive(Subcommand, Debug)]
pub enum LeaseVerb {
    /// Grant a lease with a time to live such as 10s or 1m30s.
    Grant {
        /// Time to live.
        ttl: String,
    },
    /// Restart a lease's time to live.
    Keepalive {
        /// The lease id.
        id: u64,
        /// Keep it alive until interrupted.
        #[arg(long)]
        forever: bool,
    },
    /// Revoke a lease and delete its keys.
    Revoke {
        /// The lease id.
        id: u64,
    },
    /// Describe a lease.
    Get {
        /// The lease id.
        id: u64,
    },
    /// List leases.
    Ls,
}

pub(super) async fn run(keel: &Client, json: bool, cmd: LeaseVerb) -> Result<Exit> {
    match cmd {
        LeaseVerb::Grant { ttl } => {
            let ttl = keel_server::parse_duration(&ttl).map_err(|e| anyhow!(e))?;
            let r = keel.lease_grant(ttl).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("lease {} granted with TTL {}", r.id, human_ms(r.ttl_ms));
            }
        }
        LeaseVerb::Keepalive { id, forever } => loop {
            let r = keel.lease_keepalive(id).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("lease {} kept alive with TTL {}", r.id, human_ms(r.ttl_ms));
            }
            if !forever {
                break;
            }
            // Renew at a third of the TTL so that two missed renewals still leave time.
            let pause = Duration::from_millis((r.ttl_ms / 3).max(100));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        },
        LeaseVerb::Revoke { id } => {
            let r = keel.lease_revoke(id).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "lease {id} revoked; {} keys deleted (revision {})",
                    r.deleted, r.revision
                );
            }
        }
        LeaseVerb::Get { id } => {
            let r = keel.lease_get(id).await?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "lease {}: TTL {}, remaining {}, keys: {}",
                    r.id,
                    human_ms(r.ttl_ms),
                    human_ms(r.remaining_ms),
                    if r.keys.is_empty() {
                        "(none)".to_owned()
                    } else {
                        r.keys.join(", ")
                    }
                );
            }
        }
        LeaseVerb::Ls => {
            let r = keel.lease_list().await?;
            if json {
                print_json(&r)?;
            } else {
                for l in &r.leases {
                    println!(
                        "{}\tTTL {}\tremaining {}\t{} keys",
                        l.id,
                        human_ms(l.ttl_ms),
                        human_ms(l.remaining_ms),
                        l.key_count
                    );
                }
            }
        }
    }
    Ok(Exit::Ok)
}

/// Milliseconds as seconds, e.g. `10s` or `2.5s`.
fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
