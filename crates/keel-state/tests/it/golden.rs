//! Golden bytes of every persisted format of the state machine: log payloads (`Request`, every
//! format) and store snapshots (every format).
//!
//! The fixtures under `tests/fixtures` are hex text. Files of an older format were written by
//! the builds that wrote that format and never change. Files of the current format change only on
//! purpose: run with `KEEL_BLESS=1` to rewrite them, and say why in the commit.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use keel_state::{
    Command, Compare, CompareOp, CompareTarget, Enqueue, KvCommand, LeaseCommand, ListQuery,
    QueueCommand, Request, Store, StoreConfig, TaskCompare, TaskState, Txn, TxnOp,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_hex(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()));
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}

/// Compares `bytes` with the fixture at `path`, or rewrites it under `KEEL_BLESS=1`.
fn assert_golden(path: &Path, bytes: &[u8]) {
    if std::env::var_os("KEEL_BLESS").is_some() {
        let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        hex.push('\n');
        std::fs::write(path, hex).expect("writing fixture");
        return;
    }
    assert_eq!(
        read_hex(path),
        bytes,
        "the encoding of {} changed: a persisted format moved. If on purpose, bump its \
         version, keep a decoder for the old one, and re-bless with KEEL_BLESS=1",
        path.display()
    );
}

const NOW_MS: u64 = 1_764_000_000_123;

/// One command of every kind of log formats 1 and 2, with every optional field used
/// somewhere.
fn samples() -> Vec<(&'static str, Command)> {
    let b = Bytes::from_static;
    vec![
        (
            "put",
            KvCommand::Put {
                key: "k".into(),
                value: b(b"v"),
                lease: None,
                if_revision: None,
            }
            .into(),
        ),
        (
            "put_leased_if_revision",
            KvCommand::Put {
                key: "svc/a".into(),
                value: b(b"\x00\xffhi"),
                lease: Some(7),
                if_revision: Some(0),
            }
            .into(),
        ),
        (
            "delete",
            KvCommand::Delete {
                key: "k".into(),
                if_revision: Some(3),
            }
            .into(),
        ),
        (
            "delete_prefix",
            KvCommand::DeletePrefix {
                prefix: "svc/".into(),
            }
            .into(),
        ),
        (
            "incr",
            KvCommand::Incr {
                key: "n".into(),
                by: -2,
            }
            .into(),
        ),
        (
            "txn",
            Txn {
                compare: [
                    Compare {
                        key: "a".into(),
                        op: CompareOp::Equal,
                        target: CompareTarget::ModRevision(4),
                    },
                    Compare {
                        key: "b".into(),
                        op: CompareOp::NotEqual,
                        target: CompareTarget::CreateRevision(2),
                    },
                    Compare {
                        key: "c".into(),
                        op: CompareOp::Less,
                        target: CompareTarget::Version(9),
                    },
                    Compare {
                        key: "d".into(),
                        op: CompareOp::Greater,
                        target: CompareTarget::Value(b(b"x")),
                    },
                    Compare {
                        key: "e".into(),
                        op: CompareOp::Equal,
                        target: CompareTarget::Exists(false),
                    },
                ]
                .into_iter()
                .map(Into::into)
                .collect(),
                success: vec![
                    TxnOp::Put {
                        key: "a".into(),
                        value: b(b"1"),
                        lease: Some(2),
                    },
                    TxnOp::Delete { key: "b".into() },
                    TxnOp::DeletePrefix {
                        prefix: "p/".into(),
                    },
                ],
                failure: vec![
                    TxnOp::Get { key: "a".into() },
                    TxnOp::Incr {
                        key: "n".into(),
                        by: 5,
                    },
                ],
            }
            .into(),
        ),
        ("lease_grant", LeaseCommand::Grant { ttl_ms: 10_000 }.into()),
        ("lease_keepalive", LeaseCommand::KeepAlive { id: 3 }.into()),
        ("lease_revoke", LeaseCommand::Revoke { id: 4 }.into()),
        (
            "lease_expire",
            LeaseCommand::Expire { ids: vec![1, 300] }.into(),
        ),
        ("lease_refresh_all", LeaseCommand::RefreshAll.into()),
    ]
}

#[test]
fn every_command_of_log_format_1_still_decodes() {
    for (name, command) in samples() {
        let bytes = read_hex(&fixtures().join(format!("request-v1/{name}.hex")));
        assert_eq!(bytes[0], 1, "{name}");
        let decoded = Request::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            decoded,
            Request {
                now_ms: NOW_MS,
                command
            },
            "{name}"
        );
    }
}

/// The commands that came with log format 3: queues, and transactions that compare tasks,
/// enqueue and complete.
fn samples_v3() -> Vec<(&'static str, Command)> {
    let b = Bytes::from_static;
    let enqueue = Enqueue {
        queue: "thumbs".into(),
        payload: b(b"img/1.png"),
        content_type: Some("text/plain".into()),
        delay_ms: 1_500,
        max_attempts: 3,
        priority: -2,
        dedupe_key: Some("img-1".into()),
        max_tasks: 1_000_000,
    };
    let queue = |c: QueueCommand| Command::Queue(c);
    vec![
        (
            "queue_enqueue",
            queue(QueueCommand::Enqueue(enqueue.clone())),
        ),
        (
            "queue_claim",
            queue(QueueCommand::Claim {
                queue: "thumbs".into(),
                worker: "w-1".into(),
                lease_ms: 60_000,
                max: 4,
            }),
        ),
        (
            "queue_complete",
            queue(QueueCommand::Complete {
                queue: "thumbs".into(),
                id: 7,
                claim: 42,
                result: Some(b(br#"{"ok":true}"#)),
            }),
        ),
        (
            "queue_fail",
            queue(QueueCommand::Fail {
                queue: "thumbs".into(),
                id: 7,
                claim: 42,
                error: "no such file".into(),
                retry_in_ms: Some(30_000),
            }),
        ),
        (
            "queue_extend",
            queue(QueueCommand::Extend {
                queue: "thumbs".into(),
                id: 7,
                claim: 42,
                lease_ms: 10_000,
            }),
        ),
        (
            "queue_retry",
            queue(QueueCommand::Retry {
                queue: "thumbs".into(),
                id: 7,
            }),
        ),
        (
            "queue_delete",
            queue(QueueCommand::Delete {
                queue: "thumbs".into(),
                id: 8,
            }),
        ),
        (
            "queue_purge",
            queue(QueueCommand::Purge {
                queue: "thumbs".into(),
                state: TaskState::Dead,
                max: 1_000,
            }),
        ),
        (
            "queue_expire_leases",
            queue(QueueCommand::ExpireLeases {
                tasks: vec![("thumbs".into(), 7), ("mail".into(), 1)],
            }),
        ),
        ("queue_refresh_leases", queue(QueueCommand::RefreshLeases)),
        (
            "queue_drop_done",
            queue(QueueCommand::DropDone {
                retention_ms: 86_400_000,
                max: 1_000,
            }),
        ),
        (
            "txn_tasks",
            Txn {
                compare: vec![
                    TaskCompare {
                        queue: "thumbs".into(),
                        id: 7,
                        op: CompareOp::Equal,
                        state: Some(TaskState::Running),
                    }
                    .into(),
                    TaskCompare {
                        queue: "thumbs".into(),
                        id: 9,
                        op: CompareOp::NotEqual,
                        state: None,
                    }
                    .into(),
                    Compare {
                        key: "a".into(),
                        op: CompareOp::Equal,
                        target: CompareTarget::Exists(true),
                    }
                    .into(),
                ],
                success: vec![
                    TxnOp::Enqueue(enqueue),
                    TxnOp::Complete {
                        queue: "thumbs".into(),
                        id: 7,
                        claim: 42,
                        result: None,
                    },
                ],
                failure: vec![],
            }
            .into(),
        ),
    ]
}

#[test]
fn every_command_of_log_format_2_still_decodes() {
    for (name, command) in samples() {
        let bytes = read_hex(&fixtures().join(format!("request-v2/{name}.hex")));
        assert_eq!(bytes[0], 2, "{name}");
        let decoded = Request::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            decoded,
            Request {
                now_ms: NOW_MS,
                command
            },
            "{name}"
        );
    }
}

#[test]
fn every_command_of_log_format_3_has_pinned_bytes() {
    let dir = fixtures().join("request-v3");
    std::fs::create_dir_all(&dir).expect("fixture directory");
    for (name, command) in samples().into_iter().chain(samples_v3()) {
        let request = Request {
            now_ms: NOW_MS,
            command,
        };
        let bytes = request.encode();
        assert_eq!(bytes[0], Request::FORMAT);
        assert_golden(&dir.join(format!("{name}.hex")), &bytes);
        assert_eq!(Request::decode(&bytes).expect(name), request, "{name}");
    }
}

/// The store the snapshot fixtures hold: leases granted, kept and revoked, keys with and
/// without leases, counters, deletes, and a history window shorter than the log.
fn sample_store() -> Store {
    let mut s = Store::new(StoreConfig { history: 4 });
    let mut now = 1_764_000_000_000u64;
    let put = |key: &str, value: &'static [u8], lease| KvCommand::Put {
        key: key.into(),
        value: Bytes::from_static(value),
        lease,
        if_revision: None,
    };
    let commands: Vec<Command> = vec![
        LeaseCommand::Grant { ttl_ms: 5000 }.into(),
        LeaseCommand::Grant { ttl_ms: 60_000 }.into(),
        put("a", b"1", None).into(),
        put("svc/x", b"addr", Some(1)).into(),
        put("svc/y", b"addr2", Some(2)).into(),
        KvCommand::Incr {
            key: "n".into(),
            by: 41,
        }
        .into(),
        KvCommand::Incr {
            key: "n".into(),
            by: 1,
        }
        .into(),
        KvCommand::Delete {
            key: "a".into(),
            if_revision: None,
        }
        .into(),
        LeaseCommand::Revoke { id: 1 }.into(),
        put("b", b"2", None).into(),
    ];
    for command in commands {
        now += 250;
        s.apply(&Request {
            now_ms: now,
            command,
        });
    }
    s
}

/// The sample store, then queues: tasks pending, delayed, running, done, dead and deleted,
/// with and without dedupe keys, and a transaction that enqueues.
fn sample_store_with_queues() -> Store {
    let mut s = sample_store();
    let mut now = s.now_ms();
    let enqueue = |queue: &str, payload: &'static [u8], delay_ms, dedupe: Option<&str>| Enqueue {
        queue: queue.into(),
        payload: Bytes::from_static(payload),
        content_type: Some("application/octet-stream".into()),
        delay_ms,
        max_attempts: 1,
        priority: 0,
        dedupe_key: dedupe.map(Into::into),
        max_tasks: 100,
    };
    let claim = |queue: &str| QueueCommand::Claim {
        queue: queue.into(),
        worker: "w".into(),
        lease_ms: 30_000,
        max: 1,
    };
    let mut apply = |after_ms: u64, command: Command| {
        now += after_ms;
        s.apply(&Request {
            now_ms: now,
            command,
        })
    };
    for (payload, dedupe) in [
        (&b"1"[..], Some("one")),
        (b"2", None),
        (b"3", None),
        (b"4", None),
    ] {
        apply(
            250,
            QueueCommand::Enqueue(enqueue("jobs", payload, 0, dedupe)).into(),
        );
    }
    apply(
        250,
        QueueCommand::Enqueue(enqueue("jobs", b"later", 3_600_000, None)).into(),
    );
    apply(250, claim("jobs").into()); // 1 runs
    let claimed = apply(250, claim("jobs").into()); // 2 runs
    let token = match claimed.outcome {
        keel_state::Outcome::Queue(keel_state::QueueOutcome::Claimed { revision, .. }) => revision,
        other => panic!("claim: {other:?}"),
    };
    apply(
        250,
        QueueCommand::Complete {
            queue: "jobs".into(),
            id: 2,
            claim: token,
            result: Some(Bytes::from_static(b"[1,2]")),
        }
        .into(),
    );
    apply(250, claim("jobs").into()); // 3 runs
    let expire = QueueCommand::ExpireLeases {
        tasks: vec![("jobs".into(), 3)],
    };
    apply(60_000, expire.into()); // 3 is dead: one attempt allowed
    apply(
        250,
        QueueCommand::Delete {
            queue: "jobs".into(),
            id: 4,
        }
        .into(),
    );
    apply(
        250,
        Txn {
            compare: vec![],
            success: vec![TxnOp::Enqueue(enqueue("mail", b"hi", 0, Some("m")))],
            failure: vec![],
        }
        .into(),
    );
    s
}

/// What a store shows through its API, apart from tombstones.
fn visible(s: &Store) -> impl PartialEq + std::fmt::Debug {
    let all = ListQuery {
        limit: usize::MAX,
        ..ListQuery::default()
    };
    let leases: Vec<_> = s.leases().map(|l| (l.summary(), l.keys.clone())).collect();
    let history: Vec<_> = s
        .changes_after(s.compact_revision())
        .expect("readable")
        .cloned()
        .collect();
    (
        (s.revision(), s.compact_revision(), s.now_ms()),
        s.list(&all).expect("list"),
        leases,
        history,
    )
}

#[test]
fn a_snapshot_of_format_1_still_restores() {
    let bytes = read_hex(&fixtures().join("snapshot-v1.hex"));
    assert_eq!(bytes[0], 1);
    let restored =
        Store::decode_snapshot(StoreConfig { history: 4 }, &bytes).expect("format 1 decodes");
    assert_eq!(visible(&restored), visible(&sample_store()));
    // It had no tombstones: for a revision before the snapshot, a missing key may have
    // changed, so a blocking read answers at once rather than miss its change.
    assert!(restored.key_changed_after("a", 0));
    assert!(!restored.key_changed_after("b", restored.revision()));
}

#[test]
fn a_snapshot_of_format_2_without_tombstones_still_restores() {
    let bytes = read_hex(&fixtures().join("snapshot-v2-without-tombstones.hex"));
    let restored = Store::decode_snapshot(StoreConfig { history: 4 }, &bytes).expect("decodes");
    assert_eq!(visible(&restored), visible(&sample_store()));
    assert_eq!(restored.tombstone_count(), 0);
    assert!(restored.prefix_changed_after("svc/", 0));
}

#[test]
fn a_snapshot_of_format_2_still_restores() {
    let bytes = read_hex(&fixtures().join("snapshot-v2.hex"));
    assert_eq!(bytes[0], 2);
    let restored = Store::decode_snapshot(StoreConfig { history: 4 }, &bytes).expect("decodes");
    assert_eq!(restored, sample_store());
}

#[test]
fn a_snapshot_of_format_3_without_queues_still_restores() {
    let bytes = read_hex(&fixtures().join("snapshot-v3-without-queues.hex"));
    assert_eq!(bytes[0], 3);
    let restored = Store::decode_snapshot(StoreConfig { history: 4 }, &bytes).expect("decodes");
    assert_eq!(restored, sample_store());
    assert_eq!(restored.tombstone_count(), 2, "a and svc/x were deleted");
    assert_eq!(restored.queues().len(), 0);
}

#[test]
fn a_snapshot_of_format_3_has_pinned_bytes() {
    let store = sample_store_with_queues();
    let bytes = store.encode_snapshot();
    assert_eq!(bytes[0], 3);
    assert_golden(&fixtures().join("snapshot-v3.hex"), &bytes);
    let restored = Store::decode_snapshot(StoreConfig { history: 4 }, &bytes).expect("decodes");
    assert_eq!(restored, store);
    assert_eq!(restored.tombstone_count(), 2, "a and svc/x were deleted");
    let jobs = restored.queue("jobs").expect("jobs");
    let states: Vec<_> = (1..=5).map(|id| jobs.task(id).map(|t| t.state)).collect();
    assert_eq!(
        states,
        [
            Some(TaskState::Running),
            Some(TaskState::Done),
            Some(TaskState::Dead),
            None,
            Some(TaskState::Pending)
        ]
    );
    assert_eq!(jobs.next_id(), 6);
    assert_eq!(restored.queue("mail").map(|q| q.len()), Some(1));
}

#[test]
fn a_large_snapshot_is_written_in_chunks_and_restores() {
    let mut s = Store::new(StoreConfig { history: 100 });
    for i in 0..5_000u64 {
        let put = KvCommand::Put {
            key: format!("k/{i:05}"),
            value: Bytes::from(vec![b'x'; 100 + (i % 7) as usize]),
            lease: None,
            if_revision: None,
        };
        s.apply(&Request {
            now_ms: 1_000 + i,
            command: put.into(),
        });
    }
    let streamed = s.write_snapshot(Vec::new()).expect("write");
    assert!(
        streamed.len() > 4 * 64 * 1024,
        "several chunks: {} bytes",
        streamed.len()
    );
    assert_eq!(streamed, s.encode_snapshot());
    let restored = Store::decode_snapshot(StoreConfig { history: 100 }, &streamed).expect("decode");
    assert_eq!(restored, s);
    let cut = &streamed[..streamed.len() - 10];
    assert!(Store::decode_snapshot(StoreConfig { history: 100 }, cut).is_err());
}
