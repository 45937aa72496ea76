//! Example tests of each command family, through `Store::apply` and the reads.

use bytes::Bytes;
use keel_state::{
    Command, CommandError, Compare, CompareOp, CompareTarget, KvCommand, KvError, KvOutcome,
    LeaseCommand, LeaseError, LeaseOutcome, ListQuery, Outcome, Request, Store, StoreConfig, Txn,
    TxnError, TxnOp, TxnOpResult,
};

fn at(now_ms: u64, command: Command) -> Request {
    Request { now_ms, command }
}

fn put(key: &str, value: &str) -> Command {
    KvCommand::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
        lease: None,
        if_revision: None,
    }
    .into()
}

#[test]
fn put_get_versions() {
    let mut s = Store::new(StoreConfig::default());
    assert_eq!(
        s.apply(&at(1, put("k", "v1"))).outcome,
        Outcome::Kv(KvOutcome::Put { revision: 1 })
    );
    assert_eq!(
        s.apply(&at(2, put("other", "x"))).outcome,
        Outcome::Kv(KvOutcome::Put { revision: 2 })
    );
    assert_eq!(
        s.apply(&at(3, put("k", "v2"))).outcome,
        Outcome::Kv(KvOutcome::Put { revision: 3 })
    );
    let kv = s.get("k", None).unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 3, 2));
    assert_eq!(
        s.get("k", Some(2)).unwrap().unwrap().value,
        Bytes::from("v1")
    );
    assert_eq!(s.get("k", Some(0)).unwrap(), None);
}

#[test]
fn if_revision_guards() {
    let mut s = Store::new(StoreConfig::default());
    let create_only: Command = KvCommand::Put {
        key: "k".into(),
        value: Bytes::new(),
        lease: None,
        if_revision: Some(0),
    }
    .into();
    assert_eq!(
        s.apply(&at(1, create_only.clone())).outcome,
        Outcome::Kv(KvOutcome::Put { revision: 1 })
    );
    assert_eq!(
        s.apply(&at(1, create_only)).outcome,
        Outcome::Rejected(CommandError::Kv(KvError::RevisionMismatch {
            key: "k".into(),
            expected: 0,
            current: 1
        }))
    );
    let del: Command = KvCommand::Delete {
        key: "k".into(),
        if_revision: Some(1),
    }
    .into();
    assert_eq!(
        s.apply(&at(1, del)).outcome,
        Outcome::Kv(KvOutcome::Deleted {
            revision: 2,
            deleted: 1
        })
    );
    let del: Command = KvCommand::Delete {
        key: "k".into(),
        if_revision: None,
    }
    .into();
    assert_eq!(
        s.apply(&at(1, del)).outcome,
        Outcome::Rejected(CommandError::Kv(KvError::KeyNotFound("k".into())))
    );
    assert_eq!(s.revision(), 2);
}

#[test]
fn incr_counts_and_refuses() {
    let mut s = Store::new(StoreConfig::default());
    let incr = |by| -> Command {
        KvCommand::Incr {
            key: "n".into(),
            by,
        }
        .into()
    };
    assert_eq!(
        s.apply(&at(1, incr(5))).outcome,
        Outcome::Kv(KvOutcome::Incr {
            value: 5,
            revision: 1
        })
    );
    assert_eq!(
        s.apply(&at(1, incr(-7))).outcome,
        Outcome::Kv(KvOutcome::Incr {
            value: -2,
            revision: 2
        })
    );
    s.apply(&at(1, put("n", &i64::MAX.to_string())));
    assert_eq!(
        s.apply(&at(1, incr(1))).outcome,
        Outcome::Rejected(CommandError::Kv(KvError::Overflow("n".into())))
    );
    s.apply(&at(1, put("n", "abc")));
    assert_eq!(
        s.apply(&at(1, incr(1))).outcome,
        Outcome::Rejected(CommandError::Kv(KvError::NotANumber("n".into())))
    );
}

#[test]
fn lease_expiry_respects_keepalive_and_deletes_keys_at_one_revision() {
    let mut s = Store::new(StoreConfig::default());
    let Outcome::Lease(LeaseOutcome::Granted(l)) = s
        .apply(&at(1_000, LeaseCommand::Grant { ttl_ms: 500 }.into()))
        .outcome
    else {
        panic!("grant")
    };
    for k in ["x", "y"] {
        let c = KvCommand::Put {
            key: k.into(),
            value: Bytes::new(),
            lease: Some(l.id),
            if_revision: None,
        };
        s.apply(&at(1_000, c.into()));
    }
    assert_eq!(s.expired_leases(1_499), Vec::<u64>::new());
    assert_eq!(s.expired_leases(1_500), vec![l.id]);
    // A keepalive lands before the expiry command: the lease survives.
    s.apply(&at(1_400, LeaseCommand::KeepAlive { id: l.id }.into()));
    let out = s
        .apply(&at(1_600, LeaseCommand::Expire { ids: vec![l.id] }.into()))
        .outcome;
    assert_eq!(
        out,
        Outcome::Lease(LeaseOutcome::Expired {
            ids: vec![],
            revision: 2
        })
    );
    let applied = s.apply(&at(1_900, LeaseCommand::Expire { ids: vec![l.id] }.into()));
    assert_eq!(
        applied.outcome,
        Outcome::Lease(LeaseOutcome::Expired {
            ids: vec![l.id],
            revision: 3
        })
    );
    assert_eq!(applied.changes.unwrap().events.len(), 2);
    assert_eq!(s.key_count(), 0);
}

#[test]
fn refresh_all_gives_full_ttl_again() {
    let mut s = Store::new(StoreConfig::default());
    s.apply(&at(1_000, LeaseCommand::Grant { ttl_ms: 500 }.into()));
    s.apply(&at(10_000, LeaseCommand::RefreshAll.into()));
    assert_eq!(s.expired_leases(10_499), Vec::<u64>::new());
    assert_eq!(s.next_lease_deadline(), Some(10_500));
}

#[test]
fn txn_compare_and_branches() {
    let mut s = Store::new(StoreConfig::default());
    s.apply(&at(1, put("a", "1")));
    let txn = |v: &str| {
        Command::Txn(Txn {
            compare: vec![Compare {
                key: "a".into(),
                op: CompareOp::Equal,
                target: CompareTarget::Value(Bytes::from(v.to_owned())),
            }
            .into()],
            success: vec![
                TxnOp::Put {
                    key: "b".into(),
                    value: Bytes::from("2"),
                    lease: None,
                },
                TxnOp::Get { key: "b".into() },
            ],
            failure: vec![TxnOp::Get { key: "a".into() }],
        })
    };
    let Outcome::Txn(out) = s.apply(&at(1, txn("1"))).outcome else {
        panic!()
    };
    assert!(out.succeeded);
    assert_eq!(out.revision, 2);
    assert!(matches!(&out.results[1], TxnOpResult::Get { kv: Some(kv), .. } if kv.value == "2"));
    let Outcome::Txn(out) = s.apply(&at(1, txn("nope"))).outcome else {
        panic!()
    };
    assert!(!out.succeeded);
    assert_eq!(out.revision, 2, "a read-only branch creates no revision");
    let dup = Command::Txn(Txn {
        success: vec![
            TxnOp::Put {
                key: "a".into(),
                value: Bytes::new(),
                lease: None,
            },
            TxnOp::Delete { key: "a".into() },
        ],
        ..Txn::default()
    });
    assert_eq!(
        s.apply(&at(1, dup)).outcome,
        Outcome::Rejected(CommandError::Txn(TxnError::DuplicateKey("a".into())))
    );
    let unknown_lease = Command::Txn(Txn {
        success: vec![
            TxnOp::Put {
                key: "c".into(),
                value: Bytes::new(),
                lease: None,
            },
            TxnOp::Put {
                key: "d".into(),
                value: Bytes::new(),
                lease: Some(77),
            },
        ],
        ..Txn::default()
    });
    assert_eq!(
        s.apply(&at(1, unknown_lease)).outcome,
        Outcome::Rejected(CommandError::Lease(LeaseError::NotFound(77)))
    );
    assert_eq!(s.get("c", None).unwrap(), None);
}

#[test]
fn list_pages_by_prefix() {
    let mut s = Store::new(StoreConfig::default());
    for k in ["p/1", "p/2", "p/3", "q/1"] {
        s.apply(&at(1, put(k, "v")));
    }
    let q = ListQuery {
        prefix: "p/".into(),
        after: None,
        limit: 2,
        revision: None,
    };
    let page = s.list(&q).unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["p/1", "p/2"]
    );
    assert!(page.more);
    let q = ListQuery {
        after: Some("p/2".into()),
        ..q
    };
    let page = s.list(&q).unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(!page.more);
}

#[test]
fn corrupt_snapshots_are_refused() {
    let mut s = Store::new(StoreConfig::default());
    s.apply(&at(1, put("a", "b")));
    let bytes = s.encode_snapshot();
    assert!(Store::decode_snapshot(StoreConfig::default(), &[]).is_err());
    assert!(Store::decode_snapshot(StoreConfig::default(), &[9]).is_err());
    assert!(Store::decode_snapshot(StoreConfig::default(), &bytes[..bytes.len() - 3]).is_err());
}
