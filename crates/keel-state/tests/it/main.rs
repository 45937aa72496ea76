//! Property tests of the state machine, through its public API only (examples: `examples.rs`;
//! persisted bytes: `golden.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

use std::collections::BTreeMap;

use bytes::Bytes;
use keel_state::{
    Command, Compare, CompareOp, CompareTarget, Condition, Enqueue, KeyValue, KvCommand,
    LeaseCommand, ListQuery, Outcome, QueueCommand, ReadError, Request, Store, StoreConfig,
    TaskCompare, TaskState, Txn, TxnOp,
};
use proptest::prelude::*;

mod examples;
mod golden;

const KEYS: &[&str] = &["a", "b", "c", "a/x", "a/y", "b/z", "n"];

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from),
        (-5i64..5).prop_map(|n| Bytes::from(n.to_string())),
        Just(Bytes::from(i64::MAX.to_string())),
    ]
}

fn lease() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![3 => Just(None), 1 => (1u64..5).prop_map(Some)]
}

fn queue_name() -> impl Strategy<Value = String> {
    prop::sample::select(&["q1", "q2"][..]).prop_map(str::to_owned)
}

fn task_state() -> impl Strategy<Value = TaskState> {
    prop::sample::select(TaskState::ALL.to_vec())
}

fn enqueue() -> impl Strategy<Value = Enqueue> {
    (
        queue_name(),
        value(),
        prop_oneof![3 => Just(0u64), 1 => 1u64..3000],
        0u32..3,
        -1i64..2,
        prop::option::of(prop::sample::select(&["d1", "d2"][..])),
        prop_oneof![4 => Just(1_000u64), 1 => 1u64..4],
    )
        .prop_map(
            |(queue, payload, delay_ms, max_attempts, priority, dedupe, max_tasks)| Enqueue {
                queue,
                payload,
                content_type: None,
                delay_ms,
                max_attempts,
                priority,
                dedupe_key: dedupe.map(str::to_owned),
                max_tasks,
            },
        )
}

/// A claim token: a revision, so that some name the task's current claim.
fn token() -> impl Strategy<Value = u64> {
    0u64..40
}

fn queue_command() -> impl Strategy<Value = QueueCommand> {
    prop_oneof![
        4 => enqueue().prop_map(QueueCommand::Enqueue),
        3 => (queue_name(), 0u64..2000, 0u32..3).prop_map(|(queue, lease_ms, max)| QueueCommand::Claim {
            queue, worker: "w".into(), lease_ms, max,
        }),
        2 => (queue_name(), 1u64..6, token()).prop_map(|(queue, id, claim)| QueueCommand::Complete {
            queue, id, claim, result: Some(Bytes::from_static(b"1")),
        }),
        2 => (queue_name(), 1u64..6, token(), prop::option::of(0u64..2000)).prop_map(
            |(queue, id, claim, retry_in_ms)| QueueCommand::Fail {
                queue, id, claim, error: "e".into(), retry_in_ms,
            }
        ),
        1 => (queue_name(), 1u64..6, token(), 0u64..2000).prop_map(|(queue, id, claim, lease_ms)| {
            QueueCommand::Extend { queue, id, claim, lease_ms }
        }),
        1 => (queue_name(), 1u64..6).prop_map(|(queue, id)| QueueCommand::Retry { queue, id }),
        1 => (queue_name(), 1u64..6).prop_map(|(queue, id)| QueueCommand::Delete { queue, id }),
        1 => (queue_name(), task_state(), 1u32..3).prop_map(|(queue, state, max)| QueueCommand::Purge {
            queue, state, max,
        }),
        2 => prop::collection::vec((queue_name(), 1u64..6), 0..3)
            .prop_map(|tasks| QueueCommand::ExpireLeases { tasks }),
        1 => Just(QueueCommand::RefreshLeases),
        1 => (0u64..3000, 1u32..3).prop_map(|(retention_ms, max)| QueueCommand::DropDone { retention_ms, max }),
    ]
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        enqueue().prop_map(TxnOp::Enqueue),
        (queue_name(), 1u64..6, token()).prop_map(|(queue, id, claim)| TxnOp::Complete {
            queue,
            id,
            claim,
            result: None,
        }),
        (key(), value(), lease()).prop_map(|(key, value, lease)| TxnOp::Put { key, value, lease }),
        key().prop_map(|key| TxnOp::Delete { key }),
        prop::sample::select(&["a/", "b/", "zz"][..]).prop_map(|p| TxnOp::DeletePrefix {
            prefix: p.to_owned()
        }),
        key().prop_map(|key| TxnOp::Get { key }),
        (key(), -3i64..3).prop_map(|(key, by)| TxnOp::Incr { key, by }),
    ]
}

fn compare() -> impl Strategy<Value = Condition> {
    let op = prop::sample::select(vec![
        CompareOp::Equal,
        CompareOp::NotEqual,
        CompareOp::Less,
        CompareOp::Greater,
    ]);
    let target = prop_oneof![
        (0u64..20).prop_map(CompareTarget::ModRevision),
        (0u64..20).prop_map(CompareTarget::CreateRevision),
        (0u64..4).prop_map(CompareTarget::Version),
        value().prop_map(CompareTarget::Value),
        any::<bool>().prop_map(CompareTarget::Exists),
    ];
    let task = (
        queue_name(),
        1u64..6,
        prop::sample::select(vec![CompareOp::Equal, CompareOp::NotEqual, CompareOp::Less]),
        prop::option::of(task_state()),
    )
        .prop_map(|(queue, id, op, state)| {
            Condition::Task(TaskCompare {
                queue,
                id,
                op,
                state,
            })
        });
    prop_oneof![
        3 => (key(), op, target).prop_map(|(key, op, target)| Compare { key, op, target }.into()),
        1 => task,
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => (key(), value(), lease(), prop::option::of(0u64..15)).prop_map(
            |(key, value, lease, if_revision)| KvCommand::Put { key, value, lease, if_revision }.into()
        ),
        2 => (key(), prop::option::of(0u64..15))
            .prop_map(|(key, if_revision)| KvCommand::Delete { key, if_revision }.into()),
        1 => prop::sample::select(&["a/", "b", ""][..])
            .prop_map(|p| KvCommand::DeletePrefix { prefix: p.to_owned() }.into()),
        2 => (key(), prop_oneof![-3i64..3, Just(i64::MAX)])
            .prop_map(|(key, by)| KvCommand::Incr { key, by }.into()),
        3 => (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(txn_op(), 0..4),
            prop::collection::vec(txn_op(), 0..3)
        )
            .prop_map(|(compare, success, failure)| Command::Txn(Txn { compare, success, failure })),
        1 => (0u64..3000).prop_map(|ttl_ms| LeaseCommand::Grant { ttl_ms }.into()),
        1 => (1u64..5).prop_map(|id| LeaseCommand::KeepAlive { id }.into()),
        1 => (1u64..5).prop_map(|id| LeaseCommand::Revoke { id }.into()),
        1 => prop::collection::vec(1u64..5, 0..3).prop_map(|ids| LeaseCommand::Expire { ids }.into()),
        1 => Just(LeaseCommand::RefreshAll.into()),
        6 => queue_command().prop_map(Command::Queue),
    ]
}

/// Commands stamped with a clock that mostly moves forward and sometimes jumps back.
fn requests(max: usize) -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec((command(), -100i64..1500), 1..max).prop_map(|cmds| {
        let mut now: i64 = 1_000_000;
        cmds.into_iter()
            .map(|(command, step)| {
                now += step;
                Request {
                    now_ms: now as u64,
                    command,
                }
            })
            .collect()
    })
}

fn config(history: u64) -> StoreConfig {
    StoreConfig { history }
}

fn all_keys(store: &Store, revision: Option<u64>) -> Result<Vec<(String, KeyValue)>, ReadError> {
    let q = ListQuery {
        prefix: String::new(),
        after: None,
        limit: usize::MAX,
        revision,
    };
    store.list(&q).map(|p| p.items)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replay_is_deterministic(reqs in requests(60)) {
        let mut a = Store::new(config(16));
        let mut b = Store::new(config(16));
        for r in &reqs {
            let decoded = Request::decode(&r.encode()).expect("round trip");
            prop_assert_eq!(&decoded, r);
            prop_assert_eq!(a.apply(r), b.apply(&decoded));
        }
        prop_assert_eq!(a, b);
    }

    #[test]
    fn snapshot_restore_replay_matches(reqs in requests(60), cut in 0usize..60, history in 0u64..20) {
        let cut = cut.min(reqs.len());
        let mut whole = Store::new(config(history));
        for r in &reqs {
            whole.apply(r);
        }
        let mut part = Store::new(config(history));
        for r in &reqs[..cut] {
            part.apply(r);
        }
        let bytes = part.encode_snapshot();
        let mut restored = Store::decode_snapshot(config(history), &bytes).expect("decode");
        prop_assert_eq!(&restored, &part);
        for r in &reqs[cut..] {
            restored.apply(r);
        }
        prop_assert_eq!(restored, whole);
    }

    /// A snapshot is a clone taken at one point (O(1): persistent maps), encoded on another
    /// thread while applying goes on: it encodes the state at that point, and restoring it
    /// and replaying the rest gives the same state.
    #[test]
    fn a_snapshot_encoded_while_applying_continues_is_its_point_in_time(
        reqs in requests(60),
        cuts in prop::collection::vec(0usize..60, 1..4),
    ) {
        let mut live = Store::new(config(8));
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(reqs.len())).collect();
        cuts.sort_unstable();
        let mut captured = Vec::new();
        std::thread::scope(|scope| {
            let mut encoders = Vec::new();
            let mut applied = 0;
            for &cut in &cuts {
                for r in &reqs[applied..cut] {
                    live.apply(r);
                }
                applied = cut;
                let point = live.clone();
                let reference = live.encode_snapshot();
                encoders.push((cut, reference, scope.spawn(move || point.encode_snapshot())));
            }
            for r in &reqs[applied..] {
                live.apply(r);
            }
            for (cut, reference, encoder) in encoders {
                captured.push((cut, reference, encoder.join().expect("encoder thread")));
            }
        });
        for (cut, reference, bytes) in captured {
            prop_assert_eq!(&bytes, &reference, "snapshot at request {}", cut);
            let mut restored = Store::decode_snapshot(config(8), &bytes).expect("decode");
            for r in &reqs[cut..] {
                restored.apply(r);
            }
            prop_assert_eq!(&restored, &live);
        }
    }

    #[test]
    fn revisions_increase_by_one_per_change(reqs in requests(80)) {
        let mut s = Store::new(config(100));
        for r in &reqs {
            let before = s.revision();
            let applied = s.apply(r);
            match &applied.changes {
                Some(set) => {
                    prop_assert_eq!(set.revision, before + 1);
                    prop_assert!(!set.events.is_empty());
                    for e in set.key_events() {
                        if let Some(kv) = &e.kv {
                            prop_assert_eq!(kv.mod_revision, set.revision);
                        }
                    }
                }
                None => prop_assert_eq!(s.revision(), before),
            }
            prop_assert_eq!(s.revision(), applied.changes.as_ref().map_or(before, |c| c.revision));
        }
    }

    #[test]
    fn txn_is_all_or_nothing(setup in requests(30), txn_cmd in command().prop_filter("txn", |c| matches!(c, Command::Txn(_)))) {
        let mut s = Store::new(config(100));
        for r in &setup {
            s.apply(r);
        }
        let before = s.clone();
        let applied = s.apply(&Request { now_ms: before.now_ms(), command: txn_cmd.clone() });
        let Command::Txn(txn) = txn_cmd else { unreachable!() };
        match applied.outcome {
            Outcome::Rejected(_) => prop_assert_eq!(&s, &before),
            Outcome::Txn(out) => {
                let branch = if out.succeeded { &txn.success } else { &txn.failure };
                prop_assert_eq!(out.results.len(), branch.len());
                let writes = applied.changes.as_ref().map_or(0, |c| c.events.len());
                if writes == 0 {
                    prop_assert_eq!(s.revision(), before.revision());
                } else {
                    prop_assert_eq!(s.revision(), before.revision() + 1);
                }
                for op in branch {
                    match op {
                        TxnOp::Put { key, value, lease } => {
                            let kv = s.get(key, None).expect("read").expect("written");
                            prop_assert_eq!(&kv.value, value);
                            prop_assert_eq!(kv.lease, *lease);
                            prop_assert_eq!(kv.mod_revision, s.revision());
                        }
                        TxnOp::Delete { key } => prop_assert!(s.get(key, None).expect("read").is_none()),
                        _ => {}
                    }
                }
            }
            other => prop_assert!(false, "unexpected outcome {:?}", other),
        }
    }

    #[test]
    fn past_reads_see_past_states(reqs in requests(60), history in 0u64..30) {
        let mut s = Store::new(config(history));
        let mut states: BTreeMap<u64, Vec<(String, KeyValue)>> = BTreeMap::new();
        states.insert(0, Vec::new());
        for r in &reqs {
            s.apply(r);
            states.insert(s.revision(), all_keys(&s, None).expect("now"));
        }
        for (rev, expected) in &states {
            let got = all_keys(&s, Some(*rev));
            if *rev < s.compact_revision() {
                prop_assert_eq!(got, Err(ReadError::Compacted { requested: *rev, compact_revision: s.compact_revision() }));
            } else {
                prop_assert_eq!(&got.expect("readable"), expected);
                for (k, kv) in expected {
                    prop_assert_eq!(s.get(k, Some(*rev)).expect("readable"), Some(kv.clone()));
                }
            }
        }
        prop_assert!(s.revision() - s.compact_revision() <= history);
        let future = s.revision() + 1;
        prop_assert_eq!(s.get("a", Some(future)), Err(ReadError::FutureRevision { requested: future, current: s.revision() }));
    }

    /// Whether a key or prefix changed after R is exact for every R, however short the
    /// history: it agrees with the full list of change sets.
    #[test]
    fn changed_after_is_exact_beyond_the_history(reqs in requests(80), history in 0u64..6) {
        let mut s = Store::new(config(history));
        let mut all = Vec::new();
        for r in &reqs {
            if let Some(set) = s.apply(r).changes {
                all.push(set);
            }
        }
        let changed = |after: u64, matches: &dyn Fn(&str) -> bool| {
            all.iter()
                .filter(|set| set.revision > after)
                .any(|set| set.key_events().any(|e| matches(&e.key)))
        };
        for after in 0..=s.revision() + 1 {
            for key in KEYS {
                prop_assert_eq!(
                    s.key_changed_after(key, after),
                    changed(after, &|k| k == *key),
                    "key {} after {}", key, after
                );
            }
            for prefix in ["", "a", "a/", "b/", "zz"] {
                prop_assert_eq!(
                    s.prefix_changed_after(prefix, after),
                    changed(after, &|k| k.starts_with(prefix)),
                    "prefix {:?} after {}", prefix, after
                );
            }
        }
    }

    #[test]
    fn lease_keys_index_matches_keys(reqs in requests(80)) {
        let mut s = Store::new(config(10));
        for r in &reqs {
            s.apply(r);
        }
        for (key, kv) in all_keys(&s, None).expect("now") {
            if let Some(id) = kv.lease {
                prop_assert!(s.lease(id).expect("lease exists").keys.contains(&key));
            }
        }
        for lease in s.leases() {
            for key in &lease.keys {
                prop_assert_eq!(s.get(key, None).expect("now").and_then(|kv| kv.lease), Some(lease.id));
            }
        }
    }

    #[test]
    fn queue_indexes_match_tasks(reqs in requests(120)) {
        let mut s = Store::new(config(10));
        for r in &reqs {
            s.apply(r);
        }
        let now = s.now_ms();
        for (name, q) in s.queues() {
            let (all, more) = q.list(None, 0, usize::MAX);
            prop_assert!(!more);
            prop_assert_eq!(all.len(), q.len());
            let mut counted = 0;
            for state in TaskState::ALL {
                let (listed, _) = q.list(Some(state), 0, usize::MAX);
                prop_assert!(listed.iter().all(|t| t.state == state), "{} {:?}", name, state);
                prop_assert!(listed.windows(2).all(|w| w[0].id < w[1].id));
                counted += listed.len();
            }
            prop_assert_eq!(counted, q.len());
            let c = q.counts();
            prop_assert_eq!((c.pending + c.running + c.done + c.dead) as usize, q.len());
            for t in &all {
                prop_assert_eq!(t.state == TaskState::Running, t.claim.is_some());
                prop_assert!(t.id < q.next_id());
            }
            let ready = all.iter().any(|t| t.state == TaskState::Pending && t.not_before_ms <= now);
            prop_assert_eq!(q.has_ready(now), ready, "{}", name);
            let deadline = all.iter().filter_map(|t| t.claim.as_ref()).map(|c| c.expires_at_ms).min();
            prop_assert_eq!(q.next_lease_deadline(), deadline);
            // No two unfinished tasks share a dedupe key.
            let mut keys: Vec<_> = all.iter()
                .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Running))
                .filter_map(|t| t.dedupe_key.clone())
                .collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n);
        }
    }

    #[test]
    fn a_claim_gives_the_best_ready_task_to_one_worker(reqs in requests(80), lease_ms in 1u64..5000) {
        let mut s = Store::new(config(10));
        for r in &reqs {
            s.apply(r);
        }
        let now = s.now_ms() + 1;
        for name in ["q1", "q2"] {
            let best = s.queue(name).and_then(|q| {
                q.list(Some(TaskState::Pending), 0, usize::MAX).0.into_iter()
                    .filter(|t| t.not_before_ms <= now)
                    .min_by_key(|t| (std::cmp::Reverse(t.priority), t.id))
                    .map(|t| t.id)
            });
            let claim = QueueCommand::Claim { queue: name.into(), worker: "x".into(), lease_ms, max: 1 };
            let applied = s.apply(&Request { now_ms: now, command: claim.into() });
            let got = match applied.outcome {
                Outcome::Queue(keel_state::QueueOutcome::Claimed { tasks, .. }) => {
                    tasks.first().map(|t| t.id)
                }
                other => panic!("claim: {other:?}"),
            };
            prop_assert_eq!(got, best);
            if let Some(id) = got {
                let t = s.queue(name).and_then(|q| q.task(id)).expect("claimed task");
                prop_assert_eq!(t.state, TaskState::Running);
                prop_assert_eq!(t.claim.as_ref().map(|c| c.token), Some(s.revision()));
            }
        }
    }
}
