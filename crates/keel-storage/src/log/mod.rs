//! The write-ahead log: numbered byte records in preallocated, append-only segment files
//! (their bytes are described in [`format`]).
//!
//! Durability: [`Log::append`] writes records with `pwrite` and hands a completion callback to
//! the [`flusher`] thread, which makes every append queued so far durable with one
//! `fdatasync` and then runs their callbacks: appends that arrive while a sync is in flight
//! are written meanwhile and share the next one (group commit, pipelined). A callback never
//! reports success before its records are on disk, and after one failed sync no callback
//! does and no append is accepted.
//!
//! Recovery: the newest segment ends at a record torn by a crash (a damaged record followed
//! only by zeros) or at a hole (zeros where a record should start, data after them); either
//! is cut with a warning. A hole is what a failed sync leaves: the writes it was to make
//! durable are lost, while later writes may still reach the disk before the process stops.
//! Nothing after a hole was ever acknowledged: every sync covers all earlier writes to the
//! file, and after a failed one no append is acknowledged again. Older segments were synced
//! whole before the next one was created, so damage there, and a checksum mismatch with data
//! after it anywhere, is an error naming the file and offset: such a log is never silently
//! shortened.

mod flusher;
mod format;
mod recover;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::disk::{Disk, DiskFile, OsDisk};
use crate::error::{Error, IoContext, Result};
use flusher::{FlushRequest, FlushState};
use format::{
    encode_header, encode_record, segment_first_index, segment_path, HEADER_LEN, MAX_RECORD,
    RECORD_HEAD,
};

/// Tuning of the log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// Size each segment file is preallocated to.
    pub segment_bytes: u64,
    /// How many bytes of recent records are kept in memory for reads.
    pub cache_bytes: usize,
}

impl LogOptions {
    /// The default of [`LogOptions::segment_bytes`] (64 MiB).
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            cache_bytes: 64 << 20,
        }
    }
}

/// What [`Log::open`] found.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    /// Where the end of the newest segment was cut (a torn record or a hole), if it was.
    pub cut_torn_tail: Option<(PathBuf, u64)>,
    /// Records recovered.
    pub records: u64,
}

struct Segment {
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    capacity: u64,
}

#[derive(Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Inner {
    disk: Arc<dyn Disk>,
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
    flushing: Arc<FlushState>,
    in_flight: metrics::Histogram,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").finish_non_exhaustive()
    }
}

impl Log {
    /// Opens the log in `dir` (creating it if needed), verifying every record.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Log, OpenReport)> {
        Self::open_on(Arc::new(OsDisk), dir, opts)
    }

    /// Opens the log in `dir` on `disk`.
    pub fn open_on(disk: Arc<dyn Disk>, dir: &Path, opts: LogOptions) -> Result<(Log, OpenReport)> {
        disk.create_dir_all(dir)
            .ctx("creating log directory", dir)?;
        let mut names: Vec<(u64, PathBuf)> = disk
            .list(dir)
            .ctx("listing", dir)?
            .into_iter()
            .filter_map(|path| segment_first_index(&path).map(|first| (first, path)))
            .collect();
        names.sort();
        let mut report = OpenReport::default();
        let mut inner = Inner {
            disk,
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
        let flushing = Arc::new(FlushState::default());
        let shared = flushing.clone();
        std::thread::Builder::new()
            .name("keel-log-flush".into())
            .spawn(move || flusher::run(rx, shared))
            .ctx("starting flusher thread for", dir)?;
        Ok((
            Log {
                inner: Arc::new(Mutex::new(inner)),
                flushing,
                in_flight: metrics::histogram!("keel_log_appends_in_flight"),
            },
            report,
        ))
    }

    /// The log's state. A panic while it was held leaves the in-memory index in an unknown
    /// state: the log is then unusable (every call fails) until the process restarts and
    /// recovers from disk.
    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| {
            Error::Failed(
                "the log's state was left inconsistent by a panic; restart to recover from disk"
                    .into(),
            )
        })
    }

    /// Index of the first readable record, if any.
    pub fn first_index(&self) -> Result<Option<u64>> {
        let g = self.lock()?;
        Ok((!g.locs.is_empty()).then_some(g.base))
    }

    /// Index of the last record, if any.
    pub fn last_index(&self) -> Result<Option<u64>> {
        Ok(self.lock()?.last())
    }

    /// Writes records and returns at once; `done` runs on the flusher thread once they are
    /// durable (or with the error that prevented it). Indexes must continue the log without a
    /// gap, except on an empty log. After a failed sync every append is refused.
    pub fn append(
        &self,
        records: Vec<(u64, Vec<u8>)>,
        done: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> Result<()> {
        if let Some(e) = self.flushing.error() {
            return Err(Error::Failed(e.to_string()));
        }
        let mut g = self.lock()?;
        let (file, count) = g.append(records).map_err(|e| self.flushing.poison(e))?;
        let req = FlushRequest {
            file,
            records: count,
            done: Box::new(done),
        };
        let Some(tx) = &g.flush_tx else {
            return Err(Error::Invalid("log is closed".into()));
        };
        let in_flight = self.flushing.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.in_flight.record(in_flight as f64);
        tx.send(req).map_err(|_| {
            self.flushing.in_flight.fetch_sub(1, Ordering::Relaxed);
            Error::Invalid("log flusher has stopped".into())
        })
    }

    /// Reads the records with indexes in `range` that exist, in order.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<(u64, Bytes)>> {
        let g = self.lock()?;
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
        if let Some(e) = self.flushing.error() {
            return Err(Error::Failed(e.to_string()));
        }
        self.lock()?
            .truncate(from)
            .map_err(|e| self.flushing.poison(e))
    }

    /// Forgets every record with index `upto` or below; deletes segment files that hold only
    /// such records.
    pub fn purge(&self, upto: u64) -> Result<()> {
        // Forget the records under the lock; delete the files after releasing it, so that
        // appends never wait for unlinks and directory syncs.
        let (disk, dir, doomed) = {
            let mut g = self.lock()?;
            (g.disk.clone(), g.dir.clone(), g.purge(upto))
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for seg in &doomed {
            disk.remove(&seg.path)
                .ctx("removing purged segment", &seg.path)?;
        }
        disk.sync_dir(&dir).ctx("syncing directory", &dir)
    }

    /// Stops the flusher after it has flushed every request already queued.
    pub fn close(&self) {
        // Dropping the flusher's channel is safe whatever state a panic left behind.
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        g.flush_tx = None;
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

    fn sync_dir(&self) -> Result<()> {
        self.disk
            .sync_dir(&self.dir)
            .ctx("syncing directory", &self.dir)
    }

    fn create_segment(&mut self, first: u64, min_capacity: u64) -> Result<()> {
        let path = segment_path(&self.dir, first);
        let capacity = self.opts.segment_bytes.max(min_capacity + HEADER_LEN);
        let file = self
            .disk
            .create(&path, capacity)
            .ctx("creating segment", &path)?;
        file.write_all_at(&encode_header(first), 0)
            .ctx("writing segment header", &path)?;
        file.sync_data().ctx("syncing new segment", &path)?;
        self.sync_dir()?;
        self.open_segment(
            first,
            Segment {
                path,
                file,
                capacity,
            },
            HEADER_LEN,
        );
        Ok(())
    }

    /// Makes `segment` (starting at index `first`) the one appends go to, from `write_offset`.
    fn open_segment(&mut self, first: u64, segment: Segment, write_offset: u64) {
        self.segments.insert(first, segment);
        self.write_offset = write_offset;
    }

    /// Drops every record from the index (they precede a gap, or a jump forward).
    fn forget_all(&mut self) {
        self.locs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
    }

    /// Adds record `index` (the next one) to the in-memory index and cache.
    fn index_record(&mut self, index: u64, loc: Loc, data: Bytes) {
        if self.locs.is_empty() {
            self.base = index;
        }
        self.locs.push_back(loc);
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

    /// Checks that `records` continue the log (or jump past its end) and are not too large.
    /// Returns whether they continue it without a jump.
    fn check_append(&self, records: &[(u64, Vec<u8>)], first: u64) -> Result<bool> {
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
        match self.last() {
            Some(last) if first <= last => Err(Error::Invalid(format!(
                "append at {first} overlaps the log (last {last}); truncate first"
            ))),
            Some(last) => Ok(first == last + 1),
            None => Ok(true),
        }
    }

    /// Makes sure the current segment can take `len` more bytes of records starting at index
    /// `first`, sealing it and starting a new one if not.
    fn make_room(&mut self, first: u64, len: u64, contiguous: bool) -> Result<()> {
        let (seg_first, seg) = self.current()?;
        let fits = self.write_offset + len <= seg.capacity;
        let seg_empty = self.write_offset == HEADER_LEN;
        if contiguous && fits && !(seg_empty && seg_first != first) {
            return Ok(());
        }
        if seg_empty {
            if let Some(old) = self.segments.remove(&seg_first) {
                self.disk
                    .remove(&old.path)
                    .ctx("removing empty segment", &old.path)?;
            }
        } else {
            // Seal the old segment durably so only the newest can ever hold a torn tail.
            seg.file
                .sync_data()
                .ctx("syncing sealed segment", &seg.path)?;
        }
        self.create_segment(first, len)
    }

    fn append(&mut self, records: Vec<(u64, Vec<u8>)>) -> Result<(Arc<dyn DiskFile>, usize)> {
        let Some(first) = records.first().map(|r| r.0) else {
            let (_, seg) = self.current()?;
            return Ok((seg.file.clone(), 0));
        };
        let contiguous = self.check_append(&records, first)?;
        if !contiguous {
            // The log jumps forward (after a snapshot): start a fresh segment at the new index
            // so that every segment stays gap-free.
            self.forget_all();
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.1.len() + RECORD_HEAD).sum());
        let mut offsets = Vec::with_capacity(records.len());
        for (index, data) in &records {
            offsets.push(buf.len() as u64);
            encode_record(&mut buf, *index, data);
        }
        self.make_room(first, buf.len() as u64, contiguous)?;
        let (seg_first, seg) = self.current()?;
        let start = self.write_offset;
        seg.file
            .write_all_at(&buf, start)
            .ctx("appending to", &seg.path)?;
        let file = seg.file.clone();
        let count = records.len();
        for ((index, data), off) in records.into_iter().zip(offsets) {
            let loc = Loc {
                segment: seg_first,
                offset: start + off,
                len: data.len() as u32,
            };
            self.index_record(index, loc, Bytes::from(data));
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
                self.disk
                    .remove(&seg.path)
                    .ctx("removing truncated segment", &seg.path)?;
            }
        }
        self.sync_dir()?;
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
