//! keel's files: the write-ahead log, snapshot files and metadata files.
//!
//! This crate knows nothing of Raft or of keys: the log stores opaque byte records by index,
//! snapshot files store opaque metadata and body bytes. Every format here has a magic string,
//! a version and a CRC, so that damage is detected and never silently applied.

mod disk;
mod error;
mod fsutil;
mod lock;
mod log;
mod meta;
#[cfg(feature = "sim")]
pub mod sim;
mod snapshot;

pub use disk::{Disk, DiskFile, OsDisk};
pub use error::{Error, Result};
pub use lock::DirLock;
pub use log::{Log, LogOptions, OpenReport};
pub use meta::{read_meta, write_meta};
pub use snapshot::{SnapshotFile, SnapshotReader, SnapshotStore};
