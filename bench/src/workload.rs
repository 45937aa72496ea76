//! The workloads, each written once against [`Client`] and so run the same way against every
//! target. A new workload is a variant here, a `step` arm (or, for streams, a driver like
//! [`watch_fanout`]), and the client operation it needs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::ValueEnum;
use hdrhistogram::Histogram;

use crate::target::{Client, Swap, Watch};
use crate::Args;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Workload {
    /// A durable write of a random key out of `--keys`.
    Put,
    /// A (linearizable, where the target has a choice) read of a random key; every key is
    /// written once before the run.
    Get,
    /// Read-modify-write with compare-and-swap on one of `--cas-keys` counters: an op is one
    /// increment that went in, however many attempts it took.
    Cas,
    /// One writer at `--rate` writes/s to one key, `--watchers` watchers on its prefix: the
    /// latency from the write's acknowledgement to each watcher's receipt.
    WatchFanout,
    /// GET / against the ceiling server.
    Ceiling,
    /// Only write every key once (to fill a store), then report.
    Load,
    /// One task's life, each step durable: enqueue a `--value-size` payload, claim the next
    /// task (any client's), complete it. An op is the whole cycle; the claim's own latency is
    /// reported apart.
    TaskCycle,
}

/// The queue task-cycle runs use.
pub const QUEUE: &str = "bench";

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::Cas => "cas",
            Workload::WatchFanout => "watch-fanout",
            Workload::Ceiling => "ceiling",
            Workload::Load => "load",
            Workload::TaskCycle => "task-cycle",
        }
    }
}

/// What a run measured.
pub struct Measured {
    pub hist: Histogram<u64>,
    /// Claim latencies (task-cycle only).
    pub claim_hist: Histogram<u64>,
    pub ops: u64,
    pub errors: u64,
    /// Compare-and-swap attempts that lost the race (cas only).
    pub conflicts: u64,
    /// Events a watcher should have seen and did not (watch-fanout only).
    pub missed: u64,
    /// The server's resident memory per open, idle watcher, KiB (with `--server-pid`).
    pub rss_per_watcher_kib: Option<f64>,
    /// Operations that went in, warm-up included (what attached watchers must receive).
    pub all_ops: u64,
    /// What attached watchers received (closed-loop runs with `--watchers-attached`).
    pub fanout: Option<Fanout>,
}

/// What the watchers attached to a closed-loop run received.
pub struct Fanout {
    /// Change events received during the measured window.
    pub events: u64,
    /// The server's CPU seconds during the measured window (with `--server-pid`).
    pub server_cpu_s: Option<f64>,
    /// Events written before the writers stopped and not received 1 s after.
    pub late_after_1s: u64,
    /// From the writers' stop until the last event arrived (at most [`DRAIN`]).
    pub catch_up: Duration,
}

impl Measured {
    fn new() -> Result<Measured> {
        Ok(Measured {
            hist: new_histogram()?,
            claim_hist: new_histogram()?,
            ops: 0,
            errors: 0,
            conflicts: 0,
            missed: 0,
            rss_per_watcher_kib: None,
            all_ops: 0,
            fanout: None,
        })
    }

    fn add(&mut self, other: &Measured) -> Result<()> {
        self.hist.add(&other.hist)?;
        self.claim_hist.add(&other.claim_hist)?;
        self.ops += other.ops;
        self.errors += other.errors;
        self.conflicts += other.conflicts;
        self.missed += other.missed;
        self.all_ops += other.all_ops;
        Ok(())
    }
}

/// Microseconds from 1 µs to 60 s, 3 significant digits.
fn new_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

pub fn key(k: usize) -> String {
    format!("bench/{k:08}")
}

fn cas_key(k: usize) -> String {
    format!("bench-cas/{k}")
}

/// xorshift64: cheap per-client key choice.
struct Rng(u64);

impl Rng {
    fn for_client(id: usize) -> Rng {
        Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Writes every key once, `clients` connections in parallel.
pub async fn fill<C: Client>(args: &Args, value: &Bytes) -> Result<()> {
    let clients = args.clients.max(1);
    let per = args.keys.div_ceil(clients);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = args.addr.clone();
        let value = value.clone();
        let keys = args.keys;
        tasks.push(tokio::spawn(async move {
            let mut conn = C::connect(&addr).await?;
            for k in (c * per)..((c + 1) * per).min(keys) {
                conn.put(&key(k), value.clone())
                    .await
                    .with_context(|| format!("fill: write of key {k}"))?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// One step of a closed-loop workload: Ok(true) when the op counts, Ok(false) when it
/// must be retried (a lost compare-and-swap).
async fn step<C: Client>(
    conn: &mut C,
    workload: Workload,
    rng: &mut Rng,
    args: &Args,
    value: &Bytes,
) -> Result<bool> {
    match workload {
        Workload::Put => conn.put(&key(rng.below(args.keys)), value.clone()).await?,
        Workload::Get | Workload::Ceiling => {
            let k = rng.below(args.keys);
            if conn.get(&key(k)).await?.is_none() {
                bail!("key {k} is missing");
            }
        }
        Workload::Cas => {
            return Ok(conn
                .increment_if_unchanged(&cas_key(rng.below(args.cas_keys)))
                .await?
                == Swap::Done)
        }
        Workload::WatchFanout | Workload::Load | Workload::TaskCycle => {
            bail!("{} is not a step of one request", workload.name())
        }
    }
    Ok(true)
}

/// One task cycle: enqueue, claim, complete; the claim's latency.
async fn task_cycle<C: Client>(conn: &mut C, value: &Bytes) -> Result<Duration> {
    conn.enqueue(QUEUE, value.clone()).await?;
    let t = Instant::now();
    // Every client enqueues before it claims, so a task is always there to take.
    let task = conn
        .claim(QUEUE)
        .await?
        .context("no task to claim although one was enqueued")?;
    let claimed = t.elapsed();
    conn.complete(QUEUE, task).await?;
    Ok(claimed)
}

/// One closed-loop client: sends its next request as soon as the last one is answered. A
/// cas op's latency runs from its first attempt to the attempt that went in.
async fn closed_loop_client<C: Client>(
    args: Arc<Args>,
    id: usize,
    value: Bytes,
    start: Instant,
) -> Result<Measured> {
    let mut conn = C::connect(&args.addr).await?;
    let mut m = Measured::new()?;
    let mut rng = Rng::for_client(id);
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.duration);
    let mut op_start: Option<Instant> = None;
    while Instant::now() < end {
        let t = *op_start.get_or_insert_with(Instant::now);
        let mut claimed = None;
        let result = match args.workload {
            Workload::TaskCycle => task_cycle(&mut conn, &value).await.map(|c| {
                claimed = Some(c);
                true
            }),
            w => step(&mut conn, w, &mut rng, &args, &value).await,
        };
        let measured = t >= warm_end;
        match result {
            Ok(true) => {
                op_start = None;
                m.all_ops += 1;
                if measured {
                    m.ops += 1;
                    m.hist.record((t.elapsed().as_micros() as u64).max(1))?;
                    if let Some(c) = claimed {
                        m.claim_hist.record((c.as_micros() as u64).max(1))?;
                    }
                }
            }
            Ok(false) => {
                if measured {
                    m.conflicts += 1;
                }
            }
            Err(e) => {
                op_start = None;
                if measured {
                    m.errors += 1;
                }
                if m.errors <= 3 {
                    eprintln!("client {id}: {e:#}");
                }
                // A broken connection is replaced; a refused request keeps it.
                if let Ok(fresh) = C::connect(&args.addr).await {
                    conn = fresh;
                }
            }
        }
    }
    Ok(m)
}

/// Runs `args.clients` closed-loop clients for warm-up + duration, with
/// `--watchers-attached` watchers reading every change under `bench/` meanwhile: then it
/// also counts the events they receive and, after the run, waits (at most [`DRAIN`]) for
/// the ones still on their way.
///
/// The watchers run on a runtime of their own (their connections included), so that the
/// load generator's thousands of reading tasks never queue in front of its writers: the
/// writers then compete with them for the CPU as threads, not as one task among thousands.
pub async fn closed_loop<C: Client>(args: Arc<Args>, value: Bytes) -> Result<Measured> {
    let received = Arc::new(AtomicU64::new(0));
    let watch_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("watchers")
        .enable_all()
        .build()?;
    {
        let (args, received) = (args.clone(), received.clone());
        watch_runtime
            .spawn(async move {
                let watchers = open_watchers::<C>(&args, "bench/", args.watchers_attached).await?;
                for mut w in watchers {
                    let received = received.clone();
                    tokio::spawn(async move {
                        while let Ok(Some(n)) = w.drain().await {
                            received.fetch_add(n, Ordering::Relaxed);
                        }
                    });
                }
                anyhow::Ok(())
            })
            .await??;
    }
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.duration);
    let server_pid = args.server_pid;
    let server_cpu = move || server_pid.and_then(|p| crate::process_cpu_seconds(&p.to_string()));
    let window = {
        let received = received.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(warm_end.into()).await;
            let first = (received.load(Ordering::Relaxed), server_cpu());
            tokio::time::sleep_until(end.into()).await;
            (first, (received.load(Ordering::Relaxed), server_cpu()))
        })
    };
    let tasks: Vec<_> = (0..args.clients)
        .map(|id| {
            tokio::spawn(closed_loop_client::<C>(
                args.clone(),
                id,
                value.clone(),
                start,
            ))
        })
        .collect();
    let mut total = Measured::new()?;
    for t in tasks {
        total.add(&t.await??)?;
    }
    let ((events0, cpu0), (events1, cpu1)) = window.await?;
    if args.watchers_attached > 0 {
        let stopped = Instant::now();
        let expected = match args.workload {
            Workload::Put => total.all_ops * args.watchers_attached as u64,
            _ => 0,
        };
        let mut late_after_1s = None;
        let mut catch_up = DRAIN;
        while stopped.elapsed() < DRAIN {
            let got = received.load(Ordering::Relaxed);
            if got >= expected {
                catch_up = stopped.elapsed();
                break;
            }
            if late_after_1s.is_none() && stopped.elapsed() >= Duration::from_secs(1) {
                late_after_1s = Some(expected - got);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        total.fanout = Some(Fanout {
            events: events1 - events0,
            server_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
            late_after_1s: late_after_1s.unwrap_or(0),
            catch_up,
        });
    }
    watch_runtime.shutdown_background();
    Ok(total)
}

/// Opens `n` watchers on `prefix`, spread over `--watch-conns` connections where the
/// protocol multiplexes (keel opens one connection per watcher regardless).
async fn open_watchers<C: Client>(args: &Args, prefix: &str, n: usize) -> Result<Vec<C::Watch>> {
    let conns = args.watch_conns.clamp(1, n.max(1));
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns.min(n) {
        clients.push(C::connect(&args.addr).await?);
    }
    let mut watches = Vec::with_capacity(n);
    for i in 0..n {
        let client = &mut clients[i % conns];
        watches.push(
            client
                .watch(prefix)
                .await
                .with_context(|| format!("open watcher {i}"))?,
        );
    }
    Ok(watches)
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// How long watchers keep reading after the last write, for stragglers.
const DRAIN: Duration = Duration::from_secs(3);

/// The value of write number `seq`: the number in decimal, padded to `size` bytes.
fn fanout_value(seq: u64, size: usize) -> Bytes {
    let mut v = format!("{seq:020}").into_bytes();
    v.resize(size.max(20), b' ');
    Bytes::from(v)
}

fn fanout_seq(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..20)?).ok()?.parse().ok()
}

/// One writer, `args.watchers` watchers spread over `args.watch_conns` connections. Each
/// watcher notes when it received each write; afterwards every receipt is compared with the
/// moment the writer had the write's acknowledgement (a receipt before the ack counts 1 µs).
pub async fn watch_fanout<C: Client>(args: Arc<Args>) -> Result<Measured> {
    const PREFIX: &str = "bench-fanout/";
    const KEY: &str = "bench-fanout/key";
    let rss_before = args.server_pid.and_then(rss_kib);
    let watches = open_watchers::<C>(&args, PREFIX, args.watchers).await?;
    let rss_per_watcher_kib = match (rss_before, args.server_pid.and_then(rss_kib)) {
        (Some(before), Some(after)) if args.watchers > 0 => {
            Some((after - before) / args.watchers as f64)
        }
        _ => None,
    };

    let origin = Instant::now();
    let last_write = origin + Duration::from_secs_f64(args.warmup + args.duration);
    let stop_reading = last_write + DRAIN;
    let readers: Vec<_> = watches
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                let mut seen: Vec<(u64, Duration)> = Vec::new();
                loop {
                    let left = stop_reading.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, w.next()).await {
                        Err(_) | Ok(Ok(None)) => break,
                        Ok(Err(e)) => return Err(e),
                        Ok(Ok(Some(values))) => {
                            let at = origin.elapsed();
                            seen.extend(
                                values.iter().filter_map(|v| fanout_seq(v)).map(|s| (s, at)),
                            );
                        }
                    }
                }
                Ok(seen)
            })
        })
        .collect();

    // The writer: paced, each write's acknowledgement time kept by sequence number.
    let mut writer = C::connect(&args.addr).await?;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let warm_end = origin + Duration::from_secs_f64(args.warmup);
    let mut acks: Vec<Option<Duration>> = Vec::new();
    let mut errors = 0u64;
    let mut next_at = Instant::now();
    while next_at < last_write {
        tokio::time::sleep_until(next_at.into()).await;
        next_at += interval;
        let seq = acks.len() as u64;
        match writer.put(KEY, fanout_value(seq, args.value_size)).await {
            Ok(()) => acks.push((Instant::now() >= warm_end).then(|| origin.elapsed())),
            Err(e) => {
                errors += 1;
                acks.push(None);
                eprintln!("writer: {e:#}");
            }
        }
    }

    let mut m = Measured::new()?;
    m.errors = errors;
    m.rss_per_watcher_kib = rss_per_watcher_kib;
    let expected = acks.iter().filter(|a| a.is_some()).count() as u64;
    for r in readers {
        let seen = match r.await? {
            Ok(seen) => seen,
            Err(e) => {
                eprintln!("watcher: {e:#}");
                m.errors += 1;
                Vec::new()
            }
        };
        let mut got = 0u64;
        for (seq, at) in seen {
            if let Some(Some(ack)) = acks.get(seq as usize) {
                got += 1;
                let us = at.saturating_sub(*ack).as_micros() as u64;
                m.hist.record(us.max(1))?;
            }
        }
        m.ops += got;
        m.missed += expected.saturating_sub(got);
    }
    Ok(m)
}
