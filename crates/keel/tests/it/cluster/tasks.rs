//! Task queues across a leader kill: every task completed by exactly one claim, and a worker
//! that keeps its lease alive through the failover keeps its task.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::wire::{Code, TaskState};
use keel_client::{ClaimOptions, Client, EnqueueOptions};

use super::{Cluster, FAST};
use crate::support::eventually;

const TASKS: u64 = 300;
const WORKERS: usize = 6;

/// Whether an error leaves the outcome unknown (a transport error or a lost quorum: the
/// write may or may not have taken effect), so that the call is tried again elsewhere.
fn ambiguous(e: &keel_client::Error) -> bool {
    e.code().is_none()
        || matches!(
            e.code(),
            Some(Code::NoQuorum | Code::Unavailable | Code::NotLeader)
        )
}

/// Calls `f` on the clients in turn, from `start`, until one answers with something other
/// than an ambiguous error; at most 40 tries over about 20 s. Also says whether an earlier
/// try was ambiguous.
async fn on_any_noting<T, F, Fut>(
    clients: &[Client],
    start: usize,
    mut f: F,
) -> (keel_client::Result<T>, bool)
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = keel_client::Result<T>>,
{
    let mut last = None;
    for i in 0..40 {
        match f(clients[(start + i) % clients.len()].clone()).await {
            Err(e) if ambiguous(&e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return (other, last.is_some()),
        }
    }
    (Err(last.expect("tried at least once")), true)
}

async fn on_any<T, F, Fut>(clients: &[Client], start: usize, f: F) -> keel_client::Result<T>
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = keel_client::Result<T>>,
{
    on_any_noting(clients, start, f).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_stay_exactly_once_and_leases_honest_across_a_leader_kill() {
    let mut c = Cluster::start(3, FAST).await;
    let clients: Vec<Client> = c.live().map(|(_, s)| s.client()).collect();
    for i in 0..TASKS {
        let payload = format!("t{i}");
        on_any(&clients, 0, |k| {
            let payload = payload.clone();
            async move { k.enqueue("work", payload, &EnqueueOptions::default()).await }
        })
        .await
        .unwrap();
    }
    // One task held through the failover by a worker that keeps extending a short lease.
    let holder_lease = Duration::from_secs(2);
    on_any(&clients, 1, |k| async move {
        k.enqueue("held", "keep me".to_owned(), &EnqueueOptions::default())
            .await
    })
    .await
    .unwrap();
    let held = on_any(&clients, 1, |k| async move {
        k.claim(
            "held",
            &ClaimOptions {
                lease: Some(holder_lease),
                ..ClaimOptions::default()
            },
        )
        .await
    })
    .await
    .unwrap()
    .remove(0);
    let stop = Arc::new(tokio::sync::Notify::new());
    let keeper = {
        let clients = clients.clone();
        let claim = held.claim.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut refused = Vec::new();
            // Bounded: at most 200 extensions, one per 400 ms (80 s).
            for round in 0..200 {
                tokio::select! {
                    _ = stop.notified() => break,
                    _ = tokio::time::sleep(Duration::from_millis(400)) => {}
                }
                let r = on_any(&clients, round, |k| {
                    let claim = claim.clone();
                    async move { k.extend("held", 1, &claim, Some(holder_lease)).await }
                })
                .await;
                if let Err(e) = r {
                    refused.push(e.to_string());
                }
            }
            refused
        })
    };

    // Workers on every node: claim, complete; a completion whose answer was lost is tried
    // again with the same claim (it then either succeeds or is refused as lost).
    let completions: Arc<Mutex<BTreeMap<u64, Vec<String>>>> = Arc::default();
    // Completions that were refused as lost after a try whose outcome was unknown: the
    // unknown try may have been the one that completed the task.
    let maybe: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let clients = clients.clone();
        let completions = completions.clone();
        let maybe = maybe.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let opts = ClaimOptions {
                lease: Some(Duration::from_secs(3)),
                wait: Some(Duration::from_secs(1)),
                ..ClaimOptions::default()
            };
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut idle = 0;
            while Instant::now() < deadline && idle < 8 {
                let claimed = on_any(&clients, w, |k| {
                    let opts = opts.clone();
                    async move { k.claim("work", &opts).await }
                });
                let Ok(tasks) = claimed.await else {
                    continue;
                };
                if tasks.is_empty() {
                    idle += 1;
                    continue;
                }
                idle = 0;
                for t in tasks {
                    let (r, unknown) = on_any_noting(&clients, w + 1, |k| {
                        let (id, claim) = (t.id, t.claim.clone());
                        async move { k.complete("work", id, &claim, None).await }
                    })
                    .await;
                    match r {
                        Ok(_) => {
                            completions
                                .lock()
                                .unwrap()
                                .entry(t.id)
                                .or_default()
                                .push(t.claim.clone());
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) if e.code() == Some(Code::ClaimLost) && unknown => {
                            maybe.lock().unwrap().insert(t.id, t.claim.clone());
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // Its lease ran out (its claim answer was lost in the failover, or
                        // the work took too long): another worker has it.
                        Err(e) if e.code() == Some(Code::ClaimLost) => {}
                        Err(e) => panic!("complete {}: {e}", t.id),
                    }
                }
            }
        }));
    }

    // Kill the leader once a third of the work is done.
    assert!(
        eventually(Duration::from_secs(60), async || {
            done.load(std::sync::atomic::Ordering::Relaxed) >= TASKS / 3
        })
        .await
    );
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let killed = c.kill(leader);
    for w in workers {
        w.await.unwrap();
    }
    stop.notify_one();
    let refused = keeper.await.unwrap();
    assert!(refused.is_empty(), "extensions refused: {refused:?}");

    let survivor = c.live().map(|(_, s)| s.client()).next().unwrap();
    let q = survivor.queue("work").await.unwrap().unwrap();
    assert_eq!(
        (q.pending, q.running, q.done),
        (0, 0, TASKS),
        "every task done\n{}",
        c.logs()
    );
    let completions = completions.lock().unwrap().clone();
    let maybe = maybe.lock().unwrap().clone();
    for id in 1..=TASKS {
        let sure = completions.get(&id).map_or(0, Vec::len);
        assert!(
            sure <= 1,
            "task {id} completed by claims {:?}",
            completions[&id]
        );
        assert!(
            sure == 1 || maybe.contains_key(&id),
            "task {id} is done, but no worker's completion of it took effect"
        );
    }
    // The held task was never put back: still its first attempt, and its claim completes it.
    let t = survivor.task("held", 1, false).await.unwrap().unwrap();
    assert_eq!((t.state, t.attempt), (TaskState::Running, 1));
    on_any(&clients, 0, |k| {
        let claim = held.claim.clone();
        async move { k.complete("held", 1, &claim, None).await }
    })
    .await
    .unwrap();
    drop(killed);
}
