//! The harness, the lease expiry duty and the task retention duty under paused tokio time:
//! deadlines are exact.
//!
//! The host here applies commands to a real [`Store`] at once, in place of the Raft log (whose
//! fsyncs run on a thread that paused time cannot see); the duty, the harness, the state
//! machine and the clock are the ones the server runs.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_raft::{Clock, NodeStatus, ProposeError};
use keel_state::{
    Command, Enqueue, LeaseCommand, LeaseOutcome, Outcome, QueueCommand, QueueOutcome, Request,
    Store, StoreConfig,
};
use tokio::sync::watch;

use super::lease_expiry::LeaseExpiry;
use super::task_retention::TaskRetention;
use super::{spawn, Host};

const T0: u64 = 1_764_000_000_000;

#[derive(Clone)]
struct LocalHost(Arc<Inner>);

struct Inner {
    store: Mutex<Store>,
    log: Mutex<Vec<Request>>,
    status: watch::Sender<NodeStatus>,
    deadlines: watch::Sender<u64>,
    clock: Clock,
}

impl LocalHost {
    fn new() -> Self {
        let (status, _) = watch::channel(NodeStatus {
            id: 1,
            is_leader: true,
            leader: Some(1),
            term: 1,
            sole_voter: true,
            fatal: None,
            ..NodeStatus::default()
        });
        LocalHost(Arc::new(Inner {
            store: Mutex::new(Store::new(StoreConfig::default())),
            log: Mutex::new(Vec::new()),
            status,
            deadlines: watch::channel(0).0,
            clock: Clock::tokio_from(T0),
        }))
    }

    fn apply(&self, command: Command) -> Result<Outcome, ProposeError> {
        if !self.0.status.borrow().is_leader {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let request = Request {
            now_ms: self.0.clock.now_ms(),
            command,
        };
        let outcome = self.0.store.lock().unwrap().apply(&request).outcome;
        if request.command.sets_deadline() {
            self.0.deadlines.send_modify(|n| *n += 1);
        }
        self.0.log.lock().unwrap().push(request);
        Ok(outcome)
    }

    fn grant(&self, ttl_ms: u64) -> u64 {
        match self.apply(LeaseCommand::Grant { ttl_ms }.into()) {
            Ok(Outcome::Lease(LeaseOutcome::Granted(g))) => g.id,
            other => panic!("grant: {other:?}"),
        }
    }

    fn lease_exists(&self, id: u64) -> bool {
        self.read(|s| s.lease(id).is_some())
    }

    fn set_leader(&self, is_leader: bool, term: u64) {
        self.0.status.send_modify(|s| {
            s.is_leader = is_leader;
            s.term = term;
        });
    }

    /// The commands proposed so far, by name, with the time each was stamped with.
    fn proposed(&self) -> Vec<(&'static str, u64)> {
        let log = self.0.log.lock().unwrap();
        log.iter()
            .map(|r| (r.command.name(), r.now_ms - T0))
            .collect()
    }
}

impl Host for LocalHost {
    fn status(&self) -> watch::Receiver<NodeStatus> {
        self.0.status.subscribe()
    }

    fn deadlines(&self) -> watch::Receiver<u64> {
        self.0.deadlines.subscribe()
    }

    async fn ready(&self) -> Result<(), ProposeError> {
        Ok(())
    }

    async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        self.apply(command)
    }

    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.0.store.lock().unwrap())
    }

    fn now_ms(&self) -> u64 {
        self.0.clock.now_ms()
    }
}

/// Lets every task that can run, run (time stays where it is).
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

async fn advance_ms(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_expires_exactly_at_its_deadline() {
    let host = LocalHost::new();
    let id = host.grant(5_000);
    let (stop_tx, stop) = watch::channel(false);
    let duty = spawn(host.clone(), LeaseExpiry, stop);
    settle().await;
    advance_ms(4_999).await;
    assert!(host.lease_exists(id), "alive 1 ms before its deadline");
    advance_ms(1).await;
    assert!(!host.lease_exists(id), "gone at its deadline");
    assert_eq!(
        host.proposed(),
        [
            ("lease_grant", 0),
            ("lease_refresh_all", 0),
            ("lease_expire", 5_000)
        ]
    );
    stop_tx.send_replace(true);
    duty.join().await;
}

#[tokio::test(start_paused = true)]
async fn a_keepalive_moves_the_deadline() {
    let host = LocalHost::new();
    let id = host.grant(5_000);
    let (_stop_tx, stop) = watch::channel(false);
    let _duty = spawn(host.clone(), LeaseExpiry, stop);
    settle().await;
    advance_ms(3_000).await;
    host.apply(LeaseCommand::KeepAlive { id }.into()).unwrap();
    advance_ms(4_999).await;
    assert!(
        host.lease_exists(id),
        "the keepalive at 3 s gave it until 8 s"
    );
    advance_ms(1).await;
    assert!(!host.lease_exists(id));
    assert_eq!(host.proposed().last(), Some(&("lease_expire", 8_000)));
}

/// A grant applied (proposed through any node) wakes the idle duty: no lease existed, so it
/// was waiting for nothing in particular.
#[tokio::test(start_paused = true)]
async fn a_grant_wakes_an_idle_duty() {
    let host = LocalHost::new();
    let (_stop_tx, stop) = watch::channel(false);
    let _duty = spawn(host.clone(), LeaseExpiry, stop);
    settle().await;
    advance_ms(60_000).await;
    let id = host.grant(2_000);
    settle().await;
    advance_ms(2_000).await;
    assert!(!host.lease_exists(id));
    assert_eq!(host.proposed().last(), Some(&("lease_expire", 62_000)));
}

#[tokio::test(start_paused = true)]
async fn only_a_leader_expires_and_a_new_leader_gives_full_ttl_first() {
    let host = LocalHost::new();
    let id = host.grant(5_000);
    let (_stop_tx, stop) = watch::channel(false);
    let _duty = spawn(host.clone(), LeaseExpiry, stop);
    settle().await;
    host.set_leader(false, 1);
    advance_ms(20_000).await;
    assert!(host.lease_exists(id), "no leader, no expiry");
    host.set_leader(true, 2);
    settle().await;
    advance_ms(4_999).await;
    assert!(host.lease_exists(id), "refreshed at 20 s for a full 5 s");
    advance_ms(1).await;
    assert!(!host.lease_exists(id));
    assert_eq!(
        host.proposed(),
        [
            ("lease_grant", 0),
            ("lease_refresh_all", 0),
            ("lease_refresh_all", 20_000),
            ("lease_expire", 25_000)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_duty_stops_when_the_server_does() {
    let host = LocalHost::new();
    host.grant(5_000);
    let (stop_tx, stop) = watch::channel(false);
    let duty = spawn(host.clone(), LeaseExpiry, stop);
    settle().await;
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(1), duty.join())
        .await
        .expect("the duty ends promptly");
    advance_ms(10_000).await;
    assert_eq!(host.proposed().len(), 2, "nothing proposed after the stop");
}

/// A done task is deleted exactly when its retention runs out; the duty, with nothing done
/// to wait for, is woken by the completion.
#[tokio::test(start_paused = true)]
async fn a_done_task_goes_exactly_at_the_end_of_its_retention() {
    let host = LocalHost::new();
    let (_stop_tx, stop) = watch::channel(false);
    let retention = TaskRetention {
        retention: Duration::from_secs(10),
    };
    let _duty = spawn(host.clone(), retention, stop);
    settle().await;
    let enqueue = Enqueue {
        queue: "q".into(),
        payload: "p".into(),
        content_type: None,
        delay_ms: 0,
        max_attempts: 1,
        priority: 0,
        dedupe_key: None,
        max_tasks: 10,
    };
    host.apply(QueueCommand::Enqueue(enqueue).into()).unwrap();
    let claim = QueueCommand::Claim {
        queue: "q".into(),
        worker: "w".into(),
        lease_ms: 60_000,
        max: 1,
    };
    let token = match host.apply(claim.into()).unwrap() {
        Outcome::Queue(QueueOutcome::Claimed { tasks, .. }) => tasks[0].claim,
        other => panic!("claim: {other:?}"),
    };
    advance_ms(5_000).await;
    let complete = QueueCommand::Complete {
        queue: "q".into(),
        id: 1,
        claim: token,
        result: None,
    };
    host.apply(complete.into()).unwrap();
    settle().await;
    advance_ms(9_999).await;
    let exists = || host.read(|s| s.queue("q").and_then(|q| q.task(1)).is_some());
    assert!(exists(), "kept until 15 s");
    advance_ms(1).await;
    assert!(!exists());
    assert_eq!(host.proposed().last(), Some(&("queue_drop_done", 15_000)));
}
