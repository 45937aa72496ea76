//! Storage errors.

use std::path::PathBuf;

/// A storage error, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O call failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are damaged somewhere other than a torn tail.
    #[error("corrupt data in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier sync failed: the log accepts no more writes until the process restarts and
    /// recovers from what is on disk.
    #[error("{0}")]
    Failed(String),
    /// A caller broke the log's contract (for example appended out of order).
    #[error("invalid log operation: {0}")]
    Invalid(String),
}

/// Storage result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn ctx(self, context: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            context,
            path: path.to_owned(),
            source,
        })
    }
}
