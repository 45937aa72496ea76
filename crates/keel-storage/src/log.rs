//! The write-ahead log: numbered byte records in preallocated, append-only segment files.
//!
//! Segment file `{first_index:020}.seg`:
//! - header (32 bytes): `KEELLOG\0` | version u32 | reserved u32 | first index u64 |
//!   crc32 of the preceding 24 bytes | 4 zero bytes;
//! - records: length u32 (of what follows the checksum) | crc32 u32 | index u64 | data;
//! - zeros up to the preallocated size. A zero length marks the end.
//!
//! Durability: [`Log::append`] writes records with `pwrite` and hands a completion callback to
//! one flusher thread. The flusher takes every request queued so far, issues one
//! `fdatasync`, then runs all their callbacks: proposals that arrive while a sync is in flight
//! share the next one (group commit). A callback never runs before its records are on disk.
//!
//! Recovery: a damaged record at the very end of the newest segment, followed only by zeros,
//! is a write torn by a crash; it is cut with a warning. Damage anywhere else is an error
//! naming the file and offset: such a log is never silently shortened.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{preallocate, sync_dir, u32_at, u64_at};

const MAGIC: &[u8; 8] = b"KEELLOG\0";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 32;
/// length + crc + index
const RECORD_HEAD: usize = 16;
/// Records larger than this are refused (and treated as damage when read).
const MAX_RECORD: usize = 1 << 30;

/// Tuning of the log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Size each segment file is preallocated to.
    pub segment_bytes: u64,
    /// How many bytes of recent records are kept in memory for reads.
    pub cache_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            cache_bytes: 64 << 20,
        }
    }
}

/// What [`Log::open`] found.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Where a torn tail was cut, if one was.
    pub cut_torn_tail: Option<(PathBuf, u64)>,
    /// Records recovered.
    pub records: u64,
}

type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

struct FlushRequest {
    file: Arc<File>,
    records: usize,
    done: Done,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    capacity: u64,
}

#[derive(Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Inner {
    dir: PathBuf,
    opts: LogOptions,
    /// Segments by first index; the last one is written.
    segments: BTreeMap<u64, Segment>,
    /// Where the next record goes in the last segment.
    write_offset: u64,
    /// Index of `locs[0]`.
    base: u64,
    locs: VecDeque<Loc>,
    /// Data of the newest records: `cache[i]` is record `cache_base + i`.
    cache_base: u64,
    cache: VecDeque<Bytes>,
    cache_bytes: usize,
    flush_tx: Option<mpsc::Sender<FlushRequest>>,
}

/// The write-ahead log. Cheap to share: clones see the same log.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn encode_header(first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

fn encode_record(buf: &mut Vec<u8>, index: u64, data: &[u8]) {
    let len = (8 + data.len()) as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(data);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(data);
}

/// One record parsed from a segment, or why it could not be.
enum Parsed {
    Record {
        index: u64,
        data_at: usize,
        data_len: usize,
        next: usize,
    },
    End,
    Bad {
        extent_end: usize,
        reason: &'static str,
    },
}

fn parse_record(buf: &[u8], at: usize) -> Parsed {
    if at + 4 > buf.len() {
        return Parsed::End;
    }
    let len = u32_at(buf, at) as usize;
    if len == 0 {
        return if buf[at..].iter().all(|&b| b == 0) {
            Parsed::End
        } else {
            Parsed::Bad {
                extent_end: at + 4,
                reason: "zero length before non-zero data",
            }
        };
    }
    if !(8..=MAX_RECORD).contains(&len) || at + 8 + len > buf.len() {
        return Parsed::Bad {
            extent_end: buf.len(),
            reason: "record length out of range",
        };
    }
    let crc = u32_at(buf, at + 4);
    let body = &buf[at + 8..at + 8 + len];
    if crc32fast::hash(body) != crc {
        return Parsed::Bad {
            extent_end: at + 8 + len,
            reason: "checksum mismatch",
        };
    }
    Parsed::Record {
        index: u64_at(buf, at + 8),
        data_at: at + RECORD_HEAD,
        data_len: len - 8,
        next: at + 8 + len,
    }
}

impl Log {
    /// Opens the log in `dir` (creating it if needed), verifying every record.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Log, OpenReport)> {
        std::fs::create_dir_all(dir).ctx("creating log directory", dir)?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).ctx("listing", dir)? {
            let path = entry.ctx("listing", dir)?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                names.push((first, path));
            }
        }
        names.sort();
        let mut report = OpenReport::default();
        let mut inner = Inner {
            dir: dir.to_owned(),
            opts,
            segments: BTreeMap::new(),
            write_offset: HEADER_LEN,
            base: 0,
            locs: VecDeque::new(),
            cache_base: 0,
            cache: VecDeque::new(),
            cache_bytes: 0,
            flush_tx: None,
        };
        let count = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let last = i + 1 == count;
            inner.recover_segment(first, path, last, &mut report)?;
        }
        report.records = inner.locs.len() as u64;
        if inner.segments.is_empty() {
            inner.create_segment(1, 0)?;
        }
        let (tx, rx) = mpsc::channel();
        inner.flush_tx = Some(tx);
        std::thread::Builder::new()
            .name("keel-log-flush".into())
            .spawn(move || flusher(rx))
            .ctx("starting flusher thread for", dir)?;
        Ok((
            Log {
                inner: Arc::new(Mutex::new(inner)),
            },
            report,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the log in an unknown state; stop using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Index of the first readable record, if any.
    pub fn first_index(&self) -> Option<u64> {
        let g = self.lock();
        (!g.locs.is_empty()).then_some(g.base)
    }

    /// Index of the last record, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.lock().last()
    }

    /// Writes records and returns at once; `done` runs on the flusher thread once they are
    /// durable (or with the error that prevented it). Indexes must continue the log without a
    /// gap, except on an empty log.
    pub fn append(
        &self,
        records: Vec<(u64, Vec<u8>)>,
        done: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> Result<()> {
        let mut g = self.lock();
        let (file, count) = g.append(records)?;
        let req = FlushRequest {
            file,
            records: count,
            done: Box::new(done),
        };
        match &g.flush_tx {
            Some(tx) => tx
                .send(req)
                .map_err(|_| Error::Invalid("log flusher has stopped".into())),
            None => Err(Error::Invalid("log is closed".into())),
        }
    }

    /// Reads the records with indexes in `range` that exist, in order.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<(u64, Bytes)>> {
        let g = self.lock();
        let Some(last) = g.last() else {
            return Ok(Vec::new());
        };
        let start = range.start.max(g.base);
        let end = range.end.min(last + 1);
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        for index in start..end {
            out.push((index, g.read_one(index)?));
        }
        Ok(out)
    }

    /// Deletes every record with index `from` or above, durably, before returning.
    pub fn truncate(&self, from: u64) -> Result<()> {
        self.lock().truncate(from)
    }

    /// Forgets every record with index `upto` or below; deletes segment files that hold only
    /// such records.
    pub fn purge(&self, upto: u64) -> Result<()> {
        // Forget the records under the lock; delete the files after releasing it, so that
        // appends never wait for unlinks and directory syncs.
        let (dir, doomed) = {
            let mut g = self.lock();
            (g.dir.clone(), g.purge(upto))
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for seg in &doomed {
            std::fs::remove_file(&seg.path).ctx("removing purged segment", &seg.path)?;
        }
        sync_dir(&dir)
    }

    /// Stops the flusher after it has flushed every request already queued.
    pub fn close(&self) {
        self.lock().flush_tx = None;
    }
}

impl Inner {
    fn last(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.base + self.locs.len() as u64 - 1)
    }

    fn current(&self) -> Result<(u64, &Segment)> {
        self.segments
            .iter()
            .next_back()
            .map(|(k, s)| (*k, s))
            .ok_or_else(|| Error::Invalid("log has no segment".into()))
    }

    fn create_segment(&mut self, first: u64, min_capacity: u64) -> Result<()> {
        let path = segment_path(&self.dir, first);
        let capacity = self.opts.segment_bytes.max(min_capacity + HEADER_LEN);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .ctx("creating segment", &path)?;
        preallocate(&file, &path, capacity)?;
        file.write_all_at(&encode_header(first), 0)
            .ctx("writing segment header", &path)?;
        file.sync_all().ctx("syncing new segment", &path)?;
        sync_dir(&self.dir)?;
        self.segments.insert(
            first,
            Segment {
                path,
                file: Arc::new(file),
                capacity,
            },
        );
        self.write_offset = HEADER_LEN;
        Ok(())
    }

    fn recover_segment(
        &mut self,
        first: u64,
        path: PathBuf,
        last_segment: bool,
        report: &mut OpenReport,
    ) -> Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ctx("opening segment", &path)?;
        let buf = std::fs::read(&path).ctx("reading segment", &path)?;
        let corrupt = |offset: usize, reason: &str| Error::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason: reason.to_owned(),
        };
        let header_ok = buf.len() >= HEADER_LEN as usize
            && &buf[..8] == MAGIC
            && crc32fast::hash(&buf[..24]) == u32_at(&buf, 24)
            && u64_at(&buf, 16) == first;
        if !header_ok {
            if last_segment && buf.iter().skip(HEADER_LEN as usize).all(|&b| b == 0) {
                // Creation was interrupted before any record went in: nothing to lose.
                tracing::warn!(path = %path.display(), "removing half-created log segment");
                std::fs::remove_file(&path).ctx("removing", &path)?;
                return Ok(());
            }
            return Err(corrupt(0, "bad segment header"));
        }
        if u32_at(&buf, 8) != VERSION {
            return Err(corrupt(8, "unknown log format version"));
        }
        if let Some(last) = self.last() {
            if first != last + 1 {
                // A gap between segments: everything before it was superseded (a snapshot
                // replaced it); the caller's purge point covers it.
                tracing::info!(path = %path.display(), "log restarts after a gap; dropping older records");
                self.locs.clear();
                self.cache.clear();
                self.cache_bytes = 0;
            }
        }
        let mut at = HEADER_LEN as usize;
        let mut expected = first;
        loop {
            match parse_record(&buf, at) {
                Parsed::End => break,
                Parsed::Record {
                    index,
                    data_at,
                    data_len,
                    next,
                } => {
                    if index != expected {
                        return Err(corrupt(
                            at,
                            &format!("record index {index}, expected {expected}"),
                        ));
                    }
                    if self.locs.is_empty() {
                        self.base = index;
                        self.cache_base = index;
                    }
                    self.locs.push_back(Loc {
                        segment: first,
                        offset: at as u64,
                        len: data_len as u32,
                    });
                    self.cache_push(
                        index,
                        Bytes::copy_from_slice(&buf[data_at..data_at + data_len]),
                    );
                    expected += 1;
                    at = next;
                }
                Parsed::Bad { extent_end, reason } => {
                    let rest_is_zero = buf
                        .get(extent_end..)
                        .is_none_or(|r| r.iter().all(|&b| b == 0));
                    if !(last_segment && rest_is_zero) {
                        return Err(corrupt(at, reason));
                    }
                    tracing::warn!(path = %path.display(), offset = at, reason, "cutting torn record at the end of the log");
                    let zeros = vec![0u8; buf.len() - at];
                    file.write_all_at(&zeros, at as u64)
                        .ctx("cutting torn tail of", &path)?;
                    file.sync_data().ctx("syncing", &path)?;
                    report.cut_torn_tail = Some((path.clone(), at as u64));
                    break;
                }
            }
        }
        let capacity = buf.len() as u64;
        self.segments.insert(
            first,
            Segment {
                path,
                file: Arc::new(file),
                capacity,
            },
        );
        self.write_offset = at as u64;
        Ok(())
    }

    fn cache_push(&mut self, index: u64, data: Bytes) {
        if self.cache.is_empty() {
            self.cache_base = index;
        }
        self.cache_bytes += data.len();
        self.cache.push_back(data);
        while self.cache_bytes > self.opts.cache_bytes && self.cache.len() > 1 {
            if let Some(old) = self.cache.pop_front() {
                self.cache_bytes -= old.len();
                self.cache_base += 1;
            }
        }
    }

    fn append(&mut self, records: Vec<(u64, Vec<u8>)>) -> Result<(Arc<File>, usize)> {
        let Some(first) = records.first().map(|r| r.0) else {
            let (_, seg) = self.current()?;
            return Ok((seg.file.clone(), 0));
        };
        for (i, (index, data)) in records.iter().enumerate() {
            if *index != first + i as u64 {
                return Err(Error::Invalid(format!(
                    "append of non-consecutive index {index}"
                )));
            }
            if data.len() + 8 > MAX_RECORD {
                return Err(Error::Invalid(format!(
                    "record {index} is {} bytes",
                    data.len()
                )));
            }
        }
        let contiguous = self.last().is_none_or(|l| first == l + 1);
        if !contiguous {
            if self.last().is_some_and(|l| first <= l) {
                return Err(Error::Invalid(format!(
                    "append at {first} overlaps the log (last {:?}); truncate first",
                    self.last()
                )));
            }
            // The log jumps forward (after a snapshot): start a fresh segment at the new index
            // so that every segment stays gap-free.
            self.locs.clear();
            self.cache.clear();
            self.cache_bytes = 0;
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.1.len() + RECORD_HEAD).sum());
        let mut offsets = Vec::with_capacity(records.len());
        for (index, data) in &records {
            offsets.push(buf.len() as u64);
            encode_record(&mut buf, *index, data);
        }
        let (seg_first, seg) = self.current()?;
        let fits = self.write_offset + buf.len() as u64 <= seg.capacity;
        let seg_empty = self.write_offset == HEADER_LEN;
        if !contiguous || !fits || (seg_empty && seg_first != first) {
            if seg_empty {
                if let Some(old) = self.segments.remove(&seg_first) {
                    std::fs::remove_file(&old.path).ctx("removing empty segment", &old.path)?;
                }
            } else {
                // Seal the old segment durably so only the newest can ever hold a torn tail.
                seg.file
                    .sync_data()
                    .ctx("syncing sealed segment", &seg.path)?;
            }
            self.create_segment(first, buf.len() as u64)?;
        }
        let (seg_first, seg) = self.current()?;
        let start = self.write_offset;
        seg.file
            .write_all_at(&buf, start)
            .ctx("appending to", &seg.path)?;
        let file = seg.file.clone();
        if self.locs.is_empty() {
            self.base = first;
        }
        let count = records.len();
        for ((index, data), off) in records.into_iter().zip(offsets) {
            self.locs.push_back(Loc {
                segment: seg_first,
                offset: start + off,
                len: data.len() as u32,
            });
            self.cache_push(index, Bytes::from(data));
        }
        self.write_offset = start + buf.len() as u64;
        Ok((file, count))
    }

    fn read_one(&self, index: u64) -> Result<Bytes> {
        if index >= self.cache_base {
            if let Some(b) = self.cache.get((index - self.cache_base) as usize) {
                return Ok(b.clone());
            }
        }
        let loc = self
            .locs
            .get((index - self.base) as usize)
            .ok_or_else(|| Error::Invalid(format!("no record {index}")))?;
        let seg = self
            .segments
            .get(&loc.segment)
            .ok_or_else(|| Error::Invalid(format!("segment of record {index} is gone")))?;
        let mut data = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut data, loc.offset + RECORD_HEAD as u64)
            .ctx("reading record from", &seg.path)?;
        Ok(Bytes::from(data))
    }

    fn truncate(&mut self, from: u64) -> Result<()> {
        let Some(last) = self.last() else {
            return Ok(());
        };
        if from > last {
            return Ok(());
        }
        let from = from.max(self.base);
        let loc = self.locs[(from - self.base) as usize];
        // Segments entirely after the cut go.
        let later: Vec<u64> = self
            .segments
            .range(loc.segment + 1..)
            .map(|(k, _)| *k)
            .collect();
        for k in later {
            if let Some(seg) = self.segments.remove(&k) {
                std::fs::remove_file(&seg.path).ctx("removing truncated segment", &seg.path)?;
            }
        }
        sync_dir(&self.dir)?;
        let seg = self
            .segments
            .get(&loc.segment)
            .ok_or_else(|| Error::Invalid("truncation point's segment is missing".into()))?;
        let end = if loc.segment == self.current()?.0 {
            self.write_offset
        } else {
            seg.capacity
        };
        let end = end.max(loc.offset);
        let zeros = vec![0u8; (end - loc.offset) as usize];
        seg.file
            .write_all_at(&zeros, loc.offset)
            .ctx("truncating", &seg.path)?;
        seg.file.sync_data().ctx("syncing", &seg.path)?;
        self.write_offset = loc.offset;
        self.locs.truncate((from - self.base) as usize);
        while self.cache_base + self.cache.len() as u64 > from && !self.cache.is_empty() {
            if let Some(b) = self.cache.pop_back() {
                self.cache_bytes -= b.len();
            }
        }
        Ok(())
    }

    /// Drops records up to `upto` from the index and returns the segments that now hold only
    /// such records, removed from the segment map, for the caller to delete.
    fn purge(&mut self, upto: u64) -> Vec<Segment> {
        if self.locs.is_empty() || upto < self.base {
            return Vec::new();
        }
        let drop_n = ((upto + 1 - self.base) as usize).min(self.locs.len());
        self.locs.drain(..drop_n);
        self.base = upto + 1;
        if self.cache_base < self.base {
            let n = ((self.base - self.cache_base) as usize).min(self.cache.len());
            for b in self.cache.drain(..n) {
                self.cache_bytes -= b.len();
            }
            self.cache_base = self.base;
        }
        // A segment can go when the next one starts at or before upto + 1.
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        firsts
            .windows(2)
            .filter(|pair| pair[1] <= upto + 1)
            .filter_map(|pair| self.segments.remove(&pair[0]))
            .collect()
    }
}

fn flusher(rx: mpsc::Receiver<FlushRequest>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut files: Vec<&Arc<File>> = Vec::new();
        for req in &batch {
            if !files.iter().any(|f| Arc::ptr_eq(f, &req.file)) {
                files.push(&req.file);
            }
        }
        let started = Instant::now();
        let result = files.iter().try_for_each(|f| f.sync_data());
        metrics::histogram!("keel_log_fsync_seconds").record(started.elapsed().as_secs_f64());
        let records: usize = batch.iter().map(|r| r.records).sum();
        metrics::histogram!("keel_log_fsync_batch_records").record(records as f64);
        for req in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), format!("log fsync failed: {e}"))),
            };
            (req.done)(r);
        }
    }
}
