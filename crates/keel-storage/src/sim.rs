//! A simulated disk for crash and fault tests (feature `sim`): it remembers which writes were
//! made durable by a sync, so that a test can cut the power at any moment and see what a
//! real disk could have kept, and it can fail a chosen sync the way Linux does.
//!
//! The model:
//! - A file's writes are visible at once but durable only after [`DiskFile::sync_data`]; a
//!   file's creation or removal is durable only after [`Disk::sync_dir`] on its directory.
//! - A failed sync loses the writes it was to make durable (Linux marks the pages clean and
//!   may report the loss only once), while reads still see them; later syncs may succeed.
//! - [`SimDisk::crash`] (now) or [`SimDisk::crash_at_write`] (as a given write is attempted)
//!   cut the power; the disk as it could be found afterwards holds the durable state plus,
//!   per file, some prefix of its unsynced writes in the order they were made, the last of
//!   which may be torn at any byte. From then on the crashed disk refuses every operation, so
//!   nothing the process does later can become durable.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::disk::{Disk, DiskFile};

#[derive(Default)]
struct FileData {
    /// What reads see.
    current: Vec<u8>,
    /// What survives a crash for certain.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (offset, bytes).
    pending: Vec<(u64, Vec<u8>)>,
}

#[derive(Default)]
struct State {
    dirs: BTreeSet<PathBuf>,
    /// The names a process sees.
    visible: BTreeMap<PathBuf, Arc<Mutex<FileData>>>,
    /// The names that survive a crash.
    durable: BTreeMap<PathBuf, Arc<Mutex<FileData>>>,
    syncs: u64,
    fail_syncs: BTreeSet<u64>,
    writes: u64,
    /// The power goes when this write is attempted, with this seed.
    crash_at_write: Option<(u64, u64)>,
    crashed: bool,
    /// What a crash left, if one happened.
    image: Option<SimDisk>,
}

/// The simulated disk. Clones share it.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    /// Signalled after every sync and when the power goes.
    changed: Arc<Condvar>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn gone() -> io::Error {
    io::Error::other("simulated power cut: the disk is gone")
}

fn write_into(buf: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let at = offset as usize;
    if buf.len() < at + bytes.len() {
        buf.resize(at + bytes.len(), 0);
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A small deterministic generator (splitmix64), so crash images follow from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..=n`.
    fn upto(&mut self, n: usize) -> usize {
        (self.next() % (n as u64 + 1)) as usize
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Makes the `n`th sync from now fail (1 = the next one). Counts every file sync.
    pub fn fail_sync_after(&self, n: u64) {
        let mut s = lock(&self.state);
        let at = s.syncs + n.max(1);
        s.fail_syncs.insert(at);
    }

    /// How many file syncs were asked for so far.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// Makes the power go when the `n`th file write from now is attempted (that write fails
    /// and is lost); [`SimDisk::crash_image`] then holds what survived, chosen by `seed`.
    pub fn crash_at_write(&self, n: u64, seed: u64) {
        let mut s = lock(&self.state);
        let at = s.writes + n.max(1);
        s.crash_at_write = Some((at, seed));
    }

    /// What the disk held after the power went, if it went.
    pub fn crash_image(&self) -> Option<SimDisk> {
        lock(&self.state).image.clone()
    }

    /// Cuts the power now (unless it already went): this disk refuses every operation from
    /// now on, and the returned disk holds what survived, chosen by `seed` (see the module
    /// documentation).
    pub fn crash(&self, seed: u64) -> SimDisk {
        let image = crash_locked(&mut lock(&self.state), seed);
        self.changed.notify_all();
        image
    }

    /// Waits until `n` file syncs have been asked for in all, or the power has gone, for at
    /// most `limit`. True if one of them happened.
    pub fn wait_for_syncs(&self, n: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut s = lock(&self.state);
        loop {
            if s.syncs >= n || s.crashed {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
    }

    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let s = lock(&self.state);
        if s.crashed {
            return Err(gone());
        }
        Ok(s)
    }
}

/// The power cut, with the disk's lock held (so it falls between two operations).
fn crash_locked(s: &mut State, seed: u64) -> SimDisk {
    if let Some(image) = &s.image {
        return image.clone();
    }
    let mut rng = Rng(seed);
    s.crashed = true;
    let mut after = State {
        dirs: s.dirs.clone(),
        ..State::default()
    };
    for (path, file) in &s.durable {
        let f = lock(file);
        let mut bytes = f.durable.clone();
        let kept = rng.upto(f.pending.len());
        for (offset, data) in &f.pending[..kept] {
            write_into(&mut bytes, *offset, data);
        }
        if let Some((offset, data)) = f.pending.get(kept) {
            let torn = rng.upto(data.len());
            write_into(&mut bytes, *offset, &data[..torn]);
        }
        let survivor = Arc::new(Mutex::new(FileData {
            current: bytes.clone(),
            durable: bytes,
            pending: Vec::new(),
        }));
        after.visible.insert(path.clone(), survivor.clone());
        after.durable.insert(path.clone(), survivor);
    }
    let image = SimDisk {
        state: Arc::new(Mutex::new(after)),
        changed: Arc::default(),
    };
    s.image = Some(image.clone());
    image
}

struct SimFile {
    disk: SimDisk,
    data: Arc<Mutex<FileData>>,
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        for d in dir.ancestors() {
            s.dirs.insert(d.to_owned());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.live()?;
        if !s.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(s.visible
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn create(&self, path: &Path, len: u64) -> io::Result<Arc<dyn DiskFile>> {
        let mut s = self.live()?;
        if !path.parent().is_some_and(|d| s.dirs.contains(d)) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        let data = Arc::new(Mutex::new(FileData {
            current: vec![0; len as usize],
            durable: Vec::new(),
            pending: vec![(0, vec![0; len as usize])],
        }));
        s.visible.insert(path.to_owned(), data.clone());
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            data,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn DiskFile>> {
        let s = self.live()?;
        let data = s
            .visible
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            data,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        s.visible
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.live()?;
        let State {
            visible, durable, ..
        } = &mut *s;
        durable.retain(|p, _| p.parent() != Some(dir) || visible.contains_key(p));
        for (p, f) in visible.iter() {
            if p.parent() == Some(dir) {
                durable.insert(p.clone(), f.clone());
            }
        }
        Ok(())
    }
}

impl DiskFile for SimFile {
    // Every operation holds the disk's lock (then the file's) throughout, so that a crash
    // happens entirely before or entirely after it.
    fn size(&self) -> io::Result<u64> {
        let _disk = self.disk.live()?;
        Ok(lock(&self.data).current.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let _disk = self.disk.live()?;
        let f = lock(&self.data);
        let at = offset as usize;
        let src = f
            .current
            .get(at..at + buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut disk = self.disk.live()?;
        disk.writes += 1;
        if disk.crash_at_write.is_some_and(|(at, _)| disk.writes >= at) {
            let seed = disk.crash_at_write.map_or(0, |(_, seed)| seed);
            crash_locked(&mut disk, seed);
            self.disk.changed.notify_all();
            return Err(gone());
        }
        let mut f = lock(&self.data);
        write_into(&mut f.current, offset, buf);
        f.pending.push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.disk.live()?;
        disk.syncs += 1;
        let n = disk.syncs;
        let fail = disk.fail_syncs.remove(&n);
        self.disk.changed.notify_all();
        let mut f = lock(&self.data);
        if fail {
            f.pending.clear();
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        f.durable = f.current.clone();
        f.pending.clear();
        Ok(())
    }
}
