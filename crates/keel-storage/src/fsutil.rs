//! Small file-system helpers shared by the formats.

use std::fs::File;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .ctx("opening directory", dir)?
        .sync_all()
        .ctx("syncing directory", dir)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that readers see either
/// the old or the new contents, durably.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).ctx("creating", &tmp)?;
    f.write_all(bytes).ctx("writing", &tmp)?;
    f.sync_all().ctx("syncing", &tmp)?;
    drop(f);
    std::fs::rename(&tmp, path).ctx("renaming into place", path)?;
    sync_dir(dir)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
