//! Opening a segment: verify every record, index them, and cut the end of the newest segment
//! where a crash or a failed sync left it torn (the rules are in the parent module's doc).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{check_header, parse_record, Header, Parsed, HEADER_LEN};
use super::{Inner, Loc, OpenReport, Segment};
use crate::disk::DiskFile;
use crate::error::{Error, IoContext, Result};

/// Where the scan of a segment's records stopped.
struct Scan {
    /// The offset after the last good record.
    end: usize,
    /// Why the scan stopped before the zeroed end of the file, if it did.
    damage: Option<Damage>,
}

/// A record that does not verify.
struct Damage {
    /// Where the damaged extent ends.
    extent_end: usize,
    /// What is wrong.
    reason: &'static str,
    /// Whether the damage is a zeroed gap (a write that never reached the disk) with data
    /// after it.
    hole: bool,
}

impl Damage {
    /// Why the end of the newest segment may be cut at this damage, or `None` if it is
    /// corruption that must stop the open: only the newest segment can end torn, and only if
    /// everything after the damage is zero (a torn record) or the damage is a hole left by a
    /// failed sync (whose later writes were never acknowledged).
    fn cuttable(&self, buf: &[u8], last_segment: bool) -> Option<&'static str> {
        let rest_is_zero = buf
            .get(self.extent_end..)
            .is_none_or(|r| r.iter().all(|&b| b == 0));
        if !last_segment {
            None
        } else if rest_is_zero {
            Some("a record torn by a crash")
        } else if self.hole {
            Some("unacknowledged writes after a hole left by a failed sync")
        } else {
            None
        }
    }
}

fn corrupt(path: &Path, offset: usize, reason: &str) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        offset: offset as u64,
        reason: reason.to_owned(),
    }
}

impl Inner {
    /// Opens the segment starting at `first`: checks its header, indexes its records, and
    /// cuts a torn end of the newest segment.
    pub(super) fn recover_segment(
        &mut self,
        first: u64,
        path: PathBuf,
        last_segment: bool,
        report: &mut OpenReport,
    ) -> Result<()> {
        let file = self.disk.open(&path).ctx("opening segment", &path)?;
        let buf = read_whole(&*file).ctx("reading segment", &path)?;
        if !self.check_segment_header(&buf, first, &path, last_segment)? {
            return Ok(());
        }
        if self.last().is_some_and(|last| first != last + 1) {
            // A gap between segments: everything before it was superseded (a snapshot
            // replaced it); the caller's purge point covers it.
            tracing::info!(path = %path.display(), "log restarts after a gap; dropping older records");
            self.forget_all();
        }
        let scan = self.index_records(first, &buf, &path)?;
        if let Some(damage) = scan.damage {
            let Some(why) = damage.cuttable(&buf, last_segment) else {
                return Err(corrupt(&path, scan.end, damage.reason));
            };
            tracing::warn!(path = %path.display(), offset = scan.end, reason = damage.reason, "cutting the end of the log: {why}");
            cut_at(&*file, &path, scan.end, buf.len())?;
            report.cut_torn_tail = Some((path.clone(), scan.end as u64));
        }
        let capacity = buf.len() as u64;
        let segment = Segment {
            path,
            file,
            capacity,
        };
        self.open_segment(first, segment, scan.end as u64);
        Ok(())
    }

    /// True if the header is good; false if the newest segment was only half created (it is
    /// removed: nothing was ever written to it); an error for any other bad header.
    fn check_segment_header(
        &self,
        buf: &[u8],
        first: u64,
        path: &Path,
        last_segment: bool,
    ) -> Result<bool> {
        match check_header(buf, first) {
            Header::Valid => Ok(true),
            Header::UnknownVersion(v) => {
                Err(corrupt(path, 8, &format!("unknown log format version {v}")))
            }
            Header::Bad
                if last_segment && buf.iter().skip(HEADER_LEN as usize).all(|&b| b == 0) =>
            {
                tracing::warn!(path = %path.display(), "removing half-created log segment");
                self.disk.remove(path).ctx("removing", path)?;
                Ok(false)
            }
            Header::Bad => Err(corrupt(path, 0, "bad segment header")),
        }
    }

    /// Indexes every good record of the segment starting at `first`, in order, until the
    /// zeroed end or the first record that does not verify.
    fn index_records(&mut self, first: u64, buf: &[u8], path: &Path) -> Result<Scan> {
        let mut at = HEADER_LEN as usize;
        let mut expected = first;
        loop {
            match parse_record(buf, at) {
                Parsed::End => {
                    return Ok(Scan {
                        end: at,
                        damage: None,
                    })
                }
                Parsed::Bad {
                    extent_end,
                    reason,
                    hole,
                } => {
                    let damage = Damage {
                        extent_end,
                        reason,
                        hole,
                    };
                    return Ok(Scan {
                        end: at,
                        damage: Some(damage),
                    });
                }
                Parsed::Record {
                    index,
                    data_at,
                    data_len,
                    next,
                } => {
                    if index != expected {
                        let reason = format!("record index {index}, expected {expected}");
                        return Err(corrupt(path, at, &reason));
                    }
                    let loc = Loc {
                        segment: first,
                        offset: at as u64,
                        len: data_len as u32,
                    };
                    let data = Bytes::copy_from_slice(&buf[data_at..data_at + data_len]);
                    self.index_record(index, loc, data);
                    expected += 1;
                    at = next;
                }
            }
        }
    }
}

/// Zeroes the file from `at` to `len` and syncs it: the torn end is gone for good.
fn cut_at(file: &dyn DiskFile, path: &Path, at: usize, len: usize) -> Result<()> {
    let zeros = vec![0u8; len - at];
    file.write_all_at(&zeros, at as u64)
        .ctx("cutting torn tail of", path)?;
    file.sync_data().ctx("syncing", path)
}

/// The whole contents of a file.
fn read_whole(file: &dyn DiskFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.size()?).map_err(io::Error::other)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
