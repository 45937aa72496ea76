//! Commands by family, what applying one produced, and why one was refused.
//!
//! [`Command`] is a persisted format (see [`crate::request`]): postcard encodes a variant by
//! its position, so families and the commands inside each family are only ever added at the
//! end. The golden fixtures under `tests/fixtures` fail if anything moves.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    ChangeSet, KvCommand, KvError, KvOutcome, LeaseCommand, LeaseError, LeaseOutcome, QueueCommand,
    QueueError, QueueOutcome, Txn, TxnError, TxnOutcome,
};

/// A change to the store, by capability. Each command is applied atomically at (at most) one
/// revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Keys and values.
    Kv(KvCommand),
    /// Leases.
    Lease(LeaseCommand),
    /// Compare, then one of two lists of operations, at one revision.
    Txn(Txn),
    /// Task queues.
    Queue(QueueCommand),
    // Next families go here, in this order: Registry, Blob, Topic.
}

impl From<KvCommand> for Command {
    fn from(c: KvCommand) -> Self {
        Command::Kv(c)
    }
}

impl From<LeaseCommand> for Command {
    fn from(c: LeaseCommand) -> Self {
        Command::Lease(c)
    }
}

impl From<QueueCommand> for Command {
    fn from(c: QueueCommand) -> Self {
        Command::Queue(c)
    }
}

impl From<Txn> for Command {
    fn from(t: Txn) -> Self {
        Command::Txn(t)
    }
}

impl Command {
    /// Roughly how many bytes the command takes in the log (keys and values dominate).
    pub fn size_hint(&self) -> usize {
        32 + match self {
            Command::Kv(c) => c.size_hint(),
            Command::Lease(c) => c.size_hint(),
            Command::Txn(t) => t.size_hint(),
            Command::Queue(c) => c.size_hint(),
        }
    }

    /// Whether applying this may set a deadline earlier than any before it — a key lease
    /// granted, a task claimed or its lease extended or restarted, a task completed (its
    /// retention) — so that the leader's duties must look again (whichever node proposed
    /// it).
    pub fn sets_deadline(&self) -> bool {
        match self {
            Command::Lease(c) => matches!(c, crate::LeaseCommand::Grant { .. }),
            Command::Queue(c) => matches!(
                c,
                crate::QueueCommand::Claim { .. }
                    | crate::QueueCommand::Extend { .. }
                    | crate::QueueCommand::RefreshLeases
                    | crate::QueueCommand::Complete { .. }
            ),
            Command::Txn(t) => t
                .success
                .iter()
                .chain(&t.failure)
                .any(|op| matches!(op, crate::TxnOp::Complete { .. })),
            Command::Kv(_) => false,
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Kv(c) => c.name(),
            Command::Lease(c) => c.name(),
            Command::Txn(_) => "txn",
            Command::Queue(c) => c.name(),
        }
    }
}

/// The result of [`crate::Store::apply`]: the outcome for the proposer, and the change set
/// (when the command changed state) for the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// What the proposer is told.
    pub outcome: Outcome,
    /// The changes, at one new revision; `None` when nothing changed.
    pub changes: Option<Arc<ChangeSet>>,
}

/// What a command did, by family. A command that was refused leaves the state untouched.
///
/// This travels from the state machine to the waiting request handler; it is also the Raft
/// response type, so it derives serde, but it is never persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A key command ran.
    Kv(KvOutcome),
    /// A lease command ran.
    Lease(LeaseOutcome),
    /// A transaction ran.
    Txn(TxnOutcome),
    /// The command was refused; nothing changed.
    Rejected(CommandError),
    /// A queue command ran.
    Queue(QueueOutcome),
}

/// Why a command was refused, by the family whose rule refused it. Deterministic: every
/// replica refuses the same command alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// A key rule.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A lease rule.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A transaction rule.
    #[error(transparent)]
    Txn(#[from] TxnError),
    /// A queue rule.
    #[error(transparent)]
    Queue(#[from] QueueError),
}
