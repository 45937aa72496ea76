//! keel-bench: a closed-loop load generator. Each client holds one keep-alive HTTP/1.1
//! connection and sends its next request as soon as the previous one is answered. Latencies
//! go into HDR histograms; each run prints one JSON line.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Workload {
    /// PUT /v1/kv/bench/{k}: a durable write.
    Put,
    /// GET /v1/kv/bench/{k}: a linearizable read (keys are written first).
    Get,
    /// GET / against the ceiling server.
    Ceiling,
    /// Only write every key once (to fill a store), then report.
    Load,
}

#[derive(Parser, Debug)]
#[command(about = "Closed-loop HTTP load generator for keel")]
struct Args {
    /// Target address, host:port.
    #[arg(long)]
    addr: String,
    /// What to run.
    #[arg(long, value_enum)]
    workload: Workload,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Label for the target in the output.
    #[arg(long, default_value = "keel")]
    target: String,
}

#[derive(Serialize)]
struct Report {
    target: String,
    workload: String,
    clients: usize,
    ops: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    errors: u64,
    loadgen_cpu: f64,
}

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            sender,
            host: addr.to_owned(),
        })
    }

    /// Sends one request; true on a 2xx answer.
    async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Result<bool> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host)
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await?;
        Ok(ok)
    }
}

/// xorshift64: cheap per-client key choice.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (fields 14 and 15 of /proc/self/stat).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn path_for(w: Workload, key: usize) -> String {
    match w {
        Workload::Ceiling => "/".into(),
        _ => format!("/v1/kv/bench/{key:08}"),
    }
}

async fn fill(args: &Args, value: &Bytes) -> Result<()> {
    let per = args.keys.div_ceil(args.clients.max(1));
    let mut tasks = Vec::new();
    for c in 0..args.clients.max(1) {
        let addr = args.addr.clone();
        let value = value.clone();
        let keys = args.keys;
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            for k in (c * per)..((c + 1) * per).min(keys) {
                if !conn
                    .send(Method::PUT, &format!("/v1/kv/bench/{k:08}"), value.clone())
                    .await?
                {
                    bail!("fill: PUT of key {k} failed");
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn client(
    args: std::sync::Arc<Args>,
    id: usize,
    value: Bytes,
    start: Instant,
) -> Result<(Histogram<u64>, u64, u64)> {
    let mut conn = Conn::open(&args.addr).await?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.duration);
    let (mut ops, mut errors) = (0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let key = rng.below(args.keys);
        let (method, body) = match args.workload {
            Workload::Put => (Method::PUT, value.clone()),
            _ => (Method::GET, Bytes::new()),
        };
        let t = Instant::now();
        let ok = conn.send(method, &path_for(args.workload, key), body).await;
        let us = t.elapsed().as_micros() as u64;
        if t >= warm_end {
            match ok {
                Ok(true) => {
                    ops += 1;
                    hist.record(us.max(1))?;
                }
                Ok(false) => errors += 1,
                Err(_) => {
                    errors += 1;
                    conn = Conn::open(&args.addr).await?;
                }
            }
        }
    }
    Ok((hist, ops, errors))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = std::sync::Arc::new(Args::parse());
    let value = Bytes::from(vec![b'v'; args.value_size]);
    if matches!(args.workload, Workload::Get | Workload::Load) {
        let t = Instant::now();
        fill(&args, &value).await?;
        if args.workload == Workload::Load {
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"target": args.target, "workload": "load", "keys": args.keys, "seconds": secs, "ops_per_sec": args.keys as f64 / secs})
            );
            return Ok(());
        }
    }
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|id| tokio::spawn(client(args.clone(), id, value.clone(), start)))
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ops, mut errors) = (0, 0);
    for t in tasks {
        let (h, o, e) = t.await??;
        hist.add(&h)?;
        ops += o;
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    let report = Report {
        target: args.target.clone(),
        workload: format!("{:?}", args.workload).to_lowercase(),
        clients: args.clients,
        ops,
        seconds: args.duration,
        ops_per_sec: ops as f64 / args.duration,
        p50_us: hist.value_at_quantile(0.50) as f64,
        p99_us: hist.value_at_quantile(0.99) as f64,
        p999_us: hist.value_at_quantile(0.999) as f64,
        max_us: hist.max() as f64,
        errors,
        loadgen_cpu: (cpu_seconds() - cpu0) / wall,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
