//! Wake-ups for long-poll claims and for the task-lease duty, from the applied-change feed.
//!
//! One task follows the state machine's broadcast of applied change sets. A set in which a
//! task became pending (enqueued, failed, put back by a lease, retried) rings that queue's
//! bell, waking every claim waiting on it, on every node, whichever node proposed the change.
//! A follower that falls behind the broadcast rings every bell: waiters re-read the state, so
//! nothing is missed. Nothing here polls. (The task-lease duty wakes on the state machine's
//! own deadline signal, as every duty does.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use keel_raft::StateReader;
use keel_state::TaskState;
use tokio::sync::{broadcast, watch, Notify};

/// Bells per queue (see the module documentation).
pub(crate) struct ReadyBell {
    bells: Mutex<HashMap<String, Weak<Notify>>>,
}

/// Bells kept before the dead ones (queues nobody waits on) are swept.
const SWEEP_AT: usize = 1024;

impl ReadyBell {
    /// Starts following `reader`'s applied changes until `closing` becomes true.
    pub(crate) fn spawn(reader: &StateReader, closing: watch::Receiver<bool>) -> Arc<ReadyBell> {
        let bell = Arc::new(ReadyBell {
            bells: Mutex::new(HashMap::new()),
        });
        tokio::spawn(bell.clone().follow(reader.subscribe(), closing));
        bell
    }

    fn bells(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Notify>>> {
        self.bells.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bell of `queue`. Create the `Notified` future (and enable it) before reading the
    /// state, then await it: a ring in between is not lost.
    pub(crate) fn bell(&self, queue: &str) -> Arc<Notify> {
        let mut bells = self.bells();
        if let Some(n) = bells.get(queue).and_then(Weak::upgrade) {
            return n;
        }
        if bells.len() >= SWEEP_AT {
            bells.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        bells.insert(queue.to_owned(), Arc::downgrade(&n));
        n
    }

    fn ring(&self, queue: &str) {
        let n = self.bells().get(queue).and_then(Weak::upgrade);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    fn ring_all(&self) {
        let all: Vec<Arc<Notify>> = self.bells().values().filter_map(Weak::upgrade).collect();
        for n in all {
            n.notify_waiters();
        }
    }

    async fn follow(
        self: Arc<Self>,
        mut changes: broadcast::Receiver<Arc<keel_state::ChangeSet>>,
        mut closing: watch::Receiver<bool>,
    ) {
        loop {
            let set = tokio::select! {
                r = changes.recv() => r,
                _ = closing.wait_for(|c| *c) => return,
            };
            match set {
                Ok(set) => {
                    let mut rung: Option<&str> = None;
                    for e in set.task_events() {
                        // Sets from one command are mostly about one queue.
                        if e.state == Some(TaskState::Pending) && rung != Some(e.queue.as_str()) {
                            self.ring(&e.queue);
                            rung = Some(e.queue.as_str());
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.ring_all(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
