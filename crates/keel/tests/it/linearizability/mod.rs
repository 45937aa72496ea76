//! Linearizability under faults: six clients do put, get and compare-and-swap on three keys
//! through different nodes of a three-node cluster, while a nemesis kills, pauses and
//! partitions nodes for over 30 seconds; the recorded history goes through the checker.

mod checker;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{Entry, Op, Verdict};
use serde_json::json;

use crate::cluster::{Cluster, FAST};
use crate::support::http;

const CLIENTS: usize = 6;
const KEYS: [&str; 3] = ["lin/a", "lin/b", "lin/c"];
/// How long the clients run while the nemesis works.
const RUN: Duration = Duration::from_secs(32);
/// Longest a client waits for one answer; past it the operation's result is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(4);

/// A small deterministic generator (xorshift), so that a failing run can be read again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One client's operation against `base`: returns the op as it completed, `Err(Some(op))` if
/// its result is unknown, `Err(None)` if it certainly did nothing.
async fn run_op(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    kind: u64,
    value: String,
    expect: Option<String>,
) -> Result<Op, Option<Op>> {
    match kind {
        // get
        0 => {
            let resp =
                tokio::time::timeout(OP_TIMEOUT, http.get(format!("{base}/v1/kv/{key}")).send())
                    .await;
            let Ok(Ok(resp)) = resp else { return Err(None) };
            match resp.status().as_u16() {
                200 => match resp.text().await {
                    Ok(v) => Ok(Op::Get { found: Some(v) }),
                    Err(_) => Err(None),
                },
                404 => Ok(Op::Get { found: None }),
                _ => Err(None),
            }
        }
        // put
        1 => {
            let unknown = Op::PutUnknown {
                value: value.clone(),
            };
            let req = http.put(format!("{base}/v1/kv/{key}")).body(value.clone());
            match tokio::time::timeout(OP_TIMEOUT, req.send()).await {
                Ok(Ok(r)) if r.status() == 200 => Ok(Op::Put { value }),
                Ok(Err(e)) if e.is_connect() => Err(None),
                _ => Err(Some(unknown)),
            }
        }
        // compare-and-swap
        _ => {
            let expect = expect.unwrap_or_default();
            let body = json!({
                "compare": [{"key": key, "field": "value", "op": "==", "value": expect}],
                "success": [{"put": {"key": key, "value": value}}],
            });
            let unknown = Op::CasUnknown {
                expect: expect.clone(),
                value: value.clone(),
            };
            let req = http.post(format!("{base}/v1/txn")).json(&body);
            match tokio::time::timeout(OP_TIMEOUT, req.send()).await {
                Ok(Ok(r)) if r.status() == 200 => {
                    let Ok(answer) = r.json::<serde_json::Value>().await else {
                        return Err(Some(unknown));
                    };
                    match answer["succeeded"].as_bool() {
                        Some(swapped) => Ok(Op::Cas {
                            expect,
                            value,
                            swapped,
                        }),
                        None => Err(Some(unknown)),
                    }
                }
                Ok(Err(e)) if e.is_connect() => Err(None),
                _ => Err(Some(unknown)),
            }
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_history_under_kills_pauses_and_partitions_is_linearizable() {
    let mut c = Cluster::start_behind_proxies(3, FAST).await;
    let addrs: Vec<String> = c.live().map(|(_, s)| s.addr.clone()).collect();
    let origin = Instant::now();
    let micros = move || origin.elapsed().as_micros() as u64;
    let history = Arc::new(Mutex::new(Vec::<Entry>::new()));
    let stop_at = Instant::now() + RUN;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let base = addrs[id % addrs.len()].clone();
            let history = history.clone();
            tokio::spawn(async move {
                let http = http();
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1));
                let mut last_seen: Vec<Option<String>> = vec![None; KEYS.len()];
                for seq in 0..1_000_000u64 {
                    if Instant::now() > stop_at {
                        break;
                    }
                    let k = rng.below(KEYS.len() as u64) as usize;
                    let kind = rng.below(3);
                    let value = format!("c{id}-{seq}");
                    let invoked = micros();
                    let result =
                        run_op(&http, &base, KEYS[k], kind, value, last_seen[k].clone()).await;
                    let returned = micros();
                    // Paced, as a service's clients are: a few dozen operations a second
                    // each, and a pause after a failure before trying again.
                    let (op, returned) = match result {
                        Ok(op) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            (op, Some(returned))
                        }
                        Err(Some(op)) => {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            (op, None)
                        }
                        Err(None) => {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue;
                        }
                    };
                    match &op {
                        Op::Get { found } => last_seen[k] = found.clone(),
                        Op::Put { value } => last_seen[k] = Some(value.clone()),
                        _ => {}
                    }
                    history.lock().unwrap().push(Entry {
                        key: KEYS[k].to_owned(),
                        op,
                        invoked,
                        returned,
                    });
                }
            })
        })
        .collect();
    // The nemesis: a fault every few seconds, each undone before the next.
    let mut faults = Vec::new();
    let mut rng = Rng(42);
    while Instant::now() + Duration::from_secs(4) < stop_at {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let victim = rng.below(3) as usize;
        match rng.below(3) {
            0 => {
                faults.push(format!("kill -9 node {victim}"));
                let old = c.kill(victim);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                c.restart(victim, old);
            }
            1 => {
                faults.push(format!("pause node {victim}"));
                let pid = c.node(victim).pid();
                signal(pid, "-STOP");
                tokio::time::sleep(Duration::from_millis(2000)).await;
                signal(pid, "-CONT");
            }
            _ => {
                faults.push(format!("isolate node {victim}"));
                c.isolate(victim);
                tokio::time::sleep(Duration::from_millis(2500)).await;
                c.heal();
            }
        }
    }
    for client in clients {
        client.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    let done = history.iter().filter(|e| e.returned.is_some()).count();
    eprintln!(
        "linearizability: {} operations ({done} answered), faults: {}",
        history.len(),
        faults.join(", ")
    );
    assert!(
        done > 200,
        "too few operations answered: {done}: {}",
        c.logs()
    );
    assert!(faults.len() >= 5, "{faults:?}");
    for key in KEYS {
        let ops: Vec<_> = history.iter().filter(|e| e.key == key).collect();
        let unknown = ops.iter().filter(|e| e.returned.is_none()).count();
        eprintln!(
            "  {key}: {} operations, {unknown} with unknown results",
            ops.len()
        );
    }
    let started = Instant::now();
    let verdict = checker::check(&history, 20_000_000);
    eprintln!("  checked in {} ms", started.elapsed().as_millis());
    assert_eq!(verdict, Verdict::Linearizable, "faults: {faults:?}");
    // And the cluster ends in one state.
    assert!(
        c.converged(Duration::from_secs(30)).await.is_some(),
        "{}",
        c.logs()
    );
}
