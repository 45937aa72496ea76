//! Partitions through the fault-injecting proxies: an isolated leader, a one-way cut, and
//! slow links.

use std::time::{Duration, Instant};

use keel_client::{GetOptions, PutOptions};

use super::{Cluster, FAST};
use crate::support::{assert_error, call, eventually, http};

/// The position of a node, other than `not`, that the majority side reports as leader.
async fn new_leader(c: &Cluster, not: usize, limit: Duration) -> Option<usize> {
    let old = c.id_of(not).await;
    let mut ids = Vec::new();
    for (i, _) in c.live() {
        ids.push((i, c.id_of(i).await));
    }
    let mut found = None;
    let ok = eventually(limit, async || {
        for (i, s) in c.live() {
            if i == not {
                continue;
            }
            if let Ok(st) = s.client().cluster().await {
                if let Some(l) = st.leader.filter(|&l| l != old) {
                    found = ids.iter().find(|(_, id)| *id == l).map(|(i, _)| *i);
                    return found.is_some();
                }
            }
        }
        false
    })
    .await;
    found.filter(|_| ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_answers_no_quorum_and_the_majority_goes_on() {
    let c = Cluster::start_behind_proxies(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    c.node(leader)
        .client()
        .put("k", "before", &PutOptions::default())
        .await
        .unwrap();
    c.isolate(leader);
    // The majority elects a new leader and keeps writing.
    let next = new_leader(&c, leader, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no new leader: {}", c.logs()));
    let majority = c.node(next).client();
    let during = majority
        .put("k", "during", &PutOptions::default())
        .await
        .unwrap();
    // The isolated node never serves the old value as linearizable, and refuses writes, each
    // within its request timeout (2 s).
    let old = c.node(leader);
    let started = Instant::now();
    assert_error(
        &call(http().get(old.url("/v1/kv/k"))).await,
        503,
        "no_quorum",
    );
    assert_error(
        &call(http().put(old.url("/v1/kv/x")).body("lost?")).await,
        503,
        "no_quorum",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(call(http().get(old.url("/readyz"))).await.0, 503);
    // A stale read answers what it has, and says how old its last contact is.
    let stale = http()
        .get(old.url("/v1/kv/k?stale=true"))
        .send()
        .await
        .unwrap();
    let contact: u64 = stale.headers()["keel-last-contact"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        contact >= 500,
        "last contact {contact} ms ago, during a partition"
    );
    assert_eq!(stale.text().await.unwrap(), "before");
    // Heal: everyone converges on one state, which has the majority's write.
    c.heal();
    let (revision, _) = c
        .converged(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("no convergence: {}", c.logs()));
    assert!(revision >= during);
    let kv = old
        .client()
        .get("k", &GetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kv.value.as_deref(), Some("during"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_cut_from_the_leader_moves_leadership_and_heals() {
    let c = Cluster::start_behind_proxies(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    // The followers stop hearing the leader; it still hears them.
    for (j, p) in c.proxies.iter().enumerate() {
        if j != leader {
            p.cut_from(Cluster::ip_of(leader));
        }
    }
    let next = new_leader(&c, leader, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no new leader: {}", c.logs()));
    c.node(next)
        .client()
        .put("k", "after-cut", &PutOptions::default())
        .await
        .unwrap();
    c.heal();
    assert!(
        c.converged(Duration::from_secs(30)).await.is_some(),
        "{}",
        c.logs()
    );
    for (_, s) in c.live() {
        let kv = s.client().get("k", &GetOptions::default()).await.unwrap();
        assert_eq!(kv.and_then(|kv| kv.value).as_deref(), Some("after-cut"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_links_slow_writes_down_but_lose_nothing() {
    let c = Cluster::start_behind_proxies(3, &[]).await;
    for p in &c.proxies {
        p.delay(Duration::from_millis(30));
    }
    let mut revs = Vec::new();
    for n in 0..20 {
        let (_, s) = c.live().nth(n % 3).unwrap();
        revs.push(
            s.client()
                .put(&format!("slow/{n}"), "v", &PutOptions::default())
                .await
                .unwrap(),
        );
    }
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
    c.heal();
    assert!(
        c.converged(Duration::from_secs(30)).await.is_some(),
        "{}",
        c.logs()
    );
}
