//! `keel watch` run as a process: live output, resume across a server restart, compaction.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Server, KEEL};

/// A running `keel watch` whose stdout and stderr lines arrive on channels.
struct Watcher {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

impl Watcher {
    fn start(addr: &str, args: &[&str]) -> Watcher {
        let mut child = Command::new(KEEL)
            .args(["--addr", addr, "watch"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keel watch");
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().expect("stdout")));
        let err = lines(Box::new(child.stderr.take().expect("stderr")));
        Watcher { child, out, err }
    }

    fn line(&self, within: Duration) -> String {
        self.out
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("no output line within {within:?}"))
    }

    /// Waits until a stderr line contains `text`.
    fn stderr_has(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.err.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn put(s: &Server, key: &str, value: &str) -> u64 {
    let o = s.cli(&["--json", "put", key, value]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["revision"].as_u64().expect("revision")
}

#[test]
fn keel_watch_prints_changes_live_and_resumes_across_a_restart() {
    let s = Server::start_fixed_port(&[]);
    let before = put(&s, "cfg/before", "x");
    // From the next revision on, so no write can slip past before the watch is open.
    let from = (before + 1).to_string();
    let w = Watcher::start(&s.addr, &["--prefix", "cfg/", "--from-revision", &from]);
    let wait = Duration::from_secs(10);
    let r1 = put(&s, "cfg/a", "1");
    assert_eq!(w.line(wait), format!("PUT cfg/a = 1 (rev {r1})"));
    put(&s, "other", "ignored");
    let o = s.cli(&["--json", "del", "cfg/a"]);
    let r3: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        w.line(wait),
        format!("DELETE cfg/a (rev {})", r3["revision"])
    );

    let s = s.restart();
    assert!(
        w.stderr_has("connection lost", wait),
        "says the connection was lost"
    );
    // Written while the watcher is still reconnecting: it must still print them, once.
    let r4 = put(&s, "cfg/b", "2");
    let r5 = put(&s, "cfg/c", "3");
    assert_eq!(w.line(wait), format!("PUT cfg/b = 2 (rev {r4})"));
    assert_eq!(w.line(wait), format!("PUT cfg/c = 3 (rev {r5})"));
    assert!(w.stderr_has("resuming after revision", wait));
    assert!(
        w.out.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing repeated"
    );
}

#[test]
fn keel_watch_initial_json_and_key() {
    let s = Server::start(&[]);
    let r1 = put(&s, "app/a", "1");
    put(&s, "app/b", "2");
    let w = Watcher::start(&s.addr, &["--prefix", "app/", "--initial", "--json"]);
    let wait = Duration::from_secs(10);
    let snap: serde_json::Value = serde_json::from_str(&w.line(wait)).unwrap();
    assert_eq!(snap["items"][0]["key"], "app/a");
    assert_eq!(snap["items"][0]["mod_revision"], r1);
    assert_eq!(snap["items"].as_array().unwrap().len(), 2);
    let r3 = put(&s, "app/c", "3");
    let change: serde_json::Value = serde_json::from_str(&w.line(wait)).unwrap();
    assert_eq!(change["revision"], r3);
    assert_eq!(change["events"][0]["key"], "app/c");

    let k = Watcher::start(&s.addr, &["app/b", "--from-revision", "1"]);
    assert_eq!(k.line(wait), "PUT app/b = 2 (rev 2)");
}

#[test]
fn keel_watch_exits_1_when_history_is_compacted() {
    let s = Server::start(&["--history", "5"]);
    for i in 0..12 {
        put(&s, &format!("k/{i}"), "v");
    }
    let mut w = Watcher::start(&s.addr, &["--prefix", "k/", "--from-revision", "2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "keel watch did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    assert!(w.stderr_has("compacted", Duration::from_secs(1)));
}

#[test]
fn keel_watch_queue_prints_task_changes() {
    let s = Server::start(&[]);
    let push = s.cli(&["--json", "queue", "push", "jobs", "hello"]);
    let pushed: serde_json::Value = serde_json::from_slice(&push.stdout).unwrap();
    // From the push's revision, so nothing slips past before the watch is open.
    let from = pushed["revision"].to_string();
    let w = Watcher::start(&s.addr, &["--queue", "jobs", "--from-revision", &from]);
    let wait = Duration::from_secs(10);
    assert_eq!(
        w.line(wait),
        format!("TASK jobs/1 enqueued -> pending (attempt 0, rev {from})")
    );
    put(&s, "unrelated", "x");
    let claim = s.cli(&["--json", "queue", "claim", "jobs"]);
    let claimed: serde_json::Value = serde_json::from_slice(&claim.stdout).unwrap();
    let token = claimed["tasks"][0]["claim"].as_str().unwrap().to_owned();
    let line = w.line(wait);
    assert!(
        line.starts_with("TASK jobs/1 claimed -> running (attempt 1, rev "),
        "{line}"
    );
    s.cli(&["queue", "complete", "jobs", "1", "--claim", &token]);
    let line = w.line(wait);
    assert!(
        line.starts_with("TASK jobs/1 completed -> done (attempt 1, rev "),
        "{line}"
    );
    // --initial lists keys: refused with a queue.
    let out = s.cli(&["watch", "--queue", "jobs", "--initial"]);
    assert_eq!(out.status.code(), Some(2));
}
