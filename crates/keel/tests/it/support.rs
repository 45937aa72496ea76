//! Starting and stopping real `keel` processes on loopback ports, and small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEEL: &str = env!("CARGO_BIN_EXE_keel");

/// A running `keel serve` with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub stderr: Arc<Mutex<String>>,
    _tmp: Option<Arc<tempfile::TempDir>>,
}

/// Why a server did not start.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

impl Server {
    /// Starts a server in a fresh temporary data directory.
    pub fn start(args: &[&str]) -> Server {
        let tmp = Arc::new(tempfile::tempdir().expect("temp dir"));
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, args).expect("server starts");
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `dir`, waiting (at most 60 s) for its start-up line.
    pub fn start_in(dir: &Path, args: &[&str]) -> Result<Server, StartFailure> {
        Self::start_with_env(dir, args, &[])
    }

    pub fn start_with_env(
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, StartFailure> {
        let mut cmd = Command::new(KEEL);
        cmd.arg("serve").arg("--data-dir").arg(dir);
        if !args.contains(&"--listen") && !env.iter().any(|(k, _)| *k == "KEEL_LISTEN") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args)
            .env_remove("KEEL_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn keel");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr pipe");
        let log = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if line.contains("keel started") {
                    if let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("listen="))
                    {
                        let _ = tx.send(addr.trim_matches('"').to_owned());
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(20)) {
                return Ok(Server {
                    child: Some(child),
                    addr: format!("http://{addr}"),
                    data_dir: dir.to_owned(),
                    args: args.iter().map(|s| s.to_string()).collect(),
                    stderr,
                    _tmp: None,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                // The pipe closes when the process exits: the reader finishes draining it.
                let _ = reader.join();
                let text = stderr.lock().unwrap().clone();
                return Err(StartFailure {
                    status: Some(status),
                    stderr: text,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let text = stderr.lock().unwrap().clone();
                return Err(StartFailure {
                    status: None,
                    stderr: text,
                });
            }
        }
    }

    /// Starts again on the same data directory with the same arguments.
    pub fn restart(self) -> Server {
        self.restart_after(Duration::ZERO)
    }

    /// Stops gracefully, stays down for `downtime`, then starts again on the same directory.
    pub fn restart_after(mut self, downtime: Duration) -> Server {
        self.stop();
        std::thread::sleep(downtime);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut next = Server::start_in(&self.data_dir, &args).expect("restart");
        next._tmp = self._tmp.take();
        next
    }

    /// Kills with SIGKILL (a crash) and restarts on the same directory.
    pub fn crash_and_restart(self) -> Server {
        self.crash_and_restart_after(Duration::ZERO)
    }

    /// Kills with SIGKILL, stays down for `downtime`, and restarts on the same directory.
    pub fn crash_and_restart_after(mut self, downtime: Duration) -> Server {
        self.kill9();
        std::thread::sleep(downtime);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut next = Server::start_in(&self.data_dir, &args).expect("restart after crash");
        next._tmp = self._tmp.take();
        next
    }

    /// Takes over `other`'s temporary directory, so it lives as long as this server.
    pub fn adopt_tmp(&mut self, other: &mut Server) {
        if self._tmp.is_none() {
            self._tmp = other._tmp.take();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (at most `limit`) for the process to exit by itself; SIGKILL after that.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let pid = c.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(c.wait().ok());
        });
        match rx.recv_timeout(limit) {
            Ok(status) => status,
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                None
            }
        }
    }

    /// SIGTERM, then waits (at most 30 s) for the exit status; SIGKILL after that.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let pid = self.child.as_ref()?.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        self.wait_exit(Duration::from_secs(30))
    }

    pub fn client(&self) -> keel_client::Client {
        keel_client::Client::new(&self.addr).expect("client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    /// Runs a CLI verb against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        cli_at(&self.addr, args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        cli_at(&self.addr, args, Some(stdin))
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({} pid {})", self.addr, self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn cli_at(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(KEEL)
        .args(["--addr", addr])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keel cli");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("cli output")
}

/// An HTTP client for raw requests.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Sends a request and returns (status, JSON body or Null).
pub async fn call(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Asserts an error response's status and code.
pub fn assert_error(got: &(u16, serde_json::Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "status; body {}", got.1);
    assert_eq!(got.1["error"]["code"], code, "code; body {}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body {}",
        got.1
    );
}

/// Polls `check` every 20 ms until it returns true or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free port on 127.0.0.1 (free when asked; the kernel does not hand it out again soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    /// Starts a server on a fixed free port, so that `restart` keeps the address (as a
    /// browser or a reconnecting watcher would need).
    pub fn start_fixed_port(args: &[&str]) -> Server {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut all = vec!["--listen", listen.as_str()];
        all.extend_from_slice(args);
        Server::start(&all)
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// One Server-Sent Event, with its data parsed as JSON (Null if it is not JSON).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<u64>,
    pub data: serde_json::Value,
}

/// Reads Server-Sent Events from a streaming response, the way a browser does.
pub struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    /// Opens `url` with extra headers; asserts a 200 event stream.
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Sse {
        let mut req = http().get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("watch request");
        assert_eq!(resp.status(), 200, "watch {url}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        Sse {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event (events without a name, like the `retry:` preamble, are skipped);
    /// `None` when the stream ends. Panics if nothing arrives within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        let (mut name, mut id, mut data) = (String::new(), None, String::new());
        loop {
            while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                if line.is_empty() {
                    if !name.is_empty() {
                        return Some(SseEvent {
                            name,
                            id,
                            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                        });
                    }
                    (id, data) = (None, String::new());
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => name = value.to_owned(),
                    "id" => id = value.parse().ok(),
                    "data" => data.push_str(value),
                    _ => {}
                }
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
                Err(_) => panic!("no watch event within {limit:?}"),
            }
        }
    }

    /// The next event, within 10 s.
    pub async fn next(&mut self) -> Option<SseEvent> {
        self.next_within(Duration::from_secs(10)).await
    }

    /// The next `change` event (progress events are skipped).
    pub async fn next_change(&mut self) -> SseEvent {
        loop {
            let e = self.next().await.expect("stream ended before a change");
            match e.name.as_str() {
                "progress" => continue,
                "change" => return e,
                other => panic!("expected a change, got {other}: {}", e.data),
            }
        }
    }
}
