//! Reading a format-3 snapshot from any [`Read`], a record at a time: the key and tombstone
//! sections (the bulk of a snapshot) are decoded as they are read, so that restoring holds
//! the decoded state and one buffer of input, never the snapshot's bytes whole. The small
//! sections (leases, the history window, both bounded by their own limits) are joined and
//! decoded as before.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::de::DeserializeOwned;

use super::{
    decode_sections, known_tag, Header, Parts, SnapshotError, END, TAG_KV, TAG_QUEUE,
    TAG_TOMBSTONES,
};
use crate::{kv, queue};

/// How much is read from the input at a time.
const READ: usize = 64 << 10;

/// Buffered input that hands out raw bytes and whole postcard values.
pub(crate) struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

fn truncated() -> SnapshotError {
    SnapshotError::Inconsistent("the snapshot is truncated".into())
}

fn io_failed(e: io::Error) -> SnapshotError {
    SnapshotError::Inconsistent(format!("reading the snapshot: {e}"))
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R) -> Input<R> {
        Input {
            inner,
            buf: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    /// Reads more input after what is buffered; false at its end.
    fn more(&mut self) -> Result<bool, SnapshotError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + READ, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(io_failed(e));
                }
            }
        };
        self.buf.truncate(start + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// The next byte, or None at the end of the input.
    pub(crate) fn byte(&mut self) -> Result<Option<u8>, SnapshotError> {
        if self.pos == self.buf.len() && !self.more()? {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(self.buf[self.pos - 1]))
    }

    fn u32_le(&mut self) -> Result<u32, SnapshotError> {
        let mut b = [0u8; 4];
        for x in &mut b {
            *x = self.byte()?.ok_or_else(truncated)?;
        }
        Ok(u32::from_le_bytes(b))
    }

    /// The next postcard value; the buffer grows to hold it if it is large.
    pub(crate) fn value<T: DeserializeOwned>(&mut self) -> Result<T, SnapshotError> {
        loop {
            match postcard::take_from_bytes::<T>(&self.buf[self.pos..]) {
                Ok((value, rest)) => {
                    self.pos = self.buf.len() - rest.len();
                    return Ok(value);
                }
                Err(postcard::Error::DeserializeUnexpectedEnd) => {
                    if !self.more()? {
                        return Err(truncated());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Everything left, joined.
    pub(crate) fn rest(mut self) -> Result<Vec<u8>, SnapshotError> {
        let mut out = self.buf.split_off(self.pos);
        self.inner.read_to_end(&mut out).map_err(io_failed)?;
        Ok(out)
    }

    /// Whether the input has ended.
    pub(crate) fn at_end(&mut self) -> Result<bool, SnapshotError> {
        Ok(self.pos == self.buf.len() && !self.more()?)
    }
}

/// One section's body, read across its chunks (`length u32 LE | bytes`, ended by a zero
/// length).
struct Section<'a, R> {
    input: &'a mut Input<R>,
    left: usize,
    done: bool,
}

impl<R: Read> Read for Section<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let failed = |e: SnapshotError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            let len = self.input.u32_le().map_err(failed)? as usize;
            if len == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = len;
        }
        let input = &mut *self.input;
        if input.pos == input.buf.len() && !input.more().map_err(failed)? {
            return Err(failed(truncated()));
        }
        let n = out.len().min(self.left).min(input.buf.len() - input.pos);
        out[..n].copy_from_slice(&input.buf[input.pos..input.pos + n]);
        input.pos += n;
        self.left -= n;
        Ok(n)
    }
}

/// Reads a format-3 snapshot after its format byte.
pub(crate) fn read_v3<R: Read>(input: &mut Input<R>) -> Result<Parts, SnapshotError> {
    let header: Header = input.value()?;
    let mut keys = None;
    let mut tombstones = None;
    let mut queues = None;
    let mut small: BTreeMap<u8, (u8, Vec<u8>)> = BTreeMap::new();
    let mut seen = Vec::new();
    loop {
        let tag = input.byte()?.ok_or_else(truncated)?;
        if tag == END {
            break;
        }
        let version = input.byte()?.ok_or_else(truncated)?;
        if !known_tag(tag) {
            return Err(SnapshotError::UnknownSection(tag));
        }
        if seen.contains(&tag) {
            return Err(SnapshotError::Inconsistent(format!(
                "section {tag} appears twice"
            )));
        }
        seen.push(tag);
        let mut section = Input::new(Section {
            input: &mut *input,
            left: 0,
            done: false,
        });
        match tag {
            TAG_KV => keys = Some(kv::snapshot::read(version, &mut section)?),
            TAG_TOMBSTONES => {
                tombstones = Some(kv::snapshot::read_tombstones(version, &mut section)?)
            }
            TAG_QUEUE => {
                queues = Some(queue::snapshot::read(version, &mut section, header.now_ms)?)
            }
            _ => {
                small.insert(tag, (version, section.rest()?));
                continue;
            }
        }
        if !section.at_end()? {
            return Err(SnapshotError::Inconsistent(format!(
                "section {tag} has bytes after its records"
            )));
        }
    }
    if !input.at_end()? {
        return Err(SnapshotError::Inconsistent(
            "bytes follow the last section".into(),
        ));
    }
    let borrowed = small
        .iter()
        .map(|(&tag, (version, body))| (tag, (*version, body.as_slice())))
        .collect();
    let mut parts = decode_sections(header.revision, header.now_ms, &borrowed)?;
    if let Some(keys) = keys {
        parts.keys = keys;
    }
    if let Some((since, tombstones)) = tombstones {
        parts.tombstones_since = since;
        parts.tombstones = tombstones;
    }
    if let Some(queues) = queues {
        parts.queues = queues;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use crate::{KvCommand, Request, Store, StoreConfig};

    /// Hands out at most a few bytes per read, so every value and chunk is split.
    struct Dribble<'a>(&'a [u8], usize);

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_snapshot_read_in_small_pieces_is_the_store_it_was_written_from() {
        let mut store = Store::new(StoreConfig { history: 50 });
        let put = |key: String, value: Vec<u8>| Request {
            now_ms: 1,
            command: KvCommand::Put {
                key,
                value: value.into(),
                lease: None,
                if_revision: None,
            }
            .into(),
        };
        for i in 0..300 {
            store.apply(&put(format!("k{i:03}"), vec![i as u8; i * 7]));
        }
        // One value larger than a section chunk, and some tombstones.
        store.apply(&put("big".into(), vec![7; 200_000]));
        for i in 0..20 {
            store.apply(&Request {
                now_ms: 2,
                command: KvCommand::Delete {
                    key: format!("k{i:03}"),
                    if_revision: None,
                }
                .into(),
            });
        }
        let bytes = store.encode_snapshot();
        let back = Store::read_snapshot(StoreConfig { history: 50 }, Dribble(&bytes, 0))
            .expect("reads back");
        assert_eq!(back.encode_snapshot(), bytes);
        assert_eq!(back.state_digest(), store.state_digest());
        // Cut anywhere, it is refused, never half-restored.
        for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(Store::read_snapshot(StoreConfig { history: 50 }, &bytes[..cut]).is_err());
        }
    }
}
