//! Operations: health, readiness, metrics, start-up line, configuration, shutdown.

use std::time::Duration;

use crate::support::{call, eventually, http, Server};

#[tokio::test]
async fn health_ready_and_metrics() {
    let s = Server::start(&[]);
    let h = http();
    let (st, body) = call(h.get(s.url("/healthz"))).await;
    assert_eq!((st, &body["status"]), (200, &serde_json::json!("ok")));
    let (st, body) = call(h.get(s.url("/readyz"))).await;
    assert_eq!((st, &body["ready"]), (200, &serde_json::json!(true)));
    let c = s.client();
    c.put("a", "1", &Default::default()).await.unwrap();
    c.get("a", &Default::default()).await.unwrap();
    c.lease_grant(Duration::from_secs(60)).await.unwrap();
    let text = c.metrics().await.unwrap();
    for needle in [
        "keel_http_requests_total{",
        "route=\"/v1/kv/{*key}\"",
        "keel_http_request_duration_seconds_bucket{",
        "keel_log_fsync_seconds_bucket{",
        "keel_log_fsync_batch_records_bucket{",
        "keel_log_appends_in_flight_bucket{",
        "keel_propose_batch_records_bucket{",
        "keel_propose_seconds_bucket{command=\"put\"",
        "keel_raft_commit_index ",
        "keel_raft_last_log_index ",
        "keel_raft_term ",
        "keel_raft_is_leader 1",
        "keel_raft_applied_index ",
        "keel_keys 1",
        "keel_leases 1",
        "keel_tombstones 0",
        "keel_revision 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
}

#[tokio::test]
async fn startup_line_says_what_it_runs() {
    let s = Server::start(&[]);
    let log = s.stderr.lock().unwrap().clone();
    let line = log.lines().find(|l| l.contains("keel started")).unwrap();
    for field in [
        "version=",
        "listen=127.0.0.1:",
        "data_dir=",
        "node_id=1",
        "revision=0",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[tokio::test]
async fn sigterm_finishes_writes_and_exits_zero() {
    let mut s = Server::start(&[]);
    let c = s.client();
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = progress.clone();
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..100_000u32 {
            match c
                .put(&format!("w/{i}"), format!("{i}"), &Default::default())
                .await
            {
                Ok(_) => {
                    acked.push(i);
                    seen.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                }
                Err(_) => break,
            }
        }
        acked
    });
    let writing = eventually(Duration::from_secs(10), async || {
        progress.load(std::sync::atomic::Ordering::Relaxed) >= 50
    })
    .await;
    assert!(writing, "writes are flowing before the signal");
    let status = tokio::task::spawn_blocking(move || {
        let st = s.stop();
        (st, s)
    })
    .await
    .unwrap();
    let (status, s) = status;
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(0),
        "{}",
        s.stderr.lock().unwrap()
    );
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());
    let s = s.restart();
    let c = s.client();
    for i in acked {
        assert!(
            c.get(&format!("w/{i}"), &Default::default())
                .await
                .unwrap()
                .is_some(),
            "lost w/{i}"
        );
    }
}

#[tokio::test]
async fn settings_from_env_and_toml_with_flags_winning() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("keel.toml");
    std::fs::write(&cfg, "max_value_size = 10\nhistory = 3\n").unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let data = tmp.path().join("d1");
    let s = Server::start_with_env(
        &data,
        &["--config", cfg_s],
        &[("KEEL_MAX_VALUE_SIZE", "20")],
    )
    .unwrap();
    let h = http();
    let (st, _) = call(h.put(s.url("/v1/kv/a")).body(vec![b'x'; 20])).await;
    assert_eq!(st, 200, "env beats file");
    let (st, _) = call(h.put(s.url("/v1/kv/a")).body(vec![b'x'; 21])).await;
    assert_eq!(st, 413);
    drop(s);
    let data = tmp.path().join("d2");
    let s = Server::start_with_env(
        &data,
        &["--config", cfg_s, "--max-value-size", "30"],
        &[("KEEL_MAX_VALUE_SIZE", "20")],
    )
    .unwrap();
    let (st, _) = call(h.put(s.url("/v1/kv/a")).body(vec![b'x'; 30])).await;
    assert_eq!(st, 200, "flag beats env");
    // history = 3 from the file
    for _ in 0..5 {
        call(h.put(s.url("/v1/kv/a")).body("v")).await;
    }
    let (st, _) = call(h.get(s.url("/v1/kv/a?revision=1"))).await;
    assert_eq!(st, 410);
    drop(s);

    std::fs::write(&cfg, "max_value_size = 10\nbogus = 1\n").unwrap();
    let err = Server::start_in(&tmp.path().join("d3"), &["--config", cfg_s]).unwrap_err();
    assert_eq!(err.status.and_then(|s| s.code()), Some(2));
    assert!(err.stderr.contains("invalid config file"), "{}", err.stderr);
}

#[tokio::test]
async fn one_data_dir_one_process() {
    let s = Server::start(&[]);
    let err = Server::start_in(&s.data_dir, &[]).unwrap_err();
    assert_eq!(err.status.and_then(|s| s.code()), Some(2));
    assert!(
        err.stderr.contains("in use by another keel process"),
        "{}",
        err.stderr
    );
}
