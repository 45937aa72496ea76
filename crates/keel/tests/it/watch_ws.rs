//! Watches over a WebSocket (many watches on one socket), against the real binary.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsFrame;

use crate::support::{eventually, Server};
use crate::watch::put;

pub(crate) async fn ws_connect(
    s: &Server,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/v1/watch", s.addr.replace("http://", "ws://"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

pub(crate) async fn ws_send<S>(ws: &mut S, v: Value)
where
    S: SinkExt<WsFrame> + Unpin,
    S::Error: std::fmt::Debug,
{
    ws.send(WsFrame::Text(v.to_string().into())).await.unwrap();
}

pub(crate) async fn ws_next<S>(ws: &mut S) -> Value
where
    S: StreamExt<Item = Result<WsFrame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a WebSocket message within 10 s")
            .expect("socket open")
            .unwrap();
        if let WsFrame::Text(t) = frame {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// The next message that is not a progress message.
pub(crate) async fn ws_next_content<S>(ws: &mut S) -> Value
where
    S: StreamExt<Item = Result<WsFrame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = ws_next(ws).await;
        if m.get("progress").is_none() {
            return m;
        }
    }
}

#[tokio::test]
async fn websocket_carries_many_watches_and_cancels_them() {
    let s = Server::start(&[]);
    let r1 = put(&s, "cfg/a", "1").await;
    let mut ws = ws_connect(&s).await;
    ws_send(
        &mut ws,
        json!({"op": "watch", "id": "w1", "prefix": "cfg/", "from_revision": r1}),
    )
    .await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!((&m["id"], &m["revision"]), (&json!("w1"), &json!(r1)));
    assert_eq!(m["events"][0]["key"], "cfg/a");

    ws_send(&mut ws, json!({"op": "watch", "id": "w2", "key": "other"})).await;
    // Wait until w2 has started (its first message names its start revision).
    loop {
        let m = ws_next(&mut ws).await;
        if m["id"] == "w2" {
            assert!(m["progress"].is_u64(), "{m}");
            break;
        }
    }
    let r2 = put(&s, "other", "o").await;
    let r3 = put(&s, "cfg/b", "2").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = ws_next_content(&mut ws).await;
        got.push((
            m["id"].as_str().unwrap().to_owned(),
            m["revision"].as_u64().unwrap(),
        ));
    }
    got.sort();
    assert_eq!(got, vec![("w1".to_owned(), r3), ("w2".to_owned(), r2)]);

    ws_send(&mut ws, json!({"op": "cancel", "id": "w1"})).await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!(m, json!({"id": "w1", "canceled": true}));
    put(&s, "cfg/c", "3").await;
    let r5 = put(&s, "other", "again").await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!(
        (&m["id"], &m["revision"]),
        (&json!("w2"), &json!(r5)),
        "w1 is gone"
    );

    ws_send(&mut ws, json!({"op": "cancel", "id": "nope"})).await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!(
        (&m["id"], &m["error"]["code"]),
        (&json!("nope"), &json!("watch_not_found"))
    );
    ws_send(&mut ws, json!({"op": "watch", "id": "w2", "key": "x"})).await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!(m["error"]["code"], "duplicate_watch");
    ws.send(WsFrame::Text("not json".into())).await.unwrap();
    let m = ws_next_content(&mut ws).await;
    assert_eq!(m["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn websocket_initial_snapshot_and_compacted() {
    let s = Server::start(&["--history", "5"]);
    for i in 0..10 {
        put(&s, &format!("k/{i}"), &i.to_string()).await;
    }
    let mut ws = ws_connect(&s).await;
    ws_send(
        &mut ws,
        json!({"op": "watch", "id": "snap", "prefix": "k/", "initial": true}),
    )
    .await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!((&m["id"], &m["revision"]), (&json!("snap"), &json!(10)));
    assert_eq!(m["items"].as_array().unwrap().len(), 10);
    ws_send(
        &mut ws,
        json!({"op": "watch", "id": "old", "prefix": "k/", "from_revision": 1}),
    )
    .await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!(m, json!({"id": "old", "compacted": 5}));
    // The socket and its other watch go on.
    let r = put(&s, "k/new", "n").await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!((&m["id"], &m["revision"]), (&json!("snap"), &json!(r)));
}

#[tokio::test]
async fn websocket_watch_limit_is_an_error_message_not_a_dropped_socket() {
    let s = Server::start(&["--max-watches-per-connection", "2"]);
    let mut ws = ws_connect(&s).await;
    for id in ["a", "b"] {
        ws_send(&mut ws, json!({"op": "watch", "id": id, "prefix": "cfg/"})).await;
    }
    ws_send(&mut ws, json!({"op": "watch", "id": "c", "prefix": "cfg/"})).await;
    let mut ok = 0;
    let mut refused = None;
    while ok < 2 || refused.is_none() {
        let m = ws_next(&mut ws).await;
        if m.get("error").is_some() {
            refused = Some(m);
        } else {
            ok += 1;
        }
    }
    let refused = refused.unwrap();
    assert_eq!(
        (&refused["id"], &refused["error"]["code"]),
        (&json!("c"), &json!("too_many_watches"))
    );
    assert_eq!(refused["error"]["limit"], 2);
    // Still open: the existing watches deliver.
    let r = put(&s, "cfg/x", "1").await;
    let m = ws_next_content(&mut ws).await;
    assert_eq!(m["revision"], r);
    // After a cancel there is room again.
    ws_send(&mut ws, json!({"op": "cancel", "id": "a"})).await;
    ws_send(&mut ws, json!({"op": "watch", "id": "c", "prefix": "cfg/"})).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            let m = ws_next(&mut ws).await;
            m["id"] == "c" && m.get("progress").is_some()
        })
        .await
    );
}
