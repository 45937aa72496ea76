//! `keel queue work` running a real shell command per task, and the other queue verbs.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_client::wire::TaskState;
use keel_client::{Client, EnqueueOptions};
use serde_json::json;

use crate::support::{eventually, Server, KEEL};

/// What the worker runs: the payload decides. `fail` fails, `slow` outlives a 1 s lease,
/// anything else echoes the task back as JSON.
const SCRIPT: &str = r#"p=$(cat)
case "$p" in
  fail) echo "cannot do $p" >&2; exit 3 ;;
  slow*) sleep 2.5; echo '{"slow":true}' ;;
  *) echo "{\"task\":$KEEL_TASK_ID,\"attempt\":$KEEL_TASK_ATTEMPT,\"queue\":\"$KEEL_QUEUE\",\"payload\":\"$p\"}" ;;
esac"#;

fn work(s: &Server, queue: &str) -> Child {
    Command::new(KEEL)
        .args(["--addr", &s.addr, "queue", "work", queue])
        .args([
            "--concurrency",
            "3",
            "--lease",
            "1s",
            "--worker",
            "sh-worker",
        ])
        .args(["--", "sh", "-c", SCRIPT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel queue work")
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn counts(c: &Client, queue: &str) -> (u64, u64, u64, u64) {
    match c.queue(queue).await.unwrap() {
        Some(q) => (q.pending, q.running, q.done, q.dead),
        None => (0, 0, 0, 0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_runs_a_command_per_task_extends_leases_and_stops_gracefully() {
    let s = Server::start(&[]);
    let c = s.client();
    let once = EnqueueOptions {
        max_attempts: Some(1),
        ..EnqueueOptions::default()
    };
    for payload in ["a", "b", "fail", "slow", "c"] {
        c.enqueue("jobs", payload.to_owned(), &once).await.unwrap();
    }
    let worker = work(&s, "jobs");
    assert!(
        eventually(Duration::from_secs(30), async || {
            counts(&c, "jobs").await == (0, 0, 4, 1)
        })
        .await,
        "every task finished: {:?}",
        counts(&c, "jobs").await
    );
    let a = c.task("jobs", 1, false).await.unwrap().unwrap();
    assert_eq!(
        a.result,
        Some(json!({"task": 1, "attempt": 1, "queue": "jobs", "payload": "a"}))
    );
    assert_eq!(a.worker.as_deref(), Some("sh-worker"));
    let failed = c.task("jobs", 3, true).await.unwrap().unwrap();
    assert_eq!(failed.state, TaskState::Dead);
    assert_eq!(failed.last_error.as_deref(), Some("cannot do fail"));
    assert_eq!(failed.payload.as_deref(), Some("fail"));
    // 2.5 s under a 1 s lease: extended while it ran, never put back or run twice.
    let slow = c.task("jobs", 4, false).await.unwrap().unwrap();
    assert_eq!(slow.state, TaskState::Done);
    assert_eq!(slow.attempt, 1, "extended, not redelivered");
    assert_eq!(slow.result, Some(json!({"slow": true})));

    // SIGTERM while a task runs: no new claims, the running command finishes.
    c.enqueue("jobs", "slow again".to_owned(), &once)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || {
            counts(&c, "jobs").await.1 == 1
        })
        .await,
        "the slow task is running"
    );
    terminate(&worker);
    let out = tokio::task::spawn_blocking(move || worker.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stopped: 5 completed, 1 failed, 0 lost their claim"),
        "{stderr}"
    );
    assert_eq!(
        counts(&c, "jobs").await,
        (0, 0, 5, 1),
        "the running task finished"
    );
    assert_eq!(
        c.task("jobs", 6, false).await.unwrap().unwrap().result,
        Some(json!({"slow": true}))
    );
}

#[tokio::test]
async fn queue_verbs_push_claim_finish_and_report() {
    let s = Server::start(&[]);
    let out = s.cli(&["queue", "push", "mail", "hello", "--priority", "3"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "task 1 enqueued on mail (revision 1)"
    );
    let out = s.cli_stdin(
        &["queue", "push", "mail", "-", "--max-attempts", "1"],
        b"from stdin",
    );
    assert!(out.status.success());
    let out = s.cli(&["--json", "queue", "claim", "mail", "--lease", "30s"]);
    assert!(out.status.success());
    let claimed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = &claimed["tasks"][0];
    assert_eq!(
        (task["id"].as_u64(), task["payload"].as_str()),
        (Some(1), Some("hello"))
    );
    let claim = task["claim"].as_str().unwrap();
    let out = s.cli(&[
        "queue", "extend", "mail", "1", "--claim", claim, "--lease", "1m",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = s.cli(&[
        "queue",
        "complete",
        "mail",
        "1",
        "--claim",
        claim,
        "--result",
        "{\"n\":1}",
    ]);
    assert!(out.status.success(), "{out:?}");
    // The same claim again is lost: exit 1 with the reason.
    let out = s.cli(&["queue", "complete", "mail", "1", "--claim", claim]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claim_lost"));

    let out = s.cli(&["--json", "queue", "claim", "mail"]);
    let claimed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let claim = claimed["tasks"][0]["claim"].as_str().unwrap().to_owned();
    let out = s.cli(&[
        "queue", "fail", "mail", "2", "--claim", &claim, "--error", "nope",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = s.cli(&["--json", "queue", "get", "mail", "2", "--payload"]);
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (t["state"].as_str(), t["payload"].as_str()),
        (Some("dead"), Some("from stdin"))
    );
    let out = s.cli(&["queue", "retry", "mail", "2"]);
    assert!(out.status.success());
    let out = s.cli(&["queue", "ls", "mail", "--state", "pending"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.starts_with("task 2 pending"), "{listing}");
    let out = s.cli(&["queue", "cancel", "mail", "2"]);
    assert!(out.status.success());
    let out = s.cli(&["queue", "get", "mail", "2"]);
    assert_eq!(out.status.code(), Some(1), "a missing task exits 1");
    let out = s.cli(&["queue", "claim", "mail"]);
    assert_eq!(out.status.code(), Some(1), "no task: exit 1");

    let out = s.cli(&["queue", "stats"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["mail", "0", "0", "1", "0", "-"], "{table}");
    let out = s.cli(&["queue", "purge", "mail", "--state", "done"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 done tasks deleted"));
}
