//! Losing the leader under load, and losing the quorum.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::{GetOptions, PutOptions};

use super::{Cluster, FAST};
use crate::support::{call, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_loses_no_acknowledged_write_and_catches_up_on_restart() {
    let mut c = Cluster::start(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let addrs: Vec<String> = c.live().map(|(_, s)| s.addr.clone()).collect();
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    let first_after = Arc::new(Mutex::new(None::<Instant>));
    let stop_at = Instant::now() + Duration::from_secs(6);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let addrs = addrs.clone();
            let acked = acked.clone();
            let killed_at = killed_at.clone();
            let first_after = first_after.clone();
            tokio::spawn(async move {
                let clients: Vec<_> = addrs
                    .iter()
                    .map(|a| keel_client::Client::new(a).unwrap())
                    .collect();
                for n in 0..100_000u64 {
                    if Instant::now() > stop_at {
                        break;
                    }
                    let key = format!("w{w}-{n}");
                    let client = &clients[(n as usize + w) % clients.len()];
                    let sent = Instant::now();
                    if let Ok(rev) = client.put(&key, "v", &PutOptions::default()).await {
                        acked.lock().unwrap().push((key, rev));
                        let killed = *killed_at.lock().unwrap();
                        if killed.is_some_and(|k| sent > k) {
                            first_after.lock().unwrap().get_or_insert_with(Instant::now);
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    // Kill the leader once the writers are well under way.
    let under_way = crate::support::eventually(Duration::from_secs(20), async || {
        acked.lock().unwrap().len() >= 200
    })
    .await;
    assert!(under_way, "the writers did not get going: {}", c.logs());
    let old = c.kill(leader);
    *killed_at.lock().unwrap() = Some(Instant::now());
    for w in writers {
        w.await.unwrap();
    }
    let killed = killed_at.lock().unwrap().unwrap();
    let recovered = first_after
        .lock()
        .unwrap()
        .map(|t| t.duration_since(killed))
        .unwrap_or_else(|| panic!("no write succeeded after the kill: {}", c.logs()));
    eprintln!(
        "failover: first acknowledged write {} ms after the kill",
        recovered.as_millis()
    );
    // Liveness only (timings are measured in bench/): a new leader took over.
    assert!(recovered < Duration::from_secs(10), "{}", c.logs());
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    // Every acknowledged write is on every surviving node.
    for (_, s) in c.live() {
        let client = s.client();
        for (key, rev) in &acked {
            let kv = client.get(key, &GetOptions::default()).await.unwrap();
            assert_eq!(
                kv.map(|kv| kv.mod_revision),
                Some(*rev),
                "{key} on {}",
                s.addr
            );
        }
    }
    // The killed node comes back (its --join is ignored now) and catches up.
    c.restart(leader, old);
    assert!(
        c.wait_healthy(3, Duration::from_secs(30)).await,
        "{}",
        c.logs()
    );
    assert!(
        c.converged(Duration::from_secs(30)).await.is_some(),
        "{}",
        c.logs()
    );
    let back = c.node(leader).client();
    for (key, rev) in acked.iter().step_by(97) {
        let kv = back.get(key, &GetOptions::default()).await.unwrap();
        assert_eq!(
            kv.map(|kv| kv.mod_revision),
            Some(*rev),
            "{key} on the restarted node"
        );
    }
    let back = c.node(leader);
    if back.args.iter().any(|a| a == "--join") {
        assert!(back.stderr.lock().unwrap().contains("--join is ignored"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_quorum_answers_no_quorum_and_never_a_stale_linearizable_read() {
    let mut c = Cluster::start(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    c.node(leader)
        .client()
        .put("k", "before", &PutOptions::default())
        .await
        .unwrap();
    // Kill both followers: the leader alone has no quorum.
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let _down: Vec<_> = followers.iter().map(|&i| c.kill(i)).collect();
    let s = c.node(leader);
    let started = Instant::now();
    let put = call(http().put(s.url("/v1/kv/k")).body("after")).await;
    crate::support::assert_error(&put, 503, "no_quorum");
    let get = call(http().get(s.url("/v1/kv/k"))).await;
    crate::support::assert_error(&get, 503, "no_quorum");
    // Both within the request timeout (2 s each), with some slack for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(10));
    // /readyz says so; a stale read still answers, from local state.
    let ready = call(http().get(s.url("/readyz"))).await;
    assert_eq!(ready.0, 503, "{}", ready.1);
    let stale = http()
        .get(s.url("/v1/kv/k?stale=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert!(stale.headers().contains_key("keel-applied-revision"));
    assert_eq!(stale.text().await.unwrap(), "before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_on_a_new_port_is_found_there() {
    let mut c = Cluster::start(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let moved = (0..3).find(|&i| i != leader).unwrap();
    let mut old = c.kill(moved);
    // Its arguments ask for port 0: it comes back on another port.
    let args: Vec<&str> = old.args.iter().map(String::as_str).collect();
    let mut next = crate::support::Server::start_in(&old.data_dir, &args).expect("restart");
    next.adopt_tmp(&mut old);
    assert_ne!(next.addr, old.addr);
    let new_addr = next.addr.clone();
    c.nodes[moved] = Some(next);
    let rev = c
        .node(leader)
        .client()
        .put("after-move", "x", &PutOptions::default())
        .await
        .unwrap();
    assert!(
        c.wait_healthy(3, Duration::from_secs(30)).await,
        "{}",
        c.logs()
    );
    let status = c.node(leader).client().cluster().await.unwrap();
    assert!(
        status.members.iter().any(|m| m.address == new_addr),
        "{status:?}"
    );
    let kv = c
        .node(moved)
        .client()
        .get("after-move", &GetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", c.logs()))
        .unwrap();
    assert_eq!(kv.mod_revision, rev);
}
