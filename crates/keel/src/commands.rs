//! Client verbs: each calls the HTTP API through keel-client and prints the result.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use keel_client::wire::{Code, KeyValue, TxnRequest, TxnResult, WatchEvent, WatchEventType};
use keel_client::{Client, GetOptions, ListOptions, PutOptions, WatchItem, WatchOptions};
use serde::Serialize;

use crate::cli::{Command, LeaseCommand};

/// How a successful run ends.
pub enum Exit {
    /// Exit 0.
    Ok,
    /// Exit 1: not found, or a condition not met.
    NotMet,
}

/// Error codes that mean "not found or condition not met" (exit 1).
pub fn is_not_met(code: Code) -> bool {
    matches!(
        code,
        Code::KeyNotFound | Code::LeaseNotFound | Code::RevisionMismatch
    )
}

fn print_json(v: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("reading stdin")?;
    Ok(buf)
}

fn show_value(kv: &KeyValue) -> String {
    match (&kv.value, &kv.value_base64) {
        (Some(v), _) => v.clone(),
        (None, Some(b)) => format!("<binary, base64 {b}>"),
        (None, None) => String::new(),
    }
}

fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

pub async fn run(addr: &str, json: bool, command: Command) -> Result<Exit> {
    let keel = Client::new(addr)?;
    match command {
        Command::Serve(_) => bail!("serve is not a client command"),
        Command::Get { key, revision } => {
            let opts = GetOptions {
                revision,
                ..Default::default()
            };
            let Some(kv) = keel.get(&key, &opts).await? else {
                eprintln!("error: key {key:?} not found");
                return Ok(Exit::NotMet);
            };
            if json {
                print_json(&kv)?;
            } else {
                let bytes = kv.value_bytes().map_err(|e| anyhow!(e))?;
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                if kv.value.is_some() && !bytes.ends_with(b"\n") {
                    out.write_all(b"\n")?;
                }
            }
        }
        Command::Put {
            key,
            value,
            lease,
            if_revision,
        } => {
            let bytes = match value.as_deref() {
                None | Some("-") => read_stdin()?,
                Some(v) => v.as_bytes().to_vec(),
            };
            let revision = keel
                .put(&key, bytes, &PutOptions { lease, if_revision })
                .await?;
            if json {
                print_json(&serde_json::json!({ "revision": revision }))?;
            } else {
                println!("OK (revision {revision})");
            }
        }
        Command::Del {
            key,
            prefix,
            if_revision,
        } => {
            let r = match (key, prefix) {
                (Some(k), None) => keel.delete(&k, if_revision).await?,
                (None, Some(p)) if !p.is_empty() => keel.delete_prefix(&p).await?,
                _ => bail!("give a KEY or a non-empty --prefix"),
            };
            if json {
                print_json(&r)?;
            } else {
                println!("deleted {} (revision {})", r.deleted, r.revision);
            }
        }
        Command::Ls {
            prefix,
            keys_only,
            revision,
        } => {
            let mut opts = ListOptions {
                prefix,
                keys_only,
                revision,
                ..Default::default()
            };
            let mut all = Vec::new();
            loop {
                let page = keel.list(&opts).await?;
                // Later pages are read at the first page's revision: one consistent listing.
                opts.revision = Some(page.revision);
                opts.after = page.items.last().map(|kv| kv.key.clone());
                let more = page.more;
                if json {
                    all.extend(page.items);
                } else {
                    for kv in &page.items {
                        if keys_only {
                            println!("{}", kv.key);
                        } else {
                            println!("{} = {}", kv.key, show_value(kv));
                        }
                    }
                }
                if !more {
                    if json {
                        print_json(
                            &serde_json::json!({ "revision": page.revision, "items": all }),
                        )?;
                    }
                    break;
                }
            }
        }
        Command::Incr { key, by } => {
            let r = keel.incr(&key, by).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.value);
            }
        }
        Command::Txn { file } => {
            let text = if file == "-" {
                read_stdin()?
            } else {
                std::fs::read(&file).with_context(|| format!("cannot read {file}"))?
            };
            let req: TxnRequest =
                serde_json::from_slice(&text).context("invalid transaction JSON")?;
            let r = keel.txn(&req).await?;
            if json {
                print_json(&r)?;
            } else {
                let verdict = if r.succeeded { "SUCCEEDED" } else { "FAILED" };
                println!("{verdict} (revision {})", r.revision);
                for res in &r.results {
                    match res {
                        TxnResult::Put { key } => println!("put {key}"),
                        TxnResult::Delete { key, deleted } => println!("delete {key} ({deleted})"),
                        TxnResult::DeletePrefix { prefix, deleted } => {
                            println!("delete_prefix {prefix} ({deleted})")
                        }
                        TxnResult::Get {
                            key,
                            item: Some(kv),
                        } => println!("get {key} = {}", show_value(kv)),
                        TxnResult::Get { key, item: None } => println!("get {key} (not found)"),
                        TxnResult::Incr { key, value } => println!("incr {key} = {value}"),
                    }
                }
            }
            if !r.succeeded {
                return Ok(Exit::NotMet);
            }
        }
        Command::Lease(cmd) => return lease(&keel, json, cmd).await,
        Command::Watch {
            key,
            prefix,
            from_revision,
            initial,
        } => {
            let opts = WatchOptions {
                key,
                prefix,
                from_revision,
                initial,
                ..Default::default()
            };
            return watch(&keel, json, opts).await;
        }
    }
    Ok(Exit::Ok)
}

/// `keel watch`: prints changes until interrupted. Exits 1 if the history was compacted past
/// the point the watch had to resume from (unless `--initial`, which re-lists and goes on).
async fn watch(keel: &Client, json: bool, mut opts: WatchOptions) -> Result<Exit> {
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

async fn lease(keel: &Client, json: bool, cmd: LeaseCommand) -> Result<Exit> {
    match cmd {
        LeaseCommand::Grant { ttl } => {
            let ttl = keel_server::parse_duration(&ttl).map_err(|e| anyhow!(e))?;
            let r = keel.lease_grant(ttl).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("lease {} granted with TTL {}", r.id, human_ms(r.ttl_ms));
            }
        }
        LeaseCommand::Keepalive { id, forever } => loop {
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
        LeaseCommand::Revoke { id } => {
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
        LeaseCommand::Get { id } => {
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
        LeaseCommand::Ls => {
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
