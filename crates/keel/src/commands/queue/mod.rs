//! Queue verbs: `keel queue push | claim | complete | fail | extend | retry | cancel | get |
//! ls | stats | purge | work` (`work`'s command per task is in [`work`]).

mod work;

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use keel_client::wire::{ClaimedTask, QueueInfo, TaskInfo, TaskState};
use keel_client::{ClaimOptions, Client, EnqueueOptions, TaskListOptions, Worker};

use super::{print_json, read_stdin, Exit};

fn duration(flag: &str, text: &Option<String>) -> Result<Option<Duration>> {
    text.as_deref()
        .map(|t| keel_server::parse_duration(t).map_err(|e| anyhow!("{flag}: {e}")))
        .transpose()
}

/// `keel queue …`
#[derive(Subcommand, Debug)]
pub enum QueueVerb {
    /// Enqueue a task; its payload is PAYLOAD, or stdin when PAYLOAD is - or absent.
    Push {
        /// The queue.
        queue: String,
        /// The payload (- or absent: read stdin).
        payload: Option<String>,
        /// Not claimable until this long from now (e.g. 10s).
        #[arg(long)]
        delay: Option<String>,
        /// Higher is claimed first.
        #[arg(long)]
        priority: Option<i64>,
        /// Attempts allowed (default 10; 0: unlimited).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// While an unfinished task has this key, push returns that task.
        #[arg(long)]
        dedupe_key: Option<String>,
        /// The payload's content type.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Claim the best ready task (exit 1 if none became ready within --wait).
    Claim {
        /// The queue.
        queue: String,
        /// The lease (default: the server's, 60s).
        #[arg(long)]
        lease: Option<String>,
        /// Wait up to this long for a task.
        #[arg(long)]
        wait: Option<String>,
        /// At most this many tasks.
        #[arg(long)]
        max: Option<u32>,
        /// The name shown on the task as its worker.
        #[arg(long)]
        worker: Option<String>,
    },
    /// Complete a running task.
    Complete {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
        /// The claim token the claim returned.
        #[arg(long)]
        claim: String,
        /// The result: JSON (text that is not JSON is kept as a string).
        #[arg(long)]
        result: Option<String>,
    },
    /// Fail a running task: retried later, or dead once its attempts are used up.
    Fail {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
        /// The claim token the claim returned.
        #[arg(long)]
        claim: String,
        /// What went wrong.
        #[arg(long, default_value = "")]
        error: String,
        /// Retry after this long (default: backoff from 1s to 5m).
        #[arg(long)]
        retry_in: Option<String>,
    },
    /// Extend a running task's lease.
    Extend {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
        /// The claim token the claim returned.
        #[arg(long)]
        claim: String,
        /// The new lease from now (default: the server's).
        #[arg(long)]
        lease: Option<String>,
    },
    /// Make a done or dead task pending again, its attempts reset.
    Retry {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
    },
    /// Delete a task that is not running.
    Cancel {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
    },
    /// Describe a task (exit 1 if it does not exist).
    Get {
        /// The queue.
        queue: String,
        /// The task.
        id: u64,
        /// With its payload.
        #[arg(long)]
        payload: bool,
    },
    /// List a queue's tasks, or every queue when QUEUE is left out.
    Ls {
        /// The queue.
        queue: Option<String>,
        /// Only tasks in this state: pending, running, done or dead.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// Only tasks with a larger id.
        #[arg(long)]
        after: Option<u64>,
    },
    /// Every queue's counts, as a table.
    Stats,
    /// Delete every done (or dead) task of a queue.
    Purge {
        /// The queue.
        queue: String,
        /// done or dead.
        #[arg(long)]
        state: String,
    },
    /// Claim tasks and run COMMAND once per task: the payload on stdin, KEEL_TASK_ID,
    /// KEEL_TASK_ATTEMPT and KEEL_QUEUE in its environment. The lease is extended while it
    /// runs; exit 0 completes the task with its stdout as the result, any other exit fails
    /// it with the end of its stderr. SIGINT/SIGTERM stop claiming and let running commands
    /// finish.
    Work {
        /// The queue.
        queue: String,
        /// How many commands run at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Each claim's lease, renewed every third of it while the command runs.
        #[arg(long, default_value = "60s")]
        lease: String,
        /// The name shown on tasks as their worker (default: keel-work-PID).
        #[arg(long)]
        worker: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn task_state(text: &str) -> Result<TaskState> {
    Ok(match text {
        "pending" => TaskState::Pending,
        "running" => TaskState::Running,
        "done" => TaskState::Done,
        "dead" => TaskState::Dead,
        other => bail!("{other:?} is not a task state (pending, running, done, dead)"),
    })
}

/// A result given as text: JSON if it parses, else the text as a JSON string.
pub(super) fn result_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

fn show_claimed(t: &ClaimedTask) -> String {
    let payload = match (&t.payload, &t.payload_base64) {
        (Some(p), _) => p.clone(),
        (None, Some(b)) => format!("(base64) {b}"),
        (None, None) => String::new(),
    };
    format!(
        "task {} attempt {} claim {} until {}\n{payload}",
        t.id, t.attempt, t.claim, t.lease_expires_at
    )
}

fn show_task(t: &TaskInfo) -> String {
    let mut line = format!(
        "task {} {} attempt {}/{} priority {} enqueued {}",
        t.id,
        t.state.as_str(),
        t.attempt,
        if t.max_attempts == 0 {
            "∞".to_owned()
        } else {
            t.max_attempts.to_string()
        },
        t.priority,
        t.enqueued_at
    );
    if let Some(l) = &t.lease_expires_at {
        line.push_str(&format!(" lease until {l}"));
    }
    if let Some(w) = &t.worker {
        line.push_str(&format!(" worker {w}"));
    }
    if let Some(e) = &t.last_error {
        line.push_str(&format!(" error {e:?}"));
    }
    if let Some(r) = &t.result {
        line.push_str(&format!(" result {r}"));
    }
    line
}

fn stats_table(queues: &[QueueInfo]) -> String {
    let mut out = format!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>12}\n",
        "QUEUE", "PENDING", "RUNNING", "DONE", "DEAD", "OLDEST"
    );
    for q in queues {
        let oldest = q
            .oldest_pending_age_ms
            .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        out.push_str(&format!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>12}\n",
            q.name, q.pending, q.running, q.done, q.dead, oldest
        ));
    }
    out
}

pub(super) async fn run(keel: &Client, json: bool, cmd: QueueVerb) -> Result<Exit> {
    match cmd {
        QueueVerb::Push {
            queue,
            payload,
            delay,
            priority,
            max_attempts,
            dedupe_key,
            content_type,
        } => {
            let payload = match payload.as_deref() {
                None | Some("-") => read_stdin()?,
                Some(p) => p.as_bytes().to_vec(),
            };
            let opts = EnqueueOptions {
                content_type,
                delay: duration("--delay", &delay)?,
                max_attempts,
                priority,
                dedupe_key,
            };
            let r = keel.enqueue(&queue, payload, &opts).await?;
            if json {
                print_json(
                    &serde_json::json!({"id": r.id, "revision": r.revision, "created": r.created}),
                )?;
            } else if r.created {
                println!(
                    "task {} enqueued on {queue} (revision {})",
                    r.id, r.revision
                );
            } else {
                println!(
                    "task {} already queued on {queue} with that dedupe key",
                    r.id
                );
            }
        }
        QueueVerb::Claim {
            queue,
            lease,
            wait,
            max,
            worker,
        } => {
            let opts = ClaimOptions {
                lease: duration("--lease", &lease)?,
                wait: duration("--wait", &wait)?,
                max,
                worker,
            };
            let tasks = keel.claim(&queue, &opts).await?;
            if json {
                print_json(&serde_json::json!({ "tasks": tasks }))?;
            } else {
                for t in &tasks {
                    println!("{}", show_claimed(t));
                }
            }
            if tasks.is_empty() {
                if !json {
                    eprintln!("no task became ready on {queue}");
                }
                return Ok(Exit::NotMet);
            }
        }
        QueueVerb::Complete {
            queue,
            id,
            claim,
            result,
        } => {
            let r = keel
                .complete(&queue, id, &claim, result.as_deref().map(result_value))
                .await?;
            if json {
                print_json(&r)?;
            } else {
                println!("task {id} done (revision {})", r.revision);
            }
        }
        QueueVerb::Fail {
            queue,
            id,
            claim,
            error,
            retry_in,
        } => {
            let retry_in = duration("--retry-in", &retry_in)?;
            let r = keel.fail(&queue, id, &claim, &error, retry_in).await?;
            if json {
                print_json(&r)?;
            } else if let Some(at) = &r.not_before {
                println!("task {id} failed; retried from {at}");
            } else {
                println!("task {id} failed on its last attempt: {}", r.state.as_str());
            }
        }
        QueueVerb::Extend {
            queue,
            id,
            claim,
            lease,
        } => {
            let lease = duration("--lease", &lease)?;
            let r = keel.extend(&queue, id, &claim, lease).await?;
            if json {
                print_json(&r)?;
            } else {
                let until = r.lease_expires_at.unwrap_or_default();
                println!("task {id} leased until {until}");
            }
        }
        QueueVerb::Retry { queue, id } => {
            let r = keel.retry(&queue, id).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("task {id} pending again (revision {})", r.revision);
            }
        }
        QueueVerb::Cancel { queue, id } => {
            let r = keel.cancel(&queue, id).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("task {id} deleted (revision {})", r.revision);
            }
        }
        QueueVerb::Get { queue, id, payload } => match keel.task(&queue, id, payload).await? {
            Some(t) if json => print_json(&t)?,
            Some(t) => {
                println!("{}", show_task(&t));
                if let Some(p) = &t.payload {
                    println!("{p}");
                } else if let Some(b) = &t.payload_base64 {
                    println!("(base64) {b}");
                }
            }
            None => {
                eprintln!("task {id} not found in queue {queue}");
                return Ok(Exit::NotMet);
            }
        },
        QueueVerb::Ls {
            queue: None,
            state: None,
            ..
        }
        | QueueVerb::Stats => {
            let queues = keel.queues().await?;
            if json {
                print_json(&serde_json::json!({ "queues": queues }))?;
            } else {
                print!("{}", stats_table(&queues));
            }
        }
        QueueVerb::Ls { queue: None, .. } => bail!("--state lists one queue's tasks: name it"),
        QueueVerb::Ls {
            queue: Some(queue),
            state,
            limit,
            after,
        } => {
            let opts = TaskListOptions {
                state: state.as_deref().map(task_state).transpose()?,
                limit,
                after,
                payload: false,
            };
            let page = keel.tasks(&queue, &opts).await?;
            if json {
                print_json(&page)?;
            } else {
                for t in &page.items {
                    println!("{}", show_task(t));
                }
                if page.more {
                    if let Some(last) = page.items.last() {
                        println!("… more after {} (--after {})", last.id, last.id);
                    }
                }
            }
        }
        QueueVerb::Purge { queue, state } => {
            let r = keel.purge(&queue, task_state(&state)?).await?;
            if json {
                print_json(&r)?;
            } else {
                println!("{} {state} tasks deleted from {queue}", r.deleted);
            }
        }
        QueueVerb::Work {
            queue,
            concurrency,
            lease,
            worker,
            command,
        } => {
            let lease = keel_server::parse_duration(&lease).map_err(|e| anyhow!("--lease: {e}"))?;
            let name = worker.unwrap_or_else(|| format!("keel-work-{}", std::process::id()));
            let w = Worker::new(keel.clone(), &queue)
                .lease(lease)
                .concurrency(concurrency)
                .name(&name);
            eprintln!(
                "working on {queue}: {} at a time, running {:?}",
                concurrency.max(1),
                command
            );
            let stats = w
                .run(
                    move |task| work::run_command(command.clone(), task),
                    crate::signal::interrupted(),
                )
                .await;
            eprintln!(
                "stopped: {} completed, {} failed, {} lost their claim",
                stats.completed, stats.failed, stats.lost
            );
        }
    }
    Ok(Exit::Ok)
}
