//! A real browser: headless Chromium opens a page from another origin that holds an
//! `EventSource` on a prefix, while keel restarts on the same port between writes.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it; `KEEL_CHROMIUM` names another binary).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};

use crate::support::{eventually, Server};

const PAGE: &str = r#"<!doctype html>
<html><body><pre id="log"></pre><script>
let n = 0;
function report(line) {
  const seq = n++;
  document.getElementById("log").textContent += line + "\n";
  fetch("/report", {method: "POST", body: seq + " " + line});
}
const es = new EventSource("KEEL/v1/watch?prefix=cfg/");
es.addEventListener("open", () => report("open"));
es.addEventListener("error", () => report("error"));
es.addEventListener("change", (m) => {
  const d = JSON.parse(m.data);
  for (const e of d.events) report("change " + d.revision + " " + e.type + " " + e.key + " " + (e.value || ""));
});
</script></body></html>"#;

/// Lines the page reported, in the order the page produced them.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<(u64, String)>>>);

impl Reports {
    fn lines(&self) -> Vec<String> {
        let mut v = self.0.lock().unwrap().clone();
        v.sort();
        v.into_iter().map(|(_, l)| l).collect()
    }

    fn changes(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("change "))
            .collect()
    }

    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }
}

/// Serves the page (with keel's address in it) and collects its reports.
async fn page_server(keel: &str) -> (String, Reports) {
    let reports = Reports::default();
    let page = PAGE.replace("KEEL", keel);
    let sink = reports.clone();
    let app = axum::Router::new()
        .route("/", get(move || async move { axum::response::Html(page) }))
        .route(
            "/report",
            post(move |body: String| async move {
                if let Some((seq, line)) = body.split_once(' ') {
                    if let Ok(seq) = seq.parse() {
                        sink.0.lock().unwrap().push((seq, line.to_owned()));
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, reports)
}

/// The browser process, and its profile directory (removed when the browser is dropped).
struct Browser(Child, #[allow(dead_code)] tempfile::TempDir);

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let bin = std::env::var("KEEL_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}): install Debian's chromium (.ci/run does)")
            });
        Browser(child, profile)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn put(s: &Server, key: &str, value: &str) -> u64 {
    s.client()
        .put(key, value.to_owned(), &Default::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_source_in_chromium_gets_every_change_once_across_a_restart() {
    // keel's port must be known before the page is written, and kept across the restart.
    let port = crate::support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let keel_url = format!("http://{listen}");
    let (origin, reports) = page_server(&keel_url).await;
    let s = Server::start(&["--listen", &listen, "--cors-origins", &origin]);
    let _browser = Browser::open(&format!("{origin}/"));
    let wait = Duration::from_secs(60);
    assert!(
        eventually(wait, async || reports.count("open") >= 1).await,
        "the page's EventSource opened (reports: {:?})",
        reports.lines()
    );

    let a = put(&s, "cfg/a", "1").await;
    put(&s, "elsewhere", "x").await;
    let b = put(&s, "cfg/b", "2").await;
    assert!(eventually(wait, async || reports.changes().len() >= 2).await);

    // Restart on the same port; the browser reconnects by itself with Last-Event-ID.
    let s = s.restart();
    let c = put(&s, "cfg/c", "3").await;
    let d = put(&s, "cfg/a", "4").await;
    assert!(
        eventually(wait, async || reports.changes().len() >= 4).await,
        "changes after the restart arrived (reports: {:?})",
        reports.lines()
    );
    assert!(
        reports.count("open") >= 2,
        "it reconnected: {:?}",
        reports.lines()
    );
    // Give a duplicate the chance to show up before checking there is none.
    let e = put(&s, "cfg/e", "5").await;
    assert!(eventually(wait, async || reports.changes().len() >= 5).await);
    assert_eq!(
        reports.changes(),
        vec![
            format!("change {a} put cfg/a 1"),
            format!("change {b} put cfg/b 2"),
            format!("change {c} put cfg/c 3"),
            format!("change {d} put cfg/a 4"),
            format!("change {e} put cfg/e 5"),
        ],
        "every change once, in order"
    );
}
