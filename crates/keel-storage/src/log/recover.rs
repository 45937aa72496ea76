//! Opening a segment: verify every record, index them, and cut the end of the newest segment
//! where a crash or a failed sync left it torn (the rules are in the parent module's doc).

use std::io;
use std::path::PathBuf;

use bytes::Bytes;

use super::format::{check_header, parse_record, Header, Parsed, HEADER_LEN};
use super::{Inner, Loc, OpenReport, Segment};
use crate::disk::DiskFile;
use crate::error::{Error, IoContext, Result};

impl Inner {
    pub(super) fn recover_segment(
        &mut self,
        first: u64,
        path: PathBuf,
        last_segment: bool,
        report: &mut OpenReport,
    ) -> Result<()> {
        let file = self.disk.open(&path).ctx("opening segment", &path)?;
        let buf = read_whole(&*file).ctx("reading segment", &path)?;
        let corrupt = |offset: usize, reason: &str| Error::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            reason: reason.to_owned(),
        };
        match check_header(&buf, first) {
            Header::Valid => {}
            Header::UnknownVersion(v) => {
                return Err(corrupt(8, &format!("unknown log format version {v}")))
            }
            Header::Bad => {
                if last_segment && buf.iter().skip(HEADER_LEN as usize).all(|&b| b == 0) {
                    // Creation was interrupted before any record went in: nothing to lose.
                    tracing::warn!(path = %path.display(), "removing half-created log segment");
                    self.disk.remove(&path).ctx("removing", &path)?;
                    return Ok(());
                }
                return Err(corrupt(0, "bad segment header"));
            }
        }
        if self.last().is_some_and(|last| first != last + 1) {
            // A gap between segments: everything before it was superseded (a snapshot
            // replaced it); the caller's purge point covers it.
            tracing::info!(path = %path.display(), "log restarts after a gap; dropping older records");
            self.forget_all();
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
                    self.index_record(
                        index,
                        Loc {
                            segment: first,
                            offset: at as u64,
                            len: data_len as u32,
                        },
                        Bytes::copy_from_slice(&buf[data_at..data_at + data_len]),
                    );
                    expected += 1;
                    at = next;
                }
                Parsed::Bad {
                    extent_end,
                    reason,
                    hole,
                } => {
                    let rest_is_zero = buf
                        .get(extent_end..)
                        .is_none_or(|r| r.iter().all(|&b| b == 0));
                    let end = if !last_segment {
                        None
                    } else if rest_is_zero {
                        Some("a record torn by a crash")
                    } else if hole {
                        Some("unacknowledged writes after a hole left by a failed sync")
                    } else {
                        None
                    };
                    let Some(end) = end else {
                        return Err(corrupt(at, reason));
                    };
                    tracing::warn!(path = %path.display(), offset = at, reason, "cutting the end of the log: {end}");
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
                file,
                capacity,
            },
        );
        self.write_offset = at as u64;
        Ok(())
    }
}

/// The whole contents of a file.
fn read_whole(file: &dyn DiskFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.size()?).map_err(io::Error::other)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
