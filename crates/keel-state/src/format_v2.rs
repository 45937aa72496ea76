//! Log payload format 2: commands nested by family, as written from 2026-11-25 until queues
//! came (2026-12-07). Format 3 changed only the transaction: its conditions became
//! [`crate::Condition`]s (keys or tasks) where format 2 had key [`Compare`]s.
//!
//! Frozen. Nothing here may change: it is how logs written by older builds are read. The key
//! and lease commands inside are today's types, which only ever grow at the end.

use serde::Deserialize;

use crate::{Command, Compare, DecodeError, KvCommand, LeaseCommand, Request, Txn, TxnOp};

/// The format byte of version 2.
pub(crate) const FORMAT: u8 = 2;

#[derive(Deserialize)]
struct RequestV2 {
    now_ms: u64,
    command: CommandV2,
}

/// The families in their version-2 order; postcard identifies them by position.
#[derive(Deserialize)]
enum CommandV2 {
    Kv(KvCommand),
    Lease(LeaseCommand),
    Txn(TxnV2),
}

/// A transaction of formats 1 and 2: key comparisons only.
#[derive(Deserialize)]
pub(crate) struct TxnV2 {
    compare: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl From<TxnV2> for Txn {
    fn from(t: TxnV2) -> Self {
        Txn {
            compare: t.compare.into_iter().map(Into::into).collect(),
            success: t.success,
            failure: t.failure,
        }
    }
}

/// Decodes the bytes after a format-2 version byte.
pub(crate) fn decode(body: &[u8]) -> Result<Request, DecodeError> {
    let r: RequestV2 = postcard::from_bytes(body)?;
    let command = match r.command {
        CommandV2::Kv(c) => Command::Kv(c),
        CommandV2::Lease(c) => Command::Lease(c),
        CommandV2::Txn(t) => Command::Txn(t.into()),
    };
    Ok(Request {
        now_ms: r.now_ms,
        command,
    })
}
