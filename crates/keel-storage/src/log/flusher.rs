//! The flusher: one thread that makes appended records durable, many appends per sync.
//!
//! It takes every flush request queued so far, issues one `fdatasync` per file they wrote,
//! then runs their callbacks in order. Appends that arrive while a sync is in flight share the
//! next one (group commit), and their writes overlap the sync in flight (pipelining).
//!
//! A failed sync is final. Linux may report a lost write-back only once and then mark the
//! pages clean, so a later sync that succeeds proves nothing about earlier records: after the
//! first failure every queued and later request fails with the same error, and
//! the [`FlushState`] they share makes [`super::Log::append`] refuse new records.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Instant;

use crate::disk::DiskFile;

pub(super) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// What the log and its flusher share: the first sync failure, and the appends in flight.
#[derive(Default)]
pub(super) struct FlushState {
    first: OnceLock<(io::ErrorKind, String)>,
    /// Appends written but not yet reported durable.
    pub(super) in_flight: AtomicUsize,
}

impl FlushState {
    /// The error every request after the first failure gets.
    pub(super) fn error(&self) -> Option<io::Error> {
        self.first
            .get()
            .map(|(kind, why)| io::Error::new(*kind, why.clone()))
    }

    /// Marks the log failed by an I/O error met while writing (a partial write or a failed
    /// sync leaves the file in an unknown state); other errors pass through.
    pub(super) fn poison(&self, e: crate::Error) -> crate::Error {
        if let crate::Error::Io { source, .. } = &e {
            let _ = self.first.set((
                source.kind(),
                format!("the log accepts no more writes after an I/O error: {e}"),
            ));
        }
        e
    }

    fn record(&self, e: &io::Error) -> io::Error {
        let _ = self.first.set((
            e.kind(),
            format!("log fsync failed, so the log accepts no more writes: {e}"),
        ));
        self.error()
            .unwrap_or_else(|| io::Error::new(e.kind(), e.to_string()))
    }
}

pub(super) struct FlushRequest {
    pub(super) file: Arc<dyn DiskFile>,
    pub(super) records: usize,
    pub(super) done: Done,
}

pub(super) fn run(rx: mpsc::Receiver<FlushRequest>, state: Arc<FlushState>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = match state.error() {
            Some(e) => Err(e),
            None => {
                let started = Instant::now();
                let r = sync_each(&batch);
                metrics::histogram!("keel_log_fsync_seconds")
                    .record(started.elapsed().as_secs_f64());
                r.map_err(|e| {
                    tracing::error!(error = %e, "log fsync failed; the log stops accepting writes");
                    state.record(&e)
                })
            }
        };
        let records: usize = batch.iter().map(|r| r.records).sum();
        metrics::histogram!("keel_log_fsync_batch_records").record(records as f64);
        state.in_flight.fetch_sub(batch.len(), Ordering::Relaxed);
        for req in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            (req.done)(r);
        }
    }
}

/// Syncs every distinct file the batch wrote to, once.
fn sync_each(batch: &[FlushRequest]) -> io::Result<()> {
    let mut files: Vec<&Arc<dyn DiskFile>> = Vec::with_capacity(2);
    for req in batch {
        if !files.iter().any(|f| Arc::ptr_eq(f, &req.file)) {
            files.push(&req.file);
        }
    }
    files.iter().try_for_each(|f| f.sync_data())
}
