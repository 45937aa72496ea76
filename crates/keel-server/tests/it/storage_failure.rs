//! One failed fsync stops the node: no write after it is acknowledged, and `serve` returns
//! the error that the binary prints before exiting with status 2.

use std::sync::Arc;
use std::time::Duration;

use keel_client::{Client, PutOptions};
use keel_raft::{Node, NodeConfig};
use keel_server::ServerConfig;
use keel_storage::sim::SimDisk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_one_failed_fsync_no_write_is_acknowledged_and_serving_stops() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SimDisk::new();
    let config = NodeConfig::new(1, dir.path().to_owned(), "127.0.0.1:1".into());
    let node = Node::start_on(Arc::new(disk.clone()), config)
        .await
        .unwrap();
    assert!(node.wait_ready(Duration::from_secs(10)).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(keel_server::serve(
        Arc::new(node),
        listener,
        ServerConfig::default(),
        None,
        std::future::pending(),
    ));
    let client = Client::new(&addr).unwrap();
    let opts = PutOptions::default();
    for i in 0..5 {
        client
            .put(&format!("before/{i}"), "ok", &opts)
            .await
            .unwrap();
    }

    disk.fail_sync_after(1);
    let mut first_failure = None;
    let mut acknowledged_after = Vec::new();
    for i in 0..50 {
        match client.put(&format!("after/{i}"), "x", &opts).await {
            Ok(rev) if first_failure.is_some() => acknowledged_after.push((i, rev)),
            Ok(_) => {}
            Err(e) => {
                first_failure.get_or_insert((i, e.to_string()));
            }
        }
    }
    let (first, why) = first_failure.expect("a write fails once a sync has failed");
    assert!(
        first <= 1,
        "the write whose sync failed is refused (first failure: {first})"
    );
    assert!(
        acknowledged_after.is_empty(),
        "writes acknowledged after the failed sync: {acknowledged_after:?} (first error: {why})"
    );

    let result = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("serving stops by itself")
        .unwrap();
    let err = result.expect_err("serve reports the storage failure");
    let message = err.to_string();
    assert!(message.contains("raft stopped"), "{message}");
    assert!(
        message.contains("sync"),
        "the error names the failed sync: {message}"
    );
}
