//! Snapshot files: `{last_index:020}-{term:020}.snap` in one directory.
//!
//! Format: `KEELSNAP` | version u32 | meta length u32 | body length u64 | meta | body |
//! crc32 of everything before. Written to a temporary name, synced, then renamed.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{replace_file, sync_dir, u32_at, u64_at};

const MAGIC: &[u8; 8] = b"KEELSNAP";
const VERSION: u32 = 1;
const HEADER: usize = 24;
/// How many snapshot files are kept; older ones are deleted after a new one is saved.
const KEEP: usize = 2;

/// The directory of snapshot files.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

/// A loaded, verified snapshot file.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The caller's metadata bytes.
    pub meta: Vec<u8>,
    /// The caller's body bytes.
    pub body: Vec<u8>,
}

impl SnapshotStore {
    /// Opens (creating if needed) the snapshot directory.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).ctx("creating snapshot directory", dir)?;
        Ok(SnapshotStore {
            dir: dir.to_owned(),
        })
    }

    /// Encodes a snapshot file's bytes.
    pub fn encode(meta: &[u8], body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(HEADER + meta.len() + body.len() + 4);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(body.len() as u64).to_le_bytes());
        buf.extend_from_slice(meta);
        buf.extend_from_slice(body);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Checks and splits a snapshot file's bytes into (meta, body).
    pub fn decode(path: &Path, buf: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: reason.into(),
        };
        if buf.len() < HEADER + 4 || &buf[..8] != MAGIC {
            return Err(corrupt("not a keel snapshot file"));
        }
        if u32_at(buf, 8) != VERSION {
            return Err(corrupt("unknown snapshot format version"));
        }
        let meta_len = u32_at(buf, 12) as usize;
        let body_len = usize::try_from(u64_at(buf, 16)).map_err(|_| corrupt("body too large"))?;
        let end = HEADER
            .checked_add(meta_len)
            .and_then(|n| n.checked_add(body_len));
        if end.and_then(|e| e.checked_add(4)) != Some(buf.len()) {
            return Err(corrupt("length does not match the header"));
        }
        let end = buf.len() - 4;
        if crc32fast::hash(&buf[..end]) != u32_at(buf, end) {
            return Err(corrupt("checksum mismatch"));
        }
        let meta = buf[HEADER..HEADER + meta_len].to_vec();
        let body = buf[HEADER + meta_len..end].to_vec();
        Ok((meta, body))
    }

    /// Where the snapshot up to `last_index` (written in `term`) is kept.
    pub fn path_for(&self, last_index: u64, term: u64) -> PathBuf {
        self.dir.join(format!("{last_index:020}-{term:020}.snap"))
    }

    /// Durably saves a snapshot covering the log up to `last_index` (written in `term`),
    /// then deletes all but the newest few.
    pub fn save(&self, last_index: u64, term: u64, file_bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path_for(last_index, term);
        replace_file(&path, file_bytes)?;
        self.keep_newest()?;
        Ok(path)
    }

    /// Like [`SnapshotStore::save`], for a body that `write_body` writes as it is produced: it
    /// goes through a buffer to a temporary file, its length and checksum are filled in after
    /// it, and the file is synced and renamed into place. The body is never whole in memory.
    /// Returns the file's path and length.
    pub fn save_streaming(
        &self,
        last_index: u64,
        term: u64,
        meta: &[u8],
        write_body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(PathBuf, u64)> {
        let path = self.path_for(last_index, term);
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).ctx("creating", &tmp)?;
        let mut head = Vec::with_capacity(HEADER + meta.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        head.extend_from_slice(&0u64.to_le_bytes()); // the body's length, filled in below
        head.extend_from_slice(meta);
        let (body_crc, len) = {
            let mut body = Body {
                out: BufWriter::with_capacity(1 << 20, &file),
                crc: crc32fast::Hasher::new(),
                len: 0,
            };
            // Straight to the file: the header and meta are not counted as body.
            body.out.write_all(&head).ctx("writing", &tmp)?;
            write_body(&mut body).ctx("writing snapshot body to", &tmp)?;
            body.out.flush().ctx("writing", &tmp)?;
            (body.crc, body.len)
        };
        head[16..24].copy_from_slice(&len.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.combine(&body_crc);
        let end = head.len() as u64 + len;
        file.write_all_at(&head[..HEADER], 0).ctx("writing", &tmp)?;
        file.write_all_at(&crc.finalize().to_le_bytes(), end)
            .ctx("writing", &tmp)?;
        file.sync_all().ctx("syncing", &tmp)?;
        drop(file);
        std::fs::rename(&tmp, &path).ctx("renaming into place", &path)?;
        sync_dir(&self.dir)?;
        self.keep_newest()?;
        Ok((path, end + 4))
    }

    /// Makes the verified snapshot file at `from` (received from another node, in this
    /// directory) the snapshot up to `last_index` in `term`: synced, renamed into place, and
    /// older ones deleted. Returns its new path.
    pub fn adopt(&self, from: &Path, last_index: u64, term: u64) -> Result<PathBuf> {
        let path = self.path_for(last_index, term);
        File::open(from)
            .and_then(|f| f.sync_all())
            .ctx("syncing", from)?;
        std::fs::rename(from, &path).ctx("renaming into place", &path)?;
        sync_dir(&self.dir)?;
        self.keep_newest()?;
        Ok(path)
    }

    /// Deletes all but the newest [`KEEP`] snapshot files.
    fn keep_newest(&self) -> Result<()> {
        let mut files = self.list()?;
        files.sort();
        if files.len() > KEEP {
            for old in &files[..files.len() - KEEP] {
                std::fs::remove_file(old).ctx("removing old snapshot", old)?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).ctx("listing", &self.dir)? {
            let path = entry.ctx("listing", &self.dir)?.path();
            if path.extension().is_some_and(|e| e == "snap") {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// The snapshot files, newest first.
    pub fn files_newest_first(&self) -> Result<Vec<PathBuf>> {
        let mut files = self.list()?;
        files.sort();
        files.reverse();
        Ok(files)
    }

    /// Opens the snapshot file at `path` to stream its body: the header and metadata are
    /// read and checked now, the body as the caller reads it, and the checksum over all of it
    /// by [`SnapshotReader::finish`].
    pub fn open_reader(path: &Path) -> Result<SnapshotReader> {
        let corrupt = |reason: &str| Error::Corrupt {
            path: path.to_owned(),
            offset: 0,
            reason: reason.into(),
        };
        let file = File::open(path).ctx("opening snapshot", path)?;
        let size = file.metadata().ctx("reading the size of", path)?.len();
        let mut file = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; HEADER];
        file.read_exact(&mut head)
            .map_err(|_| corrupt("not a keel snapshot file"))?;
        if &head[..8] != MAGIC {
            return Err(corrupt("not a keel snapshot file"));
        }
        if u32_at(&head, 8) != VERSION {
            return Err(corrupt("unknown snapshot format version"));
        }
        let meta_len = u32_at(&head, 12) as usize;
        let body_len = u64_at(&head, 16);
        if (HEADER as u64)
            .checked_add(meta_len as u64)
            .and_then(|n| n.checked_add(body_len))
            .and_then(|n| n.checked_add(4))
            != Some(size)
        {
            return Err(corrupt("length does not match the header"));
        }
        let mut meta = vec![0u8; meta_len];
        file.read_exact(&mut meta).ctx("reading snapshot", path)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&meta);
        Ok(SnapshotReader {
            path: path.to_owned(),
            meta,
            file,
            left: body_len,
            crc,
        })
    }

    /// Reads and verifies the snapshot file at `path`.
    pub fn read(path: &Path) -> Result<SnapshotFile> {
        let buf = std::fs::read(path).ctx("reading snapshot", path)?;
        let (meta, body) = Self::decode(path, &buf)?;
        Ok(SnapshotFile {
            path: path.to_owned(),
            meta,
            body,
        })
    }

    /// The newest snapshot file that verifies. A damaged newer file is reported and skipped.
    pub fn load_newest(&self) -> Result<Option<SnapshotFile>> {
        let mut files = self.list()?;
        files.sort();
        for path in files.into_iter().rev() {
            let buf = std::fs::read(&path).ctx("reading snapshot", &path)?;
            match Self::decode(&path, &buf) {
                Ok((meta, body)) => return Ok(Some(SnapshotFile { path, meta, body })),
                Err(e) => tracing::warn!(error = %e, "skipping damaged snapshot file"),
            }
        }
        Ok(None)
    }
}

/// A snapshot file being read: its metadata, and its body as a stream ([`Read`]) that is
/// checksummed as it goes. Nothing read from it is to be trusted until
/// [`SnapshotReader::finish`] has verified the checksum.
pub struct SnapshotReader {
    path: PathBuf,
    meta: Vec<u8>,
    file: BufReader<File>,
    left: u64,
    crc: crc32fast::Hasher,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotReader({})", self.path.display())
    }
}

impl SnapshotReader {
    /// The caller's metadata bytes.
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads whatever of the body is left, then checks the checksum of the whole file.
    pub fn finish(mut self) -> Result<()> {
        io::copy(&mut self, &mut io::sink()).ctx("reading snapshot", &self.path)?;
        let mut stored = [0u8; 4];
        self.file
            .read_exact(&mut stored)
            .ctx("reading snapshot", &self.path)?;
        if self.crc.finalize() != u32::from_le_bytes(stored) {
            return Err(Error::Corrupt {
                path: self.path,
                offset: 0,
                reason: "checksum mismatch".into(),
            });
        }
        Ok(())
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let want = out
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the snapshot file ends inside its body",
            ));
        }
        self.crc.update(&out[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// A snapshot body on its way to the file: counted and checksummed as it is written.
struct Body<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Body<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.out.write(bytes)?;
        self.crc.update(&bytes[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_snapshot_is_the_same_file_as_an_encoded_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotStore::open(dir.path()).unwrap();
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (path, len) = s
            .save_streaming(7, 2, b"meta", |w| {
                for chunk in body.chunks(10_000) {
                    w.write_all(chunk)?;
                }
                Ok(())
            })
            .unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len() as u64, len);
        assert_eq!(written, SnapshotStore::encode(b"meta", &body));
        let read = SnapshotStore::read(&path).unwrap();
        assert_eq!((read.meta, read.body), (b"meta".to_vec(), body.clone()));
        // Streamed back, in pieces, to the same bytes; then the checksum holds.
        let mut reader = SnapshotStore::open_reader(&path).unwrap();
        assert_eq!(reader.meta(), b"meta");
        let mut streamed = Vec::new();
        let mut piece = [0u8; 7_777];
        loop {
            let n = reader.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            streamed.extend_from_slice(&piece[..n]);
        }
        assert_eq!(streamed, body);
        reader.finish().unwrap();
        // A flipped byte in the body is found by finish, not before.
        let mut raw = std::fs::read(&path).unwrap();
        raw[HEADER + 4 + 1000] ^= 0xff;
        std::fs::write(&path, &raw).unwrap();
        let reader = SnapshotStore::open_reader(&path).unwrap();
        assert!(reader
            .finish()
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn newest_valid_wins_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = SnapshotStore::open(dir.path()).unwrap();
        assert!(s.load_newest().unwrap().is_none());
        for i in 1..=4u64 {
            s.save(i * 10, 1, &SnapshotStore::encode(b"m", &i.to_le_bytes()))
                .unwrap();
        }
        assert_eq!(s.list().unwrap().len(), KEEP);
        let newest = s.load_newest().unwrap().unwrap();
        assert_eq!(newest.body, 4u64.to_le_bytes());
        // Damage the newest: the previous one is used.
        let mut raw = std::fs::read(&newest.path).unwrap();
        let n = raw.len();
        raw[n - 6] ^= 0xff;
        std::fs::write(&newest.path, raw).unwrap();
        assert_eq!(s.load_newest().unwrap().unwrap().body, 3u64.to_le_bytes());
    }
}
