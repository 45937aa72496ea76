//! [`Clock`]: where a node's time comes from. Requests are stamped with it, lease deadlines
//! are compared with it, and nothing else in keel reads the time of day.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, from a source chosen at start.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system's wall clock: what every server uses.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        }))
    }

    /// `start_ms` plus the tokio time elapsed since this call: follows `tokio::time::pause`
    /// and `advance`, so tests of deadlines run in virtual time and assert exact instants.
    pub fn tokio_from(start_ms: u64) -> Clock {
        let origin = tokio::time::Instant::now();
        Clock(Arc::new(move || {
            start_ms + origin.elapsed().as_millis() as u64
        }))
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({} ms)", self.now_ms())
    }
}
