//! `keel watch`: print every change to a key, a prefix or a queue's tasks as it happens.

use anyhow::Result;
use clap::Args;
use keel_client::wire::{WatchEvent, WatchEventType};
use keel_client::{Client, WatchItem, WatchOptions};

use super::kv::show_value;
use super::{print_json, Exit};

/// `keel watch` arguments.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The key.
    #[arg(
        required_unless_present_any = ["prefix", "queue"],
        conflicts_with_all = ["prefix", "queue"]
    )]
    pub key: Option<String>,
    /// Watch every key under this prefix ("" for all keys).
    #[arg(long, conflicts_with = "queue")]
    pub prefix: Option<String>,
    /// Watch a queue's tasks: enqueued, claimed, completed, failed, put back, deleted.
    #[arg(long, conflicts_with = "initial")]
    pub queue: Option<String>,
    /// Start with the change at this revision (replaying the history since).
    #[arg(long, conflicts_with = "initial")]
    pub from_revision: Option<u64>,
    /// First print the current state; if the history is ever compacted past where the
    /// watch must resume, print the state again and continue (instead of exiting 1).
    #[arg(long)]
    pub initial: bool,
}

/// `keel watch`: prints changes until interrupted. Exits 1 if the history was compacted past
/// the point the watch had to resume from (unless `--initial`, which re-lists and goes on).
pub(super) async fn run(keel: &Client, json: bool, args: WatchArgs) -> Result<Exit> {
    let mut opts = WatchOptions {
        key: args.key,
        prefix: args.prefix,
        queue: args.queue,
        from_revision: args.from_revision,
        initial: args.initial,
        ..Default::default()
    };
    let mut stream = keel.watch(&opts).await?;
    let mut outage = false;
    loop {
        let Some(item) = stream.next().await? else {
            return Ok(Exit::Ok);
        };
        match item {
            WatchItem::Snapshot(snap) => {
                if json {
                    print_json(&snap)?;
                } else {
                    for kv in &snap.items {
                        println!(
                            "PUT {} = {} (rev {})",
                            kv.key,
                            show_value(kv),
                            kv.mod_revision
                        );
                    }
                }
            }
            WatchItem::Change(change) => {
                if json {
                    print_json(&change)?;
                } else {
                    for e in &change.events {
                        match e.kind {
                            WatchEventType::Put => println!(
                                "PUT {} = {} (rev {})",
                                e.key,
                                show_event_value(e),
                                change.revision
                            ),
                            WatchEventType::Delete => {
                                println!("DELETE {} (rev {})", e.key, change.revision)
                            }
                        }
                    }
                    for t in &change.tasks {
                        let state = t.state.map_or("deleted", |s| s.as_str());
                        println!(
                            "TASK {}/{} {} -> {state} (attempt {}, rev {})",
                            t.queue,
                            t.id,
                            t.kind.as_str(),
                            t.attempt,
                            change.revision
                        );
                    }
                }
            }
            WatchItem::Progress(_) => {}
            WatchItem::Reconnecting { error, .. } => {
                if !outage {
                    eprintln!("keel watch: connection lost ({error}); reconnecting");
                    outage = true;
                }
            }
            WatchItem::Resumed { after } => {
                eprintln!("keel watch: reconnected; resuming after revision {after}");
                outage = false;
            }
            WatchItem::Compacted { compact_revision } => {
                if !opts.initial {
                    eprintln!(
                        "keel watch: the history was compacted (oldest revision now \
                         {compact_revision}); changes were missed. Run with --initial to \
                         re-list and continue."
                    );
                    return Ok(Exit::NotMet);
                }
                eprintln!(
                    "keel watch: the history was compacted (oldest revision now \
                     {compact_revision}); listing the current state again"
                );
                opts.from_revision = None;
                stream = keel.watch(&opts).await?;
            }
        }
    }
}

fn show_event_value(e: &WatchEvent) -> String {
    match (&e.value, &e.value_base64) {
        (Some(v), _) => v.clone(),
        (None, Some(b)) => format!("<binary, base64 {b}>"),
        (None, None) => String::new(),
    }
}
