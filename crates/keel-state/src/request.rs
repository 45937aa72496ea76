//! The log payload: a [`Command`] stamped with the leader's clock, behind a format byte.
//!
//! Format 3 (today): `3 | postcard(Request)`, where [`Command`] is nested by family, so a
//! postcard variant index is the family's position in [`Command`] and then the command's
//! position in its family. Format 2 (2026-11-25 to 2026-12-07) was the same but for the
//! transaction's conditions, which compared keys only ([`crate::format_v2`] decodes it);
//! format 1 (before 2026-11-25) had one flat command enum ([`crate::format_v1`]). So a log
//! written by any earlier build replays unchanged.
//!
//! Golden fixtures under `tests/fixtures/request-v*` pin the bytes of every command of both
//! formats.

use serde::{Deserialize, Serialize};

use crate::Command;

/// A command together with the time at which the leader proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's wall-clock time, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// What to do.
    pub command: Command,
}

/// Error decoding a log payload.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload was written by a format this build does not know.
    #[error("unknown command format version {0}")]
    UnknownFormat(u8),
    /// The payload is empty.
    #[error("empty command payload")]
    Empty,
    /// The bytes do not decode.
    #[error("malformed command: {0}")]
    Malformed(#[from] postcard::Error),
}

impl Request {
    /// Version byte written in front of every encoded request.
    pub const FORMAT: u8 = 3;

    /// Encodes the request as a versioned byte string.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_into(Vec::with_capacity(self.command.size_hint()))
    }

    /// Appends the encoding of [`Request::encode`] to `out` and returns it.
    pub fn encode_into(&self, mut out: Vec<u8>) -> Vec<u8> {
        out.push(Self::FORMAT);
        postcard::to_extend(self, out).expect("serialising plain data into a Vec cannot fail")
    }

    /// Decodes bytes produced by [`Request::encode`], or by a build that wrote format 1 or 2.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&Self::FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
            Some((&crate::format_v2::FORMAT, rest)) => crate::format_v2::decode(rest),
            Some((&crate::format_v1::FORMAT, rest)) => crate::format_v1::decode(rest),
            Some((&v, _)) => Err(DecodeError::UnknownFormat(v)),
        }
    }
}
