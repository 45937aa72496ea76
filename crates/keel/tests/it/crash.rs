//! Crash test: concurrent writers, `kill -9` at random moments, restart; every acknowledged
//! write must be there with its value, every time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::Server;

const WRITERS: usize = 8;

/// Cycles to run: 20 by default (as CI runs), more with KEEL_CRASH_CYCLES.
fn cycles() -> usize {
    std::env::var("KEEL_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A small xorshift generator; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let seed = std::env::var("KEEL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("crash test seed {seed} (set KEEL_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let started = Instant::now();
    // key -> value of every acknowledged write
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut s = Server::start(&["--snapshot-every", "500", "--segment-size", "65536"]);
    let n = cycles();
    for cycle in 0..n {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "crash test over its time budget"
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let c = s.client();
            let acked = acked.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 100_000 {
                    // Overwrite a small key space too, so versions and deletes get exercised.
                    let key = if i.is_multiple_of(3) {
                        format!("hot/{w}")
                    } else {
                        format!("c{cycle}/w{w}/{i}")
                    };
                    let value = format!("{cycle}-{w}-{i}");
                    match c.put(&key, value.clone(), &Default::default()).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(key, value);
                        }
                        Err(_) => break,
                    }
                    i += 1;
                }
            }));
        }
        let run_for = Duration::from_millis(50 + rng.next() % 400);
        tokio::time::sleep(run_for).await;
        s.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
        let next = Server::start_in(&s.data_dir, &args);
        let next = match next {
            Ok(n) => n,
            Err(e) => panic!("cycle {cycle}: server did not start after kill -9: {e:?}"),
        };
        s = swap_keep_tmp(s, next);
        let snapshot = acked.lock().unwrap().clone();
        verify(&s, &snapshot, cycle).await;
    }
    eprintln!(
        "{n} crash cycles, {} acknowledged keys checked, {:?}",
        acked.lock().unwrap().len(),
        started.elapsed()
    );
}

/// Moves the old server's temporary directory guard into the new one.
fn swap_keep_tmp(mut old: Server, mut new: Server) -> Server {
    new.adopt_tmp(&mut old);
    new
}

async fn verify(s: &Server, acked: &BTreeMap<String, String>, cycle: usize) {
    let c = s.client();
    let mut found = BTreeMap::new();
    let mut opts = keel_client::ListOptions {
        limit: Some(10_000),
        ..Default::default()
    };
    loop {
        let page = c.list(&opts).await.unwrap();
        opts.revision = Some(page.revision);
        opts.after = page.items.last().map(|kv| kv.key.clone());
        for kv in page.items {
            found.insert(kv.key.clone(), kv.value.unwrap_or_default());
        }
        if !page.more {
            break;
        }
    }
    for (k, v) in acked {
        let got = found.get(k);
        // A later unacknowledged write to the same key may have landed; for hot keys accept
        // any value written by the same writer at or after the acknowledged one.
        let ok = match got {
            Some(g) if g == v => true,
            Some(g) if k.starts_with("hot/") => later_or_equal(g, v),
            _ => false,
        };
        assert!(ok, "cycle {cycle}: acknowledged {k}={v} but found {got:?}");
    }
}

/// True if value `g` ("cycle-writer-i") was written no earlier than `v` by the same writer.
fn later_or_equal(g: &str, v: &str) -> bool {
    let parse = |s: &str| -> Option<(u64, u64, u64)> {
        let mut it = s.split('-').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    match (parse(g), parse(v)) {
        (Some(a), Some(b)) => a.1 == b.1 && (a.0, a.2) >= (b.0, b.2),
        _ => false,
    }
}
