//! Transactions over HTTP.

use serde_json::json;

use crate::support::{assert_error, call, http, Server};

#[tokio::test]
async fn compare_and_branches() {
    let s = Server::start(&[]);
    let h = http();
    call(h.put(s.url("/v1/kv/cfg/mode")).body("blue")).await;
    let txn = json!({
        "compare": [{"key": "cfg/mode", "field": "value", "op": "==", "value": "blue"},
                    {"key": "cfg/mode", "field": "mod_revision", "op": "==", "value": 1},
                    {"key": "cfg/new", "field": "exists", "op": "==", "value": false}],
        "success": [{"put": {"key": "cfg/mode", "value": "green"}},
                    {"put": {"key": "cfg/new", "value_base64": "AAE="}},
                    {"incr": {"key": "cfg/count", "by": 5}},
                    {"get": {"key": "cfg/mode"}},
                    {"get": {"key": "cfg/none"}}],
        "failure": [{"get": {"key": "cfg/mode"}}]
    });
    let (st, body) = call(h.post(s.url("/v1/txn")).json(&txn)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["succeeded"], true);
    assert_eq!(body["revision"], 2);
    assert_eq!(body["results"][0], json!({"put": {"key": "cfg/mode"}}));
    assert_eq!(
        body["results"][2],
        json!({"incr": {"key": "cfg/count", "value": 5}})
    );
    assert_eq!(body["results"][3]["get"]["item"]["value"], "green");
    assert_eq!(
        body["results"][4],
        json!({"get": {"key": "cfg/none", "item": null}})
    );
    // Every write of the branch landed at one revision.
    let (_, list) = call(h.get(s.url("/v1/kv?prefix=cfg/"))).await;
    for item in list["items"].as_array().unwrap() {
        assert_eq!(item["mod_revision"], 2, "{item}");
    }
    // The same transaction again fails its comparisons and runs the failure branch.
    let (_, body) = call(h.post(s.url("/v1/txn")).json(&txn)).await;
    assert_eq!(body["succeeded"], false);
    assert_eq!(body["revision"], 2, "a read-only branch makes no revision");
    assert_eq!(body["results"][0]["get"]["item"]["value"], "green");
}

#[tokio::test]
async fn all_or_nothing_and_validation() {
    let s = Server::start(&["--max-value-size", "100"]);
    let h = http();
    call(h.put(s.url("/v1/kv/word")).body("abc")).await;
    // The second op fails (unknown lease): the first must not be applied.
    let txn = json!({"success": [{"put": {"key": "a", "value": "1"}}, {"put": {"key": "b", "value": "2", "lease": 999}}]});
    assert_error(
        &call(h.post(s.url("/v1/txn")).json(&txn)).await,
        404,
        "lease_not_found",
    );
    let txn = json!({"success": [{"put": {"key": "a", "value": "1"}}, {"incr": {"key": "word"}}]});
    assert_error(
        &call(h.post(s.url("/v1/txn")).json(&txn)).await,
        409,
        "not_a_number",
    );
    assert_error(&call(h.get(s.url("/v1/kv/a"))).await, 404, "key_not_found");

    let dup = json!({"success": [{"put": {"key": "a", "value": "1"}}, {"delete": {"key": "a"}}]});
    assert_error(
        &call(h.post(s.url("/v1/txn")).json(&dup)).await,
        400,
        "duplicate_key",
    );
    let overlap = json!({"success": [{"put": {"key": "p/a", "value": "1"}}, {"delete_prefix": {"prefix": "p/"}}]});
    assert_error(
        &call(h.post(s.url("/v1/txn")).json(&overlap)).await,
        400,
        "duplicate_key",
    );
    let ops: Vec<_> = (0..129)
        .map(|i| json!({"get": {"key": format!("k{i}")}}))
        .collect();
    let big = json!({"success": ops});
    let got = call(h.post(s.url("/v1/txn")).json(&big)).await;
    assert_error(&got, 413, "txn_too_large");
    assert_eq!(got.1["error"]["limit"], 128);
    let ops: Vec<_> = (0..128)
        .map(|i| json!({"get": {"key": format!("k{i}")}}))
        .collect();
    let (st, _) = call(h.post(s.url("/v1/txn")).json(&json!({"success": ops}))).await;
    assert_eq!(st, 200);
    let large = json!({"success": [{"put": {"key": "a", "value": "x".repeat(101)}}]});
    assert_error(
        &call(h.post(s.url("/v1/txn")).json(&large)).await,
        413,
        "value_too_large",
    );

    for bad in [
        json!({"success": [{"frobnicate": {"key": "a"}}]}),
        json!({"compare": [{"key": "a", "field": "colour", "op": "==", "value": 1}]}),
        json!({"compare": [{"key": "a", "field": "version", "op": "~", "value": 1}]}),
        json!({"compare": [{"key": "a", "field": "version", "op": "==", "value": "one"}]}),
        json!({"success": [{"put": {"key": "a", "value": "x", "value_base64": "eA=="}}]}),
        json!({"success": [{"delete_prefix": {"prefix": ""}}]}),
        json!({"unknown": []}),
    ] {
        let got = call(h.post(s.url("/v1/txn")).json(&bad)).await;
        assert_eq!(got.0, 400, "{bad} -> {}", got.1);
    }
    assert_error(
        &call(h.post(s.url("/v1/txn")).body("{not json")).await,
        400,
        "invalid_json",
    );
    let got = call(
        h.post(s.url("/v1/txn"))
            .json(&json!({"success": [{"put": {"key": "", "value": "x"}}]})),
    )
    .await;
    assert_error(&got, 400, "invalid_key");
}

#[tokio::test]
async fn request_body_limit() {
    let s = Server::start(&["--max-request-size", "2000"]);
    let h = http();
    let ops: Vec<_> = (0..40)
        .map(|i| json!({"put": {"key": format!("key-{i}"), "value": "x".repeat(40)}}))
        .collect();
    let got = call(h.post(s.url("/v1/txn")).json(&json!({ "success": ops }))).await;
    assert_error(&got, 413, "body_too_large");
    assert_eq!(got.1["error"]["limit"], 2000);
    let got = call(
        h.post(s.url("/v1/leases"))
            .body(format!("{{\"ttl\":\"{}\"}}", " ".repeat(3000))),
    )
    .await;
    assert_error(&got, 413, "body_too_large");
    let (st, _) = call(h.post(s.url("/v1/leases")).json(&json!({"ttl": "5s"}))).await;
    assert_eq!(st, 201);
}
