//! Forming a cluster by `--join`, serving any request on any node, status, removal and
//! leadership transfer.

use std::time::Duration;

use keel_client::{GetOptions, PutOptions};

use super::{Cluster, FAST};
use crate::support::{call, eventually, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_and_any_node_serves_any_request() {
    let c = Cluster::start(3, FAST).await;
    // Every member was promoted: one leader, two voters, no learners.
    let status = c.node(1).client().cluster().await.unwrap();
    let mut roles: Vec<_> = status.members.iter().map(|m| m.role.as_str()).collect();
    roles.sort_unstable();
    assert_eq!(roles, ["leader", "voter", "voter"], "{status:?}");
    for m in &status.members {
        assert!(
            m.healthy && m.lag.is_some() && m.applied_index.is_some(),
            "{m:?}"
        );
    }
    // A write on any node is forwarded to the leader; a linearizable read on any node then
    // sees it at once.
    for (i, writer) in c.live() {
        let key = format!("from-{i}");
        let rev = writer
            .client()
            .put(&key, format!("v{i}"), &PutOptions::default())
            .await
            .unwrap();
        for (_, reader) in c.live() {
            let kv = reader
                .client()
                .get(&key, &GetOptions::default())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{key} missing on {}", reader.addr));
            assert_eq!(kv.mod_revision, rev);
            assert_eq!(kv.value.as_deref(), Some(format!("v{i}").as_str()));
        }
    }
    // A stale read answers from local state and says how fresh it is.
    let resp = http()
        .get(c.node(2).url("/v1/kv/from-0?stale=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("keel-applied-revision"));
    assert!(resp.headers().contains_key("keel-last-contact"));
    // Every node converges on the same state.
    assert!(
        c.converged(Duration::from_secs(10)).await.is_some(),
        "{}",
        c.logs()
    );
    // The CLI shows the same members.
    let out = c.node(0).cli(&["cluster", "status"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("voter").count() + text.matches("leader").count(),
        4,
        "{text}"
    );
}

#[tokio::test]
async fn peer_calls_without_the_secret_are_refused_and_logged() {
    let c = Cluster::start(1, FAST).await;
    let s = c.node(0);
    for path in ["/raft/append", "/raft/join", "/raft/nothing/here"] {
        let resp = http().post(s.url(path)).body("x").send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let resp = http()
            .post(s.url(path))
            .bearer_auth("wrong")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    assert!(
        eventually(Duration::from_secs(5), async || {
            s.stderr.lock().unwrap().contains("refused a peer call")
        })
        .await
    );
    // A node started without a secret accepts no peers at all.
    let lone = crate::support::Server::start(&[]);
    let resp = http()
        .post(lone.url("/raft/append"))
        .bearer_auth(super::SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("no cluster secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_on_request_and_a_removed_node_stops() {
    let mut c = Cluster::start(3, FAST).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let other = (0..3).find(|&i| i != leader).unwrap();
    let other_id = c.id_of(other).await;
    // Asked through a third node, leadership moves to `other`.
    let third = (0..3).find(|&i| i != leader && i != other).unwrap();
    let moved = c
        .node(third)
        .client()
        .transfer_leader(other_id)
        .await
        .unwrap();
    assert_eq!(moved.leader, other_id);
    assert_eq!(c.leader(Duration::from_secs(10)).await, Some(other));
    // Remove the third node: it stops serving and says why; the others carry on.
    let third_id = c.id_of(third).await;
    c.node(leader)
        .client()
        .remove_member(third_id)
        .await
        .unwrap();
    let mut removed = c.nodes[third].take().unwrap();
    let exit = removed.wait_exit(Duration::from_secs(20));
    assert!(exit.is_some_and(|s| !s.success()), "{exit:?}");
    assert!(removed
        .stderr
        .lock()
        .unwrap()
        .contains("removed from the cluster"));
    let status = c.node(leader).client().cluster().await.unwrap();
    assert_eq!(status.members.len(), 2, "{status:?}");
    c.node(leader)
        .client()
        .put("after-removal", "x", &PutOptions::default())
        .await
        .unwrap();
    // Its data directory is not used again.
    let again = crate::support::Server::start_in(
        &removed.data_dir,
        &removed.args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let failure = again.expect_err("a removed node's directory must not start");
    assert!(failure.stderr.contains("removed"), "{}", failure.stderr);
    // Removing an unknown member is a clear 404.
    let got = call(http().delete(c.node(leader).url("/v1/cluster/members/99"))).await;
    crate::support::assert_error(&got, 404, "member_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grows_to_five_and_shrinks_back_to_three() {
    let mut c = Cluster::start(3, FAST).await;
    c.add().await;
    c.add().await;
    let status = c.node(0).client().cluster().await.unwrap();
    let voters = status
        .members
        .iter()
        .filter(|m| m.role != "learner")
        .count();
    assert_eq!(voters, 5, "{status:?}");
    // Shrink: remove two members that do not lead.
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let leaving: Vec<usize> = (0..5).filter(|&i| i != leader).take(2).collect();
    for &i in &leaving {
        let id = c.id_of(i).await;
        c.node(leader).client().remove_member(id).await.unwrap();
        let mut gone = c.nodes[i].take().unwrap();
        assert!(gone.wait_exit(Duration::from_secs(20)).is_some());
    }
    assert!(
        c.wait_healthy(3, Duration::from_secs(20)).await,
        "{}",
        c.logs()
    );
    let rev = c
        .node(leader)
        .client()
        .put("after-shrink", "x", &PutOptions::default())
        .await
        .unwrap();
    let (converged, _) = c
        .converged(Duration::from_secs(10))
        .await
        .expect("converged");
    assert!(converged >= rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_beyond_the_voter_limit_stays_a_learner_and_serves_reads() {
    let mut flags = FAST.to_vec();
    flags.extend(["--voters", "3"]);
    let mut c = Cluster::start(3, &flags).await;
    let fourth = c.add().await;
    let status = c.node(0).client().cluster().await.unwrap();
    let learners: Vec<_> = status
        .members
        .iter()
        .filter(|m| m.role == "learner")
        .collect();
    assert_eq!(learners.len(), 1, "{status:?}");
    // A learner serves linearizable reads and forwards writes like any member.
    let learner = c.node(fourth).client();
    let rev = learner
        .put("via-learner", "x", &PutOptions::default())
        .await
        .unwrap();
    let kv = learner
        .get("via-learner", &GetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kv.mod_revision, rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_joins_far_behind_catches_up_by_snapshot() {
    let mut flags = FAST.to_vec();
    flags.extend(["--snapshot-every", "500"]);
    let mut c = Cluster::start(3, &flags).await;
    let leader = c.leader(Duration::from_secs(10)).await.expect("a leader");
    let addr = c.node(leader).addr.clone();
    // 50,000 writes, from 32 writers at once.
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let client = keel_client::Client::new(&addr).unwrap();
            tokio::spawn(async move {
                for n in 0..50_000 / 32 + 1 {
                    let i = w + n * 32;
                    if i >= 50_000 {
                        break;
                    }
                    client
                        .put(
                            &format!("bulk/{i:05}"),
                            "0123456789abcdef",
                            &PutOptions::default(),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let joined = c.add().await;
    let log = c.node(joined).stderr.lock().unwrap().clone();
    assert!(
        log.contains("installing a snapshot from the leader"),
        "{log}"
    );
    let (revision, _) = c
        .converged(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no convergence: {}", c.logs()));
    assert!(revision >= 50_000);
    let page = c
        .node(joined)
        .client()
        .list(&keel_client::ListOptions {
            prefix: "bulk/".into(),
            keys_only: true,
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 10_000);
}
