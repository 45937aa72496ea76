//! keel-bench: one closed-loop load generator for keel and the stores users would otherwise
//! pick, each over its native protocol (keel: HTTP/1.1 keep-alive; etcd: gRPC; Redis: RESP;
//! NATS: JetStream KV). Latencies go into HDR histograms; each run prints one JSON line.

mod target;
mod workload;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use serde::Serialize;

use target::{
    etcd::Etcd, http::Ceiling, http::Keel, keel_ws::KeelWs, nats::Nats, redis::Redis, Client,
};
use workload::{Measured, Workload};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Target {
    /// keel's HTTP API (watches as Server-Sent Events, one connection each).
    Keel,
    /// keel's HTTP API, its watches on WebSockets (every watch of a `--watch-conns`
    /// connection on one socket).
    KeelWs,
    /// etcd v3 over gRPC.
    Etcd,
    /// Redis over RESP.
    Redis,
    /// NATS JetStream key-value.
    Nats,
    /// The bare hyper server (`ceiling`).
    Hyper,
}

#[derive(Parser, Debug)]
#[command(about = "Closed-loop load generator for keel and its peers")]
pub struct Args {
    /// Target address, host:port.
    #[arg(long)]
    addr: String,
    /// Which system is at --addr (picks the protocol).
    #[arg(long, value_enum, default_value = "keel")]
    target: Target,
    /// Name of the target in the output (default: the --target name), e.g. redis-always.
    #[arg(long)]
    label: Option<String>,
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
    /// get: assume the keys were written already (by a `load` run) instead of writing them.
    #[arg(long)]
    no_fill: bool,
    /// Distinct keys (put, get).
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Distinct counters that cas clients contend on.
    #[arg(long, default_value_t = 10)]
    cas_keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Watchers (watch-fanout).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Connections the watchers share where the protocol multiplexes (etcd).
    #[arg(long, default_value_t = 10)]
    watch_conns: usize,
    /// Writes per second (watch-fanout).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Watchers reading every change under `bench/` while a closed-loop workload runs (put
    /// with watchers attached).
    #[arg(long, default_value_t = 0)]
    watchers_attached: usize,
    /// The server's PID, to report its memory per idle watcher (watch-fanout) and its CPU
    /// use (with watchers attached).
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Serialize)]
struct Report {
    target: String,
    workload: &'static str,
    clients: usize,
    ops: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    conflicts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    watchers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_per_watcher_kib: Option<f64>,
    /// With watchers attached: change events the watchers received per second of the
    /// measured window (each write under `bench/` is one event for every watcher).
    #[serde(skip_serializing_if = "Option::is_none")]
    events_per_sec: Option<f64>,
    /// With watchers attached and `--server-pid`: the server's CPU seconds per second of the
    /// measured window, and per million events delivered in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_s_per_m_events: Option<f64>,
    /// With watchers attached: events written before the writers stopped that had not reached
    /// their watchers 1 s later, and how long after the stop the last one arrived (capped at
    /// 3 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    late_after_1s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim_p99_us: Option<f64>,
    /// CPU seconds the load generator used per wall second (1.0 = one core).
    loadgen_cpu: f64,
}

fn cpu_seconds() -> f64 {
    process_cpu_seconds("self").unwrap_or(0.0)
}

/// CPU seconds (user + system) a process has used: `pid` is a number or `self`.
pub fn process_cpu_seconds(pid: &str) -> Option<f64> {
    // utime + stime, in clock ticks (fields 14 and 15 of /proc/PID/stat).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rfind(')').map(|i| &stat[i + 2..])?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

async fn run<C: Client>(args: Arc<Args>) -> Result<()> {
    let w = args.workload;
    if w != Workload::Load && !C::supports(w) {
        bail!("target {:?} cannot run workload {}", args.target, w.name());
    }
    C::prepare(&args.addr).await?;
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.target).to_lowercase());
    let value = Bytes::from(vec![b'v'; args.value_size]);
    if w == Workload::Load || (w == Workload::Get && !args.no_fill) {
        let t = Instant::now();
        workload::fill::<C>(&args, &value).await?;
        if w == Workload::Load {
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"target": label, "workload": "load", "keys": args.keys,
                    "seconds": secs, "ops_per_sec": args.keys as f64 / secs})
            );
            return Ok(());
        }
    }
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let m: Measured = match w {
        Workload::WatchFanout => workload::watch_fanout::<C>(args.clone()).await?,
        _ => workload::closed_loop::<C>(args.clone(), value).await?,
    };
    let wall = start.elapsed().as_secs_f64();
    let report = Report {
        target: label,
        workload: w.name(),
        clients: if w == Workload::WatchFanout {
            1
        } else {
            args.clients
        },
        ops: m.ops,
        seconds: args.duration,
        ops_per_sec: m.ops as f64 / args.duration,
        p50_us: m.hist.value_at_quantile(0.50) as f64,
        p99_us: m.hist.value_at_quantile(0.99) as f64,
        p999_us: m.hist.value_at_quantile(0.999) as f64,
        max_us: m.hist.max() as f64,
        errors: m.errors,
        conflicts: (w == Workload::Cas).then_some(m.conflicts),
        watchers: match w {
            Workload::WatchFanout => Some(args.watchers),
            _ if args.watchers_attached > 0 => Some(args.watchers_attached),
            _ => None,
        },
        rss_per_watcher_kib: m.rss_per_watcher_kib,
        events_per_sec: m.fanout.as_ref().map(|f| f.events as f64 / args.duration),
        server_cpu: m
            .fanout
            .as_ref()
            .and_then(|f| f.server_cpu_s)
            .map(|s| s / args.duration),
        server_cpu_s_per_m_events: m.fanout.as_ref().and_then(|f| {
            f.server_cpu_s
                .filter(|_| f.events > 0)
                .map(|s| s / f.events as f64 * 1e6)
        }),
        late_after_1s: m.fanout.as_ref().map(|f| f.late_after_1s),
        catch_up_ms: m.fanout.as_ref().map(|f| f.catch_up.as_secs_f64() * 1e3),
        missed: (w == Workload::WatchFanout).then_some(m.missed),
        claim_p50_us: (w == Workload::TaskCycle)
            .then(|| m.claim_hist.value_at_quantile(0.50) as f64),
        claim_p99_us: (w == Workload::TaskCycle)
            .then(|| m.claim_hist.value_at_quantile(0.99) as f64),
        loadgen_cpu: (cpu_seconds() - cpu0) / wall,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    match args.target {
        Target::Keel => run::<Keel>(args).await,
        Target::KeelWs => run::<KeelWs>(args).await,
        Target::Etcd => run::<Etcd>(args).await,
        Target::Redis => run::<Redis>(args).await,
        Target::Nats => run::<Nats>(args).await,
        Target::Hyper => run::<Ceiling>(args).await,
    }
}
