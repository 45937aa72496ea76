//! keel's SSE watch stream, read straight off its socket: the request is written by hand and
//! the chunked body decoded here, so that ten thousand watchers cost the load generator one
//! task and one read per arrival each (a full HTTP client would add a connection task and a
//! hand-off per chunk, and measure itself rather than the server).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Watch;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 << 10;

/// One SSE watch stream.
pub struct KeelWatch {
    socket: TcpStream,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    chunks: Dechunk,
    /// Decoded body bytes not yet parsed into events (`next`).
    text: Vec<u8>,
    /// The last body byte `drain` saw (a message boundary may straddle two reads).
    last_byte: u8,
}

impl KeelWatch {
    /// Opens `GET /v1/watch?prefix=…` on a new connection to `host` and reads up to the
    /// stream's first event (the progress message naming where it starts).
    pub async fn open(host: &str, prefix: &str) -> Result<KeelWatch> {
        let mut socket = TcpStream::connect(host)
            .await
            .with_context(|| format!("connect {host}"))?;
        socket.set_nodelay(true)?;
        let request = format!(
            "GET /v1/watch?prefix={prefix} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await?;
        let mut raw = Vec::with_capacity(64 << 10);
        let body_at = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if raw.len() > MAX_HEAD {
                bail!("watch: response head too long");
            }
            if socket.read_buf(&mut raw).await? == 0 {
                bail!("watch: connection closed before the response head");
            }
        };
        let head = String::from_utf8_lossy(&raw[..body_at]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            bail!("watch: {}", head.lines().next().unwrap_or_default());
        }
        if !head.contains("transfer-encoding: chunked") {
            bail!("watch: expected a chunked body");
        }
        raw.drain(..body_at);
        let mut w = KeelWatch {
            socket,
            raw,
            chunks: Dechunk::default(),
            text: Vec::new(),
            last_byte: 0,
        };
        w.next_event()
            .await?
            .context("watch stream ended at once")?;
        Ok(w)
    }

    /// Reads more from the socket; false at its end.
    async fn read(&mut self) -> Result<bool> {
        self.raw.clear();
        Ok(self.socket.read_buf(&mut self.raw).await? > 0)
    }

    /// The next named event as (name, data), or `None` at the end of the stream.
    async fn next_event(&mut self) -> Result<Option<(String, String)>> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let KeelWatch {
                raw, chunks, text, ..
            } = self;
            chunks.decode(raw, |d| text.extend_from_slice(d))?;
            raw.clear();
            while let Some(end) = self.text.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.text.drain(..=end).collect();
                let line = std::str::from_utf8(&line)?.trim_end();
                if line.is_empty() {
                    if !name.is_empty() {
                        return Ok(Some((name, data)));
                    }
                    data.clear();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if !self.read().await? {
                return Ok(None);
            }
        }
    }
}

/// The part of a change message the fan-out workload reads.
#[derive(serde::Deserialize)]
struct Change {
    events: Vec<ChangeEvent>,
}

#[derive(serde::Deserialize)]
struct ChangeEvent {
    value: Option<String>,
}

impl Watch for KeelWatch {
    async fn next(&mut self) -> Result<Option<Vec<Bytes>>> {
        loop {
            let Some((name, data)) = self.next_event().await? else {
                return Ok(None);
            };
            if name != "change" {
                continue;
            }
            let change: Change = serde_json::from_str(&data)?;
            let values = change
                .events
                .into_iter()
                .filter_map(|e| e.value.map(Bytes::from))
                .collect();
            return Ok(Some(values));
        }
    }

    /// Counts messages without parsing them: each ends with an empty line (`\n\n`), and in
    /// a closed-loop run every message is one change of one key (progress messages come only
    /// after 10 s without a change).
    async fn drain(&mut self) -> Result<Option<u64>> {
        // Whatever `open` read past the first event counts too.
        let mut messages = count_ends(&mut self.last_byte, &std::mem::take(&mut self.text));
        loop {
            let KeelWatch {
                raw,
                chunks,
                last_byte,
                ..
            } = self;
            chunks.decode(raw, |d| messages += count_ends(last_byte, d))?;
            raw.clear();
            if messages > 0 {
                return Ok(Some(messages));
            }
            if !self.read().await? {
                return Ok(None);
            }
        }
    }
}

/// Message ends (`\n\n`) in `bytes`, given the byte before them.
fn count_ends(last: &mut u8, bytes: &[u8]) -> u64 {
    let mut n = 0;
    for &b in bytes {
        n += u64::from(*last == b'\n' && b == b'\n');
        *last = b;
    }
    n
}

/// A decoder of HTTP/1.1 chunked transfer encoding that hands out the data in place.
#[derive(Default)]
struct Dechunk {
    state: ChunkState,
    size_line: Vec<u8>,
}

#[derive(Default)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data: bytes left.
    Data(usize),
    /// After a chunk's data: its CRLF (bytes left).
    DataEnd(usize),
    /// After the last chunk.
    Done,
}

impl Dechunk {
    fn decode(&mut self, mut input: &[u8], mut data: impl FnMut(&[u8])) -> Result<()> {
        while !input.is_empty() {
            match self.state {
                ChunkState::Size => {
                    let Some(i) = input.iter().position(|&b| b == b'\n') else {
                        self.size_line.extend_from_slice(input);
                        return Ok(());
                    };
                    self.size_line.extend_from_slice(&input[..i]);
                    input = &input[i + 1..];
                    let line = std::str::from_utf8(&self.size_line)?;
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .with_context(|| format!("bad chunk size {hex:?}"))?;
                    self.size_line.clear();
                    self.state = if size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let n = left.min(input.len());
                    data(&input[..n]);
                    input = &input[n..];
                    self.state = if n == left {
                        ChunkState::DataEnd(2)
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd(left) => {
                    let n = left.min(input.len());
                    input = &input[n..];
                    self.state = if n == left {
                        ChunkState::Size
                    } else {
                        ChunkState::DataEnd(left - n)
                    };
                }
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }
}
