//! Key verbs: get, put, del, ls, incr, txn.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use keel_client::wire::{KeyValue, TxnRequest, TxnResult};
use keel_client::{Client, GetOptions, ListOptions, PutOptions};

use super::{print_json, read_stdin, Exit};

/// The key verbs, each a top-level subcommand (`keel get`, `keel put`, …).
#[derive(Subcommand, Debug)]
pub enum KvVerb {
    /// Print a key's value.
    Get {
        /// The key.
        key: String,
        /// Read as of this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Write a key. VALUE `-` or no VALUE reads the value from stdin.
    Put {
        /// The key.
        key: String,
        /// The value, or `-` for stdin.
        value: Option<String>,
        /// Attach the key to this lease.
        #[arg(long)]
        lease: Option<u64>,
        /// Only if the key's mod_revision is N (0: only if absent).
        #[arg(long)]
        if_revision: Option<u64>,
    },
    /// Delete a key, or every key under a prefix.
    Del {
        /// The key.
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        key: Option<String>,
        /// Delete every key under this (non-empty) prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Only if the key's mod_revision is N.
        #[arg(long, conflicts_with = "prefix")]
        if_revision: Option<u64>,
    },
    /// List keys under a prefix (all pages).
    Ls {
        /// The prefix (default: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
        /// Read as of this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Add to a counter (default 1; may be negative).
    Incr {
        /// The key.
        key: String,
        /// The amount.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Run a transaction read from a JSON file, or `-` for stdin.
    Txn {
        /// The file.
        file: String,
    },
}

/// The value as text, or a note that it is binary.
pub(super) fn show_value(kv: &KeyValue) -> String {
    match (&kv.value, &kv.value_base64) {
        (Some(v), _) => v.clone(),
        (None, Some(b)) => format!("<binary, base64 {b}>"),
        (None, None) => String::new(),
    }
}

pub(super) async fn run(keel: &Client, json: bool, verb: KvVerb) -> Result<Exit> {
    match verb {
        KvVerb::Get { key, revision } => {
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
        KvVerb::Put {
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
        KvVerb::Del {
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
        KvVerb::Ls {
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
        KvVerb::Incr { key, by } => {
            let r = keel.incr(&key, by).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{}", r.value);
            }
        }
        KvVerb::Txn { file } => {
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
                        TxnResult::Enqueue { queue, id, created } => {
                            let how = if *created { "" } else { " (already queued)" };
                            println!("enqueue {queue} task {id}{how}")
                        }
                        TxnResult::Complete { queue, id } => {
                            println!("complete {queue} task {id}")
                        }
                    }
                }
            }
            if !r.succeeded {
                return Ok(Exit::NotMet);
            }
        }
    }
    Ok(Exit::Ok)
}
