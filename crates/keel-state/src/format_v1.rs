//! Log payload format 1: one flat enum of every command, as written until 2026-11-25.
//!
//! Frozen. Nothing here may change: it is how logs written by older builds are read. The
//! transaction inside is format 2's ([`TxnV2`]), whose golden fixtures pin it too.

use bytes::Bytes;
use serde::Deserialize;

use crate::format_v2::TxnV2;
use crate::{Command, DecodeError, KvCommand, LeaseCommand, LeaseId, Request, Revision};

/// The format byte of version 1.
pub(crate) const FORMAT: u8 = 1;

#[derive(Deserialize)]
struct RequestV1 {
    now_ms: u64,
    command: CommandV1,
}

/// The variants in their version-1 order; postcard identifies them by position.
#[derive(Deserialize)]
enum CommandV1 {
    Put {
        key: String,
        value: Bytes,
        lease: Option<LeaseId>,
        if_revision: Option<Revision>,
    },
    Delete {
        key: String,
        if_revision: Option<Revision>,
    },
    DeletePrefix {
        prefix: String,
    },
    Incr {
        key: String,
        by: i64,
    },
    Txn(TxnV2),
    LeaseGrant {
        ttl_ms: u64,
    },
    LeaseKeepAlive {
        id: LeaseId,
    },
    LeaseRevoke {
        id: LeaseId,
    },
    LeaseExpire {
        ids: Vec<LeaseId>,
    },
    LeaseRefreshAll,
}

impl From<CommandV1> for Command {
    fn from(c: CommandV1) -> Self {
        match c {
            CommandV1::Put {
                key,
                value,
                lease,
                if_revision,
            } => KvCommand::Put {
                key,
                value,
                lease,
                if_revision,
            }
            .into(),
            CommandV1::Delete { key, if_revision } => KvCommand::Delete { key, if_revision }.into(),
            CommandV1::DeletePrefix { prefix } => KvCommand::DeletePrefix { prefix }.into(),
            CommandV1::Incr { key, by } => KvCommand::Incr { key, by }.into(),
            CommandV1::Txn(txn) => Command::Txn(txn.into()),
            CommandV1::LeaseGrant { ttl_ms } => LeaseCommand::Grant { ttl_ms }.into(),
            CommandV1::LeaseKeepAlive { id } => LeaseCommand::KeepAlive { id }.into(),
            CommandV1::LeaseRevoke { id } => LeaseCommand::Revoke { id }.into(),
            CommandV1::LeaseExpire { ids } => LeaseCommand::Expire { ids }.into(),
            CommandV1::LeaseRefreshAll => LeaseCommand::RefreshAll.into(),
        }
    }
}

/// Decodes the bytes after a format-1 version byte.
pub(crate) fn decode(body: &[u8]) -> Result<Request, DecodeError> {
    let r: RequestV1 = postcard::from_bytes(body)?;
    Ok(Request {
        now_ms: r.now_ms,
        command: r.command.into(),
    })
}
