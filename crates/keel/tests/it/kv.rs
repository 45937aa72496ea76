//! Keys: put, get, delete, ranges, past revisions, counters, limits and error codes.

use std::time::Duration;

use serde_json::json;

use crate::support::{assert_error, call, http, Server};

#[tokio::test]
async fn put_get_raw_and_json() {
    let s = Server::start(&[]);
    let h = http();
    let (st, body) = call(h.put(s.url("/v1/kv/app/db/url")).body("postgres://x")).await;
    assert_eq!((st, body), (200, json!({"revision": 1})));
    let (st, _) = call(h.put(s.url("/v1/kv/other")).body("o")).await;
    assert_eq!(st, 200);
    let (st, body) = call(h.put(s.url("/v1/kv/app/db/url")).body("postgres://y")).await;
    assert_eq!((st, body), (200, json!({"revision": 3})));

    let resp = h.get(s.url("/v1/kv/app/db/url")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hd = resp.headers().clone();
    assert_eq!(hd["keel-mod-revision"], "3");
    assert_eq!(hd["keel-create-revision"], "1");
    assert_eq!(hd["keel-version"], "2");
    assert_eq!(hd["keel-store-revision"], "3");
    assert!(hd.get("keel-lease").is_none());
    assert_eq!(resp.bytes().await.unwrap(), "postgres://y");

    let (st, body) = call(h.get(s.url("/v1/kv/app/db/url?format=json"))).await;
    assert_eq!(st, 200);
    assert_eq!(
        body,
        json!({"key":"app/db/url","value":"postgres://y","create_revision":1,"mod_revision":3,"version":2,"lease":null})
    );
    let (st, body) = call(
        h.get(s.url("/v1/kv/app/db/url"))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!((st, &body["value"]), (200, &json!("postgres://y")));

    // Binary values come back as base64 in JSON and byte-exact raw.
    let bin: Vec<u8> = vec![0, 159, 146, 150, 255];
    call(h.put(s.url("/v1/kv/bin")).body(bin.clone())).await;
    let (_, body) = call(h.get(s.url("/v1/kv/bin?format=json"))).await;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body["value_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bin);
    assert!(body.get("value").is_none());
    let raw = h
        .get(s.url("/v1/kv/bin"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw.to_vec(), bin);

    // Keys with spaces, unicode and percent-encoding.
    let (st, _) = call(h.put(s.url("/v1/kv/caf%C3%A9/a%20b")).body("x")).await;
    assert_eq!(st, 200);
    let kv = s
        .client()
        .get("café/a b", &Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kv.value.as_deref(), Some("x"));

    assert_error(
        &call(h.get(s.url("/v1/kv/missing"))).await,
        404,
        "key_not_found",
    );
    assert_error(
        &call(h.get(s.url("/v1/kv/app?format=xml"))).await,
        400,
        "invalid_query",
    );
}

#[tokio::test]
async fn conditional_writes() {
    let s = Server::start(&[]);
    let h = http();
    let (st, _) = call(h.put(s.url("/v1/kv/lock?if_revision=0")).body("me")).await;
    assert_eq!(st, 200);
    let got = call(h.put(s.url("/v1/kv/lock?if_revision=0")).body("you")).await;
    assert_error(&got, 412, "revision_mismatch");
    assert_eq!(got.1["error"]["current_revision"], 1);
    let (st, body) = call(h.put(s.url("/v1/kv/lock?if_revision=1")).body("me2")).await;
    assert_eq!((st, body), (200, json!({"revision": 2})));
    let got = call(h.delete(s.url("/v1/kv/lock?if_revision=1"))).await;
    assert_error(&got, 412, "revision_mismatch");
    assert_eq!(got.1["error"]["current_revision"], 2);
    let (st, body) = call(h.delete(s.url("/v1/kv/lock?if_revision=2"))).await;
    assert_eq!((st, body), (200, json!({"revision": 3, "deleted": 1})));
    assert_error(
        &call(h.delete(s.url("/v1/kv/lock"))).await,
        404,
        "key_not_found",
    );
    // A refused write does not move the revision.
    let (_, body) = call(h.put(s.url("/v1/kv/x")).body("1")).await;
    assert_eq!(body, json!({"revision": 4}));
}

#[tokio::test]
async fn past_revisions_and_compaction() {
    let s = Server::start(&["--history", "5"]);
    let h = http();
    for i in 1..=10 {
        call(h.put(s.url("/v1/kv/k")).body(format!("v{i}"))).await;
    }
    let raw = h.get(s.url("/v1/kv/k?revision=7")).send().await.unwrap();
    assert_eq!(raw.headers()["keel-mod-revision"], "7");
    assert_eq!(raw.bytes().await.unwrap(), "v7");
    let (_, body) = call(h.get(s.url("/v1/kv?prefix=k&revision=5"))).await;
    assert_eq!(body["revision"], 5);
    assert_eq!(body["items"][0]["value"], "v5");
    let got = call(h.get(s.url("/v1/kv/k?revision=2"))).await;
    assert_error(&got, 410, "compacted");
    assert_eq!(got.1["error"]["compact_revision"], 5);
    let got = call(h.get(s.url("/v1/kv/k?revision=11"))).await;
    assert_error(&got, 400, "future_revision");
    assert_eq!(got.1["error"]["current_revision"], 10);
    // Deleted key: visible in the past, absent now.
    call(h.delete(s.url("/v1/kv/k"))).await;
    assert_error(&call(h.get(s.url("/v1/kv/k"))).await, 404, "key_not_found");
    let (st, _) = call(h.get(s.url("/v1/kv/k?revision=10&format=json"))).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn ranges_list_and_delete() {
    let s = Server::start(&[]);
    let h = http();
    for k in ["svc/b", "svc/a", "svc/c", "svd/x", "sv"] {
        call(h.put(s.url(&format!("/v1/kv/{k}"))).body(k.to_owned())).await;
    }
    let (st, body) = call(h.get(s.url("/v1/kv?prefix=svc/&limit=2"))).await;
    assert_eq!(st, 200);
    let keys: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["svc/a", "svc/b"]);
    assert_eq!(body["more"], true);
    assert_eq!(body["items"][0]["value"], "svc/a");
    let (_, body) = call(h.get(s.url("/v1/kv?prefix=svc/&after=svc/b&keys_only=true"))).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(body["items"][0]["key"], "svc/c");
    assert!(body["items"][0].get("value").is_none());
    assert_eq!(body["more"], false);
    let (_, body) = call(h.get(s.url("/v1/kv"))).await;
    assert_eq!(body["items"].as_array().unwrap().len(), 5);

    assert_error(
        &call(h.get(s.url("/v1/kv?limit=0"))).await,
        400,
        "invalid_query",
    );
    assert_error(
        &call(h.get(s.url("/v1/kv?limit=10001"))).await,
        400,
        "invalid_query",
    );
    assert_error(
        &call(h.get(s.url("/v1/kv?limit=ten"))).await,
        400,
        "invalid_query",
    );
    assert_error(
        &call(h.get(s.url("/v1/kv?prefx=a"))).await,
        400,
        "invalid_query",
    );

    let (st, body) = call(h.delete(s.url("/v1/kv?prefix=svc/"))).await;
    assert_eq!((st, body), (200, json!({"revision": 6, "deleted": 3})));
    let (_, body) = call(h.delete(s.url("/v1/kv?prefix=nothing/"))).await;
    assert_eq!(body, json!({"revision": 6, "deleted": 0}));
    assert_error(
        &call(h.delete(s.url("/v1/kv?prefix="))).await,
        400,
        "invalid_argument",
    );
    assert_error(
        &call(h.delete(s.url("/v1/kv"))).await,
        400,
        "invalid_argument",
    );
    let (_, body) = call(h.delete(s.url("/v1/kv?all=true"))).await;
    assert_eq!(body, json!({"revision": 7, "deleted": 2}));
}

#[tokio::test]
async fn counters() {
    let s = Server::start(&[]);
    let h = http();
    let (st, body) = call(h.post(s.url("/v1/incr/views"))).await;
    assert_eq!((st, body), (200, json!({"value": 1, "revision": 1})));
    let (_, body) = call(h.post(s.url("/v1/incr/views?by=41"))).await;
    assert_eq!(body["value"], 42);
    let (_, body) = call(h.post(s.url("/v1/incr/views?by=-50"))).await;
    assert_eq!(body["value"], -8);
    let raw = h
        .get(s.url("/v1/kv/views"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw, "-8");
    call(h.put(s.url("/v1/kv/word")).body("hello")).await;
    assert_error(
        &call(h.post(s.url("/v1/incr/word"))).await,
        409,
        "not_a_number",
    );
    call(h.put(s.url("/v1/kv/big")).body(i64::MAX.to_string())).await;
    assert_error(&call(h.post(s.url("/v1/incr/big"))).await, 409, "overflow");
    assert_error(
        &call(h.post(s.url("/v1/incr/big?by=x"))).await,
        400,
        "invalid_query",
    );

    // Concurrent increments are never lost.
    let c = s.client();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    c.incr("hits", 1).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.incr("hits", 0).await.unwrap().value, 200);
}

#[tokio::test]
async fn limits_and_bad_input_never_500() {
    let s = Server::start(&["--max-value-size", "1024"]);
    let h = http();
    let (st, _) = call(h.put(s.url("/v1/kv/ok")).body(vec![b'a'; 1024])).await;
    assert_eq!(st, 200);
    let got = call(h.put(s.url("/v1/kv/big")).body(vec![b'a'; 1025])).await;
    assert_error(&got, 413, "value_too_large");
    assert_eq!(got.1["error"]["limit"], 1024);
    // The refused body is never read, so the answer tells the client not to reuse the
    // connection (the server closes it).
    let resp = h
        .put(s.url("/v1/kv/big"))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["connection"], "close");
    // A body without Content-Length is cut off at the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'z'; 400])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    assert_error(
        &call(h.put(s.url("/v1/kv/chunked")).body(stream)).await,
        413,
        "value_too_large",
    );
    assert_error(
        &call(h.get(s.url("/v1/kv/big"))).await,
        404,
        "key_not_found",
    );

    let long = "k".repeat(4097);
    assert_error(
        &call(h.put(s.url(&format!("/v1/kv/{long}"))).body("v")).await,
        400,
        "invalid_key",
    );
    assert_error(
        &call(h.put(s.url("/v1/kv/a%0Ab")).body("v")).await,
        400,
        "invalid_key",
    );
    assert_error(
        &call(h.put(s.url("/v1/kv/")).body("v")).await,
        400,
        "invalid_key",
    );
    assert_error(
        &call(h.put(s.url("/v1/kv/a%FFb")).body("v")).await,
        400,
        "invalid_key",
    );
    assert_error(
        &call(h.get(s.url("/v1/leases/%FF"))).await,
        400,
        "invalid_key",
    );
    assert_error(
        &call(h.put(s.url("/v1/kv/a?lease=abc")).body("v")).await,
        400,
        "invalid_query",
    );
    assert_error(
        &call(h.put(s.url("/v1/kv/a?bogus=1")).body("v")).await,
        400,
        "invalid_query",
    );
    assert_error(&call(h.get(s.url("/v1/nope"))).await, 404, "not_found");
    assert_error(
        &call(h.patch(s.url("/v1/kv/a"))).await,
        405,
        "method_not_allowed",
    );
    assert_error(
        &call(h.post(s.url("/raft/append"))).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn the_client_does_blocking_and_stale_reads_and_health() {
    let s = Server::start(&[]);
    let c = s.client();
    assert!(c.healthy().await.unwrap());
    let rev = c.put("cfg/a", "1", &Default::default()).await.unwrap();
    let read = {
        let c = c.clone();
        tokio::spawn(async move {
            let opts = keel_client::GetOptions {
                wait: Some(Duration::from_secs(20)),
                after_revision: Some(rev),
                ..Default::default()
            };
            c.get("cfg/a", &opts).await
        })
    };
    // Nothing changed after `rev`: the read is still waiting (negative, so a fixed look).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !read.is_finished(),
        "a blocking read answered without a change"
    );
    let second = c.put("cfg/a", "2", &Default::default()).await.unwrap();
    let kv = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read wakes for its change")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (kv.value.as_deref(), kv.mod_revision),
        (Some("2"), second),
        "the blocking read answered with the change it waited for"
    );
    let opts = keel_client::ListOptions {
        prefix: "cfg/".into(),
        stale: true,
        wait: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let page = c.list(&opts).await.unwrap();
    assert_eq!(
        page.items.len(),
        1,
        "a wait that runs out answers with the current page"
    );
}
