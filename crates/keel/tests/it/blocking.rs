//! Blocking reads (`wait` and `after_revision` on a key or a prefix), against the real binary.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{assert_error, call, http, Server};
use crate::watch::{delete, put};

/// Starts a blocking read and reports whether it has answered by each check.
pub(crate) async fn pending_after(
    task: &tokio::task::JoinHandle<(u16, Value)>,
    wait: Duration,
) -> bool {
    tokio::time::sleep(wait).await;
    !task.is_finished()
}

#[tokio::test]
async fn blocking_reads_wake_only_for_their_key_or_prefix() {
    let s = Server::start(&[]);
    let r = put(&s, "cfg/a", "1").await;
    put(&s, "cfg/b", "1").await;
    let c = http();

    // A key.
    let url = s.url(&format!(
        "/v1/kv/cfg/a?wait=20s&after_revision={r}&format=json"
    ));
    let key_read = tokio::spawn(call(c.get(url)));
    assert!(pending_after(&key_read, Duration::from_millis(300)).await);
    put(&s, "cfg/b", "2").await;
    put(&s, "cfg/ab", "2").await;
    assert!(
        pending_after(&key_read, Duration::from_millis(300)).await,
        "woken by another key"
    );
    let changed = put(&s, "cfg/a", "2").await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), key_read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (status, &body["value"], &body["mod_revision"]),
        (200, &json!("2"), &json!(changed))
    );

    // A prefix.
    let url = s.url(&format!(
        "/v1/kv?prefix=cfg/&wait=20s&after_revision={changed}"
    ));
    let list_read = tokio::spawn(call(c.get(url)));
    assert!(pending_after(&list_read, Duration::from_millis(300)).await);
    put(&s, "other/x", "1").await;
    assert!(
        pending_after(&list_read, Duration::from_millis(300)).await,
        "woken by another prefix"
    );
    let changed = delete(&s, "cfg/b").await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), list_read)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status, &body["revision"]), (200, &json!(changed)));

    // A change already made after after_revision answers at once.
    let t = Instant::now();
    let (status, _) =
        call(c.get(s.url(&format!("/v1/kv/cfg/a?wait=20s&after_revision={r}")))).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));

    // No change: the current state when the wait runs out.
    let t = Instant::now();
    let (status, body) = call(c.get(s.url("/v1/kv/cfg/a?wait=400ms&format=json"))).await;
    assert_eq!((status, &body["value"]), (200, &json!("2")));
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );

    assert_error(
        &call(c.get(s.url("/v1/kv/cfg/a?after_revision=3"))).await,
        400,
        "invalid_query",
    );
    assert_error(
        &call(c.get(s.url("/v1/kv/cfg/a?wait=forever"))).await,
        400,
        "invalid_query",
    );
    assert_error(
        &call(c.get(s.url("/v1/kv?prefix=cfg/&wait=1s&revision=1"))).await,
        400,
        "invalid_query",
    );
}

/// Blocking reads whose revision is older than the history window are still exact: a server
/// with `--history 4`, then hundreds of unrelated writes.
#[tokio::test]
async fn blocking_reads_are_exact_beyond_the_history_window() {
    let s = Server::start(&["--history", "4"]);
    let c = http();
    let seen = put(&s, "cfg/a", "1").await;
    put(&s, "cfg/gone", "1").await;
    let deleted = delete(&s, "cfg/gone").await;
    let before_delete = deleted - 1;
    for i in 0..300 {
        put(&s, &format!("other/{i}"), "x").await;
    }
    let (_, now) = call(c.get(s.url("/v1/kv?prefix=cfg/&limit=1"))).await;
    assert!(now["revision"].as_u64().unwrap() > seen + 300);

    // Nothing under cfg/a or cfg/b changed after `seen`... except the delete of cfg/gone,
    // which the prefix sees and the key does not.
    let key = tokio::spawn(call(c.get(s.url(&format!(
        "/v1/kv/cfg/a?wait=20s&after_revision={deleted}&format=json"
    )))));
    let prefix = tokio::spawn(call(c.get(s.url(&format!(
        "/v1/kv?prefix=cfg/&wait=20s&after_revision={deleted}"
    )))));
    let absent = tokio::spawn(call(
        c.get(s.url(&format!("/v1/kv/cfg/never?wait=20s&after_revision={seen}"))),
    ));
    for read in [&key, &prefix, &absent] {
        assert!(
            pending_after(read, Duration::from_millis(500)).await,
            "a read older than the history answered without a change"
        );
    }
    put(&s, "other/more", "x").await;
    assert!(pending_after(&key, Duration::from_millis(300)).await);
    assert!(pending_after(&prefix, Duration::from_millis(300)).await);

    // A change older than the window, but after the read's revision, answers at once.
    for url in [
        format!("/v1/kv?prefix=cfg/&wait=20s&after_revision={before_delete}"),
        format!("/v1/kv/cfg/a?wait=20s&after_revision={}", seen - 1),
    ] {
        let t = Instant::now();
        let (status, _) = call(c.get(s.url(&url))).await;
        assert_eq!(status, 200, "{url}");
        assert!(t.elapsed() < Duration::from_secs(10), "{url} waited");
    }
    let t = Instant::now();
    let (status, _) = call(c.get(s.url(&format!(
        "/v1/kv/cfg/gone?wait=20s&after_revision={before_delete}"
    ))))
    .await;
    assert_eq!(status, 404, "the deleted key answers at once, absent");
    assert!(t.elapsed() < Duration::from_secs(10));

    // And the waiting reads wake for their own change.
    let changed = put(&s, "cfg/a", "2").await;
    for read in [key, prefix] {
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let revision = body
            .get("mod_revision")
            .or_else(|| body.get("revision"))
            .and_then(Value::as_u64);
        assert_eq!(revision, Some(changed), "{body}");
    }
    put(&s, "cfg/never", "now").await;
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), absent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}
